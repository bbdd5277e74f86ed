package train

import (
	"context"
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// EvalResult is a perplexity measurement.
type EvalResult struct {
	Tokens       int64   `json:"tokens"`         // tokens scored
	Loss         float64 `json:"loss"`           // mean negative log-likelihood, nats per token
	PPL          float64 `json:"ppl"`            // exp(loss)
	BitsPerToken float64 `json:"bits_per_token"` // loss / ln 2
}

func newEvalResult(sum float64, n int64) EvalResult {
	loss := sum / float64(n)
	return EvalResult{Tokens: n, Loss: loss, PPL: math.Exp(loss), BitsPerToken: loss / math.Ln2}
}

// Perplexity scores toks with the parallel form in windows of ctxLen: the first token of the
// data is context only and every later token is scored once, in order (window k predicts
// tokens k*ctxLen+1 .. (k+1)*ctxLen from a fresh state). Windows run B at a time; the tail is
// scored by a graph of the remaining length. maxTokens > 0 stops after that many scored tokens.
// progress, if not nil, is called with (scored, total) after each batch.
func Perplexity(ctx context.Context, m *model.Model, toks *data.Tokens, B, ctxLen int, maxTokens int64, progress func(done, total int64)) (EvalResult, error) {
	total := int64(toks.Len() - 1)
	if maxTokens > 0 && maxTokens < total {
		total = maxTokens
	}
	if total < 1 {
		return EvalResult{}, fmt.Errorf("perplexity: %s has %d tokens, need at least 2", toks.Path(), toks.Len())
	}
	ev := &windowEval{m: m, graphs: map[[2]int]*model.Graph{}}
	defer ev.close()
	var sum float64
	var done int64
	for done < total {
		if err := ctx.Err(); err != nil {
			return EvalResult{}, err
		}
		full := (total - done) / int64(ctxLen)
		var b, T int
		if full > 0 {
			b, T = int(min(int64(B), full)), ctxLen
		} else {
			b, T = 1, int(total-done)
		}
		s, err := ev.score(toks, int(done), b, T)
		if err != nil {
			return EvalResult{}, err
		}
		sum += s
		done += int64(b * T)
		if progress != nil {
			progress(done, total)
		}
	}
	return newEvalResult(sum, done), nil
}

// windowEval keeps one forward graph per (B, T) shape it has needed.
type windowEval struct {
	m      *model.Model
	graphs map[[2]int]*model.Graph
	x, y   []int
	nll    []float64
}

// score returns the summed NLL of B consecutive windows of T targets starting after token off.
func (e *windowEval) score(toks *data.Tokens, off, B, T int) (float64, error) {
	key := [2]int{B, T}
	g, ok := e.graphs[key]
	if !ok {
		var err error
		if g, err = e.m.NewGraph(model.GraphOptions{B: B, T: T}); err != nil {
			return 0, err
		}
		e.graphs[key] = g
	}
	n := B * T
	e.x, e.y, e.nll = resize(e.x, n), resize(e.y, n), resize(e.nll, n)
	win := make([]int, T+1)
	for b := 0; b < B; b++ {
		win = toks.Slice(off+b*T, T+1, win[:0])
		copy(e.x[b*T:], win[:T])
		copy(e.y[b*T:], win[1:])
	}
	if err := g.SetTokens(e.x, nil); err != nil {
		return 0, err
	}
	if err := g.Run(); err != nil {
		return 0, err
	}
	if err := model.TokenNLL(g.Logits().Data(), e.y, e.m.Config.Vocab, e.nll); err != nil {
		return 0, err
	}
	var s float64
	for _, v := range e.nll {
		s += v
	}
	return s, nil
}

func (e *windowEval) close() {
	for _, g := range e.graphs {
		g.Close()
	}
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// Validate measures the loss on the validation file (train.eval_tokens of it, or all).
func (t *Trainer) Validate() (EvalResult, error) {
	if t.val == nil {
		return EvalResult{}, fmt.Errorf("no validation data (data.val)")
	}
	return Perplexity(context.Background(), t.Model, t.val, t.cfg.Train.MicroBsz, t.cfg.Model.CtxLen, t.cfg.Train.EvalTokens, nil)
}
