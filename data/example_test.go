package data_test

import (
	"fmt"

	"github.com/rwkv-go/rwkv-go/data"
)

// RWKV-LM's minipile recipe: 1498226207 tokens at ctx_len 512.
func ExampleMagicPrime() {
	fmt.Println(data.MagicPrime(1498226207, 512))
	// Output: 2926181
}

func ExampleByteTokenizer() {
	tok := data.NewByteTokenizer()
	ids := tok.Encode("hé")
	fmt.Println(ids, tok.Decode(ids))
	// Output: [104 195 169] hé
}
