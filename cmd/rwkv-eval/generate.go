package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/internal/cli"
)

// runGenerate implements `rwkv-eval generate`.
func runGenerate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var mf modelFlags
	mf.register(fs)
	prompt := fs.String("prompt", "", "text to continue (required)")
	tokSpec := fs.String("tokenizer", "", "byte, world, neox (built in), world:FILE or neox:FILE (required unless the vocab is 256)")
	d := eval.DefaultSampleOptions() // ChatRWKV's PIPELINE_ARGS defaults
	temperature := fs.Float64("temperature", d.Temperature, "sampling temperature; 0: greedy")
	topP := fs.Float64("top-p", d.TopP, "nucleus sampling: keep the most likely tokens up to this probability, before the temperature (0: greedy, 1: off)")
	topK := fs.Int("top-k", d.TopK, "keep only the k most likely tokens (0: off)")
	presence := fs.Float64("alpha-presence", d.AlphaPresence, "subtract this from the logit of every token already generated (ChatRWKV's alpha_presence; 0: off)")
	frequency := fs.Float64("alpha-frequency", d.AlphaFrequency, "subtract this per decayed occurrence of a generated token (ChatRWKV's alpha_frequency; 0: off)")
	decay := fs.Float64("penalty-decay", d.PenaltyDecay, "multiply every occurrence count by this after each token, 0..1 (ChatRWKV's alpha_decay / penalty_decay; 1: never forget)")
	exempt := fs.String("penalty-exempt", eval.ChatRWKVExempt, "characters whose tokens get no frequency penalty, as ChatRWKV's space, tab and digits (empty: none)")
	ban := fs.String("ban", "", "comma-separated token ids never to generate (ChatRWKV's token_ban)")
	seed := fs.Int64("seed", -1, "random seed (-1: from the clock, printed on stderr)")
	maxTokens := fs.Int("max-tokens", 200, "token budget")
	stop := fs.Int("stop-token", 0, "stop after this token (0: end of document; -1: never)")
	echo := fs.Bool("echo", true, "print the prompt before the continuation")
	fs.Usage = func() {
		fmt.Fprint(stderr, `usage: rwkv-eval generate --model M --prompt TEXT [flags]

Reads the prompt with the recurrent form, then samples up to --max-tokens tokens,
writing each to stdout as soon as it completes a UTF-8 character.

Sampling follows ChatRWKV's PIPELINE.generate, and the defaults are its PIPELINE_ARGS':
each generated token's logit is lowered by alpha_presence + count*alpha_frequency, where
the count grows by 1 each time the token is generated (by 0 for --penalty-exempt tokens)
and every count is multiplied by --penalty-decay after each token; then top-p and top-k
keep the likeliest tokens and the draw is at --temperature. --alpha-presence 0
--alpha-frequency 0 samples the model's own distribution.

`)
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *prompt == "" {
		return cli.Usagef("--prompt is required")
	}
	if *maxTokens < 0 {
		return cli.Usagef("--max-tokens %d, want >= 0", *maxTokens)
	}
	if err := checkSampleFlags(*temperature, *topP, *topK, *presence, *frequency, *decay); err != nil {
		return err
	}
	banned, err := parseTokenList("--ban", *ban)
	if err != nil {
		return err
	}
	m, err := mf.load()
	if err != nil {
		return err
	}
	tok, err := requireTokenizer(*tokSpec, m)
	if err != nil {
		return err
	}
	for _, t := range banned {
		if t >= m.Config.Vocab {
			return cli.Usagef("--ban: token %d, but the model's vocabulary is 0..%d", t, m.Config.Vocab-1)
		}
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
	o := eval.SampleOptions{Temperature: *temperature, TopP: *topP, TopK: *topK,
		AlphaPresence: *presence, AlphaFrequency: *frequency, PenaltyDecay: *decay, Ban: banned,
		Seed: s, MaxTokens: *maxTokens, StopToken: *stop}
	if *exempt != "" {
		o.PenaltyExempt = eval.ExemptTokens(tok.VocabSize(), func(t int) string { return tok.Decode([]int{t}) }, *exempt)
	}
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

// checkSampleFlags refuses sampling flags out of range, naming the flag.
func checkSampleFlags(temperature, topP float64, topK int, presence, frequency, decay float64) error {
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !finite(temperature) || temperature < 0:
		return cli.Usagef("--temperature %g, want >= 0 (0: greedy)", temperature)
	case math.IsNaN(topP) || topP < 0 || topP > 1:
		return cli.Usagef("--top-p %g, want 0..1 (0: greedy, 1: off)", topP)
	case topK < 0:
		return cli.Usagef("--top-k %d, want >= 0 (0: off)", topK)
	case !finite(presence):
		return cli.Usagef("--alpha-presence %g, want a finite number", presence)
	case !finite(frequency):
		return cli.Usagef("--alpha-frequency %g, want a finite number", frequency)
	case math.IsNaN(decay) || decay < 0 || decay > 1:
		return cli.Usagef("--penalty-decay %g, want 0..1 (1: never forget)", decay)
	}
	return nil
}

// parseTokenList parses a comma-separated list of token ids given to flag.
func parseTokenList(flag, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		t, err := strconv.Atoi(f)
		if err != nil || t < 0 {
			return nil, cli.Usagef("%s: %q is not a token id (want comma-separated integers >= 0)", flag, f)
		}
		out = append(out, t)
	}
	return out, nil
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
