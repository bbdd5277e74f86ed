package optim

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// refAdamW is torch.optim.AdamW's _single_tensor_adamw (PyTorch 1.13)
// transcribed op by op, in float64, one tensor at a time.
type refAdamW struct {
	b1, b2, eps, wd float64
	t               int
	m, v            [][]float64
}

func (r *refAdamW) step(data, grad [][]float64, lrScale []float64, decay []bool, lr float64) {
	r.t++
	for i := range data {
		p, g, m, v := data[i], grad[i], r.m[i], r.v[i]
		groupLR := lr * lrScale[i]
		groupWD := 0.0
		if decay[i] {
			groupWD = r.wd
		}
		for j := range p { // param.mul_(1 - lr * weight_decay)
			p[j] *= 1 - groupLR*groupWD
		}
		for j := range m { // exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
			m[j] = m[j]*r.b1 + (1-r.b1)*g[j]
		}
		for j := range v { // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
			v[j] = v[j]*r.b2 + (1-r.b2)*g[j]*g[j]
		}
		biasCorrection1 := 1 - math.Pow(r.b1, float64(r.t))
		biasCorrection2 := 1 - math.Pow(r.b2, float64(r.t))
		stepSize := groupLR / biasCorrection1
		bc2Sqrt := math.Sqrt(biasCorrection2)
		for j := range p { // param.addcdiv_(exp_avg, denom, value=-step_size)
			denom := math.Sqrt(v[j])/bc2Sqrt + r.eps
			p[j] += -stepSize * m[j] / denom
		}
	}
}

// fixture is a small RWKV-shaped parameter list plus one tensor large
// enough (>= parallelMin) to take the pooled path.
var fixtureShapes = []struct {
	name  string
	shape []int
}{
	{"emb.weight", []int{7, 5}},
	{"blocks.0.ln1.weight", []int{5}},
	{"blocks.0.att.time_decay", []int{5}},
	{"blocks.0.att.time_first", []int{5}},
	{"blocks.0.att.time_mix_k", []int{1, 1, 5}},
	{"blocks.0.att.key.weight", []int{5, 5}},
	{"blocks.0.ffn.value.weight", []int{301, 263}}, // 79163 elements, rows don't split evenly
	{"head.weight", []int{7, 5}},
}

func size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// newFixture returns params with data in [-1, 1) and zero grads. Values
// are float32-representable so float32 and float64 runs start equal.
func newFixture[F Float](seed uint64, layerwiseLR bool) []Param[F] {
	rng := rand.New(rand.NewPCG(seed, 1))
	var ps []Param[F]
	for _, s := range fixtureShapes {
		n := size(s.shape)
		data := make([]F, n)
		for i := range data {
			data[i] = F(float32(2*rng.Float64() - 1))
		}
		ps = append(ps, NewParam(arch.X040, s.name, s.shape, data, make([]F, n), layerwiseLR))
	}
	return ps
}

// fillGrads writes float32-representable grads with magnitudes spread
// over several decades, and exact zeros, so eps matters somewhere.
func fillGrads[F Float](ps []Param[F], rng *rand.Rand) {
	for i := range ps {
		for j := range ps[i].Grad {
			g := rng.NormFloat64() * math.Pow(10, float64(rng.IntN(6)-4))
			if rng.IntN(50) == 0 {
				g = 0
			}
			ps[i].Grad[j] = F(float32(g))
		}
	}
}

func toF64[F Float](x []F) []float64 {
	y := make([]float64, len(x))
	for i, v := range x {
		y[i] = float64(v)
	}
	return y
}

func relDiff(got, want float64) float64 {
	return math.Abs(got-want) / max(math.Abs(want), 1e-30)
}

// runAgainstRef takes steps on AdamW[F] and on refAdamW and returns the
// largest absolute difference of params and relative one of moments.
func runAgainstRef[F Float](t *testing.T, cfg AdamWConfig, layerwiseLR bool, steps int) (dp, dm float64) {
	t.Helper()
	ps := newFixture[F](1, layerwiseLR)
	o := NewAdamW(ps, cfg)
	ref := &refAdamW{b1: cfg.Beta1, b2: cfg.Beta2, eps: cfg.Eps, wd: cfg.WeightDecay}
	var data, grad [][]float64
	var scale []float64
	var decay []bool
	for _, p := range ps {
		data = append(data, toF64(p.Data))
		grad = append(grad, nil)
		ref.m = append(ref.m, make([]float64, len(p.Data)))
		ref.v = append(ref.v, make([]float64, len(p.Data)))
		scale = append(scale, p.LRScale)
		decay = append(decay, p.Decay)
	}
	rng := rand.New(rand.NewPCG(2, 2))
	for s := range steps {
		fillGrads(ps, rng)
		for i, p := range ps {
			grad[i] = toF64(p.Grad)
		}
		lr := 0.01 * (1 - 0.05*float64(s))
		o.Step(lr)
		ref.step(data, grad, scale, decay, lr)
	}
	st := o.State()
	if st.Step != int64(steps) {
		t.Errorf("State().Step = %d, want %d", st.Step, steps)
	}
	for i, p := range ps {
		// m cancels (g changes sign), so its error is relative to the
		// tensor's largest |m|; v is a sum of squares, relative per element.
		mScale := 1e-30
		for _, x := range ref.m[i] {
			mScale = max(mScale, math.Abs(x))
		}
		for j := range p.Data {
			dp = max(dp, math.Abs(float64(p.Data[j])-data[i][j]))
			dm = max(dm, math.Abs(float64(st.M[i][j])-ref.m[i][j])/mScale)
			dm = max(dm, relDiff(float64(st.V[i][j]), ref.v[i][j]))
		}
	}
	return dp, dm
}

func TestAdamWMatchesReference(t *testing.T) {
	noWD := DefaultAdamWConfig()
	wd := DefaultAdamWConfig()
	wd.WeightDecay = 0.1
	odd := AdamWConfig{Beta1: 0.8, Beta2: 0.95, Eps: 1e-6, WeightDecay: 0.5}
	for _, tt := range []struct {
		name        string
		cfg         AdamWConfig
		layerwiseLR bool
	}{
		{"defaults", noWD, false},
		{"layerwise", noWD, true},
		{"decay", wd, false},
		{"decay+layerwise", wd, true},
		{"other betas", odd, true},
	} {
		t.Run(tt.name+"/float64", func(t *testing.T) {
			dp, dm := runAgainstRef[float64](t, tt.cfg, tt.layerwiseLR, 10)
			if dp > 1e-14 || dm > 1e-14 {
				t.Errorf("max diff params %.3g, moments %.3g (relative); want < 1e-14", dp, dm)
			}
		})
		t.Run(tt.name+"/float32", func(t *testing.T) {
			dp, dm := runAgainstRef[float32](t, tt.cfg, tt.layerwiseLR, 10)
			// About 10 roundings of p (|p| <= 1, ulp 1.2e-7) and of m, v.
			if dp > 1e-6 || dm > 1e-6 {
				t.Errorf("max diff params %.3g, moments %.3g (relative); want < 1e-6", dp, dm)
			}
		})
	}
}

// Values printed by torch 1.13.0a0 (Debian /usr/bin/python3) running
// torch.optim.AdamW(lr=0.01, betas=(0.9, 0.99), eps=1e-8) over two groups:
// a = [1, -2] with weight_decay 0.1, my_lr_scale 1; b = [0.5, 0.25] with
// weight_decay 0, my_lr_scale 3; group lr = lr*my_lr_scale with lr 0.01,
// 0.008, 0.005 on steps 1-3; grads as below; repr(float(x)) of each value.
var (
	torchGradA = [3][2]float64{{0.1, -0.2}, {0.3, 0.05}, {-0.4, 0.25}}
	torchGradB = [3][2]float64{{1e-3, -5.0}, {2e-3, 4.0}, {0.0, -3.0}}
	torchLR    = [3]float64{0.01, 0.008, 0.005}

	torchA64 = [3][2]float64{
		{0.9890000009999999, -1.9880000005},
		{0.9808798002215521, -1.9826463320559211},
		{0.9806955675584317, -1.982965239601281},
	}
	torchB64 = [3][2]float64{
		{0.47000029999700005, 0.27999999994},
		{0.44686744894728997, 0.28139569446802665},
		{0.4356659337132245, 0.28608076381088615},
	}
	torchMA64 = [2]float64{-0.004900000000000001, 0.013299999999999994}
	torchVA64 = [2]float64{0.0025890100000000023, 0.001041790000000001}

	torchA32 = [3][2]float64{
		{0.9890000224113464, -1.9880000352859497},
		{0.9808798432350159, -1.9826463460922241},
		{0.9806955456733704, -1.9829652309417725},
	}
	torchB32 = [3][2]float64{
		{0.470000296831131, 0.2800000011920929},
		{0.446867436170578, 0.28139570355415344},
		{0.43566593527793884, 0.2860807776451111},
	}
	torchMA32 = [2]float64{-0.0049000028520822525, 0.013299999758601189}
	torchVA32 = [2]float64{0.0025890101678669453, 0.0010417900048196316}
)

func checkTorch[F Float](t *testing.T, tol, momentTol float64, wantA, wantB [3][2]float64, wantM, wantV [2]float64) {
	t.Helper()
	ps := []Param[F]{
		{Name: "a", Shape: []int{2}, Data: []F{1, -2}, Grad: make([]F, 2), LRScale: 1, Decay: true},
		{Name: "b", Shape: []int{2}, Data: []F{0.5, 0.25}, Grad: make([]F, 2), LRScale: 3},
	}
	o := NewAdamW(ps, AdamWConfig{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1})
	near := func(what string, got F, want, abs float64) {
		if d := math.Abs(float64(got) - want); d > tol*math.Abs(want)+abs {
			t.Errorf("%s = %v, want %v (torch); rel diff %.3g", what, got, want, d/math.Abs(want))
		}
	}
	for s := range 3 {
		for j := range 2 {
			ps[0].Grad[j], ps[1].Grad[j] = F(torchGradA[s][j]), F(torchGradB[s][j])
		}
		o.Step(torchLR[s])
		for j := range 2 {
			near("step "+string(rune('1'+s))+" a", ps[0].Data[j], wantA[s][j], 0)
			near("step "+string(rune('1'+s))+" b", ps[1].Data[j], wantB[s][j], 0)
		}
	}
	st := o.State()
	for j := range 2 {
		near("m_a", st.M[0][j], wantM[j], momentTol)
		near("v_a", st.V[0][j], wantV[j], momentTol)
	}
}

// TestAdamWMatchesTorch needs no Python: the torch outputs are constants.
// The kernels replay torch's ops in torch's order and rounding, FMAs
// included, so params and moments agree bit for bit in float32 and
// float64. (A torch build without FMA, or another vector width, may
// differ by an ulp; what matters to training is the float64 reference
// test above.)
func TestAdamWMatchesTorch(t *testing.T) {
	t.Run("float64", func(t *testing.T) {
		checkTorch[float64](t, 0, 0, torchA64, torchB64, torchMA64, torchVA64)
	})
	t.Run("float32", func(t *testing.T) {
		checkTorch[float32](t, 0, 0, torchA32, torchB32, torchMA32, torchVA32)
	})
}

func TestGroups(t *testing.T) {
	for _, tt := range []struct {
		a         arch.Arch
		name      string
		shape     []int
		layerwise bool
		scale     float64
		decay     bool
	}{
		{arch.X040, "emb.weight", []int{50277, 768}, true, 1, true},
		{"", "head.weight", []int{50277, 768}, false, 1, true},
		{"", "blocks.3.att.key.weight", []int{768, 768}, true, 1, true},
		{"", "blocks.3.ffn.value.weight", []int{768, 3072}, true, 1, true},
		{"", "blocks.3.att.time_decay", []int{768}, true, 2, false},
		{"", "blocks.3.att.time_decay", []int{768}, false, 1, false},
		{"", "blocks.3.att.time_first", []int{768}, true, 3, false},
		{"", "blocks.3.att.time_first", []int{768}, false, 1, false},
		{"", "blocks.3.att.time_mix_k", []int{1, 1, 768}, true, 1, false},
		{"", "blocks.3.ffn.time_mix_r", []int{1, 1, 768}, false, 1, false},
		{"", "blocks.0.ln0.weight", []int{768}, true, 1, false},
		{"", "ln_out.bias", []int{768}, true, 1, false},
		{"", "x.weight", []int{1, 768, 1, 4}, true, 1, true},
		{"", "x.weight", []int{1, 768, 1}, true, 1, false},
		// x070 (RWKV-LM v7 configure_optimizers): w0 x2, decay only on >= 2-D ".weight".
		{arch.X070, "blocks.3.att.w0", []int{1, 1, 768}, true, 2, false},
		{arch.X070, "blocks.3.att.w0", []int{1, 1, 768}, false, 1, false},
		{arch.X070, "emb.weight", []int{65536, 768}, true, 1, true},
		{arch.X070, "head.weight", []int{65536, 768}, false, 1, true},
		{arch.X070, "blocks.3.att.receptance.weight", []int{768, 768}, true, 1, true},
		{arch.X070, "blocks.3.ffn.key.weight", []int{3072, 768}, true, 1, true},
		{arch.X070, "blocks.3.att.w1", []int{768, 64}, true, 1, false},
		{arch.X070, "blocks.3.att.g2", []int{128, 768}, true, 1, false},
		{arch.X070, "blocks.3.att.r_k", []int{12, 64}, true, 1, false},
		{arch.X070, "blocks.3.att.ln_x.weight", []int{768}, true, 1, false},
		{arch.X070, "blocks.3.att.x_r", []int{1, 1, 768}, true, 1, false},
		{arch.X070, "blocks.3.att.a0", []int{1, 1, 768}, true, 1, false},
		{arch.X070, "blocks.3.att.time_decay", []int{768}, true, 1, false}, // an x040 rule does not apply
	} {
		scale, decay := Groups(tt.a, tt.name, tt.shape, tt.layerwise)
		if scale != tt.scale || decay != tt.decay {
			t.Errorf("Groups(%q, %q, %v, %v) = %v, %v; want %v, %v",
				tt.a, tt.name, tt.shape, tt.layerwise, scale, decay, tt.scale, tt.decay)
		}
	}
}

// bench20M returns 20M float32 parameters: 20 tensors of 1000x1000, the
// size class of RWKV-4 L12-D768's matrices (169M params in all).
func bench20M() []Param[float32] {
	var ps []Param[float32]
	for i := range 20 {
		n := 1000 * 1000
		data, grad := make([]float32, n), make([]float32, n)
		for j := range data {
			data[j] = float32(j%1000) * 1e-3
			grad[j] = float32((j+i)%777-388) * 1e-4
		}
		ps = append(ps, Param[float32]{Name: "w", Shape: []int{1000, 1000}, Data: data, Grad: grad, LRScale: 1, Decay: true})
	}
	return ps
}

func BenchmarkAdamWStep(b *testing.B) {
	ps := bench20M()
	cfg := DefaultAdamWConfig()
	cfg.WeightDecay = 0.1
	o := NewAdamW(ps, cfg)
	b.ReportAllocs()
	for b.Loop() {
		o.Step(1e-4)
	}
	b.ReportMetric(float64(20_000_000*b.N)/b.Elapsed().Seconds(), "params/s")
}

// BenchmarkClipGlobalNorm measures the norm plus an in-place scale
// (maxNorm below the norm) over 20M float32 gradients.
func BenchmarkClipGlobalNorm(b *testing.B) {
	ps := bench20M()
	maxNorm := 0.9999 * GradNorm(ps) // every call scales, by about 1-1e-6 after the first
	for b.Loop() {
		ClipGlobalNorm(ps, maxNorm)
	}
	b.ReportMetric(float64(20_000_000*b.N)/b.Elapsed().Seconds(), "params/s")
}
