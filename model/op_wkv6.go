package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// wkv6Op: (r, k, v (B*T, C), w (B*T, C) or (H, N), u (H, N), s0 (B*H*N, N)) ->
// packed 1-D [y (B*T*C) | sT (B*H*N*N)].
type wkv6Op struct {
	opBase
	B, T, H, N int
	wConst     bool // w is x052's (H, N) decay, constant in time
	buf        *outBuf
}

// WKV6 applies the RWKV-5.2/6 WKV recurrence (wkv6.go) with H heads to r, k, v (B*T, C), the
// raw decay w̃ (d = exp(-exp(w̃))) and the bonus u = time_faaaa (H, N), from the initial state
// s0 (B*H*N, N) with N = C/H, and returns y (B*T, C) and the final state sT (B*H*N, N). w is
// either (B*T, C), one decay per token (x060), or (H, N), constant in time (x052; its gradient
// is then summed over B and T, as u's always is). Its gradient is exact for every input, the
// initial state included.
func WKV6(r, k, v, w, u, s0 *G.Node, B, T, H int) (y, sT *G.Node, err error) {
	if B < 1 || T < 1 || H < 1 {
		return nil, nil, fmt.Errorf("model: WKV6 needs B, T, H >= 1, got B=%d T=%d H=%d", B, T, H)
	}
	if r.Dims() != 2 || r.Shape()[1]%H != 0 {
		return nil, nil, fmt.Errorf("model: WKV6 r shape %v: want (B*T, C) with C a multiple of H=%d", r.Shape(), H)
	}
	C := r.Shape()[1]
	N := C / H
	tok := tensor.Shape{B * T, C}
	for _, in := range []struct {
		name string
		n    *G.Node
	}{{"r", r}, {"k", k}, {"v", v}} {
		if !in.n.Shape().Eq(tok) {
			return nil, nil, fmt.Errorf("model: WKV6 %s (%s) shape %v, want (%d, %d) for B=%d T=%d", in.name, in.n.Name(), in.n.Shape(), B*T, C, B, T)
		}
	}
	head := tensor.Shape{H, N}
	wConst := !w.Shape().Eq(tok)
	if wConst && !w.Shape().Eq(head) {
		return nil, nil, fmt.Errorf("model: WKV6 w (%s) shape %v, want (%d, %d) per token (x060) or (%d, %d) per channel (x052)", w.Name(), w.Shape(), B*T, C, H, N)
	}
	if !u.Shape().Eq(head) {
		return nil, nil, fmt.Errorf("model: WKV6 u (%s) shape %v, want (%d, %d) for H=%d N=%d", u.Name(), u.Shape(), H, N, H, N)
	}
	if !s0.Shape().Eq(tensor.Shape{B * H * N, N}) {
		return nil, nil, fmt.Errorf("model: WKV6 s0 (%s) state shape %v, want (%d, %d) for B=%d H=%d N=%d", s0.Name(), s0.Shape(), B*H*N, N, B, H, N)
	}
	packed, err := G.ApplyOp(wkv6Op{B: B, T: T, H: H, N: N, wConst: wConst, buf: newOutBuf()}, r, k, v, w, u, s0)
	if err != nil {
		return nil, nil, fmt.Errorf("model: WKV6: %w", err)
	}
	parts, err := split(packed, []int{B * T, C}, []int{B * H * N, N})
	if err != nil {
		return nil, nil, err
	}
	return parts[0], parts[1], nil
}

func (o wkv6Op) Arity() int { return 6 }
func (o wkv6Op) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, matT, matT, matT, vecT)
}
func (o wkv6Op) sizes() (ny, ns int) { return o.B * o.T * o.H * o.N, o.B * o.H * o.N * o.N }

// wSize is the number of elements of w (and of its gradient).
func (o wkv6Op) wSize() int {
	if o.wConst {
		return o.H * o.N
	}
	return o.B * o.T * o.H * o.N
}
func (o wkv6Op) InferShape(...G.DimSizer) (tensor.Shape, error) {
	ny, ns := o.sizes()
	return tensor.Shape{ny + ns}, nil
}
func (o wkv6Op) Do(in ...G.Value) (G.Value, error) {
	ny, ns := o.sizes()
	out := o.buf.get(dtypeOf(in[0]), false, ny+ns)
	switch d := out.Data().(type) {
	case []float32:
		runWKV6Forward(o.B, o.T, o.H, o.N, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), f32(in[5]), d[:ny], d[ny:])
	case []float64:
		runWKV6Forward(o.B, o.T, o.H, o.N, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), f64(in[5]), d[:ny], d[ny:])
	default:
		return nil, fmt.Errorf("model: WKV6 of %T", d)
	}
	return out, nil
}
func (o wkv6Op) String() string {
	return fmt.Sprintf("WKV6{B=%d,T=%d,H=%d,N=%d,wConst=%t}", o.B, o.T, o.H, o.N, o.wConst)
}
func (o wkv6Op) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkv6Op) Hashcode() uint32      { return hashcode(o) }
func (o wkv6Op) DiffWRT(int) []bool    { return []bool{true, true, true, true, true, true} }
func (o wkv6Op) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(wkv6BackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], in[3], in[4], in[5], grad)
	if err != nil {
		return nil, err
	}
	m, hn := []int{o.B * o.T, o.H * o.N}, []int{o.H, o.N}
	mw := m
	if o.wConst {
		mw = hn
	}
	return split(packed, m, m, m, mw, hn, []int{o.B * o.H * o.N, o.N})
}

// wkv6BackOp: (r, k, v, w, u, s0, g (packed like the forward's output)) ->
// packed [dr | dk | dv | dw | du | ds0].
type wkv6BackOp struct {
	opBase
	fwd wkv6Op
	buf *outBuf
}

func (o wkv6BackOp) Arity() int { return 7 }
func (o wkv6BackOp) Type() hm.Type {
	return hm.NewFnType(matT, matT, matT, matT, matT, matT, vecT, vecT)
}
func (o wkv6BackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	ny, ns := o.fwd.sizes()
	return tensor.Shape{3*ny + o.fwd.wSize() + o.fwd.H*o.fwd.N + ns}, nil
}
func (o wkv6BackOp) Do(in ...G.Value) (G.Value, error) {
	ny, ns := o.fwd.sizes()
	nw, nu := o.fwd.wSize(), o.fwd.H*o.fwd.N
	out := o.buf.get(dtypeOf(in[0]), false, 3*ny+nw+nu+ns)
	B, T, H, N := o.fwd.B, o.fwd.T, o.fwd.H, o.fwd.N
	a, b := 3*ny, 3*ny+nw // offsets of dw and du
	switch d := out.Data().(type) {
	case []float32:
		g := f32(in[6])
		runWKV6Backward(B, T, H, N, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), f32(in[4]), f32(in[5]),
			g[:ny], g[ny:], d[:ny], d[ny:2*ny], d[2*ny:a], d[a:b], d[b:b+nu], d[b+nu:])
	case []float64:
		g := f64(in[6])
		runWKV6Backward(B, T, H, N, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), f64(in[4]), f64(in[5]),
			g[:ny], g[ny:], d[:ny], d[ny:2*ny], d[2*ny:a], d[a:b], d[b:b+nu], d[b+nu:])
	default:
		return nil, fmt.Errorf("model: WKV6 backward of %T", d)
	}
	return out, nil
}
func (o wkv6BackOp) String() string        { return "WKV6Back" + o.fwd.String()[4:] }
func (o wkv6BackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o wkv6BackOp) Hashcode() uint32      { return hashcode(o) }

func (o wkv6Op) outBuffer() *outBuf     { return o.buf }
func (o wkv6BackOp) outBuffer() *outBuf { return o.buf }
