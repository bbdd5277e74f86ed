package checkpoint

import (
	"fmt"
	"io"

	"github.com/rwkv-go/rwkv-go/arch"
)

// CheckX070 is Check for the RWKV-7 exports: ts must be exactly an x070
// model (RWKV-LM names; arch's x070 layout) in float dtypes, with or without
// layer 0's unused v0/v1/v2 (the returned Dims.V0Layer0 says which). It
// returns ts in RWKV-LM state_dict order. Another architecture's tensors are
// ErrTensors, an RWKV-7a/7b variant arch.ErrUnsupported.
func CheckX070(ts []Tensor) (Dims, []Tensor, error) {
	d, ordered, err := Check(ts)
	if err == nil && d.Arch.Resolve() != arch.X070 {
		err = fmt.Errorf("the tensors hold an %s model, not RWKV-7 (x070): %w", d.Arch.Title(), ErrTensors)
	}
	if err != nil {
		return d, nil, err
	}
	return d, ordered, nil
}

// x070ForRWKVLM checks ts, adds layer 0's v0/v1/v2 (zeros: RWKV-LM creates
// them and never reads them) when absent, and converts every tensor to dt,
// refusing values that are not finite after conversion.
func x070ForRWKVLM(ts []Tensor, dt DType) (Dims, []Tensor, error) {
	if err := exportDType(dt); err != nil {
		return Dims{}, nil, err
	}
	d, ordered, err := CheckX070(ts)
	if err != nil {
		return d, nil, err
	}
	if !d.V0Layer0 {
		byName := make(map[string]Tensor, len(ordered)+3)
		for _, t := range ordered {
			byName[t.Name] = t
		}
		full := d
		full.V0Layer0 = true
		ordered = ordered[:0:0]
		for _, w := range full.Layout() {
			t, ok := byName[w.Name]
			if !ok { // one of blocks.0.att.v0/v1/v2
				t = FromFloat32(w.Name, w.Shape, make([]float32, w.Size()), F32)
			}
			ordered = append(ordered, t)
		}
	}
	out, err := convertFinite(ordered, dt)
	return d, out, err
}

// ExportX070PTH writes an x070 model as RWKV-LM's torch.save writes its
// state_dict (what ChatRWKV, rwkv.cpp's and web-rwkv's converters read): RWKV-LM
// names and order, [1,1,C] vectors, layer 0's v0/v1/v2 included, every
// tensor in dt (BF16 like the released files, F16 or F32).
func ExportX070PTH(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export x070 pth", x070ForRWKVLM, WritePTH)
}

// ExportX070RWKV writes the same tensors as ExportX070PTH as a safetensors
// file (metadata format=pt).
func ExportX070RWKV(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export x070 rwkv", x070ForRWKVLM, writeRWKVLM)
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
