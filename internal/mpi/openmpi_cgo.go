//go:build cgo && linux

package mpi

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

// Open MPI's handles (MPI_Comm, MPI_Datatype, MPI_Op, MPI_Errhandler) are pointers, and its
// predefined ones (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros taking the address of
// exported globals: ompi_mpi_comm_world and so on. Loading libmpi at run time, these helpers
// resolve those globals with dlsym and call the functions through pointers, so that no
// mpi.h is needed to build and no libmpi to run a single process.
typedef void* h_t;
typedef int (*init_thread_fn)(int*, char***, int, int*);
typedef int (*initialized_fn)(int*);
typedef int (*comm_int_fn)(h_t, int*);
typedef int (*set_errh_fn)(h_t, h_t);
typedef int (*bcast_fn)(void*, int, h_t, int, h_t);
typedef int (*allreduce_fn)(const void*, void*, int, h_t, h_t, h_t);
typedef int (*barrier_fn)(h_t);
typedef int (*abort_fn)(h_t, int);
typedef int (*finalize_fn)(void);
typedef int (*errstr_fn)(int, char*, int*);

static init_thread_fn p_init_thread;
static initialized_fn p_initialized;
static comm_int_fn p_comm_rank, p_comm_size;
static set_errh_fn p_set_errh;
static bcast_fn p_bcast;
static allreduce_fn p_allreduce;
static barrier_fn p_barrier;
static abort_fn p_abort;
static finalize_fn p_finalize;
static errstr_fn p_errstr;
static h_t g_world, g_float, g_double, g_byte, g_sum, g_errors_return;

// MPI_THREAD_FUNNELED in Open MPI's mpi.h (an enum: SINGLE 0, FUNNELED 1).
#define RW_THREAD_FUNNELED 1
// MPI_IN_PLACE in Open MPI's mpi.h.
#define RW_IN_PLACE ((void*)1)

// rw_mpi_open loads libmpi and resolves what the layer uses: 0 on success, 1 when the library
// cannot be loaded, 2 when a function is missing, 3 when it is not Open MPI (no ompi_* globals).
static int rw_mpi_open(const char* name, char** why) {
	// RTLD_GLOBAL: Open MPI loads its components as plugins that resolve symbols of libmpi.
	void* h = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) { *why = dlerror(); return 1; }
	p_init_thread = (init_thread_fn)dlsym(h, "MPI_Init_thread");
	p_initialized = (initialized_fn)dlsym(h, "MPI_Initialized");
	p_comm_rank = (comm_int_fn)dlsym(h, "MPI_Comm_rank");
	p_comm_size = (comm_int_fn)dlsym(h, "MPI_Comm_size");
	p_set_errh = (set_errh_fn)dlsym(h, "MPI_Comm_set_errhandler");
	p_bcast = (bcast_fn)dlsym(h, "MPI_Bcast");
	p_allreduce = (allreduce_fn)dlsym(h, "MPI_Allreduce");
	p_barrier = (barrier_fn)dlsym(h, "MPI_Barrier");
	p_abort = (abort_fn)dlsym(h, "MPI_Abort");
	p_finalize = (finalize_fn)dlsym(h, "MPI_Finalize");
	p_errstr = (errstr_fn)dlsym(h, "MPI_Error_string");
	if (!p_init_thread || !p_initialized || !p_comm_rank || !p_comm_size || !p_set_errh || !p_bcast ||
	    !p_allreduce || !p_barrier || !p_abort || !p_finalize || !p_errstr) return 2;
	g_world = dlsym(h, "ompi_mpi_comm_world");
	g_float = dlsym(h, "ompi_mpi_float");
	g_double = dlsym(h, "ompi_mpi_double");
	g_byte = dlsym(h, "ompi_mpi_byte");
	g_sum = dlsym(h, "ompi_mpi_op_sum");
	g_errors_return = dlsym(h, "ompi_mpi_errors_return");
	if (!g_world || !g_float || !g_double || !g_byte || !g_sum || !g_errors_return) return 3;
	return 0;
}

// rw_mpi_init initialises MPI with MPI_THREAD_FUNNELED, makes errors on MPI_COMM_WORLD return
// instead of aborting, and reports the rank and size.
static int rw_mpi_init(int* provided, int* rank, int* size) {
	int done = 0, rc;
	if ((rc = p_initialized(&done)) != 0) return rc;
	if (!done && (rc = p_init_thread(NULL, NULL, RW_THREAD_FUNNELED, provided)) != 0) return rc;
	if ((rc = p_set_errh(g_world, g_errors_return)) != 0) return rc;
	if ((rc = p_comm_rank(g_world, rank)) != 0) return rc;
	return p_comm_size(g_world, size);
}

static h_t rw_type(int t) { return t == 0 ? g_float : t == 1 ? g_double : g_byte; }
static int rw_bcast(void* buf, int n, int t, int root) { return p_bcast(buf, n, rw_type(t), root, g_world); }
static int rw_allreduce_sum(void* buf, int n, int t) { return p_allreduce(RW_IN_PLACE, buf, n, rw_type(t), g_sum, g_world); }
static int rw_barrier(void) { return p_barrier(g_world); }
static int rw_abort(int code) { return p_abort(g_world, code); }
static int rw_finalize(void) { return p_finalize(); }
static void rw_errstr(int code, char* buf, int* n) { if (p_errstr(code, buf, n) != 0) *n = 0; }
*/
import "C"

import (
	"fmt"
	"unsafe"
)

const (
	tFloat32 = 0
	tFloat64 = 1
	tByte    = 2
)

// openMPI is the libmpi loaded at run time.
type openMPI struct{}

// loadMPI loads the first of names that opens and initialises MPI; it must run on the thread
// that makes every later call.
func loadMPI(names []string) (impl, int, int, error) {
	var errs []string
	for _, name := range names {
		cs := C.CString(name)
		var why *C.char
		rc := C.rw_mpi_open(cs, &why)
		C.free(unsafe.Pointer(cs))
		switch rc {
		case 0:
			var provided, rank, size C.int
			if rc := C.rw_mpi_init(&provided, &rank, &size); rc != 0 {
				return nil, 0, 0, fmt.Errorf("MPI_Init_thread (%s): %s", name, errString(int(rc)))
			}
			if provided < 1 {
				return nil, 0, 0, fmt.Errorf("MPI_Init_thread (%s): the library provides thread level %d, need MPI_THREAD_FUNNELED (1)", name, int(provided))
			}
			return openMPI{}, int(rank), int(size), nil
		case 1:
			errs = append(errs, C.GoString(why))
		case 2:
			return nil, 0, 0, fmt.Errorf("%s lacks an MPI function this layer calls", name)
		case 3:
			return nil, 0, 0, fmt.Errorf("%s is not Open MPI (no ompi_mpi_comm_world): only Open MPI's ABI is supported", name)
		}
	}
	return nil, 0, 0, fmt.Errorf("cannot load libmpi (%v); install Open MPI (Debian: apt-get install libopenmpi-dev openmpi-bin) or set RWKV_MPI_LIB", errs)
}

func errString(code int) string {
	buf := make([]byte, 512) // MPI_MAX_ERROR_STRING is 256 in Open MPI
	n := C.int(0)
	C.rw_errstr(C.int(code), (*C.char)(unsafe.Pointer(&buf[0])), &n)
	if n <= 0 {
		return fmt.Sprintf("MPI error %d", code)
	}
	return fmt.Sprintf("%s (MPI error %d)", string(buf[:n]), code)
}

func check(op string, rc C.int) error {
	if rc != 0 {
		return fmt.Errorf("%s: %s", op, errString(int(rc)))
	}
	return nil
}

func (openMPI) bcast(p unsafe.Pointer, n, typ, root int) error {
	return check("MPI_Bcast", C.rw_bcast(p, C.int(n), C.int(typ), C.int(root)))
}

func (openMPI) allreduceSum(p unsafe.Pointer, n, typ int) error {
	return check("MPI_Allreduce", C.rw_allreduce_sum(p, C.int(n), C.int(typ)))
}

func (openMPI) barrier() error { return check("MPI_Barrier", C.rw_barrier()) }

func (openMPI) abort(code int) { C.rw_abort(C.int(code)) }

func (openMPI) finalize() error { return check("MPI_Finalize", C.rw_finalize()) }
