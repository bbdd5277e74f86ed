package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
)

// TestWKVFastMatchesGo compares the AVX2 float32 kernels with the float64-internal Go kernels,
// with fresh and carried states and extreme keys, on widths that exercise the 8-channel groups.
func TestWKVFastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, tc := range []struct {
		B, T, C        int
		kShift, kScale float64
		carried        bool
	}{{2, 7, 32, 0, 1, false}, {1, 33, 64, 0, 2, true}, {3, 5, 96, -50, 3, true}, {2, 9, 40, 70, 4, true}} {
		t.Run(fmt.Sprintf("B%d_T%d_C%d_k%+g", tc.B, tc.T, tc.C, tc.kShift), func(t *testing.T) {
			B, T, C := tc.B, tc.T, tc.C
			poisonScratch()
			rng := rand.New(rand.NewPCG(uint64(C), 9))
			r := func(n int, scale, shift float64) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(shift + scale*rng.NormFloat64())
				}
				return x
			}
			decay, first := r(C, 1, -0.5), r(C, 1, 0)
			k, v, gy := r(B*T*C, tc.kScale, tc.kShift), r(B*T*C, 1, 0), r(B*T*C, 1, 0)
			s0, gsT := r(3*B*C, 0.5, 0), r(3*B*C, 0.1, 0)
			if tc.carried {
				for i := B * C; i < 2*B*C; i++ {
					s0[i] = 0.5 + float32(math.Abs(float64(s0[i])))
				}
			} else {
				InitWKVState(s0, B, C)
				gsT = nil
			}
			n := B * T * C
			type outs struct{ y, sT, gd, gf, gk, gv, gs []float32 }
			alloc := func() outs {
				return outs{make([]float32, n), make([]float32, 3*B*C), make([]float32, C), make([]float32, C),
					make([]float32, n), make([]float32, n), make([]float32, 3*B*C)}
			}
			fast, slow := alloc(), alloc()
			if !wkvForwardFast(B, T, C, decay, first, k, v, s0, fast.y, fast.sT) ||
				!wkvBackwardFast(B, T, C, decay, first, k, v, s0, gy, gsT, fast.gd, fast.gf, fast.gk, fast.gv, fast.gs) {
				t.Fatal("fast kernels refused to run")
			}
			wkvForward(B, T, C, decay, first, k, v, s0, slow.y, slow.sT)
			wkvBackward(B, T, C, decay, first, k, v, s0, gy, gsT, slow.gd, slow.gf, slow.gk, slow.gv, slow.gs)
			for _, c := range []struct {
				name      string
				got, want []float32
			}{{"y", fast.y, slow.y}, {"final aa/bb", fast.sT[:2*B*C], slow.sT[:2*B*C]}, {"final pp", fast.sT[2*B*C:], slow.sT[2*B*C:]},
				{"gdecay", fast.gd, slow.gd}, {"gfirst", fast.gf, slow.gf}, {"gk", fast.gk, slow.gk}, {"gv", fast.gv, slow.gv}, {"gs0", fast.gs, slow.gs}} {
				var worst, scale float64
				for i := range c.want {
					worst = math.Max(worst, math.Abs(float64(c.got[i]-c.want[i])))
					scale = math.Max(scale, math.Abs(float64(c.want[i])))
				}
				if !(worst <= 2e-5*math.Max(scale, 1e-6)) {
					t.Errorf("%s: max diff %.3g of scale %.3g", c.name, worst, scale)
				}
			}
		})
	}
}

// poisonScratch fills the kernels' scratch free list with NaN buffers, so that a kernel that
// relies on fresh (zeroed) scratch memory fails the comparison.
func poisonScratch() {
	for range maxScratch {
		b := make([]float32, 1<<16)
		for i := range b {
			b[i] = float32(math.NaN())
		}
		putScratch(b)
	}
}

// TestElementwiseFastMatchesGo compares the AVX2 gate, relu² and shift-mix kernels with the Go
// ones, on lengths that are not multiples of 8.
func TestElementwiseFastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	const B, T, C = 2, 5, 37
	n := B * T * C
	rng := rand.New(rand.NewPCG(1, 1))
	r := func(k int, scale float64) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(scale * rng.NormFloat64())
		}
		return x
	}
	a, b, g, prev, mix := r(n, 6), r(n, 1), r(n, 1), r(B*C, 1), r(C, 0.5)
	check := func(name string, fast, slow []float32) {
		t.Helper()
		for i := range slow {
			if d := math.Abs(float64(fast[i] - slow[i])); !(d <= 1e-6*(1+math.Abs(float64(slow[i])))) {
				t.Fatalf("%s[%d]: avx2 %v, go %v", name, i, fast[i], slow[i])
			}
		}
	}
	f1, s1, f2, s2 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	gateForwardFast(a, b, f1)
	gateForward(a, b, s1)
	check("gate", f1, s1)
	gateBackwardFast(a, b, g, f1, f2)
	gateBackward(a, b, g, s1, s2)
	check("gate gr", f1, s1)
	check("gate gy", f2, s2)
	reluSqFast(a, nil, f1)
	reluSq(false, a, nil, s1)
	check("relu²", f1, s1)
	shiftMixForwardFast(a, prev, mix, f1, B, T, C)
	shiftMixForward(a, prev, mix, s1, B, T, C)
	check("shift-mix", f1, s1)
}

// TestRowKernelsFastMatchGo compares the AVX2 LayerNorm and shift-mix backward with the Go ones.
func TestRowKernelsFastMatchGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	const B, T, C = 3, 7, 40
	N := B * T
	poisonScratch()
	rng := rand.New(rand.NewPCG(2, 2))
	r := func(k int, scale, shift float64) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(shift + scale*rng.NormFloat64())
		}
		return x
	}
	x, g, w, b, prev, mix := r(N*C, 2, 0.5), r(N*C, 1, 0), r(C, 0.3, 1), r(C, 0.3, 0), r(B*C, 1, 0), r(C, 0.3, 0.5)
	near := func(name string, fast, slow []float32, tol float64) {
		t.Helper()
		var scale float64
		for _, v := range slow {
			scale = math.Max(scale, math.Abs(float64(v)))
		}
		for i := range slow {
			if d := math.Abs(float64(fast[i] - slow[i])); !(d <= tol*scale) {
				t.Fatalf("%s[%d]: avx2 %v, go %v", name, i, fast[i], slow[i])
			}
		}
	}
	yf, ys := make([]float32, N*C), make([]float32, N*C)
	lnForwardFast(x, w, b, yf, N, C)
	lnForward(x, w, b, ys, N, C)
	near("layernorm", yf, ys, 1e-6)
	gwf, gbf, gws, gbs := make([]float32, C), make([]float32, C), make([]float32, C), make([]float32, C)
	lnBackwardFast(x, w, g, yf, gwf, gbf, N, C)
	lnBackward(x, w, g, ys, gws, gbs, N, C)
	near("layernorm gx", yf, ys, 1e-5)
	near("layernorm gw", gwf, gws, 1e-5)
	near("layernorm gb", gbf, gbs, 1e-5)
	gpf, gps, gmf, gms := make([]float32, B*C), make([]float32, B*C), make([]float32, C), make([]float32, C)
	shiftMixBackwardFast(x, prev, mix, g, yf, gpf, gmf, B, T, C)
	shiftMixBackward(x, prev, mix, g, ys, gps, gms, B, T, C)
	near("shift-mix gx", yf, ys, 1e-6)
	near("shift-mix gprev", gpf, gps, 1e-6)
	near("shift-mix gmix", gmf, gms, 1e-5)
}

// TestCrossEntropyFastMatchesGo compares the AVX2 cross-entropy (log-sum-exp and softmax rows)
// with the Go kernels: vocabularies that are and are not multiples of 8, large logits, tied
// maxima (the L2Wrap term goes to the first), and NaN logits (NaN loss, as in Go).
func TestCrossEntropyFastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, tc := range []struct {
		V      int
		scale  float64
		l2wrap bool
		tie    bool
	}{{1, 1, false, false}, {7, 3, true, false}, {8, 1, true, true}, {37, 30, true, true}, {256, 5, false, false}, {50277, 8, true, true}} {
		t.Run(fmt.Sprintf("V%d_scale%g_l2wrap=%v", tc.V, tc.scale, tc.l2wrap), func(t *testing.T) {
			const N = 5
			rng := rand.New(rand.NewPCG(uint64(tc.V), 3))
			logits := make([]float32, N*tc.V)
			for i := range logits {
				logits[i] = float32(tc.scale * rng.NormFloat64())
			}
			targets := make([]int, N)
			for r := range targets {
				targets[r] = rng.IntN(tc.V)
				if tc.tie {
					row := logits[r*tc.V : (r+1)*tc.V]
					m := slices.Max(row)
					row[rng.IntN(tc.V)], row[tc.V-1] = m, m
				}
			}
			fast, ok := ceForwardFast(logits, targets, N, tc.V)
			if !ok {
				t.Fatal("fast kernel refused to run")
			}
			slow := ceForward(logits, targets, N, tc.V)
			if d := math.Abs(fast - slow); !(d <= 1e-6*math.Max(1, math.Abs(slow))) {
				t.Errorf("loss: avx2 %v, go %v", fast, slow)
			}
			const g = 0.7
			gf, gs := make([]float32, N*tc.V), make([]float32, N*tc.V)
			ceBackwardFast(logits, targets, g, tc.l2wrap, N, tc.V, gf)
			ceBackward(logits, targets, g, tc.l2wrap, N, tc.V, gs)
			tol := 1e-6 * g / N
			for i := range gs {
				if d := math.Abs(float64(gf[i] - gs[i])); !(d <= tol+1e-6*math.Abs(float64(gs[i]))) {
					t.Fatalf("gradient[%d]: avx2 %v, go %v", i, gf[i], gs[i])
				}
			}
			logits[tc.V/2] = float32(math.NaN())
			if l, _ := ceForwardFast(logits, targets, N, tc.V); !math.IsNaN(l) {
				t.Errorf("loss with a NaN logit: %v, want NaN", l)
			}
		})
	}
}

// TestKernelsFlushDenormals: the float32 kernels run with denormals flushed to zero (as
// PyTorch with set_flush_denormal), and leave the thread's float mode as they found it.
func TestKernelsFlushDenormals(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	runtime.LockOSThread() // one piece runs on this goroutine, so on this thread
	defer runtime.UnlockOSThread()
	const n = 19 // vector body and scalar tail
	r, y, out := make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range y {
		y[i] = 1e-39 // denormal: with DAZ it reads as zero
	}
	gateForwardFast(r, y, out)
	for i, x := range out {
		if x != 0 {
			t.Fatalf("gate[%d] = %g: sigmoid(0)*1e-39 was not flushed", i, x)
		}
	}
	if denormTiny*denormHalf == 0 {
		t.Error("Go arithmetic flushes denormals after a kernel: MXCSR was not restored")
	}
}

// Package variables, so that the compiler cannot fold the product: 1e-39*0.5 is a denormal,
// zero only where the thread flushes denormals.
var denormTiny, denormHalf = float32(1e-39), float32(0.5)
