package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// wkvOp: (decay (C), first (C), k (B*T,C), v (B*T,C), s0 (3B,C)) -> packed (B*T+3B, C):
// rows [0, B*T) are y, the last 3B rows the final state.
type wkvOp struct {
	opBase
	B, T, C int
	buf     *outBuf
}

// WKV applies the RWKV-4 WKV recurrence to k, v (B*T, C) from the initial state s0 (3B, C) and
// returns y (B*T, C) and the final state (3B, C).
func WKV(decay, first, k, v, s0 *G.Node, B, T int) (y, sT *G.Node, err error) {
	C := k.Shape()[1]
	if k.Shape()[0] != B*T || s0.Shape()[0] != 3*B || s0.Shape()[1] != C {
		return nil, nil, fmt.Errorf("model: WKV shapes k %v, s0 %v do not fit B=%d T=%d", k.Shape(), s0.Shape(), B, T)
	}
	packed, err := G.ApplyOp(wkvOp{B: B, T: T, C: C, buf: newOutBuf()}, decay, first, k, v, s0)
	if err != nil {
		return nil, nil, fmt.Errorf("model: WKV: %w", err)
	}
	parts, err := split(packed, []int{B * T, C}, []int{3 * B, C})
	if err != nil {
		return nil, nil, err
	}
	return parts[0], parts[1], nil
}

func (o wkvOp) Arity() int { return 5 }
func (o wkvOp) Type() hm.Type {
	return hm.NewFnType(vecT, vecT, matT, matT, matT, matT)
}
func (o wkvOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.B*o.T + 3*o.B, o.C}, nil
}
func (o wkvOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[2]), false, o.B*o.T+3*o.B, o.C)
	n := o.B * o.T * o.C
	switch d := out.Data().(type) {
	case []float32:
		if !wkvForwardFast(o.B, o.T, o.C, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d[:n], d[n:]) {
			wkvForward(o.B, o.T, o.C, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), d[:n], d[n:])
		}
	case []float64:
		wkvForward(o.B, o.T, o.C, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), d[:n], d[n:])
	}
	return out, nil
}
func (o wkvOp) String() string        { return fmt.Sprintf("WKV{B=%d,T=%d,C=%d}", o.B, o.T, o.C) }
func (o wkvOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkvOp) Hashcode() uint32      { return hashcode(o) }
func (o wkvOp) DiffWRT(int) []bool    { return []bool{true, true, true, true, true} }
func (o wkvOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(wkvBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], in[3], in[4], grad)
	if err != nil {
		return nil, err
	}
	B, T, C := o.B, o.T, o.C
	return split(packed, []int{C}, []int{C}, []int{B * T, C}, []int{B * T, C}, []int{3 * B, C})
}

// wkvBackOp: (decay, first, k, v, s0, g (B*T+3B, C)) -> packed [gdecay | gfirst | gk | gv | gs0].
type wkvBackOp struct {
	opBase
	fwd wkvOp
	buf *outBuf
}

func (o wkvBackOp) Arity() int { return 6 }
func (o wkvBackOp) Type() hm.Type {
	return hm.NewFnType(vecT, vecT, matT, matT, matT, matT, vecT)
}
func (o wkvBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	B, T, C := o.fwd.B, o.fwd.T, o.fwd.C
	return tensor.Shape{2*C + 2*B*T*C + 3*B*C}, nil
}
func (o wkvBackOp) Do(in ...G.Value) (G.Value, error) {
	B, T, C := o.fwd.B, o.fwd.T, o.fwd.C
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[2]), false, s...)
	n := B * T * C
	switch d := out.Data().(type) {
	case []float32:
		g := f32(in[5])
		if !wkvBackwardFast(B, T, C, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), g[:n], g[n:],
			d[:C], d[C:2*C], d[2*C:2*C+n], d[2*C+n:2*C+2*n], d[2*C+2*n:]) {
			wkvBackward(B, T, C, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), g[:n], g[n:],
				d[:C], d[C:2*C], d[2*C:2*C+n], d[2*C+n:2*C+2*n], d[2*C+2*n:])
		}
	case []float64:
		g := f64(in[5])
		wkvBackward(B, T, C, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), g[:n], g[n:],
			d[:C], d[C:2*C], d[2*C:2*C+n], d[2*C+n:2*C+2*n], d[2*C+2*n:])
	}
	return out, nil
}
func (o wkvBackOp) String() string        { return "WKVBack" + o.fwd.String()[3:] }
func (o wkvBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkvBackOp) Hashcode() uint32      { return hashcode(o) }

func f32(v G.Value) []float32 { return v.Data().([]float32) }
func f64(v G.Value) []float64 { return v.Data().([]float64) }

func (o wkvOp) outBuffer() *outBuf     { return o.buf }
func (o wkvBackOp) outBuffer() *outBuf { return o.buf }
