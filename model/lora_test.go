package model

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"gonum.org/v1/gonum/mat"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
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

// TestLoRADropoutShards: ranks splitting a batch draw the masks of one process with the whole
// batch: rank r's graph of n rows (Shard r) gets rows [r·n, (r+1)·n) of the n·size-row mask,
// so data-parallel training with dropout equals one process; without Shard every rank would
// draw the first rows' masks.
func TestLoRADropoutShards(t *testing.T) {
	const in, n = 96, 10
	cfg := LoRAConfig{Scale: 1, Dropout: 0.3, Seed: 5}
	mask := func(rows int, shard uint64) []uint64 {
		o := loraOp{N: rows, In: in, R: 2, Out: 3, cfg: cfg, ctl: &LoRAControl{Train: true, Step: 7, Shard: shard}, cache: &loraCache{}}
		o.fillMask()
		return o.cache.mask
	}
	W := (in + 63) / 64
	for _, size := range []int{2, 3} {
		whole := mask(size*n, 0)
		for r := range size {
			if got := mask(n, uint64(r)); !equalMasks(got, whole[r*n*W:(r+1)*n*W]) {
				t.Errorf("%d ranks: rank %d's mask is not rows [%d, %d) of one process's", size, r, r*n, (r+1)*n)
			}
		}
	}
	if equalMasks(mask(n, 1), mask(n, 0)) {
		t.Error("shards 0 and 1 drew the same mask")
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

// TestInitLoRA: A ~ U(-1/√in, 1/√in) (kaiming_uniform with a = √5) fills the range, B = 0.
func TestInitLoRA(t *testing.T) {
	const r, in, out = 16, 64, 10
	a, b := make([]float32, r*in), make([]float32, out*r)
	for i := range b {
		b[i] = 1
	}
	if err := InitLoRA(a, b, r, in, rand.New(rand.NewPCG(1, 1))); err != nil {
		t.Fatal(err)
	}
	bound := 1 / math.Sqrt(in)
	var hi, sum float64
	for _, v := range a {
		hi = math.Max(hi, math.Abs(float64(v)))
		sum += float64(v)
	}
	if hi > bound || hi < 0.95*bound {
		t.Errorf("max |A| = %g, want just under 1/√in = %g", hi, bound)
	}
	if mean := sum / float64(len(a)); math.Abs(mean) > 0.1*bound {
		t.Errorf("mean of A = %g, want about 0", mean)
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("B[%d] = %g, want 0", i, v)
		}
	}
	if err := InitLoRA(a, b, r, in+1, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("InitLoRA accepted A of the wrong size")
	}
}

// knownSpectrum returns U diag(s) Vᵀ (rows×cols) for random orthonormal U, V.
func knownSpectrum(t *testing.T, rows, cols int, s []float64, seed uint64) []float64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 2))
	k := len(s)
	orth := func(n int) []float64 {
		m := make([]float64, n*k)
		for i := range m {
			m[i] = rng.NormFloat64()
		}
		if _, err := blas.ThinQR(n, k, m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	u, v := orth(rows), orth(cols)
	for i := range rows {
		for j := range k {
			u[i*k+j] *= s[j]
		}
	}
	w := make([]float64, rows*cols)
	blas.Gemm(false, true, rows, cols, k, 1, u, k, v, k, 0, w, cols)
	return w
}

func frobDiff(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += (a[i] - b[i]) * (a[i] - b[i])
	}
	return math.Sqrt(s)
}

// TestRandomizedSVDSpectrum: on a matrix with a known, slowly decaying spectrum the top r
// singular values match the truth (and gonum's full SVD), in both orientations; more power
// iterations give a better rank-r approximation, approaching the optimal error.
func TestRandomizedSVDSpectrum(t *testing.T) {
	const r = 8
	for _, sh := range []struct{ rows, cols int }{{96, 64}, {48, 80}} {
		k := min(sh.rows, sh.cols)
		s := make([]float64, k)
		for i := range s {
			s[i] = 10 * math.Pow(0.85, float64(i))
		}
		w := knownSpectrum(t, sh.rows, sh.cols, s, uint64(sh.rows))
		var full mat.SVD // the reference: gonum's full SVD agrees with the construction
		if !full.Factorize(mat.NewDense(sh.rows, sh.cols, append([]float64(nil), w...)), mat.SVDNone) {
			t.Fatal("full SVD failed")
		}
		if d := maxAbsDiff(full.Values(nil), s); d > 1e-10 {
			t.Fatalf("full SVD differs from the constructed spectrum by %g", d)
		}
		var opt float64 // optimal rank-r error: sqrt(Σ_{i≥r} s_i²)
		for _, x := range s[r:] {
			opt += x * x
		}
		opt = math.Sqrt(opt)
		prev := math.Inf(1)
		for _, niter := range []int{0, 1, 4, 12} {
			svd, err := RandomizedSVD(w, sh.rows, sh.cols, r, niter, rand.New(rand.NewPCG(3, 3)))
			if err != nil {
				t.Fatal(err)
			}
			approx := make([]float64, len(w))
			us := append([]float64(nil), svd.U...)
			for i := range sh.rows {
				for j := range r {
					us[i*r+j] *= svd.S[j]
				}
			}
			blas.Gemm(false, true, sh.rows, sh.cols, r, 1, us, r, svd.V, r, 0, approx, sh.cols)
			e := frobDiff(approx, w)
			t.Logf("%dx%d niter %d: error %.4f (optimal %.4f), S[0] %.4f S[%d] %.4f (true %.4f %.4f)", sh.rows, sh.cols, niter, e, opt, svd.S[0], r-1, svd.S[r-1], s[0], s[r-1])
			if e > prev*1.0001 {
				t.Errorf("%dx%d: niter %d error %.5f is worse than with fewer iterations (%.5f)", sh.rows, sh.cols, niter, e, prev)
			}
			prev = e
			if niter == 12 {
				if e > opt*1.01 {
					t.Errorf("%dx%d: error %.5f after 12 iterations, optimal %.5f", sh.rows, sh.cols, e, opt)
				}
				for j := range r {
					if math.Abs(svd.S[j]-s[j]) > 1e-2*s[j] {
						t.Errorf("%dx%d: S[%d] = %.5f, true %.5f", sh.rows, sh.cols, j, svd.S[j], s[j])
					}
				}
			}
		}
		// niter 0 is measurably off on this spectrum, so the checks above can fail.
		svd0, _ := RandomizedSVD(w, sh.rows, sh.cols, r, 0, rand.New(rand.NewPCG(3, 3)))
		if math.Abs(svd0.S[r-1]-s[r-1]) < 1e-2*s[r-1] {
			t.Errorf("%dx%d: niter 0 already exact; the spectrum is too easy for this test", sh.rows, sh.cols)
		}
	}
	if _, err := RandomizedSVD(make([]float64, 12), 3, 4, 4, 1, rand.New(rand.NewPCG(1, 1))); err == nil {
		t.Error("rank 4 of a 3×4 matrix accepted")
	}
}

// TestPiSSA: A = diag(√S)Vᵀ, B = U diag(√S) (so B·A is the rank-r approximation and the
// columns of B are orthogonal with norms S), and W_res + B·A reproduces W to float32 precision
// after the three are rounded to float32; merging the untrained pair gives W back, merging a
// trained pair gives W_res + B·A.
func TestPiSSA(t *testing.T) {
	const out, in, r = 40, 56, 6
	rng := rand.New(rand.NewPCG(8, 8))
	w := make([]float64, out*in)
	for i := range w {
		w[i] = 0.2 * rng.NormFloat64()
	}
	p, err := PiSSA(w, out, in, r, 4, rand.New(rand.NewPCG(1, 1)))
	if err != nil {
		t.Fatal(err)
	}
	f32s := func(v []float64) []float32 {
		o := make([]float32, len(v))
		for i, x := range v {
			o[i] = float32(x)
		}
		return o
	}
	a32, b32, res32 := f32s(p.A), f32s(p.B), f32s(p.WRes)
	var worst, scale float64
	for o := range out {
		for c := range in {
			v := float64(res32[o*in+c])
			for j := range r {
				v += float64(b32[o*r+j]) * float64(a32[j*in+c])
			}
			worst = math.Max(worst, math.Abs(v-w[o*in+c]))
			scale = math.Max(scale, math.Abs(w[o*in+c]))
		}
	}
	if worst > 4e-7*scale {
		t.Errorf("W_res + B·A in float32 differs from W by %g (|W| ≤ %g)", worst, scale)
	}
	for i := range r {
		for j := range r {
			var dot float64
			for o := range out {
				dot += p.B[o*r+i] * p.B[o*r+j]
			}
			want := 0.0
			if i == j {
				want = p.S[i]
			}
			if math.Abs(dot-want) > 1e-9*p.S[0] {
				t.Errorf("(BᵀB)[%d,%d] = %g, want %g", i, j, dot, want)
			}
		}
	}
	// Merge: untrained adapter gives W back; a trained one gives W_res + B'·A'.
	merged := append([]float64(nil), w...)
	if err := MergePiSSA(merged, p.B, p.A, p.B, p.A, out, in, r); err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(merged, w); d > 1e-12 {
		t.Errorf("merging the untrained PiSSA adapter changed W by %g", d)
	}
	a2, b2 := append([]float64(nil), p.A...), append([]float64(nil), p.B...)
	for i := range a2 {
		a2[i] += 0.01 * rng.NormFloat64()
	}
	for i := range b2 {
		b2[i] -= 0.02 * rng.NormFloat64()
	}
	merged = append(merged[:0], w...)
	if err := MergePiSSA(merged, p.B, p.A, b2, a2, out, in, r); err != nil {
		t.Fatal(err)
	}
	want := append([]float64(nil), p.WRes...)
	for o := range out {
		for c := range in {
			for j := range r {
				want[o*in+c] += b2[o*r+j] * a2[j*in+c]
			}
		}
	}
	if d := maxAbsDiff(merged, want); d > 1e-12 {
		t.Errorf("MergePiSSA differs from (W − B0A0) + BA by %g", d)
	}
	if err := MergePiSSA(merged, p.B, p.A, b2, a2[1:], out, in, r); err == nil {
		t.Error("MergePiSSA accepted A of the wrong size")
	}
}

// TestMergeLoRA: W + s·B·A against explicit products, float32.
func TestMergeLoRA(t *testing.T) {
	const out, in, r, s = 5, 7, 3, 4.0
	rng := rand.New(rand.NewPCG(2, 9))
	f := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	w, b, a := f(out*in), f(out*r), f(r*in)
	want := make([]float64, out*in)
	for o := range out {
		for c := range in {
			want[o*in+c] = float64(w[o*in+c])
			for j := range r {
				want[o*in+c] += s * float64(b[o*r+j]) * float64(a[j*in+c])
			}
		}
	}
	if err := MergeLoRA(w, b, a, out, in, r, s); err != nil {
		t.Fatal(err)
	}
	got := make([]float64, len(w))
	for i, v := range w {
		got[i] = float64(v)
	}
	if d := maxAbsDiff(got, want); d > 1e-5 {
		t.Errorf("MergeLoRA differs from W + s·B·A by %g", d)
	}
}

// TestLoRAMatchesTorch compares the LoRA layer's output and the gradients of x, A and B in
// float64 with PyTorch autograd on RWKV-PEFT's expression (reference/peft.py), without dropout
// and with dropout (rwkv-go's mask replayed in torch), and checks torch computes no gradient for
// the frozen W either; and PiSSA's singular values and B·A against torch.svd_lowrank's on a
// matrix with a decaying spectrum (both converge to the truncated SVD; their random draws
// differ). It skips where /usr/bin/python3 cannot import torch, unless RWKV_REQUIRE_TORCH is set.
func TestLoRAMatchesTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts PyTorch")
	}
	py := testutil.RequireTorch(t)
	const N, in, out, k, s, p = 10, 70, 12, 3, 1.5, 0.3
	v := newLoRAValues(6, N, in, out, k, false)
	// PiSSA input: known spectrum 10·0.7^i, 30×20, r 4.
	spec := make([]float64, 20)
	for i := range spec {
		spec[i] = 10 * math.Pow(0.7, float64(i))
	}
	pw := knownSpectrum(t, 30, 20, spec, 11)
	type goSide struct {
		y, gx, gA, gB []float64
	}
	var goRes []goSide
	var cases []map[string]any
	for _, drop := range []bool{false, true} {
		cfg, ctl := LoRAConfig{Scale: s}, (*LoRAControl)(nil)
		if drop {
			cfg, ctl = LoRAConfig{Scale: s, Dropout: p, Seed: 3}, &LoRAControl{Train: true, Step: 4}
		}
		g := G.NewGraph()
		x := matNode(g, tensor.Float64, "x", v.x, N, in)
		w := matNode(g, tensor.Float64, "W", v.w, out, in)
		a := matNode(g, tensor.Float64, "A", v.a, k, in)
		b := matNode(g, tensor.Float64, "B", v.b, out, k)
		y, err := LoRALinear(x, w, a, b, cfg, ctl)
		if err != nil {
			t.Fatal(err)
		}
		loss, err := Dot(y, matNode(g, tensor.Float64, "R", v.r, N, out))
		if err != nil {
			t.Fatal(err)
		}
		grads, err := G.Grad(loss, x, a, b)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		var mask []float64
		if drop {
			op := y.Op().(loraOp)
			W := op.maskWords()
			mask = make([]float64, N*in)
			for i := range N {
				for c := range in {
					mask[i*in+c] = float64(op.cache.mask[i*W+c/64] >> (c % 64) & 1)
				}
			}
		}
		goRes = append(goRes, goSide{asF64(y.Value()), asF64(grads[0].Value()), asF64(grads[1].Value()), asF64(grads[2].Value())})
		vm.Close()
		cases = append(cases, map[string]any{"N": N, "in": in, "out": out, "r": k, "s": s, "p": p,
			"x": v.x, "W": v.w, "A": v.a, "B": v.b, "R": v.r, "mask": mask})
	}
	const niter = 40 // σ5/σ4 = 0.7: the basis error shrinks like 0.7^(2·niter+1)
	req := map[string]any{"lora": cases, "pissa": map[string]any{"out": 30, "in": 20, "r": 4, "niter": niter, "W": pw}}
	body, _ := json.Marshal(req)
	cmd := exec.Command(py, filepath.Join("..", "reference", "peft.py"))
	cmd.Stdin = bytes.NewReader(body)
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("peft.py: %v", err)
	}
	var got struct {
		LoRA []struct {
			Y, Gx, GA, GB []float64
			WHasGrad      bool `json:"W_has_grad"`
		}
		PiSSA struct {
			S, BA    []float64
			ReconErr float64 `json:"recon_err"`
		}
	}
	if err := json.Unmarshal(res, &got); err != nil || len(got.LoRA) != len(goRes) {
		t.Fatalf("peft.py output: %v, %d LoRA results", err, len(got.LoRA))
	}
	for i, gr := range goRes {
		tr := got.LoRA[i]
		for _, c := range []struct {
			name      string
			go_, want []float64
		}{{"y", gr.y, tr.Y}, {"gx", gr.gx, tr.Gx}, {"gA", gr.gA, tr.GA}, {"gB", gr.gB, tr.GB}} {
			if d := maxAbsDiff(c.go_, c.want); d > 1e-10 {
				t.Errorf("dropout %v: %s differs from torch by %g", i == 1, c.name, d)
			}
		}
		if tr.WHasGrad {
			t.Error("torch computed a gradient for the frozen W: the reference is not RWKV-PEFT's")
		}
	}
	ps, err := PiSSA(pw, 30, 20, 4, niter, rand.New(rand.NewPCG(2, 2)))
	if err != nil {
		t.Fatal(err)
	}
	ba := make([]float64, 30*20)
	blas.Gemm(false, false, 30, 20, 4, 1, ps.B, 4, ps.A, 20, 0, ba, 20)
	if d := maxAbsDiff(ps.S, got.PiSSA.S); d > 1e-9 {
		t.Errorf("PiSSA singular values %v, torch %v", ps.S, got.PiSSA.S)
	}
	if d := maxAbsDiff(ba, got.PiSSA.BA); d > 1e-9 {
		t.Errorf("PiSSA B·A differs from torch's by %g", d)
	}
	if got.PiSSA.ReconErr > 1e-12 {
		t.Errorf("torch's PiSSA reconstructs W to %g only", got.PiSSA.ReconErr)
	}
}
