package eval

import (
	"context"
	"fmt"

	"github.com/rwkv-go/rwkv-go/model"
)

// Generate feeds prompt through the recurrent form and then samples up to o.MaxTokens tokens
// as SampleOptions describes, calling emit with each as soon as it is drawn. It stops early after
// o.StopToken, when emit returns false, or when ctx is done (returning ctx's error).
func Generate(ctx context.Context, m *model.Model, prompt []int, o SampleOptions, emit func(tok int) bool) error {
	if len(prompt) == 0 {
		return fmt.Errorf("eval: generate: %w: empty prompt", ErrOptions)
	}
	if err := o.validate(m.Config.Vocab); err != nil {
		return err
	}
	rnn := m.NewRNN(1)
	s := m.InitialState(1)
	logits := make([]float64, m.Config.Vocab)
	in := make([]int, 1)
	for i, tok := range prompt {
		if err := ctx.Err(); err != nil {
			return err
		}
		in[0] = tok
		if err := rnn.Step(s, in, logits); err != nil {
			return fmt.Errorf("eval: generate: prompt token %d: %w", i, err)
		}
	}
	sm := newSampler(len(logits), o)
	for range o.MaxTokens {
		if err := ctx.Err(); err != nil {
			return err
		}
		in[0] = sm.next(logits)
		if !emit(in[0]) || in[0] == o.StopToken {
			return nil
		}
		if err := rnn.Step(s, in, logits); err != nil {
			return fmt.Errorf("eval: generate: %w", err)
		}
	}
	return nil
}
