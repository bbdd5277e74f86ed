package eval

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/model"
)

// tinyModel is an L2-D32 RWKV-4 model of vocab V with non-degenerate random weights.
func tinyModel(t testing.TB, V int, dt model.DType) *model.Model {
	return tinyModelOf(t, arch.X040, V, dt)
}

// archs are the architectures every evaluation test runs on.
var archs = []arch.Arch{arch.X040, arch.X052, arch.X060, arch.X070}

// tinyModelOf is an L2-D32 model of architecture a and vocab V with non-degenerate random
// weights; x052, x060 and x070 have 2 heads of 16, x060 and x070 LoRA widths that all differ.
func tinyModelOf(t testing.TB, a arch.Arch, V int, dt model.DType) *model.Model {
	t.Helper()
	cfg := model.Config{Arch: a, Layers: 2, Embd: 32, Vocab: V, CtxLen: 16}
	switch a {
	case arch.X070:
		cfg.HeadSize, cfg.DimDecay, cfg.DimAAA, cfg.DimMV, cfg.DimGate = 16, 8, 12, 4, 16
	case arch.X052:
		cfg.HeadSize = 16
	case arch.X060:
		cfg.HeadSize, cfg.DimMix, cfg.DimDecay = 16, 8, 12
	}
	m, err := model.New(cfg, dt)
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, 7)
	return m
}

// randomize gives every parameter random values of a sensible scale, so that every token
// matters and losses are far from uniform.
func randomize(m *model.Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params {
		v := make([]float64, p.Len())
		scale, shift := 1/math.Sqrt(float64(p.Shape[len(p.Shape)-1])), 0.0
		switch {
		case strings.Contains(p.Name, "time_mix"), strings.Contains(p.Name, ".x_"): // x070's mixes are .x_r ... .x_g
			scale, shift = 0.2, 0.5
		case strings.HasSuffix(p.Name, "_w1"), strings.HasSuffix(p.Name, "_w2"): // x060's LoRAs
			scale = 0.3
		case strings.Contains(p.Name, "time_maa"), strings.Contains(p.Name, "time_faaaa"): // x060 mixes, x052/x060 bonus
			scale, shift = 0.2, 0.5
		case strings.Contains(p.Name, "time_decay"):
			scale, shift = 1, -1
		case strings.Contains(p.Name, "time_first"), strings.HasSuffix(p.Name, ".bias"):
			scale = 0.3
		case strings.Contains(p.Name, "ln") && strings.HasSuffix(p.Name, ".weight"): // x070's ln_x too
			scale, shift = 0.2, 1
		case p.Name == "emb.weight", p.Name == "head.weight":
			scale = 1
		}
		for i := range v {
			v[i] = shift + scale*rng.NormFloat64()
		}
		if err := p.SetFloat64s(v); err != nil {
			panic(err)
		}
	}
}

// randomTokens returns n token ids below V.
func randomTokens(n, V int, seed uint64) Ints {
	rng := rand.New(rand.NewPCG(seed, 2))
	s := make(Ints, n)
	for i := range s {
		s[i] = rng.IntN(V)
	}
	return s
}

// rnnNLL is the reference: the NLL of toks[from..] given toks[:from] and everything before in
// one fresh stream, token by token.
func rnnNLL(t testing.TB, m *model.Model, toks []int) []float64 {
	t.Helper()
	rnn := m.NewRNN(1)
	s := model.NewState(m.Config, 1)
	logits := make([]float64, m.Config.Vocab)
	out := make([]float64, len(toks)-1)
	for i := range out {
		if err := rnn.Step(s, toks[i:i+1], logits); err != nil {
			t.Fatal(err)
		}
		out[i] = logSumExp(logits) - logits[toks[i+1]]
	}
	return out
}

func sum(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s
}

func near(got, want, tol float64) bool { return math.Abs(got-want) <= tol*math.Max(1, math.Abs(want)) }
