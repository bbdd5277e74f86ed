package model

import (
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// BenchmarkX060Ops times x052's and x060's pointwise kernels in float32 at the L6-D512 training
// shape (B=8, T=256, C=512, H=8; LoRA width 32), forward and forward+backward: the ln_x
// GroupNorm, the SiLU gate and the Hadamard product that join them (GroupNormGate below fuses
// the three), and x060's ShiftLoRA (its low-rank product GEMMs included).
func BenchmarkX060Ops(b *testing.B) {
	const B, T, C, H, M, K = x7bB, x7bT, x7bC, x7bH, 32, 5
	const N, n = B * T, B * T * C
	rng := rand.New(rand.NewPCG(1, 1))
	x, z, g := x7bRand(rng, n, 1, 0), x7bRand(rng, n, 1, 0), x7bRand(rng, n, 1, 0)
	w, bias, maa := x7bRand(rng, C, 0.3, 1), x7bRand(rng, C, 0.3, 0), x7bRand(rng, C, 0.3, 0.5)
	a, w2 := x7bRand(rng, N*K*M, 0.7, 0), x7bRand(rng, K*M*C, 0.2, 0)
	prev := x7bRand(rng, B*C, 1, 0)
	o1, o2, o3, o4, o5 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	c1, c2 := make([]float32, C), make([]float32, C)
	lo := shiftLoRAOp{B: B, T: T, C: C, M: M, K: K, I: 1}
	lb := shiftLoRABackOp{fwd: lo}
	ls, _ := lb.InferShape()
	lout, o6 := make([]float32, ls.TotalSize()), make([]float32, 2*n)
	for _, bc := range append([]x060BenchCase{
		{"GroupNorm", func() { gnForward(x, w, bias, o1, N, C, H, GroupNormEpsX070) },
			func() { gnBackward(x, w, g, o2, c1, c2, N, C, H, GroupNormEpsX070) }},
		{"SiLU", func() {
			if !siluForwardFast(z, o1, N, C) {
				actForward(ActSiLU, z, nil, o1, N, C)
			}
		}, func() {
			if !actBackwardFast(actOp{N: N, D: C, Kind: ActSiLU}, z, g, o2) {
				actBackward(actOp{N: N, D: C, Kind: ActSiLU}, z, g, o2)
			}
		}},
		{"Hadamard", func() { hadamard(false, false, x, z, nil, o1) },
			func() { hadamard(true, false, x, z, []G.Value{nil, nil, tensor.New(tensor.WithBacking(g))}, o6) }},
		{"ShiftLoRA", func() { shiftLoRAForward(lo, x, prev, maa, a, w2, o1) },
			func() { shiftLoRABackward(lb, x, prev, maa, a, w2, g, lout, o3, o4) }},
	}, x060BenchExtra(x, w, bias, z, g, o1, o2, o5, c1, c2, N, C, H)...) {
		b.Run(bc.name+"/fwd", func(b *testing.B) {
			for b.Loop() {
				bc.fwd()
			}
			b.ReportMetric(float64(N*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run(bc.name+"/fwd+bwd", func(b *testing.B) {
			for b.Loop() {
				bc.fwd()
				bc.bwd()
			}
			b.ReportMetric(float64(N*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

type x060BenchCase struct {
	name     string
	fwd, bwd func()
}

// x060BenchExtra is the fused GroupNormGate case of BenchmarkX060Ops, and x060's channel-mix
// ShiftLerp (K=2) in Go and in AVX2.
func x060BenchExtra(x, w, bias, z, g, o1, o2, o5, c1, c2 []float32, N, C, H int) []x060BenchCase {
	B, T := x7bB, N/x7bB
	mixes, prev, gprev, gm := [][]float32{w, bias}, c1[:0:0], make([]float32, B*C), make([]float32, 2*C)
	prev = append(prev, x[:B*C]...)
	out, gg := make([]float32, 2*N*C), append(append([]float32(nil), g...), z...)
	return []x060BenchCase{{"ShiftLerp-K2-go", func() { shiftLerpForward(x, prev, mixes, out, B, T, C) },
		func() { shiftLerpBackward(x, prev, mixes, gg, o2, gprev, gm, B, T, C) }},
		{"ShiftLerp-K2", func() { shiftLerpForwardFast(x, prev, mixes, out, B, T, C) },
			func() { shiftLerpBackwardFast(x, prev, mixes, gg, o2, gprev, gm, B, T, C) }},
		{"GroupNormGate", func() {
			if !gnGateForwardFast(x, w, bias, z, o1, N, C, H, GroupNormEpsX070) {
				gnGateForward(x, w, bias, z, o1, N, C, H, GroupNormEpsX070)
			}
		}, func() {
			if !gnGateBackwardFast(x, w, bias, z, g, o2, c1, c2, o5, N, C, H, GroupNormEpsX070) {
				gnGateBackward(x, w, bias, z, g, o2, c1, c2, o5, N, C, H, GroupNormEpsX070)
			}
		}}}
}
