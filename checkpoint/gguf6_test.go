package checkpoint

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// gguf6Names is every tensor llama.cpp's rwkv6 load_arch_tensors asks for, with its ggml ne
// (fastest first), for d.
func gguf6Names(d Dims) map[string][]int {
	C, V, F, N, M, W := d.Embd, d.Vocab, d.FFN, d.HeadSize, d.LoRA.Mix, d.LoRA.W
	m := map[string][]int{
		"token_embd.weight": {C, V}, "token_embd_norm.weight": {C}, "token_embd_norm.bias": {C},
		"output_norm.weight": {C}, "output_norm.bias": {C}, "output.weight": {C, V},
	}
	for l := 0; l < d.Layers; l++ {
		for k, v := range map[string][]int{
			"attn_norm.weight": {C}, "attn_norm.bias": {C}, "attn_norm_2.weight": {C}, "attn_norm_2.bias": {C},
			"time_mix_w1.weight": {C, 5 * M}, "time_mix_w2.weight": {M, C, 5},
			"time_mix_lerp_x.weight": {C}, "time_mix_lerp_fused.weight": {C, 1, 1, 5},
			"time_mix_first.weight": {N, C / N}, "time_mix_decay.weight": {C},
			"time_mix_decay_w1.weight": {C, W}, "time_mix_decay_w2.weight": {W, C},
			"time_mix_key.weight": {C, C}, "time_mix_value.weight": {C, C}, "time_mix_receptance.weight": {C, C},
			"time_mix_gate.weight": {C, C}, "time_mix_ln.weight": {C}, "time_mix_ln.bias": {C},
			"time_mix_output.weight": {C, C}, "channel_mix_lerp_k.weight": {C}, "channel_mix_lerp_r.weight": {C},
			"channel_mix_key.weight": {C, F}, "channel_mix_value.weight": {F, C}, "channel_mix_receptance.weight": {C, C},
		} {
			m[fmt.Sprintf("blk.%d.%s", l, k)] = v
		}
	}
	return m
}

// readGGUFBytes parses a GGUF file held in memory.
func readGGUFBytes(t *testing.T, b []byte) *GGUFFile {
	t.Helper()
	f, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestExportGGUF6: the rwkv6 GGUF holds exactly the tensors llama.cpp asks for with its ggml
// shapes, the F32 ones F32 and the matrices in the export dtype, llama.cpp's metadata, the
// converter's stacking (w,k,v,r,g), permutation of time_maa_w2 and rescaling of layer 6; it
// reads back (ReadWeights) to the model, exactly in F32.
func TestExportGGUF6(t *testing.T) {
	model := tinyX05Model(tinyX060)
	src := tensorsByName(model)
	C, M := tinyX060.Embd, tinyX060.LoRA.Mix
	dir := t.TempDir()
	for _, dt := range []DType{F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			var buf bytes.Buffer
			if err := ExportGGUF6(&buf, model, GGUF7Options{DType: dt, Name: "tiny", Tokens: [][]byte{nil, []byte("a"), []byte("\n\n")}}); err != nil {
				t.Fatal(err)
			}
			f := readGGUFBytes(t, buf.Bytes())
			want := gguf6Names(tinyX060)
			if len(f.Tensors) != len(want) {
				t.Errorf("%d tensors, want %d", len(f.Tensors), len(want))
			}
			for _, g := range f.Tensors {
				ne, ok := want[g.Name]
				if !ok {
					t.Errorf("unexpected tensor %s", g.Name)
					continue
				}
				if !slices.Equal(reversedInts(g.Shape), ne) {
					t.Errorf("%s: ne %v, want %v", g.Name, reversedInts(g.Shape), ne)
				}
				f32 := len(ne) == 1 || strings.Contains(g.Name, "lerp") || strings.Contains(g.Name, "_w1") ||
					strings.Contains(g.Name, "_w2") || strings.Contains(g.Name, "time_mix_first")
				if wdt := map[bool]DType{true: F32, false: dt}[f32]; g.DType != wdt {
					t.Errorf("%s: dtype %s, want %s", g.Name, g.DType, wdt)
				}
			}
			for k, v := range map[string]any{"general.architecture": "rwkv6", "general.name": "tiny",
				"rwkv6.embedding_length": uint32(C), "rwkv6.block_count": uint32(7), "rwkv6.wkv.head_size": uint32(16),
				"rwkv6.time_mix_extra_dim": uint32(M), "rwkv6.time_decay_extra_dim": uint32(24),
				"rwkv6.feed_forward_length": uint32(96), "rwkv6.rescale_every_n_layers": uint32(6),
				"rwkv6.attention.layer_norm_epsilon": float32(1e-5), "rwkv6.attention.head_count": uint32(0),
				"rwkv6.context_length": uint32(1048576), "general.file_type": gguf7FileType[dt], "tokenizer.ggml.model": "rwkv"} {
				if got, _ := f.Get(k); got != v {
					t.Errorf("%s = %v (%T), want %v (%T)", k, got, got, v, v)
				}
			}
			if dt == F32 {
				gt := tensorsByName(f.Tensors)
				lerp, _ := gt["blk.2.time_mix_lerp_fused.weight"].Float32s()
				for i, x := range gguf6Lerp {
					w, _ := src["blocks.2.att.time_maa_"+x].Float32s()
					if !slices.Equal(lerp[i*C:(i+1)*C], w) {
						t.Errorf("time_mix_lerp_fused slice %d is not time_maa_%s", i, x)
					}
				}
				w2, _ := gt["blk.1.time_mix_w2.weight"].Float32s()   // [5,C,M]
				sw2, _ := src["blocks.1.att.time_maa_w2"].Float32s() // [5,M,C]
				if i, c, m := 4, 7, 3; w2[(i*C+c)*M+m] != sw2[(i*M+m)*C+c] {
					t.Errorf("time_mix_w2[4][7][3] = %g, want time_maa_w2[4][3][7] = %g", w2[(i*C+c)*M+m], sw2[(i*M+m)*C+c])
				}
				for _, l := range []int{5, 6} {
					for _, n := range [][2]string{{"time_mix_output", "att.output"}, {"channel_mix_value", "ffn.value"}} {
						g, _ := gt[fmt.Sprintf("blk.%d.%s.weight", l, n[0])].Float32s()
						s, _ := src[fmt.Sprintf("blocks.%d.%s.weight", l, n[1])].Float32s()
						if scale := math.Ldexp(1, -l/6); float64(g[9]) != float64(s[9])*scale {
							t.Errorf("layer %d %s: %g, want %g·%g", l, n[0], g[9], s[9], scale)
						}
					}
				}
			}
			back, err := ReadWeights(writeFile(t, dir, string(dt)+".gguf", buf.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			// F16/BF16: the values are in [-1, 1), and the rescaled layer's error is scaled back by 2.
			sameTensors(t, back, model, map[DType]float64{F32: 0, F16: 2 * f16Tol, BF16: 2.0 / 256}[dt])
		})
	}
}

// TestX060FromGGUF6Variants: llama.cpp's optional separate time_mix_lerp_w..g instead of the
// fused lerp, and a file without rescaling (rescale_every_n_layers absent), read back.
func TestX060FromGGUF6Variants(t *testing.T) {
	model := tinyX05Model(tinyX060)
	meta, ts, err := X060ToGGUF6(model, GGUF7Options{DType: F32})
	if err != nil {
		t.Fatal(err)
	}
	var sep []Tensor
	for _, g := range ts {
		if !strings.HasSuffix(g.Name, "time_mix_lerp_fused.weight") {
			sep = append(sep, g)
			continue
		}
		q := strings.TrimSuffix(g.Name, "time_mix_lerp_fused.weight")
		C := g.Shape[3]
		for i, x := range gguf6Lerp {
			sep = append(sep, Tensor{Name: q + "time_mix_lerp_" + x + ".weight", DType: F32, Shape: []int{1, 1, C}, Data: g.Data[i*4*C : (i+1)*4*C]})
		}
	}
	back, err := X060FromGGUF6(&GGUFFile{Meta: meta, Tensors: sep})
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, back, model, 0)
	noRescale := slices.DeleteFunc(slices.Clone(meta), func(kv GGUFKV) bool { return kv.Key == "rwkv6.rescale_every_n_layers" })
	back, err = X060FromGGUF6(&GGUFFile{Meta: noRescale, Tensors: ts})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(t, tensorsByName(back)["blocks.6.att.output.weight"], tensorsByName(ts)["blk.6.time_mix_output.weight"]); d != 0 {
		t.Errorf("without rescale_every_n_layers layer 6's output is not read as stored (difference %g)", d)
	}
}

// TestExportGGUF6Refuses: RWKV-5.2 has no llama.cpp architecture; RWKV-4/7 are not x060.
func TestExportGGUF6Refuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		ts   []Tensor
		opt  GGUF7Options
		err  error
		want string
	}{
		{"x052", tinyX05Model(tinyX052), GGUF7Options{DType: F16}, arch.ErrUnsupported, "RWKV-5.2 (x052) model, and llama.cpp has no RWKV-5 architecture (it runs rwkv6 and rwkv7)"},
		{"x070", tinyX070Model(tinyX070, true), GGUF7Options{DType: F16}, ErrTensors, "not RWKV-5.2 (x052) or RWKV-6 (x060)"},
		{"dtype", tinyX05Model(tinyX060), GGUF7Options{DType: F64}, ErrDType, `gguf dtype "F64"`},
		{"vocab", tinyX05Model(tinyX060), GGUF7Options{DType: F16, Tokens: make([][]byte, 41)}, ErrTensors, "vocabulary of 41 tokens for a model with 40 embedding rows"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ExportGGUF6(new(bytes.Buffer), tc.ts, tc.opt); !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %v with %q", err, tc.err, tc.want)
			}
		})
	}
}

// TestX060FromGGUF6Errors: a damaged rwkv6 file is an error naming what is wrong.
func TestX060FromGGUF6Errors(t *testing.T) {
	meta, ts, err := X060ToGGUF6(tinyX05Model(tinyX060), GGUF7Options{DType: F32})
	if err != nil {
		t.Fatal(err)
	}
	drop := func(name string) []Tensor {
		return slices.DeleteFunc(slices.Clone(ts), func(t Tensor) bool { return t.Name == name })
	}
	set := func(key string, v any) []GGUFKV {
		out := slices.Clone(meta)
		for i := range out {
			if out[i].Key == key {
				out[i].Value = v
			}
		}
		return out
	}
	reshape := func(name string, shape ...int) []Tensor {
		out := slices.Clone(ts)
		for i := range out {
			if out[i].Name == name {
				out[i] = reshaped(out[i], name, shape...)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		f    *GGUFFile
		want string
	}{
		{"arch", &GGUFFile{Meta: set("general.architecture", "rwkv7"), Tensors: ts}, `general.architecture rwkv7, want "rwkv6"`},
		{"head size", &GGUFFile{Meta: set("rwkv6.wkv.head_size", uint32(5)), Tensors: ts}, "rwkv6.wkv.head_size 5 does not divide the width 48"},
		{"missing", &GGUFFile{Meta: meta, Tensors: drop("blk.3.time_mix_gate.weight")}, `missing tensor "blk.3.time_mix_gate.weight"`},
		{"no lerp", &GGUFFile{Meta: meta, Tensors: drop("blk.0.time_mix_lerp_fused.weight")}, `missing tensor "blk.0.time_mix_lerp_w.weight"`},
		{"extra", &GGUFFile{Meta: meta, Tensors: append(slices.Clone(ts), FromFloat32("blk.0.time_mix_k_k.weight", []int{48}, make([]float32, 48), F32))}, `unexpected tensor "blk.0.time_mix_k_k.weight" in an rwkv6 GGUF`},
		{"lerp shape", &GGUFFile{Meta: meta, Tensors: reshape("blk.1.time_mix_lerp_fused.weight", 1, 5, 48, 1)}, ""},
		{"w2 rank", &GGUFFile{Meta: meta, Tensors: reshape("blk.1.time_mix_w2.weight", 5*48, 8)}, `tensor "blk.1.time_mix_w2.weight": shape [240 8], want [5, C, M]`},
		{"w1 rank", &GGUFFile{Meta: meta, Tensors: reshape("blk.1.time_mix_w1.weight", 40, 48, 1)}, `tensor "blk.1.time_mix_w1.weight": shape [40 48 1], want a matrix`},
		{"decay shape", &GGUFFile{Meta: meta, Tensors: reshape("blk.1.time_mix_first.weight", 48)}, `tensor "blocks.1.att.time_faaaa": shape [48], want [3 16]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := X060FromGGUF6(tc.f)
			if tc.want == "" { // ggml pads ne with 1s: [1,5,48,1] is [5,1,1,48]'s size and squeezed shape
				if err != nil {
					t.Errorf("%v, want the padded shape accepted", err)
				}
				return
			}
			if !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrTensors with %q", err, tc.want)
			}
		})
	}
}

// tinyGGUF6 is a one-layer x060 GGUF small enough to seed a fuzzer.
func tinyGGUF6() []byte {
	d := Dims{Arch: arch.X060, Layers: 1, Embd: 4, Vocab: 3, HeadSize: 2, FFN: 4, LoRA: arch.LoRA{Mix: 1, W: 2}}
	var buf bytes.Buffer
	if err := ExportGGUF6(&buf, tinyX05Model(d), GGUF7Options{DType: F16}); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

// FuzzGGUF6: any GGUF file is mapped to an x060 model that Check accepts, or refused with an
// error wrapping ErrTensors, ErrMalformed or ErrDType, never a panic.
func FuzzGGUF6(f *testing.F) {
	b := tinyGGUF6()
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		ts, err := X060FromGGUF6(g)
		if err != nil {
			if !errors.Is(err, ErrTensors) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrDType) && !errors.Is(err, ErrNonFinite) && !errors.Is(err, arch.ErrUnsupported) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if d, _, err := CheckX05(ts); err != nil || d.Arch != arch.X060 {
			t.Fatalf("accepted tensors are not an x060 model: %v %v", d.Arch, err)
		}
	})
}
