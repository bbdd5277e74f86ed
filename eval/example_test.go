package eval_test

import (
	"context"
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
)

// Perplexity in both modes over a stream shorter than ctx_len: the windowed parallel form and
// the unbounded recurrent form see the same context, so they agree.
func ExamplePerplexity() {
	m, err := model.New(model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 64}, model.Float64)
	if err != nil {
		panic(err)
	}
	m.Init(1, 0.5)
	toks := eval.Ints([]int{'h', 'e', 'l', 'l', 'o', ',', ' ', 'w', 'o', 'r', 'l', 'd'})
	par, err := eval.Perplexity(context.Background(), m, toks, eval.Options{Mode: eval.Parallel, CtxLen: 64})
	if err != nil {
		panic(err)
	}
	rnn, err := eval.Perplexity(context.Background(), m, toks, eval.Options{Mode: eval.RNN, BucketSize: 4})
	if err != nil {
		panic(err)
	}
	fmt.Printf("%d tokens scored; modes agree: %v; %d position buckets\n",
		rnn.Tokens, math.Abs(par.Loss-rnn.Loss) < 1e-9, len(rnn.Buckets))
	// Output: 11 tokens scored; modes agree: true; 3 position buckets
}
