//go:build !(cgo && (linux || darwin))

package blas

import "errors"

func openOpenBLAS() (backend, error) {
	return nil, errors.New("this binary was built without cgo, so OpenBLAS cannot be loaded")
}

const ftzSupported = false

func hasLAPACK() bool { return false }
