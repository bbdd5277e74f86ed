package optim

import (
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rwkv-go/rwkv-go/arch"
)

// Float is the element type of parameters, gradients and optimiser state.
type Float interface{ ~float32 | ~float64 }

// Param is one trainable tensor as the optimiser sees it.
//
// Data and Grad are row-major with len(Data) == len(Grad) == product of
// Shape. LRScale multiplies the learning rate passed to Step (RWKV-LM's
// my_lr_scale; 0 freezes the tensor, as a torch group with lr 0 would).
// Decay selects decoupled weight decay for this tensor. Groups and
// NewParam fill LRScale and Decay by RWKV-LM's rules for the architecture.
type Param[F Float] struct {
	Name    string
	Shape   []int
	Data    []F
	Grad    []F
	LRScale float64
	Decay   bool
}

// NewParam returns a Param whose LRScale and Decay come from Groups for architecture a.
func NewParam[F Float](a arch.Arch, name string, shape []int, data, grad []F, layerwiseLR bool) Param[F] {
	s, d := Groups(a, name, shape, layerwiseLR)
	return Param[F]{Name: name, Shape: shape, Data: data, Grad: grad, LRScale: s, Decay: d}
}

// Groups applies RWKV-LM's configure_optimizers rules for architecture a (the zero Arch is
// x040) to one parameter. Whether decay has any effect depends on AdamWConfig.WeightDecay.
//
// x040 (RWKV-LM RWKV-v4neo): with layerwiseLR, names containing "time_decay" get lr x2,
// "time_first" x3 and "time_mix" x1, and none of them decays. Any other tensor decays when its
// shape has at least two dimensions of size other than 1 (len(p.squeeze().shape) >= 2: emb,
// head and linear weights), and has lr x1.
//
// x070 (RWKV-LM RWKV-v7 train_temp): "att.w0" gets lr x2 and no decay (RWKV-LM always does
// this; here layerwiseLR, on by default, turns it off); a tensor decays when it has at least
// two dimensions of size other than 1 and ".weight" in its name (emb, head, receptance, key,
// value, output, ffn.key, ffn.value), so the LoRA matrices w1/w2, a1/a2, v1/v2, g1/g2 and r_k
// never decay; everything else has lr x1.
//
// x052 and x060 (RWKV-LM RWKV-v5 configure_optimizers, my_pile_stage other than 2): with
// layerwiseLR, names containing "_w1" or "_w2" (x060's token-shift and decay LoRAs) get lr x1,
// then "time_mix" or "time_maa" x1, "time_decay" or "time_daaaa" x2 (x052's [H,N] and x060's
// [1,1,C] base decay), "time_faaaa" x1 and "time_first" x3, none of them decaying. Any other
// tensor decays when it has at least two dimensions of size other than 1 (emb, head, the
// linear weights, and a state-tuning time_state, as RWKV-LM's "states" runs do) and has lr x1.
// Without layerwiseLR every tensor has lr x1 and the ≥ 2-D rule alone decides decay, as in
// RWKV-LM (so x052's time_decay and time_faaaa and x060's LoRAs decay too).
func Groups(a arch.Arch, name string, shape []int, layerwiseLR bool) (lrScale float64, decay bool) {
	dims := 0
	for _, d := range shape {
		if d != 1 {
			dims++
		}
	}
	if a.Resolve() == arch.X070 {
		if strings.Contains(name, "att.w0") {
			if layerwiseLR {
				return 2, false
			}
			return 1, false
		}
		return 1, dims >= 2 && strings.Contains(name, ".weight")
	}
	if a5 := a.Resolve(); (a5 == arch.X052 || a5 == arch.X060) && layerwiseLR {
		switch {
		case strings.Contains(name, "_w1") || strings.Contains(name, "_w2"):
			return 1, false
		case strings.Contains(name, "time_mix") || strings.Contains(name, "time_maa"):
			return 1, false
		case strings.Contains(name, "time_decay") || strings.Contains(name, "time_daaaa"):
			return 2, false
		case strings.Contains(name, "time_faaaa"):
			return 1, false
		case strings.Contains(name, "time_first"):
			return 3, false
		}
		return 1, dims >= 2
	}
	if layerwiseLR {
		switch {
		case strings.Contains(name, "time_mix"):
			return 1, false
		case strings.Contains(name, "time_decay"):
			return 2, false
		case strings.Contains(name, "time_first"):
			return 3, false
		}
	}
	return 1, dims >= 2
}

// normBlock is the fixed block over which squares are summed before the
// block sums are added in order. Fixed blocks make GradNorm independent of
// GOMAXPROCS.
const normBlock = 1 << 16

// GradNorm returns the Euclidean norm of all gradients taken together,
// accumulated in float64. The result does not depend on GOMAXPROCS.
func GradNorm[F Float](params []Param[F]) float64 {
	nblocks := 0
	for i := range params {
		nblocks += blocks(len(params[i].Grad))
	}
	partial := make([]float64, nblocks)
	forBlocks(params, nblocks, func(g []F, b int) { partial[b] = sumSquares(g) })
	var total float64
	for _, s := range partial {
		total += s
	}
	return math.Sqrt(total)
}

// ClipGlobalNorm scales every gradient in place as
// torch.nn.utils.clip_grad_norm_(params, maxNorm) does: with total the
// global norm, coef = maxNorm/(total+1e-6), and if coef < 1 each gradient
// is multiplied by coef (rounded to F first, as torch does). It returns
// total, the norm before clipping. maxNorm <= 0 disables clipping. A NaN
// or Inf norm leaves the gradients unchanged; check AllFinite first.
func ClipGlobalNorm[F Float](params []Param[F], maxNorm float64) float64 {
	total := GradNorm(params)
	if maxNorm <= 0 {
		return total
	}
	coef := maxNorm / (total + 1e-6)
	if !(coef < 1) {
		return total
	}
	c := F(coef)
	nblocks := 0
	for i := range params {
		nblocks += blocks(len(params[i].Grad))
	}
	forBlocks(params, nblocks, func(g []F, _ int) {
		for i := range g {
			g[i] *= c
		}
	})
	return total
}

// AllFinite reports the name of the first parameter whose gradient holds
// a NaN or an Inf, and ok false; or "", true when all are finite. It is a
// sequential scan; a trainer can test the norm ClipGlobalNorm returns
// (NaN or Inf exactly when some gradient is, for float32 gradients) and
// call AllFinite only to name the culprit.
func AllFinite[F Float](params []Param[F]) (bad string, ok bool) {
	for i := range params {
		for _, x := range params[i].Grad {
			if x-x != 0 { // NaN for NaN and ±Inf
				return params[i].Name, false
			}
		}
	}
	return "", true
}

func blocks(n int) int { return (n + normBlock - 1) / normBlock }

// sumSquares sums g[i]² in float64 with four accumulators.
func sumSquares[F Float](g []F) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(g); i += 4 {
		a, b, c, d := float64(g[i]), float64(g[i+1]), float64(g[i+2]), float64(g[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(g); i++ {
		a := float64(g[i])
		s0 += a * a
	}
	return (s0 + s1) + (s2 + s3)
}

// forBlocks calls fn on every normBlock-sized piece of every gradient,
// with b the piece's index in parameter order, spreading the pieces over
// up to GOMAXPROCS goroutines.
func forBlocks[F Float](params []Param[F], nblocks int, fn func(g []F, b int)) {
	workers := min(runtime.GOMAXPROCS(0), nblocks)
	if workers <= 1 {
		b := 0
		for i := range params {
			g := params[i].Grad
			for lo := 0; lo < len(g); lo += normBlock {
				fn(g[lo:min(lo+normBlock, len(g))], b)
				b++
			}
		}
		return
	}
	// Map block index -> (param, offset) without allocating per block.
	first := make([]int, len(params)+1) // first block of each param
	for i := range params {
		first[i+1] = first[i] + blocks(len(params[i].Grad))
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			pi := 0
			for {
				b := int(next.Add(1) - 1)
				if b >= nblocks {
					return
				}
				for first[pi+1] <= b {
					pi++
				}
				g := params[pi].Grad
				lo := (b - first[pi]) * normBlock
				fn(g[lo:min(lo+normBlock, len(g))], b)
			}
		})
	}
	wg.Wait()
}
