package arch

import "fmt"

// Layout lists every tensor of a model of d with RWKV-LM's names and shapes, in RWKV-LM
// state-dict order. It panics for an architecture without a layout (x040, x052, x060 and x070 have one):
// callers validate the architecture first, as model.Config.Validate and Infer do.
func (d Dims) Layout() []Spec {
	switch d.Arch.Resolve() {
	case X040:
		return layoutX040(d)
	case X052:
		return layoutX052(d)
	case X060:
		return layoutX060(d)
	case X070:
		return layoutX070(d)
	}
	panic(fmt.Sprintf("arch: no layout for %s", d.Arch.Title()))
}

// Shape is the shape of the tensor called name in d's layout, or nil.
func (d Dims) Shape(name string) []int {
	for _, s := range d.Layout() {
		if s.Name == name {
			return s.Shape
		}
	}
	return nil
}

// NumParams is the number of scalar weights of d's layout.
func (d Dims) NumParams() int {
	n := 0
	for _, s := range d.Layout() {
		n += s.Size()
	}
	return n
}

// layoutX040 is RWKV-4 (RWKV-LM RWKV-v4neo model.py): 6 + 18·L tensors.
//
//	emb.weight [V,C]
//	blocks.l: ln1, ln2 (and ln0 in layer 0, created after them) [C] weight and bias;
//	  att.time_decay, att.time_first [C]; att.time_mix_k/v/r [1,1,C];
//	  att.key/value/receptance/output.weight [C,C];
//	  ffn.time_mix_k/r [1,1,C]; ffn.key.weight [F,C]; ffn.receptance.weight [C,C]; ffn.value.weight [C,F]
//	ln_out.weight, ln_out.bias [C]; head.weight [V,C]
func layoutX040(d Dims) []Spec {
	C, F := d.Embd, d.FFN
	return frame(d, func(l int, add func(string, ...int)) {
		add("att.time_decay", C)
		add("att.time_first", C)
		add("att.time_mix_k", 1, 1, C)
		add("att.time_mix_v", 1, 1, C)
		add("att.time_mix_r", 1, 1, C)
		add("att.key.weight", C, C)
		add("att.value.weight", C, C)
		add("att.receptance.weight", C, C)
		add("att.output.weight", C, C)
		add("ffn.time_mix_k", 1, 1, C)
		add("ffn.time_mix_r", 1, 1, C)
		add("ffn.key.weight", F, C)
		add("ffn.receptance.weight", C, C)
		add("ffn.value.weight", C, F)
	})
}

// frame is what every RWKV-LM version's model registers around its blocks' att and ffn:
// emb.weight [V,C] first; in each block ln1, ln2 and, in layer 0, ln0 (RWKV-LM's Block creates
// it after them) [C] weight and bias, then the block's own tensors (block adds them under
// "blocks.l."); ln_out.weight, ln_out.bias [C] and head.weight [V,C] last.
func frame(d Dims, block func(l int, add func(name string, shape ...int))) []Spec {
	C, V := d.Embd, d.Vocab
	s := []Spec{{"emb.weight", []int{V, C}}}
	for l := 0; l < d.Layers; l++ {
		p := Block(l)
		add := func(name string, shape ...int) { s = append(s, Spec{p + name, shape}) }
		add("ln1.weight", C)
		add("ln1.bias", C)
		add("ln2.weight", C)
		add("ln2.bias", C)
		if l == 0 {
			add("ln0.weight", C)
			add("ln0.bias", C)
		}
		block(l, add)
	}
	return append(s, Spec{"ln_out.weight", []int{C}}, Spec{"ln_out.bias", []int{C}}, Spec{"head.weight", []int{V, C}})
}
