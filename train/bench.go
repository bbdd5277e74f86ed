package train

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/model"
)

// BenchConfig describes a throughput measurement of full training steps.
type BenchConfig struct {
	Model     model.Config
	MicroBsz  int
	ChunkLen  int    // 0: one pass
	BPTT      string // with ChunkLen
	Steps     int    // measured steps
	Warmup    int    // unmeasured steps first
	Dir       string // scratch directory for the synthetic corpus
	Seed      uint64
	GradAccum int
	PEFT      PEFTConfig // zero Mode: full fine-tuning
	// RandomWeights skips RWKV-LM initialisation (small uniform weights instead): for shapes
	// whose init would cost more than the measurement (x070's init holds every tensor in
	// float64 at once).
	RandomWeights bool
}

// BenchResult is what Bench measured.
type BenchResult struct {
	TokensPerSec float64 `json:"tokens_per_sec"`
	StepSeconds  float64 `json:"step_seconds"`
	Params       int     `json:"params"`
	// FLOPsPerToken counts the matrix products of forward and backward: 6 per weight of every
	// linear layer (for x060 and x070 the LoRAs too, but not x070 layer 0's unused v1/v2) and
	// the head (the embedding is a lookup).
	FLOPsPerToken float64 `json:"flops_per_token"`
	// GemmShare is the fraction of the measured wall time spent inside matrix products, and
	// GemmGFLOPS their own rate: everything else (WKV, elementwise ops, the optimizer, the
	// graph machinery) took 1-GemmShare.
	GemmShare  float64 `json:"gemm_share"`
	GemmGFLOPS float64 `json:"gemm_gflops"`
}

// Bench runs full training steps (forward, backward, clipping, AdamW: the trainer's own step)
// on a synthetic corpus of random tokens and reports their throughput.
func Bench(ctx context.Context, bc BenchConfig) (BenchResult, error) {
	path := filepath.Join(bc.Dir, "bench-tokens.npy")
	n := max(1<<16, 4*bc.Model.CtxLen*bc.MicroBsz)
	if err := writeRandomNpy(path, n, bc.Model.Vocab, bc.Seed); err != nil {
		return BenchResult{}, err
	}
	defer os.Remove(path)
	c := DefaultConfig()
	c.Model.Config = bc.Model
	c.Data = data.Config{Train: path, Sampling: "random"}
	c.Train.MicroBsz, c.Train.GradAccum, c.Train.MaxSteps = bc.MicroBsz, max(bc.GradAccum, 1), bc.Steps+bc.Warmup
	c.Train.ChunkLen = bc.ChunkLen
	if bc.BPTT != "" {
		c.Train.BPTT = bc.BPTT
	}
	c.Optim.LRInit, c.Optim.LRFinal = 1e-4, 1e-4
	c.OutDir = bc.Dir
	if bc.PEFT.Mode != "" {
		c.PEFT = bc.PEFT
	}
	tr, err := New(c, nil, Options{randomWeights: bc.RandomWeights})
	if err != nil {
		return BenchResult{}, err
	}
	defer tr.Close()
	for i := 0; i < bc.Warmup; i++ {
		if _, err := tr.TrainStep(1e-4); err != nil {
			return BenchResult{}, err
		}
	}
	g0 := blas.ReadStats()
	t0 := time.Now()
	for i := 0; i < bc.Steps; i++ {
		if err := ctx.Err(); err != nil {
			return BenchResult{}, err
		}
		if _, err := tr.TrainStep(1e-4); err != nil {
			return BenchResult{}, err
		}
	}
	el := time.Since(t0).Seconds()
	gs := blas.ReadStats().Sub(g0)
	return BenchResult{
		TokensPerSec:  float64(bc.Steps) * float64(c.TokensPerStep()) / el,
		StepSeconds:   el / float64(bc.Steps),
		Params:        tr.Model.NumParams(),
		FLOPsPerToken: 6 * float64(matrixWeights(tr.Model)),
		GemmShare:     gs.Seconds / el,
		GemmGFLOPS:    gs.FLOPs / max(gs.Seconds, 1e-9) / 1e9,
	}, nil
}

// matrixWeights counts the weights that multiply activations once per token: every 2-D
// parameter but the embedding (a lookup), x070 layer 0's v1/v2 (not used), and the [H,N]
// per-channel vectors (x070 r_k, x052/x060 time_faaaa, x052 time_decay); plus x060's
// time_maa_w2 [5,M,C] (five products of M by C).
func matrixWeights(m *model.Model) int {
	n := 0
	for _, p := range m.Params {
		if strings.HasSuffix(p.Name, ".time_maa_w2") {
			n += p.Len()
			continue
		}
		if len(p.Shape) != 2 || p.Name == "emb.weight" || p.Name == "blocks.0.att.v1" || p.Name == "blocks.0.att.v2" ||
			strings.HasSuffix(p.Name, ".r_k") || strings.HasSuffix(p.Name, ".time_faaaa") ||
			strings.HasSuffix(p.Name, ".time_decay") || // elementwise
			model.IsAdapter(p.Name) { // the base's count: a peft run's FLOPs are its own

			continue
		}
		n += p.Len()
	}
	return n
}

// writeRandomNpy writes n uniform token ids below vocab as a 1-D int32 .npy array.
func writeRandomNpy(path string, n, vocab int, seed uint64) error {
	header := fmt.Sprintf("{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }", n)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	buf := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	buf = append(buf, header...)
	rng := rand.New(rand.NewPCG(seed, 1))
	for i := 0; i < n; i++ {
		buf = binary.LittleEndian.AppendUint32(buf, uint32(rng.IntN(vocab)))
	}
	return os.WriteFile(path, buf, 0o644)
}

// fillRandom sets every weight to a small uniform value (norm weights to 1), in parallel
// pieces: a stand-in for a trained model of the shape, for measurements.
func fillRandom(m *model.Model, seed uint64) {
	var wg sync.WaitGroup
	for i, p := range m.Params {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			d := p.F32()
			one := strings.HasSuffix(p.Name, "ln0.weight") || strings.HasSuffix(p.Name, "ln1.weight") ||
				strings.HasSuffix(p.Name, "ln2.weight") || strings.HasSuffix(p.Name, "ln_x.weight") || p.Name == "ln_out.weight"
			for j := range d {
				d[j] = float32(0.02 * (2*rng.Float64() - 1))
				if one {
					d[j] += 1
				}
			}
		}()
	}
	wg.Wait()
}
