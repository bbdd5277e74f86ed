package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	w := tinyModel(tinyDims)
	m, v := tinyModel(tinyDims), squares(tinyModel(tinyDims))
	for i := range v {
		v[i], _ = v[i].Convert(F64) // any float dtype is kept as is
	}
	st := State{OptimStep: 41, Tokens: 123456, Config: "model:\n  layers: 2\n", Sampler: []byte{0, 1, 2, 255}, Extra: map[string]string{"git": "abc"}}
	path, err := Save(dir, 42, w, m, v, st)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := filepath.Base(path), "step-000000042.safetensors"; got != want {
		t.Errorf("file %s, want %s", got, want)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	st.FormatVersion, st.Step = FormatVersion, 42
	if fmt.Sprintf("%+v", c.State) != fmt.Sprintf("%+v", st) {
		t.Errorf("state %+v, want %+v", c.State, st)
	}
	for _, g := range []struct {
		name      string
		got, want []Tensor
	}{{"weights", c.Weights, w}, {"m", c.OptimM, m}, {"v", c.OptimV, v}} {
		if len(g.got) != len(g.want) {
			t.Fatalf("%s: %d tensors, want %d", g.name, len(g.got), len(g.want))
		}
		for i := range g.want {
			a, b := g.got[i], g.want[i]
			if a.Name != b.Name || a.DType != b.DType || !equalShape(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Errorf("%s %d: got %s %s%v, want %s %s%v", g.name, i, a.Name, a.DType, a.Shape, b.Name, b.DType, b.Shape)
			}
		}
	}
	f, err := OpenSafetensors(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"format", "format_version", "state", "config", "data_crc32c"} {
		if _, ok := f.Meta[k]; !ok {
			t.Errorf("metadata %q missing", k)
		}
	}
	if _, ok := f.Get("optim.m/emb.weight"); !ok {
		t.Error("tensor optim.m/emb.weight missing")
	}
}

func TestSaveRefuses(t *testing.T) {
	w := tinyModel(tinyDims)
	nan := append([]Tensor{}, w...)
	v, _ := nan[5].Float32s()
	v[2] = float32(math.NaN())
	nan[5] = FromFloat32(nan[5].Name, nan[5].Shape, v, F32)
	inf := append([]Tensor{}, w...)
	inf[0] = FromFloat32("emb.weight", inf[0].Shape, make([]float32, inf[0].NumElements()), F32)
	inf[0].Data[7] = 0x7f // element 1: 0x7f800000 = +Inf
	inf[0].Data[6] = 0x80
	tests := []struct {
		name    string
		w, m, v []Tensor
		want    string
		is      error
	}{
		{"NaN weight", nan, nil, nil, `tensor "blocks.0.ln0.weight": element 2 is not finite`, ErrNonFinite},
		{"Inf weight", inf, nil, nil, `tensor "emb.weight": element 1 is not finite`, ErrNonFinite},
		{"NaN moment", w, w, nan, `tensor "blocks.0.ln0.weight": element 2 is not finite`, ErrNonFinite},
		{"no weights", nil, nil, nil, "no weights", ErrTensors},
		{"m without v", w, w, nil, "but 0 optimiser moments", ErrTensors},
		{"moments out of order", w, w, append(append([]Tensor{}, w[1:]...), w[0]), `optimiser moment "blocks.0.ln1.weight"`, ErrTensors},
		{"slash in name", []Tensor{FromFloat32("a/b", []int{1}, []float32{1}, F32)}, nil, nil, `"a/b": name contains '/'`, ErrTensors},
		{"integer weight", []Tensor{{Name: "i", DType: I32, Shape: []int{1}, Data: make([]byte, 4)}}, nil, nil, "dtype I32", ErrDType},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Save(dir, 3, tt.w, tt.m, tt.v, State{})
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %v containing %q", err, tt.is, tt.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Errorf("%d files written", len(ents))
			}
		})
	}
}

func TestLatestAndPrune(t *testing.T) {
	dir := t.TempDir()
	if _, err := Latest(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty dir: %v, want ErrNoCheckpoint", err)
	}
	w := tinyModel(tinyDims)
	for _, step := range []int64{5, 100, 20, 1000000000} {
		if _, err := Save(dir, step, w, nil, nil, State{}); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "step-xyz.safetensors"), []byte("ignored"), 0o644)
	latest, err := Latest(dir)
	if err != nil || filepath.Base(latest) != "step-1000000000.safetensors" {
		t.Fatalf("Latest = %s, %v", latest, err)
	}
	if err := Prune(dir, 2); err != nil {
		t.Fatal(err)
	}
	paths, _, _ := list(dir)
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	if got, want := strings.Join(names, " "), "step-000000100.safetensors step-1000000000.safetensors"; got != want {
		t.Errorf("after Prune(2): %s, want %s", got, want)
	}
	if err := Prune(dir, 0); err == nil {
		t.Error("Prune(0) succeeded")
	}
}

// TestPruneProtectsAndLatestWhere: Prune keeps a protected file (a run's last good
// checkpoint) however old, and LatestWhere passes over the newer ones its test rejects.
func TestPruneProtectsAndLatestWhere(t *testing.T) {
	dir := t.TempDir()
	w := tinyModel(tinyDims)
	var good string
	for _, step := range []int64{1, 2, 3, 4} {
		bad := fmt.Sprint(step > 2)
		p, err := Save(dir, step, w, nil, nil, State{Extra: map[string]string{"bad": bad}})
		if err != nil {
			t.Fatal(err)
		}
		if step == 2 {
			good = p
		}
	}
	if err := Prune(dir, 1, good); err != nil {
		t.Fatal(err)
	}
	paths, _, _ := list(dir)
	if len(paths) != 2 || paths[0] != good || filepath.Base(paths[1]) != FileName(4) {
		t.Fatalf("after Prune(1, %s): %v", good, paths)
	}
	got, passed, err := LatestWhere(dir, func(s State) bool { return s.Extra["bad"] != "true" })
	if err != nil || got != good || len(passed) != 1 {
		t.Fatalf("LatestWhere = %s, passed %v, %v; want %s", got, passed, err, good)
	}
	if _, _, err := LatestWhere(dir, func(State) bool { return false }); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("none accepted: %v, want ErrNoCheckpoint", err)
	}
}

// TestLatestNeverFallsBack: a corrupt newest checkpoint is an error naming
// it, even though an older good one exists.
func TestLatestNeverFallsBack(t *testing.T) {
	w := tinyModel(tinyDims)
	corruptions := []struct {
		name    string
		corrupt func([]byte) []byte
		latest  bool // whether Latest (header only) notices; Load always does
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, true},
		{"empty", func([]byte) []byte { return nil }, true},
		{"header garbage", func(b []byte) []byte { b[8] = 'x'; return b }, true},
		{"flipped data byte", func(b []byte) []byte { b[len(b)-3] ^= 0x10; return b }, false},
		{"not a training checkpoint", func([]byte) []byte {
			var buf bytes.Buffer
			WriteSafetensors(&buf, w, map[string]string{"format": "pt"})
			return buf.Bytes()
		}, true},
	}
	for _, c := range corruptions {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := Save(dir, 1, w, nil, nil, State{}); err != nil {
				t.Fatal(err)
			}
			newest, err := Save(dir, 2, w, nil, nil, State{})
			if err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(newest)
			os.WriteFile(newest, c.corrupt(b), 0o644)
			latest, err := Latest(dir)
			if c.latest {
				if err == nil || !strings.Contains(err.Error(), newest) {
					t.Errorf("Latest = %s, %v; want an error naming %s", latest, err, newest)
				}
			} else if latest != newest {
				t.Errorf("Latest = %s, %v; want %s", latest, err, newest)
			}
			if _, err := Load(newest); err == nil || !strings.Contains(err.Error(), newest) {
				t.Errorf("Load: %v, want an error naming %s", err, newest)
			}
		})
	}
}

func ExampleSave() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	w := []Tensor{FromFloat32("emb.weight", []int{2, 2}, []float32{1, 2, 3, 4}, F32)}
	m := []Tensor{FromFloat32("emb.weight", []int{2, 2}, []float32{0, 0, 0, 0}, F32)}
	v := []Tensor{FromFloat32("emb.weight", []int{2, 2}, []float32{0, 0, 0, 0}, F32)}
	path, err := Save(dir, 123, w, m, v, State{Tokens: 4096, Config: "model:\n  layers: 1\n"})
	if err != nil {
		fmt.Println(err)
		return
	}
	latest, _ := Latest(dir)
	c, err := Load(latest)
	if err != nil {
		fmt.Println(err)
		return
	}
	emb, _ := c.Weights[0].Float32s()
	fmt.Println(filepath.Base(path), c.State.Step, c.State.Tokens, emb)
	// Output: step-000000123.safetensors 123 4096 [1 2 3 4]
}

func TestResume(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := Resume(dir); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty dir: %v, want ErrNoCheckpoint", err)
	}
	w := tinyModel(tinyDims)
	for _, step := range []int64{10, 20} {
		if _, err := Save(dir, step, w, w, squares(w), State{Tokens: step * 100}); err != nil {
			t.Fatal(err)
		}
	}
	stale := filepath.Join(dir, fmt.Sprintf(".step-000000030.safetensors.tmp-%d-42", deadPid))
	os.WriteFile(stale, []byte("partial"), 0o644)
	c, removed, err := Resume(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.State.Step != 20 || c.State.Tokens != 2000 || len(c.OptimV) != len(w) {
		t.Errorf("resumed step %d tokens %d with %d moments", c.State.Step, c.State.Tokens, len(c.OptimV))
	}
	if len(removed) != 1 || removed[0] != stale {
		t.Errorf("removed %v, want [%s]", removed, stale)
	}
}
