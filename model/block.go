package model

import G "gorgonia.org/gorgonia"

// builder assembles the RWKV-4 block from the custom ops, keeping the first error so the
// block reads as the equations do.
type builder struct {
	B, T int
	err  error
	// adapted gives a weight node's LoRA factors (nil: no adapters); ctl their switches.
	adapted func(w *G.Node) (a, b *G.Node, cfg LoRAConfig, ok bool)
	ctl     *LoRAControl
	// frozen reports a weight node that takes no gradient (nil: none do).
	frozen func(w *G.Node) bool
}

func (b *builder) do(f func() (*G.Node, error)) *G.Node {
	if b.err != nil {
		return nil
	}
	n, err := f()
	if err != nil {
		b.err = err
	}
	return n
}

func (b *builder) ln(x, w, bias *G.Node) *G.Node {
	return b.do(func() (*G.Node, error) { return LayerNorm(x, w, bias) })
}
func (b *builder) linear(x, w *G.Node) *G.Node {
	if b.adapted != nil && w != nil {
		if la, lb, cfg, ok := b.adapted(w); ok {
			return b.do(func() (*G.Node, error) { return LoRALinear(x, w, la, lb, cfg, b.ctl) })
		}
	}
	if b.frozen != nil && w != nil && b.frozen(w) {
		return b.do(func() (*G.Node, error) { return frozenLinear(x, w, false) })
	}
	return b.do(func() (*G.Node, error) { return Linear(x, w) })
}
func (b *builder) add(x, y *G.Node) *G.Node {
	return b.do(func() (*G.Node, error) { return Residual(x, y) })
}
func (b *builder) gate(r, y *G.Node) *G.Node {
	return b.do(func() (*G.Node, error) { return Gate(r, y) })
}
func (b *builder) shiftMix(x, prev, mix *G.Node) *G.Node {
	return b.do(func() (*G.Node, error) { return ShiftMix(x, prev, mix, b.B, b.T) })
}
func (b *builder) lastRows(x *G.Node) *G.Node {
	return b.do(func() (*G.Node, error) { return LastRows(x, b.B, b.T) })
}

// timeMix is RWKV-4's attention replacement on x = LN1 output (B*T, C):
//
//	xk, xv, xr = shift-mixes of x;  k, v, r = key(xk), value(xv), receptance(xr)
//	out = output(sigmoid(r) * WKV(time_decay, time_first, k, v))
//
// It returns the output and the final WKV state (3B, C).
func (b *builder) timeMix(x, prevX, wkvState *G.Node, p func(string) *G.Node) (out, wkvOut *G.Node) {
	k := b.linear(b.shiftMix(x, prevX, p("att.time_mix_k")), p("att.key.weight"))
	v := b.linear(b.shiftMix(x, prevX, p("att.time_mix_v")), p("att.value.weight"))
	r := b.linear(b.shiftMix(x, prevX, p("att.time_mix_r")), p("att.receptance.weight"))
	if b.err != nil {
		return nil, nil
	}
	y, sT, err := WKV(p("att.time_decay"), p("att.time_first"), k, v, wkvState, b.B, b.T)
	if err != nil {
		b.err = err
		return nil, nil
	}
	return b.linear(b.gate(r, y), p("att.output.weight")), sT
}

// channelMix is RWKV-4's feed-forward on x = LN2 output (B*T, C):
//
//	xk, xr = shift-mixes of x;  out = sigmoid(receptance(xr)) * value(relu(key(xk))²)
func (b *builder) channelMix(x, prevX *G.Node, p func(string) *G.Node) *G.Node {
	k := b.linear(b.shiftMix(x, prevX, p("ffn.time_mix_k")), p("ffn.key.weight"))
	k = b.do(func() (*G.Node, error) { return ReLUSquare(k) })
	v := b.linear(k, p("ffn.value.weight"))
	r := b.linear(b.shiftMix(x, prevX, p("ffn.time_mix_r")), p("ffn.receptance.weight"))
	return b.gate(r, v)
}
