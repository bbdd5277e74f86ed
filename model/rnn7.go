package model

import (
	"fmt"
	"math"
	"slices"
	"sort"

	"github.com/rwkv-go/rwkv-go/arch"
)

// The RNN form of RWKV-7 "Goose" (x070; NEXT-ARCH §1.3), one token at a time, written directly
// from the equations and independent of the parallel graph (it shares no code with the graph's
// ops, not even the WKV-7 kernel), so that "parallel = RNN" compares two implementations:
//
//	x    = LN0(emb[token])                                           (layer 0 only)
//	per layer, xa = LN1(x), δ = att_x_prev − xa, x_m = xa + δ⊙x_m for m in r,w,k,v,a,g:
//	r = Wr x_r;  k = Wk x_k;  v = Wv x_v;  w̃ = w0 + tanh(x_w w1) w2;  d = exp(−e^−0.5·σ(w̃))
//	layer 0: v_first = v;  else v += (v_first − v)⊙σ(v0 + (x_v v1) v2)
//	ρ = σ(a0 + (x_a a1) a2);  g = σ(x_g g1) g2
//	κ̂ = k⊙k_k / max(‖k⊙k_k‖ per head, 1e-12);  k = k⊙(1 + (ρ−1)⊙k_a)
//	per head: sa = S(−κ̂);  S = S diag(d) + sa (κ̂⊙ρ)ᵀ + v kᵀ;  y = S r      (S [value][key])
//	y = GroupNorm per head (eps 64e-5; ln_x) + (Σ_head r⊙k⊙r_k)·v_head;   x += Wo (y⊙g)
//	xf = LN2(x);  x += Wv_ffn relu(Wk_ffn (xf + (ffn_x_prev − xf)⊙ffn.x_k))²
//	logits = head LN_out(x)
//
// v_first is recomputed every token from layer 0; it is not state. Vectors and the state are
// stored in the model's type F (the WKV-7 state in fp32 for a float32 model, as RWKV-LM and
// ChatRWKV keep it); sums and the decay are computed in float64 and rounded when stored.

const (
	rnn7LNEps   = 1e-5                // LayerNorm (ln0, ln1, ln2, ln_out)
	rnn7GNEps   = 64e-5               // GroupNorm per head (att.ln_x)
	rnn7NormEps = 1e-12               // L2 normalisation of κ per head (F.normalize)
	rnn7WScale  = -0.6065306597126334 // −e^−0.5: d = exp(rnn7WScale·σ(w̃))
)

// param7 is one tensor: its RWKV-LM shape and its values, row-major.
type param7[F Float] struct {
	Shape []int
	Data  []F
}

// params7 holds an x070 model's tensors by RWKV-LM state_dict name ("blocks.3.att.w1").
// Layer 0's v0/v1/v2 are optional (RWKV-LM carries them unused; FLA files drop them).
type params7[F Float] map[string]param7[F]

// rnn7Dims infers the dimensions from the tensors with arch.Infer (the one x070 layout: names,
// shapes, no unknown tensor, RWKV-7a/7b variants refused) and checks that each tensor has as
// many values as its shape.
func rnn7Dims[F Float](p params7[F]) (arch.Dims, error) {
	return inferParams(p, "x070", arch.X070)
}

// inferParams infers the dimensions from p's names and shapes with arch.Infer (no unknown
// tensor), requires one of the architectures want (what names them in errors) and checks that
// each tensor has as many values as its shape.
func inferParams[F Float](p params7[F], what string, want ...arch.Arch) (arch.Dims, error) {
	specs := make([]arch.Spec, 0, len(p))
	for name, t := range p {
		specs = append(specs, arch.Spec{Name: name, Shape: t.Shape})
	}
	sort.Slice(specs, func(i, j int) bool { return specs[i].Name < specs[j].Name })
	d, err := arch.Infer(specs)
	if err != nil {
		return d, fmt.Errorf("%s parameters: %w", what, err)
	}
	if !slices.Contains(want, d.Arch) {
		return d, fmt.Errorf("%s parameters: the tensors hold an %s model", what, d.Arch.Title())
	}
	for _, w := range d.Layout() {
		if n := prodInts(w.Shape); len(p[w.Name].Data) != n {
			return d, fmt.Errorf("%s parameters: %q has %d values for shape %v (%d)", d.Arch, w.Name, len(p[w.Name].Data), w.Shape, n)
		}
	}
	return d, nil
}

// params7Of views a Model's tensors (x070) as params7, sharing their memory: the RNN form reads
// the Model's weights, not a copy. F must be the Model's dtype.
func params7Of[F Float](m *Model) params7[F] {
	p := make(params7[F], len(m.Params))
	for _, t := range m.Params {
		p[t.Name] = param7[F]{Shape: t.Shape, Data: t.Value.Data().([]F)}
	}
	return p
}

func prodInts(s []int) int {
	n := 1
	for _, x := range s {
		n *= x
	}
	return n
}

// x070State is one layer's recurrent state for one sequence.
type x070State[F Float] struct {
	AttX []F // (C) ln1 output of the previous token
	WKV  []F // (H, N, N) WKV-7 state per head, [value i][key j]
	FFNX []F // (C) ln2 output of the previous token
}

// newX070States returns the empty (zero) state of every layer.
func newX070States[F Float](d arch.Dims) []x070State[F] {
	st := make([]x070State[F], d.Layers)
	for l := range st {
		st[l] = x070State[F]{AttX: make([]F, d.Embd), WKV: make([]F, d.Embd*d.HeadSize), FFNX: make([]F, d.Embd)}
	}
	return st
}

// rnn7 runs an x070 model one token at a time.
type rnn7[F Float] struct {
	d arch.Dims
	p params7[F]
	// scratch, one per vector
	x, xa, xf, vFirst, r, k, v, w, a, g, kk, y, tmp []F
	mix                                             [6][]F
	ffn                                             []F
	lora, acc                                       []float64
}

// newRNN7 checks the tensors (rnn7Dims) and returns a stepper over them; the tensors are used in
// place, not copied.
func newRNN7[F Float](p params7[F]) (*rnn7[F], error) {
	d, err := rnn7Dims(p)
	if err != nil {
		return nil, err
	}
	C := d.Embd
	vec := func() []F { return make([]F, C) }
	m := &rnn7[F]{d: d, p: p, x: vec(), xa: vec(), xf: vec(), vFirst: vec(), r: vec(), k: vec(), v: vec(),
		w: vec(), a: vec(), g: vec(), kk: vec(), y: vec(), tmp: vec(), ffn: make([]F, d.FFN),
		lora: make([]float64, max(d.LoRA.W, d.LoRA.A, d.LoRA.V, d.LoRA.G)), acc: make([]float64, C)}
	for i := range m.mix {
		m.mix[i] = vec()
	}
	return m, nil
}

// step feeds one token: it updates st (one x070State per layer, see newX070States) and writes
// the next-token logits (V values) into logits.
func (m *rnn7[F]) step(token int, st []x070State[F], logits []F) error {
	d := m.d
	if token < 0 || token >= d.Vocab {
		return fmt.Errorf("x070 rnn: token %d outside the vocabulary [0, %d)", token, d.Vocab)
	}
	if len(st) != d.Layers {
		return fmt.Errorf("x070 rnn: state has %d layers, the model %d", len(st), d.Layers)
	}
	if len(logits) != d.Vocab {
		return fmt.Errorf("x070 rnn: logits buffer has %d values, want the vocabulary size %d", len(logits), d.Vocab)
	}
	C := d.Embd
	p := func(name string) []F { return m.p[name].Data }
	rnn7LayerNorm(m.x, p("emb.weight")[token*C:(token+1)*C], p("blocks.0.ln0.weight"), p("blocks.0.ln0.bias"))
	for l := 0; l < d.Layers; l++ {
		if err := m.layer(l, &st[l]); err != nil {
			return err
		}
	}
	rnn7LayerNorm(m.tmp, m.x, p("ln_out.weight"), p("ln_out.bias"))
	rnn7MatVec(logits, p("head.weight"), m.tmp)
	return nil
}

func (m *rnn7[F]) layer(l int, s *x070State[F]) error {
	d := m.d
	C, H, N := d.Embd, d.Heads(), d.HeadSize
	if len(s.AttX) != C || len(s.FFNX) != C || len(s.WKV) != H*N*N {
		return fmt.Errorf("x070 rnn: layer %d state has sizes %d/%d/%d, want %d/%d/%d (att_x/wkv/ffn_x)",
			l, len(s.AttX), len(s.WKV), len(s.FFNX), C, H*N*N, C)
	}
	pre := fmt.Sprintf("blocks.%d.", l)
	p := func(name string) []F { return m.p[pre+name].Data }

	// time mix
	xa := m.xa
	rnn7LayerNorm(xa, m.x, p("ln1.weight"), p("ln1.bias"))
	for i, name := range []string{"att.x_r", "att.x_w", "att.x_k", "att.x_v", "att.x_a", "att.x_g"} {
		mu, out := p(name), m.mix[i]
		for c := range out {
			out[c] = F(float64(xa[c]) + (float64(s.AttX[c])-float64(xa[c]))*float64(mu[c]))
		}
	}
	xr, xw, xk, xv, xA, xg := m.mix[0], m.mix[1], m.mix[2], m.mix[3], m.mix[4], m.mix[5]
	rnn7MatVec(m.r, p("att.receptance.weight"), xr)
	rnn7MatVec(m.k, p("att.key.weight"), xk)
	rnn7MatVec(m.v, p("att.value.weight"), xv)
	// decay: w̃ = w0 + tanh(x_w w1) w2, d = exp(−e^−0.5 σ(w̃)), kept in m.w
	m.loraInto(m.w, xw, p("att.w1"), p("att.w2"), p("att.w0"), math.Tanh, func(z float64) float64 {
		return math.Exp(rnn7WScale / (1 + math.Exp(-z)))
	})
	if l == 0 {
		copy(m.vFirst, m.v)
	} else {
		m.loraInto(m.tmp, xv, p("att.v1"), p("att.v2"), p("att.v0"), nil, rnn7Sigmoid)
		for c := range m.v {
			v := float64(m.v[c])
			m.v[c] = F(v + (float64(m.vFirst[c])-v)*float64(m.tmp[c]))
		}
	}
	m.loraInto(m.a, xA, p("att.a1"), p("att.a2"), p("att.a0"), nil, rnn7Sigmoid)
	m.loraInto(m.g, xg, p("att.g1"), p("att.g2"), nil, rnn7Sigmoid, nil)

	kk, ka, rk := p("att.k_k"), p("att.k_a"), p("att.r_k")
	for h := 0; h < H; h++ {
		var ss float64
		for c := h * N; c < (h+1)*N; c++ {
			x := float64(m.k[c]) * float64(kk[c])
			ss += x * x
		}
		norm := math.Max(math.Sqrt(ss), rnn7NormEps)
		for c := h * N; c < (h+1)*N; c++ {
			m.kk[c] = F(float64(m.k[c]) * float64(kk[c]) / norm)
		}
	}
	for c := range m.k {
		m.k[c] = F(float64(m.k[c]) * (1 + (float64(m.a[c])-1)*float64(ka[c])))
	}

	// WKV-7, one step per head, then GroupNorm and the r_k bonus
	lnw, lnb := p("att.ln_x.weight"), p("att.ln_x.bias")
	for h := 0; h < H; h++ {
		S := s.WKV[h*N*N : (h+1)*N*N]
		o := h * N
		for i := 0; i < N; i++ {
			row := S[i*N : (i+1)*N]
			var sa float64
			for j, x := range row {
				sa -= float64(x) * float64(m.kk[o+j]) // α = −κ̂
			}
			vi := float64(m.v[o+i])
			var y float64
			for j := range row {
				beta := float64(m.kk[o+j]) * float64(m.a[o+j])
				x := F(float64(row[j])*float64(m.w[o+j]) + sa*beta + vi*float64(m.k[o+j]))
				row[j] = x
				y += float64(x) * float64(m.r[o+j])
			}
			m.y[o+i] = F(y)
		}
		var mean, vr, bonus float64
		for c := o; c < o+N; c++ {
			mean += float64(m.y[c])
		}
		mean /= float64(N)
		for c := o; c < o+N; c++ {
			z := float64(m.y[c]) - mean
			vr += z * z
		}
		inv := 1 / math.Sqrt(vr/float64(N)+rnn7GNEps)
		for c := o; c < o+N; c++ {
			bonus += float64(m.r[c]) * float64(m.k[c]) * float64(rk[c])
		}
		for c := o; c < o+N; c++ {
			y := (float64(m.y[c])-mean)*inv*float64(lnw[c]) + float64(lnb[c]) + bonus*float64(m.v[c])
			m.y[c] = F(y * float64(m.g[c]))
		}
	}
	rnn7MatVec(m.tmp, p("att.output.weight"), m.y)
	for c := range m.x {
		m.x[c] += m.tmp[c]
	}
	copy(s.AttX, xa)

	// channel mix
	xf := m.xf
	rnn7LayerNorm(xf, m.x, p("ln2.weight"), p("ln2.bias"))
	mu := p("ffn.x_k")
	for c := range m.tmp {
		m.tmp[c] = F(float64(xf[c]) + (float64(s.FFNX[c])-float64(xf[c]))*float64(mu[c]))
	}
	rnn7MatVec(m.ffn, p("ffn.key.weight"), m.tmp)
	for i, x := range m.ffn {
		x = max(x, 0)
		m.ffn[i] = x * x
	}
	rnn7MatVec(m.tmp, p("ffn.value.weight"), m.ffn)
	for c := range m.x {
		m.x[c] += m.tmp[c]
	}
	copy(s.FFNX, xf)
	return nil
}

// loraInto computes out = post(bias + inner(x·A)·B) with A [C,D], B [D,C], both row-major as
// RWKV-LM stores them (used as x @ A @ B); a nil inner, post or bias is the identity or zero.
func (m *rnn7[F]) loraInto(out, x, A, B, bias []F, inner, post func(float64) float64) {
	C := len(x)
	D := len(A) / C
	h := m.lora[:D]
	clear(h)
	for c, xc := range x {
		xc := float64(xc)
		row := A[c*D : (c+1)*D]
		for j, a := range row {
			h[j] += xc * float64(a)
		}
	}
	if inner != nil {
		for j := range h {
			h[j] = inner(h[j])
		}
	}
	acc := m.acc[:C]
	clear(acc)
	if bias != nil {
		for c := range acc {
			acc[c] = float64(bias[c])
		}
	}
	for j, hj := range h {
		row := B[j*C : (j+1)*C]
		for c, b := range row {
			acc[c] += hj * float64(b)
		}
	}
	for c := range out {
		if post != nil {
			out[c] = F(post(acc[c]))
		} else {
			out[c] = F(acc[c])
		}
	}
}

// rnn7MatVec computes y = W x for W [len(y), len(x)] row-major (a Linear's [out,in]).
func rnn7MatVec[F Float](y, W, x []F) {
	n := len(x)
	for o := range y {
		row := W[o*n : (o+1)*n]
		var s float64
		for i, w := range row {
			s += float64(w) * float64(x[i])
		}
		y[o] = F(s)
	}
}

// rnn7LayerNorm writes LayerNorm(x; w, b) with eps 1e-5 into out (which may be x).
func rnn7LayerNorm[F Float](out, x, w, b []F) {
	var mean, vr float64
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	for _, v := range x {
		z := float64(v) - mean
		vr += z * z
	}
	inv := 1 / math.Sqrt(vr/float64(len(x))+rnn7LNEps)
	for c, v := range x {
		out[c] = F((float64(v)-mean)*inv*float64(w[c]) + float64(b[c]))
	}
}

func rnn7Sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }
