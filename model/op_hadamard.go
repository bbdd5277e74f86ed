package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// hadamardOp: (x (N,C), y (N,C)) -> x⊙y (N,C), e.g. RWKV-7's o⊙g before the output projection.
// Gorgonia's HadamardProd is correct but single-threaded and allocates its output every run;
// this one writes into its outBuf. Backward: (x, y, g) -> packed [gx = g⊙y | gy = g⊙x].
// With neg it is -x⊙y (KappaBeta) and its gradients are negated too.
type hadamardOp struct {
	opBase
	N, C int
	neg  bool
	back bool
	buf  *outBuf
}

// Hadamard is the elementwise product of two (N, C) matrices.
func Hadamard(x, y *G.Node) (*G.Node, error) {
	s := x.Shape()
	if len(s) != 2 || !y.Shape().Eq(s) {
		return nil, fmt.Errorf("model: Hadamard shapes %v and %v differ", s, y.Shape())
	}
	return G.ApplyOp(hadamardOp{N: s[0], C: s[1], buf: newOutBuf()}, x, y)
}

func (o hadamardOp) Arity() int {
	if o.back {
		return 3
	}
	return 2
}
func (o hadamardOp) Type() hm.Type {
	if o.back {
		return hm.NewFnType(matT, matT, matT, vecT)
	}
	return hm.NewFnType(matT, matT, matT)
}
func (o hadamardOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if o.back {
		return tensor.Shape{2 * o.N * o.C}, nil
	}
	return tensor.Shape{o.N, o.C}, nil
}
func (o hadamardOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		hadamard(o.back, o.neg, f32(in[0]), f32(in[1]), in, d)
	case []float64:
		hadamard(o.back, o.neg, f64(in[0]), f64(in[1]), in, d)
	}
	return out, nil
}

// hadamard writes x⊙y (or, for back, [g⊙y | g⊙x] with g = in[2]), each negated with neg
// (multiplying by -1 is exact, so -x⊙y is computed bit for bit).
func hadamard[F Float](back, neg bool, x, y []F, in []G.Value, out []F) {
	n := len(x)
	var g []F
	if back {
		g = in[2].Data().([]F)
	}
	sign := F(1)
	if neg {
		sign = -1
	}
	parallelFor(n, pieces(n, 1), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			if back {
				out[i] = sign * g[i] * y[i]
				out[n+i] = sign * g[i] * x[i]
			} else {
				out[i] = sign * x[i] * y[i]
			}
		}
	})
}

func (o hadamardOp) String() string {
	if o.neg {
		return fmt.Sprintf("KappaBeta{N=%d,C=%d,back=%v}", o.N, o.C, o.back)
	}
	return fmt.Sprintf("Hadamard{N=%d,C=%d,back=%v}", o.N, o.C, o.back)
}
func (o hadamardOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o hadamardOp) Hashcode() uint32      { return hashcode(o) }
func (o hadamardOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (o hadamardOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	b := o
	b.back, b.buf = true, newOutBuf()
	packed, err := G.ApplyOp(b, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.N, o.C})
}

func (o hadamardOp) outBuffer() *outBuf { return o.buf }
