//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// d = exp(-exp(w)) and, unless f is NULL, f = dd/dw = -exp(w - exp(w)) (finite for every w: rw_exp8
// saturates at e^88, and 0 where d underflows); N % 8 == 0.
RW_AVX2 static void rw6_decay(int N, const float* w, float* d, float* f) {
	const __m256 zero = _mm256_setzero_ps();
	for (int j = 0; j < N; j += 8) {
		__m256 x = _mm256_loadu_ps(w + j);
		__m256 e = rw_exp8(x);
		_mm256_storeu_ps(d + j, rw_exp8(_mm256_sub_ps(zero, e)));
		if (f) _mm256_storeu_ps(f + j, _mm256_sub_ps(zero, rw_exp8(_mm256_sub_ps(x, e))));
	}
}

// Σ_j a_j b_j c_j (c may be NULL: Σ_j a_j b_j); N % 8 == 0.
RW_AVX2 static float rw6_dot3(int N, const float* a, const float* b, const float* c) {
	__m256 s = _mm256_setzero_ps();
	for (int j = 0; j < N; j += 8) {
		__m256 x = _mm256_mul_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
		s = c ? _mm256_fmadd_ps(x, _mm256_loadu_ps(c + j), s) : _mm256_add_ps(x, s);
	}
	return rw_hsum_hadd(s);
}

// One token of one head: unless y is NULL, y = S r + v·ruk from the state in (N×N, [value][key]);
// the state advanced to S diag(d) + v kᵀ goes to out (in place when out == in). Four rows at a
// time; N % 8 == 0.
RW_AVX2 static void rw6_step(int N, const float* in, float* out, const float* d, const float* r, const float* k,
		const float* v, float ruk, float* y) {
	for (int i = 0; i < N; i += 4) {
		const float* s0 = in + (long)i * N;
		const float* s1 = s0 + N;
		const float* s2 = s1 + N;
		const float* s3 = s2 + N;
		float* o0 = out + (long)i * N;
		float* o1 = o0 + N;
		float* o2 = o1 + N;
		float* o3 = o2 + N;
		__m256 v0 = _mm256_set1_ps(v[i]), v1 = _mm256_set1_ps(v[i + 1]), v2 = _mm256_set1_ps(v[i + 2]), v3 = _mm256_set1_ps(v[i + 3]);
		__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
		for (int j = 0; j < N; j += 8) {
			__m256 dv = _mm256_loadu_ps(d + j), kv = _mm256_loadu_ps(k + j), rv = _mm256_loadu_ps(r + j);
			__m256 x0 = _mm256_loadu_ps(s0 + j), x1 = _mm256_loadu_ps(s1 + j), x2 = _mm256_loadu_ps(s2 + j), x3 = _mm256_loadu_ps(s3 + j);
			c0 = _mm256_fmadd_ps(x0, rv, c0);
			c1 = _mm256_fmadd_ps(x1, rv, c1);
			c2 = _mm256_fmadd_ps(x2, rv, c2);
			c3 = _mm256_fmadd_ps(x3, rv, c3);
			_mm256_storeu_ps(o0 + j, _mm256_fmadd_ps(x0, dv, _mm256_mul_ps(v0, kv)));
			_mm256_storeu_ps(o1 + j, _mm256_fmadd_ps(x1, dv, _mm256_mul_ps(v1, kv)));
			_mm256_storeu_ps(o2 + j, _mm256_fmadd_ps(x2, dv, _mm256_mul_ps(v2, kv)));
			_mm256_storeu_ps(o3 + j, _mm256_fmadd_ps(x3, dv, _mm256_mul_ps(v3, kv)));
		}
		if (y) {
			__m128 vi = _mm_loadu_ps(v + i);
			_mm_storeu_ps(y + i, _mm_fmadd_ps(vi, _mm_set1_ps(ruk), rw_hsum4(c0, c1, c2, c3)));
		}
	}
}

// rw6_fwd runs T tokens of one head. r, k, v, y point at the head's channel 0 of token 0, rows C
// apart; w likewise with rows wc apart (wc = 0: one decay for every token, x052); u at the head's
// bonus; S holds the initial state on entry and the final state on return; d is N floats of scratch.
RW_AVX2 void rw6_fwd(int T, int C, int N, const float* r, const float* k, const float* v, const float* w, int wc,
		const float* u, float* y, float* S, float* d) {
	RW_FTZ;
	for (int t = 0; t < T; t++) {
		long o = (long)t * C;
		if (t == 0 || wc) rw6_decay(N, w + (long)t * wc, d, NULL);
		rw6_step(N, S, S, d, r + o, k + o, v + o, rw6_dot3(N, r + o, u, k + o), y + o);
	}
}

// One token backwards, two rows at a time: G = dL/dS_t becomes dL/dS_{t-1} = G diag(d) + g rᵀ;
// prev = S_{t-1}. Writes into acc (3N floats, contiguous) the column sums dr (Σ_i g_i prev_ij),
// dd (Σ_i G_ij prev_ij), dk (Σ_i G_ij v_i), and into dv the rows Σ_j G_ij k_j + g_i·ruk; the
// caller adds the bonus terms and copies them out (accumulating straight into output rows a
// multiple of 4 KiB apart would stall on 4K aliasing, as in rw7_step_back).
RW_AVX2 static void rw6_step_back(int N, const float* prev, float* G, const float* d, const float* r,
		const float* k, const float* v, const float* dy, float ruk, float* dv, float* acc) {
	float *dr = acc, *dd = acc + N, *dk = acc + 2 * N;
	memset(acc, 0, 3 * N * sizeof(float));
	for (int i = 0; i < N; i += 2) {
		float* g0 = G + (long)i * N;
		float* g1 = g0 + N;
		const float* p0 = prev + (long)i * N;
		const float* p1 = p0 + N;
		__m256 y0 = _mm256_set1_ps(dy[i]), y1 = _mm256_set1_ps(dy[i + 1]);
		__m256 v0 = _mm256_set1_ps(v[i]), v1 = _mm256_set1_ps(v[i + 1]);
		__m256 ev0 = _mm256_setzero_ps(), ev1 = ev0;
		for (int j = 0; j < N; j += 8) {
			__m256 x0 = _mm256_loadu_ps(g0 + j), x1 = _mm256_loadu_ps(g1 + j);
			__m256 q0 = _mm256_loadu_ps(p0 + j), q1 = _mm256_loadu_ps(p1 + j);
			__m256 t = _mm256_loadu_ps(dr + j);
			t = _mm256_fmadd_ps(y0, q0, t);
			_mm256_storeu_ps(dr + j, _mm256_fmadd_ps(y1, q1, t));
			t = _mm256_loadu_ps(dd + j);
			t = _mm256_fmadd_ps(x0, q0, t);
			_mm256_storeu_ps(dd + j, _mm256_fmadd_ps(x1, q1, t));
			t = _mm256_loadu_ps(dk + j);
			t = _mm256_fmadd_ps(v0, x0, t);
			_mm256_storeu_ps(dk + j, _mm256_fmadd_ps(v1, x1, t));
			__m256 kv = _mm256_loadu_ps(k + j), rv = _mm256_loadu_ps(r + j), dv8 = _mm256_loadu_ps(d + j);
			ev0 = _mm256_fmadd_ps(x0, kv, ev0);
			ev1 = _mm256_fmadd_ps(x1, kv, ev1);
			_mm256_storeu_ps(g0 + j, _mm256_fmadd_ps(x0, dv8, _mm256_mul_ps(y0, rv)));
			_mm256_storeu_ps(g1 + j, _mm256_fmadd_ps(x1, dv8, _mm256_mul_ps(y1, rv)));
		}
		float h[4];
		_mm_storeu_ps(h, rw_hsum4(ev0, ev1, ev0, ev1));
		dv[i] = h[0] + dy[i] * ruk;
		dv[i + 1] = h[1] + dy[i + 1] * ruk;
	}
}

// rw6_bwd is the backward of rw6_fwd for one head. s0: the initial state; G: on entry the
// gradient of the final state, on return that of the initial state. dr, dk, dv are written like
// r, rows C apart; with wc != 0, dw (with respect to the raw w) likewise, rows wc apart; with
// wc == 0 the sum over t of the gradient of d (not yet of w) goes to ddsum (N floats). The sum
// over t of u's gradient goes to du (N floats). scratch holds rw6_bwd_scratch(T, N) floats; its
// contents on entry do not matter.
long rw6_bwd_scratch(int T, int N) {
	long NN = (long)N * N;
	return ((T + 15) / 16) * NN + 17 * NN + 2L * T * N + 5L * N;
}

RW_AVX2 void rw6_bwd(int T, int C, int N, const float* r, const float* k, const float* v, const float* w, int wc,
		const float* u, const float* dy, const float* s0, float* G,
		float* dr, float* dk, float* dv, float* dw, float* du, float* ddsum, float* scratch) {
	RW_FTZ;
	const int L = 16;
	long NN = (long)N * N;
	int nc = (T + L - 1) / L, nd = wc ? T : 1;
	float* snaps = scratch;
	float* states = snaps + nc * NN;
	float* g = states + L * NN;
	float* dA = g + NN;
	float* fA = dA + (long)T * N;
	float* acc = fA + (long)T * N;
	memcpy(g, G, NN * sizeof(float));
	for (int t = 0; t < nd; t++) rw6_decay(N, w + (long)t * wc, dA + (long)t * N, fA + (long)t * N);
	long ds = wc ? N : 0; // the stride of dA and fA
	memcpy(states, s0, NN * sizeof(float));
	for (int t = 0; t < (nc - 1) * L; t++) { // the last chunk is recomputed below anyway
		long o = (long)t * C;
		if (t % L == 0) memcpy(snaps + (t / L) * NN, states, NN * sizeof(float));
		rw6_step(N, states, states, dA + t * ds, r + o, k + o, v + o, 0, NULL);
	}
	memcpy(snaps + (nc - 1) * NN, states, NN * sizeof(float));
	memset(du, 0, N * sizeof(float));
	if (!wc) memset(ddsum, 0, N * sizeof(float));
	for (int c = nc - 1; c >= 0; c--) {
		int t0 = c * L, t1 = t0 + L < T ? t0 + L : T;
		memcpy(states, snaps + c * NN, NN * sizeof(float));
		for (int t = t0; t + 1 < t1; t++) {
			long o = (long)t * C;
			int s = t - t0;
			rw6_step(N, states + s * NN, states + (s + 1) * NN, dA + t * ds, r + o, k + o, v + o, 0, NULL);
		}
		for (int t = t1 - 1; t >= t0; t--) {
			long o = (long)t * C;
			int s = t - t0;
			const float *rt = r + o, *kt = k + o, *vt = v + o, *gt = dy + o;
			rw6_step_back(N, states + s * NN, g, dA + t * ds, rt, kt, vt, gt, rw6_dot3(N, rt, u, kt), acc + 3 * N, acc);
			__m256 gv = _mm256_set1_ps(rw6_dot3(N, gt, vt, NULL));
			const float* f = fA + t * ds;
			for (int j = 0; j < N; j += 8) {
				__m256 rv = _mm256_loadu_ps(rt + j), kv = _mm256_loadu_ps(kt + j);
				__m256 ug = _mm256_mul_ps(_mm256_loadu_ps(u + j), gv);
				_mm256_storeu_ps(dr + o + j, _mm256_fmadd_ps(ug, kv, _mm256_loadu_ps(acc + j)));
				_mm256_storeu_ps(dk + o + j, _mm256_fmadd_ps(ug, rv, _mm256_loadu_ps(acc + 2 * N + j)));
				_mm256_storeu_ps(dv + o + j, _mm256_loadu_ps(acc + 3 * N + j));
				_mm256_storeu_ps(du + j, _mm256_fmadd_ps(_mm256_mul_ps(rv, kv), gv, _mm256_loadu_ps(du + j)));
				__m256 dd = _mm256_loadu_ps(acc + N + j);
				if (wc) _mm256_storeu_ps(dw + (long)t * wc + j, _mm256_mul_ps(dd, _mm256_loadu_ps(f + j)));
				else _mm256_storeu_ps(ddsum + j, _mm256_add_ps(dd, _mm256_loadu_ps(ddsum + j)));
			}
		}
	}
	memcpy(G, g, NN * sizeof(float));
}
*/
import "C"

// wkv6ForwardFast is wkv6Forward for float32 in C (AVX2+FMA). It reports false when it cannot
// run: no AVX2 (or RWKV_KERNELS=go), or a head size that is not a multiple of 8.
func wkv6ForwardFast(B, T, H, N int, r, k, v, w, u, s0, y, sT []float32) bool {
	if !haveAVX2 || N%8 != 0 || T < 1 {
		return false
	}
	Cn, NN := H*N, N*N
	wConst := wkv6WConst(B, T, H, N, len(w))
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		buf := getScratch(NN + N)
		defer putScratch(buf)
		S, d := buf[:NN], buf[NN:]
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			copy(S, s0[task*NN:(task+1)*NN])
			o := bi*T*Cn + h*N
			wo, wc := o, Cn
			if wConst {
				wo, wc = h*N, 0
			}
			C.rw6_fwd(C.int(T), C.int(Cn), C.int(N), fptr(r[o:]), fptr(k[o:]), fptr(v[o:]), fptr(w[wo:]), C.int(wc),
				fptr(u[h*N:]), fptr(y[o:]), fptr(S), fptr(d))
			copy(sT[task*NN:(task+1)*NN], S)
		}
	})
	return true
}

// wkv6BackwardFast is wkv6Backward for float32 in C. It reports false when it cannot run.
func wkv6BackwardFast(B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []float32) bool {
	if !haveAVX2 || N%8 != 0 || T < 1 {
		return false
	}
	Cn, NN := H*N, N*N
	wConst := wkv6WConst(B, T, H, N, len(w))
	duPart, ddPart := make([]float32, B*H*N), make([]float32, B*H*N)
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		buf := getScratch(int(C.rw6_bwd_scratch(C.int(T), C.int(N))))
		defer putScratch(buf)
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			G := ds0[task*NN : (task+1)*NN]
			seedStateGrad(G, dsT, task)
			o := bi*T*Cn + h*N
			wo, wc, dwp := h*N, 0, (*C.float)(nil)
			if !wConst {
				wo, wc, dwp = o, Cn, fptr(dw[o:])
			}
			C.rw6_bwd(C.int(T), C.int(Cn), C.int(N), fptr(r[o:]), fptr(k[o:]), fptr(v[o:]), fptr(w[wo:]), C.int(wc),
				fptr(u[h*N:]), fptr(dy[o:]), fptr(s0[task*NN:]), fptr(G),
				fptr(dr[o:]), fptr(dk[o:]), fptr(dv[o:]), dwp, fptr(duPart[task*N:]), fptr(ddPart[task*N:]), fptr(buf))
		}
	})
	wkv6Reduce(B, H, N, duPart, du)
	if wConst {
		wkv6Reduce(B, H, N, ddPart, dw)
		wkv6ScaleDW(w, dw)
	}
	return true
}
