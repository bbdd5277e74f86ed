package checkpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// The Hugging Face layout of RWKV-7 that flash-linear-attention (FLA) and the
// fla-hub/rwkv7-* models use (NEXT-ARCH §5.2; the map is FLA's
// utils/convert_from_rwkv7.py, the shapes those of fla/layers/rwkv7.py):
//
//	emb.weight                  model.embeddings.weight
//	ln_out.*                    model.norm.*
//	head.weight                 lm_head.weight
//	blocks.N.ln0/ln1/ln2.*      model.layers.N.pre_norm/attn_norm/ffn_norm.*
//	blocks.N.att.x_r ... x_g    model.layers.N.attn.x_r ... x_g        [1,1,C] kept
//	blocks.N.att.{w,a,v}0       model.layers.N.attn.{w,a,v}_lora.lora.2.bias   [C]
//	blocks.N.att.{w,a,v,g}1     model.layers.N.attn.{w,a,v,g}_lora.lora.0.weight  transposed, [D,C]
//	blocks.N.att.{w,a,v,g}2     model.layers.N.attn.{w,a,v,g}_lora.lora.2.weight  transposed, [C,D]
//	blocks.N.att.k_k, k_a       model.layers.N.attn.k_k, k_a           [C]
//	blocks.N.att.r_k            model.layers.N.attn.r_k                [H,N] kept
//	blocks.N.att.receptance/key/value/output.weight   model.layers.N.attn.r_proj/k_proj/v_proj/o_proj.weight
//	blocks.N.att.ln_x.*         model.layers.N.attn.g_norm.*
//	blocks.N.ffn.x_k            model.layers.N.ffn.x_k                 [C]
//	blocks.N.ffn.key/value.weight     model.layers.N.ffn.key/value.weight
//
// FLA's layer 0 has no v_lora: layer 0's unused v0/v1/v2 are dropped.

var (
	rwkvBlockName = regexp.MustCompile(`^blocks\.(\d+)\.(.+)$`)
	flaLayerName  = regexp.MustCompile(`^model\.layers\.(\d+)\.(.+)$`)
	flaLoRA       = regexp.MustCompile(`^attn\.([wavg])_lora\.lora\.(0\.weight|2\.weight|2\.bias)$`)
	rwkvLoRA      = regexp.MustCompile(`^att\.([wavg])([012])$`)
)

var flaTop = map[string]string{
	"emb.weight": "model.embeddings.weight", "ln_out.weight": "model.norm.weight",
	"ln_out.bias": "model.norm.bias", "head.weight": "lm_head.weight",
}

// flaBlock maps the rest of a block name (after "blocks.N.") one to one.
var flaBlock = map[string]string{
	"ln0.weight": "pre_norm.weight", "ln0.bias": "pre_norm.bias",
	"ln1.weight": "attn_norm.weight", "ln1.bias": "attn_norm.bias",
	"ln2.weight": "ffn_norm.weight", "ln2.bias": "ffn_norm.bias",
	"att.x_r": "attn.x_r", "att.x_w": "attn.x_w", "att.x_k": "attn.x_k",
	"att.x_v": "attn.x_v", "att.x_a": "attn.x_a", "att.x_g": "attn.x_g",
	"att.k_k": "attn.k_k", "att.k_a": "attn.k_a", "att.r_k": "attn.r_k",
	"att.receptance.weight": "attn.r_proj.weight", "att.key.weight": "attn.k_proj.weight",
	"att.value.weight": "attn.v_proj.weight", "att.output.weight": "attn.o_proj.weight",
	"att.ln_x.weight": "attn.g_norm.weight", "att.ln_x.bias": "attn.g_norm.bias",
	"ffn.x_k": "ffn.x_k", "ffn.key.weight": "ffn.key.weight", "ffn.value.weight": "ffn.value.weight",
}

var rwkvBlock = func() map[string]string {
	m := make(map[string]string, len(flaBlock))
	for k, v := range flaBlock {
		m[v] = k
	}
	return m
}()

// flaLoRAPart maps the digit of w1/w2/w0 to the FLA LoRA parameter.
var flaLoRAPart = map[string]string{"1": "0.weight", "2": "2.weight", "0": "2.bias"}

// FLAName maps an RWKV-LM x070 tensor name to its FLA (fla-hub) name. ok is
// false for a name outside the x070 layout, and for layer 0's v0/v1/v2,
// which FLA does not have.
func FLAName(name string) (string, bool) {
	if n, ok := flaTop[name]; ok {
		return n, true
	}
	m := rwkvBlockName.FindStringSubmatch(name)
	if m == nil || !canonicalInt(m[1]) {
		return "", false
	}
	rest := m[2]
	if n, ok := flaBlock[rest]; ok {
		return "model.layers." + m[1] + "." + n, true
	}
	if lm := rwkvLoRA.FindStringSubmatch(rest); lm != nil {
		if lm[1] == "g" && lm[2] == "0" {
			return "", false // the gate LoRA has no bias
		}
		if lm[1] == "v" && m[1] == "0" {
			return "", false
		}
		return "model.layers." + m[1] + ".attn." + lm[1] + "_lora.lora." + flaLoRAPart[lm[2]], true
	}
	return "", false
}

// RWKVNameFromFLA is the inverse of FLAName.
func RWKVNameFromFLA(fla string) (string, bool) {
	for k, v := range flaTop {
		if v == fla {
			return k, true
		}
	}
	m := flaLayerName.FindStringSubmatch(fla)
	if m == nil || !canonicalInt(m[1]) {
		return "", false
	}
	var name string
	if n, ok := rwkvBlock[m[2]]; ok {
		name = "blocks." + m[1] + "." + n
	} else if lm := flaLoRA.FindStringSubmatch(m[2]); lm != nil {
		for digit, part := range flaLoRAPart {
			if part == lm[2] {
				name = "blocks." + m[1] + ".att." + lm[1] + digit
			}
		}
	}
	if name == "" {
		return "", false
	}
	if back, ok := FLAName(name); !ok || back != fla {
		return "", false
	}
	return name, true
}

// canonicalInt reports whether s is a decimal integer without leading zeros.
func canonicalInt(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && strconv.Itoa(n) == s
}

// flaVector reports whether an RWKV-LM [1,1,C] tensor is a plain [C] vector in
// FLA (all but the token-shift mixes x_r ... x_g, which FLA keeps [1,1,C]).
func flaVector(rest string) bool {
	switch rest {
	case "att.w0", "att.a0", "att.v0", "att.k_k", "att.k_a", "ffn.x_k":
		return true
	}
	return false
}

// X070ToFLA renames and reshapes a checked x070 model (RWKV-LM names) to the
// FLA layout, dropping layer 0's v0/v1/v2. Tensors keep their dtype.
func X070ToFLA(ts []Tensor) ([]Tensor, error) {
	_, ordered, err := CheckX070(ts)
	if err != nil {
		return nil, err
	}
	out := make([]Tensor, 0, len(ordered))
	for _, t := range ordered {
		name, ok := FLAName(t.Name)
		if !ok {
			continue // layer 0's v0/v1/v2
		}
		m := rwkvBlockName.FindStringSubmatch(t.Name)
		switch {
		case m != nil && rwkvLoRA.MatchString(m[2]) && len(t.Shape) == 2:
			t = transpose2D(t, name)
		case m != nil && flaVector(m[2]):
			t = reshaped(t, name, t.Shape[len(t.Shape)-1])
		default:
			t = reshaped(t, name, t.Shape...)
		}
		out = append(out, t)
	}
	return out, nil
}

// X070FromFLA maps FLA-named tensors back to RWKV-LM names and shapes
// (LoRA matrices transposed back, [C] vectors to [1,1,C]) and checks the
// result as an x070 model without layer 0's v0/v1/v2.
func X070FromFLA(ts []Tensor) ([]Tensor, error) {
	out := make([]Tensor, 0, len(ts))
	for _, t := range ts {
		name, ok := RWKVNameFromFLA(t.Name)
		if !ok {
			return nil, fmt.Errorf("tensor %q is not an FLA rwkv7 name: %w", t.Name, ErrTensors)
		}
		m := rwkvBlockName.FindStringSubmatch(name)
		switch {
		case m != nil && rwkvLoRA.MatchString(m[2]) && name[len(name)-1] != '0':
			if len(t.Shape) != 2 {
				return nil, fmt.Errorf("tensor %q: shape %v, want a matrix: %w", t.Name, t.Shape, ErrTensors)
			}
			t = transpose2D(t, name)
		case m != nil && (flaVector(m[2]) || rwkvLoRA.MatchString(m[2])):
			if len(t.Shape) != 1 {
				return nil, fmt.Errorf("tensor %q: shape %v, want a vector: %w", t.Name, t.Shape, ErrTensors)
			}
			t = reshaped(t, name, 1, 1, t.Shape[0])
		default:
			t = reshaped(t, name, t.Shape...)
		}
		out = append(out, t)
	}
	if d, ordered, err := CheckX070(out); err != nil {
		return nil, err
	} else if d.V0Layer0 {
		return nil, fmt.Errorf("FLA tensors give layer 0 a v_lora, which FLA never has: %w", ErrTensors)
	} else {
		return ordered, nil
	}
}

// HF7Config holds the config.json fields that the tensors cannot give.
type HF7Config struct {
	// MaxPositionEmbeddings is written as max_position_embeddings (FLA
	// does not use it; RWKV has no context limit). 0 means 4096.
	MaxPositionEmbeddings int
}

// hf7ConfigJSON is config.json for FLA's RWKV7Config (model_type rwkv7).
type hf7ConfigJSON struct {
	Architectures         []string `json:"architectures"`
	ModelType             string   `json:"model_type"`
	AttnMode              string   `json:"attn_mode"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	HiddenRatio           float64  `json:"hidden_ratio"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	HeadDim               int      `json:"head_dim"`
	NumHeads              int      `json:"num_heads"`
	DecayLowRankDim       int      `json:"decay_low_rank_dim"`
	GateLowRankDim        int      `json:"gate_low_rank_dim"`
	ALowRankDim           int      `json:"a_low_rank_dim"`
	VLowRankDim           int      `json:"v_low_rank_dim"`
	ValueDim              []int    `json:"value_dim"`
	HiddenAct             string   `json:"hidden_act"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	NormFirst             bool     `json:"norm_first"`
	NormBias              bool     `json:"norm_bias"`
	NormEps               float64  `json:"norm_eps"`
	FuseNorm              bool     `json:"fuse_norm"`
	FuseCrossEntropy      bool     `json:"fuse_cross_entropy"`
	UseL2Warp             bool     `json:"use_l2warp"`
	UseCache              bool     `json:"use_cache"`
	BOSTokenID            int      `json:"bos_token_id"`
	EOSTokenID            int      `json:"eos_token_id"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	TorchDType            string   `json:"torch_dtype"`
}

func hf7Config(d Dims, cfg HF7Config, dt DType) (hf7ConfigJSON, error) {
	torchDType, err := dt.torchName()
	if err != nil {
		return hf7ConfigJSON{}, err
	}
	if cfg.MaxPositionEmbeddings < 0 {
		return hf7ConfigJSON{}, fmt.Errorf("config max_position_embeddings %d must not be negative: %w", cfg.MaxPositionEmbeddings, ErrTensors)
	}
	if cfg.MaxPositionEmbeddings == 0 {
		cfg.MaxPositionEmbeddings = 4096
	}
	vd := make([]int, d.Layers)
	for i := range vd {
		vd[i] = d.Embd
	}
	return hf7ConfigJSON{
		Architectures: []string{"RWKV7ForCausalLM"}, ModelType: "rwkv7", AttnMode: "chunk",
		VocabSize: d.Vocab, HiddenSize: d.Embd, HiddenRatio: float64(d.FFN) / float64(d.Embd),
		IntermediateSize: d.FFN, NumHiddenLayers: d.Layers, HeadDim: d.HeadSize, NumHeads: d.Heads(),
		DecayLowRankDim: d.LoRA.W, GateLowRankDim: d.LoRA.G, ALowRankDim: d.LoRA.A, VLowRankDim: d.LoRA.V, ValueDim: vd,
		HiddenAct: "sqrelu", MaxPositionEmbeddings: cfg.MaxPositionEmbeddings,
		NormFirst: true, NormBias: true, NormEps: 1e-5, FuseNorm: false, FuseCrossEntropy: true,
		UseL2Warp: true, UseCache: true, TieWordEmbeddings: false, TorchDType: torchDType,
	}, nil
}

// ExportHF7 writes dir/config.json and dir/model.safetensors in the fla-hub
// rwkv7 layout (load with flash-linear-attention's RWKV7ForCausalLM; llama.cpp's
// convert_hf_to_gguf.py also reads this directory once the World vocabulary
// file rwkv_vocab_v20230424.txt is copied next to it). Every tensor is
// written in dt (F32, F16 or BF16). Each file is written atomically.
func ExportHF7(dir string, ts []Tensor, cfg HF7Config, dt DType) error {
	if err := exportDType(dt); err != nil {
		return fmt.Errorf("export hf7 %s: %w", dir, err)
	}
	d, _, err := CheckX070(ts)
	if err != nil {
		return fmt.Errorf("export hf7 %s: %w", dir, err)
	}
	fla, err := X070ToFLA(ts)
	if err == nil {
		fla, err = convertFinite(fla, dt)
	}
	if err != nil {
		return fmt.Errorf("export hf7 %s: %w", dir, err)
	}
	conf, err := hf7Config(d, cfg, dt)
	if err != nil {
		return fmt.Errorf("export hf7 %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return fmt.Errorf("export hf7 %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export hf7: %w", err)
	}
	err = WriteFileAtomic(filepath.Join(dir, "model.safetensors"), func(w io.Writer) error {
		return WriteSafetensors(w, fla, map[string]string{"format": "pt"})
	})
	if err == nil {
		err = WriteFileAtomic(filepath.Join(dir, hfConfigFile), func(w io.Writer) error {
			_, err := w.Write(append(b, '\n'))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("export hf7: %w", err)
	}
	return nil
}

// ReadHF7Dir reads an fla-hub rwkv7 directory (config.json and
// model.safetensors) and returns the model with RWKV-LM names and shapes,
// without layer 0's v0/v1/v2. config.json, when present, must say
// model_type rwkv7 and its sizes must match the tensors. Sharded
// checkpoints are not read.
func ReadHF7Dir(dir string) ([]Tensor, error) {
	path := filepath.Join(dir, "model.safetensors")
	sf, err := OpenSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", dir, err)
	}
	ts, err := X070FromFLA(sf.Tensors)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	if err := checkHF7Config(dir, ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// checkHF7Config checks dir/config.json, when the file exists, as FLA's RWKV7Config:
// model_type rwkv7, and the sizes that are set (numbers) equal to the tensors'.
func checkHF7Config(dir string, ts []Tensor) error {
	conf, err := readHFConfig(dir)
	if conf == nil || err != nil {
		return err
	}
	path := conf.path
	var mt string
	if v := conf.lookup("model_type"); v == nil || json.Unmarshal(v, &mt) != nil || mt != "rwkv7" {
		got := "absent"
		if v != nil {
			got = string(v)
		}
		return fmt.Errorf("weights %s: model_type %s, want \"rwkv7\" (an fla-hub RWKV-7 directory): %w", path, got, ErrTensors)
	}
	d, _, err := CheckX070(ts)
	if err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	for _, k := range []struct {
		key  string
		want int
	}{
		{"vocab_size", d.Vocab}, {"hidden_size", d.Embd}, {"num_hidden_layers", d.Layers},
		{"head_dim", d.HeadSize}, {"intermediate_size", d.FFN}, {"decay_low_rank_dim", d.LoRA.W},
		{"a_low_rank_dim", d.LoRA.A}, {"v_low_rank_dim", d.LoRA.V}, {"gate_low_rank_dim", d.LoRA.G},
	} {
		var v float64
		if raw := conf.lookup(k.key); raw == nil || json.Unmarshal(raw, &v) != nil {
			continue // absent or null (FLA derives it), or not a number
		}
		if v != float64(k.want) {
			return fmt.Errorf("weights %s: %s is %v but the tensors give %d; fix config.json or the weights: %w", path, k.key, v, k.want, ErrTensors)
		}
	}
	return nil
}
