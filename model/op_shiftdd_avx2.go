//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// ShiftLoRA's backward for one row (C % 8 == 0), with μ = maa + mm and δ = xx − x:
// gm = g⊙δ; pm += g⊙δ (in double); gx = g⊙(1 − μ) (+ gn⊙(maa + mmn) unless gn is NULL);
// gprev = g⊙μ unless gprev is NULL.
RW_AVX2 void rw6_lora_row_bwd(int C, const float* x, const float* xx, const float* g, const float* gn,
		const float* maa, const float* mm, const float* mmn, float* gx, float* gm, double* pm, float* gprev) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (int c = 0; c < C; c += 8) {
		__m256 vg = _mm256_loadu_ps(g + c), vm = _mm256_loadu_ps(maa + c);
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(xx + c), _mm256_loadu_ps(x + c));
		_mm256_storeu_ps(gm + c, _mm256_mul_ps(vg, d));
		__m256d g0 = _mm256_cvtps_pd(_mm256_castps256_ps128(vg)), g1 = _mm256_cvtps_pd(_mm256_extractf128_ps(vg, 1));
		__m256d d0 = _mm256_cvtps_pd(_mm256_castps256_ps128(d)), d1 = _mm256_cvtps_pd(_mm256_extractf128_ps(d, 1));
		_mm256_storeu_pd(pm + c, _mm256_fmadd_pd(g0, d0, _mm256_loadu_pd(pm + c)));
		_mm256_storeu_pd(pm + c + 4, _mm256_fmadd_pd(g1, d1, _mm256_loadu_pd(pm + c + 4)));
		__m256 mu = _mm256_add_ps(vm, _mm256_loadu_ps(mm + c));
		__m256 o = _mm256_mul_ps(vg, _mm256_sub_ps(one, mu));
		if (gn) o = _mm256_fmadd_ps(_mm256_loadu_ps(gn + c), _mm256_add_ps(vm, _mm256_loadu_ps(mmn + c)), o);
		_mm256_storeu_ps(gx + c, o);
		if (gprev) _mm256_storeu_ps(gprev + c, _mm256_mul_ps(vg, mu));
	}
}
*/
import "C"

import "unsafe"

// shiftLoRARowsFast is shiftLoRABackward's row loop for float32 in C (rows lo..hi, C a multiple of
// 8); pm (C float64s) accumulates Σ_rows g⊙δ.
func shiftLoRARowsFast(x, prev, maa, g, mm, gx, gm, gprev []float32, pm []float64, lo, hi, T, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	pp := (*C.double)(unsafe.Pointer(&pm[0]))
	for r := lo; r < hi; r++ {
		b, t := r/T, r%T
		var gn, mmn, gp *C.float
		if t+1 < T {
			gn, mmn = fptr(g[(r+1)*Cn:]), fptr(mm[(r+1)*Cn:])
		}
		if t == 0 {
			gp = fptr(gprev[b*Cn:])
		}
		C.rw6_lora_row_bwd(C.int(Cn), fptr(x[r*Cn:]), fptr(prevRow(x, prev, b, t, T, Cn)), fptr(g[r*Cn:]), gn,
			fptr(maa), fptr(mm[r*Cn:]), mmn, fptr(gx[r*Cn:]), fptr(gm[r*Cn:]), pp, gp)
	}
	return true
}
