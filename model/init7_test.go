package model

import (
	"flag"
	"fmt"
	"math"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// init7GoldenCase is one shape of testdata/init7_golden.json: the deterministic x070 init
// vectors from reference/rwkv7.py init_params (float64).
type init7GoldenCase struct {
	L, C, N, V int
	Ranks      [4]int `json:"ranks"`
	Layer0V    bool   `json:"layer0_v"`
	Vectors    map[string][]float64
}

// init7GoldenShapes: three layers (r0, r1 at both ends and between), three heads of 16 (the
// zigzag restarts per head), V > C (head gain √(V/C)), Dg > C (LoRA gain √(D/C)); and one layer
// (r0 = 0) without layer 0's v*.
var init7GoldenShapes = []init7GoldenCase{
	{L: 3, C: 48, N: 16, V: 100, Ranks: [4]int{16, 24, 8, 64}, Layer0V: true},
	{L: 1, C: 32, N: 16, V: 8, Ranks: [4]int{32, 32, 32, 32}, Layer0V: false},
}

func (c init7GoldenCase) dims() arch.Dims {
	return arch.Dims{Arch: arch.X070, Layers: c.L, Embd: c.C, Vocab: c.V, HeadSize: c.N, FFN: 4 * c.C,
		LoRA: arch.LoRA{W: c.Ranks[0], A: c.Ranks[1], V: c.Ranks[2], G: c.Ranks[3]}, V0Layer0: c.Layer0V}
}

// init7TorchScript prints init7GoldenShapes (JSON in argv[1]) with every deterministic tensor of
// rwkv7.init_params (all but the 2-D matrices, plus r_k), as JSON; Python's float repr
// round-trips exactly.
const init7TorchScript = `
import json, sys, torch
sys.path.insert(0, "../reference")
import rwkv7
cases = json.loads(sys.argv[1])
for c in cases:
    p = rwkv7.init_params(c["L"], c["C"], c["V"], head_size=c["N"], ranks=tuple(c["ranks"]),
                          layer0_v=c["layer0_v"], seed=0, dtype=torch.float64)
    c["Vectors"] = {k: v.reshape(-1).tolist() for k, v in p.items() if v.dim() != 2 or k.endswith(".r_k")}
print(json.dumps(cases))
`

var updateInit7 = flag.Bool("update-init7", false, "rewrite testdata/init7_golden.json from reference/rwkv7.py (needs torch)")

func (c init7GoldenCase) label() string                 { return fmt.Sprintf("L%d C%d", c.L, c.C) }
func (c init7GoldenCase) vectors() map[string][]float64 { return c.Vectors }

// init7GoldenFile: init7's deterministic tensors against the reference's (to 1e-12).
var init7GoldenFile = initGolden{
	init:  init7,
	holds: func(name string, _ []int) bool { return init7Deterministic(name) },
	kind:  "deterministic", tol: 1e-12,
	path: "testdata/init7_golden.json", update: updateInit7, flag: "update-init7", torch: "TestInit7VectorsTorch",
	script: init7TorchScript, ref: "reference/rwkv7.py", indented: true,
}

// TestInit7VectorsGolden: the committed reference values (no Python needed).
func TestInit7VectorsGolden(t *testing.T) {
	testInitVectorsGolden(t, init7GoldenFile, init7GoldenShapes)
}

// TestInit7VectorsTorch: the same, against reference/rwkv7.py run now; it also checks that the
// committed golden is what the reference computes (-update-init7 rewrites it). Skips without
// torch unless RWKV_REQUIRE_TORCH is set.
func TestInit7VectorsTorch(t *testing.T) {
	testInitVectorsTorch(t, init7GoldenFile, init7GoldenShapes)
}

// TestInit7Random checks the drawn tensors: orthogonal with RWKV-LM's gains (WᵀW = gain²·I for
// tall W, WWᵀ for wide), zeros where RWKV-LM has zeros, emb in U(±1e-4); every tensor present
// with its shape; the same seed gives the same values and another seed other ones.
func TestInit7Random(t *testing.T) {
	c := init7GoldenShapes[0]
	d := c.dims()
	p, err := init7(d, 7)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rnn7Dims(p); err != nil {
		t.Fatalf("init7's tensors do not load: %v", err)
	}
	if dd, _ := rnn7Dims(p); dd != d {
		t.Fatalf("dims %+v, want %+v", dd, d)
	}
	checkInitDraws(t, d, init7, p, initDraws{
		gains: map[string]float64{
			"att.receptance.weight": 1, "att.value.weight": 1, "ffn.key.weight": 1, "att.key.weight": 0.1,
			"att.w2": 0.1, "att.a2": 0.1, "att.v2": 0.1, "att.g2": 0.1 * math.Sqrt(64.0/48), // Dg = 64 > C = 48
		},
		zeros:         []string{"att.w1", "att.a1", "att.v1", "att.g1", "att.output.weight", "ffn.value.weight"},
		uniform:       map[string]float64{"emb.weight": 1e-4},
		deterministic: init7Deterministic,
	})
}

// checkOrthogonal checks WᵀW = gain²·I (rows >= cols) or WWᵀ = gain²·I to 1e-5 of gain².
func checkOrthogonal(t *testing.T, name string, ten param7[float64], gain float64) {
	t.Helper()
	rows, cols := ten.Shape[0], ten.Shape[1]
	W := ten.Data
	at := func(i, j int) float64 { return W[i*cols+j] }
	n, m := cols, rows // Gram over columns: (WᵀW)[a][b] = Σ_i W[i][a] W[i][b]
	el := func(i, a int) float64 { return at(i, a) }
	if rows < cols {
		n, m = rows, cols
		el = func(i, a int) float64 { return at(a, i) }
	}
	var worst float64
	for a := 0; a < n; a++ {
		for b := 0; b <= a; b++ {
			var s float64
			for i := 0; i < m; i++ {
				s += el(i, a) * el(i, b)
			}
			want := 0.0
			if a == b {
				want = gain * gain
			}
			worst = max(worst, math.Abs(s-want))
		}
	}
	if worst > 1e-5*gain*gain {
		t.Errorf("%s [%d,%d]: Gram matrix off gain²·I (gain %g) by %.3g", name, rows, cols, gain, worst)
	}
}

func TestInit7Errors(t *testing.T) {
	checkInitErrors(t, init7, init7GoldenShapes[0].dims(), []initErrorCase{
		{"heads", func(d *arch.Dims) { d.HeadSize = 20 }, "head size"},
		{"layers", func(d *arch.Dims) { d.Layers = 0 }, "layers"},
		{"rank", func(d *arch.Dims) { d.LoRA.A = 0 }, "LoRA ranks"},
	})
}

// TestInit7RunsRNN: an initialised float32 model steps without NaN (output and ffn.value are
// zero at init, so the logits come from the embedding through ln0/ln_out and the head only).
func TestInit7RunsRNN(t *testing.T) {
	p, err := init7(init7GoldenShapes[0].dims(), 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := newRNN7(params7Float32(p))
	if err != nil {
		t.Fatal(err)
	}
	st := newX070States[float32](m.d)
	lg := make([]float32, m.d.Vocab)
	for _, tok := range []int{5, 99, 0} {
		if err := m.step(tok, st, lg); err != nil {
			t.Fatal(err)
		}
		for _, x := range lg {
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				t.Fatalf("token %d: logit %v", tok, x)
			}
		}
	}
}
