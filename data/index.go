package data

import (
	"encoding/binary"
	"fmt"
	"math"
)

// binidx .idx layout (little-endian), as written by Megatron/GPT-NeoX
// MMapIndexedDatasetBuilder and read by RWKV-LM:
//
//	magic "MMIDIDX\x00\x00" (9) | u64 version = 1 | u8 dtype code | u64 N | u64 doc_count
//	i32 sizes[N] | i64 pointers[N] (byte offsets into .bin) | i64 doc_idx[doc_count]
const (
	idxMagic      = "MMIDIDX\x00\x00"
	idxHeaderSize = 9 + 8 + 1 + 8 + 8 // 34
)

// index is a parsed, self-consistent .idx file. Its arrays stay in the mapped
// bytes; accessors decode them on demand.
type index struct {
	code     uint8 // dtype code as stored
	dt       dtype
	n        int // number of sequences
	docCount int
	raw      []byte
}

func (ix *index) size(i int) int64 {
	return int64(int32(binary.LittleEndian.Uint32(ix.raw[idxHeaderSize+4*i:])))
}
func (ix *index) pointer(i int) int64 {
	return int64(binary.LittleEndian.Uint64(ix.raw[idxHeaderSize+4*ix.n+8*i:]))
}
func (ix *index) doc(i int) int64 {
	return int64(binary.LittleEndian.Uint64(ix.raw[idxHeaderSize+12*ix.n+8*i:]))
}

// parseIndex validates the header, the file size and the document index of an
// .idx file. Pointers are checked against the .bin by checkBin.
func parseIndex(b []byte) (*index, error) {
	if len(b) < idxHeaderSize {
		if len(b) >= 9 && string(b[:9]) != idxMagic {
			return nil, fmt.Errorf("%w: got %q, want %q", ErrBadMagic, b[:9], idxMagic)
		}
		return nil, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", ErrIndexSize, len(b), idxHeaderSize)
	}
	if string(b[:9]) != idxMagic {
		return nil, fmt.Errorf("%w: got %q, want %q", ErrBadMagic, b[:9], idxMagic)
	}
	le := binary.LittleEndian
	if v := le.Uint64(b[9:]); v != 1 {
		return nil, fmt.Errorf("%w: version %d, want 1", ErrBadVersion, v)
	}
	code := b[17]
	dt, ok := binidxDtypes[code]
	if !ok {
		return nil, fmt.Errorf("%w: dtype code %d, want 1..8", ErrBadDtype, code)
	}
	n, docs := le.Uint64(b[18:]), le.Uint64(b[26:])
	// 34 + 12N + 8*doc_count, computed without overflow.
	rest := uint64(len(b) - idxHeaderSize)
	if n > rest/12 || docs > (rest-12*n)/8 || 12*n+8*docs != rest {
		return nil, fmt.Errorf("%w: %d bytes, want 34 + 12*%d + 8*%d", ErrIndexSize, len(b), n, docs)
	}
	ix := &index{code: code, dt: dt, n: int(n), docCount: int(docs), raw: b}
	for i := range ix.n {
		if s := ix.size(i); s < 0 {
			return nil, fmt.Errorf("%w: sequence %d has negative size %d", ErrIndexSize, i, s)
		}
	}
	if ix.docCount == 0 {
		return nil, fmt.Errorf("%w: doc_count is 0, want at least the leading 0", ErrDocIndex)
	}
	if d := ix.doc(0); d != 0 {
		return nil, fmt.Errorf("%w: doc_idx[0] is %d, want 0", ErrDocIndex, d)
	}
	for i := 1; i < ix.docCount; i++ {
		prev, d := ix.doc(i-1), ix.doc(i)
		if d < prev || d > int64(ix.n) {
			return nil, fmt.Errorf("%w: doc_idx[%d] is %d after %d, want non-decreasing and <= %d", ErrDocIndex, i, d, prev, ix.n)
		}
	}
	return ix, nil
}

// checkBin checks the pointers against a .bin of binSize bytes and returns
// the total number of tokens. It resolves dtype code 6 (np.float) as f32 or
// f64 from the .bin size.
func (ix *index) checkBin(binSize int64) (int64, error) {
	var total int64
	for i := range ix.n {
		total += ix.size(i)
		if total > binSize { // binSize >= tokens*1, so this also stops overflow
			return 0, fmt.Errorf("%w: sizes sum to more than the %d-byte .bin", ErrBinSize, binSize)
		}
	}
	if ix.code == 6 && total > 0 && total*4 == binSize {
		ix.dt = dtF32
	}
	es := int64(ix.dt.size())
	if total > math.MaxInt64/es || total*es != binSize {
		return 0, fmt.Errorf("%w: %d bytes, want %d tokens of %s", ErrBinSize, binSize, total, ix.dt)
	}
	var end int64 // end of the previous sequence, in bytes
	for i := range ix.n {
		p, s := ix.pointer(i), ix.size(i)*es
		if p < end {
			return 0, fmt.Errorf("%w: pointer %d is %d, before the end of sequence %d at byte %d (not monotonic)", ErrPointers, i, p, i-1, end)
		}
		if p > binSize || s > binSize-p {
			return 0, fmt.Errorf("%w: sequence %d at byte %d of %d bytes ends past the end of the %d-byte .bin", ErrPointers, i, p, s, binSize)
		}
		end = p + s
	}
	// Monotonic, in range and summing to the file: the pointers can only be
	// contiguous now, so the .bin is the documents concatenated in order.
	return total, nil
}

// docStarts returns the token offset of each document that has a sequence.
func (ix *index) docStarts() []int {
	es := int64(ix.dt.size())
	starts := make([]int, 0, ix.docCount)
	for i := range ix.docCount {
		if d := ix.doc(i); d < int64(ix.n) {
			if i+1 < ix.docCount && ix.doc(i+1) == d {
				continue // empty document
			}
			starts = append(starts, int(ix.pointer(int(d))/es))
		}
	}
	return starts
}
