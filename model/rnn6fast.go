package model

import (
	"math"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// rnn6Kernel is the fast x052/x060 RNN behind Model.NewRNN: B sequences one token at a time,
// in the model's dtype F, every projection one BLAS call over the B rows (as rnn7Kernel), the
// WKV-5/6 step per (sequence, head) on the State's float64 matrix ([value i][key j]), the
// decay exp(−exp(w̃)) in float64. The equations are rnn6.go's (the independent check).
type rnn6Kernel[F Float] struct {
	rnnBase[F]
	x060    bool
	H, N    int
	M, W    int // x060 LoRA widths: token shift (time_maa), decay
	prev    []F
	delta   []F // x060: prev − xa
	r, k, v []F
	g, y    []F
	mix     [5][]F // x060 order w, k, v, r, g; x052 uses k, v, r, g (1..4)
	dec     []float64
	lora    []F
	ffn     []F
}

func newRNN6Kernel[F Float](m *Model, B int) *rnn6Kernel[F] {
	cfg := m.Config
	lr := cfg.LoRA()
	q := &rnn6Kernel[F]{rnnBase: newRNNBase[F](m, B), x060: cfg.Arch.Resolve() == arch.X060,
		H: cfg.Heads(), N: cfg.HeadDim(), M: lr.Mix, W: lr.W}
	n := B * q.C
	mk := func(k int) []F { return make([]F, k) }
	q.prev, q.delta = mk(n), mk(n)
	q.r, q.k, q.v, q.g, q.y, q.dec = mk(n), mk(n), mk(n), mk(n), mk(n), make([]float64, n)
	q.lora, q.ffn = mk(B*max(5*lr.Mix, lr.W)), mk(B*q.F)
	for i := range q.mix {
		q.mix[i] = mk(n)
	}
	return q
}

// toF copies the state's float64 rows into q.prev.
func (q *rnn6Kernel[F]) toF(prev []float64) []F {
	for i, p := range prev {
		q.prev[i] = F(p)
	}
	return q.prev
}

func (q *rnn6Kernel[F]) step(s *State, tokens []int, logits []float64) {
	rnnStep(&q.rnnBase, q, s, tokens, logits)
}

// timeMix is one token of the x052/x060 time mix for B rows of q.xa (ln1 output) into q.out,
// advancing the layer's WKV state.
func (q *rnn6Kernel[F]) timeMix(_ int, l *LayerState, w map[string][]F) {
	B, C, H, N := q.B, q.C, q.H, q.N
	prev := q.toF(l.AttX)
	if q.x060 {
		q.mix060(prev, w)
	} else {
		for m, name := range []string{"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "att.time_mix_g"} {
			shiftMixForward(q.xa, prev, w[name], q.mix[m+1], B, 1, C)
		}
		td := w["att.time_decay"]
		for i := range q.dec {
			q.dec[i] = math.Exp(-math.Exp(float64(td[i%C])))
		}
	}
	xk, xv, xr, xg := q.mix[1], q.mix[2], q.mix[3], q.mix[4]
	q.linear(xr, w["att.receptance.weight"], q.r, C, C)
	q.linear(xk, w["att.key.weight"], q.k, C, C)
	q.linear(xv, w["att.value.weight"], q.v, C, C)
	q.linear(xg, w["att.gate.weight"], q.g, C, C)
	u := w["att.time_faaaa"]
	for bh := 0; bh < B*H; bh++ {
		o, c0 := bh*N, (bh%H)*N
		var ruk float64
		for j := 0; j < N; j++ {
			ruk += float64(q.r[o+j]) * float64(u[c0+j]) * float64(q.k[o+j])
		}
		r, k, d := q.r[o:o+N], q.k[o:o+N], q.dec[o:o+N]
		S := l.WKV[bh*N*N : (bh+1)*N*N]
		for i := 0; i < N; i++ {
			row := S[i*N : (i+1)*N]
			vi := float64(q.v[o+i])
			y := ruk * vi
			for j, sv := range row {
				kj := float64(k[j])
				y += float64(r[j]) * sv
				row[j] = d[j]*sv + kj*vi
			}
			q.y[o+i] = F(y)
		}
	}
	// GroupNorm per head (x052's ln_x(y/8, eps 1e-5) is GroupNorm(y, eps 64e-5)), the gate
	gnForward(q.y, w["att.ln_x.weight"], w["att.ln_x.bias"], q.y, B, C, H, GroupNormEpsX070)
	for i, z := range q.g {
		zf := float64(z)
		q.y[i] = F(float64(q.y[i]) * zf / (1 + math.Exp(-zf)))
	}
	q.linear(q.y, w["att.output.weight"], q.out, C, C)
}

// mix060 writes x060's five data-dependent token shifts into q.mix (w, k, v, r, g) and the
// decay d = exp(−exp(time_decay + tanh(x_w @ time_decay_w1) @ time_decay_w2)) into q.dec.
func (q *rnn6Kernel[F]) mix060(prev []F, w map[string][]F) {
	B, C, M, W := q.B, q.C, q.M, q.W
	maaX := w["att.time_maa_x"]
	xxx := q.out // free until the output projection
	for i, x := range q.xa {
		dl := prev[i] - x
		q.delta[i] = dl
		xxx[i] = x + dl*maaX[i%C]
	}
	h := q.lora[:B*5*M]
	blas.Gemm(false, false, B, 5*M, C, 1, xxx, C, w["att.time_maa_w1"], 5*M, 0, h, 5*M)
	for i, v := range h {
		h[i] = F(math.Tanh(float64(v)))
	}
	w2 := w["att.time_maa_w2"]
	for m, name := range []string{"att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r", "att.time_maa_g"} {
		out := q.mix[m]
		blas.Gemm(false, false, B, C, M, 1, h[m*M:], 5*M, w2[m*M*C:(m+1)*M*C], C, 0, out, C)
		maa := w[name]
		for i, mm := range out {
			out[i] = q.xa[i] + q.delta[i]*(maa[i%C]+mm)
		}
	}
	t := q.lora[:B*W]
	blas.Gemm(false, false, B, W, C, 1, q.mix[0], C, w["att.time_decay_w1"], W, 0, t, W)
	for i, v := range t {
		t[i] = F(math.Tanh(float64(v)))
	}
	dd := q.out
	blas.Gemm(false, false, B, C, W, 1, t, W, w["att.time_decay_w2"], C, 0, dd, C)
	td := w["att.time_decay"]
	for i, v := range dd {
		q.dec[i] = math.Exp(-math.Exp(float64(td[i%C]) + float64(v)))
	}
}

// channelMix is one token of the x052/x060 channel mix for B rows of q.xf into q.out.
func (q *rnn6Kernel[F]) channelMix(_ int, l *LayerState, w map[string][]F) {
	B, C := q.B, q.C
	prev := q.toF(l.FFNX)
	xk, xr := q.mix[0], q.mix[1]
	if q.x060 {
		mk, mr := w["ffn.time_maa_k"], w["ffn.time_maa_r"]
		for i, x := range q.xf {
			dl := prev[i] - x
			xk[i] = x + dl*mk[i%C]
			xr[i] = x + dl*mr[i%C]
		}
	} else {
		shiftMixForward(q.xf, prev, w["ffn.time_mix_k"], xk, B, 1, C)
		shiftMixForward(q.xf, prev, w["ffn.time_mix_r"], xr, B, 1, C)
	}
	q.sqReLUFFN(xk, w["ffn.key.weight"], w["ffn.value.weight"], q.ffn, q.y)
	q.linear(xr, w["ffn.receptance.weight"], q.r, C, C)
	gateForward(q.r, q.y, q.out)
}
