//go:build unix

package fsutil

import (
	"os"
	"syscall"
)

const oNonblock = syscall.O_NONBLOCK

// clearNonblock restores blocking reads on a regular file (O_NONBLOCK has no
// effect on regular files on Linux, but other systems may honour it).
func clearNonblock(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) { serr = syscall.SetNonblock(int(fd), false) })
	if err != nil {
		return err
	}
	return serr
}
