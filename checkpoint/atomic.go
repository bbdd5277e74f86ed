package checkpoint

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// tempMarker is part of every temporary file name, so SweepTemp can find
// what a killed writer left behind: ".<base>.tmp-<pid>-<random>", the pid
// being the writer's, so that a live writer's file is never removed.
const tempMarker = ".tmp-"

// legacyTempAge is how old a temporary file without a pid in its name (an
// older version's ".<base>.tmp-<random>") must be before SweepTemp removes it.
const legacyTempAge = time.Hour

// tempFile is what WriteFileAtomic needs from an open temporary file.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
	Name() string
}

// createTemp opens the temporary file, the last "*" of pattern replaced by
// a random string, with mode 0666 less the umask (os.CreateTemp's 0600
// would then have to be widened, ignoring the umask). Tests replace it to
// inject a writer that fails as a full disk does.
var createTemp = func(dir, pattern string) (tempFile, error) {
	prefix, suffix, _ := strings.Cut(pattern, "*")
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10)+suffix)
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if os.IsExist(err) && try < 100 {
			continue
		}
		return f, err
	}
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
	SweepTemp(dir) // best effort: what killed writers left here
	f, err := createTemp(dir, "."+base+tempMarker+strconv.Itoa(os.Getpid())+"-*")
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

// staleTemp reports whether a temporary file can be removed: its writer
// (the pid in a ".<base>.tmp-<pid>-<digits>" name) is dead, or, for an older
// version's ".<base>.tmp-<digits>", it is older than legacyTempAge. Other
// names, even with ".tmp-" in them, are not ours and stay.
func staleTemp(e os.DirEntry) bool {
	i := strings.LastIndex(e.Name(), tempMarker)
	rest := e.Name()[i+len(tempMarker):]
	if pid, rnd, ok := strings.Cut(rest, "-"); ok {
		n, err := strconv.Atoi(pid)
		if err != nil || n <= 0 || !allDigits(rnd) {
			return false
		}
		return n != os.Getpid() && !processAlive(n)
	}
	if !allDigits(rest) {
		return false
	}
	fi, err := e.Info()
	return err == nil && time.Since(fi.ModTime()) > legacyTempAge
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// SweepTemp removes the temporary files that interrupted WriteFileAtomic
// calls left in dir: those whose writing process is dead. WriteFileAtomic
// calls it; a run calls it at start for the directories it writes into.
func SweepTemp(dir string) (removed []string, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("sweep %s: %w", dir, err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() || !isTemp(e.Name()) || !staleTemp(e) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		if err := os.Remove(p); errors.Is(err, os.ErrNotExist) {
			continue // another sweeper was first
		} else if err != nil {
			return removed, fmt.Errorf("sweep %s: %w", dir, err)
		}
		removed = append(removed, p)
	}
	return removed, nil
}
