package train

import (
	"fmt"
	"math"

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
	for i := range t.params {
		clear(t.params[i].Grad)
	}
	var res StepResult
	for a := 0; a < accum; a++ {
		b := t.loader.Next()
		if err := t.graph.SetTokens(b.X, b.Y); err != nil {
			return res, err
		}
		if err := t.graph.Run(); err != nil {
			return res, err
		}
		res.Loss += t.graph.Loss() / float64(accum)
		scale := float32(1 / float64(accum))
		for i := range t.params {
			g := t.graph.Grad(i).Data().([]float32)
			acc := t.params[i].Grad
			for j, v := range g {
				acc[j] += v * scale
			}
		}
	}
	t.tokens += t.cfg.TokensPerStep()
	res.GradNorm = optim.GradNorm(t.params)
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
	if t.cfg.Optim.GradClip > 0 {
		optim.ClipGlobalNorm(t.params, t.cfg.Optim.GradClip)
	}
	t.opt.Step(lr)
	t.step++
	return res, nil
}
