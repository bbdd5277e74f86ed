// Package weights moves a model's parameters between model.Model and checkpoint's named tensors:
// Load reads a weights file or directory into a model, Tensors and Set copy the other ways. It is
// the one place where model and checkpoint meet, small enough that rwkv-eval links it without the
// trainer and the optimizer.
package weights

import (
	"fmt"
	"slices"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// Tensors returns the model's weights as named tensors in RWKV-LM names, shapes and state-dict
// order, encoded as dt.
func Tensors(m *model.Model, dt checkpoint.DType) []checkpoint.Tensor {
	out := make([]checkpoint.Tensor, 0, len(m.Params))
	for _, p := range m.Params {
		if d := p.F32(); d != nil {
			out = append(out, checkpoint.FromFloat32(p.Name, p.Shape, d, dt))
		} else {
			out = append(out, checkpoint.FromFloat64(p.Name, p.Shape, p.F64(), dt))
		}
	}
	return out
}

// Set copies named tensors (any float dtype) into the model. Every parameter must be present
// with its RWKV-LM shape; extra tensors are an error too.
func Set(m *model.Model, ts []checkpoint.Tensor) error {
	seen := map[string]bool{}
	for _, t := range ts {
		p := m.Param(t.Name)
		if p == nil {
			return fmt.Errorf("tensor %q is not a parameter of an %s %v model", t.Name, m.Config.Dims().Arch.Title(), m.Config)
		}
		if !slices.Equal(t.Shape, p.Shape) {
			return fmt.Errorf("tensor %q has shape %v, the model %v needs %v", t.Name, t.Shape, m.Config, p.Shape)
		}
		v, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
		if err := p.SetFloat64s(v); err != nil {
			return err
		}
		seen[t.Name] = true
	}
	for _, p := range m.Params {
		if !seen[p.Name] {
			return fmt.Errorf("tensor %q is missing", p.Name)
		}
	}
	return nil
}

// Load reads a weights file in any format checkpoint.ReadWeights accepts (RWKV-LM .pth,
// safetensors in RWKV-LM or Hugging Face names, a training checkpoint, an hf directory), infers
// the architecture and shape from its tensors and returns the model in dtype. ctxLen is not
// stored in weights files and is taken from the caller. RWKV-4, 5.2, 6 and 7 files load; a file of
// an architecture outside arch.Supported is an arch.ErrUnsupported error.
func Load(path string, ctxLen int, dtype model.DType) (*model.Model, error) {
	ts, err := checkpoint.ReadWeights(path)
	if err != nil {
		return nil, err
	}
	dims, ordered, err := checkpoint.Check(ts)
	if err == nil {
		err = dims.Arch.CheckSupported()
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, err := model.New(model.ConfigOf(dims, ctxLen), dtype)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := Set(m, ordered); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}
