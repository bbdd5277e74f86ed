package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// hfWeightsFiles are the weights files of a Hugging Face directory, in the
// order transformers' from_pretrained looks for them.
var hfWeightsFiles = []string{"model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"}

const (
	hfIndexSuffix = ".index.json"
	hfConfigFile  = "config.json"
	// maxJSON bounds config.json and index.json, which are a few KB.
	maxJSON = 64 << 20
)

// hfWeightsFile returns the first of hfWeightsFiles present in dir.
func hfWeightsFile(dir string) (string, bool) {
	for _, name := range hfWeightsFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			return name, true
		}
	}
	return "", false
}

// ReadHFDir reads a Hugging Face RwkvForCausalLM directory as transformers
// writes it, an Rwkv5ForCausalLM or Rwkv6ForCausalLM directory of the RWKV-5/6
// remote-code models (RWKV/rwkv-5-world-*, RWKV/v6-Finch-*-HF; ExportHF56), or
// an fla-hub RWKV7ForCausalLM directory as flash-linear-attention
// writes it (FLA names are mapped back with X070FromFLA): model.safetensors, a sharded model.safetensors.index.json,
// pytorch_model.bin (a torch zip pickle, read without running code) or a
// sharded pytorch_model.bin.index.json, looked for in that order, as
// from_pretrained does. The tensors are returned with RWKV-LM names. When
// config.json is present its sizes must match the tensors: a mismatch is an
// error naming the key and the tensor.
func ReadHFDir(dir string) ([]Tensor, error) {
	name, ok := hfWeightsFile(dir)
	if !ok {
		return nil, fmt.Errorf("weights %s: no %s in the directory: %w", dir, strings.Join(hfWeightsFiles, ", "), ErrTensors)
	}
	path := filepath.Join(dir, name)
	if strings.HasSuffix(name, hfIndexSuffix) {
		return readSharded(path) // checks config.json
	}
	ts, err := readWeightsFile(path)
	if err == nil {
		ts, err = fromHFNames(path, ts)
	}
	if err != nil {
		return nil, err
	}
	if err := checkDirConfig(dir, ts); err != nil {
		return nil, err
	}
	return ts, nil
}

// checkDirConfig checks dir/config.json against ts (RWKV-LM names): as
// transformers' RwkvConfig for RWKV-4 tensors, as the RWKV-5/6 remote code's
// Rwkv5Config/Rwkv6Config for RWKV-5.2/RWKV-6 ones, as FLA's RWKV7Config for
// RWKV-7 ones.
func checkDirConfig(dir string, ts []Tensor) error {
	if d, _, err := Check(ts); err == nil {
		switch {
		case d.Arch.Resolve() == arch.X070:
			return checkHF7Config(dir, ts)
		case isX05(d.Arch):
			return checkHF56Config(dir, ts)
		}
	}
	return checkHFConfig(dir, ts)
}

// hfIndex is a sharded checkpoint's index.json.
type hfIndex struct {
	WeightMap map[string]string `json:"weight_map"`
}

// readSharded reads the shards an index.json names (safetensors or torch
// zip files in the same directory). Every tensor of every shard must be in
// the weight map under that shard, and every weight map entry must be
// found in its shard. It checks config.json next to the index when present.
func readSharded(indexPath string) ([]Tensor, error) {
	b, err := fsutil.ReadFile(indexPath, maxJSON)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	var ix hfIndex
	if err := json.Unmarshal(b, &ix); err != nil {
		return nil, fmt.Errorf("weights %s: not a sharded checkpoint index: %v: %w", indexPath, err, ErrMalformed)
	}
	if len(ix.WeightMap) == 0 {
		return nil, fmt.Errorf("weights %s: no weight_map entries: %w", indexPath, ErrMalformed)
	}
	dir := filepath.Dir(indexPath)
	byShard := map[string][]string{}
	for tensor, shard := range ix.WeightMap {
		if shard == "" || shard != filepath.Base(shard) || shard == "." || shard == ".." || strings.ContainsAny(shard, `/\`) {
			return nil, fmt.Errorf("weights %s: weight_map gives tensor %q the shard %q, not a file name in the index's directory: %w",
				indexPath, tensor, shard, ErrMalformed)
		}
		byShard[shard] = append(byShard[shard], tensor)
	}
	shards := make([]string, 0, len(byShard))
	for s := range byShard {
		shards = append(shards, s)
		slices.Sort(byShard[s])
	}
	slices.Sort(shards)
	// Every shard must exist before any is read, so a missing one is
	// reported at once and by name.
	for _, s := range shards {
		if _, err := os.Stat(filepath.Join(dir, s)); err != nil {
			what := err.Error()
			if errors.Is(err, fs.ErrNotExist) {
				what = "no such file"
			}
			return nil, fmt.Errorf("weights %s: shard %s, which holds %d tensors (%s ...), is missing: %s",
				indexPath, filepath.Join(dir, s), len(byShard[s]), byShard[s][0], what)
		}
	}
	var out []Tensor
	for _, s := range shards {
		path := filepath.Join(dir, s)
		ts, err := readWeightsFile(path)
		if err != nil {
			return nil, err
		}
		inShard := make(map[string]bool, len(ts))
		for _, t := range ts {
			want, listed := ix.WeightMap[t.Name]
			switch {
			case !listed:
				return nil, fmt.Errorf("weights %s: tensor %q is not in the weight_map of %s: %w", path, t.Name, indexPath, ErrTensors)
			case want != s:
				return nil, fmt.Errorf("weights %s: tensor %q is in this shard, but the weight_map of %s puts it in %s: %w",
					path, t.Name, indexPath, want, ErrTensors)
			}
			inShard[t.Name] = true
		}
		for _, name := range byShard[s] {
			if !inShard[name] {
				return nil, fmt.Errorf("weights %s: tensor %q, which the weight_map of %s puts in this shard, is not in it: %w",
					path, name, indexPath, ErrTensors)
			}
		}
		out = append(out, ts...)
	}
	out, err = fromHFNames(indexPath, out)
	if err != nil {
		return nil, err
	}
	if err := checkDirConfig(dir, out); err != nil {
		return nil, err
	}
	return out, nil
}

// hfConfig is a directory's config.json as raw JSON values by key.
type hfConfig struct {
	path string
	raw  map[string]json.RawMessage
}

// readHFConfig reads dir/config.json for the per-architecture checks; it returns nil, nil
// when there is no such file.
func readHFConfig(dir string) (*hfConfig, error) {
	path := filepath.Join(dir, hfConfigFile)
	if _, err := os.Lstat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	b, err := fsutil.ReadFile(path, maxJSON)
	if err != nil {
		return nil, fmt.Errorf("weights: %w", err)
	}
	return parseHFConfig(path, b)
}

// lookup returns key's value, nil when it is absent or null.
func (c *hfConfig) lookup(key string) json.RawMessage {
	v, ok := c.raw[key]
	if !ok || string(bytes.TrimSpace(v)) == "null" {
		return nil
	}
	return bytes.TrimSpace(v)
}

// size returns key's value as a size and whether it is set (not absent, not null).
func (c *hfConfig) size(key string) (int, bool, error) {
	v := c.lookup(key)
	if v == nil {
		return 0, false, nil
	}
	var n int
	if err := json.Unmarshal(v, &n); err != nil || n < 0 {
		return 0, false, fmt.Errorf("weights %s: %s is %s, not a size: %w", c.path, key, v, ErrMalformed)
	}
	return n, true, nil
}

// checkHFConfig checks the sizes in dir/config.json, when the file exists,
// against the tensors (RWKV-LM names). Keys that are absent are not
// checked, except that an absent or null attention_hidden_size means
// hidden_size and an absent or null intermediate_size means 4×hidden_size,
// as in transformers' RwkvConfig.
func checkHFConfig(dir string, ts []Tensor) error {
	conf, err := readHFConfig(dir)
	if conf == nil || err != nil {
		return err
	}
	path := conf.path
	if mt, ok := conf.raw["model_type"]; ok {
		var s string
		if json.Unmarshal(mt, &s) != nil || s != "rwkv" {
			return fmt.Errorf("weights %s: model_type %s, but the tensors hold an RWKV-4 model (model_type \"rwkv\"): %w", path, bytes.TrimSpace(mt), ErrTensors)
		}
	}
	d, _, err := CheckRWKV4(ts)
	if err != nil {
		return fmt.Errorf("weights %s: %w", dir, err)
	}
	hidden, hiddenSet, err := conf.size("hidden_size")
	if err != nil {
		return err
	}
	checks := []struct {
		key    string
		tensor string // RWKV-LM name of the tensor that gives the size
		dim    int
		got    int
	}{
		{"vocab_size", "emb.weight", 0, d.Vocab},
		{"hidden_size", "emb.weight", 1, d.Embd},
		{"attention_hidden_size", "blocks.0.att.key.weight", 0, d.Embd},
		{"intermediate_size", "blocks.0.ffn.key.weight", 0, d.FFN},
	}
	for _, c := range checks {
		want, set, err := conf.size(c.key)
		if err != nil {
			return err
		}
		if !set && hiddenSet && c.key == "attention_hidden_size" {
			want, set = hidden, true
		}
		if !set && hiddenSet && c.key == "intermediate_size" {
			want, set = 4*hidden, true
		}
		if set && want != c.got {
			shape := d.Shape(c.tensor)
			return fmt.Errorf("weights %s: %s is %d, but tensor %s has shape %v (dimension %d is %d): %w",
				path, c.key, want, HFName(c.tensor), shape, c.dim, c.got, ErrTensors)
		}
	}
	layers, set, err := conf.size("num_hidden_layers")
	if err != nil {
		return err
	}
	if set && layers != d.Layers {
		detail := fmt.Sprintf("tensor %s is missing (the tensors hold %d blocks)", HFName(fmt.Sprintf("blocks.%d.ln1.weight", d.Layers)), d.Layers)
		if layers < d.Layers {
			detail = fmt.Sprintf("the tensors hold %d blocks, up to %s", d.Layers, HFName(fmt.Sprintf("blocks.%d.ln1.weight", d.Layers-1)))
		}
		return fmt.Errorf("weights %s: num_hidden_layers is %d, but %s: %w", path, layers, detail, ErrTensors)
	}
	return nil
}
