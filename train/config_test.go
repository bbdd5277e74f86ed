package train

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestValidateAbsurdSizes: sizes that overflow or cannot fit in memory get an error naming the
// key, never a panic (a division by zero in Steps) or an out-of-memory death later.
func TestValidateAbsurdSizes(t *testing.T) {
	old := memTotal
	memTotal = func() (float64, bool) { return 16 << 30, true }
	t.Cleanup(func() { memTotal = old })
	base := DefaultConfig()
	base.Data.Train = "x"
	base.Train.MaxSteps = 10
	for _, tt := range []struct {
		name string
		mod  func(*Config)
		want []string
	}{
		{"default fits", func(c *Config) {}, nil},
		{"tokens per step overflow int64", func(c *Config) {
			c.Train.MaxSteps, c.Train.MaxTokens = 0, 1e9
			c.Train.MicroBsz, c.Train.GradAccum, c.Model.CtxLen = 1<<31, 1<<31, 4
		}, []string{"train.micro_bsz × train.grad_accum × model.ctx_len"}},
		{"n_embd 3.2e9", func(c *Config) { c.Model.Embd = 3_200_000_000 }, []string{"the parameters", "model.n_embd = 3200000000"}},
		{"vocab 4e9", func(c *Config) { c.Model.Vocab = 4_000_000_000 }, []string{"model.vocab_size = 4000000000"}},
		{"micro_bsz 1e12", func(c *Config) { c.Train.MicroBsz = 1e12 }, []string{"the activations", "train.micro_bsz = 1000000000000"}},
		{"n_layer 1e8", func(c *Config) { c.Model.Layers = 1e8 }, []string{"model.n_layer = 100000000"}},
		{"logits dominate", func(c *Config) { c.Model.Layers, c.Model.Vocab, c.Train.MicroBsz = 1, 1<<20, 1<<10 }, []string{"the logits", "model.vocab_size = 1048576"}},
		{"chunk_len bounds the activations", func(c *Config) {
			c.Model.CtxLen, c.Train.MicroBsz, c.Train.ChunkLen = 1<<20, 1, 256
		}, nil},
		{"x070 n_embd 3.2e9", func(c *Config) { c.Model.Arch, c.Model.Embd = "x070", 3_200_000_000 }, []string{"the parameters", "model.n_embd = 3200000000"}},
		{"x070 default fits", func(c *Config) { c.Model.Arch = "x070" }, nil},
		// 1.5B at ctx 512: 24 GB of weights, gradients and moments; a frozen base is 6 GB
		{"x070 1.5B full", func(c *Config) {
			c.Model.Arch, c.Model.Layers, c.Model.Embd, c.Model.Vocab, c.Model.CtxLen, c.Train.MicroBsz = "x070", 24, 2048, 65536, 512, 1
		}, []string{"the parameters"}},
		{"x070 1.5B LoRA fits", func(c *Config) {
			c.Model.Arch, c.Model.Layers, c.Model.Embd, c.Model.Vocab, c.Model.CtxLen, c.Train.MicroBsz = "x070", 24, 2048, 65536, 512, 1
			c.PEFT.Mode = PEFTLoRA
		}, nil},
		{"x060 1.6B full", func(c *Config) {
			c.Model.Arch, c.Model.Layers, c.Model.Embd, c.Model.Vocab, c.Model.CtxLen, c.Train.MicroBsz = "x060", 24, 2048, 65536, 512, 1
		}, []string{"the parameters"}},
		{"x060 1.6B state tuning fits", func(c *Config) {
			c.Model.Arch, c.Model.Layers, c.Model.Embd, c.Model.Vocab, c.Model.CtxLen, c.Train.MicroBsz = "x060", 24, 2048, 65536, 512, 1
			c.PEFT.Mode = PEFTState
		}, nil},
		{"x052 n_embd 3.2e9", func(c *Config) { c.Model.Arch, c.Model.Embd = "x052", 3_200_000_000 }, []string{"the parameters", "model.n_embd = 3200000000"}},
		{"dim_ffn 1", func(c *Config) { c.Model.FFN = 1 }, []string{"model.dim_ffn = 1: must be at least 2"}},
		{"dim_ffn 2", func(c *Config) { c.Model.FFN = 2 }, nil},
		{"vocab_size 1", func(c *Config) { c.Model.Vocab = 1 }, []string{"model.vocab_size = 1: must be at least 2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mod(&c)
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				err = c.Validate()
				_ = c.Steps()
			}()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want an error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("got %v, want an error containing %q", err, w)
				}
			}
			// a memory refusal, and only that, is marked as such (the config is otherwise valid)
			memory := strings.Contains(err.Error(), "of memory, mostly for")
			if errors.Is(err, ErrMemory) != memory {
				t.Errorf("errors.Is(err, ErrMemory) = %v for %v", !memory, err)
			}
		})
	}
}

// TestEstimateMemoryParams: the parameter part of the estimate is 16 bytes for each weight of
// the layout, exactly, for RWKV-4, RWKV-5.2, RWKV-6 and RWKV-7 shapes (defaults, explicit LoRA
// widths, no layer 0 v0/v1/v2, the released 0.1B and 1.5B RWKV-7, 1.5B RWKV-5, 1.6B and 7B
// RWKV-6), and the x070 and x060 activations grow with head_size.
func TestEstimateMemoryParams(t *testing.T) {
	for _, m := range []model.Config{
		{Layers: 6, Embd: 512, Vocab: 256, CtxLen: 256},
		{Arch: arch.X070, Layers: 4, Embd: 128, Vocab: 256, CtxLen: 128, HeadSize: 32},
		{Arch: arch.X070, Layers: 2, Embd: 128, Vocab: 64, CtxLen: 17, FFN: 512, DimDecay: 16, DimAAA: 24, DimMV: 8, DimGate: 32},
		{Arch: arch.X070, Layers: 12, Embd: 768, Vocab: 65536, CtxLen: 512},
		{Arch: arch.X070, Layers: 24, Embd: 2048, Vocab: 65536, CtxLen: 512},
		{Arch: arch.X052, Layers: 2, Embd: 64, Vocab: 256, CtxLen: 16, HeadSize: 32},
		{Arch: arch.X052, Layers: 24, Embd: 2048, Vocab: 65536, CtxLen: 512},
		{Arch: arch.X060, Layers: 2, Embd: 64, Vocab: 256, CtxLen: 16, HeadSize: 16, FFN: 96, DimMix: 8, DimDecay: 24},
		{Arch: arch.X060, Layers: 24, Embd: 2048, Vocab: 65536, CtxLen: 512},
		{Arch: arch.X060, Layers: 32, Embd: 4096, Vocab: 65536, CtxLen: 512, DimMix: 64, DimDecay: 128}, // the released 7B
	} {
		c := DefaultConfig()
		c.Model.Config = m
		got, want := c.EstimateMemory().Params, 16*float64(m.Dims().NumParams())
		if math.Abs(got-want) > 1e-12*want {
			t.Errorf("%v: params estimate %.0f bytes, layout has %.0f", m, got, want)
		}
	}
	c := DefaultConfig()
	c.Model.Config = model.Config{Arch: arch.X070, Layers: 12, Embd: 768, Vocab: 65536, CtxLen: 512}
	a64 := c.EstimateMemory().Activations
	c.Model.HeadSize = 32
	if a32 := c.EstimateMemory().Activations; !(a32 < a64) {
		t.Errorf("activations %v at head_size 32, %v at 64: the WKV-7 state snapshots grow with head_size", a32, a64)
	}
	c.Model.Config = model.Config{Arch: arch.X060, Layers: 12, Embd: 768, Vocab: 65536, CtxLen: 512}
	a64 = c.EstimateMemory().Activations
	c.Model.HeadSize = 32
	if a32 := c.EstimateMemory().Activations; !(a32 < a64) {
		t.Errorf("x060 activations %v at head_size 32, %v at 64: the WKV-6 state snapshots grow with head_size", a32, a64)
	}
}
