package eval

import (
	"context"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

// TestPerplexityMask: with a mask, the loss is the mean NLL of the masked targets alone (the
// others are context), in both modes; a mask that selects nothing is an error.
func TestPerplexityMask(t *testing.T) {
	m := tinyModel(t, 64, model.Float64)
	toks := randomTokens(13, 64, 1)
	nll := rnnNLL(t, m, toks) // nll[i] scores target position i+1
	mask := func(pos int) bool { return pos%3 == 0 || pos == 12 }
	var want float64
	var n int64
	for i, v := range nll {
		if mask(i + 1) {
			want += v
			n++
		}
	}
	want /= float64(n)
	for _, o := range []Options{{Mode: Parallel, CtxLen: 16, Mask: mask}, {Mode: RNN, Mask: mask}, {Mode: RNN, Chunk: 5, Mask: mask}} {
		r, err := Perplexity(context.Background(), m, toks, o)
		if err != nil {
			t.Fatal(err)
		}
		if r.Tokens != n || !near(r.Loss, want, 1e-9) {
			t.Errorf("%s: %d tokens, loss %.15g; want %d, %.15g", o.Mode, r.Tokens, r.Loss, n, want)
		}
	}
	_, err := Perplexity(context.Background(), m, toks, Options{Mode: RNN, Mask: func(int) bool { return false }})
	if err == nil || !strings.Contains(err.Error(), "in the mask") {
		t.Errorf("empty mask: %v", err)
	}
}
