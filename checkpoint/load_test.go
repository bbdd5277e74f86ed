package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCorruptNewestCheckpointIsNamed: reading weights from, loading or
// resuming a checkpoint directory whose newest checkpoint is corrupt is an
// error naming that file and what is wrong with it, and naming the newest
// intact older checkpoint to pass explicitly; nothing falls back to it.
// (Exporting from such a directory used to say "no such file" about
// dir/model.safetensors.)
func TestCorruptNewestCheckpointIsNamed(t *testing.T) {
	w := tinyModel(tinyDims)
	flip := func(b []byte) []byte { b[len(b)-3] ^= 0x10; return b }
	tests := []struct {
		name    string
		steps   int // checkpoints saved: steps 1..n
		corrupt map[int]func([]byte) []byte
		what    string // the problem the error must name
		intact  int    // step of the checkpoint the error must point to, 0 for none
		hint    string
		header  bool // whether the header is damaged, which Latest notices too
	}{
		{"truncated", 3, map[int]func([]byte) []byte{3: func(b []byte) []byte { return b[:len(b)/2] }},
			"runs past the end", 2, "", true},
		{"flipped data byte", 3, map[int]func([]byte) []byte{3: flip}, "checksum mismatch", 2, "", false},
		{"two corrupt", 3, map[int]func([]byte) []byte{3: flip, 2: flip}, "checksum mismatch", 1, "", false},
		{"empty, no older", 1, map[int]func([]byte) []byte{1: func([]byte) []byte { return nil }},
			"shorter than the 8-byte header", 0, "there is no older checkpoint", true},
		{"all corrupt", 2, map[int]func([]byte) []byte{1: flip, 2: flip}, "checksum mismatch", 0,
			"none of the 1 older checkpoints is intact either", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			paths := map[int]string{}
			for step := 1; step <= tt.steps; step++ {
				p, err := Save(dir, int64(step), w, w, squares(w), State{})
				if err != nil {
					t.Fatal(err)
				}
				paths[step] = p
			}
			for step, f := range tt.corrupt {
				b, _ := os.ReadFile(paths[step])
				os.WriteFile(paths[step], f(b), 0o644)
			}
			newest := paths[tt.steps]
			want := []string{"newest checkpoint " + newest + " is corrupt", tt.what}
			if tt.intact > 0 {
				want = append(want, "the newest intact one is "+paths[tt.intact]+": pass that file explicitly")
			} else {
				want = append(want, tt.hint)
			}
			check := func(what string, err error) {
				t.Helper()
				if err == nil {
					t.Errorf("%s: no error", what)
					return
				}
				for _, s := range want {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("%s: %q, want it to contain %q", what, err, s)
					}
				}
			}
			_, err := ReadWeights(dir)
			check("ReadWeights", err)
			_, err = LoadLatest(dir)
			check("LoadLatest", err)
			_, _, err = Resume(dir)
			check("Resume", err)
			if _, err := Latest(dir); tt.header {
				check("Latest", err) // Latest checks headers only
			}
			// Given the file itself (as export does when Latest, which reads
			// only headers, accepted it), the error names the intact one too.
			want = []string{newest}
			if tt.intact > 0 {
				want = append(want, "the newest intact one is "+paths[tt.intact]+": pass that file explicitly")
			}
			_, err = ReadWeights(newest)
			check("ReadWeights(newest)", err)
			_, err = Load(newest)
			check("Load(newest)", err)
		})
	}
}

// TestLoadRefusesNegativeSecondMoments: an AdamW second moment below zero
// (a damaged checkpoint; resuming would take its square root) is refused
// on load, naming the tensor, and on save (a bug could otherwise write a
// checkpoint that cannot be resumed).
func TestLoadRefusesNegativeSecondMoments(t *testing.T) {
	w := tinyModel(tinyDims)
	v := squares(w)
	vals, _ := v[5].Float32s()
	vals[1] = -0.25
	v[5] = FromFloat32(v[5].Name, v[5].Shape, vals, F32)
	dir := t.TempDir()
	want := `optimiser second moment "` + v[5].Name + `": element 1 is -0.25, negative`
	if _, err := Save(dir, 3, w, w, v, State{}); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
		t.Errorf("Save: %v, want %q", err, want)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("Save wrote %d files", len(ents))
	}
	path, err := writeCheckpoint(dir, 3, w, w, v, State{}) // as a damaged file would hold it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), want) {
		t.Errorf("Load: %v, want %q", err, want)
	}
	if _, _, err := Resume(filepath.Dir(path)); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Resume: %v, want %q", err, want)
	}
}
