//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package data

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockOutput takes an exclusive flock on PREFIX.lock, or fails at once with
// ErrLocked if another process holds it. The kernel releases the lock when a
// run dies, however it dies. unlock removes the file.
func lockOutput(prefix string) (unlock func(), err error) {
	path := prefix + ".lock"
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
		if err != nil {
			return nil, fmt.Errorf("data: prepare: lock: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, lockedError(prefix, path)
			}
			return nil, fmt.Errorf("data: prepare: lock %q: %w", path, err)
		}
		// A run that was ending may have removed the file between our open and
		// our flock: then the lock is on a file no one else will open. Retry.
		fi, err1 := f.Stat()
		pi, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(fi, pi) {
			return func() {
				os.Remove(path)
				f.Close()
			}, nil
		}
		f.Close()
	}
}
