package optim

import (
	"encoding/binary"
	"math"
	"os"
	"testing"
)

// torchLong mirrors testdata/gen_torch_adamw.py: three tensors, ten steps,
// data and grads from exact rational formulas.
var torchLong = []struct {
	name    string
	shape   []int
	decay   bool
	lrScale float64
	n       int
}{
	{name: "w", shape: []int{40, 25}, decay: true, lrScale: 1, n: 1000},
	{name: "time_decay", shape: []int{37}, lrScale: 2, n: 37},
	{name: "time_first", shape: []int{1, 1, 13}, lrScale: 3, n: 13},
}

var pow10 = [4]float64{1, 0.1, 0.01, 0.001}

func longInit(t, i int) float64 { return float64((i*53+t*17)%199-99) / 64.0 }

func longGrad(t, s, i int) float64 {
	if (i+3*s+t)%29 == 0 {
		return 0
	}
	return float64((i*37+s*101+t*7)%211-105) / 100.0 * pow10[(i+s)%4]
}

func longLR(s int) float64 { return 0.01 * float64(1.0-float64(0.05*float64(s))) }

func readGolden(t *testing.T, path string, size int) []float64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, len(b)/size)
	for i := range out {
		if size == 4 {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:])))
		} else {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[8*i:]))
		}
	}
	return out
}

func checkTorchLong[F Float](t *testing.T, path string, size int) {
	want := readGolden(t, path, size)
	var ps []Param[F]
	for ti, tt := range torchLong {
		data := make([]F, tt.n)
		for i := range data {
			data[i] = F(longInit(ti, i))
		}
		ps = append(ps, Param[F]{Name: tt.name, Shape: tt.shape, Data: data, Grad: make([]F, tt.n),
			LRScale: tt.lrScale, Decay: tt.decay})
	}
	o := NewAdamW(ps, AdamWConfig{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1})
	for s := range 10 {
		for ti := range ps {
			for i := range ps[ti].Grad {
				ps[ti].Grad[i] = F(longGrad(ti, s, i))
			}
		}
		o.Step(longLR(s))
	}
	st := o.State()
	off, mismatches := 0, 0
	for ti, p := range ps {
		for k, got := range [][]F{p.Data, st.M[ti], st.V[ti]} {
			for i, g := range got {
				w := want[off]
				off++
				if float64(g) != w {
					if mismatches++; mismatches <= 5 {
						t.Errorf("%s %s[%d] = %v, want %v (torch)", p.Name, [3]string{"param", "m", "v"}[k], i, g, w)
					}
				}
			}
		}
	}
	if off != len(want) {
		t.Fatalf("compared %d values, golden has %d", off, len(want))
	}
	if mismatches > 0 {
		t.Errorf("%d of %d values differ from torch", mismatches, off)
	}
}

// TestAdamWMatchesTorchLong compares 10 steps over 1050 elements (torch's
// vector and scalar-tail loops both run) with torch 1.13, bit for bit.
func TestAdamWMatchesTorchLong(t *testing.T) {
	t.Run("float32", func(t *testing.T) { checkTorchLong[float32](t, "testdata/torch_adamw_f32.bin", 4) })
	t.Run("float64", func(t *testing.T) { checkTorchLong[float64](t, "testdata/torch_adamw_f64.bin", 8) })
}
