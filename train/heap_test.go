package train

import (
	"runtime"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestHeapFlatOver1000Steps: after warm-up, 1000 training steps leave the live heap where it
// was (every op reuses its output tensor; nothing accumulates per step).
func TestHeapFlatOver1000Steps(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping 1000 steps in -short mode")
	}
	c := DefaultConfig()
	c.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 64, CtxLen: 16}
	c.Data = data.Config{Train: npyCorpus(t, 64, 4096), Sampling: "random"}
	c.Train.MicroBsz, c.Train.MaxSteps = 2, 1100
	c.OutDir = t.TempDir()
	tr := newTrainer(t, c, Options{})
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	for i := 0; i < 100; i++ {
		if _, err := tr.TrainStep(1e-3); err != nil {
			t.Fatal(err)
		}
	}
	before := heap()
	for i := 0; i < 1000; i++ {
		if _, err := tr.TrainStep(1e-3); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	t.Logf("live heap after 100 steps %d KiB, after 1100 steps %d KiB", before>>10, after>>10)
	if after > before+256<<10 {
		t.Fatalf("live heap grew from %d to %d bytes over 1000 steps", before, after)
	}
}
