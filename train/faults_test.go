package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// quickConfig is tinyConfig without validation: a few steps of a tiny model.
func quickConfig(t *testing.T, steps int) Config {
	c := tinyConfig(t)
	c.Data.Val, c.Train.EvalEvery = "", 0
	c.Train.MaxSteps = steps
	c.Optim.WarmupSteps = min(c.Optim.WarmupSteps, steps)
	return c
}

// onDraw wraps a batch source and calls f before batch number n (from 1) is drawn.
type onDraw struct {
	batchSource
	n, drawn int
	f        func()
}

func (o *onDraw) Next() *data.Batch {
	o.drawn++
	if o.drawn == o.n {
		o.f()
	}
	return o.batchSource.Next()
}

// TestInterruptAbandonsLongStep: with a large grad_accum, a cancel arriving in the middle of a
// step stops it at the next micro-batch (not at the end of the step), the checkpoint is that
// of the last completed step, and resuming from it equals an uninterrupted run.
func TestInterruptAbandonsLongStep(t *testing.T) {
	base := quickConfig(t, 3)
	base.Train.MicroBsz, base.Train.GradAccum = 1, 16
	straight := base
	straight.OutDir = t.TempDir()
	ref := newTrainer(t, straight, Options{})
	if err := ref.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := weightsOf(ref)

	c := base
	first := newTrainer(t, c, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	src := &onDraw{batchSource: first.loader, n: 16 + 3, f: cancel} // the 3rd micro-batch of step 2
	first.loader = src
	if err := first.Run(ctx); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("got %v, want ErrInterrupted", err)
	}
	if src.drawn != 16+3 {
		t.Errorf("%d micro-batches drawn, want %d: the step went on after the cancel", src.drawn, 16+3)
	}
	if first.Step() != 1 {
		t.Errorf("stopped at step %d, want 1 (the step in progress is abandoned)", first.Step())
	}
	latest, err := checkpoint.Latest(c.CheckpointDir())
	if err != nil {
		t.Fatal(err)
	}
	if ck, err := checkpoint.Load(latest); err != nil || ck.State.Step != 1 || ck.State.Tokens != 16*32 {
		t.Fatalf("checkpoint %s: %v, want step 1 and %d tokens", latest, err, 16*32)
	}
	first.Close()
	second := newTrainer(t, c, Options{Resume: c.CheckpointDir()})
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i, w := range weightsOf(second) {
		for j := range w {
			if math.Float32bits(w[j]) != math.Float32bits(want[i][j]) {
				t.Fatalf("%s[%d]: %v after the interrupt and resume, %v straight", second.Model.Params[i].Name, j, w[j], want[i][j])
			}
		}
	}
}

// TestSecondRunOnOneDirectoryRefused: a run holds out_dir and checkpoint.dir; another one on
// either is refused with an error naming the directory and the holder's pid, and may start
// once the first has closed.
func TestSecondRunOnOneDirectoryRefused(t *testing.T) {
	c := quickConfig(t, 1)
	first := newTrainer(t, c, Options{})
	sharedCk := c
	sharedCk.OutDir, sharedCk.Checkpoint.Dir = t.TempDir(), c.CheckpointDir()
	for _, tc := range []struct {
		name string
		cfg  Config
		key  string
		dir  string
	}{{"same out_dir", c, "out_dir", c.OutDir}, {"same checkpoint.dir", sharedCk, "checkpoint.dir", c.CheckpointDir()}} {
		_, err := New(tc.cfg, nil, Options{})
		if !errors.Is(err, ErrDirInUse) {
			t.Fatalf("%s: got %v, want ErrDirInUse", tc.name, err)
		}
		for _, w := range []string{tc.key, tc.dir, fmt.Sprintf("pid %d", os.Getpid())} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: %v does not name %q", tc.name, err, w)
			}
		}
	}
	first.Close()
	second, err := New(c, nil, Options{})
	if err != nil {
		t.Fatalf("after the first run closed: %v", err)
	}
	second.Close()
	// checkpoint.dir = out_dir is one directory, locked once.
	same := quickConfig(t, 1)
	same.Checkpoint.Dir = same.OutDir
	third, err := New(same, nil, Options{})
	if err != nil {
		t.Fatalf("checkpoint.dir = out_dir: %v", err)
	}
	third.Close()
}

// TestUnwritableDirsFailAtStart: an out_dir or checkpoint.dir that cannot be written fails in
// New, naming the key, not at the first checkpoint after the whole run.
func TestUnwritableDirsFailAtStart(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(blocker, []byte("x"), 0o644)
	for _, tc := range []struct {
		key string
		mod func(*Config)
	}{
		{"out_dir", func(c *Config) { c.OutDir = filepath.Join(blocker, "out") }},
		{"checkpoint.dir", func(c *Config) { c.Checkpoint.Dir = filepath.Join(blocker, "ck") }},
	} {
		c := quickConfig(t, 1)
		tc.mod(&c)
		tr, err := New(c, nil, Options{})
		if err == nil {
			tr.Close()
			t.Fatalf("%s under a regular file accepted", tc.key)
		}
		if !strings.HasPrefix(err.Error(), tc.key+" ") {
			t.Errorf("%s: error %v does not start with the key", tc.key, err)
		}
	}
	if os.Geteuid() != 0 { // root writes anywhere
		c := quickConfig(t, 1)
		ro := t.TempDir()
		os.Chmod(ro, 0o555)
		t.Cleanup(func() { os.Chmod(ro, 0o755) })
		c.Checkpoint.Dir = ro
		if tr, err := New(c, nil, Options{}); err == nil || !strings.Contains(err.Error(), "checkpoint.dir") {
			if tr != nil {
				tr.Close()
			}
			t.Errorf("read-only checkpoint.dir: %v", err)
		}
	}
}

// TestMetricsFailureKeepsFinalCheckpoint: when metrics.jsonl cannot be written at the end, the
// final checkpoint is still written and the error says so.
func TestMetricsFailureKeepsFinalCheckpoint(t *testing.T) {
	c := quickConfig(t, 2)
	tr := newTrainer(t, c, Options{})
	tr.loader = &onDraw{batchSource: tr.loader, n: 2, f: func() { tr.metrics.f.Close() }}
	err := tr.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "final checkpoint is saved") {
		t.Fatalf("got %v, want the metrics error after the saved checkpoint", err)
	}
	if _, err := checkpoint.Load(filepath.Join(c.CheckpointDir(), checkpoint.FileName(2))); err != nil {
		t.Fatalf("final checkpoint: %v", err)
	}
}

// TestDivergingRun: a learning rate that makes the weights non-finite stops the run with an
// error naming the step and the last good checkpoint, which stays, loads and is what resume
// picks.
func TestDivergingRun(t *testing.T) {
	c := quickConfig(t, 2)
	c.Checkpoint.Every, c.Checkpoint.Keep = 1, 1
	first := newTrainer(t, c, Options{})
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close()
	good := filepath.Join(c.CheckpointDir(), checkpoint.FileName(2))

	hot := c
	hot.Train.MaxSteps = 6
	hot.Optim.LRInit, hot.Optim.LRFinal, hot.Optim.WarmupSteps = 1e39, 1e39, 0 // float32 Inf in the update
	tr := newTrainer(t, hot, Options{Resume: c.CheckpointDir()})
	err := tr.Run(context.Background())
	if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), "at step 3") || !strings.Contains(err.Error(), good) {
		t.Fatalf("got %v, want ErrDiverged at step 3 naming %s", err, good)
	}
	if _, err := tr.Save(); !errors.Is(err, ErrDiverged) {
		t.Errorf("Save after divergence: %v, want ErrDiverged", err)
	}
	tr.Close()
	assertCheckpoints(t, c.CheckpointDir(), 2)
	ck, err := checkpoint.Load(good)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ck.Weights {
		if err := w.CheckFinite(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNonFiniteStreakKeepsLastGood: steps skipped for non-finite gradients write no checkpoint,
// so they never prune the last good one (checkpoint.keep 1), and the error names it.
func TestNonFiniteStreakKeepsLastGood(t *testing.T) {
	c := quickConfig(t, 10)
	c.Checkpoint.Every, c.Checkpoint.Keep, c.Train.MaxBadSteps = 1, 1, 3
	tr := newTrainer(t, c, Options{})
	head := tr.Model.Param("head.weight").F32()
	tr.loader = &onDraw{batchSource: tr.loader, n: 3, f: func() { head[5] = float32(math.NaN()) }}
	err := tr.Run(context.Background())
	good := filepath.Join(c.CheckpointDir(), checkpoint.FileName(2))
	if !errors.Is(err, ErrDiverged) || !strings.Contains(err.Error(), good) {
		t.Fatalf("got %v, want ErrDiverged naming %s", err, good)
	}
	assertCheckpoints(t, c.CheckpointDir(), 2)
}

// TestResumeSkipsCheckpointInStreak: a checkpoint written inside a run of non-finite steps (the
// final one of a run that ended so) is not what resume picks by default.
func TestResumeSkipsCheckpointInStreak(t *testing.T) {
	c := quickConfig(t, 3)
	tr := newTrainer(t, c, Options{})
	head := tr.Model.Param("head.weight").F32()
	for s := 1; s <= 3; s++ {
		if s == 3 {
			saved := head[5]
			head[5] = float32(math.NaN())
			res, err := tr.TrainStep(1e-3)
			head[5] = saved
			if err != nil || !res.Skipped {
				t.Fatalf("poisoned step: %+v, %v", res, err)
			}
		} else if _, err := tr.TrainStep(1e-3); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Save(); err != nil {
			t.Fatal(err)
		}
	}
	tr.Close()
	assertCheckpoints(t, c.CheckpointDir(), 1, 2, 3)
	again := newTrainer(t, c, Options{Resume: c.CheckpointDir()})
	if again.Step() != 2 {
		t.Fatalf("resumed at step %d, want 2 (step 3 was non-finite)", again.Step())
	}
	again.Close()
	// With only such checkpoints left, resume is an error, not a fresh start over them.
	for _, s := range []int64{1, 2} {
		os.Remove(filepath.Join(c.CheckpointDir(), checkpoint.FileName(s)))
	}
	if tr, err := New(c, nil, Options{Resume: c.CheckpointDir()}); err == nil || !strings.Contains(err.Error(), "non-finite") {
		if tr != nil {
			tr.Close()
		}
		t.Fatalf("resume with only a non-finite checkpoint: %v, want an error", err)
	}
}

func assertCheckpoints(t *testing.T, dir string, steps ...int64) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got, want []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "step-") {
			got = append(got, e.Name())
		}
	}
	for _, s := range steps {
		want = append(want, checkpoint.FileName(s))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("checkpoints %v, want %v", got, want)
	}
}

// TestResumeWithoutCheckpointStartsFresh: resuming from the run's own checkpoint.dir before any
// checkpoint exists starts from step 0 and says so; another directory without one is an error.
func TestResumeWithoutCheckpointStartsFresh(t *testing.T) {
	c := quickConfig(t, 1)
	var logBuf bytes.Buffer
	tr, err := New(c, slog.New(slog.NewTextHandler(&logBuf, nil)), Options{Resume: c.CheckpointDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if tr.Step() != 0 || !strings.Contains(logBuf.String(), "no checkpoint yet, starting fresh") {
		t.Fatalf("step %d, log %q", tr.Step(), logBuf.String())
	}
	if err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	other := quickConfig(t, 1)
	if tr, err := New(other, nil, Options{Resume: t.TempDir()}); err == nil {
		tr.Close()
		t.Fatal("resuming from an empty directory that is not checkpoint.dir succeeded")
	}
}

// TestModelSectionFromCheckpoint: on resume the model comes from the checkpoint (as
// configs/README says), with a warning naming each model key the config contradicts.
func TestModelSectionFromCheckpoint(t *testing.T) {
	_, got := resumeWithOtherModel(t, quickConfig(t, 1), func(o *Config) { o.Model.Layers, o.Model.Embd = 3, 64 },
		[]string{"model.n_layer = 3 in the config but 2 in the checkpoint", "model.n_embd = 64 in the config but 32"}, "model.vocab_size")
	if got.Layers != 2 || got.Embd != 32 {
		t.Fatalf("resumed model %v, want the checkpoint's L2-D32", got)
	}
}

// TestTokenizerOpenedAtStart: data.tokenizer is opened in New: a missing or malformed file, or
// a vocabulary larger than model.vocab_size, fails naming the key.
func TestTokenizerOpenedAtStart(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte("{not json"), 0o644)
	vocab := filepath.Join(t.TempDir(), "vocab.txt")
	var b strings.Builder
	for c := range 256 { // every byte: a valid World vocabulary, whose ids go to 65535
		fmt.Fprintf(&b, "%d b'\\x%02x' 1\n", c+1, c)
	}
	os.WriteFile(vocab, []byte(b.String()), 0o644)
	for _, tc := range []struct {
		spec, want string
	}{
		{"byte", ""},
		{"world:" + filepath.Join(t.TempDir(), "missing.txt"), "data.tokenizer"},
		{"neox:" + bad, "data.tokenizer"},
		{"world:" + vocab, "model.vocab_size = 256"},
	} {
		c := quickConfig(t, 1)
		c.Data.Tokenizer = tc.spec
		tr, err := New(c, nil, Options{})
		if tr != nil {
			tr.Close()
		}
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

// TestMetricsAfterResume: metrics.jsonl keeps each step once after a crash and resume (the
// re-run steps' old records and a half line are dropped), is not written through a symbolic
// link, and loss.svg plots the whole run.
func TestMetricsAfterResume(t *testing.T) {
	c := quickConfig(t, 5)
	c.Checkpoint.Every, c.Checkpoint.Keep = 2, 0
	first := newTrainer(t, c, Options{})
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close()
	// A crash after step 5's records but before its checkpoint, with a half line from a full disk.
	for _, s := range []int64{4, 5} {
		os.Remove(filepath.Join(c.CheckpointDir(), checkpoint.FileName(s)))
	}
	metrics := filepath.Join(c.OutDir, "metrics.jsonl")
	f, _ := os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(`{"step":6,"tok`)
	f.Close()

	second := newTrainer(t, c, Options{Resume: c.CheckpointDir()})
	if second.Step() != 2 {
		t.Fatalf("resumed at %d, want 2", second.Step())
	}
	if err := second.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	second.Close()
	raw, _ := os.ReadFile(metrics)
	var steps []int
	for _, line := range strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n") {
		var r struct{ Step int }
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		steps = append(steps, r.Step)
	}
	if got, want := fmt.Sprint(steps), "[1 2 3 4 5 5]"; got != want { // the last: the final record
		t.Errorf("metrics steps %s, want %s", got, want)
	}
	svg, _ := os.ReadFile(filepath.Join(c.OutDir, "loss.svg"))
	m := regexp.MustCompile(`stroke="#1f77b4" stroke-width="1.5" points="([^"]*)"`).FindSubmatch(svg)
	if m == nil || len(strings.Fields(string(m[1]))) != 5 {
		t.Errorf("loss.svg's train curve: %q, want 5 points (steps 1-5)", m)
	}

	// A symbolic link in place of metrics.jsonl: its target stays untouched.
	target := filepath.Join(t.TempDir(), "precious")
	os.WriteFile(target, []byte("keep me\n"), 0o644)
	os.Remove(metrics)
	if err := os.Symlink(target, metrics); err != nil {
		t.Fatal(err)
	}
	third := newTrainer(t, quickConfigIn(c, 1), Options{})
	if err := third.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me\n" {
		t.Errorf("the link's target was written: %q", b)
	}
	if fi, err := os.Lstat(metrics); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("metrics.jsonl: %v, %v; want a regular file", fi.Mode(), err)
	}
}

func quickConfigIn(c Config, steps int) Config {
	c.Train.MaxSteps = steps
	c.Optim.WarmupSteps = min(c.Optim.WarmupSteps, steps)
	return c
}

// TestInterruptedErrorNamesCheckpoint: the interrupt's error names the checkpoint it wrote,
// and none inside a run of non-finite steps (where nothing is written), so that a caller never
// claims a checkpoint that does not exist.
func TestInterruptedErrorNamesCheckpoint(t *testing.T) {
	for _, streak := range []bool{false, true} {
		t.Run(fmt.Sprintf("streak=%v", streak), func(t *testing.T) {
			c := quickConfig(t, 10)
			c.Checkpoint.Every, c.Train.MaxBadSteps = 1, 5
			tr := newTrainer(t, c, Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			head := tr.Model.Param("head.weight").F32()
			tr.loader = &onDraw{batchSource: tr.loader, n: 3, f: func() {
				if streak {
					head[5] = float32(math.NaN())
				}
			}}
			tr.loader = &onDraw{batchSource: tr.loader, n: 5, f: cancel}
			err := tr.Run(ctx)
			var ie *InterruptedError
			if !errors.As(err, &ie) || !errors.Is(err, ErrInterrupted) {
				t.Fatalf("got %v, want an *InterruptedError", err)
			}
			good := filepath.Join(c.CheckpointDir(), checkpoint.FileName(2))
			if streak {
				if ie.Checkpoint != "" || ie.LastGood != good || !strings.Contains(err.Error(), "no checkpoint written; the last good checkpoint is "+good) {
					t.Errorf("%+v (%v), want no checkpoint and last good %s", ie, err, good)
				}
				assertCheckpoints(t, c.CheckpointDir(), 1, 2)
				return
			}
			want := filepath.Join(c.CheckpointDir(), checkpoint.FileName(int64(ie.Step)))
			if ie.Checkpoint != want || ie.Step < 4 || err.Error() != fmt.Sprintf("interrupted at step %d", ie.Step) {
				t.Errorf("%+v (%v), want checkpoint %s", ie, err, want)
			}
			if _, err := checkpoint.Load(want); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestModelSectionFromCheckpointX070: an x070 run's checkpoints store its model section with
// the x070 keys; resuming with a config that says otherwise (another head size and LoRA width,
// or RWKV-4) builds the checkpoint's x070 model, warning for each contradicting key.
func TestModelSectionFromCheckpointX070(t *testing.T) {
	c := quickConfigIn(tinyConfigX070(t), 1)
	c.Data.Val, c.Train.EvalEvery = "", 0
	c.Model.DimDecay, c.Model.NoV0Layer0 = 8, true
	first := newTrainer(t, c, Options{})
	if err := first.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	first.Close()
	path, err := checkpoint.Latest(c.CheckpointDir())
	if err != nil {
		t.Fatal(err)
	}
	ck, err := checkpoint.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"arch: x070", "head_size: 16", "d_decay_lora: 8", "no_v0_layer0: true"} {
		if !strings.Contains(ck.State.Config, want) {
			t.Errorf("stored config lacks %q:\n%s", want, ck.State.Config)
		}
	}
	for _, tc := range []struct {
		name  string
		mod   func(*Config)
		warns []string
	}{
		{"head size and lora", func(o *Config) { o.Model.HeadSize, o.Model.DimDecay, o.Model.NoV0Layer0 = 32, 0, false },
			[]string{"model.head_size = 32 in the config but 16", "model.d_decay_lora = 32 in the config but 8", "model.no_v0_layer0 = false in the config but true"}},
		{"x040", func(o *Config) { o.Model.Config = model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 32} },
			[]string{`model.arch = \"x040\" in the config but \"x070\"`}}, // quotes escaped by the text handler
	} {
		t.Run(tc.name, func(t *testing.T) {
			other := c
			other.Train.MaxSteps = 2
			tc.mod(&other)
			var logBuf bytes.Buffer
			tr, err := New(other, slog.New(slog.NewTextHandler(&logBuf, nil)), Options{Resume: c.CheckpointDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if tr.Model.Config != first.Model.Config {
				t.Fatalf("resumed model %+v, want the checkpoint's %+v", tr.Model.Config, first.Model.Config)
			}
			for _, w := range tc.warns {
				if !strings.Contains(logBuf.String(), w) {
					t.Errorf("log does not warn %q:\n%s", w, logBuf.String())
				}
			}
			if strings.Contains(logBuf.String(), "model.d_aaa_lora") {
				t.Errorf("warned about an agreeing key:\n%s", logBuf.String())
			}
		})
	}
}
