package checkpoint

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// allGGUFMeta has one value of every GGUF type, scalar and array.
func allGGUFMeta() []GGUFKV {
	return []GGUFKV{
		{"u8", uint8(200)}, {"i8", int8(-100)}, {"u16", uint16(60000)}, {"i16", int16(-30000)},
		{"u32", uint32(4000000000)}, {"i32", int32(-2000000000)}, {"f32", float32(1.5e-7)},
		{"bool", true}, {"bool0", false}, {"str", "héllo\x00world"}, {"empty", ""},
		{"u64", uint64(1) << 63}, {"i64", int64(-1) << 62}, {"f64", math.Pi},
		{"au8", []uint8{1, 2, 255}}, {"ai8", []int8{-1, 2}}, {"au16", []uint16{7}}, {"ai16", []int16{-7, 8}},
		{"au32", []uint32{}}, {"ai32", []int32{1, -1, 3}}, {"af32", []float32{0.25, -2}},
		{"abool", []bool{true, false, true}}, {"astr", []string{"a", "", "ccc"}},
		{"au64", []uint64{1 << 40}}, {"ai64", []int64{-5}}, {"af64", []float64{1e300, -0.5}},
	}
}

func ggufTestTensors() []Tensor {
	return []Tensor{
		FromFloat32("a.weight", []int{3, 5}, []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, -15}, F32),
		FromFloat32("b", []int{7}, []float32{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7}, F16),
		FromFloat32("c", []int{2, 1, 1, 3}, []float32{1, -1, 2, -2, 3, -3}, BF16),
		{Name: "d", DType: I32, Shape: []int{2, 2}, Data: []byte{1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0}},
		FromFloat64("e", []int{1}, []float64{1e-300}, F64),
	}
}

func TestGGUFRoundTrip(t *testing.T) {
	for _, align := range []uint32{0, 64, 1} {
		t.Run(fmt.Sprint("align=", align), func(t *testing.T) {
			meta := allGGUFMeta()
			want := int64(32)
			if align != 0 {
				meta = append(meta, GGUFKV{GGUFAlignmentKey, align})
				want = int64(align)
			}
			ts := ggufTestTensors()
			var buf bytes.Buffer
			if err := WriteGGUF(&buf, meta, ts); err != nil {
				t.Fatal(err)
			}
			b := buf.Bytes()
			if string(b[:4]) != "GGUF" || binary.LittleEndian.Uint32(b[4:]) != 3 ||
				binary.LittleEndian.Uint64(b[8:]) != uint64(len(ts)) || binary.LittleEndian.Uint64(b[16:]) != uint64(len(meta)) {
				t.Fatalf("header % x", b[:24])
			}
			f, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
			if err != nil {
				t.Fatal(err)
			}
			if f.Version != 3 || int64(f.Alignment) != want {
				t.Errorf("version %d alignment %d, want 3 and %d", f.Version, f.Alignment, want)
			}
			if !reflect.DeepEqual(f.Meta, meta) {
				t.Errorf("metadata:\n got %#v\nwant %#v", f.Meta, meta)
			}
			if !reflect.DeepEqual(f.Tensors, ts) {
				t.Errorf("tensors:\n got %+v\nwant %+v", f.Tensors, ts)
			}
			// Each tensor's data starts on the alignment: find a's bytes.
			at := bytes.Index(b, ts[0].Data)
			if at < 0 || int64(at)%want != 0 {
				t.Errorf("tensor a at byte %d, not a multiple of %d", at, want)
			}
			if int64(len(b))%want != 0 {
				t.Errorf("file of %d bytes is not padded to %d", len(b), want)
			}
		})
	}
}

// The ne of a row-major [3, 5] tensor is written fastest first: {5, 3}.
func TestGGUFDimsReversed(t *testing.T) {
	var buf bytes.Buffer
	ts := []Tensor{FromFloat32("m", []int{3, 5}, make([]float32, 15), F16)}
	if err := WriteGGUF(&buf, nil, ts); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// magic, version, counts (24), name (8+1), n_dims (4), ne (16), type (4), offset (8)
	p := 24 + 8 + 1
	if nd := binary.LittleEndian.Uint32(b[p:]); nd != 2 {
		t.Fatalf("n_dims %d", nd)
	}
	ne0, ne1 := binary.LittleEndian.Uint64(b[p+4:]), binary.LittleEndian.Uint64(b[p+12:])
	if ne0 != 5 || ne1 != 3 {
		t.Errorf("ne = {%d, %d}, want {5, 3}", ne0, ne1)
	}
	if typ := binary.LittleEndian.Uint32(b[p+20:]); typ != 1 {
		t.Errorf("ggml type %d, want 1 (F16)", typ)
	}
}

func TestWriteGGUFErrors(t *testing.T) {
	ok := FromFloat32("x", []int{2}, []float32{1, 2}, F32)
	tests := []struct {
		name string
		meta []GGUFKV
		ts   []Tensor
		want error
		msg  string
	}{
		{"int", []GGUFKV{{"k", 3}}, nil, ErrMalformed, "Go type int"},
		{"nested", []GGUFKV{{"k", [][]string{{"a"}}}}, nil, ErrMalformed, "no GGUF type"},
		{"duplicate key", []GGUFKV{{"k", "a"}, {"k", "b"}}, nil, ErrMalformed, "repeated"},
		{"alignment type", []GGUFKV{{GGUFAlignmentKey, uint64(32)}}, nil, ErrMalformed, "power of two"},
		{"alignment 3", []GGUFKV{{GGUFAlignmentKey, uint32(3)}}, nil, ErrMalformed, "power of two"},
		{"duplicate tensor", nil, []Tensor{ok, ok}, ErrMalformed, "repeated"},
		{"rank 0", nil, []Tensor{{Name: "s", DType: F32, Data: make([]byte, 4)}}, ErrShape, "1 to 4"},
		{"rank 5", nil, []Tensor{FromFloat32("r", []int{1, 1, 1, 1, 2}, []float32{1, 2}, F32)}, ErrShape, "1 to 4"},
		{"bool tensor", nil, []Tensor{{Name: "b", DType: Bool, Shape: []int{1}, Data: []byte{1}}}, ErrDType, "no ggml type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := WriteGGUF(&bytes.Buffer{}, tt.meta, tt.ts)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want %v with %q", err, tt.want, tt.msg)
			}
		})
	}
}

// ggufBytes assembles a GGUF header by hand for the malformed-input cases.
type ggufBytes struct{ bytes.Buffer }

func (g *ggufBytes) u32(v uint32) *ggufBytes {
	binary.Write(&g.Buffer, binary.LittleEndian, v)
	return g
}

func (g *ggufBytes) u64(v uint64) *ggufBytes {
	binary.Write(&g.Buffer, binary.LittleEndian, v)
	return g
}

func (g *ggufBytes) b(v byte) *ggufBytes {
	g.WriteByte(v)
	return g
}

func (g *ggufBytes) str(s string) *ggufBytes {
	g.u64(uint64(len(s)))
	g.WriteString(s)
	return g
}

func ggufHead(nt, nkv uint64) *ggufBytes {
	g := &ggufBytes{}
	g.WriteString("GGUF")
	return g.u32(3).u64(nt).u64(nkv)
}

func TestReadGGUFMalformed(t *testing.T) {
	pad := make([]byte, 256)
	tensor := func(name string, nd uint32, ne []uint64, typ uint32, off uint64) *ggufBytes {
		g := ggufHead(1, 0).str(name).u32(nd)
		for _, n := range ne {
			g.u64(n)
		}
		return g.u32(typ).u64(off)
	}
	withPad := func(g *ggufBytes) []byte { return append(g.Bytes(), pad...) }
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no \"GGUF\" magic"},
		{"magic", []byte("GGUX\x03\x00\x00\x00"), "no \"GGUF\" magic"},
		{"version 2", append([]byte("GGUF\x02\x00\x00\x00"), make([]byte, 16)...), "version 2"},
		{"short counts", []byte("GGUF\x03\x00\x00\x00\x01"), "tensor count"},
		{"huge kv count", ggufHead(0, 1<<62).Bytes(), "metadata entries cannot fit"},
		{"huge tensor count", ggufHead(1<<62, 0).Bytes(), "tensors cannot fit"},
		{"huge key", withPad(ggufHead(0, 1).u64(1 << 60)), "runs past the end"},
		{"huge string", withPad(ggufHead(0, 1).str("k").u32(8).u64(1 << 62)), "runs past the end"},
		{"huge array", withPad(ggufHead(0, 1).str("k").u32(9).u32(4).u64(1 << 61)), "runs past the end"},
		{"huge string array", withPad(ggufHead(0, 1).str("k").u32(9).u32(8).u64(1 << 40)), "runs past the end"},
		{"nested array", withPad(ggufHead(0, 1).str("k").u32(9).u32(9).u64(1)), "nested arrays"},
		{"bad type", withPad(ggufHead(0, 1).str("k").u32(13)), "not a GGUF scalar type"},
		{"bad elem type", withPad(ggufHead(0, 1).str("k").u32(9).u32(99).u64(1)), "not a GGUF type"},
		{"bool 2", withPad(ggufHead(0, 1).str("k").u32(7).b(2)), "bool value 2"},
		{"duplicate key", withPad(ggufHead(0, 2).str("k").u32(0).b(1).str("k").u32(0).b(1)), "repeated"},
		{"alignment", withPad(ggufHead(0, 1).str(GGUFAlignmentKey).u32(4).u32(48)), "power of two"},
		{"n_dims 0", withPad(tensor("t", 0, nil, 0, 0)), "0 dimensions"},
		{"n_dims 5", withPad(tensor("t", 5, []uint64{1, 1, 1, 1, 1}, 0, 0)), "5 dimensions"},
		{"quantized", withPad(tensor("t", 1, []uint64{32}, 2, 0)), "ggml type 2"},
		{"misaligned", withPad(tensor("t", 1, []uint64{1}, 0, 4)), "not a multiple"},
		{"huge dim", withPad(tensor("t", 2, []uint64{1 << 40, 1 << 40}, 0, 0)), "too large"},
		{"huge numel", withPad(tensor("t", 4, []uint64{1 << 30, 1 << 30, 1 << 30, 1 << 30}, 0, 0)), "too large"},
		{"past the end", withPad(tensor("t", 1, []uint64{100}, 0, 0)), "run past the end"},
		{"offset past the end", withPad(tensor("t", 1, []uint64{1}, 0, 1<<40)), "not a multiple of the alignment 32 inside the file"},
		{"empty name", withPad(tensor("", 1, []uint64{1}, 0, 0)), "empty or repeated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadGGUF(bytes.NewReader(tt.data), int64(len(tt.data)))
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrMalformed with %q", err, tt.want)
			}
		})
	}
}

// ggufSeeds are valid files and cut or damaged copies of them.
func ggufSeeds() [][]byte {
	var out [][]byte
	var buf bytes.Buffer
	if err := WriteGGUF(&buf, allGGUFMeta(), ggufTestTensors()); err != nil {
		panic(err)
	}
	full := buf.Bytes()
	out = append(out, full, full[:len(full)/2], full[:40])
	buf.Reset()
	if err := WriteGGUF(&buf, []GGUFKV{{GGUFAlignmentKey, uint32(8)}, {"tokenizer.ggml.tokens", []string{"<s>", `\n`}}}, ggufTestTensors()[:1]); err != nil {
		panic(err)
	}
	out = append(out, buf.Bytes())
	return out
}

// FuzzGGUF: any input gives a file or an error wrapping ErrMalformed, never a
// panic or an allocation beyond a few times the input; a file that parses
// writes back to one that parses to the same content.
func FuzzGGUF(f *testing.F) {
	for _, s := range ggufSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ReadGGUF(bytes.NewReader(b), int64(len(b)))
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteGGUF(&buf, g.Meta, g.Tensors); err != nil {
			t.Fatalf("cannot write back what was read: %v", err)
		}
		g2, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatalf("cannot read what was written back: %v", err)
		}
		if !reflect.DeepEqual(g.Tensors, g2.Tensors) || len(g.Meta) != len(g2.Meta) {
			t.Fatalf("round trip changed the file")
		}
	})
}

// TestWriteGGUFFuzzSeeds regenerates testdata/fuzz/FuzzGGUF from ggufSeeds
// when CHECKPOINT_WRITE_FUZZ_SEEDS=1.
func TestWriteGGUFFuzzSeeds(t *testing.T) {
	if os.Getenv("CHECKPOINT_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set CHECKPOINT_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz/FuzzGGUF")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzGGUF")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range ggufSeeds() {
		body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gguf7Names lists every tensor llama.cpp's rwkv7 load_arch_tensors creates
// for L layers, with its ggml ne.
func gguf7Names(d Dims) map[string][]int {
	C, V, F := d.Embd, d.Vocab, d.FFN
	m := map[string][]int{
		"token_embd.weight": {C, V}, "token_embd_norm.weight": {C}, "token_embd_norm.bias": {C},
		"output_norm.weight": {C}, "output_norm.bias": {C}, "output.weight": {C, V},
	}
	for l := 0; l < d.Layers; l++ {
		p := fmt.Sprintf("blk.%d.", l)
		dv := d.LoRA.V
		if l == 0 {
			dv = d.LoRA.A // llama.cpp: layer 0's v1/v2 take n_lora_iclr
		}
		for k, v := range map[string][]int{
			"attn_norm.weight": {C}, "attn_norm.bias": {C}, "attn_norm_2.weight": {C}, "attn_norm_2.bias": {C},
			"time_mix_w0.weight": {C}, "time_mix_w1.weight": {C, d.LoRA.W}, "time_mix_w2.weight": {d.LoRA.W, C},
			"time_mix_a0.weight": {C}, "time_mix_a1.weight": {C, d.LoRA.A}, "time_mix_a2.weight": {d.LoRA.A, C},
			"time_mix_v0.weight": {C}, "time_mix_v1.weight": {C, dv}, "time_mix_v2.weight": {dv, C},
			"time_mix_g1.weight": {C, d.LoRA.G}, "time_mix_g2.weight": {d.LoRA.G, C},
			"time_mix_lerp_fused.weight": {C, 1, 1, 6},
			"time_mix_k_k.weight":        {C}, "time_mix_k_a.weight": {C}, "time_mix_r_k.weight": {C},
			"time_mix_key.weight": {C, C}, "time_mix_value.weight": {C, C}, "time_mix_receptance.weight": {C, C},
			"time_mix_ln.weight": {C}, "time_mix_ln.bias": {C}, "time_mix_output.weight": {C, C},
			"channel_mix_lerp_k.weight": {C}, "channel_mix_key.weight": {C, F}, "channel_mix_value.weight": {F, C},
		} {
			m[p+k] = v
		}
	}
	return m
}

func reversedInts(s []int) []int {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

func TestExportGGUF7(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	src := tensorsByName(model)
	var want []Tensor // what comes back: layer 0's v's are llama.cpp dummies
	for _, m := range model {
		if !isVLoRA(strings.TrimPrefix(m.Name, "blocks.0.")) {
			want = append(want, m)
		}
	}
	for _, dt := range []DType{F32, F16, BF16} {
		t.Run(string(dt), func(t *testing.T) {
			var buf bytes.Buffer
			tokens := [][]byte{nil, []byte("\n"), []byte("a'b"), {0xff, '\\'}}
			if err := ExportGGUF7(&buf, model, GGUF7Options{DType: dt, Name: "tiny", Tokens: tokens}); err != nil {
				t.Fatal(err)
			}
			f, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			if err != nil {
				t.Fatal(err)
			}
			wantNames := gguf7Names(tinyX070)
			if len(f.Tensors) != len(wantNames) {
				t.Errorf("%d tensors, want %d", len(f.Tensors), len(wantNames))
			}
			for _, g := range f.Tensors {
				ne, ok := wantNames[g.Name]
				if !ok {
					t.Errorf("unexpected tensor %q", g.Name)
					continue
				}
				if rev := reversedInts(g.Shape); !slices.Equal(rev, ne) {
					t.Errorf("%s: ne %v, want %v", g.Name, rev, ne)
				}
				// The converter keeps vectors, the fused lerp and w1/w2 in F32.
				wantDT := dt
				if len(ne) == 1 || strings.HasSuffix(g.Name, "lerp_fused.weight") || strings.Contains(g.Name, "time_mix_w") {
					wantDT = F32
				}
				if g.DType != wantDT {
					t.Errorf("%s: dtype %s, want %s", g.Name, g.DType, wantDT)
				}
			}
			tol := map[DType]float64{F32: 0, F16: f16Tol, BF16: 1.0 / 256}[dt]
			// Spot checks against the source tensors.
			C := tinyX070.Embd
			lerp, _ := f.Tensor("blk.1.time_mix_lerp_fused.weight")
			lv, _ := lerp.Float32s()
			xk, _ := src["blocks.1.att.x_k"].Float32s()
			if !slices.Equal(lv[2*C:3*C], xk) {
				t.Error("time_mix_lerp_fused row 2 is not x_k (order r, w, k, v, a, g)")
			}
			w1, _ := f.Tensor("blk.1.time_mix_w1.weight")
			w1v, _ := w1.Float32s()
			sw1, _ := src["blocks.1.att.w1"].Float32s()
			if r, c := 4, 9; w1v[r*C+c] != sw1[c*tinyX070.LoRA.W+r] {
				t.Error("time_mix_w1 is not the transpose of w1")
			}
			for _, s := range []string{"0", "1", "2"} {
				v, _ := f.Tensor("blk.0.time_mix_v" + s + ".weight")
				a, _ := f.Tensor("blk.0.time_mix_a" + s + ".weight")
				if !bytes.Equal(v.Data, a.Data) || !slices.Equal(v.Shape, a.Shape) {
					t.Errorf("layer 0's time_mix_v%s is not a copy of time_mix_a%s", s, s)
				}
			}
			rk, _ := f.Tensor("blk.1.time_mix_r_k.weight")
			if d := maxDiff(t, reshaped(rk, "r_k", 2, 64), src["blocks.1.att.r_k"]); d != 0 {
				t.Errorf("time_mix_r_k is not r_k flattened: %g", d)
			}

			for k, v := range map[string]any{
				"general.architecture": "rwkv7", "general.name": "tiny",
				"general.file_type":      map[DType]uint32{F32: 0, F16: 1, BF16: 32}[dt],
				"rwkv7.context_length":   uint32(1048576),
				"rwkv7.embedding_length": uint32(128), "rwkv7.block_count": uint32(2),
				"rwkv7.feed_forward_length": uint32(512), "rwkv7.attention.head_count": uint32(0),
				"rwkv7.wkv.head_size":                          uint32(64),
				"rwkv7.attention.layer_norm_epsilon":           float32(1e-5),
				"rwkv7.attention.decay_lora_rank":              uint32(16),
				"rwkv7.attention.iclr_lora_rank":               uint32(24),
				"rwkv7.attention.value_residual_mix_lora_rank": uint32(8),
				"rwkv7.attention.gate_lora_rank":               uint32(32),
				"tokenizer.ggml.model":                         "rwkv",
				"general.quantization_version":                 uint32(2),
			} {
				if got, _ := f.Get(k); got != v {
					t.Errorf("%s = %#v, want %#v", k, got, v)
				}
			}
			toks, _ := f.Get("tokenizer.ggml.tokens")
			tl, _ := toks.([]string)
			if len(tl) != tinyX070.Vocab || tl[0] != "<s>" || tl[1] != `\n` || tl[2] != `a'b` || tl[3] != `\xff\\` || tl[4] != "[PAD4]" {
				t.Errorf("tokens %q...", tl[:min(5, len(tl))])
			}
			types, _ := f.Get("tokenizer.ggml.token_type")
			if tt, _ := types.([]int32); len(tt) != tinyX070.Vocab || tt[0] != 3 || tt[1] != 1 || tt[4] != 5 {
				t.Errorf("token types %v", types)
			}

			back, err := X070FromGGUF7(f)
			if err != nil {
				t.Fatal(err)
			}
			sameTensors(t, back, want, tol)
		})
	}
}

func TestExportGGUF7Errors(t *testing.T) {
	model := tinyX070Model(tinyX070, false)
	var buf bytes.Buffer
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F64}); !errors.Is(err, ErrDType) {
		t.Errorf("F64: %v", err)
	}
	if err := ExportGGUF7(&buf, tinyModel(tinyDims), GGUF7Options{DType: F32}); !errors.Is(err, ErrTensors) {
		t.Errorf("RWKV-4: %v, want ErrTensors (llama.cpp has no RWKV-4 architecture)", err)
	}
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F32, Tokens: make([][]byte, 65)}); !errors.Is(err, ErrTensors) {
		t.Errorf("65 tokens for vocab 64: %v", err)
	}
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F32, Tokens: make([][]byte, 2), WorldChat: true}); !errors.Is(err, ErrTensors) {
		t.Errorf("WorldChat with vocab 64: %v", err)
	}
	// Without a vocabulary the file has no tokenizer keys.
	buf.Reset()
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F32}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range f.Meta {
		if strings.HasPrefix(kv.Key, "tokenizer.") {
			t.Errorf("no vocabulary given, but %s is written", kv.Key)
		}
	}
	// A GGUF of another architecture is refused by X070FromGGUF7.
	f.Meta[0].Value = "rwkv6"
	if _, err := X070FromGGUF7(f); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), "rwkv6") {
		t.Errorf("rwkv6: %v", err)
	}
}

func TestGGUF7WorldChat(t *testing.T) {
	d := tinyX070
	d.Vocab = 300
	model := tinyX070Model(d, false)
	var buf bytes.Buffer
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F16, Tokens: [][]byte{nil, []byte("x")}, WorldChat: true}); err != nil {
		t.Fatal(err)
	}
	f, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := f.Get("tokenizer.ggml.eot_token_id"); v != uint32(261) {
		t.Errorf("eot %v", v)
	}
	if v, _ := f.Get("tokenizer.chat_template"); v != "rwkv-world" {
		t.Errorf("chat template %v", v)
	}
}

func TestPyBytesEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"abc", "abc"}, {"\n\n", `\n\n`}, {"\t\r", `\t\r`}, {"'", `'`}, {`"`, `"`},
		{`'"`, `\'"`}, {`\`, `\\`}, {"\x00\x7f\x80\xff", `\x00\x7f\x80\xff`}, {"é", `\xc3\xa9`}, {" ~", " ~"},
	}
	for _, tt := range tests {
		got := PyBytesEscape([]byte(tt.in))
		if got != tt.want {
			t.Errorf("PyBytesEscape(%q) = %q, want %q", tt.in, got, tt.want)
		}
		back, err := pyBytesUnescape(got)
		if err != nil || string(back) != tt.in {
			t.Errorf("unescape(%q) = %q, %v", got, back, err)
		}
	}
	for c := 0; c < 256; c++ {
		if back, err := pyBytesUnescape(PyBytesEscape([]byte{byte(c)})); err != nil || len(back) != 1 || back[0] != byte(c) {
			t.Errorf("byte %#x: %q, %v", c, back, err)
		}
	}
	for _, bad := range []string{`\`, `\x`, `\x4`, `\xzz`} {
		if _, err := pyBytesUnescape(bad); err == nil {
			t.Errorf("unescape(%q): no error", bad)
		}
	}
}

// Python's own repr agrees with PyBytesEscape on every byte and on mixed
// strings (the converter stores repr(token)[2:-1]).
func TestPyBytesEscapePython(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("skipping: no python3 to compare repr(bytes) with")
	}
	inputs := [][]byte{[]byte(`it's`), []byte(`say "hi"`), []byte(`'"`), []byte("\\n\n"), []byte("日本")}
	for c := 0; c < 256; c++ {
		inputs = append(inputs, []byte{byte(c), 'a'})
	}
	var hexes []string
	for _, in := range inputs {
		hexes = append(hexes, fmt.Sprintf("%x", in))
	}
	script := "import sys\nfor h in sys.stdin.read().split():\n    print(repr(bytes.fromhex(h))[2:-1])\n"
	cmd := exec.Command(py, "-c", script)
	cmd.Stdin = strings.NewReader(strings.Join(hexes, "\n"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(inputs) {
		t.Fatalf("python printed %d lines for %d inputs", len(lines), len(inputs))
	}
	for i, in := range inputs {
		if got := PyBytesEscape(in); got != lines[i] {
			t.Errorf("%q: ours %q, Python %q", in, got, lines[i])
		}
	}
}

func TestX070FromGGUF7Errors(t *testing.T) {
	var buf bytes.Buffer
	if err := ExportGGUF7(&buf, tinyX070Model(tinyX070, false), GGUF7Options{DType: F32}); err != nil {
		t.Fatal(err)
	}
	edit := func(f func(g *GGUFFile)) *GGUFFile {
		g, err := ReadGGUF(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		f(g)
		return g
	}
	drop := func(name string) func(g *GGUFFile) {
		return func(g *GGUFFile) {
			g.Tensors = slices.DeleteFunc(g.Tensors, func(t Tensor) bool { return t.Name == name })
		}
	}
	tests := []struct {
		name string
		f    *GGUFFile
		want string
	}{
		{"missing", edit(drop("blk.1.time_mix_g2.weight")), `missing tensor "blk.1.time_mix_g2.weight"`},
		{"missing lerp", edit(drop("blk.0.time_mix_lerp_fused.weight")), `missing tensor "blk.0.time_mix_lerp_fused.weight"`},
		{"extra", edit(func(g *GGUFFile) {
			g.Tensors = append(g.Tensors, FromFloat32("blk.0.time_mix_gate.weight", []int{1}, []float32{0}, F32))
		}), `unexpected tensor "blk.0.time_mix_gate.weight"`},
		{"k_k size", edit(func(g *GGUFFile) {
			for i, t := range g.Tensors {
				if t.Name == "blk.1.time_mix_k_k.weight" {
					g.Tensors[i] = FromFloat32(t.Name, []int{129}, make([]float32, 129), F32)
				}
			}
		}), `"blk.1.time_mix_k_k.weight": shape [129], want 128 elements`},
		{"head size", edit(func(g *GGUFFile) {
			for i, kv := range g.Meta {
				if kv.Key == "rwkv7.wkv.head_size" {
					g.Meta[i].Value = uint32(100)
				}
			}
		}), "wkv.head_size 100 does not divide the width 128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := X070FromGGUF7(tt.f)
			if !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrTensors with %q", err, tt.want)
			}
		})
	}
}

// TestReadWeightsGGUF: ReadWeights reads an rwkv7 GGUF file as RWKV-LM tensors (without layer
// 0's dummy v0/v1/v2) and refuses another architecture's GGUF file, naming it.
func TestReadWeightsGGUF(t *testing.T) {
	model := tinyX070Model(tinyX070, true)
	path := filepath.Join(t.TempDir(), "m.gguf")
	var buf bytes.Buffer
	if err := ExportGGUF7(&buf, model, GGUF7Options{DType: F32}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadWeights(path)
	if err != nil {
		t.Fatal(err)
	}
	sameTensors(t, got, withoutV0(model), 0)
	buf.Reset()
	if err := WriteGGUF(&buf, []GGUFKV{{"general.architecture", "llama"}}, model[:1]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadWeights(path); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), `general.architecture "llama": rwkv-go reads the rwkv6 and rwkv7 GGUF architectures`) {
		t.Errorf("llama GGUF: %v", err)
	}
}
