package data

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// readBack opens a prepared corpus and returns its tokens and documents.
func readBack(t *testing.T, prefix string) ([]int, []int) {
	t.Helper()
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	return toks.Slice(0, toks.Len(), nil), toks.Docs()
}

func byteDoc(s string) []int { return append(NewByteTokenizer().Encode(s), 0) }

func TestPrepare(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	os.MkdirAll(filepath.Join(in, "sub"), 0o755)
	writeFile(t, filepath.Join(in, "a.txt"), []byte("alpha"))
	writeFile(t, filepath.Join(in, "sub", "b.txt"), []byte("beta\n"))
	writeFile(t, filepath.Join(in, ".hidden"), []byte("skipped"))
	writeFile(t, filepath.Join(dir, "c.jsonl"), []byte(`{"text": "gamma", "meta": 1}`+"\n\n"+`{"text":"δ\n"}`))
	writeFile(t, filepath.Join(dir, "d.txt"), []byte("")) // an empty document is kept, as RWKV-LM does
	var calls int
	out := filepath.Join(dir, "out", "train")
	st, err := Prepare(context.Background(), PrepareOptions{
		Inputs: []string{in, filepath.Join(dir, "c.jsonl"), filepath.Join(dir, "d.txt")}, Output: out,
		Tokenizer: NewByteTokenizer(), CtxLen: 4,
	}, func(done, total int64) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Concat(byteDoc("alpha"), byteDoc("beta\n"), byteDoc("gamma"), byteDoc("δ\n"), byteDoc(""))
	got, docs := readBack(t, out)
	if !slices.Equal(got, want) {
		t.Errorf("tokens = %v, want %v", got, want)
	}
	if wantDocs := []int{0, 6, 12, 18, 22}; !slices.Equal(docs, wantDocs) {
		t.Errorf("docs = %v, want %v", docs, wantDocs)
	}
	wantSt := PrepareStats{Files: 4, Bytes: int64(5 + 5 + 45 + 0), Docs: 5, Tokens: int64(len(want)), CtxLen: 4, MagicPrime: MagicPrime(len(want), 4)}
	if st != wantSt {
		t.Errorf("stats = %+v, want %+v", st, wantSt)
	}
	if calls == 0 {
		t.Error("progress was never called")
	}
	if _, err := os.Stat(out + "_val.idx"); !errors.Is(err, os.ErrNotExist) {
		t.Error("a validation split was written without being asked for")
	}
	leftovers, _ := filepath.Glob(filepath.Join(dir, "out", "*.tmp"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}
}

func TestPrepareValidationSplit(t *testing.T) {
	dir := t.TempDir()
	var lines []string
	for i := range 20 {
		lines = append(lines, `{"text": "`+strings.Repeat("x", i)+`"}`)
	}
	writeFile(t, filepath.Join(dir, "in.jsonl"), []byte(strings.Join(lines, "\n")))
	out := filepath.Join(dir, "train")
	st, err := Prepare(context.Background(), PrepareOptions{
		Inputs: []string{filepath.Join(dir, "in.jsonl")}, Output: out, ValOutput: filepath.Join(dir, "valid"),
		Tokenizer: NewByteTokenizer(), ValFraction: 0.25,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Docs != 15 || st.ValDocs != 5 {
		t.Errorf("docs %d train, %d val; want 15, 5", st.Docs, st.ValDocs)
	}
	val, _ := readBack(t, filepath.Join(dir, "valid"))
	var want []int // documents 3, 7, 11, 15, 19
	for i := 3; i < 20; i += 4 {
		want = append(want, byteDoc(strings.Repeat("x", i))...)
	}
	if !slices.Equal(val, want) {
		t.Errorf("validation tokens = %v, want %v", val, want)
	}
	train, _ := readBack(t, out)
	if len(train) != int(st.Tokens) || len(val) != int(st.ValTokens) {
		t.Error("stats do not match the files")
	}
}

func TestPrepareWorldAndNeoX(t *testing.T) {
	world, err := LoadWorldTokenizer(writeWorldVocab(t, testWorldExtra))
	if err != nil {
		t.Fatal(err)
	}
	neox := loadTestNeoX(t, testNeoXJSON(t, `{"type": "NFC"}`, nil))
	text := strings.Repeat("the thing 你好\nword 123\n", 60000) // over 1 MiB: encoded piece by piece
	for _, tok := range []Tokenizer{world, neox} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "big.txt"), []byte(text))
		out := filepath.Join(dir, "c")
		if _, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "big.txt")}, Output: out, Tokenizer: tok}, nil); err != nil {
			t.Fatal(err)
		}
		got, _ := readBack(t, out)
		if want := append(tok.Encode(text), 0); !slices.Equal(got, want) {
			t.Errorf("%s: prepared tokens differ from Encode (%d vs %d tokens)", tok.Name(), len(got), len(want))
		}
	}
}

func TestPrepareErrorsLeaveNothing(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "ok.txt"), []byte("fine"))
	writeFile(t, filepath.Join(dir, "bad.jsonl"), []byte(`{"text": "a"}`+"\n"+`{"body": "b"}`))
	writeFile(t, filepath.Join(dir, "one.txt"), []byte("one document"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		opt     PrepareOptions
		want    error
		wantMsg string
	}{
		{"bad jsonl", context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "ok.txt"), filepath.Join(dir, "bad.jsonl")}}, ErrBadInput, "line 2"},
		{"cancelled", ctx, PrepareOptions{Inputs: []string{filepath.Join(dir, "ok.txt")}}, context.Canceled, ""},
		{"missing input", context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "none.txt")}}, os.ErrNotExist, "none.txt"},
		{"empty validation", context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "one.txt")}, ValFraction: 0.1}, ErrEmpty, "validation"},
		{"no inputs", context.Background(), PrepareOptions{}, ErrBadConfig, ""},
		{"bad fraction", context.Background(), PrepareOptions{Inputs: []string{"x"}, ValFraction: 1}, ErrBadConfig, ""},
		{"NaN fraction", context.Background(), PrepareOptions{Inputs: []string{"x"}, ValFraction: math.NaN()}, ErrBadConfig, "validation fraction NaN"},
		{"Inf fraction", context.Background(), PrepareOptions{Inputs: []string{"x"}, ValFraction: math.Inf(1)}, ErrBadConfig, "validation fraction +Inf"},
		{"negative fraction", context.Background(), PrepareOptions{Inputs: []string{"x"}, ValFraction: -0.1}, ErrBadConfig, "validation fraction -0.1"},
		{"val output is output", context.Background(), PrepareOptions{Inputs: []string{"x"}, ValFraction: 0.1, ValOutput: filepath.Join(dir, "same")}, ErrBadConfig, "is the training output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir := t.TempDir()
			tt.opt.Output, tt.opt.Tokenizer = filepath.Join(outDir, "c"), NewByteTokenizer()
			if tt.opt.ValOutput != "" {
				tt.opt.Output = tt.opt.ValOutput
			}
			_, err := Prepare(tt.ctx, tt.opt, nil)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Prepare: %v, want %v with %q", err, tt.want, tt.wantMsg)
			}
			if left, _ := os.ReadDir(outDir); len(left) > 0 {
				t.Errorf("files left after a failed prepare: %v", left)
			}
		})
	}
}

// TestWriterSplitsLongDocuments checks a document longer than the i32 size
// limit becomes several sequences of one document.
func TestWriterSplitsLongDocuments(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "c")
	w, err := newBinidxWriter(prefix, 100000)
	if err != nil {
		t.Fatal(err)
	}
	w.maxSeq = 4
	docs := [][]int{seq(1, 10), seq(20, 4), seq(30, 1)}
	for _, d := range docs {
		if err := w.write(d[:min(3, len(d))]); err != nil {
			t.Fatal(err)
		}
		w.write(d[min(3, len(d)):])
		w.endDoc()
	}
	if err := w.commit(); err != nil {
		t.Fatal(err)
	}
	got, starts := readBack(t, prefix)
	if want := slices.Concat(docs...); !slices.Equal(got, want) {
		t.Errorf("tokens = %v, want %v", got, want)
	}
	if want := []int{0, 10, 14}; !slices.Equal(starts, want) {
		t.Errorf("docs = %v, want %v", starts, want)
	}
	toks, _ := Open(prefix)
	defer toks.Close()
	if toks.dt != dtI32 || toks.index.n != 5 {
		t.Errorf("dtype %s with %d sequences, want i32 with 5", toks.dt, toks.index.n)
	}
}

// prepareOne runs Prepare with the byte tokenizer on files written into a
// fresh directory and returns its stats, the training tokens and the error.
func prepareOne(t *testing.T, tok Tokenizer, files map[string]string) (PrepareStats, []int, error) {
	t.Helper()
	dir := t.TempDir()
	var inputs []string
	for name, body := range files {
		writeFile(t, filepath.Join(dir, name), []byte(body))
		inputs = append(inputs, filepath.Join(dir, name))
	}
	slices.Sort(inputs)
	out := filepath.Join(dir, "out", "c")
	st, err := Prepare(context.Background(), PrepareOptions{Inputs: inputs, Output: out, Tokenizer: tok}, nil)
	if err != nil {
		return st, nil, err
	}
	got, _ := readBack(t, out)
	return st, got, nil
}

// TestPrepareJSONLKey checks the "text" key is matched exactly, as
// make_data.py's json.loads(line)["text"] does, and that a line without a
// "text" string is an error naming the file and the line.
func TestPrepareJSONLKey(t *testing.T) {
	tests := []struct {
		name, in string
		want     []string // documents
		wantErr  string
	}{
		{"exact key wins over Text", `{"text":"lower","Text":"TITLE"}`, []string{"lower"}, ""},
		{"Text before text", `{"Text":"TITLE","text":"lower"}`, []string{"lower"}, ""},
		{"only Text", `{"text":"a"}` + "\n" + `{"Text":"TITLE"}`, nil, `line 2: bad input: no "text" key (keys are case-sensitive; this object has ["Text"])`},
		{"TEXT", `{"TEXT":"x"}`, nil, `line 1: bad input: no "text" key`},
		{"duplicate key: the last, as Python", `{"text":"a","text":"b"}`, []string{"b"}, ""},
		{"blank and space-only lines skipped, as make_data.py", "\n  \t\n" + `{"text":"x"}` + "\r\n\n" + `{"text":""}`, []string{"x", ""}, ""},
		{"not a string", `{"text":5}`, nil, `line 1: bad input: "text" is 5, not a string`},
		{"null text", `{"text":null}`, nil, `"text" is null, not a string`},
		{"null line", `null`, nil, `line 1: bad input: null, not an object`},
		{"array", `["text"]`, nil, `line 1: bad input: json: cannot unmarshal array`},
		{"two objects", `{"text":"a"} {"text":"b"}`, nil, `line 1: bad input: invalid character '{' after top-level value`},
		{"Python's NaN and Infinity elsewhere", `{"score": NaN, "r": [Infinity, -Infinity], "text": "NaN \" Infinity"}`, []string{`NaN " Infinity`}, ""},
		{"NaN text", `{"text": NaN}`, nil, `line 1: bad input: "text" is null, not a string`},
		{"escapes", `{"text":"tab\there \u00e9 \ud83d\ude00"}`, []string{"tab\there é 😀"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := prepareOne(t, NewByteTokenizer(), map[string]string{"in.jsonl": tt.in})
			if tt.wantErr != "" {
				if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "in.jsonl") {
					t.Errorf("error %v, want ErrBadInput naming in.jsonl with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			for _, d := range tt.want {
				want = append(want, byteDoc(d)...)
			}
			if !slices.Equal(got, want) {
				t.Errorf("tokens %v, want %v", got, want)
			}
		})
	}
}

// TestPrepareInvalidUTF8 checks .txt and .jsonl replace invalid UTF-8 alike,
// one U+FFFD per maximal invalid sequence as Python's errors="replace", and
// count the documents that needed it.
func TestPrepareInvalidUTF8(t *testing.T) {
	const r = "\uFFFD"
	tests := []struct {
		name        string
		files       map[string]string
		want        []string
		wantInvalid int64
	}{
		{"txt", map[string]string{"a.txt": "a\xe2\x82b\xff\xffc", "b.txt": "fine é"}, []string{"a" + r + "b" + r + r + "c", "fine é"}, 1},
		{"jsonl", map[string]string{"a.jsonl": "{\"text\":\"a\xe2\x82b\xff\xffc\"}\n{\"text\":\"fine é\"}"}, []string{"a" + r + "b" + r + r + "c", "fine é"}, 1},
		{"jsonl: invalid bytes outside text do not count", map[string]string{"a.jsonl": "{\"text\":\"ok\",\"m\":\"\xff\"}"}, []string{"ok"}, 0},
		{"jsonl: lone surrogate escapes", map[string]string{"a.jsonl": `{"text":"x\ud800y"}` + "\n" + `{"text":"\udc00"}` + "\n" + `{"text":"\ud83d\ude00 \\ud800"}`},
			[]string{"x" + r + "y", r, "😀 \\ud800"}, 2},
		{"jsonl: a literal U+FFFD is not invalid", map[string]string{"a.jsonl": `{"text":"` + r + `\ufffd"}`}, []string{r + r}, 0},
		{"truncated at end of file", map[string]string{"a.txt": "end\xf0\x9f\x98"}, []string{"end" + r}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, got, err := prepareOne(t, NewByteTokenizer(), tt.files)
			if err != nil {
				t.Fatal(err)
			}
			var want []int
			for _, d := range tt.want {
				want = append(want, byteDoc(d)...)
			}
			if !slices.Equal(got, want) {
				t.Errorf("tokens %q, want %q", NewByteTokenizer().Decode(got), NewByteTokenizer().Decode(want))
			}
			if st.InvalidUTF8 != tt.wantInvalid {
				t.Errorf("InvalidUTF8 = %d, want %d", st.InvalidUTF8, tt.wantInvalid)
			}
		})
	}
}

// TestPrepareInvalidUTF8Streamed checks the replacement where a file is read
// and encoded in pieces: characters and invalid sequences that straddle a
// read give what the whole text gives.
func TestPrepareInvalidUTF8Streamed(t *testing.T) {
	world, err := LoadWorldTokenizer(writeWorldVocab(t, testWorldExtra))
	if err != nil {
		t.Fatal(err)
	}
	// 13 and 11 bytes a period, so the 1 MiB reads cut them at every offset.
	for _, text := range []string{strings.Repeat("ab€\xe2\x82c😀d\xffe", 200000)[5:], strings.Repeat("ab€c😀de", 200000)[5:]} {
		for _, tok := range []Tokenizer{NewByteTokenizer(), world} {
			st, got, err := prepareOne(t, tok, map[string]string{"big.txt": text})
			if err != nil {
				t.Fatal(err)
			}
			if want := append(tok.Encode(lossyUTF8([]byte(text))), 0); !slices.Equal(got, want) {
				t.Errorf("%s: %d tokens differ from Encode(lossyUTF8(text)), %d tokens", tok.Name(), len(got), len(want))
			}
			if want := int64(1 - len(strings.ToValidUTF8(text, ""))/len(text)); st.InvalidUTF8 != want {
				t.Errorf("%s: InvalidUTF8 = %d, want %d", tok.Name(), st.InvalidUTF8, want)
			}
		}
	}
}

// TestPrepareCancelLeavesNothing cancels a run in the middle, as Ctrl-C or
// SIGTERM does through the context, and checks no temporary file or lock
// is left.
func TestPrepareCancelLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "in"), 0o755)
	for i := range 3 {
		writeFile(t, filepath.Join(dir, "in", fmt.Sprintf("%d.txt", i)), bytes.Repeat([]byte("data "), 1<<20))
	}
	outDir := filepath.Join(dir, "out")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var sawTemps bool
	_, err := Prepare(ctx, PrepareOptions{Inputs: []string{filepath.Join(dir, "in")}, Output: filepath.Join(outDir, "c"), Tokenizer: NewByteTokenizer()},
		func(done, total int64) {
			left, _ := filepath.Glob(filepath.Join(outDir, "c.*"))
			sawTemps = len(left) >= 3 // c.lock, c.bin.N.tmp, c.sizes.N.tmp
			cancel()
		})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Prepare: %v, want context.Canceled", err)
	}
	if !sawTemps {
		t.Error("the run was not cancelled while writing")
	}
	if left, _ := os.ReadDir(outDir); len(left) > 0 {
		t.Errorf("files left after cancellation: %v", left)
	}
}

// FuzzJSONLText checks jsonlText never panics, returns valid UTF-8, and
// gives back the text of any object encoding/json writes.
func FuzzJSONLText(f *testing.F) {
	f.Add([]byte(`{"text":"a\ud800\ud83d\ude00","Text":1}`), "x")
	f.Add([]byte("{\"text\":\"\xe2\x82\\\\ud800\"}"), "\xff")
	f.Add([]byte(`{"a":NaN,"text":"\"NaN"}`), "Infinity")
	f.Fuzz(func(t *testing.T, line []byte, s string) {
		if text, _, err := jsonlText(line); err == nil && !utf8.ValidString(text) {
			t.Fatalf("jsonlText(%q) = %q, not valid UTF-8", line, text)
		}
		if fixed, found := pythonNonFinite(line); !found && !bytes.Equal(fixed, line) {
			t.Fatalf("pythonNonFinite(%q) changed it to %q without finding NaN or Infinity", line, fixed)
		}
		s = strings.ToValidUTF8(s, "")
		b, _ := json.Marshal(map[string]any{"Text": 0, "text": s, "texT": 1})
		text, invalid, err := jsonlText(b)
		if err != nil || text != s || invalid {
			t.Fatalf("jsonlText(%s) = %q, %v, %v; want %q", b, text, invalid, err, s)
		}
	})
}

// TestPrepareManySmallFilesAllocs checks buffers are reused from file to
// file: a corpus of many small files allocated a megabyte a file, which at
// a low GC target cost seconds on 20 MB of Go source.
func TestPrepareManySmallFilesAllocs(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "in"), 0o755)
	const n = 200
	for i := range n {
		name := fmt.Sprintf("%03d.txt", i)
		if i%2 == 1 {
			name = fmt.Sprintf("%03d.jsonl", i)
		}
		writeFile(t, filepath.Join(dir, "in", name), []byte(`{"text": "package main\n"}`))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	st, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{filepath.Join(dir, "in")}, Output: filepath.Join(dir, "c"),
		Tokenizer: NewByteTokenizer()}, nil)
	runtime.ReadMemStats(&after)
	if err != nil || st.Docs != n {
		t.Fatalf("Prepare: %d documents, %v", st.Docs, err)
	}
	t.Logf("%d files: %.1f MiB allocated", n, float64(after.TotalAlloc-before.TotalAlloc)/(1<<20))
	// Fixed costs: the read buffer, the .jsonl reader and the writers' buffers, a few MiB.
	if got := after.TotalAlloc - before.TotalAlloc; got > 16<<20 {
		t.Errorf("%d files allocated %d MiB, want at most 16", n, got>>20)
	}
}
