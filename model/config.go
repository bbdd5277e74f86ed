// Package model is RWKV-4 (arch x040): its configuration, parameters with RWKV-LM's names and
// shapes (package arch's layout), RWKV-LM initialisation, the parallel (training) form as a
// Gorgonia graph built from fused custom ops, and the recurrent (one token at a time) form in
// plain Go. It knows nothing of training. Gorgonia stays inside: other packages use the typed
// views (DType, Param.F32, Graph.LogitsF32, Graph.GradF32, State).
package model

import (
	"errors"
	"fmt"

	"github.com/rwkv-go/rwkv-go/arch"
)

// Config is the architecture and shape of a model. Keys follow RWKV-LM's train.py arguments.
type Config struct {
	// Arch is the architecture, RWKV-LM's module version: "x040" (RWKV-4, the default; the
	// zero value means it too). Only x040 can be built so far.
	Arch   arch.Arch `mapstructure:"arch" yaml:"arch" json:"arch"`
	Layers int       `mapstructure:"n_layer" yaml:"n_layer" json:"n_layer"`
	Embd   int       `mapstructure:"n_embd" yaml:"n_embd" json:"n_embd"`
	Vocab  int       `mapstructure:"vocab_size" yaml:"vocab_size" json:"vocab_size"`
	CtxLen int       `mapstructure:"ctx_len" yaml:"ctx_len" json:"ctx_len"`
	// FFN is the channel-mix hidden size; 0 means 4*Embd, as in RWKV-LM.
	FFN int `mapstructure:"dim_ffn" yaml:"dim_ffn" json:"dim_ffn"`
}

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid model config")

// DimFFN is the channel-mix hidden size with the default applied.
func (c Config) DimFFN() int {
	if c.FFN == 0 {
		return 4 * c.Embd
	}
	return c.FFN
}

// Dims are the sizes of the model's tensors, the key to its layout (arch.Dims.Layout).
func (c Config) Dims() arch.Dims {
	return arch.Dims{Arch: c.Arch.Resolve(), Vocab: c.Vocab, Embd: c.Embd, FFN: c.DimFFN(), Layers: c.Layers}
}

// ConfigOf is the config of a model with the sizes d (as arch.Infer reads them from a file)
// and context length ctxLen, which weights files do not store.
func ConfigOf(d arch.Dims, ctxLen int) Config {
	return Config{Arch: d.Arch.Resolve(), Layers: d.Layers, Embd: d.Embd, Vocab: d.Vocab, CtxLen: ctxLen, FFN: d.FFN}
}

// Validate reports every problem with the configuration, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, v int, why string) {
		errs = append(errs, fmt.Errorf("%w: model.%s = %d: %s", ErrConfig, key, v, why))
	}
	switch a := c.Arch.Resolve(); {
	case a.IsSupported():
	case a == arch.X070:
		errs = append(errs, fmt.Errorf("%w: model.arch = %q: RWKV-7 is coming but cannot be built yet; use x040 (RWKV-4)", ErrConfig, string(c.Arch)))
	default:
		errs = append(errs, fmt.Errorf("%w: model.arch = %q: unknown architecture; use x040 (RWKV-4)", ErrConfig, string(c.Arch)))
	}
	if c.Layers <= 0 {
		bad("n_layer", c.Layers, "must be positive")
	}
	if c.Embd <= 0 {
		bad("n_embd", c.Embd, "must be positive")
	} else if c.Embd%32 != 0 {
		bad("n_embd", c.Embd, "must be a multiple of 32, as in RWKV-LM")
	}
	if c.Vocab <= 0 {
		bad("vocab_size", c.Vocab, "must be positive")
	}
	if c.CtxLen <= 0 {
		bad("ctx_len", c.CtxLen, "must be positive")
	}
	if c.FFN < 0 {
		bad("dim_ffn", c.FFN, "must be positive, or 0 for 4*n_embd")
	}
	return errors.Join(errs...)
}

// String is the short form used in logs: "L12-D768-V50277 ctx1024", prefixed by the
// architecture when it is not the default ("x070 L12-...").
func (c Config) String() string {
	s := fmt.Sprintf("L%d-D%d-V%d ctx%d", c.Layers, c.Embd, c.Vocab, c.CtxLen)
	if a := c.Arch.Resolve(); a != arch.X040 {
		s = string(a) + " " + s
	}
	if c.FFN != 0 && c.FFN != 4*c.Embd {
		s += fmt.Sprintf(" ffn%d", c.FFN)
	}
	return s
}
