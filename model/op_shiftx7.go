package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// shiftLerpOp is RWKV-5/6/7's token shift with K mixes (x070: x_r, x_w, x_k, x_v, x_a, x_g):
//
//	out_i[b,t] = x[b,t] + (xx[b,t] - x[b,t]) ⊙ mix_i,  xx[b,t] = x[b,t-1] for t > 0, xx[b,0] = prev[b]
//
// x: (B*T, C); prev: (B, C), the last x of the previous chunk (zeros for a fresh sequence);
// mix_i: (C). This equals ShiftMix (RWKV-4's x⊙m + xx⊙(1-m)) with m = 1 - mix_i, but takes the
// RWKV-LM parameter as stored. With K = 1 the output is out_1 (B*T, C); with K > 1 it is packed
// (K*B*T, C) and split into K extract views.
//
// ShiftLerp builds one K = 1 node per mix. The fused K = 6 node (δ computed once, one pass) is
// faster as a kernel but slower in the graph: the gradient of a packed output is the sum of one
// zeroed full-size scatter per view (six 6·N·C scatters and five 6·N·C additions), while six
// single nodes cost five N·C additions for gx. BenchmarkX070ShiftGraph, B8 T256 C512 float32,
// forward+backward with Gorgonia's gradient plumbing (load 4-5 on 2 cores): fused 62-133 ms,
// six single nodes 34-53 ms.
type shiftLerpOp struct {
	opBase
	B, T, C, K int
	buf        *outBuf
}

// ShiftLerp returns x + (shift(x) - x) ⊙ mix_i for every mix in mixes (each (C)), one (B*T, C)
// node per mix; x is (B*T, C) and prev (B, C).
func ShiftLerp(x, prev *G.Node, mixes G.Nodes, B, T int) (G.Nodes, error) {
	if err := checkShiftLerp(x, prev, mixes, B, T); err != nil {
		return nil, err
	}
	out := make(G.Nodes, len(mixes))
	for i, m := range mixes {
		n, err := G.ApplyOp(shiftLerpOp{B: B, T: T, C: x.Shape()[1], K: 1, buf: newOutBuf()}, x, prev, m)
		if err != nil {
			return nil, fmt.Errorf("model: ShiftLerp mix %d: %w", i, err)
		}
		out[i] = n
	}
	return out, nil
}

// shiftLerpFused is ShiftLerp as one K-mix node with a packed output (kept for the comparison
// benchmark and its gradient test).
func shiftLerpFused(x, prev *G.Node, mixes G.Nodes, B, T int) (G.Nodes, error) {
	if err := checkShiftLerp(x, prev, mixes, B, T); err != nil {
		return nil, err
	}
	K, N, C := len(mixes), B*T, x.Shape()[1]
	in := append(G.Nodes{x, prev}, mixes...)
	packed, err := G.ApplyOp(shiftLerpOp{B: B, T: T, C: C, K: K, buf: newOutBuf()}, in...)
	if err != nil || K == 1 {
		return G.Nodes{packed}, err
	}
	shapes := make([][]int, K)
	for i := range shapes {
		shapes[i] = []int{N, C}
	}
	return split(packed, shapes...)
}

func checkShiftLerp(x, prev *G.Node, mixes G.Nodes, B, T int) error {
	s := x.Shape()
	if len(s) != 2 || s[0] != B*T || len(prev.Shape()) != 2 || prev.Shape()[0] != B || prev.Shape()[1] != s[1] || len(mixes) == 0 {
		return fmt.Errorf("model: ShiftLerp shapes x %v, prev %v, %d mixes do not fit B=%d T=%d", s, prev.Shape(), len(mixes), B, T)
	}
	for i, m := range mixes {
		if m.Dims() != 1 || m.Shape()[0] != s[1] {
			return fmt.Errorf("model: ShiftLerp mix %d has shape %v, want (%d)", i, m.Shape(), s[1])
		}
	}
	return nil
}

func (o shiftLerpOp) Arity() int { return 2 + o.K }
func (o shiftLerpOp) Type() hm.Type {
	ts := []hm.Type{matT, matT}
	for range o.K {
		ts = append(ts, vecT)
	}
	return hm.NewFnType(append(ts, matT)...)
}
func (o shiftLerpOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.K * o.B * o.T, o.C}, nil
}
func (o shiftLerpOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.K*o.B*o.T, o.C)
	switch d := out.Data().(type) {
	case []float32:
		if x, p, m := f32(in[0]), f32(in[1]), vecs[float32](in[2:]); !shiftLerpForwardFast(x, p, m, d, o.B, o.T, o.C) {
			shiftLerpForward(x, p, m, d, o.B, o.T, o.C)
		}
	case []float64:
		shiftLerpForward(f64(in[0]), f64(in[1]), vecs[float64](in[2:]), d, o.B, o.T, o.C)
	}
	return out, nil
}
func (o shiftLerpOp) String() string {
	return fmt.Sprintf("ShiftLerp{B=%d,T=%d,C=%d,K=%d}", o.B, o.T, o.C, o.K)
}
func (o shiftLerpOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftLerpOp) Hashcode() uint32      { return hashcode(o) }
func (o shiftLerpOp) DiffWRT(int) []bool {
	d := make([]bool, 2+o.K)
	for i := range d {
		d[i] = true
	}
	return d
}
func (o shiftLerpOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(shiftLerpBackOp{fwd: o, buf: newOutBuf()}, append(in[:len(in):len(in)], grad)...)
	if err != nil {
		return nil, err
	}
	shapes := [][]int{{o.B * o.T, o.C}, {o.B, o.C}}
	for range o.K {
		shapes = append(shapes, []int{o.C})
	}
	return split(packed, shapes...)
}

func vecs[F Float](in []G.Value) [][]F {
	out := make([][]F, len(in))
	for i, v := range in {
		out[i] = v.Data().([]F)
	}
	return out
}

func shiftLerpForward[F Float](x, prev []F, mixes [][]F, out []F, B, T, C int) {
	N := B * T
	parallelFor(N, pieces(N, C*len(mixes)), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx := x[r*C:(r+1)*C], prevRow(x, prev, b, t, T, C)
			for i, m := range mixes {
				or := out[(i*N+r)*C : (i*N+r+1)*C]
				for c, mc := range m {
					or[c] = xr[c] + (xx[c]-xr[c])*mc
				}
			}
		}
	})
}

// shiftLerpBackOp: (x, prev, mix_1..K, g (K*B*T, C)) -> packed
// [gx (B*T*C) | gprev (B*C) | gmix_1 (C) | ... | gmix_K (C)].
type shiftLerpBackOp struct {
	opBase
	fwd shiftLerpOp
	buf *outBuf
}

func (o shiftLerpBackOp) Arity() int { return 3 + o.fwd.K }
func (o shiftLerpBackOp) Type() hm.Type {
	ts := []hm.Type{matT, matT}
	for range o.fwd.K {
		ts = append(ts, vecT)
	}
	return hm.NewFnType(append(ts, matT, vecT)...)
}
func (o shiftLerpBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	B, T, C, K := o.fwd.B, o.fwd.T, o.fwd.C, o.fwd.K
	return tensor.Shape{B*T*C + B*C + K*C}, nil
}
func (o shiftLerpBackOp) Do(in ...G.Value) (G.Value, error) {
	B, T, C, K := o.fwd.B, o.fwd.T, o.fwd.C, o.fwd.K
	n := B * T * C
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		x, p, m, g := f32(in[0]), f32(in[1]), vecs[float32](in[2:2+K]), f32(in[2+K])
		if !shiftLerpBackwardFast(x, p, m, g, d[:n], d[n:n+B*C], d[n+B*C:], B, T, C) {
			shiftLerpBackward(x, p, m, g, d[:n], d[n:n+B*C], d[n+B*C:], B, T, C)
		}
	case []float64:
		shiftLerpBackward(f64(in[0]), f64(in[1]), vecs[float64](in[2:2+K]), f64(in[2+K]), d[:n], d[n:n+B*C], d[n+B*C:], B, T, C)
	}
	return out, nil
}
func (o shiftLerpBackOp) String() string        { return "ShiftLerpBack" + o.fwd.String()[9:] }
func (o shiftLerpBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftLerpBackOp) Hashcode() uint32      { return hashcode(o) }

// shiftLerpBackward: with δ = xx - x and g_i the gradient of out_i,
// gx[r] = Σ_i g_i[r]⊙(1-m_i) + Σ_i g_i[r+1]⊙m_i (when r+1 is in the same sequence),
// gprev[b] = Σ_i g_i[b,0]⊙m_i, gm_i = Σ_rows g_i⊙δ.
func shiftLerpBackward[F Float](x, prev []F, mixes [][]F, g, gx, gprev, gmix []F, B, T, C int) {
	N, K := B*T, len(mixes)
	np := pieces(N, C*K)
	part := make([]float64, np*K*C)
	parallelFor(N, np, func(p, lo, hi int) {
		pm := part[p*K*C : (p+1)*K*C]
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx, gxr := x[r*C:(r+1)*C], prevRow(x, prev, b, t, T, C), gx[r*C:(r+1)*C]
			var gp []F
			if t == 0 {
				gp = gprev[b*C : (b+1)*C]
				clear(gp)
			}
			clear(gxr)
			for i, m := range mixes {
				gr, pmi := g[(i*N+r)*C:(i*N+r+1)*C], pm[i*C:(i+1)*C]
				for c, mc := range m {
					pmi[c] += float64(gr[c]) * float64(xx[c]-xr[c])
					gxr[c] += gr[c] * (1 - mc)
				}
				if t+1 < T { // the next token's shift reads this row
					gn := g[(i*N+r+1)*C : (i*N+r+2)*C]
					for c, mc := range m {
						gxr[c] += gn[c] * mc
					}
				}
				if gp != nil {
					for c, mc := range m {
						gp[c] += gr[c] * mc
					}
				}
			}
		}
	})
	sumParts(part, np, K*C, 1, 0, gmix)
}

func (o shiftLerpOp) outBuffer() *outBuf     { return o.buf }
func (o shiftLerpBackOp) outBuffer() *outBuf { return o.buf }
