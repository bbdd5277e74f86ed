//go:build unix

package checkpoint

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadWeightsRefusesNonRegularFiles: a FIFO as the model path (a plain
// open blocks on it forever) or as a file of an hf directory is refused at
// once, naming it.
func TestReadWeightsRefusesNonRegularFiles(t *testing.T) {
	mkfifo := func(t *testing.T, path string) {
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Skipf("skipping: mkfifo: %v", err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		want  string
	}{
		{"model file", func(t *testing.T, dir string) string {
			mkfifo(t, filepath.Join(dir, "model.pth"))
			return filepath.Join(dir, "model.pth")
		}, "model.pth is a named pipe (FIFO)"},
		{"hf model.safetensors", func(t *testing.T, dir string) string {
			mkfifo(t, filepath.Join(dir, "model.safetensors"))
			return dir
		}, "model.safetensors is a named pipe (FIFO)"},
		{"hf config.json", func(t *testing.T, dir string) string {
			var buf bytes.Buffer
			ts := tinyModel(tinyDims)
			for i := range ts {
				ts[i].Name = HFName(ts[i].Name)
			}
			WriteSafetensors(&buf, ts, nil)
			os.WriteFile(filepath.Join(dir, "model.safetensors"), buf.Bytes(), 0o644)
			mkfifo(t, filepath.Join(dir, "config.json"))
			return dir
		}, "config.json is a named pipe (FIFO)"},
		{"newest checkpoint", func(t *testing.T, dir string) string {
			mkfifo(t, filepath.Join(dir, FileName(7)))
			return filepath.Join(dir, FileName(7))
		}, FileName(7) + " is a named pipe (FIFO)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, t.TempDir())
			done := make(chan error, 1)
			go func() { _, err := ReadWeights(path); done <- err }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("error %v, want it to contain %q", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("ReadWeights(%s) still blocked after 5 s", path)
			}
		})
	}
}
