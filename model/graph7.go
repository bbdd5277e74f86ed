package model

import (
	G "gorgonia.org/gorgonia"

	"github.com/rwkv-go/rwkv-go/arch"
)

// unusedParam reports whether the graph of cfg never reads the parameter called name: x070's
// layer 0 v0/v1/v2 (RWKV-LM creates them in every layer; layer 0 takes its value as v_first
// instead of mixing it in). Their gradients are exact zeros.
func unusedParam(cfg Config, name string) bool {
	if cfg.Arch.Resolve() != arch.X070 {
		return false
	}
	switch name {
	case "blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2":
		return true
	}
	return false
}

// mixers7 is RWKV-7's block (NEXT-ARCH §1.3, RWKV-LM RWKV_Tmix_x070 / RWKV_CMix_x070), with
// v_first, layer 0's value, carried through every later layer's value residual. The WKV-7
// state is (B*H*N, N) per layer, [value i][key j] per head.
func (gr *Graph) mixers7(b *builder) mixers {
	cfg := gr.m.Config
	B, H, N := gr.opts.B, cfg.Heads(), cfg.HeadDim()
	var vFirst *G.Node
	return mixers{wkvRows: B * H * N, wkvCols: N,
		att: func(i int, xa, attX, wkvS *G.Node, lp func(string) *G.Node) (*G.Node, *G.Node) {
			att, wkvOut, v := b.timeMix7(xa, attX, wkvS, vFirst, i == 0, H, lp)
			if i == 0 {
				vFirst = v
			}
			return att, wkvOut
		},
		ffn: b.channelMix7}
}

func (b *builder) matmul(x, w *G.Node) *G.Node {
	if b.frozen != nil && w != nil && b.frozen(w) {
		return b.do(func() (*G.Node, error) { return frozenLinear(x, w, true) })
	}
	return b.do(func() (*G.Node, error) { return MatMul(x, w) })
}
func (b *builder) act(x, bias *G.Node, kind ActKind) *G.Node {
	return b.do(func() (*G.Node, error) { return Activate(x, bias, kind) })
}

// timeMix7 is RWKV-7's time mix on x = LN1 output (B*T, C) with H heads (RWKV-LM
// RWKV_Tmix_x070.forward):
//
//	xr, xw, xk, xv, xa, xg = x + (shift(x) − x)⊙x_m            (ShiftLerp)
//	r = Wr xr;  k = Wk xk;  v = Wv xv;  w̃ = w0 + tanh(xw w1) w2
//	layer 0: v_first = v;  else v = v + (v_first − v)⊙σ(v0 + (xv v1) v2)
//	a = σ(a0 + (xa a1) a2);  g = σ(xg g1) g2
//	α = −κ̂, κ̂ = normalize(k⊙k_k) per head;  β = κ̂⊙a;  k = k⊙(1 + (a − 1)⊙k_a)
//	o, sT = WKV7(r, w̃, k, v, α, β, s0);  o = GroupNorm_H(o) + (Σ_head r⊙k⊙r_k)·v
//	out = Wo (o⊙g)
//
// It returns the output, the final WKV-7 state and v (layer 0's is v_first).
func (b *builder) timeMix7(x, prevX, s0, vFirst *G.Node, first bool, H int, p func(string) *G.Node) (out, sT, v *G.Node) {
	var mixes G.Nodes
	if b.err == nil {
		mixes, b.err = ShiftLerp(x, prevX, G.Nodes{p("att.x_r"), p("att.x_w"), p("att.x_k"), p("att.x_v"), p("att.x_a"), p("att.x_g")}, b.B, b.T)
	}
	if b.err != nil {
		return nil, nil, nil
	}
	xr, xw, xk, xv, xa, xg := mixes[0], mixes[1], mixes[2], mixes[3], mixes[4], mixes[5]
	r := b.linear(xr, p("att.receptance.weight"))
	w := b.act(b.matmul(b.act(b.matmul(xw, p("att.w1")), nil, ActTanh), p("att.w2")), p("att.w0"), ActIdentity)
	k := b.linear(xk, p("att.key.weight"))
	v = b.linear(xv, p("att.value.weight"))
	if !first {
		z := b.matmul(b.matmul(xv, p("att.v1")), p("att.v2"))
		v = b.do(func() (*G.Node, error) { return ValueResidual(v, vFirst, p("att.v0"), z) })
	}
	a := b.act(b.matmul(b.matmul(xa, p("att.a1")), p("att.a2")), p("att.a0"), ActSigmoid)
	g := b.matmul(b.act(b.matmul(xg, p("att.g1")), nil, ActSigmoid), p("att.g2"))
	alpha := b.do(func() (*G.Node, error) { return KappaAlpha(k, p("att.k_k"), H) })
	beta := b.do(func() (*G.Node, error) { return KappaBeta(alpha, a) })
	k = b.do(func() (*G.Node, error) { return KeyMod(k, a, p("att.k_a")) })
	if b.err != nil {
		return nil, nil, nil
	}
	y, sT, err := WKV7(r, w, k, v, alpha, beta, s0, b.B, b.T, H)
	if err != nil {
		b.err = err
		return nil, nil, nil
	}
	y = b.do(func() (*G.Node, error) {
		return GroupNorm(y, p("att.ln_x.weight"), p("att.ln_x.bias"), H, GroupNormEpsX070)
	})
	y = b.do(func() (*G.Node, error) { return Bonus(y, r, k, v, p("att.r_k"), H) })
	y = b.do(func() (*G.Node, error) { return Hadamard(y, g) })
	return b.linear(y, p("att.output.weight")), sT, v
}

// channelMix7 is RWKV-7's feed-forward on x = LN2 output (B*T, C):
//
//	xk = x + (shift(x) − x)⊙ffn.x_k;  out = Wv relu(Wk xk)²
func (b *builder) channelMix7(x, prevX *G.Node, p func(string) *G.Node) *G.Node {
	var mixes G.Nodes
	if b.err == nil {
		mixes, b.err = ShiftLerp(x, prevX, G.Nodes{p("ffn.x_k")}, b.B, b.T)
	}
	if b.err != nil {
		return nil
	}
	k := b.linear(mixes[0], p("ffn.key.weight"))
	k = b.do(func() (*G.Node, error) { return ReLUSquare(k) })
	return b.linear(k, p("ffn.value.weight"))
}
