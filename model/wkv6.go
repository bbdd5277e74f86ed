package model

import "math"

// The WKV-5/6 recurrence of RWKV-5.2 "Eagle" (x052) and RWKV-6 "Finch" (x060; NEXT-ARCH §1.1,
// §1.2), per head h of size N with a state S of N×N, rows = value index i, columns = key index j:
//
//	d_t     = exp(-exp(w̃_t))                        decay per key channel, in (0, 1)
//	y_t[i]  = Σ_j r_t[j]·(u[j]·k_t[j]·v_t[i] + S_{t-1}[i][j])   (reads the state before token t)
//	S_t     = S_{t-1} diag(d_t) + v_t k_tᵀ
//
// Layouts, all row-major:
//
//	r, k, v, y:  (B*T, C), C = H*N     row b*T+t is token t of sequence b
//	w:           (B*T, C)              x060: the raw decay w̃ of every token, or
//	             (H, N)                x052: one w̃ per channel, constant in time (its gradient is
//	                                   summed over B and T); the kernels tell them apart by length
//	u:           (H, N)                the bonus (time_faaaa); its gradient is summed over B and T
//	state:       (B*H*N, N)            rows (b*H+h)*N+i, column j: S[i][j] of head h
//
// With B*T = 1 and H = 1 the two layouts of w have the same shape and mean the same thing.
//
// The kernels compute in the storage type (fp32 for float32, as RWKV-LM's). The Go kernels
// compute d and dd/dw̃ in float64 and round them; the AVX2 kernels (wkv6_avx2.go) in fp32 with a
// polynomial exp. Work is split over goroutines by (sequence, head) as WKV-7's (wkv7Pieces).
//
// The backward is exact reverse-mode differentiation, the initial state included. With
// G_t = dL/dS_t (G_T = the final state's gradient) and g_t = dL/dy_t, token t contributes
//
//	dr_t[j]  = Σ_i g_t[i]·S_{t-1}[i][j] + u[j]·k_t[j]·(g_t·v_t)
//	dk_t[j]  = Σ_i G_t[i][j]·v_t[i]     + u[j]·r_t[j]·(g_t·v_t)
//	dv_t[i]  = Σ_j G_t[i][j]·k_t[j]     + g_t[i]·Σ_j r_t[j]·u[j]·k_t[j]
//	du[j]   += r_t[j]·k_t[j]·(g_t·v_t)
//	dw̃_t[j]  = (Σ_i G_t[i][j]·S_{t-1}[i][j]) · (-exp(w̃_t[j] - exp(w̃_t[j])))
//	G_{t-1}  = G_t diag(d_t) + g_t r_tᵀ
//
// (dd/dw̃ = -exp(w̃)·d is evaluated as -exp(w̃ - exp(w̃)): finite for every w̃, 0 where d
// underflows.) Like WKV-7's, it recomputes rather than inverts: the forward inside the backward
// keeps S at the start of every chunk of wkv6Chunk tokens, then each chunk, last first, is
// recomputed into scratch and walked backwards. It never divides by d, which for x060 has no
// lower bound (d = exp(-e^8) underflows to 0 in fp32).

// wkv6Chunk is the number of tokens whose states the backward recomputes and keeps at once.
const wkv6Chunk = 16

// wkv6Decay returns d = exp(-exp(w)) and dd/dw = -exp(w)·d = -exp(w - exp(w)).
func wkv6Decay(w float64) (d, dw float64) {
	e := math.Exp(w)
	return math.Exp(-e), -math.Exp(w - e)
}

// wkv6Step reads one token of one head: y = S r + v·ruk unless y is nil (ruk = Σ_j r_j u_j k_j),
// then advances S (N×N) to S diag(d) + v kᵀ. Rows go four at a time: four independent sums
// keep the floating-point adders busy.
func wkv6Step[F Float](N int, S, d, r, k, v []F, ruk F, y []F) {
	d, r, k = d[:N], r[:N], k[:N]
	i := 0
	for ; i+4 <= N; i += 4 {
		s0 := S[i*N : (i+1)*N : (i+1)*N]
		s1 := S[(i+1)*N : (i+2)*N : (i+2)*N][:len(s0)]
		s2 := S[(i+2)*N : (i+3)*N : (i+3)*N][:len(s0)]
		s3 := S[(i+3)*N : (i+4)*N : (i+4)*N][:len(s0)]
		d, k, r := d[:len(s0)], k[:len(s0)], r[:len(s0)]
		v0, v1, v2, v3 := v[i], v[i+1], v[i+2], v[i+3]
		var y0, y1, y2, y3 F
		for j := range s0 {
			dj, kj, rj := d[j], k[j], r[j]
			x0, x1, x2, x3 := s0[j], s1[j], s2[j], s3[j]
			y0 += x0 * rj
			y1 += x1 * rj
			y2 += x2 * rj
			y3 += x3 * rj
			s0[j] = x0*dj + v0*kj
			s1[j] = x1*dj + v1*kj
			s2[j] = x2*dj + v2*kj
			s3[j] = x3*dj + v3*kj
		}
		if y != nil {
			y[i], y[i+1], y[i+2], y[i+3] = y0+v0*ruk, y1+v1*ruk, y2+v2*ruk, y3+v3*ruk
		}
	}
	for ; i < N; i++ {
		row := S[i*N : (i+1)*N : (i+1)*N]
		vi := v[i]
		var yi F
		for j, x := range row {
			yi += x * r[j]
			row[j] = x*d[j] + vi*k[j]
		}
		if y != nil {
			y[i] = yi + vi*ruk
		}
	}
}

// wkv6RUK is Σ_j r_j·u_j·k_j.
func wkv6RUK[F Float](r, u, k []F) F {
	var s F
	for j := range u {
		s += r[j] * u[j] * k[j]
	}
	return s
}

// wkv6WConst reports whether w is x052's (H, N) constant decay rather than one per token.
func wkv6WConst(B, T, H, N, nw int) bool { return nw != B*T*H*N }

// wkv6Forward computes y and the final state sT from the initial state s0.
func wkv6Forward[F Float](B, T, H, N int, r, k, v, w, u, s0, y, sT []F) {
	C, NN := H*N, N*N
	wConst := wkv6WConst(B, T, H, N, len(w))
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		d := make([]F, N)
		S := make([]F, NN)
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			uh := u[h*N : (h+1)*N]
			copy(S, s0[task*NN:(task+1)*NN])
			for t := 0; t < T; t++ {
				o := (bi*T+t)*C + h*N
				if !wConst || t == 0 {
					wo := o
					if wConst {
						wo = h * N
					}
					for j := range d {
						dj, _ := wkv6Decay(float64(w[wo+j]))
						d[j] = F(dj)
					}
				}
				e := o + N
				wkv6Step(N, S, d, r[o:e], k[o:e], v[o:e], wkv6RUK(r[o:e], uh, k[o:e]), y[o:e])
			}
			copy(sT[task*NN:(task+1)*NN], S)
		}
	})
}

// wkv6Backward is reverse-mode differentiation of wkv6Forward: given dy (B*T, C) and the
// gradient of the final state dsT (B*H*N, N; nil for zero), it writes the gradients of every
// input: dr, dk, dv (B*T, C), dw (with respect to the raw w̃, shaped like w), du (H, N) and
// ds0 (B*H*N, N).
func wkv6Backward[F Float](B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []F) {
	C, NN, L := H*N, N*N, wkv6Chunk
	nc := (T + L - 1) / L
	wConst := wkv6WConst(B, T, H, N, len(w))
	nd := T // tokens with their own decay
	if wConst {
		nd = 1
	}
	// Per (sequence, head): the sums over t of du and (x052) dL/dd, added up over sequences at
	// the end in a fixed order.
	duPart, ddPart := make([]F, B*H*N), make([]F, B*H*N)
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		snaps := make([]F, nc*NN)                  // S before the first token of each chunk
		states := make([]F, L*NN)                  // one chunk: the state before each token
		dA, fA := make([]F, nd*N), make([]F, nd*N) // d and dd/dw̃
		G := make([]F, NN)                         // dL/dS of the current step
		dd := make([]F, N)
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			uh := u[h*N : (h+1)*N]
			duh, ddh := duPart[task*N:(task+1)*N], ddPart[task*N:(task+1)*N]
			row := func(t int) int { return (bi*T+t)*C + h*N }
			dcy := func(t int) []F {
				if wConst {
					return dA[:N]
				}
				return dA[t*N : (t+1)*N]
			}
			for t := 0; t < nd; t++ {
				wo := row(t)
				if wConst {
					wo = h * N
				}
				for j := 0; j < N; j++ {
					dj, fj := wkv6Decay(float64(w[wo+j]))
					dA[t*N+j], fA[t*N+j] = F(dj), F(fj)
				}
			}
			S := states[:NN]
			copy(S, s0[task*NN:(task+1)*NN])
			for t := 0; t < (nc-1)*L; t++ { // the last chunk is recomputed below anyway
				if t%L == 0 {
					copy(snaps[t/L*NN:], S)
				}
				o, e := row(t), row(t)+N
				wkv6Step(N, S, dcy(t), r[o:e], k[o:e], v[o:e], 0, nil)
			}
			copy(snaps[(nc-1)*NN:], S)
			seedStateGrad(G, dsT, task)
			clear(duh)
			clear(ddh)
			for c := nc - 1; c >= 0; c-- {
				t0, t1 := c*L, min(T, c*L+L)
				copy(states[:NN], snaps[c*NN:(c+1)*NN])
				for t := t0; t+1 < t1; t++ {
					o, e, s := row(t), row(t)+N, t-t0
					cur := states[(s+1)*NN : (s+2)*NN]
					copy(cur, states[s*NN:(s+1)*NN])
					wkv6Step(N, cur, dcy(t), r[o:e], k[o:e], v[o:e], 0, nil)
				}
				for t := t1 - 1; t >= t0; t-- {
					o, e, s := row(t), row(t)+N, t-t0
					rt, kt, vt, gt := r[o:e], k[o:e], v[o:e], dy[o:e]
					wkv6StepBack(N, states[s*NN:(s+1)*NN], G, dcy(t), rt, kt, vt, gt, wkv6RUK(rt, uh, kt),
						dr[o:e], dd, dk[o:e], dv[o:e])
					var gv F
					for i, x := range gt {
						gv += x * vt[i]
					}
					for j := 0; j < N; j++ {
						dk[o+j] += uh[j] * rt[j] * gv
						dr[o+j] += uh[j] * kt[j] * gv
						duh[j] += rt[j] * kt[j] * gv
					}
					if wConst {
						for j, x := range dd {
							ddh[j] += x
						}
					} else {
						for j, x := range dd {
							dw[o+j] = x * fA[t*N+j]
						}
					}
				}
			}
			copy(ds0[task*NN:(task+1)*NN], G)
		}
	})
	wkv6Reduce(B, H, N, duPart, du)
	if wConst {
		wkv6Reduce(B, H, N, ddPart, dw)
		wkv6ScaleDW(w, dw)
	}
}

// wkv6ScaleDW turns x052's gradient of the constant d into that of w̃: dw *= dd/dw̃.
func wkv6ScaleDW[F Float](w, dw []F) {
	for i, x := range w {
		_, f := wkv6Decay(float64(x))
		dw[i] *= F(f)
	}
}

// wkv6Reduce sums the per-(sequence, head) rows of part (B*H, N) over sequences into dst (H, N).
func wkv6Reduce[F Float](B, H, N int, part, dst []F) {
	copy(dst[:H*N], part[:H*N])
	for bi := 1; bi < B; bi++ {
		for i, x := range part[bi*H*N : (bi+1)*H*N] {
			dst[i] += x
		}
	}
}

// wkv6StepBack takes G = dL/dS_t to dL/dS_{t-1} for one token with prev = S_{t-1}, and writes
// the state terms of the token's gradients: dr (Σ_i g_i S_{t-1}[i][j]), dd (the gradient of d,
// not yet of w̃), dk (Σ_i G[i][j] v_i) and dv (in full: Σ_j G[i][j] k_j + g_i·ruk). The caller
// adds the bonus terms of dr and dk. Rows go two at a time, as in wkv6Step.
func wkv6StepBack[F Float](N int, prev, G, d, r, k, v, dy []F, ruk F, dr, dd, dk, dv []F) {
	dr, dd, dk = dr[:N], dd[:N], dk[:N]
	d, r, k = d[:N], r[:N], k[:N]
	clear(dr)
	clear(dd)
	clear(dk)
	i := 0
	for ; i+2 <= N; i += 2 {
		g0 := G[i*N : (i+1)*N : (i+1)*N]
		g1 := G[(i+1)*N : (i+2)*N : (i+2)*N][:len(g0)]
		p0 := prev[i*N : (i+1)*N : (i+1)*N][:len(g0)]
		p1 := prev[(i+1)*N : (i+2)*N : (i+2)*N][:len(g0)]
		y0, y1, v0, v1 := dy[i], dy[i+1], v[i], v[i+1]
		var ev0, ev1 F
		for j := range g0 {
			x0, x1, q0, q1 := g0[j], g1[j], p0[j], p1[j]
			dr[j] += y0*q0 + y1*q1
			dd[j] += x0*q0 + x1*q1
			dk[j] += v0*x0 + v1*x1
			kj, rj, dj := k[j], r[j], d[j]
			ev0 += x0 * kj
			ev1 += x1 * kj
			g0[j] = x0*dj + y0*rj
			g1[j] = x1*dj + y1*rj
		}
		dv[i], dv[i+1] = ev0+y0*ruk, ev1+y1*ruk
	}
	for ; i < N; i++ {
		g := G[i*N : (i+1)*N : (i+1)*N]
		sp := prev[i*N : (i+1)*N : (i+1)*N]
		yi, vi := dy[i], v[i]
		var ev F
		for j, x := range g {
			dr[j] += yi * sp[j]
			dd[j] += x * sp[j]
			dk[j] += vi * x
			ev += x * k[j]
			g[j] = x*d[j] + yi*r[j]
		}
		dv[i] = ev + yi*ruk
	}
}

// runWKV6Forward is wkv6Forward on the AVX2 kernel where it can run (float32, N a multiple of 8).
func runWKV6Forward[F Float](B, T, H, N int, r, k, v, w, u, s0, y, sT []F) {
	if x, ok := any(r).([]float32); ok {
		f := func(s []F) []float32 { return any(s).([]float32) }
		if wkv6ForwardFast(B, T, H, N, x, f(k), f(v), f(w), f(u), f(s0), f(y), f(sT)) {
			return
		}
	}
	wkv6Forward(B, T, H, N, r, k, v, w, u, s0, y, sT)
}

// runWKV6Backward is wkv6Backward on the AVX2 kernel where it can run.
func runWKV6Backward[F Float](B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []F) {
	if x, ok := any(r).([]float32); ok {
		f := func(s []F) []float32 {
			if s == nil {
				return nil
			}
			return any(s).([]float32)
		}
		if wkv6BackwardFast(B, T, H, N, x, f(k), f(v), f(w), f(u), f(s0), f(dy), f(dsT),
			f(dr), f(dk), f(dv), f(dw), f(du), f(ds0)) {
			return
		}
	}
	wkv6Backward(B, T, H, N, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0)
}
