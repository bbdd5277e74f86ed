package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestShiftLerpFast: the AVX2 float32 ShiftLerp forward and backward against the float64 Go
// kernels on the same inputs (K = 1, 2 as x060 uses it, 6 as x070; T = 1 where every row reads
// prev), every output and gradient within 2e-6 of the largest.
func TestShiftLerpFast(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, sh := range []struct{ B, T, C, K int }{{2, 5, 16, 1}, {2, 1, 24, 2}, {2, 64, 512, 2}, {3, 7, 64, 6}} {
		B, T, C, K := sh.B, sh.T, sh.C, sh.K
		t.Run(fmt.Sprintf("B%d_T%d_C%d_K%d", B, T, C, K), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(C), uint64(K)))
			r := func(n int, scale, shift float64) []float64 {
				x := make([]float64, n)
				for i := range x {
					x[i] = shift + scale*rng.NormFloat64()
				}
				return x
			}
			N := B * T
			x, prev, g := r(N*C, 1, 0), r(B*C, 1, 0), r(K*N*C, 1, 0)
			mixes := make([][]float64, K)
			mixes32 := make([][]float32, K)
			for i := range mixes {
				mixes[i] = r(C, 0.3, 0.5)
				mixes32[i] = convert[float32, float64](mixes[i])
			}
			f := convert[float32, float64]
			check := func(name string, got []float32, want []float64) {
				t.Helper()
				var scale float64
				for _, v := range want {
					scale = math.Max(scale, math.Abs(v))
				}
				for i := range want {
					if d := math.Abs(float64(got[i]) - want[i]); !(d <= 2e-6*math.Max(scale, 1)) {
						t.Fatalf("%s[%d]: avx2 %v, go float64 %v", name, i, got[i], want[i])
					}
				}
			}
			out, out32 := make([]float64, K*N*C), make([]float32, K*N*C)
			shiftLerpForward(x, prev, mixes, out, B, T, C)
			if !shiftLerpForwardFast(f(x), f(prev), mixes32, out32, B, T, C) {
				t.Fatal("fast forward refused")
			}
			check("out", out32, out)
			gx, gp, gm := make([]float64, N*C), make([]float64, B*C), make([]float64, K*C)
			gx32, gp32, gm32 := make([]float32, N*C), make([]float32, B*C), make([]float32, K*C)
			for i := range gx32 {
				gx32[i] = float32(math.NaN()) // the kernel must not read what it sets
			}
			for i := range gp32 {
				gp32[i] = float32(math.NaN())
			}
			shiftLerpBackward(x, prev, mixes, g, gx, gp, gm, B, T, C)
			if !shiftLerpBackwardFast(f(x), f(prev), mixes32, f(g), gx32, gp32, gm32, B, T, C) {
				t.Fatal("fast backward refused")
			}
			check("gx", gx32, gx)
			check("gprev", gp32, gp)
			check("gmix", gm32, gm)
		})
	}
}
