package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

var updateHF = flag.Bool("update-hf", false, "rewrite testdata/hf/st_sharded, the Go-written sharded safetensors fixture")

// hfFixtureDims is the model of testdata/hf (gen_hf.py).
var hfFixtureDims = Dims{Vocab: 11, Embd: 4, FFN: 16, Layers: 2}

// hfFixtureModel is the model every testdata/hf directory holds: element j of
// the k-th tensor is ((5j + 3k) mod 16 - 8) / 16, exact in every float dtype.
func hfFixtureModel(dt DType) []Tensor {
	layout := hfFixtureDims.Layout()
	out := make([]Tensor, len(layout))
	for k, l := range layout {
		v := make([]float32, l.Size())
		for j := range v {
			v[j] = float32((5*j+3*k)%16-8) / 16
		}
		out[k] = FromFloat32(l.Name, l.Shape, v, dt)
	}
	return out
}

// writeSTSharded writes dir as transformers' save_pretrained does for a
// sharded safetensors checkpoint: shards with format "pt" metadata, an
// index.json with metadata.total_size and weight_map, and config.json.
func writeSTSharded(t *testing.T, dir string) {
	t.Helper()
	ts := hfFixtureModel(BF16)
	for i := range ts {
		ts[i].Name = HFName(ts[i].Name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	const shards = 3
	index := map[string]any{}
	weightMap := map[string]string{}
	total := 0
	per := (len(ts) + shards - 1) / shards
	for s := 0; s < shards; s++ {
		part := ts[s*per : min(len(ts), (s+1)*per)]
		name := "model-0000" + string(rune('1'+s)) + "-of-00003.safetensors"
		var buf bytes.Buffer
		if err := WriteSafetensors(&buf, part, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, x := range part {
			weightMap[x.Name] = name
			total += len(x.Data)
		}
	}
	index["metadata"] = map[string]int{"total_size": total}
	index["weight_map"] = weightMap
	b, _ := json.MarshalIndent(index, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join("testdata", "hf", "bin", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	conf = bytes.Replace(conf, []byte(`"float32"`), []byte(`"bfloat16"`), 1)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), conf, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSTShardedFixtureIsCurrent: the committed Go-written fixture is what
// writeSTSharded writes (go test -update-hf rewrites it).
func TestSTShardedFixtureIsCurrent(t *testing.T) {
	committed := filepath.Join("testdata", "hf", "st_sharded")
	if *updateHF {
		os.RemoveAll(committed)
		writeSTSharded(t, committed)
	}
	fresh := t.TempDir()
	writeSTSharded(t, fresh)
	ents, err := os.ReadDir(fresh)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		want, _ := os.ReadFile(filepath.Join(fresh, e.Name()))
		got, err := os.ReadFile(filepath.Join(committed, e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s differs from what writeSTSharded writes (%v); run go test -run TestSTShardedFixtureIsCurrent -update-hf ./checkpoint/", e.Name(), err)
		}
	}
}

// checkHFFixture requires ts to be the fixture model in dt, exactly.
func checkHFFixture(t *testing.T, ts []Tensor, dt DType) {
	t.Helper()
	want := hfFixtureModel(dt)
	if len(ts) != len(want) {
		t.Fatalf("%d tensors, want %d", len(ts), len(want))
	}
	for i, w := range want {
		g := ts[i]
		if g.Name != w.Name || g.DType != dt || !equalShape(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
			t.Errorf("tensor %d: %s %s%v, want %s %s%v with the fixture's values", i, g.Name, g.DType, g.Shape, w.Name, dt, w.Shape)
		}
	}
}

// TestReadHFDirectories reads the Hugging Face directories of testdata/hf
// (gen_hf.py wrote the torch.save ones, writeSTSharded the sharded
// safetensors), through the directory and through the file, and gets the
// original model back exactly.
func TestReadHFDirectories(t *testing.T) {
	hf := filepath.Join("testdata", "hf")
	tests := []struct {
		name string
		path string
		dt   DType
	}{
		{"pytorch_model.bin dir", filepath.Join(hf, "bin"), F32},
		{"pytorch_model.bin file", filepath.Join(hf, "bin", "pytorch_model.bin"), F32},
		{"sharded bin dir", filepath.Join(hf, "bin_sharded"), F16},
		{"sharded bin index", filepath.Join(hf, "bin_sharded", "pytorch_model.bin.index.json"), F16},
		{"sharded safetensors dir", filepath.Join(hf, "st_sharded"), BF16},
		{"sharded safetensors index", filepath.Join(hf, "st_sharded", "model.safetensors.index.json"), BF16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, err := ReadWeights(tt.path)
			if err != nil {
				t.Fatal(err)
			}
			checkHFFixture(t, ts, tt.dt)
		})
	}
}

// TestHFFixturesAreCurrent regenerates the torch.save fixtures with the
// local torch and reads them like the committed ones.
func TestHFFixturesAreCurrent(t *testing.T) {
	py := testutil.RequireTorch(t)
	out := t.TempDir()
	if b, err := exec.Command(py, filepath.Join("testdata", "hf", "gen_hf.py"), out).CombinedOutput(); err != nil {
		t.Fatalf("gen_hf.py: %v\n%s", err, b)
	}
	for dir, dt := range map[string]DType{"bin": F32, "bin_sharded": F16} {
		ts, err := ReadWeights(filepath.Join(out, dir))
		if err != nil {
			t.Fatal(err)
		}
		checkHFFixture(t, ts, dt)
	}
}

// copyDir copies a fixture directory (flat) into a new temporary one.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.MkdirAll(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// editFile applies a textual replacement, which must match.
func editFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%s does not contain %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadHFDirectoryErrors: a config.json that disagrees with the tensors,
// a missing shard and an inconsistent index are errors naming the key, the
// tensor or the file.
func TestReadHFDirectoryErrors(t *testing.T) {
	hf := filepath.Join("testdata", "hf")
	tests := []struct {
		name    string
		fixture string
		edit    func(t *testing.T, dir string)
		want    []string
	}{
		{"hidden_size", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"hidden_size": 4`, `"hidden_size": 8`)
		}, []string{"config.json: hidden_size is 8", "tensor rwkv.embeddings.weight has shape [11 4]"}},
		{"vocab_size", "bin_sharded", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"vocab_size": 11`, `"vocab_size": 50277`)
		}, []string{"vocab_size is 50277", "rwkv.embeddings.weight"}},
		{"num_hidden_layers more", "st_sharded", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"num_hidden_layers": 2`, `"num_hidden_layers": 3`)
		}, []string{"num_hidden_layers is 3", "tensor rwkv.blocks.2.ln1.weight is missing"}},
		{"num_hidden_layers fewer", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"num_hidden_layers": 2`, `"num_hidden_layers": 1`)
		}, []string{"num_hidden_layers is 1", "rwkv.blocks.1.ln1.weight"}},
		{"intermediate_size", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"intermediate_size": 16`, `"intermediate_size": 32`)
		}, []string{"intermediate_size is 32", "rwkv.blocks.0.feed_forward.key.weight has shape [16 4]"}},
		{"intermediate_size null is 4×hidden", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"hidden_size": 4,`, `"hidden_size": 4, "attention_hidden_size": null,`)
			editFile(t, filepath.Join(dir, "config.json"), `"intermediate_size": 16`, `"intermediate_size": null`)
			editFile(t, filepath.Join(dir, "config.json"), `"attention_hidden_size": 4,`, ``)
			// 4×4 = 16: null is accepted.
		}, nil},
		{"attention_hidden_size", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"attention_hidden_size": 4`, `"attention_hidden_size": 6`)
		}, []string{"attention_hidden_size is 6", "rwkv.blocks.0.attention.key.weight"}},
		{"model_type", "bin", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "config.json"), `"model_type": "rwkv"`, `"model_type": "rwkv5"`)
		}, []string{`model_type "rwkv5"`}},
		{"missing bin shard", "bin_sharded", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "pytorch_model-00002-of-00002.bin"))
		}, []string{"pytorch_model-00002-of-00002.bin", "is missing", "pytorch_model.bin.index.json"}},
		{"missing safetensors shard", "st_sharded", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "model-00003-of-00003.safetensors"))
		}, []string{"shard", "model-00003-of-00003.safetensors", "is missing"}},
		{"tensor not in weight_map", "bin_sharded", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "pytorch_model.bin.index.json"), `"head.weight": "pytorch_model-00002-of-00002.bin",`, ``)
		}, []string{`tensor "head.weight" is not in the weight_map`}},
		{"tensor in the wrong shard", "st_sharded", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "model.safetensors.index.json"), `"head.weight": "model-00003-of-00003.safetensors"`, `"head.weight": "model-00001-of-00003.safetensors"`)
		}, []string{`"head.weight"`, "model-00001-of-00003.safetensors", "is not in it"}},
		{"shard outside the directory", "bin_sharded", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, "pytorch_model.bin.index.json"), `"head.weight": "pytorch_model-00002-of-00002.bin"`, `"head.weight": "../pytorch_model-00002-of-00002.bin"`)
		}, []string{"not a file name in the index's directory"}},
		{"no weights", "bin", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "pytorch_model.bin"))
		}, []string{"model.safetensors, model.safetensors.index.json, pytorch_model.bin, pytorch_model.bin.index.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := copyDir(t, filepath.Join(hf, tt.fixture))
			tt.edit(t, dir)
			_, err := ReadWeights(dir)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want an error with %q", tt.want)
			}
			t.Log(err)
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// TestReadWeightsRefusesNonFinite: a NaN or infinity in any format is an
// error naming the tensor and the element.
func TestReadWeightsRefusesNonFinite(t *testing.T) {
	bad := func(name string, v float32) []Tensor {
		ts := tinyModel(tinyDims)
		for i, x := range ts {
			if x.Name == name {
				f, _ := x.Float32s()
				f[2] = v
				ts[i] = FromFloat32(x.Name, x.Shape, f, x.DType)
			}
		}
		return ts
	}
	hfNames := func(ts []Tensor) []Tensor {
		for i := range ts {
			ts[i].Name = HFName(ts[i].Name)
		}
		return ts
	}
	write := func(t *testing.T, path string, f func(*bytes.Buffer) error) string {
		var buf bytes.Buffer
		if err := f(&buf); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(-1))
	tests := []struct {
		name   string
		make   func(t *testing.T, dir string) string
		tensor string
	}{
		{"safetensors", func(t *testing.T, dir string) string {
			return write(t, filepath.Join(dir, "m.safetensors"), func(b *bytes.Buffer) error {
				return WriteSafetensors(b, bad("blocks.1.att.time_decay", nan), nil)
			})
		}, "blocks.1.att.time_decay"},
		{"pth", func(t *testing.T, dir string) string {
			return write(t, filepath.Join(dir, "m.pth"), func(b *bytes.Buffer) error {
				return WritePTH(b, bad("head.weight", inf))
			})
		}, "head.weight"},
		{"hf safetensors dir", func(t *testing.T, dir string) string {
			write(t, filepath.Join(dir, "hf", "model.safetensors"), func(b *bytes.Buffer) error {
				return WriteSafetensors(b, hfNames(bad("emb.weight", nan)), map[string]string{"format": "pt"})
			})
			return filepath.Join(dir, "hf")
		}, "emb.weight"},
		{"training checkpoint", func(t *testing.T, dir string) string {
			// Save refuses non-finite values, so write what a damaged or
			// foreign writer could: a valid header and checksum.
			ts := bad("blocks.0.ffn.key.weight", nan)
			for i := range ts {
				ts[i].Name = prefixModel + ts[i].Name
			}
			return write(t, filepath.Join(dir, FileName(9)), func(b *bytes.Buffer) error {
				return WriteSafetensors(b, ts, map[string]string{"format": FormatName, "format_version": "1",
					"state": `{"step":9}`, "data_crc32c": strconv.FormatUint(uint64(dataCRC(ts)), 10)})
			})
		}, "blocks.0.ffn.key.weight"},
		{"hf pytorch_model.bin dir", func(t *testing.T, dir string) string {
			write(t, filepath.Join(dir, "hf", "pytorch_model.bin"), func(b *bytes.Buffer) error {
				return WritePTH(b, hfNames(bad("ln_out.bias", inf)))
			})
			return filepath.Join(dir, "hf")
		}, "ln_out.bias"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadWeights(tt.make(t, t.TempDir()))
			if !errors.Is(err, ErrNonFinite) || !strings.Contains(err.Error(), `"`+tt.tensor+`": element 2 is not finite`) {
				t.Errorf("error %v, want ErrNonFinite naming %s element 2", err, tt.tensor)
			}
		})
	}
}

// FuzzHFIndexAndConfig: any index.json and config.json next to the sharded
// fixture's shards either fail or give back the fixture's model.
func FuzzHFIndexAndConfig(f *testing.F) {
	src := filepath.Join("testdata", "hf", "st_sharded")
	index, err := os.ReadFile(filepath.Join(src, "model.safetensors.index.json"))
	if err != nil {
		f.Fatal(err)
	}
	config, err := os.ReadFile(filepath.Join(src, "config.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(index, config)
	f.Add(index, []byte(`{"hidden_size": null, "intermediate_size": 16, "num_hidden_layers": "2"}`))
	f.Add([]byte(`{"weight_map": {"head.weight": "../config.json"}}`), []byte(`{}`))
	f.Add([]byte(`{"weight_map": []}`), []byte(`[]`))
	f.Fuzz(func(t *testing.T, index, config []byte) {
		dir := copyDir(t, src)
		os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), index, 0o644)
		os.WriteFile(filepath.Join(dir, "config.json"), config, 0o644)
		ts, err := ReadWeights(dir)
		if err != nil {
			return
		}
		checkHFFixture(t, ts, BF16)
	})
}
