package eval

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/rwkv-go/rwkv-go/model"
)

// benchModel is a model of cfg with small random weights (no orthogonal init: it would take
// longer than the benchmark).
func benchModel(b *testing.B, cfg model.Config) *model.Model {
	b.Helper()
	m, err := model.New(cfg, model.Float32)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for _, p := range m.Params {
		d := p.F32()
		for i := range d {
			d[i] = float32(rng.NormFloat64() * 0.02)
		}
	}
	return m
}

// BenchmarkRNN is the unbounded mode's speed: one stream, token by token (and chunked through
// the graph with the state carried).
func BenchmarkRNN(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cfg   model.Config
		n     int
		chunk int
	}{
		{"tiny", model.Config{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 16}, 2000, 0},
		{"L12-D768", model.Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 1024}, 32, 0},
		{"L12-D768/chunk=128", model.Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 1024}, 128, 128},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := benchModel(b, bc.cfg)
			toks := randomTokens(bc.n+1, bc.cfg.Vocab, 1)
			o := Options{Mode: RNN, Chunk: bc.chunk}
			for b.Loop() {
				if _, err := Perplexity(context.Background(), m, toks, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bc.n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkParallel is the windowed mode's speed: B windows of T tokens per forward pass.
func BenchmarkParallel(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  model.Config
		B, T int
	}{
		{"tiny/B=4,T=64", model.Config{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 64}, 4, 64},
		{"L12-D768/B=1,T=256", model.Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 256}, 1, 256},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := benchModel(b, bc.cfg)
			n := bc.B * bc.T
			toks := randomTokens(n+1, bc.cfg.Vocab, 1)
			o := Options{Mode: Parallel, CtxLen: bc.T, Batch: bc.B}
			for b.Loop() {
				if _, err := Perplexity(context.Background(), m, toks, o); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
