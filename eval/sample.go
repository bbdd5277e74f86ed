package eval

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
)

// SampleOptions control generation. They follow ChatRWKV's PIPELINE_ARGS and PIPELINE.generate
// (the rwkv pip package, rwkv/utils.py). At each step:
//
//  1. every token in Ban gets the logit -Inf;
//  2. every token generated so far gets its logit lowered by AlphaPresence + count×AlphaFrequency;
//  3. top-p, then top-k choose the tokens to keep from the probabilities at temperature 1;
//  4. the token is drawn from the kept ones with their logits divided by Temperature.
//
// After the draw every count is multiplied by PenaltyDecay and the drawn token's count grows by 1,
// or by 0 for a token in PenaltyExempt (which so gets the presence penalty once generated, never
// the frequency penalty). Prompt tokens are not counted; the counts start afresh with each call.
//
// The zero value is greedy decoding with no penalties; DefaultSampleOptions has ChatRWKV's
// defaults.
type SampleOptions struct {
	Temperature float64 // divides the logits of the kept tokens; 0: greedy (argmax)
	// TopP is nucleus sampling: keep the most likely tokens until their probability (before the
	// temperature) reaches TopP, and every token as likely as the last one kept. 0 keeps only the
	// most likely token (greedy), as in ChatRWKV; 1: off.
	TopP float64
	TopK int // keep at most the k most likely tokens; 0: off

	AlphaPresence  float64 // subtracted once from the logit of every token generated so far
	AlphaFrequency float64 // subtracted per (decayed) occurrence of a generated token
	PenaltyDecay   float64 // 0..1: multiplies every occurrence count after each token (ChatRWKV's alpha_decay); 1: never forget
	PenaltyExempt  []int   // tokens whose occurrences are not counted (ChatRWKV: space, tab and digits); see ExemptTokens
	Ban            []int   // tokens never generated (ChatRWKV's token_ban)

	Seed      uint64
	MaxTokens int // token budget
	StopToken int // stop after emitting this token; -1: never
}

// DefaultSampleOptions are ChatRWKV's PIPELINE_ARGS defaults (temperature 1, top-p 0.85, top-k
// off, presence and frequency penalties 0.2, decay 0.996, 100 tokens, no stop token). Its
// PenaltyExempt is empty: ChatRWKV exempts the tokens that decode to a space, a tab or a digit,
// which ExemptTokens finds with ChatRWKVExempt and the tokenizer.
func DefaultSampleOptions() SampleOptions {
	return SampleOptions{Temperature: 1, TopP: 0.85, AlphaPresence: 0.2, AlphaFrequency: 0.2, PenaltyDecay: 0.996,
		MaxTokens: 100, StopToken: -1}
}

// ChatRWKVExempt is the text of the tokens ChatRWKV leaves out of the occurrence counts: spaces,
// tabs and digits, which repeat in any text.
const ChatRWKVExempt = " \t0123456789"

// ExemptTokens lists the tokens below vocab whose text (decode's) is not empty and made only of
// characters in chars, for SampleOptions.PenaltyExempt. On single-character tokens (every token
// of a byte-level vocabulary) this is ChatRWKV's rule; ChatRWKV's Python test (text in chars) is a
// substring test, which also exempts the empty text and multi-character tokens such as "12" but
// not "  " or "21": this one exempts every token made only of these characters and no empty one.
func ExemptTokens(vocab int, decode func(tok int) string, chars string) []int {
	var out []int
	for t := range vocab {
		s := decode(t)
		if s != "" && strings.Trim(s, chars) == "" {
			out = append(out, t)
		}
	}
	return out
}

// validate checks the options for a vocabulary of V tokens.
func (o SampleOptions) validate(V int) error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case o.Temperature < 0 || !finite(o.Temperature):
		return fmt.Errorf("eval: %w: temperature %g, want >= 0", ErrOptions, o.Temperature)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("eval: %w: top-p %g, want 0..1 (0: greedy, 1: off)", ErrOptions, o.TopP)
	case o.TopK < 0:
		return fmt.Errorf("eval: %w: top-k %d, want >= 0", ErrOptions, o.TopK)
	case !finite(o.AlphaPresence):
		return fmt.Errorf("eval: %w: alpha presence %g, want a finite number", ErrOptions, o.AlphaPresence)
	case !finite(o.AlphaFrequency):
		return fmt.Errorf("eval: %w: alpha frequency %g, want a finite number", ErrOptions, o.AlphaFrequency)
	case o.PenaltyDecay < 0 || o.PenaltyDecay > 1 || math.IsNaN(o.PenaltyDecay):
		return fmt.Errorf("eval: %w: penalty decay %g, want 0..1", ErrOptions, o.PenaltyDecay)
	case o.MaxTokens < 0:
		return fmt.Errorf("eval: %w: max tokens %d, want >= 0", ErrOptions, o.MaxTokens)
	}
	for _, l := range []struct {
		name string
		toks []int
	}{{"banned", o.Ban}, {"penalty-exempt", o.PenaltyExempt}} {
		for _, t := range l.toks {
			if t < 0 || t >= V {
				return fmt.Errorf("eval: %w: %s token %d, want 0..%d (the vocabulary)", ErrOptions, l.name, t, V-1)
			}
		}
	}
	if len(o.Ban) >= V {
		banned := make([]bool, V)
		n := 0
		for _, t := range o.Ban {
			if !banned[t] {
				banned[t] = true
				n++
			}
		}
		if n == V {
			return fmt.Errorf("eval: %w: all %d tokens are banned", ErrOptions, V)
		}
	}
	return nil
}

// sampler draws tokens from logits with the penalties, top-p, top-k and temperature of its
// options, reusing its buffers.
type sampler struct {
	o      SampleOptions
	rng    *rand.Rand
	probs  []float64 // unnormalised probabilities, (V)
	idx    []int     // token ids, sorted by probability when top-k or top-p is on
	count  []float64 // decayed occurrence count of each token, (V)
	seen   []int     // the tokens generated so far, each once: those with a penalty
	inSeen []bool    // (V)
	exempt []bool    // (V)
}

// newSampler seeds a sampler for vocab V.
func newSampler(V int, o SampleOptions) *sampler {
	s := &sampler{o: o, rng: rand.New(rand.NewPCG(o.Seed, 0x5eed)), probs: make([]float64, V), idx: make([]int, V),
		count: make([]float64, V), inSeen: make([]bool, V), exempt: make([]bool, V)}
	for _, t := range o.PenaltyExempt {
		s.exempt[t] = true
	}
	return s
}

// penalise applies the ban and the presence and frequency penalties to logits, in place.
func (s *sampler) penalise(logits []float64) {
	for _, t := range s.o.Ban {
		logits[t] = math.Inf(-1)
	}
	for _, t := range s.seen {
		logits[t] -= s.o.AlphaPresence + s.count[t]*s.o.AlphaFrequency
	}
}

// observe counts a generated token: every count decays, then the token's grows by 1 (0 when
// exempt, though it is still seen and so still gets the presence penalty).
func (s *sampler) observe(tok int) {
	for _, t := range s.seen {
		s.count[t] *= s.o.PenaltyDecay
	}
	if !s.inSeen[tok] {
		s.inSeen[tok] = true
		s.seen = append(s.seen, tok)
	}
	if !s.exempt[tok] {
		s.count[tok]++
	}
}

// next penalises logits (in place), draws a token and counts it.
func (s *sampler) next(logits []float64) int {
	s.penalise(logits)
	t := s.sample(logits)
	s.observe(t)
	return t
}

// sample returns one token id for the next-token logits (already penalised).
func (s *sampler) sample(logits []float64) int {
	best := argmax(logits)
	if s.o.Temperature <= 0 {
		return best
	}
	V := len(logits)
	var sum float64
	for i, v := range logits {
		s.probs[i] = math.Exp(v - logits[best]) // temperature 1, as ChatRWKV's top-p and top-k
		sum += s.probs[i]
		s.idx[i] = i
	}
	keep := V
	topK := s.o.TopK > 0 && s.o.TopK < V
	topP := s.o.TopP < 1
	if topK || topP {
		slices.SortFunc(s.idx, func(a, b int) int { return cmp.Or(cmp.Compare(s.probs[b], s.probs[a]), cmp.Compare(a, b)) })
	}
	if topP {
		// The first token at which the cumulative probability reaches TopP sets the cutoff; every
		// token at least that likely stays (ties included). When rounding keeps the sum below
		// TopP, the cutoff is the least likely token: all stay.
		cut := V - 1
		var c float64
		for i, t := range s.idx {
			if c += s.probs[t] / sum; c >= s.o.TopP {
				cut = i
				break
			}
		}
		keep = cut + 1
		for keep < V && s.probs[s.idx[keep]] >= s.probs[s.idx[cut]] {
			keep++
		}
	}
	if topK {
		keep = min(keep, s.o.TopK)
	}
	// Temperature: p^(1/T) of the kept tokens, renormalised.
	var kept float64
	for _, i := range s.idx[:keep] {
		s.probs[i] = math.Exp((logits[i] - logits[best]) / s.o.Temperature)
		kept += s.probs[i]
	}
	r := s.rng.Float64() * kept
	last := best
	for _, i := range s.idx[:keep] {
		if s.probs[i] == 0 {
			continue // a banned token, or one too unlikely to represent
		}
		last = i
		if r -= s.probs[i]; r <= 0 {
			return i
		}
	}
	return last // rounding left r above 0: the last token that could be drawn
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
