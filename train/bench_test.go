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

// TestMatrixWeights: the FLOPs of bench count every matrix of a step once: RWKV-4's
// 5C²+2CF per layer plus the head; RWKV-5.2's and RWKV-6's six C² and two CF products (and
// RWKV-6's LoRAs); RWKV-7's four C² projections, its LoRAs (no value LoRA in layer 0) and the
// FFN, plus the head.
func TestMatrixWeights(t *testing.T) {
	for _, tt := range []struct {
		cfg  model.Config
		want int
	}{
		{model.Config{Layers: 2, Embd: 64, Vocab: 50, CtxLen: 8}, 2*(5*64*64+2*64*256) + 50*64},
		{model.Config{Arch: "x070", Layers: 3, Embd: 64, Vocab: 50, CtxLen: 8, HeadSize: 16, DimDecay: 8, DimAAA: 12, DimMV: 4, DimGate: 16},
			3*(4*64*64+2*64*(8+12+16)+2*64*256) + 2*2*64*4 + 50*64},
		// x052: five C² projections and the FFN (key F×C, receptance C², value C×F); its [H,N]
		// time_decay and time_faaaa are per-channel, not products.
		{model.Config{Arch: "x052", Layers: 2, Embd: 64, Vocab: 50, CtxLen: 8, HeadSize: 16},
			2*(6*64*64+2*64*224) + 50*64},
		// x060: the same plus the token-shift LoRA (time_maa_w1 C×5M, time_maa_w2 5×M×C) and the
		// decay LoRA (C×W, W×C).
		{model.Config{Arch: "x060", Layers: 2, Embd: 64, Vocab: 50, CtxLen: 8, HeadSize: 16, DimMix: 8, DimDecay: 12},
			2*(6*64*64+2*64*224+2*64*5*8+2*64*12) + 50*64},
	} {
		m, err := model.New(tt.cfg, model.Float32)
		if err != nil {
			t.Fatal(err)
		}
		if got := matrixWeights(m); got != tt.want {
			t.Errorf("%v: %d matrix weights, want %d", tt.cfg, got, tt.want)
		}
	}
}
