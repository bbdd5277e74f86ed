package data

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"
)

// TestBuiltinVocabFiles checks the embedded files are the published ones
// (vocab/README.md).
func TestBuiltinVocabFiles(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    []byte
		sum  string
	}{
		{"rwkv_vocab_v20230424.txt", worldVocabFile, "e6dee3d4e31b4d5c40ac99508ac6c701ceef4bed681bf2167ce9a908552bca89"},
		{"20B_tokenizer.json", neox20BFile, "56ac4821e129d2c520fdaba60abd920fa852ada51b45c0dd52bbb6bd8c985ade"},
	} {
		sum := sha256.Sum256(tt.b)
		if got := hex.EncodeToString(sum[:]); got != tt.sum {
			t.Errorf("%s: sha256 %s, want %s", tt.name, got, tt.sum)
		}
	}
}

// TestWorldBuiltinIDs checks the built-in World tokenizer against ids from
// RWKV's TRIE_TOKENIZER algorithm (greedy longest byte match over
// rwkv_vocab_v20230424.txt, as in rwkv/rwkv_tokenizer.py, run in Python).
func TestWorldBuiltinIDs(t *testing.T) {
	tok, err := ParseTokenizer("world")
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 65536 {
		t.Errorf("VocabSize = %d, want 65536", tok.VocabSize())
	}
	for _, tt := range []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{33155, 40213}},
		{"\n\n", []int{261}},
		{"The quick brown fox jumps over the lazy dog.", []int{6699, 39418, 37917, 21704, 38828, 31601, 22590, 31261, 21551, 47}},
		{"你好，世界", []int{10464, 11685, 19137, 10267, 14610}},
		{"Ᲊ's naïve café 🤗 12345", []int{226, 179, 138, 460, 46644, 37946, 33, 3319, 165, 152, 3485, 654, 54}},
		{"func main() {\n\tfmt.Println(\"hi\")\n}", []int{25465, 31356, 472, 358, 260, 7575, 47, 33357, 2020, 465, 1922, 381, 11, 126}},
	} {
		if got := tok.Encode(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if got := tok.Decode(tt.want); got != tt.in {
			t.Errorf("Decode(%v) = %q, want %q", tt.want, got, tt.in)
		}
	}
}

// TestNeoXBuiltinIDs checks the built-in NeoX tokenizer on the three cases
// issue 12 found, with the ids of Hugging Face tokenizers 0.23.2.
func TestNeoXBuiltinIDs(t *testing.T) {
	tok, err := ParseTokenizer("neox")
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 50277 {
		t.Errorf("VocabSize = %d, want 50277", tok.VocabSize())
	}
	for _, tt := range []struct {
		in   string
		want []int
	}{
		{"Hello world", []int{12092, 1533}},
		{"a\xdf\xbd\xcc\xb4", []int{66, 155, 123, 136, 114}}, // U+07FD (Unicode 11) keeps its place before U+0334
		{"Ᲊ's", []int{157, 112, 220, 434}},                   // U+1C89 (Unicode 16) is a letter
		{"\xff\xff", []int{42481}},                           // two U+FFFD
	} {
		if got := tok.Encode(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
