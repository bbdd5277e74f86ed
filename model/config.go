// Package model is RWKV-4 (arch x040) and RWKV-7 (arch x070): its configuration, parameters with RWKV-LM's names and
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
	// zero value means it too) or "x070" (RWKV-7).
	Arch   arch.Arch `mapstructure:"arch" yaml:"arch" json:"arch"`
	Layers int       `mapstructure:"n_layer" yaml:"n_layer" json:"n_layer"`
	Embd   int       `mapstructure:"n_embd" yaml:"n_embd" json:"n_embd"`
	Vocab  int       `mapstructure:"vocab_size" yaml:"vocab_size" json:"vocab_size"`
	CtxLen int       `mapstructure:"ctx_len" yaml:"ctx_len" json:"ctx_len"`
	// FFN is the channel-mix hidden size; 0 means 4*Embd, as in RWKV-LM.
	FFN int `mapstructure:"dim_ffn" yaml:"dim_ffn" json:"dim_ffn"`

	// x070 only (zero for x040).

	// HeadSize is the WKV-7 head size N (H = n_embd/N heads); 0 means 64, as in RWKV-LM.
	HeadSize int `mapstructure:"head_size" yaml:"head_size" json:"head_size"`
	// LoRA widths of the decay (att.w1 [C,Dw]), in-context rate (a1), value residual (v1) and
	// gate (g1); 0 means current RWKV-LM's rule for n_embd (arch.DefaultLoRA). Loading a file
	// takes them from its tensors.
	DimDecay int `mapstructure:"d_decay_lora" yaml:"d_decay_lora" json:"d_decay_lora"`
	DimAAA   int `mapstructure:"d_aaa_lora" yaml:"d_aaa_lora" json:"d_aaa_lora"`
	DimMV    int `mapstructure:"d_mv_lora" yaml:"d_mv_lora" json:"d_mv_lora"`
	DimGate  int `mapstructure:"d_gate_lora" yaml:"d_gate_lora" json:"d_gate_lora"`
	// NoV0Layer0 drops layer 0's v0/v1/v2, which it never uses. RWKV-LM creates them (the
	// default, false); FLA's files do not have them.
	NoV0Layer0 bool `mapstructure:"no_v0_layer0" yaml:"no_v0_layer0" json:"no_v0_layer0"`
}

// DefaultHeadSize is x070's head size when model.head_size is 0 (every released model's).
const DefaultHeadSize = 64

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid model config")

// DimFFN is the channel-mix hidden size with the default applied.
func (c Config) DimFFN() int {
	if c.FFN == 0 {
		return 4 * c.Embd
	}
	return c.FFN
}

// HeadSizeX070 is the head size with the default applied (x070).
func (c Config) HeadSizeX070() int {
	if c.HeadSize == 0 {
		return DefaultHeadSize
	}
	return c.HeadSize
}

// LoRA is x070's LoRA widths with the defaults (arch.DefaultLoRA) applied to the zero ones.
func (c Config) LoRA() arch.LoRA {
	def := arch.DefaultLoRA(c.Embd)
	pick := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	return arch.LoRA{W: pick(c.DimDecay, def.W), A: pick(c.DimAAA, def.A), V: pick(c.DimMV, def.V), G: pick(c.DimGate, def.G)}
}

// Dims are the sizes of the model's tensors, the key to its layout (arch.Dims.Layout).
func (c Config) Dims() arch.Dims {
	d := arch.Dims{Arch: c.Arch.Resolve(), Vocab: c.Vocab, Embd: c.Embd, FFN: c.DimFFN(), Layers: c.Layers}
	if d.Arch == arch.X070 {
		d.HeadSize, d.LoRA, d.V0Layer0 = c.HeadSizeX070(), c.LoRA(), !c.NoV0Layer0
	}
	return d
}

// Heads is x070's number of heads n_embd/head_size (0 for x040).
func (c Config) Heads() int {
	if c.Arch.Resolve() != arch.X070 {
		return 0
	}
	return c.Embd / c.HeadSizeX070()
}

// ConfigOf is the config of a model with the sizes d (as arch.Infer reads them from a file)
// and context length ctxLen, which weights files do not store.
func ConfigOf(d arch.Dims, ctxLen int) Config {
	c := Config{Arch: d.Arch.Resolve(), Layers: d.Layers, Embd: d.Embd, Vocab: d.Vocab, CtxLen: ctxLen, FFN: d.FFN}
	if c.Arch == arch.X070 {
		c.HeadSize, c.NoV0Layer0 = d.HeadSize, !d.V0Layer0
		c.DimDecay, c.DimAAA, c.DimMV, c.DimGate = d.LoRA.W, d.LoRA.A, d.LoRA.V, d.LoRA.G
	}
	return c
}

// Validate reports every problem with the configuration, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key string, v int, why string) {
		errs = append(errs, fmt.Errorf("%w: model.%s = %d: %s", ErrConfig, key, v, why))
	}
	a := c.Arch.Resolve()
	switch a {
	case arch.X040, arch.X070:
	default:
		errs = append(errs, fmt.Errorf("%w: model.arch = %q: unknown architecture; use x040 (RWKV-4) or x070 (RWKV-7)", ErrConfig, string(c.Arch)))
	}
	x070 := map[string]int{"head_size": c.HeadSize, "d_decay_lora": c.DimDecay, "d_aaa_lora": c.DimAAA,
		"d_mv_lora": c.DimMV, "d_gate_lora": c.DimGate}
	for _, key := range []string{"head_size", "d_decay_lora", "d_aaa_lora", "d_mv_lora", "d_gate_lora"} {
		switch v := x070[key]; {
		case a != arch.X070 && v != 0:
			bad(key, v, "only RWKV-7 (model.arch: x070) has it; remove it or set 0")
		case v < 0:
			bad(key, v, "must be positive, or 0 for the default")
		}
	}
	if a != arch.X070 && c.NoV0Layer0 {
		errs = append(errs, fmt.Errorf("%w: model.no_v0_layer0 = true: only RWKV-7 (model.arch: x070) has it; remove it", ErrConfig))
	}
	if a == arch.X070 && c.HeadSize == 1 {
		bad("head_size", c.HeadSize, "must be at least 2, or 0 for 64")
	} else if a == arch.X070 && c.Embd > 0 && c.HeadSize >= 0 && c.Embd%c.HeadSizeX070() != 0 {
		bad("head_size", c.HeadSizeX070(), fmt.Sprintf("must divide n_embd = %d into heads", c.Embd))
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
