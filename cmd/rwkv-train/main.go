// Command rwkv-train trains RWKV-4 language models, prepares their data and exports them.
//
//	rwkv-train --config FILE [--resume [DIR]] [--key.path=value ...]
//	rwkv-train quickstart
//	rwkv-train prepare --tokenizer byte|world:FILE|neox:FILE --output PREFIX INPUT...
//	rwkv-train export --checkpoint PATH --format rwkv|hf|pth|web-rwkv [--dtype fp32|fp16|bf16] --out PATH
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
)

// Exit codes, set in one place.
const (
	exitOK          = 0
	exitError       = 1   // the command failed
	exitUsage       = 2   // bad flags or arguments
	exitInterrupted = 130 // stopped by Ctrl-C
)

func main() {
	// Training keeps large, pointer-free tensors alive and makes little garbage (ops reuse their
	// outputs), so a low GC target costs almost no CPU and keeps the peak heap near the live one
	// instead of twice it. GOGC in the environment wins.
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(20)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "prepare":
		return runPrepare(ctx, args[1:], stdout, stderr)
	case "export":
		return runExport(ctx, args[1:], stdout, stderr)
	case "quickstart":
		return runQuickstart(ctx, args[1:], stdout, stderr)
	case "bench":
		return runBench(ctx, args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	if strings.HasPrefix(args[0], "-") {
		return runTrain(ctx, args, stdout, stderr)
	}
	fmt.Fprintf(stderr, "rwkv-train: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: rwkv-train --config FILE [--resume [DIR]] [--key.path=value ...]
       rwkv-train <command> [flags]

Training reads a YAML recipe (see configs/); any key can be overridden as
--section.key=value or with an RWKV_SECTION_KEY environment variable.

commands:
  quickstart  train a small byte-level model on the Go standard library's sources
  prepare     tokenize text, directories or .jsonl into a binidx corpus
  export      convert a checkpoint to rwkv, hf, pth or web-rwkv weights
  bench       tokens/s, MFU and peak memory of training steps (--torch: against PyTorch)

examples:
  rwkv-train quickstart
  rwkv-train prepare --tokenizer byte --output out/tiny/train --val-fraction 0.05 ./docs
  rwkv-train --config configs/tiny.yaml --train.max_steps=50
  rwkv-train --config configs/tiny.yaml --resume
  rwkv-train export --checkpoint out/tiny/checkpoints --format pth --out out/tiny/model.pth
  rwkv-train bench --torch

Run 'rwkv-train <command> -h' for the flags of a command.
`)
}
