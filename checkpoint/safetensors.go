package checkpoint

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// MaxHeader is the largest safetensors JSON header accepted (the limit of
// the reference implementation).
const MaxHeader = 100 << 20

const metadataKey = "__metadata__"

// File is a parsed safetensors file: metadata and tensors in file order.
type File struct {
	Meta    map[string]string
	Tensors []Tensor
	index   map[string]int
}

// Get returns the tensor called name.
func (f *File) Get(name string) (Tensor, bool) {
	i, ok := f.index[name]
	if !ok {
		return Tensor{}, false
	}
	return f.Tensors[i], true
}

// WriteSafetensors writes ts in the given order after a header whose keys are
// sorted and which is padded with spaces to a multiple of 8 bytes, so equal
// inputs give equal bytes.
func WriteSafetensors(w io.Writer, ts []Tensor, meta map[string]string) error {
	header, err := encodeHeader(ts, meta)
	if err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], uint64(len(header)))
	bw.Write(n[:])
	bw.Write(header)
	for _, t := range ts {
		bw.Write(t.Data)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("safetensors: %w", err)
	}
	return nil
}

func encodeHeader(ts []Tensor, meta map[string]string) ([]byte, error) {
	type entry struct {
		DType   DType    `json:"dtype"`
		Shape   []int    `json:"shape"`
		Offsets [2]int64 `json:"data_offsets"`
	}
	fields := make(map[string]json.RawMessage, len(ts)+1)
	if len(meta) > 0 {
		b, err := json.Marshal(meta) // encoding/json sorts map keys
		if err != nil {
			return nil, err
		}
		fields[metadataKey] = b
	}
	var off int64
	for _, t := range ts {
		if t.Name == "" || t.Name == metadataKey {
			return nil, fmt.Errorf("tensor name %q: %w", t.Name, ErrMalformed)
		}
		if _, dup := fields[t.Name]; dup {
			return nil, fmt.Errorf("duplicate tensor %q: %w", t.Name, ErrMalformed)
		}
		if err := t.Validate(); err != nil {
			return nil, err
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		b, err := json.Marshal(entry{t.DType, shape, [2]int64{off, off + int64(len(t.Data))}})
		if err != nil {
			return nil, err
		}
		fields[t.Name] = b
		off += int64(len(t.Data))
	}
	var buf bytes.Buffer
	buf.WriteByte('{')
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		if i > 0 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(fields[k])
	}
	buf.WriteByte('}')
	for (8+buf.Len())%8 != 0 {
		buf.WriteByte(' ')
	}
	return buf.Bytes(), nil
}

// headerEntry is one tensor of a parsed header, data not yet read.
type headerEntry struct {
	name       string
	dtype      DType
	shape      []int
	begin, end int64
}

// parseHeader reads and validates the header of a safetensors file of the
// given size. It returns the entries sorted by offset and the start of the
// data section. Every size is checked against the file size before use.
func parseHeader(r io.ReaderAt, size int64) (map[string]string, []headerEntry, int64, error) {
	if size < 8 {
		return nil, nil, 0, fmt.Errorf("%d bytes, shorter than the 8-byte header length: %w", size, ErrMalformed)
	}
	var nb [8]byte
	if _, err := r.ReadAt(nb[:], 0); err != nil {
		return nil, nil, 0, err
	}
	n := binary.LittleEndian.Uint64(nb[:])
	if n > MaxHeader {
		return nil, nil, 0, fmt.Errorf("header of %d bytes exceeds the %d limit: %w", n, MaxHeader, ErrMalformed)
	}
	if int64(n) > size-8 {
		return nil, nil, 0, fmt.Errorf("header of %d bytes runs past the end of the %d-byte file: %w", n, size, ErrMalformed)
	}
	if n < 2 {
		return nil, nil, 0, fmt.Errorf("header of %d bytes: %w", n, ErrMalformed)
	}
	hb := make([]byte, n)
	if _, err := r.ReadAt(hb, 8); err != nil {
		return nil, nil, 0, err
	}
	if hb[0] != '{' {
		return nil, nil, 0, fmt.Errorf("header does not start with '{': %w", ErrMalformed)
	}
	meta, entries, err := decodeHeader(hb)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("header: %v: %w", err, ErrMalformed)
	}
	dataStart := 8 + int64(n)
	if err := checkOffsets(entries, size-dataStart); err != nil {
		return nil, nil, 0, err
	}
	return meta, entries, dataStart, nil
}

func decodeHeader(hb []byte) (map[string]string, []headerEntry, error) {
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, errors.New("not a JSON object")
	}
	var meta map[string]string
	var entries []headerEntry
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		name, ok := tok.(string)
		if !ok {
			return nil, nil, errors.New("key is not a string")
		}
		if seen[name] {
			return nil, nil, fmt.Errorf("duplicate key %q", name)
		}
		seen[name] = true
		if name == metadataKey {
			if err := dec.Decode(&meta); err != nil {
				return nil, nil, fmt.Errorf("%s: %v", metadataKey, err)
			}
			continue
		}
		var e struct {
			DType   string  `json:"dtype"`
			Shape   []int   `json:"shape"`
			Offsets []int64 `json:"data_offsets"`
		}
		if err := dec.Decode(&e); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: %v", name, err)
		}
		dt := DType(e.DType)
		if dt.Size() == 0 {
			return nil, nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		if e.Shape == nil {
			return nil, nil, fmt.Errorf("tensor %q: no shape", name)
		}
		if len(e.Offsets) != 2 {
			return nil, nil, fmt.Errorf("tensor %q: data_offsets has %d values, want 2", name, len(e.Offsets))
		}
		entries = append(entries, headerEntry{name, dt, e.Shape, e.Offsets[0], e.Offsets[1]})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, nil, errors.New("trailing data after the JSON object")
	}
	return meta, entries, nil
}

// checkOffsets requires each tensor's byte range to be dtype × shape long and
// the ranges, sorted, to tile [0, dataLen) exactly: no overlap, no gap, no
// byte past the end and none left over.
func checkOffsets(entries []headerEntry, dataLen int64) error {
	for _, e := range entries {
		if e.begin < 0 || e.end < e.begin {
			return fmt.Errorf("tensor %q: bad data_offsets [%d, %d]: %w", e.name, e.begin, e.end, ErrMalformed)
		}
		if e.end > dataLen {
			return fmt.Errorf("tensor %q: data_offsets end %d past the end of the %d data bytes: %w", e.name, e.end, dataLen, ErrMalformed)
		}
		numel, err := numElements(e.shape, dataLen)
		if err != nil {
			return fmt.Errorf("tensor %q: %v: %w", e.name, err, ErrMalformed)
		}
		if numel*int64(e.dtype.Size()) != e.end-e.begin {
			return fmt.Errorf("tensor %q: %s%v needs %d bytes, data_offsets give %d: %w",
				e.name, e.dtype, e.shape, numel*int64(e.dtype.Size()), e.end-e.begin, ErrMalformed)
		}
	}
	slices.SortStableFunc(entries, func(a, b headerEntry) int {
		if a.begin != b.begin {
			return cmpInt64(a.begin, b.begin)
		}
		return cmpInt64(a.end, b.end)
	})
	var pos int64
	for _, e := range entries {
		if e.begin < pos {
			return fmt.Errorf("tensor %q: data_offsets [%d, %d] overlap the previous tensor: %w", e.name, e.begin, e.end, ErrMalformed)
		}
		if e.begin > pos {
			return fmt.Errorf("tensor %q: gap of %d bytes before data_offsets [%d, %d]: %w", e.name, e.begin-pos, e.begin, e.end, ErrMalformed)
		}
		pos = e.end
	}
	if pos != dataLen {
		return fmt.Errorf("%d unclaimed bytes after the last tensor: %w", dataLen-pos, ErrMalformed)
	}
	return nil
}

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReadSafetensors parses and strictly validates a safetensors file of the
// given size and reads every tensor into memory.
func ReadSafetensors(r io.ReaderAt, size int64) (*File, error) {
	meta, entries, dataStart, err := parseHeader(r, size)
	if err != nil {
		return nil, fmt.Errorf("safetensors: %w", err)
	}
	f := &File{Meta: meta, Tensors: make([]Tensor, len(entries)), index: make(map[string]int, len(entries))}
	for i, e := range entries {
		data := make([]byte, e.end-e.begin) // bounded by the file size, checked above
		if _, err := r.ReadAt(data, dataStart+e.begin); err != nil && !(err == io.EOF && len(data) == 0) {
			return nil, fmt.Errorf("safetensors: tensor %q: %w", e.name, err)
		}
		f.Tensors[i] = Tensor{Name: e.name, DType: e.dtype, Shape: e.shape, Data: data}
		f.index[e.name] = i
	}
	return f, nil
}

// OpenSafetensors reads the safetensors file at path.
func OpenSafetensors(path string) (*File, error) {
	fd, st, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, err // names the file
	}
	defer fd.Close()
	f, err := ReadSafetensors(fd, st.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}
