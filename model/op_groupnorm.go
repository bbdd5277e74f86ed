package model

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// GroupNormEpsX070 is the epsilon of RWKV-7's ln_x GroupNorm (64e-5 = 1e-5·8², written out in x070).
const GroupNormEpsX070 = 64e-5

// groupNormOp: (x (N,C), weight (C), bias (C)) -> y (N,C). Every row of x is cut into H groups of
// C/H consecutive channels (one group per head), and each group is normalised on its own:
//
//	y[r, h*S+j] = (x[r,h*S+j] - mean_rh) / sqrt(var_rh + eps) * weight[h*S+j] + bias[h*S+j],  S = C/H
//
// with the biased variance, as torch.nn.GroupNorm(H, C, eps) on a (N, C) input. Statistics are
// taken in float64 for both dtypes; the backward recomputes them.
type groupNormOp struct {
	opBase
	N, C, H int
	Eps     float64
	buf     *outBuf
}

// GroupNorm normalises each of the H channel groups of every row of x (N, C) and applies the
// per-channel affine weight (C) and bias (C). C must be a multiple of H. RWKV-7's ln_x is
// GroupNorm(x, w, b, H, GroupNormEpsX070).
func GroupNorm(x, weight, bias *G.Node, H int, eps float64) (*G.Node, error) {
	s := x.Shape()
	if len(s) != 2 || H <= 0 || s[1]%H != 0 || weight.Shape().TotalSize() != s[1] || bias.Shape().TotalSize() != s[1] {
		return nil, fmt.Errorf("model: GroupNorm shapes x %v, weight %v, bias %v do not fit H=%d groups", s, weight.Shape(), bias.Shape(), H)
	}
	if !(eps > 0) {
		return nil, fmt.Errorf("model: GroupNorm eps %g must be positive", eps)
	}
	return G.ApplyOp(groupNormOp{N: s[0], C: s[1], H: H, Eps: eps, buf: newOutBuf()}, x, weight, bias)
}

func (o groupNormOp) Arity() int    { return 3 }
func (o groupNormOp) Type() hm.Type { return hm.NewFnType(matT, vecT, vecT, matT) }
func (o groupNormOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o groupNormOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		gnForward(f32(in[0]), f32(in[1]), f32(in[2]), d, o.N, o.C, o.H, o.Eps)
	case []float64:
		gnForward(f64(in[0]), f64(in[1]), f64(in[2]), d, o.N, o.C, o.H, o.Eps)
	}
	return out, nil
}
func (o groupNormOp) String() string {
	return fmt.Sprintf("GroupNorm{N=%d,C=%d,H=%d,eps=%g}", o.N, o.C, o.H, o.Eps)
}
func (o groupNormOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o groupNormOp) Hashcode() uint32      { return hashcode(o) }
func (o groupNormOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (o groupNormOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(groupNormBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.C}, []int{o.C})
}

// groupStats is the mean and 1/sqrt(var+eps) of one group (a LayerNorm row), in float64.
func groupStats[F Float](x []F, eps float64) (mean, rstd float64) {
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
	return mean, 1 / math.Sqrt(vr+eps)
}

func gnForward[F Float](x, w, b, y []F, N, C, H int, eps float64) {
	S := C / H
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for i := lo * C; i < hi*C; i += S {
			xg, yg := x[i:i+S], y[i:i+S]
			c0 := i % C
			wg, bg := w[c0:c0+S], b[c0:c0+S]
			mean, rstd := groupStats(xg, eps)
			for j, v := range xg {
				yg[j] = F((float64(v)-mean)*rstd*float64(wg[j]) + float64(bg[j]))
			}
		}
	})
}

// groupNormBackOp: (x, weight, gy) -> packed [gx (N*C) | gweight (C) | gbias (C)].
type groupNormBackOp struct {
	opBase
	fwd groupNormOp
	buf *outBuf
}

func (o groupNormBackOp) Arity() int    { return 3 }
func (o groupNormBackOp) Type() hm.Type { return hm.NewFnType(matT, vecT, matT, vecT) }
func (o groupNormBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.fwd.N*o.fwd.C + 2*o.fwd.C}, nil
}
func (o groupNormBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	out := o.buf.get(dtypeOf(in[0]), false, N*C+2*C)
	switch d := out.Data().(type) {
	case []float32:
		gnBackward(f32(in[0]), f32(in[1]), f32(in[2]), d[:N*C], d[N*C:N*C+C], d[N*C+C:], N, C, o.fwd.H, o.fwd.Eps)
	case []float64:
		gnBackward(f64(in[0]), f64(in[1]), f64(in[2]), d[:N*C], d[N*C:N*C+C], d[N*C+C:], N, C, o.fwd.H, o.fwd.Eps)
	}
	return out, nil
}
func (o groupNormBackOp) String() string        { return "GroupNormBack" + o.fwd.String()[9:] }
func (o groupNormBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o groupNormBackOp) Hashcode() uint32      { return hashcode(o) }

// gnBackward: per group, with x̂ = (x-mean)·rstd and ĝ = gy·w,
// gx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), gw = Σ_rows gy·x̂, gb = Σ_rows gy.
func gnBackward[F Float](x, w, gy, gx, gw, gb []F, N, C, H int, eps float64) {
	S := C / H
	np := pieces(N, C)
	part := make([]float64, 2*np*C) // per piece: gw, gb partials
	parallelFor(N, np, func(p, lo, hi int) {
		pw, pb := part[2*p*C:(2*p+1)*C], part[(2*p+1)*C:(2*p+2)*C]
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			xg, gg, gxg, wg := x[i:i+S], gy[i:i+S], gx[i:i+S], w[c0:c0+S]
			pwg, pbg := pw[c0:c0+S], pb[c0:c0+S]
			mean, rstd := groupStats(xg, eps)
			var sg, sgx float64
			for j := range xg {
				xh := (float64(xg[j]) - mean) * rstd
				g := float64(gg[j])
				gxh := g * float64(wg[j])
				sg += gxh
				sgx += gxh * xh
				pwg[j] += g * xh
				pbg[j] += g
			}
			sg /= float64(S)
			sgx /= float64(S)
			for j := range xg {
				xh := (float64(xg[j]) - mean) * rstd
				gxg[j] = F(rstd * (float64(gg[j])*float64(wg[j]) - sg - xh*sgx))
			}
		}
	})
	sumParts(part, np, C, 2, 0, gw)
	sumParts(part, np, C, 2, 1, gb)
}

// sumParts adds up per-piece column partials: part holds np pieces, each of stride blocks of C
// values; out[c] = Σ_p part[(p*stride+which)*C + c]. The order is fixed, so results are
// deterministic.
func sumParts[F Float](part []float64, np, C, stride, which int, out []F) {
	for c := 0; c < C; c++ {
		var s float64
		for p := 0; p < np; p++ {
			s += part[(p*stride+which)*C+c]
		}
		out[c] = F(s)
	}
}

func (o groupNormOp) outBuffer() *outBuf     { return o.buf }
func (o groupNormBackOp) outBuffer() *outBuf { return o.buf }
