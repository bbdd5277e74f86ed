package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestActFastMatchesGo compares the AVX2 float32 SiLU forward and the tanh, sigmoid and SiLU
// backward (with and without the bias's column sums) with the Go kernels, on widths with and
// without a tail of fewer than 8 channels, split over one and several pieces, saturated inputs
// included.
func TestActFastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, sh := range []struct{ N, C int }{{5, 37}, {96, 512}} {
		N, C := sh.N, sh.C
		t.Run(fmt.Sprintf("N%d_C%d", N, C), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(C), 4))
			r := func(n int, scale float64) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(scale * rng.NormFloat64())
				}
				return x
			}
			x, g := r(N*C, 4), r(N*C, 1)
			x[0], x[1], x[2] = 100, -100, -30 // saturated
			near := func(name string, fast, slow []float32, tol float64) {
				t.Helper()
				var scale float64
				for _, s := range slow {
					scale = math.Max(scale, math.Abs(float64(s)))
				}
				for i := range slow {
					if d := math.Abs(float64(fast[i] - slow[i])); !(d <= tol*math.Max(scale, 1)) {
						t.Fatalf("%s[%d]: avx2 %v, go %v", name, i, fast[i], slow[i])
					}
				}
			}
			f, s := make([]float32, N*C), make([]float32, N*C)
			if !siluForwardFast(x, f, N, C) {
				t.Fatal("fast SiLU refused")
			}
			actForward(ActSiLU, x, nil, s, N, C)
			near("silu", f, s, 1e-6)
			for _, kind := range []ActKind{ActTanh, ActSigmoid, ActSiLU} {
				y := make([]float32, N*C) // what the backward reads: the output, or SiLU's input
				if kind == ActSiLU {
					copy(y, x)
				} else {
					actForward(kind, x, nil, y, N, C)
				}
				for _, bias := range []bool{false, true} {
					o := actOp{N: N, D: C, Kind: kind, HasBias: bias && kind != ActSiLU}
					n := N * C
					if o.HasBias {
						n += C
					}
					fo, so := make([]float32, n), make([]float32, n)
					for i := range fo {
						fo[i] = float32(math.NaN()) // every element must be written
					}
					if !actBackwardFast(o, y, g, fo) {
						t.Fatal("fast backward refused")
					}
					actBackward(o, y, g, so)
					near(fmt.Sprintf("%v bias=%v gx", kind, o.HasBias), fo[:N*C], so[:N*C], 1e-6)
					if o.HasBias {
						near(fmt.Sprintf("%v gbias", kind), fo[N*C:], so[N*C:], 1e-6)
					}
				}
			}
		})
	}
}
