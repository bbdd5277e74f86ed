package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/blas"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/train"
)

// benchReport is one implementation's line of `rwkv-train bench`.
type benchReport struct {
	Impl         string  `json:"impl"`
	TokensPerSec float64 `json:"tokens_per_sec"`
	StepSeconds  float64 `json:"step_seconds"`
	PeakRSSMiB   float64 `json:"peak_rss_mib"`
	MFU          float64 `json:"mfu,omitempty"`
	GemmShare    float64 `json:"gemm_share,omitempty"`  // rwkv-go: fraction of the step in matrix products
	GemmGFLOPS   float64 `json:"gemm_gflops,omitempty"` // rwkv-go: their rate
}

// runBench implements `rwkv-train bench`: tokens/s, model FLOPs utilisation and peak memory of
// full training steps, optionally side by side with the PyTorch reference.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	archName := fs.String("arch", "x040", "model.arch: x040 (RWKV-4), x052 (RWKV-5.2), x060 (RWKV-6) or x070 (RWKV-7); --torch runs the architecture's reference/bench_torch*.py")
	headSize := fs.Int("head-size", 0, "x052, x060, x070: head_size (0: 64)")
	peft := fs.String("peft", "none", "peft.mode: none (full fine-tuning), lora, pissa or state")
	loraR := fs.Int("lora-r", 32, "peft.lora_r with --peft lora or pissa")
	randomWeights := fs.Bool("random-weights", false, "small random weights instead of RWKV-LM's init (for large shapes: x070's init holds the whole model in float64)")
	layers := fs.Int("layers", 6, "n_layer")
	embd := fs.Int("embd", 512, "n_embd")
	vocab := fs.Int("vocab", 256, "vocab_size")
	ctxLen := fs.Int("ctx", 256, "ctx_len")
	batch := fs.Int("batch", 8, "micro_bsz")
	steps := fs.Int("steps", 5, "measured steps")
	warmup := fs.Int("warmup", 1, "unmeasured steps first")
	chunk := fs.Int("chunk", 0, "train.chunk_len (0: one pass)")
	bptt := fs.String("bptt", "exact", "train.bptt with --chunk: exact or truncated")
	torch := fs.Bool("torch", false, "also run reference/bench_torch.py (x040), bench_torch6.py (x052, x060) or bench_torch7.py (x070) (PyTorch, same config, same threads) and print the ratio")
	rounds := fs.Int("rounds", 1, "measure each implementation this many times, interleaved, and report the medians")
	threads := fs.Int("threads", 2, "threads for PyTorch (ours: GOMAXPROCS and OpenBLAS's own setting)")
	peak := fs.Bool("peak", true, "measure the fp32 peak (sgemm 2048³) for the MFU")
	asJSON := fs.Bool("json", false, "print JSON lines instead of a table")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of rwkv-go's steps to this file")
	memProfile := fs.String("memprofile", "", "write a heap profile (after the steps) to this file")
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: rwkv-train bench [flags]\n\nFull training steps (forward, backward, clipping, AdamW) on random tokens.\n\n")
		fs.PrintDefaults()
	}
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	cfg := model.Config{Arch: arch.Arch(*archName), Layers: *layers, Embd: *embd, Vocab: *vocab, CtxLen: *ctxLen, HeadSize: *headSize}
	if err := cfg.Validate(); err != nil {
		return cli.Usagef("%v", err)
	}
	if err := cfg.Arch.CheckSupported(); err != nil {
		return cli.Usagef("%v", err)
	}
	if *rounds < 1 || *steps < 1 || *warmup < 0 {
		return cli.Usagef("--rounds %d, --steps %d, --warmup %d: need rounds and steps >= 1, warmup >= 0", *rounds, *steps, *warmup)
	}
	if *batch < 1 || *chunk < 0 || *threads < 1 {
		return cli.Usagef("--batch %d, --chunk %d, --threads %d: need batch and threads >= 1, chunk >= 0", *batch, *chunk, *threads)
	}
	dir, err := os.MkdirTemp("", "rwkv-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintf(stderr, "bench %v batch %d, %d steps (+%d warm-up), blas %s\n", cfg, *batch, *steps, *warmup, blas.Backend())
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile() // on an early return; stopping twice is harmless
	}
	bc := train.BenchConfig{Model: cfg, MicroBsz: *batch, ChunkLen: *chunk, BPTT: *bptt,
		Steps: *steps, Warmup: *warmup, Dir: dir, Seed: 1, RandomWeights: *randomWeights}
	if *peft != "none" {
		bc.PEFT = train.DefaultPEFTConfig()
		bc.PEFT.Mode, bc.PEFT.LoRAR, bc.PEFT.LoRAAlpha = *peft, *loraR, float64(*loraR)
		if err := bc.PEFT.Check(); err != nil {
			return cli.Usagef("--peft %s --lora-r %d: %v", *peft, *loraR, err)
		}
		if *torch {
			return cli.Usagef("--torch measures full fine-tuning only; drop it with --peft")
		}
	}
	var ours, theirs []benchReport
	var res train.BenchResult // FLOPs per token do not change from round to round
	runOurs := func() error {
		var err error
		if res, err = train.Bench(ctx, bc); err != nil {
			return err
		}
		ours = append(ours, benchReport{Impl: "rwkv-go (" + blas.Backend() + ")", TokensPerSec: res.TokensPerSec,
			StepSeconds: res.StepSeconds, PeakRSSMiB: peakRSSMiB(), GemmShare: res.GemmShare, GemmGFLOPS: res.GemmGFLOPS})
		return nil
	}
	runTorch := func() error {
		r, err := torchBench(ctx, cfg, *batch, *steps, *warmup, *threads)
		if err != nil {
			return fmt.Errorf("--torch: %w", err)
		}
		theirs = append(theirs, r)
		return nil
	}
	for r := 0; r < *rounds; r++ {
		order := []func() error{runOurs}
		if *torch {
			// Alternate who goes first, so that a slow phase of a shared machine does not
			// always fall on the same side.
			order = append(order, runTorch)
			if r%2 == 1 {
				order[0], order[1] = order[1], order[0]
			}
		}
		for _, run := range order {
			if err := run(); err != nil {
				return err
			}
		}
		if *rounds > 1 {
			line := fmt.Sprintf("round %d: rwkv-go %.1f tokens/s", r+1, res.TokensPerSec)
			if *torch {
				line += fmt.Sprintf(", pytorch %.1f, ratio %.2fx", theirs[r].TokensPerSec, res.TokensPerSec/theirs[r].TokensPerSec)
			}
			fmt.Fprintln(stderr, line)
		}
		// Let the finished trainer's memory go before the next round, so that the peak RSS
		// stays that of one trainer.
		runtime.GC()
		debug.FreeOSMemory()
	}
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if *memProfile != "" {
		if err := writeHeapProfile(*memProfile); err != nil {
			return err
		}
	}
	reports := []benchReport{medianReport(ours)}
	if *torch {
		reports = append(reports, medianReport(theirs))
	}
	var gflops float64
	if *peak {
		gflops = blas.MeasureSgemm(2048, 2*time.Second)
		for i := range reports {
			reports[i].MFU = reports[i].TokensPerSec * res.FLOPsPerToken / (gflops * 1e9)
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, r := range reports {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(stdout, "%-52s %10s %9s %9s %6s\n", "implementation", "tokens/s", "s/step", "peak RSS", "MFU")
	for _, r := range reports {
		fmt.Fprintf(stdout, "%-52s %10.1f %9.3f %7.0fMiB %5.1f%%\n", r.Impl, r.TokensPerSec, r.StepSeconds, r.PeakRSSMiB, 100*r.MFU)
	}
	if len(reports) == 2 {
		fmt.Fprintf(stdout, "ratio rwkv-go / pytorch: %.2fx tokens/s, %.2fx peak RSS\n",
			reports[0].TokensPerSec/reports[1].TokensPerSec, reports[0].PeakRSSMiB/reports[1].PeakRSSMiB)
		if *rounds > 1 {
			lo, hi := roundRatios(ours, theirs)
			fmt.Fprintf(stdout, "medians of %d interleaved rounds; the ratio within a round ranged %.2fx-%.2fx\n", *rounds, lo, hi)
		}
	}
	fmt.Fprintf(stdout, "rwkv-go: matrix products %.1f%% of the step at %.0f GFLOP/s, everything else %.1f%%\n",
		100*reports[0].GemmShare, reports[0].GemmGFLOPS, 100*(1-reports[0].GemmShare))
	if *peak {
		fmt.Fprintf(stdout, "fp32 peak (sgemm 2048³): %.0f GFLOP/s; model FLOPs %.3g per token\n", gflops, res.FLOPsPerToken)
	}
	return nil
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("heap").WriteTo(f, 0)
}

// peakRSSMiB is this process's peak resident set size: VmHWM from /proc/self/status, else
// getrusage's maxrss.
func peakRSSMiB() float64 {
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			var kb float64
			if _, err := fmt.Sscanf(line, "VmHWM: %f kB", &kb); err == nil {
				return kb / 1024
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // KiB on Linux
}

// medianReport is the round with the median tokens/s (the upper median for an even count),
// with the highest peak RSS of all rounds.
func medianReport(rs []benchReport) benchReport {
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b benchReport) int { return cmp.Compare(a.TokensPerSec, b.TokensPerSec) })
	m := sorted[len(sorted)/2]
	for _, r := range rs {
		m.PeakRSSMiB = max(m.PeakRSSMiB, r.PeakRSSMiB)
	}
	return m
}

// roundRatios is the lowest and highest ours/theirs tokens/s ratio of the rounds.
func roundRatios(ours, theirs []benchReport) (lo, hi float64) {
	lo, hi = math.Inf(1), math.Inf(-1)
	for i := range min(len(ours), len(theirs)) {
		q := ours[i].TokensPerSec / theirs[i].TokensPerSec
		lo, hi = min(lo, q), max(hi, q)
	}
	return lo, hi
}

// torchScript is the PyTorch peer of an architecture's bench (bench_torch6.py takes the
// architecture, x052 or x060, as --arch, and the head size and widths).
func torchScript(a arch.Arch) string {
	switch a.Resolve() {
	case arch.X070:
		return filepath.Join("reference", "bench_torch7.py")
	case arch.X052, arch.X060:
		return filepath.Join("reference", "bench_torch6.py")
	}
	return filepath.Join("reference", "bench_torch.py")
}

// torchBench runs the PyTorch peer in its own process.
func torchBench(ctx context.Context, cfg model.Config, batch, steps, warmup, threads int) (benchReport, error) {
	script := torchScript(cfg.Arch)
	if _, err := os.Stat(script); err != nil {
		return benchReport{}, fmt.Errorf("%s not found: run from the repository root", script)
	}
	args := []string{script, "--layers", fmt.Sprint(cfg.Layers), "--embd", fmt.Sprint(cfg.Embd),
		"--vocab", fmt.Sprint(cfg.Vocab), "--ctx", fmt.Sprint(cfg.CtxLen), "--batch", fmt.Sprint(batch), "--steps", fmt.Sprint(steps),
		"--warmup", fmt.Sprint(warmup), "--threads", fmt.Sprint(threads)}
	switch d := cfg.Dims(); d.Arch {
	case arch.X070:
		if d.HeadSize != model.DefaultHeadSize {
			return benchReport{}, fmt.Errorf("%s uses head_size %d; run without --head-size", script, model.DefaultHeadSize)
		}
	case arch.X052, arch.X060: // bench_torch6.py takes the whole shape
		args = append(args, "--arch", string(d.Arch), "--head-size", fmt.Sprint(d.HeadSize), "--ffn", fmt.Sprint(d.FFN))
		if d.Arch == arch.X060 {
			args = append(args, "--d-mix", fmt.Sprint(d.LoRA.Mix), "--d-decay", fmt.Sprint(d.LoRA.W))
		}
	}
	cmd := exec.CommandContext(ctx, "/usr/bin/python3", args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return benchReport{}, fmt.Errorf("%s: %w", script, err)
	}
	var r benchReport
	if err := json.Unmarshal(out, &r); err != nil {
		return benchReport{}, fmt.Errorf("%s printed %q: %w", script, out, err)
	}
	return r, nil
}
