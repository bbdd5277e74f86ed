package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// lambadaReport is what `rwkv-eval lambada --json` prints.
type lambadaReport struct {
	Model  string `json:"model"`
	Config string `json:"config"`
	Data   string `json:"data"`
	eval.LambadaResult
	Seconds float64 `json:"seconds"`
}

// runLambada implements `rwkv-eval lambada`.
func runLambada(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lambada", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	mf.register(fs)
	dataPath := fs.String("data", "", `LAMBADA jsonl: one {"text": ...} per line (required)`)
	tokSpec := fs.String("tokenizer", "", "byte, world, neox (built in), world:FILE or neox:FILE (required unless the vocab is 256)")
	batch := fs.Int("batch", 8, "examples per forward pass")
	bos := fs.Int("bos", 0, "token before each context, as RWKV's evaluation does (-1: none)")
	limit := fs.Int("max-examples", 0, "score only the first N examples (0: all)")
	asJSON := fs.Bool("json", false, "print one JSON object on stdout")
	quiet := fs.Bool("quiet", false, "do not show progress")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rwkv-eval lambada --model M --data lambada.jsonl --tokenizer T [flags]

Splits each text at its last space: the model reads the context and must predict
the last word (with its leading space, tokenised separately). An example is
correct when every target token is the greedy argmax; ppl is exp of the mean
summed target NLL per example, as RWKV's run_lambada.py reports it.

`)
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkCounts(
		count{"--batch", int64(*batch), 1, "examples per forward pass"},
		count{"--max-examples", int64(*limit), 0, "0 means all"},
	); err != nil {
		return err
	}
	if *dataPath == "" {
		return cli.Usagef("--data is required")
	}
	if *bos < -1 {
		return cli.Usagef("--bos %d, want a token id or -1", *bos)
	}
	f, err := os.Open(*dataPath)
	if err != nil {
		return err
	}
	examples, err := eval.ReadLambada(f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", *dataPath, err)
	}
	if *limit > 0 && *limit < len(examples) {
		examples = examples[:*limit]
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	tok, err := requireTokenizer(*tokSpec, m)
	if err != nil {
		return err
	}
	if *bos >= m.Config.Vocab {
		return cli.Usagef("--bos %d is outside the vocabulary [0, %d)", *bos, m.Config.Vocab)
	}
	o := eval.LambadaOptions{Batch: *batch, BOS: *bos}
	var pb *progressBar
	if !*quiet {
		pb = newProgressBar(stderr, isTerminal(stderr), "examples")
		o.Progress = pb.update
	}
	start := time.Now()
	res, err := eval.Lambada(ctx, m, tok, examples, o)
	if pb != nil {
		pb.finish()
	}
	if err != nil {
		return err
	}
	rep := lambadaReport{Model: mf.path, Config: m.Config.String(), Data: *dataPath, LambadaResult: res, Seconds: time.Since(start).Seconds()}
	if *asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	fmt.Fprintf(stdout, "model %s (%s), data %s\nexamples  %d\naccuracy  %.2f%% (%d correct)\nppl       %.3f (loss %.4f nats per target, %d target tokens)\n",
		rep.Model, rep.Config, rep.Data, res.Count, 100*res.Accuracy, res.Correct, res.PPL, res.Loss, res.TargetTokens)
	return nil
}
