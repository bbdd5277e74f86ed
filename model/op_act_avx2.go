//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// y = x·σ(x) over n elements.
RW_AVX2 void rwa_silu_fwd(long n, const float* x, float* y) {
	RW_FTZ;
	long i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 z = _mm256_loadu_ps(x + i);
		_mm256_storeu_ps(y + i, _mm256_mul_ps(z, rw_sigmoid8(z)));
	}
	for (; i < n; i++) y[i] = x[i] * rw_sigmoid1(x[i]);
}

// gx = g·act'(y) over rows of D channels (kind 1 tanh: 1-y²; 2 sigmoid: y(1-y); 3 SiLU, y holding
// x: σ(x)(1 + x(1-σ(x)))); unless part is NULL, part (D doubles) accumulates Σ_rows gx.
RW_AVX2 void rwa_act_bwd(long rows, int D, int kind, const float* y, const float* g, float* gx, double* part) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (long r = 0; r < rows; r++) {
		const float* yr = y + r * D;
		const float* gr = g + r * D;
		float* xr = gx + r * D;
		int j = 0;
		for (; j + 8 <= D; j += 8) {
			__m256 yv = _mm256_loadu_ps(yr + j), gv = _mm256_loadu_ps(gr + j), d;
			if (kind == 1) {
				d = _mm256_fnmadd_ps(yv, yv, one);
			} else if (kind == 2) {
				d = _mm256_mul_ps(yv, _mm256_sub_ps(one, yv));
			} else {
				__m256 s = rw_sigmoid8(yv);
				d = _mm256_mul_ps(s, _mm256_fmadd_ps(yv, _mm256_sub_ps(one, s), one));
			}
			__m256 o = _mm256_mul_ps(gv, d);
			_mm256_storeu_ps(xr + j, o);
			if (part) {
				_mm256_storeu_pd(part + j, _mm256_add_pd(_mm256_loadu_pd(part + j), _mm256_cvtps_pd(_mm256_castps256_ps128(o))));
				_mm256_storeu_pd(part + j + 4, _mm256_add_pd(_mm256_loadu_pd(part + j + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(o, 1))));
			}
		}
		for (; j < D; j++) {
			float yv = yr[j], d;
			if (kind == 1) {
				d = 1.0f - yv * yv;
			} else if (kind == 2) {
				d = yv * (1.0f - yv);
			} else {
				float s = rw_sigmoid1(yv);
				d = s * (1.0f + yv * (1.0f - s));
			}
			xr[j] = gr[j] * d;
			if (part) part[j] += (double)xr[j];
		}
	}
}
*/
import "C"

import "unsafe"

// siluForwardFast is actForward for float32 SiLU in C.
func siluForwardFast(x, y []float32, N, D int) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(N, pieces(N, D), func(_, lo, hi int) {
		C.rwa_silu_fwd(C.long((hi-lo)*D), fptr(x[lo*D:]), fptr(y[lo*D:]))
	})
	return true
}

// actBackwardFast is actBackward for float32 tanh, sigmoid and SiLU in C (float64 partial column
// sums of the bias gradient, as actBackward's).
func actBackwardFast(o actOp, y, g, out []float32) bool {
	if !haveAVX2 || o.Kind == ActIdentity {
		return false
	}
	N, D := o.N, o.D
	np := pieces(N, D)
	var part []float64
	if o.HasBias {
		part = make([]float64, np*D)
	}
	parallelFor(N, np, func(p, lo, hi int) {
		var pp *C.double
		if part != nil {
			pp = (*C.double)(unsafe.Pointer(&part[p*D]))
		}
		C.rwa_act_bwd(C.long(hi-lo), C.int(D), C.int(o.Kind), fptr(y[lo*D:]), fptr(g[lo*D:]), fptr(out[lo*D:]), pp)
	})
	if part != nil {
		sumParts(part, np, D, 1, 0, out[N*D:])
	}
	return true
}
