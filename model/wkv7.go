package model

import "math"

// The WKV-7 recurrence of RWKV-7 "Goose" (x070; NEXT-ARCH §1.3), per head h of size N with a
// state S of N×N, rows = value index i, columns = key index j:
//
//	d_t  = exp(-e^-0.5 · σ(w̃_t))                 decay per key channel, in (0.5452, 1)
//	sa_t = S_{t-1} α_t
//	S_t  = S_{t-1} diag(d_t) + sa_t β_tᵀ + v_t k_tᵀ
//	y_t  = S_t r_t                                  (the state after the update)
//
// Layouts, all row-major:
//
//	r, w, k, v, a, b, y:  (B*T, C), C = H*N    row b*T+t is token t of sequence b; w is the raw
//	                                           decay input w̃, a is α and b is β
//	state:                (B*H*N, N)           rows (b*H+h)*N+i, column j: S[i][j] of head h
//
// The kernels compute in the storage type (fp32 for float32, as RWKV-LM's kernels). The Go
// kernels compute the decay in float64 and round it; the AVX2 kernels (wkv7_avx2.go) in fp32
// with a polynomial exp (relative error about 2e-7). Work is split over goroutines by
// (sequence, head), one each except for short runs (wkv7Pieces).
//
// The backward is exact reverse-mode differentiation, including the gradient of the initial
// state. It recomputes rather than inverts: a forward pass stores S at the start of every chunk
// of wkv7Chunk tokens, then for each chunk, last first, the chunk's states are recomputed into
// scratch and walked backwards. The states the backward uses are then exactly the forward's
// (no division by d, no error growth along T), and nothing but the inputs is kept between the
// forward and the backward op; the price is one extra forward pass. Backstepping instead
// (RWKV-LM's CUDA: S_{t-1} = (S_t - v kᵀ - sa βᵀ) diag(1/d), re-anchored every 16 tokens) was
// measured in float32 at N = 64, T = 256: its states were off by up to 1.5e-5 of the state's
// scale with w̃ ~ N(0,1) and 7e-4 with w̃ ≈ 8 (d ≈ 0.545, 1/d amplifying rounding over 16 steps),
// against float32 gradients within 2.3e-6 of float64 with recomputation (TestWKV7Float32Accuracy).

// wkv7WScale is -e^-0.5: d = exp(wkv7WScale·σ(w̃)) (RWKV-LM's W_SCALE).
const wkv7WScale = -0.6065306597126334

// wkv7Chunk is the number of tokens whose states the backward recomputes and keeps at once.
const wkv7Chunk = 16

// wkv7Decay returns d = exp(-e^-0.5·σ(w)) and dd/dw = d·(-e^-0.5)·σ(w)(1-σ(w)).
func wkv7Decay(w float64) (d, dw float64) {
	e := math.Exp(-w)
	s := 1 / (1 + e)
	d = math.Exp(wkv7WScale * s)
	return d, d * wkv7WScale * s * s * e // σ(1-σ) = σ²e^-w: 1-σ would cancel for large w
}

// wkv7Pieces is how many goroutines the kernels split the B*H heads over: one per head, except
// for short runs (the RNN's single tokens), where a piece gets at least 2^15 state updates
// (about 5 µs) so that starting goroutines does not cost more than the work.
func wkv7Pieces(B, T, H, N int) int {
	return max(1, min(B*H, B*H*T*N*N>>15))
}

// wkv7Step advances one head's state S (N×N) by one token and writes y = S r unless y is nil,
// and sa = S_{t-1} α unless sa is nil. Rows go four at a time: four independent sums keep the
// floating-point adders busy (one row at a time waits on each addition).
func wkv7Step[F Float](N int, S, d, r, k, v, a, b, y, sa []F) {
	d, r, k, a, b = d[:N], r[:N], k[:N], a[:N], b[:N]
	i := 0
	for ; i+4 <= N; i += 4 {
		s0 := S[i*N : (i+1)*N : (i+1)*N]
		s1 := S[(i+1)*N : (i+2)*N : (i+2)*N][:len(s0)]
		s2 := S[(i+2)*N : (i+3)*N : (i+3)*N][:len(s0)]
		s3 := S[(i+3)*N : (i+4)*N : (i+4)*N][:len(s0)]
		a := a[:len(s0)]
		var c0, c1, c2, c3 F
		for j := range s0 {
			aj := a[j]
			c0 += s0[j] * aj
			c1 += s1[j] * aj
			c2 += s2[j] * aj
			c3 += s3[j] * aj
		}
		if sa != nil {
			sa[i], sa[i+1], sa[i+2], sa[i+3] = c0, c1, c2, c3
		}
		v0, v1, v2, v3 := v[i], v[i+1], v[i+2], v[i+3]
		d, b, k, r := d[:len(s0)], b[:len(s0)], k[:len(s0)], r[:len(s0)]
		var y0, y1, y2, y3 F
		for j := range s0 {
			dj, bj, kj, rj := d[j], b[j], k[j], r[j]
			x0 := s0[j]*dj + c0*bj + v0*kj
			x1 := s1[j]*dj + c1*bj + v1*kj
			x2 := s2[j]*dj + c2*bj + v2*kj
			x3 := s3[j]*dj + c3*bj + v3*kj
			s0[j], s1[j], s2[j], s3[j] = x0, x1, x2, x3
			y0 += x0 * rj
			y1 += x1 * rj
			y2 += x2 * rj
			y3 += x3 * rj
		}
		if y != nil {
			y[i], y[i+1], y[i+2], y[i+3] = y0, y1, y2, y3
		}
	}
	for ; i < N; i++ {
		row := S[i*N : (i+1)*N : (i+1)*N]
		var s F
		for j, x := range row {
			s += x * a[j]
		}
		if sa != nil {
			sa[i] = s
		}
		vi := v[i]
		var yi F
		for j, x := range row {
			x = x*d[j] + s*b[j] + vi*k[j]
			row[j] = x
			yi += x * r[j]
		}
		if y != nil {
			y[i] = yi
		}
	}
}

// wkv7Forward computes y and the final state sT from the initial state s0.
func wkv7Forward[F Float](B, T, H, N int, r, w, k, v, a, b, s0, y, sT []F) {
	C, NN := H*N, N*N
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		d := make([]F, N)
		S := make([]F, NN)
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			copy(S, s0[task*NN:(task+1)*NN])
			for t := 0; t < T; t++ {
				o := (bi*T+t)*C + h*N
				for j := range d {
					dj, _ := wkv7Decay(float64(w[o+j]))
					d[j] = F(dj)
				}
				e := o + N
				wkv7Step(N, S, d, r[o:e], k[o:e], v[o:e], a[o:e], b[o:e], y[o:e], nil)
			}
			copy(sT[task*NN:(task+1)*NN], S)
		}
	})
}

// seedStateGrad starts a backward scan of head task: G (its N·N state gradient) becomes the
// incoming gradient of its final state, dsT's part, or zero when dsT is nil.
func seedStateGrad[F Float](G, dsT []F, task int) {
	if dsT == nil {
		clear(G)
		return
	}
	copy(G, dsT[task*len(G):(task+1)*len(G)])
}

// wkv7Backward is reverse-mode differentiation of wkv7Forward: given dy (B*T, C) and the
// gradient of the final state dsT (B*H*N, N; nil for zero), it writes the gradients of every
// input: dr, dw (with respect to the raw w̃), dk, dv, da, db (B*T, C) and ds0 (B*H*N, N).
func wkv7Backward[F Float](B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []F) {
	C, NN, L := H*N, N*N, wkv7Chunk
	nc := (T + L - 1) / L
	parallelFor(B*H, wkv7Pieces(B, T, H, N), func(_, lo, hi int) {
		snaps := make([]F, nc*NN)     // S before the first token of each chunk
		states := make([]F, (L+1)*NN) // one chunk: the state before it, then after each token
		sa := make([]F, L*N)
		dA, fA := make([]F, T*N), make([]F, T*N) // d and dd/dw̃ of every token
		G := make([]F, NN)                       // dL/dS of the current step
		for task := lo; task < hi; task++ {
			bi, h := task/H, task%H
			row := func(t int) int { return (bi*T+t)*C + h*N }
			S := states[:NN]
			copy(S, s0[task*NN:(task+1)*NN])
			for t := 0; t < T; t++ {
				o := row(t)
				for j := 0; j < N; j++ {
					dj, fj := wkv7Decay(float64(w[o+j]))
					dA[t*N+j], fA[t*N+j] = F(dj), F(fj)
				}
				if t%L == 0 {
					copy(snaps[t/L*NN:], S)
				}
				if t < (nc-1)*L { // the last chunk is recomputed below anyway
					e := o + N
					wkv7Step(N, S, dA[t*N:(t+1)*N], r[o:e], k[o:e], v[o:e], a[o:e], b[o:e], nil, nil)
				}
			}
			seedStateGrad(G, dsT, task)
			for c := nc - 1; c >= 0; c-- {
				t0, t1 := c*L, min(T, c*L+L)
				copy(states[:NN], snaps[c*NN:(c+1)*NN])
				for t := t0; t < t1; t++ {
					o, s := row(t), t-t0
					cur := states[(s+1)*NN : (s+2)*NN]
					copy(cur, states[s*NN:(s+1)*NN])
					e := o + N
					wkv7Step(N, cur, dA[t*N:(t+1)*N], r[o:e], k[o:e], v[o:e], a[o:e], b[o:e], nil, sa[s*N:(s+1)*N])
				}
				for t := t1 - 1; t >= t0; t-- {
					o, s := row(t), t-t0
					e := o + N
					wkv7StepBack(N, states[s*NN:(s+1)*NN], states[(s+1)*NN:(s+2)*NN], G, sa[s*N:(s+1)*N],
						dA[t*N:(t+1)*N], r[o:e], k[o:e], v[o:e], a[o:e], b[o:e], dy[o:e],
						dr[o:e], dw[o:e], dk[o:e], dv[o:e], da[o:e], db[o:e])
					for j := 0; j < N; j++ {
						dw[o+j] *= fA[t*N+j]
					}
				}
			}
			copy(ds0[task*NN:(task+1)*NN], G)
		}
	})
}

// wkv7StepBack takes G = dL/dS_t (without the step's own output term) to dL/dS_{t-1} and writes
// the step's input gradients; dd (with respect to the decay d, not yet w̃) goes to dd. Rows go
// two at a time, for the same reason as in wkv7Step.
func wkv7StepBack[F Float](N int, prev, cur, G, sa, d, r, k, v, a, b, dy, dr, dd, dk, dv, da, db []F) {
	dr, dd, dk, da, db = dr[:N], dd[:N], dk[:N], da[:N], db[:N]
	d, r, k, a, b = d[:N], r[:N], k[:N], a[:N], b[:N]
	clear(dr)
	clear(dd)
	clear(dk)
	clear(db)
	clear(da)
	i := 0
	for ; i+2 <= N; i += 2 {
		g0 := G[i*N : (i+1)*N : (i+1)*N]
		g1 := G[(i+1)*N : (i+2)*N : (i+2)*N][:len(g0)]
		p0 := prev[i*N : (i+1)*N : (i+1)*N][:len(g0)]
		p1 := prev[(i+1)*N : (i+2)*N : (i+2)*N][:len(g0)]
		q0 := cur[i*N : (i+1)*N : (i+1)*N][:len(g0)]
		q1 := cur[(i+1)*N : (i+2)*N : (i+2)*N][:len(g0)]
		y0, y1, v0, v1, a0, a1 := dy[i], dy[i+1], v[i], v[i+1], sa[i], sa[i+1]
		var ev0, ev1, es0, es1 F
		for j := range g0 {
			rj := r[j]
			x0 := g0[j] + y0*rj // y = S_t r
			x1 := g1[j] + y1*rj
			g0[j], g1[j] = x0, x1
			dr[j] += y0*q0[j] + y1*q1[j]
			dd[j] += x0*p0[j] + x1*p1[j]
			dk[j] += v0*x0 + v1*x1
			db[j] += a0*x0 + a1*x1
			kj, bj := k[j], b[j]
			ev0 += x0 * kj
			ev1 += x1 * kj
			es0 += x0 * bj
			es1 += x1 * bj
		}
		dv[i], dv[i+1] = ev0, ev1
		for j := range g0 { // sa = S_{t-1} α
			dj, aj := d[j], a[j]
			da[j] += es0*p0[j] + es1*p1[j]
			g0[j] = g0[j]*dj + es0*aj
			g1[j] = g1[j]*dj + es1*aj
		}
	}
	for ; i < N; i++ {
		g := G[i*N : (i+1)*N : (i+1)*N]
		sp := prev[i*N : (i+1)*N : (i+1)*N]
		sc := cur[i*N : (i+1)*N : (i+1)*N]
		dyi, vi, sai := dy[i], v[i], sa[i]
		var dvi, dsai F
		for j := range g {
			gj := g[j] + dyi*r[j]
			g[j] = gj
			dr[j] += dyi * sc[j]
			dd[j] += gj * sp[j]
			dk[j] += vi * gj
			db[j] += sai * gj
			dvi += gj * k[j]
			dsai += gj * b[j]
		}
		dv[i] = dvi
		for j := range g {
			da[j] += dsai * sp[j]
			g[j] = g[j]*d[j] + dsai*a[j]
		}
	}
}

// runWKV7Forward is wkv7Forward on the AVX2 kernel where it can run (float32, N a multiple of 8).
func runWKV7Forward[F Float](B, T, H, N int, r, w, k, v, a, b, s0, y, sT []F) {
	if x, ok := any(r).([]float32); ok {
		f := func(s []F) []float32 { return any(s).([]float32) }
		if wkv7ForwardFast(B, T, H, N, x, f(w), f(k), f(v), f(a), f(b), f(s0), f(y), f(sT)) {
			return
		}
	}
	wkv7Forward(B, T, H, N, r, w, k, v, a, b, s0, y, sT)
}

// runWKV7Backward is wkv7Backward on the AVX2 kernel where it can run.
func runWKV7Backward[F Float](B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []F) {
	if x, ok := any(r).([]float32); ok {
		f := func(s []F) []float32 {
			if s == nil {
				return nil
			}
			return any(s).([]float32)
		}
		if wkv7BackwardFast(B, T, H, N, x, f(w), f(k), f(v), f(a), f(b), f(s0), f(dy), f(dsT),
			f(dr), f(dw), f(dk), f(dv), f(da), f(db), f(ds0)) {
			return
		}
	}
	wkv7Backward(B, T, H, N, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0)
}
