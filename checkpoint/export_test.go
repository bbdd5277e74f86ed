package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

func TestHFNames(t *testing.T) {
	// The HF names are those of transformers' RwkvForCausalLM state_dict
	// (modeling_rwkv.py); the mapping is convert_rwkv_checkpoint_to_hf.py's.
	tests := []struct{ rwkv, hf string }{
		{"emb.weight", "rwkv.embeddings.weight"},
		{"blocks.0.ln0.weight", "rwkv.blocks.0.pre_ln.weight"},
		{"blocks.0.ln0.bias", "rwkv.blocks.0.pre_ln.bias"},
		{"blocks.0.ln1.weight", "rwkv.blocks.0.ln1.weight"},
		{"blocks.11.ln2.bias", "rwkv.blocks.11.ln2.bias"},
		{"blocks.0.att.time_decay", "rwkv.blocks.0.attention.time_decay"},
		{"blocks.3.att.time_first", "rwkv.blocks.3.attention.time_first"},
		{"blocks.0.att.time_mix_k", "rwkv.blocks.0.attention.time_mix_key"},
		{"blocks.0.att.time_mix_v", "rwkv.blocks.0.attention.time_mix_value"},
		{"blocks.0.att.time_mix_r", "rwkv.blocks.0.attention.time_mix_receptance"},
		{"blocks.1.att.key.weight", "rwkv.blocks.1.attention.key.weight"},
		{"blocks.1.att.output.weight", "rwkv.blocks.1.attention.output.weight"},
		{"blocks.2.ffn.time_mix_k", "rwkv.blocks.2.feed_forward.time_mix_key"},
		{"blocks.2.ffn.time_mix_r", "rwkv.blocks.2.feed_forward.time_mix_receptance"},
		{"blocks.2.ffn.key.weight", "rwkv.blocks.2.feed_forward.key.weight"},
		{"blocks.2.ffn.value.weight", "rwkv.blocks.2.feed_forward.value.weight"},
		{"ln_out.weight", "rwkv.ln_out.weight"},
		{"head.weight", "head.weight"},
	}
	for _, tt := range tests {
		t.Run(tt.rwkv, func(t *testing.T) {
			if got := HFName(tt.rwkv); got != tt.hf {
				t.Errorf("HFName(%q) = %q, want %q", tt.rwkv, got, tt.hf)
			}
			if got, ok := RWKVName(tt.hf); !ok || got != tt.rwkv {
				t.Errorf("RWKVName(%q) = %q, %v, want %q", tt.hf, got, ok, tt.rwkv)
			}
		})
	}
	for _, bad := range []string{"embeddings.weight", "rwkv.head.weight", "model.x", "rwkv.blocks.0.att.key.weight", "rwkv.emb.weight"} {
		if got, ok := RWKVName(bad); ok {
			t.Errorf("RWKVName(%q) = %q, want not ok", bad, got)
		}
	}
}

func TestCheckRWKV4(t *testing.T) {
	model := tinyModel(tinyDims)
	d, ordered, err := CheckRWKV4(reversed(model))
	if err != nil {
		t.Fatal(err)
	}
	if d != tinyDims {
		t.Errorf("dims %+v, want %+v", d, tinyDims)
	}
	if len(ordered) != 6+18*tinyDims.Layers || ordered[0].Name != "emb.weight" || ordered[len(ordered)-1].Name != "head.weight" {
		t.Errorf("not in state_dict order: %d tensors, first %s", len(ordered), ordered[0].Name)
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
	badShape[3] = FromFloat32(badShape[3].Name, []int{5}, make([]float32, 5), F32)
	tests := []struct {
		name string
		ts   []Tensor
		want string
	}{
		{"missing ln0", without("blocks.0.ln0.bias"), `missing tensor "blocks.0.ln0.bias"`},
		{"missing head", without("head.weight"), `missing tensor "head.weight"`},
		{"missing emb", without("emb.weight"), "missing emb.weight"},
		{"extra", append(append([]Tensor{}, model...), FromFloat32("blocks.0.att.extra", []int{1}, []float32{1}, F32)), `unexpected tensor "blocks.0.att.extra"`},
		{"extra layer part", without("blocks.1.ln1.weight"), `unexpected tensor "blocks.1.ln1.bias"`},
		{"duplicate", append(append([]Tensor{}, model...), model[0]), `duplicate tensor "emb.weight"`},
		{"bad shape", badShape, `tensor "blocks.0.ln2.weight": shape [5], want [4]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := CheckRWKV4(tt.ts)
			if !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrTensors containing %q", err, tt.want)
			}
		})
	}
}

func reversed(ts []Tensor) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		out[len(ts)-1-i] = t
	}
	return out
}

// TestExportImportRoundTrip writes every export format in each dtype and
// reads it back with ReadWeights, which must return the RWKV-LM names, the
// dtype written and the values rounded to it.
func TestExportImportRoundTrip(t *testing.T) {
	model := tinyModel(tinyDims)
	writeFile := func(t *testing.T, name string, write func(*os.File) error) string {
		path := filepath.Join(t.TempDir(), name)
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
		return path
	}
	formats := []struct {
		name   string
		dtypes []DType
		export func(t *testing.T, dt DType) string
	}{
		{"rwkv", []DType{F32, F16, BF16}, func(t *testing.T, dt DType) string {
			return writeFile(t, "m.safetensors", func(f *os.File) error { return ExportRWKV(f, reversed(model), dt) })
		}},
		{"web-rwkv", []DType{F16}, func(t *testing.T, dt DType) string {
			return writeFile(t, "m.st", func(f *os.File) error { return ExportWebRWKV(f, model) })
		}},
		{"pth", []DType{F32, F16, BF16}, func(t *testing.T, dt DType) string {
			return writeFile(t, "m.pth", func(f *os.File) error { return ExportPTH(f, model, dt) })
		}},
		{"hf", []DType{F32, F16, BF16}, func(t *testing.T, dt DType) string {
			dir := filepath.Join(t.TempDir(), "hf")
			if err := ExportHF(dir, model, HFConfig{ContextLength: 1024}, dt); err != nil {
				t.Fatal(err)
			}
			return dir
		}},
		{"training checkpoint", []DType{F32}, func(t *testing.T, dt DType) string {
			path, err := Save(t.TempDir(), 7, model, model, squares(model), State{})
			if err != nil {
				t.Fatal(err)
			}
			return path
		}},
	}
	for _, f := range formats {
		for _, dt := range f.dtypes {
			t.Run(f.name+"/"+string(dt), func(t *testing.T) {
				got, err := ReadWeights(f.export(t, dt))
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(model) {
					t.Fatalf("%d tensors, want %d", len(got), len(model))
				}
				for i, m := range model {
					want, _ := m.Convert(dt)
					if got[i].Name != m.Name || got[i].DType != dt || !equalShape(got[i].Shape, m.Shape) || !bytes.Equal(got[i].Data, want.Data) {
						t.Errorf("tensor %d: got %s %s%v, want %s %s%v", i, got[i].Name, got[i].DType, got[i].Shape, m.Name, dt, m.Shape)
					}
				}
			})
		}
	}
}

func TestExportHFConfig(t *testing.T) {
	dir := t.TempDir()
	if err := ExportHF(dir, tinyModel(tinyDims), HFConfig{ContextLength: 512}, BF16); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"architectures": []any{"RwkvForCausalLM"}, "model_type": "rwkv", "vocab_size": 11.0, "hidden_size": 4.0,
		"num_hidden_layers": 2.0, "attention_hidden_size": 4.0, "intermediate_size": 16.0, "context_length": 512.0,
		"layer_norm_epsilon": 1e-5, "rescale_every": 6.0, "bos_token_id": 0.0, "eos_token_id": 0.0,
		"tie_word_embeddings": false, "torch_dtype": "bfloat16", "use_cache": true,
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if string(gb) != string(wb) {
		t.Errorf("config.json\n got %s\nwant %s", gb, wb)
	}
	f, err := OpenSafetensors(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Meta["format"] != "pt" {
		t.Errorf(`metadata format %q, want "pt" (transformers refuses others)`, f.Meta["format"])
	}
	if _, ok := f.Get("rwkv.blocks.1.feed_forward.time_mix_receptance"); !ok {
		t.Error("HF name missing")
	}
	if err := ExportHF(dir, tinyModel(tinyDims), HFConfig{ContextLength: 512, Hidden: 8}, F32); err == nil ||
		!strings.Contains(err.Error(), "hidden_size 8, tensors give 4") {
		t.Errorf("mismatched config: %v", err)
	}
	if err := ExportHF(dir, tinyModel(tinyDims), HFConfig{}, F32); err == nil {
		t.Error("zero context_length accepted")
	}
}

// TestExportHFLoadsInTransformers runs from_pretrained when transformers is
// installed (it is not in the default environment).
func TestExportHFLoadsInTransformers(t *testing.T) {
	py := testutil.RequireTorch(t)
	if err := exec.Command(py, "-c", "import transformers").Run(); err != nil {
		t.Skip("skipping: transformers is not importable; config.json and names are checked by TestExportHFConfig and TestHFNames")
	}
	dir := t.TempDir()
	if err := ExportHF(dir, tinyModel(tinyDims), HFConfig{ContextLength: 64}, F32); err != nil {
		t.Fatal(err)
	}
	script := `
import sys, torch
from transformers import RwkvForCausalLM
m = RwkvForCausalLM.from_pretrained(sys.argv[1])
print(m(torch.tensor([[1, 2, 3]])).logits.shape)
`
	if out, err := exec.Command(py, "-c", script, dir).CombinedOutput(); err != nil {
		t.Fatalf("from_pretrained: %v\n%s", err, out)
	}
}

func TestExportRefuses(t *testing.T) {
	model := tinyModel(tinyDims)
	big := append([]Tensor{}, model...)
	v, _ := big[0].Float32s()
	v[3] = 70000 // beyond the F16 range
	big[0] = FromFloat32(big[0].Name, big[0].Shape, v, F32)
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"F16 overflow", ExportWebRWKV(new(bytes.Buffer), big), `web-rwkv: tensor "emb.weight": element 3 is not finite`},
		{"F64 export", ExportRWKV(new(bytes.Buffer), model, F64), `export dtype "F64"`},
		{"missing tensor", ExportPTH(new(bytes.Buffer), model[1:], BF16), "missing emb.weight"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", tt.err, tt.want)
			}
		})
	}
}

// TestReadWeightsTorchSavedRWKV4: an RWKV-LM style .pth written by torch.save
// (bf16 as the official files, fp16, fp32; a module state_dict with
// _metadata) is read with the right names, dtypes and values.
func TestReadWeightsTorchSavedRWKV4(t *testing.T) {
	py := testutil.RequireTorch(t)
	model := tinyModel(tinyDims)
	dir := t.TempDir()
	src := filepath.Join(dir, "src.pth")
	writePTHFile(t, src, func(f *os.File) error { return WritePTH(f, model) })
	// Re-save through a real nn.Module state_dict, as RWKV-LM's trainer
	// does, once per dtype.
	script := `
import sys, torch
sd = torch.load(sys.argv[1], weights_only=True)
class M(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.ParameterDict()
for arg in sys.argv[2:]:
    dtype, dst = arg.split("=", 1)
    out = M().state_dict()
    for k, v in sd.items():
        out[k] = v.to(getattr(torch, dtype)).clone()
    torch.save(out, dst)
`
	dtypes := []DType{BF16, F16, F32}
	args := []string{"-c", script, src}
	for _, dt := range dtypes {
		torchName, _ := dt.torchName()
		args = append(args, torchName+"="+filepath.Join(dir, "RWKV-4-tiny-"+string(dt)+".pth"))
	}
	if out, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		t.Fatalf("torch.save: %v\n%s", err, out)
	}
	for _, dt := range dtypes {
		t.Run(string(dt), func(t *testing.T) {
			got, err := ReadWeights(filepath.Join(dir, "RWKV-4-tiny-"+string(dt)+".pth"))
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range model {
				want, _ := m.Convert(dt)
				if got[i].Name != m.Name || got[i].DType != dt || !bytes.Equal(got[i].Data, want.Data) {
					t.Errorf("tensor %d: got %s %s, want %s %s", i, got[i].Name, got[i].DType, m.Name, dt)
				}
			}
		})
	}
}

// TestCheckUnsupportedArch: a file of an RWKV version without a layout is refused naming the
// version, not with a list of missing RWKV-4 tensors; an RWKV-7 file passes Check (its layout
// is known) but the RWKV-4 exports refuse it naming it.
func TestCheckUnsupportedArch(t *testing.T) {
	ts := append(tinyModel(tinyDims), FromFloat32("blocks.0.att.ln_x.weight", []int{4}, make([]float32, 4), F32))
	_, _, err := Check(ts)
	if !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), "x050 is not supported yet") {
		t.Errorf("error %v, want arch.ErrUnsupported naming x050", err)
	}
	x070 := tinyX070Model(tinyX070, true)
	d, ordered, err := Check(x070)
	if err != nil || d.Arch != arch.X070 || len(ordered) != len(x070) {
		t.Fatalf("Check of an x070 model: %+v, %d tensors, %v", d.Arch, len(ordered), err)
	}
	var buf bytes.Buffer
	const rwkv4Only = "RWKV-7 (x070) model; this export writes RWKV-4 only"
	for name, tc := range map[string]struct {
		f    func() error
		want string
	}{
		"rwkv":     {func() error { return ExportRWKV(&buf, x070, F32) }, rwkv4Only},
		"web-rwkv": {func() error { return ExportWebRWKV(&buf, x070) }, "RWKV-7 (x070) model; this export writes web-rwkv's RWKV-4, RWKV-5.2 and RWKV-6 layouts"},
		"pth":      {func() error { return ExportPTH(&buf, x070, F32) }, rwkv4Only},
		"hf":       {func() error { return ExportHF(t.TempDir(), x070, HFConfig{}, F32) }, rwkv4Only},
	} {
		if err := tc.f(); !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s export of x070: %v, want arch.ErrUnsupported with %q", name, err, tc.want)
		}
	}
}
