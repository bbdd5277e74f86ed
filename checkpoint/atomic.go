package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// tempMarker is part of every temporary file name, so SweepTemp can find
// what a killed writer left behind: ".<base>.tmp-<random>".
const tempMarker = ".tmp-"

// tempFile is what WriteFileAtomic needs from an open temporary file.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// createTemp opens the temporary file. Tests replace it to inject a writer
// that fails as a full disk does.
var createTemp = func(dir, pattern string) (tempFile, error) {
	return os.CreateTemp(dir, pattern)
}

// WriteFileAtomic writes path so that it either keeps its old contents or
// holds everything write produced: write goes to a temporary file in the
// same directory, which is fsynced, renamed over path, and the directory is
// fsynced. On any error the temporary file is removed and path is untouched.
func WriteFileAtomic(path string, write func(io.Writer) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := createTemp(dir, "."+base+tempMarker+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
			err = fmt.Errorf("write %s: %w", path, err)
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // CreateTemp made it 0600
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, os.ErrInvalid) { // some filesystems cannot sync a directory
		return nil
	}
	return err
}

// isTemp reports whether name is a temporary file of WriteFileAtomic.
func isTemp(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, tempMarker)
}

// SweepTemp removes the temporary files that interrupted WriteFileAtomic
// calls left in dir. Call it at start, before any writer runs.
func SweepTemp(dir string) (removed []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !isTemp(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", dir, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}
