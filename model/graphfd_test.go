package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// checkGraphFiniteDifferences checks m's whole graph (float64, B×T tokens and targets drawn from
// rng, a random initial state carried in) against central differences of its loss (step 1e-5,
// |analytic − fd| ≤ tol·max(1, |fd|)): two random entries of every parameter tensor and three of
// every layer's att_x, wkv and ffn_x state. seen(i, j, g) is told each parameter entry checked
// (tensor i, entry j, analytic gradient g) before it is. The x052/x060 and x070 tests share it.
func checkGraphFiniteDifferences(t *testing.T, m *Model, B, T int, rng *rand.Rand, tol float64, seen func(i, j int, g float64)) {
	t.Helper()
	V := m.Config.Vocab
	ids, tg := make([]int, B*T), make([]int, B*T)
	for i := range ids {
		ids[i], tg[i] = rng.IntN(V), rng.IntN(V)
	}
	s0 := NewState(m.Config, B)
	randomState(s0, rng, 0.5)
	gr, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true, State: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	if err := gr.SetTokens(ids, tg); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		if err := gr.SetState(s0); err != nil {
			t.Fatal(err)
		}
		if err := gr.Run(); err != nil {
			t.Fatal(err)
		}
		return gr.Loss()
	}
	loss()
	grads := make([][]float64, len(m.Params))
	for i := range m.Params {
		grads[i] = append([]float64(nil), toFloat64(gr.Grad(i))...)
	}
	sg := NewState(m.Config, B)
	gr.StateGrad(sg)

	const h = 1e-5
	var worst float64
	check := func(what string, x *float64, analytic float64) {
		old := *x
		*x = old + h
		lp := loss()
		*x = old - h
		lm := loss()
		*x = old
		fd := (lp - lm) / (2 * h)
		d := math.Abs(fd - analytic)
		worst = math.Max(worst, d)
		if d > tol*math.Max(1, math.Abs(fd)) || math.IsNaN(d) {
			t.Errorf("%s: analytic %.10g, finite difference %.10g", what, analytic, fd)
		}
	}
	for i, p := range m.Params {
		w := p.F64()
		for k := 0; k < 2; k++ {
			j := rng.IntN(len(w))
			seen(i, j, grads[i][j])
			check(p.Name, &w[j], grads[i][j])
		}
	}
	names := []string{"att_x", "wkv", "ffn_x"}
	for l := range s0.Layers {
		for f, field := range s0.Layers[l].fields() {
			for k := 0; k < 3; k++ {
				j := rng.IntN(len(field))
				check(names[f], &field[j], sg.Layers[l].fields()[f][j])
			}
		}
	}
	t.Logf("max |analytic - finite difference| %.3g", worst)
}

// runGraph sets gr's tokens and targets (nil: none) and initial state (nil: fresh) and runs it.
func runGraph(t *testing.T, gr *Graph, ids, targets []int, s *State) {
	t.Helper()
	if err := gr.SetTokens(ids, targets); err != nil {
		t.Fatal(err)
	}
	if err := gr.SetState(s); err != nil {
		t.Fatal(err)
	}
	if err := gr.Run(); err != nil {
		t.Fatal(err)
	}
}
