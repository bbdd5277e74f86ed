package blas

import (
	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
)

// float64Impl is gonum's BLAS with Dgemm routed through the active backend. Installed as
// gonum's blas64 implementation, it makes gonum's LAPACK (the QR of orthogonal initialisation)
// use OpenBLAS for its blocked updates.
type float64Impl struct{ gonum.Implementation }

func (float64Impl) Dgemm(tA, tB gblas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	if k == 0 || alpha == 0 {
		gonum.Implementation{}.Dgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
		return
	}
	active.dgemm(tA != gblas.NoTrans, tB != gblas.NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func installFloat64() { blas64.Use(float64Impl{}) }
