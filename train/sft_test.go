package train

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// sftCorpus prepares instruction data whose prompts are random letters (nothing to learn)
// and whose responses are one fixed answer: the loss on the responses can fall near zero,
// while a loss that counted the prompts could not fall below the letters' entropy.
func sftCorpus(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	var b strings.Builder
	for i := range 64 {
		q := make([]byte, 8)
		for j := range q {
			q[j] = byte('a' + rng.IntN(26))
		}
		if i%2 == 0 {
			fmt.Fprintf(&b, `{"prompt": %q, "response": "ok"}`+"\n", q)
		} else {
			fmt.Fprintf(&b, `{"messages": [{"role": "user", "content": %q}, {"role": "assistant", "content": "ok"}]}`+"\n", q)
		}
	}
	in := filepath.Join(dir, "sft.jsonl")
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "sft")
	if _, err := data.Prepare(context.Background(), data.PrepareOptions{Inputs: []string{in}, Output: out,
		Tokenizer: data.NewByteTokenizer(), SFT: true, ValFraction: 0.125}, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSFTRunResponseLossFalls fine-tunes a tiny model on padded instruction rows: the
// training loss, taken on the response tokens only, falls from about ln 256 to near zero. A
// loss over every token could not go below the prompts' share of entropy, 8 letters of ln 26
// in 32 tokens = 0.81 (with data.mask none this run ends at 0.97).
func TestSFTRunResponseLossFalls(t *testing.T) {
	if data.IgnoreTarget != model.IgnoreTarget {
		t.Fatalf("data.IgnoreTarget %d != model.IgnoreTarget %d", data.IgnoreTarget, model.IgnoreTarget)
	}
	prefix := sftCorpus(t)
	c := DefaultConfig()
	// "User: xxxxxxxx\n\nAssistant: ok\n\n" and token 0 is 32 bytes: one sample a row.
	c.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32}
	c.Data = data.Config{Train: prefix, Val: prefix + "_val", Sampling: "random"} // PREFIX.mask is found, dataload pad
	c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = 1e-2, 3e-3, 2
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.EvalEvery = 4, 40, 0
	c.OutDir = t.TempDir()
	tr := newTrainer(t, c, Options{})
	before, err := tr.Validate()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	after, err := tr.Validate()
	if err != nil {
		t.Fatal(err)
	}
	// Validation scores the held-out responses only (8 samples, " ok\n\n" and 0: 6 tokens each).
	if before.Tokens != 8*6 || after.Tokens != 8*6 || !(after.Loss < 0.3) || !(before.Loss > 4.5) {
		t.Errorf("validation on %d, %d tokens: loss %.3f -> %.3f; want 48 response tokens, loss from about 5.5 to under 0.3",
			before.Tokens, after.Tokens, before.Loss, after.Loss)
	}
	h := tr.History()
	mean := func(p []Point) float64 {
		var s float64
		for _, x := range p {
			s += x.Loss
		}
		return s / float64(len(p))
	}
	first, last := mean(h[:3]), mean(h[len(h)-5:])
	t.Logf("response-token loss %.3f -> %.3f over %d steps; held-out responses %.3f -> %.3f", first, last, len(h), before.Loss, after.Loss)
	if !(first > 4.5) || !(last < 0.3) {
		t.Fatalf("response-token loss %.3f -> %.3f, want it to fall from about ln 256 = 5.5 to under 0.3", first, last)
	}
}

func TestSFTMaskRefusesChunks(t *testing.T) {
	prefix := sftCorpus(t)
	c := DefaultConfig()
	c.Model.Config = model.Config{Layers: 1, Embd: 32, Vocab: 256, CtxLen: 32}
	c.Data = data.Config{Train: prefix}
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.ChunkLen = 2, 2, 16
	c.OutDir = t.TempDir()
	_, err := New(c, nil, Options{})
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "sft.mask") {
		t.Fatalf("error %v, want ErrConfig naming the mask", err)
	}
}
