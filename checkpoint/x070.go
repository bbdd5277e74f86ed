package checkpoint

import (
	"fmt"
	"io"
	"math"
	"strings"
)

// X070Dims are the sizes of an RWKV-7 (x070) model as its tensors give them
// (NEXT-ARCH §1.3): Embd = C = n_embd = dim_att, HeadSize = N (64 in every
// release), DimFFN = F (4C), and the LoRA ranks of the decay (Dw), the
// in-context learning rate (Da), the value residual (Dv) and the gate (Dg).
//
// Provisional: issue 13 moves each architecture's tensor layout into one
// package shared by model and checkpoint. Until then this type and
// x070Layout are the export side's own copy; they will be replaced by that
// package's x070 layout, not grown.
type X070Dims struct {
	Layers, Embd, Vocab, HeadSize, DimFFN int
	Dw, Da, Dv, Dg                        int
}

// Heads is the number of WKV heads, C / N.
func (d X070Dims) Heads() int { return d.Embd / d.HeadSize }

// x070Layout lists the x070 tensor names and shapes in RWKV-LM state_dict
// order (Block registers ln1, ln2, ln0, att, ffn; RWKV_Tmix_x070 registers
// its parameters x_r ... r_k before its Linear and GroupNorm modules). With
// layer0V, layer 0 carries the v0/v1/v2 that RWKV-LM creates and never uses.
func x070Layout(d X070Dims, layer0V bool) []Tensor {
	C, F, H, N := d.Embd, d.DimFFN, d.Heads(), d.HeadSize
	out := []Tensor{{Name: "emb.weight", Shape: []int{d.Vocab, C}}}
	add := func(name string, shape ...int) { out = append(out, Tensor{Name: name, Shape: shape}) }
	for l := 0; l < d.Layers; l++ {
		p := fmt.Sprintf("blocks.%d.", l)
		add(p+"ln1.weight", C)
		add(p+"ln1.bias", C)
		add(p+"ln2.weight", C)
		add(p+"ln2.bias", C)
		if l == 0 {
			add(p+"ln0.weight", C)
			add(p+"ln0.bias", C)
		}
		a := p + "att."
		for _, x := range []string{"x_r", "x_w", "x_k", "x_v", "x_a", "x_g"} {
			add(a+x, 1, 1, C)
		}
		add(a+"w0", 1, 1, C)
		add(a+"w1", C, d.Dw)
		add(a+"w2", d.Dw, C)
		add(a+"a0", 1, 1, C)
		add(a+"a1", C, d.Da)
		add(a+"a2", d.Da, C)
		if l > 0 || layer0V {
			add(a+"v0", 1, 1, C)
			add(a+"v1", C, d.Dv)
			add(a+"v2", d.Dv, C)
		}
		add(a+"g1", C, d.Dg)
		add(a+"g2", d.Dg, C)
		add(a+"k_k", 1, 1, C)
		add(a+"k_a", 1, 1, C)
		add(a+"r_k", H, N)
		add(a+"receptance.weight", C, C)
		add(a+"key.weight", C, C)
		add(a+"value.weight", C, C)
		add(a+"output.weight", C, C)
		add(a+"ln_x.weight", C)
		add(a+"ln_x.bias", C)
		add(p+"ffn.x_k", 1, 1, C)
		add(p+"ffn.key.weight", F, C)
		add(p+"ffn.value.weight", C, F)
	}
	add("ln_out.weight", C)
	add("ln_out.bias", C)
	add("head.weight", d.Vocab, C)
	return out
}

// X070LoRARank is RWKV-LM's current rank rule (LM7):
// max(32, round(k·√C/32)·32), rounding half to even as Python 3 does.
// Used only for layer 0's unused v1/v2 when a one-layer model has no other
// layer to take Dv from; loading always takes ranks from the tensors.
func X070LoRARank(C int, k float64) int {
	return max(32, int(math.RoundToEven(k*math.Sqrt(float64(C))/32))*32)
}

// x070Variant names the tensors of the RWKV-7a/7b variants (DeepEmbed, DEA).
func x070Variant(name string) bool {
	return strings.Contains(name, ".ffn.s_emb") || strings.Contains(name, ".ffn.s0") ||
		strings.Contains(name, ".ffn.s1") || strings.Contains(name, ".ffn.s2") || strings.Contains(name, ".qkv.")
}

// InferX070Dims reads the x070 sizes from RWKV-LM-named tensors: V and C
// from emb.weight, L from the blocks' ln1, N from r_k [H,N], F from
// ffn.key.weight, the ranks from w1/a1/g1 and from v1 of layer 1 (layer 0's
// v1 when there is no layer 1, else the rank rule with k = 1.7).
func InferX070Dims(ts []Tensor) (X070Dims, error) {
	by := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		if x070Variant(t.Name) {
			return X070Dims{}, fmt.Errorf("tensor %q belongs to an RWKV-7a/7b variant (DeepEmbed or DEA), which is not supported; use a plain x070 model: %w", t.Name, ErrTensors)
		}
		by[t.Name] = t
	}
	shape := func(name string, rank int) ([]int, error) {
		t, ok := by[name]
		if !ok {
			return nil, fmt.Errorf("missing tensor %q, which every x070 model has: %w", name, ErrTensors)
		}
		if len(t.Shape) != rank {
			return nil, fmt.Errorf("tensor %q: shape %v, want %d dimensions: %w", name, t.Shape, rank, ErrTensors)
		}
		return t.Shape, nil
	}
	var d X070Dims
	s, err := shape("emb.weight", 2)
	if err != nil {
		return d, err
	}
	d.Vocab, d.Embd = s[0], s[1]
	for {
		if _, ok := by[fmt.Sprintf("blocks.%d.ln1.weight", d.Layers)]; !ok {
			break
		}
		d.Layers++
	}
	if d.Layers == 0 {
		return d, fmt.Errorf("no blocks.0.ln1.weight: not an RWKV model with RWKV-LM names: %w", ErrTensors)
	}
	if s, err = shape("blocks.0.att.r_k", 2); err != nil {
		return d, err
	}
	d.HeadSize = s[1]
	if d.HeadSize == 0 || s[0]*s[1] != d.Embd {
		return d, fmt.Errorf("tensor \"blocks.0.att.r_k\": shape %v, want [H, N] with H·N = C = %d: %w", s, d.Embd, ErrTensors)
	}
	if s, err = shape("blocks.0.ffn.key.weight", 2); err != nil {
		return d, err
	}
	d.DimFFN = s[0]
	for _, r := range []struct {
		name string
		v    *int
	}{{"blocks.0.att.w1", &d.Dw}, {"blocks.0.att.a1", &d.Da}, {"blocks.0.att.g1", &d.Dg}} {
		if s, err = shape(r.name, 2); err != nil {
			return d, err
		}
		*r.v = s[1]
	}
	switch {
	case d.Layers > 1:
		if s, err = shape("blocks.1.att.v1", 2); err != nil {
			return d, err
		}
		d.Dv = s[1]
	case hasTensor(by, "blocks.0.att.v1"):
		if s, err = shape("blocks.0.att.v1", 2); err != nil {
			return d, err
		}
		d.Dv = s[1]
	default:
		d.Dv = X070LoRARank(d.Embd, 1.7)
	}
	return d, nil
}

// CheckX070 infers the sizes from ts (RWKV-LM names) and checks that ts
// holds exactly the x070 tensors with the right shapes and float dtypes,
// with or without layer 0's unused v0/v1/v2 (layer0V says which). It
// returns ts in RWKV-LM state_dict order.
func CheckX070(ts []Tensor) (d X070Dims, ordered []Tensor, layer0V bool, err error) {
	d, err = InferX070Dims(ts)
	if err != nil {
		return d, nil, false, err
	}
	byName := make(map[string]Tensor, len(ts))
	for _, t := range ts {
		if _, dup := byName[t.Name]; dup {
			return d, nil, false, fmt.Errorf("duplicate tensor %q: %w", t.Name, ErrTensors)
		}
		byName[t.Name] = t
	}
	_, layer0V = byName["blocks.0.att.v0"]
	want := x070Layout(d, layer0V)
	ordered = make([]Tensor, 0, len(want))
	for _, w := range want {
		t, ok := byName[w.Name]
		if !ok {
			return d, nil, false, fmt.Errorf("missing tensor %q: %w", w.Name, ErrTensors)
		}
		if !equalShape(t.Shape, w.Shape) {
			return d, nil, false, fmt.Errorf("tensor %q: shape %v, want %v: %w", w.Name, t.Shape, w.Shape, ErrTensors)
		}
		if !t.DType.IsFloat() {
			return d, nil, false, fmt.Errorf("tensor %q: dtype %s: %w", w.Name, t.DType, ErrDType)
		}
		ordered = append(ordered, t)
		delete(byName, w.Name)
	}
	for _, t := range ts {
		if _, extra := byName[t.Name]; extra {
			return d, nil, false, fmt.Errorf("unexpected tensor %q in an x070 model: %w", t.Name, ErrTensors)
		}
	}
	return d, ordered, layer0V, nil
}

// x070ForRWKVLM checks ts, adds layer 0's v0/v1/v2 (zeros: RWKV-LM creates
// them and never reads them) when absent, and converts every tensor to dt,
// refusing values that are not finite after conversion.
func x070ForRWKVLM(ts []Tensor, dt DType) (X070Dims, []Tensor, error) {
	if dt != F32 && dt != F16 && dt != BF16 {
		return X070Dims{}, nil, fmt.Errorf("export dtype %q (want F32, F16 or BF16): %w", dt, ErrDType)
	}
	d, ordered, layer0V, err := CheckX070(ts)
	if err != nil {
		return d, nil, err
	}
	if !layer0V {
		byName := make(map[string]Tensor, len(ordered)+3)
		for _, t := range ordered {
			byName[t.Name] = t
		}
		full := x070Layout(d, true)
		ordered = ordered[:0:0]
		for _, w := range full {
			t, ok := byName[w.Name]
			if !ok { // one of blocks.0.att.v0/v1/v2
				t = FromFloat32(w.Name, w.Shape, make([]float32, numel(w.Shape)), F32)
			}
			ordered = append(ordered, t)
		}
	}
	out := make([]Tensor, len(ordered))
	for i, t := range ordered {
		c, err := t.Convert(dt)
		if err != nil {
			return d, nil, err
		}
		if err := c.CheckFinite(); err != nil {
			return d, nil, err
		}
		out[i] = c
	}
	return d, out, nil
}

func hasTensor(by map[string]Tensor, name string) bool {
	_, ok := by[name]
	return ok
}

func numel(shape []int) int {
	n := 1
	for _, s := range shape {
		n *= s
	}
	return n
}

// ExportX070PTH writes an x070 model as RWKV-LM's torch.save writes its
// state_dict (what ChatRWKV, rwkv.cpp's and web-rwkv's converters read): RWKV-LM
// names and order, [1,1,C] vectors, layer 0's v0/v1/v2 included, every
// tensor in dt (BF16 like the released files, F16 or F32).
func ExportX070PTH(w io.Writer, ts []Tensor, dt DType) error {
	_, out, err := x070ForRWKVLM(ts, dt)
	if err != nil {
		return fmt.Errorf("export x070 pth: %w", err)
	}
	if err := WritePTH(w, out); err != nil {
		return fmt.Errorf("export x070 pth: %w", err)
	}
	return nil
}

// ExportX070RWKV writes the same tensors as ExportX070PTH as a safetensors
// file (metadata format=pt).
func ExportX070RWKV(w io.Writer, ts []Tensor, dt DType) error {
	_, out, err := x070ForRWKVLM(ts, dt)
	if err != nil {
		return fmt.Errorf("export x070 rwkv: %w", err)
	}
	if err := WriteSafetensors(w, out, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export x070 rwkv: %w", err)
	}
	return nil
}

// transpose2D returns the [c, r] transpose of a row-major [r, c] tensor of
// any dtype, named name.
func transpose2D(t Tensor, name string) Tensor {
	r, c := t.Shape[0], t.Shape[1]
	es := t.DType.Size()
	data := make([]byte, len(t.Data))
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			copy(data[(j*r+i)*es:(j*r+i+1)*es], t.Data[(i*c+j)*es:(i*c+j+1)*es])
		}
	}
	return Tensor{Name: name, DType: t.DType, Shape: []int{c, r}, Data: data}
}

// reshaped returns t with a new name and shape of the same element count.
func reshaped(t Tensor, name string, shape ...int) Tensor {
	return Tensor{Name: name, DType: t.DType, Shape: shape, Data: t.Data}
}
