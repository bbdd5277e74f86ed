package train

import (
	"context"
	"fmt"
	"io"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// peftBase writes a tiny RWKV-4 base model (RWKV-LM init plus noise, so that no target is
// zero) and returns a config fine-tuning it with mode.
func peftBase(t *testing.T, mode string) Config {
	t.Helper()
	return peftBaseOf(t, mode, model.Config{})
}

// peftBaseOf is peftBase of a model shape (zero: tinyConfig's RWKV-4).
func peftBaseOf(t *testing.T, mode string, shape model.Config) Config {
	t.Helper()
	c := tinyConfig(t)
	if shape.Layers > 0 {
		c.Model.Config = shape
	}
	m, err := model.New(c.Model.Config, model.Float32)
	if err != nil {
		t.Fatal(err)
	}
	m.Init(7, 1e-3)
	for i, p := range m.Params {
		d := p.F32()
		for j := range d {
			d[j] += 0.02 * float32(math.Sin(float64(i*131+j)))
		}
	}
	path := filepath.Join(t.TempDir(), "base.safetensors")
	ts := weights.Tensors(m, checkpoint.F32)
	export := checkpoint.ExportRWKV
	switch c.Model.Arch.Resolve() {
	case arch.X070:
		export = checkpoint.ExportX070RWKV
	case arch.X052, arch.X060: // RWKV-LM names, in the layout's order
		export = func(w io.Writer, ts []checkpoint.Tensor, _ checkpoint.DType) error {
			return checkpoint.WriteSafetensors(w, ts, nil)
		}
	}
	if err := checkpoint.WriteFileAtomic(path, func(w io.Writer) error { return export(w, ts, checkpoint.F32) }); err != nil {
		t.Fatal(err)
	}
	c.Model.Load = path
	c.PEFT.Mode, c.PEFT.LoRAR, c.PEFT.LoRAAlpha = mode, 4, 8
	if mode == PEFTLoRA {
		c.PEFT.LoRADropout = 0.1 // resume must redraw the same masks
	}
	c.Train.MaxSteps, c.Train.MicroBsz, c.Train.EvalEvery, c.Train.EvalTokens = 6, 2, 0, 512
	c.Optim.LRInit, c.Optim.LRFinal = 1e-2, 1e-2
	if mode == PEFTState {
		c.Optim.LRInit, c.Optim.LRFinal = 1, 0.01
	}
	return c
}

func baseBytes(m *model.Model) map[string][]float32 {
	out := map[string][]float32{}
	for _, p := range m.Params {
		if m.Frozen(p.Name) {
			out[p.Name] = append([]float32(nil), p.F32()...)
		}
	}
	return out
}

// TestPEFTTrainsOnlyAdapters: for LoRA (with dropout), PiSSA and state tuning, training moves
// only the adapters (and train_parts), leaves every frozen base tensor bit-for-bit unchanged,
// keeps no optimiser moments for the base, and a run resumed from a checkpoint at step 3 gives
// bitwise the losses and trained tensors of the uninterrupted run.
func TestPEFTTrainsOnlyAdapters(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		shape model.Config
		chunk int // train.chunk_len
	}{{PEFTLoRA, model.Config{}, 0}, {PEFTPiSSA, model.Config{}, 0}, {PEFTState, model.Config{}, 0},
		{PEFTLoRA, model.Config{}, 16}, {PEFTLoRA, x070Bytes, 0}, {PEFTState, x070Bytes, 0},
		{PEFTLoRA, bytesOf(tinyX052), 0}, {PEFTState, bytesOf(tinyX052), 0},
		{PEFTLoRA, bytesOf(tinyX060), 0}, {PEFTState, bytesOf(tinyX060), 0}, {PEFTPiSSA, bytesOf(tinyX060), 0}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s-%s-chunk%d", mode, tc.shape.Arch.Resolve(), tc.chunk), func(t *testing.T) {
			c := peftBaseOf(t, mode, tc.shape)
			c.Train.ChunkLen = tc.chunk
			ref := newTrainer(t, c, Options{})
			frozen := baseBytes(ref.Model)
			if len(frozen) == 0 || len(ref.params) == 0 || len(ref.params)+len(frozen) != len(ref.Model.Params) {
				t.Fatalf("%d trained, %d frozen of %d tensors", len(ref.params), len(frozen), len(ref.Model.Params))
			}
			for _, p := range ref.params {
				ok := model.IsAdapter(p.Name) || (mode != PEFTState && (strings.Contains(p.Name, "time") || strings.Contains(p.Name, "ln")))
				if !ok || (mode == PEFTState && !model.IsAdapterState(p.Name)) {
					t.Errorf("%s is trained in mode %s", p.Name, mode)
				}
			}
			v0, err := ref.Validate()
			if err != nil {
				t.Fatal(err)
			}
			before := map[string][]float32{}
			for _, p := range ref.params {
				before[p.Name] = append([]float32(nil), p.Data...)
			}
			if err := ref.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			for name, want := range frozen {
				for j, v := range ref.Model.Param(name).F32() {
					if math.Float32bits(v) != math.Float32bits(want[j]) {
						t.Fatalf("frozen %s[%d] changed: %v -> %v", name, j, want[j], v)
					}
				}
			}
			moved := 0
			for _, p := range ref.params {
				for j, v := range p.Data {
					if v != before[p.Name][j] {
						moved++
						break
					}
				}
			}
			if moved == 0 {
				t.Fatal("no trained tensor moved")
			}
			h := ref.History()
			if v1, _ := ref.LastValidation(); !(v1.Loss < v0.Loss) {
				t.Errorf("validation loss %v -> %v: did not fall", v0.Loss, v1.Loss)
			}
			if _, err := checkpoint.ReadAdapter(model.Specs(ref.Model.Config), checkpoint.AdapterRules{}, ref.adapterFile()); err != nil {
				t.Errorf("adapter file: %v", err)
			}

			c2 := c
			c2.OutDir = t.TempDir()
			c1 := c2
			c1.Train.MaxSteps, c1.Optim.TotalSteps = 3, c.Train.MaxSteps
			first := newTrainer(t, c1, Options{})
			if err := first.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			first.Close()
			second := newTrainer(t, c2, Options{Resume: c2.CheckpointDir()})
			if second.Step() != 3 {
				t.Fatalf("resumed at step %d", second.Step())
			}
			if err := second.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := append(append([]Point(nil), first.History()...), second.History()...)
			for i := range h {
				if math.Float64bits(got[i].Loss) != math.Float64bits(h[i].Loss) {
					t.Fatalf("step %d: loss %v resumed, %v straight", i+1, got[i].Loss, h[i].Loss)
				}
			}
			for i, p := range second.params {
				for j, v := range p.Data {
					if math.Float32bits(v) != math.Float32bits(ref.params[i].Data[j]) {
						t.Fatalf("%s[%d]: %v resumed, %v straight", p.Name, j, v, ref.params[i].Data[j])
					}
				}
			}
		})
	}
}

func TestPEFTConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"mode", func(c *Config) { c.PEFT.Mode = "dora" }, "peft.mode"},
		{"rank", func(c *Config) { c.PEFT.Mode, c.PEFT.LoRAR = PEFTLoRA, 0 }, "peft.lora_r"},
		{"dropout", func(c *Config) { c.PEFT.Mode, c.PEFT.LoRADropout = PEFTLoRA, 1 }, "peft.lora_dropout"},
		{"target", func(c *Config) { c.PEFT.Mode, c.PEFT.Targets = PEFTLoRA, "head" }, "peft.targets"},
		{"load without mode", func(c *Config) { c.PEFT.Load = "a.pth" }, "peft.load"},
		{"state chunks", func(c *Config) { c.PEFT.Mode, c.Train.ChunkLen = PEFTState, 8 }, "train.chunk_len"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := tinyConfig(t)
			tc.set(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// x070Bytes is tinyX070 over the byte corpus of tinyConfig.
var x070Bytes = bytesOf(tinyX070)

// bytesOf is a tiny shape over the byte corpus of tinyConfig.
func bytesOf(c model.Config) model.Config { c.Vocab, c.CtxLen = 256, 32; return c }

// TestPEFTLoadContinues: peft.load sets a new run's adapters (and train_parts) from an adapter
// file, LoRA's and a state file alike (RWKV-4 and RWKV-6); a file whose tensors this run does
// not train is refused.
func TestPEFTLoadContinues(t *testing.T) {
	for _, tc := range []struct {
		mode  string
		shape model.Config
	}{{PEFTLoRA, model.Config{}}, {PEFTState, model.Config{}}, {PEFTLoRA, bytesOf(tinyX060)}, {PEFTState, bytesOf(tinyX060)}} {
		mode := tc.mode
		t.Run(fmt.Sprintf("%s-%s", mode, tc.shape.Arch.Resolve()), func(t *testing.T) {
			c := peftBaseOf(t, mode, tc.shape)
			c.Train.MaxSteps = 2
			first := newTrainer(t, c, Options{})
			if err := first.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			first.Close()
			c2 := c
			c2.OutDir, c2.PEFT.Load = t.TempDir(), first.AdapterFile()
			second := newTrainer(t, c2, Options{})
			for i, p := range second.params {
				for j, v := range p.Data {
					if math.Float32bits(v) != math.Float32bits(first.params[i].Data[j]) {
						t.Fatalf("%s[%d] = %v, the adapter file has %v", p.Name, j, v, first.params[i].Data[j])
					}
				}
			}
			second.Close()
			c3 := c2
			c3.OutDir, c3.PEFT.TrainParts = t.TempDir(), "none"
			if mode == PEFTLoRA {
				if _, err := New(c3, nil, Options{}); err == nil || !strings.Contains(err.Error(), "outside train_parts") {
					t.Errorf("an adapter with train_parts into a run without them: %v", err)
				}
			}
		})
	}
}
