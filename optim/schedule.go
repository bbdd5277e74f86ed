package optim

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Schedule kinds, the values of optim.schedule.
const (
	Exp      = "exp"      // RWKV-LM: geometric lr_init -> lr_final (linear when either is 0)
	Cosine   = "cosine"   // half cosine lr_init -> lr_final
	Linear   = "linear"   // straight line lr_init -> lr_final
	Constant = "constant" // lr_init throughout (after warmup)
	// CosineV7 is RWKV-LM RWKV-v7 train_temp's schedule (cosine in tokens, --my_exit_tokens):
	// the half cosine lr_init -> lr_final over the steps after warmup, with its own warmup
	// factor 0.01 + 0.99*step/warmup.
	CosineV7 = "cosine_v7"
	// ExpV5 is RWKV-LM RWKV-v5 trainer's default schedule (x052, x060 and their state
	// tuning): Exp's geometric lr_init -> lr_final, with RWKV-v5's warmup factor
	// 0.01 + 0.99*step/warmup. RWKV-v5's cosine-in-tokens schedule (--my_exit_tokens) is
	// CosineV7.
	ExpV5 = "exp_v5"
)

var kinds = []string{Exp, Cosine, Linear, Constant, CosineV7, ExpV5}

// ScheduleConfig selects and shapes the learning-rate schedule.
type ScheduleConfig struct {
	Kind        string  `mapstructure:"schedule"`
	LRInit      float64 `mapstructure:"lr_init"`
	LRFinal     float64 `mapstructure:"lr_final"`
	WarmupSteps int     `mapstructure:"warmup_steps"`
	TotalSteps  int     `mapstructure:"total_steps"`
}

// DefaultScheduleConfig returns RWKV-LM's defaults: exponential 6e-4 ->
// 1e-5, no warmup. TotalSteps is left 0; the trainer must set it (usually
// to its number of steps) for any kind but constant.
func DefaultScheduleConfig() ScheduleConfig {
	return ScheduleConfig{Kind: Exp, LRInit: 6e-4, LRFinal: 1e-5}
}

// Validate reports every invalid field, naming it by its optim.* key.
func (c ScheduleConfig) Validate() error {
	var errs []error
	known := false
	for _, k := range kinds {
		known = known || c.Kind == k
	}
	if !known {
		errs = append(errs, fmt.Errorf("optim.schedule: unknown kind %q (want one of %s)",
			c.Kind, strings.Join(kinds, ", ")))
	}
	if !(c.LRInit >= 0) || math.IsInf(c.LRInit, 1) {
		errs = append(errs, fmt.Errorf("optim.lr_init must be finite and >= 0, got %v", c.LRInit))
	}
	if !(c.LRFinal >= 0) || math.IsInf(c.LRFinal, 1) {
		errs = append(errs, fmt.Errorf("optim.lr_final must be finite and >= 0, got %v", c.LRFinal))
	}
	if c.WarmupSteps < 0 {
		errs = append(errs, fmt.Errorf("optim.warmup_steps must be >= 0, got %d", c.WarmupSteps))
	}
	switch {
	case c.TotalSteps < 0:
		errs = append(errs, fmt.Errorf("optim.total_steps must be >= 0, got %d", c.TotalSteps))
	case c.TotalSteps == 0 && c.Kind != Constant:
		errs = append(errs, fmt.Errorf("optim.total_steps must be positive for schedule %q", c.Kind))
	case c.WarmupSteps > c.TotalSteps && c.Kind != Constant:
		errs = append(errs, fmt.Errorf("optim.warmup_steps (%d) exceeds optim.total_steps (%d)",
			c.WarmupSteps, c.TotalSteps))
	}
	return errors.Join(errs...)
}

// Schedule maps a step to a learning rate. It is a value; LR is a pure
// function of the step.
type Schedule struct{ cfg ScheduleConfig }

// NewSchedule validates cfg and returns its schedule.
func NewSchedule(cfg ScheduleConfig) (Schedule, error) {
	if err := cfg.Validate(); err != nil {
		return Schedule{}, err
	}
	return Schedule{cfg: cfg}, nil
}

// Config returns the configuration the schedule was built from.
func (s Schedule) Config() ScheduleConfig { return s.cfg }

// LR returns the learning rate at step (counted from 0; negative steps
// count as 0), as RWKV-LM's trainer.py computes it. For exp, cosine,
// linear and constant (RWKV-v4neo's trainer), and exp_v5 (RWKV-v5's, for x052 and x060):
//
//	progress = clamp((step - warmup + 1) / (total - warmup), 0, 1)
//	lr       = curve(progress)
//	lr      *= 0.2 + 0.8*step/warmup    while step < warmup (exp_v5: 0.01 + 0.99*step/warmup)
//
// The exp curve is lr_init*exp(ln(lr_final/lr_init)*progress), linear
// when either end is 0 and constant when they are equal. When total ==
// warmup, progress is 0 before step warmup and 1 from it on.
//
// cosine_v7 is RWKV-v7's (train_temp trainer.py with my_exit_tokens, in
// steps, which is tokens over a fixed number of tokens a step), and RWKV-v5's with
// my_exit_tokens > 0:
//
//	progress = clamp((step - warmup) / (total - warmup), 0, 1)
//	lr       = lr_final + (lr_init - lr_final)*(1 + cos(pi*progress))/2
//	lr      *= 0.01 + 0.99*step/warmup  while step < warmup
func (s Schedule) LR(step int) float64 {
	c := s.cfg
	step = max(step, 0)
	num := step - c.WarmupSteps + 1
	if c.Kind == CosineV7 {
		num = step - c.WarmupSteps
	}
	progress := 0.0
	if num > 0 || c.Kind == CosineV7 && num == 0 && c.TotalSteps == c.WarmupSteps {
		if den := c.TotalSteps - c.WarmupSteps; den > 0 {
			progress = min(1, float64(num)/float64(den))
		} else {
			progress = 1
		}
	}
	a, b := c.LRInit, c.LRFinal
	var lr float64
	switch c.Kind {
	case Constant:
		lr = a
	case Linear:
		lr = a + (b-a)*progress
	case Cosine, CosineV7:
		lr = b + 0.5*(a-b)*(1+math.Cos(math.Pi*progress))
	default: // Exp, ExpV5
		switch {
		case a == b:
			lr = a
		case a == 0 || b == 0:
			lr = a + (b-a)*progress
		default:
			lr = a * math.Exp(math.Log(b/a)*progress)
		}
	}
	if step < c.WarmupSteps {
		if c.Kind == CosineV7 || c.Kind == ExpV5 {
			lr *= 0.01 + 0.99*float64(step)/float64(c.WarmupSteps)
		} else {
			lr *= 0.2 + 0.8*float64(step)/float64(c.WarmupSteps)
		}
	}
	return lr
}
