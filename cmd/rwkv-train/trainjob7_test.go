package main

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// TestTrainX070ExportsModel: a training run of an RWKV-7 model ends by writing out_dir's
// model.safetensors in the x070 layout (it used to fail there: the RWKV-4 export refuses x070),
// and that file, and the out_dir itself, load back as the x070 model that rwkv-eval evaluates.
func TestTrainX070ExportsModel(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", cfg, "--model.arch=x070", "--model.head_size=16"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	for _, path := range []string{filepath.Join(dir, "out", "model.safetensors"), filepath.Join(dir, "out")} {
		m, err := weights.Load(path, 16, model.Float32)
		if err != nil {
			t.Fatal(err)
		}
		if c := m.Config; c.Arch != arch.X070 || c.Layers != 1 || c.Embd != 32 || c.HeadDim() != 16 {
			t.Errorf("%s: config %+v, want x070 L1-D32 with heads of 16", path, c)
		}
	}
}
