//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// The mean and 1/sqrt(var + eps) of S floats (S % 8 == 0), in double (groupStats).
RW_AVX2 static void rwg_stats(int S, const float* x, double eps, __m256d* mean, __m256d* rstd) {
	__m256d s0 = _mm256_setzero_pd(), s1 = s0;
	for (int j = 0; j < S; j += 8) {
		__m256 v = _mm256_loadu_ps(x + j);
		s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
		s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
	}
	double m = rw_hsum_pd(_mm256_add_pd(s0, s1)) / S;
	__m256d vm = _mm256_set1_pd(m);
	s0 = _mm256_setzero_pd(), s1 = s0;
	for (int j = 0; j < S; j += 8) {
		__m256 v = _mm256_loadu_ps(x + j);
		__m256d d0 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), vm);
		__m256d d1 = _mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), vm);
		s0 = _mm256_fmadd_pd(d0, d0, s0);
		s1 = _mm256_fmadd_pd(d1, d1, s1);
	}
	double var = rw_hsum_pd(_mm256_add_pd(s0, s1)) / S;
	*mean = vm;
	*rstd = _mm256_set1_pd(1.0 / __builtin_sqrt(var + eps));
}

// (x - mean)·rstd of 8 floats, in double, rounded to float.
RW_AVX2 static inline __m256 rwg_xhat(const float* x, __m256d mean, __m256d rstd) {
	__m256 v = _mm256_loadu_ps(x);
	__m256d lo = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)), mean), rstd);
	__m256d hi = _mm256_mul_pd(_mm256_sub_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)), mean), rstd);
	return _mm256_set_m128(_mm256_cvtpd_ps(hi), _mm256_cvtpd_ps(lo));
}

// p[0..8) += v, in double.
RW_AVX2 static inline void rwg_acc(double* p, __m256 v) {
	_mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_cvtps_pd(_mm256_castps256_ps128(v))));
	_mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1))));
}

// y = GroupNorm(x)⊙SiLU(z) over rows of C channels in groups of S (S % 8 == 0).
RW_AVX2 void rwg_fwd(long rows, int C, int S, double eps, const float* x, const float* w, const float* b,
		const float* z, float* y) {
	RW_FTZ;
	for (long i = 0; i < rows * C; i += S) {
		int c0 = (int)(i % C);
		__m256d mean, rstd;
		rwg_stats(S, x + i, eps, &mean, &rstd);
		for (int j = 0; j < S; j += 8) {
			__m256 xh = rwg_xhat(x + i + j, mean, rstd), zv = _mm256_loadu_ps(z + i + j);
			__m256 n = _mm256_fmadd_ps(xh, _mm256_loadu_ps(w + c0 + j), _mm256_loadu_ps(b + c0 + j));
			_mm256_storeu_ps(y + i + j, _mm256_mul_ps(n, _mm256_mul_ps(zv, rw_sigmoid8(zv))));
		}
	}
}

// Its backward (gnGateBackward); pw and pb (C doubles each) accumulate Σ_rows q·x̂ and Σ_rows q.
RW_AVX2 void rwg_bwd(long rows, int C, int S, double eps, const float* x, const float* w, const float* b,
		const float* z, const float* gy, float* gx, float* gz, double* pw, double* pb) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (long i = 0; i < rows * C; i += S) {
		int c0 = (int)(i % C);
		__m256d mean, rstd;
		rwg_stats(S, x + i, eps, &mean, &rstd);
		__m256 sg = _mm256_setzero_ps(), sgx = sg;
		for (int j = 0; j < S; j += 8) {
			__m256 xh = rwg_xhat(x + i + j, mean, rstd), zv = _mm256_loadu_ps(z + i + j), g = _mm256_loadu_ps(gy + i + j);
			__m256 wv = _mm256_loadu_ps(w + c0 + j);
			__m256 s = rw_sigmoid8(zv);
			__m256 n = _mm256_fmadd_ps(xh, wv, _mm256_loadu_ps(b + c0 + j));
			__m256 ds = _mm256_mul_ps(s, _mm256_fmadd_ps(zv, _mm256_sub_ps(one, s), one));
			_mm256_storeu_ps(gz + i + j, _mm256_mul_ps(_mm256_mul_ps(g, n), ds));
			__m256 q = _mm256_mul_ps(g, _mm256_mul_ps(zv, s));
			__m256 gh = _mm256_mul_ps(q, wv);
			_mm256_storeu_ps(gx + i + j, gh); // ĝ until the second pass
			sg = _mm256_add_ps(sg, gh);
			sgx = _mm256_fmadd_ps(gh, xh, sgx);
			rwg_acc(pw + c0 + j, _mm256_mul_ps(q, xh));
			rwg_acc(pb + c0 + j, q);
		}
		__m256 msg = _mm256_set1_ps(rw_hsum_hadd(sg) / S), msgx = _mm256_set1_ps(rw_hsum_hadd(sgx) / S);
		__m256 vr = _mm256_set1_ps((float)_mm256_cvtsd_f64(rstd));
		for (int j = 0; j < S; j += 8) {
			__m256 xh = rwg_xhat(x + i + j, mean, rstd);
			__m256 t = _mm256_fnmadd_ps(xh, msgx, _mm256_sub_ps(_mm256_loadu_ps(gx + i + j), msg));
			_mm256_storeu_ps(gx + i + j, _mm256_mul_ps(vr, t));
		}
	}
}
*/
import "C"

import "unsafe"

// gnGateForwardFast is gnGateForward for float32 in C (group size a multiple of 8).
func gnGateForwardFast(x, w, b, z, y []float32, N, Cn, H int, eps float64) bool {
	S := Cn / H
	if !haveAVX2 || S%8 != 0 {
		return false
	}
	parallelFor(N, pieces(N, Cn), func(_, lo, hi int) {
		o := lo * Cn
		C.rwg_fwd(C.long(hi-lo), C.int(Cn), C.int(S), C.double(eps), fptr(x[o:]), fptr(w), fptr(b), fptr(z[o:]), fptr(y[o:]))
	})
	return true
}

// gnGateBackwardFast is gnGateBackward for float32 in C (float64 partials of gw and gb).
func gnGateBackwardFast(x, w, b, z, gy, gx, gw, gb, gz []float32, N, Cn, H int, eps float64) bool {
	S := Cn / H
	if !haveAVX2 || S%8 != 0 {
		return false
	}
	np := pieces(N, Cn)
	part := make([]float64, 2*np*Cn)
	parallelFor(N, np, func(p, lo, hi int) {
		o := lo * Cn
		C.rwg_bwd(C.long(hi-lo), C.int(Cn), C.int(S), C.double(eps), fptr(x[o:]), fptr(w), fptr(b), fptr(z[o:]), fptr(gy[o:]),
			fptr(gx[o:]), fptr(gz[o:]), (*C.double)(unsafe.Pointer(&part[2*p*Cn])), (*C.double)(unsafe.Pointer(&part[(2*p+1)*Cn])))
	})
	sumParts(part, np, Cn, 2, 0, gw)
	sumParts(part, np, Cn, 2, 1, gb)
	return true
}
