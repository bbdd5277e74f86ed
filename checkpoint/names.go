package checkpoint

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

var (
	blockPart   = regexp.MustCompile(`^blocks\.(\d+)\.(att|ffn)\.`)
	hfBlockPart = regexp.MustCompile(`^blocks\.(\d+)\.(attention|feed_forward)\.`)
)

// HFName maps an RWKV-LM tensor name to the Hugging Face name: RwkvForCausalLM's for RWKV-4
// (transformers convert_rwkv_checkpoint_to_hf.py), and the same rule for the RWKV-5/6
// remote-code models (Rwkv5ForCausalLM, Rwkv6ForCausalLM; convert_rwkv5_checkpoint_to_hf.py),
// which adds time_mix_g → time_mix_gate and keeps x060's time_maa_* names.
func HFName(name string) string {
	if name == "head.weight" {
		return name
	}
	if strings.HasPrefix(name, "emb.") {
		name = "embeddings." + strings.TrimPrefix(name, "emb.")
	}
	if strings.HasPrefix(name, "blocks.0.ln0.") {
		name = "blocks.0.pre_ln." + strings.TrimPrefix(name, "blocks.0.ln0.")
	}
	name = blockPart.ReplaceAllStringFunc(name, func(s string) string {
		s = strings.Replace(s, ".att.", ".attention.", 1)
		return strings.Replace(s, ".ffn.", ".feed_forward.", 1)
	})
	for _, r := range [][2]string{{".time_mix_k", ".time_mix_key"}, {".time_mix_v", ".time_mix_value"}, {".time_mix_r", ".time_mix_receptance"}, {".time_mix_g", ".time_mix_gate"}} {
		if strings.HasSuffix(name, r[0]) {
			name = strings.TrimSuffix(name, r[0]) + r[1]
		}
	}
	return "rwkv." + name
}

// RWKVName maps a Hugging Face RwkvForCausalLM, Rwkv5ForCausalLM or Rwkv6ForCausalLM name back
// to the RWKV-LM name; ok is false for a name HFName cannot produce.
func RWKVName(hf string) (name string, ok bool) {
	if hf == "head.weight" {
		return hf, true
	}
	name, ok = strings.CutPrefix(hf, "rwkv.")
	if !ok {
		return "", false
	}
	if strings.HasPrefix(name, "embeddings.") {
		name = "emb." + strings.TrimPrefix(name, "embeddings.")
	}
	if strings.HasPrefix(name, "blocks.0.pre_ln.") {
		name = "blocks.0.ln0." + strings.TrimPrefix(name, "blocks.0.pre_ln.")
	}
	name = hfBlockPart.ReplaceAllStringFunc(name, func(s string) string {
		s = strings.Replace(s, ".attention.", ".att.", 1)
		return strings.Replace(s, ".feed_forward.", ".ffn.", 1)
	})
	for _, r := range [][2]string{{".time_mix_key", ".time_mix_k"}, {".time_mix_value", ".time_mix_v"}, {".time_mix_receptance", ".time_mix_r"}, {".time_mix_gate", ".time_mix_g"}} {
		if strings.HasSuffix(name, r[0]) {
			name = strings.TrimSuffix(name, r[0]) + r[1]
		}
	}
	if HFName(name) != hf {
		return "", false
	}
	return name, true
}

// Dims are the sizes of a model as its tensors give them (arch.Infer).
type Dims = arch.Dims

// Check tells the architecture and sizes from ts (RWKV-LM names) with arch.Infer, checks that ts
// hold exactly that architecture's tensors with its shapes and float dtypes, and returns ts in
// RWKV-LM state_dict order. It accepts every architecture with a layout (arch.Layouts: RWKV-4, RWKV-5.2, RWKV-6
// and RWKV-7), including those a model cannot be built from yet: callers that build one check
// Dims.Arch.CheckSupported. A wrong tensor set is ErrTensors, an architecture without a layout
// arch.ErrUnsupported.
func Check(ts []Tensor) (Dims, []Tensor, error) {
	specs := make([]arch.Spec, len(ts))
	for i, t := range ts {
		specs[i] = arch.Spec{Name: t.Name, Shape: t.Shape}
	}
	d, err := arch.Infer(specs)
	if err != nil {
		return d, nil, err
	}
	byName := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		byName[t.Name] = t
	}
	out := make([]Tensor, 0, len(ts))
	for _, w := range d.Layout() {
		t := byName[w.Name]
		if !t.DType.IsFloat() {
			return d, nil, fmt.Errorf("tensor %q: dtype %s: %w", w.Name, t.DType, ErrDType)
		}
		out = append(out, t)
	}
	return d, out, nil
}

// CheckRWKV4 is Check for the formats that only hold RWKV-4 (Hugging Face RwkvForCausalLM):
// any other architecture is an arch.ErrUnsupported error.
func CheckRWKV4(ts []Tensor) (Dims, []Tensor, error) {
	d, out, err := Check(ts)
	if err == nil && d.Arch.Resolve() != arch.X040 {
		return d, nil, fmt.Errorf("the tensors hold an %s model, this format holds RWKV-4 only: %w", d.Arch.Title(), arch.ErrUnsupported)
	}
	return d, out, err
}

func equalShape(a, b []int) bool { return slices.Equal(a, b) }
