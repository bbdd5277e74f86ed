package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// wkv7Op: (r, w, k, v, a, b (B*T, C), s0 (B*H*N, N)) -> packed 1-D [y (B*T*C) | sT (B*H*N*N)].
type wkv7Op struct {
	opBase
	B, T, H, N int
	buf        *outBuf
}

// WKV7 applies the RWKV-7 WKV recurrence (wkv7.go) with H heads to r, w (the raw decay input
// w̃), k, v, a (α) and b (β), each (B*T, C), from the initial state s0 (B*H*N, N) with N = C/H,
// and returns y (B*T, C) and the final state sT (B*H*N, N). Its gradient is exact for every
// input, the initial state included.
func WKV7(r, w, k, v, a, b, s0 *G.Node, B, T, H int) (y, sT *G.Node, err error) {
	if B < 1 || T < 1 || H < 1 {
		return nil, nil, fmt.Errorf("model: WKV7 needs B, T, H >= 1, got B=%d T=%d H=%d", B, T, H)
	}
	if r.Dims() != 2 || r.Shape()[1]%H != 0 {
		return nil, nil, fmt.Errorf("model: WKV7 r shape %v: want (B*T, C) with C a multiple of H=%d", r.Shape(), H)
	}
	C := r.Shape()[1]
	N := C / H
	for i, n := range []*G.Node{r, w, k, v, a, b} {
		if !n.Shape().Eq(tensor.Shape{B * T, C}) {
			return nil, nil, fmt.Errorf("model: WKV7 input %d (%s) shape %v, want (%d, %d) for B=%d T=%d", i, n.Name(), n.Shape(), B*T, C, B, T)
		}
	}
	if !s0.Shape().Eq(tensor.Shape{B * H * N, N}) {
		return nil, nil, fmt.Errorf("model: WKV7 state shape %v, want (%d, %d) for B=%d H=%d N=%d", s0.Shape(), B*H*N, N, B, H, N)
	}
	packed, err := G.ApplyOp(wkv7Op{B: B, T: T, H: H, N: N, buf: newOutBuf()}, r, w, k, v, a, b, s0)
	if err != nil {
		return nil, nil, fmt.Errorf("model: WKV7: %w", err)
	}
	parts, err := split(packed, []int{B * T, C}, []int{B * H * N, N})
	if err != nil {
		return nil, nil, err
	}
	return parts[0], parts[1], nil
}

func (o wkv7Op) Arity() int { return 7 }
func (o wkv7Op) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, matT, matT, matT, matT, vecT)
}
func (o wkv7Op) sizes() (ny, ns int) { return o.B * o.T * o.H * o.N, o.B * o.H * o.N * o.N }
func (o wkv7Op) InferShape(...G.DimSizer) (tensor.Shape, error) {
	ny, ns := o.sizes()
	return tensor.Shape{ny + ns}, nil
}
func (o wkv7Op) Do(in ...G.Value) (G.Value, error) {
	ny, ns := o.sizes()
	out := o.buf.get(dtypeOf(in[0]), false, ny+ns)
	switch d := out.Data().(type) {
	case []float32:
		runWKV7Forward(o.B, o.T, o.H, o.N, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), f32(in[5]), f32(in[6]), d[:ny], d[ny:])
	case []float64:
		runWKV7Forward(o.B, o.T, o.H, o.N, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), f64(in[5]), f64(in[6]), d[:ny], d[ny:])
	default:
		return nil, fmt.Errorf("model: WKV7 of %T", d)
	}
	return out, nil
}
func (o wkv7Op) String() string {
	return fmt.Sprintf("WKV7{B=%d,T=%d,H=%d,N=%d}", o.B, o.T, o.H, o.N)
}
func (o wkv7Op) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkv7Op) Hashcode() uint32      { return hashcode(o) }
func (o wkv7Op) DiffWRT(int) []bool    { return []bool{true, true, true, true, true, true, true} }
func (o wkv7Op) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(wkv7BackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], in[3], in[4], in[5], in[6], grad)
	if err != nil {
		return nil, err
	}
	BT, C := o.B*o.T, o.H*o.N
	m := []int{BT, C}
	return split(packed, m, m, m, m, m, m, []int{o.B * o.H * o.N, o.N})
}

// wkv7BackOp: (r, w, k, v, a, b, s0, g (packed like the forward's output)) ->
// packed [dr | dw | dk | dv | da | db | ds0].
type wkv7BackOp struct {
	opBase
	fwd wkv7Op
	buf *outBuf
}

func (o wkv7BackOp) Arity() int { return 8 }
func (o wkv7BackOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, matT, matT, matT, matT, vecT, vecT)
}
func (o wkv7BackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	ny, ns := o.fwd.sizes()
	return tensor.Shape{6*ny + ns}, nil
}
func (o wkv7BackOp) Do(in ...G.Value) (G.Value, error) {
	ny, ns := o.fwd.sizes()
	out := o.buf.get(dtypeOf(in[0]), false, 6*ny+ns)
	B, T, H, N := o.fwd.B, o.fwd.T, o.fwd.H, o.fwd.N
	switch d := out.Data().(type) {
	case []float32:
		g := f32(in[7])
		runWKV7Backward(B, T, H, N, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), f32(in[5]), f32(in[6]),
			g[:ny], g[ny:], d[:ny], d[ny:2*ny], d[2*ny:3*ny], d[3*ny:4*ny], d[4*ny:5*ny], d[5*ny:6*ny], d[6*ny:])
	case []float64:
		g := f64(in[7])
		runWKV7Backward(B, T, H, N, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), f64(in[5]), f64(in[6]),
			g[:ny], g[ny:], d[:ny], d[ny:2*ny], d[2*ny:3*ny], d[3*ny:4*ny], d[4*ny:5*ny], d[5*ny:6*ny], d[6*ny:])
	default:
		return nil, fmt.Errorf("model: WKV7 backward of %T", d)
	}
	return out, nil
}
func (o wkv7BackOp) String() string        { return "WKV7Back" + o.fwd.String()[4:] }
func (o wkv7BackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkv7BackOp) Hashcode() uint32      { return hashcode(o) }

func (o wkv7Op) outBuffer() *outBuf     { return o.buf }
func (o wkv7BackOp) outBuffer() *outBuf { return o.buf }
