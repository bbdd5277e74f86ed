package model

import (
	"fmt"
	"hash"
	"math"

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

// rowStats is the mean and 1/sqrt(var+eps) of one row, in float64.
func rowStats[F Float](x []F) (mean, rstd float64) {
	for _, v := range x {
		mean += float64(v)
	}
	mean /= float64(len(x))
	var vr float64
	for _, v := range x {
		d := float64(v) - mean
		vr += d * d
	}
	vr /= float64(len(x))
	return mean, 1 / math.Sqrt(vr+lnEps)
}

func lnForward[F Float](x, w, b, y []F, N, C int) {
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*C:(r+1)*C], y[r*C:(r+1)*C]
			mean, rstd := rowStats(xr)
			for c, v := range xr {
				yr[c] = F((float64(v)-mean)*rstd*float64(w[c]) + float64(b[c]))
			}
		}
	})
}

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

func lnBackward[F Float](x, w, gy, gx, gw, gb []F, N, C int) {
	np := pieces(N, C)
	part := make([]float64, 2*np*C) // per piece: gw, gb partials
	parallelFor(N, np, func(p, lo, hi int) {
		pw, pb := part[2*p*C:(2*p+1)*C], part[(2*p+1)*C:(2*p+2)*C]
		for r := lo; r < hi; r++ {
			xr, gr, gxr := x[r*C:(r+1)*C], gy[r*C:(r+1)*C], gx[r*C:(r+1)*C]
			mean, rstd := rowStats(xr)
			var sg, sgx float64 // mean of gxhat and of gxhat*xhat
			for c := range xr {
				xh := (float64(xr[c]) - mean) * rstd
				g := float64(gr[c])
				gxh := g * float64(w[c])
				sg += gxh
				sgx += gxh * xh
				pw[c] += g * xh
				pb[c] += g
			}
			sg /= float64(C)
			sgx /= float64(C)
			for c := range xr {
				xh := (float64(xr[c]) - mean) * rstd
				gxr[c] = F(rstd * (float64(gr[c])*float64(w[c]) - sg - xh*sgx))
			}
		}
	})
	for c := 0; c < C; c++ {
		var sw, sb float64
		for p := 0; p < np; p++ {
			sw += part[2*p*C+c]
			sb += part[(2*p+1)*C+c]
		}
		gw[c], gb[c] = F(sw), F(sb)
	}
}

func (o layerNormOp) outBuffer() *outBuf     { return o.buf }
func (o layerNormBackOp) outBuffer() *outBuf { return o.buf }
