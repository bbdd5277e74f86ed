//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// tanh(z) = 2σ(2z) - 1 (absolute error about 2e-7).

// y = act(x + b) over rows of D channels; b may be NULL; kind 1 = tanh, 2 = sigmoid.
RW_AVX2 void rw7_act_fwd(long rows, int D, const float* x, const float* b, int kind, float* y) {
	RW_FTZ;
	__m256 two = _mm256_set1_ps(2.0f), one = _mm256_set1_ps(1.0f);
	for (long r = 0; r < rows; r++) {
		const float* xr = x + r * D;
		float* yr = y + r * D;
		int j = 0;
		for (; j + 8 <= D; j += 8) {
			__m256 z = _mm256_loadu_ps(xr + j);
			if (b) z = _mm256_add_ps(z, _mm256_loadu_ps(b + j));
			__m256 out = kind == 1 ? _mm256_fmsub_ps(two, rw_sigmoid8(_mm256_mul_ps(two, z)), one) : rw_sigmoid8(z);
			_mm256_storeu_ps(yr + j, out);
		}
		for (; j < D; j++) {
			float z = xr[j] + (b ? b[j] : 0.0f);
			yr[j] = kind == 1 ? 2.0f * rw_sigmoid1(2.0f * z) - 1.0f : rw_sigmoid1(z);
		}
	}
}

// Value residual over rows of C channels: out = v + (vf - v)·σ(v0 + z).
RW_AVX2 void rw7_vres_fwd(long rows, int C, const float* v, const float* vf, const float* v0, const float* z, float* out) {
	RW_FTZ;
	for (long r = 0; r < rows; r++) {
		long o = r * C;
		int j = 0;
		for (; j + 8 <= C; j += 8) {
			__m256 s = rw_sigmoid8(_mm256_add_ps(_mm256_loadu_ps(v0 + j), _mm256_loadu_ps(z + o + j)));
			__m256 vv = _mm256_loadu_ps(v + o + j);
			_mm256_storeu_ps(out + o + j, _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(vf + o + j), vv), s, vv));
		}
		for (; j < C; j++) {
			float s = rw_sigmoid1(v0[j] + z[o + j]);
			out[o + j] = v[o + j] + (vf[o + j] - v[o + j]) * s;
		}
	}
}

// Its backward; gv0 (C) accumulates Σ_rows gz (the caller zeroes it).
RW_AVX2 void rw7_vres_bwd(long rows, int C, const float* v, const float* vf, const float* v0, const float* z,
		const float* g, float* gv, float* gvf, float* gz, float* gv0) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (long r = 0; r < rows; r++) {
		long o = r * C;
		int j = 0;
		for (; j + 8 <= C; j += 8) {
			__m256 s = rw_sigmoid8(_mm256_add_ps(_mm256_loadu_ps(v0 + j), _mm256_loadu_ps(z + o + j)));
			__m256 gg = _mm256_loadu_ps(g + o + j);
			__m256 gs = _mm256_mul_ps(gg, s);
			_mm256_storeu_ps(gvf + o + j, gs);
			_mm256_storeu_ps(gv + o + j, _mm256_sub_ps(gg, gs));
			__m256 d = _mm256_sub_ps(_mm256_loadu_ps(vf + o + j), _mm256_loadu_ps(v + o + j));
			__m256 gzz = _mm256_mul_ps(_mm256_mul_ps(gs, d), _mm256_sub_ps(one, s));
			_mm256_storeu_ps(gz + o + j, gzz);
			_mm256_storeu_ps(gv0 + j, _mm256_add_ps(_mm256_loadu_ps(gv0 + j), gzz));
		}
		for (; j < C; j++) {
			float s = rw_sigmoid1(v0[j] + z[o + j]);
			float gs = g[o + j] * s;
			gvf[o + j] = gs;
			gv[o + j] = g[o + j] - gs;
			float gzz = gs * (vf[o + j] - v[o + j]) * (1.0f - s);
			gz[o + j] = gzz;
			gv0[j] += gzz;
		}
	}
}
*/
import "C"

// actForwardFast is actForward for float32 tanh and sigmoid in C; b may be nil.
func actForwardFast(kind ActKind, x, b, y []float32, N, D int) bool {
	if !haveAVX2 || kind == ActIdentity {
		return false
	}
	var bp *C.float
	if b != nil {
		bp = fptr(b)
	}
	parallelFor(N, pieces(N, D), func(_, lo, hi int) {
		C.rw7_act_fwd(C.long(hi-lo), C.int(D), fptr(x[lo*D:]), bp, C.int(kind), fptr(y[lo*D:]))
	})
	return true
}

// vresForwardFast is vresForward for float32 in C.
func vresForwardFast(v, vf, v0, z, out []float32, N, Cn int) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(N, pieces(N, Cn), func(_, lo, hi int) {
		o := lo * Cn
		C.rw7_vres_fwd(C.long(hi-lo), C.int(Cn), fptr(v[o:]), fptr(vf[o:]), fptr(v0), fptr(z[o:]), fptr(out[o:]))
	})
	return true
}

// vresBackwardFast is vresBackward for float32 in C: float32 partial sums of gv0 per piece
// (at most N/pieces rows each), added up in float64.
func vresBackwardFast(v, vf, v0, z, g, gv, gvf, gv0, gz []float32, N, Cn int) bool {
	if !haveAVX2 {
		return false
	}
	np := pieces(N, Cn)
	part := getScratchZero(np * Cn)
	defer putScratch(part)
	parallelFor(N, np, func(p, lo, hi int) {
		o := lo * Cn
		C.rw7_vres_bwd(C.long(hi-lo), C.int(Cn), fptr(v[o:]), fptr(vf[o:]), fptr(v0), fptr(z[o:]), fptr(g[o:]),
			fptr(gv[o:]), fptr(gvf[o:]), fptr(gz[o:]), fptr(part[p*Cn:]))
	})
	for c := 0; c < Cn; c++ {
		var s float64
		for p := 0; p < np; p++ {
			s += float64(part[p*Cn+c])
		}
		gv0[c] = float32(s)
	}
	return true
}
