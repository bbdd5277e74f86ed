package blas

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestThinQR: Q has orthonormal columns, QᵀA is upper triangular with the returned signs on its
// diagonal (so A = QR), and OpenBLAS's LAPACK agrees with gonum's to rounding.
func TestThinQR(t *testing.T) {
	Init()
	t.Logf("backend %s, OpenBLAS LAPACK in use: %v", Backend(), hasLAPACK())
	for _, sz := range []struct{ r, c int }{{1, 1}, {5, 5}, {7, 3}, {300, 40}, {2000, 130}} {
		rng := rand.New(rand.NewPCG(uint64(sz.r), uint64(sz.c)))
		a := make([]float64, sz.r*sz.c)
		for i := range a {
			a[i] = rng.NormFloat64()
		}
		q := slices.Clone(a)
		sign, err := ThinQR(sz.r, sz.c, q)
		if err != nil {
			t.Fatalf("%d×%d: %v", sz.r, sz.c, err)
		}
		// QᵀQ = I and R = QᵀA upper triangular with sign(R_jj) = sign[j].
		qtq, qta := make([]float64, sz.c*sz.c), make([]float64, sz.c*sz.c)
		Gemm(true, false, sz.c, sz.c, sz.r, 1, q, sz.c, q, sz.c, 0, qtq, sz.c)
		Gemm(true, false, sz.c, sz.c, sz.r, 1, q, sz.c, a, sz.c, 0, qta, sz.c)
		for i := 0; i < sz.c; i++ {
			for j := 0; j < sz.c; j++ {
				want := 0.0
				if i == j {
					want = 1
				}
				if d := math.Abs(qtq[i*sz.c+j] - want); d > 1e-12 {
					t.Fatalf("%d×%d: (QᵀQ)[%d,%d] = %g", sz.r, sz.c, i, j, qtq[i*sz.c+j])
				}
				if i > j && math.Abs(qta[i*sz.c+j]) > 1e-10 {
					t.Fatalf("%d×%d: R = QᵀA not upper triangular at [%d,%d]: %g", sz.r, sz.c, i, j, qta[i*sz.c+j])
				}
			}
			if qta[i*sz.c+i]*sign[i] <= 0 {
				t.Fatalf("%d×%d: R[%d,%d] = %g but sign %g", sz.r, sz.c, i, i, qta[i*sz.c+i], sign[i])
			}
		}
		// The pure-Go path gives the same factorisation.
		g := slices.Clone(a)
		gsign := make([]float64, sz.c)
		gonumThinQR(sz.r, sz.c, g, gsign)
		if !slices.Equal(sign, gsign) {
			t.Fatalf("%d×%d: signs differ between %s and gonum", sz.r, sz.c, Backend())
		}
		for i := range g {
			if d := math.Abs(g[i] - q[i]); d > 1e-10 {
				t.Fatalf("%d×%d: Q[%d] = %g with %s, %g with gonum", sz.r, sz.c, i, q[i], Backend(), g[i])
			}
		}
	}
}

func TestThinQRRejectsBadShapes(t *testing.T) {
	for _, tc := range []struct{ r, c, n int }{{3, 5, 15}, {4, 0, 0}, {4, 2, 7}} {
		if _, err := ThinQR(tc.r, tc.c, make([]float64, tc.n)); err == nil {
			t.Errorf("ThinQR(%d, %d) with %d elements: no error", tc.r, tc.c, tc.n)
		}
	}
}
