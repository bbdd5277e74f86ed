package eval

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

// TestPenaltyArithmetic follows the occurrence counts and the penalised logits step by step on a
// vocab of 4 against values computed by hand from ChatRWKV's rule: before each draw, every token
// generated so far loses presence + count×frequency; after it, every count is multiplied by the
// decay and the drawn token's count grows by 1 (0 when exempt).
func TestPenaltyArithmetic(t *testing.T) {
	inf := math.Inf(-1)
	base := []float64{1, 2, 3, 4}
	for _, tt := range []struct {
		name  string
		o     SampleOptions
		drawn []int       // the tokens generated, one per step
		want  [][]float64 // the penalised logits before each draw, len(drawn)+1
	}{
		{
			// presence .5, frequency .25, decay .5, token 3 exempt: all binary fractions.
			// counts after each draw: {1:1}, {1:1.5}, {1:.75 3:0}, {1:.375 2:1 3:0}
			name:  "decay and an exempt token",
			o:     SampleOptions{AlphaPresence: 0.5, AlphaFrequency: 0.25, PenaltyDecay: 0.5, PenaltyExempt: []int{3}},
			drawn: []int{1, 1, 3, 2},
			want: [][]float64{
				{1, 2, 3, 4},
				{1, 2 - 0.75, 3, 4},
				{1, 2 - 0.875, 3, 4},
				{1, 2 - 0.6875, 3, 4 - 0.5},
				{1, 2 - 0.59375, 3 - 0.75, 4 - 0.5},
			},
		},
		{
			// ChatRWKV's defaults: counts {2:1}, {2:1.996}, {2:1.988016 0:1}
			name:  "ChatRWKV defaults",
			o:     SampleOptions{AlphaPresence: 0.2, AlphaFrequency: 0.2, PenaltyDecay: 0.996},
			drawn: []int{2, 2, 0},
			want: [][]float64{
				{1, 2, 3, 4},
				{1, 2, 3 - 0.4, 4},
				{1, 2, 3 - (0.2 + 1.996*0.2), 4},
				{1 - 0.4, 2, 3 - (0.2 + 1.988016*0.2), 4},
			},
		},
		{
			// decay 0: only the last draw is counted, but every token drawn keeps its presence
			// penalty; a negative frequency penalty favours repeats.
			name:  "decay 0, negative frequency",
			o:     SampleOptions{AlphaPresence: 1, AlphaFrequency: -2, PenaltyDecay: 0},
			drawn: []int{0, 0, 3},
			want: [][]float64{
				{1, 2, 3, 4},
				{1 + 1, 2, 3, 4},
				{1 + 1, 2, 3, 4},
				{1 - 1, 2, 3, 4 + 1},
			},
		},
		{
			name:  "decay 1 never forgets; a ban is -Inf",
			o:     SampleOptions{AlphaFrequency: 1, PenaltyDecay: 1, Ban: []int{3}},
			drawn: []int{1, 0, 1},
			want: [][]float64{
				{1, 2, 3, inf},
				{1, 2 - 1, 3, inf},
				{1 - 1, 2 - 1, 3, inf},
				{1 - 1, 2 - 2, 3, inf},
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSampler(len(base), tt.o)
			for step := range tt.want {
				logits := slicesClone(base)
				s.penalise(logits)
				for i := range logits {
					if math.Abs(logits[i]-tt.want[step][i]) > 1e-12 && !(math.IsInf(logits[i], -1) && math.IsInf(tt.want[step][i], -1)) {
						t.Fatalf("step %d: logits %v, want %v", step, logits, tt.want[step])
					}
				}
				if step < len(tt.drawn) {
					s.observe(tt.drawn[step])
				}
			}
		})
	}
}

func slicesClone(x []float64) []float64 { return append([]float64(nil), x...) }

// TestPenaltyAppliesBeforeTheDraw: with greedy decoding a presence penalty larger than the gap
// between the two best logits makes the sampler alternate between them, and the counts decide
// when a token comes back.
func TestPenaltyAppliesBeforeTheDraw(t *testing.T) {
	s := newSampler(3, SampleOptions{AlphaPresence: 0, AlphaFrequency: 1, PenaltyDecay: 0.5})
	var got []int
	for range 6 {
		got = append(got, s.next([]float64{0, 1.4, 2})) // fresh logits each step, as from a model
	}
	// Penalised (token 1, token 2) before each draw, and the counts after it:
	// (1.4, 2) -> 2, c2=1; (1.4, 1) -> 1, c1=1 c2=.5; (.4, 1.5) -> 2, c1=.5 c2=1.25;
	// (.9, .75) -> 1, c1=1.25 c2=.625; (.15, 1.375) -> 2, c1=.625 c2=1.3125; (.775, .6875) -> 1.
	want := []int{2, 1, 2, 1, 2, 1}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("greedy draws %v, want %v", got, want)
	}
}

// stickyLogits is a fixed logit source that strongly prefers repeating the previous token: the
// degenerate loop (runs of tabs or braces) the penalties are for.
func stickyLogits(prev int, logits []float64) {
	for i := range logits {
		logits[i] = float64(i%3) * 0.1
	}
	logits[prev] += 3
}

// longestRun is the length of the longest run of one repeated token.
func longestRun(toks []int) int {
	best, run := 0, 0
	for i, t := range toks {
		if i > 0 && t == toks[i-1] {
			run++
		} else {
			run = 1
		}
		best = max(best, run)
	}
	return best
}

// TestPenaltyReducesRepetition: on a logit source that prefers repeating the last token, a
// frequency penalty with decay shortens the longest run, for the same seeds, both when sampling
// and when greedy; and the run is what the arithmetic says when greedy.
func TestPenaltyReducesRepetition(t *testing.T) {
	const V, n = 8, 400
	draw := func(o SampleOptions) []int {
		s := newSampler(V, o)
		logits := make([]float64, V)
		out := []int{0}
		for range n {
			stickyLogits(out[len(out)-1], logits)
			out = append(out, s.next(logits))
		}
		return out[1:]
	}
	pen := SampleOptions{AlphaFrequency: 1, PenaltyDecay: 0.8}
	for _, tt := range []struct {
		name    string
		o       SampleOptions
		maxWith int // the longest run allowed with the penalty
	}{
		// Greedy: a repeated token t keeps its +3 while 3 + .1·(t%3) - count beats .2, the best
		// other logit: the counts before its draws are 0, 1, 1.8, 2.44, 2.952, 3.36, so token 0
		// (3) runs 4 times and token 2 (3.2) 5 times, against 400 without the penalty.
		{"greedy", SampleOptions{}, 5},
		{"temperature 1", SampleOptions{Temperature: 1, TopP: 1, Seed: 3}, 6},
		{"top-p 0.9", SampleOptions{Temperature: 1, TopP: 0.9, Seed: 4}, 6},
	} {
		t.Run(tt.name, func(t *testing.T) {
			without := draw(tt.o)
			with := tt.o
			with.AlphaFrequency, with.PenaltyDecay = pen.AlphaFrequency, pen.PenaltyDecay
			got := draw(with)
			rw, rp := longestRun(without), longestRun(got)
			if rp >= rw || rp > tt.maxWith {
				t.Fatalf("longest run %d without the penalty, %d with it (want < %d and <= %d)", rw, rp, rw, tt.maxWith)
			}
			if a := draw(with); !reflect.DeepEqual(a, got) {
				t.Fatal("same seed, different draws")
			}
		})
	}
}

// TestGenerateWithPenalties: on a real (tiny) model, greedy decoding with a frequency penalty
// repeats tokens less than plain greedy decoding, and the penalties change nothing when both
// alphas are 0; for RWKV-4 and RWKV-7.
func TestGenerateWithPenalties(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) { generateWithPenalties(t, tinyModelOf(t, a, 64, model.Float32)) })
	}
}

func generateWithPenalties(t *testing.T, m *model.Model) {
	prompt := []int{3, 1, 4, 1, 5}
	plain := collect(t, m, prompt, SampleOptions{MaxTokens: 60, StopToken: -1})
	off := collect(t, m, prompt, SampleOptions{MaxTokens: 60, StopToken: -1, PenaltyDecay: 0.5, PenaltyExempt: []int{1, 2}})
	if !reflect.DeepEqual(plain, off) {
		t.Fatalf("alphas 0 changed the output:\n%v\n%v", plain, off)
	}
	pen := collect(t, m, prompt, SampleOptions{MaxTokens: 60, StopToken: -1, AlphaPresence: 0.5, AlphaFrequency: 0.5, PenaltyDecay: 0.996})
	distinct := func(x []int) int {
		seen := map[int]bool{}
		for _, t := range x {
			seen[t] = true
		}
		return len(seen)
	}
	if distinct(pen) <= distinct(plain) {
		t.Fatalf("penalised greedy output uses %d distinct tokens, plain greedy %d:\n%v\n%v", distinct(pen), distinct(plain), pen, plain)
	}
}

// TestTopPZeroIsGreedy: top-p 0 keeps only the most likely token, as ChatRWKV, so it equals
// greedy decoding (and so does any tiny top-p); top-p 1 is off.
func TestTopPZeroIsGreedy(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	prompt := []int{3, 1, 4, 1, 5}
	greedy := collect(t, m, prompt, SampleOptions{MaxTokens: 20, StopToken: -1})
	for _, p := range []float64{0, 1e-9} {
		if got := collect(t, m, prompt, SampleOptions{Temperature: 1.5, TopP: p, Seed: 2, MaxTokens: 20, StopToken: -1}); !reflect.DeepEqual(got, greedy) {
			t.Fatalf("top-p %g: %v, want greedy %v", p, got, greedy)
		}
	}
	if got := collect(t, m, prompt, SampleOptions{Temperature: 1.5, TopP: 1, Seed: 2, MaxTokens: 20, StopToken: -1}); reflect.DeepEqual(got, greedy) {
		t.Fatalf("top-p 1 (off) at temperature 1.5 gave the greedy output %v", got)
	}
}

func TestSampleOptionsRejected(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	all := make([]int, 64)
	for i := range all {
		all[i] = i
	}
	nan, inf := math.NaN(), math.Inf(1)
	for _, tt := range []struct {
		name string
		o    SampleOptions
		want string // in the message
	}{
		{"negative decay", SampleOptions{PenaltyDecay: -0.1}, "penalty decay -0.1"},
		{"decay above 1", SampleOptions{PenaltyDecay: 1.5}, "penalty decay 1.5"},
		{"NaN decay", SampleOptions{PenaltyDecay: nan}, "penalty decay NaN"},
		{"NaN presence", SampleOptions{AlphaPresence: nan}, "alpha presence NaN"},
		{"infinite frequency", SampleOptions{AlphaFrequency: inf}, "alpha frequency +Inf"},
		{"NaN temperature", SampleOptions{Temperature: nan}, "temperature NaN"},
		{"NaN top-p", SampleOptions{TopP: nan}, "top-p NaN"},
		{"negative top-p", SampleOptions{TopP: -0.5}, "top-p -0.5"},
		{"ban out of the vocabulary", SampleOptions{Ban: []int{64}}, "banned token 64"},
		{"negative exempt token", SampleOptions{PenaltyExempt: []int{-1}}, "penalty-exempt token -1"},
		{"everything banned", SampleOptions{Ban: append(all, 5)}, "all 64 tokens are banned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Generate(context.Background(), m, []int{1}, tt.o, func(int) bool { return true })
			if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrOptions naming %q", err, tt.want)
			}
		})
	}
}

func TestExemptTokens(t *testing.T) {
	bytes := func(t int) string { return string([]byte{byte(t)}) }
	got := ExemptTokens(256, bytes, ChatRWKVExempt)
	want := []int{'\t', ' ', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9'}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("byte vocab: %v, want %v", got, want)
	}
	words := []string{"", "  ", "12", " x", "\t", "7", "a"}
	got = ExemptTokens(len(words), func(t int) string { return words[t] }, ChatRWKVExempt)
	if want := []int{1, 2, 4, 5}; !reflect.DeepEqual(got, want) {
		t.Fatalf("multi-character tokens: %v, want %v", got, want)
	}
}

// TestDefaultSampleOptions pins ChatRWKV's PIPELINE_ARGS defaults.
func TestDefaultSampleOptions(t *testing.T) {
	d := DefaultSampleOptions()
	if d.Temperature != 1 || d.TopP != 0.85 || d.TopK != 0 || d.AlphaPresence != 0.2 || d.AlphaFrequency != 0.2 || d.PenaltyDecay != 0.996 {
		t.Fatalf("%+v", d)
	}
	if err := d.validate(256); err != nil {
		t.Fatal(err)
	}
}

// TestTopPBeforeTemperature: as in ChatRWKV, top-p chooses the tokens from the probabilities at
// temperature 1 and the temperature then reshapes only the kept ones; ties with the cutoff stay.
func TestTopPBeforeTemperature(t *testing.T) {
	for _, tt := range []struct {
		name   string
		logits []float64
		o      SampleOptions
		want   []float64
	}{
		// At temperature 1: .087 .237 .644 .032, so top-p .8 keeps tokens 2 and 1; at temperature
		// .5 they weigh e^4 : e^2. (Tempering first would have kept token 2 alone.)
		{"top-p .8 at temperature .5", []float64{0, 1, 2, -1}, SampleOptions{Temperature: 0.5, TopP: 0.8}, []float64{0, 0.1192, 0.8808, 0}},
		{"top-p 0 keeps ties", []float64{1, 1, 0}, SampleOptions{Temperature: 1, TopP: 0}, []float64{0.5, 0.5, 0}},
		{"top-k 2 at temperature 2", []float64{0, 1, 2, -1}, SampleOptions{Temperature: 2, TopP: 1, TopK: 2}, []float64{0, 0.3775, 0.6225, 0}},
		{"ban", []float64{0, 1, 2, -1}, SampleOptions{Temperature: 1, TopP: 1, Ban: []int{2}}, []float64{0.2447, 0.6652, 0, 0.0900}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSampler(len(tt.logits), tt.o)
			s.rng = rand.New(rand.NewPCG(5, 6))
			const n = 20000
			count := make([]float64, len(tt.logits))
			for range n {
				count[s.next(slicesClone(tt.logits))]++
				s.seen, s.count = s.seen[:0], make([]float64, len(tt.logits)) // no penalties anyway; keep it a fixed distribution
			}
			for i := range count {
				if got := count[i] / n; math.Abs(got-tt.want[i]) > 0.015 {
					t.Fatalf("frequencies %v, want about %v", count, tt.want)
				}
			}
		})
	}
}
