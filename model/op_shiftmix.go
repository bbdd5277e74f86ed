package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// shiftMixOp is RWKV's token shift fused with one mix:
//
//	out[b,t] = x[b,t]*mix + xx[b,t]*(1-mix),  xx[b,t] = x[b,t-1] for t > 0, xx[b,0] = prev[b]
//
// x, out: (B*T, C); prev: (B, C), the last x of the previous chunk (zeros for a fresh sequence);
// mix: (C).
type shiftMixOp struct {
	opBase
	B, T, C int
	buf     *outBuf
}

// ShiftMix mixes every token of x with the one before it.
func ShiftMix(x, prev, mix *G.Node, B, T int) (*G.Node, error) {
	C := x.Shape()[1]
	if x.Shape()[0] != B*T || prev.Shape()[0] != B {
		return nil, fmt.Errorf("model: ShiftMix shapes x %v, prev %v do not fit B=%d T=%d", x.Shape(), prev.Shape(), B, T)
	}
	return G.ApplyOp(shiftMixOp{B: B, T: T, C: C, buf: newOutBuf()}, x, prev, mix)
}

func (o shiftMixOp) Arity() int    { return 3 }
func (o shiftMixOp) Type() hm.Type { return hm.NewFnType(matT, matT, vecT, matT) }
func (o shiftMixOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.B * o.T, o.C}, nil
}
func (o shiftMixOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.B*o.T, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if !shiftMixForwardFast(f32(in[0]), f32(in[1]), f32(in[2]), d, o.B, o.T, o.C) {
			shiftMixForward(f32(in[0]), f32(in[1]), f32(in[2]), d, o.B, o.T, o.C)
		}
	case []float64:
		shiftMixForward(f64(in[0]), f64(in[1]), f64(in[2]), d, o.B, o.T, o.C)
	}
	return out, nil
}
func (o shiftMixOp) String() string        { return fmt.Sprintf("ShiftMix{B=%d,T=%d,C=%d}", o.B, o.T, o.C) }
func (o shiftMixOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftMixOp) Hashcode() uint32      { return hashcode(o) }
func (o shiftMixOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (o shiftMixOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(shiftMixBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.B * o.T, o.C}, []int{o.B, o.C}, []int{o.C})
}

// prevRow is the row before token t of sequence b: x's previous row, or prev[b] at t == 0.
func prevRow[F Float](x, prev []F, b, t, T, C int) []F {
	if t == 0 {
		return prev[b*C : (b+1)*C]
	}
	r := b*T + t - 1
	return x[r*C : (r+1)*C]
}

func shiftMixForward[F Float](x, prev, mix, out []F, B, T, C int) {
	parallelFor(B*T, pieces(B*T, C), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx, or := x[r*C:(r+1)*C], prevRow(x, prev, b, t, T, C), out[r*C:(r+1)*C]
			for c, m := range mix {
				or[c] = xr[c]*m + xx[c]*(1-m)
			}
		}
	})
}

// shiftMixBackOp: (x, prev, mix, g) -> packed [gx (B*T*C) | gprev (B*C) | gmix (C)].
type shiftMixBackOp struct {
	opBase
	fwd shiftMixOp
	buf *outBuf
}

func (o shiftMixBackOp) Arity() int    { return 4 }
func (o shiftMixBackOp) Type() hm.Type { return hm.NewFnType(matT, matT, vecT, matT, vecT) }
func (o shiftMixBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	B, T, C := o.fwd.B, o.fwd.T, o.fwd.C
	return tensor.Shape{B*T*C + B*C + C}, nil
}
func (o shiftMixBackOp) Do(in ...G.Value) (G.Value, error) {
	B, T, C := o.fwd.B, o.fwd.T, o.fwd.C
	n := B * T * C
	out := o.buf.get(dtypeOf(in[0]), false, n+B*C+C)
	switch d := out.Data().(type) {
	case []float32:
		if !shiftMixBackwardFast(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d[:n], d[n:n+B*C], d[n+B*C:], B, T, C) {
			shiftMixBackward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d[:n], d[n:n+B*C], d[n+B*C:], B, T, C)
		}
	case []float64:
		shiftMixBackward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), d[:n], d[n:n+B*C], d[n+B*C:], B, T, C)
	}
	return out, nil
}
func (o shiftMixBackOp) String() string        { return "ShiftMixBack" + o.fwd.String()[8:] }
func (o shiftMixBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftMixBackOp) Hashcode() uint32      { return hashcode(o) }

func shiftMixBackward[F Float](x, prev, mix, g, gx, gprev, gmix []F, B, T, C int) {
	np := pieces(B*T, C)
	part := make([]float64, np*C)
	parallelFor(B*T, np, func(p, lo, hi int) {
		pm := part[p*C : (p+1)*C]
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx, gr, gxr := x[r*C:(r+1)*C], prevRow(x, prev, b, t, T, C), g[r*C:(r+1)*C], gx[r*C:(r+1)*C]
			for c, m := range mix {
				pm[c] += float64(gr[c]) * float64(xr[c]-xx[c])
				gxr[c] = gr[c] * m
			}
			if t+1 < T { // the next token's shift reads this row
				gn := g[(r+1)*C : (r+2)*C]
				for c, m := range mix {
					gxr[c] += gn[c] * (1 - m)
				}
			}
			if t == 0 {
				gp := gprev[b*C : (b+1)*C]
				for c, m := range mix {
					gp[c] = gr[c] * (1 - m)
				}
			}
		}
	})
	for c := 0; c < C; c++ {
		var s float64
		for p := 0; p < np; p++ {
			s += part[p*C+c]
		}
		gmix[c] = F(s)
	}
}

func (o shiftMixOp) outBuffer() *outBuf     { return o.buf }
func (o shiftMixBackOp) outBuffer() *outBuf { return o.buf }
