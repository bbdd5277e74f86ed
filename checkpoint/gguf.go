package checkpoint

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
)

// GGUF version 3, the format of llama.cpp/ggml model files, written from the
// format description (ggml's docs/gguf.md):
//
//	magic "GGUF", version uint32 = 3, tensor_count uint64, kv_count uint64,
//	kv_count × (key string, value_type uint32, value),
//	tensor_count × (name string, n_dims uint32, ne uint64[n_dims], ggml_type uint32, offset uint64),
//	zero padding to the alignment, then the data section; every tensor's
//	data starts at a multiple of the alignment from the data section start.
//
// Strings are uint64 byte length + UTF-8 bytes. An array value is
// element type uint32, count uint64, elements. ne lists the dimensions
// fastest-varying first, so a row-major [rows, cols] tensor has ne = [cols, rows].
// The alignment is general.alignment (uint32) when present, else 32.

const (
	ggufMagic            = "GGUF"
	ggufVersion          = 3
	ggufDefaultAlignment = 32
	// GGUFAlignmentKey is the metadata key that sets the data alignment.
	GGUFAlignmentKey = "general.alignment"
	ggufMaxDims      = 4 // GGML_MAX_DIMS
)

// GGUFType is a metadata value type.
type GGUFType uint32

// Metadata value types of GGUF v3.
const (
	GGUFUint8   GGUFType = 0
	GGUFInt8    GGUFType = 1
	GGUFUint16  GGUFType = 2
	GGUFInt16   GGUFType = 3
	GGUFUint32  GGUFType = 4
	GGUFInt32   GGUFType = 5
	GGUFFloat32 GGUFType = 6
	GGUFBool    GGUFType = 7
	GGUFString  GGUFType = 8
	GGUFArray   GGUFType = 9
	GGUFUint64  GGUFType = 10
	GGUFInt64   GGUFType = 11
	GGUFFloat64 GGUFType = 12
)

// ggufScalarSize is the encoded size of a fixed-size scalar type (0 for
// string and array).
func ggufScalarSize(t GGUFType) int {
	switch t {
	case GGUFUint8, GGUFInt8, GGUFBool:
		return 1
	case GGUFUint16, GGUFInt16:
		return 2
	case GGUFUint32, GGUFInt32, GGUFFloat32:
		return 4
	case GGUFUint64, GGUFInt64, GGUFFloat64:
		return 8
	}
	return 0
}

// GGUFKV is one metadata entry. Value is one of uint8, int8, uint16, int16,
// uint32, int32, float32, bool, string, uint64, int64, float64, or a slice
// of one of them (a GGUF array). Nested arrays are not supported: ggml
// rejects them too.
type GGUFKV struct {
	Key   string
	Value any
}

// ggml tensor types for the dtypes that map one to one (ggml.h enum ggml_type).
var ggmlTypeOf = map[DType]uint32{F32: 0, F16: 1, I8: 24, I16: 25, I32: 26, I64: 27, F64: 28, BF16: 30}

func dtypeOfGGML(t uint32) (DType, bool) {
	for d, g := range ggmlTypeOf {
		if g == t {
			return d, true
		}
	}
	return "", false
}

// ggufValueType returns the GGUF type of a Go metadata value, and for an
// array the element type.
func ggufValueType(v any) (t, elem GGUFType, err error) {
	switch v.(type) {
	case uint8:
		return GGUFUint8, 0, nil
	case int8:
		return GGUFInt8, 0, nil
	case uint16:
		return GGUFUint16, 0, nil
	case int16:
		return GGUFInt16, 0, nil
	case uint32:
		return GGUFUint32, 0, nil
	case int32:
		return GGUFInt32, 0, nil
	case float32:
		return GGUFFloat32, 0, nil
	case bool:
		return GGUFBool, 0, nil
	case string:
		return GGUFString, 0, nil
	case uint64:
		return GGUFUint64, 0, nil
	case int64:
		return GGUFInt64, 0, nil
	case float64:
		return GGUFFloat64, 0, nil
	case []uint8:
		return GGUFArray, GGUFUint8, nil
	case []int8:
		return GGUFArray, GGUFInt8, nil
	case []uint16:
		return GGUFArray, GGUFUint16, nil
	case []int16:
		return GGUFArray, GGUFInt16, nil
	case []uint32:
		return GGUFArray, GGUFUint32, nil
	case []int32:
		return GGUFArray, GGUFInt32, nil
	case []float32:
		return GGUFArray, GGUFFloat32, nil
	case []bool:
		return GGUFArray, GGUFBool, nil
	case []string:
		return GGUFArray, GGUFString, nil
	case []uint64:
		return GGUFArray, GGUFUint64, nil
	case []int64:
		return GGUFArray, GGUFInt64, nil
	case []float64:
		return GGUFArray, GGUFFloat64, nil
	}
	return 0, 0, fmt.Errorf("value of Go type %T has no GGUF type (use a sized integer, float32/64, bool, string or a slice of one)", v)
}

type ggufWriter struct {
	w   *bufio.Writer
	off int64
}

func (g *ggufWriter) bytes(b []byte) {
	g.w.Write(b)
	g.off += int64(len(b))
}

func (g *ggufWriter) u32(v uint32) { g.bytes(binary.LittleEndian.AppendUint32(nil, v)) }
func (g *ggufWriter) u64(v uint64) { g.bytes(binary.LittleEndian.AppendUint64(nil, v)) }

func (g *ggufWriter) str(s string) {
	g.u64(uint64(len(s)))
	g.bytes([]byte(s))
}

func (g *ggufWriter) scalar(v any) {
	var b []byte
	switch x := v.(type) {
	case uint8:
		b = []byte{x}
	case int8:
		b = []byte{byte(x)}
	case bool:
		if x {
			b = []byte{1}
		} else {
			b = []byte{0}
		}
	case uint16:
		b = binary.LittleEndian.AppendUint16(nil, x)
	case int16:
		b = binary.LittleEndian.AppendUint16(nil, uint16(x))
	case uint32:
		b = binary.LittleEndian.AppendUint32(nil, x)
	case int32:
		b = binary.LittleEndian.AppendUint32(nil, uint32(x))
	case float32:
		b = binary.LittleEndian.AppendUint32(nil, math.Float32bits(x))
	case uint64:
		b = binary.LittleEndian.AppendUint64(nil, x)
	case int64:
		b = binary.LittleEndian.AppendUint64(nil, uint64(x))
	case float64:
		b = binary.LittleEndian.AppendUint64(nil, math.Float64bits(x))
	case string:
		g.str(x)
		return
	}
	g.bytes(b)
}

func (g *ggufWriter) value(v any) {
	t, elem, _ := ggufValueType(v)
	if t != GGUFArray {
		g.scalar(v)
		return
	}
	g.u32(uint32(elem))
	switch x := v.(type) {
	case []uint8:
		g.u64(uint64(len(x)))
		g.bytes(x)
	case []int8:
		writeArray(g, x)
	case []uint16:
		writeArray(g, x)
	case []int16:
		writeArray(g, x)
	case []uint32:
		writeArray(g, x)
	case []int32:
		writeArray(g, x)
	case []float32:
		writeArray(g, x)
	case []bool:
		writeArray(g, x)
	case []string:
		writeArray(g, x)
	case []uint64:
		writeArray(g, x)
	case []int64:
		writeArray(g, x)
	case []float64:
		writeArray(g, x)
	}
}

func writeArray[E any](g *ggufWriter, xs []E) {
	g.u64(uint64(len(xs)))
	for _, x := range xs {
		g.scalar(x)
	}
}

func (g *ggufWriter) pad(align int64) {
	if n := (align - g.off%align) % align; n > 0 {
		g.bytes(make([]byte, n))
	}
}

// ggufAlignment returns the alignment meta sets, checking its type and value.
func ggufAlignment(meta []GGUFKV) (int64, error) {
	for _, kv := range meta {
		if kv.Key != GGUFAlignmentKey {
			continue
		}
		a, ok := kv.Value.(uint32)
		if !ok || a == 0 || a&(a-1) != 0 {
			return 0, fmt.Errorf("%s = %v (%T): want a uint32 power of two: %w", GGUFAlignmentKey, kv.Value, kv.Value, ErrMalformed)
		}
		return int64(a), nil
	}
	return ggufDefaultAlignment, nil
}

// WriteGGUF writes a GGUF v3 file: meta in the given order, then the tensors
// in the given order. Tensor shapes are row-major (PyTorch order) and are
// written reversed as GGUF/ggml ne; a tensor needs 1 to 4 dimensions and a
// dtype ggml has (F32, F16, BF16, F64, I8, I16, I32, I64). Keys and tensor
// names must be unique and non-empty.
func WriteGGUF(w io.Writer, meta []GGUFKV, ts []Tensor) error {
	align, err := ggufAlignment(meta)
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	keys := make(map[string]bool, len(meta))
	for _, kv := range meta {
		if kv.Key == "" || keys[kv.Key] {
			return fmt.Errorf("gguf: metadata key %q is empty or repeated: %w", kv.Key, ErrMalformed)
		}
		keys[kv.Key] = true
		if _, _, err := ggufValueType(kv.Value); err != nil {
			return fmt.Errorf("gguf: metadata %q: %v: %w", kv.Key, err, ErrMalformed)
		}
	}
	names := make(map[string]bool, len(ts))
	for _, t := range ts {
		if t.Name == "" || names[t.Name] {
			return fmt.Errorf("gguf: tensor name %q is empty or repeated: %w", t.Name, ErrMalformed)
		}
		names[t.Name] = true
		if err := t.Validate(); err != nil {
			return fmt.Errorf("gguf: %w", err)
		}
		if _, ok := ggmlTypeOf[t.DType]; !ok {
			return fmt.Errorf("gguf: tensor %q: dtype %s has no ggml type: %w", t.Name, t.DType, ErrDType)
		}
		if len(t.Shape) < 1 || len(t.Shape) > ggufMaxDims {
			return fmt.Errorf("gguf: tensor %q: shape %v: ggml needs 1 to %d dimensions: %w", t.Name, t.Shape, ggufMaxDims, ErrShape)
		}
	}
	g := &ggufWriter{w: bufio.NewWriterSize(w, 1<<20)}
	g.bytes([]byte(ggufMagic))
	g.u32(ggufVersion)
	g.u64(uint64(len(ts)))
	g.u64(uint64(len(meta)))
	for _, kv := range meta {
		t, _, _ := ggufValueType(kv.Value)
		g.str(kv.Key)
		g.u32(uint32(t))
		g.value(kv.Value)
	}
	var off int64
	for _, t := range ts {
		g.str(t.Name)
		g.u32(uint32(len(t.Shape)))
		for _, d := range slices.Backward(t.Shape) {
			g.u64(uint64(d))
		}
		g.u32(ggmlTypeOf[t.DType])
		g.u64(uint64(off))
		off += (int64(len(t.Data)) + align - 1) / align * align
	}
	g.pad(align)
	for _, t := range ts {
		g.bytes(t.Data)
		g.pad(align)
	}
	if err := g.w.Flush(); err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}
