package eval

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// LambadaExample is one last-word prediction task: Target (the last word with its leading space)
// follows Context.
type LambadaExample struct {
	Context, Target string
}

// ErrLambadaLine is wrapped by ReadLambada's errors about a line.
var ErrLambadaLine = errors.New("bad LAMBADA line")

// ReadLambada reads LAMBADA jsonl: one {"text": "..."} object per line, blank lines skipped. As
// RWKV's evaluation does, the context is the text before the last space and the target is " "
// plus the word after it.
func ReadLambada(r io.Reader) ([]LambadaExample, error) {
	var out []LambadaExample
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16<<20)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var doc struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("eval: lambada line %d: %w: %v", line, ErrLambadaLine, err)
		}
		if doc.Text == nil {
			return nil, fmt.Errorf("eval: lambada line %d: %w: no \"text\" field", line, ErrLambadaLine)
		}
		i := strings.LastIndexByte(*doc.Text, ' ')
		if i < 0 {
			return nil, fmt.Errorf("eval: lambada line %d: %w: text has no space to split off the last word", line, ErrLambadaLine)
		}
		out = append(out, LambadaExample{Context: (*doc.Text)[:i], Target: (*doc.Text)[i:]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("eval: lambada: %w", err)
	}
	return out, nil
}

// LambadaResult is last-word accuracy and perplexity, as RWKV's run_lambada.py reports them.
type LambadaResult struct {
	Count    int     `json:"count"`    // examples
	Correct  int     `json:"correct"`  // examples whose every target token was the greedy argmax
	Accuracy float64 `json:"accuracy"` // Correct / Count
	// Loss is the mean over examples of the summed NLL of the target's tokens (nats), and PPL is
	// exp(Loss): RWKV's "ppl", per example rather than per token.
	Loss         float64 `json:"loss"`
	PPL          float64 `json:"ppl"`
	TargetTokens int64   `json:"target_tokens"`
}

// LambadaOptions control Lambada.
type LambadaOptions struct {
	Batch int // examples per graph run; 0 means 8
	// BOS is the token put before each context; RWKV uses 0 (end of document). -1: none.
	BOS      int
	Progress func(done, total int64) // called with examples done after each batch
}

// lambadaPad rounds a batch's length up to a multiple of this, so few graph shapes get built.
const lambadaPad = 64

// Lambada scores each example: the model reads BOS, the context's tokens and the target's tokens
// (encoded separately) in one sequence from a fresh state, and the target is correct when each of
// its tokens is the argmax of the prediction before it. Examples run Batch at a time through the
// graph form, right-padded with token 0 (the form is causal, so padding changes nothing before it).
func Lambada(ctx context.Context, m *model.Model, tok data.Tokenizer, examples []LambadaExample, o LambadaOptions) (LambadaResult, error) {
	if len(examples) == 0 {
		return LambadaResult{}, fmt.Errorf("eval: lambada: no examples")
	}
	B := o.Batch
	if B <= 0 {
		B = 8
	}
	l := &lambadaRunner{r: newWindowRunner(m)}
	defer l.r.close()
	batch := make([]lambadaSeq, 0, B)
	for i, ex := range examples {
		if err := ctx.Err(); err != nil {
			return LambadaResult{}, err
		}
		e := lambadaSeq{src: tok.Encode(ex.Context), dst: tok.Encode(ex.Target)}
		if o.BOS >= 0 {
			e.src = append([]int{o.BOS}, e.src...)
		}
		if err := e.check(m.Config.Vocab); err != nil {
			return LambadaResult{}, fmt.Errorf("eval: lambada example %d: %w", i+1, err)
		}
		batch = append(batch, e)
		if len(batch) == B || i == len(examples)-1 {
			if err := l.run(batch); err != nil {
				return LambadaResult{}, err
			}
			batch = batch[:0]
			if o.Progress != nil {
				o.Progress(int64(l.res.Count), int64(len(examples)))
			}
		}
	}
	res := l.res
	res.Accuracy = float64(res.Correct) / float64(res.Count)
	res.Loss = l.sum / float64(res.Count)
	res.PPL = math.Exp(res.Loss)
	return res, nil
}

// lambadaSeq is one encoded example: src (BOS and context) then dst (target).
type lambadaSeq struct{ src, dst []int }

func (e lambadaSeq) check(V int) error {
	if len(e.src) == 0 || len(e.dst) == 0 {
		return fmt.Errorf("context or target encodes to no tokens")
	}
	for _, id := range e.dst {
		if id < 0 || id >= V {
			return fmt.Errorf("target token %d is outside the vocabulary [0, %d)", id, V)
		}
	}
	return nil
}

// lambadaRunner accumulates LAMBADA scores over batches.
type lambadaRunner struct {
	r   *windowRunner
	res LambadaResult
	sum float64 // summed target NLL over examples
}

// run scores one batch, padded to a multiple of lambadaPad tokens.
func (l *lambadaRunner) run(batch []lambadaSeq) error {
	T := 0
	for _, e := range batch {
		T = max(T, len(e.src)+len(e.dst)-1)
	}
	T = (T + lambadaPad - 1) / lambadaPad * lambadaPad
	g, err := l.r.graph(len(batch), T, false)
	if err != nil {
		return err
	}
	x := resize(l.r.x, len(batch)*T)
	l.r.x = x
	clear(x)
	for b, e := range batch {
		n := copy(x[b*T:], e.src)
		copy(x[b*T+n:(b+1)*T], e.dst[:len(e.dst)-1])
	}
	if err := g.SetTokens(x, nil); err != nil {
		return fmt.Errorf("eval: lambada: %w", err)
	}
	if err := g.Run(); err != nil {
		return fmt.Errorf("eval: lambada: %w", err)
	}
	V := l.r.m.Config.Vocab
	for b, e := range batch {
		nll, ok := 0.0, true
		for i, target := range e.dst { // row len(src)-1+i predicts dst[i]
			v, top := rowScore(g.Logits(), (b*T+len(e.src)-1+i)*V, V, target)
			nll += v
			ok = ok && top
		}
		l.sum += nll
		l.res.Count++
		l.res.TargetTokens += int64(len(e.dst))
		if ok {
			l.res.Correct++
		}
	}
	return nil
}

// rowScore returns the NLL of target under logits[off:off+V] and whether target is its argmax
// (the first index on ties, as torch.argmax).
func rowScore(logits any, off, V, target int) (float64, bool) {
	switch d := logits.(type) {
	case []float32:
		return scoreRow(d[off:off+V], target)
	case []float64:
		return scoreRow(d[off:off+V], target)
	}
	panic(fmt.Sprintf("eval: logits of type %T", logits))
}

func scoreRow[F model.Float](row []F, target int) (float64, bool) {
	best := 0
	for i, v := range row {
		if v > row[best] {
			best = i
		}
	}
	mx := float64(row[best])
	var s float64
	for _, v := range row {
		s += math.Exp(float64(v) - mx)
	}
	return mx + math.Log(s) - float64(row[target]), best == target
}
