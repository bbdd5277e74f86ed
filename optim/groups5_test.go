package optim

import (
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// TestGroupsX05 names the group of every parameter of a tiny x052 and x060 model (the layouts
// RWKV-LM registers) as RWKV-LM RWKV-v5's configure_optimizers puts them, with and without
// layerwise_lr: lr scale and whether the tensor is in the weight-decay group.
func TestGroupsX05(t *testing.T) {
	type group struct {
		scale float64
		decay bool
	}
	var (
		x1    = group{1, false}
		x2    = group{2, false}
		decay = group{1, true}
	)
	// want[name] = {with layerwise_lr, without}; names are layer-relative ("att.key.weight")
	// or whole ("emb.weight").
	type pair struct{ on, off group }
	common := map[string]pair{
		"emb.weight": {decay, decay}, "head.weight": {decay, decay},
		"ln_out.weight": {x1, x1}, "ln_out.bias": {x1, x1},
		"ln0.weight": {x1, x1}, "ln0.bias": {x1, x1}, "ln1.weight": {x1, x1}, "ln1.bias": {x1, x1},
		"ln2.weight": {x1, x1}, "ln2.bias": {x1, x1},
		"att.receptance.weight": {decay, decay}, "att.key.weight": {decay, decay},
		"att.value.weight": {decay, decay}, "att.output.weight": {decay, decay}, "att.gate.weight": {decay, decay},
		"att.ln_x.weight": {x1, x1}, "att.ln_x.bias": {x1, x1},
		"att.time_faaaa": {x1, decay}, // [H,N]: 2-D, so it decays without layerwise_lr
		"ffn.key.weight": {decay, decay}, "ffn.receptance.weight": {decay, decay}, "ffn.value.weight": {decay, decay},
	}
	x052 := map[string]pair{
		"att.time_mix_k": {x1, x1}, "att.time_mix_v": {x1, x1}, "att.time_mix_r": {x1, x1}, "att.time_mix_g": {x1, x1},
		"att.time_decay": {x2, decay}, // [H,N]
		"ffn.time_mix_k": {x1, x1}, "ffn.time_mix_r": {x1, x1},
	}
	x060 := map[string]pair{
		"att.time_maa_x": {x1, x1}, "att.time_maa_w": {x1, x1}, "att.time_maa_k": {x1, x1},
		"att.time_maa_v": {x1, x1}, "att.time_maa_r": {x1, x1}, "att.time_maa_g": {x1, x1},
		"att.time_maa_w1": {x1, decay}, "att.time_maa_w2": {x1, decay},
		"att.time_decay":    {x2, x1}, // [1,1,C]: one dimension other than 1
		"att.time_decay_w1": {x1, decay}, "att.time_decay_w2": {x1, decay},
		"ffn.time_maa_k": {x1, x1}, "ffn.time_maa_r": {x1, x1},
	}
	for _, tt := range []struct {
		a    arch.Arch
		own  map[string]pair
		dims arch.Dims
	}{
		{arch.X052, x052, arch.Dims{Arch: arch.X052, Vocab: 16, Embd: 64, FFN: 224, Layers: 2, HeadSize: 32}},
		{arch.X060, x060, arch.Dims{Arch: arch.X060, Vocab: 16, Embd: 64, FFN: 224, Layers: 2, HeadSize: 32, LoRA: arch.LoRA{Mix: 8, W: 16}}},
	} {
		specs := tt.dims.Layout()
		if len(specs) == 0 {
			t.Fatalf("%s: empty layout", tt.a)
		}
		seen := map[string]bool{}
		for _, s := range specs {
			key := s.Name
			if strings.HasPrefix(key, "blocks.") {
				key = key[strings.Index(key[len("blocks."):], ".")+len("blocks.")+1:]
			}
			w, ok := tt.own[key]
			if !ok {
				w, ok = common[key]
			}
			if !ok {
				t.Errorf("%s: parameter %s %v has no expected group", tt.a, s.Name, s.Shape)
				continue
			}
			seen[key] = true
			for _, c := range []struct {
				layerwise bool
				want      group
			}{{true, w.on}, {false, w.off}} {
				scale, decay := Groups(tt.a, s.Name, s.Shape, c.layerwise)
				if scale != c.want.scale || decay != c.want.decay {
					t.Errorf("%s layerwise_lr=%v: Groups(%s %v) = lr x%v decay %v; want lr x%v decay %v",
						tt.a, c.layerwise, s.Name, s.Shape, scale, decay, c.want.scale, c.want.decay)
				}
			}
		}
		for k := range tt.own {
			if !seen[k] {
				t.Errorf("%s: the layout has no %s (the test's table is stale)", tt.a, k)
			}
		}
	}
	// Names outside the layouts: a state-tuning time_state [H,N,N] decays (RWKV-LM "states"
	// runs with weight_decay > 0), RWKV-4's time_first rule is kept, and LoRA adapters are
	// matrices.
	for _, tt := range []struct {
		a     arch.Arch
		name  string
		shape []int
		want  group
	}{
		{arch.X060, "blocks.1.att.time_state", []int{2, 32, 32}, decay},
		{arch.X052, "blocks.0.att.time_state", []int{1, 64, 64}, decay},
		{arch.X052, "blocks.0.att.time_first", []int{64}, group{3, false}},
		{arch.X060, "blocks.0.att.time_daaaa", []int{1, 1, 64}, x2},
		{arch.X060, "blocks.0.att.key.lora_A", []int{8, 64}, decay},
		{arch.X060, "blocks.0.att.key.lora_B", []int{64, 8}, decay},
	} {
		scale, decay := Groups(tt.a, tt.name, tt.shape, true)
		if scale != tt.want.scale || decay != tt.want.decay {
			t.Errorf("%s: Groups(%s %v) = lr x%v decay %v; want lr x%v decay %v", tt.a, tt.name, tt.shape, scale, decay, tt.want.scale, tt.want.decay)
		}
	}
}
