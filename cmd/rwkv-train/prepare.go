package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// runPrepare implements `rwkv-train prepare`: it tokenizes the inputs into a
// binidx corpus and prints tokens, documents and the magic prime.
func runPrepare(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prepare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tokSpec := fs.String("tokenizer", "", "byte, world or neox (built in), or world:FILE (rwkv_vocab_v20230424.txt format) or neox:FILE (tokenizer.json)")
	output := fs.String("output", "", "binidx prefix to write: PREFIX.bin and PREFIX.idx")
	valOutput := fs.String("val-output", "", "binidx prefix of the validation split (default PREFIX_val)")
	valFraction := fs.Float64("val-fraction", 0, "fraction of documents held out for validation, spread evenly")
	ctxLen := fs.Int("ctx-len", 1024, "ctx_len for which to print the magic prime (with --sft, also to count the samples longer than it)")
	quiet := fs.Bool("quiet", false, "do not show progress")
	sft := fs.Bool("sft", false, "instruction data: each .jsonl line a prompt/response pair or chat messages, rendered with the RWKV World chat template; writes PREFIX.mask (loss on the responses only)")
	sftFields := fs.String("sft-fields", "", "with --sft, the PROMPT,RESPONSE keys (e.g. query,response); default: prompt,response, else query,response, else messages")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rwkv-train prepare --tokenizer byte|world|neox|world:FILE|neox:FILE --output PREFIX [flags] INPUT...

INPUT is a text file (one document), a directory of them, or a .jsonl file
(one JSON object with a "text" string per line, one document each; the key is
case-sensitive and blank lines are skipped). Token 0 ends every document.
Text is read as UTF-8: invalid sequences become U+FFFD, as Python's
errors="replace" makes them, and the summary counts the documents that had any.
PREFIX.lock keeps a second prepare off the same output while one runs.

With --sft every INPUT is a .jsonl of instruction samples, one a line:
  {"prompt": "...", "response": "..."}   (keys set by --sft-fields)
  {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
rendered as "User: q\n\nAssistant: a\n\n" (System: likewise) and ended by
token 0. PREFIX.mask marks the assistant's tokens and the 0: training takes
its loss on those only.

`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return cli.ErrFlags
	}
	switch {
	case *tokSpec == "":
		return cli.Usagef("--tokenizer is required")
	case *output == "":
		return cli.Usagef("--output is required")
	case fs.NArg() == 0:
		return cli.Usagef("no INPUT given")
	case !(*valFraction >= 0 && *valFraction < 1): // NaN too
		return cli.Usagef("--val-fraction %v: want a number in [0, 1)", *valFraction)
	case *ctxLen < 1:
		return cli.Usagef("--ctx-len must be at least 1")
	}
	if *sftFields != "" && !*sft {
		return cli.Usagef("--sft-fields needs --sft")
	}
	fields, err := data.ParseSFTFields(*sftFields)
	if err != nil {
		return cli.Usagef("--sft-fields %q: want two different keys, PROMPT,RESPONSE (e.g. query,response)", *sftFields)
	}
	tok, err := data.ParseTokenizer(*tokSpec)
	if err != nil {
		return err // data.ErrBadConfig: a usage error
	}
	opt := data.PrepareOptions{Inputs: fs.Args(), Output: *output, ValOutput: *valOutput,
		Tokenizer: tok, ValFraction: *valFraction, CtxLen: *ctxLen, SFT: *sft, SFTFields: fields}
	var progress func(done, total int64)
	if !*quiet {
		progress = progressPrinter(stderr)
	}
	st, err := data.Prepare(ctx, opt, progress)
	if progress != nil {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w: %v", ctx.Err(), err) // exit 130
		}
		return err
	}
	fmt.Fprintf(stdout, "wrote %s.bin and %s.idx: %d tokens, %d documents (tokenizer %s, vocab %d)\n",
		*output, *output, st.Tokens, st.Docs, tok.Name(), tok.VocabSize())
	if st.ValDocs > 0 {
		val := opt.ValOutput
		if val == "" {
			val = *output + "_val"
		}
		fmt.Fprintf(stdout, "wrote %s.bin and %s.idx: %d tokens, %d documents (validation)\n", val, val, st.ValTokens, st.ValDocs)
	}
	if *sft {
		fmt.Fprintf(stdout, "wrote %s.mask: loss on %d of %d tokens (the responses)\n", *output, st.LearnTokens, st.Tokens)
		if st.ValDocs > 0 {
			fmt.Fprintf(stdout, "wrote %s.mask: loss on %d of %d tokens (validation)\n", cmp.Or(opt.ValOutput, *output+"_val"), st.ValLearnTokens, st.ValTokens)
		}
		if st.LongSamples > 0 {
			fmt.Fprintf(stdout, "%d samples are longer than ctx_len+1 = %d tokens: one sample a row (data.dataload pad) cuts them; raise model.ctx_len or use packed\n",
				st.LongSamples, *ctxLen+1)
		}
	}
	if st.InvalidUTF8 > 0 {
		fmt.Fprintf(stdout, "%d documents had invalid UTF-8: each invalid sequence became U+FFFD, as Python's errors=\"replace\" does\n", st.InvalidUTF8)
	}
	if st.MagicPrime > 0 {
		fmt.Fprintf(stdout, "magic_prime %d for ctx_len %d\n--my_exit_tokens %d --magic_prime %d --ctx_len %d\n",
			st.MagicPrime, st.CtxLen, st.Tokens, st.MagicPrime, st.CtxLen)
	} else {
		fmt.Fprintf(stdout, "no magic prime: %d tokens are too few for ctx_len %d\n", st.Tokens, st.CtxLen)
	}
	return nil
}

// progressPrinter shows bytes read, rate and percentage on one updating line.
func progressPrinter(w io.Writer) func(done, total int64) {
	start := time.Now()
	return func(done, total int64) {
		pct := 100.0
		if total > 0 {
			pct = 100 * float64(done) / float64(total)
		}
		mb := float64(done) / (1 << 20)
		rate := mb / max(time.Since(start).Seconds(), 1e-9)
		fmt.Fprintf(w, "\rprepare: %5.1f%%  %.1f / %.1f MiB  %.1f MiB/s", pct, mb, float64(total)/(1<<20), rate)
	}
}
