package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/cli"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// childEnv makes the test binary act as another program (see TestMain), so that signals are
// tested on a real process without building one.
const childEnv = "GO_TEST_RWKV_TRAIN_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "main": // rwkv-train itself
		main()
	case "notify": // cli.NotifyStop alone: report the first signal, then linger until stdin closes
		ctx, stop := cli.NotifyStop(context.Background())
		defer stop()
		fmt.Println("ready")
		<-ctx.Done()
		fmt.Println("stopping")
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tinyJob prepares a small byte corpus in dir and writes a config for a 1-layer, 32-wide
// model that trains a step in milliseconds; extra YAML lines are appended.
func tinyJob(t *testing.T, dir string, extra ...string) string {
	t.Helper()
	text := strings.Repeat("package main\n\nfunc main() {\n\tprintln(\"hello, world\")\n}\n", 40)
	writeFile(t, filepath.Join(dir, "src.go"), text)
	corpus := filepath.Join(dir, "corpus")
	if _, err := data.Prepare(context.Background(), data.PrepareOptions{Inputs: []string{filepath.Join(dir, "src.go")},
		Output: corpus, Tokenizer: data.NewByteTokenizer()}, nil); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`model: {n_layer: 1, n_embd: 32, vocab_size: 256, ctx_len: 16}
data: {train: %q}
train: {micro_bsz: 2, max_steps: 2, log_every: 1, eval_every: 0}
checkpoint: {dir: %q, every: 0, keep: 2}
out_dir: %q
`, corpus, filepath.Join(dir, "ckpt"), filepath.Join(dir, "out"))
	path := filepath.Join(dir, "tiny.yaml")
	writeFile(t, path, cfg+strings.Join(extra, "\n"))
	return path
}

// TestCommandsNameThemselves: every command labels its errors with its own name and points to
// its own help; only prepare says prepare.
func TestCommandsNameThemselves(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.yaml")
	writeFile(t, cfg, "train: {max_steps: 1}\n")
	missing := filepath.Join(dir, "missing")
	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string // in stderr
	}{
		{"invalid config", []string{"--config", cfg}, exitUsage, []string{"rwkv-train: config " + cfg + ": invalid config: data: train"}},
		{"config without file", []string{"--config"}, exitUsage, []string{"rwkv-train: --config needs a file\n", "Run 'rwkv-train --help' for usage."}},
		{"config= without file", []string{"--config="}, exitUsage, []string{"rwkv-train: --config needs a file\n"}},
		{"config then flag", []string{"--config", "--train.max_steps=1"}, exitUsage, []string{"rwkv-train: --config needs a file\n"}},
		{"no config", []string{"--train.max_steps=1"}, exitUsage, []string{"rwkv-train: --config FILE is required"}},
		{"missing config file", []string{"--config", missing + ".yaml"}, exitUsage, []string{"rwkv-train: config: open "}},
		{"unknown key", []string{"--config", cfg, "--train.nope=1"}, exitUsage, []string{"rwkv-train: flag --train.nope: unknown key"}},
		{"export without flags", []string{"export"}, exitUsage, []string{"rwkv-train export: --checkpoint and --out are required\n", "Run 'rwkv-train export -h' for usage."}},
		{"export bad format", []string{"export", "--checkpoint", missing, "--out", missing, "--format", "onnx"}, exitUsage, []string{"rwkv-train export: --format \"onnx\""}},
		{"export bad dtype", []string{"export", "--checkpoint", missing, "--out", missing, "--dtype", "int8"}, exitUsage, []string{"rwkv-train export: --dtype \"int8\""}},
		{"export web-rwkv fp32", []string{"export", "--checkpoint", missing, "--out", missing, "--format", "web-rwkv", "--dtype", "fp32"}, exitUsage, []string{"rwkv-train export: --dtype fp32: web-rwkv is always fp16"}},
		{"export extra argument", []string{"export", "--checkpoint", missing, "--out", missing, "extra"}, exitUsage, []string{"rwkv-train export: unexpected argument \"extra\""}},
		{"export missing file", []string{"export", "--checkpoint", missing, "--out", missing + ".st"}, exitError, []string{"rwkv-train export: "}},
		{"quickstart argument", []string{"quickstart", "extra"}, exitUsage, []string{"rwkv-train quickstart: unexpected argument \"extra\"", "Run 'rwkv-train quickstart -h' for usage."}},
		{"quickstart negative steps", []string{"quickstart", "--steps", "-1"}, exitUsage, []string{"rwkv-train quickstart: --steps -1"}},
		{"bench rounds", []string{"bench", "--rounds", "0"}, exitUsage, []string{"rwkv-train bench: --rounds 0", "Run 'rwkv-train bench -h' for usage."}},
		{"bench batch", []string{"bench", "--batch", "0"}, exitUsage, []string{"rwkv-train bench: --batch 0"}},
		{"bench model", []string{"bench", "--layers", "0"}, exitUsage, []string{"rwkv-train bench: "}},
		{"bench unknown flag", []string{"bench", "--nope"}, exitUsage, []string{"flag provided but not defined: -nope"}},
		{"prepare", []string{"prepare"}, exitUsage, []string{"rwkv-train prepare: --tokenizer is required"}},
		{"prepare missing input", []string{"prepare", "--quiet", "--tokenizer", "byte", "--output", missing, missing}, exitError, []string{"rwkv-train prepare: "}},
		{"prepare missing vocab", []string{"prepare", "--tokenizer", "world:" + missing, "--output", missing, missing}, exitError, []string{"rwkv-train prepare: "}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d", code, tt.code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not contain %q:\n%s", w, stderr.String())
				}
			}
			if strings.HasPrefix(tt.name, "invalid config") && strings.Contains(stderr.String(), "Run '") {
				t.Errorf("a config error points to the flags' help:\n%s", stderr.String())
			}
			if tt.args[0] != "prepare" && strings.Contains(stderr.String(), "prepare") {
				t.Errorf("stderr mentions prepare:\n%s", stderr.String())
			}
		})
	}
}

// TestTrainHelp: -h and --help anywhere in a training command line print the usage and exit 0.
func TestTrainHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--config", "x.yaml", "--help"},
		{"--config", "x.yaml", "-h"},
		{"--config=x.yaml", "--train.max_steps=3", "-help"},
		{"--resume", "--help"},
		{"--help"},
	} {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
				t.Errorf("exit %d, want 0; stderr:\n%s", code, stderr.String())
			}
			if !strings.HasPrefix(stdout.String(), "usage: rwkv-train --config FILE") || stderr.Len() != 0 {
				t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			}
		})
	}
}

// TestLoadShapeMismatch: model.load of weights whose shape differs from the model section is a
// config error (exit 2) naming the first tensor that differs.
func TestLoadShapeMismatch(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	for _, tt := range []struct {
		name string
		file model.Config
		want string
	}{
		{"width", model.Config{Layers: 1, Embd: 64, Vocab: 256, CtxLen: 16}, `tensor "emb.weight" of shape [256 64] where the config needs [256 32]`},
		{"vocab", model.Config{Layers: 1, Embd: 32, Vocab: 512, CtxLen: 16}, `tensor "emb.weight" of shape [512 32] where the config needs [256 32]`},
		{"ffn", model.Config{Layers: 1, Embd: 32, Vocab: 256, CtxLen: 16, FFN: 64}, `tensor "blocks.0.ffn.key.weight" of shape [64 32] where the config needs [128 32]`},
		{"more layers", model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 16}, `has tensor "blocks.1.ln1.weight", which the config has no place for`},
		{"fewer layers", model.Config{Layers: 1, Embd: 32, Vocab: 256, CtxLen: 16}, `has no tensor "blocks.1.ln1.weight"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := model.New(tt.file, model.Float32)
			if err != nil {
				t.Fatal(err)
			}
			m.Init(1, 1e-3)
			path := filepath.Join(dir, tt.name+".safetensors")
			f, err := os.Create(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := checkpoint.ExportRWKV(f, weights.Tensors(m, checkpoint.F32), checkpoint.F32); err != nil {
				t.Fatal(err)
			}
			f.Close()
			var stdout, stderr bytes.Buffer
			args := []string{"--config", cfg, "--model.load=" + path}
			if tt.name == "fewer layers" {
				args = append(args, "--model.n_layer=2")
			}
			code := run(context.Background(), args, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), "rwkv-train: ") || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d and %q in stderr:\n%s", code, exitUsage, tt.want, stderr.String())
			}
		})
	}
}

// TestTrainingGCTarget: the training commands lower the GC target (unless GOGC is set);
// prepare and export keep Go's default.
func TestTrainingGCTarget(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	writeFile(t, filepath.Join(dir, "a.txt"), "text")
	prepare := []string{"prepare", "--quiet", "--tokenizer", "byte", "--output", filepath.Join(dir, "p"), filepath.Join(dir, "a.txt")}
	for _, tt := range []struct {
		name string
		gogc bool
		args []string
		want int
	}{
		{"prepare", false, prepare, 100},
		{"export", false, []string{"export", "--checkpoint", filepath.Join(dir, "ckpt"), "--out", filepath.Join(dir, "m.pth"), "--format", "pth"}, 100},
		{"train", false, []string{"--config", cfg}, trainingGCPercent},
		{"bench", false, []string{"bench", "--rounds", "0"}, trainingGCPercent},
		{"quickstart", false, []string{"quickstart", "extra"}, trainingGCPercent},
		{"train with GOGC", true, []string{"--config", cfg}, 100},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer debug.SetGCPercent(debug.SetGCPercent(100))
			t.Setenv("GOGC", "100")
			if !tt.gogc {
				os.Unsetenv("GOGC") // t.Setenv restores it
			}
			var stdout, stderr bytes.Buffer
			run(context.Background(), tt.args, &stdout, &stderr)
			if got := debug.SetGCPercent(100); got != tt.want {
				t.Errorf("GC percent after %v: %d, want %d\n%s", tt.args, got, tt.want, stderr.String())
			}
		})
	}
}

// child starts the test binary as rwkv-train (mode "main") or as cli.NotifyStop alone ("notify"),
// with its stderr (main) or stdout (notify) as lines on a channel.
func child(t *testing.T, mode string, shell string, args ...string) (*exec.Cmd, <-chan string, io.WriteCloser) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	if shell != "" { // e.g. `trap "" HUP`: start the child with a signal ignored, as nohup does
		cmd = exec.Command("/bin/sh", append([]string{"-c", shell + `; exec "$0" "$@"`, exe}, args...)...)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+mode, "GOMAXPROCS=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var r io.Reader
	if mode == "main" {
		r, err = cmd.StderrPipe()
	} else {
		r, err = cmd.StdoutPipe()
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1000)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines, stdin
}

// waitLine reads lines until one starts with prefix; it returns all lines read.
func waitLine(t *testing.T, lines <-chan string, prefix string, timeout time.Duration) []string {
	t.Helper()
	var seen []string
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before a line starting %q:\n%s", prefix, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.HasPrefix(l, prefix) {
				return seen
			}
		case <-deadline:
			t.Fatalf("no line starting %q in %v:\n%s", prefix, timeout, strings.Join(seen, "\n"))
		}
	}
}

// TestStopSignalsCheckpoint: SIGTERM (what schedulers send), SIGHUP and SIGINT stop a real
// training process as Ctrl-C does: it writes a checkpoint, exits 130, and the checkpoint
// resumes.
func TestStopSignalsCheckpoint(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			dir := t.TempDir()
			cfg := tinyJob(t, dir)
			cmd, lines, _ := child(t, "main", "", "--config", cfg, "--train.max_steps=1000000")
			waitLine(t, lines, "step 1/", 60*time.Second)
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			var rest []string
			for l := range lines {
				rest = append(rest, l)
			}
			err := cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted {
				t.Fatalf("exit %d (%v), want %d; stderr tail:\n%s", code, err, exitInterrupted, strings.Join(rest, "\n"))
			}
			if !strings.Contains(strings.Join(rest, "\n"), "checkpoint saved") {
				t.Errorf("stderr does not say a checkpoint was saved:\n%s", strings.Join(rest, "\n"))
			}
			latest, err := checkpoint.Latest(filepath.Join(dir, "ckpt"))
			if err != nil {
				t.Fatalf("no checkpoint after %v: %v", sig, err)
			}
			ck, err := checkpoint.Load(latest)
			if err != nil {
				t.Fatal(err)
			}
			step := ck.State.Step
			if step < 1 {
				t.Fatalf("checkpoint at step %d", step)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"--config", cfg, "--resume", fmt.Sprintf("--train.max_steps=%d", step+1)}, &stdout, &stderr)
			if code != exitOK || !strings.Contains(stderr.String(), "resumed") || !strings.Contains(stdout.String(), fmt.Sprintf("trained %d steps", step+1)) {
				t.Errorf("resume: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
		})
	}
}

// TestSecondSignalKills: after the first stop signal a second one ends the process at once,
// by its default action, even while the first is still being handled.
func TestSecondSignalKills(t *testing.T) {
	for _, sigs := range [][2]syscall.Signal{{syscall.SIGTERM, syscall.SIGTERM}, {syscall.SIGINT, syscall.SIGINT}, {syscall.SIGHUP, syscall.SIGINT}} {
		t.Run(sigs[0].String()+" "+sigs[1].String(), func(t *testing.T) {
			cmd, lines, _ := child(t, "notify", "")
			waitLine(t, lines, "ready", 30*time.Second)
			cmd.Process.Signal(sigs[0])
			waitLine(t, lines, "stopping", 10*time.Second)
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// stop() runs just after ctx.Done, in another goroutine: repeat the second signal
			// until the default action has been restored and ends the process.
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
			deadline := time.After(10 * time.Second)
		wait:
			for {
				select {
				case <-done:
					break wait
				case <-tick.C:
					cmd.Process.Signal(sigs[1])
				case <-deadline:
					t.Fatal("a second signal did not end the process")
				}
			}
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			if !ok || !ws.Signaled() || ws.Signal() != sigs[1] {
				t.Errorf("process state %v, want killed by %v", cmd.ProcessState, sigs[1])
			}
		})
	}
}

// TestIgnoredSignalStaysIgnored: a process started with SIGHUP ignored (nohup) keeps ignoring
// it; SIGTERM still stops it.
func TestIgnoredSignalStaysIgnored(t *testing.T) {
	cmd, lines, stdin := child(t, "notify", `trap "" HUP`)
	waitLine(t, lines, "ready", 30*time.Second)
	cmd.Process.Signal(syscall.SIGHUP)
	select {
	case l := <-lines:
		t.Fatalf("after SIGHUP under nohup: %q", l)
	case <-time.After(300 * time.Millisecond):
	}
	cmd.Process.Signal(syscall.SIGTERM)
	waitLine(t, lines, "stopping", 10*time.Second)
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want a clean exit", err)
	}
}

// TestInterruptedExits130: every training command stopped by its context exits 130 and says
// so; training writes a checkpoint first.
func TestInterruptedExits130(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg}, "rwkv-train: interrupted at step 0; checkpoint saved as " + filepath.Join(dir, "ckpt", checkpoint.FileName(0)) + ": continue with --resume"},
		{[]string{"quickstart", "--out", filepath.Join(dir, "qs")}, "rwkv-train quickstart: interrupted"},
		{[]string{"bench", "--layers", "1", "--embd", "32", "--ctx", "16", "--batch", "1", "--peak=false"}, "rwkv-train bench: interrupted"},
	} {
		t.Run(tt.args[0], func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(ctx, tt.args, &stdout, &stderr); code != exitInterrupted || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, want %d and %q in stderr:\n%s", code, exitInterrupted, tt.want, stderr.String())
			}
		})
	}
	if _, err := checkpoint.Latest(filepath.Join(dir, "ckpt")); err != nil {
		t.Errorf("no checkpoint after the interrupted training: %v", err)
	}
}

// TestInterruptInStreakClaimsNoCheckpoint: interrupted inside a run of non-finite steps (here:
// resumed from a checkpoint saved in one), training writes no checkpoint, and the command says
// so instead of claiming one.
func TestInterruptInStreakClaimsNoCheckpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", cfg}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	ck, err := checkpoint.Load(filepath.Join(dir, "ckpt", checkpoint.FileName(2)))
	if err != nil {
		t.Fatal(err)
	}
	ck.State.Extra["bad_steps_in_row"] = "1"
	bad, err := checkpoint.Save(filepath.Join(dir, "streak"), 2, ck.Weights, ck.OptimM, ck.OptimV, ck.State)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	stdout.Reset()
	stderr.Reset()
	code := run(ctx, []string{"--config", cfg, "--resume", bad, "--train.max_steps=5"}, &stdout, &stderr)
	if code != exitInterrupted || strings.Contains(stderr.String(), "checkpoint saved") ||
		!strings.Contains(stderr.String(), "rwkv-train: interrupted at step 2, inside a run of 1 non-finite steps: no checkpoint written") {
		t.Errorf("exit %d, want %d saying no checkpoint was written:\n%s", code, exitInterrupted, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "ckpt", checkpoint.FileName(2))); err != nil {
		t.Error(err)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "ckpt")); len(ents) != 2 { // steps 2 and the lock
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("checkpoint dir holds %v", names)
	}
}

// TestResumePrintsCheckpointModel: on resume the model section comes from the checkpoint, and
// the printed resolved config and start line say so, not the config's contradicting shape.
func TestResumePrintsCheckpointModel(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", cfg}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	stdout.Reset()
	stderr.Reset()
	code := run(context.Background(), []string{"--config", cfg, "--resume", "--train.max_steps=3", "--model.n_embd=64"}, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	out := stderr.String()
	cfgText, _, _ := strings.Cut(out[strings.Index(out, "# resolved config"):], "level=")
	if !strings.Contains(cfgText, "n_embd: 32") || strings.Contains(cfgText, "n_embd: 64") || !strings.Contains(cfgText, "max_steps: 3") {
		t.Errorf("printed config does not hold the checkpoint's model:\n%s", cfgText)
	}
	if !strings.Contains(out, `msg=start model="L1-D32-V256 ctx16"`) || !strings.Contains(out, "model.n_embd = 64 in the config but 32 in the checkpoint") {
		t.Errorf("start line does not name the trained model:\n%s", out)
	}
}

// TestExportResolvesDirectories: export from a checkpoint directory reads its newest
// checkpoint; a corrupt newest one fails naming it and the newest intact one (it used to say
// "no such file" about DIR/model.safetensors); an out_dir reads its model.safetensors; an
// out_dir without one points to its checkpoints.
func TestExportResolvesDirectories(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--config", cfg, "--checkpoint.every=1", "--checkpoint.keep=3", "--train.max_steps=3"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	ckdir, outDir := filepath.Join(dir, "ckpt"), filepath.Join(dir, "out")
	ck := func(step int64) string { return filepath.Join(ckdir, checkpoint.FileName(step)) }
	export := func(from string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"export", "--checkpoint", from, "--out", filepath.Join(dir, "x.safetensors")}, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	if code, out, errOut := export(ckdir); code != exitOK || !strings.Contains(out, "exported "+ck(3)+" ") {
		t.Errorf("checkpoint dir: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := export(outDir); code != exitOK || !strings.Contains(out, "exported "+outDir+" ") {
		t.Errorf("out_dir: exit %d\n%s%s", code, out, errOut)
	}
	bare := filepath.Join(dir, "bare")
	os.MkdirAll(filepath.Join(bare, "checkpoints"), 0o755)
	b, _ := os.ReadFile(ck(1))
	os.WriteFile(filepath.Join(bare, "checkpoints", checkpoint.FileName(1)), b, 0o644)
	if code, _, errOut := export(bare); code != exitError || !strings.Contains(errOut, "its training checkpoints are in "+filepath.Join(bare, "checkpoints")+": pass that directory") {
		t.Errorf("out_dir without model.safetensors: exit %d\n%s", code, errOut)
	}
	for _, tt := range []struct {
		name    string
		corrupt func([]byte) []byte
		what    string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)/2] }, "past the end of the"},
		{"flipped data byte", func(b []byte) []byte { b[len(b)-3] ^= 0x10; return b }, "checksum mismatch"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			good, _ := os.ReadFile(ck(3))
			defer os.WriteFile(ck(3), good, 0o644)
			os.WriteFile(ck(3), tt.corrupt(slices.Clone(good)), 0o644)
			code, out, errOut := export(ckdir)
			for _, want := range []string{"rwkv-train export: ", ck(3), tt.what, "the newest intact one is " + ck(2)} {
				if code != exitError || !strings.Contains(errOut, want) {
					t.Errorf("exit %d, want %d and %q in stderr:\n%s%s", code, exitError, want, out, errOut)
				}
			}
			if strings.Contains(errOut, "no such file") {
				t.Errorf("stderr: %s", errOut)
			}
		})
	}
}

// TestTrainX070Job: `rwkv-train --config` trains an RWKV-7 model from scratch, exports it as
// RWKV-LM safetensors in the x070 layout (it used to fail: the RWKV-4 export refused it), and the
// export loads back as the trained x070 model, weight for weight.
func TestTrainX070Job(t *testing.T) {
	dir := t.TempDir()
	cfg := tinyJob(t, dir)
	var stdout, stderr bytes.Buffer
	args := []string{"--config", cfg, "--model.arch=x070", "--model.head_size=16", "--optim.schedule=cosine_v7", "--optim.adam_eps=1e-18"}
	if code := run(context.Background(), args, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d:\n%s", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), `msg=start model="x070 L1-D32-V256 ctx16 head16"`) {
		t.Errorf("start line does not name the x070 model:\n%s", stderr.String())
	}
	out := filepath.Join(dir, "out", "model.safetensors")
	m, err := weights.Load(out, 16, model.Float32)
	if err != nil {
		t.Fatalf("exported model: %v", err)
	}
	want := model.Config{Arch: arch.X070, Layers: 1, Embd: 32, Vocab: 256, CtxLen: 16, FFN: 128, HeadSize: 16,
		DimDecay: 32, DimAAA: 32, DimMV: 32, DimGate: 32}
	if m.Config != want {
		t.Fatalf("exported model %+v, want %+v", m.Config, want)
	}
	ck, err := checkpoint.Latest(filepath.Join(dir, "ckpt"))
	if err != nil {
		t.Fatal(err)
	}
	fromCk, err := weights.Load(ck, 16, model.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range m.Params {
		a, b := p.F32(), fromCk.Params[i].F32()
		for j := range a {
			if a[j] != b[j] {
				t.Fatalf("%s[%d]: export %v, final checkpoint %v", p.Name, j, a[j], b[j])
			}
		}
	}
}
