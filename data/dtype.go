package data

import (
	"encoding/binary"
	"fmt"
	"math"
)

// dtype is the element type of a token array on disk.
type dtype uint8

const (
	dtU8 dtype = iota + 1
	dtI8
	dtI16
	dtI32
	dtI64
	dtF32
	dtF64
	dtU16
	dtU32
	dtU64
	dtI16BE // big-endian variants, for .npy files written on big-endian machines
	dtU16BE
	dtI32BE
	dtU32BE
	dtI64BE
	dtU64BE
)

func (d dtype) size() int {
	switch d {
	case dtU8, dtI8:
		return 1
	case dtI16, dtU16, dtI16BE, dtU16BE:
		return 2
	case dtI32, dtU32, dtF32, dtI32BE, dtU32BE:
		return 4
	default:
		return 8
	}
}

func (d dtype) String() string {
	names := [...]string{"", "u8", "i8", "i16", "i32", "i64", "f32", "f64", "u16", "u32", "u64",
		">i16", ">u16", ">i32", ">u32", ">i64", ">u64"}
	if int(d) < len(names) {
		return names[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// float reports whether tokens are stored as floating point numbers.
func (d dtype) float() bool { return d == dtF32 || d == dtF64 }

// signed reports whether the type can hold negative values.
func (d dtype) signed() bool {
	switch d {
	case dtI8, dtI16, dtI32, dtI64, dtF32, dtF64, dtI16BE, dtI32BE, dtI64BE:
		return true
	}
	return false
}

// maxValue is the largest value the type can hold, capped at MaxInt64.
func (d dtype) maxValue() int64 {
	switch d {
	case dtU8:
		return math.MaxUint8
	case dtI8:
		return math.MaxInt8
	case dtI16, dtI16BE:
		return math.MaxInt16
	case dtU16, dtU16BE:
		return math.MaxUint16
	case dtI32, dtI32BE:
		return math.MaxInt32
	case dtU32, dtU32BE:
		return math.MaxUint32
	}
	return math.MaxInt64
}

// decode converts len(dst) elements of type d from b into dst. Floats are
// truncated; CheckVocab rejects non-integral ones.
func (d dtype) decode(dst []int, b []byte) {
	le, be := binary.LittleEndian, binary.BigEndian
	switch d {
	case dtU8:
		for i := range dst {
			dst[i] = int(b[i])
		}
	case dtI8:
		for i := range dst {
			dst[i] = int(int8(b[i]))
		}
	case dtU16:
		b = b[:2*len(dst)]
		for i := range dst {
			dst[i] = int(le.Uint16(b[2*i:]))
		}
	case dtI16:
		for i := range dst {
			dst[i] = int(int16(le.Uint16(b[2*i:])))
		}
	case dtU32:
		for i := range dst {
			dst[i] = int(le.Uint32(b[4*i:]))
		}
	case dtI32:
		b = b[:4*len(dst)]
		for i := range dst {
			dst[i] = int(int32(le.Uint32(b[4*i:])))
		}
	case dtU64, dtI64:
		for i := range dst {
			dst[i] = int(le.Uint64(b[8*i:]))
		}
	case dtF32:
		for i := range dst {
			dst[i] = int(math.Float32frombits(le.Uint32(b[4*i:])))
		}
	case dtF64:
		for i := range dst {
			dst[i] = int(math.Float64frombits(le.Uint64(b[8*i:])))
		}
	case dtU16BE:
		for i := range dst {
			dst[i] = int(be.Uint16(b[2*i:]))
		}
	case dtI16BE:
		for i := range dst {
			dst[i] = int(int16(be.Uint16(b[2*i:])))
		}
	case dtU32BE:
		for i := range dst {
			dst[i] = int(be.Uint32(b[4*i:]))
		}
	case dtI32BE:
		for i := range dst {
			dst[i] = int(int32(be.Uint32(b[4*i:])))
		}
	case dtU64BE, dtI64BE:
		for i := range dst {
			dst[i] = int(be.Uint64(b[8*i:]))
		}
	default:
		panic(fmt.Sprintf("data: decode: unknown dtype %d", d))
	}
}

// binidxDtypes maps the binidx dtype codes of Megatron's MMapIndexedDataset to
// element types. Code 6 was np.float, which numpy builds disagree on; Open
// resolves it as f32 or f64 from the size of the .bin file.
var binidxDtypes = map[uint8]dtype{1: dtU8, 2: dtI8, 3: dtI16, 4: dtI32, 5: dtI64, 6: dtF64, 7: dtF64, 8: dtU16}

// binidxCode is the inverse of binidxDtypes for the types Prepare writes.
func binidxCode(d dtype) uint8 {
	switch d {
	case dtU16:
		return 8
	case dtI32:
		return 4
	}
	panic("data: binidxCode: unsupported dtype " + d.String())
}

func leUint32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }
func leUint64(b []byte) uint64 { return binary.LittleEndian.Uint64(b) }
