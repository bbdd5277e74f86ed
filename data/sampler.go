package data

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
)

// Sampler yields training windows of ctx_len+1 tokens from a corpus. After
// SetState(State()) the sequence of batches continues identically, so a
// resumed run sees the same data as an uninterrupted one.
type Sampler interface {
	// NextBatch fills x and y, each B*T row-major, with B windows w of T+1
	// tokens: row b of x is w[:T] and of y is w[1:]. T must equal CtxLen.
	NextBatch(x, y []int, B, T int)
	CtxLen() int
	State() ([]byte, error)
	SetState(state []byte) error
}

// Sampling kinds, the values of Config.Sampling.
const (
	SamplingRandom     = "random"
	SamplingMagicPrime = "magic_prime"
	SamplingSequential = "sequential"
)

// NewSampler returns the sampler of a kind; seed is used by "random" only.
func NewSampler(kind string, toks *Tokens, ctxLen int, seed uint64) (Sampler, error) {
	switch kind {
	case SamplingRandom, "":
		return NewRandomSampler(toks, ctxLen, seed)
	case SamplingMagicPrime:
		return NewMagicPrimeSampler(toks, ctxLen)
	case SamplingSequential:
		return NewSequentialSampler(toks, ctxLen)
	}
	return nil, fmt.Errorf("data: sampling %q: %w: want random, magic_prime or sequential", kind, ErrBadConfig)
}

// samplerState is the saved state of every sampler; the fields that describe
// the corpus are checked on restore so a state cannot be applied to other data.
type samplerState struct {
	Kind   string `json:"kind"`
	CtxLen int    `json:"ctx_len"`
	Tokens int    `json:"tokens"`
	RNG    []byte `json:"rng,omitempty"`
	Next   uint64 `json:"next"`
}

func (s samplerState) marshal() ([]byte, error) { return json.Marshal(s) }

// unmarshalState parses a state and checks it belongs to a sampler like want.
func unmarshalState(b []byte, want samplerState) (samplerState, error) {
	var s samplerState
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("data: set sampler state: %w: %v", ErrBadState, err)
	}
	if s.Kind != want.Kind || s.CtxLen != want.CtxLen || s.Tokens != want.Tokens {
		return s, fmt.Errorf("data: set sampler state: %w: saved by %s sampler with ctx_len %d over %d tokens, this is %s with ctx_len %d over %d",
			ErrBadState, s.Kind, s.CtxLen, s.Tokens, want.Kind, want.CtxLen, want.Tokens)
	}
	return s, nil
}

// fillBatch writes the windows starting at B offsets from next into x and y.
func fillBatch(t *Tokens, x, y []int, B, T, ctxLen int, next func() int) {
	if T != ctxLen || len(x) < B*T || len(y) < B*T {
		panic(fmt.Sprintf("data: NextBatch: B=%d T=%d with len(x)=%d len(y)=%d, ctx_len %d", B, T, len(x), len(y), ctxLen))
	}
	for b := range B {
		off := next()
		xr, yr := x[b*T:(b+1)*T], y[b*T:(b+1)*T]
		t.Slice(off, T, xr)
		copy(yr, xr[1:])
		yr[T-1] = t.At(off + T)
		if m := t.mask; m != nil { // packed instruction data: the mask carries over samples
			for i := range yr {
				if !m.At(off + 1 + i) {
					yr[i] = IgnoreTarget
				}
			}
		}
	}
}

// RandomSampler draws windows at uniformly random offsets, as RWKV-LM does
// without a magic prime, from a seeded PCG generator whose state is saved.
type RandomSampler struct {
	toks   *Tokens
	ctxLen int
	pcg    *rand.PCG
	rng    *rand.Rand
}

// NewRandomSampler checks the corpus has a window of ctxLen+1 tokens.
func NewRandomSampler(toks *Tokens, ctxLen int, seed uint64) (*RandomSampler, error) {
	if err := toks.CheckLen(ctxLen); err != nil {
		return nil, err
	}
	pcg := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	return &RandomSampler{toks: toks, ctxLen: ctxLen, pcg: pcg, rng: rand.New(pcg)}, nil
}

func (s *RandomSampler) CtxLen() int { return s.ctxLen }

func (s *RandomSampler) tokens() *Tokens { return s.toks }

func (s *RandomSampler) NextBatch(x, y []int, B, T int) {
	n := s.toks.Len() - s.ctxLen // windows start in [0, n)
	fillBatch(s.toks, x, y, B, T, s.ctxLen, func() int { return s.rng.IntN(n) })
}

func (s *RandomSampler) state() samplerState {
	return samplerState{Kind: SamplingRandom, CtxLen: s.ctxLen, Tokens: s.toks.Len()}
}

func (s *RandomSampler) State() ([]byte, error) {
	st := s.state()
	var err error
	if st.RNG, err = s.pcg.MarshalBinary(); err != nil {
		return nil, fmt.Errorf("data: sampler state: %w", err)
	}
	return st.marshal()
}

func (s *RandomSampler) SetState(b []byte) error {
	st, err := unmarshalState(b, s.state())
	if err != nil {
		return err
	}
	if err := s.pcg.UnmarshalBinary(st.RNG); err != nil {
		return fmt.Errorf("data: set sampler state: %w: %v", ErrBadState, err)
	}
	return nil
}

// SequentialSampler yields consecutive non-overlapping windows from the
// start: window k starts at token k*ctxLen, so every token after the first is
// a target exactly once per pass. The tail that does not fill a window is
// left out; after the last window it starts again from the first.
type SequentialSampler struct {
	toks   *Tokens
	ctxLen int
	next   uint64
}

// NewSequentialSampler checks the corpus has a window of ctxLen+1 tokens.
func NewSequentialSampler(toks *Tokens, ctxLen int) (*SequentialSampler, error) {
	if err := toks.CheckLen(ctxLen); err != nil {
		return nil, err
	}
	return &SequentialSampler{toks: toks, ctxLen: ctxLen}, nil
}

// Windows is the number of windows in one pass.
func (s *SequentialSampler) Windows() int { return (s.toks.Len() - 1) / s.ctxLen }

func (s *SequentialSampler) CtxLen() int { return s.ctxLen }

func (s *SequentialSampler) tokens() *Tokens { return s.toks }

func (s *SequentialSampler) NextBatch(x, y []int, B, T int) {
	fillBatch(s.toks, x, y, B, T, s.ctxLen, func() int {
		k := s.next % uint64(s.Windows())
		s.next++
		return int(k) * s.ctxLen
	})
}

func (s *SequentialSampler) state() samplerState {
	return samplerState{Kind: SamplingSequential, CtxLen: s.ctxLen, Tokens: s.toks.Len()}
}

func (s *SequentialSampler) State() ([]byte, error) {
	st := s.state()
	st.Next = s.next
	return st.marshal()
}

func (s *SequentialSampler) SetState(b []byte) error {
	st, err := unmarshalState(b, s.state())
	if err == nil {
		s.next = st.Next
	}
	return err
}

// skipper is a sampler that can pass over windows without reading them.
type skipper interface {
	skip(n int)
}

func (s *RandomSampler) skip(k int) {
	n := s.toks.Len() - s.ctxLen
	for range k {
		s.rng.IntN(n) // the draws NextBatch would make
	}
}

func (s *SequentialSampler) skip(k int) { s.next += uint64(k) }

func (s *MagicPrimeSampler) skip(k int) { s.ii += uint64(k) }

// ShardSampler gives one of several data-parallel ranks its share of the global batch: where
// one process with micro-batches of size·B windows would draw them from the inner sampler,
// rank r of size draws the same size·B windows and keeps rows [r·B, (r+1)·B). So N ranks with
// micro_bsz B consume exactly the windows of one process with micro_bsz N·B, in the same order,
// and every rank's sampler state is that one process's (a checkpoint resumes on any number of
// ranks with the same global batch). The other ranks' windows are skipped, not read, for the
// samplers of this package.
type ShardSampler struct {
	s          Sampler
	rank, size int
	x, y       []int // the global batch, for a sampler that cannot skip
}

// NewShardSampler returns rank's shard of s among size ranks.
func NewShardSampler(s Sampler, rank, size int) (*ShardSampler, error) {
	if size < 1 || rank < 0 || rank >= size {
		return nil, fmt.Errorf("data: shard sampler: rank %d of %d: %w: want 0 <= rank < size", rank, size, ErrBadConfig)
	}
	return &ShardSampler{s: s, rank: rank, size: size}, nil
}

func (s *ShardSampler) CtxLen() int { return s.s.CtxLen() }

func (s *ShardSampler) State() ([]byte, error) { return s.s.State() }

func (s *ShardSampler) SetState(b []byte) error { return s.s.SetState(b) }

func (s *ShardSampler) tokens() *Tokens {
	if ts, ok := s.s.(interface{ tokens() *Tokens }); ok {
		return ts.tokens()
	}
	return nil
}

// NextBatch fills x and y with this rank's B rows of the next global batch of size·B windows.
func (s *ShardSampler) NextBatch(x, y []int, B, T int) {
	if sk, ok := s.s.(skipper); ok {
		sk.skip(s.rank * B)
		s.s.NextBatch(x, y, B, T)
		sk.skip((s.size - s.rank - 1) * B)
		return
	}
	n := s.size * B * T
	if len(s.x) < n {
		s.x, s.y = make([]int, n), make([]int, n)
	}
	s.s.NextBatch(s.x[:n], s.y[:n], s.size*B, T)
	copy(x[:B*T], s.x[s.rank*B*T:])
	copy(y[:B*T], s.y[s.rank*B*T:])
}
