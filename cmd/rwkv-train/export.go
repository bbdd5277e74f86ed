package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// exportFormats are the --format values, in the order the help lists them.
var exportFormats = []string{"rwkv", "pth", "hf", "gguf", "web-rwkv"}

// runExport implements `rwkv-train export`: a checkpoint (or any weights file) of an RWKV-4,
// RWKV-5.2, RWKV-6 or RWKV-7 model to the formats RWKV runtimes load. It works on the tensors: no model is built.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("checkpoint", "", "training checkpoint file, checkpoint directory (its newest), an out_dir with model.safetensors, a Hugging Face directory (RWKV-4 transformers, RWKV-5/6 RWKV/rwkv-5-world and RWKV/v6-Finch, RWKV-7 fla-hub), or a weights file (.pth, .safetensors, web-rwkv .st, an unquantized rwkv6 or rwkv7 .gguf)")
	format := fs.String("format", "rwkv", "rwkv (RWKV-LM safetensors), pth (RWKV-LM .pth, what ChatRWKV and rwkv.cpp's converter read), hf (Hugging Face directory: transformers RWKV-4, the RWKV/rwkv-5-world and RWKV/v6-Finch remote-code layouts for RWKV-5.2/6, fla-hub rwkv7 for RWKV-7), gguf (llama.cpp: RWKV-6 and RWKV-7), web-rwkv (fp16 .st: RWKV-4, RWKV-5.2 and RWKV-6)")
	dtype := fs.String("dtype", "", "fp32, fp16 or bf16 (default: fp32; bf16 for pth; fp16 for gguf, whose vectors stay fp32; web-rwkv is always fp16)")
	out := fs.String("out", "", "output file (rwkv, pth, gguf, web-rwkv) or directory (hf)")
	ctxLen := fs.Int("ctx-len", 0, "hf: RWKV-4's context_length (default: the checkpoint's model.ctx_len, else 1024); RWKV-7's max_position_embeddings (default 4096, unused by FLA); RWKV-5.2/6 configs have no such key")
	vocab := fs.String("vocab", "", "gguf: the tokenizer written into the file: world (the built-in World vocabulary, the default for a 65536-token model), world:FILE (a vocabulary in rwkv_vocab_v20230424.txt format) or none (the default for other vocab sizes; llama.cpp needs one to load the file)")
	adapter := fs.String("adapter", "", "merge this adapter file (adapter.pth from peft.mode lora or pissa, or RWKV-PEFT's rwkv-N.pth) into the --checkpoint base before exporting")
	adapterInit := fs.String("adapter-init", "", "PiSSA: the run's init_pissa.pth (init_lora_A/B), needed to merge a PiSSA adapter into the original base")
	loraAlpha := fs.Float64("lora-alpha", 0, "LoRA: the run's peft.lora_alpha; the adapter is merged as W + (alpha/r)·B·A (not used for PiSSA)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: rwkv-train export --checkpoint PATH [--adapter FILE (--lora-alpha A | --adapter-init FILE)] --format rwkv|pth|hf|gguf|web-rwkv [--dtype fp32|fp16|bf16] [--vocab world|world:FILE|none] --out PATH\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *out == "" {
		return cli.Usagef("--checkpoint and --out are required")
	}
	if !slices.Contains(exportFormats, *format) {
		return cli.Usagef("--format %q: want rwkv, pth, hf, gguf or web-rwkv", *format)
	}
	dts := map[string]checkpoint.DType{"fp32": checkpoint.F32, "fp16": checkpoint.F16, "bf16": checkpoint.BF16}
	dt := checkpoint.F32
	switch *format {
	case "pth":
		dt = checkpoint.BF16
	case "gguf", "web-rwkv":
		dt = checkpoint.F16
	}
	if *dtype != "" {
		d, ok := dts[*dtype]
		if !ok {
			return cli.Usagef("--dtype %q: want fp32, fp16 or bf16", *dtype)
		}
		dt = d
	}
	if *format == "web-rwkv" && dt != checkpoint.F16 {
		return cli.Usagef("--dtype %s: web-rwkv is always fp16", *dtype)
	}
	if *ctxLen < 0 {
		return cli.Usagef("--ctx-len %d: want a positive length, or 0 for the checkpoint's", *ctxLen)
	}
	if *vocab != "" && *format != "gguf" {
		return cli.Usagef("--vocab %s: only gguf files hold a vocabulary (the other formats are weights only)", *vocab)
	}
	if *vocab != "" && *vocab != "world" && *vocab != "none" && !strings.HasPrefix(*vocab, "world:") {
		return cli.Usagef("--vocab %q: want world, world:FILE or none", *vocab)
	}
	// A checkpoint directory is its newest checkpoint (a corrupt one is an error naming it and
	// the newest intact one); an out_dir or Hugging Face directory is read as it is.
	path, err := checkpoint.ResolveWeights(*from)
	if err != nil {
		return err
	}
	ts, err := checkpoint.ReadWeights(path)
	if err != nil {
		return err
	}
	d, _, err := checkpoint.Check(ts)
	if err != nil {
		return fmt.Errorf("weights %s: %w", path, err)
	}
	if *adapter != "" {
		if ts, err = mergeAdapter(ts, d, *adapter, *adapterInit, *loraAlpha); err != nil {
			return err
		}
	} else if *adapterInit != "" || *loraAlpha != 0 {
		return cli.Usagef("--adapter-init and --lora-alpha go with --adapter")
	}
	a := d.Arch.Resolve()
	x070 := a == arch.X070
	x05 := a == arch.X052 || a == arch.X060
	switch {
	case *format == "gguf" && a == arch.X052:
		return cli.Usagef("--format gguf: %s holds an %s model, and llama.cpp has no RWKV-5 architecture (it runs RWKV-6 and RWKV-7); use --format pth for ChatRWKV and rwkv.cpp, or web-rwkv", path, d.Arch.Title())
	case *format == "gguf" && a == arch.X040:
		return cli.Usagef("--format gguf: %s holds an %s model, and llama.cpp has no RWKV-4 architecture (it runs RWKV-6 and RWKV-7); use --format pth for rwkv.cpp or web-rwkv", path, d.Arch.Title())
	case *format == "web-rwkv" && x070:
		return cli.Usagef("--format web-rwkv: %s holds an %s model; this export writes web-rwkv's RWKV-4, RWKV-5.2 and RWKV-6 layouts: export --format pth and convert it with web-rwkv's convert_safetensors.py", path, d.Arch.Title())
	}
	var tokens [][]byte
	worldChat := false
	if *format == "gguf" {
		if tokens, worldChat, err = ggufVocab(*vocab, d.Vocab); err != nil {
			return err
		}
		if tokens == nil && *vocab == "" {
			fmt.Fprintf(stderr, "rwkv-train export: the model has %d tokens, not the World vocabulary's 65536: the GGUF file holds no vocabulary, and llama.cpp will not load it without one; pass --vocab world:FILE to add yours\n", d.Vocab)
		}
	}
	write := func(f func(io.Writer) error) error { return checkpoint.WriteFileAtomic(*out, f) }
	switch {
	case *format == "rwkv" && x05:
		err = write(func(w io.Writer) error { return checkpoint.ExportX05RWKV(w, ts, dt) })
	case *format == "rwkv" && x070:
		err = write(func(w io.Writer) error { return checkpoint.ExportX070RWKV(w, ts, dt) })
	case *format == "rwkv":
		err = write(func(w io.Writer) error { return checkpoint.ExportRWKV(w, ts, dt) })
	case *format == "pth" && x05:
		err = write(func(w io.Writer) error { return checkpoint.ExportX05PTH(w, ts, dt) })
	case *format == "pth" && x070:
		err = write(func(w io.Writer) error { return checkpoint.ExportX070PTH(w, ts, dt) })
	case *format == "pth":
		err = write(func(w io.Writer) error { return checkpoint.ExportPTH(w, ts, dt) })
	case *format == "web-rwkv":
		err = write(func(w io.Writer) error { return checkpoint.ExportWebRWKV(w, ts) })
	case *format == "gguf":
		opt := checkpoint.GGUF7Options{DType: dt, Name: modelName(path), Tokens: tokens, WorldChat: worldChat}
		export := checkpoint.ExportGGUF7
		if a == arch.X060 {
			export = checkpoint.ExportGGUF6
		}
		err = write(func(w io.Writer) error { return export(w, ts, opt) })
	case *format == "hf" && x05:
		err = checkpoint.ExportHF56(*out, ts, dt)
	case *format == "hf" && x070:
		err = checkpoint.ExportHF7(*out, ts, checkpoint.HF7Config{MaxPositionEmbeddings: *ctxLen}, dt)
	case *format == "hf":
		n := *ctxLen
		if n == 0 {
			n = checkpointCtxLen(path)
		}
		err = checkpoint.ExportHF(*out, ts, checkpoint.HFConfig{ContextLength: n}, dt)
	}
	if errors.Is(err, checkpoint.ErrNonFinite) && dt == checkpoint.F16 {
		// The input is finite (ReadWeights checks): the value overflows fp16.
		return fmt.Errorf("%w: fp16 holds values up to 65504; export with --dtype bf16 or fp32", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %s (%s %s, %d tensors) to %s as %s %s\n", path, d.Arch.Title(), modelShape(d), len(ts), *out, *format, strings.ToLower(string(dt)))
	return nil
}

// mergeAdapter folds an adapter file (and PiSSA's init file) into the base tensors: LoRA as
// W + (alpha/r)·B·A, PiSSA as (W − B0·A0) + B·A, train_parts replacing their base tensors.
func mergeAdapter(base []checkpoint.Tensor, d arch.Dims, path, initPath string, alpha float64) ([]checkpoint.Tensor, error) {
	paths := []string{path}
	if initPath != "" {
		paths = append(paths, initPath)
	}
	// train_parts: any base tensor saved whole in the adapter file replaces the base's
	a, err := checkpoint.ReadAdapter(d.Layout(), checkpoint.AdapterRules{TrainParts: []string{""}}, paths...)
	if err != nil {
		return nil, err
	}
	if len(a.States) > 0 {
		return nil, cli.Usagef("--adapter %s holds time_state tensors (state tuning): a state is not merged into the weights; evaluate it with rwkv-eval --state %s", path, path)
	}
	scale := 0.0
	if len(a.LoRA) > 0 && len(a.Init) == 0 {
		if !(alpha > 0) {
			return nil, cli.Usagef("--adapter %s is a LoRA adapter (r %d): pass --lora-alpha, the run's peft.lora_alpha (merged as W + alpha/r·B·A), or --adapter-init for a PiSSA adapter", path, a.Rank)
		}
		scale = alpha / float64(a.Rank)
	}
	return checkpoint.MergeAdapter(base, a, scale)
}

// worldVocabSize is the World vocabulary's embedding rows (rwkv_vocab_v20230424.txt).
const worldVocabSize = 65536

// ggufVocab returns the tokens --vocab asks for (nil for none) for a model of vocab rows, and
// whether they are the World vocabulary's (token 261 is "\n\n": llama.cpp's rwkv-world chat
// template and end-of-turn token apply). The default is the built-in World vocabulary for a
// 65536-token model, none otherwise.
func ggufVocab(spec string, vocab int) ([][]byte, bool, error) {
	if spec == "" {
		spec = "none"
		if vocab == worldVocabSize {
			spec = "world"
		}
	}
	var tok *data.WorldTokenizer
	var err error
	switch {
	case spec == "none":
		return nil, false, nil
	case spec == "world":
		if vocab != worldVocabSize {
			return nil, false, cli.Usagef("--vocab world: the World vocabulary has %d tokens but the model has %d embedding rows; pass --vocab world:FILE with the model's vocabulary, or --vocab none", worldVocabSize, vocab)
		}
		tok, err = data.WorldVocabTokenizer()
	default:
		tok, err = data.LoadWorldTokenizer(strings.TrimPrefix(spec, "world:"))
	}
	if err != nil {
		return nil, false, err
	}
	tokens := tok.TokenBytes()
	if len(tokens) > vocab {
		return nil, false, cli.Usagef("--vocab %s: the vocabulary's largest id is %d but the model has %d embedding rows", spec, len(tokens)-1, vocab)
	}
	chat := len(tokens) > 261 && bytes.Equal(tokens[261], []byte("\n\n"))
	return tokens, chat, nil
}

// modelName is general.name for a GGUF export: the input's base name without its extension.
func modelName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// modelShape is "L12-D768-V65536".
func modelShape(d checkpoint.Dims) string {
	return fmt.Sprintf("L%d-D%d-V%d", d.Layers, d.Embd, d.Vocab)
}

// checkpointCtxLen reads model.ctx_len from a training checkpoint's stored config; 1024 when
// path is not a training checkpoint.
func checkpointCtxLen(path string) int {
	ck, err := checkpoint.Load(path)
	if err != nil {
		return 1024
	}
	var c struct {
		Model struct {
			CtxLen int `yaml:"ctx_len"`
		} `yaml:"model"`
	}
	if yaml.Unmarshal([]byte(ck.State.Config), &c) != nil || c.Model.CtxLen <= 0 {
		return 1024
	}
	return c.Model.CtxLen
}
