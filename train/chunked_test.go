package train

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/model"
)

// tinyX070 is a tiny RWKV-7 shape for tests: 2 heads of 16, distinct LoRA widths.
var tinyX070 = model.Config{Arch: arch.X070, Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24, HeadSize: 16,
	DimDecay: 8, DimAAA: 4, DimMV: 12, DimGate: 16}

// tinyX052 and tinyX060 are tiny RWKV-5.2 and RWKV-6 shapes for tests: 2 heads of 16; x060 with
// token-shift and decay LoRA widths that differ.
var (
	tinyX052 = model.Config{Arch: arch.X052, Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24, HeadSize: 16}
	tinyX060 = model.Config{Arch: arch.X060, Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24, HeadSize: 16, DimMix: 8, DimDecay: 12}
)

// randomModel is a tiny RWKV-4 model with non-degenerate random weights (no zero matrices), so
// that every gradient is non-trivial.
func randomModel(t *testing.T, dt model.DType) *model.Model {
	return randomModelOf(t, model.Config{Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24}, dt)
}

// randomModelOf is randomModel for any config: its init plus N(0, 0.2²) on every weight.
func randomModelOf(t *testing.T, cfg model.Config, dt model.DType) *model.Model {
	m, err := model.New(cfg, dt)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(3, 0.5)
	rng := rand.New(rand.NewPCG(4, 4))
	for _, p := range m.Params {
		v := p.Float64s()
		for i := range v {
			v[i] += 0.2 * rng.NormFloat64()
		}
		p.SetFloat64s(v)
	}
	return m
}

// gradsOf runs fn and returns the summed weighted gradients it reports and its loss.
func gradsOf(t *testing.T, m *model.Model, fn func(add func(*model.Graph, int, float64)) (float64, error)) (float64, [][]float64) {
	sum := make([][]float64, len(m.Params))
	for i, p := range m.Params {
		sum[i] = make([]float64, p.Len())
	}
	loss, err := fn(func(g *model.Graph, i int, w float64) {
		switch d := g.Grad(i).(type) {
		case []float32:
			for j, v := range d {
				sum[i][j] += w * float64(v)
			}
		case []float64:
			for j, v := range d {
				sum[i][j] += w * v
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return loss, sum
}

func singlePass(t *testing.T, m *model.Model, B, T int, x, y []int) (float64, [][]float64) {
	g, err := m.NewGraph(model.GraphOptions{B: B, T: T, Grads: true, L2Wrap: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	return gradsOf(t, m, func(add func(*model.Graph, int, float64)) (float64, error) {
		g.SetTokens(x, y)
		if err := g.Run(); err != nil {
			return 0, err
		}
		for i := range m.Params {
			add(g, i, 1)
		}
		return g.Loss(), nil
	})
}

// TestChunkedExactEqualsSinglePass: exact chunked training gives the loss and the gradients of
// one pass over the whole sample, for chunk sizes that divide T and ones that do not, for
// RWKV-4, RWKV-5.2, RWKV-6 and RWKV-7 (whose WKV state gradient flows back through the chunk
// borders).
func TestChunkedExactEqualsSinglePass(t *testing.T) {
	const B, T = 2, 24
	for _, tc := range []struct {
		cfg model.Config
		dt  model.DType
		tol float64
	}{
		{model.Config{Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24}, model.Float64, 1e-9},
		{model.Config{Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24}, model.Float32, 1e-5},
		{tinyX070, model.Float64, 1e-9},
		{tinyX070, model.Float32, 1e-5},
		{tinyX052, model.Float64, 1e-9},
		{tinyX060, model.Float64, 1e-9},
		{tinyX060, model.Float32, 1e-5},
	} {
		m := randomModelOf(t, tc.cfg, tc.dt)
		rng := rand.New(rand.NewPCG(5, 5))
		x, y := make([]int, B*T), make([]int, B*T)
		for i := range x {
			x[i], y[i] = rng.IntN(48), rng.IntN(48)
		}
		wantLoss, want := singlePass(t, m, B, T, x, y)
		for _, chunk := range []int{1, 5, 8, 12, 24} {
			t.Run(fmt.Sprintf("%s/%v/chunk=%d", tc.cfg.Arch.Resolve(), tc.dt, chunk), func(t *testing.T) {
				r, err := newChunkRunner(m, B, T, chunk, BPTTExact, true)
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				loss, got := gradsOf(t, m, func(add func(*model.Graph, int, float64)) (float64, error) { return r.run(x, y, add) })
				if math.Abs(loss-wantLoss) > tc.tol*wantLoss {
					t.Fatalf("loss %v, single pass %v", loss, wantLoss)
				}
				var rel float64
				for i, p := range m.Params {
					var worst, scale float64
					for j := range want[i] {
						worst = math.Max(worst, math.Abs(got[i][j]-want[i][j]))
						scale = math.Max(scale, math.Abs(want[i][j]))
					}
					if worst > tc.tol*scale {
						t.Fatalf("%s: max diff %.3g, relative %.3g", p.Name, worst, worst/scale)
					}
					if scale > 0 {
						rel = math.Max(rel, worst/scale)
					}
				}
				t.Logf("worst gradient difference %.3g of its tensor's largest", rel)
			})
		}
	}
}

// TestChunkedTruncated: for RWKV-4, RWKV-6 and RWKV-7, the forward (loss) is the single pass's; the gradient of the first
// chunk is that of an unchunked pass over the first chunk alone; later chunks differ from the
// exact gradient because the border gradient is cut.
func TestChunkedTruncated(t *testing.T) {
	for _, cfg := range []model.Config{{Layers: 2, Embd: 32, Vocab: 48, CtxLen: 24}, tinyX070, tinyX060} {
		t.Run(string(cfg.Arch.Resolve()), func(t *testing.T) { testChunkedTruncated(t, cfg) })
	}
}

func testChunkedTruncated(t *testing.T, cfg model.Config) {
	const B, T, chunk = 2, 24, 8
	m := randomModelOf(t, cfg, model.Float64)
	rng := rand.New(rand.NewPCG(6, 6))
	x, y := make([]int, B*T), make([]int, B*T)
	for i := range x {
		x[i], y[i] = rng.IntN(48), rng.IntN(48)
	}
	wantLoss, exact := singlePass(t, m, B, T, x, y)
	r, err := newChunkRunner(m, B, T, chunk, BPTTTruncated, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	calls := 0
	first := make([][]float64, len(m.Params))
	loss, all := gradsOf(t, m, func(add func(*model.Graph, int, float64)) (float64, error) {
		return r.run(x, y, func(g *model.Graph, i int, w float64) {
			if calls < len(m.Params) { // chunk 0 reports first
				first[i] = append([]float64(nil), g.GradF64(i)...)
			}
			calls++
			add(g, i, w)
		})
	})
	if math.Abs(loss-wantLoss) > 1e-12*wantLoss {
		t.Fatalf("truncated loss %v, single pass %v", loss, wantLoss)
	}
	x0, y0 := r.slice(nil, x, 0, chunk), r.slice(nil, y, 0, chunk)
	_, want0 := singlePass(t, m, B, chunk, x0, y0)
	for i, p := range m.Params {
		for j := range want0[i] {
			if d := math.Abs(first[i][j] - want0[i][j]); d > 1e-10*(1+math.Abs(want0[i][j])) {
				t.Fatalf("first chunk %s[%d]: %v, unchunked %v", p.Name, j, first[i][j], want0[i][j])
			}
		}
	}
	differs := false
	for i := range all {
		for j := range all[i] {
			differs = differs || math.Abs(all[i][j]-exact[i][j]) > 1e-6
		}
	}
	if !differs {
		t.Fatal("truncated gradients equal the exact ones: the border gradient was not cut")
	}
}

// TestTrainerChunkedStep: the trainer with train.chunk_len in exact mode takes the same steps as
// without it, for RWKV-4, RWKV-5.2, RWKV-6 and RWKV-7.
func TestTrainerChunkedStep(t *testing.T) {
	t.Run("x040", func(t *testing.T) { testTrainerChunkedStep(t, tinyConfig(t)) })
	t.Run("x070", func(t *testing.T) { testTrainerChunkedStep(t, tinyConfigX070(t)) })
	t.Run("x052", func(t *testing.T) { testTrainerChunkedStep(t, tinyConfigX05(t, tinyX052)) })
	t.Run("x060", func(t *testing.T) { testTrainerChunkedStep(t, tinyConfigX05(t, tinyX060)) })
}

func testTrainerChunkedStep(t *testing.T, c Config) {
	c.Data.Val, c.Train.EvalEvery = "", 0
	chunked := c
	chunked.Train.ChunkLen = 10 // ctx_len 32: chunks of 10, 10, 10, 2
	chunked.OutDir = t.TempDir()
	a, b := newTrainer(t, c, Options{}), newTrainer(t, chunked, Options{})
	for s := 0; s < 3; s++ {
		ra, err := a.TrainStep(1e-3)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := b.TrainStep(1e-3)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ra.Loss-rb.Loss) > 1e-5*ra.Loss || math.Abs(ra.GradNorm-rb.GradNorm) > 1e-4*ra.GradNorm {
			t.Fatalf("step %d: loss %v / %v, grad norm %v / %v (one pass / chunked)", s, ra.Loss, rb.Loss, ra.GradNorm, rb.GradNorm)
		}
	}
	wa, wb := weightsOf(a), weightsOf(b)
	for i := range wa {
		for j := range wa[i] {
			if d := math.Abs(float64(wa[i][j] - wb[i][j])); d > 1e-5 {
				t.Fatalf("%s[%d]: %v one pass, %v chunked", a.Model.Params[i].Name, j, wa[i][j], wb[i][j])
			}
		}
	}
}
