package eval

import (
	"context"
	"fmt"

	"github.com/rwkv-go/rwkv-go/model"
)

// window is one Parallel-mode window: inputs src[start, start+T) predict src[start+1, start+T],
// of which targets at stream positions (from, start+T] are scored.
type window struct{ start, from int64 }

// parallelScore scores targets 1..total in windows of o.CtxLen advancing by o.Stride. Window k
// ends at target e = min(CtxLen + k*Stride, total) and has inputs from max(0, e-CtxLen), so every
// window but a single short one has CtxLen tokens and runs through one cached graph shape.
func parallelScore(ctx context.Context, m *model.Model, src Source, total int64, o Options, t *tally) error {
	L := int64(o.CtxLen)
	if L < 1 {
		return fmt.Errorf("eval: %w: ctx_len %d, want >= 1", ErrOptions, o.CtxLen)
	}
	stride := int64(o.Stride)
	if stride == 0 {
		stride = L
	}
	if stride < 1 || stride > L {
		return fmt.Errorf("eval: %w: stride %d, want 1..ctx_len (%d)", ErrOptions, stride, L)
	}
	B := max(o.Batch, 1)
	T := min(L, total)
	r := newWindowRunner(m)
	defer r.close()
	var batch []window
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.score(src, batch, int(T), t); err != nil {
			return err
		}
		if o.Progress != nil {
			o.Progress(t.n, total)
		}
		batch = batch[:0]
		return nil
	}
	for k, prev := 0, int64(0); prev < total; k++ {
		e := min(prev+stride, total)
		if prev == 0 {
			e = T
		}
		mine := o.Shards <= 1 || k%o.Shards == o.Shard
		if mine {
			batch = append(batch, window{start: e - T, from: prev})
		}
		prev = e
		if !mine {
			continue
		}
		if len(batch) == B {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// windowRunner keeps one forward graph per shape it has needed and the scratch buffers.
type windowRunner struct {
	m      *model.Model
	graphs map[graphKey]*model.Graph
	x, y   []int
	nll    []float64 // of the last run, (B*T)
	win    []int
}

type graphKey struct {
	B, T  int
	state bool
}

func newWindowRunner(m *model.Model) *windowRunner {
	return &windowRunner{m: m, graphs: map[graphKey]*model.Graph{}}
}

// graph returns the forward graph for (B, T); with state it also exposes the final state.
func (r *windowRunner) graph(B, T int, state bool) (*model.Graph, error) {
	key := graphKey{B, T, state}
	if g, ok := r.graphs[key]; ok {
		return g, nil
	}
	g, err := r.m.NewGraph(model.GraphOptions{B: B, T: T, State: state})
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	r.graphs[key] = g
	return g, nil
}

// score runs the windows (T inputs each, fresh state) as one batch and tallies their scored
// targets.
func (r *windowRunner) score(src Source, ws []window, T int, t *tally) error {
	g, err := r.graph(len(ws), T, false)
	if err != nil {
		return err
	}
	if err := r.run(g, src, ws, T); err != nil {
		return err
	}
	for b, w := range ws {
		for i := w.from - w.start; i < int64(T); i++ { // row i predicts the target at position start+i+1
			t.add(w.start+i+1, r.nll[b*T+int(i)])
		}
	}
	return nil
}

// run feeds the windows' inputs through g and leaves every row's target NLL in r.nll.
func (r *windowRunner) run(g *model.Graph, src Source, ws []window, T int) error {
	n := len(ws) * T
	r.x, r.y, r.nll = resize(r.x, n), resize(r.y, n), resize(r.nll, n)
	for b, w := range ws {
		var err error
		if r.win, err = src.Read(int(w.start), T+1, r.win); err != nil {
			return err
		}
		copy(r.x[b*T:], r.win[:T])
		copy(r.y[b*T:], r.win[1:])
	}
	if err := g.SetTokens(r.x, nil); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if err := g.Run(); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	if err := model.TokenNLL(g.Logits(), r.y, r.m.Config.Vocab, r.nll); err != nil {
		return fmt.Errorf("eval: %w", err)
	}
	return nil
}

func (r *windowRunner) close() {
	for _, g := range r.graphs {
		g.Close()
	}
}

func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}
