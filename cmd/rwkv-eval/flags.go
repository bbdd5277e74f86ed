package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// modelFlags are the flags every command takes to load a model.
type modelFlags struct {
	path   string
	ctxLen int
	dtype  string
	// parameter-efficient fine-tuning outputs applied to the base
	adapter, adapterInit, state string
	loraAlpha                   float64
}

func (f *modelFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.path, "model", "", "weights: RWKV-LM .pth, safetensors, training checkpoint or hf directory (required)")
	fs.IntVar(&f.ctxLen, "ctx-len", 1024, "context length: the window of parallel mode")
	fs.StringVar(&f.dtype, "dtype", "fp32", "compute in fp32 or fp64")
	fs.StringVar(&f.adapter, "adapter", "", "evaluate --model with this adapter (adapter.pth of peft.mode lora or pissa, or RWKV-PEFT's rwkv-N.pth) merged in")
	fs.StringVar(&f.adapterInit, "adapter-init", "", "PiSSA: the run's init_pissa.pth, needed with a PiSSA --adapter")
	fs.Float64Var(&f.loraAlpha, "lora-alpha", 0, "LoRA: the run's peft.lora_alpha (the adapter is W + alpha/r·B·A)")
	fs.StringVar(&f.state, "state", "", "start every sequence from this state file (blocks.N.att.time_state, from peft.mode state or RWKV-PEFT)")
}

// load checks the flags and reads the model.
func (f *modelFlags) load() (*model.Model, error) {
	if f.path == "" {
		return nil, cli.Usagef("--model is required")
	}
	if f.ctxLen < 1 {
		return nil, cli.Usagef("--ctx-len must be at least 1, got %d", f.ctxLen)
	}
	var dt model.DType
	switch f.dtype {
	case "fp32":
		dt = model.Float32
	case "fp64":
		dt = model.Float64
	default:
		return nil, cli.Usagef("--dtype %q, want fp32 or fp64", f.dtype)
	}
	if err := blas.Init(); err != nil {
		return nil, err
	}
	if f.adapter == "" && (f.adapterInit != "" || f.loraAlpha != 0) {
		return nil, cli.Usagef("--adapter-init and --lora-alpha go with --adapter")
	}
	m, err := weights.Load(f.path, f.ctxLen, dt)
	if err != nil {
		return nil, fmt.Errorf("load model: %w", err)
	}
	if f.adapter != "" {
		if err := weights.ApplyAdapter(m, f.adapter, weights.AdapterOptions{Init: f.adapterInit, LoRAAlpha: f.loraAlpha}); err != nil {
			return nil, fmt.Errorf("--adapter: %w", err)
		}
	}
	if f.state != "" {
		if err := weights.ApplyState(m, f.state); err != nil {
			return nil, fmt.Errorf("--state: %w", err)
		}
	}
	return m, nil
}

// count is an integer flag with its smallest allowed value and what that value means.
type count struct {
	flag    string
	value   int64
	min     int64
	meaning string
}

// checkCounts refuses the first flag below its minimum, naming it.
func checkCounts(cs ...count) error {
	for _, c := range cs {
		if c.value < c.min {
			return cli.Usagef("%s %d: want %d or more (%s)", c.flag, c.value, c.min, c.meaning)
		}
	}
	return nil
}

// tokenizer loads the --tokenizer spec; with none it is the byte tokenizer for a vocab-256
// model and nil otherwise.
func tokenizer(spec string, m *model.Model) (data.Tokenizer, error) {
	if spec == "" {
		if m.Config.Vocab == 256 {
			return data.NewByteTokenizer(), nil
		}
		return nil, nil
	}
	tok, err := data.ParseTokenizer(spec)
	if err != nil {
		return nil, err
	}
	if tok.VocabSize() > m.Config.Vocab {
		return nil, cli.Usagef("tokenizer %s has %d tokens, the model only %d", tok.Name(), tok.VocabSize(), m.Config.Vocab)
	}
	return tok, nil
}

// requireTokenizer is tokenizer for commands that cannot work without one.
func requireTokenizer(spec string, m *model.Model) (data.Tokenizer, error) {
	tok, err := tokenizer(spec, m)
	if err == nil && tok == nil {
		err = cli.Usagef("--tokenizer is required for a vocab-%d model", m.Config.Vocab)
	}
	return tok, err
}

// isTerminal reports whether w is a terminal, for the live progress line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
