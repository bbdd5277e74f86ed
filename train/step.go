package train

import (
	"fmt"
	"math"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/optim"
)

// StepResult is what one optimiser step reports.
type StepResult struct {
	Loss     float64 // mean over the step's micro-batches
	GradNorm float64 // global gradient norm before clipping
	Skipped  bool    // a non-finite loss or gradient: no update was made
}

// TrainStep runs one optimiser step at learning rate lr: grad_accum micro-batches whose
// gradients are averaged, the NaN/Inf guard, global-norm clipping and AdamW.
func (t *Trainer) TrainStep(lr float64) (StepResult, error) {
	accum := t.cfg.Train.GradAccum
	var res StepResult
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
		loss, err := t.microBatch(t.loader.Next(), 1/float64(accum))
		if err != nil {
			return res, err
		}
		res.Loss += loss / float64(accum)
	}
	t.tokens += t.cfg.TokensPerStep()
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
			return res, fmt.Errorf("%w: %d non-finite steps in a row (train.max_bad_steps); lower optim.lr_init or check the data", ErrDiverged, t.badInRow)
		}
		return res, nil
	}
	t.badInRow = 0
	t.opt.Step(lr)
	t.step++
	return res, nil
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
		g := t.graph.Grad(i).Data().([]float32)
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
	add := func(i int, g *tensor.Dense, w float64) {
		s := float32(w * scale)
		acc := t.params[i].Grad
		for j, v := range g.Data().([]float32) {
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
	for i := range t.params {
		add(i, t.graph.Grad(i), 1)
	}
	return t.graph.Loss(), nil
}
