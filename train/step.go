package train

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
)

// StepResult is what one optimiser step reports.
type StepResult struct {
	Loss     float64 // mean over the step's micro-batches
	GradNorm float64 // global gradient norm before clipping
	Skipped  bool    // a non-finite loss or gradient: no update was made
}

// errStepAbandoned is returned by trainStep when its context was cancelled between two
// micro-batches: no update was made and the data loader is back where the step began.
var errStepAbandoned = errors.New("step abandoned")

// TrainStep runs one optimiser step at learning rate lr: grad_accum micro-batches whose
// gradients are averaged, the NaN/Inf guard, global-norm clipping and AdamW.
func (t *Trainer) TrainStep(lr float64) (StepResult, error) {
	return t.trainStep(context.Background(), lr)
}

// trainStep is TrainStep that checks ctx between micro-batches. On cancellation it abandons
// the step (no update, the sampler rewound to the step's start) and returns errStepAbandoned,
// so a checkpoint written then is the last completed step's and resume stays exact.
func (t *Trainer) trainStep(ctx context.Context, lr float64) (StepResult, error) {
	accum := t.cfg.Train.GradAccum
	var res StepResult
	var ctl *model.LoRAControl
	if t.cfg.PEFT.On() { // LoRA dropout: on while training, masks drawn from the step
		ctl = t.Model.LoRAControl()
		// Rank r's rows of a micro-batch are rows [r·B, (r+1)·B) of the global one (data.ShardSampler):
		// Shard makes them draw those rows' masks, so N ranks equal one process with N·B.
		ctl.Train, ctl.Step, ctl.Shard = true, uint64(t.step), uint64(t.world.Rank())
		defer func() { ctl.Train = false }()
	}
	var start []byte // the sampler's state before this step's first micro-batch
	if !t.directGrads() {
		var err error
		if start, err = t.loader.State(); err != nil {
			return res, err
		}
	}
	if t.directGrads() {
		loss, err := t.directBatch(t.loader.Next())
		if err != nil {
			return res, err
		}
		res.Loss = loss
		accum = 0
	} else {
		for i := range t.params {
			clear(t.params[i].Grad)
		}
	}
	for a := 0; a < accum; a++ {
		if ctl != nil { // each micro-batch of the step its own masks, the same on resume
			ctl.Step = uint64(t.step)*uint64(accum) + uint64(a)
		}
		// On several ranks the stop is agreed between steps (Run), never inside one.
		if a > 0 && t.world.Size() == 1 && ctx.Err() != nil {
			if err := t.loader.SetState(start); err != nil {
				return res, fmt.Errorf("rewinding the data to the start of the abandoned step: %w", err)
			}
			return StepResult{}, errStepAbandoned
		}
		loss, err := t.microBatch(t.loader.Next(), 1/float64(accum))
		if err != nil {
			return res, err
		}
		res.Loss += loss / float64(accum)
	}
	if t.world.Size() > 1 {
		if err := t.reduceGrads(&res); err != nil {
			return res, err
		}
	}
	t.tokens += t.tokensPerStep()
	// Clipping measures the norm itself; a non-finite norm leaves nothing to update, so scaling
	// the (about to be discarded) gradient by it does no harm.
	if t.cfg.Optim.GradClip > 0 {
		res.GradNorm = optim.ClipGlobalNorm(t.params, t.cfg.Optim.GradClip)
	} else {
		res.GradNorm = optim.GradNorm(t.params)
	}
	if math.IsNaN(res.Loss) || math.IsInf(res.Loss, 0) || math.IsInf(res.GradNorm, 0) || math.IsNaN(res.GradNorm) {
		res.Skipped = true
		t.badInRow++
		t.badTotal++
		t.step++
		t.log.Warn("non-finite step skipped", "step", t.step, "loss", res.Loss, "grad_norm", res.GradNorm,
			"in_a_row", t.badInRow, "total", t.badTotal)
		if t.badInRow >= t.cfg.Train.MaxBadSteps {
			return res, fmt.Errorf("%w at step %d: %d non-finite steps in a row (train.max_bad_steps); %s; lower optim.lr_init or check the data",
				ErrDiverged, t.step, t.badInRow, t.lastGoodNote())
		}
		return res, nil
	}
	t.badInRow = 0
	t.opt.Step(lr)
	t.step++
	if name, ok := t.nonFiniteWeight(); !ok {
		t.diverged = true
		return res, fmt.Errorf("%w at step %d: the update made %s non-finite (loss %.4g, gradient norm %.4g, lr %.3g); %s; lower optim.lr_init",
			ErrDiverged, t.step, name, res.Loss, res.GradNorm, lr, t.lastGoodNote())
	}
	return res, nil
}

// nonFiniteWeight scans the weights after an update; ok is false, with the first tensor's
// name, when one holds a NaN or an Inf. One read pass: small next to the step's graph.
func (t *Trainer) nonFiniteWeight() (name string, ok bool) {
	for _, p := range t.params {
		// v - v is 0 for a finite v and NaN for NaN and ±Inf; four sums hide the add latency.
		var s0, s1, s2, s3 float32
		d := p.Data
		i := 0
		for ; i+4 <= len(d); i += 4 {
			s0 += d[i] - d[i]
			s1 += d[i+1] - d[i+1]
			s2 += d[i+2] - d[i+2]
			s3 += d[i+3] - d[i+3]
		}
		for ; i < len(d); i++ {
			s0 += d[i] - d[i]
		}
		if s0+s1+s2+s3 != 0 {
			return p.Name, false
		}
	}
	return "", true
}

// lastGoodNote names the last checkpoint with finite weights outside a non-finite streak.
func (t *Trainer) lastGoodNote() string {
	if t.lastGood == "" {
		return "no checkpoint has been written by this run"
	}
	return "the last good checkpoint is " + t.lastGood
}

// directBatch runs one micro-batch and points the optimiser's gradients at the graph's.
func (t *Trainer) directBatch(b *data.Batch) (float64, error) {
	if err := b.Err(); err != nil { // a data file truncated during the run
		return 0, err
	}
	if err := t.graph.SetTokens(b.X, b.Y); err != nil {
		return 0, err
	}
	if err := t.graph.Run(); err != nil {
		return 0, err
	}
	for i := range t.params {
		g := t.graph.GradF32(t.pidx[i])
		t.params[i].Grad = g
		if err := t.opt.SetGrad(i, g); err != nil {
			return 0, err
		}
	}
	return t.graph.Loss(), nil
}

// microBatch adds scale times the gradient of one micro-batch's loss to the parameters'
// gradient buffers and returns the loss.
func (t *Trainer) microBatch(b *data.Batch, scale float64) (float64, error) {
	if err := b.Err(); err != nil { // a data file truncated during the run
		return 0, err
	}
	add := func(g *model.Graph, i int, w float64) {
		if t.slot[i] < 0 { // frozen
			return
		}
		s := float32(w * scale)
		acc := t.params[t.slot[i]].Grad
		for j, v := range g.GradF32(i) {
			acc[j] += v * s
		}
	}
	if t.chunks != nil {
		return t.chunks.run(b.X, b.Y, add)
	}
	if err := t.graph.SetTokens(b.X, b.Y); err != nil {
		return 0, err
	}
	if err := t.graph.Run(); err != nil {
		return 0, err
	}
	for _, i := range t.pidx {
		add(t.graph, i, 1)
	}
	return t.graph.Loss(), nil
}
