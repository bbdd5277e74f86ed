package checkpoint

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// faultyTemp wraps a real temporary file and fails like a full disk: writes
// past limit bytes return ENOSPC, and Sync or Close can be made to fail.
type faultyTemp struct {
	*os.File
	limit     int
	written   int
	failSync  bool
	failClose bool
	onLimit   func() // called instead of failing, if set (the crash test blocks here)
}

func (f *faultyTemp) Write(p []byte) (int, error) {
	if f.written+len(p) > f.limit {
		n := f.limit - f.written
		f.File.Write(p[:n])
		f.written += n
		if f.onLimit != nil {
			f.onLimit()
		}
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.written += len(p)
	return f.File.Write(p)
}

func (f *faultyTemp) Sync() error {
	if f.failSync {
		return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.Sync()
}

func (f *faultyTemp) Close() error {
	err := f.File.Close()
	if f.failClose {
		return &os.PathError{Op: "close", Path: f.Name(), Err: syscall.EIO}
	}
	return err
}

// withTemp swaps the temporary-file hook for one test.
func withTemp(t *testing.T, wrap func(*os.File) tempFile) {
	t.Helper()
	old := createTemp
	createTemp = func(dir, pattern string) (tempFile, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return nil, err
		}
		return wrap(f), nil
	}
	t.Cleanup(func() { createTemp = old })
}

func writeBytes(b []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(b); return err }
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := WriteFileAtomic(path, writeBytes([]byte("one"))); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(path, writeBytes([]byte("two"))); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Errorf("content %q, want %q", b, "two")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o666&^umask() {
		t.Errorf("mode %v, %v; want %v", fi.Mode(), err, 0o666&^umask())
	}
	callerErr := errors.New("caller failed")
	err := WriteFileAtomic(path, func(w io.Writer) error { w.Write([]byte("partial")); return callerErr })
	if !errors.Is(err, callerErr) || !strings.Contains(err.Error(), path) {
		t.Errorf("error %v, want %v naming %s", err, callerErr, path)
	}
	if b, _ := os.ReadFile(path); string(b) != "two" {
		t.Errorf("after a failed write: content %q, want %q", b, "two")
	}
	assertNoTemp(t, dir)
}

func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if isTemp(e.Name()) {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// TestFullDiskKeepsPreviousCheckpoint injects the failures a full disk
// causes, at each stage of the write; the previous checkpoint must stay
// loadable, Latest must still name it, and no temporary file may remain.
func TestFullDiskKeepsPreviousCheckpoint(t *testing.T) {
	tests := []struct {
		name  string
		fault faultyTemp
		want  error
	}{
		{"write fails early", faultyTemp{limit: 10}, syscall.ENOSPC},
		{"write fails late", faultyTemp{limit: 2000}, syscall.ENOSPC},
		{"sync fails", faultyTemp{limit: 1 << 30, failSync: true}, syscall.ENOSPC},
		{"close fails", faultyTemp{limit: 1 << 30, failClose: true}, syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			model := tinyModel(tinyDims)
			good, err := Save(dir, 1, model, nil, nil, State{Config: "a: 1\n"})
			if err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(good)
			withTemp(t, func(f *os.File) tempFile { ft := tt.fault; ft.File = f; return &ft })
			// A newer step, and a rewrite of the same step, both fail.
			for _, step := range []int64{2, 1} {
				_, err := Save(dir, step, model, nil, nil, State{})
				if !errors.Is(err, tt.want) {
					t.Fatalf("step %d: error %v, want %v", step, err, tt.want)
				}
			}
			assertNoTemp(t, dir)
			if after, _ := os.ReadFile(good); !bytes.Equal(before, after) {
				t.Fatal("previous checkpoint changed")
			}
			if latest, err := Latest(dir); err != nil || latest != good {
				t.Fatalf("Latest = %s, %v; want %s", latest, err, good)
			}
			if _, err := Load(good); err != nil {
				t.Fatal(err)
			}
		})
	}
}

const helperEnv = "CHECKPOINT_CRASH_HELPER_DIR"

// TestCrashHelper is not a test: TestKillDuringWrite runs it in a child
// process, which starts writing step 2 and blocks halfway until killed.
func TestCrashHelper(t *testing.T) {
	dir := os.Getenv(helperEnv)
	if dir == "" {
		t.Skip("helper process for TestKillDuringWrite")
	}
	withTemp(t, func(f *os.File) tempFile {
		return &faultyTemp{File: f, limit: 3000, onLimit: func() {
			f.Sync()
			os.Stdout.WriteString("blocked mid-write\n")
			time.Sleep(time.Hour) // wait for SIGKILL
		}}
	})
	Save(dir, 2, tinyModel(tinyDims), nil, nil, State{})
	t.Fatal("the write was not blocked")
}

// TestKillDuringWrite: a process killed with SIGKILL in the middle of
// writing a checkpoint leaves the previous one intact and Latest still
// names it; SweepTemp then removes the partial temporary file.
func TestKillDuringWrite(t *testing.T) {
	dir := t.TempDir()
	model := tinyModel(tinyDims)
	good, err := Save(dir, 1, model, model, squares(model), State{Config: "x: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(good)

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "blocked mid-write\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q, %v", line, err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	if after, _ := os.ReadFile(good); !bytes.Equal(before, after) {
		t.Fatal("previous checkpoint changed")
	}
	if latest, err := Latest(dir); err != nil || latest != good {
		t.Fatalf("Latest = %s, %v; want %s", latest, err, good)
	}
	removed, err := SweepTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || !strings.HasPrefix(filepath.Base(removed[0]), ".step-000000002.safetensors.tmp-") {
		t.Fatalf("SweepTemp removed %v, want the one partial step-2 file", removed)
	}
	if fi, err := os.Stat(filepath.Join(dir, FileName(2))); err == nil {
		t.Fatalf("a step-2 checkpoint of %d bytes exists", fi.Size())
	}
	assertNoTemp(t, dir)
	if _, err := Load(good); err != nil {
		t.Fatal(err)
	}
}

// deadPid is above Linux's largest pid_max: no process has it.
const deadPid = 1 << 30

// TestSweepTemp: the temporary files of dead writers go; those of live ones (this process, a
// live child) stay, and so do recent files of the older pid-less naming.
func TestSweepTemp(t *testing.T) {
	dir := t.TempDir()
	child := exec.Command("sleep", "30")
	if err := child.Start(); err != nil {
		t.Skipf("no sleep(1) to stand for a live writer: %v", err)
	}
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	dead := fmt.Sprintf(".step-000000001.safetensors.tmp-%d-77", deadPid)
	mine := fmt.Sprintf(".loss.svg.tmp-%d-5", os.Getpid())
	live := fmt.Sprintf(".model.safetensors.tmp-%d-6", child.Process.Pid)
	notOurs := []string{".vimrc.tmp-backup", fmt.Sprintf(".x.tmp-%d-bak", deadPid), "notes.tmp-1", ".hidden", "step-000000001.safetensors"}
	for _, name := range append([]string{dead, mine, live, ".config.json.tmp-9", ".old.json.tmp-123"}, notOurs...) {
		os.WriteFile(filepath.Join(dir, name), nil, 0o644)
	}
	old := time.Now().Add(-2 * legacyTempAge)
	for _, name := range append([]string{".old.json.tmp-123"}, notOurs...) {
		os.Chtimes(filepath.Join(dir, name), old, old)
	}
	os.Mkdir(filepath.Join(dir, ".dir.tmp-1"), 0o755)
	removed, err := SweepTemp(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := range removed {
		removed[i] = filepath.Base(removed[i])
	}
	if got, want := strings.Join(removed, " "), ".old.json.tmp-123 "+dead; got != want {
		t.Errorf("removed %q, want %q", got, want)
	}
	if _, err := SweepTemp(filepath.Join(dir, "missing")); err == nil {
		t.Error("sweeping a missing directory succeeded")
	}
	// The next write into the directory sweeps too.
	os.WriteFile(filepath.Join(dir, dead), nil, 0o644)
	if err := WriteFileAtomic(filepath.Join(dir, "x"), writeBytes([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, dead)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dead writer's temporary file survived the next write: %v", err)
	}
	for _, name := range append([]string{mine, live, ".config.json.tmp-9"}, notOurs...) {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("a live writer's temporary file, or a file not ours, was removed: %v", err)
		}
	}
}

// TestWriteFileAtomicUmask: the file's mode is 0666 less the umask, as for any created file.
func TestWriteFileAtomicUmask(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		umask int
		want  os.FileMode
	}{{0o077, 0o600}, {0o022, 0o644}, {0o002, 0o664}} {
		old := syscall.Umask(tc.umask)
		path := filepath.Join(dir, fmt.Sprintf("f%o", tc.umask))
		err := WriteFileAtomic(path, writeBytes([]byte("x")))
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != tc.want {
			t.Errorf("umask %03o: mode %v, %v; want %v", tc.umask, fi.Mode().Perm(), err, tc.want)
		}
	}
}

// umask reads the process's umask.
func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}
