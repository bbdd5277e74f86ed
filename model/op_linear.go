package model

import (
	"fmt"
	"hash"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// linearOp: (x (N,in), W (out,in)) -> x Wᵀ (N,out). W keeps PyTorch's [out, in] layout, so
// RWKV-LM weights are used as stored; one BLAS call with a transpose flag does the product.
// With InOut, W is stored (in,out) instead and the product is x W (MatMul).
type linearOp struct {
	opBase
	N, In, Out int
	InOut      bool
	// Frozen: W takes no gradient (a frozen base weight); SymDiff builds only x's, so the
	// out×in product for W is never computed nor stored.
	Frozen bool
	buf    *outBuf
}

// frozenLinear is Linear (or with inOut MatMul) of a frozen W: no gradient for W.
func frozenLinear(x, w *G.Node, inOut bool) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	in, out := 1, 0 // W (out,in), or with inOut (in,out)
	if inOut {
		in, out = 0, 1
	}
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[in] {
		return nil, fmt.Errorf("model: Linear shapes x %v, W %v do not fit", xs, ws)
	}
	return G.ApplyOp(linearOp{N: xs[0], In: xs[1], Out: ws[out], InOut: inOut, Frozen: true, buf: newOutBuf()}, x, w)
}

// Linear is a bias-free linear layer y = x Wᵀ.
func Linear(x, w *G.Node) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[1] {
		return nil, fmt.Errorf("model: Linear shapes x %v, W %v do not fit", xs, ws)
	}
	return G.ApplyOp(linearOp{N: xs[0], In: xs[1], Out: ws[0], buf: newOutBuf()}, x, w)
}

// MatMul is the product x W of x (N,in) and W (in,out), for the matrices RWKV-LM uses as
// `x @ W` rather than as nn.Linear weights (x070's LoRA matrices att.w1 [C,D], att.w2 [D,C]).
func MatMul(x, w *G.Node) (*G.Node, error) {
	xs, ws := x.Shape(), w.Shape()
	if len(xs) != 2 || len(ws) != 2 || xs[1] != ws[0] {
		return nil, fmt.Errorf("model: MatMul shapes x %v, W %v do not fit", xs, ws)
	}
	return G.ApplyOp(linearOp{N: xs[0], In: xs[1], Out: ws[1], InOut: true, buf: newOutBuf()}, x, w)
}

// ldw is W's leading dimension.
func (o linearOp) ldw() int {
	if o.InOut {
		return o.Out
	}
	return o.In
}

func (o linearOp) Arity() int    { return 2 }
func (o linearOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT) }
func (o linearOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.Out}, nil
}
func (o linearOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.Out)
	switch d := out.Data().(type) {
	case []float32:
		blas.Gemm(false, !o.InOut, o.N, o.Out, o.In, 1, f32(in[0]), o.In, f32(in[1]), o.ldw(), 0, d, o.Out)
	case []float64:
		blas.Gemm(false, !o.InOut, o.N, o.Out, o.In, 1, f64(in[0]), o.In, f64(in[1]), o.ldw(), 0, d, o.Out)
	}
	return out, nil
}
func (o linearOp) String() string {
	if o.InOut {
		return fmt.Sprintf("MatMul{N=%d,in=%d,out=%d,frozen=%v}", o.N, o.In, o.Out, o.Frozen)
	}
	return fmt.Sprintf("Linear{N=%d,in=%d,out=%d,frozen=%v}", o.N, o.In, o.Out, o.Frozen)
}
func (o linearOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o linearOp) Hashcode() uint32      { return hashcode(o) }
func (o linearOp) DiffWRT(int) []bool    { return []bool{true, !o.Frozen} }

// SymDiff builds the two gradient products as separate nodes, so that a compiled program that
// does not need one of them (the gradient of data) never runs it.
func (o linearOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	gx, err := G.ApplyOp(linearGradOp{fwd: o, wrtW: false, buf: newOutBuf()}, grad, in[1])
	if err != nil || o.Frozen {
		return G.Nodes{gx, nil}, err
	}
	gw, err := G.ApplyOp(linearGradOp{fwd: o, wrtW: true, buf: newOutBuf()}, grad, in[0])
	return G.Nodes{gx, gw}, err
}

// linearGradOp: (gy (N,out), W) -> gx = gy W (N,in); or (gy, x) -> gW = gyᵀ x (out,in). With
// InOut: gx = gy Wᵀ, gW = xᵀ gy (in,out).
type linearGradOp struct {
	opBase
	fwd  linearOp
	wrtW bool
	buf  *outBuf
}

func (o linearGradOp) Arity() int    { return 2 }
func (o linearGradOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT) }
func (o linearGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if o.wrtW && o.fwd.InOut {
		return tensor.Shape{o.fwd.In, o.fwd.Out}, nil
	}
	if o.wrtW {
		return tensor.Shape{o.fwd.Out, o.fwd.In}, nil
	}
	return tensor.Shape{o.fwd.N, o.fwd.In}, nil
}
func (o linearGradOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		linearGrad(o.fwd, o.wrtW, f32(in[0]), f32(in[1]), d)
	case []float64:
		linearGrad(o.fwd, o.wrtW, f64(in[0]), f64(in[1]), d)
	}
	return out, nil
}

func linearGrad[F Float](o linearOp, wrtW bool, gy, other, out []F) {
	if o.InOut {
		if wrtW { // gW (in,out) = xᵀ (in,N) · gy (N,out)
			blas.Gemm(true, false, o.In, o.Out, o.N, 1, other, o.In, gy, o.Out, 0, out, o.Out)
			return
		}
		// gx (N,in) = gy (N,out) · Wᵀ (out,in), W stored (in,out)
		blas.Gemm(false, true, o.N, o.In, o.Out, 1, gy, o.Out, other, o.Out, 0, out, o.In)
		return
	}
	if wrtW { // gW (out,in) = gyᵀ (out,N) · x (N,in)
		blas.Gemm(true, false, o.Out, o.In, o.N, 1, gy, o.Out, other, o.In, 0, out, o.In)
		return
	}
	// gx (N,in) = gy (N,out) · W (out,in)
	blas.Gemm(false, false, o.N, o.In, o.Out, 1, gy, o.Out, other, o.In, 0, out, o.In)
}

func (o linearGradOp) String() string {
	return fmt.Sprintf("LinearGrad{wrtW=%v,%v}", o.wrtW, o.fwd)
}
func (o linearGradOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o linearGradOp) Hashcode() uint32      { return hashcode(o) }

func (o linearOp) outBuffer() *outBuf     { return o.buf }
func (o linearGradOp) outBuffer() *outBuf { return o.buf }
