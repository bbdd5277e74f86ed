package model

import (
	"fmt"
	"slices"

	"github.com/rwkv-go/rwkv-go/arch"
	"gorgonia.org/tensor"
)

// DType is a model's element type, Float32 or Float64. It is Gorgonia's tensor.Dtype under a
// model name, so that code outside model never imports Gorgonia.
type DType = tensor.Dtype

// The dtypes a Model can have.
var (
	Float32 DType = tensor.Float32
	Float64 DType = tensor.Float64
)

// Param is one weight tensor. Shape is RWKV-LM's (time_mix_* are [1,1,C]); Value holds the same
// memory in the shape the graph uses (time_mix_* as (C)).
type Param struct {
	Name  string
	Shape []int
	Value *tensor.Dense
}

// Len is the number of elements.
func (p *Param) Len() int { return p.Value.Shape().TotalSize() }

// Model is the set of parameters (RWKV-4, 5.2, 6 or 7, by Config.Arch) of one Config in one
// dtype (Float32 or Float64), in RWKV-LM state-dict order.
type Model struct {
	Config Config
	DType  DType
	Params []*Param
	index  map[string]*Param
	peft   *peftState // adapters (peft.go); nil: none
}

// ParamSpec is the name and RWKV-LM shape of a parameter.
type ParamSpec = arch.Spec

// Specs lists every parameter of cfg with RWKV-LM's names and shapes, in state-dict order
// (arch's layout of cfg.Dims(); RWKV-4: 6 + 18*n_layer tensors; RWKV-7: 6 + 33*n_layer, 3
// fewer with no_v0_layer0).
func Specs(cfg Config) []ParamSpec { return cfg.Dims().Layout() }

// graphShape drops RWKV-LM's leading singleton dims of the time_mix vectors.
func graphShape(shape []int) []int {
	for len(shape) > 1 && shape[0] == 1 {
		shape = shape[1:]
	}
	return shape
}

// New allocates a zero model of cfg in dtype (Float32 or Float64).
func New(cfg Config, dtype DType) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if dtype != tensor.Float32 && dtype != tensor.Float64 {
		return nil, fmt.Errorf("model: dtype %v not supported; use float32 or float64", dtype)
	}
	m := &Model{Config: cfg, DType: dtype, index: map[string]*Param{}}
	for _, sp := range Specs(cfg) {
		gs := graphShape(sp.Shape)
		p := &Param{Name: sp.Name, Shape: slices.Clone(sp.Shape), Value: tensor.New(tensor.Of(dtype), tensor.WithShape(gs...))}
		m.Params = append(m.Params, p)
		m.index[sp.Name] = p
	}
	return m, nil
}

// Param returns the named parameter, or nil.
func (m *Model) Param(name string) *Param { return m.index[name] }

// NumParams is the total number of scalar weights.
func (m *Model) NumParams() int {
	n := 0
	for _, p := range m.Params {
		n += p.Len()
	}
	return n
}

// F32 is the parameter's memory, row-major in Shape, when the model is Float32, and nil when it
// is not. Writes change the weight.
func (p *Param) F32() []float32 { d, _ := p.Value.Data().([]float32); return d }

// F64 is the parameter's memory, row-major in Shape, when the model is Float64, and nil when it
// is not. Writes change the weight.
func (p *Param) F64() []float64 { d, _ := p.Value.Data().([]float64); return d }

// Float64s copies a parameter's values out as float64, whatever the model dtype.
func (p *Param) Float64s() []float64 {
	switch d := p.Value.Data().(type) {
	case []float64:
		return slices.Clone(d)
	case []float32:
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	}
	panic("model: parameter of unsupported dtype")
}

// SetFloat64s overwrites a parameter from float64 values, converting to the model dtype.
func (p *Param) SetFloat64s(v []float64) error {
	if len(v) != p.Len() {
		return fmt.Errorf("model: %s: %d values for a tensor of %d (shape %v)", p.Name, len(v), p.Len(), p.Shape)
	}
	switch d := p.Value.Data().(type) {
	case []float64:
		copy(d, v)
	case []float32:
		for i, x := range v {
			d[i] = float32(x)
		}
	}
	return nil
}
