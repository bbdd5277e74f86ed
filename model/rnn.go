package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// RNN runs a Model one token at a time for B sequences, in plain Go with no graph: memory is
// constant per token and the whole history lives in a State. It reads the Model's tensors
// directly, so it sees weight updates.
type RNN struct {
	m      *Model
	B      int
	step   func(s *State, tokens []int, logits []float64)
	layers int
}

// NewRNN prepares scratch space for B parallel sequences; the kernel follows the architecture
// (x040 here, x052 and x060 in rnn6fast.go, x070 in rnn7fast.go) and the model's dtype.
func (m *Model) NewRNN(B int) *RNN {
	r := &RNN{m: m, B: B, layers: m.Config.Layers}
	a, f32 := m.Config.Arch.Resolve(), m.DType == Float32
	switch {
	case a == arch.X070 && f32:
		r.step = newRNN7Kernel[float32](m, B).step
	case a == arch.X070:
		r.step = newRNN7Kernel[float64](m, B).step
	case (a == arch.X052 || a == arch.X060) && f32:
		r.step = newRNN6Kernel[float32](m, B).step
	case a == arch.X052 || a == arch.X060:
		r.step = newRNN6Kernel[float64](m, B).step
	case f32:
		r.step = newRNNKernel[float32](m, B).step
	default:
		r.step = newRNNKernel[float64](m, B).step
	}
	return r
}

// Step feeds one token per sequence (tokens has B ids), advances s and writes the next-token
// logits (B*V, row-major) into logits.
func (r *RNN) Step(s *State, tokens []int, logits []float64) error {
	V := r.m.Config.Vocab
	if len(tokens) != r.B || len(logits) != r.B*V {
		return fmt.Errorf("model: RNN step takes %d tokens and %d logits, got %d and %d", r.B, r.B*V, len(tokens), len(logits))
	}
	if err := s.check(r.m.Config, r.B, "RNN"); err != nil {
		return err
	}
	for i, id := range tokens {
		if id < 0 || id >= V {
			return fmt.Errorf("model: token id %d of sequence %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	r.step(s, tokens, logits)
	return nil
}

// rnnBase is what the RNN kernels (x040 rnnKernel, x052/x060 rnn6Kernel, x070 rnn7Kernel)
// share: the sizes, typed views of the weights, the residual stream and the buffers rnnStep
// passes between the blocks and their mixes.
type rnnBase[F Float] struct {
	m          *Model
	B, C, F, V int
	x          []F              // the residual stream (B, C)
	xa, xf     []F              // ln1 and ln2 outputs: the time and channel mixes' inputs
	out        []F              // a mix's output, added to x
	logits     []F              // the head's output (B, V)
	top        map[string][]F   // emb, ln_out, head by name
	layers     []map[string][]F // per layer, by the name after "blocks.N."
}

func newRNNBase[F Float](m *Model, B int) rnnBase[F] {
	C, V := m.Config.Embd, m.Config.Vocab
	q := rnnBase[F]{m: m, B: B, C: C, F: m.Config.DimFFN(), V: V,
		x: make([]F, B*C), xa: make([]F, B*C), xf: make([]F, B*C), out: make([]F, B*C), logits: make([]F, B*V)}
	q.top, q.layers = weightViews[F](m)
	return q
}

// linear computes out (B, outDim) = in (B, inDim) · Wᵀ for a Linear weight W [out, in].
func (q *rnnBase[F]) linear(in, w, out []F, inDim, outDim int) {
	rowsLinear(q.B, in, w, out, inDim, outDim)
}

// sqReLUFFN writes out (B, C) = relu(x · keyᵀ)² · valueᵀ, hidden (B, F) being scratch: the
// key/value part of every RWKV channel mix.
func (q *rnnBase[F]) sqReLUFFN(x, key, value, hidden, out []F) {
	q.linear(x, key, hidden, q.C, q.F)
	for j, v := range hidden {
		v = max(v, 0)
		hidden[j] = v * v
	}
	q.linear(hidden, value, out, q.F, q.C)
}

// rnnMixer is an architecture's time and channel mix of one token for the B rows of an
// rnnBase: timeMix reads xa (ln1 output) and channelMix xf (ln2 output), both of layer i, and
// write out; each advances its part of the layer's state but for AttX and FFNX.
type rnnMixer[F Float] interface {
	timeMix(i int, l *LayerState, w map[string][]F)
	channelMix(i int, l *LayerState, w map[string][]F)
}

// rnnStep feeds one token per row through the model: the embedding, per layer ln0 (layer 0),
// ln1, mix's time mix added to x (AttX ← its input), ln2, the channel mix added to x (FFNX ← its
// input), then ln_out and the head into logits.
func rnnStep[F Float](q *rnnBase[F], mix rnnMixer[F], s *State, tokens []int, logits []float64) {
	B, C := q.B, q.C
	gatherRows(q.top["emb.weight"], tokens, q.x, C)
	for i := range s.Layers {
		l := &s.Layers[i]
		w := q.layers[i]
		if i == 0 {
			lnForward(q.x, w["ln0.weight"], w["ln0.bias"], q.x, B, C)
		}
		lnForward(q.x, w["ln1.weight"], w["ln1.bias"], q.xa, B, C)
		mix.timeMix(i, l, w)
		for j := range q.x {
			q.x[j] += q.out[j]
			l.AttX[j] = float64(q.xa[j])
		}
		lnForward(q.x, w["ln2.weight"], w["ln2.bias"], q.xf, B, C)
		mix.channelMix(i, l, w)
		for j := range q.x {
			q.x[j] += q.out[j]
			l.FFNX[j] = float64(q.xf[j])
		}
	}
	lnForward(q.x, q.top["ln_out.weight"], q.top["ln_out.bias"], q.xa, B, C)
	q.linear(q.xa, q.top["head.weight"], q.logits, C, q.V)
	for j, v := range q.logits {
		logits[j] = float64(v)
	}
}

// rnnKernel is the x040 RNN: typed views of the weights and the scratch activations of one step.
type rnnKernel[F Float] struct {
	rnnBase[F]
	mixed, prev   []F
	k, v, r, y, g []F
	fk, fv        []F
}

func newRNNKernel[F Float](m *Model, B int) *rnnKernel[F] {
	q := &rnnKernel[F]{rnnBase: newRNNBase[F](m, B)}
	n := B * q.C
	mk := func(k int) []F { return make([]F, k) }
	q.mixed, q.prev = mk(n), mk(n)
	q.k, q.v, q.r, q.y, q.g = mk(n), mk(n), mk(n), mk(n), mk(n)
	q.fk, q.fv = mk(B*q.F), mk(n)
	return q
}

// weightViews looks the Model's weights up once for an RNN kernel: top holds the tensors
// outside the blocks by full name, layers[l] block l's by the name after "blocks.l.". The
// slices share memory with the Model's tensors.
func weightViews[F Float](m *Model) (top map[string][]F, layers []map[string][]F) {
	top, layers = map[string][]F{}, make([]map[string][]F, m.Config.Layers)
	for i := range layers {
		layers[i] = map[string][]F{}
	}
	for _, p := range m.Params {
		data := p.Value.Data().([]F)
		if l := layerOf(p.Name); l >= 0 {
			layers[l][strings.SplitN(p.Name, ".", 3)[2]] = data
		} else {
			top[p.Name] = data
		}
	}
	return top, layers
}

// rowsLinear computes out (B, outDim) = in (B, inDim) · Wᵀ for a Linear weight W [out, in].
func rowsLinear[F Float](B int, in, w, out []F, inDim, outDim int) {
	blas.Gemm(false, true, B, outDim, inDim, 1, in, inDim, w, inDim, 0, out, outDim)
}

// mix writes x*mix + prev*(1-mix) row by row, prev being the state's last x.
func (q *rnnKernel[F]) mix(x []F, prev []float64, mix, out []F) {
	for i, p := range prev {
		q.prev[i] = F(p)
	}
	shiftMixForward(x, q.prev, mix, out, q.B, 1, q.C)
}

func (q *rnnKernel[F]) step(s *State, tokens []int, logits []float64) {
	rnnStep(&q.rnnBase, q, s, tokens, logits)
}

// timeMix is one token of RWKV-4's time mix for B rows of q.xa into q.out, advancing the
// layer's WKV state (AA, BB, PP).
func (q *rnnKernel[F]) timeMix(_ int, l *LayerState, w map[string][]F) {
	C := q.C
	q.mix(q.xa, l.AttX, w["att.time_mix_k"], q.mixed)
	q.linear(q.mixed, w["att.key.weight"], q.k, C, C)
	q.mix(q.xa, l.AttX, w["att.time_mix_v"], q.mixed)
	q.linear(q.mixed, w["att.value.weight"], q.v, C, C)
	q.mix(q.xa, l.AttX, w["att.time_mix_r"], q.mixed)
	q.linear(q.mixed, w["att.receptance.weight"], q.r, C, C)
	wkvStep(w["att.time_decay"], w["att.time_first"], q.k, q.v, q.y, l.AA, l.BB, l.PP, C)
	gateForward(q.r, q.y, q.g)
	q.linear(q.g, w["att.output.weight"], q.out, C, C)
}

// channelMix is one token of RWKV-4's channel mix for B rows of q.xf into q.out.
func (q *rnnKernel[F]) channelMix(_ int, l *LayerState, w map[string][]F) {
	C := q.C
	q.mix(q.xf, l.FFNX, w["ffn.time_mix_k"], q.mixed)
	q.sqReLUFFN(q.mixed, w["ffn.key.weight"], w["ffn.value.weight"], q.fk, q.fv)
	q.mix(q.xf, l.FFNX, w["ffn.time_mix_r"], q.mixed)
	q.linear(q.mixed, w["ffn.receptance.weight"], q.r, C, C)
	gateForward(q.r, q.fv, q.out)
}

// wkvStep is one step of the WKV recurrence for B rows of C channels (k, v, y: (B, C)), with the
// state (aa, bb, pp: (B, C)) kept in float64 and updated in place.
func wkvStep[F Float](decay, first, k, v, y []F, aa, bb, pp []float64, C int) {
	for i := range k {
		c := i % C
		kt, vt := float64(k[i]), float64(v[i])
		ww := float64(first[c]) + kt
		p := math.Max(pp[i], ww)
		e1, e2 := math.Exp(pp[i]-p), math.Exp(ww-p)
		y[i] = F((e1*aa[i] + e2*vt) / (e1*bb[i] + e2))
		ww = -math.Exp(float64(decay[c])) + pp[i]
		p = math.Max(ww, kt)
		e1, e2 = math.Exp(ww-p), math.Exp(kt-p)
		aa[i] = e1*aa[i] + e2*vt
		bb[i] = e1*bb[i] + e2
		pp[i] = p
	}
}
