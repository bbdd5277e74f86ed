//go:build !(cgo && amd64)

package model

func actForwardFast(kind ActKind, x, b, y []float32, N, D int) bool               { return false }
func vresForwardFast(v, vf, v0, z, out []float32, N, C int) bool                  { return false }
func vresBackwardFast(v, vf, v0, z, g, gv, gvf, gv0, gz []float32, N, C int) bool { return false }
