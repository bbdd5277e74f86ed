package data

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir := t.TempDir()
			tt.opt.Output, tt.opt.Tokenizer = filepath.Join(outDir, "c"), NewByteTokenizer()
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
