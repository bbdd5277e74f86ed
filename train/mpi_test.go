package train

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/mpi"
	"github.com/rwkv-go/rwkv-go/internal/mpi/mpitest"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// The data-parallel tests run their ranks under mpirun -np 2 (mpitest): the parent prepares
// the corpus and a shared directory, the ranks train, and the parent compares what rank 0
// wrote with one process training the same global batch.

var dpSamplers = []string{data.SamplingRandom, data.SamplingMagicPrime, data.SamplingSequential}

// dpConfig is the data-parallel test run: 4 steps, validation at step 2 and at the end; the
// sequential run accumulates 2 micro-batches per step (the path with gradient buffers), and
// the magic_prime run trains in chunks of 16 tokens with the state carried (train.chunk_len).
func dpConfig(trainPath, valPath, sampling string, microBsz int, outDir string) Config {
	c := DefaultConfig()
	c.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32}
	c.Data = data.Config{Train: trainPath, Val: valPath, Sampling: sampling}
	c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = 3e-3, 1e-3, 2
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.EvalEvery, c.Train.EvalTokens = microBsz, 4, 2, 700
	switch sampling {
	case data.SamplingSequential:
		c.Train.GradAccum = 2
	case data.SamplingMagicPrime:
		c.Train.ChunkLen = 16
	}
	c.OutDir = outDir
	return c
}

// TestDataParallelEqualsOneProcess: 2 ranks × micro_bsz 2 train like 1 process × micro_bsz 4,
// for every sampler: the same losses, validation losses and weights (float tolerance), with
// bitwise-identical weights on both ranks; a run stopped on one rank's signal stops both at
// one step and resumes exactly; its checkpoint resumes in one process with the same global
// batch and is refused with another.
func TestDataParallelEqualsOneProcess(t *testing.T) {
	if mpitest.Child() {
		dataParallelRank(t)
		return
	}
	mpitest.Mpirun(t)
	trainPath, valPath := corpus(t)
	dir := t.TempDir()
	out := mpitest.MustPass(t, 2, "TestDataParallelEqualsOneProcess", 3*time.Minute,
		"RWKV_TEST_DP_DIR="+dir, "RWKV_TEST_DP_TRAIN="+trainPath, "RWKV_TEST_DP_VAL="+valPath)
	t.Logf("2 ranks:\n%s", out)
	for _, s := range dpSamplers {
		ref := newTrainer(t, dpConfig(trainPath, valPath, s, 4, t.TempDir()), Options{})
		if err := ref.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(dir, s, "out")
		_, got, err := readMetrics(filepath.Join(out, "metrics.jsonl"), 100)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.History()
		if len(got) < len(want) {
			t.Fatalf("%s: rank 0 recorded %d steps, want %d", s, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.Step != w.Step || g.Tokens != w.Tokens || math.Abs(g.Loss-w.Loss) > 1e-5*w.Loss || math.Abs(g.GradNorm-w.GradNorm) > 1e-4*w.GradNorm ||
				math.IsNaN(w.ValLoss) != math.IsNaN(g.ValLoss) || (!math.IsNaN(w.ValLoss) && math.Abs(g.ValLoss-w.ValLoss) > 1e-5*w.ValLoss) {
				t.Fatalf("%s step %d: 2 ranks × 2 recorded %+v, 1 process × 4 %+v", s, w.Step, g, w)
			}
		}
		if v, _ := ref.LastValidation(); math.Abs(got[len(got)-1].ValLoss-v.Loss) > 1e-5*v.Loss {
			t.Fatalf("%s: final validation %v on 2 ranks, %v in one process", s, got[len(got)-1].ValLoss, v.Loss)
		}
		ck, err := checkpoint.Load(filepath.Join(out, "checkpoints", checkpoint.FileName(4)))
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range ref.params {
			w, err := ck.Weights[i].Float32s()
			if err != nil {
				t.Fatal(err)
			}
			for j := range w {
				if d := math.Abs(float64(w[j] - p.Data[j])); d > 2e-5 {
					t.Fatalf("%s: %s[%d] = %v on 2 ranks × 2, %v in 1 process × 4", s, p.Name, j, w[j], p.Data[j])
				}
			}
		}
		if ck.State.Extra["world_size"] != "2" || ck.State.Extra["global_micro_bsz"] != "4" {
			t.Fatalf("%s: checkpoint extra %v, want world_size 2, global_micro_bsz 4", s, ck.State.Extra)
		}
		for _, f := range []string{"metrics.jsonl", "loss.svg"} {
			if _, err := os.Stat(filepath.Join(out, f)); err != nil {
				t.Fatalf("%s: rank 0 did not write %s: %v", s, f, err)
			}
		}
	}
	// The checkpoint the 2 ranks wrote on their stop resumes in one process with micro_bsz 4
	// (the same global batch), and is refused with micro_bsz 2.
	stopped := filepath.Join(dir, data.SamplingRandom, "stopped", "checkpoints", checkpoint.FileName(2))
	one := dpConfig(trainPath, valPath, data.SamplingRandom, 4, t.TempDir())
	tr := newTrainer(t, one, Options{Resume: stopped})
	if tr.Step() != 2 {
		t.Fatalf("resumed in one process at step %d, want 2", tr.Step())
	}
	tr.Close()
	one.Train.MicroBsz = 2
	if _, err := New(one, nil, Options{Resume: stopped}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "global micro-batch of 4") {
		t.Fatalf("resuming 2 ranks × 2 in 1 process × 2: %v, want ErrConfig naming the global micro-batch", err)
	}
}

// dataParallelRank is one rank of TestDataParallelEqualsOneProcess.
func dataParallelRank(t *testing.T) {
	w, err := mpi.Init()
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 2 {
		t.Fatalf("world of %d, want 2", w.Size())
	}
	dir, trainPath, valPath := os.Getenv("RWKV_TEST_DP_DIR"), os.Getenv("RWKV_TEST_DP_TRAIN"), os.Getenv("RWKV_TEST_DP_VAL")
	for _, s := range dpSamplers {
		c := dpConfig(trainPath, valPath, s, 2, filepath.Join(dir, s, "out"))
		tr := newTrainer(t, c, Options{World: w})
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		sameOnAllRanks(t, w, s+" after 4 steps", tr)
		h := weightsHash(tr.params)
		v, _ := tr.LastValidation()
		tr.Close()

		// Stopped by a signal on rank 0 alone, during step 2: both ranks finish the step,
		// agree to stop, and rank 0 saves step 2; resuming gives the uninterrupted weights.
		c.OutDir = filepath.Join(dir, s, "stopped")
		first := newTrainer(t, c, Options{World: w})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if w.Rank() == 0 {
			first.loader = &cancelAfter{batchSource: first.loader, n: 2 * c.Train.GradAccum, cancel: cancel}
		}
		err := first.Run(ctx)
		var ie *InterruptedError
		if !errors.As(err, &ie) || ie.Step != 2 || ie.Checkpoint == "" {
			t.Fatalf("%s: rank %d: stopped run returned %v, want an interrupt at step 2 with a checkpoint", s, w.Rank(), err)
		}
		first.Close()
		second := newTrainer(t, c, Options{World: w, Resume: c.CheckpointDir()})
		if second.Step() != 2 {
			t.Fatalf("%s: rank %d resumed at step %d, want 2", s, w.Rank(), second.Step())
		}
		if err := second.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		if weightsHash(second.params) != h {
			t.Fatalf("%s: rank %d: weights after stop and resume differ from the uninterrupted run's", s, w.Rank())
		}
		if v2, _ := second.LastValidation(); v2.Loss != v.Loss {
			t.Fatalf("%s: validation %v after resume, %v uninterrupted", s, v2.Loss, v.Loss)
		}
		second.Close()
	}
	// train.max_tokens counts the global batch: 2 ranks × 2 × 32 tokens a step, as 1 × 4.
	c := dpConfig(trainPath, "", data.SamplingRandom, 2, filepath.Join(dir, "tokens"))
	c.Train.MaxSteps, c.Train.MaxTokens = 0, 1000
	tr := newTrainer(t, c, Options{World: w})
	if tr.TokensPerStep() != 128 || tr.Steps() != 8 {
		t.Fatalf("max_tokens 1000 on 2 ranks × micro_bsz 2 × ctx 32: %d tokens a step, %d steps; want 128, 8", tr.TokensPerStep(), tr.Steps())
	}
	tr.Close()
	if err := w.Finalize(); err != nil { // a rank that ends without it fails the job
		t.Fatal(err)
	}
}

// sameOnAllRanks fails unless every rank's weights hash to rank 0's: an allreduce of the hash
// (in two 32-bit halves, exact in float64) sums to size × this rank's only if all agree.
func sameOnAllRanks(t *testing.T, w *mpi.World, what string, tr *Trainer) {
	t.Helper()
	h := weightsHash(tr.params)
	mine := []float64{float64(h >> 32), float64(h & 0xffffffff)}
	sum := append([]float64(nil), mine...)
	if err := w.AllreduceSumFloat64(sum); err != nil {
		t.Fatal(err)
	}
	n := float64(w.Size())
	if sum[0] != n*mine[0] || sum[1] != n*mine[1] {
		t.Fatalf("%s: rank %d's weights differ from another rank's (hash %x)", what, w.Rank(), h)
	}
}

// killer SIGKILLs its process when batch n is drawn: a rank lost mid-run.
type killer struct {
	batchSource
	n int
}

func (k *killer) Next() *data.Batch {
	if k.n--; k.n == 0 {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}
	return k.batchSource.Next()
}

// TestKilledRankStopsTraining: when rank 1 is killed in the middle of a run, the job exits
// non-zero within seconds rather than leaving rank 0 waiting in the gradient allreduce, and the
// last checkpoint rank 0 wrote is intact.
func TestKilledRankStopsTraining(t *testing.T) {
	if mpitest.Child() {
		w, err := mpi.Init()
		if err != nil {
			t.Fatal(err)
		}
		c := dpConfig(os.Getenv("RWKV_TEST_DP_TRAIN"), "", data.SamplingRandom, 2, os.Getenv("RWKV_TEST_DP_DIR"))
		c.Train.MaxSteps, c.Checkpoint.Every = 1000, 2
		tr := newTrainer(t, c, Options{World: w})
		if w.Rank() == 1 {
			tr.loader = &killer{batchSource: tr.loader, n: 5}
		}
		err = tr.Run(context.Background())
		t.Fatalf("rank %d: Run returned %v although rank 1 was killed", w.Rank(), err)
	}
	mpitest.Mpirun(t)
	trainPath, _ := corpus(t)
	dir := t.TempDir()
	r := mpitest.Run(t, 2, "TestKilledRankStopsTraining", time.Minute, "RWKV_TEST_DP_DIR="+dir, "RWKV_TEST_DP_TRAIN="+trainPath)
	if r.Err == nil || strings.Contains(r.Err.Error(), "killed after") || r.Elapsed > 30*time.Second {
		t.Fatalf("after rank 1 was killed: %v in %v, want a non-zero exit within seconds\n%s", r.Err, r.Elapsed, r.Output)
	}
	path, err := checkpoint.Latest(filepath.Join(dir, "checkpoints"))
	if err != nil {
		t.Fatalf("no checkpoint after the kill: %v\n%s", err, r.Output)
	}
	if _, err := checkpoint.Load(path); err != nil {
		t.Fatalf("the last checkpoint is damaged: %v", err)
	}
	t.Logf("rank 1 killed at step 5: the job exited (%v) in %v; last checkpoint %s intact", r.Err, r.Elapsed.Round(time.Millisecond), filepath.Base(path))
}

// dpPEFTModes are the parameter-efficient runs of TestDataParallelPEFT: LoRA with dropout in
// chunks of 16 tokens (train.chunk_len, the masks of each chunk graph), PiSSA, and state
// tuning accumulating 2 micro-batches a step.
var dpPEFTModes = []string{PEFTLoRA, PEFTPiSSA, PEFTState}

// dpPEFTConfig is dpConfig fine-tuning the base file with mode (random sampling, 4 steps).
func dpPEFTConfig(trainPath, valPath, base, mode string, microBsz int, outDir string) Config {
	c := dpConfig(trainPath, valPath, data.SamplingRandom, microBsz, outDir)
	c.Model.Load = base
	c.PEFT.Mode, c.PEFT.LoRAR, c.PEFT.LoRAAlpha = mode, 4, 8
	c.Optim.LRInit, c.Optim.LRFinal = 1e-2, 1e-2
	switch mode {
	case PEFTLoRA:
		c.PEFT.LoRADropout, c.Train.ChunkLen = 0.2, 16
	case PEFTState:
		c.Train.GradAccum = 2
	}
	return c
}

// writeDPBase writes a base model of dpConfig's shape (RWKV-LM init plus noise); perturbed
// moves one frozen weight by 1e-3, a rank that loaded another file.
func writeDPBase(t *testing.T, path string, perturbed bool) {
	t.Helper()
	m, err := model.New(dpConfig("", "", data.SamplingRandom, 1, "").Model.Config, model.Float32)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7, 1e-3)
	for i, p := range m.Params {
		d := p.F32()
		for j := range d {
			d[j] += 0.02 * float32(math.Sin(float64(i*131+j)))
		}
	}
	if perturbed {
		m.Param("blocks.0.att.key.weight").F32()[3] += 1e-3
	}
	ts := weights.Tensors(m, checkpoint.F32)
	if err := checkpoint.WriteFileAtomic(path, func(w io.Writer) error { return checkpoint.ExportRWKV(w, ts, checkpoint.F32) }); err != nil {
		t.Fatal(err)
	}
}

// TestDataParallelPEFT: LoRA (dropout 0.2, chunked BPTT), PiSSA and state tuning on 2 ranks ×
// micro_bsz 2 train like 1 process × 4: the same losses and gradient norms, the same adapters
// (float tolerance), bitwise-identical adapters on both ranks, only the trained tensors in the
// checkpoint and the frozen base unchanged. Rank 1 loads a base that differs in one weight for
// the LoRA run: rank 0's is broadcast, so the run is still the one process's on rank 0's base.
func TestDataParallelPEFT(t *testing.T) {
	if mpitest.Child() {
		dataParallelPEFTRank(t)
		return
	}
	mpitest.Mpirun(t)
	trainPath, valPath := corpus(t)
	dir := t.TempDir()
	base, other := filepath.Join(dir, "base.safetensors"), filepath.Join(dir, "other.safetensors")
	writeDPBase(t, base, false)
	writeDPBase(t, other, true)
	out := mpitest.MustPass(t, 2, "TestDataParallelPEFT", 3*time.Minute,
		"RWKV_TEST_DP_DIR="+dir, "RWKV_TEST_DP_TRAIN="+trainPath, "RWKV_TEST_DP_VAL="+valPath)
	t.Logf("2 ranks:\n%s", out)
	for _, mode := range dpPEFTModes {
		ref := newTrainer(t, dpPEFTConfig(trainPath, valPath, base, mode, 4, t.TempDir()), Options{})
		if err := ref.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		runDir := filepath.Join(dir, mode)
		_, got, err := readMetrics(filepath.Join(runDir, "metrics.jsonl"), 100)
		if err != nil {
			t.Fatal(err)
		}
		want := ref.History()
		if len(got) < len(want) || len(want) != 4 {
			t.Fatalf("%s: rank 0 recorded %d steps, one process %d; want 4", mode, len(got), len(want))
		}
		for i, w := range want {
			g := got[i]
			if g.Step != w.Step || math.Abs(g.Loss-w.Loss) > 1e-5*w.Loss || math.Abs(g.GradNorm-w.GradNorm) > 1e-4*w.GradNorm {
				t.Fatalf("%s step %d: 2 ranks × 2 recorded %+v, 1 process × 4 %+v", mode, w.Step, g, w)
			}
		}
		if _, err := os.Stat(filepath.Join(runDir, filepath.Base(ref.AdapterFile()))); err != nil {
			t.Fatalf("%s: rank 0 wrote no adapter file: %v", mode, err)
		}
		ck, err := checkpoint.Load(filepath.Join(runDir, "checkpoints", checkpoint.FileName(4)))
		if err != nil {
			t.Fatal(err)
		}
		if len(ck.Weights) != len(ref.params) {
			t.Fatalf("%s: the checkpoint holds %d tensors, the run trains %d", mode, len(ck.Weights), len(ref.params))
		}
		for i, p := range ref.params {
			w, err := ck.Weights[i].Float32s()
			if err != nil {
				t.Fatal(err)
			}
			if ck.Weights[i].Name != p.Name {
				t.Fatalf("%s: checkpoint tensor %d is %s, want %s", mode, i, ck.Weights[i].Name, p.Name)
			}
			for j := range w {
				if d := math.Abs(float64(w[j] - p.Data[j])); d > 2e-5 {
					t.Fatalf("%s: %s[%d] = %v on 2 ranks × 2, %v in 1 process × 4", mode, p.Name, j, w[j], p.Data[j])
				}
			}
		}
	}
}

// dataParallelPEFTRank is one rank of TestDataParallelPEFT.
func dataParallelPEFTRank(t *testing.T) {
	w, err := mpi.Init()
	if err != nil {
		t.Fatal(err)
	}
	dir, trainPath, valPath := os.Getenv("RWKV_TEST_DP_DIR"), os.Getenv("RWKV_TEST_DP_TRAIN"), os.Getenv("RWKV_TEST_DP_VAL")
	base := filepath.Join(dir, "base.safetensors")
	// The frozen base as loaded from base.safetensors (PiSSA's W_res, computed on each rank).
	ref := map[string]uint64{}
	for _, mode := range dpPEFTModes {
		c := dpPEFTConfig(trainPath, valPath, base, mode, 2, filepath.Join(dir, "load", mode))
		tr := newTrainer(t, c, Options{World: w})
		ref[mode] = frozenOf(tr)
		tr.Close()
	}
	for _, mode := range dpPEFTModes {
		c := dpPEFTConfig(trainPath, valPath, base, mode, 2, filepath.Join(dir, mode))
		if mode == PEFTLoRA && w.Rank() == 1 {
			c.Model.Load = filepath.Join(dir, "other.safetensors")
		}
		tr := newTrainer(t, c, Options{World: w})
		want := 0 // identical loads: nothing to broadcast
		if mode == PEFTLoRA {
			want = 1
		}
		if tr.frozenBcasts != want {
			t.Fatalf("%s: rank %d broadcast the frozen base %d times", mode, w.Rank(), tr.frozenBcasts)
		}
		if h := frozenOf(tr); h != ref[mode] {
			t.Fatalf("%s: rank %d's frozen base is not rank 0's base file's", mode, w.Rank())
		}
		if err := tr.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		sameOnAllRanks(t, w, mode+" after 4 steps", tr)
		if h := frozenOf(tr); h != ref[mode] {
			t.Fatalf("%s: rank %d: training changed the frozen base", mode, w.Rank())
		}
		tr.Close()
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
}

// frozenOf hashes the trainer's frozen tensors.
func frozenOf(tr *Trainer) uint64 {
	var ps []*model.Param
	for _, p := range tr.Model.Params {
		if tr.Model.Frozen(p.Name) {
			ps = append(ps, p)
		}
	}
	return frozenHash(ps)
}
