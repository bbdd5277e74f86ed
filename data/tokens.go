package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// Tokens is a validated, read-only token corpus: the documents of a binidx
// pair or the array of a .npy file, concatenated in order. It is safe for
// concurrent use; Close it when done.
type Tokens struct {
	path  string // the file holding the tokens (.bin or .npy), for errors
	data  []byte // token bytes, mapped
	dt    dtype
	n     int
	index *index // nil for .npy
	close []func() error
	files []mappedFile // what is mapped, for Check

	mu      sync.Mutex
	checked int // smallest vocab size CheckVocab has accepted, 0 if none

	mask *Mask // loss mask of instruction data, nil if none (SetMask)
}

// mappedFile is a mapped file and its size when mapped.
type mappedFile struct {
	path string
	size int64
}

// Open opens a token corpus: a binidx prefix (PREFIX.idx and PREFIX.bin; a
// path ending in .idx or .bin also works) or a .npy file of a 1-D integer
// array. It validates the files before returning, and rejects an empty corpus.
func Open(path string) (*Tokens, error) { return OpenFormat(path, "") }

// OpenFormat is Open with the format given: "binidx", "npy", or "" to infer
// it from the path.
func OpenFormat(path, format string) (*Tokens, error) {
	if format == "" {
		format = "binidx"
		if strings.HasSuffix(path, ".npy") {
			format = "npy"
		}
	}
	switch format {
	case "binidx":
		return openBinidx(path)
	case "npy":
		return openNpy(path)
	}
	return nil, fmt.Errorf("data: open %q: %w %q, want binidx or npy", path, ErrUnknownFormat, format)
}

// binidxPaths returns the .idx and .bin paths for a prefix or either file.
func binidxPaths(path string) (idx, bin string) {
	prefix := strings.TrimSuffix(strings.TrimSuffix(path, ".idx"), ".bin")
	return prefix + ".idx", prefix + ".bin"
}

// mapPath opens and maps a whole file.
func mapPath(path string) ([]byte, func() error, error) {
	f, st, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	return mapFile(f, st.Size())
}

func openBinidx(path string) (_ *Tokens, err error) {
	idxPath, binPath := binidxPaths(path)
	t := &Tokens{path: binPath}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	raw, unmap, err := mapPath(idxPath)
	if err != nil {
		return nil, fmt.Errorf("data: open %q: %w", idxPath, err)
	}
	t.close = append(t.close, unmap)
	t.files = append(t.files, mappedFile{idxPath, int64(len(raw))})
	ix, err := parseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("data: open %q: %w", idxPath, err)
	}
	if _, err := os.Stat(binPath); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("data: open %q: %w: %q does not exist", idxPath, ErrMissingBin, binPath)
	}
	bin, unmap, err := mapPath(binPath)
	if err != nil {
		return nil, fmt.Errorf("data: open %q: %w", binPath, err)
	}
	t.close = append(t.close, unmap)
	t.files = append(t.files, mappedFile{binPath, int64(len(bin))})
	total, err := ix.checkBin(int64(len(bin)))
	if err != nil {
		if errors.Is(err, ErrBinSize) {
			return nil, fmt.Errorf("data: open %q: %w", binPath, err)
		}
		return nil, fmt.Errorf("data: open %q: %w", idxPath, err)
	}
	if total == 0 {
		return nil, fmt.Errorf("data: open %q: %w: %d sequences, 0 tokens", idxPath, ErrEmpty, ix.n)
	}
	if total > math.MaxInt {
		return nil, fmt.Errorf("data: open %q: %d tokens overflow int", binPath, total)
	}
	t.data, t.dt, t.n, t.index = bin, ix.dt, int(total), ix
	return t, nil
}

func openNpy(path string) (_ *Tokens, err error) {
	t := &Tokens{path: path}
	defer func() {
		if err != nil {
			t.Close()
		}
	}()
	raw, unmap, err := mapPath(path)
	if err != nil {
		return nil, fmt.Errorf("data: open %q: %w", path, err)
	}
	t.close = append(t.close, unmap)
	t.files = append(t.files, mappedFile{path, int64(len(raw))})
	h, err := parseNpyHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("data: open %q: %w", path, err)
	}
	es := int64(h.dt.size())
	if h.n > (int64(len(raw))-h.offset)/es || h.n*es != int64(len(raw))-h.offset {
		return nil, fmt.Errorf("data: open %q: %w: %d bytes of data, want %d elements of %s", path,
			ErrBinSize, int64(len(raw))-h.offset, h.n, h.dt)
	}
	if h.n == 0 {
		return nil, fmt.Errorf("data: open %q: %w: shape (0,)", path, ErrEmpty)
	}
	t.data, t.dt, t.n = raw[h.offset:], h.dt, int(h.n)
	return t, nil
}

// Close unmaps the files. Slices returned earlier stay valid; Slice must not
// be called after Close.
func (t *Tokens) Close() error {
	errs := []error{t.mask.Close()}
	t.mask = nil
	for _, c := range t.close {
		errs = append(errs, c())
	}
	t.close, t.data = nil, nil
	return errors.Join(errs...)
}

// SetMask attaches a loss mask, which the samplers then apply: a target
// whose mask is 0 becomes IgnoreTarget. The Tokens own it from then on and
// close it with themselves, and Check watches its file too. Call it before
// sharing the Tokens between goroutines.
func (t *Tokens) SetMask(m *Mask) {
	t.mask = m
	t.files = append(t.files, mappedFile{m.path, int64(maskHeaderSize + len(m.bits))})
}

// Mask is the attached loss mask, nil if none.
func (t *Tokens) Mask() *Mask { return t.mask }

// Path is the file holding the tokens (.bin or .npy).
func (t *Tokens) Path() string { return t.path }

// Len is the number of tokens.
func (t *Tokens) Len() int { return t.n }

// Docs returns the token offset at which each document starts, in order. A
// .npy array is one document.
func (t *Tokens) Docs() []int {
	if t.index == nil {
		return []int{0}
	}
	return t.index.docStarts()
}

// At returns token i.
func (t *Tokens) At(i int) int {
	var v [1]int
	t.Slice(i, 1, v[:0])
	return v[0]
}

// Slice writes tokens [off, off+n) to dst, reusing its storage when it has
// room, and returns it. It panics if the range is outside [0, Len()), and
// panics with an error wrapping ErrTruncated, naming the file, if the file
// was truncated under the mapping (see Read).
func (t *Tokens) Slice(off, n int, dst []int) []int {
	dst, err := t.Read(off, n, dst)
	if err != nil {
		panic(err)
	}
	return dst
}

// Read is Slice returning an error wrapping ErrTruncated, naming the file,
// where a read from the mapped file faults because the file was truncated
// while in use (which would otherwise kill the process with SIGBUS).
func (t *Tokens) Read(off, n int, dst []int) (_ []int, err error) {
	if off < 0 || n < 0 || off > t.n-n {
		panic(fmt.Sprintf("data: Slice(%d, %d) out of range for %d tokens", off, n, t.n))
	}
	if cap(dst) < n {
		dst = make([]int, n)
	}
	dst = dst[:n]
	es := t.dt.size()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			err = t.faultError(r)
		}
	}()
	t.dt.decode(dst, t.data[off*es:(off+n)*es])
	return dst, nil
}

// faultError describes a memory fault reading the mapped files.
func (t *Tokens) faultError(r any) error {
	if err := t.Check(); err != nil {
		return err
	}
	return fmt.Errorf("data: %q: %w: reading the mapped file faulted (%v)", t.path, ErrTruncated, r)
}

// Check reports ErrTruncated, naming the file and both sizes, if a mapped
// file no longer has the size it had when opened: a file truncated under a
// mapping faults when read, and a rewritten one gives other tokens.
func (t *Tokens) Check() error {
	for _, f := range t.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("data: %q: %w: %v", f.path, ErrTruncated, err)
		}
		if fi.Size() != f.size {
			return fmt.Errorf("data: %q: %w: it had %d bytes when opened and has %d now; do not rewrite a data file during a run",
				f.path, ErrTruncated, f.size, fi.Size())
		}
	}
	return nil
}

// CheckLen reports ErrTooShort if the corpus has no window of ctxLen+1 tokens.
func (t *Tokens) CheckLen(ctxLen int) error {
	if ctxLen < 1 {
		return fmt.Errorf("data: %q: ctx_len %d, want >= 1", t.path, ctxLen)
	}
	if t.n < ctxLen+1 {
		return fmt.Errorf("data: %q: %w: %d tokens, ctx_len %d", t.path, ErrTooShort, t.n, ctxLen)
	}
	return nil
}

// CheckVocab reports ErrTokenRange, naming the first offending position, if
// a token id is negative, not an integer, or >= vocab. It scans the corpus in
// parallel once; later calls with a vocab at least as large return at once.
func (t *Tokens) CheckVocab(vocab int) error {
	if vocab < 1 {
		return fmt.Errorf("data: %q: vocab size %d, want >= 1", t.path, vocab)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.checked > 0 && vocab >= t.checked {
		return nil
	}
	if !t.dt.signed() && !t.dt.float() && int64(vocab) > t.dt.maxValue() {
		t.checked = vocab
		return nil
	}
	workers := min(runtime.GOMAXPROCS(0), max(1, t.n/(1<<20)))
	bad := make([]int, workers) // first bad position per worker, -1 if none
	faults := make([]error, workers)
	var wg sync.WaitGroup
	per := (t.n + workers - 1) / workers
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
			defer func() {
				if r := recover(); r != nil {
					if _, fault := r.(interface{ Addr() uintptr }); !fault {
						panic(r)
					}
					faults[w] = t.faultError(r)
				}
			}()
			bad[w] = t.scan(w*per, min(t.n, (w+1)*per), vocab)
		}()
	}
	wg.Wait()
	for _, err := range faults {
		if err != nil {
			return err
		}
	}
	for _, pos := range bad {
		if pos >= 0 {
			return fmt.Errorf("data: %q: %w: token %s at position %d, want an integer in [0, %d)",
				t.path, ErrTokenRange, t.tokenString(pos), pos, vocab)
		}
	}
	t.checked = vocab
	return nil
}

// scan returns the first position in [lo, hi) whose token is out of range, or -1.
func (t *Tokens) scan(lo, hi, vocab int) int {
	buf := make([]int, 1<<14)
	es := t.dt.size()
	for off := lo; off < hi; off += len(buf) {
		n := min(len(buf), hi-off)
		b := t.data[off*es : (off+n)*es]
		switch t.dt { // fast paths for what Prepare writes
		case dtU16:
			v := uint16(vocab) // vocab <= 65535 here: CheckVocab returns early otherwise
			for i := range n {
				if binary.LittleEndian.Uint16(b[2*i:]) >= v {
					return off + i
				}
			}
			continue
		case dtI32:
			for i := range n {
				if uint32(binary.LittleEndian.Uint32(b[4*i:])) >= uint32(min(vocab, 1<<31)) {
					return off + i
				}
			}
			continue
		}
		if t.dt.float() {
			for i := range n {
				if f := t.float(b, i); f != math.Trunc(f) || f < 0 || f >= float64(vocab) {
					return off + i
				}
			}
			continue
		}
		t.dt.decode(buf[:n], b)
		for i, v := range buf[:n] {
			if uint(v) >= uint(vocab) { // negative wraps to large
				return off + i
			}
		}
	}
	return -1
}

func (t *Tokens) float(b []byte, i int) float64 {
	if t.dt == dtF32 {
		return float64(math.Float32frombits(leUint32(b[4*i:])))
	}
	return math.Float64frombits(leUint64(b[8*i:]))
}

// tokenString formats the token at pos as stored, for error messages.
func (t *Tokens) tokenString(pos int) string {
	es := t.dt.size()
	if t.dt.float() {
		return fmt.Sprint(t.float(t.data[pos*es:], 0))
	}
	if t.dt == dtU64 || t.dt == dtU64BE {
		var v [1]int
		t.dt.decode(v[:], t.data[pos*es:])
		return fmt.Sprint(uint64(v[0]))
	}
	return fmt.Sprint(t.At(pos))
}
