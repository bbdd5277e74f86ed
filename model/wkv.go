package model

import "math"

// The WKV recurrence of RWKV-4 (REFERENCE §2), numerically stable form, computed in float64
// whatever the storage type. Layouts, all row-major:
//
//	k, v, y:      (B*T, C)   row b*T+t is token t of sequence b
//	decay, first: (C)        time_decay raw (w = -exp(time_decay)), time_first = u
//	state:        (3B, C)    rows [0,B) aa, [B,2B) bb, [2B,3B) pp
//
// The initial state of a fresh sequence is aa = bb = 0, pp = -1e38 (InitWKVState).

// ppInit is the log-scale of an empty numerator/denominator.
const ppInit = -1e38

// wkvTask is a range of channels [c0, c1) of one sequence b: the unit of parallel work.
type wkvTask struct{ b, c0, c1 int }

func wkvTasks(B, C int) []wkvTask {
	per := max(1, C/max(1, 16/B))
	per = max((per+7)/8*8, 32) // whole groups of 8 channels for the AVX2 kernels
	var ts []wkvTask
	for b := 0; b < B; b++ {
		for c0 := 0; c0 < C; c0 += per {
			ts = append(ts, wkvTask{b, c0, min(C, c0+per)})
		}
	}
	return ts
}

func runTasks(ts []wkvTask, fn func(wkvTask)) {
	parallelFor(len(ts), len(ts), func(_, lo, hi int) {
		for _, t := range ts[lo:hi] {
			fn(t)
		}
	})
}

// wkvForward computes y and the final state sT from the initial state s0.
func wkvForward[F Float](B, T, C int, decay, first, k, v, s0, y, sT []F) {
	runTasks(wkvTasks(B, C), func(ts wkvTask) {
		W := ts.c1 - ts.c0
		aa, bb, pp := make([]float64, W), make([]float64, W), make([]float64, W)
		w, u := make([]float64, W), make([]float64, W)
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			aa[j], bb[j], pp[j] = float64(s0[ts.b*C+c]), float64(s0[(B+ts.b)*C+c]), float64(s0[(2*B+ts.b)*C+c])
			w[j], u[j] = -math.Exp(float64(decay[c])), float64(first[c])
		}
		for t := 0; t < T; t++ {
			row := (ts.b*T + t) * C
			for j := 0; j < W; j++ {
				i := row + ts.c0 + j
				kt, vt := float64(k[i]), float64(v[i])
				ww := u[j] + kt
				p := math.Max(pp[j], ww)
				e1, e2 := math.Exp(pp[j]-p), math.Exp(ww-p)
				y[i] = F((e1*aa[j] + e2*vt) / (e1*bb[j] + e2))
				ww = w[j] + pp[j]
				p = math.Max(ww, kt)
				e1, e2 = math.Exp(ww-p), math.Exp(kt-p)
				aa[j] = e1*aa[j] + e2*vt
				bb[j] = e1*bb[j] + e2
				pp[j] = p
			}
		}
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			sT[ts.b*C+c], sT[(B+ts.b)*C+c], sT[(2*B+ts.b)*C+c] = F(aa[j]), F(bb[j]), F(pp[j])
		}
	})
}

// wkvBackward is reverse-mode differentiation of wkvForward: given gy (B*T, C) and the gradient
// of the final state gsT (3B, C), it writes gdecay, gfirst (C; summed over the batch), gk, gv
// (B*T, C) and the gradient of the initial state gs0 (3B, C). It recomputes the forward states
// of its channels first (3*T*W floats per task) and then sweeps t backwards. Unlike the reference
// CUDA kernel it differentiates through the state's log-scale pp as well, so the gradient is exact
// for any function of the final state, which chunked training and the state tests need.
func wkvBackward[F Float](B, T, C int, decay, first, k, v, s0, gy, gsT, gdecay, gfirst, gk, gv, gs0 []F) {
	gwPart := make([]float64, B*C) // per-sequence partial sums, reduced in b order below
	guPart := make([]float64, B*C)
	runTasks(wkvTasks(B, C), func(ts wkvTask) {
		W := ts.c1 - ts.c0
		// Forward again, keeping per step the state before it (aa, bb, pp) and the four
		// exponentials (e1, e2 of the output, f1, f2 of the state update), so that the reverse
		// sweep computes no exponential.
		sa, sb, sp := make([]float64, T*W), make([]float64, T*W), make([]float64, T*W)
		se1, se2, sf1, sf2 := make([]float64, T*W), make([]float64, T*W), make([]float64, T*W), make([]float64, T*W)
		w, u := make([]float64, W), make([]float64, W)
		aa, bb, pp := make([]float64, W), make([]float64, W), make([]float64, W)
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			aa[j], bb[j], pp[j] = float64(s0[ts.b*C+c]), float64(s0[(B+ts.b)*C+c]), float64(s0[(2*B+ts.b)*C+c])
			w[j], u[j] = -math.Exp(float64(decay[c])), float64(first[c])
		}
		for t := 0; t < T; t++ {
			row := (ts.b*T + t) * C
			for j := 0; j < W; j++ {
				i := t*W + j
				sa[i], sb[i], sp[i] = aa[j], bb[j], pp[j]
				kt, vt := float64(k[row+ts.c0+j]), float64(v[row+ts.c0+j])
				ww := u[j] + kt
				p := math.Max(pp[j], ww)
				se1[i], se2[i] = math.Exp(pp[j]-p), math.Exp(ww-p)
				ww = w[j] + pp[j]
				p = math.Max(ww, kt)
				e1, e2 := math.Exp(ww-p), math.Exp(kt-p)
				sf1[i], sf2[i] = e1, e2
				aa[j] = e1*aa[j] + e2*vt
				bb[j] = e1*bb[j] + e2
				pp[j] = p
			}
		}
		// aa, bb, pp now hold the gradient of the state after the current step.
		gw, gu := make([]float64, W), make([]float64, W)
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			if gsT != nil {
				aa[j], bb[j], pp[j] = float64(gsT[ts.b*C+c]), float64(gsT[(B+ts.b)*C+c]), float64(gsT[(2*B+ts.b)*C+c])
			} else {
				aa[j], bb[j], pp[j] = 0, 0, 0
			}
		}
		for t := T - 1; t >= 0; t-- {
			row := (ts.b*T + t) * C
			for j := 0; j < W; j++ {
				i, s := row+ts.c0+j, t*W+j
				a0, b0, p0 := sa[s], sb[s], sp[s]
				kt, vt, gyt := float64(k[i]), float64(v[i]), float64(gy[i])
				gaa, gbb, gpp := aa[j], bb[j], pp[j]

				// State update: aa' = f1*aa + f2*v, bb' = f1*bb + f2, pp' = p2 = max(w+pp, k).
				f1, f2 := sf1[s], sf2[s]
				gf1 := gaa*a0 + gbb*b0
				gf2 := gaa*vt + gbb
				ngaa, ngbb := gaa*f1, gbb*f1
				gvt := gaa * f2
				gp2 := gpp - (gf1*f1 + gf2*f2)
				gww2, gkt := gf1*f1, gf2*f2
				if w[j]+p0 >= kt {
					gww2 += gp2
				} else {
					gkt += gp2
				}
				ngpp := gww2
				gw[j] += gww2

				// Output: y = (e1*aa + e2*v) / (e1*bb + e2). The max p1 cancels exactly
				// (e1*ge1 + e2*ge2 = gy*y - gy*y = 0), so no gradient flows through it.
				e1, e2 := se1[s], se2[s]
				den := e1*b0 + e2
				yt := (e1*a0 + e2*vt) / den
				gnum, gden := gyt/den, -gyt*yt/den
				ge1, ge2 := gnum*a0+gden*b0, gnum*vt+gden
				ngaa += gnum * e1
				ngbb += gden * e1
				gvt += gnum * e2
				ngpp += ge1 * e1
				gww := ge2 * e2
				gu[j] += gww
				gkt += gww

				gk[i], gv[i] = F(gkt), F(gvt)
				aa[j], bb[j], pp[j] = ngaa, ngbb, ngpp
			}
		}
		for j := 0; j < W; j++ {
			c := ts.c0 + j
			gs0[ts.b*C+c], gs0[(B+ts.b)*C+c], gs0[(2*B+ts.b)*C+c] = F(aa[j]), F(bb[j]), F(pp[j])
			gwPart[ts.b*C+c] = gw[j] * w[j] // chain rule through w = -exp(decay)
			guPart[ts.b*C+c] = gu[j]
		}
	})
	for c := 0; c < C; c++ {
		var sw, su float64
		for b := 0; b < B; b++ {
			sw += gwPart[b*C+c]
			su += guPart[b*C+c]
		}
		gdecay[c], gfirst[c] = F(sw), F(su)
	}
}

// InitWKVState fills a (3B, C) WKV state with the empty state: aa = bb = 0, pp = -1e38.
func InitWKVState[F Float](s []F, B, C int) {
	clear(s[:2*B*C])
	for i := 2 * B * C; i < 3*B*C; i++ {
		s[i] = ppInit
	}
}
