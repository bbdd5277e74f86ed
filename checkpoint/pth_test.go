package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// torchSavedWant is element i of every tensor in testdata/torch_saved.pth.
func torchSavedWant(i int) float32 { return float32(i%16-8) / 4 }

// TestReadPTHTorchSaved reads the committed file that torch.save wrote
// (testdata/gen_pth.py), so the reader is tested without python.
func TestReadPTHTorchSaved(t *testing.T) {
	checkTorchSaved(t, filepath.Join("testdata", "torch_saved.pth"))
}

// TestReadPTHFreshTorchSave regenerates the file with the local torch.
func TestReadPTHFreshTorchSave(t *testing.T) {
	py := testutil.RequireTorch(t)
	path := filepath.Join(t.TempDir(), "fresh.pth")
	if out, err := exec.Command(py, filepath.Join("testdata", "gen_pth.py"), path).CombinedOutput(); err != nil {
		t.Fatalf("gen_pth.py: %v\n%s", err, out)
	}
	checkTorchSaved(t, path)
}

func checkTorchSaved(t *testing.T, path string) {
	t.Helper()
	ts, err := ReadPTH(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name  string
		dtype DType
		shape []int
		value func(i int) float32
	}{
		{"bf16", BF16, []int{3, 5}, torchSavedWant},
		{"fp16", F16, []int{1, 1, 4}, torchSavedWant},
		{"fp32", F32, []int{7}, torchSavedWant},
		{"transposed", F32, []int{6, 4}, func(i int) float32 { return torchSavedWant(i%4*6 + i/4) }},
		{"base", F32, []int{4, 6}, torchSavedWant},
		{"row2", F32, []int{6}, func(i int) float32 { return torchSavedWant(12 + i) }},
		{"scalar", F32, []int{}, func(int) float32 { return 1.5 }},
	}
	if len(ts) != len(want) {
		t.Fatalf("%d tensors, want %d", len(ts), len(want))
	}
	for i, w := range want {
		got := ts[i]
		if got.Name != w.name || got.DType != w.dtype || !equalShape(got.Shape, w.shape) {
			t.Errorf("tensor %d: %s %s%v, want %s %s%v", i, got.Name, got.DType, got.Shape, w.name, w.dtype, w.shape)
			continue
		}
		v, err := got.Float32s()
		if err != nil {
			t.Fatal(err)
		}
		for j, x := range v {
			if x != w.value(j) {
				t.Errorf("%s[%d] = %g, want %g", w.name, j, x, w.value(j))
				break
			}
		}
	}
}

// TestWritePTHLoadsInTorch: torch.load(..., weights_only=True) reads the Go
// file, with the names, dtypes, shapes and values written, for each dtype.
func TestWritePTHLoadsInTorch(t *testing.T) {
	py := testutil.RequireTorch(t)
	model := tinyModel(tinyDims)
	dtypes := []DType{F32, F16, BF16}
	dir := t.TempDir()
	var paths []string
	for _, dt := range dtypes {
		path := filepath.Join(dir, string(dt)+".pth")
		writePTHFile(t, path, func(f *os.File) error { return ExportPTH(f, model, dt) })
		paths = append(paths, path)
	}
	script := `
import json, sys, torch
out = []
for path in sys.argv[1:]:
    sd = torch.load(path, map_location="cpu", weights_only=True)
    assert type(sd).__name__ == "OrderedDict", type(sd)
    out.append([{"name": k, "dtype": str(v.dtype), "shape": list(v.shape), "values": v.float().flatten().tolist()} for k, v in sd.items()])
json.dump(out, sys.stdout)
`
	out, err := exec.Command(py, append([]string{"-c", script}, paths...)...).Output()
	if err != nil {
		t.Fatalf("torch.load: %v", err)
	}
	var files [][]struct {
		Name   string
		DType  string
		Shape  []int
		Values []float64
	}
	if err := json.Unmarshal(out, &files); err != nil || len(files) != len(dtypes) {
		t.Fatalf("torch output: %v, %d files", err, len(files))
	}
	for k, dt := range dtypes {
		t.Run(string(dt), func(t *testing.T) {
			checkAligned(t, paths[k])
			got := files[k]
			torchName, _ := dt.torchName()
			if len(got) != len(model) {
				t.Fatalf("torch read %d tensors, want %d", len(got), len(model))
			}
			for i, m := range model {
				want, _ := m.Convert(dt)
				wv, _ := want.Float64s()
				g := got[i]
				if g.Name != m.Name || g.DType != "torch."+torchName || !equalShape(g.Shape, m.Shape) {
					t.Errorf("tensor %d: torch has %s %s %v, want %s torch.%s %v", i, g.Name, g.DType, g.Shape, m.Name, torchName, m.Shape)
					continue
				}
				for j := range wv {
					if g.Values[j] != wv[j] {
						t.Errorf("%s[%d]: torch %v, want %v", m.Name, j, g.Values[j], wv[j])
						break
					}
				}
			}
		})
	}
}

func writePTHFile(t *testing.T, path string, write func(*os.File) error) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// checkAligned verifies that every entry's data starts on a 64-byte
// boundary, as torch writes and memory-maps them.
func checkAligned(t *testing.T, path string) {
	t.Helper()
	zr, err := zip.OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		off, err := f.DataOffset()
		if err != nil {
			t.Fatal(err)
		}
		if off%64 != 0 {
			t.Errorf("%s: data at offset %d, not 64-byte aligned", f.Name, off)
		}
		if f.Method != zip.Store {
			t.Errorf("%s: method %d, want stored", f.Name, f.Method)
		}
	}
}

func TestPTHRoundTrip(t *testing.T) {
	ts := []Tensor{
		FromFloat32("a", []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}, BF16),
		FromFloat32("b", []int{}, []float32{7}, F32),
		FromFloat32("c", []int{1, 1, 300}, make([]float32, 300), F16),
		FromFloat32("d", []int{0}, nil, F32),
		FromFloat64("e", []int{1, 1, 1, 1, 2}, []float64{1e300, -1}, F64),
	}
	var buf bytes.Buffer
	if err := WritePTH(&buf, ts); err != nil {
		t.Fatal(err)
	}
	got, err := readPTH(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(got), len(ts))
	}
	for i := range ts {
		if got[i].Name != ts[i].Name || got[i].DType != ts[i].DType || !equalShape(got[i].Shape, ts[i].Shape) || !bytes.Equal(got[i].Data, ts[i].Data) {
			t.Errorf("tensor %d: got %s %s%v, want %s %s%v", i, got[i].Name, got[i].DType, got[i].Shape, ts[i].Name, ts[i].DType, ts[i].Shape)
		}
	}
}

// pkl assembles a pickle from pieces for the hostile-pickle table.
func pkl(parts ...string) []byte { return []byte("\x80\x02" + strings.Join(parts, "")) }

const (
	pOrderedDict = "ccollections\nOrderedDict\n)R"
	pStorage     = "((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ"
	pRebuild     = "ctorch._utils\n_rebuild_tensor_v2\n"
)

// tensorArgs builds (_rebuild_tensor_v2, (storage, offset, shape, stride, False, OrderedDict())).
func tensorCall(offset, shape, stride string) string {
	return pRebuild + pStorage + offset + shape + stride + "\x89" + pOrderedDict + "tR"
}

var hostilePickles = []struct {
	name string
	data []byte
	want error
	msg  string
}{
	{"os.system", pkl("cos\nsystem\nX\x02\x00\x00\x00ls\x85R."), ErrForbidden, "global \"os\".\"system\""},
	{"builtins.eval", pkl("cbuiltins\neval\n."), ErrForbidden, "\"builtins\".\"eval\""},
	{"stack global", []byte("\x80\x04\x8c\x02os\x8c\x06system\x93."), ErrForbidden, "\"os\".\"system\""},
	{"torch.Tensor", pkl("ctorch\nTensor\n."), ErrForbidden, "\"torch\".\"Tensor\""},
	{"storage called", pkl("ctorch\nFloatStorage\n)R."), ErrForbidden, "not callable"},
	{"INST opcode", []byte("(ios\nsystem\n."), ErrMalformed, "unsupported opcode 0x69"},
	{"OBJ opcode", pkl("(o."), ErrMalformed, "unsupported opcode 0x6f"},
	{"empty", nil, ErrMalformed, "no STOP"},
	{"no stop", pkl(pOrderedDict), ErrMalformed, "no STOP"},
	{"truncated unicode", pkl("X\xff\x00\x00\x00ab"), ErrMalformed, "truncated"},
	{"huge unicode length", pkl("\x8d\xff\xff\xff\xff\xff\xff\xff\x7f"), ErrMalformed, "truncated"},
	{"stack underflow", pkl("R."), ErrMalformed, "stack underflow"},
	{"pop through mark", pkl("K\x01(\x85."), ErrMalformed, "stack underflow"},
	{"tuple without mark", pkl("t."), ErrMalformed, "no mark"},
	{"values left at stop", pkl("K\x01K\x02."), ErrMalformed, "left on the stack"},
	{"top level list", pkl("]."), ErrMalformed, "not a state dict"},
	{"value not a tensor", pkl(pOrderedDict, "X\x01\x00\x00\x00aK\x01s."), ErrMalformed, "not a tensor"},
	{"unhashable key", pkl("}]K\x01s."), ErrMalformed, "unhashable"},
	{"odd setitems", pkl("}(K\x01u."), ErrMalformed, "odd number"},
	{"memo miss", pkl("h\x05."), ErrMalformed, "memo key 5 not set"},
	{"long1 too long", pkl("\x8a\x09123456789."), ErrMalformed, "does not fit"},
	{"reduce non-tuple", pkl("ccollections\nOrderedDict\nK\x01R."), ErrMalformed, "not a tuple"},
	{"ordered dict args", pkl("ccollections\nOrderedDict\n]\x85R."), ErrMalformed, "OrderedDict with 1 arguments"},
	{"bad persistent id", pkl("X\x01\x00\x00\x00aQ."), ErrMalformed, "persistent id"},
	{"persistent id class", pkl("(X\x07\x00\x00\x00storageccollections\nOrderedDict\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04tQ."), ErrMalformed, "bad storage persistent id"},
	{"view past storage", pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x00", "K\x02\x85", "K\x04\x85"), "s."), ErrMalformed, "past a storage of 4 elements"},
	{"offset past storage", pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x04", "K\x01\x85", "K\x01\x85"), "s."), ErrMalformed, "past a storage"},
	{"negative dim", pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x00", "J\xff\xff\xff\xff\x85", "K\x01\x85"), "s."), ErrMalformed, "bad torch._utils._rebuild_tensor_v2 arguments"},
	{"stride overflow", pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x00", "K\x02\x85", "\x8a\x08\xff\xff\xff\xff\xff\xff\xff\x3f\x85"), "s."), ErrMalformed, ""},
	{"expanded view", pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x00", "J\x00\x00\x00\x40\x85", "K\x00\x85"), "s."), ErrMalformed, "exceeds its storage of 4"},
	{"build on tensor", pkl(tensorCall("K\x00", "K\x01\x85", "K\x01\x85"), "}b."), ErrMalformed, "BUILD on"},
	{"protocol 9", []byte("\x80\x09."), ErrMalformed, "unsupported protocol 9"},
}

func TestDecodeStateDictRejectsHostilePickles(t *testing.T) {
	for _, tt := range hostilePickles {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeStateDict(tt.data)
			if err == nil {
				t.Fatalf("accepted: %v", got)
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q, want it to contain %q", err, tt.msg)
			}
		})
	}
}

func TestDecodeStateDictAcceptsValid(t *testing.T) {
	data := pkl(pOrderedDict, "(X\x01\x00\x00\x00a", tensorCall("K\x01", "K\x03\x85", "K\x01\x85"),
		"X\x01\x00\x00\x00b", tensorCall("K\x00", "K\x02K\x02\x86", "K\x01K\x02\x86"), "u}b.")
	got, err := decodeStateDict(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].name != "a" || got[0].t.offset != 1 || got[1].name != "b" || fmt.Sprint(got[1].t.stride) != "[1 2]" {
		t.Errorf("got %+v", got)
	}
}

// zipPTH builds a .pth-like zip from entries, stored.
func zipPTH(t testing.TB, entries map[string][]byte, method uint16) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, name := range []string{"a/data.pkl", "a/byteorder", "a/data/0", "a/version"} {
		data, ok := entries[name]
		if !ok {
			continue
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: method})
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	zw.Close()
	return buf.Bytes()
}

func TestReadPTHRejectsHostileArchives(t *testing.T) {
	good := pkl(pOrderedDict, "X\x01\x00\x00\x00a", tensorCall("K\x00", "K\x04\x85", "K\x01\x85"), "s.")
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"not a zip", []byte("\x80\x02}."), "not a zip archive"},
		{"no data.pkl", zipPTH(t, map[string][]byte{"a/version": []byte("3\n")}, zip.Store), "no <archive>/data.pkl"},
		{"missing storage", zipPTH(t, map[string][]byte{"a/data.pkl": good}, zip.Store), `no storage entry "data/0"`},
		{"short storage", zipPTH(t, map[string][]byte{"a/data.pkl": good, "a/data/0": make([]byte, 15)}, zip.Store), "holds 15 bytes"},
		{"compressed", zipPTH(t, map[string][]byte{"a/data.pkl": good, "a/data/0": make([]byte, 16)}, zip.Deflate), "is compressed"},
		{"big endian", zipPTH(t, map[string][]byte{"a/data.pkl": good, "a/byteorder": []byte("big"), "a/data/0": make([]byte, 16)}, zip.Store), `byteorder "big"`},
		{"forbidden global", zipPTH(t, map[string][]byte{"a/data.pkl": pkl("cos\nsystem\n.")}, zip.Store), "forbidden pickle global"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readPTH(bytes.NewReader(tt.file), int64(len(tt.file)))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	ok := zipPTH(t, map[string][]byte{"a/data.pkl": good, "a/data/0": make([]byte, 16)}, zip.Store)
	if ts, err := readPTH(bytes.NewReader(ok), int64(len(ok))); err != nil || len(ts) != 1 {
		t.Errorf("valid archive: %v, %d tensors", err, len(ts))
	}
}

// FuzzPickle: decodeStateDict never panics, and what it accepts is a state
// dict whose views lie inside their storages. Seeds: testdata/fuzz.
func FuzzPickle(f *testing.F) {
	for _, s := range pickleSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeStateDict(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if err := checkView(e.t.storage.numel, e.t.offset, e.t.shape, e.t.stride); err != nil {
				t.Fatalf("accepted a bad view: %v", err)
			}
			storage := make([]byte, e.t.storage.numel*int64(e.t.storage.dtype.Size()))
			if int64(len(storage)) < 1<<20 {
				gather(storage, e.t.storage.dtype.Size(), e.t)
			}
		}
	})
}

func pickleSeeds() [][]byte {
	var seeds [][]byte
	p, _ := pickleStateDict([]Tensor{
		FromFloat32("a", []int{2, 3}, make([]float32, 6), BF16),
		FromFloat32("b", []int{}, []float32{1}, F32),
	})
	seeds = append(seeds, p)
	if zr, err := zip.OpenReader(filepath.Join("testdata", "torch_saved.pth")); err == nil {
		for _, zf := range zr.File {
			if strings.HasSuffix(zf.Name, "data.pkl") {
				if b, err := readEntry(zf, 1<<20); err == nil {
					seeds = append(seeds, b)
				}
			}
		}
		zr.Close()
	}
	for _, h := range hostilePickles {
		seeds = append(seeds, h.data)
	}
	return seeds
}

// FuzzPTH: readPTH never panics on a hostile archive.
func FuzzPTH(f *testing.F) {
	if b, err := os.ReadFile(filepath.Join("testdata", "torch_saved.pth")); err == nil {
		f.Add(b)
	}
	var buf bytes.Buffer
	WritePTH(&buf, []Tensor{FromFloat32("a", []int{2}, []float32{1, 2}, BF16)})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := readPTH(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		for _, tn := range ts {
			if err := tn.Validate(); err != nil {
				t.Fatalf("accepted an invalid tensor: %v", err)
			}
		}
	})
}

// TestExportPTHLoadsIntoRWKVLMModule: the exported .pth (BF16, F16, F32) has
// exactly the keys, in order, and shapes of a module built like RWKV-LM's
// RWKV-4, and loads with load_state_dict(strict=True) after a plain
// torch.load.
func TestExportPTHLoadsIntoRWKVLMModule(t *testing.T) {
	py := testutil.RequireTorch(t)
	d := tinyDims
	args := []string{filepath.Join("testdata", "rwkv4_module.py"),
		fmt.Sprint(d.Vocab), fmt.Sprint(d.Embd), fmt.Sprint(d.FFN), fmt.Sprint(d.Layers)}
	for _, dt := range []DType{BF16, F16, F32} {
		path := filepath.Join(t.TempDir(), "RWKV-4-tiny-"+string(dt)+".pth")
		writePTHFile(t, path, func(f *os.File) error { return ExportPTH(f, reversed(tinyModel(d)), dt) })
		args = append(args, path)
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil || string(out) != "ok 42\nok 42\nok 42\n" {
		t.Fatalf("rwkv4_module.py: %v\n%s", err, out)
	}
}
