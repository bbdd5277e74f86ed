package data

import (
	"bytes"
	"slices"
	"testing"
)

// noSkip hides a sampler's skip method, to test the ShardSampler's fallback.
type noSkip struct{ Sampler }

// TestShardSamplerIsTheGlobalBatch: for every sampler, N shards with micro-batches of B rows
// hand out, batch after batch, exactly the rows of one sampler with micro-batches of N·B, and
// their state is that sampler's, so that a run on N ranks sees the data of one process.
func TestShardSamplerIsTheGlobalBatch(t *testing.T) {
	toks := openSeq(t, 5000)
	const T, B = 16, 2
	for _, kind := range []string{SamplingRandom, SamplingMagicPrime, SamplingSequential} {
		for _, size := range []int{1, 2, 3} {
			for _, wrap := range []bool{false, true} {
				mk := func() Sampler {
					s, err := NewSampler(kind, toks, T, 7)
					if err != nil {
						t.Fatal(err)
					}
					if wrap {
						return noSkip{s}
					}
					return s
				}
				one := mk()
				shards := make([]*ShardSampler, size)
				for r := range shards {
					var err error
					if shards[r], err = NewShardSampler(mk(), r, size); err != nil {
						t.Fatal(err)
					}
				}
				gx, gy := make([]int, size*B*T), make([]int, size*B*T)
				x, y := make([]int, B*T), make([]int, B*T)
				for step := range 5 {
					one.NextBatch(gx, gy, size*B, T)
					for r, s := range shards {
						s.NextBatch(x, y, B, T)
						if !slices.Equal(x, gx[r*B*T:(r+1)*B*T]) || !slices.Equal(y, gy[r*B*T:(r+1)*B*T]) {
							t.Fatalf("%s, %d ranks, no skip %v: batch %d, rank %d: rows differ from the global batch's", kind, size, wrap, step, r)
						}
					}
				}
				want, _ := one.State()
				for r, s := range shards {
					if got, _ := s.State(); !bytes.Equal(got, want) {
						t.Fatalf("%s, %d ranks: rank %d state %s, want %s", kind, size, r, got, want)
					}
				}
			}
		}
	}
	if _, err := NewShardSampler(nil, 2, 2); err == nil {
		t.Fatal("rank 2 of 2 accepted")
	}
}
