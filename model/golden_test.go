package model

import (
	"encoding/binary"
	"math"
	"strconv"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// golden is one file written by reference/gen_golden.py (PyTorch, sequential WKV).
type golden struct {
	f *checkpoint.File
	t *testing.T
}

func openGolden(t *testing.T, name string) golden {
	t.Helper()
	f, err := checkpoint.OpenSafetensors("testdata/" + name)
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 reference/gen_golden.py)", err)
	}
	return golden{f, t}
}

func (g golden) meta(key string) int {
	v, err := strconv.Atoi(g.f.Meta[key])
	if err != nil {
		g.t.Fatalf("golden metadata %q: %v", key, err)
	}
	return v
}

func (g golden) floats(name string) []float64 {
	ten, ok := g.f.Get(name)
	if !ok {
		g.t.Fatalf("golden file has no tensor %q", name)
	}
	v, err := ten.Float64s()
	if err != nil {
		g.t.Fatal(err)
	}
	return v
}

func (g golden) ints(name string) []int {
	ten, ok := g.f.Get(name)
	if !ok || ten.DType != checkpoint.I64 {
		g.t.Fatalf("golden file has no I64 tensor %q", name)
	}
	out := make([]int, len(ten.Data)/8)
	for i := range out {
		out[i] = int(int64(binary.LittleEndian.Uint64(ten.Data[8*i:])))
	}
	return out
}

// compare fails when max|got-want| > tol*max|want|, naming the tensor, the difference and where.
func compare(t *testing.T, name string, got, want []float64, tol float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d values, want %d", name, len(got), len(want))
		return math.Inf(1)
	}
	var worst, scale float64
	at := 0
	for i := range want {
		scale = math.Max(scale, math.Abs(want[i]))
		if d := math.Abs(got[i] - want[i]); d > worst || math.IsNaN(d) {
			worst, at = d, i
		}
	}
	if !(worst <= tol*math.Max(scale, 1e-30)) {
		t.Errorf("%s: maxdiff %.3g (relative %.3g) at %d (got %v, want %v)", name, worst, worst/scale, at, got[at], want[at])
	}
	if worst == 0 { // also an all-zero want (x070 layer 0's unused v0/v1/v2)
		return 0
	}
	return worst / scale
}

// stateFields are the golden files' names of State's per-layer fields (LayerState.fields order).
func stateFields(cfg Config) []string {
	if cfg.Arch.HasHeads() {
		return []string{"att_x", "wkv", "ffn_x"}
	}
	return []string{"att_x", "aa", "bb", "pp", "ffn_x"}
}

// state splits golden [L,B,...] state tensors into a State.
func (g golden) state(prefix string, cfg Config, B int) *State {
	s := NewState(cfg, B)
	for j, field := range stateFields(cfg) {
		v := g.floats(prefix + field)
		for i := range s.Layers {
			f := s.Layers[i].fields()[j]
			copy(f, v[i*len(f):(i+1)*len(f)])
		}
	}
	return s
}

// flatState joins a State's layers field by field, as the golden files store them [L,B,...].
func flatState(s *State) [][]float64 {
	var out [][]float64
	for _, l := range s.Layers {
		fs := l.fields()
		if out == nil {
			out = make([][]float64, len(fs))
		}
		for j, f := range fs {
			out[j] = append(out[j], f...)
		}
	}
	return out
}

// goldenConfig is the model config a golden file's metadata describes (either architecture).
func (g golden) config() Config {
	cfg := Config{Layers: g.meta("n_layer"), Embd: g.meta("n_embd"), Vocab: g.meta("vocab_size"), CtxLen: g.meta("T"), FFN: g.meta("dim_ffn")}
	if g.f.Meta["arch"] == "x070" {
		cfg.Arch, cfg.HeadSize = arch.X070, g.meta("head_size")
		cfg.DimDecay, cfg.DimAAA, cfg.DimMV, cfg.DimGate = g.meta("D_decay"), g.meta("D_aaa"), g.meta("D_mv"), g.meta("D_gate")
		cfg.NoV0Layer0 = !strings.HasPrefix(g.f.Meta["layer0_v"], "true")
	}
	return cfg
}

// TestForwardBackwardMatchesPyTorch compares logits, loss, every parameter gradient (with and
// without L2Wrap), and the carried-state forward and backward with the PyTorch reference, for
// RWKV-4 (golden_*) and RWKV-7 (golden7_*; layer 0's unused v0/v1/v2 have zero gradients).
func TestForwardBackwardMatchesPyTorch(t *testing.T) {
	for _, tc := range []struct {
		file            string
		dt              tensor.Dtype
		fwdTol, gradTol float64
	}{
		{"golden_f32.safetensors", tensor.Float32, 1e-5, 1e-4},
		{"golden_f64.safetensors", tensor.Float64, 1e-10, 1e-10},
		{"golden7_f32.safetensors", tensor.Float32, 1e-5, 1e-4},
		{"golden7_f64.safetensors", tensor.Float64, 1e-10, 1e-10},
	} {
		t.Run(tc.file, func(t *testing.T) {
			g := openGolden(t, tc.file)
			cfg := g.config()
			B, T := g.meta("B"), g.meta("T")
			m, err := New(cfg, tc.dt)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Params {
				if err := p.SetFloat64s(g.floats("param/" + p.Name)); err != nil {
					t.Fatal(err)
				}
			}
			checkGolden(t, g, m, cfg, B, T, tc.fwdTol, tc.gradTol, g.state("state_in/", cfg, B))
		})
	}
}

// checkGolden runs m (its parameters the golden's) on the golden's tokens and targets and
// compares, within fwdTol for values and gradTol for gradients (relative, see compare): the
// logits, the loss and every parameter gradient, the gradients with L2Wrap, and a run from
// stateIn (logits, loss, parameter gradients, final state and the initial state's gradient).
// It logs the worst differences.
func checkGolden(t *testing.T, g golden, m *Model, cfg Config, B, T int, fwdTol, gradTol float64, stateIn *State) {
	t.Helper()
	ids, targets := g.ints("tokens"), g.ints("targets")
	run := func(l2wrap bool, s *State) *Graph {
		gr, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true, L2Wrap: l2wrap, State: s != nil})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { gr.Close() })
		if err := gr.SetTokens(ids, targets); err != nil {
			t.Fatal(err)
		}
		if s != nil {
			if err := gr.SetState(s); err != nil {
				t.Fatal(err)
			}
		}
		if err := gr.Run(); err != nil {
			t.Fatal(err)
		}
		return gr
	}
	var worstFwd, worstGrad, worstState float64
	grads := func(gr *Graph, prefix string) {
		for i, p := range m.Params {
			worstGrad = math.Max(worstGrad, compare(t, prefix+p.Name, toFloat64(gr.Grad(i)), g.floats(prefix+p.Name), gradTol))
		}
	}
	t.Cleanup(func() {
		t.Logf("worst relative difference: logits/loss %.3g, parameter gradients %.3g, state and its gradient %.3g",
			worstFwd, worstGrad, worstState)
	})

	gr := run(false, nil)
	worstFwd = math.Max(worstFwd, compare(t, "logits", toFloat64(gr.Logits()), g.floats("logits"), fwdTol))
	worstFwd = math.Max(worstFwd, compare(t, "loss", []float64{gr.Loss()}, g.floats("loss"), fwdTol))
	grads(gr, "grad/")

	grads(run(true, nil), "grad_l2wrap/")

	gs := run(false, stateIn)
	worstFwd = math.Max(worstFwd, compare(t, "logits_state", toFloat64(gs.Logits()), g.floats("logits_state"), fwdTol))
	worstFwd = math.Max(worstFwd, compare(t, "loss_state", []float64{gs.Loss()}, g.floats("loss_state"), fwdTol))
	grads(gs, "grad_state/")
	final, sg := NewState(cfg, B), NewState(cfg, B)
	gs.FinalState(final)
	gs.StateGrad(sg)
	gotS, gotG := flatState(final), flatState(sg)
	for j, field := range stateFields(cfg) {
		worstState = math.Max(worstState, compare(t, "state_out/"+field, gotS[j], g.floats("state_out/"+field), fwdTol))
		worstState = math.Max(worstState, compare(t, "grad_state_in/"+field, gotG[j], g.floats("grad_state_in/"+field), gradTol))
	}
}
