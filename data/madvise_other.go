//go:build unix && !linux

package data

// adviseRandom is a no-op where the syscall package has no Madvise.
func adviseRandom([]byte) {}
