package checkpoint

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// ReadWeights reads model weights from any layout this package writes or
// imports and returns them with RWKV-LM names, in state_dict order, in the
// dtype they were stored in. path may be a PyTorch .pth (zip), an RWKV-LM,
// web-rwkv or Hugging Face safetensors file, an unquantized rwkv6 or rwkv7 GGUF file, a training checkpoint of Save,
// a directory of training checkpoints (the newest is read; a corrupt newest
// one is an error, never skipped), a Hugging Face directory as transformers
// (RWKV-4), the RWKV-5/6 remote-code models (RWKV/rwkv-5-world, RWKV/v6-Finch)
// or flash-linear-attention (RWKV-7, the fla-hub rwkv7 layout) write it (see ReadHFDir), or the index.json of a sharded Hugging Face
// checkpoint. The tensor set must be exactly one architecture's (Check): missing or extra
// tensors are errors, and so is any NaN or infinity, named by tensor.
func ReadWeights(path string) ([]Tensor, error) {
	ts, err := readAnyWeights(path)
	if err != nil {
		return nil, err
	}
	_, ordered, err := Check(ts)
	if err != nil && AdapterOnly(ts) {
		return nil, fmt.Errorf("weights %s: %s: %w", path, AdapterOnlyHint, err)
	}
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w", path, err)
	}
	for _, t := range ordered {
		if err := t.CheckFinite(); err != nil {
			return nil, fmt.Errorf("weights %s: %w: the file holds a diverged or damaged model", path, err)
		}
	}
	return ordered, nil
}

func readAnyWeights(path string) ([]Tensor, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return readWeightsDir(path)
	}
	if strings.HasSuffix(path, hfIndexSuffix) {
		return readSharded(path)
	}
	ts, err := readWeightsFile(path)
	if err != nil {
		return nil, err
	}
	return fromHFNames(path, ts)
}

// ResolveWeights says what ReadWeights reads for path. A directory holding
// Hugging Face weights (see ReadHFDir; this includes a training run's
// out_dir with its exported model.safetensors) is returned as it is. A
// directory of training checkpoints resolves to the newest one, whose header
// is checked: a corrupt newest checkpoint is an error naming it and the
// newest intact older one, never skipped. A directory with neither is an
// error saying what it should hold. Any other path is returned unchanged.
func ResolveWeights(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil || !fi.IsDir() {
		return path, nil // ReadWeights names the problem
	}
	if _, ok := hfWeightsFile(path); ok {
		return path, nil
	}
	paths, _, err := list(path)
	if err != nil {
		return "", fmt.Errorf("weights: %w", err)
	}
	if len(paths) == 0 {
		return "", noWeightsDir(path)
	}
	return Latest(path)
}

// noWeightsDir is the error for a directory without weights ReadWeights
// reads; it points to a checkpoints subdirectory (a training run's out_dir
// before its final export) when there is one with checkpoints in it.
func noWeightsDir(dir string) error {
	hint := ""
	if sub := filepath.Join(dir, "checkpoints"); sub != dir {
		if paths, _, err := list(sub); err == nil && len(paths) > 0 {
			hint = fmt.Sprintf("; its training checkpoints are in %s: pass that directory", sub)
		}
	}
	return fmt.Errorf("weights %s: a directory without %s or step-*.safetensors training checkpoints%s: %w",
		dir, strings.Join(hfWeightsFiles, ", "), hint, ErrTensors)
}

// readWeightsDir reads a Hugging Face directory or, failing that, the newest
// training checkpoint in dir.
func readWeightsDir(dir string) ([]Tensor, error) {
	if _, ok := hfWeightsFile(dir); ok {
		return ReadHFDir(dir)
	}
	paths, _, err := list(dir)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	if len(paths) == 0 {
		return nil, noWeightsDir(dir)
	}
	c, err := LoadLatest(dir)
	if err != nil {
		return nil, err
	}
	return c.Weights, nil
}

// readWeightsFile reads one weights file, names as stored: a .pth zip, a
// training checkpoint (its weights) or any other safetensors file; an rwkv6 or
// rwkv7 GGUF file (llama.cpp's) with RWKV-LM names (readGGUF).
func readWeightsFile(path string) ([]Tensor, error) {
	f, _, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
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
	if bytes.Equal(magic, []byte("GGUF")) {
		return readGGUF(path)
	}
	sf, err := OpenSafetensors(path)
	if err != nil {
		return nil, withOlderHint(path, fmt.Errorf("weights: %w", err))
	}
	if sf.Meta["format"] == FormatName {
		c, err := fromFile(sf)
		if err != nil {
			return nil, withOlderHint(path, fmt.Errorf("weights %s: %w", path, err))
		}
		return c.Weights, nil
	}
	return sf.Tensors, nil
}

// fromHFNames maps Hugging Face names to RWKV-LM names when the tensors use
// them: transformers' RWKV-4 and the RWKV-5/6 remote code's names (any name
// starts with "rwkv.") or FLA's rwkv7 names (model.embeddings.weight or a
// model.layers.N name; see X070FromFLA); and web-rwkv's RWKV-5.2/6 names
// (x05FromWebRWKV). It returns ts unchanged otherwise.
func fromHFNames(path string, ts []Tensor) ([]Tensor, error) {
	hf, fla := false, false
	for _, t := range ts {
		if strings.HasPrefix(t.Name, "rwkv.") {
			hf = true
		}
		if t.Name == "model.embeddings.weight" || strings.HasPrefix(t.Name, "model.layers.") {
			fla = true
		}
	}
	if fla && !hf {
		out, err := X070FromFLA(ts)
		if err != nil {
			return nil, fmt.Errorf("weights %s: %w", path, err)
		}
		return out, nil
	}
	if !hf {
		if web, x060 := isWebRWKV56(ts); web {
			return x05FromWebRWKV(ts, x060), nil
		}
		return ts, nil
	}
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		name, ok := RWKVName(t.Name)
		if !ok {
			return nil, fmt.Errorf("weights %s: tensor %q is not an RWKV-4/5/6 Hugging Face name: %w", path, t.Name, ErrTensors)
		}
		t.Name = name
		out[i] = t
	}
	return out, nil
}

// readGGUF reads an rwkv6 or rwkv7 GGUF file (unquantized: F32, F16 or BF16) as RWKV-LM
// tensors (X060FromGGUF6; X070FromGGUF7, without layer 0's dummy v0/v1/v2).
func readGGUF(path string) ([]Tensor, error) {
	f, err := OpenGGUF(path)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var ts []Tensor
	a, _ := f.Get("general.architecture")
	switch a {
	case GGUF6Arch:
		ts, err = X060FromGGUF6(f)
	case GGUF7Arch:
		ts, err = X070FromGGUF7(f)
	default:
		return nil, fmt.Errorf("weights %s: general.architecture %q: rwkv-go reads the %s and %s GGUF architectures: %w", path, a, GGUF6Arch, GGUF7Arch, ErrTensors)
	}
	if err != nil {
		return nil, fmt.Errorf("weights %s: %w (rwkv-go reads unquantized %v GGUF files)", path, err, a)
	}
	return ts, nil
}
