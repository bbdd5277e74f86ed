//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package data

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPrepareFileModes checks the corpus files get the mode the umask gives
// a new file, as other tools' outputs do (they were 0600 whatever the umask).
// It changes the process umask, so it must not run in parallel.
func TestPrepareFileModes(t *testing.T) {
	for _, tt := range []struct {
		umask            int
		wantFile, wantDr fs.FileMode
	}{{0o022, 0o644, 0o755}, {0o077, 0o600, 0o700}, {0o002, 0o664, 0o775}} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.txt"), []byte("text"))
		writeFile(t, filepath.Join(dir, "b.txt"), []byte("more"))
		out := filepath.Join(dir, "new", "c")
		old := syscall.Umask(tt.umask)
		_, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")}, Output: out,
			Tokenizer: NewByteTokenizer(), ValFraction: 0.5}, nil)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{out + ".bin", out + ".idx", out + "_val.bin", out + "_val.idx", filepath.Dir(out)} {
			info, err := os.Stat(name)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.wantFile
			if info.IsDir() {
				want = tt.wantDr
			}
			if got := info.Mode().Perm(); got != want {
				t.Errorf("umask %03o: %s has mode %03o, want %03o", tt.umask, filepath.Base(name), got, want)
			}
		}
	}
}

// TestPrepareLock checks a second run on the same output is refused with a
// message naming the output and the lock, leaving the first run's files,
// and that the lock goes away with the run.
func TestPrepareLock(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), []byte("text"))
	writeFile(t, filepath.Join(dir, "b.txt"), []byte("more"))
	out := filepath.Join(dir, "c")
	opt := PrepareOptions{Inputs: []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")}, Output: out, Tokenizer: NewByteTokenizer()}
	for _, held := range []string{out, out + "_val"} {
		unlock, err := lockOutput(held) // a second open file description: flock conflicts as with another process
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, out+".bin.77.tmp", []byte("the live run's"))
		opt.ValFraction = 0.5
		_, err = Prepare(context.Background(), opt, nil)
		if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), held+".lock") || !strings.Contains(err.Error(), "another prepare is writing") {
			t.Errorf("lock on %s held: Prepare: %v, want ErrLocked naming the lock", held, err)
		}
		if _, err := os.Stat(out + ".bin.77.tmp"); err != nil && held == out {
			t.Errorf("a refused run removed the live run's temporary file: %v", err)
		}
		unlock()
	}
	if _, err := Prepare(context.Background(), opt, nil); err != nil {
		t.Fatalf("after unlock: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "c*"))
	slices.Sort(left)
	if want := []string{out + ".bin", out + ".idx", out + "_val.bin", out + "_val.idx"}; !slices.Equal(left, want) {
		t.Errorf("files after the run: %v, want %v", left, want)
	}
}

// TestPrepareRemovesStaleTemps checks temporary files a killed run left are
// removed at the next start, and no file of another prefix.
func TestPrepareRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "in", "a.txt"), []byte("text"))
	stale := []string{"c.bin.123.tmp", "c.sizes.9.tmp", "c.idx.4242.tmp"}
	kept := []string{"c.bin.bin.5.tmp", "other.bin.1.tmp", "c.bin.x.tmp", "c.bin", "c.txt"}
	for _, name := range append(stale, kept...) {
		writeTree(t, filepath.Join(dir, "out", name), []byte("left"))
	}
	_, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "in")}, Output: filepath.Join(dir, "out", "c"),
		Tokenizer: NewByteTokenizer()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range stale {
		if _, err := os.Stat(filepath.Join(dir, "out", name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stale %s not removed", name)
		}
	}
	for _, name := range append(kept, "c.idx") {
		if _, err := os.Stat(filepath.Join(dir, "out", name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestPrepareNonRegularInputs checks a FIFO is refused (reading it would
// wait forever for a writer) wherever it appears, while links to files and
// directories are followed.
func TestPrepareNonRegularInputs(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, filepath.Join(dir, "real", "a.txt"), []byte("alpha"))
	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skip("mkfifo:", err)
	}
	os.MkdirAll(filepath.Join(dir, "withpipe"), 0o755)
	syscall.Mkfifo(filepath.Join(dir, "withpipe", "p.txt"), 0o644)
	os.MkdirAll(filepath.Join(dir, "withdirlink"), 0o755)
	for link, target := range map[string]string{"filelink": "real/a.txt", "dirlink": "real", "pipelink": "pipe", "withdirlink/d": "../real"} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		input, wantErr string
	}{
		{"pipe", "is a named pipe (FIFO)"},
		{"withpipe", "p.txt\" is a named pipe (FIFO)"},
		{"pipelink", "is a named pipe (FIFO)"},
		{"withdirlink", "links to a directory, which is not followed"},
		{"filelink", ""},
		{"dirlink", ""},
	}
	for _, tt := range tests {
		t.Run(tt.input, func(t *testing.T) {
			done := make(chan error, 1)
			out := filepath.Join(t.TempDir(), "c")
			go func() {
				_, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, tt.input)}, Output: out, Tokenizer: NewByteTokenizer()}, nil)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Prepare hangs")
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if got, _ := readBack(t, out); !slices.Equal(got, byteDoc("alpha")) {
					t.Errorf("tokens %v", got)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Prepare: %v, want %q", err, tt.wantErr)
			}
		})
	}
	// A FIFO that replaced a listed file is refused when opened, without waiting for a writer.
	done := make(chan error, 1)
	go func() {
		f, err := openRegular(fifo)
		if f != nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "named pipe") {
			t.Errorf("openRegular(FIFO): %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("openRegular(FIFO) hangs")
	}
}

func writeTree(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}
