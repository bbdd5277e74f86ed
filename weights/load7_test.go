package weights

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestLoadRWKV7FileForms: an RWKV-7 model exported as RWKV-LM .pth, RWKV-LM safetensors and an fla-hub
// directory loads back into an x070 model with the same tensors (the fla-hub directory without
// layer 0's unused v0/v1/v2, which FLA does not store).
func TestLoadRWKV7FileForms(t *testing.T) {
	orig, err := model.New(model.Config{Arch: arch.X070, Layers: 2, Embd: 32, Vocab: 11, HeadSize: 16, CtxLen: 16}, model.Float32)
	if err != nil {
		t.Fatal(err)
	}
	orig.Init(3, 0.5)
	ts := Tensors(orig, checkpoint.F32)
	dir := t.TempDir()
	for _, tt := range []struct {
		name   string
		write  func(path string) error
		noV0L0 bool
	}{
		{"rwkv7.pth", func(p string) error {
			return checkpoint.WriteFileAtomic(p, func(w io.Writer) error { return checkpoint.ExportX070PTH(w, ts, checkpoint.F32) })
		}, false},
		{"rwkv7.safetensors", func(p string) error {
			return checkpoint.WriteFileAtomic(p, func(w io.Writer) error { return checkpoint.ExportX070RWKV(w, ts, checkpoint.F32) })
		}, false},
		{"fla-hub", func(p string) error { return checkpoint.ExportHF7(p, ts, checkpoint.HF7Config{}, checkpoint.F32) }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			if err := tt.write(path); err != nil {
				t.Fatal(err)
			}
			m, err := Load(path, 16, model.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if c := m.Config; c.Arch != arch.X070 || c.Layers != 2 || c.Embd != 32 || c.Vocab != 11 || c.HeadDim() != 16 || c.NoV0Layer0 != tt.noV0L0 {
				t.Fatalf("config %+v, want x070 L2 D32 V11 head 16, no_v0_layer0 %v", c, tt.noV0L0)
			}
			want := map[string][]byte{}
			for _, w := range ts {
				want[w.Name] = w.Data
			}
			got := Tensors(m, checkpoint.F32)
			if n := len(ts) - len(got); n != map[bool]int{false: 0, true: 3}[tt.noV0L0] {
				t.Fatalf("%d tensors loaded, the original has %d", len(got), len(ts))
			}
			for _, g := range got {
				if !bytes.Equal(g.Data, want[g.Name]) {
					t.Errorf("tensor %s differs from the original", g.Name)
				}
			}
		})
	}
}
