//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// ShiftLerp forward, one row and one mix (C % 8 == 0): out = x + (xx − x)⊙m.
RW_AVX2 void rwl_fwd_row(int C, const float* x, const float* xx, const float* m, float* out) {
	RW_FTZ;
	for (int c = 0; c < C; c += 8) {
		__m256 xv = _mm256_loadu_ps(x + c);
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(xx + c), xv);
		_mm256_storeu_ps(out + c, _mm256_fmadd_ps(d, _mm256_loadu_ps(m + c), xv));
	}
}

// ShiftLerp backward, one row and one mix (C % 8 == 0), δ = xx − x: pm += g⊙δ (double);
// gx (= when set, else +=) g⊙(1 − m) (+ gn⊙m unless gn is NULL); unless gp is NULL, gp (= when
// set, else +=) g⊙m.
RW_AVX2 void rwl_bwd_row(int C, int set, const float* x, const float* xx, const float* g, const float* gn,
		const float* m, float* gx, double* pm, float* gp) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (int c = 0; c < C; c += 8) {
		__m256 vg = _mm256_loadu_ps(g + c), vm = _mm256_loadu_ps(m + c);
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(xx + c), _mm256_loadu_ps(x + c));
		__m256d g0 = _mm256_cvtps_pd(_mm256_castps256_ps128(vg)), g1 = _mm256_cvtps_pd(_mm256_extractf128_ps(vg, 1));
		__m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(d)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
		_mm256_storeu_pd(pm + c, _mm256_fmadd_pd(g0, d0, _mm256_loadu_pd(pm + c)));
		_mm256_storeu_pd(pm + c + 4, _mm256_fmadd_pd(g1, d1, _mm256_loadu_pd(pm + c + 4)));
		__m256 o = _mm256_mul_ps(vg, _mm256_sub_ps(one, vm));
		if (gn) o = _mm256_fmadd_ps(_mm256_loadu_ps(gn + c), vm, o);
		if (!set) o = _mm256_add_ps(_mm256_loadu_ps(gx + c), o);
		_mm256_storeu_ps(gx + c, o);
		if (gp) {
			__m256 q = _mm256_mul_ps(vg, vm);
			if (!set) q = _mm256_add_ps(_mm256_loadu_ps(gp + c), q);
			_mm256_storeu_ps(gp + c, q);
		}
	}
}
*/
import "C"

import "unsafe"

// shiftLerpForwardFast is shiftLerpForward for float32 in C (C a multiple of 8).
func shiftLerpForwardFast(x, prev []float32, mixes [][]float32, out []float32, B, T, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	N := B * T
	parallelFor(N, pieces(N, Cn*len(mixes)), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, xx := fptr(x[r*Cn:]), fptr(prevRow(x, prev, r/T, r%T, T, Cn))
			for i, m := range mixes {
				C.rwl_fwd_row(C.int(Cn), xr, xx, fptr(m), fptr(out[(i*N+r)*Cn:]))
			}
		}
	})
	return true
}

// shiftLerpBackwardFast is shiftLerpBackward for float32 in C (C a multiple of 8; the mixes'
// gradient sums in float64, as shiftLerpBackward's).
func shiftLerpBackwardFast(x, prev []float32, mixes [][]float32, g, gx, gprev, gmix []float32, B, T, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	N, K := B*T, len(mixes)
	np := pieces(N, Cn*K)
	part := make([]float64, np*K*Cn)
	parallelFor(N, np, func(p, lo, hi int) {
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx, gxr := fptr(x[r*Cn:]), fptr(prevRow(x, prev, b, t, T, Cn)), fptr(gx[r*Cn:])
			var gp *C.float
			if t == 0 {
				gp = fptr(gprev[b*Cn:])
			}
			for i, m := range mixes {
				var gn *C.float
				if t+1 < T {
					gn = fptr(g[(i*N+r+1)*Cn:])
				}
				set := C.int(0)
				if i == 0 {
					set = 1
				}
				C.rwl_bwd_row(C.int(Cn), set, xr, xx, fptr(g[(i*N+r)*Cn:]), gn, fptr(m), gxr,
					(*C.double)(unsafe.Pointer(&part[(p*K+i)*Cn])), gp)
			}
		}
	})
	sumParts(part, np, K*Cn, 1, 0, gmix)
	return true
}
