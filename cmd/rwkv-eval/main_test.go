package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/eval"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// childEnv makes the test binary act as rwkv-eval (see TestMain), so that signals are tested on
// a real process.
const childEnv = "GO_TEST_RWKV_EVAL_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "main" {
		main()
	}
	os.Exit(m.Run())
}

// fixture is a tiny byte-level model saved as safetensors and .pth, and a corpus as text,
// binidx and .npy.
type fixture struct {
	st, pth, hf      string // model files and an hf export directory
	text, bin, npy   string // data
	lambada          string // jsonl
	textLen, binToks int
}

var (
	fixOnce sync.Once
	fix     fixture
	fixErr  error
)

const corpusText = "the quick brown fox jumps over the lazy dog. the dog sleeps; the fox runs away quickly. émigré naïve café."

func setup(t *testing.T) fixture {
	t.Helper()
	fixOnce.Do(func() { fix, fixErr = makeFixture() })
	if fixErr != nil {
		t.Fatal(fixErr)
	}
	return fix
}

func makeFixture() (fixture, error) {
	dir, err := os.MkdirTemp("", "rwkv-eval-test")
	if err != nil {
		return fixture{}, err
	}
	f := fixture{st: filepath.Join(dir, "model.safetensors"), pth: filepath.Join(dir, "model.pth"), hf: filepath.Join(dir, "hf"),
		text: filepath.Join(dir, "corpus.txt"), bin: filepath.Join(dir, "corpus"), npy: filepath.Join(dir, "corpus.npy"),
		lambada: filepath.Join(dir, "lambada.jsonl"), textLen: len(corpusText)}
	m, err := model.New(model.Config{Layers: 2, Embd: 32, Vocab: 256, CtxLen: 64}, model.Float32)
	if err != nil {
		return f, err
	}
	m.Init(1, 0.5)
	ts := weights.Tensors(m, checkpoint.F32)
	var st, pth bytes.Buffer
	if err := checkpoint.ExportRWKV(&st, ts, checkpoint.F32); err != nil {
		return f, err
	}
	if err := checkpoint.ExportPTH(&pth, ts, checkpoint.F32); err != nil {
		return f, err
	}
	if err := checkpoint.ExportHF(f.hf, ts, checkpoint.HFConfig{ContextLength: 64}, checkpoint.F32); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.st, st.Bytes(), 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.pth, pth.Bytes(), 0o644); err != nil {
		return f, err
	}
	if err := os.WriteFile(f.text, []byte(corpusText), 0o644); err != nil {
		return f, err
	}
	stats, err := data.Prepare(context.Background(), data.PrepareOptions{Inputs: []string{f.text}, Output: f.bin,
		Tokenizer: data.NewByteTokenizer()}, nil)
	if err != nil {
		return f, err
	}
	f.binToks = int(stats.Tokens)
	if err := os.WriteFile(f.npy, npyU16([]byte(corpusText)), 0o644); err != nil {
		return f, err
	}
	jsonl := `{"text": "the quick brown fox jumps over the lazy dog"}
{"text": "the dog sleeps and the fox runs"}
{"text": "café au lait"}
`
	return f, os.WriteFile(f.lambada, []byte(jsonl), 0o644)
}

// npyU16 encodes b as a 1-D little-endian uint16 .npy array.
func npyU16(b []byte) []byte {
	header := fmt.Sprintf("{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }", len(b))
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	var out bytes.Buffer
	out.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&out, binary.LittleEndian, uint16(len(header)))
	out.WriteString(header)
	for _, c := range b {
		binary.Write(&out, binary.LittleEndian, uint16(c))
	}
	return out.Bytes()
}

// runCLI runs the command and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(ctx, args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// pplJSON runs `ppl --json` and decodes the report.
func pplJSON(t *testing.T, args ...string) map[string]any {
	t.Helper()
	code, out, errOut := runCLI(t, context.Background(), append([]string{"ppl", "--json", "--quiet"}, args...)...)
	if code != exitOK {
		t.Fatalf("ppl %v: exit %d\n%s", args, code, errOut)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil || strings.Count(strings.TrimSpace(out), "\n") != 0 {
		t.Fatalf("ppl %v: stdout is not one JSON object (%v):\n%s", args, err, out)
	}
	return r
}

func num(t *testing.T, r map[string]any, key string) float64 {
	t.Helper()
	v, ok := r[key].(float64)
	if !ok {
		t.Fatalf("JSON has no number %q: %v", key, r)
	}
	return v
}

// TestPPLModesAgree: every weights format and data format the command reads gives the same loss,
// and rnn mode equals parallel mode on a document shorter than ctx_len.
func TestPPLModesAgree(t *testing.T) {
	f := setup(t)
	base := pplJSON(t, "--model", f.st, "--data", f.text, "--tokenizer", "byte", "--dtype", "fp64")
	want := num(t, base, "loss")
	if got := num(t, base, "tokens"); got != float64(f.textLen-1) {
		t.Fatalf("tokens = %v, want %d (every token but the first)", got, f.textLen-1)
	}
	for _, tt := range []struct {
		name string
		args []string
		tol  float64
	}{
		{"rnn fp64", []string{"--model", f.st, "--data", f.text, "--tokenizer", "byte", "--dtype", "fp64", "--mode", "rnn"}, 1e-9},
		{"rnn chunked fp64", []string{"--model", f.st, "--data", f.text, "--dtype", "fp64", "--mode", "rnn", "--chunk", "16"}, 1e-9},
		{"parallel fp32", []string{"--model", f.st, "--data", f.text}, 1e-5},
		{"rnn fp32", []string{"--model", f.st, "--data", f.text, "--mode", "rnn"}, 1e-5},
		{"pth", []string{"--model", f.pth, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"hf directory", []string{"--model", f.hf, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"npy", []string{"--model", f.st, "--data", f.npy, "--dtype", "fp64", "--mode", "rnn"}, 1e-9},
		{"binidx prefix", []string{"--model", f.st, "--data", f.bin, "--dtype", "fp64", "--max-tokens", fmt.Sprint(f.textLen - 1)}, 1e-9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pplJSON(t, tt.args...)
			if got := num(t, r, "loss"); math.Abs(got-want) > tt.tol {
				t.Fatalf("loss %.12g, want %.12g (parallel fp64 on the text)", got, want)
			}
		})
	}
}

func TestPPLReport(t *testing.T) {
	f := setup(t)
	r := pplJSON(t, "--model", f.st, "--data", f.bin, "--mode", "rnn", "--bucket", "50")
	tokens, loss := num(t, r, "tokens"), num(t, r, "loss")
	if tokens != float64(f.binToks-1) {
		t.Errorf("tokens = %v, want %d", tokens, f.binToks-1)
	}
	if ppl := num(t, r, "ppl"); math.Abs(ppl-math.Exp(loss)) > 1e-9*ppl {
		t.Errorf("ppl %v != exp(loss %v)", ppl, loss)
	}
	bpt := num(t, r, "bits_per_token")
	if math.Abs(bpt-loss/math.Ln2) > 1e-12 || num(t, r, "bits_per_byte") != bpt {
		t.Errorf("bits_per_token %v, bits_per_byte %v; want both %v for byte-level data", bpt, r["bits_per_byte"], loss/math.Ln2)
	}
	if b, ok := r["buckets"].([]any); !ok || len(b) != (f.binToks-1)/50+1 {
		t.Errorf("buckets = %v, want %d of 50 positions", r["buckets"], (f.binToks-1)/50+1)
	}
}

// TestBitsPerByteCountsUTF8: with a multi-byte tokenizer, bits per byte divides the total bits by
// the UTF-8 bytes the scored tokens decode to. A vocab-256 model has no such tokenizer, so this
// checks the counting directly.
func TestBitsPerByteCountsUTF8(t *testing.T) {
	tok := runeTokenizer{}
	ids := tok.Encode("aé€b")
	if got, err := scoredBytes(eval.Ints(ids), 3, tok); err != nil || got != 2+3+1 {
		t.Fatalf("scoredBytes = %d, want 6 (é, € and b)", got)
	}
}

// runeTokenizer makes one token per rune.
type runeTokenizer struct{}

func (runeTokenizer) Encode(s string) []int {
	var ids []int
	for _, r := range s {
		ids = append(ids, int(r))
	}
	return ids
}
func (runeTokenizer) Decode(ids []int) string {
	var b strings.Builder
	for _, id := range ids {
		b.WriteRune(rune(id))
	}
	return b.String()
}
func (runeTokenizer) VocabSize() int { return 1 << 21 }
func (runeTokenizer) Name() string   { return "rune" }

func TestLambadaCommand(t *testing.T) {
	f := setup(t)
	code, out, errOut := runCLI(t, context.Background(), "lambada", "--model", f.st, "--data", f.lambada, "--json", "--batch", "2")
	if code != exitOK {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	var r eval.LambadaResult
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	// Targets " dog", " runs", " lait": 4 + 5 + 5 byte tokens.
	if r.Count != 3 || r.TargetTokens != 14 || r.Accuracy < 0 || r.Accuracy > 1 || !(r.PPL > 1) {
		t.Fatalf("got %+v", r)
	}
}

func TestGenerateCommand(t *testing.T) {
	f := setup(t)
	args := []string{"generate", "--model", f.st, "--prompt", "the ", "--max-tokens", "12", "--stop-token", "-1", "--echo=false"}
	var outs []string
	for range 2 {
		code, out, errOut := runCLI(t, context.Background(), append(args, "--seed", "7", "--temperature", "0.9", "--top-k", "20")...)
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		outs = append(outs, out)
	}
	if outs[0] != outs[1] || len(outs[0]) != 13 { // 12 bytes and a newline
		t.Fatalf("outputs %q and %q: want the same 12 bytes for the same seed", outs[0], outs[1])
	}
	_, out, _ := runCLI(t, context.Background(), "generate", "--model", f.st, "--prompt", "the ", "--max-tokens", "3", "--temperature", "0")
	if !strings.HasPrefix(out, "the ") {
		t.Fatalf("echoed output %q does not start with the prompt", out)
	}
}

func TestUTF8WriterHoldsSplitCharacters(t *testing.T) {
	var b bytes.Buffer
	u := &utf8Writer{w: &b}
	for i, piece := range []string{"a", "\xe2", "\x82", "\xac", "b"} { // "a€b" one byte at a time
		u.write(piece)
		if want := []string{"a", "a", "a", "a€", "a€b"}[i]; b.String() != want {
			t.Fatalf("after %d writes: %q, want %q", i+1, b.String(), want)
		}
	}
	u.write("\xe2")
	u.flush()
	if b.String() != "a€b\xe2" {
		t.Fatalf("flush left %q", b.String())
	}
}

func TestExitCodes(t *testing.T) {
	f := setup(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name string
		ctx  context.Context
		args []string
		want int
	}{
		{"no command", context.Background(), nil, exitUsage},
		{"help", context.Background(), []string{"--help"}, exitOK},
		{"command help", context.Background(), []string{"ppl", "-h"}, exitOK},
		{"unknown command", context.Background(), []string{"bench"}, exitUsage},
		{"unknown flag", context.Background(), []string{"ppl", "--nope"}, exitUsage},
		{"no model", context.Background(), []string{"ppl", "--data", f.bin}, exitUsage},
		{"no data", context.Background(), []string{"ppl", "--model", f.st}, exitUsage},
		{"bad mode", context.Background(), []string{"ppl", "--model", f.st, "--data", f.bin, "--mode", "beam"}, exitUsage},
		{"stride above ctx_len", context.Background(), []string{"ppl", "--model", f.st, "--data", f.bin, "--ctx-len", "8", "--stride", "9"}, exitUsage},
		{"bad tokenizer", context.Background(), []string{"ppl", "--model", f.st, "--data", f.text, "--tokenizer", "bpe"}, exitUsage},
		{"missing model file", context.Background(), []string{"ppl", "--model", f.st + ".gone", "--data", f.bin}, exitError},
		{"missing data file", context.Background(), []string{"ppl", "--model", f.st, "--data", f.bin + "-gone.npy"}, exitError},
		{"interrupted", canceled, []string{"ppl", "--model", f.st, "--data", f.bin, "--mode", "rnn", "--quiet"}, exitInterrupted},
		{"no prompt", context.Background(), []string{"generate", "--model", f.st}, exitUsage},
		{"lambada without data", context.Background(), []string{"lambada", "--model", f.st}, exitUsage},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.ctx, tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\n%s", code, tt.want, errOut)
			}
		})
	}
}

func TestHelpListsCommandsWithExamples(t *testing.T) {
	code, out, _ := runCLI(t, context.Background(), "--help")
	for _, s := range []string{"ppl", "lambada", "generate", "examples:", "rwkv-eval ppl --model"} {
		if code != exitOK || !strings.Contains(out, s) {
			t.Fatalf("--help (exit %d) does not mention %q:\n%s", code, s, out)
		}
	}
}

// TestCountFlagsRefused: integer flags below their meaningful range are usage errors (exit 2)
// naming the flag, before anything is loaded; 0 stays valid where it has a meaning.
func TestCountFlagsRefused(t *testing.T) {
	f := setup(t)
	ppl := slices.Clip([]string{"ppl", "--quiet", "--model", f.st, "--data", f.bin})
	lambada := slices.Clip([]string{"lambada", "--quiet", "--model", f.st, "--data", f.lambada})
	for _, tt := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{append(ppl, "--batch", "0"), exitUsage, "rwkv-eval ppl: --batch 0: want 1 or more"},
		{append(ppl, "--batch", "-2"), exitUsage, "rwkv-eval ppl: --batch -2"},
		{append(ppl, "--stride", "-1"), exitUsage, "rwkv-eval ppl: --stride -1: want 0 or more (0 means --ctx-len)"},
		{append(ppl, "--chunk", "-1", "--mode", "rnn"), exitUsage, "rwkv-eval ppl: --chunk -1"},
		{append(ppl, "--max-tokens", "-5"), exitUsage, "rwkv-eval ppl: --max-tokens -5: want 0 or more (0 means the whole file)"},
		{append(ppl, "--bucket", "-1"), exitUsage, "rwkv-eval ppl: --bucket -1"},
		{append(ppl, "--ctx-len", "0"), exitUsage, "rwkv-eval ppl: --ctx-len must be at least 1"},
		{append(ppl, "--stride", "0", "--max-tokens", "0", "--chunk", "0", "--bucket", "0"), exitOK, ""},
		{append(lambada, "--batch", "0"), exitUsage, "rwkv-eval lambada: --batch 0: want 1 or more"},
		{append(lambada, "--max-examples", "-1"), exitUsage, "rwkv-eval lambada: --max-examples -1: want 0 or more (0 means all)"},
		{append(lambada, "--bos", "-2"), exitUsage, "rwkv-eval lambada: --bos -2"},
		{append(lambada, "--max-examples", "0", "--batch", "1"), exitOK, ""},
	} {
		t.Run(tt.args[0]+" "+strings.Join(tt.args[6:], " "), func(t *testing.T) {
			code, _, errOut := runCLI(t, context.Background(), tt.args...)
			if code != tt.code || !strings.Contains(errOut, tt.want) {
				t.Errorf("exit %d, want %d and %q in stderr:\n%s", code, tt.code, tt.want, errOut)
			}
		})
	}
}

// TestPPLTruncatedData: a data file truncated after ppl opened it (while it is mapped) ends the
// command with exit 1 and an error naming the file, not a panic or SIGBUS.
func TestPPLTruncatedData(t *testing.T) {
	f := setup(t)
	for _, tt := range []struct {
		format string
		mode   string
	}{{"binidx", "parallel"}, {"binidx", "rnn"}, {"npy", "parallel"}, {"npy", "rnn"}} {
		t.Run(tt.format+" "+tt.mode, func(t *testing.T) {
			dir := t.TempDir()
			var arg, victim string
			if tt.format == "npy" {
				arg = filepath.Join(dir, "corpus.npy")
				victim = arg
				b, _ := os.ReadFile(f.npy)
				os.WriteFile(arg, b, 0o644)
			} else {
				arg = filepath.Join(dir, "corpus")
				victim = arg + ".bin"
				for _, ext := range []string{".bin", ".idx"} {
					b, _ := os.ReadFile(f.bin + ext)
					os.WriteFile(arg+ext, b, 0o644)
				}
			}
			dataOpened = func() {
				if err := os.Truncate(victim, 0); err != nil {
					t.Error(err)
				}
			}
			defer func() { dataOpened = nil }()
			code, _, errOut := runCLI(t, context.Background(), "ppl", "--model", f.st, "--data", arg, "--mode", tt.mode, "--quiet", "--ctx-len", "16")
			want := fmt.Sprintf("rwkv-eval ppl: data: %q: truncated or changed while in use", victim)
			if code != exitError || !strings.Contains(errOut, want) {
				t.Errorf("exit %d, want %d and %q in stderr:\n%s", code, exitError, want, errOut)
			}
		})
	}
}

// TestStopSignals: SIGTERM (what schedulers send), SIGHUP and Ctrl-C stop a running rwkv-eval
// process as Ctrl-C does, with exit 130 and "interrupted", as in rwkv-train; started with
// SIGHUP ignored (nohup), it keeps ignoring SIGHUP.
func TestStopSignals(t *testing.T) {
	f := setup(t)
	long := filepath.Join(t.TempDir(), "long.txt")
	if err := os.WriteFile(long, bytes.Repeat([]byte(corpusText), 2000), 0o644); err != nil { // 225 k tokens, some seconds
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		shell string // run the child under sh with this first (trap "" HUP: as nohup does)
		sigs  []syscall.Signal
	}{
		{"SIGTERM", "", []syscall.Signal{syscall.SIGTERM}},
		{"SIGHUP", "", []syscall.Signal{syscall.SIGHUP}},
		{"SIGINT", "", []syscall.Signal{syscall.SIGINT}},
		{"SIGHUP under nohup, then SIGTERM", `trap "" HUP`, []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"ppl", "--model", f.st, "--data", long, "--mode", "rnn"}
			cmd := exec.Command(exe, args...)
			if tt.shell != "" {
				cmd = exec.Command("/bin/sh", append([]string{"-c", tt.shell + `; exec "$0" "$@"`, exe}, args...)...)
			}
			cmd.Env = append(os.Environ(), childEnv+"=main", "GOMAXPROCS=1")
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(stderr)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			select { // the first progress line: the signal handlers are installed
			case l := <-lines:
				if !strings.Contains(l, "% ") {
					t.Fatalf("first line %q, want a progress line", l)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("no progress line in 60 s")
			}
			var rest []string
			for i, sig := range tt.sigs {
				cmd.Process.Signal(sig)
				if i == len(tt.sigs)-1 {
					break
				}
				// An ignored signal: the process must still be running 300 ms later.
				for timeout := time.After(300 * time.Millisecond); ; {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("the ignored %v ended the process:\n%s", sig, strings.Join(rest, "\n"))
						}
						rest = append(rest, l)
						continue
					case <-timeout:
					}
					break
				}
			}
			for l := range lines {
				rest = append(rest, l)
			}
			cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != exitInterrupted || !strings.Contains(strings.Join(rest, "\n"), "rwkv-eval ppl: interrupted") {
				t.Errorf("exit %d (%v), want %d and \"interrupted\"; stderr:\n%s", code, cmd.ProcessState, exitInterrupted, strings.Join(rest, "\n"))
			}
		})
	}
}
