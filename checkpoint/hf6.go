package checkpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rwkv-go/rwkv-go/arch"
)

// The Hugging Face layouts of RWKV-5.2 and RWKV-6 (NEXT-ARCH §5.2): the trust_remote_code
// models RWKV/rwkv-5-world-* (Rwkv5ForCausalLM, model_type rwkv5) and RWKV/v6-Finch-*-HF
// (Rwkv6ForCausalLM, model_type rwkv6), whose modeling_rwkv5.py and modeling_rwkv6.py (also
// in transformers' unmerged RWKV-5/6 branches) declare every parameter with RWKV-LM's shape:
// no transpose and no squeeze. The names are HFName's:
//
//	emb.weight                 rwkv.embeddings.weight
//	blocks.0.ln0.*             rwkv.blocks.0.pre_ln.*
//	blocks.N.ln1/ln2.*         rwkv.blocks.N.ln1/ln2.*
//	blocks.N.att.X             rwkv.blocks.N.attention.X
//	blocks.N.ffn.X             rwkv.blocks.N.feed_forward.X
//	ln_out.*                   rwkv.ln_out.*
//	head.weight                head.weight
//
// where x052's time_mix_k/v/r/g become time_mix_key/value/receptance/gate (att and ffn) and
// x060's time_maa_*, time_decay*, time_faaaa keep their names.
//
// What the remote code builds, and so what ExportHF56 requires of a model: intermediate_size
// is ignored (both configs set it to None) and the channel-mix width is int(3.5·C)//32·32
// (arch.DefaultFFN5); RWKV-6's LoRA widths are fixed, 32 (token shift) and 64 (decay), or 64
// and 128 for hidden_size 4096. RWKV-5's config calls the head size num_attention_heads (the
// code computes H = hidden_size // num_attention_heads); RWKV-6's config has head_size and
// head_size_divisor 8. Numerics the remote code differs in (not a format matter): its RWKV-5
// GroupNorm uses eps 1e-5 where RWKV-LM's ln_x(y/8) equals eps 64e-5.

// hf56ConfigJSON is config.json for the RWKV-5/6 remote code (Rwkv5Config, Rwkv6Config).
type hf56ConfigJSON struct {
	Architectures       []string          `json:"architectures"`
	AutoMap             map[string]string `json:"auto_map"`
	ModelType           string            `json:"model_type"`
	VocabSize           int               `json:"vocab_size"`
	HiddenSize          int               `json:"hidden_size"`
	NumHiddenLayers     int               `json:"num_hidden_layers"`
	AttentionHiddenSize int               `json:"attention_hidden_size"`
	NumAttentionHeads   *int              `json:"num_attention_heads,omitempty"` // RWKV-5: the head size
	HeadSize            int               `json:"head_size"`
	HeadSizeDivisor     int               `json:"head_size_divisor"`
	IntermediateSize    int               `json:"intermediate_size"`
	LayerNormEpsilon    float64           `json:"layer_norm_epsilon"`
	RescaleEvery        int               `json:"rescale_every"`
	BOSTokenID          int               `json:"bos_token_id"`
	EOSTokenID          int               `json:"eos_token_id"`
	TieWordEmbeddings   bool              `json:"tie_word_embeddings"`
	TorchDType          string            `json:"torch_dtype"`
	UseCache            bool              `json:"use_cache"`
}

// hf56ModelType is the config.json model_type of x052 and x060 models.
func hf56ModelType(a arch.Arch) string {
	if a.Resolve() == arch.X052 {
		return "rwkv5"
	}
	return "rwkv6"
}

// hf56LoRA is the x060 LoRA widths modeling_rwkv6.py builds for hidden size C.
func hf56LoRA(C int) arch.LoRA {
	if C == 4096 {
		return arch.LoRA{Mix: 64, W: 128}
	}
	return arch.LoRA{Mix: 32, W: 64}
}

// hf56Loadable is nil when the remote code builds d's shapes, else an error saying why not.
func hf56Loadable(d Dims) error {
	if want := arch.DefaultFFN5(d.Embd); d.FFN != want {
		return fmt.Errorf("the %s remote code ignores intermediate_size and builds a channel mix of int(3.5·%d)//32·32 = %d, this model's is %d (export --format pth or rwkv instead): %w",
			hf56ModelType(d.Arch), d.Embd, want, d.FFN, arch.ErrUnsupported)
	}
	if d.Arch.Resolve() == arch.X060 {
		if want := hf56LoRA(d.Embd); d.LoRA.Mix != want.Mix || d.LoRA.W != want.W {
			return fmt.Errorf("the rwkv6 remote code builds time_maa_w1 [C,5·%d] and time_decay_w1 [C,%d] for hidden_size %d, this model has widths %d and %d (d_mix_lora, d_decay_lora; export --format pth or rwkv instead): %w",
				want.Mix, want.W, d.Embd, d.LoRA.Mix, d.LoRA.W, arch.ErrUnsupported)
		}
	}
	return nil
}

func hf56Config(d Dims, dt DType) (hf56ConfigJSON, error) {
	torchDType, err := dt.torchName()
	if err != nil {
		return hf56ConfigJSON{}, err
	}
	mt := hf56ModelType(d.Arch)
	cls := map[string]string{"rwkv5": "Rwkv5", "rwkv6": "Rwkv6"}[mt]
	c := hf56ConfigJSON{
		Architectures: []string{cls + "ForCausalLM"},
		AutoMap: map[string]string{
			"AutoConfig":           "configuration_" + mt + "." + cls + "Config",
			"AutoModelForCausalLM": "modeling_" + mt + "." + cls + "ForCausalLM",
		},
		ModelType: mt, VocabSize: d.Vocab, HiddenSize: d.Embd, NumHiddenLayers: d.Layers,
		AttentionHiddenSize: d.Embd, HeadSize: d.HeadSize, HeadSizeDivisor: 8, IntermediateSize: d.FFN,
		LayerNormEpsilon: 1e-5, RescaleEvery: 6, TieWordEmbeddings: false, TorchDType: torchDType, UseCache: true,
	}
	if mt == "rwkv5" {
		n := d.HeadSize
		c.NumAttentionHeads = &n
	}
	return c, nil
}

// ExportHF56 writes dir/config.json and dir/model.safetensors in the Hugging Face layout of
// the RWKV-5.2 (RWKV/rwkv-5-world-*) or RWKV-6 (RWKV/v6-Finch-*-HF) remote-code models, which
// the tensors choose. transformers loads the directory with trust_remote_code=True once the
// model's configuration_rwkvN.py and modeling_rwkvN.py (from one of those repositories) are
// copied next to it: config.json's auto_map names them. Every tensor is written in dt (F32,
// F16 or BF16). A model the remote code cannot build (see hf56Loadable) is refused. Each file
// is written atomically; dir is created if needed.
func ExportHF56(dir string, ts []Tensor, dt DType) error {
	d, out, err := x05ForRWKVLM(ts, dt)
	if err == nil {
		err = hf56Loadable(d)
	}
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	conf, err := hf56Config(d, dt)
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	for i := range out {
		out[i].Name = HFName(out[i].Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export hf: %w", err)
	}
	err = WriteFileAtomic(filepath.Join(dir, "model.safetensors"), func(w io.Writer) error {
		return WriteSafetensors(w, out, map[string]string{"format": "pt"})
	})
	if err == nil {
		err = WriteFileAtomic(filepath.Join(dir, hfConfigFile), func(w io.Writer) error {
			_, err := w.Write(append(b, '\n'))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("export hf: %w", err)
	}
	return nil
}

// checkHF56Config checks dir/config.json, when the file exists, against x052 or x060 tensors
// (RWKV-LM names; see checkHF56ConfigBytes).
func checkHF56Config(dir string, ts []Tensor) error {
	conf, err := readHFConfig(dir)
	if conf == nil || err != nil {
		return err
	}
	d, _, err := CheckX05(ts)
	if err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	return conf.checkHF56(d)
}

// parseHFConfig parses config.json's bytes, read from path.
func parseHFConfig(path string, b []byte) (*hfConfig, error) {
	c := &hfConfig{path: path}
	if err := json.Unmarshal(b, &c.raw); err != nil {
		return nil, fmt.Errorf("weights %s: not JSON: %v: %w", path, err, ErrMalformed)
	}
	return c, nil
}

// checkHF56 checks the config against an x052 or x060 model of d as Rwkv5Config and
// Rwkv6Config read it: model_type, when present, "rwkv5" or "rwkv6" as the tensors are;
// the sizes that are set equal to the tensors': vocab_size, hidden_size, num_hidden_layers,
// attention_hidden_size (absent or null: hidden_size), head_size, RWKV-5's
// num_attention_heads (the head size in that code), and intermediate_size (absent or null:
// int(3.5·hidden_size)//32·32, as the remote code computes it).
func (c *hfConfig) checkHF56(d Dims) error {
	want := hf56ModelType(d.Arch)
	if v := c.lookup("model_type"); v != nil {
		var mt string
		if json.Unmarshal(v, &mt) != nil || mt != want {
			return fmt.Errorf("weights %s: model_type %s, but the tensors hold an %s model (model_type %q): %w", c.path, v, d.Arch.Title(), want, ErrTensors)
		}
	}
	hidden, hiddenSet, err := c.size("hidden_size")
	if err != nil {
		return err
	}
	checks := []struct {
		key, tensor string // tensor: the RWKV-LM tensor that gives the size
		got         int
		dflt        int // the value an absent key means; 0: none
	}{
		{"vocab_size", "emb.weight", d.Vocab, 0},
		{"hidden_size", "emb.weight", d.Embd, 0},
		{"num_hidden_layers", "blocks.N.ln1.weight", d.Layers, 0},
		{"attention_hidden_size", "blocks.0.att.key.weight", d.Embd, hidden},
		{"head_size", "blocks.0.att.time_faaaa", d.HeadSize, 0},
		{"intermediate_size", "blocks.0.ffn.key.weight", d.FFN, arch.DefaultFFN5(hidden)},
	}
	if want == "rwkv5" {
		checks = append(checks, struct {
			key, tensor string
			got, dflt   int
		}{"num_attention_heads", "blocks.0.att.time_faaaa", d.HeadSize, 0})
	}
	for _, k := range checks {
		v, set, err := c.size(k.key)
		if err != nil {
			return err
		}
		if !set && hiddenSet && k.dflt > 0 {
			v, set = k.dflt, true
		}
		if set && v != k.got {
			detail := ""
			if !c.has(k.key) {
				detail = fmt.Sprintf(" (absent, so %d from hidden_size %d)", v, hidden)
			}
			return fmt.Errorf("weights %s: %s is %d%s, but the tensors (%s) give %d; fix config.json or the weights: %w",
				c.path, k.key, v, detail, HFName(k.tensor), k.got, ErrTensors)
		}
	}
	return nil
}

// has reports whether key is present and not null.
func (c *hfConfig) has(key string) bool { return c.lookup(key) != nil }
