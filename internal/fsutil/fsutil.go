// Package fsutil opens input files safely: a path that names a named pipe,
// a device, a socket or a directory is refused before anything blocks on it.
package fsutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// ErrNotRegular reports a path that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// Kind names the type of a non-regular file mode for error messages.
func Kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeIrregular != 0:
		return "irregular file"
	}
	return "regular file"
}

// CheckRegular returns an error wrapping ErrNotRegular, naming path and
// its kind, when fi is not a regular file.
func CheckRegular(path string, fi fs.FileInfo) error {
	if fi.Mode().IsRegular() {
		return nil
	}
	return fmt.Errorf("%s is a %s: %w; give the path of a file", path, Kind(fi.Mode()), ErrNotRegular)
}

// OpenRegular opens path for reading and returns it with its FileInfo. It
// refuses anything but a regular file (symlinks are followed) without
// blocking: the open is non-blocking, so a FIFO without a writer cannot
// hang it, and the type is checked on the open descriptor, so a path
// swapped between the check and the open is caught too.
func OpenRegular(path string) (*os.File, fs.FileInfo, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, nil, err
	} else if err := CheckRegular(path, fi); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|oNonblock, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil {
		err = CheckRegular(path, fi)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if err := clearNonblock(f); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, fi, nil
}

// ReadFile is os.ReadFile for regular files only, with at most limit bytes
// (limit <= 0: no limit).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, fi, err := OpenRegular(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if limit > 0 && fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than the %d this file may have", path, fi.Size(), limit)
	}
	b := make([]byte, fi.Size())
	n, err := f.ReadAt(b, 0)
	if err != nil && n != len(b) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b[:n], nil
}
