package data

import (
	"fmt"
	"strings"
)

// Tokenizer turns text into token ids and back. Decode(Encode(s)) == s for
// every valid UTF-8 s, except where the tokenizer normalizes text (the NeoX
// tokenizer applies NFC, so there it returns NFC(s)).
type Tokenizer interface {
	Encode(s string) []int
	// Decode concatenates the bytes of the tokens. The result may be invalid
	// UTF-8 if the ids cut a character; unknown ids decode to U+FFFD.
	Decode(ids []int) string
	VocabSize() int
	Name() string
}

// prefixEncoder is implemented by the tokenizers of this package so Prepare
// can encode a document larger than RAM piece by piece.
type prefixEncoder interface {
	// encodePrefix appends to dst the tokens of the longest prefix of b whose
	// tokens do not depend on what follows b, and returns the bytes used.
	// With atEOF it encodes all of b.
	encodePrefix(dst []int, b []byte, atEOF bool) ([]int, int)
}

// ParseTokenizer loads a tokenizer from a spec: "byte", "world" (the RWKV
// World vocabulary rwkv_vocab_v20230424.txt, built in), "world:FILE" (a
// vocabulary in that format), "neox" (GPT-NeoX's 20B_tokenizer.json, built in)
// or "neox:FILE" (a Hugging Face tokenizer.json).
func ParseTokenizer(spec string) (Tokenizer, error) {
	kind, path, err := splitTokenizerSpec(spec)
	if err != nil {
		return nil, err
	}
	switch {
	case kind == "byte":
		return NewByteTokenizer(), nil
	case kind == "world" && path == "":
		return WorldVocabTokenizer()
	case kind == "world":
		return LoadWorldTokenizer(path)
	case path == "":
		return NeoX20BTokenizer()
	default:
		return LoadNeoXTokenizer(path)
	}
}

// splitTokenizerSpec checks the syntax of a tokenizer spec without loading it.
// path is "" for a built-in vocabulary.
func splitTokenizerSpec(spec string) (kind, path string, err error) {
	kind, path, hasPath := strings.Cut(spec, ":")
	switch {
	case kind == "byte" && !hasPath:
		return kind, "", nil
	case (kind == "world" || kind == "neox") && (path != "" || !hasPath):
		return kind, path, nil
	}
	return "", "", fmt.Errorf("data: tokenizer %q: %w: want byte, world, neox, world:FILE or neox:FILE", spec, ErrBadConfig)
}

// ByteTokenizer maps each byte of the UTF-8 text to its value (vocab 256).
type ByteTokenizer struct{}

// NewByteTokenizer returns the byte-level tokenizer for small experiments.
func NewByteTokenizer() ByteTokenizer { return ByteTokenizer{} }

func (ByteTokenizer) Name() string   { return "byte" }
func (ByteTokenizer) VocabSize() int { return 256 }

func (ByteTokenizer) Encode(s string) []int {
	ids := make([]int, len(s))
	for i := range len(s) {
		ids[i] = int(s[i])
	}
	return ids
}

func (ByteTokenizer) Decode(ids []int) string {
	var b strings.Builder
	b.Grow(len(ids))
	for _, id := range ids {
		if id < 0 || id > 255 {
			b.WriteString("\uFFFD")
			continue
		}
		b.WriteByte(byte(id))
	}
	return b.String()
}

func (ByteTokenizer) encodePrefix(dst []int, b []byte, _ bool) ([]int, int) {
	for _, c := range b {
		dst = append(dst, int(c))
	}
	return dst, len(b)
}
