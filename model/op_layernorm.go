package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// lnEps is LayerNorm's epsilon in RWKV-LM (torch's default).
const lnEps = 1e-5

// layerNormOp: (x (N,C), weight (C), bias (C)) -> (x - mean)/sqrt(var + eps)*weight + bias per row.
type layerNormOp struct {
	opBase
	N, C int
	buf  *outBuf
}

// LayerNorm normalises each row of x (N, C).
func LayerNorm(x, weight, bias *G.Node) (*G.Node, error) {
	s := x.Shape()
	return G.ApplyOp(layerNormOp{N: s[0], C: s[1], buf: newOutBuf()}, x, weight, bias)
}

func (o layerNormOp) Arity() int    { return 3 }
func (o layerNormOp) Type() hm.Type { return hm.NewFnType(matT, vecT, vecT, matT) }
func (o layerNormOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o layerNormOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if !lnForwardFast(f32(in[0]), f32(in[1]), f32(in[2]), d, o.N, o.C) {
			lnForward(f32(in[0]), f32(in[1]), f32(in[2]), d, o.N, o.C)
		}
	case []float64:
		lnForward(f64(in[0]), f64(in[1]), f64(in[2]), d, o.N, o.C)
	}
	return out, nil
}
func (o layerNormOp) String() string        { return fmt.Sprintf("LayerNorm{N=%d,C=%d}", o.N, o.C) }
func (o layerNormOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o layerNormOp) Hashcode() uint32      { return hashcode(o) }
func (o layerNormOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (o layerNormOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(layerNormBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.C}, []int{o.C})
}

// lnForward is LayerNorm over the rows of x (N, C): GroupNorm with one group and RWKV-LM's
// epsilon (the same float64 arithmetic, so the same results).
func lnForward[F Float](x, w, b, y []F, N, C int) { gnForward(x, w, b, y, N, C, 1, lnEps) }

// layerNormBackOp: (x, weight, gy) -> packed [gx (N*C) | gweight (C) | gbias (C)]. It recomputes
// the row statistics rather than keeping them from the forward pass.
type layerNormBackOp struct {
	opBase
	fwd layerNormOp
	buf *outBuf
}

func (o layerNormBackOp) Arity() int    { return 3 }
func (o layerNormBackOp) Type() hm.Type { return hm.NewFnType(matT, vecT, matT, vecT) }
func (o layerNormBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.fwd.N*o.fwd.C + 2*o.fwd.C}, nil
}
func (o layerNormBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	out := o.buf.get(dtypeOf(in[0]), false, N*C+2*C)
	switch d := out.Data().(type) {
	case []float32:
		if !lnBackwardFast(f32(in[0]), f32(in[1]), f32(in[2]), d[:N*C], d[N*C:N*C+C], d[N*C+C:], N, C) {
			lnBackward(f32(in[0]), f32(in[1]), f32(in[2]), d[:N*C], d[N*C:N*C+C], d[N*C+C:], N, C)
		}
	case []float64:
		lnBackward(f64(in[0]), f64(in[1]), f64(in[2]), d[:N*C], d[N*C:N*C+C], d[N*C+C:], N, C)
	}
	return out, nil
}
func (o layerNormBackOp) String() string        { return "LayerNormBack" + o.fwd.String()[9:] }
func (o layerNormBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o layerNormBackOp) Hashcode() uint32      { return hashcode(o) }

// lnBackward is LayerNorm's backward pass: GroupNorm's with one group.
func lnBackward[F Float](x, w, gy, gx, gw, gb []F, N, C int) {
	gnBackward(x, w, gy, gx, gw, gb, N, C, 1, lnEps)
}

func (o layerNormOp) outBuffer() *outBuf     { return o.buf }
func (o layerNormBackOp) outBuffer() *outBuf { return o.buf }
