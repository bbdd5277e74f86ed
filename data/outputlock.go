package data

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// ErrLocked is returned when another Prepare holds the output's lock.
var ErrLocked = errors.New("output in use")

// createTemp creates PREFIX.KIND.N.tmp, N random digits, with the mode the
// umask gives a new file (os.CreateTemp would make it 0600, and the rename
// into place would keep that).
func createTemp(prefix, kind string) (*os.File, error) {
	for {
		name := prefix + "." + kind + "." + strconv.FormatUint(uint64(rand.Uint32()), 10) + ".tmp"
		f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o666)
		if !errors.Is(err, fs.ErrExist) {
			return f, err
		}
	}
}

// removeStaleTemps removes the temporary files of prefix that a killed run
// left. Call it holding prefix's lock: then no live run owns them.
func removeStaleTemps(prefix string) {
	dir, base := filepath.Split(prefix)
	if dir == "" {
		dir = "."
	}
	stale := regexp.MustCompile(`^` + regexp.QuoteMeta(base) + `\.(bin|sizes|idx|mask)\.[0-9]+\.tmp$`)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if stale.MatchString(e.Name()) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func lockedError(prefix, lock string) error {
	return fmt.Errorf("data: prepare: %w: another prepare is writing %q (it holds the lock %q); wait for it to end or choose another output",
		ErrLocked, prefix, lock)
}
