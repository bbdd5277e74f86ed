//go:build cgo && amd64

package optim

/*
#cgo CFLAGS: -O2
#cgo LDFLAGS: -lm
#include <immintrin.h>

// rw_adamw32 is update32 eight elements at a time: the same float32 operations in the same
// order, with the two multiply-adds fused as torch's AVX2 kernels fuse them. Denormals are
// flushed to zero while it runs (as in PyTorch with set_flush_denormal): the second moment of
// a parameter whose gradient stays zero decays into the denormal range after a few thousand
// steps, where every operation on it would be slow.
__attribute__((target("avx2,fma"), optimize("fp-contract=off")))
static void rw_adamw32(long n, float* p, const float* g, float* m, float* v, float b1, float c1,
		float b2, float c2, float decay, float negStep, float bc2s, float eps) {
	unsigned int csr = _mm_getcsr();
	_mm_setcsr(csr | 0x8040); // FTZ | DAZ
	long i = 0;
	__m256 vb1 = _mm256_set1_ps(b1), vc1 = _mm256_set1_ps(c1), vb2 = _mm256_set1_ps(b2), vc2 = _mm256_set1_ps(c2);
	__m256 vdecay = _mm256_set1_ps(decay), vneg = _mm256_set1_ps(negStep), vbc = _mm256_set1_ps(bc2s), veps = _mm256_set1_ps(eps);
	for (; i + 8 <= n; i += 8) {
		__m256 gi = _mm256_loadu_ps(g + i);
		__m256 mi = _mm256_fmadd_ps(vc1, gi, _mm256_mul_ps(_mm256_loadu_ps(m + i), vb1));
		__m256 vi = _mm256_fmadd_ps(_mm256_mul_ps(vc2, gi), gi, _mm256_mul_ps(_mm256_loadu_ps(v + i), vb2));
		_mm256_storeu_ps(m + i, mi);
		_mm256_storeu_ps(v + i, vi);
		__m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), vbc), veps);
		__m256 pi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), vdecay), _mm256_div_ps(_mm256_mul_ps(vneg, mi), denom));
		_mm256_storeu_ps(p + i, pi);
	}
	for (; i < n; i++) {
		float gi = g[i];
		float mi = __builtin_fmaf(c1, gi, m[i] * b1);
		float vi = __builtin_fmaf(c2 * gi, gi, v[i] * b2);
		m[i] = mi;
		v[i] = vi;
		float denom = __builtin_sqrtf(vi) / bc2s + eps;
		p[i] = p[i] * decay + (negStep * mi) / denom;
	}
	_mm_setcsr(csr);
}
*/
import "C"

import (
	"unsafe"

	"github.com/rwkv-go/rwkv-go/internal/simd"
)

// The update runs in C when simd.AVX2 (AVX2+FMA, and RWKV_KERNELS is not "go").
var haveAVX2 = simd.AVX2

// update32Fast runs update32 in C with AVX2 when the CPU has it; it reports false otherwise.
func update32Fast(p, g, m, v []float32, k *coeffs) bool {
	if !haveAVX2 || len(p) == 0 {
		return false
	}
	ptr := func(s []float32) *C.float { return (*C.float)(unsafe.Pointer(&s[0])) }
	C.rw_adamw32(C.long(len(p)), ptr(p), ptr(g), ptr(m), ptr(v), C.float(float32(k.b1)), C.float(float32(k.c1)),
		C.float(float32(k.b2)), C.float(float32(k.c2)), C.float(float32(k.decay)), C.float(float32(-k.stepSize)),
		C.float(float32(k.bc2s)), C.float(float32(k.eps)))
	return true
}
