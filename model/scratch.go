package model

import "sync"

// scratch32 is a free list of float32 work buffers for the kernels' temporaries (WKV backward
// tapes, per-piece partial sums). Unlike make, a reused buffer is already faulted in; unlike a
// sync.Pool, the list survives garbage collections. It keeps at most maxScratch buffers.
var scratch32 struct {
	mu   sync.Mutex
	free [][]float32
}

const maxScratch = 64

// getScratch returns a buffer of length n with unspecified contents.
func getScratch(n int) []float32 {
	scratch32.mu.Lock()
	defer scratch32.mu.Unlock()
	for i, b := range scratch32.free {
		if cap(b) >= n {
			last := len(scratch32.free) - 1
			scratch32.free[i] = scratch32.free[last]
			scratch32.free = scratch32.free[:last]
			return b[:n]
		}
	}
	return make([]float32, n)
}

// getScratchZero is getScratch with the buffer cleared.
func getScratchZero(n int) []float32 {
	b := getScratch(n)
	clear(b)
	return b
}

// putScratch hands a buffer from getScratch back for reuse.
func putScratch(b []float32) {
	scratch32.mu.Lock()
	defer scratch32.mu.Unlock()
	if len(scratch32.free) < maxScratch {
		scratch32.free = append(scratch32.free, b[:cap(b)])
	}
}
