// Package train runs RWKV training jobs: the loop (gradient accumulation, clipping, AdamW, the
// NaN guard), periodic validation, checkpoints and resume, progress and metrics. A job is one
// Config; cmd/rwkv-train fills it from YAML, flags and environment.
package train

import (
	"errors"
	"fmt"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
)

// Config is a whole training job. Keys follow RWKV-LM's train.py names where one exists.
type Config struct {
	Model      ModelConfig      `mapstructure:"model" yaml:"model"`
	Data       data.Config      `mapstructure:"data" yaml:"data"`
	Optim      optim.Config     `mapstructure:"optim" yaml:"optim"`
	Train      LoopConfig       `mapstructure:"train" yaml:"train"`
	Checkpoint CheckpointConfig `mapstructure:"checkpoint" yaml:"checkpoint"`
	PEFT       PEFTConfig       `mapstructure:"peft" yaml:"peft"`
	// OutDir receives metrics.jsonl, the loss plot, the exported model and, by default, checkpoints.
	OutDir string `mapstructure:"out_dir" yaml:"out_dir"`
}

// ModelConfig is the model section: the shape, and weights to start from (fine-tuning).
type ModelConfig struct {
	model.Config `mapstructure:",squash" yaml:",inline"`
	// Load is a weights file (RWKV-LM .pth, safetensors, a checkpoint) to start from; empty means
	// RWKV-LM initialisation from train.seed.
	Load string `mapstructure:"load" yaml:"load"`
}

// LoopConfig is the train section.
type LoopConfig struct {
	MicroBsz  int `mapstructure:"micro_bsz" yaml:"micro_bsz"`
	GradAccum int `mapstructure:"grad_accum" yaml:"grad_accum"`
	// MaxSteps bounds the run in optimiser steps; MaxTokens in tokens (one of them is needed).
	MaxSteps  int    `mapstructure:"max_steps" yaml:"max_steps"`
	MaxTokens int64  `mapstructure:"max_tokens" yaml:"max_tokens"`
	Seed      uint64 `mapstructure:"seed" yaml:"seed"`
	// EvalEvery runs validation every N steps (0: only at the end); EvalTokens bounds it (0: the
	// whole validation file).
	EvalEvery  int   `mapstructure:"eval_every" yaml:"eval_every"`
	EvalTokens int64 `mapstructure:"eval_tokens" yaml:"eval_tokens"`
	LogEvery   int   `mapstructure:"log_every" yaml:"log_every"`
	L2Wrap     bool  `mapstructure:"l2wrap" yaml:"l2wrap"`
	// MaxBadSteps stops the run after this many non-finite steps in a row.
	MaxBadSteps int `mapstructure:"max_bad_steps" yaml:"max_bad_steps"`
	// ChunkLen > 0 processes each ctx_len sample in chunks of this many tokens with the
	// recurrent state carried between them (unbounded-context training); 0 means one pass.
	ChunkLen int `mapstructure:"chunk_len" yaml:"chunk_len"`
	// BPTT is "exact" (gradients of one pass over the sample; memory of one chunk) or
	// "truncated" (no gradient through chunk borders; faster).
	BPTT string `mapstructure:"bptt" yaml:"bptt"`
}

// CheckpointConfig is the checkpoint section.
type CheckpointConfig struct {
	Dir   string `mapstructure:"dir" yaml:"dir"`     // default out_dir/checkpoints
	Every int    `mapstructure:"every" yaml:"every"` // steps between checkpoints; 0: only at the end
	Keep  int    `mapstructure:"keep" yaml:"keep"`   // how many to keep; 0: all
}

// DefaultConfig holds every default in one place (nanoGPT style); a YAML file overrides a subset.
func DefaultConfig() Config {
	return Config{
		Model:      ModelConfig{Config: model.Config{Arch: arch.X040, Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256}},
		Data:       data.Config{Sampling: "random"},
		Optim:      optim.DefaultConfig(),
		Train:      LoopConfig{MicroBsz: 8, GradAccum: 1, Seed: 42, LogEvery: 10, L2Wrap: true, MaxBadSteps: 5, BPTT: BPTTExact},
		Checkpoint: CheckpointConfig{Every: 0, Keep: 3},
		PEFT:       DefaultPEFTConfig(),
		OutDir:     "out",
	}
}

// ErrConfig is wrapped by every validation error of a training config.
var ErrConfig = errors.New("invalid config")

// Validate reports every problem, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrConfig}, a...)...))
	}
	if err := c.Model.Config.Validate(); err != nil {
		errs = append(errs, err)
	} else if err := c.Model.Arch.CheckSupported(); err != nil {
		// arch.Supported is what the trainer has a recipe for (x040, x052, x060, x070).
		errs = append(errs, fmt.Errorf("%w: model.arch = %q: %w", model.ErrConfig, string(c.Model.Arch), err))
	}
	// A dimension of 1 makes a [1, n] weight that the tensor library folds to a vector, so
	// building the graph fails later; refuse it here, naming the key.
	if c.Model.FFN == 1 {
		bad("model.dim_ffn = 1: must be at least 2 (or 0 for 4*n_embd)")
	}
	if c.Model.Vocab == 1 {
		bad("model.vocab_size = 1: must be at least 2")
	}
	sizesOK := c.Train.MicroBsz > 0 && c.Train.GradAccum > 0 && c.Model.CtxLen > 0
	if sizesOK && float64(c.Train.MicroBsz)*float64(c.Train.GradAccum)*float64(c.Model.CtxLen) > maxTokensPerStep {
		bad("train.micro_bsz × train.grad_accum × model.ctx_len = %d × %d × %d tokens per step: more than %g; lower them",
			c.Train.MicroBsz, c.Train.GradAccum, c.Model.CtxLen, float64(maxTokensPerStep))
		sizesOK = false
	}
	if err := c.Data.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	optimCfg := c.Optim
	if optimCfg.TotalSteps == 0 { // the schedule spans the run unless optim.total_steps says otherwise
		optimCfg.TotalSteps = 1
		if sizesOK && c.Train.MaxTokens >= 0 && c.Train.MaxSteps >= 0 {
			optimCfg.TotalSteps = max(c.Steps(), 1)
		}
	}
	if err := optimCfg.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrConfig, err))
	}
	t := c.Train
	if t.MicroBsz <= 0 {
		bad("train.micro_bsz = %d: must be positive", t.MicroBsz)
	}
	if t.GradAccum <= 0 {
		bad("train.grad_accum = %d: must be positive", t.GradAccum)
	}
	if t.MaxSteps < 0 || t.MaxTokens < 0 {
		bad("train.max_steps = %d, train.max_tokens = %d: must not be negative", t.MaxSteps, t.MaxTokens)
	}
	if t.MaxSteps == 0 && t.MaxTokens == 0 {
		bad("train.max_steps and train.max_tokens are both 0: set one of them")
	}
	if t.MaxSteps > 0 && t.MaxTokens > 0 {
		bad("train.max_steps = %d and train.max_tokens = %d: set only one of them", t.MaxSteps, t.MaxTokens)
	}
	if t.EvalEvery < 0 || t.EvalTokens < 0 || t.LogEvery < 0 {
		bad("train.eval_every, train.eval_tokens and train.log_every must not be negative")
	}
	if t.ChunkLen < 0 || t.ChunkLen > c.Model.CtxLen {
		bad("train.chunk_len = %d: must be in [0, model.ctx_len = %d]", t.ChunkLen, c.Model.CtxLen)
	}
	if t.BPTT != BPTTExact && t.BPTT != BPTTTruncated {
		bad("train.bptt = %q: want %q or %q", t.BPTT, BPTTExact, BPTTTruncated)
	}
	if t.MaxBadSteps <= 0 {
		bad("train.max_bad_steps = %d: must be positive", t.MaxBadSteps)
	}
	if c.Checkpoint.Every < 0 || c.Checkpoint.Keep < 0 {
		bad("checkpoint.every = %d, checkpoint.keep = %d: must not be negative", c.Checkpoint.Every, c.Checkpoint.Keep)
	}
	errs = append(errs, c.PEFT.validate(c)...)
	if strings.TrimSpace(c.OutDir) == "" {
		bad("out_dir is empty")
	}
	if len(errs) == 0 {
		if err := c.checkMemory(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// maxTokensPerStep bounds micro_bsz × grad_accum × ctx_len so that token counts stay far from
// int64 overflow (Steps divides by it).
const maxTokensPerStep = 1 << 50

// TokensPerStep is micro_bsz * grad_accum * ctx_len.
func (c Config) TokensPerStep() int64 {
	return int64(c.Train.MicroBsz) * int64(c.Train.GradAccum) * int64(c.Model.CtxLen)
}

// Steps is the number of optimiser steps of the run: max_steps, or max_tokens rounded up to
// whole steps.
func (c Config) Steps() int {
	if c.Train.MaxSteps > 0 {
		return c.Train.MaxSteps
	}
	if c.TokensPerStep() <= 0 { // not validated: no step count to give
		return 0
	}
	return int((c.Train.MaxTokens + c.TokensPerStep() - 1) / c.TokensPerStep())
}

// CheckpointDir is checkpoint.dir, defaulting to out_dir/checkpoints.
func (c Config) CheckpointDir() string {
	if c.Checkpoint.Dir != "" {
		return c.Checkpoint.Dir
	}
	return strings.TrimRight(c.OutDir, "/") + "/checkpoints"
}
