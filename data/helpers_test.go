package data

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// encodeTokens stores toks as dt, little-endian unless dt is big-endian.
func encodeTokens(dt dtype, toks []int) []byte {
	var b []byte
	le, be := binary.LittleEndian, binary.BigEndian
	for _, t := range toks {
		switch dt {
		case dtU8, dtI8:
			b = append(b, byte(t))
		case dtU16, dtI16:
			b = le.AppendUint16(b, uint16(t))
		case dtU32, dtI32:
			b = le.AppendUint32(b, uint32(t))
		case dtU64, dtI64:
			b = le.AppendUint64(b, uint64(t))
		case dtF32:
			b = le.AppendUint32(b, math.Float32bits(float32(t)))
		case dtF64:
			b = le.AppendUint64(b, math.Float64bits(float64(t)))
		case dtU16BE, dtI16BE:
			b = be.AppendUint16(b, uint16(t))
		case dtU32BE, dtI32BE:
			b = be.AppendUint32(b, uint32(t))
		case dtU64BE, dtI64BE:
			b = be.AppendUint64(b, uint64(t))
		}
	}
	return b
}

// buildIdx assembles an .idx file from its fields.
func buildIdx(code uint8, sizes []int32, pointers, docIdx []int64) []byte {
	b := []byte(idxMagic)
	b = binary.LittleEndian.AppendUint64(b, 1)
	b = append(b, code)
	b = binary.LittleEndian.AppendUint64(b, uint64(len(sizes)))
	b = binary.LittleEndian.AppendUint64(b, uint64(len(docIdx)))
	for _, s := range sizes {
		b = binary.LittleEndian.AppendUint32(b, uint32(s))
	}
	for _, p := range pointers {
		b = binary.LittleEndian.AppendUint64(b, uint64(p))
	}
	for _, d := range docIdx {
		b = binary.LittleEndian.AppendUint64(b, uint64(d))
	}
	return b
}

// idxFor returns a valid .idx for docs stored as dt under code, one sequence
// per document, as Megatron's builder writes it.
func idxFor(code uint8, dt dtype, docs [][]int) []byte {
	var sizes []int32
	var ptrs []int64
	docIdx := []int64{0}
	var p int64
	for i, d := range docs {
		sizes = append(sizes, int32(len(d)))
		ptrs = append(ptrs, p)
		p += int64(len(d) * dt.size())
		docIdx = append(docIdx, int64(i+1))
	}
	return buildIdx(code, sizes, ptrs, docIdx)
}

// writeBinidx writes docs under dir/name.{idx,bin} and returns the prefix.
func writeBinidx(t testing.TB, dir, name string, code uint8, dt dtype, docs [][]int) string {
	t.Helper()
	prefix := filepath.Join(dir, name)
	var all []int
	for _, d := range docs {
		all = append(all, d...)
	}
	writeFile(t, prefix+".idx", idxFor(code, dt, docs))
	writeFile(t, prefix+".bin", encodeTokens(dt, all))
	return prefix
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// npyBytes builds a .npy file (version 1 unless v2) with a header dict.
func npyBytes(dict string, data []byte, v2 bool) []byte {
	pre := 10
	if v2 {
		pre = 12
	}
	h := dict + " "
	h += strings.Repeat(" ", (64-(pre+len(h)+1)%64)%64) + "\n"
	b := []byte(npyMagic)
	if v2 {
		b = append(b, 2, 0)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
	} else {
		b = append(b, 1, 0)
		b = binary.LittleEndian.AppendUint16(b, uint16(len(h)))
	}
	return append(append(b, h...), data...)
}

func seq(lo, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = lo + i
	}
	return s
}
