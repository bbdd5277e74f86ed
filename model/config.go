// Package model is RWKV-4 (arch x040), RWKV-5.2 (x052), RWKV-6 (x060) and RWKV-7 (arch x070): its configuration, parameters with RWKV-LM's names and
// shapes (package arch's layout), RWKV-LM initialisation, the parallel (training) form as a
// Gorgonia graph built from fused custom ops, and the recurrent (one token at a time) form in
// plain Go. It knows nothing of training. Gorgonia stays inside: other packages use the typed
// views (DType, Param.F32, Graph.LogitsF32, Graph.GradF32, State).
package model

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

// Config is the architecture and shape of a model. Keys follow RWKV-LM's train.py arguments.
type Config struct {
	// Arch is the architecture, RWKV-LM's module version: "x040" (RWKV-4, the default; the
	// zero value means it too), "x052" (RWKV-5.2), "x060" (RWKV-6) or "x070" (RWKV-7).
	Arch   arch.Arch `mapstructure:"arch" yaml:"arch" json:"arch"`
	Layers int       `mapstructure:"n_layer" yaml:"n_layer" json:"n_layer"`
	Embd   int       `mapstructure:"n_embd" yaml:"n_embd" json:"n_embd"`
	Vocab  int       `mapstructure:"vocab_size" yaml:"vocab_size" json:"vocab_size"`
	CtxLen int       `mapstructure:"ctx_len" yaml:"ctx_len" json:"ctx_len"`
	// FFN is the channel-mix hidden size; 0 means RWKV-LM's default: 4*Embd (x040, x070) or
	// int(3.5*Embd)//32*32 (x052, x060).
	FFN int `mapstructure:"dim_ffn" yaml:"dim_ffn" json:"dim_ffn"`

	// x052, x060 and x070 (zero for x040).

	// HeadSize is the WKV head size N (H = n_embd/N heads); 0 means 64, as in RWKV-LM.
	HeadSize int `mapstructure:"head_size" yaml:"head_size" json:"head_size"`

	// x060 and x070. LoRA widths; 0 means RWKV-LM's rule for n_embd (x070: arch.DefaultLoRA;
	// x060: arch.DefaultLoRA6, 32 and 64). Loading a file takes them from its tensors.

	// DimDecay is the decay LoRA's width: x070's att.w1 [C,Dw], x060's att.time_decay_w1 [C,Dw].
	DimDecay int `mapstructure:"d_decay_lora" yaml:"d_decay_lora" json:"d_decay_lora"`
	// DimMix is x060's token-shift LoRA width: att.time_maa_w1 [C,5*Dm], time_maa_w2 [5,Dm,C].
	DimMix int `mapstructure:"d_mix_lora" yaml:"d_mix_lora" json:"d_mix_lora"`

	// x070 only: the LoRA widths of the in-context rate (a1), value residual (v1) and gate (g1).
	DimAAA  int `mapstructure:"d_aaa_lora" yaml:"d_aaa_lora" json:"d_aaa_lora"`
	DimMV   int `mapstructure:"d_mv_lora" yaml:"d_mv_lora" json:"d_mv_lora"`
	DimGate int `mapstructure:"d_gate_lora" yaml:"d_gate_lora" json:"d_gate_lora"`
	// NoV0Layer0 drops layer 0's v0/v1/v2, which it never uses. RWKV-LM creates them (the
	// default, false); FLA's files do not have them.
	NoV0Layer0 bool `mapstructure:"no_v0_layer0" yaml:"no_v0_layer0" json:"no_v0_layer0"`
}

// DefaultHeadSize is the head size of x052, x060 and x070 when model.head_size is 0 (every
// released model's).
const DefaultHeadSize = 64

// ErrConfig is wrapped by every Config validation error.
var ErrConfig = errors.New("invalid model config")

// DimFFN is the channel-mix hidden size with the default applied.
func (c Config) DimFFN() int {
	if c.FFN == 0 {
		if a := c.Arch.Resolve(); a == arch.X052 || a == arch.X060 {
			return arch.DefaultFFN5(c.Embd)
		}
		return 4 * c.Embd
	}
	return c.FFN
}

// HeadDim is the head size with the default applied (x052, x060, x070).
func (c Config) HeadDim() int {
	if c.HeadSize == 0 {
		return DefaultHeadSize
	}
	return c.HeadSize
}

// LoRA is the LoRA widths (x070's, or x060's Mix and W) with the defaults (arch.DefaultLoRA,
// arch.DefaultLoRA6) applied to the zero ones; zero for x040 and x052.
func (c Config) LoRA() arch.LoRA {
	pick := func(v, d int) int {
		if v == 0 {
			return d
		}
		return v
	}
	switch c.Arch.Resolve() {
	case arch.X060:
		def := arch.DefaultLoRA6()
		return arch.LoRA{Mix: pick(c.DimMix, def.Mix), W: pick(c.DimDecay, def.W)}
	case arch.X070:
		def := arch.DefaultLoRA(c.Embd)
		return arch.LoRA{W: pick(c.DimDecay, def.W), A: pick(c.DimAAA, def.A), V: pick(c.DimMV, def.V), G: pick(c.DimGate, def.G)}
	}
	return arch.LoRA{}
}

// Dims are the sizes of the model's tensors, the key to its layout (arch.Dims.Layout).
func (c Config) Dims() arch.Dims {
	d := arch.Dims{Arch: c.Arch.Resolve(), Vocab: c.Vocab, Embd: c.Embd, FFN: c.DimFFN(), Layers: c.Layers}
	if d.Arch.HasHeads() {
		d.HeadSize, d.LoRA = c.HeadDim(), c.LoRA()
	}
	if d.Arch == arch.X070 {
		d.V0Layer0 = !c.NoV0Layer0
	}
	return d
}

// Heads is the number of heads n_embd/head_size (0 for x040).
func (c Config) Heads() int {
	if !c.Arch.HasHeads() {
		return 0
	}
	return c.Embd / c.HeadDim()
}

// ConfigOf is the config of a model with the sizes d (as arch.Infer reads them from a file)
// and context length ctxLen, which weights files do not store.
func ConfigOf(d arch.Dims, ctxLen int) Config {
	c := Config{Arch: d.Arch.Resolve(), Layers: d.Layers, Embd: d.Embd, Vocab: d.Vocab, CtxLen: ctxLen, FFN: d.FFN}
	if c.Arch.HasHeads() {
		c.HeadSize = d.HeadSize
	}
	switch c.Arch {
	case arch.X060:
		c.DimMix, c.DimDecay = d.LoRA.Mix, d.LoRA.W
	case arch.X070:
		c.NoV0Layer0 = !d.V0Layer0
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
	case arch.X040, arch.X052, arch.X060, arch.X070:
	default:
		errs = append(errs, fmt.Errorf("%w: model.arch = %q: unknown architecture; use x040 (RWKV-4), x052 (RWKV-5.2), x060 (RWKV-6) or x070 (RWKV-7)", ErrConfig, string(c.Arch)))
	}
	keys := []struct {
		key   string
		v     int
		archs []arch.Arch // the architectures that have the key
	}{{"head_size", c.HeadSize, []arch.Arch{arch.X052, arch.X060, arch.X070}},
		{"d_decay_lora", c.DimDecay, []arch.Arch{arch.X060, arch.X070}}, {"d_mix_lora", c.DimMix, []arch.Arch{arch.X060}},
		{"d_aaa_lora", c.DimAAA, []arch.Arch{arch.X070}}, {"d_mv_lora", c.DimMV, []arch.Arch{arch.X070}},
		{"d_gate_lora", c.DimGate, []arch.Arch{arch.X070}}}
	for _, k := range keys {
		key, v := k.key, k.v
		switch {
		case !slices.Contains(k.archs, a) && v != 0:
			verb := "has"
			if len(k.archs) > 1 {
				verb = "have"
			}
			bad(key, v, fmt.Sprintf("only %s %s it; remove it or set 0", archList(k.archs), verb))
		case v < 0:
			bad(key, v, "must be positive, or 0 for the default")
		}
	}
	if a != arch.X070 && c.NoV0Layer0 {
		errs = append(errs, fmt.Errorf("%w: model.no_v0_layer0 = true: only RWKV-7 (model.arch: x070) has it; remove it", ErrConfig))
	}
	if a.HasHeads() && c.HeadSize == 1 {
		bad("head_size", c.HeadSize, "must be at least 2, or 0 for 64")
	} else if a.HasHeads() && c.Embd > 0 && c.HeadSize >= 0 && c.Embd%c.HeadDim() != 0 {
		bad("head_size", c.HeadDim(), fmt.Sprintf("must divide n_embd = %d into heads", c.Embd))
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
		bad("dim_ffn", c.FFN, "must be positive, or 0 for RWKV-LM's default (4*n_embd; 3.5*n_embd for x052 and x060)")
	}
	return errors.Join(errs...)
}

// String is the short form used in logs: "L12-D768-V50277 ctx1024", prefixed by the
// architecture when it is not the default ("x070 L12-..."), with the FFN width and head size
// when they are not the defaults ("x060 L2-D64-V40 ctx17 ffn96 head16").
func (c Config) String() string {
	s := fmt.Sprintf("L%d-D%d-V%d ctx%d", c.Layers, c.Embd, c.Vocab, c.CtxLen)
	if a := c.Arch.Resolve(); a != arch.X040 {
		s = string(a) + " " + s
	}
	if c.FFN != 0 && c.FFN != c.withoutFFN().DimFFN() {
		s += fmt.Sprintf(" ffn%d", c.FFN)
	}
	if c.Arch.HasHeads() && c.HeadDim() != DefaultHeadSize {
		s += fmt.Sprintf(" head%d", c.HeadDim())
	}
	return s
}

// withoutFFN is c with dim_ffn at its default.
func (c Config) withoutFFN() Config {
	c.FFN = 0
	return c
}

// archList is "RWKV-7 (model.arch: x070)" or "RWKV-5.2, RWKV-6 and RWKV-7 (model.arch: x052,
// x060, x070)".
func archList(as []arch.Arch) string {
	titles, keys := make([]string, len(as)), make([]string, len(as))
	for i, a := range as {
		titles[i], _, _ = strings.Cut(a.Title(), " ")
		keys[i] = string(a)
	}
	t := titles[len(titles)-1]
	if n := len(titles); n > 1 {
		t = strings.Join(titles[:n-1], ", ") + " and " + t
	}
	return fmt.Sprintf("%s (model.arch: %s)", t, strings.Join(keys, ", "))
}
