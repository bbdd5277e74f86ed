package eval

import (
	"context"
	"errors"
	"fmt"

	"github.com/rwkv-go/rwkv-go/model"
)

// Mode is how Perplexity runs the model over the stream.
type Mode string

const (
	// Parallel scores the stream in windows of CtxLen tokens with the graph (training) form; each
	// window starts from a fresh state, so no prediction sees more than CtxLen tokens.
	Parallel Mode = "parallel"
	// RNN runs the whole stream as one sequence with the recurrent form, carrying the state from
	// token to token: context is unbounded and memory constant.
	RNN Mode = "rnn"
)

// ParseMode accepts "parallel" and "rnn".
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case Parallel, RNN:
		return m, nil
	}
	return "", fmt.Errorf("eval: %w: mode %q, want parallel or rnn", ErrOptions, s)
}

// ErrOptions is wrapped by every invalid-option error.
var ErrOptions = errors.New("invalid evaluation options")

// Source is a token stream read in order: *data.Tokens and Ints satisfy it.
type Source interface {
	Len() int
	// Read writes tokens [off, off+n) to dst, reusing its storage, and returns it. An error
	// (for *data.Tokens, a file truncated while in use: data.ErrTruncated) ends the evaluation.
	Read(off, n int, dst []int) ([]int, error)
}

// Ints is an in-memory Source.
type Ints []int

func (s Ints) Len() int { return len(s) }

func (s Ints) Read(off, n int, dst []int) ([]int, error) {
	return append(dst[:0], s[off:off+n]...), nil
}

// Options control Perplexity. The zero value of each field but CtxLen is a usable default.
type Options struct {
	Mode   Mode // Parallel (default) or RNN
	CtxLen int  // window length in Parallel mode; required there
	// Stride is how far each Parallel window advances; only its last Stride targets are scored,
	// the rest being context. 0 means CtxLen (non-overlapping windows).
	Stride int
	Batch  int // windows per graph run in Parallel mode; 0 means 1
	// Chunk > 1 makes RNN mode feed the stream through the graph form Chunk tokens at a time,
	// carrying the state between chunks: the same unbounded context, computed faster.
	Chunk int
	// MaxTokens > 0 stops after scoring that many tokens.
	MaxTokens int64
	// Mask, if not nil, scores only the targets at the stream positions where it is true (the
	// responses of instruction data, data.Mask.At); the others are context only.
	Mask func(pos int) bool
	// BucketSize > 0 reports the loss per BucketSize stream positions (Result.Buckets).
	BucketSize int64
	// Progress, if not nil, is called with (scored, total) as scoring advances: after each batch
	// of windows, or every ProgressEvery tokens in RNN mode.
	Progress      func(done, total int64)
	ProgressEvery int64 // RNN mode; 0 means 1024
	// Shards > 1 scores only the Parallel windows k with k % Shards == Shard (data-parallel
	// validation: each rank scores its share, and the sums of Loss·Tokens and of Tokens over
	// the ranks give the whole stream's loss). A shard with no window has Tokens 0.
	Shard, Shards int
}

// Perplexity scores src with m in a fixed order: the first token is context only and every later
// token is scored once (up to MaxTokens). It returns the mean negative log-likelihood and what
// follows from it; ctx cancels between windows or tokens.
func Perplexity(ctx context.Context, m *model.Model, src Source, o Options) (Result, error) {
	total := int64(src.Len() - 1)
	if o.MaxTokens > 0 && o.MaxTokens < total {
		total = o.MaxTokens
	}
	if total < 1 {
		return Result{}, fmt.Errorf("eval: perplexity: %d tokens, need at least 2", src.Len())
	}
	if o.Mode == "" {
		o.Mode = Parallel
	}
	if o.Shards > 1 && (o.Mode != Parallel || o.Shard < 0 || o.Shard >= o.Shards) {
		return Result{}, fmt.Errorf("eval: %w: shard %d of %d in %s mode, want parallel mode and 0 <= shard < shards", ErrOptions, o.Shard, o.Shards, o.Mode)
	}
	t := &tally{size: o.BucketSize, mask: o.Mask}
	var err error
	switch o.Mode {
	case Parallel:
		err = parallelScore(ctx, m, src, total, o, t)
	case RNN:
		err = rnnScore(ctx, m, src, total, o, t)
	default:
		_, err = ParseMode(string(o.Mode))
	}
	if err != nil {
		return Result{}, err
	}
	if t.n == 0 {
		if o.Shards > 1 { // this shard drew no window (or no masked target): the others did
			return Result{Mode: o.Mode}, nil
		}
		return Result{}, fmt.Errorf("eval: perplexity: none of the %d targets is in the mask", total)
	}
	return t.result(o.Mode), nil
}
