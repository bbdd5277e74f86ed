// Command rwkv-eval measures RWKV-4, RWKV-5.2, RWKV-6 and RWKV-7 models: perplexity over a token
// file (windowed, or as one unbounded recurrent stream), LAMBADA last-word accuracy, and sampled generation.
//
//	rwkv-eval ppl --model M --data D [--mode parallel|rnn] [--json]
//	rwkv-eval lambada --model M --data lambada.jsonl --tokenizer T [--json]
//	rwkv-eval generate --model M --prompt TEXT [--tokenizer T] [--temperature ...]
//
// Ctrl-C, SIGTERM and SIGHUP stop a command (exit 130); a second signal kills it at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// Exit codes, set in one place: exitCode.
const (
	exitOK          = 0
	exitError       = 1   // the command failed
	exitUsage       = 2   // bad flags or arguments
	exitInterrupted = 130 // stopped by Ctrl-C, SIGTERM or SIGHUP
)

func main() {
	// Ctrl-C, SIGTERM (what schedulers send) and SIGHUP stop the command as rwkv-train's do:
	// exit 130; a second signal kills at once; an ignored SIGHUP (nohup) stays ignored.
	ctx, stop := cli.NotifyStop(context.Background())
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one subcommand; its error decides the exit code.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// run dispatches to a subcommand and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmds := map[string]command{"ppl": runPPL, "lambada": runLambada, "generate": runGenerate}
	name := args[0]
	switch name {
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(stderr, "rwkv-eval: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	return exitCode(ctx, name, cmd(ctx, args[1:], stdout, stderr), stderr)
}

// exitCode reports err and maps it to the exit code.
func exitCode(ctx context.Context, name string, err error, stderr io.Writer) int {
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return exitOK
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintf(stderr, "\nrwkv-eval %s: interrupted\n", name)
		return exitInterrupted
	case errors.Is(err, cli.ErrFlags):
		return exitUsage // the flag package has said what is wrong
	case errors.As(err, new(cli.UsageError)), errors.Is(err, eval.ErrOptions), errors.Is(err, data.ErrBadConfig):
		fmt.Fprintf(stderr, "rwkv-eval %s: %v\nRun 'rwkv-eval %s -h' for usage.\n", name, err, name)
		return exitUsage
	}
	fmt.Fprintf(stderr, "rwkv-eval %s: %v\n", name, err)
	return exitError
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: rwkv-eval <command> [flags]

--model takes any weights file rwkv-train can import, RWKV-4 (x040), RWKV-5.2 (x052),
RWKV-6 (x060) or RWKV-7 (x070):
an RWKV-LM .pth, safetensors (RWKV-LM or Hugging Face names), an rwkv6 or rwkv7 GGUF, a
web-rwkv .st file, a training checkpoint or out_dir, an hf export directory
(transformers for RWKV-4, the RWKV-5/6 remote-code layouts, fla-hub for RWKV-7); the
architecture and shape are inferred from it.

commands:
  ppl       perplexity, bits per token and per byte over a whole token or text file,
            in windows of --ctx-len (parallel) or as one unbounded stream (rnn)
  lambada   last-word accuracy and perplexity on LAMBADA-style jsonl ({"text": ...})
  generate  sample text from a prompt, streamed to the terminal

examples:
  rwkv-eval ppl --model out/tiny/model.safetensors --data out/tiny/data/train_val
  rwkv-eval ppl --model RWKV-4-Pile-169M.pth --data book.txt --tokenizer neox:20B_tokenizer.json --mode rnn --json
  rwkv-eval ppl --model out/hf --data val.npy --ctx-len 1024 --stride 512 --batch 4
  rwkv-eval ppl --model rwkv7-g1a-0.1b-20250728-ctx4096.pth --data book.txt --tokenizer world --mode rnn --chunk 256
  rwkv-eval lambada --model RWKV-4-Pile-169M.pth --data lambada_test.jsonl --tokenizer neox:20B_tokenizer.json
  rwkv-eval generate --model out/quickstart/model.safetensors --prompt "func main() {" --temperature 0.8 --top-p 0.9
  rwkv-eval generate --model rwkv7-0.1B-world-hf --tokenizer world --prompt "User: hi" --alpha-presence 0.5

Run 'rwkv-eval <command> -h' for the flags of a command.
`)
}
