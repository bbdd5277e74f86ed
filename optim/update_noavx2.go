//go:build !(cgo && amd64)

package optim

const haveAVX2 = false

func update32Fast(p, g, m, v []float32, k *coeffs) bool { return false }
