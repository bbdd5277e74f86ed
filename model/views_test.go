package model

import (
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// TestTypedViews: the typed views are the graph's and the parameters' own memory in the model
// dtype, and nil in the other, so code outside model needs no Gorgonia type assertion.
func TestTypedViews(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		m := tiny(t, dt)
		randomize(m, 7)
		p := m.Param("head.weight")
		if f32, f64 := p.F32(), p.F64(); (dt == Float32) != (f32 != nil) || (dt == Float64) != (f64 != nil) || len(f32)+len(f64) != p.Len() {
			t.Fatalf("%v: F32 %d values, F64 %d values, want %d in the model dtype only", dt, len(f32), len(f64), p.Len())
		}
		if dt == Float32 {
			p.F32()[0] = 2.5
		} else {
			p.F64()[0] = 2.5
		}
		if v := p.Float64s()[0]; v != 2.5 {
			t.Errorf("%v: a write through the view gives %v, want 2.5: the view is a copy", dt, v)
		}
		const B, T = 1, 3
		g, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.SetTokens([]int{1, 2, 3}, []int{2, 3, 4}); err != nil {
			t.Fatal(err)
		}
		if err := g.Run(); err != nil {
			t.Fatal(err)
		}
		l32, l64 := g.LogitsF32(), g.LogitsF64()
		g32, g64 := g.GradF32(0), g.GradF64(0)
		if dt == Float32 && (len(l32) != B*T*m.Config.Vocab || l64 != nil || len(g32) != m.Params[0].Len() || g64 != nil) ||
			dt == Float64 && (len(l64) != B*T*m.Config.Vocab || l32 != nil || len(g64) != m.Params[0].Len() || g32 != nil) {
			t.Errorf("%v: logits %d/%d, grad %d/%d values (f32/f64)", dt, len(l32), len(l64), len(g32), len(g64))
		}
		g.Close()
	}
}

// TestStateScale: Scale sets every value of every layer to k times the source's, also in place.
func TestStateScale(t *testing.T) {
	for _, cfg := range []Config{
		{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 16},
		{Arch: arch.X070, Layers: 2, Embd: 32, Vocab: 64, CtxLen: 16, HeadSize: 16},
	} {
		t.Run(string(cfg.Arch.Resolve()), func(t *testing.T) { testStateScale(t, cfg) })
	}
}

func testStateScale(t *testing.T, cfg Config) {
	src := NewState(cfg, 2)
	for i := range src.Layers {
		for j, f := range src.Layers[i].fields() {
			for k := range f {
				f[k] = float64(i*100 + j*10 + k)
			}
		}
	}
	dst := NewState(cfg, 2)
	if err := dst.Scale(src, -0.5); err != nil {
		t.Fatal(err)
	}
	if err := src.Scale(src, -0.5); err != nil {
		t.Fatal(err)
	}
	for i := range src.Layers {
		for j, f := range dst.Layers[i].fields() {
			for k, v := range f {
				if want := -0.5 * float64(i*100+j*10+k); v != want || src.Layers[i].fields()[j][k] != want {
					t.Fatalf("layer %d field %d [%d]: %v and in place %v, want %v", i, j, k, v, src.Layers[i].fields()[j][k], want)
				}
			}
		}
	}
	if err := dst.Scale(NewState(cfg, 3), 1); err == nil {
		t.Error("Scale of a state of another batch size: no error")
	}
	other := cfg
	if cfg.Arch.Resolve() == arch.X070 {
		other = Config{Layers: cfg.Layers, Embd: cfg.Embd, Vocab: cfg.Vocab, CtxLen: cfg.CtxLen}
	} else {
		other.Arch = arch.X070
		other.HeadSize = 16
	}
	if err := dst.CopyFrom(NewState(other, 2)); err == nil || !strings.Contains(err.Error(), "cannot take") {
		t.Errorf("CopyFrom a state of the other architecture: error %v", err)
	}
	if got := len(src.Layers[0].fields()); (cfg.Arch.Resolve() == arch.X070) != (got == 3) {
		t.Errorf("%s state has %d fields per layer", cfg.Arch.Resolve(), got)
	}
}
