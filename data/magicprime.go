package data

import (
	"fmt"
	"math"
	"math/big"
	"math/bits"
)

// MagicPrime returns RWKV-LM's magic prime for a corpus (make_data.py): the
// largest prime p <= tokens/ctxLen - 1 with p % 3 == 2, or 0 if there is none.
// Then n -> n^3 mod p is a permutation of the p chunks.
func MagicPrime(tokens, ctxLen int) int {
	if ctxLen < 1 {
		return 0
	}
	n := tokens/ctxLen - 1
	if n < 2 {
		return 0
	}
	p := n - (n-2)%3 // largest p <= n with p % 3 == 2
	for ; p >= 2; p -= 3 {
		if big.NewInt(int64(p)).ProbablyPrime(0) { // exact below 2^64
			return p
		}
	}
	return 0
}

// MagicPrimeSampler is RWKV-LM's deterministic order: sample number ii
// (from 1) reads the chunk (floor(p*(sqrt(5)-1)/2) * ii^3) mod p, of ctxLen
// tokens from chunk*ctxLen, so every chunk is read once in any p consecutive
// samples. It matches RWKV-LM with one process (world_size 1).
type MagicPrimeSampler struct {
	toks   *Tokens
	ctxLen int
	p      uint64
	factor uint64
	ii     uint64 // next sample number
}

// NewMagicPrimeSampler fails with ErrTooShort if the corpus has no magic prime
// for ctxLen.
func NewMagicPrimeSampler(toks *Tokens, ctxLen int) (*MagicPrimeSampler, error) {
	if err := toks.CheckLen(ctxLen); err != nil {
		return nil, err
	}
	p := MagicPrime(toks.Len(), ctxLen)
	if p == 0 {
		return nil, fmt.Errorf("data: %q: %w: %d tokens have no magic prime at ctx_len %d", toks.Path(), ErrTooShort, toks.Len(), ctxLen)
	}
	factor := uint64(float64(p) * ((math.Sqrt(5) - 1) / 2)) // int(magic_prime * factor) in Python
	return &MagicPrimeSampler{toks: toks, ctxLen: ctxLen, p: uint64(p), factor: factor, ii: 1}, nil
}

// Prime is the magic prime, the number of chunks in one pass.
func (s *MagicPrimeSampler) Prime() int { return int(s.p) }

func (s *MagicPrimeSampler) CtxLen() int { return s.ctxLen }

func (s *MagicPrimeSampler) tokens() *Tokens { return s.toks }

// chunk returns the chunk sample ii reads.
func (s *MagicPrimeSampler) chunk(ii uint64) uint64 {
	i := ii % s.p
	c := mulMod(mulMod(i, i, s.p), i, s.p)
	return mulMod(s.factor%s.p, c, s.p)
}

func (s *MagicPrimeSampler) NextBatch(x, y []int, B, T int) {
	fillBatch(s.toks, x, y, B, T, s.ctxLen, func() int {
		c := s.chunk(s.ii)
		s.ii++
		return int(c) * s.ctxLen
	})
}

func (s *MagicPrimeSampler) state() samplerState {
	return samplerState{Kind: SamplingMagicPrime, CtxLen: s.ctxLen, Tokens: s.toks.Len()}
}

func (s *MagicPrimeSampler) State() ([]byte, error) {
	st := s.state()
	st.Next = s.ii
	return st.marshal()
}

func (s *MagicPrimeSampler) SetState(b []byte) error {
	st, err := unmarshalState(b, s.state())
	if err == nil {
		s.ii = st.Next
	}
	return err
}

func mulMod(a, b, m uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return bits.Rem64(hi, lo, m)
}
