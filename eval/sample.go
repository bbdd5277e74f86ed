package eval

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// SampleOptions control generation. Temperature 0 means greedy (argmax).
type SampleOptions struct {
	Temperature float64
	TopP        float64 // nucleus: keep the smallest set of tokens with this much probability; 0 or 1: off
	TopK        int     // keep the k most likely tokens; 0: off
	Seed        uint64
	MaxTokens   int // token budget
	StopToken   int // stop after emitting this token; -1: never
}

func (o SampleOptions) validate() error {
	switch {
	case o.Temperature < 0 || math.IsNaN(o.Temperature):
		return fmt.Errorf("eval: %w: temperature %g, want >= 0", ErrOptions, o.Temperature)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("eval: %w: top-p %g, want 0..1", ErrOptions, o.TopP)
	case o.TopK < 0:
		return fmt.Errorf("eval: %w: top-k %d, want >= 0", ErrOptions, o.TopK)
	case o.MaxTokens < 0:
		return fmt.Errorf("eval: %w: max tokens %d, want >= 0", ErrOptions, o.MaxTokens)
	}
	return nil
}

// sampler draws tokens from logits with temperature, top-k and top-p, reusing its buffers.
type sampler struct {
	o     SampleOptions
	rng   *rand.Rand
	probs []float64 // unnormalised probabilities, (V)
	idx   []int     // token ids, sorted by probability when top-k or top-p is on
}

// sample returns one token id for the next-token logits.
func (s *sampler) sample(logits []float64) int {
	best := argmax(logits)
	if s.o.Temperature <= 0 {
		return best
	}
	var sum float64
	for i, v := range logits {
		s.probs[i] = math.Exp((v - logits[best]) / s.o.Temperature)
		sum += s.probs[i]
		s.idx[i] = i
	}
	keep := len(s.idx)
	topK := s.o.TopK > 0 && s.o.TopK < keep
	topP := s.o.TopP > 0 && s.o.TopP < 1
	if topK || topP {
		slices.SortFunc(s.idx, func(a, b int) int { return cmp.Compare(s.probs[b], s.probs[a]) })
	}
	if topK {
		keep = s.o.TopK
	}
	if topP {
		var c float64
		for i := range keep {
			c += s.probs[s.idx[i]] / sum
			if c >= s.o.TopP {
				keep = i + 1
				break
			}
		}
	}
	var kept float64
	for _, i := range s.idx[:keep] {
		kept += s.probs[i]
	}
	r := s.rng.Float64() * kept
	for _, i := range s.idx[:keep] {
		r -= s.probs[i]
		if r <= 0 {
			return i
		}
	}
	return s.idx[keep-1]
}

// argmax is the index of the largest value (the first on ties).
func argmax(x []float64) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}
