package arch

import (
	"math"
	"strings"
)

// layoutX070 is RWKV-7 (RWKV-LM RWKV-v7 train_temp/src/model.py; NEXT-ARCH §1.3), in the order
// its modules register their parameters: 6 + 33·L tensors with layer 0's unused v0/v1/v2,
// 3 fewer without them. C = n_embd, F = dim_ffn, N = head_size, H = C/N, LoRA widths W, A, V, G.
//
//	emb.weight [V,C]
//	blocks.l: ln1, ln2 (and ln0 in layer 0, created after them) [C] weight and bias;
//	  att.x_r, x_w, x_k, x_v, x_a, x_g [1,1,C];
//	  att.w1 [C,W], w2 [W,C], w0 [1,1,C]; att.a1 [C,A], a2 [A,C], a0 [1,1,C];
//	  att.v1 [C,V], v2 [V,C], v0 [1,1,C] (layer 0: only with V0Layer0); att.g1 [C,G], g2 [G,C];
//	  att.k_k, k_a [1,1,C]; att.r_k [H,N];
//	  att.receptance/key/value/output.weight [C,C]; att.ln_x.weight, .bias [C] (GroupNorm(H, C));
//	  ffn.x_k [1,1,C]; ffn.key.weight [F,C]; ffn.value.weight [C,F]
//	ln_out.weight, ln_out.bias [C]; head.weight [V,C]
//
// Unlike RWKV-4 the LoRA modules create w1, w2 before w0 (and a, v likewise).
func layoutX070(d Dims) []Spec {
	C, F, N, H, r := d.Embd, d.FFN, d.HeadSize, d.Heads(), d.LoRA
	return frame(d, func(l int, add func(string, ...int)) {
		for _, x := range []string{"r", "w", "k", "v", "a", "g"} {
			add("att.x_"+x, 1, 1, C)
		}
		add("att.w1", C, r.W)
		add("att.w2", r.W, C)
		add("att.w0", 1, 1, C)
		add("att.a1", C, r.A)
		add("att.a2", r.A, C)
		add("att.a0", 1, 1, C)
		if l > 0 || d.V0Layer0 {
			add("att.v1", C, r.V)
			add("att.v2", r.V, C)
			add("att.v0", 1, 1, C)
		}
		add("att.g1", C, r.G)
		add("att.g2", r.G, C)
		add("att.k_k", 1, 1, C)
		add("att.k_a", 1, 1, C)
		add("att.r_k", H, N)
		add("att.receptance.weight", C, C)
		add("att.key.weight", C, C)
		add("att.value.weight", C, C)
		add("att.output.weight", C, C)
		add("att.ln_x.weight", C)
		add("att.ln_x.bias", C)
		add("ffn.x_k", 1, 1, C)
		add("ffn.key.weight", F, C)
		add("ffn.value.weight", C, F)
	})
}

// inferX070 reads RWKV-7's sizes: V, C from emb.weight [V,C]; L from the blocks.l.ln1.weight
// present; F from blocks.0.ffn.key.weight [F,C]; N from blocks.0.att.r_k [H,N]; the LoRA
// widths from the second dimension of att.w1, a1, g1 (layer 0) and att.v1 (layer 1, or layer 0
// when it has one; a one-layer model without layer 0's v1 has no V, and gets DefaultLoRA's so
// that exports can write the v0/v1/v2 RWKV-LM gives layer 0); V0Layer0 from blocks.0.att.v0.
// Match checks the rest.
func inferX070(ts []Spec) Dims {
	shape := make(map[string][]int, len(ts))
	for _, t := range ts {
		shape[t.Name] = t.Shape
	}
	dim := func(name string, i int) int {
		if s := shape[name]; len(s) == 2 {
			return s[i]
		}
		return 0
	}
	d := Dims{Arch: X070, Vocab: dim("emb.weight", 0), Embd: dim("emb.weight", 1)}
	for ; ; d.Layers++ {
		if _, ok := shape[Block(d.Layers)+"ln1.weight"]; !ok {
			break
		}
	}
	_, d.V0Layer0 = shape["blocks.0.att.v0"]
	v1 := "blocks.1.att.v1"
	if d.V0Layer0 {
		v1 = "blocks.0.att.v1"
	}
	d.FFN = dim("blocks.0.ffn.key.weight", 0)
	d.HeadSize = dim("blocks.0.att.r_k", 1)
	d.LoRA = LoRA{W: dim("blocks.0.att.w1", 1), A: dim("blocks.0.att.a1", 1), V: dim(v1, 1), G: dim("blocks.0.att.g1", 1)}
	if _, ok := shape[v1]; !ok && d.Layers == 1 {
		d.LoRA.V = DefaultLoRA(d.Embd).V
	}
	return d
}

// x070Variant is the name of the first tensor of ts that belongs to the RWKV-7a (DeepEmbed:
// ffn.s_emb, ffn.s0/s1/s2) or RWKV-7b (DEA: qkv.*) variants of x070, or "".
func x070Variant(ts []Spec) string {
	for _, t := range ts {
		block := blockName.FindString(t.Name)
		if block == "" {
			continue
		}
		p := t.Name[len(block):]
		for _, v := range []string{"ffn.s_emb", "ffn.s0", "ffn.s1", "ffn.s2", "qkv."} {
			if strings.HasPrefix(p, v) {
				return t.Name
			}
		}
	}
	return ""
}

// DefaultLoRA is current RWKV-LM's choice of x070 LoRA widths for width C (RWKV-v7 train_temp
// model.py): max(32, round(k·√C/32)·32) with k = 2.5 (decay W, in-context rate A), 1.7 (value
// residual V) and 5 (gate G), rounding half to even as Python's round does (C = 1024 gives
// W = 64, not 96). Released checkpoints used an older rule (ReleasedLoRA): always read widths
// from the tensors.
func DefaultLoRA(C int) LoRA {
	s := math.Sqrt(float64(C))
	return LoRA{W: loraRound(2.5 * s), A: loraRound(2.5 * s), V: loraRound(1.7 * s), G: loraRound(5 * s)}
}

// ReleasedLoRA is the older rule the released RWKV-7 checkpoints were trained with (RWKV-LM's
// earlier RWKV_Tmix_x070; llama.cpp's calc_lora_rank): k = 1.8 (W, A) and 1.3 (V) times √C and
// G = 0.6·C^0.8, rounded as DefaultLoRA, except G = 128 for C = 1024, which the released 0.4B
// files carry (the formula gives 160).
func ReleasedLoRA(C int) LoRA {
	s := math.Sqrt(float64(C))
	r := LoRA{W: loraRound(1.8 * s), A: loraRound(1.8 * s), V: loraRound(1.3 * s), G: loraRound(0.6 * math.Pow(float64(C), 0.8))}
	if C == 1024 {
		r.G = 128
	}
	return r
}

// loraRound is max(32, round(x/32)·32) with Python's round (half to even).
func loraRound(x float64) int { return max(32, int(math.RoundToEven(x/32))*32) }
