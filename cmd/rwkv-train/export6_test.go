package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// tinyX052 and tinyX060 are RWKV-5.2/6 models of the sizes the HF remote code builds for C=64
// (F = int(3.5·C)//32·32 = 224; x060 LoRA widths 32 and 64), 2 layers of 4 heads of 16, V=64.
var (
	tinyX052 = arch.Dims{Arch: arch.X052, Layers: 2, Embd: 64, Vocab: 64, HeadSize: 16, FFN: 224}
	tinyX060 = arch.Dims{Arch: arch.X060, Layers: 2, Embd: 64, Vocab: 64, HeadSize: 16, FFN: 224, LoRA: arch.LoRA{Mix: 32, W: 64}}
)

// TestExportX05: an RWKV-LM .pth of an x052 and of an x060 model exports through the command to
// every format that holds it (rwkv, pth, hf, web-rwkv; gguf for x060), and each output reads
// back (checkpoint.ReadWeights, what rwkv-eval's loader reads) to the model's names, RWKV-LM
// order, shapes and values in the dtype asked for. The HF directory, the GGUF file, the
// web-rwkv file and a training checkpoint directory are inputs too.
func TestExportX05(t *testing.T) {
	for _, d := range []arch.Dims{tinyX052, tinyX060} {
		t.Run(string(d.Arch), func(t *testing.T) {
			dir := t.TempDir()
			model := randomTensors(d)
			in := writePTH(t, dir, "rwkv-tiny.pth", model)
			ckdir := filepath.Join(dir, "ckpt")
			if _, err := checkpoint.Save(ckdir, 3, model, nil, nil, checkpoint.State{}); err != nil {
				t.Fatal(err)
			}
			summary := fmt.Sprintf("(%s L2-D64-V64, %d tensors)", d.Arch.Title(), len(model))
			type exportCase struct {
				name   string
				from   string
				args   []string
				out    string
				stdout string
				dt     checkpoint.DType // of the large matrices read back
				tol    float64
			}
			tests := []exportCase{
				{"rwkv default fp32", in, []string{"--format", "rwkv"}, "m.safetensors", "as rwkv f32", checkpoint.F32, 0},
				{"rwkv bf16", in, []string{"--format", "rwkv", "--dtype", "bf16"}, "m16.safetensors", "as rwkv bf16", checkpoint.BF16, bf16Tol},
				{"pth default bf16", in, []string{"--format", "pth"}, "m.pth", "as pth bf16", checkpoint.BF16, bf16Tol},
				{"pth fp16", in, []string{"--format", "pth", "--dtype", "fp16"}, "m16.pth", "as pth f16", checkpoint.F16, f16Tol},
				{"hf default fp32", in, []string{"--format", "hf"}, "hf", "as hf f32", checkpoint.F32, 0},
				{"hf bf16", in, []string{"--format", "hf", "--dtype", "bf16"}, "hf16", "as hf bf16", checkpoint.BF16, bf16Tol},
				{"web-rwkv", in, []string{"--format", "web-rwkv"}, "m.st", "as web-rwkv f16", checkpoint.F16, f16Tol},
				{"from hf dir", filepath.Join(dir, "hf"), []string{"--format", "pth", "--dtype", "fp32"}, "fromhf.pth", summary, checkpoint.F32, 0},
				{"from web-rwkv", filepath.Join(dir, "m.st"), []string{"--format", "rwkv", "--dtype", "fp16"}, "fromst.safetensors", summary, checkpoint.F16, f16Tol},
				{"from checkpoint dir", ckdir, []string{"--format", "rwkv"}, "fromck.safetensors", "exported " + filepath.Join(ckdir, checkpoint.FileName(3)) + " ", checkpoint.F32, 0},
			}
			if d.Arch == arch.X060 {
				tests = append(tests,
					exportCase{"gguf default fp16", in, []string{"--format", "gguf"}, "m.gguf", "as gguf f16", checkpoint.F16, f16Tol},
					exportCase{"gguf fp32", in, []string{"--format", "gguf", "--dtype", "fp32"}, "m32.gguf", "as gguf f32", checkpoint.F32, 0},
					exportCase{"from gguf", filepath.Join(dir, "m32.gguf"), []string{"--format", "rwkv"}, "fromgguf.safetensors", summary, checkpoint.F32, 0})
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					out := filepath.Join(dir, tt.out)
					code, stdout, stderr := exportCmd(append([]string{"--checkpoint", tt.from, "--out", out}, tt.args...)...)
					if code != exitOK || !strings.Contains(stdout, tt.stdout) {
						t.Fatalf("exit %d, want 0 and %q in stdout:\n%s%s", code, tt.stdout, stdout, stderr)
					}
					got, err := checkpoint.ReadWeights(out)
					if err != nil {
						t.Fatal(err)
					}
					for _, g := range got {
						// the Linear weights; GGUF keeps vectors and the LoRA matrices F32
						if strings.HasSuffix(g.Name, ".weight") && len(g.Shape) == 2 && g.Shape[0] >= d.Embd && g.DType != tt.dt {
							t.Errorf("%s: dtype %s, want %s", g.Name, g.DType, tt.dt)
						}
					}
					sameTensors(t, got, model, tt.tol)
				})
			}
			b, err := os.ReadFile(filepath.Join(dir, "hf", "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			var cfg map[string]any
			want := map[arch.Arch]string{arch.X052: "rwkv5", arch.X060: "rwkv6"}[d.Arch]
			if err := json.Unmarshal(b, &cfg); err != nil || cfg["model_type"] != want || cfg["head_size"] != 16.0 {
				t.Errorf("hf config.json: %v, want model_type %s, head_size 16:\n%s", err, want, b)
			}
		})
	}
}

// TestExportX05Refusals: RWKV-5.2 has no GGUF architecture in llama.cpp (a one-line usage
// error), and the HF export refuses a model the remote code cannot build; nothing is written.
func TestExportX05Refusals(t *testing.T) {
	dir := t.TempDir()
	x052 := writePTH(t, dir, "x052.pth", randomTensors(tinyX052))
	odd := tinyX060
	odd.FFN = 256
	x060 := writePTH(t, dir, "x060.pth", randomTensors(odd))
	testExportRefusals(t, dir, []exportRefusal{
		{"rwkv-5 to gguf", []string{"--checkpoint", x052, "--format", "gguf"}, exitUsage,
			"--format gguf: " + x052 + " holds an RWKV-5.2 (x052) model, and llama.cpp has no RWKV-5 architecture (it runs RWKV-6 and RWKV-7); use --format pth for ChatRWKV and rwkv.cpp, or web-rwkv\n"},
		{"hf ffn", []string{"--checkpoint", x060, "--format", "hf"}, exitError,
			"the rwkv6 remote code ignores intermediate_size and builds a channel mix of int(3.5·64)//32·32 = 224, this model's is 256 (export --format pth or rwkv instead)"},
	})
}
