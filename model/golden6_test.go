package model

import (
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// golden6Dims are the sizes of an x052 (golden5_*) or x060 (golden6_*) golden file written by
// reference/gen_golden6.py, from its metadata.
func (g golden) golden6Dims() arch.Dims {
	d := arch.Dims{Arch: arch.Arch(g.f.Meta["arch"]), Vocab: g.meta("vocab_size"), Embd: g.meta("n_embd"),
		FFN: g.meta("dim_ffn"), Layers: g.meta("n_layer"), HeadSize: g.meta("head_size")}
	switch d.Arch {
	case arch.X060:
		d.LoRA = arch.LoRA{Mix: g.meta("D_mix"), W: g.meta("D_decay")}
	case arch.X052:
	default:
		g.t.Fatalf("golden metadata arch %q: want x052 or x060", d.Arch)
	}
	return d
}

// golden6State fills a State from golden [L,B,C] att_x/ffn_x and [L,B,H,N,N] wkv tensors
// ([value][key], as State.WKV holds them).
func (g golden) golden6State(prefix string, cfg Config, B int) *State {
	s := NewState(cfg, B)
	ax, wkv, fx := g.floats(prefix+"att_x"), g.floats(prefix+"wkv"), g.floats(prefix+"ffn_x")
	for i := range s.Layers {
		l := &s.Layers[i]
		if len(l.WKV) == 0 || len(l.WKV)*len(s.Layers) != len(wkv) {
			g.t.Fatalf("State of %s has a WKV field of %d values per layer; the golden file has %d in all for %d layers",
				cfg.Arch, len(l.WKV), len(wkv), len(s.Layers))
		}
		copy(l.AttX, ax[i*len(l.AttX):])
		copy(l.WKV, wkv[i*len(l.WKV):])
		copy(l.FFNX, fx[i*len(l.FFNX):])
	}
	return s
}

// TestForwardBackwardMatchesPyTorchX05 compares the x052 and x060 graphs with the PyTorch
// reference (reference/rwkv6.py, sequential WKV): logits, loss, every parameter gradient with
// and without L2Wrap, and a forward and backward from a random initial state (final state,
// every parameter gradient and the initial state's gradient), in float64 and float32. It also
// requires the model's parameters to be the golden's, in its order (RWKV-LM's). Measured
// (worst relative difference over logits and loss / parameter gradients / state and its
// gradient): x052 float64 1.2e-15 / 3.8e-15 / 2.5e-15, float32 4.9e-7 / 2.1e-6 / 9.1e-7; x060
// float64 1.2e-15 / 1.1e-14 / 2.0e-15, float32 4.7e-7 / 2.7e-6 / 8.4e-7.
func TestForwardBackwardMatchesPyTorchX05(t *testing.T) {
	for _, tc := range []struct {
		file            string
		dt              tensor.Dtype
		fwdTol, gradTol float64
	}{
		{"golden5_f64.safetensors", tensor.Float64, 1e-12, 1e-12},
		{"golden5_f32.safetensors", tensor.Float32, 1e-5, 3e-5},
		{"golden6_f64.safetensors", tensor.Float64, 1e-12, 1e-12},
		{"golden6_f32.safetensors", tensor.Float32, 1e-5, 3e-5},
	} {
		t.Run(tc.file, func(t *testing.T) {
			g := openGolden(t, tc.file)
			d := g.golden6Dims()
			if !d.Arch.IsSupported() {
				t.Skipf("model does not support %s yet (arch.Supported)", d.Arch.Title())
			}
			B, T := g.meta("B"), g.meta("T")
			cfg := ConfigOf(d, T)
			if got := cfg.Dims(); got.Arch != d.Arch || got.HeadSize != d.HeadSize || got.LoRA != d.LoRA || got.FFN != d.FFN {
				t.Fatalf("ConfigOf(%+v).Dims() = %+v: the config loses the file's sizes", d, got)
			}
			m, err := New(cfg, tc.dt)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, x := range g.f.Tensors {
				if len(x.Name) > 6 && x.Name[:6] == "param/" {
					names = append(names, x.Name[6:])
				}
			}
			if len(names) != len(m.Params) {
				t.Fatalf("model has %d parameters, the golden file %d", len(m.Params), len(names))
			}
			for i, p := range m.Params {
				if p.Name != names[i] {
					t.Fatalf("parameter %d is %s, the golden file (RWKV-LM order) has %s", i, p.Name, names[i])
				}
				if err := p.SetFloat64s(g.floats("param/" + p.Name)); err != nil {
					t.Fatal(err)
				}
			}
			checkGolden(t, g, m, cfg, B, T, tc.fwdTol, tc.gradTol, g.golden6State("state_in/", cfg, B))
		})
	}
}
