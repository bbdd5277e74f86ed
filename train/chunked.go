package train

import (
	"fmt"

	"github.com/rwkv-go/rwkv-go/model"
)

// BPTT modes of chunked training (train.bptt).
const (
	BPTTExact     = "exact"     // gradients exactly those of one pass over the whole sample
	BPTTTruncated = "truncated" // the state is carried forward, its gradient cut at chunk borders
)

// chunkRunner computes the loss and the parameter gradients of B sequences of T tokens in chunks
// of at most chunk tokens, carrying the recurrent state (token-shift vectors and WKV aa, bb, pp
// of every layer) from chunk to chunk. Activation memory is that of one chunk, whatever T is.
//
// Exact mode runs every chunk forward keeping only the states at chunk borders, then, in
// reverse, recomputes each chunk from its saved state and backpropagates with the gradient of
// its final state handed back by the chunk after it: one extra forward pass buys gradients
// identical to a single pass over T. Truncated mode runs each chunk once, forward and backward,
// with no gradient through the borders.
//
// The loss of the sample is the token-weighted mean of the chunk losses, so with weights
// w_c = len_c/T the chunk graphs (whose losses are means over their own tokens, and whose
// L2Wrap factor is 1e-4/(B*len_c)) add up to exactly the single-pass loss and gradient.
type chunkRunner struct {
	m        *model.Model
	B, T     int
	lens     []int // chunk lengths: full chunks, then the remainder
	exact    bool
	fwd      map[int]*model.Graph // forward-only graphs by chunk length (exact mode)
	grad     map[int]*model.Graph // forward+backward graphs by chunk length
	borders  []*model.State       // state before each chunk
	gIn, gSt *model.State         // state gradients handed between chunks
	x, y     []int
}

func newChunkRunner(m *model.Model, B, T, chunk int, mode string, l2wrap bool) (*chunkRunner, error) {
	if chunk <= 0 || chunk > T {
		return nil, fmt.Errorf("train.chunk_len = %d: must be in [1, ctx_len = %d]", chunk, T)
	}
	if mode != BPTTExact && mode != BPTTTruncated {
		return nil, fmt.Errorf("train.bptt = %q: want %q or %q", mode, BPTTExact, BPTTTruncated)
	}
	r := &chunkRunner{m: m, B: B, T: T, exact: mode == BPTTExact,
		fwd: map[int]*model.Graph{}, grad: map[int]*model.Graph{}}
	for off := 0; off < T; off += chunk {
		r.lens = append(r.lens, min(chunk, T-off))
	}
	for _, n := range r.lens {
		if r.grad[n] != nil {
			continue
		}
		g, err := m.NewGraph(model.GraphOptions{B: B, T: n, Grads: true, L2Wrap: l2wrap, State: true})
		if err != nil {
			r.Close()
			return nil, err
		}
		r.grad[n] = g
		if r.exact {
			if r.fwd[n], err = m.NewGraph(model.GraphOptions{B: B, T: n, State: true}); err != nil {
				r.Close()
				return nil, err
			}
		}
	}
	for range len(r.lens) + 1 {
		r.borders = append(r.borders, model.NewState(m.Config, B))
	}
	r.gIn, r.gSt = model.NewState(m.Config, B), model.NewState(m.Config, B)
	return r, nil
}

// slice copies tokens [off, off+n) of every sequence of a (B, T) batch into a (B, n) buffer.
func (r *chunkRunner) slice(dst, src []int, off, n int) []int {
	dst = dst[:0]
	for b := 0; b < r.B; b++ {
		dst = append(dst, src[b*r.T+off:b*r.T+off+n]...)
	}
	return dst
}

// run processes one (B, T) micro-batch from fresh states and calls add(g, i, w) for every
// parameter i and chunk, the sample's gradient being the sum of w*g.Grad(i). It returns the loss.
func (r *chunkRunner) run(x, y []int, add func(g *model.Graph, i int, w float64)) (float64, error) {
	offs := make([]int, len(r.lens))
	for c := 1; c < len(r.lens); c++ {
		offs[c] = offs[c-1] + r.lens[c-1]
	}
	r.borders[0].Reset()
	chunk := func(g *model.Graph, c int) error {
		r.x, r.y = r.slice(r.x, x, offs[c], r.lens[c]), r.slice(r.y, y, offs[c], r.lens[c])
		if err := g.SetTokens(r.x, r.y); err != nil {
			return err
		}
		if err := g.SetState(r.borders[c]); err != nil {
			return err
		}
		return g.Run()
	}
	var loss float64
	accumulate := func(g *model.Graph, c int) {
		w := float64(r.lens[c]) / float64(r.T)
		loss += w * g.Loss()
		for i := range r.m.Params {
			add(g, i, w)
		}
	}
	if !r.exact {
		for c := range r.lens {
			g := r.grad[r.lens[c]]
			if err := g.SetStateGrad(nil); err != nil {
				return 0, err
			}
			if err := chunk(g, c); err != nil {
				return 0, err
			}
			accumulate(g, c)
			g.FinalState(r.borders[c+1])
		}
		return loss, nil
	}
	// Forward, keeping only the states at chunk borders.
	for c := 0; c < len(r.lens)-1; c++ {
		g := r.fwd[r.lens[c]]
		if err := chunk(g, c); err != nil {
			return 0, err
		}
		g.FinalState(r.borders[c+1])
	}
	// Backward, chunk by chunk in reverse. gSt holds dL_{>c}/d(final state of c), the true
	// gradient of the later chunks' weighted loss; graph c's objective is its own loss plus
	// <final state, gSt/w_c>, so w_c times its gradients is chunk c's share of the total.
	r.gSt.Zero()
	for c := len(r.lens) - 1; c >= 0; c-- {
		g := r.grad[r.lens[c]]
		w := float64(r.lens[c]) / float64(r.T)
		if err := r.gIn.Scale(r.gSt, 1/w); err != nil {
			return 0, err
		}
		if err := g.SetStateGrad(r.gIn); err != nil {
			return 0, err
		}
		if err := chunk(g, c); err != nil {
			return 0, err
		}
		accumulate(g, c)
		g.StateGrad(r.gSt)
		if err := r.gSt.Scale(r.gSt, w); err != nil {
			return 0, err
		}
	}
	return loss, nil
}

// Close releases the graphs.
func (r *chunkRunner) Close() {
	for _, g := range r.fwd {
		g.Close()
	}
	for _, g := range r.grad {
		g.Close()
	}
}
