package checkpoint

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	nst "github.com/nlpodyssey/safetensors"
)

// The safetensors files we write are read by an independent implementation,
// github.com/nlpodyssey/safetensors, with the same names, dtypes, shapes and bytes; and files it
// writes are read by ours. (We keep our own reader for the checks it lacks: duplicate names,
// bounded allocation, tensor order.)
func TestSafetensorsInterop(t *testing.T) {
	ts := []Tensor{
		FromFloat32("emb.weight", []int{3, 4}, []float32{1, -2, 3, 4.5, 0, 1e-3, -7, 8, 9, 10, 11, 12}, F32),
		FromFloat32("blocks.0.att.time_mix_k", []int{1, 1, 4}, []float32{0.1, 0.2, 0.3, 0.4}, F16),
		FromFloat32("head.weight", []int{2, 2}, []float32{1, 2, 3, 4}, BF16),
		FromFloat64("x", []int{2}, []float64{1e-300, -2}, F64),
	}
	var buf bytes.Buffer
	if err := WriteSafetensors(&buf, ts, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	st, err := nst.Deserialize(buf.Bytes())
	if err != nil {
		t.Fatalf("nlpodyssey/safetensors cannot read our file: %v", err)
	}
	if st.Len() != len(ts) {
		t.Fatalf("it sees %d tensors, want %d", st.Len(), len(ts))
	}
	for _, want := range ts {
		v, ok := st.Tensor(want.Name)
		if !ok {
			t.Fatalf("it has no %q", want.Name)
		}
		shape := make([]int, len(v.Shape()))
		for i, d := range v.Shape() {
			shape[i] = int(d)
		}
		if v.DType().String() != string(want.DType) || !slices.Equal(shape, want.Shape) || !bytes.Equal(v.Data(), want.Data) {
			t.Errorf("%s: it reads %s %v (%d bytes), we wrote %s %v (%d bytes)", want.Name, v.DType(), shape, len(v.Data()), want.DType, want.Shape, len(want.Data))
		}
	}

	// And the other way round.
	views := map[string]nst.TensorView{}
	for _, tt := range ts {
		dt, err := nst.ParseDType(string(tt.DType))
		if err != nil {
			t.Fatal(err)
		}
		shape := make([]uint64, len(tt.Shape))
		for i, d := range tt.Shape {
			shape[i] = uint64(d)
		}
		if views[tt.Name], err = nst.NewTensorView(dt, shape, tt.Data); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := nst.Serialize(views, map[string]string{"by": "nlpodyssey"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := ReadSafetensors(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatalf("we cannot read nlpodyssey/safetensors' file: %v", err)
	}
	for _, want := range ts {
		got, ok := f.Get(want.Name)
		if !ok || got.DType != want.DType || fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || !bytes.Equal(got.Data, want.Data) {
			t.Errorf("%s: read back as %+v", want.Name, got)
		}
	}
	if f.Meta["by"] != "nlpodyssey" {
		t.Errorf("metadata lost: %v", f.Meta)
	}
}
