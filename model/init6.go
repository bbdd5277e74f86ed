package model

import (
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/arch"
)

// The effective RWKV-LM x052/x060 init (RWKV-v5 src/model.py; NEXT-ARCH §1.1, §1.2): the module
// __init__ for every tensor generate_init_weight keeps (the time_* vectors, x060's LoRA
// matrices, the norms), ln_x.weight reset to ((1+l)/L)^0.7, then generate_init_weight's redraw
// of the other 2-D `.weight` tensors. With r0 = l/(L−1), r1 = 1 − l/L, ddd_n = n/C:
//
//	x052 att.time_mix_k                 ddd^r1          x060 att.time_maa_x, _w, _k   1 − ddd^r1
//	x052 att.time_mix_v                 ddd^r1 + 0.3·r0 x060 att.time_maa_v           1 − (ddd^r1 + 0.3·r0)
//	x052 att.time_mix_r, _g             ddd^(0.5·r1)    x060 att.time_maa_r, _g       1 − ddd^(0.5·r1)
//	x052 ffn.time_mix_k, _r             ddd^r1          x060 ffn.time_maa_k, _r       1 − ddd^(r1³)
//	att.time_decay (n-th of C)          −6 + 5·(n/(C−1))^(0.7 + 1.3·r0)
//	att.time_faaaa (n-th of C)          r0·(1 − n/(C−1)) + 0.1·((n+1) mod 3 − 1)
//	x060 time_maa_w1, time_decay_w1     0               x060 time_maa_w2, time_decay_w2  U(−0.01, 0.01)
//	att.receptance, att.value, ffn.key  orthogonal 1    att.key, att.gate             orthogonal 0.1
//	att.output, ffn.receptance, ffn.value  0            emb                           U(−1e-4, 1e-4)
//	head [V,C]  orthogonal 0.5·√(V/C) if V > C else 0.5 att.ln_x.weight               ((1+l)/L)^0.7
//	LayerNorm weights 1, every bias 0
//
// x060's ffn exponent r1³ is RWKV-LM's current one (@ b3b4d056, as reference/rwkv6.py); older
// revisions of model.py used r1. With one layer r0 = 0 (RWKV-LM would divide by zero).

// init6Deterministic reports whether the init of the tensor called name is a formula (no random
// draw).
func init6Deterministic(name string) bool {
	switch blockRest(name) {
	case "att.time_maa_w2", "att.time_decay_w2", "emb.weight", "head.weight", "att.receptance.weight",
		"att.key.weight", "att.value.weight", "att.gate.weight", "ffn.key.weight":
		return false
	}
	return true
}

// init6 returns every parameter of an x052 or x060 model with dimensions d, initialised as
// RWKV-LM does (see above), in float64. Each random tensor draws from its own stream (seed,
// name), so the result does not depend on the order of the tensors.
func init6(d arch.Dims, seed uint64) (params7[float64], error) {
	a := d.Arch.Resolve()
	L, C, V, N := d.Layers, d.Embd, d.Vocab, d.HeadSize
	switch {
	case a != arch.X052 && a != arch.X060:
		return nil, fmt.Errorf("x052/x060 init: architecture %v", d.Arch)
	case L < 1 || C < 2 || V < 1 || d.FFN < 1:
		return nil, fmt.Errorf("%v init: need layers, vocabulary and dim_ffn >= 1 and width >= 2, got %+v", a, d)
	case N < 1 || C%N != 0:
		return nil, fmt.Errorf("%v init: width %d, head size %d: want a head size dividing the width into heads", a, C, N)
	case a == arch.X060 && (d.LoRA.Mix < 1 || d.LoRA.W < 1):
		return nil, fmt.Errorf("x060 init: LoRA widths %+v: want d_mix_lora and d_decay_lora >= 1", d.LoRA)
	}
	n := func(i int) float64 { return float64(i) }
	ddd := func(i int) float64 { return n(i) / n(C) }
	return initLayout(d, seed, func(t *initTensor) error {
		if initShared(t, d) {
			return nil
		}
		r0, r1, fill, rng := t.r0, t.r1, t.fill, t.rng
		switch t.last {
		case "att.time_mix_k", "ffn.time_mix_k", "ffn.time_mix_r":
			fill(func(i int) float64 { return math.Pow(ddd(i), r1) })
		case "att.time_mix_v":
			fill(func(i int) float64 { return math.Pow(ddd(i), r1) + 0.3*r0 })
		case "att.time_mix_r", "att.time_mix_g":
			fill(func(i int) float64 { return math.Pow(ddd(i), 0.5*r1) })
		case "att.time_maa_x", "att.time_maa_w", "att.time_maa_k":
			fill(func(i int) float64 { return 1 - math.Pow(ddd(i), r1) })
		case "att.time_maa_v":
			fill(func(i int) float64 { return 1 - (math.Pow(ddd(i), r1) + 0.3*r0) })
		case "att.time_maa_r", "att.time_maa_g":
			fill(func(i int) float64 { return 1 - math.Pow(ddd(i), 0.5*r1) })
		case "ffn.time_maa_k", "ffn.time_maa_r":
			fill(func(i int) float64 { return 1 - math.Pow(ddd(i), r1*r1*r1) })
		case "att.time_maa_w1", "att.time_decay_w1", "att.output.weight", "ffn.receptance.weight", "ffn.value.weight":
		case "att.time_maa_w2", "att.time_decay_w2":
			fill(func(int) float64 { return (2*rng.Float64() - 1) * 0.01 })
		case "att.time_decay":
			fill(func(i int) float64 { return -6 + 5*math.Pow(n(i)/n(C-1), 0.7+1.3*r0) })
		case "att.time_faaaa":
			fill(func(i int) float64 { return r0*(1-n(i)/n(C-1)) + 0.1*n((i+1)%3-1) })
		case "att.key.weight", "att.gate.weight":
			t.ortho(0.1)
		case "att.receptance.weight", "att.value.weight", "ffn.key.weight":
			t.ortho(1)
		default:
			return fmt.Errorf("%v init: no rule for %q", a, t.name) // the layout and this switch disagree
		}
		return nil
	})
}
