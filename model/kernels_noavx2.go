//go:build !(cgo && amd64)

package model

const haveAVX2 = false

func wkvForwardFast(B, T, C int, decay, first, k, v, s0, y, sT []float32) bool { return false }

func wkvBackwardFast(B, T, C int, decay, first, k, v, s0, gy, gsT, gdecay, gfirst, gk, gv, gs0 []float32) bool {
	return false
}

func gateForwardFast(r, y, out []float32) bool                                          { return false }
func gateBackwardFast(r, y, g, gr, gy []float32) bool                                   { return false }
func reluSqFast(k, g, out []float32) bool                                               { return false }
func shiftMixForwardFast(x, prev, mix, out []float32, B, T, C int) bool                 { return false }
func lnForwardFast(x, w, b, y []float32, N, C int) bool                                 { return false }
func lnBackwardFast(x, w, gy, gx, gw, gb []float32, N, C int) bool                      { return false }
func shiftMixBackwardFast(x, prev, mix, g, gx, gprev, gmix []float32, B, T, C int) bool { return false }

func ceForwardFast(logits []float32, targets []int, N, V int) (float64, bool) { return 0, false }
func ceBackwardFast(logits []float32, targets []int, g float64, l2wrap bool, N, V int, out []float32) bool {
	return false
}
