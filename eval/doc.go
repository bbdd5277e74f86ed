// Package eval measures RWKV-4 models: perplexity over a whole token stream in fixed order, either
// in windows of ctx_len with the parallel (graph) form or as one unbounded stream with the
// recurrent form; LAMBADA-style last-word accuracy; and sampling for generation. It reads models
// built by package model and tokens from package data, and knows nothing of training: the trainer's
// periodic validation calls Perplexity.
package eval
