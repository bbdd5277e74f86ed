//go:build cgo && linux

package mpitest

// canLoad: this build can load libmpi (internal/mpi's dlopen layer needs cgo on Linux).
const canLoad = true
