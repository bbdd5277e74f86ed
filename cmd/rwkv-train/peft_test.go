package main

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// f32Round rounds float64 values through float32, so that files written in fp32 hold them exactly.
func f32Round(v []float64) []float64 {
	for i := range v {
		v[i] = float64(float32(v[i]))
	}
	return v
}

func peftLogits(t *testing.T, m *model.Model, ids []int) []float64 {
	t.Helper()
	gr, err := m.NewGraph(model.GraphOptions{B: 2, T: len(ids) / 2})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	if err := gr.SetTokens(ids, nil); err != nil {
		t.Fatal(err)
	}
	if err := gr.Run(); err != nil {
		t.Fatal(err)
	}
	return append([]float64(nil), gr.LogitsF64()...)
}

// TestExportMergesAdapter: `export --adapter` of a LoRA adapter (with a train_part) and of a
// PiSSA adapter with its init file writes, in the rwkv and pth formats, a model whose logits
// equal the adapted model's to 1e-5.
func TestExportMergesAdapter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := model.Config{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 8}
	m, err := model.New(cfg, model.Float64)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range m.Params {
		v := make([]float64, p.Len())
		for i := range v {
			v[i] = 0.3 * rng.NormFloat64()
		}
		if strings.Contains(p.Name, "time_decay") || strings.Contains(p.Name, "ln") {
			for i := range v {
				v[i] = 1 + 0.1*v[i]
			}
		}
		p.SetFloat64s(f32Round(v))
	}
	base := writePTH(t, dir, "base.pth", weights.Tensors(m, checkpoint.F32))
	mods, err := m.LoRAModulesFor(cfg.DefaultLoRATargets())
	if err != nil {
		t.Fatal(err)
	}
	const r, alpha = 4, 12.0
	ids := make([]int, 8)
	for i := range ids {
		ids[i] = (i*13 + 5) % cfg.Vocab
	}
	tensorsOf := func(m *model.Model, keep func(string) bool) []checkpoint.Tensor {
		var ts []checkpoint.Tensor
		for _, p := range m.Params {
			if keep(p.Name) {
				ts = append(ts, checkpoint.FromFloat64(p.Name, p.Shape, p.F64(), checkpoint.F32))
			}
		}
		return ts
	}
	for _, tc := range []struct{ name string }{{"lora"}, {"pissa"}} {
		am, _ := model.New(cfg, model.Float64)
		for _, p := range m.Params {
			am.Param(p.Name).SetFloat64s(p.F64())
		}
		scale := alpha / r
		if tc.name == "pissa" {
			scale = 1
		}
		if err := am.AddLoRA(mods, r, scale, 0, 3); err != nil {
			t.Fatal(err)
		}
		var extra []string
		args := []string{"--lora-alpha", "12"}
		if tc.name == "pissa" {
			var init []checkpoint.Tensor
			for _, mod := range mods {
				w := am.Param(mod + ".weight")
				res, err := model.PiSSA(w.F64(), w.Shape[0], w.Shape[1], r, 4, rand.New(rand.NewPCG(5, 5)))
				if err != nil {
					t.Fatal(err)
				}
				w.SetFloat64s(res.WRes)
				am.Param(mod + model.LoRASuffixA).SetFloat64s(f32Round(res.A))
				am.Param(mod + model.LoRASuffixB).SetFloat64s(f32Round(res.B))
				init = append(init, checkpoint.FromFloat64(mod+checkpoint.InitSuffixA, []int{r, w.Shape[1]}, res.A, checkpoint.F32),
					checkpoint.FromFloat64(mod+checkpoint.InitSuffixB, []int{w.Shape[0], r}, res.B, checkpoint.F32))
			}
			initPath := filepath.Join(dir, "init_pissa.pth")
			if err := checkpoint.WriteAdapterPTH(initPath, init); err != nil {
				t.Fatal(err)
			}
			args = []string{"--adapter-init", initPath}
		}
		for _, p := range am.Params { // training moved the pairs and a train_part
			if model.IsAdapter(p.Name) || p.Name == "blocks.1.ln2.weight" {
				v := p.Float64s()
				for i := range v {
					v[i] += 0.05 * rng.NormFloat64()
				}
				p.SetFloat64s(f32Round(v))
			}
		}
		adapter := filepath.Join(dir, tc.name+"-adapter.pth")
		if err := checkpoint.WriteAdapterPTH(adapter, tensorsOf(am, func(n string) bool { return model.IsAdapter(n) || n == "blocks.1.ln2.weight" })); err != nil {
			t.Fatal(err)
		}
		extra = append(extra, args...)
		want := peftLogits(t, am, ids)
		for _, format := range []string{"rwkv", "pth"} {
			out := filepath.Join(dir, tc.name+"-merged."+format)
			a := append([]string{"--checkpoint", base, "--adapter", adapter, "--format", format, "--dtype", "fp32", "--out", out}, extra...)
			if code, _, stderr := exportCmd(a...); code != 0 {
				t.Fatalf("%s %s: exit %d: %s", tc.name, format, code, stderr)
			}
			merged, err := weights.Load(out, cfg.CtxLen, model.Float64)
			if err != nil {
				t.Fatal(err)
			}
			got := peftLogits(t, merged, ids)
			worst := 0.0
			for i := range want {
				worst = math.Max(worst, math.Abs(got[i]-want[i]))
			}
			if worst > 1e-5 {
				t.Errorf("%s %s: merged logits differ from the adapted model's by %.3g", tc.name, format, worst)
			}
		}
	}
	if code, _, stderr := exportCmd("--checkpoint", base, "--adapter", filepath.Join(dir, "lora-adapter.pth"), "--out", filepath.Join(dir, "x")); code != 2 || !strings.Contains(stderr, "--lora-alpha") {
		t.Errorf("LoRA adapter without --lora-alpha: exit %d, %s", code, stderr)
	}
}

// TestTrainPEFTJob: `rwkv-train --peft.mode=lora` from a base model file, on every
// architecture, writes adapter.pth and a model.safetensors whose logits equal the base with
// that adapter merged (rwkv-eval's --adapter path) to 1e-5; the base file is untouched.
func TestTrainPEFTJob(t *testing.T) {
	for _, archArgs := range [][]string{nil, {"--model.arch=x070", "--model.head_size=16", "--optim.schedule=cosine_v7"},
		{"--model.arch=x060", "--model.head_size=16", "--model.d_mix_lora=8", "--model.d_decay_lora=16", "--optim.schedule=cosine_v7"},
		{"--model.arch=x052", "--model.head_size=16", "--optim.schedule=exp_v5"}} {
		name := "x040"
		if archArgs != nil {
			name = strings.TrimPrefix(archArgs[0], "--model.arch=")
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyJob(t, dir)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"--config", cfg}, archArgs...), &stdout, &stderr); code != exitOK {
				t.Fatalf("base run: exit %d:\n%s", code, stderr.String())
			}
			base := filepath.Join(dir, "base.safetensors")
			if err := os.Rename(filepath.Join(dir, "out", "model.safetensors"), base); err != nil {
				t.Fatal(err)
			}
			before, err := os.ReadFile(base)
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(dir, "lora")
			args := append([]string{"--config", cfg, "--model.load=" + base, "--peft.mode=lora", "--peft.lora_r=4",
				"--peft.lora_alpha=8", "--optim.lr_init=1e-2", "--optim.lr_final=1e-2", "--out_dir=" + out,
				"--checkpoint.dir=" + filepath.Join(out, "ck")}, archArgs...)
			stdout.Reset()
			stderr.Reset()
			if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
				t.Fatalf("lora run: exit %d:\n%s", code, stderr.String())
			}
			if !strings.Contains(stdout.String(), "adapter file "+filepath.Join(out, "adapter.pth")) {
				t.Errorf("stdout does not name the adapter file:\n%s", stdout.String())
			}
			if after, _ := os.ReadFile(base); !bytes.Equal(before, after) {
				t.Error("the base file changed")
			}
			adapted, err := weights.Load(base, 16, model.Float64)
			if err != nil {
				t.Fatal(err)
			}
			if err := weights.ApplyAdapter(adapted, filepath.Join(out, "adapter.pth"), weights.AdapterOptions{LoRAAlpha: 8}); err != nil {
				t.Fatal(err)
			}
			merged, err := weights.Load(filepath.Join(out, "model.safetensors"), 16, model.Float64)
			if err != nil {
				t.Fatal(err)
			}
			plain, _ := weights.Load(base, 16, model.Float64)
			ids := []int{1, 50, 99, 3, 7, 200, 31, 12}
			want, got, orig := peftLogits(t, adapted, ids), peftLogits(t, merged, ids), peftLogits(t, plain, ids)
			moved := false
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-5 {
					t.Fatalf("logit %d: exported %v, base + adapter %v", i, got[i], want[i])
				}
				moved = moved || math.Abs(want[i]-orig[i]) > 1e-6
			}
			if !moved {
				t.Error("the adapter changed no logit")
			}
		})
	}
}
