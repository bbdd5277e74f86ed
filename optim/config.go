package optim

import (
	"errors"
	"fmt"
	"math"
)

// Config is the optim section of a training recipe: schedule, AdamW
// hyper-parameters, clipping and parameter groups. Its mapstructure tags
// give the YAML keys under optim: (schedule, lr_init, lr_final,
// warmup_steps, total_steps, beta1, beta2, adam_eps, weight_decay, grad_clip,
// layerwise_lr).
type Config struct {
	ScheduleConfig `mapstructure:",squash"`
	AdamWConfig    `mapstructure:",squash"`
	// GradClip is the max global gradient norm; 0 disables clipping.
	GradClip float64 `mapstructure:"grad_clip"`
	// LayerwiseLR turns on RWKV-LM's time_decay x2, time_first x3.
	LayerwiseLR bool `mapstructure:"layerwise_lr"`
}

// DefaultConfig returns RWKV-LM's defaults: exp 6e-4 -> 1e-5, betas (0.9,
// 0.99), eps 1e-8, no weight decay, clip 1.0, layerwise lr on.
// TotalSteps is 0 and must be set before Validate.
func DefaultConfig() Config {
	return Config{
		ScheduleConfig: DefaultScheduleConfig(),
		AdamWConfig:    DefaultAdamWConfig(),
		GradClip:       1.0,
		LayerwiseLR:    true,
	}
}

// Validate reports every invalid field, naming it by its optim.* key.
func (c Config) Validate() error {
	var clip error
	if !(c.GradClip >= 0) || math.IsInf(c.GradClip, 1) {
		clip = fmt.Errorf("optim.grad_clip must be finite and >= 0, got %v", c.GradClip)
	}
	return errors.Join(c.ScheduleConfig.Validate(), c.AdamWConfig.Validate(), clip)
}
