package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/term"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/internal/mpi"
	"github.com/rwkv-go/rwkv-go/train"
	"github.com/rwkv-go/rwkv-go/weights"
)

// runTrain implements `rwkv-train --config FILE [--resume [DIR]] [--key.path=value ...]`.
func runTrain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var path, resume string
	var overrides []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-h" || a == "-help" || a == "--help":
			usage(stdout)
			return flag.ErrHelp
		case a == "--config" || a == "-config":
			if i+1 >= len(args) || strings.HasPrefix(args[i+1], "-") {
				return cli.Usagef("--config needs a file")
			}
			i++
			path = args[i]
		case strings.HasPrefix(a, "--config="):
			path = strings.TrimPrefix(a, "--config=")
			if path == "" {
				return cli.Usagef("--config needs a file")
			}
		case a == "--resume":
			resume = "latest"
			if i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
				i++
				resume = args[i]
			}
		case strings.HasPrefix(a, "--resume="):
			resume = strings.TrimPrefix(a, "--resume=")
		default:
			overrides = append(overrides, a)
		}
	}
	if path == "" {
		return cli.Usagef("--config FILE is required (see configs/)")
	}
	cfg, err := loadConfig(path, overrides, os.Environ())
	if err != nil {
		return configError{err}
	}
	if resume == "latest" {
		resume = cfg.CheckpointDir()
	}
	err = trainJob(ctx, cfg, resume, stdout, stderr, nil)
	if saved := savedOnInterrupt(err); saved != "" {
		return fmt.Errorf("%w; checkpoint saved as %s: continue with --resume", err, saved)
	}
	return err // inside a run of non-finite steps, the error says no checkpoint was written
}

// savedOnInterrupt is the checkpoint an interrupted run wrote, or "" if err is no interrupt
// or none was written.
func savedOnInterrupt(err error) string {
	var ie *train.InterruptedError
	if errors.As(err, &ie) {
		return ie.Checkpoint
	}
	return ""
}

// trainJob runs a resolved config to the end and exports the model; after, if not nil, runs
// last with the trained model. An interrupted run returns a *train.InterruptedError, which
// names the checkpoint written, if any.
//
// Started by mpirun (or srun), the process is one rank of a data-parallel run (train/world.go):
// rank 0 prints, logs at info level and writes the files; the other ranks log warnings only.
func trainJob(ctx context.Context, cfg train.Config, resume string, stdout, stderr io.Writer, after func(*train.Trainer) error) error {
	yaml, err := marshalConfig(cfg)
	if err != nil {
		return err
	}
	world, err := mpi.Init()
	if err != nil {
		return err
	}
	shareCores()
	if err := blas.Init(); err != nil {
		return configError{err}
	}
	leader := world.Rank() == 0
	level, progress := slog.LevelInfo, train.NewProgress(stderr, isTerminal(stderr), cfg.Train.LogEvery)
	if !leader {
		level, progress = slog.LevelWarn, nil
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	if world.Size() > 1 {
		log = log.With("rank", world.Rank())
	}
	tr, err := train.New(cfg, log, train.Options{ConfigYAML: yaml, Resume: resume, Progress: progress, World: world})
	if err != nil {
		return err // train.ErrConfig: exit 2
	}
	defer tr.Close()
	// What is printed is what runs: on resume the model section is the checkpoint's.
	if leader {
		fmt.Fprintf(stderr, "# resolved config\n%s", tr.ConfigYAML())
	}
	log.Info("start", "model", tr.Model.Config.String(), "params", tr.Model.NumParams(), "steps", tr.Steps(),
		"tokens_per_step", tr.TokensPerStep(), "world_size", world.Size(), "blas", blas.Backend())
	if err := tr.Run(ctx); err != nil {
		if errors.Is(err, train.ErrInterrupted) {
			// Every rank stopped at the same step (the stop is agreed), so MPI can end cleanly
			// and mpirun passes the exit code on.
			world.Finalize()
		}
		return err // other errors: exiting without MPI_Finalize makes mpirun end the other ranks
	}
	if !leader {
		return world.Finalize()
	}
	defer world.Finalize()
	out := filepath.Join(cfg.OutDir, "model.safetensors")
	if err := exportRWKV(tr, out); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	fmt.Fprintf(stdout, "trained %d steps; model exported to %s (RWKV-LM names, fp32 safetensors)\n", tr.Step(), out)
	if a := tr.AdapterFile(); a != "" {
		fmt.Fprintf(stdout, "peft.mode %s: adapter file %s\n", tr.Config().PEFT.Mode, a)
	}
	if v, ok := tr.LastValidation(); ok {
		fmt.Fprintf(stdout, "validation: loss %.4f nats/token, perplexity %.3f, %.4f bits/token (%d tokens)\n", v.Loss, v.PPL, v.BitsPerToken, v.Tokens)
	}
	if after != nil {
		return after(tr)
	}
	return nil
}

// exportRWKV writes the trained model in RWKV-LM names as fp32 safetensors, in its
// architecture's layout (x070: layer 0's v0/v1/v2 included, as RWKV-LM writes them).
func exportRWKV(tr *train.Trainer, path string) error {
	m, err := tr.MergedModel() // PEFT: adapters folded in (train writes the adapter file itself)
	if err != nil {
		return err
	}
	ts := weights.Tensors(m, checkpoint.F32)
	export := checkpoint.ExportRWKV
	switch m.Config.Arch.Resolve() {
	case arch.X070:
		export = checkpoint.ExportX070RWKV
	case arch.X052, arch.X060:
		export = checkpoint.ExportX05RWKV
	}
	return checkpoint.WriteFileAtomic(path, func(w io.Writer) error { return export(w, ts, checkpoint.F32) })
}

// shareCores divides the machine's cores between the ranks mpirun started on it, unless
// GOMAXPROCS or OPENBLAS_NUM_THREADS says otherwise: N ranks each with every core's worth of
// threads would oversubscribe the CPUs N times. It runs before OpenBLAS is loaded, which reads
// its variable then.
func shareCores() {
	local, err := strconv.Atoi(os.Getenv("OMPI_COMM_WORLD_LOCAL_SIZE"))
	if err != nil || local < 2 {
		return
	}
	n := max(1, runtime.NumCPU()/local)
	if _, ok := os.LookupEnv("GOMAXPROCS"); !ok {
		runtime.GOMAXPROCS(n)
	}
	if _, ok := os.LookupEnv("OPENBLAS_NUM_THREADS"); !ok {
		os.Setenv("OPENBLAS_NUM_THREADS", strconv.Itoa(n))
	}
}

// isTerminal reports whether w is a terminal, for the live progress line.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
