package model

import (
	"fmt"
	"testing"
)

// BenchmarkWKV6 measures the WKV-6 kernels, forward then backward (which recomputes the
// forward), float32, at the L6-D512 training shape (T=256, C=512, head size 64) for batch 1 to
// 8, per-token decay (x060), and at batch 8 with x052's constant decay; avx2 is the float32
// dispatch, go the generic Go kernel. It reports tokens/s of forward+backward.
func BenchmarkWKV6(b *testing.B) {
	const T, C, N = 256, 512, 64
	type shape struct {
		B      int
		wConst bool
	}
	for _, sh := range []shape{{1, false}, {2, false}, {4, false}, {8, false}, {8, true}} {
		c := wkv6Case{sh.B, T, C / N, N, -1, 1, sh.wConst, true}
		in := to32x6(c.inputs(1))
		o := newWKV6Out[float32](sh.B, T, C/N, N, len(in.w))
		for _, kernel := range []string{"avx2", "go"} {
			mode := "x060"
			if sh.wConst {
				mode = "x052"
			}
			b.Run(fmt.Sprintf("%s/%s/B=%d,T=%d,C=%d", kernel, mode, sh.B, T, C), func(b *testing.B) {
				if kernel == "avx2" && !haveAVX2 {
					b.Skip("no AVX2 kernels in this build")
				}
				fwd, bwd := wkv6Forward[float32], wkv6Backward[float32]
				if kernel == "avx2" {
					fwd, bwd = runWKV6Forward[float32], runWKV6Backward[float32]
				}
				for b.Loop() {
					fwd(in.B, in.T, in.H, in.N, in.r, in.k, in.v, in.w, in.u, in.s0, o.y, o.sT)
					bwd(in.B, in.T, in.H, in.N, in.r, in.k, in.v, in.w, in.u, in.s0, in.dy, in.dsT, o.dr, o.dk, o.dv, o.dw, o.du, o.ds0)
				}
				b.ReportMetric(float64(sh.B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}
