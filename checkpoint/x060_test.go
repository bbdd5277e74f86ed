package checkpoint

import (
	"bytes"
	"encoding/json"
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

// tinyX052 and tinyX060 have every RWKV-5.2/6 tensor kind with dimensions that differ from one
// another (C=48, 3 heads of 16, F=96, x060 LoRA widths 8 and 24), so that a transposed or
// swapped tensor shows in its shape; x060 has 7 layers so that llama.cpp's rescaling (every 6
// layers) applies to the last one.
var (
	tinyX052 = Dims{Arch: arch.X052, Layers: 2, Embd: 48, Vocab: 40, HeadSize: 16, FFN: 96}
	tinyX060 = Dims{Arch: arch.X060, Layers: 7, Embd: 48, Vocab: 40, HeadSize: 16, FFN: 96, LoRA: arch.LoRA{Mix: 8, W: 24}}
	// hfX052 and hfX060 have the sizes the HF remote code builds for C=64: F = int(3.5·C)//32·32
	// and x060 LoRA widths 32 and 64.
	hfX052 = Dims{Arch: arch.X052, Layers: 2, Embd: 64, Vocab: 40, HeadSize: 16, FFN: 224}
	hfX060 = Dims{Arch: arch.X060, Layers: 2, Embd: 64, Vocab: 40, HeadSize: 16, FFN: 224, LoRA: arch.LoRA{Mix: 32, W: 64}}
)

// tinyX05Model returns the tensors of d in RWKV-LM order, F32, with distinct values.
func tinyX05Model(d Dims) []Tensor { return tinyX070Model(d, false) }

// writeFile writes b at dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCheckX05: CheckX05 reads x052 and x060 sizes from the tensors (any order), returns them
// in RWKV-LM order (6 + 22·L and 6 + 28·L tensors), and refuses other versions: x070 and
// RWKV-4 as the wrong tensor set, RWKV-5.1's [H,1] time_decay as RWKV-5 (x050), by name.
func TestCheckX05(t *testing.T) {
	for _, tc := range []struct {
		d     Dims
		count int
	}{{tinyX052, 6 + 22*tinyX052.Layers}, {tinyX060, 6 + 28*tinyX060.Layers}} {
		model := tinyX05Model(tc.d)
		d, ordered, err := CheckX05(reversed(model))
		if err != nil || d != tc.d {
			t.Fatalf("%s: %+v, %v; want %+v", tc.d.Arch, d, err, tc.d)
		}
		if len(ordered) != tc.count || !slices.Equal(names(ordered), names(model)) {
			t.Errorf("%s: %d tensors, not in RWKV-LM order: %v", tc.d.Arch, len(ordered), names(ordered)[:8])
		}
	}
	v51 := tinyX05Model(tinyX052)
	for i, t := range v51 {
		if strings.HasSuffix(t.Name, ".att.time_decay") || strings.HasSuffix(t.Name, ".att.time_faaaa") {
			v51[i] = FromFloat32(t.Name, []int{3, 1}, make([]float32, 3), F32)
		}
	}
	for _, tc := range []struct {
		name string
		ts   []Tensor
		err  error
		want string
	}{
		{"x070", tinyX070Model(tinyX070, true), ErrTensors, "RWKV-7 (x070) model, not RWKV-5.2 (x052) or RWKV-6 (x060)"},
		{"x040", tinyModel(tinyDims), ErrTensors, "RWKV-4 (x040) model, not RWKV-5.2"},
		{"RWKV-5.1", v51, arch.ErrUnsupported, "RWKV-5 (x050)"},
		{"missing", tinyX05Model(tinyX060)[1:], ErrTensors, "missing emb.weight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := CheckX05(tc.ts); !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v with %q", err, tc.err, tc.want)
			}
		})
	}
}

// TestExportX05RWKVLM: the RWKV-LM .pth and safetensors exports of x052 and x060 write every
// tensor in RWKV-LM order with its RWKV-LM shape ([1,1,C] vectors, [H,N] time_faaaa) in the
// dtype asked for, and ReadWeights reads both files back (exactly in F32, within the
// rounding otherwise).
func TestExportX05RWKVLM(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []Dims{tinyX052, tinyX060} {
		model := tinyX05Model(d)
		for _, dt := range []DType{F32, F16, BF16} {
			tol := map[DType]float64{F32: 0, F16: f16Tol, BF16: 1.0 / 256}[dt]
			t.Run(fmt.Sprintf("%s/%s", d.Arch, dt), func(t *testing.T) {
				var pth, st bytes.Buffer
				if err := ExportX05PTH(&pth, model, dt); err != nil {
					t.Fatal(err)
				}
				if err := ExportX05RWKV(&st, model, dt); err != nil {
					t.Fatal(err)
				}
				for _, path := range []string{writeFile(t, dir, fmt.Sprintf("%s-%s.pth", d.Arch, dt), pth.Bytes()),
					writeFile(t, dir, fmt.Sprintf("%s-%s.safetensors", d.Arch, dt), st.Bytes())} {
					got, err := ReadWeights(path)
					if err != nil {
						t.Fatal(err)
					}
					for _, g := range got {
						if g.DType != dt {
							t.Fatalf("%s: %s: dtype %s, want %s", path, g.Name, g.DType, dt)
						}
					}
					sameTensors(t, got, model, tol)
				}
				f, err := ReadSafetensors(bytes.NewReader(st.Bytes()), int64(st.Len()))
				if err != nil || f.Meta["format"] != "pt" {
					t.Errorf("safetensors metadata %v, %v; want format=pt", f.Meta, err)
				}
			})
		}
	}
	if err := ExportX05PTH(new(bytes.Buffer), tinyX05Model(tinyX060), F64); !errors.Is(err, ErrDType) {
		t.Errorf("F64 export: %v, want ErrDType", err)
	}
	if err := ExportX05RWKV(new(bytes.Buffer), tinyX070Model(tinyX070, true), F32); !errors.Is(err, ErrTensors) {
		t.Errorf("x070 through the x05 export: %v, want ErrTensors", err)
	}
	if err := ExportPTH(new(bytes.Buffer), tinyX05Model(tinyX060), F32); !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), "RWKV-6 (x060) model; this export writes RWKV-4 only") {
		t.Errorf("x060 through the RWKV-4 export: %v", err)
	}
}

// TestReadWeightsRWKV51: a RWKV-5.0/5.1 file is refused naming the version, not with a list of
// tensors.
func TestReadWeightsRWKV51(t *testing.T) {
	v51 := tinyX05Model(tinyX052)
	for i, t := range v51 {
		if strings.HasSuffix(t.Name, ".att.time_decay") {
			v51[i] = FromFloat32(t.Name, []int{3, 1}, make([]float32, 3), F32)
		}
	}
	var buf bytes.Buffer
	if err := WritePTH(&buf, v51); err != nil {
		t.Fatal(err)
	}
	_, err := ReadWeights(writeFile(t, t.TempDir(), "v51.pth", buf.Bytes()))
	if !errors.Is(err, arch.ErrUnsupported) || !strings.Contains(err.Error(), "RWKV-5 (x050) model; x050 is not supported yet") {
		t.Errorf("RWKV-5.1 file: %v, want arch.ErrUnsupported naming RWKV-5 (x050)", err)
	}
}

// TestHFNames56: the RWKV-5/6 remote code's names (convert_rwkv5_checkpoint_to_hf.py's map and
// modeling_rwkv6.py's parameters) and back.
func TestHFNames56(t *testing.T) {
	for _, tt := range []struct{ rwkv, hf string }{
		{"blocks.0.att.time_mix_g", "rwkv.blocks.0.attention.time_mix_gate"},
		{"blocks.0.att.time_mix_k", "rwkv.blocks.0.attention.time_mix_key"},
		{"blocks.1.att.time_faaaa", "rwkv.blocks.1.attention.time_faaaa"},
		{"blocks.1.att.time_decay", "rwkv.blocks.1.attention.time_decay"},
		{"blocks.1.att.gate.weight", "rwkv.blocks.1.attention.gate.weight"},
		{"blocks.1.att.ln_x.bias", "rwkv.blocks.1.attention.ln_x.bias"},
		{"blocks.2.att.time_maa_x", "rwkv.blocks.2.attention.time_maa_x"},
		{"blocks.2.att.time_maa_w1", "rwkv.blocks.2.attention.time_maa_w1"},
		{"blocks.2.att.time_decay_w2", "rwkv.blocks.2.attention.time_decay_w2"},
		{"blocks.2.ffn.time_maa_k", "rwkv.blocks.2.feed_forward.time_maa_k"},
		{"blocks.2.ffn.time_mix_r", "rwkv.blocks.2.feed_forward.time_mix_receptance"},
	} {
		if got := HFName(tt.rwkv); got != tt.hf {
			t.Errorf("HFName(%q) = %q, want %q", tt.rwkv, got, tt.hf)
		}
		if got, ok := RWKVName(tt.hf); !ok || got != tt.rwkv {
			t.Errorf("RWKVName(%q) = %q, %v, want %q", tt.hf, got, ok, tt.rwkv)
		}
	}
}

// TestHF56RoundTrip: ExportHF56 writes the remote-code layout (names, RWKV-LM shapes, the
// config.json Rwkv5Config/Rwkv6Config read) and ReadWeights reads the directory back.
func TestHF56RoundTrip(t *testing.T) {
	for _, tc := range []struct {
		d            Dims
		modelType    string
		name         string // a tensor and its shape in the file
		shape        []int
		headsKey     bool // num_attention_heads written (RWKV-5: the head size)
		architecture string
	}{
		{hfX052, "rwkv5", "rwkv.blocks.1.attention.time_mix_gate", []int{1, 1, 64}, true, "Rwkv5ForCausalLM"},
		{hfX060, "rwkv6", "rwkv.blocks.1.attention.time_maa_w2", []int{5, 32, 64}, false, "Rwkv6ForCausalLM"},
	} {
		for _, dt := range []DType{F32, BF16} {
			t.Run(fmt.Sprintf("%s/%s", tc.d.Arch, dt), func(t *testing.T) {
				dir := t.TempDir()
				model := tinyX05Model(tc.d)
				if err := ExportHF56(dir, model, dt); err != nil {
					t.Fatal(err)
				}
				sf, err := OpenSafetensors(filepath.Join(dir, "model.safetensors"))
				if err != nil {
					t.Fatal(err)
				}
				var hfNames []string
				for _, ts := range sf.Tensors {
					hfNames = append(hfNames, ts.Name)
					if ts.Name == tc.name && !slices.Equal(ts.Shape, tc.shape) {
						t.Errorf("%s: shape %v, want %v", tc.name, ts.Shape, tc.shape)
					}
				}
				for _, n := range []string{tc.name, "rwkv.embeddings.weight", "rwkv.blocks.0.pre_ln.bias", "rwkv.blocks.1.attention.time_faaaa", "rwkv.ln_out.weight", "head.weight"} {
					if !slices.Contains(hfNames, n) {
						t.Errorf("no tensor %s in %v", n, hfNames[:6])
					}
				}
				b, err := os.ReadFile(filepath.Join(dir, "config.json"))
				if err != nil {
					t.Fatal(err)
				}
				var cfg map[string]any
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatal(err)
				}
				torchName, _ := dt.torchName()
				for k, v := range map[string]any{"model_type": tc.modelType, "vocab_size": 40.0, "hidden_size": 64.0,
					"num_hidden_layers": 2.0, "attention_hidden_size": 64.0, "head_size": 16.0, "head_size_divisor": 8.0,
					"intermediate_size": 224.0, "layer_norm_epsilon": 1e-5, "rescale_every": 6.0, "bos_token_id": 0.0,
					"eos_token_id": 0.0, "tie_word_embeddings": false, "torch_dtype": torchName} {
					if cfg[k] != v {
						t.Errorf("config.json %s = %v, want %v", k, cfg[k], v)
					}
				}
				if a, _ := cfg["architectures"].([]any); len(a) != 1 || a[0] != tc.architecture {
					t.Errorf("architectures %v, want [%s]", cfg["architectures"], tc.architecture)
				}
				if h, ok := cfg["num_attention_heads"]; ok != tc.headsKey || (ok && h != 16.0) {
					t.Errorf("num_attention_heads %v (present %v), want present=%v with the head size 16", h, ok, tc.headsKey)
				}
				if am, _ := cfg["auto_map"].(map[string]any); am["AutoModelForCausalLM"] != "modeling_"+tc.modelType+"."+tc.architecture {
					t.Errorf("auto_map %v", cfg["auto_map"])
				}
				got, err := ReadWeights(dir)
				if err != nil {
					t.Fatal(err)
				}
				sameTensors(t, got, model, map[DType]float64{F32: 0, BF16: 1.0 / 256}[dt])
			})
		}
	}
}

// TestHF56Refuses: the remote code builds the channel mix as int(3.5·C)//32·32 and RWKV-6's
// LoRA widths from C alone; a model of other sizes is refused, and so is RWKV-4/7 here.
func TestHF56Refuses(t *testing.T) {
	ffn := hfX052
	ffn.FFN = 192
	lora := hfX060
	lora.LoRA.Mix = 16
	for _, tc := range []struct {
		name string
		ts   []Tensor
		err  error
		want string
	}{
		{"ffn", tinyX05Model(ffn), arch.ErrUnsupported, "ignores intermediate_size and builds a channel mix of int(3.5·64)//32·32 = 224, this model's is 192"},
		{"lora", tinyX05Model(lora), arch.ErrUnsupported, "builds time_maa_w1 [C,5·32] and time_decay_w1 [C,64] for hidden_size 64, this model has widths 16 and 64"},
		{"x070", tinyX070Model(tinyX070, true), ErrTensors, "not RWKV-5.2 (x052) or RWKV-6 (x060)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "hf")
			err := ExportHF56(dir, tc.ts, F32)
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v with %q", err, tc.err, tc.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Errorf("%s created by a refused export", dir)
			}
		})
	}
}

// TestHF56Config: config.json is checked against the tensors as the remote code reads it.
func TestHF56Config(t *testing.T) {
	dir5, dir6 := t.TempDir(), t.TempDir()
	if err := ExportHF56(dir5, tinyX05Model(hfX052), F32); err != nil {
		t.Fatal(err)
	}
	if err := ExportHF56(dir6, tinyX05Model(hfX060), F32); err != nil {
		t.Fatal(err)
	}
	testHFConfigs(t, []hfConfigCase{
		{"rwkv6 no config", dir6, "-", nil, ""},
		{"rwkv6 minimal", dir6, `{}`, nil, ""},
		{"rwkv6 hidden only", dir6, `{"model_type": "rwkv6", "hidden_size": 64, "intermediate_size": null}`, nil, ""},
		{"rwkv5 heads = head size", dir5, `{"model_type": "rwkv5", "num_attention_heads": 16}`, nil, ""},
		{"rwkv6 heads ignored", dir6, `{"model_type": "rwkv6", "num_attention_heads": 4}`, nil, ""},
		{"rwkv6 wrong model_type", dir6, `{"model_type": "rwkv5"}`, ErrTensors, `model_type "rwkv5", but the tensors hold an RWKV-6 (x060) model (model_type "rwkv6")`},
		{"rwkv5 as rwkv", dir5, `{"model_type": "rwkv"}`, ErrTensors, `model_type "rwkv", but the tensors hold an RWKV-5.2 (x052) model`},
		{"rwkv5 heads = H", dir5, `{"num_attention_heads": 4}`, ErrTensors, "num_attention_heads is 4, but the tensors (rwkv.blocks.0.attention.time_faaaa) give 16"},
		{"rwkv6 head_size", dir6, `{"head_size": 64}`, ErrTensors, "head_size is 64, but the tensors"},
		{"rwkv6 layers", dir6, `{"num_hidden_layers": 3}`, ErrTensors, "num_hidden_layers is 3"},
		{"rwkv6 vocab", dir6, `{"vocab_size": 65536}`, ErrTensors, "vocab_size is 65536, but the tensors (rwkv.embeddings.weight) give 40"},
		{"rwkv6 default ffn", dir6, `{"hidden_size": 128}`, ErrTensors, "hidden_size is 128"},
		{"rwkv6 ffn", dir6, `{"intermediate_size": 256}`, ErrTensors, "intermediate_size is 256, but the tensors (rwkv.blocks.0.feed_forward.key.weight) give 224"},
		{"rwkv6 attention", dir6, `{"attention_hidden_size": 32}`, ErrTensors, "attention_hidden_size is 32"},
		{"rwkv6 not a size", dir6, `{"head_size": "64"}`, ErrMalformed, `head_size is "64", not a size`},
		{"rwkv6 not JSON", dir6, `[`, ErrMalformed, "not JSON"},
	})
	// The default intermediate_size of an absent key, named in the error.
	c, err := parseHFConfig("config.json", []byte(`{"hidden_size": 64}`))
	if err != nil {
		t.Fatal(err)
	}
	odd := hfX060
	odd.FFN = 192
	if err := c.checkHF56(odd); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "intermediate_size is 224 (absent, so 224 from hidden_size 64)") {
		t.Errorf("absent intermediate_size: %v", err)
	}
}

// FuzzHF56Config: any config.json is accepted or refused with ErrTensors or ErrMalformed,
// never a panic, for both architectures.
func FuzzHF56Config(f *testing.F) {
	for _, s := range []string{`{}`, `{"model_type": "rwkv6", "hidden_size": 64, "head_size": 16}`,
		`{"model_type": "rwkv5", "num_attention_heads": 16, "intermediate_size": null}`, `{"hidden_size": 1e400}`,
		`{"hidden_size": -3}`, `{"hidden_size": 9223372036854775807}`, `[]`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseHFConfig("config.json", b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("parse error without ErrMalformed: %v", err)
			}
			return
		}
		for _, d := range []Dims{hfX052, hfX060} {
			if err := c.checkHF56(d); err != nil && !errors.Is(err, ErrTensors) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %v", d.Arch, err)
			}
		}
	})
}

// TestWebRWKV56: the web-rwkv export of x052 and x060 writes convert_safetensors.py's names
// (time_first, x060's time_mix_*), transposes and F16, and ReadWeights maps it back.
func TestWebRWKV56(t *testing.T) {
	dir := t.TempDir()
	C, M, W := tinyX060.Embd, tinyX060.LoRA.Mix, tinyX060.LoRA.W
	for _, tc := range []struct {
		d      Dims
		shapes map[string][]int // some tensors of the file
		absent []string
	}{
		{tinyX052, map[string][]int{"blocks.1.att.time_first": {3, 16}, "blocks.1.att.time_decay": {3, 16},
			"blocks.1.att.time_mix_g": {1, 1, C}, "blocks.1.ffn.time_mix_k": {1, 1, C}}, []string{"blocks.1.att.time_faaaa"}},
		{tinyX060, map[string][]int{"blocks.1.att.time_first": {3, 16}, "blocks.1.att.time_mix_x": {1, 1, C},
			"blocks.1.att.time_mix_w1": {5 * M, C}, "blocks.1.att.time_mix_w2": {5, C, M}, "blocks.1.att.time_decay": {1, 1, C},
			"blocks.1.att.time_decay_w1": {W, C}, "blocks.1.att.time_decay_w2": {C, W}, "blocks.1.ffn.time_mix_r": {1, 1, C}},
			[]string{"blocks.1.att.time_maa_x", "blocks.1.ffn.time_maa_k"}},
	} {
		t.Run(string(tc.d.Arch), func(t *testing.T) {
			model := tinyX05Model(tc.d)
			var buf bytes.Buffer
			if err := ExportWebRWKV(&buf, model); err != nil {
				t.Fatal(err)
			}
			f, err := ReadSafetensors(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			got := tensorsByName(f.Tensors)
			for n, s := range tc.shapes {
				if g, ok := got[n]; !ok || !slices.Equal(g.Shape, s) {
					t.Errorf("%s: shape %v (present %v), want %v", n, g.Shape, ok, s)
				}
			}
			for _, n := range tc.absent {
				if _, ok := got[n]; ok {
					t.Errorf("%s: RWKV-LM name kept", n)
				}
			}
			for _, g := range f.Tensors {
				if g.DType != F16 {
					t.Fatalf("%s: dtype %s, want F16", g.Name, g.DType)
				}
			}
			if tc.d.Arch == arch.X060 { // element [1][c][m] of w2 is time_maa_w2[1][m][c]
				w2, _ := got["blocks.1.att.time_mix_w2"].Float32s()
				src, _ := tensorsByName(model)["blocks.1.att.time_maa_w2"].Convert(F16)
				sv, _ := src.Float32s()
				if c, m := 5, 3; w2[(1*C+c)*M+m] != sv[(1*M+m)*C+c] {
					t.Errorf("time_mix_w2[1][%d][%d] = %g, want time_maa_w2[1][%d][%d] = %g", c, m, w2[(1*C+c)*M+m], m, c, sv[(1*M+m)*C+c])
				}
			}
			back, err := ReadWeights(writeFile(t, dir, string(tc.d.Arch)+".st", buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, back, model, f16Tol)
		})
	}
}

// TestAdapterX05: x052/x060 state files hold [H,N,N] per layer ([3,C] or [N,N] is refused),
// and the LoRA targets are the att receptance/key/value/output/gate and ffn
// key/receptance/value Linears, not x060's time_maa_w1/w2 or time_decay_w1/w2.
func TestAdapterX05(t *testing.T) {
	for _, d := range []arch.Dims{adapterX052, adapterX060} {
		ok := []Tensor{filled("blocks.0.att.time_state", 1, 3, 4, 4), filled("blocks.1.att.time_state", 2, 3, 4, 4)}
		a, err := CheckAdapter(ok, specsOf(d), AdapterRules{})
		if err != nil || len(a.States) != 2 {
			t.Errorf("%s: %d states, %v", d.Arch, len(a.States), err)
		}
		for _, bad := range [][]int{{3, d.Embd}, {4, 4}, {4, 3, 3}} {
			_, err := CheckAdapter([]Tensor{filled("blocks.0.att.time_state", 1, bad...)}, specsOf(d), AdapterRules{})
			if !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "want [3 4 4] for this "+d.Arch.Title()+" base") {
				t.Errorf("%s: state %v: %v", d.Arch, bad, err)
			}
		}
		want := []string{"blocks.0.att.receptance", "blocks.0.att.key", "blocks.0.att.value", "blocks.0.att.output",
			"blocks.0.att.gate", "blocks.0.ffn.key", "blocks.0.ffn.receptance", "blocks.0.ffn.value"}
		if got := LoRATargets(specsOf(d)); len(got) != 2*len(want) || !slices.Equal(got[:len(want)], want) {
			t.Errorf("%s: targets %q, want %q for each layer", d.Arch, got, want)
		}
		if _, err := CheckAdapter([]Tensor{filled("blocks.0.att.time_maa_w1.lora_A", 1, 2, 12)}, specsOf(d), AdapterRules{}); d.Arch == arch.X060 && !errors.Is(err, ErrTensors) {
			t.Errorf("a LoRA on time_maa_w1: %v, want ErrTensors", err)
		}
		// A LoRA pair on the gate merges into att.gate.weight only: W + B·A.
		a, err = CheckAdapter([]Tensor{filled("blocks.1.att.gate.lora_A", 1, 2, 12), filled("blocks.1.att.gate.lora_B", 2, 12, 2)}, specsOf(d), AdapterRules{})
		if err != nil {
			t.Fatal(err)
		}
		base := tinyX05Model(d)
		merged, err := MergeAdapter(base, a, 1)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range merged {
			if changed := maxDiff(t, m, base[i]) > 0; changed != (m.Name == "blocks.1.att.gate.weight") {
				t.Errorf("%s: changed %v by the gate's LoRA", m.Name, changed)
			}
		}
	}
}

// hf56ModulesPy builds the module tree that the RWKV-5/6 remote code's Rwkv5ForCausalLM and
// Rwkv6ForCausalLM declare (modeling_rwkv5.py, modeling_rwkv6.py: parameter names and shapes,
// sizes from config.json as their configs read them: RWKV-5's num_attention_heads is the head
// size, the channel mix is int(3.5·C)//32·32, RWKV-6's LoRA widths depend on C only) and loads
// dir/model.safetensors into it with load_state_dict(strict=True).
const hf56ModulesPy = `
import json, struct, sys, torch
from torch import nn
def load_hf(d):
  cfg = json.load(open(d + "/config.json"))
  b = open(d + "/model.safetensors", "rb").read()
  n = struct.unpack("<Q", b[:8])[0]
  head = json.loads(b[8:8 + n])
  dts = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
  sd = {}
  for k, v in head.items():
      if k == "__metadata__":
          continue
      s, e = v["data_offsets"]
      sd[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dts[v["dtype"]]).reshape(v["shape"])
  mt = cfg["model_type"]
  C, A, L, V = cfg["hidden_size"], cfg["attention_hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
  F = int((C * 3.5) // 32 * 32)
  P = lambda *s: nn.Parameter(torch.empty(*s))
  class Att(nn.Module):
      def __init__(self):
          super().__init__()
          if mt == "rwkv5":
              N = cfg["num_attention_heads"]
              H = C // N
              self.time_decay, self.time_faaaa = P(H, N), P(H, N)
              for x in ["gate", "key", "value", "receptance"]:
                  setattr(self, "time_mix_" + x, P(1, 1, C))
          else:
              N = cfg["head_size"]
              H = A // N
              M, W = (64, 128) if C == 4096 else (32, 64)
              for x in "xwkvrg":
                  setattr(self, "time_maa_" + x, P(1, 1, C))
              self.time_maa_w1, self.time_maa_w2 = P(C, M * 5), P(5, M, C)
              self.time_decay, self.time_decay_w1, self.time_decay_w2 = P(1, 1, A), P(C, W), P(W, A)
              self.time_faaaa = P(H, N)
          for x in ["key", "value", "receptance", "gate"]:
              setattr(self, x, nn.Linear(C, A, bias=False))
          self.output = nn.Linear(A, C, bias=False)
          self.ln_x = nn.GroupNorm(H, C)
  class FFN(nn.Module):
      def __init__(self):
          super().__init__()
          mix = "time_mix_" if mt == "rwkv5" else "time_maa_"
          for x in (["key", "receptance"] if mt == "rwkv5" else ["k", "r"]):
              setattr(self, mix + x, P(1, 1, C))
          self.key, self.receptance, self.value = nn.Linear(C, F, bias=False), nn.Linear(C, C, bias=False), nn.Linear(F, C, bias=False)
  class Block(nn.Module):
      def __init__(self, l):
          super().__init__()
          if l == 0:
              self.pre_ln = nn.LayerNorm(C)
          self.ln1, self.ln2 = nn.LayerNorm(C), nn.LayerNorm(C)
          self.attention, self.feed_forward = Att(), FFN()
  class Model(nn.Module):
      def __init__(self):
          super().__init__()
          self.embeddings = nn.Embedding(V, C)
          self.blocks = nn.ModuleList([Block(l) for l in range(L)])
          self.ln_out = nn.LayerNorm(C)
  class ForCausalLM(nn.Module):
      def __init__(self):
          super().__init__()
          self.rwkv, self.head = Model(), nn.Linear(C, V, bias=False)
  m = ForCausalLM()
  m.load_state_dict(sd, strict=True)
  print("hf", mt, len(sd), float(sum(v.float().abs().sum() for v in m.state_dict().values())))
for arg in sys.argv[1:]:
  kind, path = arg.split("=", 1)
  if kind == "hf":
    load_hf(path)
  else:
    sd = torch.load(path, map_location="cpu")
    for k, v in sd.items():
      print("pth", k, str(v.dtype), "x".join(str(s) for s in v.shape), repr(float(v.float().abs().sum())))
`

// absSum is the sum of |x| over ts.
func absSum(ts ...Tensor) float64 {
	sum := 0.0
	for _, t := range ts {
		v, _ := t.Float64s()
		for _, x := range v {
			sum += max(x, -x)
		}
	}
	return sum
}

// TestExportX05Torch, with one PyTorch process: torch.load reads the x052 and x060 .pth
// exports (RWKV-LM names and order, bf16, shapes, values), and the HF exports fit the remote
// code's declared modules exactly (names, shapes, sizes from config.json; hf56ModulesPy).
func TestExportX05Torch(t *testing.T) {
	py := testutil.RequireTorch(t)
	dir := t.TempDir()
	args := []string{"-c", hf56ModulesPy}
	var pths [][]Tensor
	for _, d := range []Dims{tinyX052, tinyX060} {
		model := tinyX05Model(d)
		var buf bytes.Buffer
		if err := ExportX05PTH(&buf, model, BF16); err != nil {
			t.Fatal(err)
		}
		args = append(args, "pth="+writeFile(t, dir, string(d.Arch)+".pth", buf.Bytes()))
		pths = append(pths, model)
	}
	hfs := map[string][]Tensor{}
	for _, d := range []Dims{hfX052, hfX060} {
		model := tinyX05Model(d)
		hf := filepath.Join(dir, "hf-"+string(d.Arch))
		if err := ExportHF56(hf, model, BF16); err != nil {
			t.Fatal(err)
		}
		args = append(args, "hf="+hf)
		hfs[hf56ModelType(d.Arch)] = model
	}
	out, err := exec.Command(py, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("torch: %v\n%s", err, out)
	}
	var pthLines []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var kind, mt string
		var count int
		var sum float64
		if strings.HasPrefix(line, "pth ") {
			pthLines = append(pthLines, strings.TrimPrefix(line, "pth "))
			continue
		}
		if _, err := fmt.Sscan(line, &kind, &mt, &count, &sum); err != nil || kind != "hf" || hfs[mt] == nil || count != len(hfs[mt]) {
			t.Errorf("torch printed %q, want hf, a model type and %d tensors", line, len(hfs[mt]))
			continue
		}
		if want := absSum(hfs[mt]...); sum < want*0.99 || sum > want*1.01 {
			t.Errorf("%s: torch's sum of |weights| %g, ours %g", mt, sum, want)
		}
		delete(hfs, mt)
	}
	if len(hfs) != 0 {
		t.Errorf("no line for the HF directories of %v", hfs)
	}
	want := append(slices.Clone(pths[0]), pths[1]...)
	if len(pthLines) != len(want) {
		t.Fatalf("torch sees %d tensors in the .pth files, want %d", len(pthLines), len(want))
	}
	for i, m := range want {
		var name, dtype, shape string
		var sum float64
		if _, err := fmt.Sscan(pthLines[i], &name, &dtype, &shape, &sum); err != nil {
			t.Fatalf("line %q: %v", pthLines[i], err)
		}
		ws := strings.ReplaceAll(strings.Trim(fmt.Sprint(m.Shape), "[]"), " ", "x")
		if w := absSum(m); name != m.Name || dtype != "torch.bfloat16" || shape != ws || sum < w*0.99 || sum > w*1.01 {
			t.Errorf("torch: %q, want %s torch.bfloat16 %s sum %g", pthLines[i], m.Name, ws, w)
		}
	}
}
