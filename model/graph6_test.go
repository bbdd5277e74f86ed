package model

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// tiny5 and tiny6 are small x052 and x060 models: 4 heads of 8, dim_ffn 48, x060 LoRA widths 3
// (token shift) and 5 (decay).
func tiny5(t testing.TB, dt tensor.Dtype) *Model { return tiny56(t, arch.X052, dt) }
func tiny6(t testing.TB, dt tensor.Dtype) *Model { return tiny56(t, arch.X060, dt) }

func tiny56(t testing.TB, a arch.Arch, dt tensor.Dtype) *Model {
	cfg := Config{Arch: a, Layers: 2, Embd: 32, HeadSize: 8, Vocab: 40, CtxLen: 16, FFN: 48}
	if a == arch.X060 {
		cfg.DimMix, cfg.DimDecay = 3, 5
	}
	m, err := New(cfg, dt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

var tinies56 = []struct {
	name string
	new  func(testing.TB, tensor.Dtype) *Model
}{{"x052", tiny5}, {"x060", tiny6}}

// randomize56 is randomize with x060's LoRA factors scaled down so that their tanh do not
// saturate (every gradient stays visible to finite differences) and decays spread over fast
// and slow.
func randomize56(m *Model, seed uint64) {
	randomize(m, seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, p := range m.Params {
		scale, shift := 0.0, 0.0
		switch blockRest(p.Name) {
		case "att.time_maa_w1", "att.time_decay_w1", "att.time_maa_w2", "att.time_decay_w2":
			scale = 0.4
		case "att.time_decay":
			scale, shift = 1, -0.5
		default:
			continue
		}
		v := make([]float64, p.Len())
		for i := range v {
			v[i] = shift + scale*rng.NormFloat64()
		}
		if err := p.SetFloat64s(v); err != nil {
			panic(err)
		}
	}
}

// TestX056GraphFiniteDifferences checks the whole x052 and x060 graphs (float64, 2 layers, 4
// heads, a carried random initial state) against central differences of the loss: two entries
// of every parameter tensor (embedding, norms, every mix, x060's LoRAs, time_decay,
// time_faaaa, the linears, ln_x, the channel mix, the head) and three of every layer's att_x,
// wkv and ffn_x state.
func TestX056GraphFiniteDifferences(t *testing.T) {
	for _, tc := range tinies56 {
		t.Run(tc.name, func(t *testing.T) {
			const B, T = 2, 5
			m := tc.new(t, tensor.Float64)
			randomize56(m, 21)
			rng := rand.New(rand.NewPCG(4, 4))
			nonzero := 0
			checkGraphFiniteDifferences(t, m, B, T, rng, 1e-8, func(_, _ int, g float64) {
				if g != 0 {
					nonzero++
				}
			})
			if nonzero < 2*len(m.Params)*9/10 {
				t.Errorf("only %d of %d checked gradients are nonzero: the check sees little", nonzero, 2*len(m.Params))
			}
		})
	}
}

// TestX056ChunkedEqualsSinglePass: two chunks with the state carried forward and its gradient
// carried backward give the single pass's loss, gradients and final state.
func TestX056ChunkedEqualsSinglePass(t *testing.T) {
	for _, tc := range tinies56 {
		t.Run(tc.name, func(t *testing.T) { testChunkedEqualsSinglePass(t, tc.new(t, tensor.Float64)) })
	}
}

// TestX056GraphModes: a graph without gradients or state gives the same logits as one with
// both, SetState(nil) is a fresh (zero) state, and a carried state changes the logits.
func TestX056GraphModes(t *testing.T) {
	for _, tc := range tinies56 {
		t.Run(tc.name, func(t *testing.T) {
			const B, T = 2, 3
			m := tc.new(t, tensor.Float64)
			randomize56(m, 5)
			ids := []int{1, 2, 3, 4, 5, 6}
			run := func(opts GraphOptions, s *State) []float64 {
				gr, err := m.NewGraph(opts)
				if err != nil {
					t.Fatal(err)
				}
				defer gr.Close()
				runGraph(t, gr, ids, ids, s)
				return append([]float64(nil), toFloat64(gr.Logits())...)
			}
			full := run(GraphOptions{B: B, T: T, Grads: true, State: true, L2Wrap: true}, nil)
			plain := run(GraphOptions{B: B, T: T}, nil)
			zero := run(GraphOptions{B: B, T: T}, NewState(m.Config, B))
			if !slices.Equal(full, plain) || !slices.Equal(plain, zero) {
				t.Error("logits differ between graph modes or between SetState(nil) and a zero state")
			}
			carried := NewState(m.Config, B)
			randomState(carried, rand.New(rand.NewPCG(1, 2)), 1)
			if got := run(GraphOptions{B: B, T: T}, carried); got[0] == plain[0] {
				t.Error("a random state changed no logit")
			}
		})
	}
}

// TestX056ParallelEqualsRNN: the graph (parallel form) and the RNN (NewRNN, one token at a
// time) give the same logits and final state, from a fresh and from a carried random state,
// for x052 and x060 in float64 and float32.
func TestX056ParallelEqualsRNN(t *testing.T) {
	for _, tc := range tinies56 {
		for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
			for _, carried := range []bool{false, true} {
				name := tc.name + "/" + dt.String() + "/fresh"
				if carried {
					name = tc.name + "/" + dt.String() + "/carried"
				}
				t.Run(name, func(t *testing.T) {
					tol := 1e-12
					if dt == tensor.Float32 {
						tol = 1e-5
					}
					testX056ParallelEqualsRNN(t, tc.new(t, dt), carried, tol)
				})
			}
		}
	}
}

func testX056ParallelEqualsRNN(t *testing.T, m *Model, carried bool, tol float64) {
	const B, T = 2, 9
	randomize56(m, 3)
	V := m.Config.Vocab
	rng := rand.New(rand.NewPCG(5, 5))
	ids := make([]int, B*T)
	for i := range ids {
		ids[i] = rng.IntN(V)
	}
	s0 := NewState(m.Config, B)
	if carried {
		randomState(s0, rng, 0.5)
	}
	gr, err := m.NewGraph(GraphOptions{B: B, T: T, State: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	runGraph(t, gr, ids, nil, s0)
	par := toFloat64(gr.Logits())
	parState := NewState(m.Config, B)
	gr.FinalState(parState)

	rnn := m.NewRNN(B)
	logits := make([]float64, B*V)
	var worst float64
	for tt := 0; tt < T; tt++ {
		if err := rnn.Step(s0, []int{ids[tt], ids[T+tt]}, logits); err != nil {
			t.Fatal(err)
		}
		for b := 0; b < B; b++ {
			for v := 0; v < V; v++ {
				want := par[(b*T+tt)*V+v]
				d := math.Abs(logits[b*V+v] - want)
				worst = math.Max(worst, d/(1+math.Abs(want)))
				if d > tol*(1+math.Abs(want)) {
					t.Fatalf("logits b=%d t=%d v=%d: rnn %v, parallel %v", b, tt, v, logits[b*V+v], want)
				}
			}
		}
	}
	compareStates(t, "final state", parState, s0, tol)
	t.Logf("max |rnn - parallel|/(1+|logit|) %.3g", worst)
}

// TestX056SharedBuffersChangeNothing: buffer sharing (share.go) leaves every x052/x060 output
// bit-identical (logits, loss, gradients, final state, state gradient; float32, 3 steps).
func TestX056SharedBuffersChangeNothing(t *testing.T) {
	for _, cfg := range []Config{
		{Arch: arch.X052, Layers: 2, Embd: 64, Vocab: 96, CtxLen: 20, HeadSize: 16, FFN: 96},
		{Arch: arch.X060, Layers: 2, Embd: 64, Vocab: 96, CtxLen: 20, HeadSize: 16, FFN: 96, DimMix: 4, DimDecay: 8},
	} {
		t.Run(string(cfg.Arch), func(t *testing.T) { testSharedBuffersChangeNothing(t, cfg) })
	}
}
