//go:build !(cgo && amd64)

package model

const haveAVX2 = false

func wkvForwardFast(B, T, C int, decay, first, k, v, s0, y, sT []float32) bool { return false }

func wkvBackwardFast(B, T, C int, decay, first, k, v, s0, gy, gsT, gdecay, gfirst, gk, gv, gs0 []float32) bool {
	return false
}
