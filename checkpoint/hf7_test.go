package checkpoint

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFLANames(t *testing.T) {
	// FLA's utils/convert_from_rwkv7.py translate_into_fla.
	tests := []struct{ rwkv, fla string }{
		{"emb.weight", "model.embeddings.weight"},
		{"ln_out.weight", "model.norm.weight"},
		{"ln_out.bias", "model.norm.bias"},
		{"head.weight", "lm_head.weight"},
		{"blocks.0.ln0.weight", "model.layers.0.pre_norm.weight"},
		{"blocks.3.ln1.bias", "model.layers.3.attn_norm.bias"},
		{"blocks.3.ln2.weight", "model.layers.3.ffn_norm.weight"},
		{"blocks.1.att.x_g", "model.layers.1.attn.x_g"},
		{"blocks.1.att.w0", "model.layers.1.attn.w_lora.lora.2.bias"},
		{"blocks.1.att.w1", "model.layers.1.attn.w_lora.lora.0.weight"},
		{"blocks.1.att.w2", "model.layers.1.attn.w_lora.lora.2.weight"},
		{"blocks.1.att.a0", "model.layers.1.attn.a_lora.lora.2.bias"},
		{"blocks.1.att.v1", "model.layers.1.attn.v_lora.lora.0.weight"},
		{"blocks.1.att.g2", "model.layers.1.attn.g_lora.lora.2.weight"},
		{"blocks.10.att.k_k", "model.layers.10.attn.k_k"},
		{"blocks.1.att.r_k", "model.layers.1.attn.r_k"},
		{"blocks.1.att.receptance.weight", "model.layers.1.attn.r_proj.weight"},
		{"blocks.1.att.key.weight", "model.layers.1.attn.k_proj.weight"},
		{"blocks.1.att.value.weight", "model.layers.1.attn.v_proj.weight"},
		{"blocks.1.att.output.weight", "model.layers.1.attn.o_proj.weight"},
		{"blocks.1.att.ln_x.bias", "model.layers.1.attn.g_norm.bias"},
		{"blocks.1.ffn.x_k", "model.layers.1.ffn.x_k"},
		{"blocks.1.ffn.key.weight", "model.layers.1.ffn.key.weight"},
		{"blocks.1.ffn.value.weight", "model.layers.1.ffn.value.weight"},
	}
	for _, tt := range tests {
		if got, ok := FLAName(tt.rwkv); !ok || got != tt.fla {
			t.Errorf("FLAName(%q) = %q, %v, want %q", tt.rwkv, got, ok, tt.fla)
		}
		if got, ok := RWKVNameFromFLA(tt.fla); !ok || got != tt.rwkv {
			t.Errorf("RWKVNameFromFLA(%q) = %q, %v, want %q", tt.fla, got, ok, tt.rwkv)
		}
	}
	// Every name of the layout maps and maps back, except layer 0's v's.
	full := tinyX070
	full.V0Layer0 = true
	for _, l := range full.Layout() {
		fla, ok := FLAName(l.Name)
		if isVLoRA(strings.TrimPrefix(l.Name, "blocks.0.")) {
			if ok {
				t.Errorf("FLAName(%q) = %q, want none: FLA's layer 0 has no v_lora", l.Name, fla)
			}
			continue
		}
		if back, ok2 := RWKVNameFromFLA(fla); !ok || !ok2 || back != l.Name {
			t.Errorf("%s -> %q (%v) -> %q (%v)", l.Name, fla, ok, back, ok2)
		}
	}
	for _, bad := range []string{"blocks.01.ln1.weight", "blocks.1.att.g0", "blocks.1.att.time_decay", "x", "blocks.1"} {
		if got, ok := FLAName(bad); ok {
			t.Errorf("FLAName(%q) = %q, want not ok", bad, got)
		}
	}
	for _, bad := range []string{"model.layers.0.attn.v_lora.lora.0.weight", "model.layers.1.attn.g_lora.lora.2.bias",
		"model.layers.01.attn.x_r", "model.layers.1.attn.w_lora.lora.1.weight", "rwkv.head.weight", "model.layers.1.attn.x_x"} {
		if got, ok := RWKVNameFromFLA(bad); ok {
			t.Errorf("RWKVNameFromFLA(%q) = %q, want not ok", bad, got)
		}
	}
}

// ExportHF7 writes the FLA shapes (transposed LoRAs, [C] biases and k_k/k_a/
// ffn.x_k, [1,1,C] mixes) and config.json; ReadHF7Dir gives the model back.
func TestHF7RoundTrip(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	src := tensorsByName(model)
	var want []Tensor // the model without layer 0's v0/v1/v2
	for _, m := range model {
		if !isVLoRA(strings.TrimPrefix(m.Name, "blocks.0.")) {
			want = append(want, m)
		}
	}
	for _, dt := range []DType{F32, F16} {
		t.Run(string(dt), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hf")
			if err := ExportHF7(dir, model, HF7Config{}, dt); err != nil {
				t.Fatal(err)
			}
			sf, err := OpenSafetensors(filepath.Join(dir, "model.safetensors"))
			if err != nil {
				t.Fatal(err)
			}
			C := tinyX070.Embd
			shapes := map[string][]int{
				"model.layers.1.attn.x_r":                  {1, 1, C},
				"model.layers.1.attn.w_lora.lora.0.weight": {tinyX070.LoRA.W, C},
				"model.layers.1.attn.w_lora.lora.2.weight": {C, tinyX070.LoRA.W},
				"model.layers.1.attn.w_lora.lora.2.bias":   {C},
				"model.layers.1.attn.v_lora.lora.0.weight": {tinyX070.LoRA.V, C},
				"model.layers.0.attn.a_lora.lora.2.weight": {C, tinyX070.LoRA.A},
				"model.layers.0.attn.g_lora.lora.0.weight": {tinyX070.LoRA.G, C},
				"model.layers.0.attn.k_k":                  {C},
				"model.layers.0.attn.k_a":                  {C},
				"model.layers.0.attn.r_k":                  {2, 64},
				"model.layers.0.ffn.x_k":                   {C},
				"model.layers.0.ffn.key.weight":            {tinyX070.FFN, C},
				"model.embeddings.weight":                  {tinyX070.Vocab, C},
			}
			for name, shape := range shapes {
				got, ok := sf.Get(name)
				if !ok || !equalShape(got.Shape, shape) || got.DType != dt {
					t.Errorf("%s: %v %s (present %v), want %v %s", name, got.Shape, got.DType, ok, shape, dt)
				}
			}
			if _, ok := sf.Get("model.layers.0.attn.v_lora.lora.2.bias"); ok {
				t.Error("layer 0 has a v_lora")
			}
			if len(sf.Tensors) != len(want) {
				t.Errorf("%d tensors, want %d", len(sf.Tensors), len(want))
			}
			// A transposed LoRA: FLA's lora.0.weight[r][c] is RWKV-LM's w1[c][r].
			lw, _ := sf.Get("model.layers.1.attn.w_lora.lora.0.weight")
			a, _ := lw.Float32s()
			b, _ := src["blocks.1.att.w1"].Convert(dt)
			bv, _ := b.Float32s()
			if r, c := 3, 5; a[r*C+c] != bv[c*tinyX070.LoRA.W+r] {
				t.Errorf("lora.0.weight[%d][%d] = %g, want w1[%d][%d] = %g", r, c, a[r*C+c], c, r, bv[c*tinyX070.LoRA.W+r])
			}

			var conf map[string]any
			b2, err := os.ReadFile(filepath.Join(dir, "config.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b2, &conf); err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]any{
				"model_type": "rwkv7", "hidden_size": 128.0, "num_hidden_layers": 2.0, "vocab_size": 64.0,
				"head_dim": 64.0, "num_heads": 2.0, "intermediate_size": 512.0, "hidden_ratio": 4.0,
				"decay_low_rank_dim": 16.0, "a_low_rank_dim": 24.0, "v_low_rank_dim": 8.0, "gate_low_rank_dim": 32.0,
				"norm_eps": 1e-5, "hidden_act": "sqrelu", "tie_word_embeddings": false, "torch_dtype": map[DType]string{F32: "float32", F16: "float16"}[dt],
				"max_position_embeddings": 4096.0,
			} {
				if conf[k] != v {
					t.Errorf("config.json %s = %v, want %v", k, conf[k], v)
				}
			}
			if arch, _ := conf["architectures"].([]any); len(arch) != 1 || arch[0] != "RWKV7ForCausalLM" {
				t.Errorf("architectures %v", conf["architectures"])
			}
			if vd, _ := conf["value_dim"].([]any); len(vd) != 2 || vd[0] != 128.0 {
				t.Errorf("value_dim %v, want [128 128]", conf["value_dim"])
			}

			got, err := ReadHF7Dir(dir)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, got, want, map[DType]float64{F32: 0, F16: f16Tol}[dt])
		})
	}
}

func TestReadHF7DirErrors(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	dir := t.TempDir()
	if err := ExportHF7(dir, model, HF7Config{MaxPositionEmbeddings: 512}, F32); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "config.json")
	b, _ := os.ReadFile(conf)
	if !strings.Contains(string(b), `"max_position_embeddings": 512`) {
		t.Errorf("config.json lacks max_position_embeddings 512:\n%s", b)
	}
	write := func(s string) {
		if err := os.WriteFile(conf, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(strings.Replace(string(b), `"a_low_rank_dim": 24`, `"a_low_rank_dim": 64`, 1))
	if _, err := ReadHF7Dir(dir); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "a_low_rank_dim is 64 but the tensors give 24") {
		t.Errorf("rank mismatch: %v", err)
	}
	write(strings.Replace(string(b), `"model_type": "rwkv7"`, `"model_type": "rwkv"`, 1))
	if _, err := ReadHF7Dir(dir); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), `model_type "rwkv"`) {
		t.Errorf("model_type: %v", err)
	}
	os.Remove(conf)
	if _, err := ReadHF7Dir(dir); err != nil {
		t.Errorf("without config.json: %v", err)
	}
	// RWKV-LM names in model.safetensors are not the FLA layout.
	if err := ExportHF7(dir, model, HF7Config{}, F32); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if err := ExportX070RWKV(f, model, F32); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := ReadHF7Dir(dir); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "is not an FLA rwkv7 name") {
		t.Errorf("RWKV-LM names: %v", err)
	}
	if err := ExportHF7(dir, tinyModel(tinyDims), HF7Config{}, F32); !errors.Is(err, ErrTensors) {
		t.Errorf("RWKV-4 model: %v, want ErrTensors", err)
	}
}

// TestReadWeightsFLA: ReadWeights (what every command reads through) reads an fla-hub rwkv7
// directory and its model.safetensors alone as RWKV-LM tensors (ResolveWeights keeps the
// directory), checks its config.json as FLA's RWKV7Config, and refuses an RWKV-4 config.json
// beside RWKV-7 tensors and an rwkv7 one beside RWKV-4 tensors.
func TestReadWeightsFLA(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	dir := t.TempDir()
	if err := ExportHF7(dir, model, HF7Config{}, F32); err != nil {
		t.Fatal(err)
	}
	if p, err := ResolveWeights(dir); err != nil || p != dir {
		t.Errorf("ResolveWeights(%s) = %q, %v", dir, p, err)
	}
	for _, path := range []string{dir, filepath.Join(dir, "model.safetensors")} {
		got, err := ReadWeights(path)
		if err != nil {
			t.Fatalf("ReadWeights(%s): %v", path, err)
		}
		sameTensors(t, got, withoutV0(model), 0)
	}
	conf := filepath.Join(dir, "config.json")
	b, _ := os.ReadFile(conf)
	if err := os.WriteFile(conf, []byte(strings.Replace(string(b), `"hidden_size": 128`, `"hidden_size": 64`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWeights(dir); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "hidden_size is 64 but the tensors give 128") {
		t.Errorf("hidden_size mismatch: %v", err)
	}
	if err := os.WriteFile(conf, []byte(strings.Replace(string(b), `"model_type": "rwkv7"`, `"model_type": "rwkv"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWeights(dir); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), `model_type "rwkv", want "rwkv7"`) {
		t.Errorf("RWKV-4 config.json beside RWKV-7 tensors: %v", err)
	}
	// An RWKV-4 directory whose config.json says rwkv7.
	dir4 := t.TempDir()
	if err := ExportHF(dir4, tinyModel(tinyDims), HFConfig{ContextLength: 16}, F32); err != nil {
		t.Fatal(err)
	}
	editFile(t, filepath.Join(dir4, "config.json"), `"model_type": "rwkv"`, `"model_type": "rwkv7"`)
	if _, err := ReadWeights(dir4); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), `model_type "rwkv7", but the tensors hold an RWKV-4 model`) {
		t.Errorf("rwkv7 config.json beside RWKV-4 tensors: %v", err)
	}
}

// withoutV0 is ts without layer 0's v0/v1/v2, which FLA does not have.
func withoutV0(ts []Tensor) []Tensor {
	var out []Tensor
	for _, t := range ts {
		if !isVLoRA(strings.TrimPrefix(t.Name, "blocks.0.")) {
			out = append(out, t)
		}
	}
	return out
}
