package data

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// openSeq opens a corpus whose token i is i % 60000, split in a few documents.
func openSeq(t testing.TB, n int) *Tokens {
	t.Helper()
	all := make([]int, n)
	for i := range all {
		all[i] = i % 60000
	}
	docs := [][]int{all[:n/3], all[n/3 : n/2], all[n/2:]}
	toks, err := Open(writeBinidx(t, t.TempDir(), "c", 8, dtU16, docs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { toks.Close() })
	return toks
}

// offsets returns the window start of each row, checking x and y against the corpus.
func offsets(t *testing.T, toks *Tokens, x, y []int, B, T int) []int {
	t.Helper()
	var offs []int
	for b := range B {
		off := x[b*T] // token i is i % 60000 and the test corpora are shorter
		want := toks.Slice(off, T+1, nil)
		if !slices.Equal(x[b*T:(b+1)*T], want[:T]) || !slices.Equal(y[b*T:(b+1)*T], want[1:]) {
			t.Fatalf("row %d: x, y are not w[:T], w[1:] of the window at %d", b, off)
		}
		offs = append(offs, off)
	}
	return offs
}

func TestMagicPrime(t *testing.T) {
	tests := []struct {
		tokens, ctxLen, want int
	}{
		{1498226207, 512, 2926181}, // RWKV-LM's minipile example: --my_exit_tokens 1498226207 --magic_prime 2926181 --ctx_len 512
		{1000, 10, 89},
		{30, 10, 2},
		{20, 10, 0},
		{1000, 0, 0},
	}
	for _, tt := range tests {
		if got := MagicPrime(tt.tokens, tt.ctxLen); got != tt.want {
			t.Errorf("MagicPrime(%d, %d) = %d, want %d", tt.tokens, tt.ctxLen, got, tt.want)
		}
	}
}

// TestMagicPrimeCoverage checks that any p consecutive samples read every
// chunk exactly once, and that every window fits in the corpus.
func TestMagicPrimeCoverage(t *testing.T) {
	const T = 8
	toks := openSeq(t, 2000)
	s, err := NewMagicPrimeSampler(toks, T)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Prime()
	if p != MagicPrime(2000, T) || p < 100 {
		t.Fatalf("Prime = %d", p)
	}
	x, y := make([]int, T), make([]int, T)
	for _, skip := range []int{0, 5, p - 1} {
		s.ii = uint64(1 + skip)
		seen := make([]int, p)
		for range p {
			s.NextBatch(x, y, 1, T)
			off := offsets(t, toks, x, y, 1, T)[0]
			if off%T != 0 || off/T >= p {
				t.Fatalf("window at %d is not a chunk below p", off)
			}
			seen[off/T]++
		}
		for c, n := range seen {
			if n != 1 {
				t.Fatalf("after skipping %d: chunk %d read %d times in %d samples", skip, c, n, p)
			}
		}
	}
}

// TestMagicPrimeChunkMatchesPython checks the 128-bit arithmetic against
// Python's big integers: (int(p * (sqrt(5)-1)/2) * ii**3) % p.
func TestMagicPrimeChunkMatchesPython(t *testing.T) {
	p := 324331313 // RWKV-LM's Pile magic prime
	s := &MagicPrimeSampler{p: uint64(p), factor: uint64(float64(p) * ((math.Sqrt(5) - 1) / 2))}
	r := rand.New(rand.NewPCG(1, 1))
	for range 1000 {
		ii := r.Uint64N(1 << 40)
		want := new(big.Int).SetUint64(ii)
		want.Exp(want, big.NewInt(3), nil).Mul(want, new(big.Int).SetUint64(s.factor)).Mod(want, big.NewInt(int64(p)))
		if got := s.chunk(ii); got != want.Uint64() {
			t.Fatalf("chunk(%d) = %d, want %d", ii, got, want)
		}
	}
}

func TestSequentialSampler(t *testing.T) {
	const T = 10
	toks := openSeq(t, 95)
	s, err := NewSequentialSampler(toks, T)
	if err != nil {
		t.Fatal(err)
	}
	if s.Windows() != 9 {
		t.Fatalf("Windows = %d, want 9", s.Windows())
	}
	x, y := make([]int, 4*T), make([]int, 4*T)
	var got []int
	for range 3 {
		s.NextBatch(x, y, 4, T)
		got = append(got, offsets(t, toks, x, y, 4, T)...)
	}
	want := []int{0, 10, 20, 30, 40, 50, 60, 70, 80, 0, 10, 20}
	if !slices.Equal(got, want) {
		t.Errorf("offsets = %v, want %v", got, want)
	}
}

func TestRandomSamplerRange(t *testing.T) {
	const T = 4
	toks := openSeq(t, 10) // windows start at 0..5
	s, err := NewRandomSampler(toks, T, 1)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]int, 50*T), make([]int, 50*T)
	seen := map[int]bool{}
	s.NextBatch(x, y, 50, T)
	for _, off := range offsets(t, toks, x, y, 50, T) {
		seen[off] = true
	}
	if len(seen) != 6 {
		t.Errorf("saw offsets %v, want all of 0..5", seen)
	}
}

// TestSamplerResume checks the exact resume property of every sampler: a
// fresh sampler given the state after k batches continues identically.
func TestSamplerResume(t *testing.T) {
	const B, T = 3, 16
	toks := openSeq(t, 5000)
	for _, kind := range []string{SamplingRandom, SamplingMagicPrime, SamplingSequential} {
		t.Run(kind, func(t *testing.T) {
			a, err := NewSampler(kind, toks, T, 42)
			if err != nil {
				t.Fatal(err)
			}
			x, y := make([]int, B*T), make([]int, B*T)
			for range 7 {
				a.NextBatch(x, y, B, T)
			}
			st, err := a.State()
			if err != nil {
				t.Fatal(err)
			}
			b, _ := NewSampler(kind, toks, T, 99) // another seed: the state must override it
			if err := b.SetState(st); err != nil {
				t.Fatal(err)
			}
			x2, y2 := make([]int, B*T), make([]int, B*T)
			for i := range 20 {
				a.NextBatch(x, y, B, T)
				b.NextBatch(x2, y2, B, T)
				if !slices.Equal(x, x2) || !slices.Equal(y, y2) {
					t.Fatalf("batch %d after resume differs", i)
				}
			}
			// The same seed gives the same batches.
			c, _ := NewSampler(kind, toks, T, 42)
			d, _ := NewSampler(kind, toks, T, 42)
			c.NextBatch(x, y, B, T)
			d.NextBatch(x2, y2, B, T)
			if !slices.Equal(x, x2) {
				t.Error("same seed, different batches")
			}
		})
	}
}

func TestSetStateErrors(t *testing.T) {
	toks := openSeq(t, 5000)
	rnd, _ := NewRandomSampler(toks, 16, 1)
	seq, _ := NewSequentialSampler(toks, 16)
	seq32, _ := NewSequentialSampler(toks, 32)
	st, _ := seq.State()
	tests := []struct {
		name  string
		s     Sampler
		state []byte
	}{
		{"garbage", rnd, []byte("garbage")},
		{"other kind", rnd, st},
		{"other ctx_len", seq32, st},
		{"bad rng", rnd, []byte(`{"kind":"random","ctx_len":16,"tokens":5000,"rng":"AAAA"}`)},
	}
	for _, tt := range tests {
		if err := tt.s.SetState(tt.state); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: SetState: %v, want ErrBadState", tt.name, err)
		}
	}
	if _, err := NewSampler("shuffle", toks, 16, 1); !errors.Is(err, ErrBadConfig) {
		t.Errorf("NewSampler(shuffle): %v", err)
	}
}

func TestNextBatchPanicsOnWrongT(t *testing.T) {
	toks := openSeq(t, 100)
	s, _ := NewSequentialSampler(toks, 8)
	defer func() {
		if recover() == nil {
			t.Error("NextBatch with T != ctx_len did not panic")
		}
	}()
	s.NextBatch(make([]int, 16), make([]int, 16), 1, 16)
}
