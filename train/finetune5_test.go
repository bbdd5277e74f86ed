package train

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// TestTrainX05FromScratch: an RWKV-5.2 and an RWKV-6 model trained from RWKV-LM's init on the
// tiny corpus lower their validation loss (30 steps of RWKV-LM's v5 recipe).
func TestTrainX05FromScratch(t *testing.T) {
	for _, shape := range []model.Config{tinyX052, tinyX060} {
		t.Run(string(shape.Arch), func(t *testing.T) {
			c := tinyConfigX05(t, shape)
			c.Train.EvalEvery = 0
			tr := newTrainer(t, c, Options{})
			before, err := tr.Validate()
			if err != nil {
				t.Fatal(err)
			}
			if err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			after, err := tr.Validate()
			if err != nil {
				t.Fatal(err)
			}
			h := tr.History()
			t.Logf("%s: validation loss %.4f -> %.4f, training loss %.4f (step 1) -> %.4f (step %d)",
				shape.Arch, before.Loss, after.Loss, h[0].Loss, h[len(h)-1].Loss, len(h))
			if !(after.Loss < before.Loss-0.5) {
				t.Errorf("validation loss %v -> %v: training did not lower it by 0.5", before.Loss, after.Loss)
			}
		})
	}
}

// TestFineTuneX05: model.load of an RWKV-5.2 or RWKV-6 file in RWKV-LM's forms (.pth as
// torch.save writes a state dict, in fp32 and in bf16 as the released files are, and
// safetensors) starts training from exactly its weights, and the run trains (the loss falls on
// the tiny corpus); a model section that does not describe the file is a config error naming
// the first tensor that differs.
func TestFineTuneX05(t *testing.T) {
	for _, shape := range []model.Config{tinyX052, tinyX060} {
		t.Run(string(shape.Arch), func(t *testing.T) { testFineTuneX05(t, shape) })
	}
}

func testFineTuneX05(t *testing.T, shape model.Config) {
	c := tinyConfigX05(t, shape)
	c.Data.Val, c.Train.EvalEvery = "", 0
	src := randomModelOf(t, c.Model.Config, model.Float32)
	ts := weights.Tensors(src, checkpoint.F32)
	dir := t.TempDir()
	write := func(name string, export func(io.Writer) error) string { return writeModelFile(t, dir, name, export) }
	converted := func(dt checkpoint.DType) []checkpoint.Tensor {
		out := make([]checkpoint.Tensor, len(ts))
		for i, x := range ts {
			var err error
			if out[i], err = x.Convert(dt); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	testFineTuneFiles(t, c, src, []fineTuneFile{
		{"pth fp32", write("m32.pth", func(w io.Writer) error { return checkpoint.WritePTH(w, ts) }), 0},
		{"pth bf16", write("m16.pth", func(w io.Writer) error { return checkpoint.WritePTH(w, converted(checkpoint.BF16)) }), 1.0 / 256},
		{"safetensors", write("m.safetensors", func(w io.Writer) error { return checkpoint.WriteSafetensors(w, ts, nil) }), 0},
	})
	path := filepath.Join(dir, "m.safetensors")
	headed := "blocks.0.att.time_faaaa" // x060's first [H,N] tensor; x052's is its time_decay
	if shape.Arch == tinyX052.Arch {
		headed = "blocks.0.att.time_decay"
	}
	cases := []loadConfigError{
		{"head size", func(o *Config) { o.Model.HeadSize = 32 }, `tensor "` + headed + `" of shape [2 16] where the config needs [1 32]`},
		{"arch x040", func(o *Config) { o.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32} },
			`holds an ` + shape.Arch.Title() + ` model, model.arch is "x040"`},
	}
	if shape.Arch == tinyX060.Arch {
		cases = append(cases,
			loadConfigError{"mix lora width", func(o *Config) { o.Model.DimMix = 0 }, `tensor "blocks.0.att.time_maa_w1" of shape [32 40] where the config needs [32 160]`},
			loadConfigError{"x052", func(o *Config) { o.Model.Arch, o.Model.DimMix, o.Model.DimDecay = tinyX052.Arch, 0, 0 }, `holds an RWKV-6 (x060) model, model.arch is "x052"`})
	}
	testLoadConfigErrors(t, c, path, cases)
}

// TestModelSectionFromCheckpointX060: an x060 run's checkpoints store its model section with
// the x060 keys; resuming with a config that says otherwise (another head size and token-shift
// LoRA width) builds the checkpoint's model, warning for each contradicting key and for no
// other.
func TestModelSectionFromCheckpointX060(t *testing.T) {
	c := quickConfigIn(tinyConfigX05(t, tinyX060), 1)
	c.Data.Val, c.Train.EvalEvery = "", 0
	first, got := resumeWithOtherModel(t, c, func(o *Config) { o.Model.HeadSize, o.Model.DimMix = 32, 0 },
		[]string{"model.head_size = 32 in the config but 16", "model.d_mix_lora = 32 in the config but 8"}, "model.d_decay_lora")
	if got != first {
		t.Fatalf("resumed model %+v, want the checkpoint's %+v", got, first)
	}
}
