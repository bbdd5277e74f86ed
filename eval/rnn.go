package eval

import (
	"context"
	"fmt"
	"math"

	"github.com/rwkv-go/rwkv-go/model"
)

// streamRead is how many tokens rnnScore reads from the source at a time.
const streamRead = 4096

// rnnScore runs src[0, total] through the recurrent form as one sequence, scoring targets
// 1..total. Memory is the state, one logits row and a fixed read buffer, whatever total is.
func rnnScore(ctx context.Context, m *model.Model, src Source, total int64, o Options, t *tally) error {
	if o.Chunk > 1 {
		return chunkScore(ctx, m, src, total, o, t)
	}
	every := o.ProgressEvery
	if every <= 0 {
		every = 1024
	}
	rnn := m.NewRNN(1)
	s := m.InitialState(1)
	logits := make([]float64, m.Config.Vocab)
	in := make([]int, 1)
	buf := make([]int, 0, streamRead+1)
	for off := int64(0); off < total; off += streamRead {
		n := min(streamRead, total-off)
		var err error
		if buf, err = src.Read(int(off), int(n)+1, buf); err != nil { // inputs off..off+n-1, targets off+1..off+n
			return err
		}
		for i := range n {
			if err := ctx.Err(); err != nil { // every token: one step of a large model is long
				return err
			}
			in[0] = buf[i]
			if err := rnn.Step(s, in, logits); err != nil {
				return fmt.Errorf("eval: token %d: %w", off+i, err)
			}
			target := buf[i+1]
			if target < 0 || target >= len(logits) {
				return fmt.Errorf("eval: token id %d at position %d is outside the vocabulary [0, %d)", target, off+i+1, len(logits))
			}
			t.add(off+i+1, logSumExp(logits)-logits[target])
			if o.Progress != nil && t.n%every == 0 {
				o.Progress(t.n, total)
			}
		}
	}
	if o.Progress != nil {
		o.Progress(t.n, total)
	}
	return nil
}

// chunkScore is rnnScore computed Chunk tokens at a time with the graph form, handing the state
// from each chunk to the next: the same numbers (one unbounded sequence) with matrix-matrix
// products instead of matrix-vector ones. Memory is constant in total.
func chunkScore(ctx context.Context, m *model.Model, src Source, total int64, o Options, t *tally) error {
	r := newWindowRunner(m)
	defer r.close()
	s := m.InitialState(1)
	for off := int64(0); off < total; {
		if err := ctx.Err(); err != nil {
			return err
		}
		T := int(min(int64(o.Chunk), total-off))
		g, err := r.graph(1, T, true)
		if err != nil {
			return err
		}
		if err := g.SetState(s); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
		if err := r.run(g, src, []window{{start: off, from: off}}, T); err != nil {
			return err
		}
		g.FinalState(s)
		for i := range T {
			t.add(off+int64(i)+1, r.nll[i])
		}
		off += int64(T)
		if o.Progress != nil {
			o.Progress(t.n, total)
		}
	}
	return nil
}

// logSumExp is log(sum(exp(x))), computed stably.
func logSumExp(x []float64) float64 {
	mx := math.Inf(-1)
	for _, v := range x {
		mx = max(mx, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - mx)
	}
	return mx + math.Log(s)
}
