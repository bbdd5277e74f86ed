package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/rwkv-go/rwkv-go/eval"
)

// runGenerate implements `rwkv-eval generate`.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	mf.register(fs)
	prompt := fs.String("prompt", "", "text to continue (required)")
	tokSpec := fs.String("tokenizer", "", "byte, world:FILE or neox:FILE (required unless the vocab is 256)")
	temperature := fs.Float64("temperature", 1.0, "sampling temperature; 0: greedy")
	topP := fs.Float64("top-p", 0.85, "nucleus sampling: keep the most likely tokens up to this probability (1: off)")
	topK := fs.Int("top-k", 0, "keep only the k most likely tokens (0: off)")
	seed := fs.Int64("seed", -1, "random seed (-1: from the clock, printed on stderr)")
	maxTokens := fs.Int("max-tokens", 200, "token budget")
	stop := fs.Int("stop-token", 0, "stop after this token (0: end of document; -1: never)")
	echo := fs.Bool("echo", true, "print the prompt before the continuation")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rwkv-eval generate --model M --prompt TEXT [flags]

Reads the prompt with the recurrent form, then samples up to --max-tokens tokens,
writing each to stdout as soon as it completes a UTF-8 character.

`)
		fs.PrintDefaults()
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if *prompt == "" {
		return usagef("--prompt is required")
	}
	if *maxTokens < 0 {
		return usagef("--max-tokens %d, want >= 0", *maxTokens)
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	tok, err := requireTokenizer(*tokSpec, m)
	if err != nil {
		return err
	}
	s := uint64(*seed)
	if *seed < 0 {
		s = uint64(time.Now().UnixNano())
		fmt.Fprintf(stderr, "seed %d\n", s)
	}
	ids := tok.Encode(*prompt)
	if *echo {
		fmt.Fprint(stdout, *prompt)
	}
	out := &utf8Writer{w: stdout}
	o := eval.SampleOptions{Temperature: *temperature, TopP: *topP, TopK: *topK, Seed: s, MaxTokens: *maxTokens, StopToken: *stop}
	err = eval.Generate(ctx, m, ids, o, func(t int) bool {
		if t == *stop {
			return true
		}
		return out.write(tok.Decode([]int{t})) == nil
	})
	if ferr := out.flush(); err == nil {
		err = ferr
	}
	fmt.Fprintln(stdout)
	return err
}

// utf8Writer writes text as it arrives but holds back a trailing incomplete UTF-8 sequence
// until the tokens that complete it come, so a character split across tokens prints whole.
type utf8Writer struct {
	w       io.Writer
	pending []byte
	err     error
}

func (u *utf8Writer) write(s string) error {
	u.pending = append(u.pending, s...)
	n := completePrefix(u.pending)
	if n > 0 && u.err == nil {
		_, u.err = u.w.Write(u.pending[:n])
	}
	u.pending = append(u.pending[:0], u.pending[n:]...)
	return u.err
}

func (u *utf8Writer) flush() error {
	if len(u.pending) > 0 && u.err == nil {
		_, u.err = u.w.Write(u.pending)
	}
	u.pending = u.pending[:0]
	return u.err
}

// completePrefix is the length of b without a trailing incomplete (but so far valid) UTF-8
// sequence.
func completePrefix(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			break
		}
	}
	return len(b)
}
