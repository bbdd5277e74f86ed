package weights

import (
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestLoadRWKV56FileForms: an RWKV-5.2 and an RWKV-6 model written in every format rwkv-go
// exports (RWKV-LM .pth and safetensors, the HF remote-code directory, web-rwkv .st, and for
// RWKV-6 llama.cpp's GGUF) is what rwkv-eval's loader reads back: the same tensors. Load
// builds the model once model supports the architecture (arch.Supported), and its weights are
// the file's; until then Load refuses the file naming the architecture, after reading it.
func TestLoadRWKV56FileForms(t *testing.T) {
	for _, d := range []arch.Dims{
		{Arch: arch.X052, Layers: 2, Embd: 64, Vocab: 11, HeadSize: 16, FFN: arch.DefaultFFN5(64)},
		{Arch: arch.X060, Layers: 2, Embd: 64, Vocab: 11, HeadSize: 16, FFN: arch.DefaultFFN5(64), LoRA: arch.DefaultLoRA6()},
	} {
		var ts []checkpoint.Tensor
		for k, l := range d.Layout() {
			v := make([]float32, l.Size())
			for j := range v {
				v[j] = float32((5*j+3*k)%16-8) / 16 // exact in F16
			}
			ts = append(ts, checkpoint.FromFloat32(l.Name, l.Shape, v, checkpoint.F32))
		}
		file := func(f func(io.Writer) error) func(string) error {
			return func(p string) error { return checkpoint.WriteFileAtomic(p, f) }
		}
		forms := []struct {
			name  string
			write func(path string) error
		}{
			{"rwkv.pth", file(func(w io.Writer) error { return checkpoint.ExportX05PTH(w, ts, checkpoint.F32) })},
			{"rwkv.safetensors", file(func(w io.Writer) error { return checkpoint.ExportX05RWKV(w, ts, checkpoint.F32) })},
			{"hf", func(p string) error { return checkpoint.ExportHF56(p, ts, checkpoint.F32) }},
			{"web-rwkv.st", file(func(w io.Writer) error { return checkpoint.ExportWebRWKV(w, ts) })},
		}
		if d.Arch == arch.X060 {
			forms = append(forms, struct {
				name  string
				write func(path string) error
			}{"rwkv6.gguf", file(func(w io.Writer) error {
				return checkpoint.ExportGGUF6(w, ts, checkpoint.GGUF7Options{DType: checkpoint.F32})
			})})
		}
		dir := t.TempDir()
		for _, tt := range forms {
			t.Run(string(d.Arch)+"/"+tt.name, func(t *testing.T) {
				path := filepath.Join(dir, tt.name)
				if err := tt.write(path); err != nil {
					t.Fatal(err)
				}
				want := map[string][]float32{}
				for _, w := range ts {
					want[w.Name], _ = w.Float32s()
				}
				same := func(got []checkpoint.Tensor) {
					t.Helper()
					if len(got) != len(ts) {
						t.Fatalf("%d tensors, the original has %d", len(got), len(ts))
					}
					for _, g := range got {
						v, err := g.Float32s()
						if err != nil || !slices.Equal(v, want[g.Name]) {
							t.Errorf("tensor %s differs from the original (%v)", g.Name, err)
						}
					}
				}
				read, err := checkpoint.ReadWeights(path)
				if err != nil {
					t.Fatal(err)
				}
				same(read)
				m, err := Load(path, 16, model.Float32)
				if !d.Arch.IsSupported() {
					if !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), d.Arch.Title()+" is not supported yet") {
						t.Errorf("Load of a %s file before model supports it: %v, want arch.ErrUnsupported naming it", d.Arch, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				same(Tensors(m, checkpoint.F32))
			})
		}
	}
}
