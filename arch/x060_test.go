package arch

import (
	"slices"
	"testing"
)

// TestLayoutX05: x052 and x060 tensor sets read back to the same Dims (Infer of Layout), with
// RWKV-LM's counts (6 + 22·L and 6 + 28·L) and its registration order (the gate after the
// output, the token-shift LoRA before the decay, time_faaaa after the decay LoRA).
func TestLayoutX05(t *testing.T) {
	for _, tt := range []struct {
		d     Dims
		count int
		order []string // names that must appear in this order in layer 1
	}{
		{Dims{Arch: X052, Vocab: 11, Embd: 8, FFN: 28, Layers: 3, HeadSize: 4}, 6 + 22*3,
			[]string{"att.time_mix_k", "att.time_mix_v", "att.time_mix_r", "att.time_mix_g", "att.time_decay", "att.time_faaaa",
				"att.receptance.weight", "att.key.weight", "att.value.weight", "att.output.weight", "att.gate.weight", "att.ln_x.weight",
				"ffn.time_mix_k", "ffn.time_mix_r", "ffn.key.weight", "ffn.receptance.weight", "ffn.value.weight"}},
		{Dims{Arch: X060, Vocab: 11, Embd: 8, FFN: 28, Layers: 2, HeadSize: 4, LoRA: LoRA{Mix: 3, W: 5}}, 6 + 28*2,
			[]string{"att.time_maa_x", "att.time_maa_w", "att.time_maa_k", "att.time_maa_v", "att.time_maa_r", "att.time_maa_g",
				"att.time_maa_w1", "att.time_maa_w2", "att.time_decay", "att.time_decay_w1", "att.time_decay_w2", "att.time_faaaa",
				"att.receptance.weight", "att.output.weight", "att.gate.weight", "att.ln_x.bias", "ffn.time_maa_k", "ffn.time_maa_r",
				"ffn.key.weight", "ffn.receptance.weight", "ffn.value.weight"}},
	} {
		l := tt.d.Layout()
		if len(l) != tt.count {
			t.Errorf("%s: %d tensors, want %d", tt.d.Arch, len(l), tt.count)
		}
		got, err := Infer(l)
		if err != nil || got != tt.d {
			t.Errorf("%s: Infer = %+v, %v; want %+v", tt.d.Arch, got, err, tt.d)
		}
		var names []string
		for _, s := range l {
			names = append(names, s.Name)
		}
		last := -1
		for _, n := range tt.order {
			i := slices.Index(names, "blocks.1."+n)
			if i <= last {
				t.Errorf("%s: blocks.1.%s at %d, not after the previous name (%d)", tt.d.Arch, n, i, last)
			}
			last = i
		}
	}
	x6 := Dims{Arch: X060, Vocab: 11, Embd: 8, FFN: 28, Layers: 1, HeadSize: 4, LoRA: LoRA{Mix: 3, W: 5}}
	for name, want := range map[string][]int{"blocks.0.att.time_maa_w1": {8, 15}, "blocks.0.att.time_maa_w2": {5, 3, 8},
		"blocks.0.att.time_decay": {1, 1, 8}, "blocks.0.att.time_decay_w2": {5, 8}, "blocks.0.att.time_faaaa": {2, 4}} {
		if got := x6.Shape(name); !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
}

// TestDefaultFFN5: RWKV-LM's int(3.5·C)//32·32, NEXT-ARCH §3's examples.
func TestDefaultFFN5(t *testing.T) {
	for C, want := range map[int]int{768: 2688, 1024: 3584, 2048: 7168, 2560: 8960, 4096: 14336, 96: 320} {
		if got := DefaultFFN5(C); got != want {
			t.Errorf("DefaultFFN5(%d) = %d, want %d", C, got, want)
		}
	}
}
