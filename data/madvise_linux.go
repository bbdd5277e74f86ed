package data

import "syscall"

// adviseRandom tells the kernel the samplers read at random offsets, so a
// 2 KiB window does not pull in 128 KiB of read-ahead: on a corpus larger
// than RAM that would evict useful pages for nothing.
func adviseRandom(b []byte) { _ = syscall.Madvise(b, syscall.MADV_RANDOM) }
