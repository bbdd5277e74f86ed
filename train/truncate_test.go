package train

import (
	"errors"
	"os"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
)

// TestDataTruncatedDuringTraining: a training .bin truncated during the run
// (which crashed the process with SIGBUS through the mapping) ends the run
// with an error naming the file.
func TestDataTruncatedDuringTraining(t *testing.T) {
	c := tinyConfig(t)
	tr := newTrainer(t, c, Options{})
	if _, err := tr.TrainStep(1e-3); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(c.Data.Train+".bin", 0); err != nil {
		t.Fatal(err)
	}
	var err error
	for range 10 { // batches prefetched before the truncation are still valid
		if _, err = tr.TrainStep(1e-3); err != nil {
			break
		}
	}
	if !errors.Is(err, data.ErrTruncated) {
		t.Fatalf("TrainStep after truncating %s.bin: %v, want data.ErrTruncated", c.Data.Train, err)
	}
	t.Log(err)
}
