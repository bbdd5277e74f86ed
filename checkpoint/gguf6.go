package checkpoint

import (
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/rwkv-go/rwkv-go/arch"
)

// llama.cpp's rwkv6 architecture (NEXT-ARCH §5.3). The names, shapes and metadata are what
// llama.cpp's converter writes from a RWKV/v6-Finch HF directory (conversion/rwkv.py
// Rwkv6Model, gguf-py constants.py and tensor_mapping.py) and what src/models/rwkv6.cpp
// load_arch_tensors asks for (ggml ne, fastest first; M = time_mix_extra_dim,
// W = time_decay_extra_dim):
//
//	token_embd.weight                 emb.weight                          {C, V}
//	token_embd_norm.weight/bias       blocks.0.ln0                        {C}
//	blk.N.attn_norm.weight/bias       ln1                                 {C}
//	blk.N.attn_norm_2.weight/bias     ln2                                 {C}
//	blk.N.time_mix_lerp_x.weight      att.time_maa_x squeezed             {C}
//	blk.N.time_mix_lerp_fused.weight  time_maa_w,k,v,r,g stacked          {C,1,1,5}
//	blk.N.time_mix_w1.weight          time_maa_w1 [C,5M] transposed       {C, 5M}
//	blk.N.time_mix_w2.weight          time_maa_w2 [5,M,C] → [5,C,M]       {M, C, 5}
//	blk.N.time_mix_decay.weight       time_decay squeezed                 {C}
//	blk.N.time_mix_decay_w1.weight    time_decay_w1 [C,W] transposed      {C, W}
//	blk.N.time_mix_decay_w2.weight    time_decay_w2 [W,C] transposed      {W, C}
//	blk.N.time_mix_first.weight       time_faaaa [H,N]                    {N, H}
//	blk.N.time_mix_receptance/key/value/gate.weight                       {C, C}
//	blk.N.time_mix_output.weight      att.output.weight / 2^(N/6)         {C, C}
//	blk.N.time_mix_ln.weight/bias     ln_x                                {C}
//	blk.N.channel_mix_lerp_k/r.weight ffn.time_maa_k/r squeezed           {C}
//	blk.N.channel_mix_key.weight      ffn.key.weight                      {C, F}
//	blk.N.channel_mix_receptance.weight                                   {C, C}
//	blk.N.channel_mix_value.weight    ffn.value.weight / 2^(N/6)          {F, C}
//	output_norm.weight/bias           ln_out                              {C}
//	output.weight                     head.weight                         {C, V}
//
// Like the converter, the export divides layer N's time_mix_output and channel_mix_value by
// 2^(N/6) and writes rescale_every_n_layers 6 (llama.cpp halves the residual stream after every
// sixth layer: the same model, kept inside the F16 range); reading multiplies them back.
// Like the converter, the 1-D tensors, the fused lerp, time_mix_first, w1/w2 and
// decay_w1/w2 are F32; the other matrices take the export dtype. llama.cpp's RWKV-6
// GroupNorm eps (64e-5) is hard-coded; there is no key for it. llama.cpp has no RWKV-5
// architecture: RWKV-5.2 models have no GGUF export.

// GGUF6Arch is the general.architecture of RWKV-6 in llama.cpp.
const GGUF6Arch = "rwkv6"

// gguf6RescaleEvery is rescale_every_n_layers as the converter writes it (RWKV/v6-Finch's
// config rescale_every).
const gguf6RescaleEvery = 6

// gguf6Lerp is the order of the token-shift mixes in time_mix_lerp_fused (the converter's
// w, k, v, r, g; the order of time_maa_w2's five slices).
var gguf6Lerp = []string{"w", "k", "v", "r", "g"}

// gguf6Block maps the rest of a block name to the llama.cpp name, kind, and whether the
// tensor stays F32 whatever the export dtype. time_maa_w..g go to the fused lerp.
var gguf6Block = []ggufBlockEntry{
	{"ln1.weight", "attn_norm.weight", ggufPlain, true},
	{"ln1.bias", "attn_norm.bias", ggufPlain, true},
	{"ln2.weight", "attn_norm_2.weight", ggufPlain, true},
	{"ln2.bias", "attn_norm_2.bias", ggufPlain, true},
	{"att.time_maa_x", "time_mix_lerp_x.weight", ggufSqueeze, true},
	{"att.time_maa_w1", "time_mix_w1.weight", ggufTranspose, true},
	{"att.time_maa_w2", "time_mix_w2.weight", ggufLast2, true},
	{"att.time_decay", "time_mix_decay.weight", ggufSqueeze, true},
	{"att.time_decay_w1", "time_mix_decay_w1.weight", ggufTranspose, true},
	{"att.time_decay_w2", "time_mix_decay_w2.weight", ggufTranspose, true},
	{"att.time_faaaa", "time_mix_first.weight", ggufPlain, true},
	{"att.receptance.weight", "time_mix_receptance.weight", ggufPlain, false},
	{"att.key.weight", "time_mix_key.weight", ggufPlain, false},
	{"att.value.weight", "time_mix_value.weight", ggufPlain, false},
	{"att.gate.weight", "time_mix_gate.weight", ggufPlain, false},
	{"att.output.weight", "time_mix_output.weight", ggufRescale, false},
	{"att.ln_x.weight", "time_mix_ln.weight", ggufPlain, true},
	{"att.ln_x.bias", "time_mix_ln.bias", ggufPlain, true},
	{"ffn.time_maa_k", "channel_mix_lerp_k.weight", ggufSqueeze, true},
	{"ffn.time_maa_r", "channel_mix_lerp_r.weight", ggufSqueeze, true},
	{"ffn.key.weight", "channel_mix_key.weight", ggufPlain, false},
	{"ffn.receptance.weight", "channel_mix_receptance.weight", ggufPlain, false},
	{"ffn.value.weight", "channel_mix_value.weight", ggufRescale, false},
}

// rescaled returns t with every value multiplied by s (a power of two: exact but for F16/BF16
// subnormals), in t's dtype.
func rescaled(t Tensor, name string, s float64) (Tensor, error) {
	v, err := t.Float64s()
	if err != nil {
		return Tensor{}, err
	}
	for i := range v {
		v[i] *= s
	}
	return FromFloat64(name, t.Shape, v, t.DType), nil
}

// X060ToGGUF6 converts a checked x060 model (RWKV-LM names) to the tensors and metadata of
// llama.cpp's rwkv6 architecture (opt as for rwkv7: the dtype of the large matrices, the
// name, the vocabulary). An x052 model is an arch.ErrUnsupported error: llama.cpp has no
// RWKV-5 architecture.
func X060ToGGUF6(ts []Tensor, opt GGUF7Options) ([]GGUFKV, []Tensor, error) {
	e, ft, err := newGGUFEmitter(opt)
	if err != nil {
		return nil, nil, err
	}
	d, ordered, err := CheckX05(ts)
	if err != nil {
		return nil, nil, err
	}
	if d.Arch.Resolve() != arch.X060 {
		return nil, nil, fmt.Errorf("the tensors hold an %s model, and llama.cpp has no RWKV-5 architecture (it runs rwkv6 and rwkv7): %w", d.Arch.Title(), arch.ErrUnsupported)
	}
	by := tensorsByName(ordered)
	if err := e.emitTop(by, gguf7Top[:3]); err != nil { // token_embd, token_embd_norm
		return nil, nil, err
	}
	C := d.Embd
	for l := 0; l < d.Layers; l++ {
		p := fmt.Sprintf("blocks.%d.", l)
		q := fmt.Sprintf("blk.%d.", l)
		for _, b := range gguf6Block {
			if err := e.emitBlock(b, by[p+b.rwkv], q+b.gguf, C, math.Ldexp(1, -l/gguf6RescaleEvery)); err != nil {
				return nil, nil, err
			}
			if b.rwkv == "att.time_maa_x" {
				var mixes []Tensor // the five mixes, stacked
				for _, x := range gguf6Lerp {
					mixes = append(mixes, by[p+"att.time_maa_"+x])
				}
				if err := e.emitFusedLerp(q+"time_mix_lerp_fused.weight", mixes, C); err != nil {
					return nil, nil, err
				}
			}
		}
	}
	if err := e.emitTop(by, gguf7Top[3:]); err != nil { // output_norm, output
		return nil, nil, err
	}
	meta, err := ggufMeta(GGUF6Arch, opt, ft, d,
		GGUFKV{"rescale_every_n_layers", uint32(gguf6RescaleEvery)},
		GGUFKV{"wkv.head_size", uint32(d.HeadSize)},
		GGUFKV{"time_mix_extra_dim", uint32(d.LoRA.Mix)},
		GGUFKV{"time_decay_extra_dim", uint32(d.LoRA.W)},
	)
	if err != nil {
		return nil, nil, err
	}
	return meta, e.out, nil
}

// ExportGGUF6 writes an x060 model as a GGUF file for llama.cpp's rwkv6 architecture (see
// X060ToGGUF6 and GGUF7Options).
func ExportGGUF6(w io.Writer, ts []Tensor, opt GGUF7Options) error {
	return exportGGUF(w, ts, opt, X060ToGGUF6)
}

// ggufU32 reads an unsigned integer metadata value (llama.cpp's converter writes uint32).
func ggufU32(f *GGUFFile, key string) (int, bool) {
	switch v, _ := f.Get(key); x := v.(type) {
	case uint32:
		return int(x), true
	case int32:
		return int(x), x >= 0
	case uint64:
		return int(x), x <= math.MaxInt32
	}
	return 0, false
}

// X060FromGGUF6 maps the tensors of an rwkv6 GGUF file (F32, F16 or BF16, as llama.cpp's
// converter or ExportGGUF6 writes them) back to RWKV-LM names and shapes: the fused lerp (or
// llama.cpp's optional separate time_mix_lerp_w..g) split, transposes undone, [1,1,C]
// vectors restored, time_mix_output and channel_mix_value multiplied back by
// 2^(layer/rescale_every_n_layers). The result is checked as an x060 model.
func X060FromGGUF6(f *GGUFFile) ([]Tensor, error) {
	r, C, err := newGGUFRWKVReader(f, GGUF6Arch)
	if err != nil {
		return nil, err
	}
	get := func(name string, shape ...int) (Tensor, error) {
		t, ok := r.by[name]
		if ok && shape != nil && !slices.Equal(squeezed(t.Shape), squeezed(shape)) {
			return Tensor{}, fmt.Errorf("tensor %q: shape %v, want %v: %w", name, t.Shape, shape, ErrTensors)
		}
		return r.take(name)
	}
	N, ok := ggufU32(f, GGUF6Arch+".wkv.head_size")
	if !ok || N == 0 || C%N != 0 {
		v, _ := f.Get(GGUF6Arch + ".wkv.head_size")
		return nil, fmt.Errorf("%s.wkv.head_size %v does not divide the width %d: %w", GGUF6Arch, v, C, ErrTensors)
	}
	rescale, _ := ggufU32(f, GGUF6Arch+".rescale_every_n_layers") // absent: 0, no rescaling
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
		var lerps []Tensor
		if _, ok := r.by[q+"time_mix_lerp_fused.weight"]; ok {
			fused, err := get(q+"time_mix_lerp_fused.weight", 5, C)
			if err != nil {
				return nil, err
			}
			var names []string
			for _, x := range gguf6Lerp {
				names = append(names, p+"att.time_maa_"+x)
			}
			lerps = splitFusedLerp(fused, names, C)
		} else {
			for _, x := range gguf6Lerp {
				t, err := get(q+"time_mix_lerp_"+x+".weight", C)
				if err != nil {
					return nil, fmt.Errorf("%w (and no time_mix_lerp_fused)", err)
				}
				lerps = append(lerps, reshaped(t, p+"att.time_maa_"+x, 1, 1, C))
			}
		}
		out = append(out, lerps...)
		for _, e := range gguf6Block {
			var want []int // nil: any shape (Check has the last word)
			switch e.kind {
			case ggufSqueeze:
				want = []int{C}
			case ggufTranspose:
				if t, ok := r.by[q+e.gguf]; ok && len(t.Shape) != 2 {
					return nil, fmt.Errorf("tensor %q: shape %v, want a matrix: %w", q+e.gguf, t.Shape, ErrTensors)
				}
			case ggufLast2:
				if t, ok := r.by[q+e.gguf]; ok && len(t.Shape) != 3 {
					return nil, fmt.Errorf("tensor %q: shape %v, want [5, C, M]: %w", q+e.gguf, t.Shape, ErrTensors)
				}
			}
			t, err := get(q+e.gguf, want...)
			if err != nil {
				return nil, err
			}
			switch e.kind {
			case ggufPlain:
				t = reshaped(t, p+e.rwkv, t.Shape...)
			case ggufSqueeze:
				t = reshaped(t, p+e.rwkv, 1, 1, C)
			case ggufTranspose:
				t = transpose2D(t, p+e.rwkv)
			case ggufLast2:
				t = transposeLast2(t, p+e.rwkv)
			case ggufRescale:
				s := 1.0
				if rescale > 0 {
					s = math.Ldexp(1, min(l/rescale, 1000))
				}
				if t, err = rescaled(t, p+e.rwkv, s); err != nil {
					return nil, fmt.Errorf("tensor %q: %w", q+e.gguf, err)
				}
			}
			out = append(out, t)
		}
	}
	if err := r.unused(); err != nil {
		return nil, err
	}
	d, ordered, err := CheckX05(out)
	if err == nil && d.Arch.Resolve() != arch.X060 {
		err = fmt.Errorf("the rwkv6 GGUF's tensors hold an %s model: %w", d.Arch.Title(), ErrTensors)
	}
	if err != nil {
		return nil, err
	}
	for _, t := range ordered {
		if err := t.CheckFinite(); err != nil {
			return nil, err
		}
	}
	return ordered, nil
}

// squeezed is shape without its 1s (ggml pads ne with 1s, llama.cpp compares shapes so).
func squeezed(shape []int) []int {
	var out []int
	for _, d := range shape {
		if d != 1 {
			out = append(out, d)
		}
	}
	return out
}
