package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"

	"github.com/rwkv-go/rwkv-go/arch"
)

// blocks56 is RWKV-5.2's or RWKV-6's stack of blocks on the embeddings x (NEXT-ARCH §1.1, §1.2;
// RWKV-LM RWKV-v5 src/model.py Block): ln0 in layer 0, then per layer
//
//	x += TimeMix(ln1(x)); x += ChannelMix(ln2(x))
//
// The state per layer is att_x (B, C), the WKV state (B*H*N, N) ([value][key] per head) and
// ffn_x (B, C).
func (gr *Graph) blocks56(b *builder, x *G.Node, p func(string) *G.Node) *G.Node {
	cfg := gr.m.Config
	x060 := cfg.Arch.Resolve() == arch.X060
	B, H, N := gr.opts.B, cfg.Heads(), cfg.HeadDim()
	for i := 0; i < cfg.Layers; i++ {
		pre := fmt.Sprintf("blocks.%d.", i)
		lp := func(name string) *G.Node { return p(pre + name) }
		attX, wkvS, ffnX := gr.stateInputs(b, i, B*H*N, N)
		if i == 0 {
			x = b.ln(x, lp("ln0.weight"), lp("ln0.bias"))
		}
		xa := b.ln(x, lp("ln1.weight"), lp("ln1.bias"))
		var att, wkvOut, ffn *G.Node
		if x060 {
			att, wkvOut = b.timeMix6(xa, attX, wkvS, H, lp)
		} else {
			att, wkvOut = b.timeMix5(xa, attX, wkvS, H, lp)
		}
		x = b.add(x, att)
		xf := b.ln(x, lp("ln2.weight"), lp("ln2.bias"))
		if x060 {
			ffn = b.channelMix6(xf, ffnX, lp)
		} else {
			ffn = b.channelMix(xf, ffnX, lp) // RWKV-4's: the same time_mix_k/r, σ(r) gate and relu²
		}
		x = b.add(x, ffn)
		if gr.opts.State {
			gr.stateOut = append(gr.stateOut, b.lastRows(xa), wkvOut, b.lastRows(xf))
		}
	}
	return x
}

// timeMix5 is RWKV-5.2's time mix on x = LN1 output (B*T, C) with H heads (RWKV-LM
// RWKV_Tmix_x052):
//
//	xk, xv, xr, xg = x⊙μ + shift(x)⊙(1 − μ)         (ShiftMix with time_mix_k, _v, _r, _g)
//	r = Wr xr;  k = Wk xk;  v = Wv xv;  g = SiLU(Wg xg)
//	y, sT = WKV6(r, k, v, time_decay (H,N), time_faaaa, s0)
//	out = Wo (GroupNorm_H(y, eps 64e-5) ⊙ g)       (ln_x(y/8) with eps 1e-5)
func (b *builder) timeMix5(x, prevX, s0 *G.Node, H int, p func(string) *G.Node) (out, sT *G.Node) {
	r := b.linear(b.shiftMix(x, prevX, p("att.time_mix_r")), p("att.receptance.weight"))
	k := b.linear(b.shiftMix(x, prevX, p("att.time_mix_k")), p("att.key.weight"))
	v := b.linear(b.shiftMix(x, prevX, p("att.time_mix_v")), p("att.value.weight"))
	g := b.linear(b.shiftMix(x, prevX, p("att.time_mix_g")), p("att.gate.weight")) // SiLU in wkvOut6
	return b.wkvOut6(r, k, v, p("att.time_decay"), g, s0, H, p)
}

// timeMix6 is RWKV-6's time mix on x = LN1 output (B*T, C) with H heads (RWKV-LM
// RWKV_Tmix_x060):
//
//	δ = shift(x) − x;  xxx = x + δ⊙maa_x                                 (ShiftLerp)
//	A = tanh(xxx @ time_maa_w1)  (B*T, 5M)
//	xw, xk, xv, xr, xg = x + δ⊙(maa_* + A[:, block] · time_maa_w2[·])   (ShiftLoRA, order w, k, v, r, g)
//	r = Wr xr;  k = Wk xk;  v = Wv xv;  g = SiLU(Wg xg)
//	w̃ = time_decay + tanh(xw @ time_decay_w1) @ time_decay_w2
//	y, sT = WKV6(r, k, v, w̃, time_faaaa, s0);  out = Wo (GroupNorm_H(y, eps 64e-5) ⊙ g)
func (b *builder) timeMix6(x, prevX, s0 *G.Node, H int, p func(string) *G.Node) (out, sT *G.Node) {
	var xxx G.Nodes
	if b.err == nil {
		xxx, b.err = ShiftLerp(x, prevX, G.Nodes{p("att.time_maa_x")}, b.B, b.T)
	}
	if b.err != nil {
		return nil, nil
	}
	a := b.act(b.matmul(xxx[0], p("att.time_maa_w1")), nil, ActTanh)
	w2 := p("att.time_maa_w2")
	mix := func(i int, name string) *G.Node {
		return b.do(func() (*G.Node, error) { return ShiftLoRA(x, prevX, p(name), a, w2, i, b.B, b.T) })
	}
	xw, xk, xv, xr, xg := mix(0, "att.time_maa_w"), mix(1, "att.time_maa_k"), mix(2, "att.time_maa_v"), mix(3, "att.time_maa_r"), mix(4, "att.time_maa_g")
	r := b.linear(xr, p("att.receptance.weight"))
	k := b.linear(xk, p("att.key.weight"))
	v := b.linear(xv, p("att.value.weight"))
	g := b.linear(xg, p("att.gate.weight")) // SiLU in wkvOut6
	w := b.act(b.matmul(b.act(b.matmul(xw, p("att.time_decay_w1")), nil, ActTanh), p("att.time_decay_w2")), p("att.time_decay"), ActIdentity)
	return b.wkvOut6(r, k, v, w, g, s0, H, p)
}

// wkvOut6 is the end of x052's and x060's time mix: WKV6, ln_x, the gate SiLU(g) (g = Wg xg) and
// the output projection, ln_x and the gate in one GroupNormGate node. It returns the output and
// the final WKV state.
func (b *builder) wkvOut6(r, k, v, w, g, s0 *G.Node, H int, p func(string) *G.Node) (out, sT *G.Node) {
	if b.err != nil {
		return nil, nil
	}
	y, sT, err := WKV6(r, k, v, w, p("att.time_faaaa"), s0, b.B, b.T, H)
	if err != nil {
		b.err = err
		return nil, nil
	}
	y = b.do(func() (*G.Node, error) {
		return GroupNormGate(y, p("att.ln_x.weight"), p("att.ln_x.bias"), g, H, GroupNormEpsX070)
	})
	return b.linear(y, p("att.output.weight")), sT
}

// channelMix6 is RWKV-6's feed-forward on x = LN2 output (B*T, C) (RWKV-LM RWKV_CMix_x060):
//
//	xk = x + δ⊙maa_k;  xr = x + δ⊙maa_r;  out = σ(Wr xr) ⊙ Wv relu(Wk xk)²
func (b *builder) channelMix6(x, prevX *G.Node, p func(string) *G.Node) *G.Node {
	var mixes G.Nodes
	if b.err == nil {
		mixes, b.err = ShiftLerp(x, prevX, G.Nodes{p("ffn.time_maa_k"), p("ffn.time_maa_r")}, b.B, b.T)
	}
	if b.err != nil {
		return nil
	}
	k := b.linear(mixes[0], p("ffn.key.weight"))
	k = b.do(func() (*G.Node, error) { return ReLUSquare(k) })
	v := b.linear(k, p("ffn.value.weight"))
	r := b.linear(mixes[1], p("ffn.receptance.weight"))
	return b.gate(r, v)
}
