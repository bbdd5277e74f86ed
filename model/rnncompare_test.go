package model

import (
	"math"
	"math/rand/v2"
	"testing"
)

// compareRNNSteps feeds T steps of B random tokens (from rng) to m's fast RNN on s and, per
// sequence b, to step (an independent one-sequence form with its own state), and fails at the
// first logit where the two differ by more than tol·(1+|x|). It returns the largest difference
// and the largest |logit|. The x052/x060 and x070 fast-vs-independent tests share it.
func compareRNNSteps[X Float](t *testing.T, m *Model, s *State, B, T int, rng *rand.Rand, tol float64, step func(b, token int, out []X) error) (worst, scale float64) {
	t.Helper()
	V := m.Config.Vocab
	rnn := m.NewRNN(B)
	logits, one := make([]float64, B*V), make([]X, V)
	for i := 0; i < T; i++ {
		tokens := make([]int, B)
		for b := range tokens {
			tokens[b] = rng.IntN(V)
		}
		if err := rnn.Step(s, tokens, logits); err != nil {
			t.Fatal(err)
		}
		for b := range tokens {
			if err := step(b, tokens[b], one); err != nil {
				t.Fatal(err)
			}
			for v, x := range one {
				d := math.Abs(logits[b*V+v] - float64(x))
				worst, scale = math.Max(worst, d), math.Max(scale, math.Abs(float64(x)))
				if d > tol*(1+math.Abs(float64(x))) {
					t.Fatalf("step %d sequence %d logit %d: fast %v, independent %v", i, b, v, logits[b*V+v], x)
				}
			}
		}
	}
	return worst, scale
}
