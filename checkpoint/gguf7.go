package checkpoint

import (
	"fmt"
	"io"
	"strings"
)

// llama.cpp's rwkv7 architecture (NEXT-ARCH §5.3). The names, shapes and
// metadata are what llama.cpp's converter writes (conversion/rwkv.py
// Rwkv7Model, gguf-py constants.py and tensor_mapping.py) and what
// src/models/rwkv7.cpp load_arch_tensors asks for (ggml ne, fastest first):
//
//	token_embd.weight             emb.weight                 {C, V}
//	token_embd_norm.weight/bias   blocks.0.ln0               {C}
//	blk.N.attn_norm.weight/bias   ln1                        {C}
//	blk.N.attn_norm_2.weight/bias ln2                        {C}
//	blk.N.time_mix_lerp_fused.weight  x_r,x_w,x_k,x_v,x_a,x_g stacked  {C,1,1,6}, F32
//	blk.N.time_mix_w0/a0/v0.weight    w0/a0/v0 squeezed      {C}
//	blk.N.time_mix_w1/a1/v1/g1.weight w1/a1/v1/g1 transposed {C, D}
//	blk.N.time_mix_w2/a2/v2/g2.weight w2/a2/v2/g2 transposed {D, C}
//	blk.N.time_mix_k_k/k_a.weight     k_k/k_a squeezed       {C}
//	blk.N.time_mix_r_k.weight         r_k flattened          {C}
//	blk.N.time_mix_receptance/key/value/output.weight        {C, C}
//	blk.N.time_mix_ln.weight/bias     ln_x                   {C}
//	blk.N.channel_mix_lerp_k.weight   ffn.x_k squeezed       {C}
//	blk.N.channel_mix_key.weight      ffn.key.weight         {C, F}
//	blk.N.channel_mix_value.weight    ffn.value.weight       {F, C}
//	output_norm.weight/bias       ln_out                     {C}
//	output.weight                 head.weight                {C, V}
//
// Layer 0's time_mix_v0/v1/v2 are required by llama.cpp with the in-context
// learning rate's rank and are never used: the converter writes copies of
// a0/a1/a2 there, and so does this export. Like the converter, 1-D tensors,
// the fused lerp and w1/w2 stay F32; the other matrices take the export
// dtype. The GroupNorm eps (64e-5) is hard-coded in llama.cpp; there is no
// key for it. llama.cpp has no RWKV-4 architecture (rwkv6, rwkv6qwen2,
// rwkv7, arwkv7 only), so RWKV-4 models have no GGUF export.

// GGUF7Arch is the general.architecture of RWKV-7 in llama.cpp.
const GGUF7Arch = "rwkv7"

// gguf7Lerp is the order of the token-shift mixes in time_mix_lerp_fused.
var gguf7Lerp = []string{"x_r", "x_w", "x_k", "x_v", "x_a", "x_g"}

// gguf7Block maps the rest of a block name to the llama.cpp name, kind, and
// whether the tensor stays F32 whatever the export dtype.
var gguf7Block = []ggufBlockEntry{
	{"ln1.weight", "attn_norm.weight", ggufPlain, true},
	{"ln1.bias", "attn_norm.bias", ggufPlain, true},
	{"ln2.weight", "attn_norm_2.weight", ggufPlain, true},
	{"ln2.bias", "attn_norm_2.bias", ggufPlain, true},
	{"att.w0", "time_mix_w0.weight", ggufSqueeze, true},
	{"att.w1", "time_mix_w1.weight", ggufTranspose, true},
	{"att.w2", "time_mix_w2.weight", ggufTranspose, true},
	{"att.a0", "time_mix_a0.weight", ggufSqueeze, true},
	{"att.a1", "time_mix_a1.weight", ggufTranspose, false},
	{"att.a2", "time_mix_a2.weight", ggufTranspose, false},
	{"att.v0", "time_mix_v0.weight", ggufSqueeze, true},
	{"att.v1", "time_mix_v1.weight", ggufTranspose, false},
	{"att.v2", "time_mix_v2.weight", ggufTranspose, false},
	{"att.g1", "time_mix_g1.weight", ggufTranspose, false},
	{"att.g2", "time_mix_g2.weight", ggufTranspose, false},
	{"att.k_k", "time_mix_k_k.weight", ggufSqueeze, true},
	{"att.k_a", "time_mix_k_a.weight", ggufSqueeze, true},
	{"att.r_k", "time_mix_r_k.weight", ggufFlatten, true},
	{"att.receptance.weight", "time_mix_receptance.weight", ggufPlain, false},
	{"att.key.weight", "time_mix_key.weight", ggufPlain, false},
	{"att.value.weight", "time_mix_value.weight", ggufPlain, false},
	{"att.output.weight", "time_mix_output.weight", ggufPlain, false},
	{"att.ln_x.weight", "time_mix_ln.weight", ggufPlain, true},
	{"att.ln_x.bias", "time_mix_ln.bias", ggufPlain, true},
	{"ffn.x_k", "channel_mix_lerp_k.weight", ggufSqueeze, true},
	{"ffn.key.weight", "channel_mix_key.weight", ggufPlain, false},
	{"ffn.value.weight", "channel_mix_value.weight", ggufPlain, false},
}

// ggufTopEntry maps a tensor outside the blocks to its llama.cpp name, and says whether it
// stays F32 whatever the export dtype.
type ggufTopEntry struct {
	rwkv, gguf string
	f32        bool
}

var gguf7Top = []ggufTopEntry{
	{"emb.weight", "token_embd.weight", false},
	{"blocks.0.ln0.weight", "token_embd_norm.weight", true},
	{"blocks.0.ln0.bias", "token_embd_norm.bias", true},
	{"ln_out.weight", "output_norm.weight", true},
	{"ln_out.bias", "output_norm.bias", true},
	{"head.weight", "output.weight", false},
}

// isVLoRA reports whether rest (a name after "blocks.N.") is v0, v1 or v2.
func isVLoRA(rest string) bool { return rest == "att.v0" || rest == "att.v1" || rest == "att.v2" }

// GGUF7Options are the choices of an rwkv7 (ExportGGUF7) or rwkv6 (ExportGGUF6) GGUF export.
type GGUF7Options struct {
	// DType of the large matrices: F32, F16 or BF16 (general.file_type
	// ALL_F32, MOSTLY_F16, MOSTLY_BF16). Vectors, the fused lerp and w1/w2
	// are always F32.
	DType DType
	// Name is general.name; empty writes none.
	Name string
	// Tokens, when not nil, is the vocabulary: Tokens[i] holds the bytes of
	// token i, for i >= 1 (Tokens[0] is ignored: token 0 is "<s>", the
	// end-of-document token). It is written as llama.cpp's "rwkv" tokenizer
	// (greedy longest match, as the World tokenizer), each token escaped
	// like Python's bytes repr, padded with "[PADi]" to the vocab size.
	// Without Tokens no tokenizer metadata is written: the file holds the
	// whole model but llama.cpp refuses to load a model without a
	// vocabulary, so pass the World vocabulary for llama.cpp.
	Tokens [][]byte
	// WorldChat adds what the converter adds for the World vocabulary:
	// tokenizer.chat_template "rwkv-world" and tokenizer.ggml.eot_token_id
	// 261 ("\n\n").
	WorldChat bool
}

// llama_ftype values (llama.h) for general.file_type.
var gguf7FileType = map[DType]uint32{F32: 0, F16: 1, BF16: 32}

// Token types of tokenizer.ggml.token_type (llama.h llama_token_type).
const (
	ggufTokenNormal  int32 = 1
	ggufTokenControl int32 = 3
	ggufTokenUnused  int32 = 5
)

// X070ToGGUF7 converts a checked x070 model (RWKV-LM names) to the tensors
// and metadata of llama.cpp's rwkv7 architecture.
func X070ToGGUF7(ts []Tensor, opt GGUF7Options) ([]GGUFKV, []Tensor, error) {
	e, ft, err := newGGUFEmitter(opt)
	if err != nil {
		return nil, nil, err
	}
	d, ordered, err := CheckX070(ts)
	if err != nil {
		return nil, nil, err
	}
	by := tensorsByName(ordered)
	if err := e.emitTop(by, gguf7Top[:3]); err != nil { // token_embd, token_embd_norm
		return nil, nil, err
	}
	C := d.Embd
	for l := 0; l < d.Layers; l++ {
		p := fmt.Sprintf("blocks.%d.", l)
		q := fmt.Sprintf("blk.%d.", l)
		var mixes []Tensor // the six mixes, stacked
		for _, x := range gguf7Lerp {
			mixes = append(mixes, by[p+"att."+x])
		}
		if err := e.emitFusedLerp(q+"time_mix_lerp_fused.weight", mixes, C); err != nil {
			return nil, nil, err
		}
		for _, b := range gguf7Block {
			src := p + b.rwkv
			if l == 0 && isVLoRA(b.rwkv) {
				src = p + "att.a" + b.rwkv[len("att.v"):] // llama.cpp's dummy: a copy of a0/a1/a2
			}
			if err := e.emitBlock(b, by[src], q+b.gguf, C, 1); err != nil {
				return nil, nil, err
			}
		}
	}
	if err := e.emitTop(by, gguf7Top[3:]); err != nil { // output_norm, output
		return nil, nil, err
	}
	meta, err := ggufMeta(GGUF7Arch, opt, ft, d,
		GGUFKV{"wkv.head_size", uint32(d.HeadSize)},
		GGUFKV{"attention.decay_lora_rank", uint32(d.LoRA.W)},
		GGUFKV{"attention.iclr_lora_rank", uint32(d.LoRA.A)},
		GGUFKV{"attention.value_residual_mix_lora_rank", uint32(d.LoRA.V)},
		GGUFKV{"attention.gate_lora_rank", uint32(d.LoRA.G)},
	)
	if err != nil {
		return nil, nil, err
	}
	return meta, e.out, nil
}

// gguf7Vocab is the tokenizer metadata of llama.cpp's "rwkv" tokenizer.
func gguf7Vocab(tokens [][]byte, vocab int, worldChat bool) ([]GGUFKV, error) {
	if len(tokens) > vocab {
		return nil, fmt.Errorf("vocabulary of %d tokens for a model with %d embedding rows: %w", len(tokens), vocab, ErrTensors)
	}
	list := make([]string, vocab)
	types := make([]int32, vocab)
	list[0], types[0] = "<s>", ggufTokenControl
	for i := 1; i < vocab; i++ {
		if i < len(tokens) && len(tokens[i]) > 0 {
			list[i], types[i] = PyBytesEscape(tokens[i]), ggufTokenNormal
		} else {
			list[i], types[i] = fmt.Sprintf("[PAD%d]", i), ggufTokenUnused
		}
	}
	kv := []GGUFKV{
		{"tokenizer.ggml.model", "rwkv"},
		{"tokenizer.ggml.tokens", list},
		{"tokenizer.ggml.token_type", types},
	}
	if worldChat {
		if vocab <= 261 {
			return nil, fmt.Errorf("WorldChat needs token 261 (\"\\n\\n\" in the World vocabulary), the model has %d tokens: %w", vocab, ErrTensors)
		}
		kv = append(kv, GGUFKV{"tokenizer.ggml.eot_token_id", uint32(261)}, GGUFKV{"tokenizer.chat_template", "rwkv-world"})
	}
	return kv, nil
}

// PyBytesEscape returns Python's repr(b) without the leading b and the
// quotes around it: how llama.cpp's converter stores a World token, and what its rwkv
// tokenizer unescapes (\t \n \r \xhh and backslash-quoted characters).
func PyBytesEscape(b []byte) string {
	quote := byte('\'')
	if strings.IndexByte(string(b), '\'') >= 0 && strings.IndexByte(string(b), '"') < 0 {
		quote = '"'
	}
	var sb strings.Builder
	const hex = "0123456789abcdef"
	for _, c := range b {
		switch {
		case c == '\\' || c == quote:
			sb.WriteByte('\\')
			sb.WriteByte(c)
		case c == '\t':
			sb.WriteString(`\t`)
		case c == '\n':
			sb.WriteString(`\n`)
		case c == '\r':
			sb.WriteString(`\r`)
		case c < 0x20 || c >= 0x7f:
			sb.WriteString(`\x`)
			sb.WriteByte(hex[c>>4])
			sb.WriteByte(hex[c&15])
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}

// pyBytesUnescape is llama.cpp's reading of an escaped token.
func pyBytesUnescape(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			out = append(out, s[i])
			continue
		}
		i++
		if i == len(s) {
			return nil, fmt.Errorf("token %q ends in a backslash", s)
		}
		switch s[i] {
		case 't':
			out = append(out, '\t')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 'x':
			if i+2 >= len(s) {
				return nil, fmt.Errorf("token %q: short \\x escape", s)
			}
			var v byte
			for _, h := range []byte(s[i+1 : i+3]) {
				switch {
				case h >= '0' && h <= '9':
					v = v<<4 | (h - '0')
				case h >= 'a' && h <= 'f':
					v = v<<4 | (h - 'a' + 10)
				default:
					return nil, fmt.Errorf("token %q: bad \\x escape", s)
				}
			}
			out = append(out, v)
			i += 2
		default:
			out = append(out, s[i])
		}
	}
	return out, nil
}

// ExportGGUF7 writes an x070 model as a GGUF file for llama.cpp's rwkv7
// architecture (see X070ToGGUF7 and GGUF7Options).
func ExportGGUF7(w io.Writer, ts []Tensor, opt GGUF7Options) error {
	return exportGGUF(w, ts, opt, X070ToGGUF7)
}

// X070FromGGUF7 maps the tensors of an rwkv7 GGUF file (F32, F16 or BF16,
// as llama.cpp's converter or ExportGGUF7 writes them) back to RWKV-LM names
// and shapes. Layer 0's dummy v0/v1/v2 are dropped. The result is checked
// as an x070 model.
func X070FromGGUF7(f *GGUFFile) ([]Tensor, error) {
	r, C, err := newGGUFRWKVReader(f, GGUF7Arch)
	if err != nil {
		return nil, err
	}
	get := func(name string, numel int) (Tensor, error) {
		t, ok := r.by[name]
		if ok && numel >= 0 && t.NumElements() != numel {
			return Tensor{}, fmt.Errorf("tensor %q: shape %v, want %d elements: %w", name, t.Shape, numel, ErrTensors)
		}
		return r.take(name)
	}
	hs, _ := f.Get(GGUF7Arch + ".wkv.head_size")
	N, ok := hs.(uint32)
	if !ok || N == 0 || C%int(N) != 0 {
		return nil, fmt.Errorf("%s.wkv.head_size %v does not divide the width %d: %w", GGUF7Arch, hs, C, ErrTensors)
	}
	out, err := r.top()
	if err != nil {
		return nil, err
	}
	for l := 0; ; l++ {
		p := fmt.Sprintf("blocks.%d.", l)
		q := fmt.Sprintf("blk.%d.", l)
		if _, ok := r.by[q+"attn_norm.weight"]; !ok {
			break
		}
		lerp, err := get(q+"time_mix_lerp_fused.weight", 6*C)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, x := range gguf7Lerp {
			names = append(names, p+"att."+x)
		}
		out = append(out, splitFusedLerp(lerp, names, C)...)
		for _, e := range gguf7Block {
			if l == 0 && isVLoRA(e.rwkv) {
				r.used[q+e.gguf] = true
				continue
			}
			numel := -1
			if e.kind == ggufSqueeze || e.kind == ggufFlatten {
				numel = C
			}
			t, err := get(q+e.gguf, numel)
			if err != nil {
				return nil, err
			}
			switch e.kind {
			case ggufPlain:
				t = reshaped(t, p+e.rwkv, t.Shape...)
			case ggufSqueeze:
				t = reshaped(t, p+e.rwkv, 1, 1, t.NumElements())
			case ggufFlatten:
				t = reshaped(t, p+e.rwkv, t.NumElements()/int(N), int(N))
			case ggufTranspose:
				if len(t.Shape) != 2 {
					return nil, fmt.Errorf("tensor %q: shape %v, want a matrix: %w", q+e.gguf, t.Shape, ErrTensors)
				}
				t = transpose2D(t, p+e.rwkv)
			}
			out = append(out, t)
		}
	}
	if err := r.unused(); err != nil {
		return nil, err
	}
	_, ordered, err := CheckX070(out)
	if err != nil {
		return nil, err
	}
	return ordered, nil
}
