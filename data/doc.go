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
// step with Unicode) already has. The NeoX tokenizer must give Hugging Face
// tokenizers' ids, not the newest Unicode's, so generated tables
// (unicode_tables.go, from gen_unicode.go, which probes the reference) adjust
// it: the letters and digits of the reference's regex (Unicode 16.0, Go's
// unicode package is 15.0), the marks its normalizer does not know (its
// tables are Unicode 9.0), and the code points x/text composes wrongly; see
// refNormalize. The two official vocabularies are built in (vocab/). The rest is written here because no well-kept Go library
// covers it: the World tokenizer is a short trie over the vocabulary file, and
// the Go ports of Hugging Face tokenizers either bind the Rust library through
// cgo or pull in far more than the BPE subset 20B_tokenizer.json uses, so
// that subset is implemented directly and rejects any feature it does not
// implement instead of tokenizing differently.
package data
