package model

import (
	"fmt"
	"hash"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// Parameter-efficient fine-tuning (RWKV-PEFT's methods, NEXT-ARCH §4.1). A Model carries its
// adapters as extra Params after the base ones, in RWKV-PEFT's names:
//
//   - LoRA/PiSSA: <module>.lora_A [r,in] and <module>.lora_B [out,r] for an adapted Linear
//     <module> (whose base weight is <module>.weight [out,in]); every graph built from the model
//     computes that Linear as LoRALinear (frozen W);
//   - state tuning: blocks.N.att.time_state, the initial WKV state of every sample of layer N
//     (x052, x060 and x070 [H,N,N] in [value][key] layout; RWKV-4 [3,C], rows aa, bb, pp),
//     broadcast over the batch.
//
// Frozen parameters get no gradient node in the graph (and so no gradient memory, and no dW
// product where the op can skip it).

// LoRASuffixA and LoRASuffixB name a module's LoRA factors; TimeStateSuffix a layer's state.
const (
	LoRASuffixA     = ".lora_A"
	LoRASuffixB     = ".lora_B"
	TimeStateSuffix = ".att.time_state"
)

// peftState is the adapter configuration of a Model (nil: none).
type peftState struct {
	lora   map[string]LoRAConfig // weight name ("blocks.3.att.key.weight") -> its layer's config
	state  bool                  // layers have att.time_state
	frozen map[string]bool
	ctl    LoRAControl
}

func (m *Model) peftInit() *peftState {
	if m.peft == nil {
		m.peft = &peftState{lora: map[string]LoRAConfig{}, frozen: map[string]bool{}}
	}
	return m.peft
}

func (m *Model) addParam(name string, shape []int) *Param {
	p := &Param{Name: name, Shape: slices.Clone(shape), Value: tensor.New(tensor.Of(m.DType), tensor.WithShape(shape...))}
	m.Params = append(m.Params, p)
	m.index[name] = p
	return p
}

// AddLoRA adds zero LoRA factors of rank r to each module (a base Linear such as
// "blocks.3.att.key", weight [out,in]) with scale (α/r for LoRA, 1 for PiSSA) and dropout; the
// dropout seed of a layer mixes seed with its name. Set the factors afterwards (InitLoRA,
// PiSSA, or an adapter file).
func (m *Model) AddLoRA(modules []string, r int, scale, dropout float64, seed uint64) error {
	if r < 1 {
		return fmt.Errorf("model: LoRA rank %d must be at least 1", r)
	}
	if !(dropout >= 0 && dropout < 1) {
		return fmt.Errorf("model: LoRA dropout %v is outside [0, 1)", dropout)
	}
	ps := m.peftInit()
	for _, mod := range modules {
		w := m.Param(mod + ".weight")
		if w == nil || len(w.Shape) != 2 || !strings.HasPrefix(mod, "blocks.") {
			return fmt.Errorf("model: LoRA target %q is not a Linear of the %v model (want blocks.N.att|ffn.<name> with a 2-D weight)", mod, m.Config)
		}
		if _, dup := ps.lora[w.Name]; dup {
			return fmt.Errorf("model: LoRA target %q given twice", mod)
		}
		out, in := w.Shape[0], w.Shape[1]
		if r > min(out, in) {
			return fmt.Errorf("model: LoRA rank %d is larger than %q %v", r, w.Name, w.Shape)
		}
		m.addParam(mod+LoRASuffixA, []int{r, in})
		m.addParam(mod+LoRASuffixB, []int{out, r})
		h := fnv.New64a()
		h.Write([]byte(mod))
		ps.lora[w.Name] = LoRAConfig{Scale: scale, Dropout: dropout, Seed: seed ^ h.Sum64()}
	}
	return nil
}

// StateShape is the shape of blocks.N.att.time_state: [H,N,N] for the architectures with heads
// (x052, x060, x070), [3,C] for RWKV-4.
func (c Config) StateShape() []int {
	if d := c.Dims(); d.HeadSize > 0 {
		return []int{d.Heads(), d.HeadSize, d.HeadSize}
	}
	return []int{3, c.Embd}
}

// AddTimeState adds a zero blocks.N.att.time_state to every layer: the graph starts every
// sample's WKV state from it.
func (m *Model) AddTimeState() {
	ps := m.peftInit()
	if ps.state {
		return
	}
	ps.state = true
	shape := m.Config.StateShape()
	for i := 0; i < m.Config.Layers; i++ {
		p := m.addParam(fmt.Sprintf("blocks.%d%s", i, TimeStateSuffix), shape)
		// the graph takes it as a matrix: (H*N, N) with heads, RWKV-4's (3, C)
		p.Value = tensor.New(tensor.Of(m.DType), tensor.WithShape(p.Len()/shape[len(shape)-1], shape[len(shape)-1]))
	}
}

// Freeze marks every parameter for which trainable returns false as frozen: graphs built
// afterwards compute no gradient for it (Graph.Grad returns zeros).
func (m *Model) Freeze(trainable func(name string) bool) {
	ps := m.peftInit()
	clear(ps.frozen)
	for _, p := range m.Params {
		if !trainable(p.Name) {
			ps.frozen[p.Name] = true
		}
	}
}

// Frozen reports whether a parameter is frozen.
func (m *Model) Frozen(name string) bool { return m.peft != nil && m.peft.frozen[name] }

// IsAdapter reports whether a parameter name is an adapter's (LoRA factor or time_state)
// rather than a base weight.
func IsAdapter(name string) bool {
	return strings.HasSuffix(name, LoRASuffixA) || strings.HasSuffix(name, LoRASuffixB) || strings.HasSuffix(name, TimeStateSuffix)
}

// LoRAModules lists the adapted modules in parameter order.
func (m *Model) LoRAModules() []string {
	var out []string
	for _, p := range m.Params {
		if mod, ok := strings.CutSuffix(p.Name, LoRASuffixA); ok {
			out = append(out, mod)
		}
	}
	return out
}

// LoRAScale is the scale of an adapted module (0 when it has no adapter).
func (m *Model) LoRAScale(module string) float64 {
	if m.peft == nil {
		return 0
	}
	return m.peft.lora[module+".weight"].Scale
}

// LoRAControl is the switch shared by the LoRA ops of every graph of the model: set Train and
// Step before each training Run (dropout masks are a function of the layer's seed and Step).
func (m *Model) LoRAControl() *LoRAControl { return &m.peftInit().ctl }

// Base returns a model sharing this one's base parameters (not copying them), without
// adapters.
func (m *Model) Base() *Model {
	b := &Model{Config: m.Config, DType: m.DType, index: map[string]*Param{}}
	for _, p := range m.Params {
		if !IsAdapter(p.Name) {
			b.Params = append(b.Params, p)
			b.index[p.Name] = p
		}
	}
	return b
}

// InitLoRAParams sets every LoRA pair as InitLoRA does, each from its own stream (seed, name).
func (m *Model) InitLoRAParams(seed uint64) error {
	for _, mod := range m.LoRAModules() {
		a, b := m.Param(mod+LoRASuffixA), m.Param(mod+LoRASuffixB)
		rng := rand.New(rand.NewPCG(seed, nameHash(a.Name)))
		av, bv := make([]float64, a.Len()), make([]float64, b.Len())
		if err := InitLoRA(av, bv, a.Shape[0], a.Shape[1], rng); err != nil {
			return err
		}
		if err := a.SetFloat64s(av); err != nil {
			return err
		}
		if err := b.SetFloat64s(bv); err != nil {
			return err
		}
	}
	return nil
}

// adapted returns the LoRA factors of a weight node's parameter, when it has them.
func (gr *Graph) adapted(w *G.Node) (a, b *G.Node, cfg LoRAConfig, ok bool) {
	ps := gr.m.peft
	if ps == nil {
		return nil, nil, cfg, false
	}
	cfg, ok = ps.lora[w.Name()]
	if !ok {
		return nil, nil, cfg, false
	}
	mod := strings.TrimSuffix(w.Name(), ".weight")
	return gr.params[gr.m.indexOf(mod+LoRASuffixA)], gr.params[gr.m.indexOf(mod+LoRASuffixB)], cfg, true
}

// timeState is layer i's initial WKV state broadcast over the batch, or nil without state
// tuning.
func (gr *Graph) timeState(b *builder, i int) *G.Node {
	if !gr.m.HasTimeState() || gr.opts.State { // a State graph takes it through SetState
		return nil
	}
	s := gr.params[gr.m.indexOf(fmt.Sprintf("blocks.%d%s", i, TimeStateSuffix))]
	groups, rows, cols := 3, 1, gr.m.Config.Embd // RWKV-4: (3,C) -> aa x B, bb x B, pp x B
	if d := gr.m.Config.Dims(); d.HeadSize > 0 { // x052, x060, x070
		groups, rows, cols = 1, d.Heads()*d.HeadSize, d.HeadSize // (H*N,N) -> B copies
	}
	return b.do(func() (*G.Node, error) {
		return G.ApplyOp(repeatOp{Groups: groups, Rows: rows, Cols: cols, B: b.B, buf: newOutBuf()}, s)
	})
}

// repeatOp: x (Groups*Rows, Cols) -> (Groups*B*Rows, Cols), each group of Rows rows repeated B
// times in a row; the gradient sums the B copies.
type repeatOp struct {
	opBase
	Groups, Rows, Cols, B int
	grad                  bool // the gradient direction: (Groups*B*Rows, Cols) -> (Groups*Rows, Cols)
	buf                   *outBuf
}

func (o repeatOp) Arity() int    { return 1 }
func (o repeatOp) Type() hm.Type { return hm.NewFnType(matT, matT) }
func (o repeatOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	if o.grad {
		return tensor.Shape{o.Groups * o.Rows, o.Cols}, nil
	}
	return tensor.Shape{o.Groups * o.B * o.Rows, o.Cols}, nil
}
func (o repeatOp) String() string {
	return fmt.Sprintf("Repeat{g=%d,r=%d,c=%d,B=%d,grad=%v}", o.Groups, o.Rows, o.Cols, o.B, o.grad)
}
func (o repeatOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o repeatOp) Hashcode() uint32      { return hashcode(o) }
func (o repeatOp) DiffWRT(int) []bool    { return []bool{true} }
func (o repeatOp) outBuffer() *outBuf    { return o.buf }
func (o repeatOp) SymDiff(_ G.Nodes, _, grad *G.Node) (G.Nodes, error) {
	g := o
	g.grad, g.buf = true, newOutBuf()
	n, err := G.ApplyOp(g, grad)
	return G.Nodes{n}, err
}
func (o repeatOp) Do(in ...G.Value) (G.Value, error) {
	s, _ := o.InferShape()
	out := o.buf.get(dtypeOf(in[0]), o.grad, s...)
	switch d := out.Data().(type) {
	case []float32:
		repeatRows(o, f32(in[0]), d)
	case []float64:
		repeatRows(o, f64(in[0]), d)
	}
	return out, nil
}

func repeatRows[F Float](o repeatOp, in, out []F) {
	blk := o.Rows * o.Cols
	for g := 0; g < o.Groups; g++ {
		for b := 0; b < o.B; b++ {
			k := (g*o.B + b) * blk
			if o.grad { // out (small) was zeroed
				small := out[g*blk : (g+1)*blk]
				for j, v := range in[k : k+blk] {
					small[j] += v
				}
				continue
			}
			copy(out[k:k+blk], in[g*blk:(g+1)*blk])
		}
	}
}

// DefaultLoRATargets are RWKV-PEFT's adapted Linears (make_linear_att, make_linear_ffn): att
// receptance, key, value, output and ffn key, value; plus ffn receptance for the architectures
// that have one (RWKV-4, x052, x060) and att gate for x052 and x060. Never emb, head, x060's
// time_maa/time_decay LoRAs or x070's small w1/a1/v1/g1 matrices.
func (c Config) DefaultLoRATargets() []string {
	t := []string{"att.receptance", "att.key", "att.value", "att.output", "ffn.key", "ffn.value"}
	switch c.Arch.Resolve() {
	case arch.X070:
	case arch.X052, arch.X060:
		t = []string{"att.receptance", "att.key", "att.value", "att.output", "att.gate", "ffn.key", "ffn.receptance", "ffn.value"}
	default:
		t = append(t, "ffn.receptance")
	}
	return t
}

// LoRAModulesFor expands targets (module names inside a block, "att.key") to every layer's
// module ("blocks.3.att.key"), checking each is a Linear with a 2-D .weight.
func (m *Model) LoRAModulesFor(targets []string) ([]string, error) {
	var out []string
	for _, tg := range targets {
		if !strings.HasPrefix(tg, "att.") && !strings.HasPrefix(tg, "ffn.") {
			return nil, fmt.Errorf("model: LoRA target %q: want att.<name> or ffn.<name> (a block's Linear, as att.key)", tg)
		}
		for i := 0; i < m.Config.Layers; i++ {
			mod := fmt.Sprintf("blocks.%d.%s", i, tg)
			if p := m.Param(mod + ".weight"); p == nil || len(p.Shape) != 2 {
				return nil, fmt.Errorf("model: LoRA target %q: the %s model has no Linear %s.weight (its Linears: %s)",
					tg, m.Config.Arch.Resolve().Title(), mod, strings.Join(blockLinears(m.Config), ", "))
			}
			out = append(out, mod)
		}
	}
	return out, nil
}

// blockLinears lists the Linear modules of a block (layer 0's, without the prefix).
func blockLinears(c Config) []string {
	var out []string
	for _, s := range Specs(c) {
		if mod, ok := strings.CutSuffix(s.Name, ".weight"); ok && len(s.Shape) == 2 && strings.HasPrefix(mod, "blocks.0.") {
			out = append(out, strings.TrimPrefix(mod, "blocks.0."))
		}
	}
	return out
}

// IsAdapterState reports whether a parameter is a layer's time_state (state tuning trains only
// those).
func IsAdapterState(name string) bool { return strings.HasSuffix(name, TimeStateSuffix) }

// HasTimeState reports whether the model has state-tuning states (AddTimeState).
func (m *Model) HasTimeState() bool { return m.peft != nil && m.peft.state }

// InitialState is the state B fresh sequences start from: NewState's, or with state tuning
// every layer's time_state in each sequence's WKV state ([H,N,N] [value][key] for the
// architectures with heads; RWKV-4 aa, bb, pp), token shifts zero.
func (m *Model) InitialState(B int) *State {
	s := NewState(m.Config, B)
	if !m.HasTimeState() {
		return s
	}
	for i := range s.Layers {
		v := m.Param(fmt.Sprintf("blocks.%d%s", i, TimeStateSuffix)).Float64s()
		l := &s.Layers[i]
		if l.WKV != nil {
			for b := 0; b < B; b++ {
				copy(l.WKV[b*len(v):(b+1)*len(v)], v)
			}
			continue
		}
		C := m.Config.Embd
		for b := 0; b < B; b++ {
			copy(l.AA[b*C:(b+1)*C], v[:C])
			copy(l.BB[b*C:(b+1)*C], v[C:2*C])
			copy(l.PP[b*C:(b+1)*C], v[2*C:])
		}
	}
	return s
}

// loraBase reports whether a parameter is the frozen W of a LoRA layer (the op has no gradient
// for it).
func (m *Model) loraBase(name string) bool {
	if m.peft == nil {
		return false
	}
	_, ok := m.peft.lora[name]
	return ok
}
