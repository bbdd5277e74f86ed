package blas

import (
	"fmt"

	lapackgo "gonum.org/v1/gonum/lapack/gonum"
)

// qrBackend is a backend that can factorise with LAPACK itself.
type qrBackend interface {
	thinQR(r, c int, a, sign []float64) (bool, error)
}

// ThinQR overwrites the row-major r×c matrix a (r >= c >= 1) with the thin Q of its QR
// factorisation, A = Q R with Q r×c, and returns the sign (±1) of each diagonal entry of R.
// It runs OpenBLAS's bundled LAPACK (dgeqrf, dorgqr) when that is the backend, and gonum's
// LAPACK otherwise; the two agree to rounding.
func ThinQR(r, c int, a []float64) ([]float64, error) {
	if c < 1 || r < c || len(a) != r*c {
		return nil, fmt.Errorf("blas: ThinQR of %d×%d needs r >= c >= 1 and %d elements, got %d", r, c, r*c, len(a))
	}
	Init()
	sign := make([]float64, c)
	if q, ok := active.(qrBackend); ok {
		if done, err := q.thinQR(r, c, a, sign); done || err != nil {
			return sign, err
		}
	}
	gonumThinQR(r, c, a, sign)
	return sign, nil
}

// gonumThinQR is ThinQR with gonum's LAPACK (whose blocked updates still multiply through the
// active backend's dgemm).
func gonumThinQR(r, c int, a, sign []float64) {
	impl := lapackgo.Implementation{}
	tau := make([]float64, c)
	work := make([]float64, 1)
	impl.Dgeqrf(r, c, a, c, tau, work, -1)
	work = make([]float64, int(work[0]))
	impl.Dgeqrf(r, c, a, c, tau, work, len(work))
	for j := range sign {
		sign[j] = 1
		if a[j*c+j] < 0 {
			sign[j] = -1
		}
	}
	impl.Dorgqr(r, c, c, a, c, tau, work, -1)
	if n := int(work[0]); n > len(work) {
		work = make([]float64, n)
	}
	impl.Dorgqr(r, c, c, a, c, tau, work, len(work))
}
