// Package data reads token corpora (binidx and .npy), tokenizes text with the
// tokenizers RWKV models are trained with, writes binidx corpora
// ([Prepare]), and feeds training with windows of ctx_len+1 tokens from a
// [Sampler], prefetched in the background by a [Loader].
//
// Files are memory-mapped where the platform allows, so corpora larger than
// RAM work; everything is validated once at [Open], before training starts.
package data
