//go:build unix

package model

import "syscall"

// cpuSeconds is the process's user+system CPU time so far (benchmarks report it per run: on a
// shared machine it varies less than wall time).
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
