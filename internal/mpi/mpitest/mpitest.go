// Package mpitest runs a Go test on several MPI ranks: the test binary re-executes itself under
// `mpirun -np N`, running only the named test, in which Child reports true.
package mpitest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv marks the processes mpirun starts for a test.
const childEnv = "RWKV_MPI_TEST_CHILD"

// Child reports whether this test binary is a rank started by Run.
func Child() bool { return os.Getenv(childEnv) == "1" }

// Mpirun returns the path of mpirun, or skips t with the reason when there is none (or when
// the binary, built without cgo, cannot load MPI); with RWKV_REQUIRE_MPI set (as .ci/run sets it) it fails instead.
func Mpirun(t testing.TB) string {
	t.Helper()
	if !canLoad {
		t.Skip("this test binary was built without cgo, so it cannot load libmpi: the multi-rank tests need CGO_ENABLED=1")
	}
	path, err := exec.LookPath("mpirun")
	if err != nil {
		msg := "mpirun not found: the multi-rank tests need Open MPI (Debian: apt-get install libopenmpi-dev openmpi-bin)"
		if os.Getenv("RWKV_REQUIRE_MPI") != "" {
			t.Fatalf("%s; RWKV_REQUIRE_MPI is set", msg)
		}
		t.Skip(msg)
	}
	return path
}

// Result is what a run under mpirun did.
type Result struct {
	Output  string // stdout and stderr of every rank and of mpirun
	Err     error  // nil when mpirun exited 0
	Elapsed time.Duration
}

// Command returns mpirun -np np running the current binary with args and the extra
// environment env (every rank sees Child() true), in a process group of its own so that
// cancelling ctx kills it all; its stdout and stderr are not set.
func Command(t testing.TB, ctx context.Context, np int, env []string, args ...string) *exec.Cmd {
	t.Helper()
	mpirun := Mpirun(t)
	all := append([]string{"-np", fmt.Sprint(np), "--oversubscribe", "--bind-to", "none", os.Args[0]}, args...)
	cmd := exec.CommandContext(ctx, mpirun, all...)
	cmd.Env = append(os.Environ(), childEnv+"=1", "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1",
		// Shared memory between the ranks of one machine, without the single-copy (CMA)
		// mechanism that containers often forbid.
		"OMPI_MCA_btl_vader_single_copy_mechanism=none", "OMPI_MCA_rmaps_base_oversubscribe=1")
	cmd.Env = append(cmd.Env, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	return cmd
}

// Run runs the test named test of the current binary on np ranks under mpirun, with the extra
// environment env, and kills it after timeout. Every rank sees Child() true.
func Run(t testing.TB, np int, test string, timeout time.Duration, env ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := Command(t, ctx, np, env, "-test.run", "^"+test+"$", "-test.v", "-test.count=1", "-test.timeout", timeout.String())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	r := Result{Output: out.String(), Err: err, Elapsed: time.Since(start)}
	if ctx.Err() != nil {
		r.Err = fmt.Errorf("mpirun -np %d %s: killed after %v: %w", np, test, timeout, ctx.Err())
	}
	return r
}

// MustPass runs Run and fails t with the output unless every rank passed.
func MustPass(t testing.TB, np int, test string, timeout time.Duration, env ...string) string {
	t.Helper()
	r := Run(t, np, test, timeout, env...)
	if r.Err != nil {
		t.Fatalf("mpirun -np %d %s: %v\n%s", np, test, r.Err, r.Output)
	}
	if n := strings.Count(r.Output, "--- PASS: "+test); n != np {
		t.Fatalf("mpirun -np %d %s: %d ranks passed, want %d\n%s", np, test, n, np, r.Output)
	}
	return r.Output
}
