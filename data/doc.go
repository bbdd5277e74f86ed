// Package data reads token corpora (binidx and .npy), tokenizes text with the
// tokenizers RWKV models are trained with, writes binidx corpora
// ([Prepare]), and feeds training with windows of ctx_len+1 tokens from a
// [Sampler], prefetched in the background by a [Loader].
//
// Files are memory-mapped where the platform allows (a build-tagged fallback
// reads them into memory elsewhere), so corpora larger than RAM work;
// everything is validated once at [Open], before training starts.
//
// Dependencies: the standard library, and golang.org/x/text/unicode/norm for
// the NFC normalizer of the NeoX tokenizer. Unicode normalization needs the
// Unicode composition tables, which x/text (maintained by the Go team, kept in
// step with Unicode) already implements correctly; writing them again would
// only add risk. The rest is written here because no well-kept Go library
// covers it: the World tokenizer is a short trie over the vocabulary file, and
// the Go ports of Hugging Face tokenizers either bind the Rust library through
// cgo or pull in far more than the BPE subset 20B_tokenizer.json uses, so
// that subset is implemented directly and rejects any feature it does not
// implement instead of tokenizing differently.
package data
