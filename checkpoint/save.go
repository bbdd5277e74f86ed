package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// FormatVersion is the training checkpoint layout this package writes.
// Load accepts this version and older ones.
const FormatVersion = 1

// FormatName is the "format" metadata value of a training checkpoint.
const FormatName = "rwkv-go-checkpoint"

// ErrNoCheckpoint is returned by Latest for a directory without checkpoints.
var ErrNoCheckpoint = errors.New("no checkpoint")

// Tensor name prefixes inside a training checkpoint.
const (
	prefixModel  = "model/"
	prefixOptimM = "optim.m/"
	prefixOptimV = "optim.v/"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// State is everything besides tensors that resuming needs, stored as JSON in
// the "state" metadata entry.
type State struct {
	FormatVersion int   `json:"format_version"`
	Step          int64 `json:"step"`       // completed training steps
	OptimStep     int64 `json:"optim_step"` // AdamW t, for bias correction
	Tokens        int64 `json:"tokens"`     // tokens consumed: the schedule position
	// Config is the resolved config as YAML; it is also stored on its own in
	// the "config" metadata entry for people reading the header.
	Config string `json:"config"`
	// Sampler is the data sampler's opaque state: RNG state and position.
	Sampler []byte            `json:"sampler,omitempty"`
	Extra   map[string]string `json:"extra,omitempty"`
}

// Checkpoint is a loaded training checkpoint.
type Checkpoint struct {
	Path    string
	State   State
	Weights []Tensor // names as given to Save, without the "model/" prefix
	OptimM  []Tensor // AdamW first moments, same names and shapes; may be empty
	OptimV  []Tensor // AdamW second moments
}

// FileName is the checkpoint file name for step.
func FileName(step int64) string { return fmt.Sprintf("step-%09d.safetensors", step) }

var fileNameRE = regexp.MustCompile(`^step-(\d{9,})\.safetensors$`)

// Save atomically writes dir/step-<step>.safetensors (creating dir if
// needed) holding the weights, the AdamW moments (both empty, or one per
// weight with the same name and shape) and st, and returns its path. It
// refuses non-finite values and negative second moments, naming the tensor,
// so a diverged run never replaces a good checkpoint and nothing is written
// that Load would refuse.
func Save(dir string, step int64, weights, optimM, optimV []Tensor, st State) (string, error) {
	path := filepath.Join(dir, FileName(step))
	if err := checkSave(step, weights, optimM, optimV); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", path, err)
	}
	// Load refuses a negative second moment; refusing it here too means no bug can write a
	// checkpoint that cannot be resumed.
	if err := checkSecondMoments(optimV, "a bug in the optimiser; nothing was written"); err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return writeCheckpoint(dir, step, weights, optimM, optimV, st)
}

// writeCheckpoint is Save without the checks.
func writeCheckpoint(dir string, step int64, weights, optimM, optimV []Tensor, st State) (string, error) {
	path := filepath.Join(dir, FileName(step))
	st.FormatVersion = FormatVersion
	st.Step = step
	ts := make([]Tensor, 0, 3*len(weights))
	for _, group := range []struct {
		prefix string
		ts     []Tensor
	}{{prefixModel, weights}, {prefixOptimM, optimM}, {prefixOptimV, optimV}} {
		for _, t := range group.ts {
			t.Name = group.prefix + t.Name
			ts = append(ts, t)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	stateJSON, err := json.Marshal(st)
	if err != nil {
		return "", fmt.Errorf("checkpoint %s: %w", path, err)
	}
	meta := map[string]string{
		"format":         FormatName,
		"format_version": strconv.Itoa(FormatVersion),
		"state":          string(stateJSON),
		"config":         st.Config,
		"data_crc32c":    strconv.FormatUint(uint64(dataCRC(ts)), 10),
	}
	err = WriteFileAtomic(path, func(w io.Writer) error { return WriteSafetensors(w, ts, meta) })
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	return path, nil
}

func checkSave(step int64, weights, optimM, optimV []Tensor) error {
	if step < 0 {
		return fmt.Errorf("negative step %d", step)
	}
	if len(weights) == 0 {
		return fmt.Errorf("no weights: %w", ErrTensors)
	}
	for _, group := range [][]Tensor{weights, optimM, optimV} {
		for _, t := range group {
			if strings.Contains(t.Name, "/") {
				return fmt.Errorf("tensor %q: name contains '/': %w", t.Name, ErrTensors)
			}
			if !t.DType.IsFloat() {
				return fmt.Errorf("tensor %q: dtype %s: %w", t.Name, t.DType, ErrDType)
			}
			if err := t.CheckFinite(); err != nil {
				return err
			}
		}
	}
	if len(optimM) == 0 && len(optimV) == 0 {
		return nil
	}
	for _, moments := range [][]Tensor{optimM, optimV} {
		if len(moments) != len(weights) {
			return fmt.Errorf("%d weights but %d optimiser moments: %w", len(weights), len(moments), ErrTensors)
		}
		for i, w := range weights {
			if moments[i].Name != w.Name || !equalShape(moments[i].Shape, w.Shape) {
				return fmt.Errorf("optimiser moment %q%v does not match weight %q%v: %w",
					moments[i].Name, moments[i].Shape, w.Name, w.Shape, ErrTensors)
			}
		}
	}
	return nil
}

func dataCRC(ts []Tensor) uint32 {
	var c uint32
	for _, t := range ts {
		c = crc32.Update(c, castagnoli, t.Data)
	}
	return c
}

// checkMeta verifies the format entries of a checkpoint header.
func checkMeta(meta map[string]string) (State, error) {
	if meta["format"] != FormatName {
		return State{}, fmt.Errorf("format %q, want %q: %w", meta["format"], FormatName, ErrMalformed)
	}
	v, err := strconv.Atoi(meta["format_version"])
	if err != nil || v < 1 || v > FormatVersion {
		return State{}, fmt.Errorf("format_version %q: this build reads 1..%d: %w", meta["format_version"], FormatVersion, ErrMalformed)
	}
	var st State
	if err := json.Unmarshal([]byte(meta["state"]), &st); err != nil {
		return State{}, fmt.Errorf("state: %v: %w", err, ErrMalformed)
	}
	return st, nil
}

// Load reads and verifies a training checkpoint written by Save. When it
// is corrupt, the error names the newest intact older checkpoint in its
// directory, if there is one.
func Load(path string) (*Checkpoint, error) {
	f, err := OpenSafetensors(path)
	if err != nil {
		return nil, withOlderHint(path, fmt.Errorf("checkpoint: %w", err))
	}
	c, err := fromFile(f)
	if err != nil {
		return nil, withOlderHint(path, fmt.Errorf("checkpoint %s: %w", path, err))
	}
	c.Path = path
	return c, nil
}

func fromFile(f *File) (*Checkpoint, error) {
	st, err := checkMeta(f.Meta)
	if err != nil {
		return nil, err
	}
	if want := f.Meta["data_crc32c"]; want != strconv.FormatUint(uint64(dataCRC(f.Tensors)), 10) {
		return nil, fmt.Errorf("tensor data checksum mismatch (corrupt file): %w", ErrMalformed)
	}
	c := &Checkpoint{State: st}
	for _, t := range f.Tensors {
		var ok bool
		switch {
		case strings.HasPrefix(t.Name, prefixModel):
			t.Name, ok = strings.CutPrefix(t.Name, prefixModel)
			c.Weights = append(c.Weights, t)
		case strings.HasPrefix(t.Name, prefixOptimM):
			t.Name, ok = strings.CutPrefix(t.Name, prefixOptimM)
			c.OptimM = append(c.OptimM, t)
		case strings.HasPrefix(t.Name, prefixOptimV):
			t.Name, ok = strings.CutPrefix(t.Name, prefixOptimV)
			c.OptimV = append(c.OptimV, t)
		}
		if !ok {
			return nil, fmt.Errorf("unexpected tensor %q: %w", t.Name, ErrTensors)
		}
	}
	if err := checkSave(st.Step, c.Weights, c.OptimM, c.OptimV); err != nil {
		return nil, err
	}
	if err := checkSecondMoments(c.OptimV, "a damaged checkpoint"); err != nil {
		return nil, err
	}
	return c, nil
}

// checkSecondMoments refuses a negative AdamW second moment: v is a running
// mean of squares, so a negative one only comes from a damaged file (or a
// bug, when saving), and resuming from it would take the square root of a
// negative number. cause says which, in the error.
func checkSecondMoments(vs []Tensor, cause string) error {
	for _, t := range vs {
		v, err := t.Float64s()
		if err != nil {
			return fmt.Errorf("optimiser second moment %q: %w", t.Name, err)
		}
		for i, x := range v {
			if x < 0 {
				return fmt.Errorf("optimiser second moment %q: element %d is %g, negative (%s): %w", t.Name, i, x, cause, ErrMalformed)
			}
		}
	}
	return nil
}

// list returns the checkpoint paths in dir, oldest step first.
func list(dir string) ([]string, []int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	type ck struct {
		path string
		step int64
	}
	var cks []ck
	for _, e := range ents {
		m := fileNameRE.FindStringSubmatch(e.Name())
		if m == nil || !e.Type().IsRegular() {
			continue
		}
		step, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			continue // more digits than an int64: not ours
		}
		cks = append(cks, ck{filepath.Join(dir, e.Name()), step})
	}
	slices.SortFunc(cks, func(a, b ck) int { return cmpInt64(a.step, b.step) })
	paths, steps := make([]string, len(cks)), make([]int64, len(cks))
	for i, c := range cks {
		paths[i], steps[i] = c.path, c.step
	}
	return paths, steps, nil
}

// Latest returns the checkpoint in dir with the highest step, after checking
// its header and format (Load verifies the data). It fails with
// ErrNoCheckpoint when there is none, and with an error naming the file when
// the newest one is corrupt: it never falls back to an older checkpoint, but
// its error names the newest intact one, to be passed explicitly.
func Latest(dir string) (string, error) {
	paths, _, err := list(dir)
	if err != nil {
		return "", fmt.Errorf("checkpoint: %w", err)
	}
	if len(paths) == 0 {
		return "", fmt.Errorf("checkpoint: %s: %w", dir, ErrNoCheckpoint)
	}
	path := paths[len(paths)-1]
	if err := checkHeader(path); err != nil {
		return "", corruptNewest(path, paths[:len(paths)-1], err)
	}
	return path, nil
}

// LoadLatest loads the checkpoint in dir with the highest step, verifying
// its data. Like Latest, it never falls back to an older checkpoint: a
// corrupt newest one is an error naming it and what is wrong, and naming
// the newest intact older one, if any, to be passed explicitly.
func LoadLatest(dir string) (*Checkpoint, error) {
	paths, _, err := list(dir)
	if err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("checkpoint: %s: %w", dir, ErrNoCheckpoint)
	}
	path := paths[len(paths)-1]
	f, err := OpenSafetensors(path)
	if err != nil {
		return nil, corruptNewest(path, paths[:len(paths)-1], err)
	}
	c, err := fromFile(f)
	if err != nil {
		return nil, corruptNewest(path, paths[:len(paths)-1], err)
	}
	c.Path = path
	return c, nil
}

// corruptNewest is the error for a newest checkpoint at path that cannot be
// used; older holds the older checkpoints, oldest first.
func corruptNewest(path string, older []string, err error) error {
	return fmt.Errorf("checkpoint: the newest checkpoint %s is corrupt (%w); %s", path, err, olderHint(path, older))
}

// olderHint names the newest intact checkpoint of older (oldest first) as
// the one to pass instead of the corrupt one at path.
func olderHint(path string, older []string) string {
	if len(older) == 0 {
		return "there is no older checkpoint"
	}
	for i := len(older) - 1; i >= 0; i-- {
		if verifyFile(older[i]) == nil {
			return fmt.Sprintf("the newest intact one is %s: pass that file explicitly to use it, or delete %s", older[i], path)
		}
	}
	return fmt.Sprintf("none of the %d older checkpoints is intact either", len(older))
}

// withOlderHint adds olderHint to err when path is named like a training
// checkpoint and older ones sit next to it.
func withOlderHint(path string, err error) error {
	m := fileNameRE.FindStringSubmatch(filepath.Base(path))
	if m == nil {
		return err
	}
	step, perr := strconv.ParseInt(m[1], 10, 64)
	paths, steps, lerr := list(filepath.Dir(path))
	if perr != nil || lerr != nil {
		return err
	}
	var older []string
	for i, p := range paths {
		if steps[i] < step {
			older = append(older, p)
		}
	}
	if len(older) == 0 {
		return err
	}
	return fmt.Errorf("%w; %s", err, olderHint(path, older))
}

// verifyFile checks a checkpoint's header, format and data checksum,
// streaming the data rather than loading it.
func verifyFile(path string) error {
	f, fi, err := fsutil.OpenRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	meta, _, dataStart, err := parseHeader(f, fi.Size())
	if err != nil {
		return err
	}
	if _, err := checkMeta(meta); err != nil {
		return err
	}
	// checkOffsets has made the tensors tile the data section in file
	// order, so its checksum is dataCRC's.
	h := crc32.New(castagnoli)
	if _, err := io.Copy(h, io.NewSectionReader(f, dataStart, fi.Size()-dataStart)); err != nil {
		return err
	}
	if meta["data_crc32c"] != strconv.FormatUint(uint64(h.Sum32()), 10) {
		return fmt.Errorf("tensor data checksum mismatch: %w", ErrMalformed)
	}
	return nil
}

func checkHeader(path string) error {
	_, err := readState(path)
	return err
}

// readState reads a checkpoint's state from its header, without the tensor data.
func readState(path string) (State, error) {
	f, fi, err := fsutil.OpenRegular(path)
	if err != nil {
		return State{}, err
	}
	defer f.Close()
	meta, _, _, err := parseHeader(f, fi.Size())
	if err != nil {
		return State{}, err
	}
	return checkMeta(meta)
}

// LatestWhere is Latest for the newest checkpoint whose state satisfies ok (a run's last good
// one); passed lists the newer ones it passed over. A checkpoint whose header is unreadable
// is an error naming it, as in Latest: it never falls back past a corrupt file.
func LatestWhere(dir string, ok func(State) bool) (path string, passed []string, err error) {
	paths, _, err := list(dir)
	if err != nil {
		return "", nil, fmt.Errorf("checkpoint: %w", err)
	}
	for i := len(paths) - 1; i >= 0; i-- {
		st, err := readState(paths[i])
		if err != nil {
			return "", passed, fmt.Errorf("checkpoint: %s is unreadable: %w", paths[i], err)
		}
		if ok(st) {
			return paths[i], passed, nil
		}
		passed = append(passed, paths[i])
	}
	return "", passed, fmt.Errorf("checkpoint: %s: %w", dir, ErrNoCheckpoint)
}

// sameFile reports whether a and b are one file.
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// Prune removes all but the keep newest checkpoints in dir (keep >= 1). The files named in
// protect (a run's last good checkpoint) are never removed, nor counted among the keep.
func Prune(dir string, keep int, protect ...string) error {
	if keep < 1 {
		return fmt.Errorf("checkpoint: prune %s: keep %d must be at least 1", dir, keep)
	}
	paths, _, err := list(dir)
	if err != nil {
		return fmt.Errorf("checkpoint: prune: %w", err)
	}
	if len(paths) <= keep {
		return nil
	}
	for _, p := range paths[:len(paths)-keep] {
		if slices.ContainsFunc(protect, func(q string) bool { return q != "" && sameFile(p, q) }) {
			continue
		}
		if err := os.Remove(p); err != nil {
			return fmt.Errorf("checkpoint: prune: %w", err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("checkpoint: prune %s: %w", dir, err)
	}
	return nil
}

// Resume prepares dir for a run that continues: it sweeps the temporary
// files of interrupted writes, then loads the newest checkpoint. It returns
// ErrNoCheckpoint (with the removed files) when there is none to resume
// from, and an error naming the newest file when that one is corrupt.
func Resume(dir string) (c *Checkpoint, removed []string, err error) {
	removed, err = SweepTemp(dir)
	if err != nil {
		return nil, removed, fmt.Errorf("checkpoint: %w", err)
	}
	c, err = LoadLatest(dir)
	return c, removed, err
}
