package train

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/mpi"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
	"github.com/rwkv-go/rwkv-go/weights"
)

// ErrInterrupted is wrapped by Run's error (an *InterruptedError) when its context was
// cancelled; a resumable checkpoint of the last completed step has been written first (unless
// the run was inside a run of non-finite steps: then the error says so, and resume continues
// from the last good one).
var ErrInterrupted = errors.New("interrupted")

// InterruptedError is Run's error when its context was cancelled; it wraps ErrInterrupted and
// says which checkpoint, if any, was written.
type InterruptedError struct {
	Step int // completed optimiser steps
	// Checkpoint is the file written on the interrupt; "" when none was (the run was inside a
	// streak of non-finite steps, and resume continues from LastGood).
	Checkpoint string
	BadInRow   int    // the length of that streak
	LastGood   string // the newest checkpoint written or resumed from outside such a streak, or ""
}

func (e *InterruptedError) Error() string {
	if e.Checkpoint != "" {
		return fmt.Sprintf("%v at step %d", ErrInterrupted, e.Step)
	}
	note := "there is no good checkpoint yet"
	if e.LastGood != "" {
		note = "the last good checkpoint is " + e.LastGood
	}
	return fmt.Sprintf("%v at step %d, inside a run of %d non-finite steps: no checkpoint written; %s", ErrInterrupted, e.Step, e.BadInRow, note)
}

func (e *InterruptedError) Unwrap() error { return ErrInterrupted }

// ErrDiverged is returned by Run after train.max_bad_steps non-finite steps in a row, or when an
// update made the weights non-finite.
var ErrDiverged = errors.New("training diverged")

// Options are the parts of a job that are not configuration.
type Options struct {
	// ConfigYAML is the resolved config, stored in every checkpoint.
	ConfigYAML string
	// Resume is a checkpoint file or directory to continue from ("" to start fresh).
	Resume string
	// Progress receives the live progress line or log lines (nil: none).
	Progress *Progress
	// World is the data-parallel world the run is one rank of (see world.go); nil is a world
	// of one process. Every rank calls New, Run, Validate and Save together, with the same
	// config: they are collective.
	World *mpi.World

	// randomWeights (Bench) replaces RWKV-LM initialisation by cheap small random weights, so
	// that measuring a large shape does not pay (in time and memory) for its init.
	randomWeights bool
}

// batchSource is what the loop draws micro-batches from: a *data.Loader, or a fixed list of
// batches in tests.
type batchSource interface {
	Next() *data.Batch
	State() ([]byte, error)
	SetState([]byte) error
	Close() error
}

// Trainer runs one training job. Build it with New; Run trains.
type Trainer struct {
	cfg  Config
	opts Options
	log  *slog.Logger

	Model  *model.Model
	graph  *model.Graph           // one pass over a whole sample, or nil when chunks is set
	chunks *chunkRunner           // train.chunk_len: the sample in chunks with the state carried
	params []optim.Param[float32] // Grad holds the accumulated gradient of a step
	pidx   []int                  // per params entry: its index in Model.Params (PEFT trains a subset)
	slot   []int                  // per Model.Params entry: its index in params, or -1 when frozen
	opt    *optim.AdamW[float32]
	sched  optim.Schedule

	toks   *data.Tokens
	loader batchSource
	val    *data.Tokens

	step      int   // completed optimiser steps
	tokens    int64 // tokens consumed
	badInRow  int
	badTotal  int
	steps     int // total steps of the run
	metrics   *metricsWriter
	lastVal   float64
	finalVal  *EvalResult
	history   []Point
	started   time.Time
	startStep int
	stepTime  time.Duration // time spent in TrainStep since Run started: the tokens/s denominator

	locks    []*os.File // flocks on out_dir and checkpoint.dir, held until Close
	lastGood string     // the newest checkpoint written or resumed from outside a non-finite streak
	diverged bool       // an update made the weights non-finite: nothing may be saved
	prior    []Point    // metrics.jsonl's records before this Run (after a resume), for the plot

	world        *mpi.World
	flat         []float32     // all gradients packed for the allreduce
	reduceTime   time.Duration // spent in reduceGrads since Run started (part of stepTime)
	waitTime     time.Duration // the part of it spent waiting for the slowest rank
	frozenBcasts int           // times syncFrozen found the ranks' frozen base different and broadcast rank 0's
}

// New builds the model (initialised or loaded), its graph, the optimiser and the data
// pipeline, and resumes from a checkpoint when asked. Everything that can be checked is
// checked here, before any training starts.
func New(cfg Config, log *slog.Logger, opts Options) (_ *Trainer, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.ConfigYAML == "" { // a library caller: store at least the model section, which resume takes
		b, err := yaml.Marshal(struct {
			Model ModelConfig `yaml:"model"`
		}{cfg.Model})
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		opts.ConfigYAML = string(b)
	}
	t := &Trainer{cfg: cfg, opts: opts, log: log, lastVal: math.NaN(), world: opts.World}
	if t.world == nil {
		t.world = mpi.Local()
	}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	var dirErr error
	if t.leader() { // the other ranks write nothing
		dirErr = t.prepareDirs()
	}
	if _, err := t.shareOutcome("preparing out_dir", "", dirErr); err != nil {
		return nil, err
	}
	var ck *checkpoint.Checkpoint
	if opts.Resume != "" {
		if ck, err = t.loadResume(opts.Resume); err != nil {
			return nil, err
		}
	}
	if ck != nil {
		if err := t.checkGlobalBatch(ck); err != nil {
			return nil, err
		}
	}
	t.steps = t.globalSteps()
	if err := t.openData(); err != nil {
		return nil, err
	}
	if err := t.checkTokenizer(); err != nil {
		return nil, err
	}
	if err := t.buildModel(ck != nil); err != nil {
		return nil, err
	}
	if err := t.buildOptimizer(); err != nil {
		return nil, err
	}
	if ck != nil {
		if err := t.resume(ck); err != nil {
			return nil, err
		}
	}
	if err := t.syncFromLeader(); err != nil {
		return nil, err
	}
	return t, nil
}

// checkTokenizer opens data.tokenizer, when set, so that a missing or malformed file fails at
// start, and checks that its ids fit the model's vocabulary.
func (t *Trainer) checkTokenizer() error {
	spec := t.cfg.Data.Tokenizer
	if spec == "" {
		return nil
	}
	tok, err := data.ParseTokenizer(spec)
	if err != nil {
		return fmt.Errorf("data.tokenizer %q: %w", spec, err)
	}
	if n := tok.VocabSize(); n > t.cfg.Model.Vocab {
		return fmt.Errorf("%w: data.tokenizer %q has %d tokens but model.vocab_size = %d; raise model.vocab_size or fix data.tokenizer",
			ErrConfig, spec, n, t.cfg.Model.Vocab)
	}
	return nil
}

func (t *Trainer) openData() error {
	c := t.cfg
	toks, err := data.OpenFormat(c.Data.Train, c.Data.Format)
	if err != nil {
		return err
	}
	t.toks = toks
	if err := toks.CheckVocab(c.Model.Vocab); err != nil {
		return err
	}
	sampler, err := data.NewTrainSampler(c.Data, toks, c.Model.CtxLen, c.Train.Seed)
	if err != nil {
		return err
	}
	if m := toks.Mask(); m != nil {
		if c.Train.ChunkLen > 0 && c.Train.ChunkLen < c.Model.CtxLen {
			return fmt.Errorf("%w: train.chunk_len %d with the loss mask %q: chunked training of instruction data is not supported yet; set train.chunk_len to 0",
				ErrConfig, c.Train.ChunkLen, m.Path())
		}
		t.log.Info("instruction data: loss on masked tokens only", "mask", m.Path(), "learn_tokens", m.Learn(), "tokens", toks.Len())
	}
	if n := t.world.Size(); n > 1 { // this rank's rows of the global batch
		if sampler, err = data.NewShardSampler(sampler, t.world.Rank(), n); err != nil {
			return err
		}
	}
	if t.loader, err = data.NewLoader(sampler, c.Train.MicroBsz, c.Model.CtxLen, 4); err != nil {
		return err
	}
	if c.Data.Val != "" {
		if t.val, err = data.OpenFormat(c.Data.Val, c.Data.Format); err != nil {
			return err
		}
		if err := t.val.CheckVocab(c.Model.Vocab); err != nil {
			return err
		}
		if t.val.Len() < 2 {
			return fmt.Errorf("data.val %q: %d tokens, need at least 2 to score one", c.Data.Val, t.val.Len())
		}
		if err := data.AttachValMask(c.Data, t.val); err != nil {
			return err
		}
	}
	return nil
}

// buildModel builds the model: loaded from model.load, or initialised; resuming, the
// checkpoint's weights replace either, so model.load is not read.
func (t *Trainer) buildModel(resuming bool) error {
	c := t.cfg
	// PEFT checkpoints hold only the trained tensors: the frozen base always comes from model.load.
	if c.Model.Load != "" && (!resuming || c.PEFT.On()) {
		m, err := weights.Load(c.Model.Load, c.Model.CtxLen, model.Float32)
		if err != nil {
			return fmt.Errorf("model.load: %w", err)
		}
		if err := checkLoadedShape(c.Model.Load, m.Config, c.Model.Config); err != nil {
			return err
		}
		t.Model = m
		t.log.Info("loaded weights", "path", c.Model.Load, "model", m.Config.String())
	} else {
		m, err := model.New(c.Model.Config, model.Float32)
		if err != nil {
			return err
		}
		if t.opts.randomWeights {
			fillRandom(m, c.Train.Seed)
		} else {
			m.Init(c.Train.Seed, c.Optim.LRInit)
		}
		t.Model = m
	}
	if err := t.applyPEFT(resuming); err != nil {
		return err
	}
	if c.Train.ChunkLen > 0 && c.Train.ChunkLen < c.Model.CtxLen {
		r, err := newChunkRunner(t.Model, c.Train.MicroBsz, c.Model.CtxLen, c.Train.ChunkLen, c.Train.BPTT, c.Train.L2Wrap)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		t.chunks = r
		return nil
	}
	g, err := t.Model.NewGraph(model.GraphOptions{B: c.Train.MicroBsz, T: c.Model.CtxLen, Grads: true, L2Wrap: c.Train.L2Wrap})
	if err != nil {
		return err
	}
	t.graph = g
	return nil
}

func (t *Trainer) buildOptimizer() error {
	c := t.cfg
	sc := c.Optim.ScheduleConfig
	if sc.TotalSteps == 0 {
		sc.TotalSteps = t.steps
	}
	sched, err := optim.NewSchedule(sc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	t.sched = sched
	// With one micro-batch per step and no chunks, the optimiser reads the graph's own gradient
	// buffers (set each step) and needs none of its own; until then every parameter points at
	// a prefix of one shared scratch slice.
	var scratch []float32
	if t.directGrads() {
		n := 0
		for _, p := range t.Model.Params {
			n = max(n, p.Len())
		}
		scratch = make([]float32, n)
	}
	for i, p := range t.Model.Params {
		t.slot = append(t.slot, -1)
		if t.Model.Frozen(p.Name) {
			continue
		}
		t.slot[i] = len(t.params)
		t.pidx = append(t.pidx, i)
		w := p.F32()
		g := scratch[:min(len(scratch), len(w))]
		if !t.directGrads() {
			g = make([]float32, len(w))
		}
		t.params = append(t.params, optim.NewParam(c.Model.Arch, p.Name, p.Shape, w, g, c.Optim.LayerwiseLR))
	}
	t.opt = optim.NewAdamW(t.params, c.Optim.AdamWConfig)
	return nil
}

// directGrads reports whether a step's gradient is exactly one graph run's, so that the
// optimiser can read the graph's gradient buffers without an accumulation copy.
func (t *Trainer) directGrads() bool { return t.cfg.Train.GradAccum == 1 && t.chunks == nil }

// Config is the configuration the trainer runs: New's, with the model section taken from the
// checkpoint on resume.
func (t *Trainer) Config() Config { return t.cfg }

// ConfigYAML is the resolved config stored in the trainer's checkpoints: Options.ConfigYAML,
// with the model section taken from the checkpoint on resume.
func (t *Trainer) ConfigYAML() string { return t.opts.ConfigYAML }

// Step is the number of completed optimiser steps.
func (t *Trainer) Step() int { return t.step }

// LastValidation is the validation at the end of Run, if there was validation data.
func (t *Trainer) LastValidation() (EvalResult, bool) {
	if t.finalVal == nil {
		return EvalResult{}, false
	}
	return *t.finalVal, true
}

// History is the loss curve of this trainer's steps (after a resume, the earlier steps are in
// metrics.jsonl).
func (t *Trainer) History() []Point { return t.history }

// Run trains until the configured number of steps, validating, logging and checkpointing on
// the way. On ctx cancellation it stops at the next micro-batch, abandoning the step in
// progress, saves a resumable checkpoint of the last completed step and returns
// an *InterruptedError (wrapping ErrInterrupted). When the run diverges it returns ErrDiverged naming the step and the last
// good checkpoint. A failure to write metrics.jsonl or loss.svg never costs the final
// checkpoint: it is written first.
func (t *Trainer) Run(ctx context.Context) error {
	if t.diverged {
		return fmt.Errorf("%w: the weights are non-finite; %s", ErrDiverged, t.lastGoodNote())
	}
	if _, err := t.shareOutcome("opening metrics.jsonl", "", t.openRunFiles()); err != nil {
		return err
	}
	if t.metrics != nil {
		defer t.metrics.Close()
	}
	t.started, t.startStep = time.Now(), t.step
	for t.step < t.steps {
		stop, err := t.agreeStop(ctx)
		if err != nil {
			return err
		}
		if stop {
			return t.interrupted()
		}
		lr := t.sched.LR(t.step)
		t0 := time.Now()
		res, err := t.trainStep(ctx, lr)
		t.stepTime += time.Since(t0)
		if errors.Is(err, errStepAbandoned) {
			return t.interrupted()
		}
		if errors.Is(err, ErrDiverged) {
			t.record(Point{Step: t.step, Tokens: t.tokens, Loss: res.Loss, LR: lr, GradNorm: res.GradNorm, Skipped: res.Skipped, ValLoss: math.NaN()})
			return err // it names the step and the last good checkpoint
		}
		if err != nil {
			return fmt.Errorf("step %d: %w", t.step, err)
		}
		if err := t.afterStep(res, lr); err != nil {
			return err
		}
	}
	return t.finish()
}

// openRunFiles sweeps temporary files and opens metrics.jsonl: on rank 0 only.
func (t *Trainer) openRunFiles() error {
	if !t.leader() {
		return nil
	}
	for _, d := range []struct{ key, dir string }{{"out_dir", t.cfg.OutDir}, {"checkpoint.dir", t.cfg.CheckpointDir()}} {
		if _, err := checkpoint.SweepTemp(d.dir); err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
	}
	mw, prior, err := openMetrics(filepath.Join(t.cfg.OutDir, "metrics.jsonl"), t.step)
	if err != nil {
		return err
	}
	t.metrics, t.prior = mw, prior
	return nil
}

// interrupted saves a resumable checkpoint of the last completed step and returns an
// *InterruptedError naming it. Inside a run of non-finite steps it saves nothing: resume then
// continues from the last good checkpoint, whose weights are the same.
func (t *Trainer) interrupted() error {
	e := &InterruptedError{Step: t.step, BadInRow: t.badInRow, LastGood: t.lastGood}
	if t.badInRow > 0 {
		return e
	}
	path, err := t.Save()
	if err != nil {
		return fmt.Errorf("saving on interrupt at step %d: %w", t.step, err)
	}
	e.Checkpoint, e.LastGood = path, t.lastGood
	return e
}

// afterStep logs, validates and checkpoints as configured.
func (t *Trainer) afterStep(res StepResult, lr float64) error {
	c := t.cfg
	pt := Point{Step: t.step, Tokens: t.tokens, Loss: res.Loss, LR: lr, GradNorm: res.GradNorm, Skipped: res.Skipped,
		TokensPerSec: t.tokensPerSec(), ValLoss: math.NaN()}
	if c.Train.EvalEvery > 0 && t.step%c.Train.EvalEvery == 0 && t.val != nil && t.step < t.steps {
		v, err := t.Validate()
		if err != nil {
			return fmt.Errorf("validation at step %d: %w", t.step, err)
		}
		pt.ValLoss = v.Loss
	}
	t.record(pt)
	if c.Checkpoint.Every > 0 && t.step%c.Checkpoint.Every == 0 && t.step < t.steps {
		if t.badInRow > 0 {
			t.log.Warn("checkpoint skipped: inside a run of non-finite steps", "step", t.step, "in_a_row", t.badInRow, "last_good", t.lastGood)
			return nil
		}
		if _, err := t.Save(); err != nil {
			return fmt.Errorf("checkpoint at step %d: %w", t.step, err)
		}
	}
	return nil
}

func (t *Trainer) finish() error {
	pt := Point{Step: t.step, Tokens: t.tokens, Loss: math.NaN(), ValLoss: math.NaN(), TokensPerSec: t.tokensPerSec()}
	if len(t.history) > 0 {
		last := t.history[len(t.history)-1]
		pt.Loss, pt.LR, pt.GradNorm = last.Loss, last.LR, last.GradNorm
	}
	if t.val != nil {
		v, err := t.Validate()
		if err != nil {
			return fmt.Errorf("final validation: %w", err)
		}
		pt.ValLoss = v.Loss
		t.finalVal = &v
		t.log.Info("validation", "step", t.step, "loss", v.Loss, "ppl", v.PPL, "bits_per_token", v.BitsPerToken)
	}
	if t.opts.Progress != nil && t.leader() {
		t.opts.Progress.Done()
	}
	if n := t.world.Size(); n > 1 && t.stepTime > 0 {
		step, wait := t.stepTime.Seconds(), t.waitTime.Seconds()
		t.log.Info("data-parallel", "world_size", n, "step_s", step, "wait_s", wait, "allreduce_s", t.reduceTime.Seconds()-wait,
			"wait_share", wait/step, "allreduce_share", (t.reduceTime.Seconds()-wait)/step, "gradient_bytes", 4*len(t.flat))
	}
	// The checkpoint first: a failed metrics or plot write must never cost it.
	if _, err := t.Save(); err != nil {
		return fmt.Errorf("final checkpoint: %w", err)
	}
	if !t.leader() {
		return nil
	}
	var errs []error
	if err := t.metrics.write(pt); err != nil {
		errs = append(errs, err)
	}
	if err := t.metrics.Close(); err != nil {
		errs = append(errs, err)
	}
	all := append(append([]Point(nil), t.prior...), t.history...)
	if err := WriteLossPlot(filepath.Join(t.cfg.OutDir, "loss.svg"), all); err != nil {
		errs = append(errs, fmt.Errorf("loss plot: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("the final checkpoint is saved, but: %w", err)
	}
	return nil
}

// tokensPerSec is the training throughput, validation and checkpoint time excluded.
func (t *Trainer) tokensPerSec() float64 {
	el := t.stepTime.Seconds()
	if el <= 0 {
		return 0
	}
	return float64(int64(t.step-t.startStep)*t.tokensPerStep()) / el
}

// record appends a point to the history, the metrics file and the progress display.
func (t *Trainer) record(pt Point) {
	t.history = append(t.history, pt)
	if !math.IsNaN(pt.ValLoss) {
		t.lastVal = pt.ValLoss
	}
	if !t.leader() {
		return
	}
	if err := t.metrics.write(pt); err != nil {
		t.log.Warn("metrics", "err", err)
	}
	if t.opts.Progress != nil {
		t.opts.Progress.Update(pt, t.steps, t.lastVal, time.Since(t.started), t.step-t.startStep)
	}
}

// Close releases the graph and the data files. It may be called more than once.
func (t *Trainer) Close() error {
	var errs []error
	if t.graph != nil {
		errs = append(errs, t.graph.Close())
		t.graph = nil
	}
	if t.chunks != nil {
		t.chunks.Close()
		t.chunks = nil
	}
	if t.loader != nil {
		errs = append(errs, t.loader.Close())
		t.loader = nil
	}
	if t.toks != nil {
		errs = append(errs, t.toks.Close())
		t.toks = nil
	}
	if t.val != nil {
		errs = append(errs, t.val.Close())
		t.val = nil
	}
	for _, f := range t.locks {
		if f != nil {
			errs = append(errs, f.Close())
		}
	}
	t.locks = nil
	return errors.Join(errs...)
}
