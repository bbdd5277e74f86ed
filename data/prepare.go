package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// PrepareOptions says what Prepare reads and writes.
type PrepareOptions struct {
	// Inputs are text files (each one document), directories searched
	// recursively for them (names starting with "." are skipped), and .jsonl
	// files (each line an object whose "text" field is one document).
	Inputs    []string
	Output    string // binidx prefix of the training split
	ValOutput string // binidx prefix of the validation split; default Output+"_val"
	Tokenizer Tokenizer
	// ValFraction of the documents, spread evenly (document i is held out
	// when floor((i+1)*f) > floor(i*f)), goes to the validation split.
	ValFraction float64
	CtxLen      int // for the magic prime in the stats; 0 to skip it
}

// PrepareStats describes what Prepare wrote.
type PrepareStats struct {
	Files, Bytes       int64 // input files and their bytes
	Docs, Tokens       int64 // training split, end-of-document tokens included
	ValDocs, ValTokens int64
	CtxLen, MagicPrime int // RWKV-LM's --magic_prime for the training split
}

// Prepare tokenizes the inputs into binidx, appending token 0 after each
// document as RWKV-LM's make_data.py does. It streams: the .bin is written as
// it goes and documents are encoded piece by piece where the tokenizer
// allows, so inputs larger than RAM work. Files appear only when complete;
// on error or cancellation nothing is left behind. progress, if not nil, is
// called with input bytes read so far and in all.
func Prepare(ctx context.Context, opt PrepareOptions, progress func(done, total int64)) (PrepareStats, error) {
	var st PrepareStats
	if err := opt.check(); err != nil {
		return st, err
	}
	if opt.ValOutput == "" {
		opt.ValOutput = opt.Output + "_val"
	}
	files, total, err := listInputs(opt.Inputs)
	if err != nil {
		return st, err
	}
	p := &preparer{ctx: ctx, opt: opt, total: total, progress: progress}
	p.enc, _ = opt.Tokenizer.(prefixEncoder)
	if err := os.MkdirAll(filepath.Dir(opt.Output), 0o755); err != nil {
		return st, fmt.Errorf("data: prepare: %w", err)
	}
	if p.train, err = newBinidxWriter(opt.Output, opt.Tokenizer.VocabSize()); err != nil {
		return st, err
	}
	defer p.train.abort()
	if opt.ValFraction > 0 {
		if p.val, err = newBinidxWriter(opt.ValOutput, opt.Tokenizer.VocabSize()); err != nil {
			return st, err
		}
		defer p.val.abort()
	}
	for _, f := range files {
		if strings.HasSuffix(f, ".jsonl") {
			err = p.jsonl(f)
		} else {
			err = p.text(f)
		}
		if err != nil {
			return st, err
		}
	}
	st = PrepareStats{Files: int64(len(files)), Bytes: total, Docs: p.train.docs, Tokens: p.train.tokens, CtxLen: opt.CtxLen}
	if st.Docs == 0 {
		return st, fmt.Errorf("data: prepare: %w: no documents in the training split", ErrEmpty)
	}
	if p.val != nil {
		st.ValDocs, st.ValTokens = p.val.docs, p.val.tokens
		if st.ValDocs == 0 {
			return st, fmt.Errorf("data: prepare: %w: validation fraction %g of %d documents holds none", ErrEmpty, opt.ValFraction, p.docs)
		}
		if err := p.val.commit(); err != nil {
			return st, err
		}
	}
	if err := p.train.commit(); err != nil {
		return st, err
	}
	st.MagicPrime = MagicPrime(int(st.Tokens), opt.CtxLen)
	if progress != nil {
		progress(total, total)
	}
	return st, nil
}

func (o PrepareOptions) check() error {
	switch {
	case len(o.Inputs) == 0:
		return fmt.Errorf("data: prepare: %w: no inputs", ErrBadConfig)
	case o.Output == "":
		return fmt.Errorf("data: prepare: %w: no output prefix", ErrBadConfig)
	case o.Tokenizer == nil:
		return fmt.Errorf("data: prepare: %w: no tokenizer", ErrBadConfig)
	case o.ValFraction < 0 || o.ValFraction >= 1:
		return fmt.Errorf("data: prepare: %w: validation fraction %g, want [0, 1)", ErrBadConfig, o.ValFraction)
	case o.CtxLen < 0:
		return fmt.Errorf("data: prepare: %w: ctx_len %d", ErrBadConfig, o.CtxLen)
	}
	return nil
}

// listInputs expands directories, in lexical order, and sums the sizes.
func listInputs(inputs []string) ([]string, int64, error) {
	var files []string
	var total int64
	for _, in := range inputs {
		err := filepath.WalkDir(in, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if path != in && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%q is not a regular file", path)
			}
			files = append(files, path)
			total += info.Size()
			return nil
		})
		if err != nil {
			return nil, 0, fmt.Errorf("data: prepare: input %q: %w", in, err)
		}
	}
	if len(files) == 0 {
		return nil, 0, fmt.Errorf("data: prepare: %w: no input files", ErrEmpty)
	}
	return files, total, nil
}

type preparer struct {
	ctx        context.Context
	opt        PrepareOptions
	enc        prefixEncoder
	train, val *binidxWriter
	docs       int64 // documents seen, both splits
	done       int64
	total      int64
	reported   int64
	progress   func(done, total int64)
	ids        []int
}

// writer returns the split of the next document.
func (p *preparer) writer() *binidxWriter {
	f := p.opt.ValFraction
	if p.val != nil && int64(float64(p.docs+1)*f) > int64(float64(p.docs)*f) {
		return p.val
	}
	return p.train
}

func (p *preparer) endDoc(w *binidxWriter) error {
	p.docs++
	if err := w.write([]int{0}); err != nil {
		return err
	}
	return w.endDoc()
}

func (p *preparer) read(n int) error {
	p.done += int64(n)
	if p.progress != nil && p.done-p.reported >= 4<<20 {
		p.reported = p.done
		p.progress(p.done, p.total)
	}
	if err := p.ctx.Err(); err != nil {
		return fmt.Errorf("data: prepare: %w", err)
	}
	return nil
}

// text writes one file as one document, encoding it piece by piece.
func (p *preparer) text(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data: prepare: %w", err)
	}
	defer f.Close()
	w := p.writer()
	buf := make([]byte, 0, 1<<20)
	for eof := false; !eof; {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)] // grow
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			eof = true
		} else if err != nil {
			return fmt.Errorf("data: prepare: read %q: %w", path, err)
		}
		if err := p.read(n); err != nil {
			return err
		}
		if p.enc == nil {
			continue
		}
		var used int
		p.ids, used = p.enc.encodePrefix(p.ids[:0], buf, eof)
		if err := w.write(p.ids); err != nil {
			return err
		}
		buf = buf[:copy(buf, buf[used:])]
	}
	if p.enc == nil {
		if err := w.write(p.opt.Tokenizer.Encode(string(buf))); err != nil {
			return err
		}
	}
	return p.endDoc(w)
}

// jsonl writes the "text" field of each line as one document.
func (p *preparer) jsonl(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data: prepare: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("data: prepare: read %q: %w", path, err)
		}
		if rerr := p.read(len(b)); rerr != nil {
			return rerr
		}
		if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 {
			var doc struct {
				Text *string `json:"text"`
			}
			if jerr := json.Unmarshal(trimmed, &doc); jerr != nil || doc.Text == nil {
				why := "no \"text\" field"
				if jerr != nil {
					why = jerr.Error()
				}
				return fmt.Errorf("data: prepare: %q line %d: %w: want a JSON object with a \"text\" string: %s",
					path, line, ErrBadInput, why)
			}
			w := p.writer()
			if werr := w.write(p.opt.Tokenizer.Encode(*doc.Text)); werr != nil {
				return werr
			}
			if werr := p.endDoc(w); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}
