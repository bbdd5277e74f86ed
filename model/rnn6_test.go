package model

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// rnn6Archs are the two architectures of the x052/x060 RNN.
var rnn6Archs = []arch.Arch{arch.X052, arch.X060}

// rnn6Tiny is a small x052 or x060 model: 2 layers, 2 heads of 16, dim_ffn 96 (the 3.5x
// default), x060 LoRA widths 4 (token shift) and 8 (decay).
func rnn6Tiny(t testing.TB, a arch.Arch, dt DType) *Model {
	t.Helper()
	cfg := Config{Arch: a, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 64, CtxLen: 16}
	if a == arch.X060 {
		cfg.DimMix, cfg.DimDecay = 4, 8
	}
	m, err := New(cfg, dt)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rnn6Randomize gives every x052/x060 parameter random values at scales where each term of
// the equations matters: token-shift weights around 0.5, decays d = exp(−exp(w̃)) mostly in
// (0.3, 0.9), the LoRA products of order one inside tanh, LayerNorm weights around 1.
func rnn6Randomize(m *Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 6))
	for _, p := range m.Params {
		n := p.Name
		in := p.Shape[len(p.Shape)-1] // a Linear's fan-in
		scale, shift := 1/math.Sqrt(float64(in)), 0.0
		switch {
		case strings.Contains(n, "time_mix_"), strings.HasSuffix(n, "time_maa_x"), strings.HasSuffix(n, "time_maa_w"),
			strings.HasSuffix(n, "time_maa_k"), strings.HasSuffix(n, "time_maa_v"), strings.HasSuffix(n, "time_maa_r"),
			strings.HasSuffix(n, "time_maa_g"):
			scale, shift = 0.25, 0.5
		case strings.HasSuffix(n, "time_maa_w1"), strings.HasSuffix(n, "time_decay_w1"):
			scale = 1 / math.Sqrt(float64(p.Shape[0])) // x @ w1, fan-in C
		case strings.HasSuffix(n, "time_maa_w2"), strings.HasSuffix(n, "time_decay_w2"):
			scale = 0.5 / math.Sqrt(float64(p.Shape[len(p.Shape)-2]))
		case strings.HasSuffix(n, "time_decay"):
			scale, shift = 0.5, -1
		case strings.HasSuffix(n, "time_faaaa"), strings.HasSuffix(n, ".bias"):
			scale = 0.3
		case strings.HasSuffix(n, "ln0.weight"), strings.HasSuffix(n, "ln1.weight"), strings.HasSuffix(n, "ln2.weight"),
			n == "ln_out.weight", strings.HasSuffix(n, "ln_x.weight"):
			scale, shift = 0.2, 1
		case n == "emb.weight":
			scale = 1
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

// rnn6Split copies a State (B sequences, float64) into per-sequence x05States.
func rnn6Split(s *State, d arch.Dims) [][]x05State {
	C, S := d.Embd, d.Embd*d.HeadSize
	st := make([][]x05State, s.B)
	for b := range st {
		st[b] = newX05States(d)
		for l, ls := range s.Layers {
			copy(st[b][l].AttX, ls.AttX[b*C:(b+1)*C])
			copy(st[b][l].WKV, ls.WKV[b*S:(b+1)*S])
			copy(st[b][l].FFNX, ls.FFNX[b*C:(b+1)*C])
		}
	}
	return st
}

// roundState rounds every value of s to float32 when the model is (the fast kernel reads its
// state through the model's dtype; the independent form starts from the same values).
func roundState(s *State, dt DType) {
	if dt != Float32 {
		return
	}
	for _, l := range s.Layers {
		for _, f := range l.fields() {
			for i, v := range f {
				f[i] = float64(float32(v))
			}
		}
	}
}

// TestRNN6FastMatchesIndependent: the fast batched kernel (Model.NewRNN) and the independent
// float64 form (rnn6.go), from the same random weights and random carried state, give the same
// logits at every one of 20 steps and the same final state, for x052 and x060, float32 and
// float64 models, B = 1 and B = 3 (each sequence its own tokens).
func TestRNN6FastMatchesIndependent(t *testing.T) {
	for _, a := range rnn6Archs {
		for _, dt := range []DType{Float64, Float32} {
			for _, B := range []int{1, 3} {
				tol := 1e-12
				if dt == Float32 {
					tol = 1e-5
				}
				t.Run(fmt.Sprintf("%s/%s/B%d", a, dt, B), func(t *testing.T) {
					testRNN6FastMatchesIndependent(t, a, dt, B, tol)
				})
			}
		}
	}
}

func testRNN6FastMatchesIndependent(t *testing.T, a arch.Arch, dt DType, B int, tol float64) {
	const T = 20
	m := rnn6Tiny(t, a, dt)
	rnn6Randomize(m, 11)
	ref, err := newRNN6(params6Of(m))
	if err != nil {
		t.Fatal(err)
	}
	if ref.d != m.Config.Dims() {
		t.Fatalf("independent form inferred %+v, the model is %+v", ref.d, m.Config.Dims())
	}
	rng := rand.New(rand.NewPCG(3, uint64(B)))
	s := NewState(m.Config, B)
	randomState(s, rng, 0.5)
	roundState(s, dt)
	st := rnn6Split(s, ref.d)
	worst, scale := compareRNNSteps(t, m, s, B, T, rng, tol, func(b, token int, out []float64) error {
		return ref.step(token, st[b], out)
	})
	back := rnn6Split(s, ref.d)
	var worstS float64
	for b := range st {
		for l := range st[b] {
			for _, f := range []struct {
				name      string
				got, want []float64
			}{{"att_x", back[b][l].AttX, st[b][l].AttX}, {"wkv", back[b][l].WKV, st[b][l].WKV}, {"ffn_x", back[b][l].FFNX, st[b][l].FFNX}} {
				for j := range f.want {
					d := math.Abs(f.got[j] - f.want[j])
					worstS = math.Max(worstS, d)
					if d > tol*(1+math.Abs(f.want[j])) {
						t.Fatalf("sequence %d layer %d %s[%d]: fast %v, independent %v", b, l, f.name, j, f.got[j], f.want[j])
					}
				}
			}
		}
	}
	if scale < 0.1 {
		t.Fatalf("logits of scale %.3g: the random weights leave the model degenerate", scale)
	}
	t.Logf("max |fast − independent|: logits %.3g (scale %.3g), state %.3g", worst, scale, worstS)
}

// TestRNN6EveryTermMatters guards the random weights of the tests above: perturbing any one
// tensor of the tiny models changes the logits after a few steps from a random state, so a
// kernel that ignored a tensor (or a LoRA chunk) could not match the independent form.
func TestRNN6EveryTermMatters(t *testing.T) {
	for _, a := range rnn6Archs {
		t.Run(string(a), func(t *testing.T) {
			m := rnn6Tiny(t, a, Float64)
			rnn6Randomize(m, 11)
			run := func() []float64 {
				rng := rand.New(rand.NewPCG(5, 5))
				s := NewState(m.Config, 1)
				randomState(s, rng, 0.5)
				rnn := m.NewRNN(1)
				V := m.Config.Vocab
				out := make([]float64, V)
				var all []float64
				for _, tok := range []int{7, 3, 60, 1} {
					if err := rnn.Step(s, []int{tok}, out); err != nil {
						t.Fatal(err)
					}
					all = append(all, out...)
				}
				return all
			}
			base := run()
			// moved perturbs p's values, runs, restores them and returns how far the logits moved.
			moved := func(p *Param, perturb func(v []float64)) float64 {
				v := p.Float64s()
				saved := append([]float64(nil), v...)
				perturb(v)
				if err := p.SetFloat64s(v); err != nil {
					t.Fatal(err)
				}
				got := run()
				if err := p.SetFloat64s(saved); err != nil {
					t.Fatal(err)
				}
				var d float64
				for i := range got {
					d = math.Max(d, math.Abs(got[i]-base[i]))
				}
				return d
			}
			prng := rand.New(rand.NewPCG(6, 6))
			for _, p := range m.Params {
				d := moved(p, func(v []float64) {
					for i := range v { // random, not uniform: LayerNorm and GroupNorm cancel a uniform shift
						v[i] += 0.05 * prng.NormFloat64()
					}
				})
				if d < 1e-6 {
					t.Errorf("%s: changing it moves the logits by %.3g only", p.Name, d)
				}
			}
			// and each of x060's five token-shift LoRA chunks (w, k, v, r, g) separately
			if a != arch.X060 {
				return
			}
			M := m.Config.LoRA().Mix
			for _, name := range []string{"blocks.1.att.time_maa_w2"} {
				p := m.Param(name)
				for c := 0; c < 5; c++ {
					C := m.Config.Embd
					d := moved(p, func(v []float64) {
						for i := c * M * C; i < (c+1)*M*C; i++ {
							v[i] += 0.2 * prng.NormFloat64()
						}
					})
					if d < 1e-6 {
						t.Errorf("%s chunk %c: changing it moves the logits by %.3g only", name, rnn6MixOrder[c], d)
					}
				}
			}
		})
	}
}

// TestRNN6StateRoundTrip: a State cloned mid-sequence and copied back (CopyFrom) replays the
// same continuation bit for bit; the clone is deep; CopyFrom refuses the other architecture's
// state of the same shape.
func TestRNN6StateRoundTrip(t *testing.T) {
	for _, a := range rnn6Archs {
		t.Run(string(a), func(t *testing.T) {
			const B = 2
			m := rnn6Tiny(t, a, Float32)
			rnn6Randomize(m, 4)
			V := m.Config.Vocab
			rnn := m.NewRNN(B)
			s := NewState(m.Config, B)
			out := make([]float64, B*V)
			feed := func(toks [][]int) []float64 {
				var all []float64
				for _, tk := range toks {
					if err := rnn.Step(s, tk, out); err != nil {
						t.Fatal(err)
					}
					all = append(all, out...)
				}
				return all
			}
			feed([][]int{{1, 2}, {3, 4}, {5, 6}})
			saved := s.Clone()
			first := feed([][]int{{7, 8}, {9, 10}})
			if s.Layers[1].WKV[5] == saved.Layers[1].WKV[5] {
				t.Fatal("stepping the state left its clone's WKV equal: not a deep copy, or no update")
			}
			if err := s.CopyFrom(saved); err != nil {
				t.Fatal(err)
			}
			again := feed([][]int{{7, 8}, {9, 10}})
			for i := range first {
				if first[i] != again[i] {
					t.Fatalf("logit %d after restoring the state: %v, first time %v", i, again[i], first[i])
				}
			}
			other := rnn6Tiny(t, arch.X052, Float32)
			if a == arch.X052 {
				other = rnn6Tiny(t, arch.X060, Float32)
			}
			err := s.CopyFrom(NewState(other.Config, B))
			if err == nil || !strings.Contains(err.Error(), "cannot take") {
				t.Errorf("CopyFrom a state of %s: error %v", other.Config.Arch, err)
			}
			if err := rnn.Step(NewState(other.Config, B), []int{1, 2}, out); err == nil || !strings.Contains(err.Error(), "does not fit") {
				t.Errorf("Step with a state of %s: error %v", other.Config.Arch, err)
			}
		})
	}
}

// TestRNN6Errors: token ids outside the vocabulary, wrong buffer sizes and wrong tensor sets
// are refused with messages naming the value.
func TestRNN6Errors(t *testing.T) {
	for _, a := range rnn6Archs {
		t.Run(string(a), func(t *testing.T) {
			m := rnn6Tiny(t, a, Float64)
			V := m.Config.Vocab
			rnn := m.NewRNN(2)
			s := NewState(m.Config, 2)
			for _, c := range []struct {
				tokens []int
				n      int
				want   string
			}{
				{[]int{1, V}, 2 * V, fmt.Sprintf("token id %d of sequence 1 is outside the vocabulary [0, %d)", V, V)},
				{[]int{-1, 0}, 2 * V, "token id -1 of sequence 0"},
				{[]int{1}, 2 * V, "takes 2 tokens"},
				{[]int{1, 2}, V, "takes 2 tokens and 128 logits"},
			} {
				err := rnn.Step(s, c.tokens, make([]float64, c.n))
				if err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("Step(%v): error %v, want %q", c.tokens, err, c.want)
				}
			}
			ref, err := newRNN6(params6Of(m))
			if err != nil {
				t.Fatal(err)
			}
			st := newX05States(ref.d)
			for _, tok := range []int{-1, V} {
				if err := ref.step(tok, st, make([]float64, V)); err == nil || !strings.Contains(err.Error(), "outside the vocabulary") {
					t.Errorf("independent step(%d): error %v", tok, err)
				}
			}
			p := params6Of(m)
			delete(p, "blocks.1.att.time_faaaa")
			if _, err := newRNN6(p); err == nil || !strings.Contains(err.Error(), "blocks.1.att.time_faaaa") {
				t.Errorf("without time_faaaa: error %v", err)
			}
			p7 := params6Of(tiny7(t, Float64))
			if _, err := newRNN6(p7); err == nil || !strings.Contains(err.Error(), "RWKV-7") {
				t.Errorf("x070 tensors: error %v", err)
			}
		})
	}
}

// TestRNN6MatchesChatRWKV runs ChatRWKV's per-token v5/v6 equations (testdata/chatrwkv6_rnn.py,
// torch float64, WKV state [key][value], transposed at the file boundary) on safetensors files
// of random weights, tokens and a random initial state, and compares the logits of every step and
// the final state with the fast kernel and with the independent form (relative 1e-10). It skips
// where /usr/bin/python3 cannot import torch, unless RWKV_REQUIRE_TORCH is set.
func TestRNN6MatchesChatRWKV(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts PyTorch")
	}
	py := testutil.RequireTorch(t)
	const B, T = 2, 6
	type run struct {
		m       *Model
		s       *State // the initial state
		tokens  []int  // [B,T]
		in, out string
	}
	dir := t.TempDir()
	var runs []run
	var args []string
	for _, a := range rnn6Archs {
		m := rnn6Tiny(t, a, Float64)
		rnn6Randomize(m, 21)
		cfg := m.Config
		L, C, V := cfg.Layers, cfg.Embd, cfg.Vocab
		H, N := cfg.Heads(), cfg.HeadDim()
		rng := rand.New(rand.NewPCG(8, 8))
		s := NewState(cfg, B)
		randomState(s, rng, 0.5)
		tokens := make([]int, B*T)
		tokBytes := make([]byte, 8*B*T)
		for i := range tokens {
			tokens[i] = rng.IntN(V)
			binary.LittleEndian.PutUint64(tokBytes[8*i:], uint64(tokens[i]))
		}
		var ts []checkpoint.Tensor
		for _, p := range m.Params {
			ts = append(ts, checkpoint.FromFloat64("param/"+p.Name, p.Shape, p.Float64s(), checkpoint.F64))
		}
		ts = append(ts, checkpoint.Tensor{Name: "tokens", DType: checkpoint.I64, Shape: []int{B, T}, Data: tokBytes})
		fs := flatState(s)
		ts = append(ts, checkpoint.FromFloat64("state_in/att_x", []int{L, B, C}, fs[0], checkpoint.F64),
			checkpoint.FromFloat64("state_in/wkv", []int{L, B, H, N, N}, fs[1], checkpoint.F64),
			checkpoint.FromFloat64("state_in/ffn_x", []int{L, B, C}, fs[2], checkpoint.F64))
		r := run{m: m, s: s, tokens: tokens, in: filepath.Join(dir, string(a)+"-in.safetensors"),
			out: filepath.Join(dir, string(a)+"-out.safetensors")}
		f, err := os.Create(r.in)
		if err != nil {
			t.Fatal(err)
		}
		meta := map[string]string{"arch": string(a), "n_layer": strconv.Itoa(L)}
		if err := checkpoint.WriteSafetensors(f, ts, meta); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, r)
		args = append(args, r.in, r.out)
	}
	if msg, err := exec.Command(py, append([]string{"testdata/chatrwkv6_rnn.py"}, args...)...).CombinedOutput(); err != nil {
		t.Fatalf("testdata/chatrwkv6_rnn.py: %v\n%s", err, msg)
	}
	for _, r := range runs {
		t.Run(string(r.m.Config.Arch), func(t *testing.T) {
			res, err := checkpoint.OpenSafetensors(r.out)
			if err != nil {
				t.Fatal(err)
			}
			want := golden{res, t}
			V := r.m.Config.Vocab
			ref, err := newRNN6(params6Of(r.m))
			if err != nil {
				t.Fatal(err)
			}
			s := r.s
			st := rnn6Split(s, ref.d) // the independent form's copy of the initial state
			rnn := r.m.NewRNN(B)
			got, gotRef := make([]float64, B*T*V), make([]float64, B*T*V)
			step := make([]float64, B*V)
			for i := 0; i < T; i++ {
				tk := []int{r.tokens[i], r.tokens[T+i]}
				if err := rnn.Step(s, tk, step); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < B; b++ {
					copy(got[(b*T+i)*V:(b*T+i+1)*V], step[b*V:(b+1)*V])
					if err := ref.step(tk[b], st[b], gotRef[(b*T+i)*V:(b*T+i+1)*V]); err != nil {
						t.Fatal(err)
					}
				}
			}
			rel := compare(t, "logits (fast kernel)", got, want.floats("logits"), 1e-10)
			relRef := compare(t, "logits (independent form)", gotRef, want.floats("logits"), 1e-10)
			fs := flatState(s)
			var relS float64
			for j, name := range []string{"att_x", "wkv", "ffn_x"} {
				relS = math.Max(relS, compare(t, "state_out/"+name+" (fast kernel)", fs[j], want.floats("state_out/"+name), 1e-10))
			}
			t.Logf("against ChatRWKV's equations: logits %.3g (fast), %.3g (independent); final state %.3g (relative)", rel, relRef, relS)
		})
	}
}

// BenchmarkRNNStep measures the fast RNN (Model.NewRNN) at the 0.1B shape (L12 D768 V65536,
// float32, one sequence) for x060 and x052, with x070 for comparison, and reports tokens/s.
// The weights are zero: BLAS and the per-head loops cost the same whatever the values.
//
//	go test -run '^$' -bench RNNStep -benchtime 50x ./model
func BenchmarkRNNStep(b *testing.B) {
	for _, a := range []arch.Arch{arch.X060, arch.X052, arch.X070} {
		b.Run(string(a), func(b *testing.B) {
			m, err := New(Config{Arch: a, Layers: 12, Embd: 768, Vocab: 65536, CtxLen: 512}, Float32)
			if err != nil {
				b.Fatal(err)
			}
			rnn := m.NewRNN(1)
			s := NewState(m.Config, 1)
			logits := make([]float64, m.Config.Vocab)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := rnn.Step(s, []int{i % 1000}, logits); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

// TestRNN6IndependentEqualsGraph: the parallel graph (NewGraph, float64) over T tokens of B
// sequences from a random carried state gives the logits of the independent per-equation form
// (rnn6.go, which shares no code with the graph's ops, unlike the fast kernel) fed one token at
// a time, and the same final state, within 1e-12, for x052 and x060 (graph = fast RNN is
// TestX056ParallelEqualsRNN).
func TestRNN6IndependentEqualsGraph(t *testing.T) {
	for _, a := range rnn6Archs {
		t.Run(string(a), func(t *testing.T) {
			const B, T, tol = 2, 12, 1e-12
			m := rnn6Tiny(t, a, Float64)
			rnn6Randomize(m, 13)
			V := m.Config.Vocab
			rng := rand.New(rand.NewPCG(9, 9))
			ids := make([]int, B*T)
			for i := range ids {
				ids[i] = rng.IntN(V)
			}
			s0 := NewState(m.Config, B)
			randomState(s0, rng, 0.5)
			gr, err := m.NewGraph(GraphOptions{B: B, T: T, State: true})
			if err != nil {
				t.Fatal(err)
			}
			defer gr.Close()
			runGraph(t, gr, ids, nil, s0)
			par := gr.LogitsF64()
			parState := NewState(m.Config, B)
			gr.FinalState(parState)

			ref, err := newRNN6(params6Of(m))
			if err != nil {
				t.Fatal(err)
			}
			st := rnn6Split(s0, ref.d)
			got := make([]float64, B*T*V)
			for b := 0; b < B; b++ {
				for i := 0; i < T; i++ {
					if err := ref.step(ids[b*T+i], st[b], got[(b*T+i)*V:(b*T+i+1)*V]); err != nil {
						t.Fatal(err)
					}
				}
			}
			rel := compare(t, "logits", got, par, tol)
			want := rnn6Split(parState, ref.d)
			var relS float64
			for b := range st {
				for l := range st[b] {
					for _, f := range []struct {
						name      string
						got, want []float64
					}{{"att_x", st[b][l].AttX, want[b][l].AttX}, {"wkv", st[b][l].WKV, want[b][l].WKV}, {"ffn_x", st[b][l].FFNX, want[b][l].FFNX}} {
						relS = math.Max(relS, compare(t, fmt.Sprintf("final state sequence %d layer %d %s", b, l, f.name), f.got, f.want, tol))
					}
				}
			}
			t.Logf("independent form vs graph: logits %.3g, final state %.3g (relative to scale)", rel, relS)
		})
	}
}
