package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// valueResidualOp: (v (N,C), vFirst (N,C), v0 (C), z (N,C)) -> v' (N,C), RWKV-7's value residual
// of layers l > 0:
//
//	v' = v + (vFirst - v) ⊙ σ(v0 + z),   z = (xv@v1)@v2
//
// fused into one pass (bias add, sigmoid, lerp). The backward recomputes σ:
// gv = g⊙(1-s), gvFirst = g⊙s, gz = g⊙(vFirst-v)⊙s⊙(1-s), gv0 = Σ_rows gz.
type valueResidualOp struct {
	opBase
	N, C int
	buf  *outBuf
}

// ValueResidual mixes each layer's value v with layer 0's value vFirst through the gate
// σ(v0 + z); v, vFirst, z are (N, C), v0 is (C).
func ValueResidual(v, vFirst, v0, z *G.Node) (*G.Node, error) {
	s := v.Shape()
	if len(s) != 2 || !vFirst.Shape().Eq(s) || !z.Shape().Eq(s) || v0.Dims() != 1 || v0.Shape()[0] != s[1] {
		return nil, fmt.Errorf("model: ValueResidual shapes v %v, vFirst %v, v0 %v, z %v do not fit", s, vFirst.Shape(), v0.Shape(), z.Shape())
	}
	return G.ApplyOp(valueResidualOp{N: s[0], C: s[1], buf: newOutBuf()}, v, vFirst, v0, z)
}

func (o valueResidualOp) Arity() int    { return 4 }
func (o valueResidualOp) Type() hm.Type { return hm.NewFnType(matT, matT, vecT, matT, matT) }
func (o valueResidualOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o valueResidualOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if !vresForwardFast(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d, o.N, o.C) {
			vresForward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d, o.N, o.C)
		}
	case []float64:
		vresForward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), d, o.N, o.C)
	}
	return out, nil
}
func (o valueResidualOp) String() string        { return fmt.Sprintf("ValueResidual{N=%d,C=%d}", o.N, o.C) }
func (o valueResidualOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o valueResidualOp) Hashcode() uint32      { return hashcode(o) }
func (o valueResidualOp) DiffWRT(int) []bool    { return []bool{true, true, true, true} }
func (o valueResidualOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(valueResidualBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], in[3], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.N, o.C}, []int{o.C}, []int{o.N, o.C})
}

func vresForward[F Float](v, vf, v0, z, out []F, N, C int) {
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for i := lo * C; i < hi*C; i++ {
			s := sigmoid(float64(v0[i%C]) + float64(z[i]))
			out[i] = F(float64(v[i]) + (float64(vf[i])-float64(v[i]))*s)
		}
	})
}

// valueResidualBackOp: (v, vFirst, v0, z, g) -> packed [gv (N*C) | gvFirst (N*C) | gv0 (C) | gz (N*C)].
type valueResidualBackOp struct {
	opBase
	fwd valueResidualOp
	buf *outBuf
}

func (o valueResidualBackOp) Arity() int { return 5 }
func (o valueResidualBackOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, vecT, matT, matT, vecT)
}
func (o valueResidualBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{3*o.fwd.N*o.fwd.C + o.fwd.C}, nil
}
func (o valueResidualBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	n := N * C
	out := o.buf.get(dtypeOf(in[0]), false, 3*n+C)
	switch d := out.Data().(type) {
	case []float32:
		if !vresBackwardFast(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d[:n], d[n:2*n], d[2*n:2*n+C], d[2*n+C:], N, C) {
			vresBackward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d[:n], d[n:2*n], d[2*n:2*n+C], d[2*n+C:], N, C)
		}
	case []float64:
		vresBackward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d[:n], d[n:2*n], d[2*n:2*n+C], d[2*n+C:], N, C)
	}
	return out, nil
}
func (o valueResidualBackOp) String() string        { return "ValueResidualBack" + o.fwd.String()[13:] }
func (o valueResidualBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o valueResidualBackOp) Hashcode() uint32      { return hashcode(o) }

func vresBackward[F Float](v, vf, v0, z, g, gv, gvf, gv0, gz []F, N, C int) {
	np := pieces(N, C)
	part := make([]float64, np*C)
	parallelFor(N, np, func(p, lo, hi int) {
		pp := part[p*C : (p+1)*C]
		for i := lo * C; i < hi*C; i++ {
			c := i % C
			s := sigmoid(float64(v0[c]) + float64(z[i]))
			gi := float64(g[i])
			gv[i] = F(gi * (1 - s))
			gvf[i] = F(gi * s)
			gzi := gi * (float64(vf[i]) - float64(v[i])) * s * (1 - s)
			gz[i] = F(gzi)
			pp[c] += gzi
		}
	})
	sumParts(part, np, C, 1, 0, gv0)
}

func (o valueResidualOp) outBuffer() *outBuf     { return o.buf }
func (o valueResidualBackOp) outBuffer() *outBuf { return o.buf }
