package checkpoint

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	blockPart   = regexp.MustCompile(`^blocks\.(\d+)\.(att|ffn)\.`)
	hfBlockPart = regexp.MustCompile(`^blocks\.(\d+)\.(attention|feed_forward)\.`)
)

// HFName maps an RWKV-LM tensor name to the Hugging Face RwkvForCausalLM
// name (transformers convert_rwkv_checkpoint_to_hf.py).
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
	for _, r := range [][2]string{{".time_mix_k", ".time_mix_key"}, {".time_mix_v", ".time_mix_value"}, {".time_mix_r", ".time_mix_receptance"}} {
		if strings.HasSuffix(name, r[0]) {
			name = strings.TrimSuffix(name, r[0]) + r[1]
		}
	}
	return "rwkv." + name
}

// RWKVName maps a Hugging Face RwkvForCausalLM name back to the RWKV-LM
// name; ok is false for a name HFName cannot produce.
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
	for _, r := range [][2]string{{".time_mix_key", ".time_mix_k"}, {".time_mix_value", ".time_mix_v"}, {".time_mix_receptance", ".time_mix_r"}} {
		if strings.HasSuffix(name, r[0]) {
			name = strings.TrimSuffix(name, r[0]) + r[1]
		}
	}
	if HFName(name) != hf {
		return "", false
	}
	return name, true
}

// Dims are the sizes of an RWKV-4 model as its tensors give them.
type Dims struct {
	Vocab, Embd, FFN, Layers int
}

// Layout lists the RWKV-4 tensor names and shapes for d in RWKV-LM
// state_dict order (REFERENCE §7).
func (d Dims) Layout() []Tensor {
	C, F := d.Embd, d.FFN
	out := []Tensor{{Name: "emb.weight", Shape: []int{d.Vocab, C}}}
	add := func(name string, shape ...int) { out = append(out, Tensor{Name: name, Shape: shape}) }
	for i := 0; i < d.Layers; i++ {
		p := fmt.Sprintf("blocks.%d.", i)
		add(p+"ln1.weight", C)
		add(p+"ln1.bias", C)
		add(p+"ln2.weight", C)
		add(p+"ln2.bias", C)
		if i == 0 { // RWKV-LM's Block creates ln0 after ln1 and ln2
			add(p+"ln0.weight", C)
			add(p+"ln0.bias", C)
		}
		add(p+"att.time_decay", C)
		add(p+"att.time_first", C)
		add(p+"att.time_mix_k", 1, 1, C)
		add(p+"att.time_mix_v", 1, 1, C)
		add(p+"att.time_mix_r", 1, 1, C)
		add(p+"att.key.weight", C, C)
		add(p+"att.value.weight", C, C)
		add(p+"att.receptance.weight", C, C)
		add(p+"att.output.weight", C, C)
		add(p+"ffn.time_mix_k", 1, 1, C)
		add(p+"ffn.time_mix_r", 1, 1, C)
		add(p+"ffn.key.weight", F, C)
		add(p+"ffn.receptance.weight", C, C)
		add(p+"ffn.value.weight", C, F)
	}
	add("ln_out.weight", C)
	add("ln_out.bias", C)
	add("head.weight", d.Vocab, C)
	return out
}

// CheckRWKV4 infers the model sizes from ts (RWKV-LM names) and checks that
// ts holds exactly the RWKV-4 tensors with the right shapes and float
// dtypes. It returns ts in RWKV-LM state_dict order.
func CheckRWKV4(ts []Tensor) (Dims, []Tensor, error) {
	byName := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		if _, dup := byName[t.Name]; dup {
			return Dims{}, nil, fmt.Errorf("duplicate tensor %q: %w", t.Name, ErrTensors)
		}
		byName[t.Name] = t
	}
	var d Dims
	emb, ok := byName["emb.weight"]
	if !ok || len(emb.Shape) != 2 {
		return Dims{}, nil, fmt.Errorf("missing emb.weight [V,C]: %w", ErrTensors)
	}
	d.Vocab, d.Embd = emb.Shape[0], emb.Shape[1]
	for d.Layers = 0; ; d.Layers++ {
		if _, ok := byName[fmt.Sprintf("blocks.%d.ln1.weight", d.Layers)]; !ok {
			break
		}
	}
	if k, ok := byName["blocks.0.ffn.key.weight"]; ok && len(k.Shape) == 2 {
		d.FFN = k.Shape[0]
	}
	want := d.Layout()
	out := make([]Tensor, 0, len(want))
	for _, w := range want {
		t, ok := byName[w.Name]
		if !ok {
			return d, nil, fmt.Errorf("missing tensor %q: %w", w.Name, ErrTensors)
		}
		if !equalShape(t.Shape, w.Shape) {
			return d, nil, fmt.Errorf("tensor %q: shape %v, want %v: %w", w.Name, t.Shape, w.Shape, ErrTensors)
		}
		if !t.DType.IsFloat() {
			return d, nil, fmt.Errorf("tensor %q: dtype %s: %w", w.Name, t.DType, ErrDType)
		}
		out = append(out, t)
		delete(byName, w.Name)
	}
	for _, t := range ts {
		if _, extra := byName[t.Name]; extra {
			return d, nil, fmt.Errorf("unexpected tensor %q: %w", t.Name, ErrTensors)
		}
	}
	if d.Layers == 0 {
		return d, nil, fmt.Errorf("no blocks: %w", ErrTensors)
	}
	return d, out, nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
