package checkpoint

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
)

// pthArchive is the top-level folder inside the zip; torch.save uses the
// same name when writing to a buffer, and torch.load accepts any.
const pthArchive = "archive"

// storageClass maps a dtype to the torch storage class torch.save names.
var storageClass = map[DType]string{
	F64: "DoubleStorage", F32: "FloatStorage", F16: "HalfStorage", BF16: "BFloat16Storage",
	I64: "LongStorage", I32: "IntStorage", I16: "ShortStorage", I8: "CharStorage",
	U8: "ByteStorage", Bool: "BoolStorage",
}

// WritePTH writes ts as torch.save writes a state_dict: a zip archive, entries
// stored, holding data.pkl (a protocol-2 pickle of an OrderedDict of
// torch._utils._rebuild_tensor_v2 calls), one data/<key> entry per tensor
// aligned to 64 bytes, and version "3\n".
func WritePTH(w io.Writer, ts []Tensor) error {
	seen := map[string]bool{}
	for _, t := range ts {
		if err := t.Validate(); err != nil {
			return fmt.Errorf("pth: %w", err)
		}
		if seen[t.Name] {
			return fmt.Errorf("pth: duplicate tensor %q: %w", t.Name, ErrMalformed)
		}
		seen[t.Name] = true
	}
	pkl, err := pickleStateDict(ts)
	if err != nil {
		return fmt.Errorf("pth: %w", err)
	}
	zw := zip.NewWriter(w)
	var off int64
	add := func(name string, data []byte) error {
		name = pthArchive + "/" + name
		// torch pads the local header's extra field ("FB", filled with 'Z')
		// so that each entry's data starts on a 64-byte boundary.
		const hdr = 30
		pad := (64 - (off+hdr+int64(len(name))+4)%64) % 64
		extra := make([]byte, 4+pad)
		binary.LittleEndian.PutUint16(extra, 0x4246) // "FB"
		binary.LittleEndian.PutUint16(extra[2:], uint16(pad))
		for i := 4; i < len(extra); i++ {
			extra[i] = 'Z'
		}
		fh := &zip.FileHeader{
			Name:               name,
			Method:             zip.Store,
			CRC32:              crc32.ChecksumIEEE(data),
			CompressedSize64:   uint64(len(data)),
			UncompressedSize64: uint64(len(data)),
			Extra:              extra,
		}
		fw, err := zw.CreateRaw(fh)
		if err != nil {
			return err
		}
		if _, err := fw.Write(data); err != nil {
			return err
		}
		off += hdr + int64(len(name)) + int64(len(extra)) + int64(len(data))
		return nil
	}
	if err := add("data.pkl", pkl); err != nil {
		return fmt.Errorf("pth: %w", err)
	}
	for i, t := range ts {
		if err := add("data/"+strconv.Itoa(i), t.Data); err != nil {
			return fmt.Errorf("pth: tensor %q: %w", t.Name, err)
		}
	}
	if err := add("version", []byte("3\n")); err != nil {
		return fmt.Errorf("pth: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("pth: %w", err)
	}
	return nil
}

// Pickle opcodes (Python's pickle.py names).
const (
	opMark         = '('
	opStop         = '.'
	opBinInt       = 'J'
	opBinInt1      = 'K'
	opBinInt2      = 'M'
	opNone         = 'N'
	opBinPersID    = 'Q'
	opReduce       = 'R'
	opBinUnicode   = 'X'
	opAppend       = 'a'
	opBuild        = 'b'
	opGlobal       = 'c'
	opAppends      = 'e'
	opBinGet       = 'h'
	opLongBinGet   = 'j'
	opEmptyList    = ']'
	opBinPut       = 'q'
	opLongBinPut   = 'r'
	opSetItem      = 's'
	opTuple        = 't'
	opSetItems     = 'u'
	opEmptyDict    = '}'
	opEmptyTuple   = ')'
	opBinFloat     = 'G'
	opShortBinStr  = 'U'
	opBinString    = 'T'
	opProto        = 0x80
	opNewObj       = 0x81
	opTuple1       = 0x85
	opTuple2       = 0x86
	opTuple3       = 0x87
	opNewTrue      = 0x88
	opNewFalse     = 0x89
	opLong1        = 0x8a
	opShortBinUni  = 0x8c
	opBinUnicode8  = 0x8d
	opEmptySet     = 0x8f
	opStackGlobal  = 0x93
	opMemoize      = 0x94
	opFrame        = 0x95
	opShortBinByte = 'C'
	opBinBytes     = 'B'
)

type pickleWriter struct{ bytes.Buffer }

func (p *pickleWriter) global(module, name string) {
	p.WriteByte(opGlobal)
	p.WriteString(module + "\n" + name + "\n")
}

func (p *pickleWriter) str(s string) {
	p.WriteByte(opBinUnicode)
	binary.Write(&p.Buffer, binary.LittleEndian, uint32(len(s)))
	p.WriteString(s)
}

func (p *pickleWriter) int(v int64) {
	switch {
	case v >= 0 && v < 1<<8:
		p.Write([]byte{opBinInt1, byte(v)})
	case v >= 0 && v < 1<<16:
		p.Write([]byte{opBinInt2, byte(v), byte(v >> 8)})
	case v >= -1<<31 && v < 1<<31:
		p.WriteByte(opBinInt)
		binary.Write(&p.Buffer, binary.LittleEndian, int32(v))
	default:
		p.Write([]byte{opLong1, 8})
		binary.Write(&p.Buffer, binary.LittleEndian, v)
	}
}

func (p *pickleWriter) intTuple(vs []int) {
	switch len(vs) {
	case 0:
		p.WriteByte(opEmptyTuple)
		return
	case 1, 2, 3:
		for _, v := range vs {
			p.int(int64(v))
		}
		p.WriteByte([]byte{opTuple1, opTuple2, opTuple3}[len(vs)-1])
		return
	}
	p.WriteByte(opMark)
	for _, v := range vs {
		p.int(int64(v))
	}
	p.WriteByte(opTuple)
}

func (p *pickleWriter) emptyOrderedDict() {
	p.global("collections", "OrderedDict")
	p.WriteByte(opEmptyTuple)
	p.WriteByte(opReduce)
}

// pickleStateDict encodes ts as torch.save pickles an OrderedDict of
// contiguous CPU tensors whose storages are keyed "0", "1", ...
func pickleStateDict(ts []Tensor) ([]byte, error) {
	var p pickleWriter
	p.Write([]byte{opProto, 2})
	p.emptyOrderedDict()
	if len(ts) > 0 {
		p.WriteByte(opMark)
	}
	for i, t := range ts {
		cls, ok := storageClass[t.DType]
		if !ok {
			return nil, fmt.Errorf("tensor %q: dtype %s: %w", t.Name, t.DType, ErrDType)
		}
		p.str(t.Name)
		p.global("torch._utils", "_rebuild_tensor_v2")
		p.WriteByte(opMark)
		// persistent_load(('storage', cls, key, 'cpu', numel))
		p.WriteByte(opMark)
		p.str("storage")
		p.global("torch", cls)
		p.str(strconv.Itoa(i))
		p.str("cpu")
		p.int(int64(t.NumElements()))
		p.WriteByte(opTuple)
		p.WriteByte(opBinPersID)
		p.int(0) // storage offset
		p.intTuple(t.Shape)
		p.intTuple(contiguousStride(t.Shape))
		p.WriteByte(opNewFalse) // requires_grad
		p.emptyOrderedDict()    // backward hooks
		p.WriteByte(opTuple)
		p.WriteByte(opReduce)
	}
	if len(ts) > 0 {
		p.WriteByte(opSetItems)
	}
	p.WriteByte(opStop)
	return p.Bytes(), nil
}

func contiguousStride(shape []int) []int {
	s := make([]int, len(shape))
	acc := 1
	for i := len(shape) - 1; i >= 0; i-- {
		s[i] = acc
		acc *= shape[i]
	}
	return s
}
