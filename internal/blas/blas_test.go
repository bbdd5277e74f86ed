package blas

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// naive is the definition of C = alpha*op(A)*op(B) + beta*C, in float64. As in BLAS, beta = 0
// overwrites C without reading it (a NaN there does not propagate).
func naive(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				var av, bv float64
				if tA {
					av = a[p*lda+i]
				} else {
					av = a[i*lda+p]
				}
				if tB {
					bv = b[j*ldb+p]
				} else {
					bv = b[p*ldb+j]
				}
				s += av * bv
			}
			if beta == 0 {
				c[i*ldc+j] = alpha * s
			} else {
				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
			}
		}
	}
}

// gemmCase is one product of TestGemmBackendsMatchDefinition: the leading dimensions are the
// rows' widths plus padA, padB, padC.
type gemmCase struct {
	tA, tB           bool
	m, n, k          int
	padA, padB, padC int
	alpha, beta      float64
}

// gemmCases are general products and, for every transpose pair, products with one row
// (m == 1) or one column (n == 1) of C, which run as gemv, with padded leading dimensions
// (strides lda for op(A)'s row when tA, ldb for op(B)'s column, ldc for C's column) and
// alpha/beta pairs that include beta = 0 (C overwritten), beta = 1 and alpha = 0.
func gemmCases() []gemmCase {
	cs := []gemmCase{
		{false, false, 5, 7, 3, 0, 0, 0, 1.5, 0.5}, {true, false, 4, 6, 9, 0, 0, 0, 1.5, 0.5},
		{false, true, 8, 3, 5, 0, 0, 0, 1.5, 0.5}, {true, true, 3, 3, 1, 0, 0, 0, 1.5, 0.5},
		{false, true, 33, 65, 17, 0, 0, 0, 1.5, 0.5}, {false, false, 6, 5, 4, 2, 3, 1, -0.5, 0},
		{false, false, 1, 4, 0, 0, 0, 0, 1.5, 0.5}, {false, false, 3, 1, 0, 1, 1, 2, 1.5, 0.5}, // k == 0: c = beta*c
	}
	ab := [][2]float64{{1.5, 0.5}, {1, 0}, {-0.75, 1}, {0, 2}}
	shapes := [][3]int{{1, 37, 19}, {23, 1, 19}, {1, 1, 7}, {1, 300, 2}, {300, 1, 2}}
	i := 0
	for _, sh := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, p := range ab {
					pad := [3]int{i % 3, (i + 1) % 4, (i + 2) % 5}
					cs = append(cs, gemmCase{tA, tB, sh[0], sh[1], sh[2], pad[0], pad[1], pad[2], p[0], p[1]})
					i++
				}
			}
		}
	}
	return cs
}

// TestGemmBackendsMatchDefinition: every backend's sgemm and dgemm give the definition's C
// (dgemm within 1e-12, sgemm within 1e-4, relative to 1+|C|) on gemmCases. A and B are slices
// of exactly the length their shape needs with NaN in the padding, so reading a wrong stride
// turns C into NaN; C's padding must come back untouched, and with beta = 0 C starts as NaN.
func TestGemmBackendsMatchDefinition(t *testing.T) {
	backends := []backend{gonumBackend{}}
	if ob, err := openOpenBLAS(); err == nil {
		backends = append(backends, ob)
	} else {
		t.Logf("OpenBLAS not tested: %v", err)
	}
	const padC = 12345.0
	rng := rand.New(rand.NewPCG(1, 2))
	// fill returns a rows×cols matrix with leading dimension cols+pad, pad entries set to pv.
	fill := func(rows, cols, pad int, pv float64, nan bool) ([]float64, int) {
		ld := max(1, cols+pad)
		s := make([]float64, max(0, (rows-1)*ld+cols))
		for i := range s {
			switch {
			case i%ld >= cols:
				s[i] = pv
			case nan:
				s[i] = math.NaN()
			default:
				s[i] = rng.NormFloat64()
			}
		}
		return s, ld
	}
	to32 := func(s []float64) []float32 {
		r := make([]float32, len(s))
		for i, x := range s {
			r[i] = float32(x)
		}
		return r
	}
	for _, be := range backends {
		for _, tc := range gemmCases() {
			ar, ac := tc.m, tc.k
			if tc.tA {
				ar, ac = tc.k, tc.m
			}
			br, bc := tc.k, tc.n
			if tc.tB {
				br, bc = tc.n, tc.k
			}
			a, lda := fill(ar, ac, tc.padA, math.NaN(), false)
			b, ldb := fill(br, bc, tc.padB, math.NaN(), false)
			c, ldc := fill(tc.m, tc.n, tc.padC, padC, tc.beta == 0)
			want := append([]float64(nil), c...)
			naive(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
			got := append([]float64(nil), c...)
			be.dgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)
			got32 := to32(c)
			be.sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, float32(tc.alpha), to32(a), lda, to32(b), ldb, float32(tc.beta), got32, ldc)
			for i, w := range want {
				if i%ldc >= tc.n {
					if got[i] != padC || got32[i] != padC {
						t.Fatalf("%s %+v: padding element %d of C changed to %v (dgemm), %v (sgemm)", be.name(), tc, i, got[i], got32[i])
					}
					continue
				}
				if d := math.Abs(got[i] - w); !(d <= 1e-12*(1+math.Abs(w))) {
					t.Fatalf("%s dgemm %+v: element %d got %v want %v", be.name(), tc, i, got[i], w)
				}
				if d := math.Abs(float64(got32[i]) - w); !(d <= 1e-4*(1+math.Abs(w))) {
					t.Fatalf("%s sgemm %+v: element %d got %v want %v", be.name(), tc, i, got32[i], w)
				}
			}
		}
	}
}

// TestAsGemvShapes: exactly the products with one row or one column of C and k > 0 become
// matrix-vector products (k == 0 must stay a gemm: gemv would not scale C by beta).
func TestAsGemvShapes(t *testing.T) {
	for _, tc := range []struct {
		m, n, k int
		want    bool
	}{{1, 5, 3, true}, {5, 1, 3, true}, {1, 1, 1, true}, {2, 2, 3, false}, {1, 5, 0, false}, {5, 1, 0, false}} {
		x := make([]float32, 15)
		if _, ok := asGemv(false, false, tc.m, tc.n, tc.k, x, max(1, tc.k), x, tc.n, x, tc.n); ok != tc.want {
			t.Errorf("m=%d n=%d k=%d: gemv %v, want %v", tc.m, tc.n, tc.k, ok, tc.want)
		}
	}
}

func TestChooseRejectsUnknownBackend(t *testing.T) {
	if _, err := choose("mkl"); err == nil {
		t.Fatal("RWKV_BLAS=mkl accepted")
	}
	if b, err := choose("gonum"); err != nil || b.name() != "gonum (pure Go)" {
		t.Fatalf("gonum: %v %v", b, err)
	}
}

func TestGemmPanicsOnShortSlices(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for a 2x2 product into a 3-element slice")
		}
	}()
	checkGemm(false, false, 2, 2, 2, 4, 2, 4, 2, 3, 2)
}

func BenchmarkSgemm512(b *testing.B) {
	const n = 512
	x := make([]float32, n*n)
	for i := range x {
		x[i] = float32(i%7) * 0.1
	}
	c := make([]float32, n*n)
	for b.Loop() {
		Gemm(false, true, n, n, n, 1, x, n, x, n, 0, c, n)
	}
	b.ReportMetric(2*n*n*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	b.Logf("backend: %s", Backend())
}

// TestOpenBLASFlushesDenormals: float32 products flush denormals to zero on every thread
// OpenBLAS uses (PyTorch's set_flush_denormal), and the calling thread's own float mode is
// restored afterwards, so Go arithmetic keeps its denormals. The one-row and one-column
// products run as sgemv and must flush the same way.
func TestOpenBLASFlushesDenormals(t *testing.T) {
	ob, err := openOpenBLAS()
	if err != nil {
		t.Skipf("skipping: OpenBLAS not available: %v", err)
	}
	if !ftzSupported {
		t.Skip("skipping: no MXCSR on this architecture")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	// Large enough that OpenBLAS splits each across its threads; each product is 1e-42, a
	// denormal, so a flushing product is exactly zero and a non-flushing one about 6e-41.
	for _, tc := range []struct {
		tA, tB  bool
		m, n, k int
	}{{false, false, 256, 256, 64}, {false, false, 1, 8192, 64}, {false, true, 1, 8192, 64},
		{false, false, 8192, 1, 64}, {true, false, 8192, 1, 64}} {
		a, b, c := make([]float32, tc.m*tc.k), make([]float32, tc.k*tc.n), make([]float32, tc.m*tc.n)
		for i := range a {
			a[i] = 1e-21
		}
		for i := range b {
			b[i] = 1e-21
		}
		lda, ldb := tc.k, tc.n
		if tc.tA {
			lda = tc.m
		}
		if tc.tB {
			ldb = tc.k
		}
		ob.sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, a, lda, b, ldb, 0, c, tc.n)
		for i, x := range c {
			if x != 0 {
				t.Fatalf("%+v: c[%d] = %g: a denormal was not flushed", tc, i, x)
			}
		}
		if denormTiny*denormHalf == 0 {
			t.Errorf("%+v: Go arithmetic flushes denormals after an sgemm: the caller's MXCSR was not restored", tc)
		}
	}
}

// Package variables, so that the compiler cannot fold the product: 1e-39*0.5 is a denormal,
// zero only where the thread flushes denormals.
var denormTiny, denormHalf = float32(1e-39), float32(0.5)

// BenchmarkGemmOneRow is the decoding head's product at the 0.1B shape: one row x (1×768)
// times a 768×65536 matrix, stored either as the Linear weight W [65536, 768] (x·Wᵀ, tB) or
// as [768, 65536] (x·W). Memory-bound: it reports the matrix's GB/s.
//
//	go test -run '^$' -bench GemmOneRow ./internal/blas
func BenchmarkGemmOneRow(b *testing.B) {
	const k, n = 768, 65536
	w := make([]float32, k*n)
	for i := range w {
		w[i] = float32(i%7) * 0.1
	}
	x := make([]float32, k)
	for i := range x {
		x[i] = float32(i%5) * 0.2
	}
	y := make([]float32, n)
	for _, tc := range []struct {
		name string
		tB   bool
		ldb  int
	}{{"xWT", true, k}, {"xW", false, n}} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				Gemm(false, tc.tB, 1, n, k, 1, x, k, w, tc.ldb, 0, y, n)
			}
			b.ReportMetric(4*k*n*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
	b.Logf("backend: %s", Backend())
}
