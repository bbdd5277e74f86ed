package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
	"github.com/rwkv-go/rwkv-go/train"
	"github.com/rwkv-go/rwkv-go/weights"
)

// TestTrainX05Job: `rwkv-train --config` trains an RWKV-5.2 and an RWKV-6 model from scratch,
// exports each as RWKV-LM safetensors in its layout, and the export (and the out_dir) loads back
// as the trained model, weight for weight the final checkpoint's.
func TestTrainX05Job(t *testing.T) {
	for _, tc := range []struct {
		a    arch.Arch
		args []string
		want model.Config
	}{
		{arch.X052, []string{"--model.arch=x052", "--model.head_size=16", "--optim.schedule=exp_v5"},
			model.Config{Arch: arch.X052, Layers: 1, Embd: 32, Vocab: 256, CtxLen: 16, FFN: 96, HeadSize: 16}},
		{arch.X060, []string{"--model.arch=x060", "--model.head_size=16", "--model.d_mix_lora=8", "--optim.schedule=cosine_v7", "--optim.adam_eps=1e-18"},
			model.Config{Arch: arch.X060, Layers: 1, Embd: 32, Vocab: 256, CtxLen: 16, FFN: 96, HeadSize: 16, DimMix: 8, DimDecay: 64}},
	} {
		t.Run(string(tc.a), func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyJob(t, dir)
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), append([]string{"--config", cfg}, tc.args...), &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), `msg=start model="`+string(tc.a)+` L1-D32-V256 ctx16`) {
				t.Errorf("start line does not name the %s model:\n%s", tc.a, stderr.String())
			}
			ck, err := checkpoint.Latest(filepath.Join(dir, "ckpt"))
			if err != nil {
				t.Fatal(err)
			}
			fromCk, err := weights.Load(ck, 16, model.Float32)
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{filepath.Join(dir, "out", "model.safetensors"), filepath.Join(dir, "out")} {
				m, err := weights.Load(path, 16, model.Float32)
				if err != nil {
					t.Fatalf("exported model: %v", err)
				}
				if m.Config != tc.want {
					t.Fatalf("%s: exported model %+v, want %+v", path, m.Config, tc.want)
				}
				for i, p := range m.Params {
					a, b := p.F32(), fromCk.Params[i].F32()
					for j := range a {
						if a[j] != b[j] {
							t.Fatalf("%s[%d]: export %v, final checkpoint %v", p.Name, j, a[j], b[j])
						}
					}
				}
			}
		})
	}
}

// TestX05Recipes: the x052/x060 recipes are RWKV-LM's v5 recipe (its cosine or exp_v5 schedule,
// layerwise lr), the 1.6B ones describe the released RWKV-6 World 1.6B (L24-D2048, 1.6e9
// parameters, World vocabulary), the state-tuning recipe is RWKV-LM's (lr 1 -> 0.01, warmup 10),
// and the frozen-base recipes keep a fraction of full fine-tuning's parameter memory (4 bytes a
// frozen weight instead of 16).
func TestX05Recipes(t *testing.T) {
	t.Parallel()
	mem := map[string]float64{} // the parameter part of the estimates
	for _, tc := range []struct {
		name     string
		arch     arch.Arch
		schedule string
		peft     string
	}{
		{"x052-pretrain-tiny.yaml", arch.X052, optim.CosineV7, train.PEFTNone},
		{"x060-pretrain-tiny.yaml", arch.X060, optim.CosineV7, train.PEFTNone},
		{"x060-finetune-1.6b.yaml", arch.X060, optim.CosineV7, train.PEFTNone},
		{"x060-lora-1.6b.yaml", arch.X060, optim.CosineV7, train.PEFTLoRA},
		{"x060-state-1.6b.yaml", arch.X060, optim.ExpV5, train.PEFTState},
	} {
		c, err := loadConfig(filepath.Join("../../configs", tc.name), nil, nil)
		if err != nil && !errors.Is(err, train.ErrMemory) {
			t.Fatal(err)
		}
		if c.Model.Arch != tc.arch || c.Optim.Kind != tc.schedule || !c.Optim.LayerwiseLR || c.PEFT.Mode != tc.peft {
			t.Errorf("%s: arch %q, schedule %q, layerwise_lr %v, peft %q: want %s, %s, true, %s", tc.name,
				c.Model.Arch, c.Optim.Kind, c.Optim.LayerwiseLR, c.PEFT.Mode, tc.arch, tc.schedule, tc.peft)
		}
		m := c.EstimateMemory()
		mem[tc.name] = m.Params
		t.Logf("%s: %d parameters; estimate: params %.2f GiB, activations %.2f GiB, logits %.2f GiB", tc.name,
			c.Model.Dims().NumParams(), m.Params/(1<<30), m.Activations/(1<<30), m.Logits/(1<<30))
		if !strings.Contains(tc.name, "1.6b") {
			continue
		}
		d := c.Model.Dims()
		if n := d.NumParams(); n < 1.59e9 || n > 1.61e9 || c.Model.Vocab != 65536 || c.Data.Tokenizer != "world" ||
			d.Layers != 24 || d.Embd != 2048 || d.FFN != 7168 || d.HeadSize != 64 || d.LoRA.Mix != 32 || d.LoRA.W != 64 {
			t.Errorf("%s: %d parameters, dims %+v, vocab %d, tokenizer %q: not the released RWKV-6 World 1.6B", tc.name, n, d, c.Model.Vocab, c.Data.Tokenizer)
		}
		if tc.peft == train.PEFTState && (c.Optim.LRInit != 1 || c.Optim.LRFinal != 0.01 || c.Optim.WarmupSteps != 10) {
			t.Errorf("%s: lr %v -> %v, warmup %d: RWKV-LM's state tuning is 1 -> 0.01, warmup 10", tc.name, c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps)
		}
		if tc.peft == train.PEFTNone && c.Optim.LRInit != 1e-5 {
			t.Errorf("%s: lr_init %v, want RWKV-LM's fine-tuning 1e-5", tc.name, c.Optim.LRInit)
		}
	}
	full := mem["x060-finetune-1.6b.yaml"]
	for _, name := range []string{"x060-lora-1.6b.yaml", "x060-state-1.6b.yaml"} {
		if !(mem[name] < 0.3*full) {
			t.Errorf("%s: parameter memory %.1f GiB, full fine-tuning %.1f GiB: a frozen base should need about a quarter", name, mem[name]/(1<<30), full/(1<<30))
		}
	}
}
