package data

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseSFTLineTemplate(t *testing.T) {
	seg := func(p, a string) []SFTSegment { return []SFTSegment{{p, false}, {a, true}} }
	for _, tc := range []struct {
		name, line string
		fields     *[2]string
		want       []SFTSegment
	}{
		{"prompt_response", `{"prompt": "What is 2+2?", "response": "4."}`, nil,
			seg("User: What is 2+2?\n\nAssistant:", " 4.\n\n")},
		{"rwkv_peft_query", `{"query": "hi", "response": "hello", "id": 3}`, nil,
			seg("User: hi\n\nAssistant:", " hello\n\n")},
		{"custom_fields", `{"instruction": "Say x", "output": "x", "prompt": 1}`, &[2]string{"instruction", "output"},
			seg("User: Say x\n\nAssistant:", " x\n\n")},
		{"normalized", `{"prompt": "  a\r\nb\n\n\nc \n", "response": "line1\n\nline2\n \n"}`, nil,
			seg("User: a\nb\nc\n\nAssistant:", " line1\nline2\n\n")},
		{"messages_multi_turn", `{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
			{"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]}`, nil,
			[]SFTSegment{{"System: Be brief.\n\nUser: Hi\n\nAssistant:", false}, {" Hello!\n\n", true},
				{"User: Bye\n\nAssistant:", false}, {" Bye!\n\n", true}}},
		{"messages_unicode", `{"messages": [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "\u4f60\u597d😀"}]}`, nil,
			seg("User: 你好\n\nAssistant:", " 你好😀\n\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseSFTLine([]byte(tc.line), tc.fields)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseSFTLineErrors(t *testing.T) {
	for _, tc := range []struct{ name, line, want string }{
		{"not_json", `{"prompt": `, "unexpected end"},
		{"null", `null`, "not an object"},
		{"missing_all", `{"question": "a", "answer": "b"}`, `no "prompt" and "response" or "query" and "response" or "messages" keys`},
		{"missing_response", `{"prompt": "a"}`, `no "response" key`},
		{"case", `{"Prompt": "a", "Response": "b"}`, "case-sensitive"},
		{"not_string", `{"prompt": "a", "response": 5}`, `"response" is 5, not a string`},
		{"empty_response", `{"prompt": "a", "response": " \n "}`, "message 2: empty response"},
		{"empty_prompt", `{"prompt": "", "response": "b"}`, "message 1: empty user content"},
		{"wrong_role", `{"messages": [{"role": "human", "content": "a"}, {"role": "assistant", "content": "b"}]}`, `message 1: role "human", want system, user or assistant`},
		{"no_role", `{"messages": [{"content": "a"}]}`, `message 1: no "role" key`},
		{"ends_with_user", `{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}`, "must end with an assistant message"},
		{"no_messages", `{"messages": []}`, "no messages"},
		{"messages_not_list", `{"messages": "hi"}`, "not a list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSFTLine([]byte(tc.line), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestParseSFTFields(t *testing.T) {
	if f, err := ParseSFTFields("query, response"); err != nil || *f != [2]string{"query", "response"} {
		t.Errorf("got %v, %v", f, err)
	}
	for _, s := range []string{"query", "a,b,c", "a,a", ",b"} {
		if _, err := ParseSFTFields(s); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%q: error %v, want ErrBadConfig", s, err)
		}
	}
}

// sftExpect is what prepare must write for one line: each segment tokenized on its own, then 0.
func sftExpect(t *testing.T, tok Tokenizer, line string) (toks []int, mask []bool) {
	t.Helper()
	segs, err := ParseSFTLine([]byte(line), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		ids := tok.Encode(s.Text)
		toks = append(toks, ids...)
		for range ids {
			mask = append(mask, s.Learn)
		}
	}
	return append(toks, 0), append(mask, true)
}

func worldTokenizer(t *testing.T) Tokenizer {
	t.Helper()
	tok, err := ParseTokenizer("world")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestPrepareSFTRoundTrip(t *testing.T) {
	tok := worldTokenizer(t)
	dir := t.TempDir()
	lines := []string{
		`{"prompt": "What is the capital of France?", "response": "Paris."}`,
		`{"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3?"}, {"role": "assistant", "content": "6"}]}`,
	}
	in := filepath.Join(dir, "sft.jsonl")
	writeFile(t, in, []byte(lines[0]+"\n\n"+lines[1]+"\n"))
	out := filepath.Join(dir, "sft")
	st, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{in}, Output: out, Tokenizer: tok, SFT: true, CtxLen: 20}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	var wantMask []bool
	for _, l := range lines {
		tk, m := sftExpect(t, tok, l)
		want, wantMask = append(want, tk...), append(wantMask, m...)
	}
	// The template, spelled out for the first line.
	if got := tok.Decode(want[:slices.Index(want, 0)]); got != "User: What is the capital of France?\n\nAssistant: Paris.\n\n" {
		t.Errorf("first sample decodes to %q", got)
	}
	toks, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	if got := toks.Slice(0, toks.Len(), nil); !slices.Equal(got, want) {
		t.Fatalf("tokens %v\nwant %v", got, want)
	}
	if docs := toks.Docs(); len(docs) != 2 {
		t.Errorf("docs %v, want 2", docs)
	}
	m, err := OpenMask(MaskPath(out+".bin"), toks.Len())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	learn := 0
	for i, w := range wantMask {
		if m.At(i) != w {
			t.Errorf("mask[%d] (token %d) = %v, want %v", i, want[i], m.At(i), w)
		}
		if w {
			learn++
		}
	}
	// The first sample has 17 tokens, the second 34: more than ctx_len+1 = 21.
	if m.Learn() != learn || st.LearnTokens != int64(learn) || st.Tokens != int64(len(want)) || st.Docs != 2 || st.LongSamples != 1 {
		t.Errorf("learn %d, stats %+v; want %d learned of %d", m.Learn(), st, learn, len(want))
	}
	// A plain prepare over the same prefix removes the mask, which would no longer fit.
	txt := filepath.Join(dir, "plain.txt")
	writeFile(t, txt, []byte("plain text"))
	if _, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{txt}, Output: out, Tokenizer: tok}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out + ".mask"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale mask left: %v", err)
	}
}

func TestPrepareSFTErrors(t *testing.T) {
	tok := NewByteTokenizer()
	for _, tc := range []struct{ name, content, want string }{
		{"missing_field", `{"prompt": "a", "response": "b"}` + "\n" + `{"prompt": "a"}`, `line 2: bad input: no "response" key`},
		{"wrong_role", "\n" + `{"messages": [{"role": "bot", "content": "a"}]}`, `line 2: bad input: message 1: role "bot"`},
		{"empty_response", `{"prompt": "a", "response": ""}`, "line 1: bad input: message 2: empty response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			in := filepath.Join(dir, "x.jsonl")
			writeFile(t, in, []byte(tc.content))
			out := filepath.Join(dir, "out")
			_, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{in}, Output: out, Tokenizer: tok, SFT: true}, nil)
			if !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), in) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want ErrBadInput naming %q and %q", err, in, tc.want)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, "out*")); len(left) > 0 {
				t.Errorf("left behind: %v", left)
			}
		})
	}
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	writeFile(t, txt, []byte("x"))
	if _, err := Prepare(context.Background(), PrepareOptions{Inputs: []string{txt}, Output: filepath.Join(dir, "o"), Tokenizer: tok, SFT: true}, nil); !errors.Is(err, ErrBadInput) || !strings.Contains(err.Error(), ".jsonl") {
		t.Errorf("text input with SFT: %v", err)
	}
}

// writeMask writes a mask file with the given header count and bytes.
func writeMask(t *testing.T, path string, count uint64, bits []byte) {
	t.Helper()
	hdr := make([]byte, maskHeaderSize)
	copy(hdr, maskMagic)
	binary.LittleEndian.PutUint32(hdr[8:], 1)
	binary.LittleEndian.PutUint32(hdr[12:], 1)
	binary.LittleEndian.PutUint64(hdr[16:], count)
	writeFile(t, path, append(hdr, bits...))
}

func TestOpenMaskErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.mask")
	writeMask(t, good, 4, []byte{0, 1, 1, 0})
	m, err := OpenMask(good, 4)
	if err != nil || m.Learn() != 2 || m.At(0) || !m.At(1) {
		t.Fatalf("good mask: %v", err)
	}
	m.Close()
	for _, tc := range []struct {
		name  string
		write func(path string)
		n     int
		is    error
		want  string
	}{
		{"truncated", func(p string) { writeMask(t, p, 4, []byte{0, 1, 1}) }, 4, ErrBinSize, "3 bytes after the header, want 4"},
		{"longer", func(p string) { writeMask(t, p, 4, []byte{0, 1, 1, 0, 1}) }, 4, ErrBinSize, "5 bytes after the header, want 4"},
		{"other_corpus", func(p string) { writeMask(t, p, 4, []byte{0, 1, 1, 0}) }, 5, ErrBinSize, "it masks 4 tokens, the corpus has 5"},
		{"short_header", func(p string) { writeFile(t, p, []byte("RWKVMA")) }, 4, ErrBadMagic, "header"},
		{"bad_magic", func(p string) { writeFile(t, p, make([]byte, 28)) }, 4, ErrBadMagic, "RWKVMASK"},
		{"bad_byte", func(p string) { writeMask(t, p, 3, []byte{0, 2, 1}) }, 3, ErrBadInput, "byte 2 of token 1"},
		{"nothing_to_learn", func(p string) { writeMask(t, p, 2, []byte{0, 0}) }, 2, ErrEmpty, "nothing to learn"},
		{"version", func(p string) {
			writeMask(t, p, 1, []byte{1})
			b, _ := os.ReadFile(p)
			b[8] = 2
			writeFile(t, p, b)
		}, 1, ErrBadVersion, "version 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name+".mask")
			tc.write(p)
			_, err := OpenMask(p, tc.n)
			if !errors.Is(err, tc.is) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %v naming %q and %q", err, tc.is, p, tc.want)
			}
		})
	}
	if _, err := OpenMask(filepath.Join(dir, "missing.mask"), 1); err == nil || !strings.Contains(err.Error(), "missing.mask") {
		t.Errorf("missing file: %v", err)
	}
}

// sftCorpus writes documents and their masks as PREFIX.bin/.idx/.mask.
func sftCorpus(t *testing.T, docs [][]int, masks [][]byte) string {
	t.Helper()
	dir := t.TempDir()
	prefix := writeBinidx(t, dir, "sft", 8, dtU16, docs)
	var n int
	for _, d := range docs {
		n += len(d)
	}
	writeMask(t, MaskPath(prefix), uint64(n), slices.Concat(masks...))
	return prefix
}

func TestPadSampler(t *testing.T) {
	I := IgnoreTarget
	docs := [][]int{{5, 6, 7, 8, 0}, {9, 10, 11, 12, 13, 14, 15, 0}}
	masks := [][]byte{{0, 0, 1, 1, 1}, {0, 1, 0, 1, 1, 1, 1, 1}}
	prefix := sftCorpus(t, docs, masks)
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	s, err := NewTrainSampler(Config{Train: prefix, Sampling: SamplingSequential}, toks, 6, 1)
	if err != nil {
		t.Fatal(err)
	}
	if toks.Mask() == nil {
		t.Fatal("PREFIX.mask not picked up")
	}
	x, y := make([]int, 3*6), make([]int, 3*6)
	s.NextBatch(x, y, 3, 6)
	wantX := []int{5, 6, 7, 8, 0, 0 /**/, 9, 10, 11, 12, 13, 14 /**/, 5, 6, 7, 8, 0, 0}
	wantY := []int{I, 7, 8, 0, I, I /**/, 10, I, 12, 13, 14, 15 /**/, I, 7, 8, 0, I, I}
	if !slices.Equal(x, wantX) || !slices.Equal(y, wantY) {
		t.Errorf("x %v\nwant %v\ny %v\nwant %v", x, wantX, y, wantY)
	}
	// Resume: the state after a batch continues identically.
	for _, sampling := range []string{SamplingRandom, SamplingSequential} {
		a, _ := NewPadSampler(toks, 6, sampling, 7)
		b, _ := NewPadSampler(toks, 6, sampling, 8)
		a.NextBatch(x, y, 3, 6)
		st, _ := a.State()
		if err := b.SetState(st); err != nil {
			t.Fatal(err)
		}
		xa, ya, xb, yb := make([]int, 30), make([]int, 30), make([]int, 30), make([]int, 30)
		a.NextBatch(xa, ya, 5, 6)
		b.NextBatch(xb, yb, 5, 6)
		if !slices.Equal(xa, xb) || !slices.Equal(ya, yb) {
			t.Errorf("%s: resumed batch differs", sampling)
		}
	}
	if _, err := NewPadSampler(toks, 6, SamplingMagicPrime, 1); !errors.Is(err, ErrBadConfig) {
		t.Errorf("pad with magic_prime: %v", err)
	}
}

func TestPackedMask(t *testing.T) {
	I := IgnoreTarget
	prefix := sftCorpus(t, [][]int{{5, 6, 7, 0}, {9, 10, 11, 0}}, [][]byte{{0, 0, 1, 1}, {0, 0, 1, 1}})
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	s, err := NewTrainSampler(Config{Train: prefix, Sampling: SamplingSequential, Dataload: DataloadPacked}, toks, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	x, y := make([]int, 6), make([]int, 6)
	s.NextBatch(x, y, 2, 3)
	if wantX, wantY := []int{5, 6, 7, 0, 9, 10}, []int{I, 7, 0, I, I, 11}; !slices.Equal(x, wantX) || !slices.Equal(y, wantY) {
		t.Errorf("x %v y %v, want %v %v", x, y, wantX, wantY)
	}
	// mask: none trains on every token; dataload without a mask is refused.
	toks2, _ := Open(prefix)
	defer toks2.Close()
	if _, err := NewTrainSampler(Config{Train: prefix, Mask: MaskNone}, toks2, 3, 1); err != nil || toks2.Mask() != nil {
		t.Errorf("mask none: %v", err)
	}
	if _, err := NewTrainSampler(Config{Train: prefix, Mask: MaskNone, Dataload: DataloadPad}, toks2, 3, 1); !errors.Is(err, ErrBadConfig) {
		t.Errorf("dataload with mask none: %v", err)
	}
	// A mask that does not fit the corpus is an error naming it.
	bad := filepath.Join(t.TempDir(), "bad.mask")
	writeMask(t, bad, 7, make([]byte, 7))
	if _, err := NewTrainSampler(Config{Train: prefix, Mask: bad}, toks2, 3, 1); !errors.Is(err, ErrBinSize) || !strings.Contains(err.Error(), bad) {
		t.Errorf("mask for another corpus: %v", err)
	}
}

func TestConfigValidateDataload(t *testing.T) {
	for _, c := range []Config{
		{Train: "x", Dataload: "stream"},
		{Train: "x", Dataload: DataloadPad, Sampling: SamplingMagicPrime},
		{Train: "x", Dataload: DataloadPacked, Mask: MaskNone},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadConfig) {
			t.Errorf("%+v: %v, want ErrBadConfig", c, err)
		}
	}
	if err := (Config{Train: "x", Dataload: DataloadPacked, Sampling: SamplingMagicPrime}).Validate(); err != nil {
		t.Error(err)
	}
}

// FuzzParseSFTLine: any line either renders to prompt/response segments that alternate, start
// with a prompt, end with a learned "\n\n", and hold no blank line inside a turn, or is an error.
func FuzzParseSFTLine(f *testing.F) {
	for _, s := range []string{
		`{"prompt": "a", "response": "b"}`,
		`{"query": "q\r\n\r\nx", "response": " r "}`,
		`{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}`,
		`{"messages": [{"role": "assistant", "content": "a\n\n\nb"}]}`,
		`{"messages": [{"role": "user"}]}`,
		`{"prompt": "\ud800", "response": "\u0000"}`,
		`[1, 2]`, `{"messages": null}`, `{"prompt": null, "response": "x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		segs, err := ParseSFTLine(line, nil)
		if err != nil {
			return
		}
		if len(segs) == 0 || len(segs)%2 != 0 {
			t.Fatalf("%d segments", len(segs))
		}
		for i, s := range segs {
			if s.Learn != (i%2 == 1) {
				t.Fatalf("segment %d learn=%v", i, s.Learn)
			}
			if !utf8.ValidString(s.Text) {
				t.Fatalf("segment %d not UTF-8: %q", i, s.Text)
			}
			if s.Learn {
				body := strings.TrimSuffix(strings.TrimPrefix(s.Text, " "), "\n\n")
				if !strings.HasPrefix(s.Text, " ") || !strings.HasSuffix(s.Text, "\n\n") || body == "" || strings.Contains(body, "\n\n") {
					t.Fatalf("response segment %q", s.Text)
				}
			} else if !strings.HasSuffix(s.Text, "Assistant:") {
				t.Fatalf("prompt segment %q", s.Text)
			}
		}
	})
}

// TestMaskTruncatedDuringRun: Check, which the loader runs before each batch, reports a mask
// file that changed size since it was opened, naming it.
func TestMaskTruncatedDuringRun(t *testing.T) {
	prefix := sftCorpus(t, [][]int{{5, 6, 7, 0}, {9, 10, 11, 0}}, [][]byte{{0, 0, 1, 1}, {0, 0, 1, 1}})
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	if _, err := NewTrainSampler(Config{Train: prefix}, toks, 3, 1); err != nil {
		t.Fatal(err)
	}
	if err := toks.Check(); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(MaskPath(prefix), maskHeaderSize+2); err != nil {
		t.Fatal(err)
	}
	if err := toks.Check(); !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), MaskPath(prefix)) {
		t.Errorf("Check after truncating the mask: %v", err)
	}
}
