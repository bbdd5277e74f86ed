package eval

import (
	"context"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

func TestReadLambada(t *testing.T) {
	for _, tt := range []struct {
		name    string
		in      string
		want    []LambadaExample
		wantErr error
	}{
		{"splits at the last space", `{"text": "the cat sat on the mat"}` + "\n\n" + `{"text":"a  b"}`,
			[]LambadaExample{{"the cat sat on the", " mat"}, {"a ", " b"}}, nil},
		{"no space", `{"text": "word"}`, nil, ErrLambadaLine},
		{"no text", `{"txt": "a b"}`, nil, ErrLambadaLine},
		{"not json", `a b`, nil, ErrLambadaLine},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadLambada(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && !reflect.DeepEqual(got, tt.want)) {
				t.Fatalf("got %q, %v; want %q, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// mapTokenizer encodes whole strings to fixed ids, so a test can choose the tokens of each
// context and target.
type mapTokenizer map[string][]int

func (m mapTokenizer) Encode(s string) []int   { return m[s] }
func (m mapTokenizer) Decode(ids []int) string { return "" }
func (m mapTokenizer) VocabSize() int          { return 64 }
func (m mapTokenizer) Name() string            { return "map" }

// greedy returns the n tokens greedy decoding produces after prompt.
func greedy(t *testing.T, m *model.Model, prompt []int, n int) []int {
	var out []int
	err := Generate(context.Background(), m, prompt, SampleOptions{MaxTokens: n, StopToken: -1}, func(tok int) bool {
		out = append(out, tok)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLambadaMatchesReference checks accuracy (every target token the argmax) and the summed
// target NLL against the recurrent form, for examples of different lengths in one padded batch,
// for RWKV-4 and RWKV-7.
func TestLambadaMatchesReference(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) { lambadaMatchesReference(t, tinyModelOf(t, a, 64, model.Float64)) })
	}
}

func lambadaMatchesReference(t *testing.T, m *model.Model) {
	ctxA, ctxB := []int{5, 9, 13, 2}, []int{7, 7, 1, 30, 31, 40, 41, 3, 8}
	hitA := greedy(t, m, append([]int{0}, ctxA...), 3)
	hitB := greedy(t, m, append([]int{0}, ctxB...), 1)
	missA := []int{hitA[0], hitA[1], (hitA[2] + 1) % 64} // last token wrong
	tok := mapTokenizer{"A": ctxA, "B": ctxB, " hitA": hitA, " hitB": hitB, " missA": missA}
	examples := []LambadaExample{{"A", " hitA"}, {"B", " hitB"}, {"A", " missA"}}
	var wantLoss float64
	for _, ex := range examples {
		seq := append(append([]int{0}, tok[ex.Context]...), tok[ex.Target]...)
		nll := rnnNLL(t, m, seq)
		wantLoss += sum(nll[len(nll)-len(tok[ex.Target]):])
	}
	wantLoss /= 3
	for _, batch := range []int{1, 2, 8} {
		got, err := Lambada(context.Background(), m, tok, examples, LambadaOptions{Batch: batch})
		if err != nil {
			t.Fatal(err)
		}
		if got.Count != 3 || got.Correct != 2 || got.TargetTokens != 7 || !near(got.Loss, wantLoss, 1e-9) ||
			!near(got.PPL, math.Exp(wantLoss), 1e-9) || !near(got.Accuracy, 2.0/3, 1e-12) {
			t.Fatalf("batch %d: got %+v, want 3 examples, 2 correct, 7 target tokens, loss %.12g", batch, got, wantLoss)
		}
	}
}

func TestLambadaRejects(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	tok := mapTokenizer{"A": {1, 2}, " big": {99}, " none": nil}
	for _, tt := range []struct {
		name string
		ex   []LambadaExample
	}{
		{"no examples", nil},
		{"target outside vocab", []LambadaExample{{"A", " big"}}},
		{"empty target", []LambadaExample{{"A", " none"}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Lambada(context.Background(), m, tok, tt.ex, LambadaOptions{}); err == nil {
				t.Fatal("no error")
			}
		})
	}
}
