package train

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
)

// What the fine-tuning tests of x052/x060 (finetune5_test.go) and x070 (finetune7_test.go)
// share: writing model files, training from each with model.load, and the config errors of a
// model section that does not describe the file.

// writeModelFile writes dir/name with export and returns its path.
func writeModelFile(t *testing.T, dir, name string, export func(io.Writer) error) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := checkpoint.WriteFileAtomic(path, export); err != nil {
		t.Fatal(err)
	}
	return path
}

// fineTuneFile is a model file to load: its form, its path and the relative tolerance of each
// weight after loading (bf16 keeps 8 bits).
type fineTuneFile struct {
	name string
	path string
	tol  float64
}

// testFineTuneFiles: for each file, a short run of c with model.load set to it starts from src's
// weights (to the file's tolerance) and lowers the training loss.
func testFineTuneFiles(t *testing.T, c Config, src *model.Model, files []fineTuneFile) {
	for _, tc := range files {
		t.Run(tc.name, func(t *testing.T) {
			ft := quickConfigIn(c, 8)
			ft.OutDir, ft.Model.Load = t.TempDir(), tc.path
			tr := newTrainer(t, ft, Options{})
			for i, p := range tr.Model.Params {
				want, got := src.Params[i].F32(), p.F32()
				for j := range want {
					if d := math.Abs(float64(got[j] - want[j])); d > tc.tol*math.Abs(float64(want[j])) {
						t.Fatalf("%s[%d] = %v after model.load, file has %v", p.Name, j, got[j], want[j])
					}
				}
			}
			if err := tr.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			h := tr.History()
			if first, last := h[0].Loss, h[len(h)-1].Loss; !(last < first) {
				t.Errorf("loss %v -> %v: fine-tuning did not lower it", first, last)
			}
		})
	}
}

// loadConfigError is a change to the config of a run that loads a model file, and what its
// ErrConfig must say.
type loadConfigError struct {
	name string
	mod  func(*Config)
	want string
}

// testLoadConfigErrors: c with model.load = path, changed by each case's mod, is an ErrConfig
// whose message holds the case's want.
func testLoadConfigErrors(t *testing.T, c Config, path string, cases []loadConfigError) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ft := quickConfigIn(c, 1)
			ft.OutDir, ft.Model.Load = t.TempDir(), path
			tc.mod(&ft)
			tr, err := New(ft, nil, Options{})
			if err == nil {
				tr.Close()
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrConfig with %q", err, tc.want)
			}
		})
	}
}

// resumeWithOtherModel runs c, then resumes from its checkpoints with a config that edit
// changes: the log must warn each of warns and must not mention agreeing (a model key both
// agree on). It returns the first run's and the resumed run's model configs (the model comes
// from the checkpoint). The x040 and x060 tests of the model section on resume share it.
func resumeWithOtherModel(t *testing.T, c Config, edit func(*Config), warns []string, agreeing string) (first, resumed model.Config) {
	t.Helper()
	tr1 := newTrainer(t, c, Options{})
	if err := tr1.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	tr1.Close()
	other := c
	other.Train.MaxSteps = 2
	edit(&other)
	var logBuf bytes.Buffer
	tr, err := New(other, slog.New(slog.NewTextHandler(&logBuf, nil)), Options{Resume: c.CheckpointDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, w := range warns {
		if !strings.Contains(logBuf.String(), w) {
			t.Errorf("log does not warn %q:\n%s", w, logBuf.String())
		}
	}
	if strings.Contains(logBuf.String(), agreeing) {
		t.Errorf("warned about an agreeing key:\n%s", logBuf.String())
	}
	return tr1.Model.Config, tr.Model.Config
}
