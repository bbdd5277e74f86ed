package model

import (
	"math"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// rnn7Kernel is the fast x070 RNN behind Model.NewRNN: B sequences one token at a time, every
// projection one BLAS call over the B rows (RWKV-4's rnnKernel does the same), the WKV-7 step
// per (sequence, head) on the State's float64 matrix ([value i][key j]). The equations are
// rnn7.go's (the independent check); v_first is recomputed per token from layer 0.
type rnn7Kernel[F Float] struct {
	rnnBase[F]
	H, N                    int
	prev, vFirst            []F
	r, w, k, v, a, g, kk, y []F
	tmp                     []F
	mix                     [6][]F
	lora, ffn               []F
	dims                    [4]int // LoRA widths W, A, V, G
}

func newRNN7Kernel[F Float](m *Model, B int) *rnn7Kernel[F] {
	cfg := m.Config
	lr := cfg.LoRA()
	q := &rnn7Kernel[F]{rnnBase: newRNNBase[F](m, B), H: cfg.Heads(), N: cfg.HeadDim(),
		dims: [4]int{lr.W, lr.A, lr.V, lr.G}}
	n := B * q.C
	mk := func(k int) []F { return make([]F, k) }
	q.prev, q.vFirst = mk(n), mk(n)
	q.r, q.w, q.k, q.v, q.a, q.g, q.kk, q.y, q.tmp = mk(n), mk(n), mk(n), mk(n), mk(n), mk(n), mk(n), mk(n), mk(n)
	q.lora, q.ffn = mk(B*max(lr.W, lr.A, lr.V, lr.G)), mk(B*q.F)
	for i := range q.mix {
		q.mix[i] = mk(n)
	}
	return q
}

// lora computes out (B, C) = post(bias + inner(x A) B) for A [C,D], B [D,C] (RWKV-LM's x @ A @ B);
// nil inner, post or bias are the identity or zero.
func (q *rnn7Kernel[F]) lora7(out, x, A, Bm, bias []F, D int, inner, post func(float64) float64) {
	B, C := q.B, q.C
	h := q.lora[:B*D]
	blas.Gemm(false, false, B, D, C, 1, x, C, A, D, 0, h, D)
	if inner != nil {
		for i, v := range h {
			h[i] = F(inner(float64(v)))
		}
	}
	blas.Gemm(false, false, B, C, D, 1, h, D, Bm, C, 0, out, C)
	for i, v := range out {
		z := float64(v)
		if bias != nil {
			z += float64(bias[i%C])
		}
		if post != nil {
			z = post(z)
		}
		out[i] = F(z)
	}
}

// lerp writes x + (prev − x)⊙mu for B rows, prev being the state's float64 row.
func (q *rnn7Kernel[F]) lerp(x []F, prev []float64, mu, out []F) {
	C := q.C
	for i, p := range prev {
		xv := float64(x[i])
		out[i] = F(xv + (p-xv)*float64(mu[i%C]))
	}
}

func (q *rnn7Kernel[F]) step(s *State, tokens []int, logits []float64) {
	rnnStep(&q.rnnBase, q, s, tokens, logits)
}

// channelMix is one token of RWKV-7's channel mix for B rows of q.xf into q.out.
func (q *rnn7Kernel[F]) channelMix(_ int, l *LayerState, w map[string][]F) {
	q.lerp(q.xf, l.FFNX, w["ffn.x_k"], q.tmp)
	q.sqReLUFFN(q.tmp, w["ffn.key.weight"], w["ffn.value.weight"], q.ffn, q.out)
}

// timeMix is one token of RWKV-7's time mix for B rows of xa (ln1 output) into q.out,
// advancing the layer's WKV-7 state.
func (q *rnn7Kernel[F]) timeMix(layer int, l *LayerState, w map[string][]F) {
	B, C, H, N := q.B, q.C, q.H, q.N
	for m, name := range []string{"att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a", "att.x_g"} {
		q.lerp(q.xa, l.AttX, w[name], q.mix[m])
	}
	xr, xw, xk, xv, xa, xg := q.mix[0], q.mix[1], q.mix[2], q.mix[3], q.mix[4], q.mix[5]
	q.linear(xr, w["att.receptance.weight"], q.r, C, C)
	q.linear(xk, w["att.key.weight"], q.k, C, C)
	q.linear(xv, w["att.value.weight"], q.v, C, C)
	// decay d = exp(−e^−0.5·σ(w̃)), w̃ = w0 + tanh(xw w1) w2
	q.lora7(q.w, xw, w["att.w1"], w["att.w2"], w["att.w0"], q.dims[0], math.Tanh, func(z float64) float64 {
		return math.Exp(rnn7WScale / (1 + math.Exp(-z)))
	})
	if layer == 0 {
		copy(q.vFirst, q.v)
	} else {
		q.lora7(q.tmp, xv, w["att.v1"], w["att.v2"], w["att.v0"], q.dims[2], nil, rnn7Sigmoid)
		for i, v := range q.v {
			q.v[i] = F(float64(v) + (float64(q.vFirst[i])-float64(v))*float64(q.tmp[i]))
		}
	}
	q.lora7(q.a, xa, w["att.a1"], w["att.a2"], w["att.a0"], q.dims[1], nil, rnn7Sigmoid)
	q.lora7(q.g, xg, w["att.g1"], w["att.g2"], nil, q.dims[3], rnn7Sigmoid, nil)
	kk, ka, rk := w["att.k_k"], w["att.k_a"], w["att.r_k"]
	lnw, lnb := w["att.ln_x.weight"], w["att.ln_x.bias"]
	for bh := 0; bh < B*H; bh++ {
		o, c0 := bh*N, (bh%H)*N // row offset in (B, C), channel offset in the head
		var ss float64
		for j := 0; j < N; j++ {
			z := float64(q.k[o+j]) * float64(kk[c0+j])
			ss += z * z
		}
		norm := math.Max(math.Sqrt(ss), rnn7NormEps)
		for j := 0; j < N; j++ {
			c := c0 + j
			q.kk[o+j] = F(float64(q.k[o+j]) * float64(kk[c]) / norm)
			q.k[o+j] = F(float64(q.k[o+j]) * (1 + (float64(q.a[o+j])-1)*float64(ka[c])))
		}
		// WKV-7: sa = S(−κ̂); S = S diag(d) + sa (κ̂⊙a)ᵀ + v kᵀ; y = S r
		S := l.WKV[bh*N*N : (bh+1)*N*N]
		for i := 0; i < N; i++ {
			row := S[i*N : (i+1)*N]
			var sa float64
			for j, x := range row {
				sa -= x * float64(q.kk[o+j])
			}
			vi := float64(q.v[o+i])
			var y float64
			for j := range row {
				x := row[j]*float64(q.w[o+j]) + sa*float64(q.kk[o+j])*float64(q.a[o+j]) + vi*float64(q.k[o+j])
				row[j] = x
				y += x * float64(q.r[o+j])
			}
			q.y[o+i] = F(y)
		}
		// GroupNorm of the head, the r_k bonus, the gate
		var mean, vr, bonus float64
		for j := 0; j < N; j++ {
			mean += float64(q.y[o+j])
		}
		mean /= float64(N)
		for j := 0; j < N; j++ {
			z := float64(q.y[o+j]) - mean
			vr += z * z
		}
		inv := 1 / math.Sqrt(vr/float64(N)+rnn7GNEps)
		for j := 0; j < N; j++ {
			bonus += float64(q.r[o+j]) * float64(q.k[o+j]) * float64(rk[c0+j])
		}
		for j := 0; j < N; j++ {
			c := c0 + j
			y := (float64(q.y[o+j])-mean)*inv*float64(lnw[c]) + float64(lnb[c]) + bonus*float64(q.v[o+j])
			q.y[o+j] = F(y * float64(q.g[o+j]))
		}
	}
	q.linear(q.y, w["att.output.weight"], q.out, C, C)
}
