package train

import (
	"context"
	"fmt"

	"github.com/rwkv-go/rwkv-go/eval"
)

// EvalResult is a perplexity measurement (see eval.Result).
type EvalResult = eval.Result

// Validate measures the loss on the validation file (train.eval_tokens of it, or all) with the
// code of `rwkv-eval ppl`; with a loss mask next to it, on the masked (response) tokens only.
// On several ranks each scores its share of the windows, and every rank returns the whole
// file's loss.
func (t *Trainer) Validate() (EvalResult, error) {
	if t.val == nil {
		return EvalResult{}, fmt.Errorf("no validation data (data.val)")
	}
	o := eval.Options{Mode: eval.Parallel, CtxLen: t.cfg.Model.CtxLen, Batch: t.cfg.Train.MicroBsz, MaxTokens: t.cfg.Train.EvalTokens}
	if m := t.val.Mask(); m != nil { // instruction data: the loss on the responses, as in training
		o.Mask = m.At
	}
	if t.world.Size() > 1 {
		return t.validateSharded(o)
	}
	return eval.Perplexity(context.Background(), t.Model, t.val, o)
}
