package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockName is the lock file a run holds in out_dir and in checkpoint.dir.
const lockName = ".rwkv-train.lock"

// ErrDirInUse is returned by New when another run holds out_dir or checkpoint.dir.
var ErrDirInUse = errors.New("directory in use by another run")

// prepareDirs creates out_dir and checkpoint.dir, checks that files can be written in them
// (so a bad directory fails now, not at the first checkpoint after hours of training) and
// takes an exclusive lock on each for the trainer's lifetime.
func (t *Trainer) prepareDirs() error {
	seen := map[string]bool{}
	for _, d := range []struct{ key, dir string }{{"out_dir", t.cfg.OutDir}, {"checkpoint.dir", t.cfg.CheckpointDir()}} {
		if err := os.MkdirAll(d.dir, 0o777); err != nil {
			return fmt.Errorf("%s %q: %w; choose a directory this user can create", d.key, d.dir, err)
		}
		if err := probeWritable(d.dir); err != nil {
			return fmt.Errorf("%s %q is not writable: %w; fix its permissions or choose another", d.key, d.dir, err)
		}
		id, err := dirIdentity(d.dir)
		if err != nil {
			return fmt.Errorf("%s %q: %w", d.key, d.dir, err)
		}
		if seen[id] { // checkpoint.dir = out_dir: one lock
			continue
		}
		seen[id] = true
		f, err := lockDir(d.dir)
		if err != nil {
			return fmt.Errorf("%s: %w", d.key, err)
		}
		t.locks = append(t.locks, f)
	}
	return nil
}

// probeWritable creates, writes and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".rwkv-train-probe-*")
	if err != nil {
		return err
	}
	_, werr := f.Write([]byte{0})
	cerr := f.Close()
	rerr := os.Remove(f.Name())
	return errors.Join(werr, cerr, rerr)
}

// dirIdentity names a directory by its absolute path with symlinks resolved, so two paths to
// one directory match.
func dirIdentity(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	return abs, nil
}

// lockHolder reads the pid a lock file records ("" if none).
func lockHolder(f *os.File) string {
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid := strings.TrimSpace(string(b[:n]))
	if _, err := strconv.Atoi(pid); err != nil {
		return ""
	}
	return pid
}
