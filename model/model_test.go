package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" = valid
	}{
		{"valid", Config{Layers: 2, Embd: 64, Vocab: 256, CtxLen: 128}, ""},
		{"valid custom ffn", Config{Layers: 1, Embd: 32, Vocab: 10, CtxLen: 1, FFN: 100}, ""},
		{"x040 named", Config{Arch: "x040", Layers: 1, Embd: 32, Vocab: 10, CtxLen: 1}, ""},
		{"x070", Config{Arch: "x070", Layers: 1, Embd: 128, Vocab: 10, CtxLen: 1}, ""},
		{"x052", Config{Arch: "x052", Layers: 1, Embd: 128, Vocab: 10, CtxLen: 1, HeadSize: 32}, ""},
		{"x060", Config{Arch: "x060", Layers: 1, Embd: 128, Vocab: 10, CtxLen: 1, DimMix: 8, DimDecay: 16}, ""},
		{"x070 sizes", Config{Arch: "x070", Layers: 1, Embd: 32, Vocab: 10, CtxLen: 1, HeadSize: 16, DimDecay: 8, DimAAA: 8, DimMV: 8, DimGate: 8, NoV0Layer0: true}, ""},
		{"x070 head size default does not divide", Config{Arch: "x070", Layers: 1, Embd: 96, Vocab: 10, CtxLen: 1}, "model.head_size = 64: must divide n_embd = 96"},
		{"x070 head size does not divide", Config{Arch: "x070", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, HeadSize: 48}, "model.head_size = 48: must divide n_embd = 64"},
		{"x070 head size 1", Config{Arch: "x070", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, HeadSize: 1}, "model.head_size = 1: must be at least 2"},
		{"x070 negative lora", Config{Arch: "x070", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, DimGate: -1}, "model.d_gate_lora = -1: must be positive"},
		{"x040 head size", Config{Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, HeadSize: 64}, "model.head_size = 64: only RWKV-5.2, RWKV-6 and RWKV-7 (model.arch: x052, x060, x070) have it"},
		{"x052 decay lora", Config{Arch: "x052", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, DimDecay: 32}, "model.d_decay_lora = 32: only RWKV-6 and RWKV-7 (model.arch: x060, x070) have it"},
		{"x070 mix lora", Config{Arch: "x070", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, DimMix: 32}, "model.d_mix_lora = 32: only RWKV-6 (model.arch: x060) has it"},
		{"x060 head size", Config{Arch: "x060", Layers: 1, Embd: 96, Vocab: 10, CtxLen: 1, HeadSize: 64}, "model.head_size = 64: must divide n_embd = 96"},
		{"x040 lora", Config{Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, DimMV: 32}, "model.d_mv_lora = 32: only RWKV-7"},
		{"x040 no_v0_layer0", Config{Layers: 1, Embd: 64, Vocab: 10, CtxLen: 1, NoV0Layer0: true}, "model.no_v0_layer0 = true: only RWKV-7"},
		{"unknown arch", Config{Arch: "rwkv4", Layers: 1, Embd: 32, Vocab: 10, CtxLen: 1}, `model.arch = "rwkv4": unknown architecture; use x040`},
		{"zero layers", Config{Layers: 0, Embd: 64, Vocab: 256, CtxLen: 128}, "model.n_layer = 0"},
		{"embd not multiple of 32", Config{Layers: 2, Embd: 48, Vocab: 256, CtxLen: 128}, "model.n_embd = 48: must be a multiple of 32"},
		{"negative vocab", Config{Layers: 2, Embd: 64, Vocab: -1, CtxLen: 128}, "model.vocab_size = -1"},
		{"zero ctx", Config{Layers: 2, Embd: 64, Vocab: 256}, "model.ctx_len = 0"},
		{"negative ffn", Config{Layers: 2, Embd: 64, Vocab: 256, CtxLen: 8, FFN: -4}, "model.dim_ffn = -4"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("got %v, want an ErrConfig containing %q", err, tt.want)
			}
		})
	}
}

func TestSpecsMatchRWKV169M(t *testing.T) {
	specs := Specs(Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 1024})
	n := 0
	for _, s := range specs {
		k := 1
		for _, d := range s.Shape {
			k *= d
		}
		n += k
	}
	if len(specs) != 222 || n != 169342464 {
		t.Fatalf("got %d tensors, %d parameters; want 222, 169342464", len(specs), n)
	}
	want := map[string][]int{
		"emb.weight": {50277, 768}, "blocks.0.ln0.bias": {768}, "blocks.11.att.time_mix_v": {1, 1, 768},
		"blocks.5.ffn.key.weight": {3072, 768}, "blocks.5.ffn.value.weight": {768, 3072}, "head.weight": {50277, 768},
	}
	for _, s := range specs {
		if w, ok := want[s.Name]; ok {
			if fmt.Sprint(w) != fmt.Sprint(s.Shape) {
				t.Errorf("%s: shape %v, want %v", s.Name, s.Shape, w)
			}
			delete(want, s.Name)
		}
		if strings.Contains(s.Name, "ln0") && !strings.HasPrefix(s.Name, "blocks.0.") {
			t.Errorf("ln0 outside block 0: %s", s.Name)
		}
	}
	if len(want) != 0 {
		t.Errorf("missing tensors: %v", want)
	}
}

func tiny(t testing.TB, dt tensor.Dtype) *Model {
	m, err := New(Config{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 16}, dt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tiny7 is a small x070 model: 2 heads of 16, LoRA widths all different.
func tiny7(t testing.TB, dt tensor.Dtype) *Model {
	m, err := New(Config{Arch: arch.X070, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 64, CtxLen: 16,
		DimDecay: 8, DimAAA: 12, DimMV: 4, DimGate: 16}, dt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// tinies are the small models of both architectures, for tests of either.
var tinies = []struct {
	name string
	new  func(testing.TB, tensor.Dtype) *Model
}{{"x040", tiny}, {"x070", tiny7}}

// randomize gives every parameter non-degenerate random values, so that no gradient vanishes.
func randomize(m *Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params {
		v := make([]float64, p.Len())
		scale, shift := 1/math.Sqrt(float64(p.Shape[len(p.Shape)-1])), 0.0
		switch {
		case strings.Contains(p.Name, "time_mix"), strings.Contains(p.Name, ".x_"):
			scale, shift = 0.2, 0.5
		case strings.Contains(p.Name, "time_decay"):
			scale, shift = 1, -1
		case strings.Contains(p.Name, "time_first"), strings.HasSuffix(p.Name, ".bias"):
			scale = 0.3
		case strings.HasSuffix(p.Name, "ln0.weight"), strings.HasSuffix(p.Name, "ln1.weight"),
			strings.HasSuffix(p.Name, "ln2.weight"), p.Name == "ln_out.weight", strings.HasSuffix(p.Name, "ln_x.weight"):
			scale, shift = 0.2, 1
		case p.Name == "emb.weight":
			scale = 1
		}
		for i := range v {
			v[i] = shift + scale*rng.NormFloat64()
		}
		p.SetFloat64s(v)
	}
}

func TestInitMatchesRWKVLM(t *testing.T) {
	m := tiny(t, tensor.Float64)
	m.Init(42, 6e-4)
	const C = 32.0
	get := func(name string) []float64 { return m.Param(name).Float64s() }
	near := func(name string, i int, want float64) {
		t.Helper()
		if got := get(name)[i]; math.Abs(got-want) > 1e-12 {
			t.Errorf("%s[%d] = %v, want %v", name, i, got, want)
		}
	}
	// Layer 1 of 2: ratio_0_to_1 = 1, ratio_1_to_almost0 = 0.5.
	near("blocks.1.att.time_decay", 31, -5+8)
	near("blocks.1.att.time_decay", 10, -5+8*math.Pow(10.0/31, 2.0))
	near("blocks.0.att.time_decay", 10, -5+8*math.Pow(10.0/31, 0.7))
	near("blocks.0.att.time_first", 0, math.Log(0.3))
	near("blocks.0.att.time_first", 1, math.Log(0.3)+0.5)
	near("blocks.0.att.time_first", 2, math.Log(0.3)-0.5)
	near("blocks.1.att.time_mix_k", 8, math.Pow(8.0/C, 0.5))
	near("blocks.1.att.time_mix_v", 8, math.Pow(8.0/C, 0.5)+0.3)
	near("blocks.1.att.time_mix_r", 8, math.Pow(8.0/C, 0.25))
	near("blocks.0.ffn.time_mix_r", 8, 8.0/C)
	near("blocks.0.ln0.weight", 3, 1)
	near("ln_out.bias", 3, 0)
	for _, name := range []string{"blocks.0.att.key.weight", "blocks.1.att.receptance.weight", "blocks.0.att.output.weight",
		"blocks.1.ffn.value.weight", "blocks.0.ffn.receptance.weight"} {
		for i, v := range get(name) {
			if v != 0 {
				t.Fatalf("%s[%d] = %v, want 0", name, i, v)
			}
		}
	}
	for _, v := range get("emb.weight") {
		if math.Abs(v) > 6e-4 {
			t.Fatalf("emb value %v outside ±6e-4", v)
		}
	}
	// Orthogonality: W Wᵀ = gain² I for wide or square W, Wᵀ W = gain² I for tall W.
	for _, tc := range []struct {
		name       string
		rows, cols int
		gain       float64
	}{{"blocks.0.att.value.weight", 32, 32, 1}, {"blocks.1.ffn.key.weight", 128, 32, 2}, {"head.weight", 64, 32, 0.5 * math.Sqrt2}} {
		w := get(tc.name)
		small := min(tc.rows, tc.cols)
		for i := 0; i < small; i++ {
			for j := 0; j < small; j++ {
				var s float64
				if tc.rows >= tc.cols { // columns orthogonal
					for r := 0; r < tc.rows; r++ {
						s += w[r*tc.cols+i] * w[r*tc.cols+j]
					}
				} else {
					for c := 0; c < tc.cols; c++ {
						s += w[i*tc.cols+c] * w[j*tc.cols+c]
					}
				}
				want := 0.0
				if i == j {
					want = tc.gain * tc.gain
				}
				if math.Abs(s-want) > 1e-9 {
					t.Fatalf("%s: (WᵀW)[%d,%d] = %v, want %v", tc.name, i, j, s, want)
				}
			}
		}
	}
	// Reproducible from the seed, different for another seed.
	m2 := tiny(t, tensor.Float64)
	m2.Init(42, 6e-4)
	m3 := tiny(t, tensor.Float64)
	m3.Init(43, 6e-4)
	a, b, c := get("head.weight"), m2.Param("head.weight").Float64s(), m3.Param("head.weight").Float64s()
	for i := range a {
		if a[i] != b[i] {
			t.Fatal("same seed gave different weights")
		}
	}
	if a[0] == c[0] {
		t.Fatal("different seeds gave the same weights")
	}
}

// TestParallelEqualsRecurrent checks RWKV-LM's verify.py as an assertion: the graph over a whole
// sequence gives the logits of feeding the tokens one at a time, and the same final state.
func TestParallelEqualsRecurrent(t *testing.T) {
	for _, tc := range tinies {
		for _, dt := range []tensor.Dtype{tensor.Float32, tensor.Float64} {
			t.Run(tc.name+"/"+dt.String(), func(t *testing.T) { testParallelEqualsRecurrent(t, tc.new(t, dt), dt) })
		}
	}
}

func testParallelEqualsRecurrent(t *testing.T, m *Model, dt tensor.Dtype) {
	{
		{
			const B, T = 2, 16
			randomize(m, 3)
			V := m.Config.Vocab
			rng := rand.New(rand.NewPCG(5, 5))
			ids := make([]int, B*T)
			for i := range ids {
				ids[i] = rng.IntN(V)
			}
			gr, err := m.NewGraph(GraphOptions{B: B, T: T, State: true})
			if err != nil {
				t.Fatal(err)
			}
			defer gr.Close()
			if err := gr.SetTokens(ids, nil); err != nil {
				t.Fatal(err)
			}
			if err := gr.Run(); err != nil {
				t.Fatal(err)
			}
			par := toFloat64(gr.Logits())
			parState := NewState(m.Config, B)
			gr.FinalState(parState)

			rnn := m.NewRNN(B)
			s := NewState(m.Config, B)
			logits := make([]float64, B*V)
			tol := 1e-5
			if dt == tensor.Float64 {
				tol = 1e-11
			}
			var worst float64
			for tt := 0; tt < T; tt++ {
				if err := rnn.Step(s, []int{ids[tt], ids[T+tt]}, logits); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < B; b++ {
					for v := 0; v < V; v++ {
						d := math.Abs(logits[b*V+v] - par[(b*T+tt)*V+v])
						worst = math.Max(worst, d)
						if d > tol*(1+math.Abs(par[(b*T+tt)*V+v])) {
							t.Fatalf("logits b=%d t=%d v=%d: rnn %v, parallel %v", b, tt, v, logits[b*V+v], par[(b*T+tt)*V+v])
						}
					}
				}
			}
			t.Logf("max |rnn - parallel| logit difference %.3g", worst)
			compareStates(t, "final state", parState, s, tol)
		}
	}
}

func compareStates(t *testing.T, what string, got, want *State, tol float64) {
	t.Helper()
	names := []string{"att_x", "aa", "bb", "pp", "ffn_x"}
	if want.Arch.HasHeads() {
		names = []string{"att_x", "wkv", "ffn_x"}
	}
	for i := range want.Layers {
		g, w := got.Layers[i].fields(), want.Layers[i].fields()
		for j := range w {
			for k := range w[j] {
				if d := math.Abs(g[j][k] - w[j][k]); d > tol*(1+math.Abs(w[j][k])) {
					t.Fatalf("%s layer %d %s[%d]: got %v, want %v", what, i, names[j], k, g[j][k], w[j][k])
				}
			}
		}
	}
}

func toFloat64(d any) []float64 {
	switch x := d.(type) {
	case []float64:
		return x
	case []float32:
		out := make([]float64, len(x))
		for i, v := range x {
			out[i] = float64(v)
		}
		return out
	}
	panic("unsupported")
}

// TestChunkedEqualsSinglePass runs T tokens as chunks with the state carried forward and its
// gradient carried backward, and checks the loss, the parameter gradients and the final state
// against one pass over all T tokens.
func TestChunkedEqualsSinglePass(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) { testChunkedEqualsSinglePass(t, tc.new(t, tensor.Float64)) })
	}
}

func testChunkedEqualsSinglePass(t *testing.T, m *Model) {
	const B, T, Tc = 2, 16, 8
	randomize(m, 9)
	V := m.Config.Vocab
	rng := rand.New(rand.NewPCG(8, 8))
	ids, tg := make([]int, B*T), make([]int, B*T)
	for i := range ids {
		ids[i], tg[i] = rng.IntN(V), rng.IntN(V)
	}
	full, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true, State: true})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	full.SetTokens(ids, tg)
	if err := full.Run(); err != nil {
		t.Fatal(err)
	}
	fullState := NewState(m.Config, B)
	full.FinalState(fullState)

	chunk, err := m.NewGraph(GraphOptions{B: B, T: Tc, Grads: true, State: true})
	if err != nil {
		t.Fatal(err)
	}
	defer chunk.Close()
	slice := func(x []int, c int) []int {
		out := make([]int, 0, B*Tc)
		for b := 0; b < B; b++ {
			out = append(out, x[b*T+c*Tc:b*T+(c+1)*Tc]...)
		}
		return out
	}
	nc := T / Tc
	// Forward, keeping only the states at chunk borders.
	borders := []*State{NewState(m.Config, B)}
	for c := 0; c < nc; c++ {
		chunk.SetTokens(slice(ids, c), slice(tg, c))
		chunk.SetState(borders[c])
		if err := chunk.Run(); err != nil {
			t.Fatal(err)
		}
		s := NewState(m.Config, B)
		chunk.FinalState(s)
		borders = append(borders, s)
	}
	compareStates(t, "chunked final state", borders[nc], fullState, 1e-12)
	// Backward chunk by chunk in reverse, recomputing each chunk from its saved state.
	sum := make([][]float64, len(m.Params))
	var loss float64
	var gState *State
	for c := nc - 1; c >= 0; c-- {
		chunk.SetTokens(slice(ids, c), slice(tg, c))
		chunk.SetState(borders[c])
		chunk.SetStateGrad(gState)
		if err := chunk.Run(); err != nil {
			t.Fatal(err)
		}
		loss += chunk.Loss() / float64(nc)
		for i := range m.Params {
			g := toFloat64(chunk.Grad(i))
			if sum[i] == nil {
				sum[i] = make([]float64, len(g))
			}
			for j, v := range g {
				sum[i][j] += v / float64(nc)
			}
		}
		gState = NewState(m.Config, B)
		chunk.StateGrad(gState)
	}
	if d := math.Abs(loss - full.Loss()); d > 1e-12 {
		t.Fatalf("loss: chunked %v, single pass %v", loss, full.Loss())
	}
	for i, p := range m.Params {
		want := toFloat64(full.Grad(i))
		for j := range want {
			if d := math.Abs(sum[i][j] - want[j]); d > 1e-10*(1+math.Abs(want[j])) {
				t.Fatalf("grad %s[%d]: chunked %v, single pass %v", p.Name, j, sum[i][j], want[j])
			}
		}
	}
}

// TestConfigDimsX05: x052 and x060 defaults are RWKV-LM's (dim_ffn int(3.5·C)//32·32, head
// size 64, x060 LoRA widths 32 and 64), and ConfigOf reads a Dims back to the same Config.
func TestConfigDimsX05(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want arch.Dims
	}{
		{Config{Arch: "x052", Layers: 2, Embd: 256, Vocab: 10, CtxLen: 4},
			arch.Dims{Arch: arch.X052, Vocab: 10, Embd: 256, FFN: 896, Layers: 2, HeadSize: 64}},
		{Config{Arch: "x060", Layers: 2, Embd: 2048, Vocab: 10, CtxLen: 4},
			arch.Dims{Arch: arch.X060, Vocab: 10, Embd: 2048, FFN: 7168, Layers: 2, HeadSize: 64, LoRA: arch.LoRA{Mix: 32, W: 64}}},
		{Config{Arch: "x060", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 4, FFN: 96, HeadSize: 16, DimMix: 4, DimDecay: 8},
			arch.Dims{Arch: arch.X060, Vocab: 10, Embd: 64, FFN: 96, Layers: 1, HeadSize: 16, LoRA: arch.LoRA{Mix: 4, W: 8}}},
	} {
		d := tt.cfg.Dims()
		if d != tt.want {
			t.Errorf("%v: Dims %+v, want %+v", tt.cfg, d, tt.want)
		}
		if got := ConfigOf(d, 4).Dims(); got != d {
			t.Errorf("%v: ConfigOf(Dims).Dims() = %+v", tt.cfg, got)
		}
		if h := tt.cfg.Heads(); h != d.Embd/d.HeadSize {
			t.Errorf("%v: Heads() = %d", tt.cfg, h)
		}
	}
	if s := (Config{Arch: "x060", Layers: 1, Embd: 64, Vocab: 10, CtxLen: 4}).String(); strings.Contains(s, "ffn") {
		t.Errorf("String() of a default-ffn x060 config = %q: should not name the default ffn", s)
	}
}

// TestConfigString: the log form names the architecture, and the FFN width and head size only
// when they differ from the defaults, so two models that differ only there read differently.
func TestConfigString(t *testing.T) {
	for _, tt := range []struct {
		cfg  Config
		want string
	}{
		{Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 1024}, "L12-D768-V50277 ctx1024"},
		{Config{Layers: 2, Embd: 64, Vocab: 40, CtxLen: 17, FFN: 100}, "L2-D64-V40 ctx17 ffn100"},
		{Config{Arch: "x060", Layers: 2, Embd: 64, Vocab: 40, CtxLen: 17, FFN: 96, HeadSize: 16}, "x060 L2-D64-V40 ctx17 ffn96 head16"},
		{Config{Arch: "x052", Layers: 2, Embd: 128, Vocab: 40, CtxLen: 17, FFN: 448, HeadSize: 64}, "x052 L2-D128-V40 ctx17"},
		{Config{Arch: "x070", Layers: 2, Embd: 128, Vocab: 40, CtxLen: 17, HeadSize: 32}, "x070 L2-D128-V40 ctx17 head32"},
	} {
		if got := tt.cfg.String(); got != tt.want {
			t.Errorf("%+v: String() = %q, want %q", tt.cfg, got, tt.want)
		}
	}
}
