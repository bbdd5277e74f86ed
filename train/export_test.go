package train

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/internal/testutil"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

var exportPrompt = []int{3, 17, 4, 40, 11, 0, 29, 8}

// promptLogits runs the prompt through the parallel form (B=1) and returns the logits (T*V).
func promptLogits(t *testing.T, m *model.Model) []float64 {
	t.Helper()
	g, err := m.NewGraph(model.GraphOptions{B: 1, T: len(exportPrompt)})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := g.SetTokens(exportPrompt, nil); err != nil {
		t.Fatal(err)
	}
	if err := g.Run(); err != nil {
		t.Fatal(err)
	}
	switch d := g.Logits().(type) {
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	case []float64:
		return append([]float64(nil), d...)
	}
	return nil
}

func maxRel(got, want []float64) float64 {
	var worst, scale float64
	for i := range want {
		worst = math.Max(worst, math.Abs(got[i]-want[i]))
		scale = math.Max(scale, math.Abs(want[i]))
	}
	return worst / scale
}

// TestExportsReadBack writes every export format and dtype, reads each back as a model, and
// compares its logits on a fixed prompt with the original's, within the dtype's precision.
func TestExportsReadBack(t *testing.T) {
	m := randomModel(t, model.Float32)
	want := promptLogits(t, m)
	ts := weights.Tensors(m, checkpoint.F32)
	dir := t.TempDir()
	file := func(name string, f func(io.Writer) error) string {
		p := filepath.Join(dir, name)
		if err := checkpoint.WriteFileAtomic(p, f); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tol := map[checkpoint.DType]float64{checkpoint.F32: 1e-6, checkpoint.F16: 5e-3, checkpoint.BF16: 4e-2}
	type export struct {
		name string
		dt   checkpoint.DType
		path string
	}
	var exports []export
	for _, dt := range []checkpoint.DType{checkpoint.F32, checkpoint.F16, checkpoint.BF16} {
		exports = append(exports,
			export{"rwkv", dt, file(fmt.Sprintf("rwkv-%s.safetensors", dt), func(w io.Writer) error { return checkpoint.ExportRWKV(w, ts, dt) })},
			export{"pth", dt, file(fmt.Sprintf("model-%s.pth", dt), func(w io.Writer) error { return checkpoint.ExportPTH(w, ts, dt) })})
		hf := filepath.Join(dir, "hf-"+string(dt))
		if err := checkpoint.ExportHF(hf, ts, checkpoint.HFConfig{ContextLength: 24}, dt); err != nil {
			t.Fatal(err)
		}
		exports = append(exports, export{"hf", dt, hf})
	}
	exports = append(exports, export{"web-rwkv", checkpoint.F16, file("web.safetensors", func(w io.Writer) error { return checkpoint.ExportWebRWKV(w, ts) })})
	for _, e := range exports {
		t.Run(e.name+"/"+string(e.dt), func(t *testing.T) {
			back, err := weights.Load(e.path, 24, model.Float32)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxRel(promptLogits(t, back), want); d > tol[e.dt] {
				t.Fatalf("logits differ by %.3g of their scale, tolerance %.3g", d, tol[e.dt])
			}
		})
	}

	// The .pth files through PyTorch: torch.load(weights_only=True) and the in-repo reference.
	t.Run("pth/torch", func(t *testing.T) {
		py := testutil.RequireTorch(t)
		ref, _ := filepath.Abs("../reference")
		dts := []checkpoint.DType{checkpoint.F32, checkpoint.F16, checkpoint.BF16}
		var paths []string
		for _, dt := range dts {
			paths = append(paths, fmt.Sprintf("%q", filepath.Join(dir, fmt.Sprintf("model-%s.pth", dt))))
		}
		script := fmt.Sprintf(`
import json, sys, torch
sys.path.insert(0, %q)
import rwkv4
out = []
for path in [%s]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    p = {k: v.to(torch.float64) for k, v in sd.items()}
    logits, _ = rwkv4.forward(p, torch.tensor([[%s]]))
    out.append(logits.flatten().tolist())
print(json.dumps(out))
`, ref, strings.Join(paths, ", "), strings.Trim(strings.Join(strings.Fields(fmt.Sprint(exportPrompt)), ","), "[]"))
		out, err := exec.Command(py, "-c", script).CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		var got [][]float64
		if err := json.Unmarshal(out, &got); err != nil || len(got) != len(dts) {
			t.Fatalf("%v\n%s", err, out)
		}
		for i, dt := range dts {
			if d := maxRel(got[i], want); d > tol[dt] {
				t.Errorf("%s: PyTorch logits of the .pth differ by %.3g of their scale, tolerance %.3g", dt, d, tol[dt])
			}
		}
	})
}
