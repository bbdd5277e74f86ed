package checkpoint

import (
	"fmt"
	"io"
)

// What llama.cpp's rwkv6 (gguf6.go) and rwkv7 (gguf7.go) exports and imports share.

// ggufKind is how a block tensor's RWKV-LM shape maps to its llama.cpp one.
type ggufKind int

const (
	ggufPlain     ggufKind = iota // same shape
	ggufSqueeze                   // [1,1,C] <-> {C}
	ggufTranspose                 // [a,b] <-> [b,a] (LoRA matrices)
	ggufFlatten                   // rwkv7 r_k [H,N] <-> {C}
	ggufLast2                     // rwkv6 time_maa_w2 [5,M,C] <-> [5,C,M]
	ggufRescale                   // same shape, divided by 2^(layer/rescale_every_n_layers) in the file (rwkv6)
)

// ggufBlockEntry maps the rest of a block name to the llama.cpp name, kind, and whether the
// tensor stays F32 whatever the export dtype.
type ggufBlockEntry struct {
	rwkv, gguf string
	kind       ggufKind
	f32        bool
}

// tensorsByName indexes ts by name.
func tensorsByName(ts []Tensor) map[string]Tensor {
	by := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		by[t.Name] = t
	}
	return by
}

// ggufEmitter collects the tensors of an rwkv6/rwkv7 GGUF export, each converted to the
// export dtype (or F32) and checked finite.
type ggufEmitter struct {
	dtype DType
	out   []Tensor
}

// newGGUFEmitter checks opt.DType and returns an emitter for it and its general.file_type.
func newGGUFEmitter(opt GGUF7Options) (*ggufEmitter, uint32, error) {
	ft, ok := gguf7FileType[opt.DType]
	if !ok {
		return nil, 0, fmt.Errorf("gguf dtype %q (want F32, F16 or BF16): %w", opt.DType, ErrDType)
	}
	return &ggufEmitter{dtype: opt.DType}, ft, nil
}

// emit appends t in the export dtype, or in F32 when f32.
func (e *ggufEmitter) emit(t Tensor, f32 bool) error {
	dt := e.dtype
	if f32 {
		dt = F32
	}
	c, err := t.Convert(dt)
	if err == nil {
		err = c.CheckFinite()
	}
	if err != nil {
		return err
	}
	e.out = append(e.out, c)
	return nil
}

// emitBlock appends the block tensor t as name, mapped as b.kind says (C the width; a
// ggufRescale tensor is multiplied by rescale).
func (e *ggufEmitter) emitBlock(b ggufBlockEntry, t Tensor, name string, C int, rescale float64) error {
	var g Tensor
	switch b.kind {
	case ggufPlain:
		g = reshaped(t, name, t.Shape...)
	case ggufSqueeze, ggufFlatten:
		g = reshaped(t, name, C)
	case ggufTranspose:
		g = transpose2D(t, name)
	case ggufLast2:
		g = transposeLast2(t, name)
	case ggufRescale:
		var err error
		if g, err = rescaled(t, name, rescale); err != nil {
			return err
		}
	}
	return e.emit(g, b.f32)
}

// emitTop appends the entries of top (a part of gguf7Top) from by, renamed.
func (e *ggufEmitter) emitTop(by map[string]Tensor, top []ggufTopEntry) error {
	for _, x := range top {
		if err := e.emit(reshaped(by[x.rwkv], x.gguf, by[x.rwkv].Shape...), x.f32); err != nil {
			return err
		}
	}
	return nil
}

// emitFusedLerp appends the token-shift mixes parts ([1,1,C] each) stacked as the F32 tensor
// name: row-major [len(parts),1,1,C], ggml ne {C,1,1,len(parts)}.
func (e *ggufEmitter) emitFusedLerp(name string, parts []Tensor, C int) error {
	var lerp []byte
	for _, t := range parts {
		c, err := t.Convert(F32)
		if err != nil {
			return err
		}
		lerp = append(lerp, c.Data...)
	}
	return e.emit(Tensor{Name: name, DType: F32, Shape: []int{len(parts), 1, 1, C}, Data: lerp}, true)
}

// ggufMeta is the metadata of an rwkv6/rwkv7 export in the converter's order: general.*,
// the common hyperparameters with own (the architecture's own keys, without the
// "<arch>." prefix) between attention.layer_norm_epsilon and feed_forward_length, the file
// type, the vocabulary (opt.Tokens) and the quantization version.
func ggufMeta(archName string, opt GGUF7Options, ft uint32, d Dims, own ...GGUFKV) ([]GGUFKV, error) {
	a := func(k string) string { return archName + "." + k }
	meta := []GGUFKV{
		{"general.architecture", archName},
		{"general.type", "model"},
	}
	if opt.Name != "" {
		meta = append(meta, GGUFKV{"general.name", opt.Name})
	}
	meta = append(meta,
		GGUFKV{a("context_length"), uint32(1048576)}, // RWKV has no context limit; the converter's value
		GGUFKV{a("embedding_length"), uint32(d.Embd)},
		GGUFKV{a("block_count"), uint32(d.Layers)},
		GGUFKV{a("attention.layer_norm_epsilon"), float32(1e-5)},
	)
	for _, kv := range own {
		meta = append(meta, GGUFKV{a(kv.Key), kv.Value})
	}
	meta = append(meta,
		GGUFKV{a("feed_forward_length"), uint32(d.FFN)},
		GGUFKV{"general.file_type", ft},
		GGUFKV{a("attention.head_count"), uint32(0)}, // required by llama.cpp, unused
	)
	if opt.Tokens != nil {
		kv, err := gguf7Vocab(opt.Tokens, d.Vocab, opt.WorldChat)
		if err != nil {
			return nil, err
		}
		meta = append(meta, kv...)
	}
	meta = append(meta, GGUFKV{"general.quantization_version", uint32(2)})
	return meta, nil
}

// exportGGUF writes the GGUF file that convert makes of ts.
func exportGGUF(w io.Writer, ts []Tensor, opt GGUF7Options, convert func([]Tensor, GGUF7Options) ([]GGUFKV, []Tensor, error)) error {
	meta, out, err := convert(ts, opt)
	if err != nil {
		return fmt.Errorf("export gguf: %w", err)
	}
	if err := WriteGGUF(w, meta, out); err != nil {
		return fmt.Errorf("export gguf: %w", err)
	}
	return nil
}

// ggufRWKVReader is an rwkv6/rwkv7 GGUF file's tensors by name, and which of them were taken.
type ggufRWKVReader struct {
	f    *GGUFFile
	arch string
	by   map[string]Tensor
	used map[string]bool
}

// newGGUFRWKVReader checks general.architecture and token_embd.weight and returns the reader
// and the width C.
func newGGUFRWKVReader(f *GGUFFile, archName string) (*ggufRWKVReader, int, error) {
	if a, _ := f.Get("general.architecture"); a != archName {
		return nil, 0, fmt.Errorf("general.architecture %v, want %q: %w", a, archName, ErrTensors)
	}
	r := &ggufRWKVReader{f: f, arch: archName, by: tensorsByName(f.Tensors), used: map[string]bool{}}
	emb, ok := r.by["token_embd.weight"]
	if !ok || len(emb.Shape) != 2 {
		return nil, 0, fmt.Errorf("missing tensor \"token_embd.weight\" [V, C]: %w", ErrTensors)
	}
	return r, emb.Shape[1], nil
}

// take returns the tensor called name, marked as used, or an error when there is none.
func (r *ggufRWKVReader) take(name string) (Tensor, error) {
	t, ok := r.by[name]
	if !ok {
		return Tensor{}, fmt.Errorf("missing tensor %q: %w", name, ErrTensors)
	}
	r.used[name] = true
	return t, nil
}

// top returns gguf7Top's tensors under their RWKV-LM names.
func (r *ggufRWKVReader) top() ([]Tensor, error) {
	var out []Tensor
	for _, e := range gguf7Top {
		t, err := r.take(e.gguf)
		if err != nil {
			return nil, err
		}
		out = append(out, reshaped(t, e.rwkv, t.Shape...))
	}
	return out, nil
}

// unused returns an error naming the first tensor of the file that was not taken.
func (r *ggufRWKVReader) unused() error {
	for _, t := range r.f.Tensors {
		if !r.used[t.Name] {
			return fmt.Errorf("unexpected tensor %q in an %s GGUF: %w", t.Name, r.arch, ErrTensors)
		}
	}
	return nil
}

// splitFusedLerp cuts a time_mix_lerp_fused tensor (row-major [len(names),…,C]) into the
// [1,1,C] mixes called names, in fused's dtype.
func splitFusedLerp(fused Tensor, names []string, C int) []Tensor {
	es := fused.DType.Size()
	out := make([]Tensor, len(names))
	for i, name := range names {
		out[i] = Tensor{Name: name, DType: fused.DType, Shape: []int{1, 1, C}, Data: fused.Data[i*C*es : (i+1)*C*es]}
	}
	return out
}
