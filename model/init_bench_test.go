package model

import (
	"testing"

	"gorgonia.org/tensor"
)

// BenchmarkInit169M is RWKV-LM initialisation of the 169M model (orthogonal 50277×768 head).
func BenchmarkInit169M(b *testing.B) {
	m, err := New(Config{Layers: 12, Embd: 768, Vocab: 50277, CtxLen: 1024}, tensor.Float32)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		m.Init(1, 6e-4)
	}
}
