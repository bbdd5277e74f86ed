package mpi

import (
	"bytes"
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/rwkv-go/rwkv-go/internal/mpi/mpitest"
)

// TestLocalWorld: without a launcher the world is one process and the collectives leave the
// buffers as they are.
func TestLocalWorld(t *testing.T) {
	if mpitest.Child() {
		t.Skip("a rank of another test")
	}
	for _, k := range []string{"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "PMIX_RANK"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	if ok, _ := Launched(); ok {
		t.Fatal("Launched() = true without a launcher's environment")
	}
	w, err := initialise()
	if err != nil {
		t.Fatal(err)
	}
	if w.Rank() != 0 || w.Size() != 1 {
		t.Fatalf("rank %d size %d, want 0 1", w.Rank(), w.Size())
	}
	f := []float32{1, 2}
	d := []float64{3}
	b := []byte("ab")
	for _, err := range []error{w.AllreduceSumFloat32(f), w.AllreduceSumFloat64(d), w.BcastFloat32(f, 0), w.BcastFloat64(d, 0),
		w.BcastBytes(b, 0), w.Barrier(), w.Finalize()} {
		if err != nil {
			t.Fatal(err)
		}
	}
	if f[0] != 1 || f[1] != 2 || d[0] != 3 || string(b) != "ab" {
		t.Fatalf("a world of one changed its buffers: %v %v %q", f, d, b)
	}
	if err := w.BcastFloat32(f, 1); err == nil || !strings.Contains(err.Error(), "root 1 outside the world of 1") {
		t.Fatalf("broadcast from root 1 in a world of 1: %v", err)
	}
}

// TestLaunchedWithoutLibrary: started by a launcher but with no loadable libmpi, Init fails
// with a message that says what to install, rather than running as a lone rank.
func TestLaunchedWithoutLibrary(t *testing.T) {
	if mpitest.Child() {
		t.Skip("a rank of another test")
	}
	t.Setenv("OMPI_COMM_WORLD_SIZE", "2")
	t.Setenv("RWKV_MPI_LIB", "/nonexistent/libmpi.so.40")
	_, err := initialise()
	if err == nil || !strings.Contains(err.Error(), "started by an MPI launcher") || !strings.Contains(err.Error(), "libmpi") {
		t.Fatalf("err = %v, want one naming the launcher and libmpi", err)
	}
}

// TestTwoRanks runs testRanks on two ranks under mpirun.
func TestTwoRanks(t *testing.T) {
	if mpitest.Child() {
		testRanks(t)
		return
	}
	mpitest.MustPass(t, 2, "TestTwoRanks", time.Minute)
}

// testRanks, on each rank: the world, broadcasts and sum allreduces of every type, in chunks
// smaller than the buffers (as buffers above 2^31 elements are sent), and a bad root.
func testRanks(t *testing.T) {
	w, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	if w.Size() != 2 {
		t.Fatalf("size %d, want 2", w.Size())
	}
	// Go's own signal handling survives MPI_Init (Open MPI does not replace handlers already
	// installed): a nil dereference is still a recoverable panic, not an MPI stack dump.
	if !recoversNil() {
		t.Fatal("a nil dereference after MPI_Init was not a recoverable panic")
	}
	r := w.Rank()
	for _, chunk := range []int{1 << 30, 3} {
		maxCount = chunk
		f := []float32{1, 2, 3, 4, 5, 6, 7}
		d := []float64{0.5, 1e300, -2, 4, 8}
		for i := range f {
			f[i] *= float32(r + 1) // rank 0: x, rank 1: 2x; sum 3x
		}
		for i := range d {
			d[i] *= float64(r + 1)
		}
		if err := w.AllreduceSumFloat32(f); err != nil {
			t.Fatal(err)
		}
		if err := w.AllreduceSumFloat64(d); err != nil {
			t.Fatal(err)
		}
		for i, v := range f {
			if v != 3*float32(i+1) {
				t.Fatalf("chunk %d: allreduce float32[%d] = %v, want %v", chunk, i, v, 3*float32(i+1))
			}
		}
		if d[0] != 1.5 || d[1] != 3e300 || d[4] != 24 {
			t.Fatalf("chunk %d: allreduce float64 = %v", chunk, d)
		}
		bf := []float32{float32(r), float32(r), float32(r), float32(r)}
		bd := []float64{float64(r) + 0.25, math.Inf(1)}
		bb := []byte{byte(r), byte(r), 9, byte(r)}
		if err := w.BcastFloat32(bf, 1); err != nil {
			t.Fatal(err)
		}
		if err := w.BcastFloat64(bd, 1); err != nil {
			t.Fatal(err)
		}
		if err := w.BcastBytes(bb, 0); err != nil {
			t.Fatal(err)
		}
		if bf[0] != 1 || bf[3] != 1 || bd[0] != 1.25 || !bytes.Equal(bb, []byte{0, 0, 9, 0}) {
			t.Fatalf("chunk %d: broadcasts gave %v %v %v", chunk, bf, bd, bb)
		}
		blob, err := w.BcastBlob([]byte(strings.Repeat("x", 5*(r+1))), 1)
		if err != nil {
			t.Fatal(err)
		}
		if string(blob) != "xxxxxxxxxx" {
			t.Fatalf("BcastBlob from rank 1 = %q", blob)
		}
	}
	maxCount = 1 << 30
	if err := w.BcastFloat32([]float32{1}, 2); err == nil || !strings.Contains(err.Error(), "root 2 outside the world of 2") {
		t.Fatalf("broadcast from root 2: %v", err)
	}
	if err := w.Barrier(); err != nil {
		t.Fatal(err)
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
	if err := w.Barrier(); err == nil || !strings.Contains(err.Error(), "after Finalize") {
		t.Fatalf("barrier after Finalize: %v", err)
	}
}

// recoversNil dereferences a nil pointer and reports whether Go turned the SIGSEGV into a
// panic that recover caught.
func recoversNil() (ok bool) {
	defer func() { ok = recover() != nil }()
	var p *int
	_ = *p
	return false
}

// TestKilledRankEndsJob: when one rank dies (SIGKILL: no cleanup, as when the OOM killer or a
// node failure strikes) or calls Abort while the other waits in an allreduce, Open MPI's mpirun
// (by default) kills the job and exits non-zero within seconds: no hang.
func TestKilledRankEndsJob(t *testing.T) {
	if mpitest.Child() {
		w, err := Init()
		if err != nil {
			t.Fatal(err)
		}
		if w.Rank() == 1 {
			time.Sleep(200 * time.Millisecond)
			if os.Getenv("RWKV_TEST_ABORT") != "" {
				w.Abort(3)
			}
			p, _ := os.FindProcess(os.Getpid())
			p.Kill()
			select {}
		}
		buf := make([]float32, 16)
		err = w.AllreduceSumFloat32(buf) // never completes: rank 1 is gone
		t.Fatalf("allreduce returned %v after rank 1 died", err)
	}
	for _, tc := range []struct{ name, env string }{{"SIGKILL", ""}, {"Abort", "RWKV_TEST_ABORT=1"}} {
		t.Run(tc.name, func(t *testing.T) {
			r := mpitest.Run(t, 2, "TestKilledRankEndsJob", 60*time.Second, tc.env)
			if r.Err == nil {
				t.Fatalf("mpirun exited 0 after rank 1 died\n%s", r.Output)
			}
			if strings.Contains(r.Err.Error(), "killed after") || r.Elapsed > 20*time.Second {
				t.Fatalf("the job took %v to end after rank 1 died (%v)\n%s", r.Elapsed, r.Err, r.Output)
			}
			var ee *exec.ExitError
			if tc.env != "" && (!errors.As(r.Err, &ee) || ee.ExitCode() != 3) {
				t.Fatalf("mpirun exited with %v, want the code 3 rank 1 aborted with:\n%s", r.Err, r.Output)
			}
			t.Logf("rank 1's %s ended the job in %v: %v", tc.name, r.Elapsed.Round(time.Millisecond), r.Err)
		})
	}
}

// TestAllreduceBandwidth measures float32 sum allreduces of 4 to 256 MiB on two ranks; it runs
// only with RWKV_MPI_BENCH=1 (BENCHMARKS.md quotes it), with Open MPI's single-copy shared
// memory (CMA, which the other tests leave off for containers that forbid it). algbw is
// bytes / time; busbw is what each rank's link carried, 2(N-1)/N · bytes / time, as
// nccl-tests report it.
func TestAllreduceBandwidth(t *testing.T) {
	if os.Getenv("RWKV_MPI_BENCH") == "" {
		t.Skip("a measurement: set RWKV_MPI_BENCH=1")
	}
	if !mpitest.Child() {
		t.Log(mpitest.MustPass(t, 2, "TestAllreduceBandwidth", 5*time.Minute, "OMPI_MCA_btl_vader_single_copy_mechanism=cma"))
		return
	}
	w, err := Init()
	if err != nil {
		t.Fatal(err)
	}
	for _, mib := range []int{4, 16, 64, 256} {
		buf := make([]float32, mib<<18)
		if err := w.AllreduceSumFloat32(buf); err != nil { // warm-up: pages, connections
			t.Fatal(err)
		}
		reps := max(3, 256/mib)
		w.Barrier()
		start := time.Now()
		for range reps {
			if err := w.AllreduceSumFloat32(buf); err != nil {
				t.Fatal(err)
			}
		}
		el := time.Since(start).Seconds() / float64(reps)
		n := float64(w.Size())
		bytes := float64(4 * len(buf))
		if w.Rank() == 0 {
			t.Logf("allreduce %4d MiB float32 on %d ranks: %.2f ms, algbw %.2f GB/s, busbw %.2f GB/s",
				mib, w.Size(), el*1e3, bytes/el/1e9, 2*(n-1)/n*bytes/el/1e9)
		}
	}
	if err := w.Finalize(); err != nil {
		t.Fatal(err)
	}
}
