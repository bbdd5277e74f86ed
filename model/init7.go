package model

import (
	"fmt"
	"math"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

// The effective RWKV-LM x070 init (NEXT-ARCH §1.3 table; reference/rwkv7.py init_params): the
// module __init__ for every tensor that is not a 2-D `.weight` (the x_* mixes, w0, a0, v0, k_k,
// k_a, r_k, the LoRA matrices, the norms), then generate_init_weight's redraw of the 2-D
// `.weight` tensors (train.py always trains from that file), with r0 = l/(L−1), r1 = 1 − l/L,
// ddd_n = n/C, linear_n = n/(C−1) − 0.5, z_n = ((n mod N) − (N−1)/2)/((N−1)/2), zigzag = z·|z|:
//
//	x_r, x_g          1 − ddd^(0.2·r1)          w1, a1, v1, g1        0
//	x_w, x_a          1 − ddd^(0.9·r1)          w2, a2, v2, g2 [D,C]  orthogonal, gain 0.1·(√(D/C) if D > C else 1)
//	x_k, x_v          1 − ddd^(0.7·r1)          receptance, value     orthogonal, gain 1
//	ffn.x_k           1 − ddd^(r1⁴)             key                   orthogonal, gain 0.1
//	w0                −6 + 6·(n/(C−1))^(1 + r0^0.3) + 0.5 + 2.5·zigzag
//	a0                −0.19 + 0.3·zigzag + 0.4·linear          output, ffn.value     0
//	v0                0.73 − 0.4·linear                        ffn.key [F,C]         orthogonal, gain 1
//	k_k               0.71 − 0.1·linear                        emb                   U(−1e-4, 1e-4)
//	k_a 1.02, r_k −0.04, ln_x.weight ((1+l)/L)^0.7             head [V,C]            orthogonal, gain 0.5·√(V/C) if V > C else 0.5
//	LayerNorm weights 1, every bias 0
//
// With one layer r0 = 0 (RWKV-LM would divide by zero).

// The LoRA widths come from arch (DefaultLoRA, RWKV-LM's current rule; ReleasedLoRA, the
// released checkpoints'), through Config.LoRA.

// init7Deterministic reports whether the init of the tensor called name is a formula (no random
// draw): everything but the 2-D `.weight` matrices and the LoRA matrices.
func init7Deterministic(name string) bool {
	switch blockRest(name) {
	case "att.w1", "att.w2", "att.a1", "att.a2", "att.v1", "att.v2", "att.g1", "att.g2",
		"emb.weight", "head.weight", "att.receptance.weight", "att.key.weight", "att.value.weight",
		"att.output.weight", "ffn.key.weight", "ffn.value.weight":
		return false
	}
	return true
}

// init7 returns every parameter of an x070 model with dimensions d, initialised as RWKV-LM does
// (see above), in float64. Each random tensor draws from its own stream (seed, name), so the
// result does not depend on the order of the tensors.
func init7(d arch.Dims, seed uint64) (params7[float64], error) {
	L, C, V, N := d.Layers, d.Embd, d.Vocab, d.HeadSize
	switch {
	case L < 1 || C < 2 || V < 1 || d.FFN < 1:
		return nil, fmt.Errorf("x070 init: need layers, vocabulary and dim_ffn >= 1 and width >= 2, got %+v", d)
	case N < 2 || C%N != 0:
		return nil, fmt.Errorf("x070 init: width %d, head size %d: want head size >= 2 dividing the width into heads", C, N)
	case min(d.LoRA.W, d.LoRA.A, d.LoRA.G) < 1 || (d.LoRA.V < 1 && (L > 1 || d.V0Layer0)):
		return nil, fmt.Errorf("x070 init: LoRA ranks %+v: want every rank >= 1", d.LoRA)
	}
	n := func(i int) float64 { return float64(i) }
	linear := func(i int) float64 { return n(i)/n(C-1) - 0.5 }
	zigzag := func(i int) float64 {
		z := (n(i%N) - n(N-1)/2) / (n(N-1) / 2)
		return z * math.Abs(z)
	}
	ddd := func(i int) float64 { return n(i) / n(C) }
	mixExp := map[string]float64{"att.x_r": 0.2, "att.x_w": 0.9, "att.x_k": 0.7, "att.x_v": 0.7, "att.x_a": 0.9, "att.x_g": 0.2}
	return initLayout(d, seed, func(t *initTensor) error {
		if initShared(t, d) {
			return nil
		}
		last, r0, r1, fill := t.last, t.r0, t.r1, t.fill
		switch {
		case strings.HasSuffix(last, ".bias"):
		case mixExp[last] != 0:
			e := mixExp[last]
			fill(func(i int) float64 { return 1 - math.Pow(ddd(i), e*r1) })
		case last == "ffn.x_k":
			fill(func(i int) float64 { return 1 - math.Pow(ddd(i), math.Pow(r1, 4)) })
		case last == "att.w0":
			fill(func(i int) float64 {
				return -6 + 6*math.Pow(n(i)/n(C-1), 1+math.Pow(r0, 0.3)) + 0.5 + 2.5*zigzag(i)
			})
		case last == "att.a0":
			fill(func(i int) float64 { return -0.19 + 0.3*zigzag(i) + 0.4*linear(i) })
		case last == "att.v0":
			fill(func(i int) float64 { return 0.73 - 0.4*linear(i) })
		case last == "att.k_k":
			fill(func(i int) float64 { return 0.71 - 0.1*linear(i) })
		case last == "att.k_a":
			fill(func(int) float64 { return 1.02 })
		case last == "att.r_k":
			fill(func(int) float64 { return -0.04 })
		case last == "att.w1", last == "att.a1", last == "att.v1", last == "att.g1",
			last == "att.output.weight", last == "ffn.value.weight":
		case last == "att.w2", last == "att.a2", last == "att.v2", last == "att.g2":
			gain := 0.1
			if t.shape[0] > t.shape[1] {
				gain *= math.Sqrt(n(t.shape[0]) / n(t.shape[1]))
			}
			t.ortho(gain)
		case last == "att.key.weight":
			t.ortho(0.1)
		case last == "att.receptance.weight", last == "att.value.weight", last == "ffn.key.weight":
			t.ortho(1)
		default:
			return fmt.Errorf("x070 init: no rule for %q", t.name) // the layout and this switch disagree
		}
		return nil
	})
}

// params7Float32 rounds every tensor to float32.
func params7Float32(p params7[float64]) params7[float32] {
	q := make(params7[float32], len(p))
	for k, t := range p {
		d := make([]float32, len(t.Data))
		for i, x := range t.Data {
			d[i] = float32(x)
		}
		q[k] = param7[float32]{Shape: append([]int(nil), t.Shape...), Data: d}
	}
	return q
}
