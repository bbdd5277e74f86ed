//go:build !(cgo && amd64)

package model

func wkv7ForwardFast(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []float32) bool { return false }

func wkv7BackwardFast(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []float32) bool {
	return false
}
