package data

import (
	"slices"
	"testing"
)

// TestLoaderMatchesSampler checks the loader hands out the sampler's batches
// in order, and that its state is that of the last batch handed out even
// though it has prefetched more.
func TestLoaderMatchesSampler(t *testing.T) {
	const B, T = 2, 16
	toks := openSeq(t, 5000)
	ref, _ := NewRandomSampler(toks, T, 7)
	s, _ := NewRandomSampler(toks, T, 7)
	l, err := NewLoader(s, B, T, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	x, y := make([]int, B*T), make([]int, B*T)
	var states [][]byte
	st0, _ := ref.State()
	if got, _ := l.State(); !slices.Equal(got, st0) {
		t.Error("initial loader state is not the sampler's")
	}
	for i := range 10 {
		ref.NextBatch(x, y, B, T)
		b := l.Next()
		if !slices.Equal(b.X, x) || !slices.Equal(b.Y, y) || b.B != B || b.T != T {
			t.Fatalf("batch %d differs from the sampler's", i)
		}
		want, _ := ref.State()
		got, err := l.State()
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("state after batch %d is not the last handed out", i)
		}
		states = append(states, got)
	}

	// Resume from the state after batch 4 in a new loader, and in this one.
	fresh, _ := NewRandomSampler(toks, T, 0)
	if err := fresh.SetState(states[4]); err != nil {
		t.Fatal(err)
	}
	l2, _ := NewLoader(fresh, B, T, 2)
	defer l2.Close()
	if err := l.SetState(states[4]); err != nil {
		t.Fatal(err)
	}
	ref.SetState(states[4])
	for i := range 10 {
		ref.NextBatch(x, y, B, T)
		b1 := l.Next()
		if !slices.Equal(b1.X, x) || !slices.Equal(b1.Y, y) {
			t.Fatalf("batch %d after SetState differs", i)
		}
		b2 := l2.Next()
		if !slices.Equal(b2.X, x) {
			t.Fatalf("batch %d of the resumed loader differs", i)
		}
	}
	// A rejected state leaves the loader where it was, prefetching undone.
	l.Next()
	st, _ := l.State()
	if err := l.SetState([]byte("garbage")); err == nil {
		t.Fatal("SetState(garbage) succeeded")
	}
	ref.SetState(st)
	ref.NextBatch(x, y, B, T)
	if b := l.Next(); !slices.Equal(b.X, x) {
		t.Error("after a rejected SetState the loader skipped batches")
	}
	if _, err := NewLoader(s, B, T+1, 2); err == nil {
		t.Error("NewLoader with T != ctx_len succeeded")
	}
}
