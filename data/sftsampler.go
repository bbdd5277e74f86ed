package data

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
)

// Ways to lay instruction samples into rows, the values of Config.Dataload.
const (
	// DataloadPad puts one sample in each row, cut to ctx_len+1 tokens or
	// padded with token 0 whose targets are ignored, as RWKV-PEFT's
	// --dataload pad.
	DataloadPad = "pad"
	// DataloadPacked takes windows of the concatenated samples, as plain
	// text is read; the mask carries over sample boundaries.
	DataloadPacked = "packed"
)

// MaskNone is the value of Config.Mask that trains on every token even when
// a PREFIX.mask sits next to the corpus.
const MaskNone = "none"

// NewTrainSampler opens the sampler a training config asks for. It attaches
// the loss mask (Config.Mask, or PREFIX.mask next to a binidx corpus when
// Mask is empty) to toks; with a mask, Dataload chooses padded rows (the
// default) or packed windows, and Sampling chooses the order: random (the
// default) or sequential for padded rows, any kind for packed windows.
func NewTrainSampler(c Config, toks *Tokens, ctxLen int, seed uint64) (Sampler, error) {
	path := c.Mask
	if path == "" && c.Format != "npy" && toks.index != nil {
		if _, err := os.Stat(MaskPath(c.Train)); err == nil {
			path = MaskPath(c.Train)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("data: mask %q: %w", MaskPath(c.Train), err)
		}
	}
	if path == "" || path == MaskNone {
		if c.Dataload != "" {
			return nil, fmt.Errorf("data: dataload %q: %w: it lays out instruction data, and %q has no mask (write it with `rwkv-train prepare --sft`, or give data.mask)",
				c.Dataload, ErrBadConfig, c.Train)
		}
		return NewSampler(c.Sampling, toks, ctxLen, seed)
	}
	m, err := OpenMask(path, toks.Len())
	if err != nil {
		return nil, err
	}
	toks.SetMask(m)
	switch c.Dataload {
	case DataloadPad, "":
		return NewPadSampler(toks, ctxLen, c.Sampling, seed)
	case DataloadPacked:
		return NewSampler(c.Sampling, toks, ctxLen, seed)
	}
	return nil, fmt.Errorf("data: dataload %q: %w: want pad or packed", c.Dataload, ErrBadConfig)
}

// AttachValMask attaches VAL.mask to the validation tokens when the training
// data is masked (Config.Mask not "none") and prepare wrote one next to a
// binidx data.val, so that validation scores the responses as training does.
func AttachValMask(c Config, val *Tokens) error {
	if c.Mask == MaskNone || val.index == nil || c.Val == "" {
		return nil
	}
	path := MaskPath(c.Val)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	m, err := OpenMask(path, val.Len())
	if err != nil {
		return err
	}
	val.SetMask(m)
	return nil
}

// PadSampler yields one document (instruction sample) per row, from its
// start: row b of x is the document's first T tokens and of y the next T,
// the rest of a shorter document padded with token 0 in x and IgnoreTarget
// in y, and a longer one cut. With a mask attached to the tokens, targets
// whose mask is 0 are IgnoreTarget too. Documents come in a seeded random
// order (sampling "random") or in turn (sampling "sequential").
type PadSampler struct {
	toks   *Tokens
	docs   []int // start of each document, then the end of the corpus
	ctxLen int
	random bool
	pcg    *rand.PCG
	rng    *rand.Rand
	next   uint64
	buf    []int
}

// NewPadSampler needs a binidx corpus (its documents).
func NewPadSampler(toks *Tokens, ctxLen int, sampling string, seed uint64) (*PadSampler, error) {
	if toks.index == nil {
		return nil, fmt.Errorf("data: pad %q: %w: padded rows need the documents of a binidx corpus", toks.path, ErrBadConfig)
	}
	s := &PadSampler{toks: toks, ctxLen: ctxLen, docs: append(toks.Docs(), toks.Len())}
	switch sampling {
	case SamplingRandom, "":
		s.random = true
		s.pcg = rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
		s.rng = rand.New(s.pcg)
	case SamplingSequential:
	default:
		return nil, fmt.Errorf("data: sampling %q: %w: padded rows (dataload pad) take random or sequential", sampling, ErrBadConfig)
	}
	return s, nil
}

// Samples is the number of documents.
func (s *PadSampler) Samples() int { return len(s.docs) - 1 }

func (s *PadSampler) CtxLen() int { return s.ctxLen }

func (s *PadSampler) tokens() *Tokens { return s.toks }

func (s *PadSampler) NextBatch(x, y []int, B, T int) {
	if T != s.ctxLen || len(x) < B*T || len(y) < B*T {
		panic(fmt.Sprintf("data: NextBatch: B=%d T=%d with len(x)=%d len(y)=%d, ctx_len %d", B, T, len(x), len(y), s.ctxLen))
	}
	m := s.toks.mask
	for b := range B {
		var k int
		if s.random {
			k = s.rng.IntN(s.Samples())
		} else {
			k = int(s.next % uint64(s.Samples()))
			s.next++
		}
		start := s.docs[k]
		n := min(s.docs[k+1]-start, T+1)
		s.buf = s.toks.Slice(start, n, s.buf[:0])
		xr, yr := x[b*T:(b+1)*T], y[b*T:(b+1)*T]
		for i := range T {
			xr[i], yr[i] = 0, IgnoreTarget
			if i < n {
				xr[i] = s.buf[i]
			}
			if i+1 < n && (m == nil || m.At(start+i+1)) {
				yr[i] = s.buf[i+1]
			}
		}
	}
}

func (s *PadSampler) state() samplerState {
	kind := "pad_" + SamplingSequential
	if s.random {
		kind = "pad_" + SamplingRandom
	}
	return samplerState{Kind: kind, CtxLen: s.ctxLen, Tokens: s.toks.Len()}
}

func (s *PadSampler) State() ([]byte, error) {
	st := s.state()
	st.Next = s.next
	if s.random {
		var err error
		if st.RNG, err = s.pcg.MarshalBinary(); err != nil {
			return nil, fmt.Errorf("data: sampler state: %w", err)
		}
	}
	return st.marshal()
}

func (s *PadSampler) SetState(b []byte) error {
	st, err := unmarshalState(b, s.state())
	if err != nil {
		return err
	}
	if s.random {
		if err := s.pcg.UnmarshalBinary(st.RNG); err != nil {
			return fmt.Errorf("data: set sampler state: %w: %v", ErrBadState, err)
		}
	}
	s.next = st.Next
	return nil
}
