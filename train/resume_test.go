package train

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
)

// cancelAfter wraps a batch source and cancels a context when batch number n is drawn: an
// interrupt arriving in the middle of a step.
type cancelAfter struct {
	batchSource
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Next() *data.Batch {
	c.n--
	if c.n == 0 {
		c.cancel()
	}
	return c.batchSource.Next()
}

func weightsOf(tr *Trainer) [][]float32 {
	var out [][]float32
	for _, p := range tr.Model.Params {
		out = append(out, append([]float32(nil), p.F32()...))
	}
	return out
}

// TestResumeIsExact: N steps straight versus K steps, a checkpoint, and a new trainer resuming
// to N give bitwise-identical losses and weights, for K inside the warmup, after it, and for an
// interrupt that arrives between the micro-batches of a step; for RWKV-4, and for RWKV-5.2,
// RWKV-6 and RWKV-7 (with their own optimiser groups and schedules).
func TestResumeIsExact(t *testing.T) {
	t.Run("x040", func(t *testing.T) { testResumeIsExact(t, tinyConfig(t)) })
	t.Run("x070", func(t *testing.T) { testResumeIsExact(t, tinyConfigX070(t)) })
	t.Run("x052", func(t *testing.T) { testResumeIsExact(t, tinyConfigX05(t, tinyX052)) })
	t.Run("x060", func(t *testing.T) { testResumeIsExact(t, tinyConfigX05(t, tinyX060)) })
}

func testResumeIsExact(t *testing.T, base Config) {
	base.Train.MaxSteps, base.Train.GradAccum, base.Train.MicroBsz = 8, 2, 2
	base.Optim.WarmupSteps = 3
	base.Train.EvalEvery, base.Data.Val = 0, ""

	straight := base
	straight.OutDir = t.TempDir()
	ref := newTrainer(t, straight, Options{})
	if err := ref.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want, wantW := ref.History(), weightsOf(ref)

	for _, tc := range []struct {
		name      string
		stopAfter int // steps, or with midBatch the micro-batch whose draw interrupts
		midBatch  bool
	}{{"mid-warmup K=1", 1, false}, {"after warmup K=5", 5, false}, {"interrupt mid-accumulation", 7, true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			c.OutDir = t.TempDir()
			first := newTrainer(t, c, Options{})
			if tc.midBatch {
				ctx, cancel := context.WithCancel(context.Background())
				first.loader = &cancelAfter{batchSource: first.loader, n: tc.stopAfter, cancel: cancel}
				if err := first.Run(ctx); !errors.Is(err, ErrInterrupted) {
					t.Fatalf("got %v, want ErrInterrupted", err)
				}
			} else {
				c1 := c
				c1.Train.MaxSteps = tc.stopAfter
				c1.Optim.TotalSteps = base.Train.MaxSteps // the schedule of the whole run
				first.Close()
				first = newTrainer(t, c1, Options{})
				if err := first.Run(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			k := first.Step()
			first.Close() // it holds the directories' locks
			second := newTrainer(t, c, Options{Resume: c.CheckpointDir()})
			if second.Step() != k {
				t.Fatalf("resumed at step %d, want %d", second.Step(), k)
			}
			if err := second.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := append(append([]Point(nil), first.History()...), second.History()...)
			if len(got) != len(want) {
				t.Fatalf("%d steps recorded, want %d", len(got), len(want))
			}
			for i := range want {
				if math.Float64bits(got[i].Loss) != math.Float64bits(want[i].Loss) || got[i].LR != want[i].LR {
					t.Fatalf("step %d: loss %v lr %v, straight run %v lr %v", i+1, got[i].Loss, got[i].LR, want[i].Loss, want[i].LR)
				}
			}
			for i, w := range weightsOf(second) {
				for j := range w {
					if math.Float32bits(w[j]) != math.Float32bits(wantW[i][j]) {
						t.Fatalf("%s[%d]: %v after resume, %v straight", second.Model.Params[i].Name, j, w[j], wantW[i][j])
					}
				}
			}
		})
	}
}
