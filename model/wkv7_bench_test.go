package model

import (
	"fmt"
	"testing"
)

// benchWKV7Shapes are (B, T, C) with head size 64: the L6-D512 training shape and the 0.1B
// (C=768) shape at batch 1.
var benchWKV7Shapes = []struct{ B, T, C int }{{8, 256, 512}, {1, 512, 768}}

// benchWKV7 runs fn for each shape and kernel (avx2: the float32 dispatch, go: the generic
// float32 Go kernel) and reports tokens/s.
func benchWKV7(b *testing.B, fn func(kernel string, in wkv7In[float32], o wkv7Out[float32])) {
	const N = 64
	for _, sh := range benchWKV7Shapes {
		in := to32(wkv7Case{sh.B, sh.T, sh.C / N, N, 0, 1, true}.inputs(1))
		o := newWKV7Out[float32](sh.B, sh.T, sh.C/N, N)
		for _, kernel := range []string{"avx2", "go"} {
			b.Run(fmt.Sprintf("%s/B=%d,T=%d,C=%d", kernel, sh.B, sh.T, sh.C), func(b *testing.B) {
				if kernel == "avx2" && !haveAVX2 {
					b.Skip("no AVX2 kernels in this build")
				}
				for b.Loop() {
					fn(kernel, in, o)
				}
				b.ReportMetric(float64(sh.B*sh.T*b.N)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}

// BenchmarkWKV7Forward measures the WKV-7 forward kernels alone, float32.
func BenchmarkWKV7Forward(b *testing.B) {
	benchWKV7(b, func(kernel string, in wkv7In[float32], o wkv7Out[float32]) {
		f := wkv7Forward[float32]
		if kernel == "avx2" {
			f = runWKV7Forward[float32]
		}
		f(in.B, in.T, in.H, in.N, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, o.y, o.sT)
	})
}

// BenchmarkWKV7Backward measures the WKV-7 backward kernels alone (which include the forward
// recomputation), float32.
func BenchmarkWKV7Backward(b *testing.B) {
	benchWKV7(b, func(kernel string, in wkv7In[float32], o wkv7Out[float32]) {
		f := wkv7Backward[float32]
		if kernel == "avx2" {
			f = runWKV7Backward[float32]
		}
		f(in.B, in.T, in.H, in.N, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, in.dy, in.dsT, o.dr, o.dw, o.dk, o.dv, o.da, o.db, o.ds0)
	})
}
