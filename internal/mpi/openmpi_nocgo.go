//go:build !(cgo && linux)

package mpi

import "errors"

func loadMPI([]string) (impl, int, int, error) {
	return nil, 0, 0, errors.New("this binary was built without cgo (or not for Linux), so libmpi cannot be loaded; rebuild with CGO_ENABLED=1")
}

const (
	tFloat32 = 0
	tFloat64 = 1
	tByte    = 2
)
