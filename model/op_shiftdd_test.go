package model

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// tensorNode is a float64 input node of any rank with values shift + scale·N(0,1).
func tensorNode(g *G.ExprGraph, rng *rand.Rand, name string, scale, shift float64, shape ...int) *G.Node {
	if len(shape) < 3 {
		return randNode(g, rng, name, scale, shift, shape...)
	}
	t := tensor.New(tensor.Of(tensor.Float64), tensor.WithShape(shape...))
	for i, d := 0, t.Data().([]float64); i < len(d); i++ {
		d[i] = shift + scale*rng.NormFloat64()
	}
	return G.NewTensor(g, tensor.Float64, len(shape), G.WithShape(shape...), G.WithName(name), G.WithValue(t))
}

// TestX060OpGradients checks every input's gradient of the ops RWKV-5.2/6 add (SiLU, the
// data-dependent token shift ShiftLoRA, alone and in x060's whole token-shift chain) against
// central differences in float64.
func TestX060OpGradients(t *testing.T) {
	const B, T, C, M, K = 2, 3, 5, 3, 5
	N := B * T
	cases := []fdCase{
		{"Activate silu", func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
			rng := rand.New(rand.NewPCG(1, 6))
			x := randNode(g, rng, "x", 2, 0, N, C)
			y, err := Activate(x, nil, ActSiLU)
			return G.Nodes{x}, G.Nodes{y}, err
		}},
	}
	for _, I := range []int{0, 2, K - 1} {
		for _, tt := range []int{1, T} {
			cases = append(cases, fdCase{fmt.Sprintf("ShiftLoRA mix %d T=%d", I, tt), func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
				rng := rand.New(rand.NewPCG(uint64(I), uint64(tt)))
				x, prev := randNode(g, rng, "x", 1, 0, B*tt, C), randNode(g, rng, "prev", 1, 0, B, C)
				maa := randNode(g, rng, "maa", 0.3, 0.5, C)
				a, w2 := randNode(g, rng, "A", 0.7, 0, B*tt, K*M), tensorNode(g, rng, "w2", 0.5, 0, K, M, C)
				y, err := ShiftLoRA(x, prev, maa, a, w2, I, B, tt)
				return G.Nodes{x, prev, maa, a, w2}, G.Nodes{y}, err
			}})
		}
	}
	// x060's chain: xxx = ShiftLerp(maa_x), A = tanh(xxx @ w1), five ShiftLoRA mixes
	cases = append(cases, fdCase{"x060 token-shift chain", func(g *G.ExprGraph) (G.Nodes, G.Nodes, error) {
		rng := rand.New(rand.NewPCG(9, 9))
		x, prev := randNode(g, rng, "x", 1, 0, N, C), randNode(g, rng, "prev", 1, 0, B, C)
		maaX := randNode(g, rng, "maa_x", 0.3, 0.5, C)
		w1, w2 := randNode(g, rng, "w1", 0.5, 0, C, K*M), tensorNode(g, rng, "w2", 0.5, 0, K, M, C)
		wrt := G.Nodes{x, prev, maaX, w1, w2}
		xxx, err := ShiftLerp(x, prev, G.Nodes{maaX}, B, T)
		if err != nil {
			return nil, nil, err
		}
		z, err := MatMul(xxx[0], w1)
		if err != nil {
			return nil, nil, err
		}
		a, err := Activate(z, nil, ActTanh)
		if err != nil {
			return nil, nil, err
		}
		var outs G.Nodes
		for i := range K {
			maa := randNode(g, rng, fmt.Sprintf("maa%d", i), 0.3, 0.5, C)
			wrt = append(wrt, maa)
			y, err := ShiftLoRA(x, prev, maa, a, w2, i, B, T)
			if err != nil {
				return nil, nil, err
			}
			outs = append(outs, y)
		}
		return wrt, outs, nil
	}})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { checkGradients(t, c, 1e-6, 1e-7) })
	}
}

// TestShiftLoRAValues: ShiftLoRA against its definition written out (float64 and float32),
// including the first token of each sequence reading prev.
func TestShiftLoRAValues(t *testing.T) {
	const B, T, C, M, K, I = 2, 3, 4, 2, 5, 3
	for _, dt := range []tensor.Dtype{tensor.Float64, tensor.Float32} {
		g := G.NewGraph()
		mk := newNodeMaker(g, dt, 3)
		x, prev, maa, a := mk("x", 1, 0, B*T, C), mk("prev", 1, 0, B, C), mk("maa", 0.3, 0.5, C), mk("A", 1, 0, B*T, K*M)
		w2v := make([]float64, K*M*C)
		for i := range w2v {
			w2v[i] = math.Sin(float64(i))
		}
		var w2t *tensor.Dense
		if dt == tensor.Float32 {
			w2t = tensor.New(tensor.WithShape(K, M, C), tensor.WithBacking(convert[float32](w2v)))
		} else {
			w2t = tensor.New(tensor.WithShape(K, M, C), tensor.WithBacking(w2v))
		}
		w2 := G.NewTensor(g, dt, 3, G.WithShape(K, M, C), G.WithName("w2"), G.WithValue(w2t))
		y, err := ShiftLoRA(x, prev, maa, a, w2, I, B, T)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		vm.Close()
		xv, pv, mv, av, got := toFloat64(x.Value().Data()), toFloat64(prev.Value().Data()), toFloat64(maa.Value().Data()), toFloat64(a.Value().Data()), toFloat64(y.Value().Data())
		tol := 1e-14
		if dt == tensor.Float32 {
			tol = 1e-5
		}
		for r := 0; r < B*T; r++ {
			b, tt := r/T, r%T
			for c := 0; c < C; c++ {
				xx := pv[b*C+c]
				if tt > 0 {
					xx = xv[(r-1)*C+c]
				}
				m := 0.0
				for j := 0; j < M; j++ {
					m += av[r*K*M+I*M+j] * w2v[(I*M+j)*C+c]
				}
				want := xv[r*C+c] + (xx-xv[r*C+c])*(mv[c]+m)
				if d := math.Abs(got[r*C+c] - want); d > tol {
					t.Fatalf("%v row %d col %d: %v, want %v", dt, r, c, got[r*C+c], want)
				}
			}
		}
	}
}

// TestShiftLoRAShapes: a misfitting input is refused with the shapes named.
func TestShiftLoRAShapes(t *testing.T) {
	g := G.NewGraph()
	rng := rand.New(rand.NewPCG(1, 1))
	x, prev, maa := randNode(g, rng, "x", 1, 0, 6, 4), randNode(g, rng, "prev", 1, 0, 2, 4), randNode(g, rng, "maa", 1, 0, 4)
	a, w2 := randNode(g, rng, "A", 1, 0, 6, 10), tensorNode(g, rng, "w2", 1, 0, 5, 2, 4)
	if _, err := ShiftLoRA(x, prev, maa, a, w2, 5, 2, 3); err == nil {
		t.Error("mix 5 of 5 accepted")
	}
	if _, err := ShiftLoRA(x, prev, maa, a, w2, 0, 3, 2); err == nil {
		t.Error("B=3 with a (2, C) prev accepted")
	}
	if _, err := Activate(x, maa, ActSiLU); err == nil {
		t.Error("SiLU with a bias accepted")
	}
}

// TestShiftLoRABackwardFast: the float32 backward (its row loop in C where AVX2 is there, C a
// multiple of 8) against the float64 one on the same inputs, every packed gradient, sizes with one
// and with several pieces.
func TestShiftLoRABackwardFast(t *testing.T) {
	for _, sh := range []struct{ B, T, C, M int }{{2, 5, 16, 3}, {2, 64, 512, 8}} {
		B, T, C, M, K, I := sh.B, sh.T, sh.C, sh.M, 5, 1
		t.Run(fmt.Sprintf("B%d_T%d_C%d", B, T, C), func(t *testing.T) {
			if haveAVX2 && !shiftLoRARowsFast(nil, nil, nil, nil, nil, nil, nil, nil, make([]float64, 1), 0, 0, T, C) {
				t.Fatal("fast row loop refused")
			}
			rng := rand.New(rand.NewPCG(uint64(C), 5))
			r := func(n int, scale, shift float64) []float64 {
				x := make([]float64, n)
				for i := range x {
					x[i] = shift + scale*rng.NormFloat64()
				}
				return x
			}
			N := B * T
			x, prev, maa, a, w2, g := r(N*C, 1, 0), r(B*C, 1, 0), r(C, 0.3, 0.5), r(N*K*M, 0.7, 0), r(K*M*C, 0.5, 0), r(N*C, 1, 0)
			o := shiftLoRABackOp{fwd: shiftLoRAOp{B: B, T: T, C: C, M: M, K: K, I: I}}
			s, _ := o.InferShape()
			want := make([]float64, s.TotalSize())
			shiftLoRABackward(o, x, prev, maa, a, w2, g, want, make([]float64, N*C), make([]float64, N*C))
			f := convert[float32, float64]
			got := make([]float32, s.TotalSize())
			shiftLoRABackward(o, f(x), f(prev), f(maa), f(a), f(w2), f(g), got, make([]float32, N*C), make([]float32, N*C))
			nx, np, nm, na, _ := o.sizes()
			for _, part := range []struct {
				name   string
				lo, hi int
			}{{"gx", 0, nx}, {"gprev", nx, nx + np}, {"gmaa", nx + np, nx + np + nm}, {"gA", nx + np + nm, nx + np + nm + na}, {"gw2", nx + np + nm + na, len(want)}} {
				var scale float64
				for _, v := range want[part.lo:part.hi] {
					scale = math.Max(scale, math.Abs(v))
				}
				for i := part.lo; i < part.hi; i++ {
					if d := math.Abs(float64(got[i]) - want[i]); !(d <= 2e-6*math.Max(scale, 1)) {
						t.Fatalf("%s[%d]: float32 %v, float64 %v", part.name, i-part.lo, got[i], want[i])
					}
				}
			}
		})
	}
}
