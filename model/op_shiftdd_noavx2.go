//go:build !(cgo && amd64)

package model

func shiftLoRARowsFast(x, prev, maa, g, mm, gx, gm, gprev []float32, pm []float64, lo, hi, T, Cn int) bool {
	return false
}
