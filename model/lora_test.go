package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// loraCase is the adapted layer with random x, W, A and (unless zeroB) B.
func loraCase(name string, N, in, out, r int, cfg LoRAConfig, ctl *LoRAControl) fdCase {
	return fdCase{name, func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
		rng := rand.New(rand.NewPCG(uint64(N), uint64(r)))
		x := randNode(g, rng, "x", 1, 0, N, in)
		w := randNode(g, rng, "W", 1, 0, out, in)
		a := randNode(g, rng, "A", 1, 0, r, in)
		b := randNode(g, rng, "B", 1, 0, out, r)
		y, err := LoRALinear(x, w, a, b, cfg, ctl)
		return G.Nodes{x, a, b}, G.Nodes{y}, err
	}}
}

// TestLoRAGradient: the analytic gradients of x, A and B equal central differences, with and
// without dropout (a fixed Step keeps one mask across the evaluations), for s ≠ 1.
func TestLoRAGradient(t *testing.T) {
	for _, c := range []fdCase{
		loraCase("p=0 s=2", 6, 5, 4, 3, LoRAConfig{Scale: 2}, nil),
		loraCase("p=0 r=1", 3, 7, 2, 1, LoRAConfig{Scale: 0.5}, nil),
		loraCase("p=0.4 train", 6, 70, 4, 3, LoRAConfig{Scale: 1.5, Dropout: 0.4, Seed: 9}, &LoRAControl{Train: true, Step: 3}),
		loraCase("p=0.4 eval", 6, 5, 4, 3, LoRAConfig{Scale: 1.5, Dropout: 0.4, Seed: 9}, &LoRAControl{}),
	} {
		t.Run(c.name, func(t *testing.T) { checkGradients(t, c, 1e-6, 1e-6) })
	}
}

// runLoRA builds y = LoRALinear(x, W, A, B), loss = Σ y⊙R, its gradients for x, A, B, and
// runs it once; it returns y and the gradients as float64.
type loraValues struct {
	x, w, a, b, r []float64
	N, in, out, k int
}

func newLoRAValues(seed uint64, N, in, out, k int, zeroB bool) loraValues {
	rng := rand.New(rand.NewPCG(seed, 1))
	f := func(n int, s float64) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = s * rng.NormFloat64()
		}
		return v
	}
	v := loraValues{x: f(N*in, 1), w: f(out*in, 0.1), a: f(k*in, 0.1), b: f(out*k, 0.1), r: f(N*out, 1), N: N, in: in, out: out, k: k}
	if zeroB {
		clear(v.b)
	}
	return v
}

func matNode(g *G.ExprGraph, dt tensor.Dtype, name string, v []float64, rows, cols int) *G.Node {
	var t *tensor.Dense
	if dt == tensor.Float32 {
		d := make([]float32, len(v))
		for i, x := range v {
			d[i] = float32(x)
		}
		t = tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(d))
	} else {
		t = tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(append([]float64(nil), v...)))
	}
	return G.NewMatrix(g, dt, G.WithShape(rows, cols), G.WithName(name), G.WithValue(t))
}

func asF64(v G.Value) []float64 {
	switch d := v.Data().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, x := range d {
			out[i] = float64(x)
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	}
	panic(fmt.Sprintf("%T", v.Data()))
}

// run evaluates y and the gradients; plain selects Linear(x, W) (gradients x, W) instead.
func (v loraValues) run(t testing.TB, dt tensor.Dtype, cfg LoRAConfig, ctl *LoRAControl, plain, share bool) (y []float64, grads [][]float64) {
	t.Helper()
	g := G.NewGraph()
	x := matNode(g, dt, "x", v.x, v.N, v.in)
	w := matNode(g, dt, "W", v.w, v.out, v.in)
	a := matNode(g, dt, "A", v.a, v.k, v.in)
	b := matNode(g, dt, "B", v.b, v.out, v.k)
	r := matNode(g, dt, "R", v.r, v.N, v.out)
	var out *G.Node
	var err error
	wrt := G.Nodes{x, a, b}
	if plain {
		out, err = Linear(x, w)
		wrt = G.Nodes{x, w}
	} else {
		out, err = LoRALinear(x, w, a, b, cfg, ctl)
	}
	if err != nil {
		t.Fatal(err)
	}
	loss, err := Dot(out, r)
	if err != nil {
		t.Fatal(err)
	}
	gs, err := G.Grad(loss, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	if share {
		if err := shareBuffers(g, append(G.Nodes{loss, out}, gs...)); err != nil {
			t.Fatal(err)
		}
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	y = asF64(out.Value())
	for _, gn := range gs {
		grads = append(grads, asF64(gn.Value()))
	}
	return y, grads
}

func maxAbsDiff(a, b []float64) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}

// TestLoRAInitialIsLinear: with B = 0 (the initial state) and no dropout the adapted layer is
// the plain Linear, in value and in the gradient of x; and the gradient of A is zero while
// B's is not (the adapter can start learning).
func TestLoRAInitialIsLinear(t *testing.T) {
	v := newLoRAValues(1, 12, 9, 7, 4, true)
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		y, g := v.run(t, dt, LoRAConfig{Scale: 4}, nil, false, false)
		yl, gl := v.run(t, dt, LoRAConfig{}, nil, true, false)
		if d := maxAbsDiff(y, yl); d > 1e-6 {
			t.Errorf("%v: y differs from Linear by %g", dt, d)
		}
		if d := maxAbsDiff(g[0], gl[0]); d > 1e-6 {
			t.Errorf("%v: gx differs from Linear's by %g", dt, d)
		}
		if d := maxAbsDiff(g[1], make([]float64, len(g[1]))); d != 0 {
			t.Errorf("%v: gA = %g, want 0 while B = 0", dt, d)
		}
		if d := maxAbsDiff(g[2], make([]float64, len(g[2]))); d == 0 {
			t.Errorf("%v: gB is zero", dt)
		}
	}
}

// TestLoRAFloat32MatchesFloat64: the float32 kernels agree with the float64 ones to float32
// precision, with dropout (same seed and step, so the same mask) and under buffer sharing.
func TestLoRAFloat32MatchesFloat64(t *testing.T) {
	v := newLoRAValues(2, 40, 70, 24, 8, false)
	for _, c := range []struct {
		name string
		cfg  LoRAConfig
		ctl  *LoRAControl
	}{
		{"no dropout", LoRAConfig{Scale: 2}, nil},
		{"dropout", LoRAConfig{Scale: 2, Dropout: 0.25, Seed: 5}, &LoRAControl{Train: true, Step: 11}},
	} {
		t.Run(c.name, func(t *testing.T) {
			y64, g64 := v.run(t, tensor.Float64, c.cfg, c.ctl, false, false)
			y32, g32 := v.run(t, tensor.Float32, c.cfg, c.ctl, false, true)
			if d := maxAbsDiff(y64, y32); d > 1e-5 {
				t.Errorf("y: float32 differs by %g", d)
			}
			for i, name := range []string{"x", "A", "B"} {
				if d := maxAbsDiff(g64[i], g32[i]); d > 1e-4 {
					t.Errorf("d%s: float32 differs by %g", name, d)
				}
			}
		})
	}
}

// TestLoRADropout: the forward equals the explicit x·Wᵀ + s·((x⊙m/(1-p))·Aᵀ)·Bᵀ with the
// mask it kept; about p of the elements drop; the same (Seed, Step) gives the same mask and
// another Step or Seed another; evaluation (Train off or no control) applies none.
func TestLoRADropout(t *testing.T) {
	const N, in, out, k, p, s = 64, 96, 8, 4, 0.3, 1.7
	v := newLoRAValues(3, N, in, out, k, false)
	forward := func(cfg LoRAConfig, ctl *LoRAControl) ([]float64, []uint64) {
		g := G.NewGraph()
		x := matNode(g, tensor.Float64, "x", v.x, N, in)
		w := matNode(g, tensor.Float64, "W", v.w, out, in)
		a := matNode(g, tensor.Float64, "A", v.a, k, in)
		b := matNode(g, tensor.Float64, "B", v.b, out, k)
		y, err := LoRALinear(x, w, a, b, cfg, ctl)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		defer vm.Close()
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		op := y.Op().(loraOp)
		var mask []uint64
		if op.cache.masked {
			mask = append(mask, op.cache.mask...)
		}
		return asF64(y.Value()), mask
	}
	explicit := func(mask []uint64) []float64 {
		W := (in + 63) / 64
		y := make([]float64, N*out)
		for i := range N {
			u := make([]float64, k)
			for j := range k {
				for c := range in {
					xv := v.x[i*in+c]
					if mask != nil {
						xv *= float64(mask[i*W+c/64]>>(c%64)&1) / (1 - p)
					}
					u[j] += xv * v.a[j*in+c]
				}
			}
			for o := range out {
				var acc float64
				for c := range in {
					acc += v.x[i*in+c] * v.w[o*in+c]
				}
				for j := range k {
					acc += s * u[j] * v.b[o*k+j]
				}
				y[i*out+o] = acc
			}
		}
		return y
	}
	cfg := LoRAConfig{Scale: s, Dropout: p, Seed: 77}
	y, mask := forward(cfg, &LoRAControl{Train: true, Step: 1})
	if mask == nil {
		t.Fatal("training forward kept no mask")
	}
	if d := maxAbsDiff(y, explicit(mask)); d > 1e-9 {
		t.Errorf("forward differs from the explicit masked product by %g", d)
	}
	kept := 0
	for _, m := range mask {
		for ; m != 0; m &= m - 1 {
			kept++
		}
	}
	if frac := 1 - float64(kept)/float64(N*in); math.Abs(frac-p) > 0.02 {
		t.Errorf("dropped fraction %.3f, want about %.2f", frac, p)
	}
	if _, again := forward(cfg, &LoRAControl{Train: true, Step: 1}); !equalMasks(again, mask) {
		t.Error("the same Seed and Step drew another mask")
	}
	if _, other := forward(cfg, &LoRAControl{Train: true, Step: 2}); equalMasks(other, mask) {
		t.Error("another Step drew the same mask")
	}
	cfg2 := cfg
	cfg2.Seed++
	if _, other := forward(cfg2, &LoRAControl{Train: true, Step: 1}); equalMasks(other, mask) {
		t.Error("another Seed drew the same mask")
	}
	for _, ctl := range []*LoRAControl{nil, {Train: false, Step: 1}} {
		y, m := forward(cfg, ctl)
		if m != nil {
			t.Errorf("control %+v: dropout applied in evaluation", ctl)
		}
		if d := maxAbsDiff(y, explicit(nil)); d > 1e-9 {
			t.Errorf("control %+v: evaluation forward differs from the undropped product by %g", ctl, d)
		}
	}
}

func equalMasks(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLoRAFrozenWeight: W gets no gradient. G.Grad refuses it, and the backward graph has no
// node of W's shape [out,in] (so the out×in weight gradient is never computed or stored),
// where the plain Linear's has one.
func TestLoRAFrozenWeight(t *testing.T) {
	const N, in, out, k = 5, 6, 7, 2
	build := func(plain bool) (g *G.ExprGraph, loss, x, w, a, b *G.Node) {
		g = G.NewGraph()
		rng := rand.New(rand.NewPCG(1, 2))
		x, w = randNode(g, rng, "x", 1, 0, N, in), randNode(g, rng, "W", 1, 0, out, in)
		a, b = randNode(g, rng, "A", 1, 0, k, in), randNode(g, rng, "B", 1, 0, out, k)
		var y *G.Node
		var err error
		if plain {
			y, err = Linear(x, w)
		} else {
			y, err = LoRALinear(x, w, a, b, LoRAConfig{Scale: 1}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if loss, err = Dot(y, randNode(g, rng, "R", 1, 0, N, out)); err != nil {
			t.Fatal(err)
		}
		return
	}
	countWShaped := func(g *G.ExprGraph, w *G.Node) int {
		n := 0
		for _, nd := range g.AllNodes() {
			if nd != w && nd.Shape().Eq(w.Shape()) && nd.Op() != nil {
				n++
			}
		}
		return n
	}
	g, loss, x, w, a, b := build(false)
	if _, err := G.Grad(loss, x, a, b); err != nil {
		t.Fatal(err)
	}
	if n := countWShaped(g, w); n != 0 {
		t.Errorf("the LoRA backward has %d node(s) of W's shape", n)
	}
	g2, loss2, _, w2, _, _ := build(false)
	if _, err := G.Grad(loss2, w2); err == nil {
		t.Error("G.Grad returned a gradient for the frozen W")
	}
	_ = g2
	g3, loss3, x3, w3, _, _ := build(true)
	if _, err := G.Grad(loss3, x3, w3); err != nil {
		t.Fatal(err)
	}
	if n := countWShaped(g3, w3); n == 0 {
		t.Error("the plain Linear's backward has no dW node: the check above cannot fail")
	}
}

// TestLoRAShapesRejected: mismatched shapes and dropout outside [0,1) are errors naming them.
func TestLoRAShapesRejected(t *testing.T) {
	g := G.NewGraph()
	rng := rand.New(rand.NewPCG(1, 3))
	x, w := randNode(g, rng, "x", 1, 0, 3, 4), randNode(g, rng, "W", 1, 0, 5, 4)
	for _, c := range []struct {
		name string
		a, b *G.Node
		cfg  LoRAConfig
		want string
	}{
		{"A in", randNode(g, rng, "A1", 1, 0, 2, 3), randNode(g, rng, "B1", 1, 0, 5, 2), LoRAConfig{}, "A (2, 3)"},
		{"B rank", randNode(g, rng, "A2", 1, 0, 2, 4), randNode(g, rng, "B2", 1, 0, 5, 3), LoRAConfig{}, "B (5, 3)"},
		{"B out", randNode(g, rng, "A3", 1, 0, 2, 4), randNode(g, rng, "B3", 1, 0, 4, 2), LoRAConfig{}, "B (4, 2)"},
		{"dropout 1", randNode(g, rng, "A4", 1, 0, 2, 4), randNode(g, rng, "B4", 1, 0, 5, 2), LoRAConfig{Dropout: 1}, "dropout 1"},
	} {
		_, err := LoRALinear(x, w, c.a, c.b, c.cfg, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		}
	}
}

// TestMergedLoRAEqualsAdapted: Linear(x, W + s·B·A) gives the adapted layer's output, in
// float32 and float64 (the export path).
func TestMergedLoRAEqualsAdapted(t *testing.T) {
	const s = 1.25
	v := newLoRAValues(4, 16, 24, 20, 4, false)
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		y, _ := v.run(t, dt, LoRAConfig{Scale: s}, nil, false, false)
		merged := v
		merged.w = append([]float64(nil), v.w...)
		if err := MergeLoRA(merged.w, v.b, v.a, v.out, v.in, v.k, s); err != nil {
			t.Fatal(err)
		}
		yl, _ := merged.run(t, dt, LoRAConfig{}, nil, true, false)
		if d := maxAbsDiff(y, yl); d > 1e-5 {
			t.Errorf("%v: merged Linear differs from the adapted layer by %g", dt, d)
		}
	}
}

// BenchmarkLoRALinear compares forward+backward of the LoRA layer (gradients x, A, B) with the
// plain Linear's (gradients x and W) at 768×768, r 32, B·T 4096, float32.
func BenchmarkLoRALinear(b *testing.B) {
	const N, C, r = 4096, 768, 32
	v := newLoRAValues(5, N, C, C, r, false)
	for _, plain := range []bool{true, false} {
		name := "LoRA-r32"
		if plain {
			name = "Linear+dW"
		}
		for _, p := range []float64{0, 0.05} {
			if plain && p > 0 {
				continue
			}
			b.Run(fmt.Sprintf("%s/p=%g", name, p), func(b *testing.B) {
				g := G.NewGraph()
				dt := tensor.Float32
				x := matNode(g, dt, "x", v.x, N, C)
				w := matNode(g, dt, "W", v.w, C, C)
				a := matNode(g, dt, "A", v.a, r, C)
				bb := matNode(g, dt, "B", v.b, C, r)
				rr := matNode(g, dt, "R", v.r, N, C)
				var y *G.Node
				var err error
				wrt := G.Nodes{x, a, bb}
				if plain {
					y, err = Linear(x, w)
					wrt = G.Nodes{x, w}
				} else {
					y, err = LoRALinear(x, w, a, bb, LoRAConfig{Scale: 1, Dropout: p, Seed: 1}, &LoRAControl{Train: true})
				}
				if err != nil {
					b.Fatal(err)
				}
				loss, err := Dot(y, rr)
				if err != nil {
					b.Fatal(err)
				}
				gs, err := G.Grad(loss, wrt...)
				if err != nil {
					b.Fatal(err)
				}
				if err := shareBuffers(g, append(G.Nodes{loss}, gs...)); err != nil {
					b.Fatal(err)
				}
				vm := G.NewTapeMachine(g)
				defer vm.Close()
				b.Logf("blas: %s", blas.Backend())
				for b.Loop() {
					vm.Reset()
					if err := vm.RunAll(); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(N*b.N)/b.Elapsed().Seconds(), "tok/s")
			})
		}
	}
}
