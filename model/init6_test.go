package model

import (
	"flag"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// init6GoldenCase is one shape of testdata/init6_golden.json: the formula x052/x060 init
// tensors from reference/rwkv6.py init_params (float64), all but the zero matrices (which
// TestInit6Random checks).
type init6GoldenCase struct {
	Arch          string
	L, C, N, V, F int
	Mix, Decay    int // x060's LoRA widths
	Vectors       map[string][]float64
}

// init6GoldenShapes: three layers (r0, r1 at both ends and between), three heads of 16, V > C;
// one layer (r0 = 0) with V < C; both architectures.
var init6GoldenShapes = []init6GoldenCase{
	{Arch: "x052", L: 3, C: 48, N: 16, V: 100, F: 96},
	{Arch: "x060", L: 3, C: 48, N: 16, V: 100, F: 96, Mix: 8, Decay: 12},
	{Arch: "x052", L: 1, C: 32, N: 8, V: 8, F: 64},
	{Arch: "x060", L: 1, C: 32, N: 8, V: 8, F: 64, Mix: 4, Decay: 40},
}

func (c init6GoldenCase) dims() arch.Dims {
	a := arch.X052
	if c.Arch == "x060" {
		a = arch.X060
	}
	d := arch.Dims{Arch: a, Layers: c.L, Embd: c.C, Vocab: c.V, HeadSize: c.N, FFN: c.F}
	if a == arch.X060 {
		d.LoRA = arch.LoRA{Mix: c.Mix, W: c.Decay}
	}
	return d
}

// init6TorchScript prints init6GoldenShapes (JSON in argv[1]) with every init6Golden tensor of
// rwkv6.init_params, as JSON; Python's float repr round-trips exactly.
const init6TorchScript = `
import json, sys, torch
sys.path.insert(0, "../reference")
import rwkv6
random = ("att.time_maa_w2", "att.time_decay_w2", "emb.weight", "head.weight", "att.receptance.weight",
          "att.key.weight", "att.value.weight", "att.gate.weight", "ffn.key.weight")
cases = json.loads(sys.argv[1])
for c in cases:
    kw = dict(head_size=c["N"], dim_ffn=c["F"], seed=0, dtype=torch.float64)
    if c["Arch"] == "x060":
        kw.update(d_mix=c["Mix"], d_decay=c["Decay"])
    p = rwkv6.init_params(c["Arch"], c["L"], c["C"], c["V"], **kw)
    c["Vectors"] = {k: v.reshape(-1).tolist() for k, v in p.items()
                    if not k.endswith(random) and (v.dim() != 2 or k.endswith(("time_decay", "time_faaaa")))}
print(json.dumps(cases))
`

var updateInit6 = flag.Bool("update-init6", false, "rewrite testdata/init6_golden.json from reference/rwkv6.py (needs torch)")

func (c init6GoldenCase) label() string                 { return fmt.Sprintf("%s L%d C%d", c.Arch, c.L, c.C) }
func (c init6GoldenCase) vectors() map[string][]float64 { return c.Vectors }

// init6Golden reports whether the golden file holds the tensor: a formula tensor that is not a
// zero matrix (the vectors, and x052's [H,N] time_decay and both archs' time_faaaa).
func init6Golden(name string, shape []int) bool {
	return init6Deterministic(name) && (len(shape) != 2 || strings.HasSuffix(name, ".time_decay") || strings.HasSuffix(name, ".time_faaaa"))
}

// init6GoldenFile: init6's golden tensors against the reference's (to 4e-15, a few ulps: both
// evaluate the same float64 formulas, the reference with torch's pow).
var init6GoldenFile = initGolden{
	init: init6, holds: init6Golden, kind: "golden", tol: 4e-15,
	path: "testdata/init6_golden.json", update: updateInit6, flag: "update-init6", torch: "TestInit6VectorsTorch",
	script: init6TorchScript, ref: "reference/rwkv6.py",
}

// TestInit6VectorsGolden: the committed reference values (no Python needed).
func TestInit6VectorsGolden(t *testing.T) {
	testInitVectorsGolden(t, init6GoldenFile, init6GoldenShapes)
}

// TestInit6VectorsTorch: the same, against reference/rwkv6.py run now; it also checks that the
// committed golden is what the reference computes (-update-init6 rewrites it). Skips without
// torch (or without reference/rwkv6.py) unless RWKV_REQUIRE_TORCH is set.
func TestInit6VectorsTorch(t *testing.T) {
	if _, err := os.Stat("../reference/rwkv6.py"); err != nil && os.Getenv("RWKV_REQUIRE_TORCH") == "" {
		t.Skip("no reference/rwkv6.py")
	}
	testInitVectorsTorch(t, init6GoldenFile, init6GoldenShapes)
}

// TestInit6Formulas pins a few values by hand, independently of the reference: the ends of
// time_decay and time_faaaa, the x052/x060 mixes at n = C/2, ln_x's layer scale and x060's
// r1³ in the channel mix.
func TestInit6Formulas(t *testing.T) {
	const L, C = 3, 48
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		d := arch.Dims{Arch: a, Layers: L, Embd: C, Vocab: 10, HeadSize: 16, FFN: 64, LoRA: arch.LoRA{Mix: 4, W: 4}}
		if a == arch.X052 {
			d.LoRA = arch.LoRA{}
		}
		p, err := init6(d, 1)
		if err != nil {
			t.Fatal(err)
		}
		at := func(name string, i int) float64 { return p[name].Data[i] }
		// layer 1 of 3: r0 = 0.5, r1 = 2/3
		r0, r1 := 0.5, 2.0/3
		cases := []struct {
			name string
			i    int
			want float64
		}{
			{"blocks.1.att.time_decay", 0, -6},
			{"blocks.1.att.time_decay", C - 1, -1},
			{"blocks.1.att.time_decay", 24, -6 + 5*math.Pow(24.0/47, 0.7+1.3*r0)},
			{"blocks.1.att.time_faaaa", 0, r0 + 0},
			{"blocks.1.att.time_faaaa", 1, r0*(1-1.0/47) + 0.1},
			{"blocks.1.att.time_faaaa", 2, r0*(1-2.0/47) - 0.1},
			{"blocks.0.att.time_faaaa", 4, 0.1},
			{"blocks.1.att.ln_x.weight", 7, math.Pow(2.0/3, 0.7)},
			{"blocks.2.att.ln_x.weight", 0, 1},
			{"blocks.1.ln1.weight", 3, 1},
			{"blocks.1.att.ln_x.bias", 3, 0},
		}
		if a == arch.X052 {
			cases = append(cases, []struct {
				name string
				i    int
				want float64
			}{
				{"blocks.1.att.time_mix_k", 24, math.Pow(0.5, r1)},
				{"blocks.1.att.time_mix_v", 24, math.Pow(0.5, r1) + 0.3*r0},
				{"blocks.1.att.time_mix_g", 24, math.Pow(0.5, 0.5*r1)},
				{"blocks.1.ffn.time_mix_r", 24, math.Pow(0.5, r1)},
				{"blocks.0.att.time_mix_r", 0, 0},
			}...)
		} else {
			cases = append(cases, []struct {
				name string
				i    int
				want float64
			}{
				{"blocks.1.att.time_maa_x", 24, 1 - math.Pow(0.5, r1)},
				{"blocks.1.att.time_maa_v", 24, 1 - math.Pow(0.5, r1) - 0.3*r0},
				{"blocks.1.att.time_maa_g", 24, 1 - math.Pow(0.5, 0.5*r1)},
				{"blocks.1.ffn.time_maa_k", 24, 1 - math.Pow(0.5, r1*r1*r1)},
				{"blocks.1.att.time_maa_w1", 5, 0},
				{"blocks.1.att.time_decay_w1", 5, 0},
			}...)
		}
		for _, c := range cases {
			if got := at(c.name, c.i); math.Abs(got-c.want) > 1e-15 {
				t.Errorf("%v %s[%d] = %.17g, want %.17g", a, c.name, c.i, got, c.want)
			}
		}
	}
}

// TestInit6Random checks the drawn tensors: orthogonal with RWKV-LM's gains, zeros where RWKV-LM
// has zeros, emb in U(±1e-4), the x060 LoRA second factors in U(±0.01); every tensor of the
// layout present with its shape; the same seed gives the same values and another seed other
// ones.
func TestInit6Random(t *testing.T) {
	for _, c := range init6GoldenShapes[:2] {
		d := c.dims()
		p, err := init6(d, 7)
		if err != nil {
			t.Fatal(err)
		}
		layout := d.Layout()
		if len(p) != len(layout) {
			t.Fatalf("%s: %d tensors, layout %d", c.Arch, len(p), len(layout))
		}
		for _, s := range layout {
			if !slices.Equal(p[s.Name].Shape, s.Shape) {
				t.Fatalf("%s: %s shape %v, layout %v", c.Arch, s.Name, p[s.Name].Shape, s.Shape)
			}
		}
		checkInitDraws(t, d, init6, p, initDraws{
			gains: map[string]float64{
				"att.receptance.weight": 1, "att.value.weight": 1, "ffn.key.weight": 1, "att.key.weight": 0.1, "att.gate.weight": 0.1,
			},
			zeros:         []string{"att.output.weight", "ffn.value.weight", "ffn.receptance.weight", "att.time_maa_w1", "att.time_decay_w1"},
			uniform:       map[string]float64{"emb.weight": 1e-4, "att.time_maa_w2": 0.01, "att.time_decay_w2": 0.01},
			deterministic: init6Deterministic,
		})
	}
}

func TestInit6Errors(t *testing.T) {
	checkInitErrors(t, init6, init6GoldenShapes[1].dims(), []initErrorCase{
		{"heads", func(d *arch.Dims) { d.HeadSize = 20 }, "head size"},
		{"layers", func(d *arch.Dims) { d.Layers = 0 }, "layers"},
		{"rank", func(d *arch.Dims) { d.LoRA.Mix = 0 }, "LoRA widths"},
		{"arch", func(d *arch.Dims) { d.Arch = arch.X070 }, "architecture"},
	})
}

// TestInit6Model: Model.Init of an x052/x060 model is init6's (every parameter, rounded to the
// model's dtype).
func TestInit6Model(t *testing.T) {
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		m, err := New(Config{Arch: a, Layers: 2, Embd: 32, HeadSize: 8, Vocab: 40, CtxLen: 4, DimMix: 4, DimDecay: 6}.withDims(a), Float32)
		if err != nil {
			t.Fatal(err)
		}
		m.Init(5, 0.1)
		p, err := init6(m.Config.Dims(), 5)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range m.Params {
			want := p[q.Name].Data
			got := q.F32()
			for i := range want {
				if got[i] != float32(want[i]) {
					t.Fatalf("%v %s[%d] = %v, init6 %v", a, q.Name, i, got[i], want[i])
				}
			}
		}
	}
}

// withDims clears the LoRA widths an architecture does not have (Validate refuses them).
func (c Config) withDims(a arch.Arch) Config {
	if a != arch.X060 {
		c.DimMix, c.DimDecay = 0, 0
	}
	return c
}
