package model

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// ActKind is the pointwise function of an Activate node.
type ActKind int

const (
	ActIdentity ActKind = iota // y = x + b (a bias add; b is required)
	ActTanh                    // y = tanh(x [+ b])
	ActSigmoid                 // y = σ(x [+ b])
	ActSiLU                    // y = x·σ(x) (no bias)
)

func (k ActKind) String() string {
	switch k {
	case ActIdentity:
		return "identity"
	case ActTanh:
		return "tanh"
	case ActSigmoid:
		return "sigmoid"
	case ActSiLU:
		return "silu"
	}
	return fmt.Sprintf("ActKind(%d)", int(k))
}

// actOp: (x (N,D) [, bias (D)]) -> y = act(x + bias) (N,D), the bias broadcast over rows. It
// replaces Gorgonia's Tanh/Sigmoid (single-threaded, a fresh tensor every run) and its
// BroadcastAdd (which materialises the repeated bias and sums it back in the backward,
// GORGONIA.md §2). RWKV-7 uses it for:
//
//	w̃ = w0 + tanh(xw@w1)@w2     Activate(xw@w1, nil, ActTanh), then Activate(·@w2, w0, ActIdentity)
//	a  = σ(a0 + (xa@a1)@a2)      Activate(·@a2, a0, ActSigmoid)
//	g  = σ(xg@g1)@g2             Activate(xg@g1, nil, ActSigmoid)
//
// and RWKV-5.2/6 for the gate g = SiLU(Wg xg) (Activate(·, nil, ActSiLU)).
//
// The backward of tanh and sigmoid reads the output y (1-y², y(1-y)), not x, so it evaluates no
// transcendental function; SiLU's reads x (σ(x)(1 + x(1-σ(x)))); the identity's x-gradient is
// the upstream gradient itself.
type actOp struct {
	opBase
	N, D    int
	Kind    ActKind
	HasBias bool
	buf     *outBuf
}

// Activate is act(x + bias) for x (N, D) and bias (D) or nil. ActIdentity needs a bias.
func Activate(x, bias *G.Node, kind ActKind) (*G.Node, error) {
	s := x.Shape()
	if len(s) != 2 {
		return nil, fmt.Errorf("model: Activate(%v) of x with shape %v: want a matrix", kind, s)
	}
	if kind < ActIdentity || kind > ActSiLU {
		return nil, fmt.Errorf("model: Activate: unknown kind %v", kind)
	}
	if kind == ActSiLU && bias != nil {
		return nil, fmt.Errorf("model: Activate(silu) takes no bias")
	}
	o := actOp{N: s[0], D: s[1], Kind: kind, HasBias: bias != nil, buf: newOutBuf()}
	if bias == nil {
		if kind == ActIdentity {
			return nil, fmt.Errorf("model: Activate(identity) without a bias is x itself: use x")
		}
		return G.ApplyOp(o, x)
	}
	if bias.Shape().TotalSize() != s[1] || bias.Dims() != 1 {
		return nil, fmt.Errorf("model: Activate(%v) bias shape %v does not fit x %v: want (%d)", kind, bias.Shape(), s, s[1])
	}
	return G.ApplyOp(o, x, bias)
}

// BiasAdd is x + bias for x (N, D) and bias (D).
func BiasAdd(x, bias *G.Node) (*G.Node, error) { return Activate(x, bias, ActIdentity) }

func (o actOp) Arity() int {
	if o.HasBias {
		return 2
	}
	return 1
}
func (o actOp) Type() hm.Type {
	if o.HasBias {
		return hm.NewFnType(matT, vecT, matT)
	}
	return hm.NewFnType(matT, matT)
}
func (o actOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return tensor.Shape{o.N, o.D}, nil }
func (o actOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.D)
	switch d := out.Data().(type) {
	case []float32:
		var b []float32
		if o.HasBias {
			b = f32(in[1])
		}
		fast := false
		if o.Kind == ActSiLU {
			fast = siluForwardFast(f32(in[0]), d, o.N, o.D)
		} else {
			fast = actForwardFast(o.Kind, f32(in[0]), b, d, o.N, o.D)
		}
		if !fast {
			actForward(o.Kind, f32(in[0]), b, d, o.N, o.D)
		}
	case []float64:
		var b []float64
		if o.HasBias {
			b = f64(in[1])
		}
		actForward(o.Kind, f64(in[0]), b, d, o.N, o.D)
	}
	return out, nil
}
func (o actOp) String() string {
	return fmt.Sprintf("Activate{N=%d,D=%d,%v,bias=%v}", o.N, o.D, o.Kind, o.HasBias)
}
func (o actOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o actOp) Hashcode() uint32      { return hashcode(o) }
func (o actOp) DiffWRT(int) []bool {
	if o.HasBias {
		return []bool{true, true}
	}
	return []bool{true}
}
func (o actOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	if o.Kind == ActIdentity { // gx = g, gbias = column sums of g
		gb, err := G.ApplyOp(actBackOp{fwd: o, buf: newOutBuf()}, grad)
		return G.Nodes{grad, gb}, err
	}
	y := out
	if o.Kind == ActSiLU { // its derivative is a function of x
		y = in[0]
	}
	packed, err := G.ApplyOp(actBackOp{fwd: o, buf: newOutBuf()}, y, grad)
	if err != nil || !o.HasBias {
		return G.Nodes{packed}, err
	}
	return split(packed, []int{o.N, o.D}, []int{o.D})
}

func actForward[F Float](kind ActKind, x, b, y []F, N, D int) {
	parallelFor(N, pieces(N, D), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, yr := x[r*D:(r+1)*D], y[r*D:(r+1)*D]
			for c, v := range xr {
				z := float64(v)
				if b != nil {
					z += float64(b[c])
				}
				switch kind {
				case ActTanh:
					z = math.Tanh(z)
				case ActSigmoid:
					z = sigmoid(z)
				case ActSiLU:
					z *= sigmoid(z)
				}
				yr[c] = F(z)
			}
		}
	})
}

// actBackOp: identity: (g) -> gbias (D); tanh/sigmoid: (y, g) -> gx (N,D), or packed
// [gx (N*D) | gbias (D)] with a bias; SiLU: (x, g) -> gx.
type actBackOp struct {
	opBase
	fwd actOp
	buf *outBuf
}

func (o actBackOp) Arity() int {
	if o.fwd.Kind == ActIdentity {
		return 1
	}
	return 2
}
func (o actBackOp) Type() hm.Type {
	switch {
	case o.fwd.Kind == ActIdentity:
		return hm.NewFnType(matT, vecT)
	case o.fwd.HasBias:
		return hm.NewFnType(matT, matT, vecT)
	}
	return hm.NewFnType(matT, matT, matT)
}
func (o actBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	N, D := o.fwd.N, o.fwd.D
	switch {
	case o.fwd.Kind == ActIdentity:
		return tensor.Shape{D}, nil
	case o.fwd.HasBias:
		return tensor.Shape{N*D + D}, nil
	}
	return tensor.Shape{N, D}, nil
}
func (o actBackOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		if o.fwd.Kind == ActIdentity {
			colSums(f32(in[0]), d, o.fwd.N, o.fwd.D)
		} else if !actBackwardFast(o.fwd, f32(in[0]), f32(in[1]), d) {
			actBackward(o.fwd, f32(in[0]), f32(in[1]), d)
		}
	case []float64:
		if o.fwd.Kind == ActIdentity {
			colSums(f64(in[0]), d, o.fwd.N, o.fwd.D)
		} else {
			actBackward(o.fwd, f64(in[0]), f64(in[1]), d)
		}
	}
	return out, nil
}
func (o actBackOp) String() string        { return "ActivateBack" + o.fwd.String()[8:] }
func (o actBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o actBackOp) Hashcode() uint32      { return hashcode(o) }

// actBackward writes gx = g·act'(y) (SiLU: g·act'(x), y holding x) into out[:N*D] and, with a
// bias, its column sums into out[N*D:].
func actBackward[F Float](o actOp, y, g, out []F) {
	N, D := o.N, o.D
	np := pieces(N, D)
	var part []float64
	if o.HasBias {
		part = make([]float64, np*D)
	}
	parallelFor(N, np, func(p, lo, hi int) {
		for i := lo * D; i < hi*D; i++ {
			yi, gi := float64(y[i]), float64(g[i])
			var gz float64
			switch o.Kind {
			case ActTanh:
				gz = gi * (1 - yi*yi)
			case ActSiLU:
				s := sigmoid(yi)
				gz = gi * s * (1 + yi*(1-s))
			default:
				gz = gi * yi * (1 - yi)
			}
			out[i] = F(gz)
			if part != nil {
				part[p*D+i%D] += gz
			}
		}
	})
	if part != nil {
		sumParts(part, np, D, 1, 0, out[N*D:])
	}
}

// colSums sets out[c] = Σ_r g[r,c] for g (N, D), accumulating in float64.
func colSums[F Float](g, out []F, N, D int) {
	np := pieces(N, D)
	part := make([]float64, np*D)
	parallelFor(N, np, func(p, lo, hi int) {
		pp := part[p*D : (p+1)*D]
		for r := lo; r < hi; r++ {
			for c, v := range g[r*D : (r+1)*D] {
				pp[c] += float64(v)
			}
		}
	})
	sumParts(part, np, D, 1, 0, out)
}

func (o actOp) outBuffer() *outBuf     { return o.buf }
func (o actBackOp) outBuffer() *outBuf { return o.buf }
