package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// pplReport is what `rwkv-eval ppl --json` prints: the measurement and how it was made.
type pplReport struct {
	Model  string `json:"model"`
	Config string `json:"config"`
	Data   string `json:"data"`
	Format string `json:"format"`
	CtxLen int    `json:"ctx_len,omitempty"` // parallel mode
	Stride int    `json:"stride,omitempty"`  // parallel mode
	eval.Result
	Seconds      float64 `json:"seconds"`
	TokensPerSec float64 `json:"tokens_per_sec"`
}

// dataOpened, set by tests, runs after --data is opened and checked, before scoring.
var dataOpened func()

// runPPL implements `rwkv-eval ppl`.
func runPPL(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ppl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	mf.register(fs)
	dataPath := fs.String("data", "", "binidx prefix, .npy token array, or text file (with --tokenizer) (required)")
	format := fs.String("format", "auto", "data format: auto, binidx, npy or text")
	tokSpec := fs.String("tokenizer", "", "byte, world, neox (built in), world:FILE or neox:FILE: encodes text data and counts bytes for bits_per_byte")
	modeName := fs.String("mode", "parallel", "parallel: windows of --ctx-len; rnn: one unbounded stream, state carried token to token")
	stride := fs.Int("stride", 0, "parallel: advance windows by this many tokens, scoring only the new ones (default --ctx-len)")
	batch := fs.Int("batch", 1, "parallel: windows per forward pass")
	chunk := fs.Int("chunk", 0, "rnn: run the stream through the graph this many tokens at a time, carrying the state (same result, faster); 0: token by token")
	maxTokens := fs.Int64("max-tokens", 0, "stop after scoring this many tokens (0: the whole file)")
	bucket := fs.Int64("bucket", 1000, "report the loss per this many stream positions (0: off)")
	asJSON := fs.Bool("json", false, "print one JSON object on stdout")
	quiet := fs.Bool("quiet", false, "do not show progress")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rwkv-eval ppl --model M --data D [flags]

Scores every token of D but the first, in order, and prints the mean negative
log-likelihood (nats/token), perplexity, bits per token and, for byte-level or
tokenised text data, bits per byte. Mode rnn carries the state across the whole
file, so context is unbounded and memory constant; its JSON has the loss per
--bucket positions.

`)
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if err := checkCounts(
		count{"--batch", int64(*batch), 1, "windows per forward pass"},
		count{"--stride", int64(*stride), 0, "0 means --ctx-len"},
		count{"--chunk", int64(*chunk), 0, "0 means token by token"},
		count{"--max-tokens", *maxTokens, 0, "0 means the whole file"},
		count{"--bucket", *bucket, 0, "0 means off"},
	); err != nil {
		return err
	}
	mode, err := eval.ParseMode(*modeName)
	if err != nil {
		return err
	}
	if *dataPath == "" {
		return cli.Usagef("--data is required")
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	tok, err := tokenizer(*tokSpec, m)
	if err != nil {
		return err
	}
	src, fmtName, closeSrc, err := openData(*dataPath, *format, tok, m.Config.Vocab)
	if err != nil {
		return err
	}
	defer closeSrc()
	if dataOpened != nil {
		dataOpened()
	}
	o := eval.Options{Mode: mode, CtxLen: mf.ctxLen, Stride: *stride, Batch: *batch, Chunk: *chunk,
		MaxTokens: *maxTokens, BucketSize: *bucket}
	var pb *progressBar
	if !*quiet {
		pb = newProgressBar(stderr, isTerminal(stderr), "tokens")
		o.Progress = pb.update
	}
	start := time.Now()
	res, err := eval.Perplexity(ctx, m, src, o)
	if pb != nil {
		pb.finish()
	}
	if err != nil {
		return err
	}
	sec := time.Since(start).Seconds()
	nb, err := scoredBytes(src, res.Tokens, tok)
	if err != nil {
		return err
	}
	res.SetBytes(nb)
	rep := pplReport{Model: mf.path, Config: m.Config.String(), Data: *dataPath, Format: fmtName, Result: res,
		Seconds: sec, TokensPerSec: float64(res.Tokens) / sec}
	if mode == eval.Parallel {
		rep.CtxLen, rep.Stride = mf.ctxLen, max(*stride, 0)
		if rep.Stride == 0 {
			rep.Stride = mf.ctxLen
		}
	}
	if *asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	printPPL(stdout, rep)
	return nil
}

// openData opens --data: a binidx prefix, a .npy array, or text encoded with tok.
func openData(path, format string, tok data.Tokenizer, vocab int) (eval.Source, string, func(), error) {
	if format == "auto" {
		format = detectFormat(path)
	}
	switch format {
	case "binidx", "npy":
		toks, err := data.OpenFormat(path, format)
		if err != nil {
			return nil, "", nil, err
		}
		if err := toks.CheckVocab(vocab); err != nil {
			toks.Close()
			return nil, "", nil, err
		}
		return toks, format, func() { toks.Close() }, nil
	case "text":
		if tok == nil {
			return nil, "", nil, cli.Usagef("text data %s needs --tokenizer (byte is the default only for a vocab-256 model)", path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, "", nil, err
		}
		ids := tok.Encode(string(b))
		for i, id := range ids {
			if id >= vocab {
				return nil, "", nil, fmt.Errorf("%s: token %d at position %d is outside the model's vocabulary [0, %d)", path, id, i, vocab)
			}
		}
		return eval.Ints(ids), "text", func() {}, nil
	}
	return nil, "", nil, cli.Usagef("--format %q, want auto, binidx, npy or text", format)
}

// detectFormat: .npy is npy; a path whose PREFIX.idx exists is binidx; anything else is text.
func detectFormat(path string) string {
	switch {
	case strings.HasSuffix(path, ".npy"):
		return "npy"
	case strings.HasSuffix(path, ".idx"), strings.HasSuffix(path, ".bin"):
		return "binidx"
	}
	if _, err := os.Stat(path + ".idx"); err == nil {
		return "binidx"
	}
	return "text"
}

// scoredBytes is the UTF-8 length of the n scored tokens (positions 1..n), or 0 when no
// tokenizer says what bytes they stand for.
func scoredBytes(src eval.Source, n int64, tok data.Tokenizer) (int64, error) {
	if tok == nil {
		return 0, nil
	}
	if _, ok := tok.(data.ByteTokenizer); ok {
		return n, nil
	}
	var total int64
	buf := make([]int, 0, 1<<16)
	for off := int64(1); off <= n; off += int64(cap(buf)) {
		k := min(int64(cap(buf)), n+1-off)
		var err error
		if buf, err = src.Read(int(off), int(k), buf); err != nil {
			return 0, err
		}
		total += int64(len(tok.Decode(buf)))
	}
	return total, nil
}

func printPPL(w io.Writer, r pplReport) {
	fmt.Fprintf(w, "model %s (%s), data %s (%s), mode %s", r.Model, r.Config, r.Data, r.Format, r.Mode)
	if r.Mode == eval.Parallel {
		fmt.Fprintf(w, ", ctx_len %d, stride %d", r.CtxLen, r.Stride)
	}
	fmt.Fprintf(w, "\ntokens scored   %d\nloss            %.6f nats/token\nperplexity      %.4f\nbits per token  %.6f\n",
		r.Tokens, r.Loss, r.PPL, r.BitsPerToken)
	if r.Bytes > 0 {
		fmt.Fprintf(w, "bits per byte   %.6f (%d bytes)\n", r.BitsPerByte, r.Bytes)
	}
	fmt.Fprintf(w, "speed           %.1f tokens/s (%.1f s)\n", r.TokensPerSec, r.Seconds)
	if len(r.Buckets) > 1 {
		step := (len(r.Buckets) + 19) / 20
		fmt.Fprintf(w, "loss by position (every %d of %d buckets):\n", step, len(r.Buckets))
		for i := 0; i < len(r.Buckets); i += step {
			b := r.Buckets[i]
			fmt.Fprintf(w, "  %10d  %8.4f  ppl %9.3f  (%d tokens)\n", b.Start, b.Loss, b.PPL, b.Tokens)
		}
	}
}
