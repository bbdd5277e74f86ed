package optim

import (
	"math"
	"math/rand/v2"
	"testing"
)

func twoParams[F Float]() []Param[F] {
	return []Param[F]{
		{Name: "a", Shape: []int{2}, Data: make([]F, 2), Grad: []F{3, 4}, LRScale: 1},
		{Name: "b", Shape: []int{1}, Data: make([]F, 1), Grad: []F{12}, LRScale: 1},
	}
}

// Values from torch 1.13 clip_grad_norm_([a, b], 6.5) with a.grad = [3, 4],
// b.grad = [12] (total norm 13), printed with repr(float(x)).
var (
	torchClipped32 = []float64{1.4999998807907104, 1.9999998807907104, 5.999999523162842}
	torchClipped64 = []float64{1.4999998846153937, 1.9999998461538582, 5.999999538461575}
)

func checkClip[F Float](t *testing.T, want []float64) {
	for _, tt := range []struct {
		name    string
		maxNorm float64
		want    []float64
	}{
		{"below max", 20, []float64{3, 4, 12}},
		{"at max", 13, []float64{3, 4, 12}}, // coef 13/(13+1e-6) < 1 scales by ~1-7.7e-8
		{"disabled", 0, []float64{3, 4, 12}},
		{"negative disables", -1, []float64{3, 4, 12}},
		{"above max", 6.5, want},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := twoParams[F]()
			norm := ClipGlobalNorm(ps, tt.maxNorm)
			if norm != 13 {
				t.Errorf("norm = %v, want 13 (pre-clip)", norm)
			}
			got := []F{ps[0].Grad[0], ps[0].Grad[1], ps[1].Grad[0]}
			for i := range got {
				tol := 1e-7 * tt.want[i]
				if tt.name == "at max" {
					tol = 1e-6 * tt.want[i]
				}
				if math.Abs(float64(got[i])-tt.want[i]) > tol {
					t.Errorf("grad %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
			if tt.name == "above max" {
				for i := range got { // same rounding as torch: g * float(coef)
					if float64(got[i]) != tt.want[i] {
						t.Errorf("grad %d = %v, want %v bit for bit", i, got[i], tt.want[i])
					}
				}
			}
		})
	}
}

func TestClipGlobalNorm(t *testing.T) {
	t.Run("float32", func(t *testing.T) { checkClip[float32](t, torchClipped32) })
	t.Run("float64", func(t *testing.T) { checkClip[float64](t, torchClipped64) })
}

// TestGradNormLarge compares the blocked, parallel norm with a plain
// float64 sum over tensors spanning several blocks.
func TestGradNormLarge(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var ps []Param[float32]
	var sum float64
	for _, n := range []int{3, normBlock*3 + 17, 0, normBlock, 5} {
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(rng.NormFloat64())
			sum += float64(g[i]) * float64(g[i])
		}
		ps = append(ps, Param[float32]{Name: "p", Shape: []int{n}, Data: make([]float32, n), Grad: g})
	}
	got, want := GradNorm(ps), math.Sqrt(sum)
	if math.Abs(got-want) > 1e-12*want {
		t.Errorf("GradNorm = %v, want %v", got, want)
	}
	ClipGlobalNorm(ps, 1)
	if n := GradNorm(ps); math.Abs(n-1) > 1e-6 {
		t.Errorf("norm after clipping to 1 = %v", n)
	}
}

func TestAllFinite(t *testing.T) {
	for _, tt := range []struct {
		name string
		bad  float64
		want string
	}{
		{"finite", 1e30, ""},
		{"NaN", math.NaN(), "b"},
		{"+Inf", math.Inf(1), "b"},
		{"-Inf", math.Inf(-1), "b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ps := twoParams[float32]()
			ps = append(ps, Param[float32]{Name: "c", Grad: []float32{float32(math.NaN())}})
			ps[1].Grad[0] = float32(tt.bad)
			if tt.want == "" {
				ps = ps[:2]
			}
			bad, ok := AllFinite(ps)
			if bad != tt.want || ok != (tt.want == "") {
				t.Errorf("AllFinite() = %q, %v; want %q, %v", bad, ok, tt.want, tt.want == "")
			}
		})
	}
}
