//go:build cgo && (linux || darwin)

package blas

/*
#cgo linux LDFLAGS: -ldl
#include <dlfcn.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
// Flush-to-zero and denormals-are-zero for the float32 products, as PyTorch's
// set_flush_denormal(True): MXCSR is per thread, so it is set around each call on the calling
// thread and, by setting it while the library loads, inherited by the worker threads OpenBLAS
// starts then.
static unsigned int rw_ftz_on(void) { unsigned int c = _mm_getcsr(); _mm_setcsr(c | 0x8040); return c; }
static void rw_csr_set(unsigned int c) { _mm_setcsr(c); }
static int rw_ftz_supported(void) { return 1; }
#else
static unsigned int rw_ftz_on(void) { return 0; }
static void rw_csr_set(unsigned int c) { (void)c; }
static int rw_ftz_supported(void) { return 0; }
#endif
#include <stddef.h>
#include <stdlib.h>

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double*, int, const double*, int, double, double*, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
typedef void (*dgemv_fn)(int, int, int, int, double, const double*, int, const double*, int, double, double*, int);
typedef int (*nthreads_fn)(void);

typedef void (*lapack_qr_fn)(const int*, const int*, double*, const int*, double*, double*, const int*, int*);
typedef void (*lapack_orgqr_fn)(const int*, const int*, const int*, double*, const int*, const double*, double*, const int*, int*);

static sgemm_fn rw_sgemm;
static dgemm_fn rw_dgemm;
static sgemv_fn rw_sgemv;
static dgemv_fn rw_dgemv;
static nthreads_fn rw_nthreads;
static lapack_qr_fn rw_dgeqrf;
static lapack_orgqr_fn rw_dorgqr;

// rw_open loads the named library and resolves the CBLAS entry points; 0 on success.
static int rw_open(const char* name) {
	unsigned int csr = rw_ftz_on();
	void* h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	rw_csr_set(csr);
	if (h == NULL) return 1;
	rw_sgemm = (sgemm_fn)dlsym(h, "cblas_sgemm");
	rw_dgemm = (dgemm_fn)dlsym(h, "cblas_dgemm");
	rw_sgemv = (sgemv_fn)dlsym(h, "cblas_sgemv");
	rw_dgemv = (dgemv_fn)dlsym(h, "cblas_dgemv");
	rw_nthreads = (nthreads_fn)dlsym(h, "openblas_get_num_threads");
	rw_dgeqrf = (lapack_qr_fn)dlsym(h, "dgeqrf_"); // OpenBLAS bundles LAPACK; NULL if not
	rw_dorgqr = (lapack_orgqr_fn)dlsym(h, "dorgqr_");
	if (rw_sgemm == NULL || rw_dgemm == NULL || rw_sgemv == NULL || rw_dgemv == NULL) return 2;
	return 0;
}

static int rw_have_lapack(void) { return rw_dgeqrf != NULL && rw_dorgqr != NULL; }

// rw_thin_qr: a is column-major m×n (lda = m, m >= n); on return it holds the thin Q and
// sign[j] the sign of R's diagonal. Returns LAPACK's info (0 on success), or -100 when the
// workspace cannot be allocated.
static int rw_thin_qr(int m, int n, double* a, double* sign) {
	int info = 0, lwork = -1;
	double q1 = 0, q2 = 0;
	double* tau = malloc(sizeof(double) * (size_t)n);
	if (tau == NULL) return -100;
	rw_dgeqrf(&m, &n, a, &m, tau, &q1, &lwork, &info);
	rw_dorgqr(&m, &n, &n, a, &m, tau, &q2, &lwork, &info);
	lwork = (int)(q1 > q2 ? q1 : q2);
	if (lwork < n) lwork = n;
	double* work = malloc(sizeof(double) * (size_t)lwork);
	if (work == NULL) { free(tau); return -100; }
	rw_dgeqrf(&m, &n, a, &m, tau, work, &lwork, &info);
	if (info == 0) {
		for (int j = 0; j < n; j++) sign[j] = a[(size_t)j * m + j] < 0 ? -1.0 : 1.0;
		rw_dorgqr(&m, &n, &n, a, &m, tau, work, &lwork, &info);
	}
	free(work);
	free(tau);
	return info;
}

static int rw_threads(void) { return rw_nthreads ? rw_nthreads() : 0; }

enum { RowMajor = 101, NoTrans = 111, Trans = 112 };

static void rw_call_sgemm(int ta, int tb, int m, int n, int k, float alpha, const float* a, int lda,
		const float* b, int ldb, float beta, float* c, int ldc) {
	unsigned int csr = rw_ftz_on();
	rw_sgemm(RowMajor, ta ? Trans : NoTrans, tb ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
	rw_csr_set(csr);
}

static void rw_call_dgemm(int ta, int tb, int m, int n, int k, double alpha, const double* a, int lda,
		const double* b, int ldb, double beta, double* c, int ldc) {
	rw_dgemm(RowMajor, ta ? Trans : NoTrans, tb ? Trans : NoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// rw_call_sgemv: y = alpha*op(a)*x + beta*y for row-major a (m×n), flushing denormals as
// rw_call_sgemm does.
static void rw_call_sgemv(int ta, int m, int n, float alpha, const float* a, int lda,
		const float* x, int incx, float beta, float* y, int incy) {
	unsigned int csr = rw_ftz_on();
	rw_sgemv(RowMajor, ta ? Trans : NoTrans, m, n, alpha, a, lda, x, incx, beta, y, incy);
	rw_csr_set(csr);
}

static void rw_call_dgemv(int ta, int m, int n, double alpha, const double* a, int lda,
		const double* x, int incx, double beta, double* y, int incy) {
	rw_dgemv(RowMajor, ta ? Trans : NoTrans, m, n, alpha, a, lda, x, incx, beta, y, incy);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"unsafe"
)

// ftzSupported reports whether the float32 products flush denormals (x86-64 only).
var ftzSupported = C.rw_ftz_supported() != 0

// libNames are tried in order; the first that loads and exports cblas_sgemm (and dgemm,
// sgemv, dgemv) wins.
var libNames = []string{"libopenblas.so.0", "libopenblas.so", "libopenblas.dylib"}

type openBLAS struct {
	lib     string
	threads int
	lapack  bool // the library bundles LAPACK's dgeqrf and dorgqr
}

func openOpenBLAS() (backend, error) {
	// OpenBLAS's worker threads spin for 2^28 cycles after each call by default, taking a core
	// from our own kernels that run between the products. 2^12 makes them sleep almost at once;
	// waking them costs microseconds per product. A user's setting wins.
	if _, ok := os.LookupEnv("OPENBLAS_THREAD_TIMEOUT"); !ok {
		os.Setenv("OPENBLAS_THREAD_TIMEOUT", "12")
	}
	for _, name := range libNames {
		cname := C.CString(name)
		rc := C.rw_open(cname)
		C.free(unsafe.Pointer(cname))
		if rc == 0 {
			return openBLAS{lib: name, threads: int(C.rw_threads()), lapack: C.rw_have_lapack() != 0}, nil
		}
	}
	return nil, errors.New("no OpenBLAS shared library (libopenblas.so.0) could be loaded")
}

func (o openBLAS) name() string {
	return fmt.Sprintf("openblas (%s, %d threads)", o.lib, o.threads)
}

// hasLAPACK reports whether the active backend factorises with OpenBLAS's own LAPACK.
func hasLAPACK() bool {
	o, ok := active.(openBLAS)
	return ok && o.lapack
}

func b2i(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (openBLAS) sgemm(tA, tB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if g, ok := asGemv(tA, tB, m, n, k, a, lda, b, ldb, c, ldc); ok {
		C.rw_call_sgemv(b2i(g.trans), C.int(g.rows), C.int(g.cols), C.float(alpha),
			(*C.float)(unsafe.Pointer(&g.mat[0])), C.int(g.ld), (*C.float)(unsafe.Pointer(&g.x[0])), C.int(g.incX),
			C.float(beta), (*C.float)(unsafe.Pointer(&g.y[0])), C.int(g.incY))
		return
	}
	C.rw_call_sgemm(b2i(tA), b2i(tB), C.int(m), C.int(n), C.int(k), C.float(alpha),
		(*C.float)(unsafe.Pointer(ptr(a))), C.int(lda), (*C.float)(unsafe.Pointer(ptr(b))), C.int(ldb),
		C.float(beta), (*C.float)(unsafe.Pointer(&c[0])), C.int(ldc))
}

func (openBLAS) dgemm(tA, tB bool, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	checkGemm(tA, tB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	if g, ok := asGemv(tA, tB, m, n, k, a, lda, b, ldb, c, ldc); ok {
		C.rw_call_dgemv(b2i(g.trans), C.int(g.rows), C.int(g.cols), C.double(alpha),
			(*C.double)(unsafe.Pointer(&g.mat[0])), C.int(g.ld), (*C.double)(unsafe.Pointer(&g.x[0])), C.int(g.incX),
			C.double(beta), (*C.double)(unsafe.Pointer(&g.y[0])), C.int(g.incY))
		return
	}
	C.rw_call_dgemm(b2i(tA), b2i(tB), C.int(m), C.int(n), C.int(k), C.double(alpha),
		(*C.double)(unsafe.Pointer(ptr(a))), C.int(lda), (*C.double)(unsafe.Pointer(ptr(b))), C.int(ldb),
		C.double(beta), (*C.double)(unsafe.Pointer(&c[0])), C.int(ldc))
}

// ptr returns the address of the first element, or nil for an empty slice (k == 0).
func ptr[F Float](s []F) *F {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// thinQR runs LAPACK's dgeqrf and dorgqr from OpenBLAS on a row-major r×c matrix (through a
// column-major copy). It reports false when the library has no LAPACK.
func (o openBLAS) thinQR(r, c int, a, sign []float64) (bool, error) {
	if !o.lapack {
		return false, nil
	}
	col := make([]float64, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			col[j*r+i] = a[i*c+j]
		}
	}
	if info := C.rw_thin_qr(C.int(r), C.int(c), (*C.double)(unsafe.Pointer(&col[0])), (*C.double)(unsafe.Pointer(&sign[0]))); info != 0 {
		return true, fmt.Errorf("blas: OpenBLAS dgeqrf/dorgqr on %d×%d failed (info %d)", r, c, info)
	}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			a[i*c+j] = col[j*r+i]
		}
	}
	return true, nil
}
