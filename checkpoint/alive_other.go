//go:build !unix

package checkpoint

// processAlive cannot tell here: every writer is taken to be alive.
func processAlive(pid int) bool { return true }
