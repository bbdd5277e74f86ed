//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrepareCommandLocked holds the output's lock from another process, as
// a second `rwkv-train prepare` on the same --output would find it, and checks
// the run is refused with a message that says why and what to do.
func TestPrepareCommandLocked(t *testing.T) {
	flock, err := exec.LookPath("flock")
	if err != nil {
		t.Skip("no flock(1):", err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), "text")
	out := filepath.Join(dir, "c")
	writeFile(t, out+".lock", "")
	holder := exec.Command(flock, "--exclusive", out+".lock", "sleep", "60")
	stdin, _ := holder.StdinPipe()
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); holder.Process.Kill(); holder.Wait() }()
	// Wait until the holder has the lock.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("flock(1) did not take the lock")
		}
		f, err := os.Open(out + ".lock")
		if err != nil {
			t.Fatal(err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		}
		f.Close()
		if err != nil {
			break
		}
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"prepare", "--tokenizer", "byte", "--quiet", "--output", out, filepath.Join(dir, "a.txt")}, &stdout, &stderr)
	want := "another prepare is writing \"" + out + "\" (it holds the lock \"" + out + ".lock\"); wait for it to end or choose another output"
	if code != exitError || !strings.Contains(stderr.String(), want) {
		t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), exitError, want)
	}
	if _, err := os.Stat(out + ".bin"); !os.IsNotExist(err) {
		t.Error("the refused run wrote a .bin")
	}
}
