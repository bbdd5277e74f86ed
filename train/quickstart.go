package train

import (
	"context"
	"fmt"
	"io/fs"
	"math"
	"path/filepath"
	"sort"
	"strings"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
)

// GoCorpus writes the Go standard library's sources under goroot/src as a byte-level binidx
// corpus at prefix (training) and prefix_val (validation): every .go file outside testdata
// directories is one document, in sorted path order, and every 20th file is held out. The
// split depends only on the file list, so it is the same on every machine with the same Go.
func GoCorpus(ctx context.Context, goroot, prefix string) (data.PrepareStats, error) {
	src := filepath.Join(goroot, "src")
	var files []string
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return data.PrepareStats{}, fmt.Errorf("quickstart corpus: %w", err)
	}
	if len(files) < 20 {
		return data.PrepareStats{}, fmt.Errorf("quickstart corpus: only %d .go files under %s; is GOROOT right?", len(files), src)
	}
	sort.Strings(files)
	return data.Prepare(ctx, data.PrepareOptions{Inputs: files, Output: prefix, ValOutput: prefix + "_val",
		Tokenizer: data.NewByteTokenizer(), ValFraction: 0.05}, nil)
}

// QuickstartConfig is the built-in job of `rwkv-train quickstart`: a byte-level L4-D128 model
// on the Go corpus at prefix, sized to finish in a few minutes on two cores.
func QuickstartConfig(prefix, outDir string) Config {
	c := DefaultConfig()
	c.Model.Config = model.Config{Layers: 4, Embd: 128, Vocab: 256, CtxLen: 128}
	c.Data = data.Config{Train: prefix, Val: prefix + "_val", Sampling: "random"}
	c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = 4e-3, 4e-4, 20
	// 500 steps of 2048 tokens: about 1.5 minutes with OpenBLAS and the AVX2 kernels, about 7
	// with the pure-Go fallback (measured on 2 cores), and far below the unigram baseline.
	c.Train.MicroBsz, c.Train.MaxSteps = 16, 500
	c.Train.EvalEvery, c.Train.EvalTokens, c.Train.LogEvery = 250, 1<<16, 25
	c.Checkpoint.Keep = 2
	c.OutDir = outDir
	return c
}

// QuickstartExempt are the bytes the quickstart's sample leaves out of its frequency penalty:
// those that spell identifiers and numbers.
const QuickstartExempt = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"

// QuickstartSampleOptions are the sampling settings of the quickstart's Go snippet, chosen by
// sampling 36 seeds from the quickstart model (2.39 bits per byte) and comparing with 300-byte
// windows of real Go. Without penalties, at any temperature low enough to spell identifiers
// (0.5: 93% of the words exist in Go's sources), the model falls into runs of tabs, newlines and
// braces (half the bytes whitespace, the longest run 180 bytes; real Go: 20% and 29). ChatRWKV's
// remedy is tuned for word-level vocabularies and fails here: it exempts spaces, tabs and digits
// from the frequency penalty and penalises letters, which keeps the runs of whitespace (50%, a
// 165-byte run), and its presence penalty of 0.2 brings back long runs (97 bytes) on top of the
// settings below. A byte-level model needs the opposite: a frequency penalty with a short
// memory (decay 0.9, about the last ten bytes) on whitespace and punctuation only, letters,
// digits and '_' exempt, no presence penalty. With it: 21% whitespace, longest run 7 bytes, 93%
// known words. The end-of-document byte is banned, as ChatRWKV's chat bans END_OF_TEXT, so the
// snippet is always MaxTokens long.
func QuickstartSampleOptions() eval.SampleOptions {
	bytes := func(t int) string { return string([]byte{byte(t)}) }
	return eval.SampleOptions{
		Temperature: 0.5, TopP: 0.9,
		AlphaFrequency: 0.5, PenaltyDecay: 0.9, PenaltyExempt: eval.ExemptTokens(256, bytes, QuickstartExempt),
		Ban:  []int{0},
		Seed: 1, MaxTokens: 300, StopToken: -1,
	}
}

// UnigramEntropy is the entropy in nats of the token frequencies of the first n tokens of toks
// (all when n <= 0): the loss of the best model that ignores context, a baseline any trained
// model must beat.
func UnigramEntropy(toks *data.Tokens, n int) float64 {
	if n <= 0 || n > toks.Len() {
		n = toks.Len()
	}
	counts := map[int]int{}
	buf := make([]int, 0, 1<<16)
	for off := 0; off < n; off += 1 << 16 {
		buf = toks.Slice(off, min(1<<16, n-off), buf)
		for _, t := range buf {
			counts[t]++
		}
	}
	var h float64
	for _, c := range counts {
		p := float64(c) / float64(n)
		h -= p * math.Log(p)
	}
	return h
}
