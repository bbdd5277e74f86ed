//go:build cgo && amd64

package model

/*
#cgo CFLAGS: -O2
#cgo LDFLAGS: -lm
#include <math.h>
#include "rw_simd.h"

// rw_wkv_fwd runs the WKV recurrence over T steps for W channels of one sequence. k, v, y
// point at channel 0 of step 0 and rows are C apart; w = -exp(time_decay), u = time_first;
// aa, bb, pp hold the initial state on entry and the final state on return.
RW_AVX2 void rw_wkv_fwd(int T, int C, int W, const float* w, const float* u, const float* k,
		const float* v, float* y, float* aa, float* bb, float* pp) {
	RW_FTZ;
	int j = 0;
	for (; j + 8 <= W; j += 8) {
		__m256 vw = _mm256_loadu_ps(w + j), vu = _mm256_loadu_ps(u + j);
		__m256 a = _mm256_loadu_ps(aa + j), b = _mm256_loadu_ps(bb + j), q = _mm256_loadu_ps(pp + j);
		for (int t = 0; t < T; t++) {
			long o = (long)t * C + j;
			__m256 kk = _mm256_loadu_ps(k + o), vv = _mm256_loadu_ps(v + o);
			__m256 ww = _mm256_add_ps(vu, kk);
			__m256 p = _mm256_max_ps(q, ww);
			__m256 e1 = rw_exp8(_mm256_sub_ps(q, p)), e2 = rw_exp8(_mm256_sub_ps(ww, p));
			__m256 num = _mm256_fmadd_ps(e1, a, _mm256_mul_ps(e2, vv));
			__m256 den = _mm256_fmadd_ps(e1, b, e2);
			_mm256_storeu_ps(y + o, _mm256_div_ps(num, den));
			ww = _mm256_add_ps(vw, q);
			p = _mm256_max_ps(ww, kk);
			e1 = rw_exp8(_mm256_sub_ps(ww, p));
			e2 = rw_exp8(_mm256_sub_ps(kk, p));
			a = _mm256_fmadd_ps(e1, a, _mm256_mul_ps(e2, vv));
			b = _mm256_fmadd_ps(e1, b, e2);
			q = p;
		}
		_mm256_storeu_ps(aa + j, a);
		_mm256_storeu_ps(bb + j, b);
		_mm256_storeu_ps(pp + j, q);
	}
	for (; j < W; j++) {
		float a = aa[j], b = bb[j], q = pp[j];
		for (int t = 0; t < T; t++) {
			long o = (long)t * C + j;
			float kk = k[o], vv = v[o];
			float ww = u[j] + kk;
			float p = q > ww ? q : ww;
			float e1 = rw_exp1(q - p), e2 = rw_exp1(ww - p);
			y[o] = (e1 * a + e2 * vv) / (e1 * b + e2);
			ww = w[j] + q;
			p = ww > kk ? ww : kk;
			e1 = rw_exp1(ww - p);
			e2 = rw_exp1(kk - p);
			a = e1 * a + e2 * vv;
			b = e1 * b + e2;
			q = p;
		}
		aa[j] = a; bb[j] = b; pp[j] = q;
	}
}

// rw_wkv_bwd is reverse-mode differentiation of rw_wkv_fwd for 8 channels at a time (W must be a
// multiple of 8). aa0, bb0, pp0: the initial state; gaa, gbb, gpp: on entry the gradient of the
// final state, on return that of the initial state; gw, gu: gradients of w and u (summed over
// t); gk, gv: rows C apart like k. scratch holds 7*8*T floats.
RW_AVX2 void rw_wkv_bwd(int T, int C, int W, const float* w, const float* u, const float* k,
		const float* v, const float* gy, const float* aa0, const float* bb0, const float* pp0,
		float* gaa, float* gbb, float* gpp, float* gw, float* gu, float* gk, float* gv, float* scratch) {
	RW_FTZ;
	for (int j = 0; j + 8 <= W; j += 8) {
		__m256 vw = _mm256_loadu_ps(w + j), vu = _mm256_loadu_ps(u + j);
		__m256 a = _mm256_loadu_ps(aa0 + j), b = _mm256_loadu_ps(bb0 + j), q = _mm256_loadu_ps(pp0 + j);
		for (int t = 0; t < T; t++) {
			long o = (long)t * C + j;
			float* s = scratch + (long)t * 56;
			__m256 kk = _mm256_loadu_ps(k + o), vv = _mm256_loadu_ps(v + o);
			__m256 ww = _mm256_add_ps(vu, kk);
			__m256 p = _mm256_max_ps(q, ww);
			__m256 e1 = rw_exp8(_mm256_sub_ps(q, p)), e2 = rw_exp8(_mm256_sub_ps(ww, p));
			__m256 w2 = _mm256_add_ps(vw, q);
			__m256 p2 = _mm256_max_ps(w2, kk);
			__m256 f1 = rw_exp8(_mm256_sub_ps(w2, p2)), f2 = rw_exp8(_mm256_sub_ps(kk, p2));
			_mm256_storeu_ps(s, a);
			_mm256_storeu_ps(s + 8, b);
			_mm256_storeu_ps(s + 16, q);
			_mm256_storeu_ps(s + 24, e1);
			_mm256_storeu_ps(s + 32, e2);
			_mm256_storeu_ps(s + 40, f1);
			_mm256_storeu_ps(s + 48, f2);
			a = _mm256_fmadd_ps(f1, a, _mm256_mul_ps(f2, vv));
			b = _mm256_fmadd_ps(f1, b, f2);
			q = p2;
		}
		__m256 ga = _mm256_loadu_ps(gaa + j), gb = _mm256_loadu_ps(gbb + j), gq = _mm256_loadu_ps(gpp + j);
		__m256 gwa = _mm256_setzero_ps(), gua = _mm256_setzero_ps();
		__m256 zero = _mm256_setzero_ps();
		for (int t = T - 1; t >= 0; t--) {
			long o = (long)t * C + j;
			const float* s = scratch + (long)t * 56;
			__m256 a0 = _mm256_loadu_ps(s), b0 = _mm256_loadu_ps(s + 8), p0 = _mm256_loadu_ps(s + 16);
			__m256 e1 = _mm256_loadu_ps(s + 24), e2 = _mm256_loadu_ps(s + 32);
			__m256 f1 = _mm256_loadu_ps(s + 40), f2 = _mm256_loadu_ps(s + 48);
			__m256 kk = _mm256_loadu_ps(k + o), vv = _mm256_loadu_ps(v + o), g = _mm256_loadu_ps(gy + o);
			// State update: aa' = f1*aa + f2*v, bb' = f1*bb + f2, pp' = max(w+pp, k).
			__m256 gf1 = _mm256_fmadd_ps(ga, a0, _mm256_mul_ps(gb, b0));
			__m256 gf2 = _mm256_fmadd_ps(ga, vv, gb);
			__m256 nga = _mm256_mul_ps(ga, f1), ngb = _mm256_mul_ps(gb, f1);
			__m256 gvt = _mm256_mul_ps(ga, f2);
			__m256 t1 = _mm256_mul_ps(gf1, f1), t2 = _mm256_mul_ps(gf2, f2);
			__m256 gp2 = _mm256_sub_ps(gq, _mm256_add_ps(t1, t2));
			__m256 toW = _mm256_cmp_ps(_mm256_add_ps(vw, p0), kk, _CMP_GE_OQ);
			__m256 gww2 = _mm256_add_ps(t1, _mm256_blendv_ps(zero, gp2, toW));
			__m256 gkt = _mm256_add_ps(t2, _mm256_blendv_ps(gp2, zero, toW));
			gwa = _mm256_add_ps(gwa, gww2);
			// Output: y = (e1*aa + e2*v) / (e1*bb + e2); no gradient flows through its max.
			__m256 den = _mm256_fmadd_ps(e1, b0, e2);
			__m256 yt = _mm256_div_ps(_mm256_fmadd_ps(e1, a0, _mm256_mul_ps(e2, vv)), den);
			__m256 gnum = _mm256_div_ps(g, den);
			__m256 gden = _mm256_sub_ps(zero, _mm256_mul_ps(gnum, yt));
			__m256 ge1 = _mm256_fmadd_ps(gnum, a0, _mm256_mul_ps(gden, b0));
			__m256 ge2 = _mm256_fmadd_ps(gnum, vv, gden);
			nga = _mm256_fmadd_ps(gnum, e1, nga);
			ngb = _mm256_fmadd_ps(gden, e1, ngb);
			gvt = _mm256_fmadd_ps(gnum, e2, gvt);
			__m256 ngq = _mm256_fmadd_ps(ge1, e1, gww2);
			__m256 gww = _mm256_mul_ps(ge2, e2);
			gua = _mm256_add_ps(gua, gww);
			gkt = _mm256_add_ps(gkt, gww);
			_mm256_storeu_ps(gk + o, gkt);
			_mm256_storeu_ps(gv + o, gvt);
			ga = nga; gb = ngb; gq = ngq;
		}
		_mm256_storeu_ps(gaa + j, ga);
		_mm256_storeu_ps(gbb + j, gb);
		_mm256_storeu_ps(gpp + j, gq);
		_mm256_storeu_ps(gw + j, gwa);
		_mm256_storeu_ps(gu + j, gua);
	}
}


// Elementwise float32 kernels over [0, n): the sigmoid gate, relu squared and the token shift
// + mix, forward and backward.
RW_AVX2 void rw_gate_fwd(long n, const float* r, const float* y, float* out) {
	RW_FTZ;
	long i = 0;
	__m256 one = _mm256_set1_ps(1.0f);
	for (; i + 8 <= n; i += 8) {
		__m256 e = rw_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(r + i)));
		_mm256_storeu_ps(out + i, _mm256_div_ps(_mm256_loadu_ps(y + i), _mm256_add_ps(one, e)));
	}
	for (; i < n; i++) out[i] = y[i] / (1.0f + rw_exp1(-r[i]));
}

RW_AVX2 void rw_gate_bwd(long n, const float* r, const float* y, const float* g, float* gr, float* gy) {
	RW_FTZ;
	long i = 0;
	__m256 one = _mm256_set1_ps(1.0f);
	for (; i + 8 <= n; i += 8) {
		__m256 e = rw_exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_loadu_ps(r + i)));
		__m256 s = _mm256_div_ps(one, _mm256_add_ps(one, e));
		__m256 gg = _mm256_loadu_ps(g + i);
		__m256 gs = _mm256_mul_ps(gg, s);
		_mm256_storeu_ps(gy + i, gs);
		_mm256_storeu_ps(gr + i, _mm256_mul_ps(_mm256_mul_ps(gs, _mm256_loadu_ps(y + i)), _mm256_sub_ps(one, s)));
	}
	for (; i < n; i++) {
		float s = 1.0f / (1.0f + rw_exp1(-r[i]));
		gy[i] = g[i] * s;
		gr[i] = g[i] * s * y[i] * (1.0f - s);
	}
}

RW_AVX2 void rw_relusq(long n, const float* k, const float* g, float* out) {
	RW_FTZ;
	long i = 0;
	__m256 zero = _mm256_setzero_ps();
	if (g == NULL) {
		for (; i + 8 <= n; i += 8) {
			__m256 x = _mm256_max_ps(_mm256_loadu_ps(k + i), zero);
			_mm256_storeu_ps(out + i, _mm256_mul_ps(x, x));
		}
		for (; i < n; i++) { float x = k[i] > 0 ? k[i] : 0; out[i] = x * x; }
		return;
	}
	__m256 two = _mm256_set1_ps(2.0f);
	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_max_ps(_mm256_loadu_ps(k + i), zero);
		_mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(two, x), _mm256_loadu_ps(g + i)));
	}
	for (; i < n; i++) { float x = k[i] > 0 ? k[i] : 0; out[i] = 2 * x * g[i]; }
}

// rw_mix_row: out = x*m + xx*(1-m) over C channels.
RW_AVX2 void rw_mix_row(int C, const float* x, const float* xx, const float* m, float* out) {
	RW_FTZ;
	int c = 0;
	for (; c + 8 <= C; c += 8) {
		__m256 vm = _mm256_loadu_ps(m + c), vxx = _mm256_loadu_ps(xx + c);
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), vxx);
		_mm256_storeu_ps(out + c, _mm256_fmadd_ps(d, vm, vxx));
	}
	for (; c < C; c++) out[c] = x[c] * m[c] + xx[c] * (1 - m[c]);
}


RW_AVX2 static inline float rw_hsum(__m256 v) {
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
	return _mm_cvtss_f32(lo);
}

// rw_row_stats returns the mean of a row of C (a multiple of 8) and stores 1/sqrt(var+1e-5).
RW_AVX2 static float rw_row_stats(int C, const float* x, float* rstd) {
	__m256 s = _mm256_setzero_ps();
	for (int c = 0; c < C; c += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(x + c));
	float mean = rw_hsum(s) / C;
	__m256 vm = _mm256_set1_ps(mean), q = _mm256_setzero_ps();
	for (int c = 0; c < C; c += 8) {
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), vm);
		q = _mm256_fmadd_ps(d, d, q);
	}
	*rstd = 1.0f / __builtin_sqrtf(rw_hsum(q) / C + 1e-5f);
	return mean;
}

// LayerNorm over rows of C channels (C a multiple of 8).
RW_AVX2 void rw_ln_fwd(long rows, int C, const float* x, const float* w, const float* b, float* y) {
	RW_FTZ;
	for (long r = 0; r < rows; r++) {
		const float* xr = x + r * C;
		float* yr = y + r * C;
		float rstd;
		float mean = rw_row_stats(C, xr, &rstd);
		__m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
		for (int c = 0; c < C; c += 8) {
			__m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vr);
			_mm256_storeu_ps(yr + c, _mm256_fmadd_ps(xh, _mm256_loadu_ps(w + c), _mm256_loadu_ps(b + c)));
		}
	}
}

// LayerNorm backward: gx for every row; the weight and bias gradients are added to pw, pb.
RW_AVX2 void rw_ln_bwd(long rows, int C, const float* x, const float* w, const float* gy, float* gx, float* pw, float* pb) {
	RW_FTZ;
	for (long r = 0; r < rows; r++) {
		const float* xr = x + r * C;
		const float* gr = gy + r * C;
		float* gxr = gx + r * C;
		float rstd;
		float mean = rw_row_stats(C, xr, &rstd);
		__m256 vm = _mm256_set1_ps(mean), vr = _mm256_set1_ps(rstd);
		__m256 sg = _mm256_setzero_ps(), sgx = _mm256_setzero_ps();
		for (int c = 0; c < C; c += 8) {
			__m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vr);
			__m256 g = _mm256_loadu_ps(gr + c);
			__m256 gxh = _mm256_mul_ps(g, _mm256_loadu_ps(w + c));
			sg = _mm256_add_ps(sg, gxh);
			sgx = _mm256_fmadd_ps(gxh, xh, sgx);
			_mm256_storeu_ps(pw + c, _mm256_fmadd_ps(g, xh, _mm256_loadu_ps(pw + c)));
			_mm256_storeu_ps(pb + c, _mm256_add_ps(g, _mm256_loadu_ps(pb + c)));
		}
		__m256 msg = _mm256_set1_ps(rw_hsum(sg) / C), msgx = _mm256_set1_ps(rw_hsum(sgx) / C);
		for (int c = 0; c < C; c += 8) {
			__m256 xh = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + c), vm), vr);
			__m256 gxh = _mm256_mul_ps(_mm256_loadu_ps(gr + c), _mm256_loadu_ps(w + c));
			__m256 t = _mm256_sub_ps(_mm256_sub_ps(gxh, msg), _mm256_mul_ps(xh, msgx));
			_mm256_storeu_ps(gxr + c, _mm256_mul_ps(vr, t));
		}
	}
}

// Token shift + mix backward for one row: gx = g*m (+ gnext*(1-m) unless gnext is NULL);
// pm += g*(x - xx).
RW_AVX2 void rw_mix_row_bwd(int C, const float* x, const float* xx, const float* g, const float* gnext,
		const float* m, float* gx, float* pm) {
	RW_FTZ;
	__m256 one = _mm256_set1_ps(1.0f);
	for (int c = 0; c < C; c += 8) {
		__m256 vm = _mm256_loadu_ps(m + c), vg = _mm256_loadu_ps(g + c);
		__m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + c), _mm256_loadu_ps(xx + c));
		_mm256_storeu_ps(pm + c, _mm256_fmadd_ps(vg, d, _mm256_loadu_ps(pm + c)));
		__m256 o = _mm256_mul_ps(vg, vm);
		if (gnext) o = _mm256_fmadd_ps(_mm256_loadu_ps(gnext + c), _mm256_sub_ps(one, vm), o);
		_mm256_storeu_ps(gx + c, o);
	}
}

// log(sum(exp(row))) of one row of V logits: the row's max is subtracted before the exps and
// the exps are summed in double. *arg is the index of the row's first maximum.
RW_AVX2 double rw_lse_row(int V, const float* row, int* arg) {
	RW_FTZ;
	float m = row[0];
	int j = 0, bad = 0;
	if (V >= 8) {
		__m256 vm = _mm256_loadu_ps(row), vbad = _mm256_cmp_ps(vm, vm, _CMP_UNORD_Q);
		for (j = 8; j + 8 <= V; j += 8) {
			__m256 x = _mm256_loadu_ps(row + j);
			vm = _mm256_max_ps(vm, x);
			vbad = _mm256_or_ps(vbad, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
		}
		bad = _mm256_movemask_ps(vbad);
		float lanes[8];
		_mm256_storeu_ps(lanes, vm);
		for (int l = 0; l < 8; l++) m = lanes[l] > m ? lanes[l] : m;
	}
	for (; j < V; j++) {
		bad |= row[j] != row[j];
		m = row[j] > m ? row[j] : m;
	}
	*arg = 0;
	if (bad || m != m || m == INFINITY) return NAN; // as the Go kernel: NaN in, NaN out
	int a = 0;
	while (a < V - 1 && row[a] != m) a++;
	*arg = a;
	__m256 vm = _mm256_set1_ps(m);
	__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
	for (j = 0; j + 8 <= V; j += 8) {
		__m256 e = rw_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vm));
		s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
		s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
	}
	double lanes[4], s = 0;
	_mm256_storeu_pd(lanes, _mm256_add_pd(s0, s1));
	for (int l = 0; l < 4; l++) s += lanes[l];
	for (; j < V; j++) s += rw_exp1(row[j] - m);
	return (double)m + log(s);
}

// out = scale*exp(row - lse): one row of the softmax scaled by the loss gradient.
RW_AVX2 void rw_softmax_row(int V, const float* row, float lse, float scale, float* out) {
	RW_FTZ;
	__m256 vl = _mm256_set1_ps(lse), vs = _mm256_set1_ps(scale);
	int j = 0;
	for (; j + 8 <= V; j += 8)
		_mm256_storeu_ps(out + j, _mm256_mul_ps(vs, rw_exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vl))));
	for (; j < V; j++) out[j] = scale * rw_exp1(row[j] - lse);
}
*/
import "C"

import (
	"math"
	"unsafe"

	"github.com/rwkv-go/rwkv-go/internal/simd"
)

// The float32 WKV runs in C with AVX2+FMA (8 channels per instruction, a polynomial exp)
// when the CPU has them; otherwise, and for float64, in Go. RWKV_KERNELS=go forces the Go
// kernels, as on a CPU without AVX2 (the tests run both ways in CI).
var haveAVX2 = simd.AVX2

func fptr(s []float32) *C.float { return (*C.float)(unsafe.Pointer(&s[0])) }

// wkvForwardFast is wkvForward for float32 in C. It reports false when it cannot run.
func wkvForwardFast(B, T, Cn int, decay, first, k, v, s0, y, sT []float32) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	runTasks(wkvTasks(B, Cn), func(ts wkvTask) {
		W := ts.c1 - ts.c0
		buf := getScratch(5 * W)
		defer putScratch(buf)
		w, u, aa, bb, pp := buf[:W], buf[W:2*W], buf[2*W:3*W], buf[3*W:4*W], buf[4*W:]
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			w[j], u[j] = float32(-math.Exp(float64(decay[c]))), first[c]
			aa[j], bb[j], pp[j] = s0[ts.b*Cn+c], s0[(B+ts.b)*Cn+c], s0[(2*B+ts.b)*Cn+c]
		}
		off := ts.b*T*Cn + ts.c0
		C.rw_wkv_fwd(C.int(T), C.int(Cn), C.int(W), fptr(w), fptr(u), fptr(k[off:]), fptr(v[off:]), fptr(y[off:]),
			fptr(aa), fptr(bb), fptr(pp))
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			sT[ts.b*Cn+c], sT[(B+ts.b)*Cn+c], sT[(2*B+ts.b)*Cn+c] = aa[j], bb[j], pp[j]
		}
	})
	return true
}

// wkvBackwardFast is wkvBackward for float32 in C. It reports false when it cannot run.
func wkvBackwardFast(B, T, Cn int, decay, first, k, v, s0, gy, gsT, gdecay, gfirst, gk, gv, gs0 []float32) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	gwPart, guPart := getScratchZero(B*Cn), getScratchZero(B*Cn)
	defer putScratch(gwPart)
	defer putScratch(guPart)
	runTasks(wkvTasks(B, Cn), func(ts wkvTask) {
		W := ts.c1 - ts.c0
		buf := getScratchZero(10*W + 56*T)
		defer putScratch(buf)
		w, u, a0, b0, p0 := buf[:W], buf[W:2*W], buf[2*W:3*W], buf[3*W:4*W], buf[4*W:5*W]
		ga, gb, gp, gw, gu := buf[5*W:6*W], buf[6*W:7*W], buf[7*W:8*W], buf[8*W:9*W], buf[9*W:10*W]
		scratch := buf[10*W:]
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			w[j], u[j] = float32(-math.Exp(float64(decay[c]))), first[c]
			a0[j], b0[j], p0[j] = s0[ts.b*Cn+c], s0[(B+ts.b)*Cn+c], s0[(2*B+ts.b)*Cn+c]
			if gsT != nil {
				ga[j], gb[j], gp[j] = gsT[ts.b*Cn+c], gsT[(B+ts.b)*Cn+c], gsT[(2*B+ts.b)*Cn+c]
			}
		}
		off := ts.b*T*Cn + ts.c0
		C.rw_wkv_bwd(C.int(T), C.int(Cn), C.int(W), fptr(w), fptr(u), fptr(k[off:]), fptr(v[off:]), fptr(gy[off:]),
			fptr(a0), fptr(b0), fptr(p0), fptr(ga), fptr(gb), fptr(gp), fptr(gw), fptr(gu), fptr(gk[off:]), fptr(gv[off:]), fptr(scratch))
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			gs0[ts.b*Cn+c], gs0[(B+ts.b)*Cn+c], gs0[(2*B+ts.b)*Cn+c] = ga[j], gb[j], gp[j]
			gwPart[ts.b*Cn+c] = gw[j] * w[j] // chain rule through w = -exp(decay)
			guPart[ts.b*Cn+c] = gu[j]
		}
	})
	for c := 0; c < Cn; c++ {
		var sw, su float64
		for b := 0; b < B; b++ {
			sw += float64(gwPart[b*Cn+c])
			su += float64(guPart[b*Cn+c])
		}
		gdecay[c], gfirst[c] = float32(sw), float32(su)
	}
	return true
}

// gateForwardFast is gateForward for float32 in C.
func gateForwardFast(r, y, out []float32) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(len(r), pieces(len(r), 1), func(_, lo, hi int) {
		C.rw_gate_fwd(C.long(hi-lo), fptr(r[lo:]), fptr(y[lo:]), fptr(out[lo:]))
	})
	return true
}

// gateBackwardFast is gateBackward for float32 in C.
func gateBackwardFast(r, y, g, gr, gy []float32) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(len(r), pieces(len(r), 1), func(_, lo, hi int) {
		C.rw_gate_bwd(C.long(hi-lo), fptr(r[lo:]), fptr(y[lo:]), fptr(g[lo:]), fptr(gr[lo:]), fptr(gy[lo:]))
	})
	return true
}

// reluSqFast is reluSq for float32 in C; g is nil for the forward.
func reluSqFast(k, g, out []float32) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(len(k), pieces(len(k), 1), func(_, lo, hi int) {
		var gp *C.float
		if g != nil {
			gp = fptr(g[lo:])
		}
		C.rw_relusq(C.long(hi-lo), fptr(k[lo:]), gp, fptr(out[lo:]))
	})
	return true
}

// shiftMixForwardFast is shiftMixForward for float32 in C.
func shiftMixForwardFast(x, prev, mix, out []float32, B, T, Cn int) bool {
	if !haveAVX2 {
		return false
	}
	parallelFor(B*T, pieces(B*T, Cn), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			C.rw_mix_row(C.int(Cn), fptr(x[r*Cn:]), fptr(prevRow(x, prev, b, t, T, Cn)), fptr(mix), fptr(out[r*Cn:]))
		}
	})
	return true
}

// lnForwardFast is lnForward for float32 in C (C a multiple of 8).
func lnForwardFast(x, w, b, y []float32, N, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	parallelFor(N, pieces(N, Cn), func(_, lo, hi int) {
		C.rw_ln_fwd(C.long(hi-lo), C.int(Cn), fptr(x[lo*Cn:]), fptr(w), fptr(b), fptr(y[lo*Cn:]))
	})
	return true
}

// lnBackwardFast is lnBackward for float32 in C (C a multiple of 8). The weight and bias
// gradients are summed per piece in float32 and across pieces, in order, in float64.
func lnBackwardFast(x, w, gy, gx, gw, gb []float32, N, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	np := pieces(N, Cn)
	part := getScratchZero(2 * np * Cn)
	defer putScratch(part)
	parallelFor(N, np, func(p, lo, hi int) {
		C.rw_ln_bwd(C.long(hi-lo), C.int(Cn), fptr(x[lo*Cn:]), fptr(w), fptr(gy[lo*Cn:]), fptr(gx[lo*Cn:]),
			fptr(part[2*p*Cn:]), fptr(part[(2*p+1)*Cn:]))
	})
	for c := 0; c < Cn; c++ {
		var sw, sb float64
		for p := 0; p < np; p++ {
			sw += float64(part[2*p*Cn+c])
			sb += float64(part[(2*p+1)*Cn+c])
		}
		gw[c], gb[c] = float32(sw), float32(sb)
	}
	return true
}

// shiftMixBackwardFast is shiftMixBackward for float32 in C (C a multiple of 8).
func shiftMixBackwardFast(x, prev, mix, g, gx, gprev, gmix []float32, B, T, Cn int) bool {
	if !haveAVX2 || Cn%8 != 0 {
		return false
	}
	np := pieces(B*T, Cn)
	part := getScratchZero(np * Cn)
	defer putScratch(part)
	parallelFor(B*T, np, func(p, lo, hi int) {
		pm := fptr(part[p*Cn:])
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			var gnext *C.float
			if t+1 < T {
				gnext = fptr(g[(r+1)*Cn:])
			}
			C.rw_mix_row_bwd(C.int(Cn), fptr(x[r*Cn:]), fptr(prevRow(x, prev, b, t, T, Cn)), fptr(g[r*Cn:]), gnext,
				fptr(mix), fptr(gx[r*Cn:]), pm)
			if t == 0 {
				gp, gr := gprev[b*Cn:(b+1)*Cn], g[r*Cn:(r+1)*Cn]
				for c, m := range mix {
					gp[c] = gr[c] * (1 - m)
				}
			}
		}
	})
	for c := 0; c < Cn; c++ {
		var s float64
		for p := 0; p < np; p++ {
			s += float64(part[p*Cn+c])
		}
		gmix[c] = float32(s)
	}
	return true
}

// ceForwardFast is ceForward for float32 with the rows' log-sum-exps in C.
func ceForwardFast(logits []float32, targets []int, N, V int) (float64, bool) {
	if !haveAVX2 {
		return 0, false
	}
	return meanNLL(logits, targets, N, V, func(row []float32) float64 {
		var arg C.int
		return float64(C.rw_lse_row(C.int(len(row)), fptr(row), &arg))
	}), true
}

// ceBackwardFast is ceBackward for float32 with the rows' softmax in C.
func ceBackwardFast(logits []float32, targets []int, g float64, l2wrap bool, N, V int, out []float32) bool {
	if !haveAVX2 {
		return false
	}
	ceGrad(logits, targets, g, l2wrap, N, V, out, func(row, o []float32, scale float64) int {
		var arg C.int
		lse := C.rw_lse_row(C.int(len(row)), fptr(row), &arg)
		C.rw_softmax_row(C.int(len(row)), fptr(row), C.float(lse), C.float(scale), fptr(o))
		return int(arg)
	})
	return true
}
