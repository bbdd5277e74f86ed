package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// bonusOp: (o (N,C), r (N,C), k (N,C), v (N,C), rk (H,S) or (C)) -> (N,C), RWKV-7's "bonus" added
// after ln_x, with S = C/H channels per head and rk = att.r_k, row-major (H, S):
//
//	out[row, h*S+j] = o[row, h*S+j] + s[row,h] · v[row, h*S+j],   s[row,h] = Σ_j r·k·rk over head h
//
// k and v are the modified key and the value-residual value that the WKV-7 op consumed. The
// backward: go = g (passed through), gv = s·g, gs = Σ_j g·v, gr = gs·k·rk, gk = gs·r·rk,
// grk = Σ_rows gs·r·k.
type bonusOp struct {
	opBase
	N, C, H int
	RkDims  int // 2 for r_k as (H, S), 1 for r_k as (C)
	buf     *outBuf
}

// Bonus adds the per-head r_k bonus to o; o, r, k, v are (N, C), r_k is att.r_k as (H, S) or
// flattened to (C) (graphShape gives (S) when H = 1).
func Bonus(o, r, k, v, rk *G.Node, H int) (*G.Node, error) {
	s := o.Shape()
	rs := rk.Shape()
	rkOK := H > 0 && (rk.Dims() == 1 && rs[0] == s[1] || rk.Dims() == 2 && rs[0] == H && rs[0]*rs[1] == s[1])
	if len(s) != 2 || H <= 0 || s[1]%H != 0 || !r.Shape().Eq(s) || !k.Shape().Eq(s) || !v.Shape().Eq(s) || !rkOK {
		return nil, fmt.Errorf("model: Bonus shapes o %v, r %v, k %v, v %v, r_k %v do not fit H=%d", s, r.Shape(), k.Shape(), v.Shape(), rs, H)
	}
	return G.ApplyOp(bonusOp{N: s[0], C: s[1], H: H, RkDims: rk.Dims(), buf: newOutBuf()}, o, r, k, v, rk)
}

func (o bonusOp) Arity() int { return 5 }
func (o bonusOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, matT, tensorType(o.RkDims), matT)
}
func (o bonusOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o bonusOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		bonusForward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d, o.N, o.C, o.H)
	case []float64:
		bonusForward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d, o.N, o.C, o.H)
	}
	return out, nil
}
func (o bonusOp) String() string {
	return fmt.Sprintf("Bonus{N=%d,C=%d,H=%d,rk=%dD}", o.N, o.C, o.H, o.RkDims)
}
func (o bonusOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o bonusOp) Hashcode() uint32      { return hashcode(o) }
func (o bonusOp) DiffWRT(int) []bool    { return []bool{true, true, true, true, true} }
func (o bonusOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(bonusBackOp{fwd: o, buf: newOutBuf()}, in[1], in[2], in[3], in[4], grad)
	if err != nil {
		return nil, err
	}
	grkShape := []int{o.C}
	if o.RkDims == 2 {
		grkShape = []int{o.H, o.C / o.H}
	}
	parts, err := split(packed, []int{o.N, o.C}, []int{o.N, o.C}, []int{o.N, o.C}, grkShape)
	if err != nil {
		return nil, err
	}
	return G.Nodes{grad, parts[0], parts[1], parts[2], parts[3]}, nil
}

func bonusForward[F Float](o, r, k, v, rk, out []F, N, C, H int) {
	S := C / H
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			var s float64
			for j := 0; j < S; j++ {
				s += float64(r[i+j]) * float64(k[i+j]) * float64(rk[c0+j])
			}
			for j := 0; j < S; j++ {
				out[i+j] = F(float64(o[i+j]) + s*float64(v[i+j]))
			}
		}
	})
}

// bonusBackOp: (r, k, v, rk, g) -> packed [gr (N*C) | gk (N*C) | gv (N*C) | grk (C)].
type bonusBackOp struct {
	opBase
	fwd bonusOp
	buf *outBuf
}

func (o bonusBackOp) Arity() int { return 5 }
func (o bonusBackOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, tensorType(o.fwd.RkDims), matT, vecT)
}
func (o bonusBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{3*o.fwd.N*o.fwd.C + o.fwd.C}, nil
}
func (o bonusBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	n := N * C
	out := o.buf.get(dtypeOf(in[0]), false, 3*n+C)
	switch d := out.Data().(type) {
	case []float32:
		bonusBackward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d[:n], d[n:2*n], d[2*n:3*n], d[3*n:], N, C, o.fwd.H)
	case []float64:
		bonusBackward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d[:n], d[n:2*n], d[2*n:3*n], d[3*n:], N, C, o.fwd.H)
	}
	return out, nil
}
func (o bonusBackOp) String() string        { return "BonusBack" + o.fwd.String()[5:] }
func (o bonusBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o bonusBackOp) Hashcode() uint32      { return hashcode(o) }

func bonusBackward[F Float](r, k, v, rk, g, gr, gk, gv, grk []F, N, C, H int) {
	S := C / H
	np := pieces(N, C)
	part := make([]float64, np*C)
	parallelFor(N, np, func(p, lo, hi int) {
		pp := part[p*C : (p+1)*C]
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			var s, gs float64
			for j := 0; j < S; j++ {
				s += float64(r[i+j]) * float64(k[i+j]) * float64(rk[c0+j])
				gs += float64(g[i+j]) * float64(v[i+j])
			}
			for j := 0; j < S; j++ {
				rj, kj, rkj := float64(r[i+j]), float64(k[i+j]), float64(rk[c0+j])
				gv[i+j] = F(s * float64(g[i+j]))
				gr[i+j] = F(gs * kj * rkj)
				gk[i+j] = F(gs * rj * rkj)
				pp[c0+j] += gs * rj * kj
			}
		}
	})
	sumParts(part, np, C, 1, 0, grk)
}

func (o bonusOp) outBuffer() *outBuf     { return o.buf }
func (o bonusBackOp) outBuffer() *outBuf { return o.buf }
