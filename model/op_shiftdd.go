package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// shiftLoRAOp is one of RWKV-6's data-dependent token shifts (RWKV-LM RWKV_Tmix_x060; mix I of
// the K = 5 in the order w, k, v, r, g):
//
//	out[b,t] = x[b,t] + δ[b,t] ⊙ (maa + m_I[b,t]),  δ = xx − x,  xx[b,t] = x[b,t-1] (t > 0), prev[b] (t = 0)
//	m_I = A[:, I·M:(I+1)·M] · w2[I]              (A = tanh(xxx @ time_maa_w1) (B*T, K·M), w2 (K, M, C))
//
// x: (B*T, C); prev: (B, C), the last x of the previous chunk; maa: (C); A: (B*T, K·M);
// w2: (K, M, C). The low-rank product is computed inside the op (one GEMM on a column block of
// A), so the five (B*T, C) mixes m_I never exist as graph values, and the backward recomputes
// it. One node per mix: as ShiftLerp's comment measures, single nodes beat a packed output in
// the graph.
type shiftLoRAOp struct {
	opBase
	B, T, C, M, K, I int
	buf              *outBuf
}

// ShiftLoRA returns x + δ⊙(maa + A[:, I·M:(I+1)·M]·w2[I]) for x (B*T, C), prev (B, C), maa (C),
// A (B*T, K·M) and w2 (K, M, C): x060's xw, xk, xv, xr, xg for I = 0..4.
func ShiftLoRA(x, prev, maa, a, w2 *G.Node, I, B, T int) (*G.Node, error) {
	xs, ws := x.Shape(), w2.Shape()
	if len(xs) != 2 || xs[0] != B*T || len(ws) != 3 {
		return nil, fmt.Errorf("model: ShiftLoRA shapes x %v, w2 %v: want x (%d, C) and w2 (K, M, C)", xs, ws, B*T)
	}
	C, K, M := xs[1], ws[0], ws[1]
	if ws[2] != C || !prev.Shape().Eq(tensor.Shape{B, C}) || maa.Dims() != 1 || maa.Shape()[0] != C ||
		!a.Shape().Eq(tensor.Shape{B * T, K * M}) || I < 0 || I >= K {
		return nil, fmt.Errorf("model: ShiftLoRA shapes x %v, prev %v, maa %v, A %v, w2 %v, mix %d do not fit B=%d T=%d",
			xs, prev.Shape(), maa.Shape(), a.Shape(), ws, I, B, T)
	}
	return G.ApplyOp(shiftLoRAOp{B: B, T: T, C: C, M: M, K: K, I: I, buf: newOutBuf()}, x, prev, maa, a, w2)
}

func (o shiftLoRAOp) Arity() int { return 5 }
func (o shiftLoRAOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, vecT, matT, tensorType(3), matT)
}
func (o shiftLoRAOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.B * o.T, o.C}, nil
}
func (o shiftLoRAOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.B*o.T, o.C)
	switch d := out.Data().(type) {
	case []float32:
		shiftLoRAForward(o, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d)
	case []float64:
		shiftLoRAForward(o, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d)
	}
	return out, nil
}
func (o shiftLoRAOp) String() string {
	return fmt.Sprintf("ShiftLoRA{B=%d,T=%d,C=%d,M=%d,K=%d,I=%d}", o.B, o.T, o.C, o.M, o.K, o.I)
}
func (o shiftLoRAOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftLoRAOp) Hashcode() uint32      { return hashcode(o) }
func (o shiftLoRAOp) DiffWRT(int) []bool    { return []bool{true, true, true, true, true} }
func (o shiftLoRAOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(shiftLoRABackOp{fwd: o, buf: newOutBuf()}, append(in[:5:5], grad)...)
	if err != nil {
		return nil, err
	}
	N, C, KM := o.B*o.T, o.C, o.K*o.M
	return split(packed, []int{N, C}, []int{o.B, C}, []int{C}, []int{N, KM}, []int{o.K, o.M, C})
}

// loraProduct writes m = A[:, I·M:(I+1)·M] · w2[I] (B*T, C) into m.
func loraProduct[F Float](o shiftLoRAOp, a, w2, m []F) {
	blas.Gemm(false, false, o.B*o.T, o.C, o.M, 1, a[o.I*o.M:], o.K*o.M, w2[o.I*o.M*o.C:], o.C, 0, m, o.C)
}

func shiftLoRAForward[F Float](o shiftLoRAOp, x, prev, maa, a, w2, out []F) {
	B, T, C := o.B, o.T, o.C
	loraProduct(o, a, w2, out)
	N := B * T
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, xx, or := x[r*C:(r+1)*C], prevRow(x, prev, r/T, r%T, T, C), out[r*C:(r+1)*C]
			for c, m := range maa {
				or[c] = xr[c] + (xx[c]-xr[c])*(m+or[c])
			}
		}
	})
}

// shiftLoRABackOp: (x, prev, maa, A, w2, g) -> packed
// [gx (B*T*C) | gprev (B*C) | gmaa (C) | gA (B*T*K*M) | gw2 (K*M*C)]; gA and gw2 are zero outside
// mix I's block.
type shiftLoRABackOp struct {
	opBase
	fwd shiftLoRAOp
	buf *outBuf
}

func (o shiftLoRABackOp) Arity() int { return 6 }
func (o shiftLoRABackOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, vecT, matT, tensorType(3), matT, vecT)
}
func (o shiftLoRABackOp) sizes() (nx, np, nm, na, nw int) {
	f := o.fwd
	return f.B * f.T * f.C, f.B * f.C, f.C, f.B * f.T * f.K * f.M, f.K * f.M * f.C
}
func (o shiftLoRABackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	nx, np, nm, na, nw := o.sizes()
	return tensor.Shape{nx + np + nm + na + nw}, nil
}
func (o shiftLoRABackOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		mm, gm := getScratch(o.workLen()), getScratch(o.workLen())
		shiftLoRABackward(o, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), f32(in[5]), d, mm, gm)
		putScratch(mm)
		putScratch(gm)
	case []float64:
		n := o.workLen()
		shiftLoRABackward(o, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), f64(in[5]), d, make([]float64, n), make([]float64, n))
	}
	return out, nil
}

// workLen is the size of one (B*T, C) work buffer.
func (o shiftLoRABackOp) workLen() int { nx, _, _, _, _ := o.sizes(); return nx }

func (o shiftLoRABackOp) String() string        { return "ShiftLoRABack" + o.fwd.String()[9:] }
func (o shiftLoRABackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o shiftLoRABackOp) Hashcode() uint32      { return hashcode(o) }

// shiftLoRABackward: with μ = maa + m_I (per element) and δ = xx − x,
// gx[r] = g[r]⊙(1 − μ[r]) + g[r+1]⊙μ[r+1] (when r+1 is in the same sequence),
// gprev[b] = g[b,0]⊙μ[b,0], gmaa = Σ_rows g⊙δ, and with gm = g⊙δ:
// gA[:, block I] = gm · w2[I]ᵀ, gw2[I] = A[:, block I]ᵀ · gm. mm and gm are (B*T, C) work buffers.
func shiftLoRABackward[F Float](o shiftLoRABackOp, x, prev, maa, a, w2, g, out, mm, gm []F) {
	f := o.fwd
	B, T, C, M, KM := f.B, f.T, f.C, f.M, f.K*f.M
	nx, np, nm, na, _ := o.sizes()
	gx, gprev, gmaa := out[:nx], out[nx:nx+np], out[nx+np:nx+np+nm]
	ga, gw := out[nx+np+nm:nx+np+nm+na], out[nx+np+nm+na:]
	loraProduct(f, a, w2, mm)
	N := B * T
	npc := pieces(N, C)
	part := make([]float64, npc*C)
	parallelFor(N, npc, func(p, lo, hi int) {
		pm := part[p*C : (p+1)*C]
		if x32, ok := any(x).([]float32); ok && shiftLoRARowsFast(x32, any(prev).([]float32), any(maa).([]float32),
			any(g).([]float32), any(mm).([]float32), any(gx).([]float32), any(gm).([]float32), any(gprev).([]float32), pm, lo, hi, T, C) {
			return
		}
		for r := lo; r < hi; r++ {
			b, t := r/T, r%T
			xr, xx, gr := x[r*C:(r+1)*C], prevRow(x, prev, b, t, T, C), g[r*C:(r+1)*C]
			mr, gxr, gmr := mm[r*C:(r+1)*C], gx[r*C:(r+1)*C], gm[r*C:(r+1)*C]
			if t+1 < T { // the next token's shift reads this row
				gn, mn := g[(r+1)*C:(r+2)*C], mm[(r+1)*C:(r+2)*C]
				for c, m := range maa {
					d := xx[c] - xr[c]
					gmr[c] = gr[c] * d
					pm[c] += float64(gr[c]) * float64(d)
					gxr[c] = gr[c]*(1-(m+mr[c])) + gn[c]*(m+mn[c])
				}
			} else {
				for c, m := range maa {
					d := xx[c] - xr[c]
					gmr[c] = gr[c] * d
					pm[c] += float64(gr[c]) * float64(d)
					gxr[c] = gr[c] * (1 - (m + mr[c]))
				}
			}
			if t == 0 {
				gp := gprev[b*C : (b+1)*C]
				for c, m := range maa {
					gp[c] = gr[c] * (m + mr[c])
				}
			}
		}
	})
	sumParts(part, npc, C, 1, 0, gmaa)
	clear(ga)
	clear(gw)
	blas.Gemm(false, true, N, M, C, 1, gm, C, w2[f.I*M*C:], C, 0, ga[f.I*M:], KM)
	blas.Gemm(true, false, M, C, N, 1, a[f.I*M:], KM, gm, C, 0, gw[f.I*M*C:], C)
}

func (o shiftLoRAOp) outBuffer() *outBuf     { return o.buf }
func (o shiftLoRABackOp) outBuffer() *outBuf { return o.buf }
