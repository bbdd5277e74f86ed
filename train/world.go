package train

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/fnv"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
)

// Data-parallel training (Options.World of N ranks): every rank holds the whole model and
// runs its own micro-batches, which are its rows of the global batch (data.ShardSampler), so N
// ranks with micro_bsz b train exactly as one process with micro_bsz N·b. After a step's
// micro-batches the gradients (and the loss) are summed over the ranks and divided by N, and
// every rank makes the same update, so the weights stay bitwise identical. Rank 0 alone writes
// checkpoints, metrics.jsonl, loss.svg and the progress line; decisions that could differ
// between ranks (stopping on a signal, the outcome of a checkpoint write) are agreed through
// the world. Under peft only the trained tensors are in t.params, so only they are
// broadcast and reduced; the frozen base is checked across ranks once (syncFrozen), and LoRA
// dropout draws the masks of the rank's rows of the global batch (model.LoRAControl.Shard).

// leader reports whether this rank writes the run's files (rank 0, or the only process).
func (t *Trainer) leader() bool { return t.world.Rank() == 0 }

// tokensPerStep is the tokens of one optimiser step over all ranks.
func (t *Trainer) tokensPerStep() int64 {
	return t.cfg.TokensPerStep() * int64(t.world.Size())
}

// Steps is the run's number of optimiser steps (train.max_steps, or train.max_tokens over the
// tokens of a step on every rank).
func (t *Trainer) Steps() int { return t.steps }

// TokensPerStep is the tokens of one optimiser step on every rank together: micro_bsz ×
// grad_accum × ctx_len × world size.
func (t *Trainer) TokensPerStep() int64 { return t.tokensPerStep() }

// globalSteps is the run's number of steps: train.max_steps, or train.max_tokens over the
// tokens of a step on all ranks.
func (t *Trainer) globalSteps() int {
	c := t.cfg
	if c.Train.MaxSteps > 0 || t.tokensPerStep() <= 0 {
		return c.Steps()
	}
	return int((c.Train.MaxTokens + t.tokensPerStep() - 1) / t.tokensPerStep())
}

// agreeStop reports whether any rank's context is cancelled (a signal reached one rank or
// all): the ranks stop together, at the same step.
func (t *Trainer) agreeStop(ctx context.Context) (bool, error) {
	stop := ctx.Err() != nil
	if t.world.Size() == 1 {
		return stop, nil
	}
	v := []float64{0}
	if stop {
		v[0] = 1
	}
	if err := t.world.AllreduceSumFloat64(v); err != nil {
		return false, fmt.Errorf("agreeing on a stop: %w", err)
	}
	return v[0] > 0, nil
}

// reduceGrads replaces every rank's step gradient and loss by their means over the ranks:
// one allreduce of all gradients packed in one buffer (latency once, full bandwidth), and one
// of the loss. A barrier first separates the time spent waiting for the slowest rank from the
// transfer, for the data-parallel log line (it costs one message latency).
func (t *Trainer) reduceGrads(res *StepResult) error {
	t0 := time.Now()
	defer func() { t.reduceTime += time.Since(t0) }()
	if err := t.world.Barrier(); err != nil {
		return fmt.Errorf("gradient allreduce: %w", err)
	}
	t.waitTime += time.Since(t0)
	n := 0
	for _, p := range t.params {
		n += len(p.Grad)
	}
	if cap(t.flat) < n {
		t.flat = make([]float32, n)
	}
	flat := t.flat[:n]
	off := 0
	for _, p := range t.params {
		off += copy(flat[off:], p.Grad)
	}
	if err := t.world.AllreduceSumFloat32(flat); err != nil {
		return fmt.Errorf("gradient allreduce: %w", err)
	}
	inv := 1 / float32(t.world.Size())
	off = 0
	for _, p := range t.params {
		g := p.Grad
		for j, v := range flat[off : off+len(g)] {
			g[j] = v * inv
		}
		off += len(g)
	}
	loss := []float64{res.Loss}
	if err := t.world.AllreduceSumFloat64(loss); err != nil {
		return fmt.Errorf("loss allreduce: %w", err)
	}
	res.Loss = loss[0] / float64(t.world.Size())
	return nil
}

// syncFromLeader makes every rank's weights, optimiser state, counters and sampler state rank
// 0's: after initialisation (each rank's would already agree, being seeded alike, but rank 0's
// are the ones the contract names) and after a resume.
func (t *Trainer) syncFromLeader() error {
	if t.world.Size() == 1 {
		return nil
	}
	w := t.world
	if err := t.syncFrozen(); err != nil {
		return err
	}
	st := t.opt.State()
	for i, p := range t.params {
		for _, b := range [][]float32{p.Data, st.M[i], st.V[i]} {
			if err := w.BcastFloat32(b, 0); err != nil {
				return fmt.Errorf("broadcasting %s from rank 0: %w", p.Name, err)
			}
		}
	}
	counters := []float64{float64(st.Step), float64(t.step), float64(t.tokens), float64(t.badTotal), float64(t.badInRow)}
	if err := w.BcastFloat64(counters, 0); err != nil {
		return fmt.Errorf("broadcasting the step from rank 0: %w", err)
	}
	st.Step = int64(counters[0])
	if err := t.opt.SetState(st); err != nil {
		return err
	}
	if t.step != int(counters[1]) {
		return fmt.Errorf("rank %d resumed at step %d but rank 0 at step %d: every rank must read the same checkpoint directory (a shared filesystem)",
			w.Rank(), t.step, int(counters[1]))
	}
	t.tokens, t.badTotal, t.badInRow = int64(counters[2]), int(counters[3]), int(counters[4])
	state, err := t.loader.State()
	if err != nil {
		return err
	}
	if state, err = w.BcastBlob(state, 0); err != nil {
		return fmt.Errorf("broadcasting the sampler state from rank 0: %w", err)
	}
	if !t.leader() {
		if err := t.loader.SetState(state); err != nil {
			return err
		}
	}
	return nil
}

// syncFrozen makes the frozen tensors of a parameter-efficient run (the base model, PiSSA's
// W_res) rank 0's. Only the trained tensors are broadcast and reduced otherwise; the frozen
// ones agree when every rank loads the same file and computes the same init, which one
// allreduce of a hash checks (a read pass); when any rank differs (another file, a BLAS that
// rounds otherwise), rank 0's are broadcast once.
func (t *Trainer) syncFrozen() error {
	if !t.cfg.PEFT.On() {
		return nil // every tensor is trained, and broadcast with the trained ones
	}
	var frozen []*model.Param
	for _, p := range t.Model.Params {
		if t.Model.Frozen(p.Name) {
			frozen = append(frozen, p)
		}
	}
	h := frozenHash(frozen)
	mine := []float64{float64(h >> 32), float64(h & 0xffffffff)}
	sum := append([]float64(nil), mine...)
	if err := t.world.AllreduceSumFloat64(sum); err != nil {
		return fmt.Errorf("comparing the frozen base between ranks: %w", err)
	}
	n := float64(t.world.Size())
	differ := []float64{0}
	if sum[0] != n*mine[0] || sum[1] != n*mine[1] {
		differ[0] = 1
	}
	if err := t.world.AllreduceSumFloat64(differ); err != nil {
		return fmt.Errorf("comparing the frozen base between ranks: %w", err)
	}
	if differ[0] == 0 {
		return nil
	}
	if t.leader() {
		t.log.Warn("the frozen base differs between ranks; broadcasting rank 0's", "tensors", len(frozen))
	}
	t.frozenBcasts++
	for _, p := range frozen {
		var err error
		switch {
		case p.F32() != nil:
			err = t.world.BcastFloat32(p.F32(), 0)
		case p.F64() != nil:
			err = t.world.BcastFloat64(p.F64(), 0)
		default:
			err = fmt.Errorf("dtype %v", p.Value.Dtype())
		}
		if err != nil {
			return fmt.Errorf("broadcasting frozen %s from rank 0: %w", p.Name, err)
		}
	}
	return nil
}

// frozenHash hashes the bits of model parameters of either float type: two CRC-32s (IEEE and
// Castagnoli, both in hardware on amd64 and arm64, so a few GB/s: the base of a large model
// is hashed in about a second) of each tensor's name and bytes.
func frozenHash(ps []*model.Param) uint64 {
	ieee, cast := crc32.NewIEEE(), crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for _, p := range ps {
		var b []byte
		if d := p.F32(); d != nil {
			b = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), 4*len(d))
		} else if d := p.F64(); d != nil {
			b = unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(d))), 8*len(d))
		}
		for _, h := range []hash.Hash32{ieee, cast} {
			h.Write([]byte(p.Name))
			h.Write(b)
		}
	}
	return uint64(ieee.Sum32())<<32 | uint64(cast.Sum32())
}

// shareOutcome hands rank 0's result of a step every rank takes part in (a checkpoint write,
// the resume path) to all ranks: its value on success, or its error, so that the ranks go on
// or stop together.
func (t *Trainer) shareOutcome(what, value string, err error) (string, error) {
	if t.world.Size() == 1 {
		return value, err
	}
	msg := "ok\n" + value
	if err != nil {
		msg = "err\n" + err.Error()
	}
	b, berr := t.world.BcastBlob([]byte(msg), 0)
	if berr != nil {
		return "", fmt.Errorf("%s: %w", what, berr)
	}
	if t.leader() {
		return value, err
	}
	kind, text, _ := strings.Cut(string(b), "\n")
	if kind != "ok" {
		return "", fmt.Errorf("%s failed on rank 0: %s", what, text)
	}
	return text, nil
}

// checkGlobalBatch refuses to resume a checkpoint written on another number of ranks unless
// the global micro-batch (world size × micro_bsz) is the same: the step, the schedule and the
// sampler state mean the same thing only then.
func (t *Trainer) checkGlobalBatch(ck *checkpoint.Checkpoint) error {
	ws, err := strconv.Atoi(ck.State.Extra["world_size"])
	if err != nil {
		ws = 1 // written before data-parallel training: one process
	}
	if ws == t.world.Size() {
		return nil
	}
	global, err := strconv.Atoi(ck.State.Extra["global_micro_bsz"])
	if err != nil {
		return nil // unknown: nothing to compare
	}
	if mine := t.world.Size() * t.cfg.Train.MicroBsz; global != mine {
		return fmt.Errorf("%w: resume %s: it was written by %d ranks × train.micro_bsz %d (a global micro-batch of %d), this run is %d ranks × %d = %d; set train.micro_bsz = %d so that the global batch stays the same, or run on %d ranks",
			ErrConfig, ck.Path, ws, global/max(ws, 1), global, t.world.Size(), t.cfg.Train.MicroBsz, mine,
			global/t.world.Size(), ws)
	}
	return nil
}

// validateSharded is Validate on all ranks: each scores every N-th window and the sums are
// reduced, so every rank gets the whole file's loss.
func (t *Trainer) validateSharded(o eval.Options) (EvalResult, error) {
	o.Shard, o.Shards = t.world.Rank(), t.world.Size()
	r, err := eval.Perplexity(context.Background(), t.Model, t.val, o)
	if err != nil {
		return r, err
	}
	sums := []float64{0, float64(r.Tokens)}
	if r.Tokens > 0 {
		sums[0] = r.Loss * float64(r.Tokens)
	}
	if err := t.world.AllreduceSumFloat64(sums); err != nil {
		return r, fmt.Errorf("validation allreduce: %w", err)
	}
	if sums[1] == 0 {
		return r, fmt.Errorf("validation: no target of data.val is in its loss mask")
	}
	loss := sums[0] / sums[1]
	return EvalResult{Mode: r.Mode, Tokens: int64(sums[1]), Loss: loss, PPL: math.Exp(loss), BitsPerToken: loss / math.Ln2}, nil
}

// weightsHash is an FNV-1a hash of every weight's bits, to check that ranks agree.
func weightsHash(params []optim.Param[float32]) uint64 {
	h := fnv.New64a()
	var b [4]byte
	for _, p := range params {
		h.Write([]byte(p.Name))
		for _, v := range p.Data {
			binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
			h.Write(b[:])
		}
	}
	return h.Sum64()
}
