package train

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
)

// corpus writes a small byte-level corpus with learnable structure and returns the binidx
// prefixes of its train and validation splits.
func corpus(t testing.TB) (train, val string) {
	t.Helper()
	dir := t.TempDir()
	var docs []string
	for i := 0; i < 40; i++ {
		var b strings.Builder
		for j := 0; j < 30; j++ {
			fmt.Fprintf(&b, "func f%d(x int) int { return x * %d }\n", (i+j)%7, (i*j)%5)
		}
		docs = append(docs, b.String())
	}
	for i, d := range docs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("doc%02d.txt", i)), []byte(d), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "corpus")
	if _, err := data.Prepare(context.Background(), data.PrepareOptions{Inputs: []string{dir}, Output: out,
		Tokenizer: data.NewByteTokenizer(), ValFraction: 0.1}, nil); err != nil {
		t.Fatal(err)
	}
	return out, out + "_val"
}

func tinyConfig(t testing.TB) Config {
	train, val := corpus(t)
	c := DefaultConfig()
	c.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32}
	c.Data = data.Config{Train: train, Val: val, Sampling: "random"}
	c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = 3e-3, 1e-3, 2
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.EvalEvery, c.Train.EvalTokens = 4, 30, 10, 2000
	c.OutDir = t.TempDir()
	return c
}

// tinyConfigX070 is tinyConfig with an RWKV-7 model of the same size (2 heads of 16) and
// RWKV-LM's v7 optimiser recipe (cosine_v7, eps 1e-18, weight decay on matrices).
func tinyConfigX070(t testing.TB) Config {
	c := tinyConfig(t)
	c.Model.Config = model.Config{Arch: arch.X070, Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32, HeadSize: 16}
	c.Optim.Kind, c.Optim.Eps, c.Optim.WeightDecay = optim.CosineV7, 1e-18, 0.1
	return c
}

// tinyConfigX05 is tinyConfig with an RWKV-5.2 or RWKV-6 model of that shape over its byte
// corpus and RWKV-LM's v5 optimiser recipe (the cosine of --my_exit_tokens, eps 1e-18, weight
// decay on matrices).
func tinyConfigX05(t testing.TB, shape model.Config) Config {
	c := tinyConfig(t)
	c.Model.Config = shape
	c.Model.Vocab, c.Model.CtxLen = 256, 32
	c.Optim.Kind, c.Optim.Eps, c.Optim.WeightDecay = optim.CosineV7, 1e-18, 0.1
	return c
}

func newTrainer(t testing.TB, c Config, opts Options) *Trainer {
	t.Helper()
	tr, err := New(c, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestTinyRunLossFalls(t *testing.T) {
	c := tinyConfig(t)
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
	first, last := h[0].Loss, h[len(h)-1].Loss
	t.Logf("train loss %.3f -> %.3f; validation %.3f -> %.3f", first, last, before.Loss, after.Loss)
	if !(last < first-0.5) || !(after.Loss < before.Loss-0.5) {
		t.Fatalf("loss did not fall: train %.3f -> %.3f, validation %.3f -> %.3f", first, last, before.Loss, after.Loss)
	}
	for _, f := range []string{"metrics.jsonl", "loss.svg", "checkpoints/" + checkpoint.FileName(30)} {
		if _, err := os.Stat(filepath.Join(c.OutDir, f)); err != nil {
			t.Errorf("missing output: %v", err)
		}
	}
}

// TestGradAccumEqualsLargerBatch: micro_bsz 2 x grad_accum 2 trains like micro_bsz 4, for
// RWKV-4 and RWKV-7.
func TestGradAccumEqualsLargerBatch(t *testing.T) {
	t.Run("x040", func(t *testing.T) { testGradAccumEqualsLargerBatch(t, tinyConfig(t)) })
	t.Run("x070", func(t *testing.T) { testGradAccumEqualsLargerBatch(t, tinyConfigX070(t)) })
	t.Run("x060", func(t *testing.T) { testGradAccumEqualsLargerBatch(t, tinyConfigX05(t, tinyX060)) })
}

func testGradAccumEqualsLargerBatch(t *testing.T, c Config) {
	c.Train.MaxSteps, c.Train.EvalEvery, c.Data.Val = 4, 0, ""
	a := c
	a.Train.MicroBsz, a.Train.GradAccum = 2, 2
	a.OutDir = t.TempDir()
	ta := newTrainer(t, a, Options{})
	tb := newTrainer(t, c, Options{})
	for s := 0; s < 4; s++ {
		ra, err := ta.TrainStep(1e-3)
		if err != nil {
			t.Fatal(err)
		}
		rb, err := tb.TrainStep(1e-3)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(ra.Loss-rb.Loss) > 1e-5*rb.Loss {
			t.Fatalf("step %d: loss %v (2x2) vs %v (4x1)", s, ra.Loss, rb.Loss)
		}
	}
	for i, p := range ta.Model.Params {
		wa, wb := p.F32(), tb.Model.Params[i].F32()
		for j := range wa {
			if d := math.Abs(float64(wa[j] - wb[j])); d > 1e-5 {
				t.Fatalf("%s[%d]: %v (2x2) vs %v (4x1)", p.Name, j, wa[j], wb[j])
			}
		}
	}
}

// TestNaNGuard: a non-finite gradient leaves weights and optimiser state unchanged, and too
// many in a row stop the run.
func TestNaNGuard(t *testing.T) {
	c := tinyConfig(t)
	c.Train.MaxBadSteps = 2
	tr := newTrainer(t, c, Options{})
	if _, err := tr.TrainStep(1e-3); err != nil {
		t.Fatal(err)
	}
	snapshot := func() [][]float32 {
		var out [][]float32
		for _, p := range tr.params {
			out = append(out, append([]float32(nil), p.Data...))
		}
		st := tr.opt.State()
		for i := range st.M {
			out = append(out, append([]float32(nil), st.M[i]...), append([]float32(nil), st.V[i]...))
		}
		return out
	}
	before := snapshot()
	optStep := tr.opt.Steps()
	head := tr.Model.Param("head.weight").F32()
	saved := head[5]
	head[5] = float32(math.NaN()) // poisons the logits, so the loss and every gradient
	res, err := tr.TrainStep(1e-3)
	head[5] = saved
	if err != nil || !res.Skipped {
		t.Fatalf("got %+v, %v; want a skipped step", res, err)
	}
	after := snapshot()
	for i := range before {
		for j := range before[i] {
			if math.Float32bits(before[i][j]) != math.Float32bits(after[i][j]) {
				t.Fatalf("tensor %d changed at %d by a skipped step", i, j)
			}
		}
	}
	if tr.opt.Steps() != optStep {
		t.Fatal("optimiser step count advanced on a skipped step")
	}
	head[5] = float32(math.Inf(1))
	tr.TrainStep(1e-3)
	_, err = tr.TrainStep(1e-3)
	head[5] = saved
	if !errors.Is(err, ErrDiverged) {
		t.Fatalf("got %v after 2 bad steps in a row, want ErrDiverged", err)
	}
}

func TestValidateRejects(t *testing.T) {
	base := DefaultConfig()
	base.Data.Train = "x"
	base.Train.MaxSteps = 10
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"ok", func(c *Config) {}, ""},
		{"no length", func(c *Config) { c.Train.MaxSteps = 0 }, "set one of them"},
		{"both lengths", func(c *Config) { c.Train.MaxTokens = 100 }, "set only one"},
		{"micro_bsz", func(c *Config) { c.Train.MicroBsz = 0 }, "train.micro_bsz = 0"},
		{"grad_accum", func(c *Config) { c.Train.GradAccum = -1 }, "train.grad_accum = -1"},
		{"n_embd", func(c *Config) { c.Model.Embd = 100 }, "model.n_embd = 100"},
		{"arch", func(c *Config) { c.Model.Arch = "x050" }, `model.arch = "x050"`},
		{"x070", func(c *Config) { c.Model.Arch = "x070" }, ""},
		{"x070 head_size", func(c *Config) { c.Model.Arch, c.Model.HeadSize = "x070", 48 }, "model.head_size = 48"},
		{"lr", func(c *Config) { c.Optim.LRInit = -1 }, "optim.lr_init"},
		{"sampling", func(c *Config) { c.Data.Sampling = "shuffle" }, "sampling"},
		{"keep", func(c *Config) { c.Checkpoint.Keep = -2 }, "checkpoint.keep = -2"},
		{"bad steps", func(c *Config) { c.Train.MaxBadSteps = 0 }, "train.max_bad_steps"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mod(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestValidateMaxTokensWithWarmup(t *testing.T) {
	c := DefaultConfig()
	c.Data.Train = "x"
	c.Train.MaxTokens = 1e9
	c.Optim.WarmupSteps = 10
	if err := c.Validate(); err != nil {
		t.Fatalf("max_tokens with warmup rejected: %v", err)
	}
	if got, want := c.Steps(), (1_000_000_000+2047)/2048; got != want {
		t.Fatalf("Steps() = %d, want %d", got, want)
	}
}
