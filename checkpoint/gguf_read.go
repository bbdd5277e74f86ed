package checkpoint

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
)

// GGUFFile is a parsed GGUF file: metadata and tensors in file order.
// Tensor shapes are row-major (the GGUF ne reversed).
type GGUFFile struct {
	Version   uint32
	Alignment int
	Meta      []GGUFKV
	Tensors   []Tensor
}

// Get returns the metadata value of key.
func (f *GGUFFile) Get(key string) (any, bool) {
	for _, kv := range f.Meta {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// Tensor returns the tensor called name.
func (f *GGUFFile) Tensor(name string) (Tensor, bool) {
	for _, t := range f.Tensors {
		if t.Name == name {
			return t, true
		}
	}
	return Tensor{}, false
}

// ggufReader reads the header of a GGUF file of a known size. Every length
// read from the file is checked against the bytes left before anything is
// allocated for it, so a malformed file costs at most a few times its size.
type ggufReader struct {
	r    io.ReaderAt
	off  int64
	size int64
}

var errGGUFShort = errors.New("file ends inside the header")

func (g *ggufReader) left() int64 { return g.size - g.off }

func (g *ggufReader) read(n int64) ([]byte, error) {
	if n < 0 || n > g.left() {
		return nil, errGGUFShort
	}
	b := make([]byte, n)
	if n == 0 {
		return b, nil // ReaderAt may answer EOF at the end even for nothing
	}
	if _, err := g.r.ReadAt(b, g.off); err != nil {
		return nil, err
	}
	g.off += n
	return b, nil
}

func (g *ggufReader) u32() (uint32, error) {
	b, err := g.read(4)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(b), nil
}

func (g *ggufReader) u64() (uint64, error) {
	b, err := g.read(8)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b), nil
}

func (g *ggufReader) str() (string, error) {
	n, err := g.u64()
	if err != nil {
		return "", err
	}
	if n > uint64(g.left()) {
		return "", fmt.Errorf("string of %d bytes runs past the end of the file", n)
	}
	b, err := g.read(int64(n))
	return string(b), err
}

func (g *ggufReader) scalar(t GGUFType) (any, error) {
	if t == GGUFString {
		return g.str()
	}
	n := ggufScalarSize(t)
	if n == 0 {
		return nil, fmt.Errorf("value type %d is not a GGUF scalar type", t)
	}
	b, err := g.read(int64(n))
	if err != nil {
		return nil, err
	}
	switch t {
	case GGUFUint8:
		return b[0], nil
	case GGUFInt8:
		return int8(b[0]), nil
	case GGUFBool:
		if b[0] > 1 {
			return nil, fmt.Errorf("bool value %d, want 0 or 1", b[0])
		}
		return b[0] == 1, nil
	case GGUFUint16:
		return binary.LittleEndian.Uint16(b), nil
	case GGUFInt16:
		return int16(binary.LittleEndian.Uint16(b)), nil
	case GGUFUint32:
		return binary.LittleEndian.Uint32(b), nil
	case GGUFInt32:
		return int32(binary.LittleEndian.Uint32(b)), nil
	case GGUFFloat32:
		return math.Float32frombits(binary.LittleEndian.Uint32(b)), nil
	case GGUFUint64:
		return binary.LittleEndian.Uint64(b), nil
	case GGUFInt64:
		return int64(binary.LittleEndian.Uint64(b)), nil
	default: // GGUFFloat64
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
	}
}

func readArray[E any](g *ggufReader, t GGUFType, n int) ([]E, error) {
	out := make([]E, n)
	for i := range out {
		v, err := g.scalar(t)
		if err != nil {
			return nil, err
		}
		out[i] = v.(E)
	}
	return out, nil
}

func (g *ggufReader) array() (any, error) {
	et, err := g.u32()
	if err != nil {
		return nil, err
	}
	t := GGUFType(et)
	cnt, err := g.u64()
	if err != nil {
		return nil, err
	}
	// Each element takes at least one byte (eight for a string's length),
	// so the count is bounded by what is left of the file.
	minSize := int64(ggufScalarSize(t))
	switch {
	case t == GGUFString:
		minSize = 8
	case t == GGUFArray:
		return nil, fmt.Errorf("nested arrays are not supported (ggml rejects them too)")
	case minSize == 0:
		return nil, fmt.Errorf("array element type %d is not a GGUF type", et)
	}
	if cnt > uint64(g.left()/minSize) {
		return nil, fmt.Errorf("array of %d elements of type %d runs past the end of the file", cnt, et)
	}
	n := int(cnt)
	switch t {
	case GGUFUint8:
		return g.read(int64(n))
	case GGUFInt8:
		return readArray[int8](g, t, n)
	case GGUFUint16:
		return readArray[uint16](g, t, n)
	case GGUFInt16:
		return readArray[int16](g, t, n)
	case GGUFUint32:
		return readArray[uint32](g, t, n)
	case GGUFInt32:
		return readArray[int32](g, t, n)
	case GGUFFloat32:
		return readArray[float32](g, t, n)
	case GGUFBool:
		return readArray[bool](g, t, n)
	case GGUFString:
		return readArray[string](g, t, n)
	case GGUFUint64:
		return readArray[uint64](g, t, n)
	case GGUFInt64:
		return readArray[int64](g, t, n)
	default: // GGUFFloat64
		return readArray[float64](g, t, n)
	}
}

// ggufTensorInfo is a tensor of the header, data not yet read.
type ggufTensorInfo struct {
	name   string
	dtype  DType
	shape  []int
	offset int64
	nbytes int64
}

// ReadGGUF parses a GGUF v3 file of the given size and reads every tensor.
// Only tensors of the types WriteGGUF writes (F32, F16, BF16, F64 and the
// integer types) are read; a quantized tensor is an error naming it.
// Malformed input gives an error wrapping ErrMalformed, never a panic.
func ReadGGUF(r io.ReaderAt, size int64) (*GGUFFile, error) {
	f, infos, dataStart, err := parseGGUFHeader(r, size)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	f.Tensors = make([]Tensor, len(infos))
	for i, ti := range infos {
		data := make([]byte, ti.nbytes)
		if ti.nbytes > 0 { // ReaderAt may answer EOF at the end even for nothing
			if _, err := r.ReadAt(data, dataStart+ti.offset); err != nil {
				return nil, fmt.Errorf("gguf: tensor %q: %w", ti.name, err)
			}
		}
		f.Tensors[i] = Tensor{Name: ti.name, DType: ti.dtype, Shape: ti.shape, Data: data}
	}
	return f, nil
}

// OpenGGUF reads the GGUF file at path (see ReadGGUF).
func OpenGGUF(path string) (*GGUFFile, error) {
	fh, fi, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer fh.Close()
	f, err := ReadGGUF(fh, fi.Size())
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

func parseGGUFHeader(r io.ReaderAt, size int64) (*GGUFFile, []ggufTensorInfo, int64, error) {
	g := &ggufReader{r: r, size: size}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s at byte %d: %w", fmt.Sprintf(format, a...), g.off, ErrMalformed)
	}
	wrap := func(what string, err error) error {
		if errors.Is(err, ErrMalformed) {
			return err
		}
		return fmt.Errorf("%s at byte %d: %v: %w", what, g.off, err, ErrMalformed)
	}
	magic, err := g.read(4)
	if err != nil || string(magic) != ggufMagic {
		return nil, nil, 0, fmt.Errorf("not a GGUF file (no \"GGUF\" magic): %w", ErrMalformed)
	}
	f := &GGUFFile{}
	if f.Version, err = g.u32(); err != nil {
		return nil, nil, 0, wrap("version", err)
	}
	if f.Version != ggufVersion {
		return nil, nil, 0, bad("GGUF version %d, only version 3 is read", f.Version)
	}
	nt, err := g.u64()
	if err != nil {
		return nil, nil, 0, wrap("tensor count", err)
	}
	nkv, err := g.u64()
	if err != nil {
		return nil, nil, 0, wrap("metadata count", err)
	}
	// A metadata entry takes at least 8+1+4+1 bytes, a tensor info 8+1+4+8+4+8.
	if nkv > uint64(g.left()/14) {
		return nil, nil, 0, bad("%d metadata entries cannot fit in a %d-byte file", nkv, size)
	}
	if nt > uint64(g.left()/33) {
		return nil, nil, 0, bad("%d tensors cannot fit in a %d-byte file", nt, size)
	}
	seen := make(map[string]bool, nkv)
	f.Meta = make([]GGUFKV, 0, nkv)
	for i := uint64(0); i < nkv; i++ {
		key, err := g.str()
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("metadata entry %d key", i), err)
		}
		if key == "" || seen[key] {
			return nil, nil, 0, bad("metadata key %q is empty or repeated", key)
		}
		seen[key] = true
		vt, err := g.u32()
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("metadata %q type", key), err)
		}
		var v any
		if GGUFType(vt) == GGUFArray {
			v, err = g.array()
		} else {
			v, err = g.scalar(GGUFType(vt))
		}
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("metadata %q", key), err)
		}
		f.Meta = append(f.Meta, GGUFKV{Key: key, Value: v})
	}
	align, err := ggufAlignment(f.Meta)
	if err != nil {
		return nil, nil, 0, err
	}
	f.Alignment = int(align)
	infos := make([]ggufTensorInfo, 0, nt)
	names := make(map[string]bool, nt)
	for i := uint64(0); i < nt; i++ {
		var ti ggufTensorInfo
		if ti.name, err = g.str(); err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("tensor %d name", i), err)
		}
		if ti.name == "" || names[ti.name] {
			return nil, nil, 0, bad("tensor name %q is empty or repeated", ti.name)
		}
		names[ti.name] = true
		nd, err := g.u32()
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("tensor %q dims", ti.name), err)
		}
		if nd < 1 || nd > ggufMaxDims {
			return nil, nil, 0, bad("tensor %q has %d dimensions, want 1 to %d", ti.name, nd, ggufMaxDims)
		}
		ti.shape = make([]int, nd)
		for j := int(nd) - 1; j >= 0; j-- {
			d, err := g.u64()
			if err != nil {
				return nil, nil, 0, wrap(fmt.Sprintf("tensor %q dims", ti.name), err)
			}
			if d > math.MaxInt32 {
				return nil, nil, 0, bad("tensor %q dimension %d is too large", ti.name, d)
			}
			ti.shape[j] = int(d)
		}
		gt, err := g.u32()
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("tensor %q type", ti.name), err)
		}
		var ok bool
		if ti.dtype, ok = dtypeOfGGML(gt); !ok {
			return nil, nil, 0, bad("tensor %q has ggml type %d; only F32, F16, BF16, F64 and integer tensors are read (dequantize it with llama.cpp first)", ti.name, gt)
		}
		off, err := g.u64()
		if err != nil {
			return nil, nil, 0, wrap(fmt.Sprintf("tensor %q offset", ti.name), err)
		}
		if off%uint64(align) != 0 || off > uint64(size) {
			return nil, nil, 0, bad("tensor %q offset %d is not a multiple of the alignment %d inside the file", ti.name, off, align)
		}
		ti.offset = int64(off)
		n, err := numElements(ti.shape, size)
		if err != nil {
			return nil, nil, 0, bad("tensor %q: %v", ti.name, err)
		}
		ti.nbytes = n * int64(ti.dtype.Size())
		infos = append(infos, ti)
	}
	dataStart := (g.off + align - 1) / align * align
	for _, ti := range infos {
		if ti.offset > size-dataStart || ti.nbytes > size-dataStart-ti.offset {
			return nil, nil, 0, fmt.Errorf("tensor %q: %d bytes at data offset %d run past the end of the %d-byte file: %w", ti.name, ti.nbytes, ti.offset, size, ErrMalformed)
		}
	}
	return f, infos, dataStart, nil
}
