package blas

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// naive is the definition of C = alpha*op(A)*op(B) + beta*C, in float64.
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
			c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
		}
	}
}

func TestGemmBackendsMatchDefinition(t *testing.T) {
	backends := []backend{gonumBackend{}}
	if ob, err := openOpenBLAS(); err == nil {
		backends = append(backends, ob)
	} else {
		t.Logf("OpenBLAS not tested: %v", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, be := range backends {
		for _, tc := range []struct {
			tA, tB  bool
			m, n, k int
		}{{false, false, 5, 7, 3}, {true, false, 4, 6, 9}, {false, true, 8, 3, 5}, {true, true, 3, 3, 1}, {false, true, 33, 65, 17}} {
			ar, ac := tc.m, tc.k
			if tc.tA {
				ar, ac = tc.k, tc.m
			}
			br, bc := tc.k, tc.n
			if tc.tB {
				br, bc = tc.n, tc.k
			}
			a := make([]float64, ar*ac)
			b := make([]float64, br*bc)
			c := make([]float64, tc.m*tc.n)
			for _, s := range [][]float64{a, b, c} {
				for i := range s {
					s[i] = rng.NormFloat64()
				}
			}
			want := append([]float64(nil), c...)
			naive(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1.5, a, ac, b, bc, 0.5, want, tc.n)
			got := append([]float64(nil), c...)
			be.dgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1.5, a, ac, b, bc, 0.5, got, tc.n)
			got32 := make([]float32, len(c))
			a32, b32 := make([]float32, len(a)), make([]float32, len(b))
			for i := range c {
				got32[i] = float32(c[i])
			}
			for i := range a {
				a32[i] = float32(a[i])
			}
			for i := range b {
				b32[i] = float32(b[i])
			}
			be.sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1.5, a32, ac, b32, bc, 0.5, got32, tc.n)
			for i := range want {
				if d := math.Abs(got[i] - want[i]); d > 1e-12 {
					t.Fatalf("%s dgemm %+v: element %d got %v want %v", be.name(), tc, i, got[i], want[i])
				}
				if d := math.Abs(float64(got32[i]) - want[i]); d > 1e-4*(1+math.Abs(want[i])) {
					t.Fatalf("%s sgemm %+v: element %d got %v want %v", be.name(), tc, i, got32[i], want[i])
				}
			}
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
// restored afterwards, so Go arithmetic keeps its denormals.
func TestOpenBLASFlushesDenormals(t *testing.T) {
	ob, err := openOpenBLAS()
	if err != nil {
		t.Skipf("skipping: OpenBLAS not available: %v", err)
	}
	if !ftzSupported {
		t.Skip("skipping: no MXCSR on this architecture")
	}
	// Large enough that OpenBLAS splits it across its threads; each product is 1e-42, a
	// denormal, so a flushing product is exactly zero and a non-flushing one about 6e-41.
	const m, n, k = 256, 256, 64
	a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
	for i := range a {
		a[i] = 1e-21
	}
	for i := range b {
		b[i] = 1e-21
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ob.sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
	for i, x := range c {
		if x != 0 {
			t.Fatalf("c[%d] = %g: a denormal was not flushed", i, x)
		}
	}
	if denormTiny*denormHalf == 0 {
		t.Error("Go arithmetic flushes denormals after an sgemm: the caller's MXCSR was not restored")
	}
}

// Package variables, so that the compiler cannot fold the product: 1e-39*0.5 is a denormal,
// zero only where the thread flushes denormals.
var denormTiny, denormHalf = float32(1e-39), float32(0.5)
