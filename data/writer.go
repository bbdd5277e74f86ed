package data

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
)

// binidxWriter streams a binidx corpus in bounded memory: tokens go to a
// temporary .bin as they come, sequence sizes to a temporary file, and the
// .idx is assembled at commit, after which both files are renamed into place.
// Files are created with the mode the umask gives (0644 under umask 022).
type binidxWriter struct {
	prefix     string
	dt         dtype
	bin, sizes *os.File
	binw, szw  *bufio.Writer
	buf        []byte
	maxSeq     int64   // tokens per sequence at most (sizes are i32)
	cur        int64   // tokens in the open sequence
	nseq       int64   // closed sequences
	cont       []int64 // sequences that continue the document before them
	tokens     int64
	docs       int64
	mask       *maskWriter // the loss mask of instruction data, nil for plain text
	learn      int64       // tokens with mask 1
}

// newBinidxWriter writes u16 tokens if every id < vocab fits, else i32.
func newBinidxWriter(prefix string, vocab int) (*binidxWriter, error) {
	w := &binidxWriter{prefix: prefix, dt: dtI32, maxSeq: math.MaxInt32}
	if vocab <= math.MaxUint16+1 {
		w.dt = dtU16
	}
	var err error
	if w.bin, err = createTemp(prefix, "bin"); err != nil {
		return nil, fmt.Errorf("data: write %q: %w", prefix+".bin", err)
	}
	if w.sizes, err = createTemp(prefix, "sizes"); err != nil {
		w.abort()
		return nil, fmt.Errorf("data: write %q: %w", prefix+".idx", err)
	}
	w.binw, w.szw = bufio.NewWriterSize(w.bin, 1<<20), bufio.NewWriterSize(w.sizes, 1<<16)
	return w, nil
}

// write appends tokens to the open document.
func (w *binidxWriter) write(toks []int) error {
	es := w.dt.size()
	for len(toks) > 0 {
		if w.cur == w.maxSeq { // a document too long for one i32 size: continue it in a new sequence
			if err := w.closeSeq(); err != nil {
				return err
			}
			w.cont = append(w.cont, w.nseq)
		}
		n := int(min(int64(len(toks)), w.maxSeq-w.cur))
		w.buf = w.buf[:0]
		for _, t := range toks[:n] {
			if t < 0 || int64(t) > w.dt.maxValue() {
				return fmt.Errorf("data: write %q: %w: token %d does not fit %s", w.prefix+".bin", ErrTokenRange, t, w.dt)
			}
			if es == 2 {
				w.buf = binary.LittleEndian.AppendUint16(w.buf, uint16(t))
			} else {
				w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(t))
			}
		}
		if _, err := w.binw.Write(w.buf); err != nil {
			return fmt.Errorf("data: write %q: %w", w.prefix+".bin", err)
		}
		w.cur += int64(n)
		w.tokens += int64(n)
		toks = toks[n:]
	}
	return nil
}

func (w *binidxWriter) closeSeq() error {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(w.cur))
	if _, err := w.szw.Write(b[:]); err != nil {
		return fmt.Errorf("data: write %q: %w", w.prefix+".idx", err)
	}
	w.nseq++
	w.cur = 0
	return nil
}

// writeSFT appends tokens to the open document with their loss mask.
func (w *binidxWriter) writeSFT(toks []int, learn bool) error {
	if err := w.write(toks); err != nil {
		return err
	}
	if learn {
		w.learn += int64(len(toks))
	}
	return w.mask.write(len(toks), learn)
}

// endDoc closes the open document.
func (w *binidxWriter) endDoc() error {
	w.docs++
	return w.closeSeq()
}

// commit writes the .idx and renames both files into place.
func (w *binidxWriter) commit() (err error) {
	defer func() {
		if err != nil {
			w.abort()
		}
	}()
	if w.cur > 0 {
		return fmt.Errorf("data: write %q: document not ended", w.prefix)
	}
	if w.mask != nil {
		if err := w.mask.commit(); err != nil {
			return err
		}
	} else if err := os.Remove(w.prefix + ".mask"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		// A mask left by an earlier `prepare --sft` would be taken for this corpus's.
		return fmt.Errorf("data: write %q: remove the old mask: %w", w.prefix+".mask", err)
	}
	if err := errors.Join(w.binw.Flush(), w.bin.Sync(), w.szw.Flush()); err != nil {
		return fmt.Errorf("data: write %q: %w", w.prefix+".bin", err)
	}
	idx, err := createTemp(w.prefix, "idx")
	if err != nil {
		return fmt.Errorf("data: write %q: %w", w.prefix+".idx", err)
	}
	defer os.Remove(idx.Name())
	defer idx.Close()
	if err := w.writeIndex(idx); err != nil {
		return fmt.Errorf("data: write %q: %w", w.prefix+".idx", err)
	}
	if err := errors.Join(w.bin.Close(), os.Rename(w.bin.Name(), w.prefix+".bin")); err != nil {
		return fmt.Errorf("data: write %q: %w", w.prefix+".bin", err)
	}
	if err := errors.Join(idx.Close(), os.Rename(idx.Name(), w.prefix+".idx")); err != nil {
		os.Remove(w.prefix + ".bin")
		return fmt.Errorf("data: write %q: %w", w.prefix+".idx", err)
	}
	w.sizes.Close()
	os.Remove(w.sizes.Name())
	return nil
}

// writeIndex writes header, sizes, pointers and doc_idx, reading the sizes
// back from their temporary file twice rather than holding them in memory.
func (w *binidxWriter) writeIndex(f *os.File) error {
	out := bufio.NewWriterSize(f, 1<<20)
	hdr := append([]byte(idxMagic), make([]byte, idxHeaderSize-len(idxMagic))...)
	binary.LittleEndian.PutUint64(hdr[9:], 1)
	hdr[17] = binidxCode(w.dt)
	binary.LittleEndian.PutUint64(hdr[18:], uint64(w.nseq))
	binary.LittleEndian.PutUint64(hdr[26:], uint64(w.nseq-int64(len(w.cont))+1))
	out.Write(hdr)
	if _, err := w.sizes.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if _, err := io.Copy(out, w.sizes); err != nil {
		return err
	}
	if _, err := w.sizes.Seek(0, io.SeekStart); err != nil {
		return err
	}
	in := bufio.NewReaderSize(w.sizes, 1<<16)
	var ptr int64
	var b [8]byte
	for range w.nseq {
		if _, err := io.ReadFull(in, b[:4]); err != nil {
			return err
		}
		size := int64(binary.LittleEndian.Uint32(b[:4]))
		binary.LittleEndian.PutUint64(b[:], uint64(ptr))
		out.Write(b[:])
		ptr += size * int64(w.dt.size())
	}
	// doc_idx: 0, then the end of each document (a sequence that is not a continuation).
	out.Write(make([]byte, 8))
	cont := w.cont
	for j := int64(1); j <= w.nseq; j++ {
		if len(cont) > 0 && cont[0] == j {
			cont = cont[1:]
			continue
		}
		binary.LittleEndian.PutUint64(b[:], uint64(j))
		out.Write(b[:])
	}
	if err := out.Flush(); err != nil {
		return err
	}
	return f.Sync()
}

// abort removes the temporary files.
func (w *binidxWriter) abort() {
	w.mask.abort()
	for _, f := range []*os.File{w.bin, w.sizes} {
		if f != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
}
