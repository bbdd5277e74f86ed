package data

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// testNeoXMerges build "Ġt" 258, "he" 259, "Ġthe" 260, "in" 261, "ing" 262, "th" 263.
var testNeoXMerges = []string{"Ġ t", "h e", "Ġt he", "i n", "in g", "t h"}

// testNeoXJSON writes a tokenizer.json shaped like 20B_tokenizer.json: ids 0
// and 1 are special, 2+b is byte b, then the merges, then an added "  ".
// edit, if not nil, changes the decoded JSON before it is written.
func testNeoXJSON(t testing.TB, normalizer string, edit func(map[string]any)) string {
	t.Helper()
	vocab := map[string]int{"<|endoftext|>": 0, "<|padding|>": 1}
	for b := range 256 {
		vocab[string(byteLevelChars[b])] = 2 + b
	}
	for i, m := range testNeoXMerges {
		vocab[strings.ReplaceAll(m, " ", "")] = 258 + i
	}
	var norm any
	if err := json.Unmarshal([]byte(normalizer), &norm); err != nil {
		t.Fatal(err)
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true}
	f := map[string]any{
		"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": []any{
			map[string]any{"id": 0, "special": true, "content": "<|endoftext|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
			map[string]any{"id": 1, "special": true, "content": "<|padding|>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false},
			map[string]any{"id": 264, "special": false, "content": "  ", "single_word": false, "lstrip": false, "rstrip": false, "normalized": true},
		},
		"normalizer": norm, "pre_tokenizer": byteLevel, "post_processor": byteLevel, "decoder": byteLevel,
		"model": map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil, "continuing_subword_prefix": nil,
			"end_of_word_suffix": nil, "fuse_unk": false, "vocab": vocab, "merges": testNeoXMerges},
	}
	if edit != nil {
		edit(f)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	writeFile(t, path, b)
	return path
}

func loadTestNeoX(t testing.TB, path string) *NeoXTokenizer {
	t.Helper()
	tok, err := LoadNeoXTokenizer(path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestNeoXEncode(t *testing.T) {
	pairs := func(f map[string]any) { // the newer merges format: [["Ġ", "t"], ...]
		var m [][]string
		for _, s := range testNeoXMerges {
			m = append(m, strings.Split(s, " "))
		}
		f["model"].(map[string]any)["merges"] = m
	}
	for name, edit := range map[string]func(map[string]any){"string merges": nil, "pair merges": pairs} {
		tok := loadTestNeoX(t, testNeoXJSON(t, `{"type": "NFC"}`, edit))
		b := func(s string) []int {
			var ids []int
			for _, c := range []byte(s) {
				ids = append(ids, 2+int(c))
			}
			return ids
		}
		cat := func(xs ...[]int) []int { return slices.Concat(xs...) }
		tests := []struct {
			in   string
			want []int
		}{
			{"", nil},
			{"the", cat(b("t"), []int{259})},
			{" the", []int{260}},
			{"the thing", cat(b("t"), []int{259, 258}, b("h"), []int{262})},
			{"a  b", cat(b("a"), []int{264}, b("b"))},          // added token, normalized
			{"x<|endoftext|>y", cat(b("x"), []int{0}, b("y"))}, // special token
			{"<|padding|><|endoftext|>", []int{1, 0}},
			{"e\u0301", b("é")}, // NFC composes
			{"<|endoftext|>\u0301", cat([]int{0}, b("\u0301"))},
			{"it's", cat(b("it"), b("'s"))},
		}
		for _, tt := range tests {
			if got := tok.Encode(tt.in); !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Errorf("%s: Encode(%q) = %v, want %v", name, tt.in, got, tt.want)
			}
		}
		if tok.VocabSize() != 265 || tok.Name() != "neox" {
			t.Errorf("VocabSize, Name = %d, %s", tok.VocabSize(), tok.Name())
		}
		if got := tok.Decode([]int{260, 0, 264, 999}); got != " the<|endoftext|>  \uFFFD" {
			t.Errorf("Decode = %q", got)
		}
	}
}

func TestNeoXRoundTrip(t *testing.T) {
	nfc := loadTestNeoX(t, testNeoXJSON(t, `{"type": "NFC"}`, nil))
	none := loadTestNeoX(t, testNeoXJSON(t, `null`, nil))
	r := rand.New(rand.NewPCG(7, 8))
	for i := range 500 {
		s := randomText(r, i%80)
		if i%7 == 0 {
			s += "<|endoftext|>" + s
		}
		if got := nfc.Decode(nfc.Encode(s)); got != norm.NFC.String(s) {
			t.Fatalf("NFC: Decode(Encode(%q)) = %q, want NFC of it", s, got)
		}
		if got := none.Decode(none.Encode(s)); got != s {
			t.Fatalf("no normalizer: Decode(Encode(%q)) = %q", s, got)
		}
	}
}

func TestNextPreToken(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"don't stop", []string{"don", "'t", " stop"}},
		{"we'll they're I've", []string{"we", "'ll", " they", "'re", " I", "'ve"}},
		{"I'M", []string{"I", "'", "M"}},
		{"a  b", []string{"a", " ", " b"}},
		{"a\n\nb", []string{"a", "\n", "\n", "b"}},
		{"x   ", []string{"x", "   "}},
		{"  hi", []string{" ", " hi"}},
		{"\t\tx", []string{"\t", "\t", "x"}},
		{"3.14abc", []string{"3", ".", "14", "abc"}},
		{" 123 ?! ?", []string{" 123", " ?!", " ?"}},
		{"héllo wörld", []string{"héllo", " wörld"}},
		{"你好 世界", []string{"你好", " 世界"}},
		{"a\u00a0b", []string{"a", "\u00a0", "b"}},
		{"x \n y", []string{"x", " \n", " y"}},
		{"'", []string{"'"}},
		{" ", []string{" "}},
	}
	for _, tt := range tests {
		var got []string
		for i := 0; i < len(tt.in); {
			j := nextPreToken(tt.in, i)
			got = append(got, tt.in[i:j])
			i = j
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("pre-tokens of %q = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLoadNeoXTokenizerErrors(t *testing.T) {
	model := func(f map[string]any) map[string]any { return f["model"].(map[string]any) }
	tests := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"wordpiece", func(f map[string]any) { model(f)["type"] = "WordPiece" }, "want BPE"},
		{"dropout", func(f map[string]any) { model(f)["dropout"] = 0.1 }, "dropout"},
		{"unknown merge", func(f map[string]any) { model(f)["merges"] = []string{"Ġ zz"} }, "not in vocab"},
		{"bad merge", func(f map[string]any) { model(f)["merges"] = []string{"a b c"} }, "want two tokens"},
		{"missing byte", func(f map[string]any) { delete(model(f)["vocab"].(map[string]int), "A") }, "no token for byte 0x41"},
		{"lstrip", func(f map[string]any) {
			f["added_tokens"] = []any{map[string]any{"id": 0, "content": "<|endoftext|>", "lstrip": true}}
		}, "lstrip"},
		{"normalizer", func(f map[string]any) { f["normalizer"] = map[string]any{"type": "Lowercase"} }, "not supported"},
		{"pre-tokenizer", func(f map[string]any) { f["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }, "want ByteLevel"},
		{"decoder", func(f map[string]any) { f["decoder"] = nil }, "want ByteLevel"},
		{"post-processor", func(f map[string]any) { f["post_processor"] = map[string]any{"type": "TemplateProcessing"} }, "post_processor"},
		{"id clash", func(f map[string]any) {
			f["added_tokens"] = []any{map[string]any{"id": 5, "content": "<x>"}}
		}, "id 5 used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := testNeoXJSON(t, `{"type": "NFC"}`, tt.edit)
			_, err := LoadNeoXTokenizer(path)
			if !errors.Is(err, ErrBadVocab) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("LoadNeoXTokenizer: %v, want ErrBadVocab with %q", err, tt.want)
			}
		})
	}
	// Bytes never found in UTF-8 may lack tokens, as in 20B_tokenizer.json;
	// invalid UTF-8 input then reads as U+FFFD.
	tok, err := LoadNeoXTokenizer(testNeoXJSON(t, `{"type": "NFC"}`, func(f map[string]any) {
		for _, c := range append([]int{0xc0, 0xc1}, seq(0xf5, 11)...) {
			delete(model(f)["vocab"].(map[string]int), string(byteLevelChars[c]))
		}
	}))
	if err != nil {
		t.Fatalf("vocab without the non-UTF-8 bytes: %v", err)
	}
	if got := tok.Decode(tok.Encode("a\xffb")); got != "a\uFFFDb" {
		t.Errorf("round trip of invalid UTF-8 = %q, want a\uFFFDb", got)
	}
	// A Sequence of supported normalizers loads.
	if _, err := LoadNeoXTokenizer(testNeoXJSON(t, `{"type": "Sequence", "normalizers": [{"type": "NFKC"}, {"type": "NFC"}]}`, nil)); err != nil {
		t.Errorf("Sequence normalizer: %v", err)
	}
}
