package model

import (
	G "gorgonia.org/gorgonia"

	"github.com/rwkv-go/rwkv-go/arch"
)

// mixers56 is RWKV-5.2's or RWKV-6's block (NEXT-ARCH §1.1, §1.2; RWKV-LM RWKV-v5 src/model.py
// Block): the WKV state is (B*H*N, N) per layer, [value][key] per head.
func (gr *Graph) mixers56(b *builder) mixers {
	cfg := gr.m.Config
	B, H, N := gr.opts.B, cfg.Heads(), cfg.HeadDim()
	m := mixers{wkvRows: B * H * N, wkvCols: N}
	if cfg.Arch.Resolve() == arch.X060 {
		m.att = func(_ int, xa, attX, wkvS *G.Node, lp func(string) *G.Node) (*G.Node, *G.Node) {
			return b.timeMix6(xa, attX, wkvS, H, lp)
		}
		m.ffn = b.channelMix6
		return m
	}
	m.att = func(_ int, xa, attX, wkvS *G.Node, lp func(string) *G.Node) (*G.Node, *G.Node) {
		return b.timeMix5(xa, attX, wkvS, H, lp)
	}
	m.ffn = b.channelMix // RWKV-4's: the same time_mix_k/r, σ(r) gate and relu²
	return m
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
