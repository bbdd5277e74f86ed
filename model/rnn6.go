package model

import (
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/arch"
)

// The RNN form of RWKV-5.2 "Eagle" (x052) and RWKV-6 "Finch" (x060) (NEXT-ARCH §1.1, §1.2;
// RWKV-LM RWKV-v5/src/model.py RWKV_Tmix_x052/x060, RWKV_CMix_x052/x060), one token of one
// sequence at a time, in float64, written directly from the equations. It is the check of the
// fast batched kernel (rnn6fast.go) and of the parallel graph, and shares no code with either:
//
//	x    = LN0(emb[token])                                             (layer 0 only)
//	per layer, xa = LN1(x), p = att_x_prev:
//	x052: x_m = xa⊙μ_m + p⊙(1−μ_m) for m in k, v, r, g (att.time_mix_m);
//	      w̃ = att.time_decay [H,N] (the same every token)
//	x060: δ = p − xa;  xxx = xa + δ⊙maa_x;  h = tanh(xxx @ time_maa_w1) (5 chunks of M);
//	      m_i = h_i @ time_maa_w2[i] for i = w, k, v, r, g;  x_m = xa + δ⊙(maa_m + m_m);
//	      w̃ = time_decay + tanh(x_w @ time_decay_w1) @ time_decay_w2
//	r = Wr x_r;  k = Wk x_k;  v = Wv x_v;  g = SiLU(Wg x_g);  d = exp(−exp(w̃))
//	per head (u = time_faaaa, S [value i][key j]):
//	      y_i = Σ_j r_j (u_j k_j v_i + S[i][j]);   S[i][j] = d_j S[i][j] + k_j v_i
//	x052: o = GroupNorm_H(y/8; eps 1e-5, ln_x)   (RWKV-LM's ln_x(x / head_size_divisor))
//	x060: o = GroupNorm_H(y; eps 64e-5, ln_x)
//	x += Wo (o⊙g);  att_x_prev = xa
//	xf = LN2(x), q = ffn_x_prev;  x052: x_k = xf⊙μk + q⊙(1−μk), x_r likewise;
//	      x060: x_k = xf + (q − xf)⊙maa_k, x_r likewise;
//	x += σ(Wr x_r) ⊙ Wv relu(Wk x_k)²;  ffn_x_prev = xf
//	logits = head LN_out(x)
const (
	rnn6LNEps    = 1e-5  // LayerNorm (ln0, ln1, ln2, ln_out); x052's ln_x of y/8
	rnn6GNEps    = 64e-5 // x060's ln_x GroupNorm (1e-5·head_size_divisor²)
	rnn6Divisor  = 8     // RWKV-LM's head_size_divisor (x052 divides y by it before ln_x)
	rnn6MixOrder = "wkvrg"
)

// param6 is one tensor of an x052/x060 model: RWKV-LM shape and float64 values, row-major.
type param6 = param7[float64]

// params6 holds an x052 or x060 model's tensors by RWKV-LM state_dict name.
type params6 = params7[float64]

// params6Of copies a Model's tensors into params6 (float64, whatever the model dtype: a
// float32 model's values are exact in float64).
func params6Of(m *Model) params6 {
	p := make(params6, len(m.Params))
	for _, t := range m.Params {
		p[t.Name] = param6{Shape: append([]int(nil), t.Shape...), Data: t.Float64s()}
	}
	return p
}

// rnn6Dims infers the sizes with arch.Infer (names, shapes, no unknown tensor), requires
// x052 or x060, and checks that each tensor holds as many values as its shape.
func rnn6Dims(p params6) (arch.Dims, error) {
	return inferParams(p, "x052/x060", arch.X052, arch.X060)
}

// x05State is one layer's recurrent state for one sequence.
type x05State struct {
	AttX []float64 // (C) ln1 output of the previous token
	WKV  []float64 // (H, N, N) per head, [value i][key j]
	FFNX []float64 // (C) ln2 output of the previous token
}

// newX05States returns the empty (zero) state of every layer.
func newX05States(d arch.Dims) []x05State {
	st := make([]x05State, d.Layers)
	for l := range st {
		st[l] = x05State{AttX: make([]float64, d.Embd), WKV: make([]float64, d.Embd*d.HeadSize), FFNX: make([]float64, d.Embd)}
	}
	return st
}

// rnn6 runs an x052 or x060 model one token at a time.
type rnn6 struct {
	d arch.Dims
	p params6
	x []float64 // the residual stream
}

// newRNN6 checks the tensors (rnn6Dims) and returns a stepper over them (not copied).
func newRNN6(p params6) (*rnn6, error) {
	d, err := rnn6Dims(p)
	if err != nil {
		return nil, err
	}
	return &rnn6{d: d, p: p, x: make([]float64, d.Embd)}, nil
}

// step feeds one token, updates st (one x05State per layer) and writes the V next-token
// logits into logits.
func (m *rnn6) step(token int, st []x05State, logits []float64) error {
	d := m.d
	if token < 0 || token >= d.Vocab {
		return fmt.Errorf("%s rnn: token %d outside the vocabulary [0, %d)", d.Arch, token, d.Vocab)
	}
	if len(st) != d.Layers {
		return fmt.Errorf("%s rnn: state has %d layers, the model %d", d.Arch, len(st), d.Layers)
	}
	if len(logits) != d.Vocab {
		return fmt.Errorf("%s rnn: logits buffer has %d values, want the vocabulary size %d", d.Arch, len(logits), d.Vocab)
	}
	C, H, N := d.Embd, d.Heads(), d.HeadSize
	for l, s := range st {
		if len(s.AttX) != C || len(s.FFNX) != C || len(s.WKV) != H*N*N {
			return fmt.Errorf("%s rnn: layer %d state has sizes %d/%d/%d, want %d/%d/%d (att_x/wkv/ffn_x)",
				d.Arch, l, len(s.AttX), len(s.WKV), len(s.FFNX), C, H*N*N, C)
		}
	}
	w := func(name string) []float64 { return m.p[name].Data }
	m.x = rnn6LN(w("emb.weight")[token*C:(token+1)*C], w("blocks.0.ln0.weight"), w("blocks.0.ln0.bias"), rnn6LNEps)
	for l := range st {
		m.timeMix(l, &st[l])
		m.channelMix(l, &st[l])
	}
	copy(logits, rnn6MatVec(w("head.weight"), rnn6LN(m.x, w("ln_out.weight"), w("ln_out.bias"), rnn6LNEps)))
	return nil
}

func (m *rnn6) timeMix(l int, s *x05State) {
	d := m.d
	C, H, N := d.Embd, d.Heads(), d.HeadSize
	w := func(name string) []float64 { return m.p[fmt.Sprintf("blocks.%d.%s", l, name)].Data }
	xa := rnn6LN(m.x, w("ln1.weight"), w("ln1.bias"), rnn6LNEps)
	p := s.AttX
	mixed := map[byte][]float64{}
	dec := make([]float64, C) // w̃
	if d.Arch == arch.X052 {
		for _, c := range "kvrg" {
			mu := w("att.time_mix_" + string(c))
			x := make([]float64, C)
			for i := range x {
				x[i] = xa[i]*mu[i] + p[i]*(1-mu[i])
			}
			mixed[byte(c)] = x
		}
		copy(dec, w("att.time_decay"))
	} else {
		delta := make([]float64, C)
		xxx := make([]float64, C)
		maaX := w("att.time_maa_x")
		for i := range delta {
			delta[i] = p[i] - xa[i]
			xxx[i] = xa[i] + delta[i]*maaX[i]
		}
		M := d.LoRA.Mix
		h := rnn6VecMat(xxx, w("att.time_maa_w1"), 5*M)
		for j := range h {
			h[j] = math.Tanh(h[j])
		}
		w2 := w("att.time_maa_w2")
		for i := 0; i < 5; i++ {
			c := rnn6MixOrder[i]
			mm := rnn6VecMat(h[i*M:(i+1)*M], w2[i*M*C:(i+1)*M*C], C)
			maa := w("att.time_maa_" + string(c))
			x := make([]float64, C)
			for j := range x {
				x[j] = xa[j] + delta[j]*(maa[j]+mm[j])
			}
			mixed[c] = x
		}
		t := rnn6VecMat(mixed['w'], w("att.time_decay_w1"), d.LoRA.W)
		for j := range t {
			t[j] = math.Tanh(t[j])
		}
		dd := rnn6VecMat(t, w("att.time_decay_w2"), C)
		td := w("att.time_decay")
		for j := range dec {
			dec[j] = td[j] + dd[j]
		}
	}
	r := rnn6MatVec(w("att.receptance.weight"), mixed['r'])
	k := rnn6MatVec(w("att.key.weight"), mixed['k'])
	v := rnn6MatVec(w("att.value.weight"), mixed['v'])
	g := rnn6MatVec(w("att.gate.weight"), mixed['g'])
	for i, z := range g {
		g[i] = z / (1 + math.Exp(-z)) // SiLU
	}
	u := w("att.time_faaaa")
	y := make([]float64, C)
	for h := 0; h < H; h++ {
		S := s.WKV[h*N*N : (h+1)*N*N]
		for i := 0; i < N; i++ {
			vi := v[h*N+i]
			for j := 0; j < N; j++ {
				c := h*N + j
				y[h*N+i] += r[c] * (u[c]*k[c]*vi + S[i*N+j])
			}
		}
		for i := 0; i < N; i++ {
			for j := 0; j < N; j++ {
				c := h*N + j
				S[i*N+j] = math.Exp(-math.Exp(dec[c]))*S[i*N+j] + k[c]*v[h*N+i]
			}
		}
	}
	var o []float64
	if d.Arch == arch.X052 {
		for i := range y {
			y[i] /= rnn6Divisor
		}
		o = rnn6GroupNorm(y, w("att.ln_x.weight"), w("att.ln_x.bias"), H, rnn6LNEps)
	} else {
		o = rnn6GroupNorm(y, w("att.ln_x.weight"), w("att.ln_x.bias"), H, rnn6GNEps)
	}
	for i := range o {
		o[i] *= g[i]
	}
	out := rnn6MatVec(w("att.output.weight"), o)
	for i := range m.x {
		m.x[i] += out[i]
	}
	copy(s.AttX, xa)
}

func (m *rnn6) channelMix(l int, s *x05State) {
	d := m.d
	C := d.Embd
	w := func(name string) []float64 { return m.p[fmt.Sprintf("blocks.%d.%s", l, name)].Data }
	xf := rnn6LN(m.x, w("ln2.weight"), w("ln2.bias"), rnn6LNEps)
	q := s.FFNX
	xk, xr := make([]float64, C), make([]float64, C)
	if d.Arch == arch.X052 {
		muK, muR := w("ffn.time_mix_k"), w("ffn.time_mix_r")
		for i := range xk {
			xk[i] = xf[i]*muK[i] + q[i]*(1-muK[i])
			xr[i] = xf[i]*muR[i] + q[i]*(1-muR[i])
		}
	} else {
		maaK, maaR := w("ffn.time_maa_k"), w("ffn.time_maa_r")
		for i := range xk {
			xk[i] = xf[i] + (q[i]-xf[i])*maaK[i]
			xr[i] = xf[i] + (q[i]-xf[i])*maaR[i]
		}
	}
	k := rnn6MatVec(w("ffn.key.weight"), xk)
	for i, z := range k {
		z = math.Max(z, 0)
		k[i] = z * z
	}
	kv := rnn6MatVec(w("ffn.value.weight"), k)
	r := rnn6MatVec(w("ffn.receptance.weight"), xr)
	for i := range m.x {
		m.x[i] += kv[i] / (1 + math.Exp(-r[i]))
	}
	copy(s.FFNX, xf)
}

// rnn6MatVec is W x for a Linear weight W [out, in] (row-major), out = len(W)/len(x).
func rnn6MatVec(W, x []float64) []float64 {
	n := len(x)
	y := make([]float64, len(W)/n)
	for o := range y {
		var s float64
		for i, wv := range W[o*n : (o+1)*n] {
			s += wv * x[i]
		}
		y[o] = s
	}
	return y
}

// rnn6VecMat is x @ A for A [len(x), cols] row-major (RWKV-LM's low-rank x @ w1).
func rnn6VecMat(x, A []float64, cols int) []float64 {
	y := make([]float64, cols)
	for i, xi := range x {
		for j, a := range A[i*cols : (i+1)*cols] {
			y[j] += xi * a
		}
	}
	return y
}

// rnn6LN is LayerNorm(x; w, b) over all of x, as a new slice.
func rnn6LN(x, w, b []float64, eps float64) []float64 {
	return rnn6GroupNorm(x, w, b, 1, eps)
}

// rnn6GroupNorm normalises each of the G equal groups of x (biased variance) and applies the
// per-channel w, b, as a new slice.
func rnn6GroupNorm(x, w, b []float64, G int, eps float64) []float64 {
	n := len(x) / G
	y := make([]float64, len(x))
	for g := 0; g < G; g++ {
		xs := x[g*n : (g+1)*n]
		var mean, vr float64
		for _, v := range xs {
			mean += v
		}
		mean /= float64(n)
		for _, v := range xs {
			vr += (v - mean) * (v - mean)
		}
		vr /= float64(n)
		for i, v := range xs {
			c := g*n + i
			y[c] = (v-mean)/math.Sqrt(vr+eps)*w[c] + b[c]
		}
	}
	return y
}
