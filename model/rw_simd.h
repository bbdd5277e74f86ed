// rw_simd.h: the C helpers shared by the AVX2 kernels of package model (the *_avx2.go files).
// cgo compiles each file's preamble as its own
// translation unit, so everything here is static inline (or a macro) and the guard keeps it single.
#ifndef RW_SIMD_H
#define RW_SIMD_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#define RW_AVX2 __attribute__((target("avx2,fma")))

// RW_FTZ, first in every kernel, sets flush-to-zero and denormals-are-zero for the kernel's
// duration and restores the caller's MXCSR on return (Go code expects the default).
static inline unsigned int rw_ftz_on(void) {
	unsigned int c = _mm_getcsr();
	_mm_setcsr(c | 0x8040);
	return c;
}
static inline void rw_csr_restore(unsigned int* c) { _mm_setcsr(*c); }
#define RW_FTZ unsigned int rw_csr_ __attribute__((cleanup(rw_csr_restore))) = rw_ftz_on()

// e^x for float32 (Cephes expf: range reduction and a degree-6 polynomial, relative error about
// 2e-7), 0 below -87.3 (so -1e38, the empty state's log-scale, gives 0).
static inline float rw_exp1(float x) {
	if (x < -87.3f) return 0.0f;
	if (x > 88.0f) x = 88.0f;
	float fx = x * 1.44269504088896341f + 0.5f;
	int32_t n = (int32_t)fx;
	if ((float)n > fx) n--;
	float fn = (float)n;
	float r = x - fn * 0.693359375f + fn * 2.12194440e-4f;
	float p = 1.9875691500e-4f;
	p = p * r + 1.3981999507e-3f;
	p = p * r + 8.3334519073e-3f;
	p = p * r + 4.1665795894e-2f;
	p = p * r + 1.6666665459e-1f;
	p = p * r + 5.0000001201e-1f;
	p = p * r * r + r + 1.0f;
	int32_t bits = (n + 127) << 23;
	float s;
	memcpy(&s, &bits, 4);
	return p * s;
}

RW_AVX2 static inline __m256 rw_exp8(__m256 x) {
	__m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
	x = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
	x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
	__m256 fx = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f));
	fx = _mm256_floor_ps(fx);
	__m256 r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
	r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), r);
	__m256 p = _mm256_set1_ps(1.9875691500e-4f);
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
	p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
	p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
	__m256i n = _mm256_cvtps_epi32(fx);
	n = _mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23);
	p = _mm256_mul_ps(p, _mm256_castsi256_ps(n));
	return _mm256_and_ps(p, tiny);
}

// σ(z) = 1/(1+e^{-z}), 8 lanes and 1 (tanh(z) = 2σ(2z) - 1 where the kernels need it).
RW_AVX2 static inline __m256 rw_sigmoid8(__m256 z) {
	__m256 one = _mm256_set1_ps(1.0f);
	return _mm256_div_ps(one, _mm256_add_ps(one, rw_exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))));
}
static inline float rw_sigmoid1(float z) { return 1.0f / (1.0f + rw_exp1(-z)); }

// The sums of the 8 lanes of each of a, b, c, d, in that order (WKV-6 and WKV-7 kernels).
RW_AVX2 static inline __m128 rw_hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
	__m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
	return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// The sum of the 8 lanes of v: the two halves, then two horizontal adds.
RW_AVX2 static inline float rw_hsum_hadd(__m256 v) {
	__m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
	h = _mm_hadd_ps(h, h);
	h = _mm_hadd_ps(h, h);
	return _mm_cvtss_f32(h);
}

// The sum of the 4 lanes of v.
RW_AVX2 static inline double rw_hsum_pd(__m256d v) {
	__m128d h = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
	return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

#endif // RW_SIMD_H
