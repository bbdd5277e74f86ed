package train

import (
	"io"
	"path/filepath"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// TestFineTuneX070: model.load of an RWKV-7 file in RWKV-LM's forms (.pth in fp32 and bf16, as
// the released files are, and safetensors) starts training from exactly its weights, and the
// run trains (the loss falls on the tiny corpus); a model section that does not describe the
// file is a config error naming the first tensor that differs.
func TestFineTuneX070(t *testing.T) {
	c := tinyConfigX070(t)
	c.Data.Val, c.Train.EvalEvery = "", 0
	c.Model.DimDecay, c.Model.DimAAA, c.Model.DimMV, c.Model.DimGate = 8, 4, 12, 16
	src := randomModelOf(t, c.Model.Config, model.Float32)
	ts := weights.Tensors(src, checkpoint.F32)
	dir := t.TempDir()
	write := func(name string, export func(io.Writer) error) string { return writeModelFile(t, dir, name, export) }
	testFineTuneFiles(t, c, src, []fineTuneFile{
		{"pth fp32", write("m32.pth", func(w io.Writer) error { return checkpoint.ExportX070PTH(w, ts, checkpoint.F32) }), 0},
		{"pth bf16", write("m16.pth", func(w io.Writer) error { return checkpoint.ExportX070PTH(w, ts, checkpoint.BF16) }), 1.0 / 256},
		{"safetensors", write("m.safetensors", func(w io.Writer) error { return checkpoint.ExportX070RWKV(w, ts, checkpoint.F32) }), 0},
	})
	path := filepath.Join(dir, "m.safetensors")
	noV0 := c.Model.Config
	noV0.NoV0Layer0 = true
	noV0Path := write("nov0.safetensors", func(w io.Writer) error {
		return checkpoint.WriteSafetensors(w, weights.Tensors(randomModelOf(t, noV0, model.Float32), checkpoint.F32), nil)
	})
	testLoadConfigErrors(t, c, path, []loadConfigError{
		{"file without v0", func(o *Config) { o.Model.Load = noV0Path }, `has no tensor "blocks.0.att.v1" (layer 0's unused v0/v1/v2: set model.no_v0_layer0: true)`},
		{"head size", func(o *Config) { o.Model.HeadSize = 32 }, `tensor "blocks.0.att.r_k" of shape [2 16] where the config needs [1 32]`},
		{"lora width", func(o *Config) { o.Model.DimDecay = 0 }, `tensor "blocks.0.att.w1" of shape [32 8] where the config needs [32 32]`},
		{"no v0", func(o *Config) { o.Model.NoV0Layer0 = true }, `has tensor "blocks.0.att.v1", which the config has no place for (layer 0's unused v0/v1/v2: set model.no_v0_layer0: false)`},
		{"arch", func(o *Config) { o.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32} },
			`holds an RWKV-7 (x070) model, model.arch is "x040"`},
	})
}
