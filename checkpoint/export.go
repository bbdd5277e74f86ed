package checkpoint

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rwkv-go/rwkv-go/arch"
)

// exportTensors checks that ts is a complete RWKV-4 model (Check), puts it
// in RWKV-LM order and converts every tensor to dt, refusing values that are
// not finite after conversion (an F16 overflow, say). RWKV-5.2/6 and RWKV-7
// have their own exports (ExportX05PTH, ExportX05RWKV, ExportHF56, ExportGGUF6;
// ExportX070PTH, ExportX070RWKV, ExportHF7, ExportGGUF7).
func exportTensors(ts []Tensor, dt DType) (Dims, []Tensor, error) {
	if err := exportDType(dt); err != nil {
		return Dims{}, nil, err
	}
	d, ordered, err := Check(ts)
	if err == nil && d.Arch.Resolve() != arch.X040 {
		err = fmt.Errorf("the tensors hold an %s model; this export writes RWKV-4 only (RWKV-5.2/6 and RWKV-7 have their own exports): %w", d.Arch.Title(), arch.ErrUnsupported)
	}
	if err != nil {
		return d, nil, err
	}
	out, err := convertFinite(ordered, dt)
	return d, out, err
}

// exportDType refuses a dtype the exports do not write (they write F32, F16 and BF16).
func exportDType(dt DType) error {
	if dt != F32 && dt != F16 && dt != BF16 {
		return fmt.Errorf("export dtype %q (want F32, F16 or BF16): %w", dt, ErrDType)
	}
	return nil
}

// convertFinite converts every tensor of ts to dt, refusing values that are not finite after
// conversion (an F16 overflow, say).
func convertFinite(ts []Tensor, dt DType) ([]Tensor, error) {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		c, err := t.Convert(dt)
		if err == nil {
			err = c.CheckFinite()
		}
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}

// ExportRWKV writes an RWKV-LM-named safetensors file in dt (F32, F16 or
// BF16). time_decay and time_first are written raw, ln0 is kept and the
// head stays untied, as every RWKV-4 runtime expects.
func ExportRWKV(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export rwkv", exportTensors, writeRWKVLM)
}

// exportWith is the RWKV-LM exports (.pth and safetensors of every architecture): prepare
// checks ts and converts them to dt in RWKV-LM order, write writes the file; errors start with
// what ("export pth").
func exportWith(w io.Writer, ts []Tensor, dt DType, what string,
	prepare func([]Tensor, DType) (Dims, []Tensor, error), write func(io.Writer, []Tensor) error) error {
	_, out, err := prepare(ts, dt)
	if err == nil {
		err = write(w, out)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// writeRWKVLM writes ts as RWKV-LM-named safetensors (metadata format=pt).
func writeRWKVLM(w io.Writer, ts []Tensor) error {
	return WriteSafetensors(w, ts, map[string]string{"format": "pt"})
}

// ExportWebRWKV writes the web-rwkv layout, every tensor F16: RWKV-LM names for RWKV-4; for
// RWKV-5.2 and RWKV-6 the names and transposes of web-rwkv's convert_safetensors.py (see
// x05ToWebRWKV). RWKV-7 is refused.
func ExportWebRWKV(w io.Writer, ts []Tensor) error {
	var out []Tensor
	d, _, err := Check(ts)
	if err == nil && d.Arch.Resolve() == arch.X070 {
		return fmt.Errorf("export web-rwkv: the tensors hold an %s model; this export writes web-rwkv's RWKV-4, RWKV-5.2 and RWKV-6 layouts (convert an RWKV-7 .pth with web-rwkv's convert_safetensors.py): %w", d.Arch.Title(), arch.ErrUnsupported)
	}
	if err == nil && isX05(d.Arch) {
		_, out, err = x05ForRWKVLM(ts, F16)
		out = x05ToWebRWKV(out)
	} else {
		_, out, err = exportTensors(ts, F16)
	}
	if err != nil {
		return fmt.Errorf("export web-rwkv: %w", err)
	}
	if err := WriteSafetensors(w, out, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export web-rwkv: %w", err)
	}
	return nil
}

// ExportPTH writes a torch.save-compatible .pth in dt (BF16 like the official
// RWKV-4 files, F16 or F32) with RWKV-LM names.
func ExportPTH(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export pth", exportTensors, WritePTH)
}

// HFConfig holds the config.json fields that the tensors cannot give.
// Zero sizes are filled in from the tensors; non-zero ones must match them.
type HFConfig struct {
	ContextLength   int
	Vocab           int
	Hidden          int
	Layers          int
	AttentionHidden int
	Intermediate    int
}

// hfConfigJSON is config.json for transformers RwkvConfig (REFERENCE §6).
type hfConfigJSON struct {
	Architectures       []string `json:"architectures"`
	ModelType           string   `json:"model_type"`
	VocabSize           int      `json:"vocab_size"`
	HiddenSize          int      `json:"hidden_size"`
	NumHiddenLayers     int      `json:"num_hidden_layers"`
	AttentionHiddenSize int      `json:"attention_hidden_size"`
	IntermediateSize    int      `json:"intermediate_size"`
	ContextLength       int      `json:"context_length"`
	LayerNormEpsilon    float64  `json:"layer_norm_epsilon"`
	RescaleEvery        int      `json:"rescale_every"`
	BOSTokenID          int      `json:"bos_token_id"`
	EOSTokenID          int      `json:"eos_token_id"`
	TieWordEmbeddings   bool     `json:"tie_word_embeddings"`
	TorchDType          string   `json:"torch_dtype"`
	UseCache            bool     `json:"use_cache"`
}

func (c HFConfig) resolve(d Dims) (HFConfig, error) {
	fill := func(field string, v *int, want int) error {
		if *v == 0 {
			*v = want
		} else if *v != want {
			return fmt.Errorf("config %s %d, tensors give %d: %w", field, *v, want, ErrTensors)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    *int
		want int
	}{
		{"vocab_size", &c.Vocab, d.Vocab}, {"hidden_size", &c.Hidden, d.Embd},
		{"num_hidden_layers", &c.Layers, d.Layers}, {"attention_hidden_size", &c.AttentionHidden, d.Embd},
		{"intermediate_size", &c.Intermediate, d.FFN},
	} {
		if err := fill(f.name, f.v, f.want); err != nil {
			return c, err
		}
	}
	if c.ContextLength <= 0 {
		return c, fmt.Errorf("config context_length %d must be positive: %w", c.ContextLength, ErrTensors)
	}
	return c, nil
}

// ExportHF writes dir/config.json and dir/model.safetensors so that
// transformers' RwkvForCausalLM.from_pretrained(dir) loads the model. Each
// file is written atomically; dir is created if needed.
func ExportHF(dir string, ts []Tensor, cfg HFConfig, dt DType) error {
	d, out, err := exportTensors(ts, dt)
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	cfg, err = cfg.resolve(d)
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	torchDType, err := dt.torchName()
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	for i := range out {
		out[i].Name = HFName(out[i].Name)
	}
	conf, err := json.MarshalIndent(hfConfigJSON{
		Architectures: []string{"RwkvForCausalLM"}, ModelType: "rwkv",
		VocabSize: cfg.Vocab, HiddenSize: cfg.Hidden, NumHiddenLayers: cfg.Layers,
		AttentionHiddenSize: cfg.AttentionHidden, IntermediateSize: cfg.Intermediate,
		ContextLength: cfg.ContextLength, LayerNormEpsilon: 1e-5, RescaleEvery: 6,
		TieWordEmbeddings: false, TorchDType: torchDType, UseCache: true,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("export hf %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export hf: %w", err)
	}
	// transformers rejects a safetensors file without format metadata.
	err = WriteFileAtomic(filepath.Join(dir, "model.safetensors"), func(w io.Writer) error {
		return WriteSafetensors(w, out, map[string]string{"format": "pt"})
	})
	if err != nil {
		return fmt.Errorf("export hf: %w", err)
	}
	err = WriteFileAtomic(filepath.Join(dir, "config.json"), func(w io.Writer) error {
		_, err := w.Write(append(conf, '\n'))
		return err
	})
	if err != nil {
		return fmt.Errorf("export hf: %w", err)
	}
	return nil
}
