package eval

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

func collect(t *testing.T, m *model.Model, prompt []int, o SampleOptions) []int {
	t.Helper()
	var out []int
	if err := Generate(context.Background(), m, prompt, o, func(tok int) bool { out = append(out, tok); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGenerate: budget, greedy equivalences, stop token and same seed same samples, for RWKV-4
// and RWKV-7.
func TestGenerate(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) { testGenerate(t, tinyModelOf(t, a, 64, model.Float32)) })
	}
}

func testGenerate(t *testing.T, m *model.Model) {
	prompt := []int{3, 1, 4, 1, 5}
	greedyOut := collect(t, m, prompt, SampleOptions{MaxTokens: 20, StopToken: -1})
	for _, tt := range []struct {
		name  string
		o     SampleOptions
		check func([]int) bool
	}{
		{"budget", SampleOptions{Temperature: 1, TopP: 1, Seed: 1, MaxTokens: 17, StopToken: -1}, func(o []int) bool { return len(o) == 17 }},
		{"top-k 1 is greedy", SampleOptions{Temperature: 2, TopK: 1, Seed: 9, MaxTokens: 20, StopToken: -1},
			func(o []int) bool { return reflect.DeepEqual(o, greedyOut) }},
		{"tiny top-p is greedy", SampleOptions{Temperature: 1, TopP: 1e-9, Seed: 9, MaxTokens: 20, StopToken: -1},
			func(o []int) bool { return reflect.DeepEqual(o, greedyOut) }},
		{"stops after the stop token", SampleOptions{MaxTokens: 20, StopToken: greedyOut[2]},
			func(o []int) bool { return len(o) <= 3 && o[len(o)-1] == greedyOut[2] }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := collect(t, m, prompt, tt.o); !tt.check(got) {
				t.Fatalf("got %v (greedy: %v)", got, greedyOut)
			}
		})
	}
	o := SampleOptions{Temperature: 1, TopP: 0.9, TopK: 10, Seed: 42, MaxTokens: 30, StopToken: -1}
	if a, b := collect(t, m, prompt, o), collect(t, m, prompt, o); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different samples:\n%v\n%v", a, b)
	}
}

func TestGenerateRejects(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	for _, tt := range []struct {
		name   string
		prompt []int
		o      SampleOptions
	}{
		{"empty prompt", nil, SampleOptions{}},
		{"negative temperature", []int{1}, SampleOptions{Temperature: -1}},
		{"top-p above 1", []int{1}, SampleOptions{TopP: 1.5}},
		{"negative top-k", []int{1}, SampleOptions{TopK: -1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Generate(context.Background(), m, tt.prompt, tt.o, func(int) bool { return true })
			if !errors.Is(err, ErrOptions) {
				t.Fatalf("err = %v, want ErrOptions", err)
			}
		})
	}
}

// TestSamplerFollowsTheDistribution: with temperature 1 and no truncation (top-p 1), token frequencies
// follow softmax(logits); with top-k 2 only the two most likely tokens appear, in the ratio of
// their probabilities.
func TestSamplerFollowsTheDistribution(t *testing.T) {
	logits := []float64{0, 1, 2, -1} // softmax: .087 .237 .644 .032
	for _, tt := range []struct {
		name string
		o    SampleOptions
		want []float64
	}{
		{"full", SampleOptions{Temperature: 1, TopP: 1}, []float64{0.0871, 0.2369, 0.6439, 0.0321}},
		{"top-k 2", SampleOptions{Temperature: 1, TopP: 1, TopK: 2}, []float64{0, 0.2689, 0.7311, 0}},
		{"top-p 0.8", SampleOptions{Temperature: 1, TopP: 0.8}, []float64{0, 0.2689, 0.7311, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSampler(len(logits), tt.o)
			s.rng = rand.New(rand.NewPCG(1, 2))
			const n = 20000
			count := make([]float64, len(logits))
			for range n {
				count[s.sample(logits)]++
			}
			for i := range count {
				if got := count[i] / n; got < tt.want[i]-0.015 || got > tt.want[i]+0.015 {
					t.Fatalf("frequencies %v, want about %v", count, tt.want)
				}
			}
		})
	}
}
