package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/checkpoint"
)

// runExport implements `rwkv-train export`: a checkpoint (or any weights file) to the formats
// RWKV runtimes load.
func runExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	from := fs.String("checkpoint", "", "training checkpoint file, checkpoint directory (its newest), an out_dir with model.safetensors, a Hugging Face directory, or a weights file (.pth, .safetensors)")
	format := fs.String("format", "rwkv", "rwkv (RWKV-LM safetensors), hf (Hugging Face directory), pth (PyTorch zip), web-rwkv (fp16 safetensors)")
	dtype := fs.String("dtype", "", "fp32, fp16 or bf16 (default: fp32; bf16 for pth; web-rwkv is always fp16)")
	out := fs.String("out", "", "output file (rwkv, pth, web-rwkv) or directory (hf)")
	ctxLen := fs.Int("ctx-len", 0, "context_length for hf's config.json (default: the checkpoint's model.ctx_len, else 1024)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: rwkv-train export --checkpoint PATH --format rwkv|hf|pth|web-rwkv [--dtype fp32|fp16|bf16] --out PATH\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || *out == "" {
		return usagef("--checkpoint and --out are required")
	}
	switch *format {
	case "rwkv", "web-rwkv", "pth", "hf":
	default:
		return usagef("--format %q: want rwkv, hf, pth or web-rwkv", *format)
	}
	dts := map[string]checkpoint.DType{"fp32": checkpoint.F32, "fp16": checkpoint.F16, "bf16": checkpoint.BF16}
	dt := checkpoint.F32
	if *format == "pth" {
		dt = checkpoint.BF16
	}
	if *dtype != "" {
		d, ok := dts[*dtype]
		if !ok {
			return usagef("--dtype %q: want fp32, fp16 or bf16", *dtype)
		}
		dt = d
	}
	if *format == "web-rwkv" && *dtype != "" && dt != checkpoint.F16 {
		return usagef("--dtype %s: web-rwkv is always fp16", *dtype)
	}
	if *ctxLen < 0 {
		return usagef("--ctx-len %d: want a positive length, or 0 for the checkpoint's", *ctxLen)
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
	write := func(f func(io.Writer) error) error { return checkpoint.WriteFileAtomic(*out, f) }
	switch *format {
	case "rwkv":
		err = write(func(w io.Writer) error { return checkpoint.ExportRWKV(w, ts, dt) })
	case "web-rwkv":
		dt = checkpoint.F16
		err = write(func(w io.Writer) error { return checkpoint.ExportWebRWKV(w, ts) })
	case "pth":
		err = write(func(w io.Writer) error { return checkpoint.ExportPTH(w, ts, dt) })
	case "hf":
		n := *ctxLen
		if n == 0 {
			n = checkpointCtxLen(path)
		}
		err = checkpoint.ExportHF(*out, ts, checkpoint.HFConfig{ContextLength: n}, dt)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %s (%d tensors) to %s as %s %s\n", path, len(ts), *out, *format, strings.ToLower(string(dt)))
	return nil
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
