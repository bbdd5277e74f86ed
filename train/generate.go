package train

import (
	"context"

	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
)

// SampleOptions control generation (see eval.SampleOptions).
type SampleOptions = eval.SampleOptions

// Generate samples from m after prompt; it is eval.Generate.
func Generate(ctx context.Context, m *model.Model, prompt []int, o SampleOptions, emit func(tok int) bool) error {
	return eval.Generate(ctx, m, prompt, o, emit)
}
