package data

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// The seed corpora live in testdata/fuzz/<FuzzName>; TestWriteFuzzSeeds
// regenerates them when RWKV_WRITE_FUZZ_SEEDS=1. Run a fuzzer with, e.g.,
// go test ./data -run '^$' -fuzz FuzzParseIndex -fuzztime 30s

// FuzzParseIndex checks that no .idx bytes and .bin size make the index
// parser panic or accept an inconsistent index.
func FuzzParseIndex(f *testing.F) {
	f.Add(idxFor(8, dtU16, [][]int{{1, 2}, {3}}), int64(6))
	f.Fuzz(func(t *testing.T, b []byte, binSize int64) {
		if binSize < 0 {
			binSize = -binSize
		}
		ix, err := parseIndex(b)
		if err != nil {
			return
		}
		if len(b) != idxHeaderSize+12*ix.n+8*ix.docCount {
			t.Fatalf("accepted %d bytes for N=%d doc_count=%d", len(b), ix.n, ix.docCount)
		}
		total, err := ix.checkBin(binSize)
		if err != nil {
			return
		}
		if total*int64(ix.dt.size()) != binSize {
			t.Fatalf("accepted %d tokens of %s for a %d-byte .bin", total, ix.dt, binSize)
		}
		starts := ix.docStarts()
		for i := 1; i < len(starts); i++ {
			if starts[i] < starts[i-1] || int64(starts[i]) > total {
				t.Fatalf("document starts %v not increasing within %d tokens", starts, total)
			}
		}
	})
}

// FuzzParseNpyHeader checks the .npy header parser on any bytes.
func FuzzParseNpyHeader(f *testing.F) {
	f.Add(npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", make([]byte, 6), false))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseNpyHeader(b)
		if err != nil {
			return
		}
		if h.offset > int64(len(b)) || h.n < 0 || h.dt.size() == 0 {
			t.Fatalf("accepted header %+v for %d bytes", h, len(b))
		}
	})
}

// FuzzParsePyLiteral checks the Python literal parser never panics, and that
// what it accepts survives being written back as the vocabulary file does.
func FuzzParsePyLiteral(f *testing.F) {
	for _, s := range []string{`'a'`, `b'\xe4\xb8'`, `"it's"`, `'\u4f60\\'`, `'\101'`, `r'\n'`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parsePyLiteral(s)
		if err != nil || len(got) == 0 {
			return
		}
		line := worldVocabLine(1, got)
		_, again, err := parseWorldLine(line)
		if err != nil || string(again) != string(got) {
			t.Fatalf("%s parsed to %q, written as %s, read back as %q (%v)", s, got, line, again, err)
		}
	})
}

// FuzzNextPreToken checks the pre-tokenizer splits any string into non-empty
// pieces that concatenate to it.
func FuzzNextPreToken(f *testing.F) {
	for _, s := range []string{"Hello world", "don't  stop\n\n", "3.14 ?!", "\xff\xfe a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var b strings.Builder
		for i := 0; i < len(s); {
			j := nextPreToken(s, i)
			if j <= i || j > len(s) {
				t.Fatalf("nextPreToken(%q, %d) = %d", s, i, j)
			}
			b.WriteString(s[i:j])
			i = j
		}
		if b.String() != s {
			t.Fatalf("pieces of %q concatenate to %q", s, b.String())
		}
	})
}

// FuzzTokenizerRoundTrip checks decode(encode(s)) == s for the World and
// (without a normalizer) NeoX test tokenizers on any valid UTF-8.
func FuzzTokenizerRoundTrip(f *testing.F) {
	for _, s := range []string{"the thing", "你好 <|endoftext|>", "a  b\n\n", "e\u0301 😀"} {
		f.Add(s)
	}
	world, err := LoadWorldTokenizer(writeWorldVocab(f, testWorldExtra))
	if err != nil {
		f.Fatal(err)
	}
	neox := loadTestNeoX(f, testNeoXJSON(f, `null`, nil))
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, tok := range []Tokenizer{world, neox, NewByteTokenizer()} {
			if got := tok.Decode(tok.Encode(s)); got != s {
				t.Fatalf("%s: Decode(Encode(%q)) = %q", tok.Name(), s, got)
			}
		}
	})
}

// FuzzParseWorldLine checks the vocabulary line parser on any line: what it
// accepts has an id >= 1 and as many bytes as its length column says.
func FuzzParseWorldLine(f *testing.F) {
	for _, s := range []string{`1 '\x00' 1`, `40 "'" 1`, `129 b'\x80' 1`, `48305 ' 조선' 7`, `5 'a b' 3`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		id, tok, err := parseWorldLine(line)
		if err != nil {
			return
		}
		n := line[strings.LastIndexByte(line, ' ')+1:]
		if id < 1 || len(tok) == 0 || fmt.Sprint(len(tok)) != strings.TrimLeft(n, "+0") {
			t.Fatalf("parseWorldLine(%q) = %d, %q", line, id, tok)
		}
	})
}

// FuzzParseNeoX checks the tokenizer.json loader on any bytes, and that a
// tokenizer it accepts can encode and decode text.
func FuzzParseNeoX(f *testing.F) {
	path := testNeoXJSON(f, `{"type": "NFC"}`, nil)
	seed, err := os.ReadFile(path)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := parseNeoX(b)
		if err != nil {
			return
		}
		tok.Decode(tok.Encode("the thing <|endoftext|>  x"))
	})
}

// TestWriteFuzzSeeds writes the seed corpora under testdata/fuzz.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("RWKV_WRITE_FUZZ_SEEDS") == "" {
		t.Skip("set RWKV_WRITE_FUZZ_SEEDS=1 to regenerate testdata/fuzz")
	}
	write := func(fuzz, name string, args ...any) {
		s := "go test fuzz v1\n"
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				s += fmt.Sprintf("[]byte(%q)\n", v)
			case string:
				s += fmt.Sprintf("string(%q)\n", v)
			case int64:
				s += fmt.Sprintf("int64(%d)\n", v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", fuzz)
		os.MkdirAll(dir, 0o755)
		writeFile(t, filepath.Join(dir, name), []byte(s))
	}
	good := idxFor(8, dtU16, [][]int{{1, 2}, {3}})
	write("FuzzParseIndex", "valid_u16", good, int64(6))
	write("FuzzParseIndex", "valid_code6_f32", idxFor(6, dtF32, [][]int{{1, 2}}), int64(8))
	write("FuzzParseIndex", "valid_i32_split_doc", buildIdx(4, []int32{2, 1, 3}, []int64{0, 8, 12}, []int64{0, 2, 3}), int64(24))
	write("FuzzParseIndex", "bad_magic", append([]byte("XXIDIDX\x00\x00"), good[9:]...), int64(6))
	write("FuzzParseIndex", "truncated", good[:40], int64(6))
	write("FuzzParseIndex", "huge_n", buildIdx(8, nil, nil, nil)[:18], int64(0))
	write("FuzzParseIndex", "pointers_backwards", buildIdx(8, []int32{2, 1}, []int64{2, 0}, []int64{0, 1, 2}), int64(6))
	write("FuzzParseIndex", "pointer_past_end", buildIdx(8, []int32{2, 1}, []int64{0, 1 << 62}, []int64{0, 1, 2}), int64(6))
	write("FuzzParseIndex", "negative_size", buildIdx(8, []int32{-5, 1}, []int64{0, 0}, []int64{0, 1, 2}), int64(6))
	write("FuzzParseIndex", "empty", buildIdx(8, nil, nil, []int64{0}), int64(0))
	npy := func(dict string, n int) []byte { return npyBytes(dict, make([]byte, n), false) }
	write("FuzzParseNpyHeader", "u2", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", 6))
	write("FuzzParseNpyHeader", "i8_v2", npyBytes("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", make([]byte, 8), true))
	write("FuzzParseNpyHeader", "be_i4", npy("{'descr': '>i4', 'fortran_order': True, 'shape': (2,), }", 8))
	write("FuzzParseNpyHeader", "2d", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3), }", 12))
	write("FuzzParseNpyHeader", "float", npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4))
	write("FuzzParseNpyHeader", "long_shape", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (3L,), }", 6))
	write("FuzzParseNpyHeader", "truncated", npy("{'descr': '<u2', 'fortran_order': False, 'shape': (3,), }", 0)[:30])
	for i, s := range []string{`'a'`, `b'\xe4\xb8'`, `"it's"`, `'\u4f60\\'`, `'\101\0'`, `r'\n'`, `'\U0001F600'`, `' '`, `'\x'`, `b'\777'`} {
		write("FuzzParsePyLiteral", fmt.Sprintf("seed%d", i), s)
	}
	for i, s := range []string{"Hello world", "don't  stop\n\n", "3.14 ?!", "\xff\xfe a", "I'M x \n y", "  \t\u00a0z"} {
		write("FuzzNextPreToken", fmt.Sprintf("seed%d", i), s)
	}
	for i, s := range []string{`1 '\x00' 1`, `40 "'" 1`, `129 b'\x80' 1`, `48305 ' 조선' 7`, `5 'a b' 3`, `7 'ab' 02`, `0 'a' 1`, `x`} {
		write("FuzzParseWorldLine", fmt.Sprintf("seed%d", i), s)
	}
	neox, err := os.ReadFile(testNeoXJSON(t, `{"type": "NFC"}`, nil))
	if err != nil {
		t.Fatal(err)
	}
	write("FuzzParseNeoX", "tiny_nfc", neox)
	write("FuzzParseNeoX", "pair_merges", []byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":[["a","b"]]},"pre_tokenizer":{"type":"ByteLevel"},"decoder":{"type":"ByteLevel"}}`))
	write("FuzzParseNeoX", "not_json", []byte(`{"model":`))
	for i, s := range []string{"the thing", "你好 <|endoftext|>", "a  b\n\n", "e\u0301 😀", "====='s\"x\""} {
		write("FuzzTokenizerRoundTrip", fmt.Sprintf("seed%d", i), s)
	}
}
