package train

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"

	"github.com/rwkv-go/rwkv-go/model"
)

// SampleOptions control generation. Temperature 0 means greedy.
type SampleOptions struct {
	Temperature float64
	TopP        float64 // nucleus: keep the smallest set of tokens with this much probability; 0 or 1: off
	TopK        int     // keep the k most likely tokens; 0: off
	Seed        uint64
	MaxTokens   int
	StopToken   int // stop after emitting this token; -1: never
}

// Generate feeds prompt through the RNN form and then samples up to MaxTokens tokens, calling
// emit for each as soon as it is drawn. It stops early on StopToken, when emit returns false,
// or when ctx is done.
func Generate(ctx context.Context, m *model.Model, prompt []int, o SampleOptions, emit func(tok int) bool) error {
	if len(prompt) == 0 {
		return fmt.Errorf("generate: empty prompt")
	}
	rnn := m.NewRNN(1)
	s := model.NewState(m.Config, 1)
	logits := make([]float64, m.Config.Vocab)
	for _, tok := range prompt {
		if err := rnn.Step(s, []int{tok}, logits); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x5eed))
	probs := make([]float64, len(logits))
	idx := make([]int, len(logits))
	for n := 0; n < o.MaxTokens; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		tok := sample(logits, probs, idx, o, rng)
		if !emit(tok) || tok == o.StopToken {
			return nil
		}
		if err := rnn.Step(s, []int{tok}, logits); err != nil {
			return err
		}
	}
	return nil
}

// sample draws one token from logits with temperature, top-k and top-p.
func sample(logits, probs []float64, idx []int, o SampleOptions, rng *rand.Rand) int {
	best := 0
	for i, v := range logits {
		if v > logits[best] {
			best = i
		}
	}
	if o.Temperature <= 0 {
		return best
	}
	var sum float64
	for i, v := range logits {
		probs[i] = math.Exp((v - logits[best]) / o.Temperature)
		sum += probs[i]
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	keep := len(idx)
	if o.TopK > 0 && o.TopK < keep {
		keep = o.TopK
	}
	if o.TopP > 0 && o.TopP < 1 {
		var c float64
		for i := 0; i < keep; i++ {
			c += probs[idx[i]] / sum
			if c >= o.TopP {
				keep = i + 1
				break
			}
		}
	}
	var kept float64
	for _, i := range idx[:keep] {
		kept += probs[i]
	}
	r := rng.Float64() * kept
	for _, i := range idx[:keep] {
		r -= probs[i]
		if r <= 0 {
			return i
		}
	}
	return idx[keep-1]
}
