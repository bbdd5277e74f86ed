package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// residualOp: (x, y) of shape (N,C) -> x + y, the residual connection of every block. It does
// what G.Add does, but into an op-owned buffer: Gorgonia's Add clones its first input on every
// run, which at B8 T256 C512 was 12 fresh 4 MiB tensors a step, each one faulted in anew.
type residualOp struct {
	opBase
	N, C int
	buf  *outBuf
}

// Residual is x + y for two (N,C) matrices.
func Residual(x, y *G.Node) (*G.Node, error) {
	xs, ys := x.Shape(), y.Shape()
	if len(xs) != 2 || !xs.Eq(ys) {
		return nil, fmt.Errorf("model: Residual shapes %v and %v differ", xs, ys)
	}
	return G.ApplyOp(residualOp{N: xs[0], C: xs[1], buf: newOutBuf()}, x, y)
}

func (o residualOp) Arity() int    { return 2 }
func (o residualOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT) }
func (o residualOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o residualOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		addInto(d, f32(in[0]), f32(in[1]))
	case []float64:
		addInto(d, f64(in[0]), f64(in[1]))
	}
	return out, nil
}

// addInto sets out = a + b.
func addInto[F Float](out, a, b []F) {
	parallelFor(len(out), pieces(len(out), 1), func(_, lo, hi int) {
		o, x, y := out[lo:hi], a[lo:hi], b[lo:hi]
		for i := range o {
			o[i] = x[i] + y[i]
		}
	})
}

func (o residualOp) String() string        { return fmt.Sprintf("Residual{N=%d,C=%d}", o.N, o.C) }
func (o residualOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o residualOp) Hashcode() uint32      { return hashcode(o) }
func (o residualOp) DiffWRT(int) []bool    { return []bool{true, true} }

// SymDiff: the gradient passes to both inputs unchanged.
func (o residualOp) SymDiff(_ G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	return G.Nodes{grad, grad}, nil
}
func (o residualOp) outBuffer() *outBuf { return o.buf }
