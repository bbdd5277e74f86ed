//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#include "rw_simd.h"

// d = exp(-e^-0.5·σ(w)) and, unless f is NULL, f = dd/dw = d·(-e^-0.5)·σ(w)(1-σ(w)); N % 8 == 0.
RW_AVX2 static void rw7_decay(int N, const float* w, float* d, float* f) {
	const __m256 one = _mm256_set1_ps(1.0f), ws = _mm256_set1_ps(-0.6065306597126334f);
	for (int j = 0; j < N; j += 8) {
		__m256 e = rw_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(w + j)));
		__m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
		__m256 dd = rw_exp8(_mm256_mul_ps(ws, s));
		_mm256_storeu_ps(d + j, dd);
		// σ(1-σ) as σ·σ·e^-w: 1-σ would cancel for large w.
		if (f) _mm256_storeu_ps(f + j, _mm256_mul_ps(_mm256_mul_ps(dd, ws), _mm256_mul_ps(_mm256_mul_ps(s, s), e)));
	}
}

// One token of one head: the state in (N×N, [value][key]) is advanced into out (in place when
// out == in); y = S r unless y is NULL, sa = S_{t-1} α unless sa is NULL. Four rows at a time;
// N % 8 == 0.
RW_AVX2 static void rw7_step(int N, const float* in, float* out, const float* d, const float* r, const float* k,
		const float* v, const float* a, const float* b, float* y, float* sa) {
	for (int i = 0; i < N; i += 4) {
		const float* s0 = in + (long)i * N;
		const float* s1 = s0 + N;
		const float* s2 = s1 + N;
		const float* s3 = s2 + N;
		float* o0 = out + (long)i * N;
		float* o1 = o0 + N;
		float* o2 = o1 + N;
		float* o3 = o2 + N;
		__m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
		for (int j = 0; j < N; j += 8) {
			__m256 av = _mm256_loadu_ps(a + j);
			c0 = _mm256_fmadd_ps(_mm256_loadu_ps(s0 + j), av, c0);
			c1 = _mm256_fmadd_ps(_mm256_loadu_ps(s1 + j), av, c1);
			c2 = _mm256_fmadd_ps(_mm256_loadu_ps(s2 + j), av, c2);
			c3 = _mm256_fmadd_ps(_mm256_loadu_ps(s3 + j), av, c3);
		}
		float sv[4];
		_mm_storeu_ps(sv, rw_hsum4(c0, c1, c2, c3));
		if (sa) memcpy(sa + i, sv, sizeof sv);
		__m256 a0 = _mm256_set1_ps(sv[0]), a1 = _mm256_set1_ps(sv[1]), a2 = _mm256_set1_ps(sv[2]), a3 = _mm256_set1_ps(sv[3]);
		__m256 v0 = _mm256_set1_ps(v[i]), v1 = _mm256_set1_ps(v[i + 1]), v2 = _mm256_set1_ps(v[i + 2]), v3 = _mm256_set1_ps(v[i + 3]);
		c0 = _mm256_setzero_ps(); c1 = c0; c2 = c0; c3 = c0;
		for (int j = 0; j < N; j += 8) {
			__m256 dv = _mm256_loadu_ps(d + j), bv = _mm256_loadu_ps(b + j), kv = _mm256_loadu_ps(k + j), rv = _mm256_loadu_ps(r + j);
			__m256 x0 = _mm256_fmadd_ps(_mm256_loadu_ps(s0 + j), dv, _mm256_fmadd_ps(a0, bv, _mm256_mul_ps(v0, kv)));
			__m256 x1 = _mm256_fmadd_ps(_mm256_loadu_ps(s1 + j), dv, _mm256_fmadd_ps(a1, bv, _mm256_mul_ps(v1, kv)));
			__m256 x2 = _mm256_fmadd_ps(_mm256_loadu_ps(s2 + j), dv, _mm256_fmadd_ps(a2, bv, _mm256_mul_ps(v2, kv)));
			__m256 x3 = _mm256_fmadd_ps(_mm256_loadu_ps(s3 + j), dv, _mm256_fmadd_ps(a3, bv, _mm256_mul_ps(v3, kv)));
			_mm256_storeu_ps(o0 + j, x0);
			_mm256_storeu_ps(o1 + j, x1);
			_mm256_storeu_ps(o2 + j, x2);
			_mm256_storeu_ps(o3 + j, x3);
			c0 = _mm256_fmadd_ps(x0, rv, c0);
			c1 = _mm256_fmadd_ps(x1, rv, c1);
			c2 = _mm256_fmadd_ps(x2, rv, c2);
			c3 = _mm256_fmadd_ps(x3, rv, c3);
		}
		if (y) _mm_storeu_ps(y + i, rw_hsum4(c0, c1, c2, c3));
	}
}

// rw7_fwd runs T tokens of one head. r..b and y point at the head's channel 0 of token 0, rows C
// apart; S holds the initial state on entry and the final state on return; d is N floats of scratch.
RW_AVX2 void rw7_fwd(int T, int C, int N, const float* r, const float* w, const float* k, const float* v,
		const float* a, const float* b, float* y, float* S, float* d) {
	RW_FTZ;
	for (int t = 0; t < T; t++) {
		long o = (long)t * C;
		rw7_decay(N, w + o, d, NULL);
		rw7_step(N, S, S, d, r + o, k + o, v + o, a + o, b + o, y + o, NULL);
	}
}

// One token backwards, two rows at a time: G = dL/dS_t (without the token's own output term)
// becomes dL/dS_{t-1}; prev = S_{t-1}, cur = S_t; writes into acc (5N floats, contiguous) the
// column sums dr, dd (the gradient of d), dk, db, da, and into dv the row sums; the caller copies
// them out.
// Accumulating straight into the output rows would be 2x slower: those tensors lie a multiple
// of 4 KiB apart, and each load from one would wait for the store just made to another (4K aliasing).
RW_AVX2 static void rw7_step_back(int N, const float* prev, const float* cur, float* G, const float* sa, const float* d,
		const float* r, const float* k, const float* v, const float* a, const float* b, const float* dy,
		float* dv, float* acc) {
	float *dr = acc, *dd = acc + N, *dk = acc + 2 * N, *db = acc + 3 * N, *da = acc + 4 * N;
	memset(acc, 0, 5 * N * sizeof(float));
	for (int i = 0; i < N; i += 2) {
		float* g0 = G + (long)i * N;
		float* g1 = g0 + N;
		const float* p0 = prev + (long)i * N;
		const float* p1 = p0 + N;
		const float* q0 = cur + (long)i * N;
		const float* q1 = q0 + N;
		__m256 y0 = _mm256_set1_ps(dy[i]), y1 = _mm256_set1_ps(dy[i + 1]);
		__m256 v0 = _mm256_set1_ps(v[i]), v1 = _mm256_set1_ps(v[i + 1]);
		__m256 s0 = _mm256_set1_ps(sa[i]), s1 = _mm256_set1_ps(sa[i + 1]);
		__m256 ev0 = _mm256_setzero_ps(), ev1 = ev0, es0 = ev0, es1 = ev0;
		for (int j = 0; j < N; j += 8) {
			__m256 rv = _mm256_loadu_ps(r + j);
			__m256 x0 = _mm256_fmadd_ps(y0, rv, _mm256_loadu_ps(g0 + j));
			__m256 x1 = _mm256_fmadd_ps(y1, rv, _mm256_loadu_ps(g1 + j));
			_mm256_storeu_ps(g0 + j, x0);
			_mm256_storeu_ps(g1 + j, x1);
			__m256 t = _mm256_loadu_ps(dr + j);
			t = _mm256_fmadd_ps(y0, _mm256_loadu_ps(q0 + j), t);
			_mm256_storeu_ps(dr + j, _mm256_fmadd_ps(y1, _mm256_loadu_ps(q1 + j), t));
			t = _mm256_loadu_ps(dd + j);
			t = _mm256_fmadd_ps(x0, _mm256_loadu_ps(p0 + j), t);
			_mm256_storeu_ps(dd + j, _mm256_fmadd_ps(x1, _mm256_loadu_ps(p1 + j), t));
			t = _mm256_loadu_ps(dk + j);
			t = _mm256_fmadd_ps(v0, x0, t);
			_mm256_storeu_ps(dk + j, _mm256_fmadd_ps(v1, x1, t));
			t = _mm256_loadu_ps(db + j);
			t = _mm256_fmadd_ps(s0, x0, t);
			_mm256_storeu_ps(db + j, _mm256_fmadd_ps(s1, x1, t));
			__m256 kv = _mm256_loadu_ps(k + j), bv = _mm256_loadu_ps(b + j);
			ev0 = _mm256_fmadd_ps(x0, kv, ev0);
			ev1 = _mm256_fmadd_ps(x1, kv, ev1);
			es0 = _mm256_fmadd_ps(x0, bv, es0);
			es1 = _mm256_fmadd_ps(x1, bv, es1);
		}
		float h[4];
		_mm_storeu_ps(h, rw_hsum4(ev0, ev1, es0, es1));
		dv[i] = h[0];
		dv[i + 1] = h[1];
		__m256 z0 = _mm256_set1_ps(h[2]), z1 = _mm256_set1_ps(h[3]);
		for (int j = 0; j < N; j += 8) {
			__m256 t = _mm256_loadu_ps(da + j);
			t = _mm256_fmadd_ps(z0, _mm256_loadu_ps(p0 + j), t);
			_mm256_storeu_ps(da + j, _mm256_fmadd_ps(z1, _mm256_loadu_ps(p1 + j), t));
			__m256 dv8 = _mm256_loadu_ps(d + j), av = _mm256_loadu_ps(a + j);
			_mm256_storeu_ps(g0 + j, _mm256_fmadd_ps(_mm256_loadu_ps(g0 + j), dv8, _mm256_mul_ps(z0, av)));
			_mm256_storeu_ps(g1 + j, _mm256_fmadd_ps(_mm256_loadu_ps(g1 + j), dv8, _mm256_mul_ps(z1, av)));
		}
	}
}

// rw7_bwd is the backward of rw7_fwd for one head. s0: the initial state; G: on entry the
// gradient of the final state, on return that of the initial state. Gradients are written like
// r, rows C apart (dw with respect to the raw w). scratch holds rw7_bwd_scratch(T, N) floats; its
// contents on entry do not matter.
long rw7_bwd_scratch(int T, int N) {
	long NN = (long)N * N;
	return ((T + 15) / 16) * NN + 18 * NN + 16L * N + 2L * T * N + 6L * N;
}

RW_AVX2 void rw7_bwd(int T, int C, int N, const float* r, const float* w, const float* k, const float* v,
		const float* a, const float* b, const float* dy, const float* s0, float* G,
		float* dr, float* dw, float* dk, float* dv, float* da, float* db, float* scratch) {
	RW_FTZ;
	const int L = 16;
	long NN = (long)N * N;
	int nc = (T + L - 1) / L;
	float* snaps = scratch;
	float* states = snaps + nc * NN;
	float* g = states + (L + 1) * NN;
	float* sa = g + NN;
	float* dA = sa + (long)L * N;
	float* fA = dA + (long)T * N;
	float* acc = fA + (long)T * N;
	memcpy(g, G, NN * sizeof(float));
	memcpy(states, s0, NN * sizeof(float));
	for (int t = 0; t < T; t++) {
		long o = (long)t * C;
		rw7_decay(N, w + o, dA + (long)t * N, fA + (long)t * N);
		if (t % L == 0) memcpy(snaps + (t / L) * NN, states, NN * sizeof(float));
		if (t < (nc - 1) * L) // the last chunk is recomputed below anyway
			rw7_step(N, states, states, dA + (long)t * N, r + o, k + o, v + o, a + o, b + o, NULL, NULL);
	}
	for (int c = nc - 1; c >= 0; c--) {
		int t0 = c * L, t1 = t0 + L < T ? t0 + L : T;
		memcpy(states, snaps + c * NN, NN * sizeof(float));
		for (int t = t0; t < t1; t++) {
			long o = (long)t * C;
			int s = t - t0;
			rw7_step(N, states + s * NN, states + (s + 1) * NN, dA + (long)t * N, r + o, k + o, v + o, a + o, b + o, NULL, sa + (long)s * N);
		}
		for (int t = t1 - 1; t >= t0; t--) {
			long o = (long)t * C;
			int s = t - t0;
			const float* d = dA + (long)t * N;
			rw7_step_back(N, states + s * NN, states + (s + 1) * NN, g, sa + (long)s * N, d,
				r + o, k + o, v + o, a + o, b + o, dy + o, acc + 5 * N, acc);
			const float* f = fA + (long)t * N;
			for (int j = 0; j < N; j += 8) {
				_mm256_storeu_ps(dr + o + j, _mm256_loadu_ps(acc + j));
				_mm256_storeu_ps(dw + o + j, _mm256_mul_ps(_mm256_loadu_ps(acc + N + j), _mm256_loadu_ps(f + j)));
				_mm256_storeu_ps(dk + o + j, _mm256_loadu_ps(acc + 2 * N + j));
				_mm256_storeu_ps(db + o + j, _mm256_loadu_ps(acc + 3 * N + j));
				_mm256_storeu_ps(da + o + j, _mm256_loadu_ps(acc + 4 * N + j));
				_mm256_storeu_ps(dv + o + j, _mm256_loadu_ps(acc + 5 * N + j));
			}
		}
	}
	memcpy(G, g, NN * sizeof(float));
}
*/
import "C"

// wkv7ForwardFast is wkv7Forward for float32 in C (AVX2+FMA). It reports false when it cannot
// run: no AVX2 (or RWKV_KERNELS=go), or a head size that is not a multiple of 8.
func wkv7ForwardFast(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []float32) bool {
	if !haveAVX2 || N%8 != 0 || T < 1 {
		return false
	}
	Cn, NN := H*N, N*N
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		buf := getScratch(NN + N)
		defer putScratch(buf)
		S, d := buf[:NN], buf[NN:]
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			copy(S, s0[task*NN:(task+1)*NN])
			o := bi*T*Cn + h*N
			C.rw7_fwd(C.int(T), C.int(Cn), C.int(N), fptr(r[o:]), fptr(w[o:]), fptr(k[o:]), fptr(v[o:]),
				fptr(a[o:]), fptr(b[o:]), fptr(y[o:]), fptr(S), fptr(d))
			copy(sT[task*NN:(task+1)*NN], S)
		}
	})
	return true
}

// wkv7BackwardFast is wkv7Backward for float32 in C. It reports false when it cannot run.
func wkv7BackwardFast(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []float32) bool {
	if !haveAVX2 || N%8 != 0 || T < 1 {
		return false
	}
	Cn, NN := H*N, N*N
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		buf := getScratch(int(C.rw7_bwd_scratch(C.int(T), C.int(N))))
		defer putScratch(buf)
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			G := ds0[task*NN : (task+1)*NN]
			seedStateGrad(G, dsT, task)
			o := bi*T*Cn + h*N
			C.rw7_bwd(C.int(T), C.int(Cn), C.int(N), fptr(r[o:]), fptr(w[o:]), fptr(k[o:]), fptr(v[o:]),
				fptr(a[o:]), fptr(b[o:]), fptr(dy[o:]), fptr(s0[task*NN:]), fptr(G),
				fptr(dr[o:]), fptr(dw[o:]), fptr(dk[o:]), fptr(dv[o:]), fptr(da[o:]), fptr(db[o:]), fptr(buf))
		}
	})
	return true
}
