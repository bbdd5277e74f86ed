package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// randomState fills every field of s with N(0, scale²) values.
func randomState(s *State, rng *rand.Rand, scale float64) {
	for _, l := range s.Layers {
		for _, f := range l.fields() {
			for i := range f {
				f[i] = scale * rng.NormFloat64()
			}
		}
	}
}

// TestX070GraphFiniteDifferences checks the whole x070 graph (float64, 2 layers, 2 heads, a
// carried random initial state) against central differences of its loss: two entries of every
// parameter tensor (so every kind: embedding, norms, the six mixes, each LoRA, k_k, k_a, r_k,
// the linears, ln_x, the channel mix, the head) and of every layer's att_x, wkv and ffn_x state.
func TestX070GraphFiniteDifferences(t *testing.T) {
	const B, T = 2, 5
	m, err := New(Config{Arch: arch.X070, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 24, CtxLen: T,
		DimDecay: 4, DimAAA: 6, DimMV: 3, DimGate: 5}, tensor.Float64)
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, 21)
	rng := rand.New(rand.NewPCG(4, 4))
	checkGraphFiniteDifferences(t, m, B, T, rng, 1e-7, func(i, j int, g float64) {
		if p := m.Params[i]; unusedParam(m.Config, p.Name) && g != 0 {
			t.Errorf("%s[%d]: unused, gradient %v", p.Name, j, g)
		}
	})
}

// TestRNN7FastMatchesIndependent: the fast batched RNN (NewRNN) and the independent one-sequence
// rnn7 form, fed from the same Model's tensors, give the same logits and states from a random
// initial state.
func TestRNN7FastMatchesIndependent(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			if dt == Float32 {
				testRNN7FastMatchesIndependent[float32](t, 2e-5)
			} else {
				testRNN7FastMatchesIndependent[float64](t, 1e-12)
			}
		})
	}
}

func testRNN7FastMatchesIndependent[F Float](t *testing.T, tol float64) {
	const B, T = 3, 7
	dt := Float64
	if _, ok := any(F(0)).(float32); ok {
		dt = Float32
	}
	m := tiny7(t, dt)
	randomize(m, 17)
	rng := rand.New(rand.NewPCG(2, 2))
	s := NewState(m.Config, B)
	randomState(s, rng, 0.5)
	ref, err := newRNN7(params7Of[F](m))
	if err != nil {
		t.Fatal(err)
	}
	// the independent form's per-sequence states, from the same values
	st := make([][]x070State[F], B)
	C, S := m.Config.Embd, m.Config.Embd*m.Config.HeadDim()
	for b := range st {
		st[b] = newX070States[F](ref.d)
		for l, ls := range s.Layers {
			copy(st[b][l].AttX, convert[F](ls.AttX[b*C:(b+1)*C]))
			copy(st[b][l].WKV, convert[F](ls.WKV[b*S:(b+1)*S]))
			copy(st[b][l].FFNX, convert[F](ls.FFNX[b*C:(b+1)*C]))
		}
	}
	for l := range s.Layers { // the fast RNN starts from the same (rounded) values
		for b := range st {
			copy(s.Layers[l].AttX[b*C:], convert[float64](st[b][l].AttX))
			copy(s.Layers[l].WKV[b*S:], convert[float64](st[b][l].WKV))
			copy(s.Layers[l].FFNX[b*C:], convert[float64](st[b][l].FFNX))
		}
	}
	worst, _ := compareRNNSteps(t, m, s, B, T, rng, tol, func(b, token int, out []F) error {
		return ref.step(token, st[b], out)
	})
	for l, ls := range s.Layers {
		for b := range st {
			for _, c := range []struct {
				name      string
				got, want []float64
			}{
				{"att_x", ls.AttX[b*C : (b+1)*C], convert[float64](st[b][l].AttX)},
				{"wkv", ls.WKV[b*S : (b+1)*S], convert[float64](st[b][l].WKV)},
				{"ffn_x", ls.FFNX[b*C : (b+1)*C], convert[float64](st[b][l].FFNX)},
			} {
				for j := range c.want {
					if d := math.Abs(c.got[j] - c.want[j]); d > tol*(1+math.Abs(c.want[j])) {
						t.Fatalf("layer %d sequence %d %s[%d]: fast %v, independent %v", l, b, c.name, j, c.got[j], c.want[j])
					}
				}
			}
		}
	}
	t.Logf("max |fast - independent| logit difference %.3g", worst)
}

// TestRNN7FastGolden runs the fast RNN over the golden tokens from the golden state_in and
// compares with PyTorch's logits_state and state_out; and the graph without gradients from the
// same state.
func TestRNN7FastGolden(t *testing.T) {
	for _, c := range golden7Cases {
		t.Run(c.file, func(t *testing.T) {
			g := openGolden(t, c.file)
			cfg := g.config()
			dt := Float64
			if c.f32 {
				dt = Float32
			}
			m, err := New(cfg, dt)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Params {
				if err := p.SetFloat64s(g.floats("param/" + p.Name)); err != nil {
					t.Fatal(err)
				}
			}
			B, T, V := g.meta("B"), g.meta("T"), cfg.Vocab
			ids := g.ints("tokens")
			s := g.state("state_in/", cfg, B)
			rnn := m.NewRNN(B)
			got, step := make([]float64, B*T*V), make([]float64, B*V)
			for i := 0; i < T; i++ {
				tokens := make([]int, B)
				for b := range tokens {
					tokens[b] = ids[b*T+i]
				}
				if err := rnn.Step(s, tokens, step); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < B; b++ {
					copy(got[(b*T+i)*V:(b*T+i+1)*V], step[b*V:(b+1)*V])
				}
			}
			r := compare(t, "logits_state", got, g.floats("logits_state"), c.tolOut)
			fs := flatState(s)
			for j, field := range stateFields(cfg) {
				compare(t, "state_out/"+field, fs[j], g.floats("state_out/"+field), c.tolOut)
			}
			// the logits-only parallel graph (rwkv-eval's parallel mode) from the same state
			gr, err := m.NewGraph(GraphOptions{B: B, T: T})
			if err != nil {
				t.Fatal(err)
			}
			defer gr.Close()
			if err := gr.SetTokens(ids, nil); err != nil {
				t.Fatal(err)
			}
			if err := gr.SetState(g.state("state_in/", cfg, B)); err != nil {
				t.Fatal(err)
			}
			if err := gr.Run(); err != nil {
				t.Fatal(err)
			}
			compare(t, "logits_state (graph without grads)", toFloat64(gr.Logits()), g.floats("logits_state"), c.tolOut)
			t.Logf("logits relative difference %.3g", r)
		})
	}
}

// TestX070ConfigDims: an x070 config's defaults (head size 64, RWKV-LM's LoRA rule, 4C, layer
// 0's v0/v1/v2) give the released 0.1B layout, RWKV-LM's parameter count, and survive
// ConfigOf (how a loaded file's sizes become a config).
func TestX070ConfigDims(t *testing.T) {
	cfg := Config{Arch: arch.X070, Layers: 12, Embd: 768, Vocab: 65536, CtxLen: 512}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	d := cfg.Dims()
	if d.HeadSize != 64 || d.FFN != 3072 || !d.V0Layer0 || d.LoRA != (arch.LoRA{W: 64, A: 64, V: 32, G: 128}) {
		t.Fatalf("dims %+v", d)
	}
	const L, C, V = 12, 768, 65536
	want := 2*V*C + 4*C + L*(19*C+12*C*C+2*C*(64+32+64+128)) // RWKV-LM README's count
	if n := d.NumParams(); n != want || n != 191084544 {
		t.Errorf("%d parameters, want %d", n, want)
	}
	if specs := Specs(cfg); len(specs) != 6+33*L {
		t.Errorf("%d tensors, want %d", len(specs), 6+33*L)
	}
	if back := ConfigOf(d, 512); back.Dims() != d || back.Validate() != nil {
		t.Errorf("ConfigOf(%+v) = %+v, dims %+v", d, back, back.Dims())
	}
	cfg.NoV0Layer0, cfg.HeadSize, cfg.DimGate = true, 32, 96
	d = cfg.Dims()
	if len(Specs(cfg)) != 6+33*L-3 || d.HeadSize != 32 || d.LoRA.G != 96 || d.V0Layer0 {
		t.Errorf("no_v0_layer0, head_size 32, d_gate_lora 96: %d tensors, dims %+v", len(Specs(cfg)), d)
	}
	if back := ConfigOf(d, 512); back.Dims() != d || back.NoV0Layer0 != true || back.HeadSize != 32 {
		t.Errorf("ConfigOf(%+v) = %+v, dims %+v", d, back, back.Dims())
	}
	if s := NewState(cfg, 2); s.H != 24 || s.N != 32 || len(s.Layers[0].WKV) != 2*24*32*32 || s.Layers[0].AA != nil {
		t.Errorf("state H=%d N=%d wkv %d", s.H, s.N, len(s.Layers[0].WKV))
	}
}

// TestStateMustFit: a graph or RNN refuses a state of the other architecture, head layout or
// batch, naming both.
func TestStateMustFit(t *testing.T) {
	m := tiny7(t, Float64)
	gr, err := m.NewGraph(GraphOptions{B: 2, T: 2, Grads: true, State: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	rnn := m.NewRNN(2)
	heads := m.Config
	heads.HeadSize = 8
	for name, s := range map[string]*State{
		"x040":  NewState(tiny(t, Float64).Config, 2),
		"heads": NewState(heads, 2),
		"batch": NewState(m.Config, 3),
	} {
		for what, err := range map[string]error{
			"SetState":     gr.SetState(s),
			"SetStateGrad": gr.SetStateGrad(s),
			"Step":         rnn.Step(s, []int{1, 2}, make([]float64, 2*m.Config.Vocab)),
		} {
			if err == nil || !strings.Contains(err.Error(), "does not fit") {
				t.Errorf("%s with a %s state: error %v", what, name, err)
			}
		}
	}
	// SetState(nil) returns to fresh sequences after a carried state
	randomize(m, 5)
	ids := []int{1, 2, 3, 4}
	run := func(s *State) []float64 {
		runGraph(t, gr, ids, ids, s)
		return append([]float64(nil), toFloat64(gr.Logits())...)
	}
	fresh := run(NewState(m.Config, 2))
	carried := NewState(m.Config, 2)
	randomState(carried, rand.New(rand.NewPCG(1, 2)), 1)
	if got := run(carried); got[0] == fresh[0] {
		t.Fatal("a random state changed no logit")
	}
	if got := run(nil); !slices.Equal(got, fresh) {
		t.Error("SetState(nil) after a carried state: logits differ from a fresh state's")
	}
}
