package arch

// layoutX052 is RWKV-5.2 "Eagle" (RWKV-LM RWKV-v5 src/model.py RWKV_Tmix_x052 and
// RWKV_CMix_x052; NEXT-ARCH §1.1), in the order its modules register their parameters:
// 6 + 22·L tensors. C = n_embd = dim_att, F = dim_ffn, N = head_size, H = C/N.
//
//	emb.weight [V,C]
//	blocks.l: ln1, ln2 (and ln0 in layer 0, created after them) [C] weight and bias;
//	  att.time_mix_k, time_mix_v, time_mix_r, time_mix_g [1,1,C];
//	  att.time_decay [H,N] (constant in time: d = exp(−exp(time_decay)));
//	  att.time_faaaa [H,N] (the bonus u);
//	  att.receptance/key/value/output/gate.weight [C,C]; att.ln_x.weight, .bias [C] (GroupNorm(H, C));
//	  ffn.time_mix_k, time_mix_r [1,1,C]; ffn.key.weight [F,C]; ffn.receptance.weight [C,C];
//	  ffn.value.weight [C,F]
//	ln_out.weight, ln_out.bias [C]; head.weight [V,C]
func layoutX052(d Dims) []Spec {
	C, F, N, H := d.Embd, d.FFN, d.HeadSize, d.Heads()
	return frame(d, func(l int, add func(string, ...int)) {
		for _, x := range []string{"k", "v", "r", "g"} {
			add("att.time_mix_"+x, 1, 1, C)
		}
		add("att.time_decay", H, N)
		add("att.time_faaaa", H, N)
		attLinears(add, C)
		add("ffn.time_mix_k", 1, 1, C)
		add("ffn.time_mix_r", 1, 1, C)
		ffnLinears(add, C, F)
	})
}

// layoutX060 is RWKV-6 "Finch" (RWKV-LM RWKV-v5 src/model.py RWKV_Tmix_x060 and
// RWKV_CMix_x060; NEXT-ARCH §1.2), in registration order: 6 + 28·L tensors. M is the
// token-shift LoRA width (LoRA.Mix, 32 in RWKV-LM, 64 in the released C = 4096 models), W the
// decay LoRA width (LoRA.W, 64; 128 for C = 4096).
//
//	emb.weight [V,C]
//	blocks.l: ln1, ln2 (and ln0 in layer 0) [C] weight and bias;
//	  att.time_maa_x, time_maa_w, time_maa_k, time_maa_v, time_maa_r, time_maa_g [1,1,C];
//	  att.time_maa_w1 [C,5M]; att.time_maa_w2 [5,M,C] (mixes in the order w, k, v, r, g);
//	  att.time_decay [1,1,C]; att.time_decay_w1 [C,W]; att.time_decay_w2 [W,C];
//	  att.time_faaaa [H,N];
//	  att.receptance/key/value/output/gate.weight [C,C]; att.ln_x.weight, .bias [C];
//	  ffn.time_maa_k, time_maa_r [1,1,C]; ffn.key.weight [F,C]; ffn.receptance.weight [C,C];
//	  ffn.value.weight [C,F]
//	ln_out.weight, ln_out.bias [C]; head.weight [V,C]
func layoutX060(d Dims) []Spec {
	C, F, N, H, r := d.Embd, d.FFN, d.HeadSize, d.Heads(), d.LoRA
	return frame(d, func(l int, add func(string, ...int)) {
		for _, x := range []string{"x", "w", "k", "v", "r", "g"} {
			add("att.time_maa_"+x, 1, 1, C)
		}
		add("att.time_maa_w1", C, 5*r.Mix)
		add("att.time_maa_w2", 5, r.Mix, C)
		add("att.time_decay", 1, 1, C)
		add("att.time_decay_w1", C, r.W)
		add("att.time_decay_w2", r.W, C)
		add("att.time_faaaa", H, N)
		attLinears(add, C)
		add("ffn.time_maa_k", 1, 1, C)
		add("ffn.time_maa_r", 1, 1, C)
		ffnLinears(add, C, F)
	})
}

// attLinears are x052's and x060's time-mix matrices and GroupNorm, in registration order
// (the gate is created after the output).
func attLinears(add func(string, ...int), C int) {
	for _, m := range []string{"receptance", "key", "value", "output", "gate"} {
		add("att."+m+".weight", C, C)
	}
	add("att.ln_x.weight", C)
	add("att.ln_x.bias", C)
}

// ffnLinears are x052's and x060's channel-mix matrices: key [F,C], receptance [C,C], value [C,F].
func ffnLinears(add func(string, ...int), C, F int) {
	add("ffn.key.weight", F, C)
	add("ffn.receptance.weight", C, C)
	add("ffn.value.weight", C, F)
}

// inferX05 reads x052's and x060's sizes: V, C from emb.weight [V,C]; L from the
// blocks.l.ln1.weight present; F from blocks.0.ffn.key.weight [F,C]; N from
// blocks.0.att.time_faaaa [H,N]; for x060 the LoRA widths from att.time_maa_w2 [5,M,C] and
// att.time_decay_w1 [C,W] (layer 0). Match checks the rest.
func inferX05(a Arch, ts []Spec) Dims {
	shape := make(map[string][]int, len(ts))
	for _, t := range ts {
		shape[t.Name] = t.Shape
	}
	dim := func(name string, rank, i int) int {
		if s := shape[name]; len(s) == rank {
			return s[i]
		}
		return 0
	}
	d := Dims{Arch: a, Vocab: dim("emb.weight", 2, 0), Embd: dim("emb.weight", 2, 1)}
	for ; ; d.Layers++ {
		if _, ok := shape[Block(d.Layers)+"ln1.weight"]; !ok {
			break
		}
	}
	d.FFN = dim("blocks.0.ffn.key.weight", 2, 0)
	d.HeadSize = dim("blocks.0.att.time_faaaa", 2, 1)
	if a == X060 {
		d.LoRA = LoRA{Mix: dim("blocks.0.att.time_maa_w2", 3, 1), W: dim("blocks.0.att.time_decay_w1", 2, 1)}
	}
	return d
}

// DefaultFFN5 is RWKV-LM's x052/x060 dim_ffn: int(3.5·C) rounded down to a multiple of 32
// (C = 2048 gives 7168, 2560 gives 8960, 4096 gives 14336).
func DefaultFFN5(C int) int { return C * 7 / 2 / 32 * 32 }

// DefaultLoRA6 is RWKV-LM's x060 LoRA widths: 32 for the token shift (D_MIX_LORA) and 64 for
// the decay (D_DECAY_LORA). The released C = 4096 models use 64 and 128 (llama.cpp's
// converter); always read widths from the tensors.
func DefaultLoRA6() LoRA { return LoRA{Mix: 32, W: 64} }
