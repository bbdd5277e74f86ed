//go:build linux

package checkpoint

import (
	"bytes"
	"errors"
	"os"
	"syscall"
	"testing"
)

// TestFullTmpfs repeats the full-disk test on a real 64 KiB tmpfs, which
// needs root with CAP_SYS_ADMIN; elsewhere it skips, and
// TestFullDiskKeepsPreviousCheckpoint still covers the failure paths.
func TestFullTmpfs(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Skipf("skipping: cannot mount a 64 KiB tmpfs on %s (%v); needs root with CAP_SYS_ADMIN", dir, err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, 0) })

	small := tinyModel(Dims{Vocab: 11, Embd: 4, FFN: 16, Layers: 2}) // about 2 KiB
	good, err := Save(dir, 1, small, small, squares(small), State{Config: "a: 1\n"})
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(good)
	big := tinyModel(Dims{Vocab: 500, Embd: 16, FFN: 64, Layers: 2}) // about 90 KiB
	for _, step := range []int64{2, 1} {
		_, err = Save(dir, step, big, nil, nil, State{})
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("step %d on a full tmpfs: error %v, want ENOSPC", step, err)
		}
	}
	assertNoTemp(t, dir)
	if after, _ := os.ReadFile(good); !bytes.Equal(before, after) {
		t.Fatal("previous checkpoint changed")
	}
	if latest, err := Latest(dir); err != nil || latest != good {
		t.Fatalf("Latest = %s, %v; want %s", latest, err, good)
	}
	if _, err := Load(good); err != nil {
		t.Fatal(err)
	}
}
