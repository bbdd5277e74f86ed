package data

import (
	"bytes"
	_ "embed" // the built-in vocabularies
)

// The two official vocabularies, built into the binary as RWKV's own Python
// package ships them (see vocab/README.md for their source and sha256).
var (
	//go:embed vocab/rwkv_vocab_v20230424.txt
	worldVocabFile []byte
	//go:embed vocab/20B_tokenizer.json
	neox20BFile []byte
)

// WorldVocabTokenizer returns the RWKV World tokenizer with the built-in
// rwkv_vocab_v20230424.txt (vocab 65536), the "world" tokenizer spec.
func WorldVocabTokenizer() (*WorldTokenizer, error) {
	return readWorldTokenizer(bytes.NewReader(worldVocabFile), "built-in rwkv_vocab_v20230424.txt")
}

// NeoX20BTokenizer returns the GPT-NeoX tokenizer with the built-in
// 20B_tokenizer.json (vocab 50277), the "neox" tokenizer spec.
func NeoX20BTokenizer() (*NeoXTokenizer, error) {
	return readNeoXTokenizer(neox20BFile, "built-in 20B_tokenizer.json")
}
