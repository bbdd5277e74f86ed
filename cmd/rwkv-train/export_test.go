package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// tinyX070 has every x070 tensor kind at a test's size: 2 layers of width 16 in 2 heads of 8,
// distinct LoRA ranks (a swapped or untransposed LoRA shows), V=64.
var tinyX070 = arch.Dims{Arch: arch.X070, Layers: 2, Embd: 16, Vocab: 64, HeadSize: 8, FFN: 64,
	LoRA: arch.LoRA{W: 4, A: 6, V: 2, G: 8}, V0Layer0: true}

// randomTensors returns the tensors of d's layout in RWKV-LM order, F32, with deterministic
// values in [-1, 1) that differ between tensors.
func randomTensors(d arch.Dims) []checkpoint.Tensor {
	var out []checkpoint.Tensor
	seed := uint32(11)
	for _, l := range d.Layout() {
		v := make([]float32, l.Size())
		for j := range v {
			seed = seed*1664525 + 1013904223
			v[j] = float32(int32(seed>>8)-1<<23) / float32(1<<23)
		}
		out = append(out, checkpoint.FromFloat32(l.Name, l.Shape, v, checkpoint.F32))
	}
	return out
}

// writePTH writes ts as an RWKV-LM .pth (what torch.save writes) and returns its path.
func writePTH(t *testing.T, dir, name string, ts []checkpoint.Tensor) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := checkpoint.WriteFileAtomic(path, func(w io.Writer) error { return checkpoint.WritePTH(w, ts) }); err != nil {
		t.Fatal(err)
	}
	return path
}

// exportCmd runs `rwkv-train export` in-process with args.
func exportCmd(args ...string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), append([]string{"export"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// withoutV0 drops layer 0's unused v0/v1/v2 (FLA and GGUF round trips do not keep them).
func withoutV0(ts []checkpoint.Tensor) []checkpoint.Tensor {
	var out []checkpoint.Tensor
	for _, t := range ts {
		switch t.Name {
		case "blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2":
			continue
		}
		out = append(out, t)
	}
	return out
}

// sameTensors fails unless got and want hold the same names in the same order, with the same
// shapes and values within tol.
func sameTensors(t *testing.T, got, want []checkpoint.Tensor, tol float64) {
	t.Helper()
	gn, wn := make([]string, len(got)), make([]string, len(want))
	for i := range got {
		gn[i] = got[i].Name
	}
	for i := range want {
		wn[i] = want[i].Name
	}
	if g, w := strings.Join(gn, " "), strings.Join(wn, " "); g != w {
		t.Fatalf("names differ:\n got %s\nwant %s", g, w)
	}
	for i := range want {
		g, w := got[i], want[i]
		if fmt.Sprint(g.Shape) != fmt.Sprint(w.Shape) {
			t.Errorf("%s: shape %v, want %v", w.Name, g.Shape, w.Shape)
			continue
		}
		gv, err1 := g.Float32s()
		wv, err2 := w.Float32s()
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", w.Name, err1, err2)
		}
		worst := 0.0
		for j := range wv {
			worst = max(worst, math.Abs(float64(gv[j])-float64(wv[j])))
		}
		if worst > tol {
			t.Errorf("%s: values differ by up to %g > %g", w.Name, worst, tol)
		}
	}
}

// Rounding bounds for values in [-1, 1]: half an ulp at 1.
const (
	f16Tol  = 1.0 / 2048
	bf16Tol = 1.0 / 256
)

// TestExportX070: an RWKV-LM .pth of an x070 model exports to every format that holds RWKV-7,
// through the command, and each file reads back with the model's names (RWKV-LM order),
// shapes and values in the dtype asked for; the defaults are fp32 (rwkv, hf), bf16 (pth) and
// fp16 (gguf). An HF directory and a training checkpoint directory are inputs too.
func TestExportX070(t *testing.T) {
	dir := t.TempDir()
	model := randomTensors(tinyX070)
	in := writePTH(t, dir, "rwkv7-tiny.pth", model)
	ckdir := filepath.Join(dir, "ckpt")
	if _, err := checkpoint.Save(ckdir, 5, model, nil, nil, checkpoint.State{}); err != nil {
		t.Fatal(err)
	}
	readWeights := func(t *testing.T, path string) []checkpoint.Tensor {
		ts, err := checkpoint.ReadWeights(path)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	readGGUF := func(t *testing.T, path string) []checkpoint.Tensor {
		f, err := checkpoint.OpenGGUF(path)
		if err != nil {
			t.Fatal(err)
		}
		if a, _ := f.Get("general.architecture"); a != "rwkv7" {
			t.Errorf("general.architecture %v, want rwkv7", a)
		}
		if _, ok := f.Get("tokenizer.ggml.tokens"); ok {
			t.Errorf("a V=64 model got a vocabulary without --vocab")
		}
		if got, _ := f.Get("rwkv7.attention.decay_lora_rank"); got != uint32(tinyX070.LoRA.W) {
			t.Errorf("decay_lora_rank %v, want %d", got, tinyX070.LoRA.W)
		}
		ts, err := checkpoint.X070FromGGUF7(f)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	tests := []struct {
		name   string
		from   string
		args   []string
		out    string
		stdout string // in the summary line
		read   func(*testing.T, string) []checkpoint.Tensor
		want   []checkpoint.Tensor
		dt     checkpoint.DType // of the large matrices read back
		tol    float64
	}{
		{"rwkv default fp32", in, []string{"--format", "rwkv"}, "m.safetensors", "as rwkv f32", readWeights, model, checkpoint.F32, 0},
		{"rwkv bf16", in, []string{"--format", "rwkv", "--dtype", "bf16"}, "m16.safetensors", "as rwkv bf16", readWeights, model, checkpoint.BF16, bf16Tol},
		{"pth default bf16", in, []string{"--format", "pth"}, "m.pth", "as pth bf16", readWeights, model, checkpoint.BF16, bf16Tol},
		{"pth fp32", in, []string{"--format", "pth", "--dtype", "fp32"}, "m32.pth", "as pth f32", readWeights, model, checkpoint.F32, 0},
		{"hf default fp32", in, []string{"--format", "hf"}, "hf", "as hf f32", readWeights, withoutV0(model), checkpoint.F32, 0},
		{"hf fp16", in, []string{"--format", "hf", "--dtype", "fp16"}, "hf16", "as hf f16", readWeights, withoutV0(model), checkpoint.F16, f16Tol},
		{"gguf default fp16", in, []string{"--format", "gguf"}, "m.gguf", "as gguf f16", readGGUF, withoutV0(model), checkpoint.F16, f16Tol},
		{"gguf fp32", in, []string{"--format", "gguf", "--dtype", "fp32"}, "m32.gguf", "as gguf f32", readGGUF, withoutV0(model), checkpoint.F32, 0},
		{"gguf bf16", in, []string{"--format", "gguf", "--dtype", "bf16", "--vocab", "none"}, "mb.gguf", "as gguf bf16", readGGUF, withoutV0(model), checkpoint.BF16, bf16Tol},
		// Inputs other than a .pth: the fp32 HF directory written above (FLA names, no layer-0
		// v's: the RWKV-LM export puts zeros there), and a training checkpoint directory.
		{"from hf dir", filepath.Join(dir, "hf"), []string{"--format", "rwkv"}, "fromhf.safetensors", "(RWKV-7 (x070) L2-D16-V64, 69 tensors)", readWeights, withV0Zeros(model), checkpoint.F32, 0},
		{"from checkpoint dir", ckdir, []string{"--format", "hf"}, "hfck", "exported " + filepath.Join(ckdir, checkpoint.FileName(5)) + " ", readWeights, withoutV0(model), checkpoint.F32, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, tt.out)
			code, stdout, stderr := exportCmd(append([]string{"--checkpoint", tt.from, "--out", out}, tt.args...)...)
			if code != exitOK || !strings.Contains(stdout, tt.stdout) {
				t.Fatalf("exit %d, want 0 and %q in stdout:\n%s%s", code, tt.stdout, stdout, stderr)
			}
			got := tt.read(t, out)
			var mats []checkpoint.Tensor // dtype checks: the matrices (GGUF keeps vectors F32)
			for _, g := range got {
				if len(g.Shape) == 2 && g.Shape[0] >= tinyX070.Embd && g.Shape[1] >= tinyX070.Embd {
					mats = append(mats, g)
				}
			}
			if len(mats) == 0 {
				t.Fatal("no matrix read back")
			}
			for _, m := range mats {
				if m.DType != tt.dt {
					t.Errorf("%s: dtype %s, want %s", m.Name, m.DType, tt.dt)
				}
			}
			sameTensors(t, got, tt.want, tt.tol)
		})
	}
	// The HF directory is the fla-hub layout: FLA names, a transposed LoRA, config.json.
	sf, err := checkpoint.OpenSafetensors(filepath.Join(dir, "hf", "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	w1 := "model.layers.1.attn.w_lora.lora.0.weight"
	found := false
	for _, ts := range sf.Tensors {
		if ts.Name == w1 {
			found = fmt.Sprint(ts.Shape) == fmt.Sprint([]int{tinyX070.LoRA.W, tinyX070.Embd})
		}
	}
	if !found {
		t.Errorf("hf: no %s of shape [%d %d]", w1, tinyX070.LoRA.W, tinyX070.Embd)
	}
	b, err := os.ReadFile(filepath.Join(dir, "hf", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(b, &cfg); err != nil || cfg["model_type"] != "rwkv7" || cfg["num_heads"] != 2.0 || cfg["torch_dtype"] != "float32" {
		t.Errorf("hf config.json: %v\n%s", err, b)
	}
}

// withV0Zeros is ts with layer 0's v0/v1/v2 zeroed, what an RWKV-LM export of a model read
// from FLA (which drops them) holds.
func withV0Zeros(ts []checkpoint.Tensor) []checkpoint.Tensor {
	out := make([]checkpoint.Tensor, len(ts))
	for i, t := range ts {
		switch t.Name {
		case "blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2":
			n := 1
			for _, s := range t.Shape {
				n *= s
			}
			t = checkpoint.FromFloat32(t.Name, t.Shape, make([]float32, n), checkpoint.F32)
		}
		out[i] = t
	}
	return out
}
