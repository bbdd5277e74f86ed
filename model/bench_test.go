package model

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// BenchmarkTrainStep measures forward+backward of the graph (no optimiser) in float32, for
// RWKV-4 and (the x052-, x060- cases) RWKV-5.2 and RWKV-6. Compare with PyTorch:
// reference/bench_torch6.py --arch x060 --layers 6 --embd 512 --vocab 256 --ctx 256 --batch 8.
func BenchmarkTrainStep(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
		B, T int
	}{
		{"tiny", Config{Layers: 2, Embd: 64, Vocab: 256, CtxLen: 64}, 4, 64},
		{"quickstart-L4-D128-B16-T128", Config{Layers: 4, Embd: 128, Vocab: 256, CtxLen: 128}, 16, 128},
		{"L6-D512-V256-B8-T256", Config{Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256}, 8, 256},
		{"x052-L6-D512-V256-B8-T256", Config{Arch: arch.X052, Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256}, 8, 256},
		{"x060-L6-D512-V256-B8-T256", Config{Arch: arch.X060, Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256}, 8, 256},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, err := New(bc.cfg, tensor.Float32)
			if err != nil {
				b.Fatal(err)
			}
			m.Init(1, 1e-4)
			if a := bc.cfg.Arch.Resolve(); a == arch.X052 || a == arch.X060 {
				randomize56(m, 1)
			} else {
				randomize(m, 1)
			}
			gr, err := m.NewGraph(GraphOptions{B: bc.B, T: bc.T, Grads: true, L2Wrap: true})
			if err != nil {
				b.Fatal(err)
			}
			defer gr.Close()
			rng := rand.New(rand.NewPCG(1, 1))
			ids, tg := make([]int, bc.B*bc.T), make([]int, bc.B*bc.T)
			for i := range ids {
				ids[i], tg[i] = rng.IntN(bc.cfg.Vocab), rng.IntN(bc.cfg.Vocab)
			}
			gr.SetTokens(ids, tg)
			b.Logf("blas: %s", blas.Backend())
			cpu0 := cpuSeconds()
			for b.Loop() {
				if err := gr.Run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bc.B*bc.T*b.N)/b.Elapsed().Seconds(), "tok/s")
			b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/op")
		})
	}
}

// BenchmarkWKV measures the WKV kernels alone, float32 storage.
func BenchmarkWKV(b *testing.B) {
	for _, sh := range []struct{ B, T, C int }{{8, 256, 512}, {1, 512, 768}} {
		B, T, C := sh.B, sh.T, sh.C
		rng := rand.New(rand.NewPCG(1, 2))
		r := func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			return x
		}
		decay, first, k, v, gy := r(C), r(C), r(B*T*C), r(B*T*C), r(B*T*C)
		s0, sT, y := make([]float32, 3*B*C), make([]float32, 3*B*C), make([]float32, B*T*C)
		InitWKVState(s0, B, C)
		gd, gf, gk, gv, gs := make([]float32, C), make([]float32, C), make([]float32, B*T*C), make([]float32, B*T*C), make([]float32, 3*B*C)
		name := fmt.Sprintf("B=%d,T=%d,C=%d", B, T, C)
		b.Run("forward-avx2/"+name, func(b *testing.B) {
			if !haveAVX2 {
				b.Skip("no AVX2 kernels in this build")
			}
			for b.Loop() {
				wkvForwardFast(B, T, C, decay, first, k, v, s0, y, sT)
			}
			b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run("backward-avx2/"+name, func(b *testing.B) {
			if !haveAVX2 {
				b.Skip("no AVX2 kernels in this build")
			}
			for b.Loop() {
				wkvBackwardFast(B, T, C, decay, first, k, v, s0, gy, nil, gd, gf, gk, gv, gs)
			}
			b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run("forward/"+name, func(b *testing.B) {
			b.SetBytes(int64(4 * 3 * B * T * C))
			for b.Loop() {
				wkvForward(B, T, C, decay, first, k, v, s0, y, sT)
			}
			b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run("backward/"+name, func(b *testing.B) {
			b.SetBytes(int64(4 * 5 * B * T * C))
			for b.Loop() {
				wkvBackward(B, T, C, decay, first, k, v, s0, gy, nil, gd, gf, gk, gv, gs)
			}
			b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}
