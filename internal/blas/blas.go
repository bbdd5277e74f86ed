// Package blas is the thin layer through which every matrix product of rwkv-go runs.
//
// Two backends exist: OpenBLAS, loaded at run time from the system's shared library when the
// binary was built with cgo (Debian: libopenblas0), and gonum's pure-Go BLAS otherwise. Loading at
// run time keeps `go build` working on a machine that has only Go, and lets one binary use OpenBLAS
// wherever it is installed. RWKV_BLAS=gonum forces the pure-Go path; RWKV_BLAS=openblas makes a
// missing OpenBLAS an error reported by Init.
//
// All matrices are row-major. Gemm computes C = alpha*op(A)*op(B) + beta*C with op(X) = X or Xᵀ.
// ThinQR (the orthogonal initialisation) uses the LAPACK that OpenBLAS bundles, or gonum's.
package blas

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	gblas "gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
)

// Float is the element type of the products: float32 for training, float64 for checks.
type Float interface{ ~float32 | ~float64 }

// backend is one implementation of the two products we need.
type backend interface {
	name() string
	sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)
	dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int)
}

var (
	initOnce sync.Once
	initErr  error
	active   backend
)

// Init selects the backend once, following RWKV_BLAS ("", "openblas" or "gonum"). It is called
// lazily by Gemm; call it early to report a configuration error before any work starts.
func Init() error {
	initOnce.Do(func() {
		active, initErr = choose(os.Getenv("RWKV_BLAS"))
		installFloat64()
	})
	return initErr
}

func choose(want string) (backend, error) {
	switch want {
	case "gonum":
		return gonumBackend{}, nil
	case "", "openblas":
		b, err := openOpenBLAS()
		if err == nil {
			return b, nil
		}
		if want == "openblas" {
			return gonumBackend{}, fmt.Errorf("blas: RWKV_BLAS=openblas but %w; install libopenblas0 or unset RWKV_BLAS", err)
		}
		return gonumBackend{}, nil
	default:
		return gonumBackend{}, fmt.Errorf("blas: RWKV_BLAS=%q is not a backend; use openblas or gonum", want)
	}
}

// Backend names the backend in use, e.g. "openblas (libopenblas.so.0, 2 threads)" or
// "gonum (pure Go)".
func Backend() string {
	Init()
	return active.name()
}

// UsingOpenBLAS reports whether the products run in OpenBLAS rather than the pure-Go fallback.
func UsingOpenBLAS() bool {
	Init()
	_, pureGo := active.(gonumBackend)
	return !pureGo
}

// Gemm computes c = alpha*op(a)*op(b) + beta*c for row-major a (m×k, or k×m when tA),
// b (k×n, or n×k when tB) and c (m×n), with leading dimensions lda, ldb, ldc. A product with
// one row (m == 1) or one column (n == 1) runs as a matrix-vector product (gemv), which reads
// the matrix once: Debian's OpenBLAS 0.3.21 runs such an sgemm through its packing kernels,
// and gonum's Sgemm is no faster, both 2.5-4x slower than gemv for the one-row products that
// decoding one token at a time spends its time on (BenchmarkGemmOneRow).
func Gemm[F Float](tA, tB bool, m, n, k int, alpha F, a []F, lda int, b []F, ldb int, beta F, c []F, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	Init()
	t0 := time.Now()
	switch cc := any(c).(type) {
	case []float32:
		active.sgemm(tA, tB, m, n, k, float32(alpha), any(a).([]float32), lda, any(b).([]float32), ldb, float32(beta), cc, ldc)
	case []float64:
		active.dgemm(tA, tB, m, n, k, float64(alpha), any(a).([]float64), lda, any(b).([]float64), ldb, float64(beta), cc, ldc)
	default:
		panic(fmt.Sprintf("blas: unsupported element type %T", c))
	}
	gemmCalls.Add(1)
	gemmNanos.Add(int64(time.Since(t0)))
	gemmFlops.Add(2 * int64(m) * int64(n) * int64(k))
}

var gemmCalls, gemmNanos, gemmFlops atomic.Int64

// Stats is what Gemm has done since the process started: calls, wall time inside them and
// floating-point operations (2mnk each). The difference of two readings around some work
// tells how much of its time the matrix products took (products called from several
// goroutines at once count their overlapping time twice).
type Stats struct {
	Calls   int64
	Seconds float64
	FLOPs   float64
}

// ReadStats returns the running totals.
func ReadStats() Stats {
	return Stats{Calls: gemmCalls.Load(), Seconds: float64(gemmNanos.Load()) / 1e9, FLOPs: float64(gemmFlops.Load())}
}

// Sub returns the work done between an earlier reading and s.
func (s Stats) Sub(earlier Stats) Stats {
	return Stats{Calls: s.Calls - earlier.Calls, Seconds: s.Seconds - earlier.Seconds, FLOPs: s.FLOPs - earlier.FLOPs}
}

// gemvArgs is a Gemm with one row or one column of c written as the matrix-vector product
// y = alpha*op(mat)*x + beta*y of the row-major rows×cols matrix mat (leading dimension ld),
// op(mat) = matᵀ when trans, x and y read with strides incX and incY: the arguments of a
// row-major cblas_?gemv or of gonum's ?gemv.
type gemvArgs[F Float] struct {
	trans      bool
	rows, cols int
	mat        []F
	ld         int
	x          []F
	incX       int
	y          []F
	incY       int
}

// asGemv rewrites a Gemm with m == 1 or n == 1 as a gemv; ok is false for any other shape and
// for k == 0, where a gemv would return without scaling c by beta. It assumes checkGemm's
// conditions hold.
//
// m == 1: c[0][j] = alpha*Σp op(a)[0][p]*op(b)[p][j] + beta*c[0][j], so y is c's row, x is
// op(a)'s row (a's first row, or its first column, stride lda, when tA) and the matrix is b:
// b (k×n) read transposed, or, when tB, b (n×k) as it is.
//
// n == 1: c[i][0] = alpha*Σp op(a)[i][p]*op(b)[p][0] + beta*c[i][0], so y is c's column
// (stride ldc), x is op(b)'s column (b's first column, stride ldb, or, when tB, its first row)
// and the matrix is a: a (m×k) as it is or, when tA, a (k×m) read transposed.
func asGemv[F Float](tA, tB bool, m, n, k int, a []F, lda int, b []F, ldb int, c []F, ldc int) (g gemvArgs[F], ok bool) {
	switch {
	case k == 0:
		return g, false
	case m == 1:
		g = gemvArgs[F]{trans: !tB, rows: k, cols: n, mat: b, ld: ldb, x: a, incX: 1, y: c, incY: 1}
		if tB {
			g.rows, g.cols = n, k
		}
		if tA {
			g.incX = lda
		}
		return g, true
	case n == 1:
		g = gemvArgs[F]{trans: tA, rows: m, cols: k, mat: a, ld: lda, x: b, incX: ldb, y: c, incY: ldc}
		if tA {
			g.rows, g.cols = k, m
		}
		if tB {
			g.incX = 1
		}
		return g, true
	}
	return g, false
}

type gonumBackend struct{}

func (gonumBackend) name() string { return "gonum (pure Go)" }

func trans(t bool) gblas.Transpose {
	if t {
		return gblas.Trans
	}
	return gblas.NoTrans
}

func (gonumBackend) sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if g, ok := asGemv(tA, tB, m, n, k, a, lda, b, ldb, c, ldc); ok {
		checkGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
		gonum.Implementation{}.Sgemv(trans(g.trans), g.rows, g.cols, alpha, g.mat, g.ld, g.x, g.incX, beta, g.y, g.incY)
		return
	}
	gonum.Implementation{}.Sgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (gonumBackend) dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if g, ok := asGemv(tA, tB, m, n, k, a, lda, b, ldb, c, ldc); ok {
		checkGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
		gonum.Implementation{}.Dgemv(trans(g.trans), g.rows, g.cols, alpha, g.mat, g.ld, g.x, g.incX, beta, g.y, g.incY)
		return
	}
	gonum.Implementation{}.Dgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// checkGemm panics, as gonum does, when the slices cannot hold the matrices the dimensions
// describe; a C BLAS would otherwise read or write out of bounds.
func checkGemm(tA, tB bool, m, n, k, la, lda, lb, ldb, lc, ldc int) {
	ar, ac := m, k
	if tA {
		ar, ac = k, m
	}
	br, bc := k, n
	if tB {
		br, bc = n, k
	}
	ok := m >= 0 && n >= 0 && k >= 0 &&
		lda >= max(1, ac) && ldb >= max(1, bc) && ldc >= max(1, n) &&
		(ar == 0 || la >= (ar-1)*lda+ac) &&
		(br == 0 || lb >= (br-1)*ldb+bc) &&
		lc >= (m-1)*ldc+n
	if !ok {
		panic(fmt.Sprintf("blas: gemm dimensions m=%d n=%d k=%d (tA=%v tB=%v lda=%d ldb=%d ldc=%d) do not fit slices of %d, %d, %d",
			m, n, k, tA, tB, lda, ldb, ldc, la, lb, lc))
	}
}

// MeasureSgemm returns the float32 GFLOP/s of the fastest of repeated n×n×n products run for
// about d: the machine's practical peak for the backend in use (the best product, not the mean,
// so that another tenant's burst on a shared machine does not lower the peak).
func MeasureSgemm(n int, d time.Duration) float64 {
	a := make([]float32, n*n)
	for i := range a {
		a[i] = float32(i%13) * 0.01
	}
	c := make([]float32, n*n)
	Gemm(false, false, n, n, n, 1, a, n, a, n, 0, c, n) // warm up threads and caches
	best := 0.0
	for start := time.Now(); time.Since(start) < d || best == 0; {
		t0 := time.Now()
		Gemm(false, false, n, n, n, 1, a, n, a, n, 0, c, n)
		best = max(best, 2*float64(n)*float64(n)*float64(n)/time.Since(t0).Seconds()/1e9)
	}
	return best
}
