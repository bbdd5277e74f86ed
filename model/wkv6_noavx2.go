//go:build !(cgo && amd64)

package model

func wkv6ForwardFast(B, T, H, N int, r, k, v, w, u, s0, y, sT []float32) bool { return false }

func wkv6BackwardFast(B, T, H, N int, r, k, v, w, u, s0, dy, dsT, dr, dk, dv, dw, du, ds0 []float32) bool {
	return false
}
