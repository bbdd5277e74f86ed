package model

import (
	"math"
	"math/rand/v2"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

// What the x052/x060 (init6.go) and x070 (init7.go) inits share: the walk over the layout, the
// layer ratios, one random stream per tensor, and the rules of the tensors they have in common.

// blockRest returns name without its "blocks.N." prefix ("att.time_decay" for
// "blocks.3.att.time_decay"); a name outside the blocks is returned whole.
func blockRest(name string) string {
	if layerOf(name) >= 0 {
		return strings.SplitN(name, ".", 3)[2]
	}
	return name
}

// initTensor is one tensor of the layout being initialised.
type initTensor struct {
	name   string
	shape  []int
	v      []float64 // the values, zero until a rule fills them
	l      int       // layer, −1 outside the blocks
	last   string    // blockRest(name)
	r0, r1 float64   // l/(L−1) (0 with one layer) and 1 − l/L
	rng    *rand.Rand
}

// fill sets every value i to f(i).
func (t *initTensor) fill(f func(i int) float64) {
	for i := range t.v {
		t.v[i] = f(i)
	}
}

// ortho fills the matrix with an orthogonal draw of the given gain.
func (t *initTensor) ortho(gain float64) { orthogonal(t.v, t.shape[0], t.shape[1], gain, t.rng) }

// initLayout returns every parameter of d's layout in float64, each filled by rule (an error
// from rule is returned as is). Each tensor's random stream is (seed, name), so the result does
// not depend on the order of the tensors.
func initLayout(d arch.Dims, seed uint64, rule func(t *initTensor) error) (params7[float64], error) {
	L := d.Layers
	n := func(i int) float64 { return float64(i) }
	p := params7[float64]{}
	for _, lt := range d.Layout() {
		t := &initTensor{name: lt.Name, shape: lt.Shape, v: make([]float64, prodInts(lt.Shape)),
			l: layerOf(lt.Name), last: blockRest(lt.Name), rng: rand.New(rand.NewPCG(seed, nameHash(lt.Name)))}
		if L > 1 {
			t.r0 = n(t.l) / n(L-1)
		}
		t.r1 = 1 - n(t.l)/n(L)
		if err := rule(t); err != nil {
			return nil, err
		}
		p[lt.Name] = param7[float64]{Shape: append([]int(nil), lt.Shape...), Data: t.v}
	}
	return p, nil
}

// initShared applies the rules that x052, x060 and x070 share (emb U(−1e-4, 1e-4), head
// orthogonal 0.5·√(V/C) if V > C else 0.5, LayerNorm weights 1 and biases 0, ln_x.weight
// ((1+l)/L)^0.7) and reports whether t is one of those tensors.
func initShared(t *initTensor, d arch.Dims) bool {
	L, C, V := d.Layers, d.Embd, d.Vocab
	n := func(i int) float64 { return float64(i) }
	switch t.last {
	case "emb.weight":
		t.fill(func(int) float64 { return (2*t.rng.Float64() - 1) * 1e-4 })
	case "head.weight":
		gain := 0.5
		if V > C {
			gain = 0.5 * math.Sqrt(n(V)/n(C))
		}
		t.ortho(gain)
	case "ln0.weight", "ln1.weight", "ln2.weight", "ln_out.weight":
		t.fill(func(int) float64 { return 1 })
	case "ln0.bias", "ln1.bias", "ln2.bias", "ln_out.bias", "att.ln_x.bias":
	case "att.ln_x.weight":
		t.fill(func(int) float64 { return math.Pow(n(1+t.l)/n(L), 0.7) })
	default:
		return false
	}
	return true
}
