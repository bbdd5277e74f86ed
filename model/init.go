package model

import (
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// Init sets every parameter as RWKV-LM's generate_init_weight does (REFERENCE §3), from a seed:
// the time_* vectors by formula, LayerNorms to (1, 0), att.key/receptance/output and
// ffn.value/receptance to zero, emb.weight ~ U(-embScale, embScale) (RWKV-LM uses lr_init),
// every other matrix orthogonal with gain sqrt(out/in) when out > in (head: 0.5 times that).
// Each tensor draws from its own stream (seed, name), so the result does not depend on order.
//
// An x052, x060 or x070 model gets RWKV-LM's effective init of its architecture instead
// (init6.go, init7.go), where emb.weight is U(-1e-4, 1e-4) as in RWKV-LM's generate_init_weight
// and embScale is not used.
func (m *Model) Init(seed uint64, embScale float64) {
	if a := m.Config.Arch.Resolve(); a == arch.X052 || a == arch.X060 || a == arch.X070 {
		initOf := init7
		if a != arch.X070 {
			initOf = init6
		}
		p, err := initOf(m.Config.Dims(), seed)
		if err != nil { // New validated the config, which init7 and init6 accept
			panic(fmt.Sprintf("model: %v init of %v: %v", a, m.Config, err))
		}
		for _, q := range m.Params {
			if err := q.SetFloat64s(p[q.Name].Data); err != nil {
				panic(err)
			}
		}
		return
	}
	L, C := m.Config.Layers, m.Config.Embd
	for _, p := range m.Params {
		v := make([]float64, p.Len())
		rng := rand.New(rand.NewPCG(seed, nameHash(p.Name)))
		layer := layerOf(p.Name)
		r01 := 0.0 // ratio_0_to_1
		if L > 1 {
			r01 = float64(layer) / float64(L-1)
		}
		r1a0 := 1 - float64(layer)/float64(L) // ratio_1_to_almost0
		ddd := func(c int) float64 { return float64(c) / float64(C) }
		suffix := blockRest(p.Name) // "att.time_decay" for "blocks.3.att.time_decay"
		switch {
		case suffix == "att.time_decay":
			for c := range v {
				v[c] = -5 + 8*math.Pow(float64(c)/float64(max(C-1, 1)), 0.7+1.3*r01)
			}
		case suffix == "att.time_first":
			for c := range v {
				v[c] = math.Log(0.3) + 0.5*float64((c+1)%3-1)
			}
		case suffix == "att.time_mix_k", suffix == "ffn.time_mix_k", suffix == "ffn.time_mix_r":
			for c := range v {
				v[c] = math.Pow(ddd(c), r1a0)
			}
		case suffix == "att.time_mix_v":
			for c := range v {
				v[c] = math.Pow(ddd(c), r1a0) + 0.3*r01
			}
		case suffix == "att.time_mix_r":
			for c := range v {
				v[c] = math.Pow(ddd(c), 0.5*r1a0)
			}
		case strings.HasSuffix(p.Name, "ln0.weight"), strings.HasSuffix(p.Name, "ln1.weight"),
			strings.HasSuffix(p.Name, "ln2.weight"), p.Name == "ln_out.weight":
			for c := range v {
				v[c] = 1
			}
		case strings.HasSuffix(p.Name, ".bias"):
			// zero
		case p.Name == "emb.weight":
			for i := range v {
				v[i] = (2*rng.Float64() - 1) * embScale
			}
		case suffix == "att.key.weight", suffix == "att.receptance.weight", suffix == "att.output.weight",
			suffix == "ffn.value.weight", suffix == "ffn.receptance.weight":
			// zero
		default: // att.value, ffn.key, head: orthogonal
			rows, cols := p.Shape[0], p.Shape[1]
			gain := 1.0
			if rows > cols {
				gain = math.Sqrt(float64(rows) / float64(cols))
			}
			if p.Name == "head.weight" {
				gain *= 0.5
			}
			orthogonal(v, rows, cols, gain, rng)
		}
		if err := p.SetFloat64s(v); err != nil {
			panic(err) // sizes come from p itself
		}
	}
}

// orthogonal fills dst (rows×cols, row-major) as torch.nn.init.orthogonal_: the Q factor of a
// Gaussian matrix, sign-corrected by R's diagonal, transposed when rows < cols, times gain. Only
// the thin Q (r×c, r >= c) is formed, so a 50277×768 head costs O(r·c²), not O(r²).
func orthogonal(dst []float64, rows, cols int, gain float64, rng *rand.Rand) {
	r, c := rows, cols
	if rows < cols {
		r, c = cols, rows
	}
	a := make([]float64, r*c) // row-major r×c, lda = c
	for i := range a {
		a[i] = rng.NormFloat64()
	}
	sign, err := blas.ThinQR(r, c, a)
	if err != nil {
		panic(err) // r >= c >= 1 by construction; LAPACK fails only on invalid arguments
	}
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			x := a[i*c+j] * sign[j] * gain
			if rows < cols {
				dst[j*cols+i] = x
			} else {
				dst[i*cols+j] = x
			}
		}
	}
}

// layerOf returns N for "blocks.N.*" and -1 otherwise.
func layerOf(name string) int {
	if !strings.HasPrefix(name, "blocks.") {
		return -1
	}
	n := 0
	for _, ch := range name[len("blocks."):] {
		if ch < '0' || ch > '9' {
			break
		}
		n = n*10 + int(ch-'0')
	}
	return n
}

func nameHash(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}
