package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// groupNormGateOp: (x (N,C), weight (C), bias (C), z (N,C)) -> GroupNorm_H(x)⊙SiLU(z) (N,C), the
// end of RWKV-5.2's and RWKV-6's time mix before the output projection (ln_x of the WKV output
// times the gate SiLU(Wg xg)). It is groupNormOp, Activate(z, nil, ActSiLU) and Hadamard in one
// pass: the normalised y and the gate never exist as graph values, and the backward recomputes
// both. Statistics are taken in float64, as groupNormOp's.
type groupNormGateOp struct {
	opBase
	N, C, H int
	Eps     float64
	buf     *outBuf
}

// GroupNormGate is GroupNorm(x, weight, bias, H, eps) ⊙ SiLU(z) for x and z (N, C).
func GroupNormGate(x, weight, bias, z *G.Node, H int, eps float64) (*G.Node, error) {
	s := x.Shape()
	if len(s) != 2 || H <= 0 || s[1]%H != 0 || weight.Shape().TotalSize() != s[1] || bias.Shape().TotalSize() != s[1] || !z.Shape().Eq(s) {
		return nil, fmt.Errorf("model: GroupNormGate shapes x %v, weight %v, bias %v, gate %v do not fit H=%d groups",
			s, weight.Shape(), bias.Shape(), z.Shape(), H)
	}
	if !(eps > 0) {
		return nil, fmt.Errorf("model: GroupNormGate eps %g must be positive", eps)
	}
	return G.ApplyOp(groupNormGateOp{N: s[0], C: s[1], H: H, Eps: eps, buf: newOutBuf()}, x, weight, bias, z)
}

func (o groupNormGateOp) Arity() int    { return 4 }
func (o groupNormGateOp) Type() hm.Type { return hm.NewFnType(matT, vecT, vecT, matT, matT) }
func (o groupNormGateOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o groupNormGateOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if !gnGateForwardFast(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d, o.N, o.C, o.H, o.Eps) {
			gnGateForward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d, o.N, o.C, o.H, o.Eps)
		}
	case []float64:
		gnGateForward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), d, o.N, o.C, o.H, o.Eps)
	}
	return out, nil
}
func (o groupNormGateOp) String() string {
	return fmt.Sprintf("GroupNormGate{N=%d,C=%d,H=%d,eps=%g}", o.N, o.C, o.H, o.Eps)
}
func (o groupNormGateOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o groupNormGateOp) Hashcode() uint32      { return hashcode(o) }
func (o groupNormGateOp) DiffWRT(int) []bool    { return []bool{true, true, true, true} }
func (o groupNormGateOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(groupNormGateBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], in[3], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.C}, []int{o.C}, []int{o.N, o.C})
}

func gnGateForward[F Float](x, w, b, z, y []F, N, C, H int, eps float64) {
	S := C / H
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for i := lo * C; i < hi*C; i += S {
			xg, zg, yg := x[i:i+S], z[i:i+S], y[i:i+S]
			c0 := i % C
			wg, bg := w[c0:c0+S], b[c0:c0+S]
			mean, rstd := groupStats(xg, eps)
			for j, v := range xg {
				zj := float64(zg[j])
				yg[j] = F(((float64(v)-mean)*rstd*float64(wg[j]) + float64(bg[j])) * zj * sigmoid(zj))
			}
		}
	})
}

// groupNormGateBackOp: (x, weight, bias, z, gy) -> packed [gx (N*C) | gweight (C) | gbias (C) | gz (N*C)].
type groupNormGateBackOp struct {
	opBase
	fwd groupNormGateOp
	buf *outBuf
}

func (o groupNormGateBackOp) Arity() int { return 5 }
func (o groupNormGateBackOp) Type() hm.Type {
	return hm.NewFnType(matT, vecT, vecT, matT, matT, vecT)
}
func (o groupNormGateBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{2*o.fwd.N*o.fwd.C + 2*o.fwd.C}, nil
}
func (o groupNormGateBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C, H, eps := o.fwd.N, o.fwd.C, o.fwd.H, o.fwd.Eps
	out := o.buf.get(dtypeOf(in[0]), false, 2*N*C+2*C)
	switch d := out.Data().(type) {
	case []float32:
		gx, gw, gb, gz := d[:N*C], d[N*C:N*C+C], d[N*C+C:N*C+2*C], d[N*C+2*C:]
		if !gnGateBackwardFast(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), gx, gw, gb, gz, N, C, H, eps) {
			gnGateBackward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), gx, gw, gb, gz, N, C, H, eps)
		}
	case []float64:
		gnGateBackward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d[:N*C], d[N*C:N*C+C], d[N*C+C:N*C+2*C], d[N*C+2*C:], N, C, H, eps)
	}
	return out, nil
}
func (o groupNormGateBackOp) String() string        { return "GroupNormGateBack" + o.fwd.String()[13:] }
func (o groupNormGateBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o groupNormGateBackOp) Hashcode() uint32      { return hashcode(o) }

// gnGateBackward: per group, with x̂ = (x-mean)·rstd, n = x̂·w + b, s = σ(z), the GroupNorm's
// upstream gradient q = gy·z·s and ĝ = q·w:
// gz = gy·n·s·(1 + z(1-s)), gx = rstd·(ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)), gw = Σ_rows q·x̂, gb = Σ_rows q.
func gnGateBackward[F Float](x, w, b, z, gy, gx, gw, gb, gz []F, N, C, H int, eps float64) {
	S := C / H
	np := pieces(N, C)
	part := make([]float64, 2*np*C) // per piece: gw, gb partials
	parallelFor(N, np, func(p, lo, hi int) {
		pw, pb := part[2*p*C:(2*p+1)*C], part[(2*p+1)*C:(2*p+2)*C]
		gh := make([]float64, S) // ĝ of the group
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			xg, zg, gg, gxg, gzg := x[i:i+S], z[i:i+S], gy[i:i+S], gx[i:i+S], gz[i:i+S]
			wg, bg := w[c0:c0+S], b[c0:c0+S]
			pwg, pbg := pw[c0:c0+S], pb[c0:c0+S]
			mean, rstd := groupStats(xg, eps)
			var sg, sgx float64
			for j := range xg {
				xh := (float64(xg[j]) - mean) * rstd
				zj, g := float64(zg[j]), float64(gg[j])
				s := sigmoid(zj)
				gzg[j] = F(g * (xh*float64(wg[j]) + float64(bg[j])) * s * (1 + zj*(1-s)))
				q := g * zj * s
				gh[j] = q * float64(wg[j])
				sg += gh[j]
				sgx += gh[j] * xh
				pwg[j] += q * xh
				pbg[j] += q
			}
			sg /= float64(S)
			sgx /= float64(S)
			for j := range xg {
				xh := (float64(xg[j]) - mean) * rstd
				gxg[j] = F(rstd * (gh[j] - sg - xh*sgx))
			}
		}
	})
	sumParts(part, np, C, 2, 0, gw)
	sumParts(part, np, C, 2, 1, gb)
}

func (o groupNormGateOp) outBuffer() *outBuf     { return o.buf }
func (o groupNormGateBackOp) outBuffer() *outBuf { return o.buf }
