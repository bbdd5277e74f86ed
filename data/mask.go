package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
)

// A loss mask (PREFIX.mask) sits next to a binidx corpus that `prepare --sft`
// wrote: one byte per token, in the order of PREFIX.bin, 1 where the token is
// a target to learn (the assistant's text and the token 0 that ends the
// sample) and 0 where it is not (the prompt). It is mapped, like the .bin, so
// it streams. Layout, little-endian:
//
//	magic "RWKVMASK" (8) | u32 version = 1 | u32 bytes per token = 1 | u64 tokens | tokens bytes of 0 or 1
const (
	maskMagic      = "RWKVMASK"
	maskHeaderSize = 24
)

// MaskPath is the mask file of a binidx prefix (or of its .bin or .idx path).
func MaskPath(path string) string {
	return strings.TrimSuffix(strings.TrimSuffix(path, ".idx"), ".bin") + ".mask"
}

// Mask is a validated, mapped loss mask.
type Mask struct {
	path  string
	bits  []byte
	unmap func() error
	learn int // tokens with mask 1
}

// OpenMask maps a mask file and checks it against a corpus of n tokens: the
// header, the size, and that every byte is 0 or 1. Errors name the file.
func OpenMask(path string, n int) (_ *Mask, err error) {
	raw, unmap, err := mapPath(path)
	if err != nil {
		return nil, fmt.Errorf("data: open mask %q: %w", path, err)
	}
	defer func() {
		if err != nil {
			unmap()
		}
	}()
	if len(raw) < maskHeaderSize || string(raw[:8]) != maskMagic {
		return nil, fmt.Errorf("data: open mask %q: %w: want a %q header of %d bytes (write it with `rwkv-train prepare --sft`)",
			path, ErrBadMagic, maskMagic, maskHeaderSize)
	}
	if v, w := binary.LittleEndian.Uint32(raw[8:]), binary.LittleEndian.Uint32(raw[12:]); v != 1 || w != 1 {
		return nil, fmt.Errorf("data: open mask %q: %w: version %d with %d bytes a token, want version 1 with 1", path, ErrBadVersion, v, w)
	}
	count := binary.LittleEndian.Uint64(raw[16:])
	if count != uint64(n) {
		return nil, fmt.Errorf("data: open mask %q: %w: it masks %d tokens, the corpus has %d; prepare them together again", path, ErrBinSize, count, n)
	}
	if int64(len(raw))-maskHeaderSize != int64(n) {
		return nil, fmt.Errorf("data: open mask %q: %w: %d bytes after the header, want %d (one a token): truncated or not this corpus's mask",
			path, ErrBinSize, len(raw)-maskHeaderSize, n)
	}
	m := &Mask{path: path, bits: raw[maskHeaderSize:], unmap: unmap}
	for i, b := range m.bits {
		switch b {
		case 1:
			m.learn++
		case 0:
		default:
			return nil, fmt.Errorf("data: open mask %q: %w: byte %d of token %d, want 0 or 1", path, ErrBadInput, b, i)
		}
	}
	if m.learn == 0 {
		return nil, fmt.Errorf("data: open mask %q: %w: no token has mask 1, so there is nothing to learn", path, ErrEmpty)
	}
	return m, nil
}

// Path is the mask file.
func (m *Mask) Path() string { return m.path }

// Learn is the number of tokens with mask 1.
func (m *Mask) Learn() int { return m.learn }

// At reports whether token i is a target to learn.
func (m *Mask) At(i int) bool { return m.bits[i] != 0 }

// Close unmaps the file.
func (m *Mask) Close() error {
	if m == nil || m.unmap == nil {
		return nil
	}
	err := m.unmap()
	m.unmap, m.bits = nil, nil
	return err
}

// maskWriter streams a mask to a temporary file renamed into place at commit.
type maskWriter struct {
	path string
	f    *os.File
	w    *bufio.Writer
	n    uint64
}

func newMaskWriter(prefix string) (*maskWriter, error) {
	f, err := createTemp(prefix, "mask")
	if err != nil {
		return nil, fmt.Errorf("data: write %q: %w", prefix+".mask", err)
	}
	m := &maskWriter{path: prefix + ".mask", f: f, w: bufio.NewWriterSize(f, 1<<20)}
	m.w.Write(make([]byte, maskHeaderSize)) // the header is written at commit
	return m, nil
}

func (m *maskWriter) write(n int, learn bool) error {
	var b byte
	if learn {
		b = 1
	}
	for range n {
		if err := m.w.WriteByte(b); err != nil {
			return fmt.Errorf("data: write %q: %w", m.path, err)
		}
	}
	m.n += uint64(n)
	return nil
}

func (m *maskWriter) commit() error {
	hdr := make([]byte, maskHeaderSize)
	copy(hdr, maskMagic)
	binary.LittleEndian.PutUint32(hdr[8:], 1)
	binary.LittleEndian.PutUint32(hdr[12:], 1)
	binary.LittleEndian.PutUint64(hdr[16:], m.n)
	err := m.w.Flush()
	if err == nil {
		_, err = m.f.WriteAt(hdr, 0)
	}
	if err := errors.Join(err, m.f.Sync(), m.f.Close(), os.Rename(m.f.Name(), m.path)); err != nil {
		return fmt.Errorf("data: write %q: %w", m.path, err)
	}
	m.f = nil
	return nil
}

func (m *maskWriter) abort() {
	if m != nil && m.f != nil {
		m.f.Close()
		os.Remove(m.f.Name())
		m.f = nil
	}
}
