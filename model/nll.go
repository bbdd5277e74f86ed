package model

import "fmt"

// TokenNLL writes the negative log-likelihood of each target under logits (N, V; float32 or
// float64 data) into nll (N).
func TokenNLL(logits any, targets []int, V int, nll []float64) error {
	check := func(n int) error {
		if n != len(targets)*V || len(nll) != len(targets) {
			return fmt.Errorf("model: TokenNLL: %d logits for %d targets of vocab %d", n, len(targets), V)
		}
		for i, t := range targets {
			if t < 0 || t >= V {
				return fmt.Errorf("model: target id %d at position %d is outside the vocabulary [0, %d)", t, i, V)
			}
		}
		return nil
	}
	switch d := logits.(type) {
	case []float32:
		if err := check(len(d)); err != nil {
			return err
		}
		tokenNLL(d, targets, V, nll)
	case []float64:
		if err := check(len(d)); err != nil {
			return err
		}
		tokenNLL(d, targets, V, nll)
	default:
		return fmt.Errorf("model: TokenNLL: logits of type %T", logits)
	}
	return nil
}

func tokenNLL[F Float](logits []F, targets []int, V int, nll []float64) {
	N := len(targets)
	parallelFor(N, pieces(N, V), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			row := logits[r*V : (r+1)*V]
			nll[r] = logSumExp(row) - float64(row[targets[r]])
		}
	})
}
