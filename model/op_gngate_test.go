package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestGroupNormGateGradients checks every input's gradient of GroupNormGate against central
// differences in float64 (groups of 4 and of 8 channels).
func TestGroupNormGateGradients(t *testing.T) {
	for _, sh := range []struct{ N, C, H int }{{3, 8, 2}, {2, 16, 2}} {
		c := fdCase{fmt.Sprintf("N%d_C%d_H%d", sh.N, sh.C, sh.H), func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
			rng := rand.New(rand.NewPCG(uint64(sh.C), 8))
			x, z := randNode(g, rng, "x", 1, 0.3, sh.N, sh.C), randNode(g, rng, "z", 2, 0, sh.N, sh.C)
			w, b := randNode(g, rng, "w", 0.5, 1, sh.C), randNode(g, rng, "b", 0.5, 0, sh.C)
			y, err := GroupNormGate(x, w, b, z, sh.H, 0.1)
			return G.Nodes{x, w, b, z}, G.Nodes{y}, err
		}}
		t.Run(c.name, func(t *testing.T) { checkGradients(t, c, 1e-6, 1e-7) })
	}
}

// TestGroupNormGateComposition: the fused op equals GroupNorm, Activate(·, ActSiLU) and Hadamard
// as separate nodes, values and every gradient, in float64 (to rounding) and in float32 (the AVX2
// kernels where they run, group size 64 as RWKV's heads and 8; within 2e-5 of the largest value).
func TestGroupNormGateComposition(t *testing.T) {
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		for _, sh := range []struct{ N, C, H int }{{5, 16, 2}, {40, 512, 8}} {
			t.Run(fmt.Sprintf("%s_N%d_C%d", dt, sh.N, sh.C), func(t *testing.T) {
				run := func(fused bool) [][]float64 {
					g := G.NewGraph()
					mk := newNodeMaker(g, dt, 11)
					x, z := mk("x", 1, 0.3, sh.N, sh.C), mk("z", 2, 0, sh.N, sh.C)
					w, b := mk("w", 0.5, 1, sh.C), mk("b", 0.5, 0, sh.C)
					r := mk("r", 1, 0, sh.N, sh.C)
					var y *G.Node
					var err error
					if fused {
						y, err = GroupNormGate(x, w, b, z, sh.H, GroupNormEpsX070)
					} else {
						var gn, s *G.Node
						if gn, err = GroupNorm(x, w, b, sh.H, GroupNormEpsX070); err == nil {
							if s, err = Activate(z, nil, ActSiLU); err == nil {
								y, err = Hadamard(gn, s)
							}
						}
					}
					if err != nil {
						t.Fatal(err)
					}
					loss := G.Must(G.Sum(G.Must(G.HadamardProd(y, r))))
					wrt := G.Nodes{x, w, b, z}
					if _, err := G.Grad(loss, wrt...); err != nil {
						t.Fatal(err)
					}
					vm := G.NewTapeMachine(g)
					defer vm.Close()
					if err := vm.RunAll(); err != nil {
						t.Fatal(err)
					}
					out := [][]float64{toFloat64(y.Value().Data())}
					for _, n := range wrt {
						gv, err := n.Grad()
						if err != nil {
							t.Fatal(err)
						}
						out = append(out, toFloat64(gv.Data()))
					}
					return out
				}
				got, want := run(true), run(false)
				tol := 1e-12
				if dt == tensor.Float32 {
					tol = 2e-5
				}
				for k, name := range []string{"y", "gx", "gw", "gb", "gz"} {
					var scale float64
					for _, v := range want[k] {
						scale = math.Max(scale, math.Abs(v))
					}
					for i := range want[k] {
						if d := math.Abs(got[k][i] - want[k][i]); !(d <= tol*math.Max(scale, 1)) {
							t.Fatalf("%s[%d]: fused %v, composed %v", name, i, got[k][i], want[k][i])
						}
					}
				}
			})
		}
	}
}
