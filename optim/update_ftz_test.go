package optim

import "testing"

// TestUpdateFlushesDenormals: the AVX2 AdamW update flushes denormals (PyTorch's
// set_flush_denormal), so a second moment decaying below 1.2e-38 becomes zero instead of
// lingering in the slow denormal range.
func TestUpdateFlushesDenormals(t *testing.T) {
	const n = 11 // vector body and scalar tail
	p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
	for i := range v {
		p[i], v[i] = 1, 1e-39
	}
	k := &coeffs{b1: 0.9, c1: 0.1, b2: 0.99, c2: 0.01, decay: 1, stepSize: 1e-3, bc2s: 1, eps: 1e-8}
	if !update32Fast(p, g, m, v, k) {
		t.Skip("skipping: no AVX2 AdamW kernel in this build")
	}
	for i := range v {
		if v[i] != 0 || p[i] != 1 {
			t.Fatalf("element %d: v = %g, p = %g; want v flushed to 0 and p unchanged", i, v[i], p[i])
		}
	}
}
