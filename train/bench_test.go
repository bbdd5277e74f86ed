package train

import (
	"context"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

// BenchmarkTrainerStep is one full trainer step (forward, backward, accumulation, clipping,
// AdamW) of the headline configuration L6-D512-V256, ctx 256, batch 8.
func BenchmarkTrainerStep(b *testing.B) {
	res, err := Bench(context.Background(), BenchConfig{Model: model.Config{Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256},
		MicroBsz: 8, Steps: max(b.N, 2), Warmup: 1, Dir: b.TempDir(), Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.TokensPerSec, "tok/s")
}
