// Package mpi is a thin layer over Open MPI for data-parallel training: the ranks of
// MPI_COMM_WORLD, broadcasts and in-place sum allreduces of float32, float64 and bytes.
//
// libmpi is loaded at run time (dlopen, as internal/blas loads OpenBLAS), not linked: the one
// binary that `go build` makes runs alone on a machine without Open MPI, and as a rank under
// `mpirun` or `srun --mpi=pmix` where Open MPI is installed. A process that no launcher started
// (no OMPI_COMM_WORLD_SIZE, PMIX_RANK or PMI_SIZE in its environment) is a world of one and
// never touches libmpi. The library is libmpi.so.40 (Open MPI 3 to 5), or RWKV_MPI_LIB; only
// Open MPI's ABI is supported (its handles are the addresses of exported globals, which the
// layer resolves with dlsym instead of reading mpi.h's macros).
//
// MPI is initialised with MPI_THREAD_FUNNELED, and every MPI call of the process runs on one
// locked OS thread, which the package owns; World's methods may be called from any goroutine,
// one at a time. Errors return (MPI_ERRORS_RETURN) and are wrapped with the operation. MPI
// counts are C ints, so buffers are sent in chunks of at most 2^30 elements.
package mpi

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"unsafe"
)

// impl is a loaded MPI library; its methods run on the MPI thread.
type impl interface {
	bcast(p unsafe.Pointer, n, typ, root int) error
	allreduceSum(p unsafe.Pointer, n, typ int) error
	barrier() error
	abort(code int)
	finalize() error
}

// World is MPI_COMM_WORLD, or a world of one process.
type World struct {
	rank, size int
	lib        impl        // nil for a world of one
	calls      chan func() // run on the MPI thread
	mu         sync.Mutex  // one collective at a time
	finalized  bool
}

// maxCount is the most elements one MPI call moves (counts are C ints); a variable for tests.
var maxCount = 1 << 30

// Local returns a world of one process, whose collectives do nothing.
func Local() *World { return &World{size: 1} }

var (
	initOnce  sync.Once
	initWorld *World
	initErr   error
)

// Launched reports whether an MPI launcher (mpirun, or srun with PMIx or PMI-2) started this
// process, and with how many ranks when it says (0 when it does not).
func Launched() (bool, int) {
	for _, k := range []string{"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"} {
		if v, ok := os.LookupEnv(k); ok {
			n, _ := strconv.Atoi(v)
			return true, n
		}
	}
	_, ok := os.LookupEnv("PMIX_RANK")
	return ok, 0
}

// Init returns the process's world: MPI_COMM_WORLD when a launcher started the process, or a
// world of one. It initialises MPI once; later calls return the same world.
func Init() (*World, error) {
	initOnce.Do(func() { initWorld, initErr = initialise() })
	return initWorld, initErr
}

func initialise() (*World, error) {
	launched, _ := Launched()
	if !launched {
		return Local(), nil
	}
	names := []string{"libmpi.so.40", "libmpi.so"}
	if v := os.Getenv("RWKV_MPI_LIB"); v != "" {
		names = []string{v}
	}
	w := &World{calls: make(chan func())}
	type result struct {
		lib        impl
		rank, size int
		err        error
	}
	done := make(chan result)
	go func() {
		// The MPI thread: MPI_Init_thread(FUNNELED) here, and every later call.
		runtime.LockOSThread()
		lib, rank, size, err := loadMPI(names)
		done <- result{lib, rank, size, err}
		if err != nil {
			return
		}
		for f := range w.calls {
			f()
		}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("mpi: started by an MPI launcher, but: %w", r.err)
	}
	w.lib, w.rank, w.size = r.lib, r.rank, r.size
	return w, nil
}

// Rank is this process's rank, 0 to Size-1.
func (w *World) Rank() int { return w.rank }

// Size is the number of processes.
func (w *World) Size() int { return w.size }

// do runs f on the MPI thread.
func (w *World) do(op string, f func() error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.finalized {
		return fmt.Errorf("mpi: %s after Finalize", op)
	}
	ch := make(chan error, 1)
	w.calls <- func() { ch <- f() }
	if err := <-ch; err != nil {
		return fmt.Errorf("mpi: %s (rank %d of %d): %w", op, w.rank, w.size, err)
	}
	return nil
}

// chunked calls f on pieces of at most maxCount elements of a buffer of n elements of size es
// bytes at p.
func (w *World) chunked(op string, p unsafe.Pointer, n, es int, f func(p unsafe.Pointer, n int) error) error {
	if w.lib == nil || n == 0 {
		return nil
	}
	return w.do(op, func() error {
		for off := 0; off < n; off += maxCount {
			k := min(maxCount, n-off)
			if err := f(unsafe.Add(p, off*es), k); err != nil {
				return err
			}
		}
		return nil
	})
}

func (w *World) checkRoot(op string, root int) error {
	if root < 0 || root >= w.size {
		return fmt.Errorf("mpi: %s: root %d outside the world of %d", op, root, w.size)
	}
	return nil
}

func bcast[T any](w *World, op string, buf []T, root, typ int) error {
	if err := w.checkRoot(op, root); err != nil || len(buf) == 0 {
		return err
	}
	var z T
	return w.chunked(op, unsafe.Pointer(&buf[0]), len(buf), int(unsafe.Sizeof(z)), func(p unsafe.Pointer, n int) error {
		return w.lib.bcast(p, n, typ, root)
	})
}

func allreduce[T any](w *World, op string, buf []T, typ int) error {
	if len(buf) == 0 {
		return nil
	}
	var z T
	return w.chunked(op, unsafe.Pointer(&buf[0]), len(buf), int(unsafe.Sizeof(z)), func(p unsafe.Pointer, n int) error {
		return w.lib.allreduceSum(p, n, typ)
	})
}

// BcastFloat32 copies root's buf into every rank's; all ranks pass buffers of one length.
func (w *World) BcastFloat32(buf []float32, root int) error {
	return bcast(w, "broadcast float32", buf, root, tFloat32)
}

// BcastFloat64 copies root's buf into every rank's; all ranks pass buffers of one length.
func (w *World) BcastFloat64(buf []float64, root int) error {
	return bcast(w, "broadcast float64", buf, root, tFloat64)
}

// BcastBytes copies root's buf into every rank's; all ranks pass buffers of one length.
func (w *World) BcastBytes(buf []byte, root int) error {
	return bcast(w, "broadcast bytes", buf, root, tByte)
}

// BcastBlob returns root's b on every rank, whatever the length the others pass (their b is
// ignored): the length goes first.
func (w *World) BcastBlob(b []byte, root int) ([]byte, error) {
	if w.size == 1 {
		return b, nil
	}
	n := []float64{float64(len(b))}
	if err := w.BcastFloat64(n, root); err != nil {
		return nil, err
	}
	out := b
	if w.rank != root {
		out = make([]byte, int(n[0]))
	}
	if err := w.BcastBytes(out, root); err != nil {
		return nil, err
	}
	return out, nil
}

// AllreduceSumFloat32 replaces buf on every rank by the element-wise sum over the ranks.
func (w *World) AllreduceSumFloat32(buf []float32) error {
	return allreduce(w, "allreduce float32", buf, tFloat32)
}

// AllreduceSumFloat64 replaces buf on every rank by the element-wise sum over the ranks.
func (w *World) AllreduceSumFloat64(buf []float64) error {
	return allreduce(w, "allreduce float64", buf, tFloat64)
}

// Barrier returns when every rank has called it.
func (w *World) Barrier() error {
	if w.lib == nil {
		return nil
	}
	return w.do("barrier", w.lib.barrier)
}

// Abort ends every rank of the job with code (MPI_Abort); in a world of one it exits.
func (w *World) Abort(code int) {
	if w.lib == nil {
		os.Exit(code)
	}
	w.calls <- func() { w.lib.abort(code) }
	select {} // MPI_Abort does not return
}

// Finalize ends MPI (all ranks must call it); afterwards collectives fail. A world of one
// has nothing to end.
func (w *World) Finalize() error {
	if w.lib == nil {
		return nil
	}
	err := w.do("finalize", w.lib.finalize)
	w.mu.Lock()
	w.finalized = true
	w.mu.Unlock()
	return err
}
