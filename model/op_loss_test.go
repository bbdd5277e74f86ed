package model

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// TestCrossEntropyIgnoredTargets: rows whose target is IgnoreTarget add nothing to the loss,
// which is the mean over the other rows; their gradient is exactly zero, L2Wrap included; the
// other rows' gradient matches central differences of that mean.
func TestCrossEntropyIgnoredTargets(t *testing.T) {
	const N, V = 6, 7
	I := IgnoreTarget
	for _, targets := range [][]int{{0, I, 2, I, 5, 1}, {I, I, I, I, I, 3}} {
		name := fmt.Sprint(targets)
		t.Run("fd"+name, func(t *testing.T) {
			checkGradients(t, fdCase{"CrossEntropy ignored", func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
				rng := rand.New(rand.NewPCG(8, 1))
				logits := randNode(g, rng, "logits", 3, 0, N, V)
				loss, err := CrossEntropy(logits, intsNode(g, "targets", targets), false)
				return G.Nodes{logits}, G.Nodes{loss}, err
			}}, 1e-6, 1e-6)
		})
		for _, l2 := range []bool{false, true} {
			t.Run(fmt.Sprintf("value_and_zero_rows%v_l2wrap=%v", name, l2), func(t *testing.T) {
				rng := rand.New(rand.NewPCG(9, 2))
				logits := make([]float64, N*V)
				for i := range logits {
					logits[i] = 3 * rng.NormFloat64()
				}
				var want float64
				var n int
				for r, tg := range targets {
					if tg != I {
						want += logSumExp(logits[r*V:(r+1)*V]) - logits[r*V+tg]
						n++
					}
				}
				want /= float64(n)
				if got := ceForward(logits, targets, N, V); math.Abs(got-want) > 1e-12 {
					t.Errorf("loss %v, want %v (mean over %d rows)", got, want, n)
				}
				out := make([]float64, N*V)
				for i := range out {
					out[i] = math.NaN() // the backward must write every element
				}
				ceBackward(logits, targets, 0.5, l2, N, V, out)
				for r, tg := range targets {
					var sum float64
					for j, g := range out[r*V : (r+1)*V] {
						if tg == I && g != 0 {
							t.Fatalf("ignored row %d: gradient[%d] = %v, want exactly 0", r, j, g)
						}
						sum += math.Abs(g)
					}
					if tg != I && sum == 0 {
						t.Errorf("row %d: zero gradient", r)
					}
				}
			})
		}
	}
	t.Run("all_ignored", func(t *testing.T) {
		logits := []float64{1, 2, 3, 4}
		if l := ceForward(logits, []int{I, I}, 2, 2); l != 0 {
			t.Errorf("loss %v, want 0", l)
		}
		out := []float64{9, 9, 9, 9}
		ceBackward(logits, []int{I, I}, 1, true, 2, 2, out)
		for _, g := range out {
			if g != 0 {
				t.Fatalf("gradient %v, want zeros", out)
			}
		}
	})
	t.Run("out_of_range", func(t *testing.T) {
		op := crossEntropyOp{N: 1, V: 3}
		for _, tg := range []int{-1, 3, -101} {
			if _, err := op.Do(newDense(Float64, 1, 3), tensor.New(tensor.WithShape(1), tensor.WithBacking([]int{tg}))); err == nil {
				t.Errorf("target %d accepted", tg)
			}
		}
	})
	if !haveAVX2 {
		return
	}
	t.Run("avx2", func(t *testing.T) {
		const V = 50
		rng := rand.New(rand.NewPCG(4, 4))
		logits := make([]float32, N*V)
		for i := range logits {
			logits[i] = float32(2 * rng.NormFloat64())
		}
		targets := []int{3, I, 7, I, I, 49}
		fast, _ := ceForwardFast(logits, targets, N, V)
		if slow := ceForward(logits, targets, N, V); math.Abs(fast-slow) > 1e-6 {
			t.Errorf("loss: avx2 %v, go %v", fast, slow)
		}
		gf, gs := make([]float32, N*V), make([]float32, N*V)
		for i := range gf {
			gf[i] = float32(math.NaN())
		}
		ceBackwardFast(logits, targets, 0.7, true, N, V, gf)
		ceBackward(logits, targets, 0.7, true, N, V, gs)
		for i := range gs {
			if targets[i/V] == I && gf[i] != 0 {
				t.Fatalf("avx2: ignored row %d gradient %v", i/V, gf[i])
			}
			if math.Abs(float64(gf[i]-gs[i])) > 1e-6 {
				t.Fatalf("gradient[%d]: avx2 %v, go %v", i, gf[i], gs[i])
			}
		}
	})
}

// TestModelMaskedLogitsGradient: on a tiny model with L2Wrap, the gradient the loss sends to the
// logits of every masked (ignored) position is exactly 0.0, the loss is the mean NLL over the
// other positions, and the parameter gradients do not depend on what the ignored targets were
// before they were masked (they are the same as those of a batch whose other targets are equal).
func TestModelMaskedLogitsGradient(t *testing.T) {
	for _, dt := range []DType{Float32, Float64} {
		t.Run(dt.String(), func(t *testing.T) {
			const B, T = 2, 5
			cfg := Config{Layers: 1, Embd: 32, Vocab: 11, CtxLen: T}
			m, err := New(cfg, dt)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(3, 1e-4)
			// Make the logits larger than the tiny init leaves them, so every row's gradient is visible.
			rng := rand.New(rand.NewPCG(1, 1))
			for _, p := range m.Params {
				switch d := p.Value.Data().(type) {
				case []float32:
					for i := range d {
						d[i] += float32(0.3 * rng.NormFloat64())
					}
				case []float64:
					for i := range d {
						d[i] += 0.3 * rng.NormFloat64()
					}
				}
			}
			gr, err := m.NewGraph(GraphOptions{B: B, T: T, Grads: true, L2Wrap: true})
			if err != nil {
				t.Fatal(err)
			}
			defer gr.Close()
			I := IgnoreTarget
			ids := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
			targets := []int{I, I, 4, 5, I, I, 8, I, 10, 0}
			if err := gr.SetTokens(ids, targets); err != nil {
				t.Fatal(err)
			}
			if err := gr.Run(); err != nil {
				t.Fatal(err)
			}
			var back *G.Node
			for _, n := range gr.g.AllNodes() {
				if _, ok := n.Op().(crossEntropyBackOp); ok {
					back = n
				}
			}
			if back == nil {
				t.Fatal("no cross-entropy backward in the graph")
			}
			dlogits := toF64(back.Value().Data())
			V := cfg.Vocab
			for r, tg := range targets {
				nonzero := 0
				for j := range V {
					g := dlogits[r*V+j]
					if tg == I && g != 0 {
						t.Fatalf("masked position %d: d loss/d logit[%d] = %v, want exactly 0", r, j, g)
					}
					if g != 0 {
						nonzero++
					}
				}
				if tg != I && nonzero == 0 {
					t.Errorf("position %d (target %d): all-zero logits gradient", r, tg)
				}
			}
			logits := toF64(gr.Logits())
			var want float64
			var n int
			for r, tg := range targets {
				if tg != I {
					want += logSumExp(logits[r*V:(r+1)*V]) - logits[r*V+tg]
					n++
				}
			}
			want /= float64(n)
			tol := 1e-12
			if dt == Float32 {
				tol = 1e-5
			}
			if got := gr.Loss(); math.Abs(got-want) > tol*math.Max(1, want) {
				t.Errorf("loss %v, want the mean NLL over the %d unmasked positions %v", got, n, want)
			}
		})
	}
}

func toF64(d any) []float64 {
	switch v := d.(type) {
	case []float64:
		return v
	case []float32:
		out := make([]float64, len(v))
		for i, x := range v {
			out[i] = float64(x)
		}
		return out
	}
	return nil
}

// maskedCETorchScript computes, in float64, RWKV-PEFT's SFT loss (light_rwkv.py:
// sum(F.cross_entropy(reduction='none') * mask) / sum(mask)), torch's ignore_index=-100 mean,
// the gradient of the loss, and that gradient plus RWKV-PEFT's L2Wrap term (factor 1e-4/(B*T)
// at each row's argmax, every row).
const maskedCETorchScript = `
import json, sys, torch
import torch.nn.functional as F
a = json.loads(sys.argv[1])
N, V = a["N"], a["V"]
y = torch.tensor(a["logits"], dtype=torch.float64).reshape(N, V).requires_grad_()
t = torch.tensor(a["targets"])
mask = (t != -100).double()
loss = (F.cross_entropy(y, t.clamp(min=0), reduction='none') * mask).sum() / mask.sum()
ign = F.cross_entropy(y, t, ignore_index=-100)
loss.backward()
g = y.grad.clone()
m, ids = torch.max(y.detach(), -1, keepdim=True)
l2 = torch.zeros_like(g).scatter_(-1, ids, m * 1e-4 / N)
print(json.dumps({"loss": loss.item(), "ignore_index": ign.item(), "grad": g.flatten().tolist(), "l2wrap": l2.flatten().tolist()}))
`

// TestMaskedCrossEntropyMatchesTorch: the masked loss equals RWKV-PEFT's and torch's
// ignore_index mean, its gradient torch's autograd; with L2Wrap the learned rows get RWKV-PEFT's
// term and the masked rows none (RWKV-PEFT adds it there too: the one deliberate difference).
// Skips without torch unless RWKV_REQUIRE_TORCH is set.
func TestMaskedCrossEntropyMatchesTorch(t *testing.T) {
	python := testutil.RequireTorch(t)
	const N, V = 7, 9
	I := IgnoreTarget
	targets := []int{I, 3, I, I, 0, 8, I}
	rng := rand.New(rand.NewPCG(11, 3))
	logits := make([]float64, N*V)
	for i := range logits {
		logits[i] = 2 * rng.NormFloat64()
	}
	arg, _ := json.Marshal(map[string]any{"N": N, "V": V, "logits": logits, "targets": targets})
	out, err := exec.Command(python, "-c", maskedCETorchScript, string(arg)).Output()
	if err != nil {
		t.Fatalf("torch reference: %v", err)
	}
	var ref struct {
		Loss        float64   `json:"loss"`
		IgnoreIndex float64   `json:"ignore_index"`
		Grad        []float64 `json:"grad"`
		L2Wrap      []float64 `json:"l2wrap"`
	}
	if err := json.Unmarshal(out, &ref); err != nil || len(ref.Grad) != N*V {
		t.Fatalf("torch reference output: %v", err)
	}
	got := ceForward(logits, targets, N, V)
	if math.Abs(got-ref.Loss) > 1e-12 || math.Abs(got-ref.IgnoreIndex) > 1e-12 {
		t.Errorf("loss %.15g, torch %.15g (ignore_index %.15g)", got, ref.Loss, ref.IgnoreIndex)
	}
	for _, l2 := range []bool{false, true} {
		g := make([]float64, N*V)
		ceBackward(logits, targets, 1, l2, N, V, g)
		for i := range g {
			want := ref.Grad[i]
			if l2 && targets[i/V] != I {
				want += ref.L2Wrap[i]
			}
			if math.Abs(g[i]-want) > 1e-12 {
				t.Fatalf("l2wrap=%v: gradient[%d] (row %d) %.15g, torch %.15g", l2, i, i/V, g[i], want)
			}
		}
	}
}
