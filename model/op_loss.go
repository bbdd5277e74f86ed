package model

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// l2WrapFactor is RWKV-LM's L2Wrap coefficient: the backward adds max_logit*1e-4/(B*T) at each
// row's argmax, which keeps logits from drifting upwards.
const l2WrapFactor = 1e-4

// IgnoreTarget is the target of a row that takes no part in the loss (torch's ignore_index
// -100): a prompt or padding position of instruction (SFT) data. Such a row adds nothing to the
// loss, its logits' gradient is exactly zero (L2Wrap included), and the loss is the mean over
// the other rows, as RWKV-PEFT's sum(loss*mask)/sum(mask) is.
const IgnoreTarget = -100

// crossEntropyOp: (logits (N,V), targets Int (N)) -> mean over rows whose target is not
// IgnoreTarget of -log softmax[target].
type crossEntropyOp struct {
	opBase
	N, V   int
	l2wrap bool
}

// CrossEntropy is the mean softmax cross-entropy of logits (N, V) against integer targets (N),
// over the rows whose target is not IgnoreTarget (0 when every row is ignored). With l2wrap the
// value is unchanged and the backward adds RWKV-LM's L2Wrap term, max_logit*1e-4/N at the
// argmax of each row that is not ignored (RWKV-PEFT adds it to every row; here an ignored row's
// gradient stays exactly zero).
func CrossEntropy(logits, targets *G.Node, l2wrap bool) (*G.Node, error) {
	s := logits.Shape()
	return G.ApplyOp(crossEntropyOp{N: s[0], V: s[1], l2wrap: l2wrap}, logits, targets)
}

func (o crossEntropyOp) Arity() int { return 2 }
func (o crossEntropyOp) Type() hm.Type {
	return hm.NewFnType(matT, idsT, tvFloat)
}
func (o crossEntropyOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}
func (o crossEntropyOp) Do(in ...G.Value) (G.Value, error) {
	targets := in[1].Data().([]int)
	for i, t := range targets {
		if t != IgnoreTarget && (t < 0 || t >= o.V) {
			return nil, fmt.Errorf("model: target %d at position %d is outside the vocabulary [0, %d)", t, i, o.V)
		}
	}
	var loss float64
	switch d := in[0].Data().(type) {
	case []float32:
		var ok bool
		if loss, ok = ceForwardFast(d, targets, o.N, o.V); !ok {
			loss = ceForward(d, targets, o.N, o.V)
		}
	case []float64:
		loss = ceForward(d, targets, o.N, o.V)
	}
	return newScalar(dtypeOf(in[0]), loss), nil
}
func (o crossEntropyOp) String() string {
	return fmt.Sprintf("CrossEntropy{N=%d,V=%d,l2wrap=%v}", o.N, o.V, o.l2wrap)
}
func (o crossEntropyOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o crossEntropyOp) Hashcode() uint32      { return hashcode(o) }
func (o crossEntropyOp) DiffWRT(int) []bool    { return []bool{true, false} }
func (o crossEntropyOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	g, err := G.ApplyOp(crossEntropyBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], grad)
	return G.Nodes{g, nil}, err
}

// ceForward returns the mean NLL over the rows not ignored; rows are reduced in fixed pieces for
// determinism.
func ceForward[F Float](logits []F, targets []int, N, V int) float64 {
	return meanNLL(logits, targets, N, V, logSumExp[F])
}

// meanNLL is ceForward with the row's log-sum-exp computed by lse.
func meanNLL[F Float](logits []F, targets []int, N, V int, lse func(row []F) float64) float64 {
	np := pieces(N, V)
	part := make([]float64, np)
	parallelFor(N, np, func(p, lo, hi int) {
		var s float64
		for r := lo; r < hi; r++ {
			if targets[r] == IgnoreTarget {
				continue
			}
			row := logits[r*V : (r+1)*V]
			s += lse(row) - float64(row[targets[r]])
		}
		part[p] = s
	})
	var s float64
	for _, x := range part {
		s += x
	}
	n := counted(targets[:N])
	if n == 0 {
		return 0
	}
	return s / float64(n)
}

// counted is the number of targets that are not IgnoreTarget.
func counted(targets []int) int {
	n := 0
	for _, t := range targets {
		if t != IgnoreTarget {
			n++
		}
	}
	return n
}

func logSumExp[F Float](row []F) float64 {
	m := math.Inf(-1)
	for _, x := range row {
		m = math.Max(m, float64(x))
	}
	var s float64
	for _, x := range row {
		s += math.Exp(float64(x) - m)
	}
	return m + math.Log(s)
}

// crossEntropyBackOp: (logits, targets, g scalar) -> g*(softmax - onehot)/n (+ L2Wrap) (N,V),
// n the rows not ignored; an ignored row's gradient is zero.
type crossEntropyBackOp struct {
	opBase
	fwd crossEntropyOp
	buf *outBuf
}

func (o crossEntropyBackOp) Arity() int { return 3 }
func (o crossEntropyBackOp) Type() hm.Type {
	return hm.NewFnType(matT, idsT, tvFloat, matT)
}
func (o crossEntropyBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.fwd.N, o.fwd.V}, nil
}
func (o crossEntropyBackOp) Do(in ...G.Value) (G.Value, error) {
	g, err := scalarOf(in[2])
	if err != nil {
		return nil, err
	}
	targets := in[1].Data().([]int)
	out := o.buf.get(dtypeOf(in[0]), false, o.fwd.N, o.fwd.V)
	switch d := out.Data().(type) {
	case []float32:
		if !ceBackwardFast(f32(in[0]), targets, g, o.fwd.l2wrap, o.fwd.N, o.fwd.V, d) {
			ceBackward(f32(in[0]), targets, g, o.fwd.l2wrap, o.fwd.N, o.fwd.V, d)
		}
	case []float64:
		ceBackward(f64(in[0]), targets, g, o.fwd.l2wrap, o.fwd.N, o.fwd.V, d)
	}
	return out, nil
}
func (o crossEntropyBackOp) String() string        { return "CrossEntropyBack" + o.fwd.String()[12:] }
func (o crossEntropyBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o crossEntropyBackOp) Hashcode() uint32      { return hashcode(o) }

func ceBackward[F Float](logits []F, targets []int, g float64, l2wrap bool, N, V int, out []F) {
	ceGrad(logits, targets, g, l2wrap, N, V, out, softmaxRow[F])
}

// softmaxRow sets o = scale*softmax(row) and returns the index of row's first maximum.
func softmaxRow[F Float](row, o []F, scale float64) int {
	lse := logSumExp(row)
	arg := 0
	for j, x := range row {
		o[j] = F(scale * math.Exp(float64(x)-lse))
		if x > row[arg] {
			arg = j
		}
	}
	return arg
}

// ceGrad is ceBackward with each row's scaled softmax and argmax computed by softmax.
func ceGrad[F Float](logits []F, targets []int, g float64, l2wrap bool, N, V int, out []F,
	softmax func(row, o []F, scale float64) int) {
	n := counted(targets[:N])
	scale := g / float64(max(n, 1))
	parallelFor(N, pieces(N, V), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			row, o := logits[r*V:(r+1)*V], out[r*V:(r+1)*V]
			if targets[r] == IgnoreTarget {
				clear(o)
				continue
			}
			arg := softmax(row, o, scale)
			o[targets[r]] -= F(scale)
			if l2wrap {
				// Not scaled by g: RWKV-LM's L2Wrap returns this term unconditionally. Its
				// factor stays 1e-4/(B*T), as in RWKV-PEFT, whatever the rows ignored.
				o[arg] += F(float64(row[arg]) * l2WrapFactor / float64(N))
			}
		}
	})
}

// dotOp: (x, g) of equal shape -> sum(x*g). It injects a known gradient g into any node x (the
// gradient of the final state handed back by the next chunk) and is the test harness's loss.
type dotOp struct {
	opBase
	shape tensor.Shape
}

// Dot is sum(x*g) over all elements; only x is differentiated.
func Dot(x, g *G.Node) (*G.Node, error) {
	return G.ApplyOp(dotOp{shape: x.Shape().Clone()}, x, g)
}

func (o dotOp) Arity() int { return 2 }
func (o dotOp) Type() hm.Type {
	t := tensorType(len(o.shape))
	return hm.NewFnType(t, t, tvFloat)
}
func (o dotOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.ScalarShape(), nil }
func (o dotOp) Do(in ...G.Value) (G.Value, error) {
	var s float64
	switch x := in[0].Data().(type) {
	case []float32:
		for i, g := range in[1].Data().([]float32) {
			s += float64(x[i]) * float64(g)
		}
	case []float64:
		for i, g := range in[1].Data().([]float64) {
			s += x[i] * g
		}
	}
	return newScalar(dtypeOf(in[0]), s), nil
}
func (o dotOp) String() string        { return fmt.Sprintf("Dot{%v}", o.shape) }
func (o dotOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o dotOp) Hashcode() uint32      { return hashcode(o) }
func (o dotOp) DiffWRT(int) []bool    { return []bool{true, false} }
func (o dotOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	g, err := G.ApplyOp(scaleOp{shape: o.shape}, in[1], grad)
	return G.Nodes{g, nil}, err
}

// scaleOp: (x, s scalar) -> s*x.
type scaleOp struct {
	opBase
	shape tensor.Shape
}

func (o scaleOp) Arity() int { return 2 }
func (o scaleOp) Type() hm.Type {
	t := tensorType(len(o.shape))
	return hm.NewFnType(t, tvFloat, t)
}
func (o scaleOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return o.shape.Clone(), nil }
func (o scaleOp) Do(in ...G.Value) (G.Value, error) {
	s, err := scalarOf(in[1])
	if err != nil {
		return nil, err
	}
	out := newDense(dtypeOf(in[0]), o.shape...)
	switch d := out.Data().(type) {
	case []float32:
		for i, x := range f32(in[0]) {
			d[i] = float32(s) * x
		}
	case []float64:
		for i, x := range f64(in[0]) {
			d[i] = s * x
		}
	}
	return out, nil
}
func (o scaleOp) String() string        { return fmt.Sprintf("Scale{%v}", o.shape) }
func (o scaleOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o scaleOp) Hashcode() uint32      { return hashcode(o) }

func (o crossEntropyBackOp) outBuffer() *outBuf { return o.buf }
