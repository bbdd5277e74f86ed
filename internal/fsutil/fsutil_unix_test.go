//go:build unix

package fsutil

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestOpenRegular: a FIFO (with no writer, on which a plain open blocks
// forever), a directory and a device are refused at once, naming the kind;
// a regular file and a symlink to one open.
func TestOpenRegular(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Skipf("skipping: mkfifo: %v", err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(fifo, link); err != nil {
		t.Fatal(err)
	}
	fileLink := filepath.Join(dir, "file-link")
	if err := os.Symlink(file, fileLink); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		kind string // "" for success
	}{
		{file, ""},
		{fileLink, ""},
		{fifo, "named pipe (FIFO)"},
		{link, "named pipe (FIFO)"},
		{dir, "directory"},
		{"/dev/null", "character device"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				f, _, err := OpenRegular(tt.path)
				if err == nil {
					f.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatalf("OpenRegular(%s) still blocked after 5 s", tt.path)
			}
			if tt.kind == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrNotRegular) || !strings.Contains(err.Error(), tt.path+" is a "+tt.kind) {
				t.Errorf("error %v, want ErrNotRegular naming %s as a %s", err, tt.path, tt.kind)
			}
		})
	}
	b, err := ReadFile(file, 0)
	if err != nil || string(b) != "data" {
		t.Errorf("ReadFile: %q, %v", b, err)
	}
	if _, err := ReadFile(file, 3); err == nil {
		t.Error("ReadFile: 4 bytes accepted with a limit of 3")
	}
}
