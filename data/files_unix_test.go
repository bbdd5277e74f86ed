//go:build unix

package data

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// openWithin runs OpenFormat, failing the test if it blocks.
func openWithin(t *testing.T, path, format string) (*Tokens, error) {
	t.Helper()
	type result struct {
		toks *Tokens
		err  error
	}
	done := make(chan result, 1)
	go func() {
		toks, err := OpenFormat(path, format)
		done <- result{toks, err}
	}()
	select {
	case r := <-done:
		return r.toks, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("opening %s still blocked after 5 s", path)
	}
	return nil, nil
}

// TestOpenRefusesNonRegularFiles: a FIFO as the .bin, the .idx or the .npy
// (a plain open blocks on it forever) and a directory are refused at once,
// naming the path and its kind.
func TestOpenRefusesNonRegularFiles(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(t *testing.T, dir string) string
		format string
		want   string
	}{
		{"bin is a FIFO", func(t *testing.T, dir string) string {
			prefix := writeBinidx(t, dir, "c", 8, dtU16, [][]int{seq(0, 10)})
			os.Remove(prefix + ".bin")
			mkfifo(t, prefix+".bin")
			return prefix
		}, "binidx", "c.bin is a named pipe (FIFO)"},
		{"idx is a FIFO", func(t *testing.T, dir string) string {
			prefix := filepath.Join(dir, "c")
			mkfifo(t, prefix+".idx")
			writeFile(t, prefix+".bin", encodeTokens(dtU16, seq(0, 10)))
			return prefix
		}, "binidx", "c.idx is a named pipe (FIFO)"},
		{"npy is a FIFO", func(t *testing.T, dir string) string {
			mkfifo(t, filepath.Join(dir, "c.npy"))
			return filepath.Join(dir, "c.npy")
		}, "", "c.npy is a named pipe (FIFO)"},
		{"npy is a directory", func(t *testing.T, dir string) string {
			os.Mkdir(filepath.Join(dir, "d.npy"), 0o755)
			return filepath.Join(dir, "d.npy")
		}, "", "d.npy is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			toks, err := openWithin(t, tt.setup(t, t.TempDir()), tt.format)
			if err == nil {
				toks.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Skipf("skipping: mkfifo: %v", err)
	}
}

// TestTruncatedWhileInUse: a .bin truncated under the mapping (which would
// kill the process with SIGBUS on the next read) gives an error naming the
// file, from Read, Check, Slice (as a panic value) and the Loader's batch.
func TestTruncatedWhileInUse(t *testing.T) {
	dir := t.TempDir()
	prefix := writeBinidx(t, dir, "c", 8, dtU16, [][]int{seq(0, 1<<16)}) // 128 KiB: several pages
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	s, err := NewSequentialSampler(toks, 16)
	if err != nil {
		t.Fatal(err)
	}
	l, err := NewLoader(s, 2, 16, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if b := l.Next(); b.Err() != nil || b.X[1] != 1 {
		t.Fatalf("before truncation: X[1] = %d, %v", b.X[1], b.Err())
	}
	if err := os.Truncate(prefix+".bin", 0); err != nil {
		t.Fatal(err)
	}
	// Read faults on the page past the end of the file.
	if _, err := toks.Read(1<<15, 8, nil); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "c.bin") {
		t.Errorf("Read: %v, want ErrTruncated naming c.bin", err)
	}
	if err := toks.Check(); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), "131072 bytes when opened and has 0 now") {
		t.Errorf("Check: %v, want ErrTruncated with both sizes", err)
	}
	if err := toks.CheckVocab(1 << 15); !errors.Is(err, ErrTruncated) {
		t.Errorf("CheckVocab: %v, want ErrTruncated", err)
	}
	func() {
		defer func() {
			if err, _ := recover().(error); !errors.Is(err, ErrTruncated) {
				t.Errorf("Slice panicked with %v, want an error wrapping ErrTruncated", err)
			}
		}()
		toks.Slice(1<<15, 8, nil)
	}()
	// The loader may hold batches drawn before the truncation; a later one
	// reports it.
	var berr error
	for range 8 {
		if berr = l.Next().Err(); berr != nil {
			break
		}
	}
	if !errors.Is(berr, ErrTruncated) || !strings.Contains(berr.Error(), "c.bin") {
		t.Errorf("Loader batch error %v, want ErrTruncated naming c.bin", berr)
	}
}
