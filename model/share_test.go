package model

import (
	"math"
	"math/rand/v2"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
)

// TestSharedBuffersChangeNothing runs the same batches through a graph whose intermediate
// values share memory and one where every op owns its output, with state carried and its
// gradient injected, and requires bit-identical logits, loss, gradients and states, for both
// architectures.
func TestSharedBuffersChangeNothing(t *testing.T) {
	const T = 20
	for _, cfg := range []Config{
		{Layers: 3, Embd: 64, Vocab: 96, CtxLen: T},
		{Arch: arch.X070, Layers: 3, Embd: 64, Vocab: 96, CtxLen: T, HeadSize: 32, DimDecay: 8, DimAAA: 8, DimMV: 4, DimGate: 16},
	} {
		t.Run(string(cfg.Arch.Resolve()), func(t *testing.T) { testSharedBuffersChangeNothing(t, cfg) })
	}
}

func testSharedBuffersChangeNothing(t *testing.T, cfg Config) {
	const B, T = 3, 20
	m, err := New(cfg, tensor.Float32)
	if err != nil {
		t.Fatal(err)
	}
	randomize(m, 11)
	build := func(share bool) *Graph {
		shareOutputs = share
		defer func() { shareOutputs = true }()
		g, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true, L2Wrap: true, State: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}
	shared, private := build(true), build(false)
	slots, tenants := map[*bufSlot]bool{}, 0
	for _, nd := range shared.g.AllNodes() {
		if bo, ok := nd.Op().(bufferedOp); ok && bo.outBuffer() != nil && bo.outBuffer().slot != nil {
			slots[bo.outBuffer().slot] = true
			tenants++
		}
	}
	if len(slots) >= tenants {
		t.Fatalf("no sharing happened: %d outputs in %d slots", tenants, len(slots))
	}
	t.Logf("%d op outputs share %d slots", tenants, len(slots))
	rng := rand.New(rand.NewPCG(3, 3))
	s0, gs := NewState(m.Config, B), NewState(m.Config, B)
	for _, l := range gs.Layers {
		for _, f := range l.fields() {
			for i := range f {
				f[i] = rng.NormFloat64()
			}
		}
	}
	for step := 0; step < 3; step++ {
		ids, tg := make([]int, B*T), make([]int, B*T)
		for i := range ids {
			ids[i], tg[i] = rng.IntN(96), rng.IntN(96)
		}
		var outs [2][][]float64
		for k, g := range []*Graph{shared, private} {
			g.SetTokens(ids, tg)
			g.SetState(s0)
			g.SetStateGrad(gs)
			if err := g.Run(); err != nil {
				t.Fatal(err)
			}
			fin, sg := NewState(m.Config, B), NewState(m.Config, B)
			g.FinalState(fin)
			g.StateGrad(sg)
			o := [][]float64{toFloat64(g.Logits()), {g.Loss()}}
			for i := range m.Params {
				o = append(o, toFloat64(g.Grad(i)))
			}
			fs, gss := flatState(fin), flatState(sg)
			o = append(o, fs[:]...)
			o = append(o, gss[:]...)
			outs[k] = o
		}
		for i := range outs[0] {
			for j := range outs[0][i] {
				a, b := outs[0][i][j], outs[1][i][j]
				if math.Float64bits(a) != math.Float64bits(b) {
					t.Fatalf("step %d: output %d[%d]: shared %v, private %v", step, i, j, a, b)
				}
			}
		}
	}
}
