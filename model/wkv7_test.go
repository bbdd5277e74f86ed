package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// wkv7In holds the inputs of one WKV-7 call: r, w, k, v, a, b (B*T, C) and s0 (B*H*N, N).
type wkv7In[F Float] struct {
	B, T, H, N               int
	r, w, k, v, a, b, s0, dy []F
	dsT                      []F // nil: the final state's gradient is zero
}

// wkv7Case describes random inputs shaped like RWKV-7's: α = -κ̂ and β = κ̂⊙ρ with κ̂ of unit
// norm per head and ρ in (0, 1), as the x070 time-mix computes them; w̃ = wShift + wScale·N(0,1).
type wkv7Case struct {
	B, T, H, N     int
	wShift, wScale float64
	carried        bool // a random initial state (and final-state gradient) instead of zeros
}

func (c wkv7Case) String() string {
	st := "fresh"
	if c.carried {
		st = "carried"
	}
	return fmt.Sprintf("B%d_T%d_H%d_N%d_w%+g_%s", c.B, c.T, c.H, c.N, c.wShift, st)
}

func (c wkv7Case) inputs(seed uint64) wkv7In[float64] {
	rng := rand.New(rand.NewPCG(seed, uint64(c.T*1000+c.N)))
	B, T, H, N := c.B, c.T, c.H, c.N
	n, ns := B*T*H*N, B*H*N*N
	norm := func(m int, scale, shift float64) []float64 {
		x := make([]float64, m)
		for i := range x {
			x[i] = shift + scale*rng.NormFloat64()
		}
		return x
	}
	in := wkv7In[float64]{B: B, T: T, H: H, N: N,
		r: norm(n, 0.5, 0), w: norm(n, c.wScale, c.wShift), k: norm(n, 0.5, 0), v: norm(n, 1, 0),
		a: make([]float64, n), b: make([]float64, n), s0: make([]float64, ns), dy: norm(n, 1, 0)}
	kappa := norm(n, 1, 0)
	for h0 := 0; h0 < n; h0 += N {
		var s float64
		for _, x := range kappa[h0 : h0+N] {
			s += x * x
		}
		s = math.Sqrt(s)
		for j := h0; j < h0+N; j++ {
			rho := 1 / (1 + math.Exp(-rng.NormFloat64()))
			in.a[j], in.b[j] = -kappa[j]/s, kappa[j]/s*rho
		}
	}
	if c.carried {
		in.s0 = norm(ns, 0.5, 0)
		in.dsT = norm(ns, 0.3, 0)
	}
	return in
}

func convert[F, E Float](x []E) []F {
	if x == nil {
		return nil
	}
	y := make([]F, len(x))
	for i, v := range x {
		y[i] = F(v)
	}
	return y
}

func to32(in wkv7In[float64]) wkv7In[float32] {
	return wkv7In[float32]{in.B, in.T, in.H, in.N, convert[float32](in.r), convert[float32](in.w), convert[float32](in.k),
		convert[float32](in.v), convert[float32](in.a), convert[float32](in.b), convert[float32](in.s0),
		convert[float32](in.dy), convert[float32](in.dsT)}
}

// wkv7Out holds the outputs of a forward and a backward call.
type wkv7Out[F Float] struct{ y, sT, dr, dw, dk, dv, da, db, ds0 []F }

func newWKV7Out[F Float](B, T, H, N int) wkv7Out[F] {
	n, ns := B*T*H*N, B*H*N*N
	o := wkv7Out[F]{make([]F, n), make([]F, ns), make([]F, n), make([]F, n), make([]F, n), make([]F, n), make([]F, n), make([]F, n), make([]F, ns)}
	for _, s := range o.all() { // a kernel that leaves an element unwritten fails the comparisons
		for i := range s {
			s[i] = F(math.NaN())
		}
	}
	return o
}

func (o wkv7Out[F]) all() [][]F { return [][]F{o.y, o.sT, o.dr, o.dw, o.dk, o.dv, o.da, o.db, o.ds0} }

var wkv7OutNames = []string{"y", "sT", "dr", "dw", "dk", "dv", "da", "db", "ds0"}

// runWKV7 runs forward and backward with the given kernels.
func runWKV7[F Float](in wkv7In[F], fwd func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []F),
	bwd func(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []F)) wkv7Out[F] {
	o := newWKV7Out[F](in.B, in.T, in.H, in.N)
	fwd(in.B, in.T, in.H, in.N, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, o.y, o.sT)
	bwd(in.B, in.T, in.H, in.N, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, in.dy, in.dsT, o.dr, o.dw, o.dk, o.dv, o.da, o.db, o.ds0)
	return o
}

// maxRelDiff is max|got-want| / max|want| (NaN if either holds a NaN).
func maxRelDiff[F, E Float](got []F, want []E) float64 {
	var worst, scale float64
	for i := range want {
		d := math.Abs(float64(got[i]) - float64(want[i]))
		if math.IsNaN(d) {
			return math.NaN()
		}
		worst = max(worst, d)
		scale = max(scale, math.Abs(float64(want[i])))
	}
	if scale == 0 {
		return worst
	}
	return worst / scale
}

// wkv7Naive is the recurrence written with explicit N×N matrices in float64:
// S_t = S_{t-1}·(diag(d_t) + α_t β_tᵀ) + v_t k_tᵀ, y_t = S_t r_t.
func wkv7Naive(in wkv7In[float64]) (y, sT []float64) {
	B, T, H, N := in.B, in.T, in.H, in.N
	C := H * N
	y, sT = make([]float64, B*T*C), make([]float64, B*H*N*N)
	for bi := 0; bi < B; bi++ {
		for h := 0; h < H; h++ {
			S := make([][]float64, N)
			for i := range S {
				S[i] = append([]float64(nil), in.s0[((bi*H+h)*N+i)*N:][:N]...)
			}
			for t := 0; t < T; t++ {
				o := (bi*T+t)*C + h*N
				M := make([][]float64, N)
				for j := range M {
					M[j] = make([]float64, N)
					for l := range M[j] {
						M[j][l] = in.a[o+j] * in.b[o+l]
					}
					M[j][j] += math.Exp(-math.Exp(-0.5) / (1 + math.Exp(-in.w[o+j])))
				}
				next := make([][]float64, N)
				for i := range next {
					next[i] = make([]float64, N)
					for l := range next[i] {
						var s float64
						for j := 0; j < N; j++ {
							s += S[i][j] * M[j][l]
						}
						next[i][l] = s + in.v[o+i]*in.k[o+l]
					}
				}
				S = next
				for i := 0; i < N; i++ {
					var s float64
					for l := 0; l < N; l++ {
						s += S[i][l] * in.r[o+l]
					}
					y[o+i] = s
				}
			}
			for i := range S {
				copy(sT[((bi*H+h)*N+i)*N:], S[i])
			}
		}
	}
	return y, sT
}

// TestWKV7MatchesNaive compares the Go kernel in float64, and the float32 kernels (Go, and AVX2
// where it runs), with the explicit-matrix recurrence, over head sizes 1 to 64, one token and
// lengths that are not multiples of the backward's 16-token chunks, and decays near both ends.
func TestWKV7MatchesNaive(t *testing.T) {
	for _, c := range []wkv7Case{
		{2, 1, 2, 4, 0, 1, false}, {2, 17, 2, 4, 0, 1, true}, {1, 40, 1, 8, -8, 0.1, true},
		{1, 40, 1, 8, 8, 0.1, true}, {1, 33, 2, 64, 0, 1, true}, {2, 9, 1, 64, -3, 2, false},
		{2, 17, 2, 5, 0, 1, true}, {2, 5, 3, 1, 0, 1, true}, {1, 7, 2, 6, 0, 1, true},
	} {
		t.Run(c.String(), func(t *testing.T) {
			in := c.inputs(1)
			wy, wsT := wkv7Naive(in)
			o := newWKV7Out[float64](c.B, c.T, c.H, c.N)
			wkv7Forward(c.B, c.T, c.H, c.N, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, o.y, o.sT)
			if d := max(maxRelDiff(o.y, wy), maxRelDiff(o.sT, wsT)); !(d <= 1e-13) {
				t.Errorf("float64 Go kernel vs naive: max rel diff %.3g", d)
			}
			in32 := to32(in)
			for _, k := range []struct {
				name string
				fwd  func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []float32)
			}{{"go", wkv7Forward[float32]}, {"dispatch", runWKV7Forward[float32]}} {
				o := newWKV7Out[float32](c.B, c.T, c.H, c.N)
				k.fwd(c.B, c.T, c.H, c.N, in32.r, in32.w, in32.k, in32.v, in32.a, in32.b, in32.s0, o.y, o.sT)
				dy, ds := maxRelDiff(o.y, wy), maxRelDiff(o.sT, wsT)
				t.Logf("float32 %s kernel vs float64 naive: y %.2g, sT %.2g", k.name, dy, ds)
				if !(max(dy, ds) <= 2e-6) {
					t.Errorf("float32 %s kernel vs naive: y %.3g, sT %.3g, want <= 2e-6", k.name, dy, ds)
				}
			}
		})
	}
}

// valNode is a float64 input node holding data.
func valNode(g *G.ExprGraph, name string, data []float64, shape ...int) *G.Node {
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(append([]float64(nil), data...)))
	return G.NewMatrix(g, tensor.Float64, G.WithShape(shape...), G.WithName(name), G.WithValue(t))
}

// TestWKV7Gradient checks the op's gradient of every input, the initial state included, with
// central differences in float64 through Gorgonia (the loss is a random projection of y and of
// the final state, so dsT is exercised too).
func TestWKV7Gradient(t *testing.T) {
	for _, c := range []wkv7Case{
		{2, 1, 2, 4, 0, 1, false}, {2, 1, 2, 4, 0, 1, true},
		{2, 17, 2, 4, 0, 1, false}, {2, 17, 2, 4, 0, 1, true},
		{1, 40, 2, 4, 0, 1, true},
		{1, 17, 2, 4, -8, 0.1, true}, {1, 17, 2, 4, 8, 0.1, true},
		{1, 17, 1, 8, 0, 1, true},
		{1, 17, 2, 5, 0, 1, true}, {2, 3, 2, 1, 0, 1, true}, // head sizes with the kernels' row tails
	} {
		t.Run(c.String(), func(t *testing.T) {
			fc := fdCase{c.String(), func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
				in := c.inputs(2)
				BT, C, NS := c.B*c.T, c.H*c.N, c.B*c.H*c.N
				var ns G.Nodes
				for i, d := range [][]float64{in.r, in.w, in.k, in.v, in.a, in.b} {
					ns = append(ns, valNode(g, "rwkvab"[i:i+1], d, BT, C))
				}
				ns = append(ns, valNode(g, "s0", in.s0, NS, c.N))
				y, sT, err := WKV7(ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6], c.B, c.T, c.H)
				return ns, G.Nodes{y, sT}, err
			}}
			checkGradients(t, fc, 1e-6, 1e-7)
		})
	}
}

// TestWKV7Float32Accuracy measures the float32 kernels (forward and every gradient) against the
// float64 Go kernel at the real head size, 64, over 256 tokens.
func TestWKV7Float32Accuracy(t *testing.T) {
	for _, c := range []wkv7Case{{1, 256, 2, 64, 0, 1, true}, {1, 256, 2, 64, -8, 0.1, false}, {1, 256, 2, 64, 8, 0.1, true}} {
		t.Run(c.String(), func(t *testing.T) {
			in := c.inputs(3)
			want := runWKV7(in, wkv7Forward[float64], wkv7Backward[float64])
			in32 := to32(in)
			for _, k := range []struct {
				name string
				fwd  func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []float32)
				bwd  func(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []float32)
			}{{"go", wkv7Forward[float32], wkv7Backward[float32]}, {"dispatch", runWKV7Forward[float32], runWKV7Backward[float32]}} {
				got := runWKV7(in32, k.fwd, k.bwd)
				msg := ""
				for i, s := range got.all() {
					d := maxRelDiff(s, want.all()[i])
					msg += fmt.Sprintf(" %s %.2g", wkv7OutNames[i], d)
					if !(d <= 2e-5) {
						t.Errorf("float32 %s kernel: %s max rel diff %.3g, want <= 2e-5", k.name, wkv7OutNames[i], d)
					}
				}
				t.Logf("float32 %s vs float64:%s", k.name, msg)
			}
		})
	}
}

// TestWKV7FastMatchesGo compares the AVX2 float32 kernels with the Go float32 kernels, with
// NaN-poisoned scratch, and checks that head sizes that are not multiples of 8 fall back.
func TestWKV7FastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, c := range []wkv7Case{
		{2, 1, 2, 8, 0, 1, false}, {2, 17, 3, 8, 0, 1, true}, {1, 40, 2, 16, 8, 0.1, true},
		{2, 33, 2, 64, 0, 1, true}, {1, 20, 1, 64, -8, 0.1, false},
	} {
		t.Run(c.String(), func(t *testing.T) {
			in := to32(c.inputs(4))
			want := runWKV7(in, wkv7Forward[float32], wkv7Backward[float32])
			poisonScratch()
			ok := true
			got := runWKV7(in, func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []float32) {
				ok = ok && wkv7ForwardFast(B, T, H, N, r, w, k, v, a, b, s0, y, sT)
			}, func(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []float32) {
				ok = ok && wkv7BackwardFast(B, T, H, N, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0)
			})
			if !ok {
				t.Fatal("fast kernels refused to run")
			}
			for i, s := range got.all() {
				if d := maxRelDiff(s, want.all()[i]); !(d <= 1e-5) {
					t.Errorf("%s: avx2 vs go max rel diff %.3g, want <= 1e-5", wkv7OutNames[i], d)
				}
			}
		})
	}
	in := to32(wkv7Case{1, 3, 2, 4, 0, 1, true}.inputs(5))
	o := newWKV7Out[float32](1, 3, 2, 4)
	if wkv7ForwardFast(1, 3, 2, 4, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, o.y, o.sT) ||
		wkv7BackwardFast(1, 3, 2, 4, in.r, in.w, in.k, in.v, in.a, in.b, in.s0, in.dy, in.dsT, o.dr, o.dw, o.dk, o.dv, o.da, o.db, o.ds0) {
		t.Error("fast kernels ran with N=4; they need N a multiple of 8")
	}
}

// TestWKV7ChunkedEqualsOnePass runs T tokens in two calls, carrying the final state forward
// and the initial state's gradient backward, and compares with one call: what chunked BPTT and
// RNN-mode evaluation rely on.
func TestWKV7ChunkedEqualsOnePass(t *testing.T) {
	c := wkv7Case{2, 40, 2, 8, 0, 1, true}
	in := c.inputs(6)
	check := func(name string, tol float64, split func(in wkv7In[float64], t1 int) (wkv7Out[float64], wkv7Out[float64])) {
		for _, t1 := range []int{1, 16, 17, 39} {
			whole, parts := split(in, t1)
			for i, s := range parts.all() {
				if d := maxRelDiff(s, whole.all()[i]); !(d <= tol) {
					t.Errorf("%s, split at %d: %s chunked vs one pass: max rel diff %.3g", name, t1, wkv7OutNames[i], d)
				}
			}
		}
	}
	check("float64 go", 1e-13, func(in wkv7In[float64], t1 int) (wkv7Out[float64], wkv7Out[float64]) {
		return chunkedWKV7(in, t1, wkv7Forward[float64], wkv7Backward[float64])
	})
	check("float32 dispatch", 1e-6, func(in wkv7In[float64], t1 int) (wkv7Out[float64], wkv7Out[float64]) {
		w, p := chunkedWKV7(to32(in), t1, runWKV7Forward[float32], runWKV7Backward[float32])
		return to64(w), to64(p)
	})
}

func to64(o wkv7Out[float32]) wkv7Out[float64] {
	c := convert[float64, float32]
	return wkv7Out[float64]{c(o.y), c(o.sT), c(o.dr), c(o.dw), c(o.dk), c(o.dv), c(o.da), c(o.db), c(o.ds0)}
}

// chunkedWKV7 returns one pass over in and the same computed as tokens [0, t1) then [t1, T).
func chunkedWKV7[F Float](in wkv7In[F], t1 int, fwd func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []F),
	bwd func(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []F)) (whole, parts wkv7Out[F]) {
	B, T, H, N := in.B, in.T, in.H, in.N
	C := H * N
	whole = runWKV7(in, fwd, bwd)
	// cut returns tokens [lo, hi) of every sequence of a (B*T, C) tensor.
	cut := func(x []F, lo, hi int) []F {
		var out []F
		for b := 0; b < B; b++ {
			out = append(out, x[(b*T+lo)*C:(b*T+hi)*C]...)
		}
		return out
	}
	part := func(lo, hi int, s0, dsT []F) wkv7In[F] {
		return wkv7In[F]{B, hi - lo, H, N, cut(in.r, lo, hi), cut(in.w, lo, hi), cut(in.k, lo, hi), cut(in.v, lo, hi),
			cut(in.a, lo, hi), cut(in.b, lo, hi), s0, cut(in.dy, lo, hi), dsT}
	}
	first := newWKV7Out[F](B, t1, H, N)
	p1 := part(0, t1, in.s0, nil)
	fwd(B, t1, H, N, p1.r, p1.w, p1.k, p1.v, p1.a, p1.b, p1.s0, first.y, first.sT)
	second := runWKV7(part(t1, T, first.sT, in.dsT), fwd, bwd)
	bwd(B, t1, H, N, p1.r, p1.w, p1.k, p1.v, p1.a, p1.b, p1.s0, p1.dy, second.ds0,
		first.dr, first.dw, first.dk, first.dv, first.da, first.db, first.ds0)
	join := func(x, y []F) []F {
		var out []F
		for b := 0; b < B; b++ {
			out = append(out, x[b*t1*C:(b+1)*t1*C]...)
			out = append(out, y[b*(T-t1)*C:(b+1)*(T-t1)*C]...)
		}
		return out
	}
	parts = wkv7Out[F]{join(first.y, second.y), second.sT, join(first.dr, second.dr), join(first.dw, second.dw),
		join(first.dk, second.dk), join(first.dv, second.dv), join(first.da, second.da), join(first.db, second.db), first.ds0}
	return whole, parts
}

// TestWKV7OpFloat32 runs the op in a float32 graph (the kernels the trainer uses) and checks its
// outputs and gradients against direct kernel calls: loss = y·R1 + sT·R2, so dy = R1, dsT = R2.
func TestWKV7OpFloat32(t *testing.T) {
	c := wkv7Case{2, 19, 2, 8, 0, 1, true}
	in := to32(c.inputs(7))
	want := runWKV7(in, runWKV7Forward[float32], runWKV7Backward[float32])
	g := G.NewGraph()
	BT, C, NS := c.B*c.T, c.H*c.N, c.B*c.H*c.N
	node := func(name string, d []float32, rows, cols int) *G.Node {
		v := tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(append([]float32(nil), d...)))
		return G.NewMatrix(g, tensor.Float32, G.WithShape(rows, cols), G.WithName(name), G.WithValue(v))
	}
	var ns G.Nodes
	for i, d := range [][]float32{in.r, in.w, in.k, in.v, in.a, in.b} {
		ns = append(ns, node("rwkvab"[i:i+1], d, BT, C))
	}
	ns = append(ns, node("s0", in.s0, NS, c.N))
	y, sT, err := WKV7(ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], ns[6], c.B, c.T, c.H)
	if err != nil {
		t.Fatal(err)
	}
	var got [][]float32
	wkvGraphRun(t, g, y, sT, node("R1", in.dy, BT, C), node("R2", in.dsT, NS, c.N), ns, func(vals []G.Value) {
		got = valuesData[float32](vals)
	})
	// want.all() is y, sT, dr, dw, dk, dv, da, db, ds0; the graph's order is y, sT, then r, w, k, v, a, b, s0.
	for i, w := range [][]float32{want.y, want.sT, want.dr, want.dw, want.dk, want.dv, want.da, want.db, want.ds0} {
		if d := maxRelDiff(got[i], w); !(d <= 1e-6) {
			t.Errorf("output %d (%s): graph vs kernel max rel diff %.3g", i, wkv7OutNames[i], d)
		}
	}
}

// TestWKV7ShapeErrors: WKV7 names the input whose shape does not fit.
func TestWKV7ShapeErrors(t *testing.T) {
	g := G.NewGraph()
	m := func(name string, r, c int) *G.Node {
		return G.NewMatrix(g, tensor.Float64, G.WithShape(r, c), G.WithName(name))
	}
	x := m("x", 6, 8)
	for _, tc := range []struct {
		name       string
		k, s0      *G.Node
		B, T, H    int
		wantSubstr string
	}{
		{"k rows", m("k5", 5, 8), m("s0a", 2*2*4, 4), 2, 3, 2, "input 2 (k5)"},
		{"state", x, m("s0b", 2*2*4, 8), 2, 3, 2, "state shape"},
		{"heads", x, m("s0c", 2*3*3, 3), 2, 3, 3, "multiple of H=3"},
		{"T=0", x, m("s0d", 2*2*4, 4), 2, 0, 2, "T=0"},
	} {
		_, _, err := WKV7(x, x, tc.k, x, x, x, tc.s0, tc.B, tc.T, tc.H)
		if err == nil || !strings.Contains(err.Error(), tc.wantSubstr) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.wantSubstr)
		}
	}
}

// TestWKV7FlushDenormals: the AVX2 kernels read a denormal value as zero (as the other float32
// kernels do) and leave the thread's float mode as they found it.
func TestWKV7FlushDenormals(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	runtime.LockOSThread() // one head: the kernel runs on this goroutine, so on this thread
	defer runtime.UnlockOSThread()
	const N = 8
	one := func(x float32) []float32 {
		s := make([]float32, N)
		for i := range s {
			s[i] = x
		}
		return s
	}
	y, sT := make([]float32, N), make([]float32, N*N)
	// S = v kᵀ with v denormal: y = S r is 1e-39·N unless v was read as zero.
	if !wkv7ForwardFast(1, 1, 1, N, one(1), one(0), one(1), one(1e-39), one(0), one(0), make([]float32, N*N), y, sT) {
		t.Fatal("fast kernel refused to run")
	}
	for i, x := range y {
		if x != 0 {
			t.Fatalf("y[%d] = %g: the denormal v was not flushed", i, x)
		}
	}
	if denormTiny*denormHalf == 0 {
		t.Error("Go arithmetic flushes denormals after the kernel: MXCSR was not restored")
	}
}
