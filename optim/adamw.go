package optim

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"unsafe"
)

// AdamWConfig holds the hyper-parameters of AdamW other than the learning
// rate, which Step takes.
type AdamWConfig struct {
	Beta1       float64 `mapstructure:"beta1"`
	Beta2       float64 `mapstructure:"beta2"`
	Eps         float64 `mapstructure:"adam_eps"`
	WeightDecay float64 `mapstructure:"weight_decay"`
}

// DefaultAdamWConfig returns RWKV-LM's defaults: betas (0.9, 0.99), eps
// 1e-8, no weight decay.
func DefaultAdamWConfig() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8}
}

// Validate reports every invalid field, naming it by its optim.* key.
func (c AdamWConfig) Validate() error {
	var errs []error
	if !(c.Beta1 >= 0 && c.Beta1 < 1) {
		errs = append(errs, fmt.Errorf("optim.beta1 must be in [0, 1), got %v", c.Beta1))
	}
	if !(c.Beta2 >= 0 && c.Beta2 < 1) {
		errs = append(errs, fmt.Errorf("optim.beta2 must be in [0, 1), got %v", c.Beta2))
	}
	if !(c.Eps >= 0) || math.IsInf(c.Eps, 1) {
		errs = append(errs, fmt.Errorf("optim.adam_eps must be finite and >= 0, got %v", c.Eps))
	}
	if !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 1) {
		errs = append(errs, fmt.Errorf("optim.weight_decay must be finite and >= 0, got %v", c.WeightDecay))
	}
	return errors.Join(errs...)
}

// AdamWState is what a checkpoint must save to resume AdamW exactly: the
// number of steps taken and the first and second moments, one slice per
// parameter in the order given to NewAdamW.
type AdamWState[F Float] struct {
	Step int64
	M, V [][]F
}

// AdamW is torch.optim.AdamW (PyTorch 1.13, amsgrad off) over a fixed
// list of parameters, with a per-parameter lr multiplier and decay flag.
// Step updates parameters and moments in place in one fused pass; it does
// not allocate. An AdamW is not safe for concurrent use.
type AdamW[F Float] struct {
	params []Param[F]
	cfg    AdamWConfig
	step   int64
	m, v   [][]F
	pool   *pool[F]
}

// parallelMin is the size from which a tensor's update is split over
// goroutines.
const parallelMin = 1 << 16

// NewAdamW returns an AdamW at step 0 with zero moments. It keeps params
// (the slices, not copies) and updates their Data on each Step. It panics
// if cfg is invalid or a parameter's Data, Grad and Shape disagree in
// size, or its LRScale is negative or NaN.
func NewAdamW[F Float](params []Param[F], cfg AdamWConfig) *AdamW[F] {
	if err := cfg.Validate(); err != nil {
		panic("optim: NewAdamW: " + err.Error())
	}
	o := &AdamW[F]{
		params: params,
		cfg:    cfg,
		m:      make([][]F, len(params)),
		v:      make([][]F, len(params)),
		pool:   newPool[F](),
	}
	for i := range params {
		p := &params[i]
		n := 1
		for _, d := range p.Shape {
			n *= d
		}
		if len(p.Data) != n || len(p.Grad) != n {
			panic(fmt.Sprintf("optim: NewAdamW: param %q: shape %v has %d elements, data %d, grad %d",
				p.Name, p.Shape, n, len(p.Data), len(p.Grad)))
		}
		if !(p.LRScale >= 0) {
			panic(fmt.Sprintf("optim: NewAdamW: param %q: lr scale %v", p.Name, p.LRScale))
		}
		o.m[i] = make([]F, n)
		o.v[i] = make([]F, n)
	}
	runtime.AddCleanup(o, (*pool[F]).close, o.pool)
	return o
}

// Params returns the parameters the optimiser updates (shared).
func (o *AdamW[F]) Params() []Param[F] { return o.params }

// SetGrad points parameter i's gradient at g, which must have one value per element: a
// trainer can hand over gradient buffers it does not own instead of copying into Grad.
func (o *AdamW[F]) SetGrad(i int, g []F) error {
	if i < 0 || i >= len(o.params) {
		return fmt.Errorf("optim: set grad %d: there are %d parameters", i, len(o.params))
	}
	if len(g) != len(o.params[i].Data) {
		return fmt.Errorf("optim: set grad %d: %d values for a parameter of %d", i, len(g), len(o.params[i].Data))
	}
	o.params[i].Grad = g
	return nil
}

// Steps returns the number of steps taken so far.
func (o *AdamW[F]) Steps() int64 { return o.step }

// Step applies one AdamW update with learning rate lr to every parameter,
// reading Grad and writing Data and the moments in place. For parameter p
// with lr_p = lr*p.LRScale and t the 1-based step count it computes, as
// torch.optim.AdamW does,
//
//	p *= 1 - lr_p*wd                       (only when p.Decay)
//	m  = b1*m + (1-b1)*g
//	v  = b2*v + (1-b2)*g*g
//	p -= (lr_p/(1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
//
// op by op in F as torch does (see update32). Tensors of
// 64k elements or more are split over GOMAXPROCS goroutines; the result
// is the same for any GOMAXPROCS because every element is independent.
func (o *AdamW[F]) Step(lr float64) {
	o.step++
	b1, b2 := o.cfg.Beta1, o.cfg.Beta2
	bc1 := 1 - powInt(b1, o.step)
	bc2s := math.Sqrt(1 - powInt(b2, o.step))

	workers := runtime.GOMAXPROCS(0)
	sent := false
	for pass := 0; pass < 2; pass++ {
		// Pass 0 hands the large tensors to the pool; pass 1 does the
		// small ones here while the pool works.
		for i := range o.params {
			p := &o.params[i]
			large := workers > 1 && len(p.Data) >= parallelMin
			if large != (pass == 0) {
				continue
			}
			lrp := lr * p.LRScale
			k := coeffs{
				b1: b1, c1: 1 - b1, b2: b2, c2: 1 - b2,
				decay: 1, stepSize: lrp / bc1, bc2s: bc2s, eps: o.cfg.Eps,
			}
			if p.Decay && o.cfg.WeightDecay != 0 {
				k.decay = 1 - lrp*o.cfg.WeightDecay
			}
			if !large {
				update(p.Data, p.Grad, o.m[i], o.v[i], &k)
				continue
			}
			n := len(p.Data)
			row := 1
			if len(p.Shape) > 0 && p.Shape[len(p.Shape)-1] > 0 {
				row = p.Shape[len(p.Shape)-1]
			}
			rows := n / row
			o.pool.grow(workers - 1) // no-op once started
			for w := range workers {
				lo, hi := rows*w/workers*row, rows*(w+1)/workers*row
				if w == workers-1 {
					hi = n
				}
				if lo == hi {
					continue
				}
				o.pool.submit(task[F]{
					p: p.Data[lo:hi], g: p.Grad[lo:hi], m: o.m[i][lo:hi], v: o.v[i][lo:hi], k: k,
				})
				sent = true
			}
		}
	}
	if sent {
		o.pool.wait()
	}
}

// State returns the step count and the moments. The tensors M[i] and V[i]
// share memory with the optimiser (the outer slices are fresh): they stay
// valid and change with every Step, which suits a checkpoint writer
// called between steps. Copy them to keep a snapshot.
func (o *AdamW[F]) State() AdamWState[F] {
	return AdamWState[F]{Step: o.step, M: slices.Clone(o.m), V: slices.Clone(o.v)}
}

// SetState copies s into the optimiser, so that the next Step continues
// from it bit for bit. s must have one M and one V slice per parameter,
// each the size of that parameter; nothing is changed if it does not.
func (o *AdamW[F]) SetState(s AdamWState[F]) error {
	if s.Step < 0 {
		return fmt.Errorf("optim: set state: negative step %d", s.Step)
	}
	if len(s.M) != len(o.params) || len(s.V) != len(o.params) {
		return fmt.Errorf("optim: set state: %d params, state has %d m and %d v tensors",
			len(o.params), len(s.M), len(s.V))
	}
	for i := range o.params {
		n := len(o.params[i].Data)
		if len(s.M[i]) != n || len(s.V[i]) != n {
			return fmt.Errorf("optim: set state: param %q has %d elements, m %d, v %d",
				o.params[i].Name, n, len(s.M[i]), len(s.V[i]))
		}
	}
	o.step = s.Step
	for i := range o.params {
		copy(o.m[i], s.M[i])
		copy(o.v[i], s.V[i])
	}
	return nil
}

// coeffs are the per-parameter constants of one step.
type coeffs struct {
	b1, c1, b2, c2 float64 // beta1, 1-beta1, beta2, 1-beta2
	decay          float64 // 1 - lr_p*wd, or 1
	stepSize       float64 // lr_p / (1 - beta1^t)
	bc2s           float64 // sqrt(1 - beta2^t)
	eps            float64
}

// update is the fused AdamW kernel over one contiguous range.
func update[F Float](p, g, m, v []F, k *coeffs) {
	if len(p) == 0 {
		return
	}
	if unsafe.Sizeof(p[0]) == 4 { // F's underlying type is float32
		if !update32Fast(as32(p), as32(g), as32(m), as32(v), k) {
			update32(as32(p), as32(g), as32(m), as32(v), k)
		}
		return
	}
	update64(as64(p), as64(g), as64(m), as64(v), k)
}

func as32[F Float](x []F) []float32 {
	return unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

func as64[F Float](x []F) []float64 {
	return unsafe.Slice((*float64)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
}

// update32 replays torch's float32 CPU ops one by one: mul_ then add_
// for m, mul_ then addcmul_ for v, sqrt, div, add, then mul_ and
// addcdiv_ for p, with the scalars rounded to float32 as torch does. The
// add_ and addcmul_ kernels of an AVX2 torch build are fused
// multiply-adds; the float64 FMA here is exact in its product (24x24
// bits) and so matches them but for rare double roundings. The explicit
// conversions keep the Go compiler from fusing anything else, so results
// do not depend on the architecture. float32 sqrt and divide also run
// about twice as fast as float64 ones.
func update32(p, g, m, v []float32, k *coeffs) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	b1, b2 := float32(k.b1), float32(k.b2)
	c1, c2 := float64(float32(k.c1)), float32(k.c2)
	decay, negStep := float32(k.decay), float32(-k.stepSize)
	bc2s, eps := float32(k.bc2s), float32(k.eps)
	for i := range p {
		gi := g[i]
		gd := float64(gi)
		mi := float32(math.FMA(c1, gd, float64(m[i]*b1)))
		vi := float32(math.FMA(float64(c2*gi), gd, float64(v[i]*b2)))
		m[i], v[i] = mi, vi
		denom := float32(float32(math.Sqrt(float64(vi)))/bc2s) + eps
		p[i] = float32(p[i]*decay) + float32(float32(negStep*mi)/denom)
	}
}

// update64 is update32 in float64: the same torch ops in the same order,
// with exact fused multiply-adds where an AVX2 torch build fuses.
func update64(p, g, m, v []float64, k *coeffs) {
	g, m, v = g[:len(p)], m[:len(p)], v[:len(p)]
	b1, c1, b2, c2 := k.b1, k.c1, k.b2, k.c2
	decay, negStep, bc2s, eps := k.decay, -k.stepSize, k.bc2s, k.eps
	for i := range p {
		gi := g[i]
		mi := math.FMA(c1, gi, float64(m[i]*b1))
		vi := math.FMA(float64(c2*gi), gi, float64(v[i]*b2))
		m[i], v[i] = mi, vi
		denom := float64(math.Sqrt(vi)/bc2s) + eps
		p[i] = float64(p[i]*decay) + float64(float64(negStep*mi)/denom)
	}
}
