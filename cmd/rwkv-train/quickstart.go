package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/train"
)

// runQuickstart implements `rwkv-train quickstart`: a byte-level model trained on the Go
// standard library's sources, which every Go installation has.
func runQuickstart(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("out", filepath.Join("out", "quickstart"), "output directory")
	goroot := fs.String("goroot", "", "Go installation whose src/ is the corpus (default: this Go's GOROOT)")
	steps := fs.Int("steps", 0, "optimiser steps (default: the built-in recipe's)")
	prompt := fs.String("prompt", "func main() {\n", "prompt for the generated sample")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: rwkv-train quickstart [flags]\n\nTrains a small byte-level RWKV-4 on $(go env GOROOT)/src, reports validation\nloss against the unigram baseline, exports it and prints a generated sample.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *steps < 0 {
		return cli.Usagef("--steps %d: want a positive number, or 0 for the recipe's", *steps)
	}
	root := *goroot
	if root == "" {
		root = findGOROOT()
	}
	prefix := filepath.Join(*out, "data", "gostd")
	fmt.Fprintf(stderr, "preparing the corpus from %s ...\n", filepath.Join(root, "src"))
	st, err := train.GoCorpus(ctx, root, prefix)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w (set --goroot to a Go installation)", err)
	}
	fmt.Fprintf(stderr, "corpus: %d files, %d training bytes, %d validation bytes\n", st.Docs+st.ValDocs, st.Tokens, st.ValTokens)
	cfg := train.QuickstartConfig(prefix, *out)
	if !blas.UsingOpenBLAS() && *steps == 0 {
		// The pure-Go BLAS is about 5x slower here: fewer steps keep the run near 5 minutes.
		cfg.Train.MaxSteps, cfg.Train.EvalEvery = 300, 150
		fmt.Fprintf(stderr, "no OpenBLAS (%s): training %d steps instead of 500; install libopenblas0 and build with cgo for the full recipe\n",
			blas.Backend(), cfg.Train.MaxSteps)
	}
	if *steps > 0 {
		cfg.Train.MaxSteps = *steps
		cfg.Train.EvalEvery = max(1, *steps/3)
		cfg.Optim.WarmupSteps = min(cfg.Optim.WarmupSteps, *steps/10)
	}
	err = trainJob(ctx, cfg, "", stdout, stderr, func(tr *train.Trainer) error {
		return quickstartReport(ctx, tr, cfg, *prompt, stdout)
	})
	if saved := savedOnInterrupt(err); saved != "" {
		return fmt.Errorf("%w; checkpoint saved as %s", err, saved)
	}
	return err
}

// quickstartReport prints the unigram baseline next to the validation result and a sample.
func quickstartReport(ctx context.Context, tr *train.Trainer, cfg train.Config, prompt string, stdout io.Writer) error {
	val, err := data.Open(cfg.Data.Val)
	if err != nil {
		return err
	}
	defer val.Close()
	h := train.UnigramEntropy(val, int(cfg.Train.EvalTokens)+1)
	if v, ok := tr.LastValidation(); ok {
		fmt.Fprintf(stdout, "bits per byte: %.3f (model) vs %.3f (unigram baseline of the same validation bytes)\n", v.BitsPerToken, h/math.Ln2)
	}
	tok := data.NewByteTokenizer()
	o := train.QuickstartSampleOptions()
	fmt.Fprintf(stdout, "\n--- sample (temperature %g, top-p %g, alpha_frequency %g on whitespace and punctuation, penalty_decay %g) ---\n%s",
		o.Temperature, o.TopP, o.AlphaFrequency, o.PenaltyDecay, prompt)
	err = eval.Generate(ctx, tr.Model, tok.Encode(prompt), o, func(t int) bool {
		stdout.Write([]byte{byte(t)})
		return true
	})
	fmt.Fprintln(stdout, "\n---")
	return err
}

// findGOROOT returns this Go's GOROOT: the one the binary was built with if it still exists,
// else what `go env GOROOT` says.
func findGOROOT() string {
	if r := runtime.GOROOT(); r != "" {
		if _, err := os.Stat(filepath.Join(r, "src")); err == nil {
			return r
		}
	}
	if b, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		return strings.TrimSpace(string(b))
	}
	return ""
}
