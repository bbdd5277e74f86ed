package model

import (
	"fmt"
	"hash"
	"math/rand/v2"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// LoRAConfig configures one LoRA (or PiSSA) linear layer.
type LoRAConfig struct {
	// Scale is s in y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ: α/r for LoRA, 1 for PiSSA.
	Scale float64
	// Dropout is the probability p in [0, 1) of zeroing an element of x on the adapter path
	// (inverted dropout: kept elements are divided by 1-p). PiSSA uses 0.
	Dropout float64
	// Seed picks this layer's dropout masks; give every layer its own (for example a hash of
	// its module name mixed with the run's seed), or layers sharing a shape share masks.
	Seed uint64
}

// LoRAControl holds the run-time switches shared by every LoRA op of a graph. The trainer
// sets Step before each Run (the optimizer step, or any counter that differs between runs);
// the dropout mask of a layer is a function of (Seed, Step, row) only, so a resumed run draws
// the same masks, and a graph run twice with the same Step (finite differences) sees one mask.
// Dropout acts only while Train is set; a nil *LoRAControl means evaluation (no dropout).
//
// Shard places the graph's rows in a larger batch split between data-parallel ranks: a graph
// of N rows is rows [Shard·N, (Shard+1)·N) of it, and row i draws the mask of global row
// Shard·N+i. A rank sets its rank (its rows of the global batch follow the lower ranks'), so
// N ranks with B sequences each draw exactly the masks of one process with N·B; 0 is one
// process.
type LoRAControl struct {
	Train bool
	Step  uint64
	Shard uint64
}

// loraCache is what the forward keeps for the backward of the same Run: u = drop(x)·Aᵀ and
// the dropout mask (one bit per element of x, rows padded to whole words).
type loraCache struct {
	u32    []float32
	u64    []float64
	mask   []uint64
	masked bool // the last forward used the mask
}

var loraIDs atomic.Uint64

// loraOp: (x (N,in), W (out,in), A (r,in), B (out,r)) -> x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ (N,out).
// W is frozen: DiffWRT marks it non-differentiable and SymDiff builds no node for it, so the
// out×in weight gradient is never computed nor stored. Every product runs through BLAS.
type loraOp struct {
	opBase
	N, In, Out, R int
	cfg           LoRAConfig
	id            uint64 // distinguishes ops sharing shapes (their caches differ)
	ctl           *LoRAControl
	cache         *loraCache
	buf           *outBuf
}

// LoRALinear is the adapted linear layer y = x·Wᵀ + s·((drop(x)·Aᵀ)·Bᵀ) for x (N,in), a frozen
// W (out,in) in PyTorch's layout, A (r,in) and B (out,r). Gradients flow to x, A and B only;
// asking G.Grad for W's is an error. ctl may be nil (no dropout, as in evaluation).
func LoRALinear(x, w, a, b *G.Node, cfg LoRAConfig, ctl *LoRAControl) (*G.Node, error) {
	xs, ws, as, bs := x.Shape(), w.Shape(), a.Shape(), b.Shape()
	if len(xs) != 2 || len(ws) != 2 || len(as) != 2 || len(bs) != 2 ||
		xs[1] != ws[1] || as[1] != ws[1] || bs[0] != ws[0] || bs[1] != as[0] {
		return nil, fmt.Errorf("model: LoRALinear shapes x %v, W %v, A %v, B %v do not fit (want x [N,in], W [out,in], A [r,in], B [out,r])", xs, ws, as, bs)
	}
	if !(cfg.Dropout >= 0 && cfg.Dropout < 1) {
		return nil, fmt.Errorf("model: LoRA dropout %v is outside [0, 1)", cfg.Dropout)
	}
	op := loraOp{N: xs[0], In: xs[1], Out: ws[0], R: as[0], cfg: cfg, id: loraIDs.Add(1),
		ctl: ctl, cache: &loraCache{}, buf: newOutBuf()}
	return G.ApplyOp(op, x, w, a, b)
}

func (o loraOp) Arity() int    { return 4 }
func (o loraOp) Type() hm.Type { return hm.NewFnType(matT, matT, matT, matT, matT) }
func (o loraOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.Out}, nil
}
func (o loraOp) String() string {
	return fmt.Sprintf("LoRALinear#%d{N=%d,in=%d,out=%d,r=%d,s=%g,p=%g,seed=%d}", o.id, o.N, o.In, o.Out, o.R, o.cfg.Scale, o.cfg.Dropout, o.cfg.Seed)
}
func (o loraOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o loraOp) Hashcode() uint32      { return hashcode(o) }
func (o loraOp) DiffWRT(int) []bool    { return []bool{true, false, true, true} }
func (o loraOp) outBuffer() *outBuf    { return o.buf }

// dropping reports whether this run applies dropout.
func (o loraOp) dropping() bool {
	return o.cfg.Dropout > 0 && o.ctl != nil && o.ctl.Train
}

func (o loraOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.Out)
	switch d := out.Data().(type) {
	case []float32:
		o.cache.u32 = loraForward(o, f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d, o.cache.u32)
	case []float64:
		o.cache.u64 = loraForward(o, f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), d, o.cache.u64)
	}
	return out, nil
}

// loraForward writes y and returns u (reusing the old buffer when it fits).
func loraForward[F Float](o loraOp, x, w, a, b, y, u []F) []F {
	N, In, Out, R := o.N, o.In, o.Out, o.R
	blas.Gemm(false, true, N, Out, In, 1, x, In, w, In, 0, y, Out)
	if cap(u) < N*R {
		u = make([]F, N*R)
	}
	u = u[:N*R]
	xd := x
	o.cache.masked = o.dropping()
	if o.cache.masked {
		o.fillMask()
		var done func()
		xd, done = scratchOf[F](N * In) // the backward rebuilds drop(x) from the mask
		defer done()
		o.applyMask(x, xd)
	}
	blas.Gemm(false, true, N, R, In, 1, xd, In, a, In, 0, u, R)              // u = drop(x)·Aᵀ
	blas.Gemm(false, true, N, Out, R, F(o.cfg.Scale), u, R, b, R, 1, y, Out) // y += s·u·Bᵀ
	return u
}

// maskWords is the number of 64-bit words of one row of the mask.
func (o loraOp) maskWords() int { return (o.In + 63) / 64 }

// fillMask draws this run's mask: bit j of row i is 1 (kept) with probability 1-p. Row i draws
// from its own PCG stream keyed by (Seed, Step, Shard·N+i), so the mask depends neither on how
// rows are split between goroutines nor on how the global batch is split between ranks.
func (o loraOp) fillMask() {
	W := o.maskWords()
	if len(o.cache.mask) != o.N*W {
		o.cache.mask = make([]uint64, o.N*W)
	}
	thr := uint32(o.cfg.Dropout * (1 << 32)) // drop when a 32-bit draw is below thr
	step, row0 := o.ctl.Step, o.ctl.Shard*uint64(o.N)
	parallelFor(o.N, pieces(o.N, o.In), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			rng := rand.NewPCG(o.cfg.Seed, step*0x9E3779B97F4A7C15+row0+uint64(i))
			row := o.cache.mask[i*W : (i+1)*W]
			clear(row)
			for j := 0; j < o.In; j += 2 {
				r := rng.Uint64()
				if uint32(r) >= thr {
					row[j>>6] |= 1 << (j & 63)
				}
				if j+1 < o.In && uint32(r>>32) >= thr {
					row[(j+1)>>6] |= 1 << ((j + 1) & 63)
				}
			}
		}
	})
}

// applyMask writes dst = x ⊙ mask / (1-p).
func (o loraOp) applyMask(x, dst any) {
	switch d := dst.(type) {
	case []float32:
		maskRows(o, x.([]float32), d)
	case []float64:
		maskRows(o, x.([]float64), d)
	}
}

func maskRows[F Float](o loraOp, x, dst []F) {
	W, In := o.maskWords(), o.In
	keep := F(1 / (1 - o.cfg.Dropout))
	parallelFor(o.N, pieces(o.N, In), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			row, xr, dr := o.cache.mask[i*W:(i+1)*W], x[i*In:(i+1)*In], dst[i*In:(i+1)*In]
			for j, v := range xr {
				if row[j>>6]>>(j&63)&1 != 0 {
					dr[j] = v * keep
				} else {
					dr[j] = 0
				}
			}
		}
	})
}

// SymDiff builds gu = s·gy·B (N,r) once and the three gradients from it as separate nodes, so
// a program that needs only some of them runs only those:
//
//	gx = gy·W + drop'(gu·A)   gA = guᵀ·drop(x)   gB = s·gyᵀ·u
//
// where drop' applies the forward's mask and 1/(1-p). No node computes W's gradient.
func (o loraOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	gu, err := G.ApplyOp(loraGradOp{fwd: o, kind: loraGU, buf: newOutBuf()}, grad, in[3])
	if err != nil {
		return nil, err
	}
	gx, err := G.ApplyOp(loraGradOp{fwd: o, kind: loraGX, buf: newOutBuf()}, grad, in[1], gu, in[2])
	if err != nil {
		return nil, err
	}
	ga, err := G.ApplyOp(loraGradOp{fwd: o, kind: loraGA, buf: newOutBuf()}, gu, in[0])
	if err != nil {
		return nil, err
	}
	// gB reads u from the forward's cache; grad is computed from the loss, after the forward.
	gb, err := G.ApplyOp(loraGradOp{fwd: o, kind: loraGB, buf: newOutBuf()}, grad)
	return G.Nodes{gx, nil, ga, gb}, err
}

type loraGradKind int

const (
	loraGU loraGradKind = iota // (gy, B) -> s·gy·B (N,r)
	loraGX                     // (gy, W, gu, A) -> gy·W + drop'(gu·A) (N,in)
	loraGA                     // (gu, x) -> guᵀ·drop(x) (r,in)
	loraGB                     // (gy) -> s·gyᵀ·u (out,r)
)

var loraGradNames = [...]string{"gu", "gx", "gA", "gB"}

type loraGradOp struct {
	opBase
	fwd  loraOp
	kind loraGradKind
	buf  *outBuf
}

func (o loraGradOp) Arity() int { return [...]int{2, 4, 2, 1}[o.kind] }
func (o loraGradOp) Type() hm.Type {
	ts := make([]hm.Type, o.Arity()+1)
	for i := range ts {
		ts[i] = matT
	}
	return hm.NewFnType(ts...)
}
func (o loraGradOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	f := o.fwd
	switch o.kind {
	case loraGU:
		return tensor.Shape{f.N, f.R}, nil
	case loraGX:
		return tensor.Shape{f.N, f.In}, nil
	case loraGA:
		return tensor.Shape{f.R, f.In}, nil
	}
	return tensor.Shape{f.Out, f.R}, nil
}
func (o loraGradOp) String() string {
	return fmt.Sprintf("LoRAGrad{%s,%v}", loraGradNames[o.kind], o.fwd)
}
func (o loraGradOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o loraGradOp) Hashcode() uint32      { return hashcode(o) }
func (o loraGradOp) outBuffer() *outBuf    { return o.buf }

func (o loraGradOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), false, s...)
	switch d := out.Data().(type) {
	case []float32:
		loraGrad(o, slicesOf(in, f32), d, o.fwd.cache.u32)
	case []float64:
		loraGrad(o, slicesOf(in, f64), d, o.fwd.cache.u64)
	}
	return out, nil
}

func slicesOf[F Float](in []G.Value, get func(G.Value) []F) [][]F {
	out := make([][]F, len(in))
	for i, v := range in {
		out[i] = get(v)
	}
	return out
}

// scratchOf returns a work buffer of n elements with unspecified contents and its release:
// float32 ones come from the shared free list (already faulted in), float64 ones (checks
// only) are allocated.
func scratchOf[F Float](n int) ([]F, func()) {
	var z F
	if _, ok := any(z).(float32); ok {
		b := getScratch(n)
		return any(b).([]F), func() { putScratch(b) }
	}
	return make([]F, n), func() {}
}

func loraGrad[F Float](o loraGradOp, in [][]F, out, u []F) {
	f := o.fwd
	N, In, Out, R := f.N, f.In, f.Out, f.R
	s := F(f.cfg.Scale)
	switch o.kind {
	case loraGU: // gu (N,r) = s·gy (N,out)·B (out,r)
		blas.Gemm(false, false, N, R, Out, s, in[0], Out, in[1], R, 0, out, R)
	case loraGX:
		gy, w, gu, a := in[0], in[1], in[2], in[3]
		blas.Gemm(false, false, N, In, Out, 1, gy, Out, w, In, 0, out, In) // gy·W
		if !f.cache.masked {
			blas.Gemm(false, false, N, In, R, 1, gu, R, a, In, 1, out, In) // + gu·A
			return
		}
		t, done := scratchOf[F](N * In)
		defer done()
		blas.Gemm(false, false, N, In, R, 1, gu, R, a, In, 0, t, In)
		f.applyMask(t, t)
		addInto(out, out, t)
	case loraGA: // gA (r,in) = guᵀ (r,N)·drop(x) (N,in)
		gu, xd := in[0], in[1]
		if f.cache.masked {
			var done func()
			xd, done = scratchOf[F](N * In)
			defer done()
			f.applyMask(in[1], xd)
		}
		blas.Gemm(true, false, R, In, N, 1, gu, R, xd, In, 0, out, In)
	case loraGB: // gB (out,r) = s·gyᵀ (out,N)·u (N,r)
		blas.Gemm(true, false, Out, R, N, s, in[0], Out, u, R, 0, out, R)
	}
}
