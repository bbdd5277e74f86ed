package checkpoint

import (
	"fmt"
	"io"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
)

// CheckX05 is Check for the RWKV-5.2 and RWKV-6 exports: ts must be exactly an x052 or an
// x060 model (RWKV-LM names; arch's layouts) in float dtypes. It returns ts in RWKV-LM
// state_dict order. Another architecture's tensors are ErrTensors; RWKV-5.0/5.1 tensors
// are an arch.ErrUnsupported error naming the version (arch.Infer).
func CheckX05(ts []Tensor) (Dims, []Tensor, error) {
	d, ordered, err := Check(ts)
	if err == nil && !isX05(d.Arch) {
		err = fmt.Errorf("the tensors hold an %s model, not RWKV-5.2 (x052) or RWKV-6 (x060): %w", d.Arch.Title(), ErrTensors)
	}
	if err != nil {
		return d, nil, err
	}
	return d, ordered, nil
}

// isX05 reports whether a is x052 or x060, the two architectures of RWKV-LM's RWKV-v5
// directory that share the 5/6 exports.
func isX05(a arch.Arch) bool { a = a.Resolve(); return a == arch.X052 || a == arch.X060 }

// x05ForRWKVLM checks ts as an x052/x060 model and converts every tensor to dt in RWKV-LM
// order, refusing values that are not finite after conversion.
func x05ForRWKVLM(ts []Tensor, dt DType) (Dims, []Tensor, error) {
	if err := exportDType(dt); err != nil {
		return Dims{}, nil, err
	}
	d, ordered, err := CheckX05(ts)
	if err != nil {
		return d, nil, err
	}
	out, err := convertFinite(ordered, dt)
	return d, out, err
}

// ExportX05PTH writes an x052 or x060 model as RWKV-LM's torch.save writes its state_dict
// (what ChatRWKV, RWKV-Runner, rwkv.cpp's and web-rwkv's converters read): RWKV-LM names
// and order, [1,1,C] vectors and the [H,N] time_decay (x052) and time_faaaa kept, every
// tensor in dt (BF16 like the released files, F16 or F32).
func ExportX05PTH(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export pth", x05ForRWKVLM, WritePTH)
}

// ExportX05RWKV writes the same tensors as ExportX05PTH as a safetensors file (metadata
// format=pt).
func ExportX05RWKV(w io.Writer, ts []Tensor, dt DType) error {
	return exportWith(w, ts, dt, "export rwkv", x05ForRWKVLM, writeRWKVLM)
}

// web-rwkv's .st layout of x052 and x060 (NEXT-ARCH §5.5; its convert_safetensors.py):
// RWKV-LM's tensors with time_faaaa renamed time_first and time_maa renamed time_mix
// (x060: att.time_maa_x → att.time_mix_x, att.time_maa_w1 → att.time_mix_w1,
// ffn.time_maa_k → ffn.time_mix_k), the last two dimensions of time_mix_w1, time_mix_w2,
// time_decay_w1 and time_decay_w2 transposed (x060: [5M,C], [5,C,M], [W,C], [C,W]), names
// lower-case (RWKV-LM's already are), every tensor F16.

// webRWKVTransposed reports whether web-rwkv's converter transposes the tensor called name
// (a web-rwkv name) in an x052/x060 model.
func webRWKVTransposed(name string) bool {
	for _, s := range []string{".att.time_mix_w1", ".att.time_mix_w2", ".att.time_decay_w1", ".att.time_decay_w2"} {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// transposeLast2 swaps the last two dimensions of a tensor of rank 2 or more (any dtype).
func transposeLast2(t Tensor, name string) Tensor {
	n := len(t.Shape)
	r, c := t.Shape[n-2], t.Shape[n-1]
	es := t.DType.Size()
	mat := r * c * es
	data := make([]byte, len(t.Data))
	for b := 0; b < len(t.Data); b += mat {
		for i := 0; i < r; i++ {
			for j := 0; j < c; j++ {
				copy(data[b+(j*r+i)*es:b+(j*r+i+1)*es], t.Data[b+(i*c+j)*es:b+(i*c+j+1)*es])
			}
		}
	}
	shape := append(append([]int{}, t.Shape[:n-2]...), c, r)
	return Tensor{Name: name, DType: t.DType, Shape: shape, Data: data}
}

// x05ToWebRWKV renames and transposes checked x052/x060 tensors (RWKV-LM order) to
// web-rwkv's layout; dtypes are kept.
func x05ToWebRWKV(ordered []Tensor) []Tensor {
	out := make([]Tensor, len(ordered))
	for i, t := range ordered {
		name := strings.ReplaceAll(strings.ReplaceAll(t.Name, "time_faaaa", "time_first"), "time_maa", "time_mix")
		if webRWKVTransposed(name) {
			out[i] = transposeLast2(t, name)
		} else {
			out[i] = reshaped(t, name, t.Shape...)
		}
	}
	return out
}

// isWebRWKV56 reports whether ts carry web-rwkv's x052/x060 names: an att.time_first with an
// att.ln_x (RWKV-4's web-rwkv files have time_first and no ln_x; RWKV-LM's x052/x060 have
// ln_x and time_faaaa), and whether they are x060's (an att.time_mix_w1).
func isWebRWKV56(ts []Tensor) (web, x060 bool) {
	first, lnx := false, false
	for _, t := range ts {
		m := rwkvBlockName.FindStringSubmatch(t.Name)
		if m == nil {
			continue
		}
		switch m[2] {
		case "att.time_first":
			first = true
		case "att.ln_x.weight":
			lnx = true
		case "att.time_mix_w1":
			x060 = true
		}
	}
	return first && lnx, first && lnx && x060
}

// x05FromWebRWKV maps web-rwkv's x052/x060 tensors back to RWKV-LM names and shapes
// (x05ToWebRWKV's inverse); the result is not checked.
func x05FromWebRWKV(ts []Tensor, x060 bool) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		name := strings.ReplaceAll(t.Name, "time_first", "time_faaaa")
		if x060 {
			name = strings.ReplaceAll(name, "time_mix", "time_maa")
		}
		if webRWKVTransposed(t.Name) && len(t.Shape) >= 2 {
			out[i] = transposeLast2(t, name)
		} else {
			out[i] = reshaped(t, name, t.Shape...)
		}
	}
	return out
}
