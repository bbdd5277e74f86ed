package checkpoint

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// ReadWeights reads RWKV-4 weights from any layout this package writes or
// imports and returns them with RWKV-LM names, in state_dict order, in the
// dtype they were stored in. path may be a PyTorch .pth (zip), an RWKV-LM,
// web-rwkv or Hugging Face safetensors file, a training checkpoint of Save,
// or a Hugging Face directory holding model.safetensors. The tensor set must
// be exactly RWKV-4's: missing or extra tensors are errors.
func ReadWeights(path string) ([]Tensor, error) {
	ts, err := readAnyWeights(path)
	if err != nil {
		return nil, err
	}
	_, ordered, err := CheckRWKV4(ts)
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	return ordered, nil
}

func readAnyWeights(path string) ([]Tensor, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		path = filepath.Join(path, "model.safetensors")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	magic := make([]byte, 4)
	_, err = io.ReadFull(f, magic)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("weights %s: too short: %w", path, ErrMalformed)
	}
	if bytes.Equal(magic, []byte("PK\x03\x04")) {
		return ReadPTH(path)
	}
	sf, err := OpenSafetensors(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if sf.Meta["format"] == FormatName {
		c, err := fromFile(sf)
		if err != nil {
			return nil, fmt.Errorf("weights %s: %w", path, err)
		}
		return c.Weights, nil
	}
	hf := false
	for _, t := range sf.Tensors {
		if strings.HasPrefix(t.Name, "rwkv.") {
			hf = true
		}
	}
	if !hf {
		return sf.Tensors, nil
	}
	out := make([]Tensor, len(sf.Tensors))
	for i, t := range sf.Tensors {
		name, ok := RWKVName(t.Name)
		if !ok {
			return nil, fmt.Errorf("weights %s: tensor %q is not an RWKV-4 Hugging Face name: %w", path, t.Name, ErrTensors)
		}
		t.Name = name
		out[i] = t
	}
	return out, nil
}
