package checkpoint

import (
	"math"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// tinyDims is a model small enough for every test.
var tinyDims = Dims{Arch: arch.X040, Vocab: 11, Embd: 4, FFN: 16, Layers: 2}

// tinyModel returns the RWKV-4 tensors of d, F32, with deterministic values
// that are exact in bf16 only by accident.
func tinyModel(d Dims) []Tensor {
	layout := d.Layout()
	out := make([]Tensor, len(layout))
	seed := uint32(1)
	for i, l := range layout {
		v := make([]float32, l.Size())
		for j := range v {
			seed = seed*1664525 + 1013904223
			v[j] = float32(int32(seed>>8)-1<<23) / float32(1<<23) * 3
		}
		out[i] = FromFloat32(l.Name, l.Shape, v, F32)
	}
	return out
}

// maxDiff compares two float tensors elementwise.
func maxDiff(t *testing.T, got, want Tensor) float64 {
	t.Helper()
	g, err := got.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	w, err := want.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	if len(g) != len(w) || !equalShape(got.Shape, want.Shape) {
		t.Fatalf("%s: shape %v, want %v", got.Name, got.Shape, want.Shape)
	}
	var m float64
	for i := range g {
		m = math.Max(m, math.Abs(g[i]-w[i]))
	}
	return m
}

// squares returns ts with each element squared: valid AdamW second moments
// (never negative).
func squares(ts []Tensor) []Tensor {
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		v, err := t.Float64s()
		if err != nil {
			panic(err)
		}
		for j := range v {
			v[j] *= v[j]
		}
		out[i] = FromFloat64(t.Name, t.Shape, v, t.DType)
	}
	return out
}
