//go:build !(cgo && amd64)

package model

func shiftLerpForwardFast(x, prev []float32, mixes [][]float32, out []float32, B, T, C int) bool {
	return false
}
func shiftLerpBackwardFast(x, prev []float32, mixes [][]float32, g, gx, gprev, gmix []float32, B, T, C int) bool {
	return false
}
