package blas

import (
	"math"
	"math/rand/v2"
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
