package model

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// The RWKV-7 time-mix ops at B=8, T=256, C=512, H=8 (head size 64), float32, forward+backward
// kernels called directly (no graph), Go kernels and, named -avx2, the C ones the ops use for
// float32 when the CPU has AVX2. tok/s counts B·T tokens per iteration.
const x7bB, x7bT, x7bC, x7bH = 8, 256, 512, 8

func x7bRand(rng *rand.Rand, n int, scale, shift float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(shift + scale*rng.NormFloat64())
	}
	return x
}

func BenchmarkX070Ops(b *testing.B) {
	const B, T, C, H = x7bB, x7bT, x7bC, x7bH
	const N, n = B * T, B * T * C
	rng := rand.New(rand.NewPCG(1, 1))
	x, y, z, u, g := x7bRand(rng, n, 1, 0), x7bRand(rng, n, 1, 0), x7bRand(rng, n, 1, 0), x7bRand(rng, n, 0.3, 0.5), x7bRand(rng, n, 1, 0)
	w, bias := x7bRand(rng, C, 0.3, 1), x7bRand(rng, C, 0.3, 0)
	prev, gprev := x7bRand(rng, B*C, 1, 0), make([]float32, B*C)
	o1, o2, o3, o4 := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	c1, c2 := make([]float32, C), make([]float32, C)
	mixes := make([][]float32, 6)
	for i := range mixes {
		mixes[i] = x7bRand(rng, C, 0.3, 0.5)
	}
	o6, g6, gm6 := make([]float32, 6*n), x7bRand(rng, 6*n, 1, 0), make([]float32, 6*C)
	for _, bc := range []struct {
		name string
		fwd  func()
		bwd  func()
	}{
		{"GroupNorm", func() { gnForward(x, w, bias, o1, N, C, H, GroupNormEpsX070) },
			func() { gnBackward(x, w, g, o2, c1, c2, N, C, H, GroupNormEpsX070) }},
		{"KappaAlpha", func() { kappaForward(x, w, o1, N, C, H) },
			func() { kappaBackward(x, w, g, o2, c1, N, C, H) }},
		{"KappaBeta", func() { hadamard(false, true, x, u, nil, o1) },
			func() { hadamard(true, true, x, u, []G.Value{nil, nil, tensor.New(tensor.WithBacking(g))}, o6[:2*n]) }},
		{"KeyMod", func() { keyModForward(x, u, w, o1, N, C) },
			func() { keyModBackward(x, u, w, g, o2, o3, c1, N, C) }},
		{"Bonus", func() { bonusForward(x, y, z, u, w, o1, N, C, H) },
			func() { bonusBackward(y, z, u, w, g, o2, o3, o4, c1, N, C, H) }},
		{"ValueResidual", func() { vresForward(x, y, w, z, o1, N, C) },
			func() { vresBackward(x, y, w, z, g, o2, o3, c1, o4, N, C) }},
		{"Activate-sigmoid+bias", func() { actForward(ActSigmoid, x, bias, o1, N, C) },
			func() { actBackward(actOp{N: N, D: C, Kind: ActSigmoid, HasBias: true}, u, g, o6[:n+C]) }},
		{"Activate-tanh", func() { actForward(ActTanh, x, nil, o1, N, C) },
			func() { actBackward(actOp{N: N, D: C, Kind: ActTanh}, u, g, o2) }},
		{"ValueResidual-avx2", func() { vresForwardFast(x, y, w, z, o1, N, C) },
			func() { vresBackwardFast(x, y, w, z, g, o2, o3, c1, o4, N, C) }},
		{"Activate-sigmoid+bias-avx2", func() { actForwardFast(ActSigmoid, x, bias, o1, N, C) },
			func() { actBackward(actOp{N: N, D: C, Kind: ActSigmoid, HasBias: true}, u, g, o6[:n+C]) }},
		{"Activate-tanh-avx2", func() { actForwardFast(ActTanh, x, nil, o1, N, C) },
			func() { actBackward(actOp{N: N, D: C, Kind: ActTanh}, u, g, o2) }},
		{"ShiftLerp-K1", func() { shiftLerpForward(x, prev, mixes[:1], o1, B, T, C) },
			func() { shiftLerpBackward(x, prev, mixes[:1], g, o2, gprev, gm6[:C], B, T, C) }},
		{"ShiftLerp-K6", func() { shiftLerpForward(x, prev, mixes, o6, B, T, C) },
			func() { shiftLerpBackward(x, prev, mixes, g6, o1, gprev, gm6, B, T, C) }},
	} {
		if strings.HasSuffix(bc.name, "-avx2") && !haveAVX2 {
			continue
		}
		b.Run(bc.name+"/fwd", func(b *testing.B) {
			for b.Loop() {
				bc.fwd()
			}
			b.ReportMetric(float64(N*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
		b.Run(bc.name+"/fwd+bwd", func(b *testing.B) {
			for b.Loop() {
				bc.fwd()
				bc.bwd()
			}
			b.ReportMetric(float64(N*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkX070ShiftGraph compares, inside a Gorgonia graph with its gradient plumbing, the
// fused token shift with six mixes (one ShiftLerp with K=6: one pass, packed output, extract
// views) against six single-mix ShiftLerp nodes (K=1 each), forward+backward; the loss is
// Σ_i Dot(out_i, R_i), the same in both.
func BenchmarkX070ShiftGraph(b *testing.B) {
	const B, T, C = x7bB, x7bT, x7bC
	for _, fused := range []bool{true, false} {
		b.Run(fmt.Sprintf("fused=%v", fused), func(b *testing.B) {
			g := G.NewGraph()
			mk := newNodeMaker(g, tensor.Float32, 1)
			x, prev := mk("x", 1, 0, B*T, C), mk("prev", 1, 0, B, C)
			var mixes G.Nodes
			for i := range 6 {
				mixes = append(mixes, mk(fmt.Sprintf("mix%d", i), 0.3, 0.5, C))
			}
			var outs G.Nodes
			var err error
			if fused {
				outs, err = shiftLerpFused(x, prev, mixes, B, T)
			} else {
				outs, err = ShiftLerp(x, prev, mixes, B, T)
			}
			if err != nil {
				b.Fatal(err)
			}
			var loss *G.Node
			for i, o := range outs {
				d, err := Dot(o, mk(fmt.Sprintf("R%d", i), 1, 0, B*T, C))
				if err != nil {
					b.Fatal(err)
				}
				if loss == nil {
					loss = d
				} else if loss, err = G.Add(loss, d); err != nil {
					b.Fatal(err)
				}
			}
			wrt := append(G.Nodes{x, prev}, mixes...)
			grads, err := G.Grad(loss, wrt...)
			if err != nil {
				b.Fatal(err)
			}
			if err := shareBuffers(g, append(G.Nodes{loss}, grads...)); err != nil {
				b.Fatal(err)
			}
			vm := G.NewTapeMachine(g)
			defer vm.Close()
			for b.Loop() {
				vm.Reset()
				if err := vm.RunAll(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
		})
	}
}

// BenchmarkX070TimeMixStandIn runs the x070 time mix of one layer (TestX070ChainGradient's
// graph: these ops, Linear for every matmul, a Gate/Residual stand-in for WKV7) forward and
// backward at B8 T256 C512 H8, LoRA width 64, float32, with shared buffers.
func BenchmarkX070TimeMixStandIn(b *testing.B) {
	const B, T, H, S, D = x7bB, x7bT, x7bH, x7bC / x7bH, 64
	g := G.NewGraph()
	mk := newNodeMaker(g, tensor.Float32, 1)
	wrt, outs, err := x7TimeMixStandInSized(mk, B, T, H, S, D)
	if err != nil {
		b.Fatal(err)
	}
	loss, err := Dot(outs[0], mk("R", 1, 0, outs[0].Shape()...))
	if err != nil {
		b.Fatal(err)
	}
	grads, err := G.Grad(loss, wrt[1:]...) // not x: the first layer's input needs none
	if err != nil {
		b.Fatal(err)
	}
	if err := shareBuffers(g, append(G.Nodes{loss}, grads...)); err != nil {
		b.Fatal(err)
	}
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	b.Logf("blas: %s", blas.Backend())
	for b.Loop() {
		vm.Reset()
		if err := vm.RunAll(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(B*T*b.N)/b.Elapsed().Seconds(), "tok/s")
}
