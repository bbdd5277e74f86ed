package model

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// peftGradCase checks a PEFT model's graph gradients against central differences: every
// trainable parameter matches, every frozen one gets an exact zero.
func peftGradCheck(t *testing.T, m *Model, B, T int, ctl *LoRAControl) {
	t.Helper()
	rng := rand.New(rand.NewPCG(4, 4))
	V := m.Config.Vocab
	ids, tg := make([]int, B*T), make([]int, B*T)
	for i := range ids {
		ids[i], tg[i] = rng.IntN(V), rng.IntN(V)
	}
	gr, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	if err := gr.SetTokens(ids, tg); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		if err := gr.Run(); err != nil {
			t.Fatal(err)
		}
		return gr.Loss()
	}
	loss()
	grads := make([][]float64, len(m.Params))
	for i := range m.Params {
		grads[i] = append([]float64(nil), toFloat64(gr.Grad(i))...)
	}
	const h = 1e-5
	for i, p := range m.Params {
		w := p.F64()
		if m.Frozen(p.Name) {
			for j, g := range grads[i] {
				if g != 0 {
					t.Fatalf("%s[%d] is frozen but has gradient %v", p.Name, j, g)
				}
			}
			continue
		}
		for k := 0; k < 3; k++ {
			j := rng.IntN(len(w))
			old := w[j]
			w[j] = old + h
			lp := loss()
			w[j] = old - h
			lm := loss()
			w[j] = old
			fd := (lp - lm) / (2 * h)
			if d := math.Abs(fd - grads[i][j]); d > 1e-7*math.Max(1, math.Abs(fd)) || math.IsNaN(d) {
				t.Errorf("%s[%d]: analytic %.10g, finite difference %.10g", p.Name, j, grads[i][j], fd)
			}
		}
	}
}

func randomAdapters(m *Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, p := range m.Params {
		if !IsAdapter(p.Name) {
			continue
		}
		v := make([]float64, p.Len())
		for i := range v {
			v[i] = 0.3 * rng.NormFloat64()
		}
		if strings.HasSuffix(p.Name, TimeStateSuffix) && m.Config.Arch.Resolve() != "x070" {
			C := m.Config.Embd // RWKV-4: aa any, bb > 0, pp a log-scale
			for c := 0; c < C; c++ {
				v[C+c] = math.Abs(v[C+c]) + 0.1
			}
		}
		p.SetFloat64s(v)
	}
}

// TestLoRAGraphGradients: with LoRA on the default targets (and dropout on during training),
// the graph's gradients of the adapters and train_parts equal finite differences on both
// architectures, and every frozen base tensor gets exactly zero.
func TestLoRAGraphGradients(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.new(t, tensor.Float64)
			randomize(m, 3)
			mods, err := m.LoRAModulesFor(m.Config.DefaultLoRATargets())
			if err != nil {
				t.Fatal(err)
			}
			if err := m.AddLoRA(mods, 4, 2, 0.2, 9); err != nil {
				t.Fatal(err)
			}
			randomAdapters(m, 5)
			m.Freeze(func(n string) bool { return IsAdapter(n) || strings.Contains(n, "ln") })
			ctl := m.LoRAControl()
			ctl.Train, ctl.Step = true, 3
			peftGradCheck(t, m, 2, 4, ctl)
		})
	}
}

// TestTimeStateGradients: with state tuning, only blocks.N.att.time_state trains, and its
// gradient (summed over the batch it is broadcast to) equals finite differences.
func TestTimeStateGradients(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.new(t, tensor.Float64)
			randomize(m, 3)
			m.AddTimeState()
			randomAdapters(m, 6)
			m.Freeze(IsAdapterState)
			peftGradCheck(t, m, 3, 4, nil)
		})
	}
}

// TestLoRAMergedLogits: the adapted model's logits equal those of the base with the adapter
// merged (W + s·B·A), so an export of the merge is the adapted model.
func TestLoRAMergedLogits(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.new(t, tensor.Float64)
			randomize(m, 3)
			mods, _ := m.LoRAModulesFor(m.Config.DefaultLoRATargets())
			if err := m.AddLoRA(mods, 4, 2, 0.1, 9); err != nil {
				t.Fatal(err)
			}
			randomAdapters(m, 5)
			ids := make([]int, 8)
			for i := range ids {
				ids[i] = (i * 7) % m.Config.Vocab
			}
			logits := func(m *Model) []float64 {
				gr, err := m.NewGraph(GraphOptions{B: 2, T: 4})
				if err != nil {
					t.Fatal(err)
				}
				defer gr.Close()
				gr.SetTokens(ids, nil)
				if err := gr.Run(); err != nil {
					t.Fatal(err)
				}
				return append([]float64(nil), gr.LogitsF64()...)
			}
			want := logits(m) // no LoRAControl.Train: no dropout
			merged, err := New(m.Config, tensor.Float64)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Base().Params {
				merged.Param(p.Name).SetFloat64s(p.Float64s())
			}
			for _, mod := range m.LoRAModules() {
				w, a, b := merged.Param(mod+".weight"), m.Param(mod+LoRASuffixA), m.Param(mod+LoRASuffixB)
				if err := MergeLoRA(w.F64(), b.F64(), a.F64(), w.Shape[0], w.Shape[1], a.Shape[0], m.LoRAScale(mod)); err != nil {
					t.Fatal(err)
				}
			}
			got := logits(merged)
			for i := range want {
				if d := math.Abs(got[i] - want[i]); d > 1e-9 {
					t.Fatalf("logit %d: merged %v, adapted %v", i, got[i], want[i])
				}
			}
		})
	}
}

// TestTimeStateStartsEveryPath: a state-tuned model's samples start from its time_state in the
// broadcast graph (training), in a State graph from SetState(nil) (evaluation windows) and in
// the RNN from InitialState (generation): all three give the same logits, and they differ from
// a fresh start.
func TestTimeStateStartsEveryPath(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) {
			const B, T = 2, 5
			m := tc.new(t, tensor.Float64)
			randomize(m, 3)
			var fresh []float64
			ids := make([]int, B*T)
			for i := range ids {
				ids[i] = (i*11 + 3) % m.Config.Vocab
			}
			run := func(state bool) []float64 {
				gr, err := m.NewGraph(GraphOptions{B: B, T: T, State: state})
				if err != nil {
					t.Fatal(err)
				}
				defer gr.Close()
				gr.SetTokens(ids, nil)
				if err := gr.Run(); err != nil {
					t.Fatal(err)
				}
				return append([]float64(nil), gr.LogitsF64()...)
			}
			fresh = run(false)
			m.AddTimeState()
			randomAdapters(m, 8)
			broadcast, windows := run(false), run(true)
			rnn := m.NewRNN(B)
			s := m.InitialState(B)
			V := m.Config.Vocab
			logits := make([]float64, B*V)
			differs := false
			for tt := 0; tt < T; tt++ {
				if err := rnn.Step(s, []int{ids[tt], ids[T+tt]}, logits); err != nil {
					t.Fatal(err)
				}
				for b := 0; b < B; b++ {
					for v := 0; v < V; v++ {
						k := (b*T+tt)*V + v
						if math.Abs(broadcast[k]-windows[k]) > 1e-10 || math.Abs(broadcast[k]-logits[b*V+v]) > 1e-9 {
							t.Fatalf("b=%d t=%d v=%d: broadcast %v, State graph %v, rnn %v", b, tt, v, broadcast[k], windows[k], logits[b*V+v])
						}
						differs = differs || math.Abs(broadcast[k]-fresh[k]) > 1e-6
					}
				}
			}
			if !differs {
				t.Error("the time_state changed no logit")
			}
		})
	}
}

// TestFrozenBaseSkipsWeightGradients: a graph of a state-tuned model computes no gradient for
// its frozen Linears (no out×in product for W): its matrix-product FLOPs are about 2/3 of full
// training's (forward 2, backward to the input 2, against 2 + 4), not the same.
func TestFrozenBaseSkipsWeightGradients(t *testing.T) {
	for _, tc := range tinies {
		t.Run(tc.name, func(t *testing.T) {
			flops := func(state bool) float64 {
				m := tc.new(t, tensor.Float32)
				randomize(m, 1)
				if state {
					m.AddTimeState()
					m.Freeze(IsAdapterState)
				}
				gr, err := m.NewGraph(GraphOptions{B: 2, T: 8, Grads: true})
				if err != nil {
					t.Fatal(err)
				}
				defer gr.Close()
				ids := make([]int, 16)
				gr.SetTokens(ids, ids)
				s0 := blas.ReadStats()
				if err := gr.Run(); err != nil {
					t.Fatal(err)
				}
				return blas.ReadStats().Sub(s0).FLOPs
			}
			full, frozen := flops(false), flops(true)
			if r := frozen / full; r > 0.72 {
				t.Errorf("state tuning runs %.3g matrix-product FLOPs, full training %.3g (ratio %.2f, want about 2/3)", frozen, full, r)
			}
		})
	}
}

// TestDefaultLoRATargets: RWKV-PEFT's targets per architecture (make_linear_att/ffn): att
// receptance/key/value/output everywhere, att gate on x052/x060, ffn key/value everywhere and
// ffn receptance where the channel mix has one (not x070).
func TestDefaultLoRATargets(t *testing.T) {
	for _, tt := range []struct {
		a    arch.Arch
		want string
	}{
		{arch.X040, "att.receptance att.key att.value att.output ffn.key ffn.value ffn.receptance"},
		{arch.X052, "att.receptance att.key att.value att.output att.gate ffn.key ffn.receptance ffn.value"},
		{arch.X060, "att.receptance att.key att.value att.output att.gate ffn.key ffn.receptance ffn.value"},
		{arch.X070, "att.receptance att.key att.value att.output ffn.key ffn.value"},
	} {
		if got := strings.Join(Config{Arch: tt.a}.DefaultLoRATargets(), " "); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.a, got, tt.want)
		}
	}
}
