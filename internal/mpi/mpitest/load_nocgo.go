//go:build !(cgo && linux)

package mpitest

const canLoad = false
