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
		// Inputs other than a .pth: the fp32 HF directory and GGUF file written above (no
		// layer-0 v's: the RWKV-LM exports put zeros there), a training checkpoint directory.
		{"from hf dir", filepath.Join(dir, "hf"), []string{"--format", "rwkv"}, "fromhf.safetensors", "(RWKV-7 (x070) L2-D16-V64, 69 tensors)", readWeights, withV0Zeros(model), checkpoint.F32, 0},
		{"from gguf", filepath.Join(dir, "m32.gguf"), []string{"--format", "pth", "--dtype", "fp32"}, "fromgguf.pth", "(RWKV-7 (x070) L2-D16-V64, 69 tensors)", readWeights, withV0Zeros(model), checkpoint.F32, 0},
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

// writeVocab writes a World-format vocabulary: ids 1-256 the single bytes, then extra from
// id 257 on, every token a bytes literal of \x escapes.
func writeVocab(t *testing.T, path string, extra ...string) {
	t.Helper()
	var sb strings.Builder
	tok := func(id int, b []byte) {
		fmt.Fprintf(&sb, "%d b'", id)
		for _, c := range b {
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
		fmt.Fprintf(&sb, "' %d\n", len(b))
	}
	for c := range 256 {
		tok(c+1, []byte{byte(c)})
	}
	for i, s := range extra {
		tok(257+i, []byte(s))
	}
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestExportGGUFVocab: --vocab puts a vocabulary into the GGUF file as llama.cpp's rwkv
// tokenizer (tokens escaped like Python bytes, padded to the model's rows; the World chat
// template and end-of-turn token when id 261 is "\n\n"); none and the default for a model
// that is not 65536 wide write none; the built-in World vocabulary does not fit a smaller model.
func TestExportGGUFVocab(t *testing.T) {
	dir := t.TempDir()
	d := tinyX070
	d.Vocab = 320
	in := writePTH(t, dir, "v320.pth", randomTensors(d))
	vocab := filepath.Join(dir, "vocab.txt")
	writeVocab(t, vocab, "ab", "cd", "ef", "gh", "\n\n", "it's")
	tests := []struct {
		name   string
		vocab  []string
		code   int
		tokens bool
		chat   bool
		stderr string
	}{
		{"file", []string{"--vocab", "world:" + vocab}, exitOK, true, true, ""},
		{"none", []string{"--vocab", "none"}, exitOK, false, false, ""},
		{"default for V=320", nil, exitOK, false, false, "the GGUF file holds no vocabulary"},
		{"built-in world too big", []string{"--vocab", "world"}, exitUsage, false, false, "--vocab world: the World vocabulary has 65536 tokens but the model has 320 embedding rows"},
		{"missing file", []string{"--vocab", "world:" + filepath.Join(dir, "nope.txt")}, exitError, false, false, "nope.txt"},
		{"bad spec", []string{"--vocab", "gpt2"}, exitUsage, false, false, `--vocab "gpt2": want world, world:FILE or none`},
		{"not gguf", []string{"--vocab", "world", "--format", "pth"}, exitUsage, false, false, "--vocab world: only gguf files hold a vocabulary"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("m%d.gguf", i))
			args := append([]string{"--checkpoint", in, "--out", out, "--format", "gguf"}, tt.vocab...)
			code, stdout, stderr := exportCmd(args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Fatalf("exit %d, want %d and %q in stderr:\n%s%s", code, tt.code, tt.stderr, stdout, stderr)
			}
			if code != exitOK {
				if _, err := os.Stat(out); err == nil {
					t.Errorf("%s written by a failed export", out)
				}
				return
			}
			f, err := checkpoint.OpenGGUF(out)
			if err != nil {
				t.Fatal(err)
			}
			v, ok := f.Get("tokenizer.ggml.tokens")
			if ok != tt.tokens {
				t.Fatalf("tokenizer.ggml.tokens present %v, want %v", ok, tt.tokens)
			}
			if _, ok := f.Get("tokenizer.chat_template"); ok != tt.chat {
				t.Errorf("tokenizer.chat_template present %v, want %v", ok, tt.chat)
			}
			if !ok {
				return
			}
			toks, _ := v.([]string)
			if len(toks) != 320 {
				t.Fatalf("%d tokens, want one per embedding row (320)", len(toks))
			}
			if m, _ := f.Get("tokenizer.ggml.model"); m != "rwkv" {
				t.Errorf("tokenizer.ggml.model %v, want rwkv", m)
			}
			for id, want := range map[int]string{0: "<s>", 1: `\x00`, 66: "A", 257: "ab", 261: `\n\n`, 262: `it's`, 263: "[PAD263]", 319: "[PAD319]"} {
				if toks[id] != want {
					t.Errorf("token %d = %q, want %q", id, toks[id], want)
				}
			}
			if eot, _ := f.Get("tokenizer.ggml.eot_token_id"); eot != uint32(261) {
				t.Errorf("eot_token_id %v, want 261", eot)
			}
		})
	}
}

// TestGGUFVocabDefault: a 65536-token model gets the built-in World vocabulary (its 65529
// tokens, id 261 "\n\n", so the chat template), other sizes none; a vocabulary larger than the
// model is refused. (A 65536-wide model is too big for a test file: this checks the choice.)
func TestGGUFVocabDefault(t *testing.T) {
	toks, chat, err := ggufVocab("", 65536)
	if err != nil || !chat || len(toks) < 65530 || string(toks[261]) != "\n\n" || toks[0] != nil || len(toks[1]) != 1 {
		t.Fatalf("ggufVocab(\"\", 65536) = %d tokens, chat %v, %v", len(toks), chat, err)
	}
	if toks, _, err := ggufVocab("", 65535); toks != nil || err != nil {
		t.Errorf("ggufVocab(\"\", 65535) = %d tokens, %v; want none", len(toks), err)
	}
	vocab := filepath.Join(t.TempDir(), "v.txt")
	writeVocab(t, vocab, "ab")
	if _, _, err := ggufVocab("world:"+vocab, 200); err == nil || !strings.Contains(err.Error(), "largest id is 257 but the model has 200 embedding rows") {
		t.Errorf("vocabulary larger than the model: %v", err)
	}
	if _, chat, err := ggufVocab("world:"+vocab, 300); err != nil || chat {
		t.Errorf("a vocabulary without \"\\n\\n\" at 261: chat %v, %v; want false", chat, err)
	}
}

// TestExportRefusals: the format and dtype combinations an architecture or format cannot
// hold exit 2 naming why and write nothing; a value an fp16 file cannot hold exits 1 naming
// the tensor.
func TestExportRefusals(t *testing.T) {
	dir := t.TempDir()
	x070 := writePTH(t, dir, "x070.pth", randomTensors(tinyX070))
	x040 := writePTH(t, dir, "x040.pth", randomTensors(arch.Dims{Arch: arch.X040, Layers: 1, Embd: 8, Vocab: 16, FFN: 32}))
	big := randomTensors(tinyX070)
	key := 0 // blocks.1.att.key.weight: a matrix, which every fp16 export writes in fp16
	for i, t := range big {
		if t.Name == "blocks.1.att.key.weight" {
			key = i
		}
	}
	v, _ := big[key].Float32s()
	v[3] = 1e6
	big[key] = checkpoint.FromFloat32(big[key].Name, big[key].Shape, v, checkpoint.F32)
	const fp16Hint = "is not finite: non-finite value: fp16 holds values up to 65504; export with --dtype bf16 or fp32"
	huge := writePTH(t, dir, "huge.pth", big)
	testExportRefusals(t, dir, []exportRefusal{
		{"rwkv-4 to gguf", []string{"--checkpoint", x040, "--format", "gguf"}, exitUsage, "--format gguf: " + x040 + " holds an RWKV-4 (x040) model, and llama.cpp has no RWKV-4 architecture"},
		{"rwkv-7 to web-rwkv", []string{"--checkpoint", x070, "--format", "web-rwkv"}, exitUsage, "--format web-rwkv: " + x070 + " holds an RWKV-7 (x070) model; this export writes web-rwkv's RWKV-4, RWKV-5.2 and RWKV-6 layouts"},
		{"bad dtype", []string{"--checkpoint", x070, "--format", "gguf", "--dtype", "q8_0"}, exitUsage, `--dtype "q8_0": want fp32, fp16 or bf16`},
		{"web-rwkv bf16", []string{"--checkpoint", x040, "--format", "web-rwkv", "--dtype", "bf16"}, exitUsage, "--dtype bf16: web-rwkv is always fp16"},
		{"fp16 overflow rwkv", []string{"--checkpoint", huge, "--format", "rwkv", "--dtype", "fp16"}, exitError, `tensor "blocks.1.att.key.weight": element 3 ` + fp16Hint},
		{"fp16 overflow hf", []string{"--checkpoint", huge, "--format", "hf", "--dtype", "fp16"}, exitError, `tensor "model.layers.1.attn.k_proj.weight": element 3 ` + fp16Hint},
		{"fp16 overflow gguf", []string{"--checkpoint", huge, "--format", "gguf"}, exitError, `tensor "blk.1.time_mix_key.weight": element 3 ` + fp16Hint},
	})
	// RWKV-4 keeps its web-rwkv export.
	if code, stdout, stderr := exportCmd("--checkpoint", x040, "--format", "web-rwkv", "--out", filepath.Join(dir, "w.st")); code != exitOK {
		t.Errorf("rwkv-4 web-rwkv: exit %d\n%s%s", code, stdout, stderr)
	}
}

// exportRefusal is an export that must fail: its flags (besides --out), the exit code and what
// stderr must contain.
type exportRefusal struct {
	name string
	args []string
	code int
	want string
}

// testExportRefusals runs each refused export with --out dir/outN and checks the exit code, the
// message and that nothing was written (the export tests of every architecture share it).
func testExportRefusals(t *testing.T, dir string, cases []exportRefusal) {
	for i, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(dir, fmt.Sprintf("out%d", i))
			code, stdout, stderr := exportCmd(append(tt.args, "--out", out)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d, want %d and %q in stderr:\n%s%s", code, tt.code, tt.want, stdout, stderr)
			}
			if _, err := os.Stat(out); err == nil {
				t.Errorf("%s written by a failed export", out)
			}
		})
	}
}
