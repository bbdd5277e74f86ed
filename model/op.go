package model

import (
	"fmt"
	"hash"
	"hash/fnv"
	"runtime"
	"sync"
	"unsafe"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Every custom op of the graph embeds opBase: it never overwrites its inputs, never asks the
// machine for preallocated memory, and always returns a fresh value (GORGONIA.md §1 pitfalls 2, 7).
type opBase struct{}

func (opBase) ReturnsPtr() bool     { return false }
func (opBase) CallsExtern() bool    { return false }
func (opBase) OverwritesInput() int { return -1 }

// writeHash hashes an op by its String, which must encode every configuration field: Gorgonia
// merges nodes with equal hashes.
func writeHash(h hash.Hash, s fmt.Stringer) { fmt.Fprint(h, s.String()) }

func hashcode(s fmt.Stringer) uint32 {
	h := fnv.New32a()
	writeHash(h, s)
	return h.Sum32()
}

// Types. One type variable for the float dtype, tensor types of fixed rank so that inputs of
// different rank unify.
var (
	tvFloat = hm.TypeVariable('a')
	vecT    = G.TensorType{Dims: 1, Of: tvFloat}
	matT    = G.TensorType{Dims: 2, Of: tvFloat}
	idsT    = G.TensorType{Dims: 1, Of: G.Int}
)

func tensorType(dims int) hm.Type {
	if dims == 0 {
		return tvFloat
	}
	return G.TensorType{Dims: dims, Of: tvFloat}
}

// Float is the element type of the kernels.
type Float interface{ ~float32 | ~float64 }

// newDense allocates a zero tensor of dtype dt and the given shape.
func newDense(dt tensor.Dtype, shape ...int) *tensor.Dense {
	return tensor.New(tensor.Of(dt), tensor.WithShape(shape...))
}

// outBuf is an op's output tensor, kept from one run of the graph to the next: every value is
// recomputed each run, so an op can write into the memory it returned last time instead of
// allocating (and the runtime zeroing and faulting in) a new tensor. Each op node has its own;
// a value read after Run (logits, gradients) is valid until the next Run. A nil *outBuf
// allocates every time.
type outBuf struct {
	t    *tensor.Dense
	slot *bufSlot // memory shared with ops whose outputs are never alive at the same time
}

// bufSlot is memory that several ops' outputs take turns in (see shareBuffers).
type bufSlot struct {
	f32 []float32
	f64 []float64
}

// bufferedOp is an op that keeps its output in an outBuf.
type bufferedOp interface{ outBuffer() *outBuf }

func newOutBuf() *outBuf { return &outBuf{} }

// get returns a tensor of dtype dt and shape, zeroed only when zero is set: kernels that write
// every element pass false.
func (b *outBuf) get(dt tensor.Dtype, zero bool, shape ...int) *tensor.Dense {
	if b == nil {
		return newDense(dt, shape...)
	}
	if b.slot != nil {
		return b.fromSlot(dt, zero, shape)
	}
	if b.t == nil || b.t.Dtype() != dt || !b.t.Shape().Eq(tensor.Shape(shape)) {
		b.t = newDense(dt, shape...)
		return b.t
	}
	if zero {
		switch d := b.t.Data().(type) {
		case []float32:
			clear(d)
		case []float64:
			clear(d)
		}
	}
	return b.t
}

// fromSlot returns a tensor over the slot's memory, growing it if needed.
func (b *outBuf) fromSlot(dt tensor.Dtype, zero bool, shape []int) *tensor.Dense {
	n := tensor.Shape(shape).TotalSize()
	var back any
	var first unsafe.Pointer
	switch dt {
	case tensor.Float32:
		d := slotSlice(&b.slot.f32, n, zero)
		back, first = d, unsafe.Pointer(&d[0])
	default:
		d := slotSlice(&b.slot.f64, n, zero)
		back, first = d, unsafe.Pointer(&d[0])
	}
	if b.t == nil || b.t.Dtype() != dt || !b.t.Shape().Eq(tensor.Shape(shape)) || b.t.Uintptr() != uintptr(first) {
		b.t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(back))
	}
	return b.t
}

// slotSlice returns the first n elements of *mem, growing it to n first if it is shorter.
func slotSlice[F Float](mem *[]F, n int, zero bool) []F {
	if len(*mem) < n {
		*mem = make([]F, n)
	}
	d := (*mem)[:n:n]
	if zero {
		clear(d)
	}
	return d
}

func dtypeOf(v G.Value) tensor.Dtype { return v.Dtype() }

// scalarOf reads a scalar value (a *G.F32, *G.F64 or a one-element tensor) as float64.
func scalarOf(v G.Value) (float64, error) {
	switch s := v.(type) {
	case *G.F64:
		return float64(*s), nil
	case *G.F32:
		return float64(*s), nil
	case tensor.Tensor:
		switch d := s.Data().(type) {
		case float64:
			return d, nil
		case float32:
			return float64(d), nil
		case []float64:
			if len(d) == 1 {
				return d[0], nil
			}
		case []float32:
			if len(d) == 1 {
				return float64(d[0]), nil
			}
		}
	}
	return 0, fmt.Errorf("model: expected a scalar, got %T", v)
}

func newScalar(dt tensor.Dtype, x float64) G.Value {
	if dt == tensor.Float32 {
		return G.NewF32(float32(x))
	}
	return G.NewF64(x)
}

// parallelFor runs fn over [0, n) split into at most chunks pieces of equal size, one goroutine per
// piece. The split depends only on n and chunks, never on the number of cores, so reductions
// that keep one partial per piece are deterministic.
func parallelFor(n, chunks int, fn func(piece, lo, hi int)) {
	if chunks > n {
		chunks = n
	}
	if chunks <= 1 {
		if n > 0 {
			fn(0, 0, n)
		}
		return
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for p := 0; p < chunks; p++ {
		lo, hi := p*n/chunks, (p+1)*n/chunks
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(p, lo, hi)
		}()
	}
	wg.Wait()
}

// pieces is how many pieces a kernel over rows of width `width` splits into: enough to use the
// cores, few enough that small tensors stay on one goroutine.
func pieces(rows, width int) int {
	const minWork = 1 << 14
	p := rows * width / minWork
	return max(1, min(p, 16, rows))
}

// extractOp returns a zero-copy view of n = shape.TotalSize() elements at off of its input. The
// backward ops pack several gradients into one tensor (Gorgonia ops have one output) and
// extractOp splits them; the forward WKV packs its output and its final state the same way.
type extractOp struct {
	opBase
	off     int
	shape   tensor.Shape
	srcDims int
	src     tensor.Shape
}

func extract(x *G.Node, off int, shape ...int) (*G.Node, error) {
	return G.ApplyOp(extractOp{off: off, shape: tensor.Shape(shape), srcDims: x.Dims(), src: x.Shape().Clone()}, x)
}

func (o extractOp) Arity() int { return 1 }
func (o extractOp) Type() hm.Type {
	return hm.NewFnType(tensorType(o.srcDims), tensorType(len(o.shape)))
}
func (o extractOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return o.shape.Clone(), nil }
func (o extractOp) Do(in ...G.Value) (G.Value, error) {
	t := in[0].(*tensor.Dense)
	n := o.shape.TotalSize()
	if o.off+n > t.Shape().TotalSize() {
		return nil, fmt.Errorf("model: extract [%d:%d] from a tensor of %d", o.off, o.off+n, t.Shape().TotalSize())
	}
	var back any
	switch d := t.Data().(type) {
	case []float32:
		back = d[o.off : o.off+n : o.off+n]
	case []float64:
		back = d[o.off : o.off+n : o.off+n]
	default:
		return nil, fmt.Errorf("model: extract from %T", d)
	}
	return tensor.New(tensor.WithShape(o.shape...), tensor.WithBacking(back)), nil
}
func (o extractOp) String() string        { return fmt.Sprintf("Extract{%d,%v,%v}", o.off, o.shape, o.src) }
func (o extractOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o extractOp) Hashcode() uint32      { return hashcode(o) }
func (o extractOp) DiffWRT(int) []bool    { return []bool{true} }
func (o extractOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	g, err := G.ApplyOp(scatterOp{off: o.off, shape: o.shape, dst: o.src, buf: newOutBuf()}, grad)
	return G.Nodes{g}, err
}

// scatterOp is the gradient of extractOp: the view's gradient placed at off in zeros of the
// source's shape.
type scatterOp struct {
	opBase
	off   int
	shape tensor.Shape
	dst   tensor.Shape
	buf   *outBuf
}

func (o scatterOp) Arity() int { return 1 }
func (o scatterOp) Type() hm.Type {
	return hm.NewFnType(tensorType(len(o.shape)), tensorType(len(o.dst)))
}
func (o scatterOp) InferShape(...G.DimSizer) (tensor.Shape, error) { return o.dst.Clone(), nil }
func (o scatterOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), true, o.dst...)
	switch d := out.Data().(type) {
	case []float32:
		copy(d[o.off:], in[0].Data().([]float32))
	case []float64:
		copy(d[o.off:], in[0].Data().([]float64))
	}
	return out, nil
}
func (o scatterOp) String() string        { return fmt.Sprintf("Scatter{%d,%v,%v}", o.off, o.shape, o.dst) }
func (o scatterOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o scatterOp) Hashcode() uint32      { return hashcode(o) }

// split extracts consecutive pieces of the given shapes from a packed node.
func split(packed *G.Node, shapes ...[]int) (G.Nodes, error) {
	out := make(G.Nodes, len(shapes))
	off := 0
	for i, s := range shapes {
		n, err := extract(packed, off, s...)
		if err != nil {
			return nil, err
		}
		out[i] = n
		off += tensor.Shape(s).TotalSize()
	}
	return out, nil
}

func (o scatterOp) outBuffer() *outBuf { return o.buf }
