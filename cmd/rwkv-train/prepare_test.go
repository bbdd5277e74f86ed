package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
)

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// worldVocab writes a World vocabulary of the 256 bytes (ids 1..256) plus "the" (257).
func worldVocab(t *testing.T, dir string) string {
	var b strings.Builder
	for c := range 256 {
		fmt.Fprintf(&b, "%d b'\\x%02x' 1\n", c+1, c)
	}
	b.WriteString("257 'the' 3\n")
	path := filepath.Join(dir, "vocab.txt")
	writeFile(t, path, b.String())
	return path
}

// TestPrepareCommand runs `rwkv-train prepare` end to end on text files, a
// directory and a jsonl, and reads the corpus back with data.Open.
func TestPrepareCommand(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), "the cat")
	writeFile(t, filepath.Join(dir, "books", "b.txt"), "the dog\n")
	writeFile(t, filepath.Join(dir, "books", "more", "c.txt"), "a bird")
	writeFile(t, filepath.Join(dir, "web.jsonl"), `{"text": "the end"}`+"\n"+`{"text": "x", "url": "u"}`+"\n")
	vocab := worldVocab(t, dir)
	tok, err := data.LoadWorldTokenizer(vocab)
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range []string{"byte", "world:" + vocab} {
		t.Run(strings.Split(spec, ":")[0], func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "corpus", "train")
			args := []string{"prepare", "--tokenizer", spec, "--output", out, "--ctx-len", "4",
				filepath.Join(dir, "a.txt"), filepath.Join(dir, "books"), filepath.Join(dir, "web.jsonl")}
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			var enc data.Tokenizer = data.NewByteTokenizer()
			if spec != "byte" {
				enc = tok
			}
			var want []int
			for _, doc := range []string{"the cat", "the dog\n", "a bird", "the end", "x"} {
				want = append(append(want, enc.Encode(doc)...), 0)
			}
			toks, err := data.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer toks.Close()
			if got := toks.Slice(0, toks.Len(), nil); !slices.Equal(got, want) {
				t.Errorf("tokens = %v, want %v", got, want)
			}
			wantOut := fmt.Sprintf("%d tokens, 5 documents", len(want))
			prime := fmt.Sprintf("--magic_prime %d --ctx_len 4", data.MagicPrime(len(want), 4))
			if s := stdout.String(); !strings.Contains(s, wantOut) || !strings.Contains(s, prime) {
				t.Errorf("stdout = %q, want %q and %q", s, wantOut, prime)
			}
			if !strings.Contains(stderr.String(), "100.0%") {
				t.Errorf("stderr = %q, want progress", stderr.String())
			}
		})
	}
}

func TestPrepareCommandValidation(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 10 {
		lines = append(lines, fmt.Sprintf(`{"text": "doc %d"}`, i))
	}
	writeFile(t, filepath.Join(dir, "in.jsonl"), strings.Join(lines, "\n"))
	out := filepath.Join(dir, "train")
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"prepare", "--tokenizer", "byte", "--output", out, "--val-fraction", "0.2", "--quiet",
		filepath.Join(dir, "in.jsonl")}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for prefix, docs := range map[string]int{out: 8, out + "_val": 2} {
		toks, err := data.Open(prefix)
		if err != nil {
			t.Fatal(err)
		}
		if got := len(toks.Docs()); got != docs {
			t.Errorf("%s: %d documents, want %d", prefix, got, docs)
		}
		toks.Close()
	}
	if stderr.Len() != 0 {
		t.Errorf("--quiet wrote %q", stderr.String())
	}
}

func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), "text")
	out := filepath.Join(dir, "out")
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, exitUsage},
		{"unknown command", []string{"train-me"}, exitUsage},
		{"help", []string{"help"}, exitOK},
		{"prepare help", []string{"prepare", "-h"}, exitOK},
		{"bad flag", []string{"prepare", "--nope"}, exitUsage},
		{"no tokenizer", []string{"prepare", "--output", out, filepath.Join(dir, "a.txt")}, exitUsage},
		{"no output", []string{"prepare", "--tokenizer", "byte", filepath.Join(dir, "a.txt")}, exitUsage},
		{"no input", []string{"prepare", "--tokenizer", "byte", "--output", out}, exitUsage},
		{"bad tokenizer spec", []string{"prepare", "--tokenizer", "gpt2", "--output", out, filepath.Join(dir, "a.txt")}, exitUsage},
		{"bad fraction", []string{"prepare", "--tokenizer", "byte", "--val-fraction", "1.5", "--output", out, filepath.Join(dir, "a.txt")}, exitUsage},
		{"NaN fraction", []string{"prepare", "--tokenizer", "byte", "--val-fraction", "NaN", "--output", out, filepath.Join(dir, "a.txt")}, exitUsage},
		{"Inf fraction", []string{"prepare", "--tokenizer", "byte", "--val-fraction", "-Inf", "--output", out, filepath.Join(dir, "a.txt")}, exitUsage},
		{"missing vocab", []string{"prepare", "--tokenizer", "world:" + filepath.Join(dir, "none.txt"), "--output", out, filepath.Join(dir, "a.txt")}, exitError},
		{"missing input", []string{"prepare", "--tokenizer", "byte", "--output", out, filepath.Join(dir, "none.txt")}, exitError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(context.Background(), tt.args, &stdout, &stderr); got != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.want, stderr.String())
			}
		})
	}
}

func TestPrepareCommandInterrupted(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.txt"), "text")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	out := filepath.Join(dir, "out", "c")
	if code := run(ctx, []string{"prepare", "--tokenizer", "byte", "--output", out, filepath.Join(dir, "a.txt")}, &stdout, &stderr); code != exitInterrupted {
		t.Errorf("exit %d, want %d", code, exitInterrupted)
	}
	if _, err := os.Stat(out + ".bin"); !os.IsNotExist(err) {
		t.Error("an interrupted prepare left a .bin")
	}
}

// TestPrepareCommandSummary checks the messages a user sees: the count of
// documents whose invalid UTF-8 was replaced, a NaN fraction named with its
// flag, and a jsonl line without "text" named by file and line.
func TestPrepareCommandSummary(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "bad.txt"), "caf\xe9")
	writeFile(t, filepath.Join(dir, "good.txt"), "café")
	writeFile(t, filepath.Join(dir, "web.jsonl"), `{"text":"a"}`+"\n"+`{"Text":"b"}`+"\n")
	tests := []struct {
		name       string
		args       []string
		want       int
		wantStdout string
		wantStderr string
	}{
		{"invalid UTF-8 counted", []string{"bad.txt", "good.txt"}, exitOK,
			`1 documents had invalid UTF-8: each invalid sequence became U+FFFD, as Python's errors="replace" does`, ""},
		{"valid UTF-8: no count", []string{"good.txt"}, exitOK, "1 documents (tokenizer byte", ""},
		{"NaN fraction", []string{"--val-fraction", "NaN", "good.txt"}, exitUsage, "", "--val-fraction NaN: want a number in [0, 1)"},
		{"jsonl without text", []string{"web.jsonl"}, exitError, "", `web.jsonl" line 2: bad input: no "text" key (keys are case-sensitive`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"prepare", "--tokenizer", "byte", "--quiet", "--output", filepath.Join(t.TempDir(), "c")}
			for _, a := range tt.args {
				if strings.HasSuffix(a, ".txt") || strings.HasSuffix(a, ".jsonl") {
					a = filepath.Join(dir, a)
				}
				args = append(args, a)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), args, &stdout, &stderr)
			if code != tt.want || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, %q, %q", code, stdout.String(), stderr.String(), tt.want, tt.wantStdout, tt.wantStderr)
			}
			if tt.name == "valid UTF-8: no count" && strings.Contains(stdout.String(), "invalid UTF-8") {
				t.Errorf("stdout %q mentions invalid UTF-8", stdout.String())
			}
		})
	}
}

// TestPrepareSFTCommand runs `rwkv-train prepare --sft` on a jsonl with RWKV-PEFT's field
// names picked by --sft-fields, and checks the summary and the mask; flag misuse exits 2.
func TestPrepareSFTCommand(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "chat.jsonl")
	writeFile(t, in, `{"instruction": "Say hi", "output": "hi"}`+"\n"+`{"instruction": "Say yo", "output": "yo"}`+"\n")
	out := filepath.Join(dir, "sft")
	var stdout, stderr bytes.Buffer
	args := []string{"prepare", "--sft", "--sft-fields", "instruction,output", "--tokenizer", "world", "--output", out, "--quiet", in}
	if code := run(context.Background(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
	toks, err := data.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	m, err := data.OpenMask(data.MaskPath(out), toks.Len())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, _ := data.ParseTokenizer("world")
	want := len(tok.Encode(" hi\n\n")) + len(tok.Encode(" yo\n\n")) + 2
	if m.Learn() != want || !strings.Contains(stdout.String(), fmt.Sprintf("wrote %s.mask: loss on %d of %d tokens", out, want, toks.Len())) {
		t.Errorf("learn %d, want %d; stdout:\n%s", m.Learn(), want, stdout.String())
	}
	for _, bad := range [][]string{
		{"prepare", "--sft-fields", "a,b", "--tokenizer", "byte", "--output", out, in},
		{"prepare", "--sft", "--sft-fields", "a", "--tokenizer", "byte", "--output", out, in},
	} {
		stderr.Reset()
		if code := run(context.Background(), bad, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--sft-fields") {
			t.Errorf("%v: exit %d, stderr %s", bad, code, stderr.String())
		}
	}
	// A bad line exits non-zero naming the file and line.
	writeFile(t, in, `{"instruction": "x"}`+"\n")
	stderr.Reset()
	if code := run(context.Background(), []string{"prepare", "--sft", "--tokenizer", "byte", "--output", out, "--quiet", in}, &stdout, &stderr); code == 0 ||
		!strings.Contains(stderr.String(), in) || !strings.Contains(stderr.String(), "line 1") {
		t.Errorf("bad line: exit %d, stderr %s", code, stderr.String())
	}
}
