package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// tinyX070 has every x070 tensor kind at a size the tests can afford:
// L=2, C=128, H=2 heads of 64, V=64, F=4C, distinct ranks so that a
// transposed or swapped LoRA shows.
var tinyX070 = Dims{Arch: arch.X070, Layers: 2, Embd: 128, Vocab: 64, HeadSize: 64, FFN: 512,
	LoRA: arch.LoRA{W: 16, A: 24, V: 8, G: 32}}

// tinyX070Model returns the x070 tensors of d (with layer 0's v0/v1/v2 when
// v0) in RWKV-LM order, F32, with deterministic values (each tensor's values
// differ from every other's).
func tinyX070Model(d Dims, v0 bool) []Tensor {
	d.V0Layer0 = v0
	var out []Tensor
	seed := uint32(7)
	for _, l := range d.Layout() {
		v := make([]float32, l.Size())
		for j := range v {
			seed = seed*1664525 + 1013904223
			v[j] = float32(int32(seed>>8)-1<<23) / float32(1<<23)
		}
		out = append(out, FromFloat32(l.Name, l.Shape, v, F32))
	}
	return out
}

func names(ts []Tensor) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Name
	}
	return out
}

// sameTensors fails unless got and want hold the same names in the same
// order with equal shapes, and values within tol (0: bit-exact F32 values).
func sameTensors(t *testing.T, got, want []Tensor, tol float64) {
	t.Helper()
	if g, w := strings.Join(names(got), " "), strings.Join(names(want), " "); g != w {
		t.Fatalf("names differ:\n got %s\nwant %s", g, w)
	}
	for i := range want {
		if !equalShape(got[i].Shape, want[i].Shape) {
			t.Errorf("%s: shape %v, want %v", want[i].Name, got[i].Shape, want[i].Shape)
			continue
		}
		if d := maxDiff(t, got[i], want[i]); d > tol {
			t.Errorf("%s: max difference %g > %g", want[i].Name, d, tol)
		}
	}
}

// f16Tol bounds the rounding of values in [-1, 1] to F16 (half an ulp at 1).
const f16Tol = 1.0 / 2048

// TestCheckX070Dims: CheckX070 reads the sizes of x070 tensor sets (arch.Infer),
// with and without layer 0's v0/v1/v2, and for one layer without them (no v1 to
// read V from: the current rule's V, which the RWKV-LM exports give layer 0).
func TestCheckX070Dims(t *testing.T) {
	for _, v0 := range []bool{true, false} {
		want := tinyX070
		want.V0Layer0 = v0
		d, _, err := CheckX070(tinyX070Model(tinyX070, v0))
		if err != nil || d != want {
			t.Errorf("v0=%v: %+v, %v; want %+v", v0, d, err, want)
		}
	}
	one := tinyX070
	one.Layers = 1
	if d, _, err := CheckX070(tinyX070Model(one, true)); err != nil || d.LoRA.V != one.LoRA.V {
		t.Errorf("L=1 with layer-0 v1: V %d, %v; want %d from blocks.0.att.v1", d.LoRA.V, err, one.LoRA.V)
	}
	if d, _, err := CheckX070(tinyX070Model(one, false)); err != nil || d.LoRA.V != 32 {
		t.Errorf("L=1 without v1: V %d, %v; want the rank rule's 32 for C=128", d.LoRA.V, err)
	}
	var buf bytes.Buffer
	if err := ExportX070PTH(&buf, tinyX070Model(one, false), F32); err != nil {
		t.Fatalf("L=1 without v1: %v", err)
	}
	got, err := readPTH(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if v1 := tensorsByName(got)["blocks.0.att.v1"]; !equalShape(v1.Shape, []int{128, 32}) {
		t.Errorf("L=1 export: blocks.0.att.v1 shape %v, want [128 32]", v1.Shape)
	}
}

// TestX070StateDictOrder: the RWKV-LM exports write each layer's LoRAs in the
// order RWKV_Tmix_x070 registers them (w1, w2, w0: the matrices before the
// bias), as torch.save of its state_dict does.
func TestX070StateDictOrder(t *testing.T) {
	var buf bytes.Buffer
	if err := ExportX070PTH(&buf, tinyX070Model(tinyX070, false), F32); err != nil {
		t.Fatal(err)
	}
	got, err := readPTH(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	n := names(got)
	want := "blocks.1.att.x_g blocks.1.att.w1 blocks.1.att.w2 blocks.1.att.w0 blocks.1.att.a1 blocks.1.att.a2 blocks.1.att.a0 " +
		"blocks.1.att.v1 blocks.1.att.v2 blocks.1.att.v0 blocks.1.att.g1 blocks.1.att.g2 blocks.1.att.k_k"
	i := slices.Index(n, "blocks.1.att.x_g")
	if i < 0 || i+13 > len(n) || strings.Join(n[i:i+13], " ") != want {
		t.Errorf("layer 1 order %v, want %s", n[max(i, 0):min(max(i, 0)+13, len(n))], want)
	}
}

func TestCheckX070(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	rev := append([]Tensor{}, model...)
	for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
		rev[i], rev[j] = rev[j], rev[i]
	}
	d, ordered, err := CheckX070(rev)
	if err != nil || !d.V0Layer0 || d.LoRA != tinyX070.LoRA {
		t.Fatalf("CheckX070: %+v %v", d, err)
	}
	if strings.Join(names(ordered), " ") != strings.Join(names(model), " ") {
		t.Errorf("not in RWKV-LM order: %v", names(ordered)[:8])
	}
	// 6 + L·33 with layer 0's v0/v1/v2: the count NEXT-ARCH gives for the
	// official release (798 = 6 + 24·33).
	if len(ordered) != 6+33*tinyX070.Layers {
		t.Errorf("%d tensors, want %d", len(ordered), 6+33*tinyX070.Layers)
	}
	without := func(name string) []Tensor {
		var out []Tensor
		for _, t := range model {
			if t.Name != name {
				out = append(out, t)
			}
		}
		return out
	}
	badShape := append([]Tensor{}, model...)
	for i, tt := range badShape {
		if tt.Name == "blocks.1.att.k_k" {
			badShape[i] = FromFloat32(tt.Name, []int{128}, make([]float32, 128), F32)
		}
	}
	badDType := append([]Tensor{}, model...)
	badDType[3] = Tensor{Name: badDType[3].Name, DType: I32, Shape: badDType[3].Shape, Data: badDType[3].Data}
	tests := []struct {
		name string
		ts   []Tensor
		err  error
		want string
	}{
		{"missing", without("blocks.1.att.g2"), ErrTensors, `missing tensor "blocks.1.att.g2"`},
		{"extra", append(append([]Tensor{}, model...), FromFloat32("blocks.0.att.time_decay", []int{128}, make([]float32, 128), F32)), ErrTensors, `unexpected tensor "blocks.0.att.time_decay"`},
		{"7a", append(append([]Tensor{}, model...), FromFloat32("blocks.0.ffn.s_emb.weight", []int{64, 4}, make([]float32, 256), F32)), arch.ErrUnsupported, "RWKV-7a/7b variant"},
		{"7b", append(append([]Tensor{}, model...), FromFloat32("blocks.0.qkv.k_emb", []int{4}, make([]float32, 4), F32)), arch.ErrUnsupported, "RWKV-7a/7b variant"},
		{"shape", badShape, ErrTensors, `tensor "blocks.1.att.k_k": shape [128], want [1 1 128]`},
		{"rwkv4", tinyModel(tinyDims), ErrTensors, "the tensors hold an RWKV-4 (x040) model, not RWKV-7 (x070)"},
		{"partial layer-0 v", without("blocks.0.att.v2"), ErrTensors, `missing tensor "blocks.0.att.v2"`},
		{"dtype", badDType, ErrDType, "dtype I32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := CheckX070(tt.ts)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %v with %q", err, tt.err, tt.want)
			}
		})
	}
}

// The RWKV-LM exports write every tensor in RWKV-LM order with [1,1,C]
// vectors and layer 0's v0/v1/v2 (zeros when the model has none), and
// read back exactly (F32) or within the rounding of the dtype.
func TestExportX070RWKVLM(t *testing.T) {
	full := tinyX070Model(tinyX070, true)
	for _, layer0V := range []bool{true, false} {
		model := tinyX070Model(tinyX070, layer0V)
		var want []Tensor
		by := tensorsByName(model)
		full := tinyX070
		full.V0Layer0 = true
		for _, w := range full.Layout() {
			tt, ok := by[w.Name]
			if !ok {
				tt = FromFloat32(w.Name, w.Shape, make([]float32, w.Size()), F32)
			}
			want = append(want, tt)
		}
		for _, dt := range []DType{F32, F16, BF16} {
			tol := map[DType]float64{F32: 0, F16: f16Tol, BF16: 1.0 / 256}[dt]
			t.Run(fmt.Sprintf("layer0V=%v/%s", layer0V, dt), func(t *testing.T) {
				var pth, st bytes.Buffer
				if err := ExportX070PTH(&pth, model, dt); err != nil {
					t.Fatal(err)
				}
				got, err := readPTH(bytes.NewReader(pth.Bytes()), int64(pth.Len()))
				if err != nil {
					t.Fatal(err)
				}
				for _, g := range got {
					if g.DType != dt {
						t.Fatalf("%s: dtype %s, want %s", g.Name, g.DType, dt)
					}
				}
				sameTensors(t, got, want, tol)
				if err := ExportX070RWKV(&st, model, dt); err != nil {
					t.Fatal(err)
				}
				f, err := ReadSafetensors(bytes.NewReader(st.Bytes()), int64(st.Len()))
				if err != nil {
					t.Fatal(err)
				}
				sameTensors(t, f.Tensors, want, tol)
				if f.Meta["format"] != "pt" {
					t.Errorf("safetensors metadata %v, want format=pt", f.Meta)
				}
			})
		}
	}
	var buf bytes.Buffer
	if err := ExportX070PTH(&buf, full, I32); !errors.Is(err, ErrDType) {
		t.Errorf("I32 export: %v, want ErrDType", err)
	}
	huge := append([]Tensor{}, full...)
	huge[1] = FromFloat32(huge[1].Name, huge[1].Shape, append([]float32{1e6}, make([]float32, huge[1].NumElements()-1)...), F32)
	if err := ExportX070PTH(&buf, huge, F16); !errors.Is(err, ErrNonFinite) {
		t.Errorf("F16 overflow: %v, want ErrNonFinite", err)
	}
}

// torch.load reads the x070 .pth with RWKV-LM's names, [1,1,C] vectors and
// the values we wrote.
func TestExportX070PTHTorch(t *testing.T) {
	py := testutil.RequireTorch(t)
	model := tinyX070Model(tinyX070, false)
	path := filepath.Join(t.TempDir(), "x070.pth")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ExportX070PTH(f, model, BF16); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, torch
sd = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
for k, v in sd.items():
    print(k, v.dtype, list(v.shape), repr(float(v.float().sum())))
`
	out, err := exec.Command(py, "-c", script, path).CombinedOutput()
	if err != nil {
		t.Fatalf("torch.load: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	_, want, err := x070ForRWKVLM(model, BF16)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != len(want) {
		t.Fatalf("torch sees %d tensors, want %d:\n%s", len(lines), len(want), out)
	}
	for i, w := range want {
		var name, dtype, shape string
		var sum float64
		fields := strings.SplitN(lines[i], " ", 3)
		name, dtype = fields[0], fields[1]
		rest := fields[2]
		cut := strings.LastIndex(rest, " ")
		shape = rest[:cut]
		fmt.Sscan(rest[cut+1:], &sum)
		v, _ := w.Float64s()
		var ws float64
		for _, x := range v {
			ws += x
		}
		if name != w.Name || dtype != "torch.bfloat16" || shape != strings.ReplaceAll(fmt.Sprint(w.Shape), " ", ", ") {
			t.Errorf("torch line %q, want %s torch.bfloat16 %v", lines[i], w.Name, w.Shape)
		}
		if d := sum - ws; d > 1e-2*float64(len(v)) || d < -1e-2*float64(len(v)) {
			t.Errorf("%s: torch sum %g, ours %g", w.Name, sum, ws)
		}
	}
}
