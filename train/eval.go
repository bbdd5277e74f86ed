package train

import (
	"context"
	"fmt"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
)

// EvalResult is a perplexity measurement (see eval.Result).
type EvalResult = eval.Result

// Perplexity scores toks with the parallel form in non-overlapping windows of ctxLen, B windows
// per run, exactly as `rwkv-eval ppl --mode parallel` does: it is eval.Perplexity.
func Perplexity(ctx context.Context, m *model.Model, toks *data.Tokens, B, ctxLen int, maxTokens int64, progress func(done, total int64)) (EvalResult, error) {
	return eval.Perplexity(ctx, m, toks, eval.Options{Mode: eval.Parallel, CtxLen: ctxLen, Batch: B, MaxTokens: maxTokens, Progress: progress})
}

// Validate measures the loss on the validation file (train.eval_tokens of it, or all) with the
// code of `rwkv-eval ppl`.
func (t *Trainer) Validate() (EvalResult, error) {
	if t.val == nil {
		return EvalResult{}, fmt.Errorf("no validation data (data.val)")
	}
	return Perplexity(context.Background(), t.Model, t.val, t.cfg.Train.MicroBsz, t.cfg.Model.CtxLen, t.cfg.Train.EvalTokens, nil)
}
