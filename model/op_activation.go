package model

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

func sigmoid(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// gateOp: (r, y) of shape (N,C) -> sigmoid(r)*y, the receptance gate of both mixers.
type gateOp struct {
	opBase
	N, C int
	buf  *outBuf
}

// Gate is sigmoid(r) ⊙ y.
func Gate(r, y *G.Node) (*G.Node, error) {
	s := r.Shape()
	return G.ApplyOp(gateOp{N: s[0], C: s[1], buf: newOutBuf()}, r, y)
}

func (o gateOp) Arity() int    { return 2 }
func (o gateOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT) }
func (o gateOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o gateOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if !gateForwardFast(f32(in[0]), f32(in[1]), d) {
			gateForward(f32(in[0]), f32(in[1]), d)
		}
	case []float64:
		gateForward(f64(in[0]), f64(in[1]), d)
	}
	return out, nil
}
func (o gateOp) String() string        { return fmt.Sprintf("Gate{N=%d,C=%d}", o.N, o.C) }
func (o gateOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o gateOp) Hashcode() uint32      { return hashcode(o) }
func (o gateOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (o gateOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(gateBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.N, o.C})
}

func gateForward[F Float](r, y, out []F) {
	parallelFor(len(r), pieces(len(r), 1), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			out[i] = F(sigmoid(float64(r[i])) * float64(y[i]))
		}
	})
}

// gateBackOp: (r, y, g) -> packed [gr | gy].
type gateBackOp struct {
	opBase
	fwd gateOp
	buf *outBuf
}

func (o gateBackOp) Arity() int    { return 3 }
func (o gateBackOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT, vecT) }
func (o gateBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{2 * o.fwd.N * o.fwd.C}, nil
}
func (o gateBackOp) Do(in ...G.Value) (G.Value, error) {
	n := o.fwd.N * o.fwd.C
	out := o.buf.get(dtypeOf(in[0]), false, 2*n)
	switch d := out.Data().(type) {
	case []float32:
		if !gateBackwardFast(f32(in[0]), f32(in[1]), f32(in[2]), d[:n], d[n:]) {
			gateBackward(f32(in[0]), f32(in[1]), f32(in[2]), d[:n], d[n:])
		}
	case []float64:
		gateBackward(f64(in[0]), f64(in[1]), f64(in[2]), d[:n], d[n:])
	}
	return out, nil
}

func gateBackward[F Float](r, y, g, gr, gy []F) {
	parallelFor(len(r), pieces(len(r), 1), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			s := sigmoid(float64(r[i]))
			gi := float64(g[i])
			gr[i] = F(gi * float64(y[i]) * s * (1 - s))
			gy[i] = F(gi * s)
		}
	})
}

func (o gateBackOp) String() string        { return "GateBack" + o.fwd.String()[4:] }
func (o gateBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o gateBackOp) Hashcode() uint32      { return hashcode(o) }

// reluSqOp: k -> relu(k)², the channel-mix activation.
type reluSqOp struct {
	opBase
	N, C int
	back bool // the backward: (k, g) -> 2*relu(k)*g
	buf  *outBuf
}

// ReLUSquare is relu(x)².
func ReLUSquare(x *G.Node) (*G.Node, error) {
	s := x.Shape()
	return G.ApplyOp(reluSqOp{N: s[0], C: s[1], buf: newOutBuf()}, x)
}

func (o reluSqOp) Arity() int {
	if o.back {
		return 2
	}
	return 1
}
func (o reluSqOp) Type() hm.Type {
	if o.back {
		return hm.NewFnType(matT, matT, matT)
	}
	return hm.NewFnType(matT, matT)
}
func (o reluSqOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o reluSqOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		var g []float32
		if o.back {
			g = f32(in[1])
		}
		if !reluSqFast(f32(in[0]), g, d) {
			reluSq(o.back, f32(in[0]), in, d)
		}
	case []float64:
		reluSq(o.back, f64(in[0]), in, d)
	}
	return out, nil
}

func reluSq[F Float](back bool, k []F, in []G.Value, out []F) {
	var g []F
	if back {
		g = in[1].Data().([]F)
	}
	parallelFor(len(k), pieces(len(k), 1), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			x := max(k[i], 0)
			if back {
				out[i] = 2 * x * g[i]
			} else {
				out[i] = x * x
			}
		}
	})
}

func (o reluSqOp) String() string {
	return fmt.Sprintf("ReLUSquare{N=%d,C=%d,back=%v}", o.N, o.C, o.back)
}
func (o reluSqOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o reluSqOp) Hashcode() uint32      { return hashcode(o) }
func (o reluSqOp) DiffWRT(int) []bool    { return []bool{true} }
func (o reluSqOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	b := o
	b.back, b.buf = true, newOutBuf()
	g, err := G.ApplyOp(b, in[0], grad)
	return G.Nodes{g}, err
}

func (o gateOp) outBuffer() *outBuf     { return o.buf }
func (o gateBackOp) outBuffer() *outBuf { return o.buf }
func (o reluSqOp) outBuffer() *outBuf   { return o.buf }
