// Command rwkv-train trains RWKV-4 (x040), RWKV-5.2 (x052), RWKV-6 (x060) and RWKV-7 (x070)
// language models, prepares their data and exports them.
//
//	rwkv-train --config FILE [--resume [DIR]] [--key.path=value ...]
//	rwkv-train quickstart
//	rwkv-train prepare --tokenizer byte|world|neox|world:FILE|neox:FILE --output PREFIX INPUT...
//	rwkv-train export --checkpoint PATH --format rwkv|hf|pth|web-rwkv [--dtype fp32|fp16|bf16] --out PATH
//
// Ctrl-C, SIGTERM (what Slurm and Kubernetes send) and SIGHUP stop a run at the next safe point:
// training writes a checkpoint and exits with 130. A second signal kills the process at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/train"
)

// Exit codes, set in one place: exitCode.
const (
	exitOK          = 0
	exitError       = 1   // the command failed
	exitUsage       = 2   // bad flags, arguments or config
	exitInterrupted = 130 // stopped by Ctrl-C, SIGTERM or SIGHUP (training saved a checkpoint)
)

// trainingGCPercent is the GC target of the training commands.
const trainingGCPercent = 20

func main() {
	// Ctrl-C, SIGTERM and SIGHUP cancel ctx (a second one kills); an ignored SIGHUP (nohup) stays ignored.
	ctx, stop := cli.NotifyStop(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand; its error decides the exit code (exitCode).
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// subcommand is a command and how it runs.
type subcommand struct {
	run command
	// training commands keep large tensors alive and make little garbage: they run with a
	// low GC target (trainingGCPercent).
	training bool
}

var commands = map[string]subcommand{
	"train":      {run: runTrain, training: true}, // rwkv-train --config ...
	"quickstart": {run: runQuickstart, training: true},
	"bench":      {run: runBench, training: true},
	"export":     {run: runExport},
	"prepare":    {run: runPrepare},
}

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name := args[0]
	switch {
	case name == "help" || name == "-h" || name == "-help" || name == "--help":
		usage(stdout)
		return exitOK
	case strings.HasPrefix(name, "-"):
		name = "train"
	case name == "train":
		fmt.Fprintf(stderr, "rwkv-train: unknown command %q (train with 'rwkv-train --config FILE')\n", name)
		usage(stderr)
		return exitUsage
	default:
		args = args[1:]
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "rwkv-train: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	if cmd.training {
		setTrainingGC()
	}
	return exitCode(ctx, name, cmd.run(ctx, args, stdout, stderr), stderr)
}

// setTrainingGC lowers the GC target for training: its tensors are large, pointer-free and
// live long, and ops reuse their outputs, so a low target costs almost no CPU and keeps the
// peak heap near the live one instead of twice it. GOGC in the environment wins. Commands that
// allocate many short-lived buffers (prepare, export) keep Go's default: at 20 % a prepare of
// many small files took 3-5x as long.
func setTrainingGC() {
	if _, ok := os.LookupEnv("GOGC"); !ok {
		debug.SetGCPercent(trainingGCPercent)
	}
}

// configError is a bad training config (file, environment or flags): exit 2.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// exitCode reports err on stderr, labelled with the command, and maps it to the exit code:
// 0 for none or -h, 130 for an interruption, 2 for a usage or config error, 1 for the rest.
func exitCode(ctx context.Context, name string, err error, stderr io.Writer) int {
	label, help := "rwkv-train "+name, "rwkv-train "+name+" -h"
	if name == "train" {
		label, help = "rwkv-train", "rwkv-train --help"
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, train.ErrInterrupted): // says where the checkpoint is
		fmt.Fprintf(stderr, "\n%s: %v\n", label, err)
		return exitInterrupted
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(stderr, "\n%s: interrupted\n", label)
		return exitInterrupted
	case errors.Is(err, cli.ErrFlags):
		return exitUsage // the flag package has said what is wrong
	case errors.As(err, new(configError)), errors.Is(err, train.ErrConfig):
		fmt.Fprintf(stderr, "%s: %v\n", label, err)
		return exitUsage
	case errors.As(err, new(cli.UsageError)), errors.Is(err, data.ErrBadConfig):
		fmt.Fprintf(stderr, "%s: %v\nRun '%s' for usage.\n", label, err, help)
		return exitUsage
	}
	fmt.Fprintf(stderr, "%s: %v\n", label, err)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: rwkv-train --config FILE [--resume [DIR]] [--key.path=value ...]
       rwkv-train <command> [flags]

Training reads a YAML recipe (see configs/); any key can be overridden as
--section.key=value or with an RWKV_SECTION_KEY environment variable.
Ctrl-C, SIGTERM or SIGHUP writes a checkpoint and exits (130); a second signal
exits at once. --resume continues from the newest checkpoint.

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
  rwkv-train --config configs/x070-pretrain-tiny.yaml      (RWKV-7 from scratch)
  rwkv-train --config configs/x060-pretrain-tiny.yaml      (RWKV-6 from scratch)
  rwkv-train export --checkpoint out/tiny/checkpoints --format pth --out out/tiny/model.pth
  rwkv-train bench --torch

exit codes: 0 done, 1 failed, 2 bad flags or config, 130 interrupted.
Run 'rwkv-train <command> -h' for the flags of a command.
`)
}
