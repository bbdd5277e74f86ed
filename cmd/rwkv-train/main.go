// Command rwkv-train trains RWKV-4 language models and prepares their data.
//
//	rwkv-train prepare --tokenizer byte|world:FILE|neox:FILE --output PREFIX INPUT...
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
)

// Exit codes, set in one place.
const (
	exitOK          = 0
	exitError       = 1   // the command failed
	exitUsage       = 2   // bad flags or arguments
	exitInterrupted = 130 // stopped by Ctrl-C
)

func main() {
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
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "rwkv-train: unknown command %q\n", args[0])
	usage(stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: rwkv-train <command> [flags]

commands:
  prepare   tokenize text, directories or .jsonl into a binidx corpus

Run 'rwkv-train <command> -h' for the flags of a command.
`)
}
