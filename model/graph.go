package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// GraphOptions fixes what a Graph computes. Shapes are fixed when the graph is built.
type GraphOptions struct {
	B, T int
	// Grads adds the loss, its gradient with respect to every parameter and, with State, with
	// respect to the initial state.
	Grads bool
	// L2Wrap adds RWKV-LM's L2Wrap term to the logits gradient (the loss value is unchanged).
	L2Wrap bool
	// State exposes the final state (FinalState) and, with Grads, takes the gradient of the final
	// state from the next chunk (SetStateGrad) and returns that of the initial state (StateGrad).
	// Without it the graph still starts from SetState's state but builds none of that.
	State bool
}

// Graph is the parallel (training) form of a Model for one (B, T): a Gorgonia expression graph of
// custom ops over 2-D activations (B*T, C), its gradients and a tape machine to run it. The
// parameter nodes share memory with the Model, so updating the Model's tensors in place updates
// the graph.
type Graph struct {
	m    *Model
	opts GraphOptions
	g    *G.ExprGraph
	vm   G.VM

	ids, targets []int // backing of the Int input nodes (B*T)
	params       G.Nodes
	unused       []bool    // per parameter: not used by the graph (x070 layer 0's v0/v1/v2), zero gradient
	zeros        []any     // per unused parameter: its zero gradient
	stateIn      []*G.Node // per layer: att_x (B,C), wkv (x040 (3B,C), x052/x060/x070 (B*H*N,N)), ffn_x (B,C)
	stateOut     []*G.Node
	stateGradIn  []*G.Node
	logits, loss *G.Node
	objective    *G.Node // loss, plus Dot(final state, its given gradient) with State && Grads
	grads        G.Nodes // one per parameter
	stateGrads   G.Nodes // one per stateIn
}

// NewGraph builds the graph for opts.
func (m *Model) NewGraph(opts GraphOptions) (*Graph, error) {
	if opts.B <= 0 || opts.T <= 0 {
		return nil, fmt.Errorf("model: graph needs B, T > 0, got B=%d T=%d", opts.B, opts.T)
	}
	gr := &Graph{m: m, opts: opts, g: G.NewGraph()}
	if err := gr.build(); err != nil {
		return nil, fmt.Errorf("model: build graph %v B=%d T=%d: %w", m.Config, opts.B, opts.T, err)
	}
	if err := gr.share(); err != nil {
		return nil, fmt.Errorf("model: build graph %v B=%d T=%d: %w", m.Config, opts.B, opts.T, err)
	}
	gr.vm = G.NewTapeMachine(gr.g)
	gr.SetState(nil)
	return gr, nil
}

func (gr *Graph) input(name string, shape ...int) *G.Node {
	dt := gr.m.DType
	v := newDense(dt, shape...)
	if len(shape) == 1 {
		return G.NewVector(gr.g, dt, G.WithShape(shape...), G.WithName(name), G.WithValue(v))
	}
	return G.NewMatrix(gr.g, dt, G.WithShape(shape...), G.WithName(name), G.WithValue(v))
}

func (gr *Graph) build() error {
	m, g := gr.m, gr.g
	B, T := gr.opts.B, gr.opts.T
	N := B * T
	for _, p := range m.Params {
		s := p.Value.Shape()
		var n *G.Node
		switch s.Dims() {
		case 1:
			n = G.NewVector(g, m.DType, G.WithShape(s...), G.WithName(p.Name), G.WithValue(p.Value))
		case 3: // x060's time_maa_w2 (5, M, C)
			n = G.NewTensor(g, m.DType, 3, G.WithShape(s...), G.WithName(p.Name), G.WithValue(p.Value))
		default:
			n = G.NewMatrix(g, m.DType, G.WithShape(s...), G.WithName(p.Name), G.WithValue(p.Value))
		}
		gr.params = append(gr.params, n)
		// a State graph starts from SetState's state, which for a state-tuned model is
		// InitialState: its time_state tensors are inputs there, not parameters
		gr.unused = append(gr.unused, unusedParam(m.Config, p.Name) || m.Frozen(p.Name) || m.loraBase(p.Name) || (gr.opts.State && IsAdapterState(p.Name)))
	}
	gr.ids, gr.targets = make([]int, N), make([]int, N)
	idsNode := G.NewVector(g, tensor.Int, G.WithShape(N), G.WithName("tokens"),
		G.WithValue(tensor.New(tensor.WithShape(N), tensor.WithBacking(gr.ids))))
	p := func(name string) *G.Node { return gr.params[gr.m.indexOf(name)] }

	b := &builder{B: B, T: T, adapted: gr.adapted}
	if gr.opts.Grads && m.peft != nil {
		b.frozen = func(w *G.Node) bool { return gr.unused[gr.m.indexOf(w.Name())] }
	}
	if m.peft != nil {
		b.ctl = &m.peft.ctl
	}
	x := b.do(func() (*G.Node, error) { return Embed(p("emb.weight"), idsNode) })
	switch m.Config.Arch.Resolve() {
	case arch.X070:
		x = gr.blockStack(b, x, p, gr.mixers7(b))
	case arch.X052, arch.X060:
		x = gr.blockStack(b, x, p, gr.mixers56(b))
	default:
		x = gr.blockStack(b, x, p, gr.mixers4(b))
	}
	xo := b.ln(x, p("ln_out.weight"), p("ln_out.bias"))
	gr.logits = b.linear(xo, p("head.weight"))
	if !gr.opts.Grads {
		return b.err
	}
	targets := G.NewVector(g, tensor.Int, G.WithShape(N), G.WithName("targets"),
		G.WithValue(tensor.New(tensor.WithShape(N), tensor.WithBacking(gr.targets))))
	gr.loss = b.do(func() (*G.Node, error) { return CrossEntropy(gr.logits, targets, gr.opts.L2Wrap) })
	gr.objective = gr.loss
	var wrt G.Nodes
	for i, n := range gr.params {
		if !gr.unused[i] {
			wrt = append(wrt, n)
		}
	}
	if gr.opts.State {
		for j, out := range gr.stateOut {
			gin := gr.input(fmt.Sprintf("stategrad.%d", j), out.Shape()...)
			gr.stateGradIn = append(gr.stateGradIn, gin)
			d := b.do(func() (*G.Node, error) { return Dot(out, gin) })
			gr.objective = b.do(func() (*G.Node, error) { return G.Add(gr.objective, d) })
		}
		wrt = append(wrt, gr.stateIn...)
	}
	if b.err != nil {
		return b.err
	}
	grads, err := G.Grad(gr.objective, wrt...)
	if err != nil {
		return fmt.Errorf("gradients: %w", err)
	}
	gr.grads = make(G.Nodes, len(gr.params))
	for i := range gr.params {
		if !gr.unused[i] {
			gr.grads[i], grads = grads[0], grads[1:]
		}
	}
	gr.stateGrads = grads
	return nil
}

// stateInputs adds layer i's state inputs: att_x and ffn_x (B, C) and the WKV state
// (wkvRows, wkvCols). With state tuning the WKV state the layer reads is its time_state.
func (gr *Graph) stateInputs(b *builder, i, wkvRows, wkvCols int) (attX, wkvS, ffnX *G.Node) {
	B, C := gr.opts.B, gr.m.Config.Embd
	attX = gr.input(fmt.Sprintf("state.%d.att_x", i), B, C)
	wkvS = gr.input(fmt.Sprintf("state.%d.wkv", i), wkvRows, wkvCols)
	ffnX = gr.input(fmt.Sprintf("state.%d.ffn_x", i), B, C)
	gr.stateIn = append(gr.stateIn, attX, wkvS, ffnX)
	if ts := gr.timeState(b, i); ts != nil {
		wkvS = ts
	}
	return attX, wkvS, ffnX
}

// mixers are one architecture's halves of a block, for blockStack: att is the time mix of
// layer i on xa = ln1(x) with the layer's state inputs, returning its output and the final WKV
// state; ffn is the channel mix on xf = ln2(x). wkvRows × wkvCols is the shape of the layer's
// WKV state input (RWKV-4: aa, bb, pp as 3·B rows of C; the headed archs: B·H·N rows of N).
type mixers struct {
	wkvRows, wkvCols int
	att              func(i int, xa, attX, wkvS *G.Node, lp func(string) *G.Node) (out, wkvOut *G.Node)
	ffn              func(xf, ffnX *G.Node, lp func(string) *G.Node) *G.Node
}

// blockStack is RWKV-LM's Block stacked n_layer times on the embeddings x, the same for every
// architecture: ln0 in layer 0, then per layer
//
//	x += TimeMix(ln1(x)); x += ChannelMix(ln2(x))
//
// with each layer's state inputs (att_x, the WKV state, ffn_x) and, with Options.State, its
// final state as outputs.
func (gr *Graph) blockStack(b *builder, x *G.Node, p func(string) *G.Node, m mixers) *G.Node {
	for i := 0; i < gr.m.Config.Layers; i++ {
		pre := fmt.Sprintf("blocks.%d.", i)
		lp := func(name string) *G.Node { return p(pre + name) }
		attX, wkvS, ffnX := gr.stateInputs(b, i, m.wkvRows, m.wkvCols)
		if i == 0 {
			x = b.ln(x, lp("ln0.weight"), lp("ln0.bias"))
		}
		xa := b.ln(x, lp("ln1.weight"), lp("ln1.bias"))
		att, wkvOut := m.att(i, xa, attX, wkvS, lp)
		x = b.add(x, att)
		xf := b.ln(x, lp("ln2.weight"), lp("ln2.bias"))
		x = b.add(x, m.ffn(xf, ffnX, lp))
		if gr.opts.State {
			gr.stateOut = append(gr.stateOut, b.lastRows(xa), wkvOut, b.lastRows(xf))
		}
	}
	return x
}

// mixers4 is RWKV-4's block: per-channel WKV state aa, bb, pp (3·B rows of C).
func (gr *Graph) mixers4(b *builder) mixers {
	return mixers{wkvRows: 3 * gr.opts.B, wkvCols: gr.m.Config.Embd,
		att: func(_ int, xa, attX, wkvS *G.Node, lp func(string) *G.Node) (*G.Node, *G.Node) {
			return b.timeMix(xa, attX, wkvS, lp)
		},
		ffn: b.channelMix}
}

// shareOutputs is switched off by a test that checks sharing changes no result.
var shareOutputs = true

// share lets intermediate values that are never alive together use the same memory; the
// values read after Run keep their own.
func (gr *Graph) share() error {
	if !shareOutputs {
		return nil
	}
	keep := append(G.Nodes{gr.logits}, gr.stateOut...)
	if gr.loss != nil {
		keep = append(keep, gr.loss, gr.objective)
	}
	for _, g := range gr.grads {
		if g != nil {
			keep = append(keep, g)
		}
	}
	keep = append(keep, gr.stateGrads...)
	return shareBuffers(gr.g, keep)
}

// indexOf is the position of a parameter in m.Params.
func (m *Model) indexOf(name string) int {
	for i, p := range m.Params {
		if p.Name == name {
			return i
		}
	}
	panic("model: no parameter " + name)
}

// SetTokens copies the inputs and targets (B*T each, row-major (B, T)) into the graph. Targets
// are ignored by a graph without Grads and may be nil there; a target IgnoreTarget leaves its
// position out of the loss.
func (gr *Graph) SetTokens(ids, targets []int) error {
	V := gr.m.Config.Vocab
	if len(ids) != len(gr.ids) || (gr.opts.Grads && len(targets) != len(gr.targets)) {
		return fmt.Errorf("model: graph takes %d tokens and targets, got %d and %d", len(gr.ids), len(ids), len(targets))
	}
	for i, id := range ids {
		if id < 0 || id >= V {
			return fmt.Errorf("model: token id %d at position %d is outside the vocabulary [0, %d)", id, i, V)
		}
	}
	copy(gr.ids, ids)
	if gr.opts.Grads {
		for i, t := range targets {
			if t != IgnoreTarget && (t < 0 || t >= V) {
				return fmt.Errorf("model: target id %d at position %d is outside the vocabulary [0, %d)", t, i, V)
			}
		}
		copy(gr.targets, targets)
	}
	return nil
}

// SetState sets the state the sequences start from; nil means fresh sequences (for a
// state-tuned model, InitialState).
func (gr *Graph) SetState(s *State) error {
	if s == nil && gr.m.HasTimeState() {
		s = gr.m.InitialState(gr.opts.B)
	}
	if s == nil && gr.m.Config.Arch.HasHeads() { // fresh x052/x060/x070 state: zeros
		for _, n := range gr.stateIn {
			setFloats(n.Value(), nil)
		}
		return nil
	}
	if s == nil {
		s = NewState(gr.m.Config, gr.opts.B)
	}
	if err := s.check(gr.m.Config, gr.opts.B, "graph"); err != nil {
		return err
	}
	for i, l := range s.Layers {
		putState(gr.stateIn[3*i:3*i+3], l)
	}
	return nil
}

// SetStateGrad sets the gradient of the loss of later chunks with respect to this chunk's final
// state; nil means none (the last chunk). Needs State and Grads.
func (gr *Graph) SetStateGrad(s *State) error {
	if !gr.opts.State || !gr.opts.Grads {
		return fmt.Errorf("model: SetStateGrad needs a graph built with State and Grads")
	}
	if s == nil {
		for _, n := range gr.stateGradIn {
			setFloats(n.Value(), nil)
		}
		return nil
	}
	if err := s.check(gr.m.Config, gr.opts.B, "graph"); err != nil {
		return err
	}
	for i, l := range s.Layers {
		putState(gr.stateGradIn[3*i:3*i+3], l)
	}
	return nil
}

// graphParts groups one layer's state as the graph's three inputs take it: att_x; the WKV
// state (x040: AA, BB, PP stacked (3B, C); x070: WKV (B*H*N, N)); ffn_x.
func (l LayerState) graphParts() [3][][]float64 {
	if l.WKV != nil {
		return [3][][]float64{{l.AttX}, {l.WKV}, {l.FFNX}}
	}
	return [3][][]float64{{l.AttX}, {l.AA, l.BB, l.PP}, {l.FFNX}}
}

// putState writes one layer's state into its three graph inputs.
func putState(n []*G.Node, l LayerState) {
	for i, parts := range l.graphParts() {
		setFloats(n[i].Value(), parts...)
	}
}

// getState reads three graph values (att_x, wkv, ffn_x) into one layer's state.
func getState(v []G.Value, l LayerState) {
	for i, parts := range l.graphParts() {
		getFloats(v[i], parts...)
	}
}

// setFloats fills a tensor with the concatenation of parts; no parts means zeros.
func setFloats(v G.Value, parts ...[]float64) {
	switch d := v.Data().(type) {
	case []float32:
		clear(d)
		for _, p := range parts {
			for i, x := range p {
				d[i] = float32(x)
			}
			d = d[len(p):]
		}
	case []float64:
		clear(d)
		for _, p := range parts {
			d = d[copy(d, p):]
		}
	}
}

// getFloats splits a tensor's values into parts.
func getFloats(v G.Value, parts ...[]float64) {
	switch d := v.Data().(type) {
	case []float32:
		for _, p := range parts {
			for i := range p {
				p[i] = float64(d[i])
			}
			d = d[len(p):]
		}
	case []float64:
		for _, p := range parts {
			d = d[copy(p, d):]
		}
	}
}

// Run executes the graph once: forward and, with Grads, backward.
func (gr *Graph) Run() error {
	gr.vm.Reset()
	if err := gr.vm.RunAll(); err != nil {
		return fmt.Errorf("model: run graph: %w", err)
	}
	return nil
}

// Loss is the mean cross-entropy of the last Run (needs Grads).
func (gr *Graph) Loss() float64 {
	v, err := scalarOf(gr.loss.Value())
	if err != nil {
		panic(err)
	}
	return v
}

// Logits of the last Run, (B*T, V) row-major: a []float32 or []float64 by the model dtype, for
// code generic over it (TokenNLL). It is only valid until the next Run.
func (gr *Graph) Logits() any { return gr.logits.Value().Data() }

// LogitsF32 is Logits of a Float32 model (nil for Float64).
func (gr *Graph) LogitsF32() []float32 { d, _ := gr.Logits().([]float32); return d }

// LogitsF64 is Logits of a Float64 model (nil for Float32).
func (gr *Graph) LogitsF64() []float64 { d, _ := gr.Logits().([]float64); return d }

// Grad is the gradient of the last Run for parameter i (Model.Params order), row-major in
// Param.Shape: a []float32 or []float64 by the model dtype. It is only valid until the next Run.
func (gr *Graph) Grad(i int) any {
	if gr.grads[i] == nil {
		if gr.zeros == nil {
			gr.zeros = make([]any, len(gr.params))
		}
		if gr.zeros[i] == nil {
			gr.zeros[i] = newDense(gr.m.DType, gr.m.Params[i].Len()).Data()
		}
		return gr.zeros[i]
	}
	return gr.grads[i].Value().Data()
}

// GradF32 is Grad of a Float32 model (nil for Float64).
func (gr *Graph) GradF32(i int) []float32 { d, _ := gr.Grad(i).([]float32); return d }

// GradF64 is Grad of a Float64 model (nil for Float32).
func (gr *Graph) GradF64(i int) []float64 { d, _ := gr.Grad(i).([]float64); return d }

// FinalState copies the state after the last token of the last Run into dst (needs State).
func (gr *Graph) FinalState(dst *State) {
	for i, l := range dst.Layers {
		getState([]G.Value{gr.stateOut[3*i].Value(), gr.stateOut[3*i+1].Value(), gr.stateOut[3*i+2].Value()}, l)
	}
}

// StateGrad copies the gradient with respect to the initial state into dst (needs State, Grads).
func (gr *Graph) StateGrad(dst *State) {
	for i, l := range dst.Layers {
		getState([]G.Value{gr.stateGrads[3*i].Value(), gr.stateGrads[3*i+1].Value(), gr.stateGrads[3*i+2].Value()}, l)
	}
}

// Options returns the options the graph was built with.
func (gr *Graph) Options() GraphOptions { return gr.opts }

// Close releases the tape machine.
func (gr *Graph) Close() error { return gr.vm.Close() }
