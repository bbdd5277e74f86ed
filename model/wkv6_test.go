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

// wkv6In holds the inputs of one WKV-6 call: r, k, v (B*T, C), w (B*T, C) or (H, N), u (H, N),
// s0 (B*H*N, N), and the output gradients dy (B*T, C) and dsT (B*H*N, N; nil for zero).
type wkv6In[F Float] struct {
	B, T, H, N            int
	r, k, v, w, u, s0, dy []F
	dsT                   []F
}

// wkv6Case describes random inputs: w̃ = wShift + wScale·N(0,1), per token (x060) or per
// channel (wConst, x052).
type wkv6Case struct {
	B, T, H, N     int
	wShift, wScale float64
	wConst         bool
	carried        bool // a random initial state and final-state gradient instead of zeros
}

func (c wkv6Case) String() string {
	st, mode := "fresh", "x060"
	if c.carried {
		st = "carried"
	}
	if c.wConst {
		mode = "x052"
	}
	return fmt.Sprintf("%s_B%d_T%d_H%d_N%d_w%+g_%s", mode, c.B, c.T, c.H, c.N, c.wShift, st)
}

func (c wkv6Case) inputs(seed uint64) wkv6In[float64] {
	rng := rand.New(rand.NewPCG(seed, uint64(c.T*1000+c.N)))
	B, T, H, N := c.B, c.T, c.H, c.N
	n, ns, nh := B*T*H*N, B*H*N*N, H*N
	norm := func(m int, scale, shift float64) []float64 {
		x := make([]float64, m)
		for i := range x {
			x[i] = shift + scale*rng.NormFloat64()
		}
		return x
	}
	nw := n
	if c.wConst {
		nw = nh
	}
	in := wkv6In[float64]{B: B, T: T, H: H, N: N, r: norm(n, 0.5, 0), k: norm(n, 0.5, 0), v: norm(n, 1, 0),
		w: norm(nw, c.wScale, c.wShift), u: norm(nh, 0.5, 0), s0: make([]float64, ns), dy: norm(n, 1, 0)}
	if c.carried {
		in.s0 = norm(ns, 0.5, 0)
		in.dsT = norm(ns, 0.3, 0)
	}
	return in
}

func to32x6(in wkv6In[float64]) wkv6In[float32] {
	c := convert[float32, float64]
	return wkv6In[float32]{in.B, in.T, in.H, in.N, c(in.r), c(in.k), c(in.v), c(in.w), c(in.u), c(in.s0), c(in.dy), c(in.dsT)}
}

// wkv6Out holds the outputs of a forward and a backward call.
type wkv6Out[F Float] struct{ y, sT, dr, dk, dv, dw, du, ds0 []F }

func newWKV6Out[F Float](B, T, H, N, nw int) wkv6Out[F] {
	n, ns := B*T*H*N, B*H*N*N
	o := wkv6Out[F]{make([]F, n), make([]F, ns), make([]F, n), make([]F, n), make([]F, n), make([]F, nw), make([]F, H*N), make([]F, ns)}
	for _, s := range o.all() { // a kernel that leaves an element unwritten fails the comparisons
		for i := range s {
			s[i] = F(math.NaN())
		}
	}
	return o
}

func (o wkv6Out[F]) all() [][]F { return [][]F{o.y, o.sT, o.dr, o.dk, o.dv, o.dw, o.du, o.ds0} }

var wkv6OutNames = []string{"y", "sT", "dr", "dk", "dv", "dw", "du", "ds0"}

type (
	wkv6Fwd[F Float] func(B, T, H, N int, r, k, v, w, u, s0, y, sT []F)
	wkv6Bwd[F Float] func(B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []F)
)

// runWKV6 runs forward and backward with the given kernels.
func runWKV6[F Float](in wkv6In[F], fwd wkv6Fwd[F], bwd wkv6Bwd[F]) wkv6Out[F] {
	o := newWKV6Out[F](in.B, in.T, in.H, in.N, len(in.w))
	fwd(in.B, in.T, in.H, in.N, in.r, in.k, in.v, in.w, in.u, in.s0, o.y, o.sT)
	bwd(in.B, in.T, in.H, in.N, in.r, in.k, in.v, in.w, in.u, in.s0, in.dy, in.dsT, o.dr, o.dk, o.dv, o.dw, o.du, o.ds0)
	return o
}

// wkv6Naive is the recurrence written out element by element in float64, straight from the
// equations of HELPER-COMMON (y reads S before the token's decay).
func wkv6Naive(in wkv6In[float64]) (y, sT []float64) {
	B, T, H, N := in.B, in.T, in.H, in.N
	C := H * N
	y, sT = make([]float64, B*T*C), make([]float64, B*H*N*N)
	for bi := 0; bi < B; bi++ {
		for h := 0; h < H; h++ {
			S := append([]float64(nil), in.s0[(bi*H+h)*N*N:][:N*N]...)
			for t := 0; t < T; t++ {
				o := (bi*T+t)*C + h*N
				wo := o
				if len(in.w) == H*N {
					wo = h * N
				}
				for i := 0; i < N; i++ {
					var s float64
					for j := 0; j < N; j++ {
						s += in.r[o+j] * (in.u[h*N+j]*in.k[o+j]*in.v[o+i] + S[i*N+j])
					}
					y[o+i] = s
				}
				for i := 0; i < N; i++ {
					for j := 0; j < N; j++ {
						S[i*N+j] = math.Exp(-math.Exp(in.w[wo+j]))*S[i*N+j] + in.k[o+j]*in.v[o+i]
					}
				}
			}
			copy(sT[(bi*H+h)*N*N:], S)
		}
	}
	return y, sT
}

// TestWKV6MatchesNaive compares the float64 Go kernel, and the float32 kernels (Go, and AVX2
// where it runs), with the element-by-element recurrence, over head sizes 1 to 64, both decay
// layouts, one token, lengths that are not multiples of the backward's chunks, and decays near
// both ends (w̃ = ±8: d ≈ 0.9997 and d = 0).
func TestWKV6MatchesNaive(t *testing.T) {
	for _, c := range []wkv6Case{
		{2, 1, 2, 4, 0, 1, false, false}, {2, 17, 2, 4, 0, 1, false, true}, {2, 17, 2, 4, 0, 1, true, true},
		{1, 40, 1, 8, -8, 0.1, false, true}, {1, 40, 1, 8, 8, 0.1, true, true},
		{1, 33, 2, 64, -1, 1, false, true}, {2, 9, 1, 64, -3, 2, true, false},
		{2, 17, 2, 5, 0, 1, false, true}, {2, 5, 3, 1, 0, 1, true, true}, {1, 7, 2, 6, 0, 1, false, true},
	} {
		t.Run(c.String(), func(t *testing.T) {
			in := c.inputs(1)
			wy, wsT := wkv6Naive(in)
			o := newWKV6Out[float64](c.B, c.T, c.H, c.N, len(in.w))
			wkv6Forward(c.B, c.T, c.H, c.N, in.r, in.k, in.v, in.w, in.u, in.s0, o.y, o.sT)
			if d := max(maxRelDiff(o.y, wy), maxRelDiff(o.sT, wsT)); !(d <= 1e-13) {
				t.Errorf("float64 Go kernel vs naive: max rel diff %.3g", d)
			}
			in32 := to32x6(in)
			for _, k := range []struct {
				name string
				fwd  wkv6Fwd[float32]
			}{{"go", wkv6Forward[float32]}, {"dispatch", runWKV6Forward[float32]}} {
				o := newWKV6Out[float32](c.B, c.T, c.H, c.N, len(in.w))
				k.fwd(c.B, c.T, c.H, c.N, in32.r, in32.k, in32.v, in32.w, in32.u, in32.s0, o.y, o.sT)
				dy, ds := maxRelDiff(o.y, wy), maxRelDiff(o.sT, wsT)
				if !(max(dy, ds) <= 2e-6) {
					t.Errorf("float32 %s kernel vs naive: y %.3g, sT %.3g, want <= 2e-6", k.name, dy, ds)
				}
			}
		})
	}
}

// wkv6Graph builds WKV6 over float64 value nodes holding in's inputs; the nodes are r, k, v,
// w, u, s0 in that order.
func wkv6Graph(g *G.ExprGraph, in wkv6In[float64]) (G.Nodes, *G.Node, *G.Node, error) {
	BT, C, NS := in.B*in.T, in.H*in.N, in.B*in.H*in.N
	wr, wc := BT, C
	if len(in.w) != BT*C {
		wr, wc = in.H, in.N
	}
	ns := G.Nodes{valNode(g, "r", in.r, BT, C), valNode(g, "k", in.k, BT, C), valNode(g, "v", in.v, BT, C),
		valNode(g, "w", in.w, wr, wc), valNode(g, "u", in.u, in.H, in.N), valNode(g, "s0", in.s0, NS, in.N)}
	y, sT, err := WKV6(ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], in.B, in.T, in.H)
	return ns, y, sT, err
}

// TestWKV6Gradient checks the op's gradient of every input, the initial state included, with
// central differences in float64 through Gorgonia: the loss is a random projection of y and of
// the final state, so a nonzero incoming dsT is exercised too. Fresh and carried states, T = 1,
// 17 (past one backward chunk) and 40 (three chunks), both decay layouts, and w̃ near ±8.
func TestWKV6Gradient(t *testing.T) {
	for _, c := range []wkv6Case{
		{2, 1, 2, 4, 0, 1, false, false}, {2, 1, 2, 4, 0, 1, true, true},
		{2, 17, 2, 4, -1, 1, false, false}, {2, 17, 2, 4, -1, 1, false, true},
		{2, 17, 2, 4, -1, 1, true, true}, {1, 40, 2, 4, -1, 1, false, true}, {2, 40, 1, 4, -1, 1, true, true},
		{1, 17, 2, 4, -8, 0.1, false, true}, {1, 17, 2, 4, 8, 0.1, false, true},
		{1, 17, 2, 4, -8, 0.1, true, true}, {1, 17, 2, 4, 8, 0.1, true, true},
		{1, 17, 2, 5, -1, 1, false, true}, {2, 3, 2, 1, -1, 1, true, true}, // head sizes with the kernels' row tails
	} {
		t.Run(c.String(), func(t *testing.T) {
			fc := fdCase{c.String(), func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
				ns, y, sT, err := wkv6Graph(g, c.inputs(2))
				return ns, G.Nodes{y, sT}, err
			}}
			checkGradients(t, fc, 1e-6, 1e-7)
		})
	}
}

// TestWKV6ExtremeDecay: with w̃ far beyond ±8 (d = 1 and d = 0 to the last bit, exp(w̃)
// overflowing float32) every output and gradient stays finite, and matches float64.
func TestWKV6ExtremeDecay(t *testing.T) {
	c := wkv6Case{1, 20, 2, 8, 0, 1, false, true}
	in := c.inputs(9)
	for i := range in.w {
		in.w[i] = []float64{-100, -30, -8, 8, 30, 100, 1e4, -1e4}[i%8]
	}
	want := runWKV6(in, wkv6Forward[float64], wkv6Backward[float64])
	for i, s := range want.all() {
		for _, x := range s {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("float64 %s holds %v", wkv6OutNames[i], x)
			}
		}
	}
	for _, k := range []struct {
		name string
		fwd  wkv6Fwd[float32]
		bwd  wkv6Bwd[float32]
	}{{"go", wkv6Forward[float32], wkv6Backward[float32]}, {"dispatch", runWKV6Forward[float32], runWKV6Backward[float32]}} {
		got := runWKV6(to32x6(in), k.fwd, k.bwd)
		for i, s := range got.all() {
			if d := maxRelDiff(s, want.all()[i]); !(d <= 1e-5) {
				t.Errorf("float32 %s %s: max rel diff %.3g to float64, want <= 1e-5", k.name, wkv6OutNames[i], d)
			}
		}
	}
}

// TestWKV6Float32Accuracy measures the float32 kernels (forward and every gradient) against the
// float64 Go kernel at the real head size, 64, over 256 tokens, both decay layouts.
func TestWKV6Float32Accuracy(t *testing.T) {
	for _, c := range []wkv6Case{
		{1, 256, 2, 64, -1, 1, false, true}, {1, 256, 2, 64, -8, 0.1, false, false},
		{1, 256, 2, 64, 8, 0.1, false, true}, {2, 256, 2, 64, -3, 1, true, true},
	} {
		t.Run(c.String(), func(t *testing.T) {
			in := c.inputs(3)
			want := runWKV6(in, wkv6Forward[float64], wkv6Backward[float64])
			for _, k := range []struct {
				name string
				fwd  wkv6Fwd[float32]
				bwd  wkv6Bwd[float32]
			}{{"go", wkv6Forward[float32], wkv6Backward[float32]}, {"dispatch", runWKV6Forward[float32], runWKV6Backward[float32]}} {
				got := runWKV6(to32x6(in), k.fwd, k.bwd)
				msg := ""
				for i, s := range got.all() {
					d := maxRelDiff(s, want.all()[i])
					msg += fmt.Sprintf(" %s %.2g", wkv6OutNames[i], d)
					if !(d <= 2e-5) {
						t.Errorf("float32 %s kernel: %s max rel diff %.3g, want <= 2e-5", k.name, wkv6OutNames[i], d)
					}
				}
				t.Logf("float32 %s vs float64:%s", k.name, msg)
			}
		})
	}
}

// TestWKV6FastMatchesGo compares the AVX2 float32 kernels with the Go float32 kernels, with
// NaN-poisoned scratch, and checks that head sizes that are not multiples of 8 fall back.
func TestWKV6FastMatchesGo(t *testing.T) {
	if !haveAVX2 {
		t.Skip("skipping: no AVX2 kernels in this build (needs cgo on amd64 and an AVX2+FMA CPU)")
	}
	for _, c := range []wkv6Case{
		{2, 1, 2, 8, 0, 1, false, false}, {2, 17, 3, 8, -1, 1, false, true}, {2, 17, 3, 8, -1, 1, true, true},
		{1, 40, 2, 16, 8, 0.1, false, true}, {2, 33, 2, 64, -1, 1, false, true}, {1, 20, 1, 64, -8, 0.1, true, false},
	} {
		t.Run(c.String(), func(t *testing.T) {
			in := to32x6(c.inputs(4))
			want := runWKV6(in, wkv6Forward[float32], wkv6Backward[float32])
			poisonScratch()
			ok := true
			got := runWKV6(in, func(B, T, H, N int, r, k, v, w, u, s0, y, sT []float32) {
				ok = ok && wkv6ForwardFast(B, T, H, N, r, k, v, w, u, s0, y, sT)
			}, func(B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []float32) {
				ok = ok && wkv6BackwardFast(B, T, H, N, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0)
			})
			if !ok {
				t.Fatal("fast kernels refused to run")
			}
			for i, s := range got.all() {
				if d := maxRelDiff(s, want.all()[i]); !(d <= 1e-5) {
					t.Errorf("%s: avx2 vs go max rel diff %.3g, want <= 1e-5", wkv6OutNames[i], d)
				}
			}
		})
	}
	in := to32x6(wkv6Case{1, 3, 2, 4, 0, 1, false, true}.inputs(5))
	o := newWKV6Out[float32](1, 3, 2, 4, len(in.w))
	if wkv6ForwardFast(1, 3, 2, 4, in.r, in.k, in.v, in.w, in.u, in.s0, o.y, o.sT) ||
		wkv6BackwardFast(1, 3, 2, 4, in.r, in.k, in.v, in.w, in.u, in.s0, in.dy, in.dsT, o.dr, o.dk, o.dv, o.dw, o.du, o.ds0) {
		t.Error("fast kernels ran with N=4; they need N a multiple of 8")
	}
}

// TestWKV6ChunkedEqualsOnePass runs T tokens in two calls, carrying the final state forward and
// the initial state's gradient backward, and compares with one call: what chunked BPTT and
// RNN-mode evaluation rely on. The per-sequence sums (du, and dw for x052) add up over the two
// calls.
func TestWKV6ChunkedEqualsOnePass(t *testing.T) {
	for _, wConst := range []bool{false, true} {
		c := wkv6Case{2, 40, 2, 8, -1, 1, wConst, true}
		in := c.inputs(6)
		check := func(name string, tol float64, split func(in wkv6In[float64], t1 int) (wkv6Out[float64], wkv6Out[float64])) {
			for _, t1 := range []int{1, 16, 17, 39} {
				whole, parts := split(in, t1)
				for i, s := range parts.all() {
					if d := maxRelDiff(s, whole.all()[i]); !(d <= tol) {
						t.Errorf("%s %s, split at %d: %s chunked vs one pass: max rel diff %.3g", c, name, t1, wkv6OutNames[i], d)
					}
				}
			}
		}
		check("float64 go", 1e-13, func(in wkv6In[float64], t1 int) (wkv6Out[float64], wkv6Out[float64]) {
			return chunkedWKV6(in, t1, wkv6Forward[float64], wkv6Backward[float64])
		})
		check("float32 dispatch", 2e-6, func(in wkv6In[float64], t1 int) (wkv6Out[float64], wkv6Out[float64]) {
			w, p := chunkedWKV6(to32x6(in), t1, runWKV6Forward[float32], runWKV6Backward[float32])
			return to64x6(w), to64x6(p)
		})
	}
}

func to64x6(o wkv6Out[float32]) wkv6Out[float64] {
	c := convert[float64, float32]
	return wkv6Out[float64]{c(o.y), c(o.sT), c(o.dr), c(o.dk), c(o.dv), c(o.dw), c(o.du), c(o.ds0)}
}

// chunkedWKV6 returns one pass over in and the same computed as tokens [0, t1) then [t1, T).
func chunkedWKV6[F Float](in wkv6In[F], t1 int, fwd wkv6Fwd[F], bwd wkv6Bwd[F]) (whole, parts wkv6Out[F]) {
	B, T, H, N := in.B, in.T, in.H, in.N
	C := H * N
	wConst := len(in.w) != B*T*C
	whole = runWKV6(in, fwd, bwd)
	cut := func(x []F, lo, hi int) []F { // tokens [lo, hi) of every sequence of a (B*T, C) tensor
		var out []F
		for b := 0; b < B; b++ {
			out = append(out, x[(b*T+lo)*C:(b*T+hi)*C]...)
		}
		return out
	}
	part := func(lo, hi int, s0, dsT []F) wkv6In[F] {
		w := in.w
		if !wConst {
			w = cut(in.w, lo, hi)
		}
		return wkv6In[F]{B, hi - lo, H, N, cut(in.r, lo, hi), cut(in.k, lo, hi), cut(in.v, lo, hi), w, in.u, s0, cut(in.dy, lo, hi), dsT}
	}
	p1 := part(0, t1, in.s0, nil)
	first := newWKV6Out[F](B, t1, H, N, len(p1.w))
	fwd(B, t1, H, N, p1.r, p1.k, p1.v, p1.w, p1.u, p1.s0, first.y, first.sT)
	second := runWKV6(part(t1, T, first.sT, in.dsT), fwd, bwd)
	bwd(B, t1, H, N, p1.r, p1.k, p1.v, p1.w, p1.u, p1.s0, p1.dy, second.ds0, first.dr, first.dk, first.dv, first.dw, first.du, first.ds0)
	join := func(x, y []F) []F {
		var out []F
		for b := 0; b < B; b++ {
			out = append(out, x[b*t1*C:(b+1)*t1*C]...)
			out = append(out, y[b*(T-t1)*C:(b+1)*(T-t1)*C]...)
		}
		return out
	}
	add := func(x, y []F) []F {
		out := make([]F, len(x))
		for i := range x {
			out[i] = x[i] + y[i]
		}
		return out
	}
	var dw []F
	if wConst {
		dw = add(first.dw, second.dw)
	} else {
		dw = join(first.dw, second.dw)
	}
	parts = wkv6Out[F]{join(first.y, second.y), second.sT, join(first.dr, second.dr), join(first.dk, second.dk),
		join(first.dv, second.dv), dw, add(first.du, second.du), first.ds0}
	return whole, parts
}

// TestWKV6OpFloat32 runs the op in a float32 graph (the kernels the trainer uses), both decay
// layouts, and checks its outputs and gradients against direct kernel calls: loss = y·R1 +
// sT·R2, so dy = R1, dsT = R2.
func TestWKV6OpFloat32(t *testing.T) {
	for _, c := range []wkv6Case{{2, 19, 2, 8, -1, 1, false, true}, {2, 19, 2, 8, -1, 1, true, true}} {
		t.Run(c.String(), func(t *testing.T) {
			in := to32x6(c.inputs(7))
			want := runWKV6(in, runWKV6Forward[float32], runWKV6Backward[float32])
			g := G.NewGraph()
			BT, C, NS := c.B*c.T, c.H*c.N, c.B*c.H*c.N
			node := func(name string, d []float32, rows, cols int) *G.Node {
				v := tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(append([]float32(nil), d...)))
				return G.NewMatrix(g, tensor.Float32, G.WithShape(rows, cols), G.WithName(name), G.WithValue(v))
			}
			wr, wc := BT, C
			if c.wConst {
				wr, wc = c.H, c.N
			}
			ns := G.Nodes{node("r", in.r, BT, C), node("k", in.k, BT, C), node("v", in.v, BT, C),
				node("w", in.w, wr, wc), node("u", in.u, c.H, c.N), node("s0", in.s0, NS, c.N)}
			y, sT, err := WKV6(ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], c.B, c.T, c.H)
			if err != nil {
				t.Fatal(err)
			}
			var got [][]float32
			wkvGraphRun(t, g, y, sT, node("R1", in.dy, BT, C), node("R2", in.dsT, NS, c.N), ns, func(vals []G.Value) {
				got = valuesData[float32](vals)
			})
			for i, w := range want.all() { // both in the order y, sT, r, k, v, w, u, s0
				if d := maxRelDiff(got[i], w); !(d <= 1e-6) {
					t.Errorf("output %d (%s): graph vs kernel max rel diff %.3g", i, wkv6OutNames[i], d)
				}
			}
		})
	}
}

// TestWKV6ShapeErrors: WKV6 names the input whose shape does not fit.
func TestWKV6ShapeErrors(t *testing.T) {
	g := G.NewGraph()
	m := func(name string, r, c int) *G.Node {
		return G.NewMatrix(g, tensor.Float64, G.WithShape(r, c), G.WithName(name))
	}
	x, u, s0 := m("x", 6, 8), m("u", 2, 4), m("s0", 2*2*4, 4)
	for _, tc := range []struct {
		name        string
		k, w, u, s0 *G.Node
		B, T, H     int
		wantSubstr  string
	}{
		{"k rows", m("k5", 5, 8), x, u, s0, 2, 3, 2, "k (k5) shape"},
		{"w", x, m("w3", 3, 4), u, s0, 2, 3, 2, "w (w3) shape (3, 4)"},
		{"u", x, x, m("u8", 1, 8), s0, 2, 3, 2, "u (u8) shape"},
		{"state", x, x, u, m("s0b", 2*2*4, 8), 2, 3, 2, "s0 (s0b) state shape"},
		{"heads", x, x, u, s0, 2, 3, 3, "multiple of H=3"},
		{"T=0", x, x, u, s0, 2, 0, 2, "T=0"},
	} {
		_, _, err := WKV6(x, tc.k, x, tc.w, tc.u, tc.s0, tc.B, tc.T, tc.H)
		if err == nil || !strings.Contains(err.Error(), tc.wantSubstr) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error %v, want one line containing %q", tc.name, err, tc.wantSubstr)
		}
	}
	// Both layouts of w are accepted.
	for _, w := range []*G.Node{x, u} {
		if _, _, err := WKV6(x, x, x, w, u, s0, 2, 3, 2); err != nil {
			t.Errorf("w shape %v: %v", w.Shape(), err)
		}
	}
}
