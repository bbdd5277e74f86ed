package weights

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestLoadHFDirectories: model.load / rwkv-eval --model accept the
// Hugging Face directories transformers writes (pytorch_model.bin, a
// sharded .bin, sharded safetensors, each with config.json; the torch.save
// variants are tested against files torch wrote in checkpoint/testdata/hf)
// and build a model equal to the original.
func TestLoadHFDirectories(t *testing.T) {
	dims := checkpoint.Dims{Vocab: 11, Embd: 32, FFN: 128, Layers: 2}
	orig := make([]checkpoint.Tensor, len(dims.Layout()))
	for k, l := range dims.Layout() {
		v := make([]float32, l.Size())
		for j := range v {
			v[j] = float32((5*j+3*k)%16-8) / 16
		}
		orig[k] = checkpoint.FromFloat32(l.Name, l.Shape, v, checkpoint.F32)
	}
	hf := make([]checkpoint.Tensor, len(orig))
	for i, t := range orig {
		t.Name = checkpoint.HFName(t.Name)
		hf[i] = t
	}
	root := t.TempDir()
	write := func(path string, f func(*bytes.Buffer) error) {
		var buf bytes.Buffer
		if err := f(&buf); err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	config := func(dir string) {
		write(filepath.Join(dir, "config.json"), func(b *bytes.Buffer) error {
			return json.NewEncoder(b).Encode(map[string]any{"model_type": "rwkv", "vocab_size": 11, "hidden_size": 32,
				"num_hidden_layers": 2, "attention_hidden_size": 32, "intermediate_size": 128, "context_length": 64})
		})
	}
	sharded := func(dir, ext string, writeShard func(*bytes.Buffer, []checkpoint.Tensor) error) {
		weightMap := map[string]string{}
		for s, part := range [][]checkpoint.Tensor{hf[:20], hf[20:]} {
			name := []string{"shard-1-of-2", "shard-2-of-2"}[s] + ext
			write(filepath.Join(dir, name), func(b *bytes.Buffer) error { return writeShard(b, part) })
			for _, t := range part {
				weightMap[t.Name] = name
			}
		}
		index := "model.safetensors.index.json"
		if ext == ".bin" {
			index = "pytorch_model.bin.index.json"
		}
		write(filepath.Join(dir, index), func(b *bytes.Buffer) error {
			return json.NewEncoder(b).Encode(map[string]any{"metadata": map[string]int{"total_size": 0}, "weight_map": weightMap})
		})
		config(dir)
	}
	pth := func(b *bytes.Buffer, ts []checkpoint.Tensor) error { return checkpoint.WritePTH(b, ts) }
	st := func(b *bytes.Buffer, ts []checkpoint.Tensor) error {
		return checkpoint.WriteSafetensors(b, ts, map[string]string{"format": "pt"})
	}
	write(filepath.Join(root, "bin", "pytorch_model.bin"), func(b *bytes.Buffer) error { return pth(b, hf) })
	config(filepath.Join(root, "bin"))
	sharded(filepath.Join(root, "bin_sharded"), ".bin", pth)
	sharded(filepath.Join(root, "st_sharded"), ".safetensors", st)

	for _, dir := range []string{"bin", "bin_sharded", "st_sharded"} {
		t.Run(dir, func(t *testing.T) {
			m, err := Load(filepath.Join(root, dir), 16, model.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if c := m.Config; c.Vocab != 11 || c.Embd != 32 || c.FFN != 128 || c.Layers != 2 {
				t.Fatalf("config %+v, want vocab 11, embd 32, ffn 128, 2 layers", c)
			}
			got := Tensors(m, checkpoint.F32)
			if len(got) != len(orig) {
				t.Fatalf("%d tensors, want %d", len(got), len(orig))
			}
			for i, g := range got {
				if g.Name != orig[i].Name || !bytes.Equal(g.Data, orig[i].Data) {
					t.Errorf("tensor %d %s differs from the original %s", i, g.Name, orig[i].Name)
				}
			}
		})
	}
}

// TestLoadRWKV7: an RWKV-7 file loads as an x070 model with the sizes read from its tensors
// (layer 0's v0/v1/v2 included) and its values in place.
func TestLoadRWKV7(t *testing.T) {
	d := checkpoint.Dims{Arch: arch.X070, Vocab: 11, Embd: 32, FFN: 128, Layers: 2, HeadSize: 16,
		LoRA: arch.LoRA{W: 8, A: 4, V: 12, G: 8}, V0Layer0: true}
	var ts []checkpoint.Tensor
	for i, l := range d.Layout() {
		v := make([]float32, l.Size())
		for j := range v {
			v[j] = float32(i) + float32(j)/1024
		}
		ts = append(ts, checkpoint.FromFloat32(l.Name, l.Shape, v, checkpoint.F32))
	}
	path := filepath.Join(t.TempDir(), "rwkv7.safetensors")
	if err := checkpoint.WriteFileAtomic(path, func(w io.Writer) error { return checkpoint.ExportX070RWKV(w, ts, checkpoint.F32) }); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, 16, model.Float32)
	if err != nil {
		t.Fatalf("Load of an x070 file: %v", err)
	}
	if want := model.ConfigOf(d, 16); m.Config != want {
		t.Fatalf("config %+v, want %+v", m.Config, want)
	}
	for i, l := range d.Layout() {
		got := m.Param(l.Name).F32()
		if got[len(got)-1] != float32(i)+float32(l.Size()-1)/1024 {
			t.Fatalf("%s: last value %v, want %v", l.Name, got[len(got)-1], float32(i)+float32(l.Size()-1)/1024)
		}
	}
}
