package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/internal/mpi/mpitest"
)

// childrenOf lists the processes whose parent is pid (the ranks mpirun started on this machine).
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue // gone
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after its ')'.
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(d)))
			out = append(out, n)
		}
	}
	return out
}

// TestMPIStopSignal: rwkv-train on 2 ranks under mpirun stops as one job on a stop signal,
// wherever it lands: SIGTERM on one rank alone, SIGTERM on every rank (as srun and Kubernetes
// deliver it), or SIGUSR1 to mpirun (which forwards it). Both ranks stop at the same step, rank
// 0 writes a checkpoint, the job exits 130, and (once) the checkpoint resumes on 2 ranks.
func TestMPIStopSignal(t *testing.T) {
	if mpitest.Child() {
		t.Skip("a rank of another test")
	}
	mpitest.Mpirun(t)
	for i, tc := range []struct {
		name string
		send func(t *testing.T, mpirun int)
	}{
		{"SIGTERM to rank 1's process only", func(t *testing.T, mpirun int) {
			ranks := childrenOf(t, mpirun)
			if len(ranks) != 2 {
				t.Fatalf("mpirun has %d children, want 2 ranks", len(ranks))
			}
			syscall.Kill(ranks[1], syscall.SIGTERM)
		}},
		{"SIGTERM to every rank", func(t *testing.T, mpirun int) {
			for _, r := range childrenOf(t, mpirun) {
				syscall.Kill(r, syscall.SIGTERM)
			}
		}},
		{"SIGUSR1 to mpirun", func(t *testing.T, mpirun int) { syscall.Kill(mpirun, syscall.SIGUSR1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyJob(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			env := []string{childEnv + "=main", "GOMAXPROCS=1"}
			cmd := mpitest.Command(t, ctx, 2, env, "--config", cfg, "--train.max_steps=1000000")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cancel(); cmd.Wait() }()
			sc := bufio.NewScanner(stderr)
			var out []string
			for sc.Scan() {
				out = append(out, sc.Text())
				if strings.HasPrefix(sc.Text(), "step 3/") {
					break
				}
			}
			start := time.Now()
			tc.send(t, cmd.Process.Pid)
			for sc.Scan() {
				out = append(out, sc.Text())
			}
			cmd.Wait()
			text := strings.Join(out, "\n")
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || time.Since(start) > 30*time.Second {
				t.Fatalf("mpirun exited %d after %v, want %d within seconds:\n%s", code, time.Since(start), exitInterrupted, text)
			}
			// (Rank 1 says so too, unless mpirun ends it first when rank 0 has exited 130.)
			if !strings.Contains(text, "world_size=2") || !strings.Contains(text, "checkpoint saved as") {
				t.Fatalf("want world_size=2 in the start log and the saved checkpoint named:\n%s", text)
			}
			latest, err := checkpoint.Latest(filepath.Join(dir, "ckpt"))
			if err != nil {
				t.Fatalf("no checkpoint: %v\n%s", err, text)
			}
			ck, err := checkpoint.Load(latest)
			if err != nil {
				t.Fatal(err)
			}
			step := ck.State.Step
			if !strings.Contains(text, fmt.Sprintf("interrupted at step %d", step)) {
				t.Fatalf("the ranks did not both stop at step %d, the checkpoint's:\n%s", step, text)
			}
			if i > 0 {
				return // resuming once is enough
			}
			res := mpitest.Command(t, ctx, 2, env, "--config", cfg, "--resume", fmt.Sprintf("--train.max_steps=%d", step+1))
			b, err := res.CombinedOutput()
			if err != nil || !strings.Contains(string(b), "resumed") || !strings.Contains(string(b), fmt.Sprintf("trained %d steps", step+1)) {
				t.Fatalf("resume on 2 ranks: %v\n%s", err, b)
			}
		})
	}
}
