package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// x7Case builds one of the RWKV-7 time-mix ops in dtype dt from inputs drawn by mk; it returns
// the inputs to differentiate and the outputs. The same builder serves the float64 finite
// difference check and the float32/float64 agreement check.
type x7Case struct {
	name  string
	h     float64 // finite-difference step (float64)
	build func(mk nodeMaker) (wrt, outs G.Nodes, err error)
}

// nodeMaker makes an input node of the given shape with values shift + scale·N(0,1); the values
// are drawn in float64 from a generator seeded by the case, whatever the dtype.
type nodeMaker func(name string, scale, shift float64, shape ...int) *G.Node

func newNodeMaker(g *G.ExprGraph, dt tensor.Dtype, seed uint64) nodeMaker {
	rng := rand.New(rand.NewPCG(seed, 77))
	return func(name string, scale, shift float64, shape ...int) *G.Node {
		n := tensor.Shape(shape).TotalSize()
		v := make([]float64, n)
		for i := range v {
			v[i] = shift + scale*rng.NormFloat64()
		}
		var t *tensor.Dense
		if dt == tensor.Float32 {
			w := make([]float32, n)
			for i := range v {
				w[i] = float32(v[i])
			}
			t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(w))
		} else {
			t = tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
		}
		if len(shape) == 1 {
			return G.NewVector(g, dt, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
		}
		return G.NewMatrix(g, dt, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
	}
}

// setRows overwrites rows of a matrix node's value (for near-constant groups, tiny keys).
func setValues(n *G.Node, f func(i int, v float64) float64) {
	switch d := n.Value().Data().(type) {
	case []float64:
		for i := range d {
			d[i] = f(i, d[i])
		}
	case []float32:
		for i := range d {
			d[i] = float32(f(i, float64(d[i])))
		}
	}
}

const x7B, x7T, x7H, x7S = 2, 3, 3, 4 // B, T, heads, head size: C = 12, N = 6 rows

func x7Cases() []x7Case {
	const N, C = x7B * x7T, x7H * x7S
	var cases []x7Case
	for _, H := range []int{1, x7H} {
		cases = append(cases, x7Case{fmt.Sprintf("GroupNorm H=%d", H), 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			x, w, b := mk("x", 2, 1, N, C), mk("w", 0.5, 1, C), mk("b", 1, 0, C)
			y, err := GroupNorm(x, w, b, H, GroupNormEpsX070)
			return G.Nodes{x, w, b}, G.Nodes{y}, err
		}})
	}
	cases = append(cases,
		x7Case{"GroupNorm near-constant groups", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			x, w, b := mk("x", 1, 0, N, C), mk("w", 0.5, 1, C), mk("b", 1, 0, C)
			// Group h of row r: 3 + tiny noise, so var ≪ eps for some groups and ≈ eps for others.
			setValues(x, func(i int, v float64) float64 { return 3 + v*[]float64{0, 1e-4, 2e-2}[(i/x7S)%3] })
			y, err := GroupNorm(x, w, b, x7H, GroupNormEpsX070)
			return G.Nodes{x, w, b}, G.Nodes{y}, err
		}},
		x7Case{"KappaAlpha", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			k, kk := mk("k", 1, 0, N, C), mk("kk", 0.3, 0.7, C)
			y, err := KappaAlpha(k, kk, x7H)
			return G.Nodes{k, kk}, G.Nodes{y}, err
		}},
		// Norms of about 1e-13 (clamped) and 3e-12 (just above the clamp): the step must stay
		// far below the keys themselves, so only k is perturbed here...
		x7Case{"KappaAlpha near the eps clamp wrt k", 1e-20, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			k, kk := mk("k", 1, 0, N, C), mk("kk", 0.3, 0.7, C)
			setValues(k, func(i int, v float64) float64 { return v * []float64{3e-14, 1.5e-12, 1}[(i/x7S)%3] })
			y, err := KappaAlpha(k, kk, x7H)
			return G.Nodes{k}, G.Nodes{y}, err
		}},
		// ...and k_k only in the clamped region, where moving it by 1e-6 keeps every norm clamped.
		x7Case{"KappaAlpha clamped wrt k_k", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			k, kk := mk("k", 1e-14, 0, N, C), mk("kk", 0.3, 0.7, C)
			y, err := KappaAlpha(k, kk, x7H)
			return G.Nodes{kk}, G.Nodes{y}, err
		}},
		x7Case{"KappaBeta", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			al, a := mk("alpha", 0.5, 0, N, C), mk("a", 0.3, 0.5, N, C)
			y, err := KappaBeta(al, a)
			return G.Nodes{al, a}, G.Nodes{y}, err
		}},
		x7Case{"KeyMod", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			k, a, ka := mk("k", 1, 0, N, C), mk("a", 0.3, 0.5, N, C), mk("ka", 0.2, 1, C)
			y, err := KeyMod(k, a, ka)
			return G.Nodes{k, a, ka}, G.Nodes{y}, err
		}},
		x7Case{"KappaAlpha+KappaBeta+KeyMod chain", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			k, kk, a, ka := mk("k", 1, 0, N, C), mk("kk", 0.3, 0.7, C), mk("a", 0.3, 0.5, N, C), mk("ka", 0.2, 1, C)
			al, err := KappaAlpha(k, kk, x7H)
			if err != nil {
				return nil, nil, err
			}
			be, err := KappaBeta(al, a)
			if err != nil {
				return nil, nil, err
			}
			k2, err := KeyMod(k, a, ka)
			return G.Nodes{k, kk, a, ka}, G.Nodes{al, be, k2}, err
		}},
		x7Case{"Bonus r_k (C)", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			o, r, k, v, rk := mk("o", 1, 0, N, C), mk("r", 1, 0, N, C), mk("k", 1, 0, N, C), mk("v", 1, 0, N, C), mk("rk", 0.5, -0.04, C)
			y, err := Bonus(o, r, k, v, rk, x7H)
			return G.Nodes{o, r, k, v, rk}, G.Nodes{y}, err
		}},
		x7Case{"Bonus r_k (H,S)", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			o, r, k, v, rk := mk("o", 1, 0, N, C), mk("r", 1, 0, N, C), mk("k", 1, 0, N, C), mk("v", 1, 0, N, C), mk("rk", 0.5, -0.04, x7H, x7S)
			y, err := Bonus(o, r, k, v, rk, x7H)
			return G.Nodes{o, r, k, v, rk}, G.Nodes{y}, err
		}},
		x7Case{"Hadamard", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			x, y := mk("x", 1, 0, N, C), mk("y", 1, 0, N, C)
			o, err := Hadamard(x, y)
			return G.Nodes{x, y}, G.Nodes{o}, err
		}},
		x7Case{"ValueResidual", 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
			v, vf, v0, z := mk("v", 1, 0, N, C), mk("vfirst", 1, 0, N, C), mk("v0", 0.5, 0.7, C), mk("z", 2, 0, N, C)
			y, err := ValueResidual(v, vf, v0, z)
			return G.Nodes{v, vf, v0, z}, G.Nodes{y}, err
		}},
	)
	for _, kind := range []ActKind{ActIdentity, ActTanh, ActSigmoid} {
		for _, bias := range []bool{false, true} {
			if kind == ActIdentity && !bias {
				continue
			}
			cases = append(cases, x7Case{fmt.Sprintf("Activate %v bias=%v", kind, bias), 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
				x := mk("x", 2, 0, N, 5)
				wrt := G.Nodes{x}
				var b *G.Node
				if bias {
					b = mk("b", 1, 0.3, 5)
					wrt = append(wrt, b)
				}
				y, err := Activate(x, b, kind)
				return wrt, G.Nodes{y}, err
			}})
		}
	}
	for _, K := range []int{1, 6} {
		for _, fused := range []bool{false, true} {
			cases = append(cases, x7Case{fmt.Sprintf("ShiftLerp K=%d fused=%v", K, fused), 1e-6, func(mk nodeMaker) (G.Nodes, G.Nodes, error) {
				x, prev := mk("x", 1, 0, N, C), mk("prev", 1, 0, x7B, C)
				wrt := G.Nodes{x, prev}
				var mixes G.Nodes
				for i := range K {
					m := mk(fmt.Sprintf("mix%d", i), 0.3, 0.5, C)
					mixes = append(mixes, m)
					wrt = append(wrt, m)
				}
				shift := ShiftLerp
				if fused {
					shift = shiftLerpFused
				}
				outs, err := shift(x, prev, mixes, x7B, x7T)
				return wrt, outs, err
			}})
		}
	}
	return cases
}

// TestX070OpGradients checks every input's gradient of every RWKV-7 op against central
// differences in float64.
func TestX070OpGradients(t *testing.T) {
	for i, c := range x7Cases() {
		t.Run(c.name, func(t *testing.T) {
			checkGradients(t, fdCase{c.name, func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
				return c.build(newNodeMaker(g, tensor.Float64, uint64(i)))
			}}, c.h, 1e-6)
		})
	}
}

// runX7 runs a case's graph in dtype dt with loss Σ_i Dot(out_i, R_i) and returns the outputs
// and the gradients, as float64.
func runX7(t *testing.T, c x7Case, seed uint64, dt tensor.Dtype) [][]float64 {
	t.Helper()
	g := G.NewGraph()
	wrt, outs, err := c.build(newNodeMaker(g, dt, seed))
	if err != nil {
		t.Fatal(err)
	}
	mkR := newNodeMaker(g, dt, 1000+seed)
	var loss *G.Node
	for i, o := range outs {
		d, err := Dot(o, mkR(fmt.Sprintf("R%d", i), 1, 0, o.Shape()...))
		if err != nil {
			t.Fatal(err)
		}
		if loss == nil {
			loss = d
		} else if loss, err = G.Add(loss, d); err != nil {
			t.Fatal(err)
		}
	}
	grads, err := G.Grad(loss, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	var vals []*G.Value
	for _, n := range append(outs, grads...) {
		v := new(G.Value)
		G.Read(n, v)
		vals = append(vals, v)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		t.Fatal(err)
	}
	var res [][]float64
	for _, v := range vals {
		res = append(res, toFloat64((*v).Data()))
	}
	return res
}

// TestX070OpsFloat32MatchesFloat64 runs each op in both dtypes on the same values and compares
// outputs and gradients (the float32 path is the one training uses).
func TestX070OpsFloat32MatchesFloat64(t *testing.T) {
	for i, c := range x7Cases() {
		if c.h < 1e-10 { // tiny keys: float32 cannot hold the perturbation scale anyway
			continue
		}
		t.Run(c.name, func(t *testing.T) {
			a, b := runX7(t, c, uint64(i), tensor.Float32), runX7(t, c, uint64(i), tensor.Float64)
			for j := range b {
				var worst, scale float64
				for e := range b[j] {
					worst = math.Max(worst, math.Abs(a[j][e]-b[j][e]))
					scale = math.Max(scale, math.Abs(b[j][e]))
				}
				if !(worst <= 2e-5*math.Max(scale, 1)) {
					t.Errorf("value %d: float32 differs from float64 by %.3g (scale %.3g)", j, worst, scale)
				}
			}
		})
	}
}

// TestKappaAlphaClampSemantics pins F.normalize's behaviour: a zero head gives zeros (not NaN),
// a tiny head is divided by 1e-12, a normal head has unit norm.
func TestKappaAlphaClampSemantics(t *testing.T) {
	k := []float64{0, 0, 0, 0, 1e-14, 2e-14, 0, 0, 3, 4, 0, 0}
	kk := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	out := make([]float64, 12)
	kappaForward(k, kk, out, 1, 12, 3)
	want := []float64{0, 0, 0, 0, -0.01, -0.02, 0, 0, -0.6, -0.8, 0, 0}
	for i := range want {
		if math.Abs(out[i]-want[i]) > 1e-12 {
			t.Fatalf("α[%d] = %v, want %v (all %v)", i, out[i], want[i], out)
		}
	}
	gk, gkk := make([]float64, 12), make([]float64, 12)
	ga := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}
	kappaBackward(k, kk, ga, gk, gkk, 1, 12, 3)
	for i, v := range gk {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("gk[%d] = %v", i, v)
		}
	}
	if gk[0] != -1e12 { // clamped: gκ = gκ̂/eps, gκ̂ = -gα
		t.Fatalf("gk of a zero head = %v, want -1e12", gk[0])
	}
}

// x7TimeMixStandIn chains every op of this file the way RWKV-7's time mix does, with a stand-in
// for the WKV-7 op (built from Gate and Residual) so that the test depends on nothing else: it
// exercises gradients summed over several consumers (k, a, α, v, the shift output) and the
// lifetimes of op-owned buffers. B=2, T=3, H=2, S=4, LoRA width 3.
func x7TimeMixStandIn(mk nodeMaker) (G.Nodes, G.Nodes, error) {
	return x7TimeMixStandInSized(mk, 2, 3, 2, 4, 3)
}

func x7TimeMixStandInSized(mk nodeMaker, B, T, H, S, D int) (G.Nodes, G.Nodes, error) {
	N, C := B*T, H*S
	var err error
	must := func(n *G.Node, e error) *G.Node {
		if err == nil {
			err = e
		}
		return n
	}
	x, prev, vFirst := mk("x", 1, 0, N, C), mk("prev", 1, 0, B, C), mk("vfirst", 1, 0, N, C)
	var mixes G.Nodes
	for _, n := range []string{"x_r", "x_w", "x_k", "x_v", "x_a", "x_g"} {
		mixes = append(mixes, mk(n, 0.3, 0.5, C))
	}
	wr, wk, wv, wo := mk("Wr", 0.5, 0, C, C), mk("Wk", 0.5, 0, C, C), mk("Wv", 0.5, 0, C, C), mk("Wo", 0.5, 0, C, C)
	w0, w1, w2 := mk("w0", 0.5, -1, C), mk("w1", 0.5, 0, D, C), mk("w2", 0.5, 0, C, D)
	a0, a1, a2 := mk("a0", 0.3, 0, C), mk("a1", 0.5, 0, D, C), mk("a2", 0.5, 0, C, D)
	v0, v1, v2 := mk("v0", 0.3, 0.7, C), mk("v1", 0.5, 0, D, C), mk("v2", 0.5, 0, C, D)
	g1, g2 := mk("g1", 0.5, 0, D, C), mk("g2", 0.5, 0, C, D)
	kk, ka, rk := mk("k_k", 0.1, 0.7, C), mk("k_a", 0.1, 1, C), mk("r_k", 0.3, -0.04, H, S)
	lnw, lnb := mk("lnx_w", 0.2, 1, C), mk("lnx_b", 0.2, 0, C)

	xs, err := ShiftLerp(x, prev, mixes, B, T)
	if err != nil {
		return nil, nil, err
	}
	xr, xw, xk, xv, xa, xg := xs[0], xs[1], xs[2], xs[3], xs[4], xs[5]
	r := must(Linear(xr, wr))
	w := must(BiasAdd(must(Linear(must(Activate(must(Linear(xw, w1)), nil, ActTanh)), w2)), w0))
	k := must(Linear(xk, wk))
	v := must(Linear(xv, wv))
	v = must(ValueResidual(v, vFirst, v0, must(Linear(must(Linear(xv, v1)), v2))))
	a := must(Activate(must(Linear(must(Linear(xa, a1)), a2)), a0, ActSigmoid))
	g := must(Linear(must(Activate(must(Linear(xg, g1)), nil, ActSigmoid)), g2))
	alpha := must(KappaAlpha(k, kk, H))
	beta := must(KappaBeta(alpha, a))
	k = must(KeyMod(k, a, ka))
	// Stand-in for WKV7(r, w, k, v, alpha, beta).
	o := must(Residual(must(Gate(w, must(Residual(r, alpha)))), must(Gate(beta, must(Residual(k, v))))))
	o = must(GroupNorm(o, lnw, lnb, H, GroupNormEpsX070))
	o = must(Bonus(o, r, k, v, rk, H))
	out := must(Linear(must(Hadamard(o, g)), wo))
	wrt := G.Nodes{x, prev, vFirst}
	wrt = append(wrt, mixes...)
	wrt = append(wrt, wr, wk, wv, wo, w0, w1, w2, a0, a1, a2, v0, v1, v2, g1, g2, kk, ka, rk, lnw, lnb)
	return wrt, G.Nodes{out}, err
}

// TestX070ChainGradient checks the chained ops' gradients for every input against central
// differences in float64.
func TestX070ChainGradient(t *testing.T) {
	checkGradients(t, fdCase{"x070 time mix stand-in", func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
		return x7TimeMixStandIn(newNodeMaker(g, tensor.Float64, 5))
	}}, 1e-6, 1e-6)
}

// TestX070ChainSharedBuffers runs the chain with op outputs sharing memory (shareBuffers) and
// with private outputs, twice each, and requires bit-identical outputs and gradients: the ops
// declare every value their backward reads as an input (Activate's backward reads its output).
func TestX070ChainSharedBuffers(t *testing.T) {
	run := func(share bool) [][]float64 {
		g := G.NewGraph()
		mk := newNodeMaker(g, tensor.Float32, 5)
		wrt, outs, err := x7TimeMixStandIn(mk)
		if err != nil {
			t.Fatal(err)
		}
		loss, err := Dot(outs[0], mk("R", 1, 0, outs[0].Shape()...))
		if err != nil {
			t.Fatal(err)
		}
		grads, err := G.Grad(loss, wrt...)
		if err != nil {
			t.Fatal(err)
		}
		keep := append(G.Nodes{loss, outs[0]}, grads...)
		if share {
			if err := shareBuffers(g, keep); err != nil {
				t.Fatal(err)
			}
			slots, tenants := map[*bufSlot]bool{}, 0
			for _, nd := range g.AllNodes() {
				if bo, ok := nd.Op().(bufferedOp); ok && bo.outBuffer() != nil && bo.outBuffer().slot != nil {
					slots[bo.outBuffer().slot] = true
					tenants++
				}
			}
			if len(slots) >= tenants {
				t.Fatalf("no sharing happened: %d outputs in %d slots", tenants, len(slots))
			}
		}
		vm := G.NewTapeMachine(g)
		defer vm.Close()
		var res [][]float64
		for range 2 {
			vm.Reset()
			if err := vm.RunAll(); err != nil {
				t.Fatal(err)
			}
			for _, n := range keep {
				if n.IsScalar() {
					l, err := scalarOf(n.Value())
					if err != nil {
						t.Fatal(err)
					}
					res = append(res, []float64{l})
				} else {
					res = append(res, toFloat64(n.Value().Data()))
				}
			}
		}
		return res
	}
	a, b := run(true), run(false)
	for i := range b {
		for j := range b[i] {
			if math.Float64bits(a[i][j]) != math.Float64bits(b[i][j]) {
				t.Fatalf("value %d[%d]: shared %v, private %v", i, j, a[i][j], b[i][j])
			}
		}
	}
}

// TestX070OpShapeErrors: every constructor rejects inputs that do not fit, with an error naming
// the op and the shapes.
func TestX070OpShapeErrors(t *testing.T) {
	g := G.NewGraph()
	mk := newNodeMaker(g, tensor.Float64, 1)
	x, x2, prev := mk("x", 1, 0, 6, 12), mk("x2", 1, 0, 6, 8), mk("prev", 1, 0, 2, 12)
	v12, v8, m34 := mk("v12", 1, 0, 12), mk("v8", 1, 0, 8), mk("m34", 1, 0, 3, 4)
	for _, c := range []struct {
		name string
		err  error
	}{
		{"GroupNorm H does not divide C", second(GroupNorm(x, v12, v12, 5, 1e-5))},
		{"GroupNorm weight size", second(GroupNorm(x, v8, v12, 3, 1e-5))},
		{"GroupNorm eps", second(GroupNorm(x, v12, v12, 3, 0))},
		{"KappaAlpha k_k size", second(KappaAlpha(x, v8, 3))},
		{"KappaBeta shapes", second(KappaBeta(x, x2))},
		{"KeyMod k_a size", second(KeyMod(x, x, v8))},
		{"Bonus r_k heads", second(Bonus(x, x, x, x, m34, 4))},
		{"Bonus v shape", second(Bonus(x, x, x, x2, v12, 3))},
		{"Hadamard shapes", second(Hadamard(x, x2))},
		{"ValueResidual v0 size", second(ValueResidual(x, x, v8, x))},
		{"Activate identity without bias", second(Activate(x, nil, ActIdentity))},
		{"Activate bias size", second(Activate(x, v8, ActSigmoid))},
		{"ShiftLerp B*T", second(ShiftLerp(x, prev, G.Nodes{v12}, 2, 4))},
		{"ShiftLerp mix size", second(ShiftLerp(x, prev, G.Nodes{v12, v8}, 2, 3))},
	} {
		if c.err == nil {
			t.Errorf("%s: no error", c.name)
		} else if !strings.HasPrefix(c.err.Error(), "model: ") || strings.Contains(c.err.Error(), "\n") {
			t.Errorf("%s: error %q is not one line starting with model:", c.name, c.err)
		}
	}
}

func second[T any](_ T, err error) error { return err }

// TestX070KernelsSplitRows runs every kernel on a tensor large enough to be split over several
// goroutine pieces and compares it with the same kernel run one row (one sequence for the
// shift) at a time: the piece boundaries must not change any row, and the column sums must agree.
func TestX070KernelsSplitRows(t *testing.T) {
	const B, T, H, S = 3, 24, 8, 64 // one sequence is a single piece, the whole is split mid-sequence
	const N, C = B * T, H * S
	if pieces(N, C) < 2 {
		t.Fatalf("test too small to split: %d pieces", pieces(N, C))
	}
	rng := rand.New(rand.NewPCG(4, 4))
	r := func(n int, scale, shift float64) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = shift + scale*rng.NormFloat64()
		}
		return x
	}
	x, y, z, u, g := r(N*C, 1, 0), r(N*C, 1, 0), r(N*C, 1, 0), r(N*C, 0.3, 0.5), r(N*C, 1, 0)
	w, b, prev := r(C, 0.3, 1), r(C, 0.3, 0), r(B*C, 1, 0)
	mixes := [][]float64{r(C, 0.3, 0.5), r(C, 0.3, 0.5)}
	// kernel(lo, hi, outs) runs on rows [lo, hi) (all of them when called with 0, N) and
	// writes its row outputs at row offsets of outs[0..] and its column sums to the last ones.
	type kernel struct {
		name     string
		rows     int // rows per independent unit (T for the shift)
		nRow     int // number of row outputs
		nCol     int // number of (C) outputs
		run      func(lo, hi int, rowOut [][]float64, colOut [][]float64)
		colWidth int
	}
	sl := func(a []float64, lo, hi int) []float64 { return a[lo*C : hi*C] }
	ks := []kernel{
		{"gnForward", 1, 1, 0, func(lo, hi int, ro, _ [][]float64) {
			gnForward(sl(x, lo, hi), w, b, sl(ro[0], lo, hi), hi-lo, C, H, 1e-5)
		}, C},
		{"gnBackward", 1, 1, 2, func(lo, hi int, ro, co [][]float64) {
			gnBackward(sl(x, lo, hi), w, sl(g, lo, hi), sl(ro[0], lo, hi), co[0], co[1], hi-lo, C, H, 1e-5)
		}, C},
		{"kappaForward", 1, 1, 0, func(lo, hi int, ro, _ [][]float64) { kappaForward(sl(x, lo, hi), w, sl(ro[0], lo, hi), hi-lo, C, H) }, C},
		{"kappaBackward", 1, 1, 1, func(lo, hi int, ro, co [][]float64) {
			kappaBackward(sl(x, lo, hi), w, sl(g, lo, hi), sl(ro[0], lo, hi), co[0], hi-lo, C, H)
		}, C},
		{"keyModBackward", 1, 2, 1, func(lo, hi int, ro, co [][]float64) {
			keyModBackward(sl(x, lo, hi), sl(u, lo, hi), w, sl(g, lo, hi), sl(ro[0], lo, hi), sl(ro[1], lo, hi), co[0], hi-lo, C)
		}, C},
		{"bonusBackward", 1, 3, 1, func(lo, hi int, ro, co [][]float64) {
			bonusBackward(sl(x, lo, hi), sl(y, lo, hi), sl(z, lo, hi), w, sl(g, lo, hi), sl(ro[0], lo, hi), sl(ro[1], lo, hi), sl(ro[2], lo, hi), co[0], hi-lo, C, H)
		}, C},
		{"vresBackward", 1, 3, 1, func(lo, hi int, ro, co [][]float64) {
			vresBackward(sl(x, lo, hi), sl(y, lo, hi), w, sl(z, lo, hi), sl(g, lo, hi), sl(ro[0], lo, hi), sl(ro[1], lo, hi), co[0], sl(ro[2], lo, hi), hi-lo, C)
		}, C},
		{"actBackward sigmoid+bias", 1, 1, 1, func(lo, hi int, ro, co [][]float64) {
			out := make([]float64, (hi-lo)*C+C)
			actBackward(actOp{N: hi - lo, D: C, Kind: ActSigmoid, HasBias: true}, sl(u, lo, hi), sl(g, lo, hi), out)
			copy(sl(ro[0], lo, hi), out)
			copy(co[0], out[(hi-lo)*C:])
		}, C},
		{"shiftLerpBackward K=2", T, 1, 1, func(lo, hi int, ro, co [][]float64) {
			nb := (hi - lo) / T
			gg := make([]float64, 2*(hi-lo)*C)
			for i := range 2 { // the gradient of out_i for these rows
				copy(gg[i*(hi-lo)*C:], g[lo*C:hi*C])
			}
			gprev := make([]float64, nb*C)
			shiftLerpBackward(sl(x, lo, hi), prev[lo/T*C:hi/T*C], mixes, gg, sl(ro[0], lo, hi), gprev, co[0], nb, T, C)
		}, 2 * C},
	}
	for _, k := range ks {
		whole := func(unit bool) ([][]float64, [][]float64) {
			ro, co := make([][]float64, k.nRow), make([][]float64, k.nCol)
			for i := range ro {
				ro[i] = make([]float64, N*C)
			}
			for i := range co {
				co[i] = make([]float64, k.colWidth)
			}
			if !unit {
				k.run(0, N, ro, co)
				return ro, co
			}
			for lo := 0; lo < N; lo += k.rows {
				part := make([][]float64, k.nCol)
				for i := range part {
					part[i] = make([]float64, k.colWidth)
				}
				k.run(lo, lo+k.rows, ro, part)
				for i := range co {
					for c := range co[i] {
						co[i][c] += part[i][c]
					}
				}
			}
			return ro, co
		}
		ra, ca := whole(false)
		rb, cb := whole(true)
		for i := range ra {
			for j := range ra[i] {
				if ra[i][j] != rb[i][j] {
					t.Fatalf("%s: row output %d[%d]: split %v, one unit at a time %v", k.name, i, j, ra[i][j], rb[i][j])
				}
			}
		}
		for i := range ca {
			for j := range ca[i] {
				if math.Abs(ca[i][j]-cb[i][j]) > 1e-9*(1+math.Abs(cb[i][j])) {
					t.Fatalf("%s: column sum %d[%d]: split %v, one unit at a time %v", k.name, i, j, ca[i][j], cb[i][j])
				}
			}
		}
	}
}

// TestX070FastMatchesGo compares the AVX2 float32 kernels (tanh, sigmoid, value residual) with
// the Go ones, on widths with and without a tail of fewer than 8 channels, with NaN-poisoned
// scratch, and split over several pieces.
func TestX070FastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, sh := range []struct{ N, C int }{{5, 37}, {96, 512}} {
		N, C := sh.N, sh.C
		t.Run(fmt.Sprintf("N%d_C%d", N, C), func(t *testing.T) {
			poisonScratch()
			rng := rand.New(rand.NewPCG(uint64(C), 3))
			r := func(n int, scale float64) []float32 {
				x := make([]float32, n)
				for i := range x {
					x[i] = float32(scale * rng.NormFloat64())
				}
				return x
			}
			x, b, v, vf, z, g := r(N*C, 4), r(C, 1), r(N*C, 1), r(N*C, 1), r(N*C, 3), r(N*C, 1)
			x[0], x[1] = 100, -100 // saturated
			near := func(name string, fast, slow []float32, tol float64) {
				t.Helper()
				var scale float64
				for _, s := range slow {
					scale = math.Max(scale, math.Abs(float64(s)))
				}
				for i := range slow {
					if d := math.Abs(float64(fast[i] - slow[i])); !(d <= tol*math.Max(scale, 1)) {
						t.Fatalf("%s[%d]: avx2 %v, go %v", name, i, fast[i], slow[i])
					}
				}
			}
			mk := func() []float32 { return make([]float32, N*C) }
			for _, kind := range []ActKind{ActTanh, ActSigmoid} {
				for _, bias := range [][]float32{nil, b} {
					f, s := mk(), mk()
					if !actForwardFast(kind, x, bias, f, N, C) {
						t.Fatal("fast kernel refused")
					}
					actForward(kind, x, bias, s, N, C)
					near(fmt.Sprintf("%v bias=%v", kind, bias != nil), f, s, 1e-6)
				}
			}
			fo, so := mk(), mk()
			vresForwardFast(v, vf, b, z, fo, N, C)
			vresForward(v, vf, b, z, so, N, C)
			near("value residual", fo, so, 1e-6)
			fgv, fgvf, fgz, fgv0 := mk(), mk(), mk(), make([]float32, C)
			sgv, sgvf, sgz, sgv0 := mk(), mk(), mk(), make([]float32, C)
			vresBackwardFast(v, vf, b, z, g, fgv, fgvf, fgv0, fgz, N, C)
			vresBackward(v, vf, b, z, g, sgv, sgvf, sgv0, sgz, N, C)
			near("gv", fgv, sgv, 1e-6)
			near("gvFirst", fgvf, sgvf, 1e-6)
			near("gz", fgz, sgz, 1e-6)
			near("gv0", fgv0, sgv0, 1e-5)
		})
	}
}
