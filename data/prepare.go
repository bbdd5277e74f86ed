package data

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/rwkv-go/rwkv-go/internal/fsutil"
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
	// SFT reads every input as instruction data (.jsonl only; see
	// ParseSFTLine) and writes PREFIX.mask next to each split's binidx.
	SFT bool
	// SFTFields are the prompt and response keys; nil tries
	// DefaultSFTFields and the "messages" form.
	SFTFields *[2]string
}

// PrepareStats describes what Prepare wrote.
type PrepareStats struct {
	Files, Bytes       int64 // input files and their bytes
	Docs, Tokens       int64 // training split, end-of-document tokens included
	ValDocs, ValTokens int64
	CtxLen, MagicPrime int // RWKV-LM's --magic_prime for the training split
	// InvalidUTF8 counts the documents, both splits, whose text was not valid
	// UTF-8 (or, in .jsonl, held a lone surrogate escape such as "\ud800"):
	// each maximal invalid sequence became one U+FFFD.
	InvalidUTF8 int64
	// LearnTokens and ValLearnTokens count the tokens with mask 1 (SFT only).
	LearnTokens, ValLearnTokens int64
	// LongSamples counts the SFT samples, both splits, longer than CtxLen+1
	// tokens: padded rows (data.dataload pad) cut them.
	LongSamples int64
}

// Prepare tokenizes the inputs into binidx, appending token 0 after each
// document as RWKV-LM's make_data.py does. It streams: the .bin is written as
// it goes and documents are encoded piece by piece where the tokenizer
// allows, so inputs larger than RAM work. Text is read as UTF-8: invalid
// sequences become U+FFFD as Python's errors="replace" makes them, and
// PrepareStats.InvalidUTF8 counts the documents that had any.
//
// Files appear only when complete; on error or cancellation nothing is left
// behind. An exclusive lock (PREFIX.lock) keeps a second Prepare off the same
// output, and temporary files that a killed run left next to the output are
// removed at start. progress, if not nil, is called with input bytes read so
// far and in all.
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
	prefixes := []string{opt.Output}
	if opt.ValFraction > 0 {
		prefixes = append(prefixes, opt.ValOutput)
	}
	for _, prefix := range prefixes {
		if err := os.MkdirAll(filepath.Dir(prefix), 0o777); err != nil {
			return st, fmt.Errorf("data: prepare: %w", err)
		}
		unlock, err := lockOutput(prefix)
		if err != nil {
			return st, err
		}
		defer unlock()
		removeStaleTemps(prefix)
	}
	p := &preparer{ctx: ctx, opt: opt, total: total, progress: progress, buf: make([]byte, 0, 1<<20)}
	p.enc, _ = opt.Tokenizer.(prefixEncoder)
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
	if opt.SFT {
		for _, w := range []*binidxWriter{p.train, p.val} {
			if w != nil {
				if w.mask, err = newMaskWriter(w.prefix); err != nil {
					return st, err
				}
			}
		}
	}
	for _, f := range files {
		if opt.SFT {
			err = p.sft(f)
		} else if strings.HasSuffix(f, ".jsonl") {
			err = p.jsonl(f)
		} else {
			err = p.text(f)
		}
		if err != nil {
			return st, err
		}
	}
	st = PrepareStats{Files: int64(len(files)), Bytes: total, Docs: p.train.docs, Tokens: p.train.tokens,
		InvalidUTF8: p.invalid, CtxLen: opt.CtxLen, LearnTokens: p.train.learn, LongSamples: p.long}
	if st.Docs == 0 {
		return st, fmt.Errorf("data: prepare: %w: no documents in the training split", ErrEmpty)
	}
	if p.val != nil {
		st.ValDocs, st.ValTokens, st.ValLearnTokens = p.val.docs, p.val.tokens, p.val.learn
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
	case !(o.ValFraction >= 0 && o.ValFraction < 1): // NaN too
		return fmt.Errorf("data: prepare: %w: validation fraction %g, want [0, 1)", ErrBadConfig, o.ValFraction)
	case o.ValOutput != "" && o.ValOutput == o.Output:
		return fmt.Errorf("data: prepare: %w: validation output %q is the training output", ErrBadConfig, o.ValOutput)
	case o.CtxLen < 0:
		return fmt.Errorf("data: prepare: %w: ctx_len %d", ErrBadConfig, o.CtxLen)
	case o.SFTFields != nil && !o.SFT:
		return fmt.Errorf("data: prepare: %w: SFT fields %q given without SFT", ErrBadConfig, *o.SFTFields)
	}
	return nil
}

// listInputs expands directories, in lexical order, and sums the sizes. A
// link given as an input, or found in a directory, is followed to its file;
// anything but regular files and directories (a FIFO would block the read
// forever) is refused.
func listInputs(inputs []string) ([]string, int64, error) {
	var files []string
	var total int64
	add := func(path string, info fs.FileInfo) error {
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%q is a %s: give regular files or directories", path, fsutil.Kind(info.Mode()))
		}
		files = append(files, path)
		total += info.Size()
		return nil
	}
	for _, in := range inputs {
		info, err := os.Stat(in)
		if err == nil && info.IsDir() {
			root := in
			if li, lerr := os.Lstat(in); lerr == nil && li.Mode()&fs.ModeSymlink != 0 {
				root += string(filepath.Separator) // walk the directory the link names
			}
			err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				if path != root && strings.HasPrefix(d.Name(), ".") {
					if d.IsDir() {
						return filepath.SkipDir
					}
					return nil
				}
				if d.IsDir() {
					return nil
				}
				info, err := os.Stat(path)
				if err != nil {
					return err
				}
				if info.IsDir() {
					return fmt.Errorf("%q links to a directory, which is not followed: give it as an input of its own", path)
				}
				return add(path, info)
			})
		} else if err == nil {
			err = add(in, info)
		}
		if err != nil {
			return nil, 0, fmt.Errorf("data: prepare: input %q: %w", in, err)
		}
	}
	if len(files) == 0 {
		return nil, 0, fmt.Errorf("data: prepare: %w: no input files", ErrEmpty)
	}
	return files, total, nil
}

// openRegular opens an input without blocking on a FIFO or device that
// replaced it since it was listed, and refuses anything but a regular file.
func openRegular(path string) (*os.File, error) {
	f, _, err := fsutil.OpenRegular(path)
	if err != nil {
		return nil, fmt.Errorf("data: prepare: input %w", err)
	}
	return f, nil
}

type preparer struct {
	ctx        context.Context
	opt        PrepareOptions
	enc        prefixEncoder
	train, val *binidxWriter
	docs       int64 // documents seen, both splits
	invalid    int64 // documents with invalid UTF-8, both splits
	long       int64 // SFT samples longer than CtxLen+1 tokens, both splits
	done       int64
	total      int64
	reported   int64
	progress   func(done, total int64)
	ids        []int
	// Buffers reused from file to file: a corpus of many small files would
	// otherwise allocate (and collect) a megabyte per file.
	buf, line, scratch []byte
	rd                 *bufio.Reader
}

// writer returns the split of the next document.
func (p *preparer) writer() *binidxWriter {
	f := p.opt.ValFraction
	if p.val != nil && int64(float64(p.docs+1)*f) > int64(float64(p.docs)*f) {
		return p.val
	}
	return p.train
}

func (p *preparer) endDoc(w *binidxWriter, invalid bool) error {
	p.docs++
	if invalid {
		p.invalid++
	}
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
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := p.writer()
	// buf[:valid] is checked UTF-8; the rest, at most an incomplete character, waits for the next read.
	buf, valid, invalid := p.buf[:0], 0, false
	defer func() { p.buf = buf[:0] }()
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
		var ok bool
		if buf, valid, ok = p.checkUTF8(buf, valid, eof); !ok {
			invalid = true
		}
		if p.enc == nil {
			continue
		}
		var used int
		p.ids, used = p.enc.encodePrefix(p.ids[:0], buf[:valid], eof)
		if err := w.write(p.ids); err != nil {
			return err
		}
		buf = buf[:copy(buf, buf[used:])]
		valid -= used
	}
	if p.enc == nil {
		if err := w.write(p.opt.Tokenizer.Encode(string(buf))); err != nil {
			return err
		}
	}
	return p.endDoc(w, invalid)
}

// checkUTF8 checks buf past valid, replacing invalid sequences as lossyUTF8
// does, and returns the buffer, how much of it is now valid (all of it at
// EOF; else up to an incomplete final character) and false if it replaced
// anything.
func (p *preparer) checkUTF8(buf []byte, valid int, eof bool) ([]byte, int, bool) {
	end := len(buf)
	if !eof {
		end -= incompleteUTF8Tail(buf[valid:])
	}
	if utf8.Valid(buf[valid:end]) {
		return buf, end, true
	}
	var used int
	var replaced bool
	p.scratch, used, replaced = appendLossyUTF8(p.scratch[:0], buf[valid:], eof)
	fixed := valid + len(p.scratch)
	p.scratch = append(p.scratch, buf[valid+used:]...) // the held-back tail
	return append(buf[:valid], p.scratch...), fixed, !replaced
}

// jsonl writes the "text" value of each line as one document. As in
// make_data.py, blank lines are skipped and every other line must be a JSON
// object with a "text" string, the key matched exactly.
func (p *preparer) jsonl(path string) error {
	return p.eachLine(path, func(line int, b []byte) error {
		text, invalid, err := jsonlText(b)
		if err != nil {
			return fmt.Errorf("data: prepare: %q line %d: %w: %v; want one JSON object with a \"text\" string per line (blank lines are skipped)",
				path, line, ErrBadInput, err)
		}
		w := p.writer()
		if err := w.write(p.opt.Tokenizer.Encode(text)); err != nil {
			return err
		}
		return p.endDoc(w, invalid)
	})
}

// sft writes each non-blank line of an instruction .jsonl as one sample:
// the rendered chat (ParseSFTLine) tokenized segment by segment, then token
// 0, with the loss mask 1 on the assistant's tokens and the final 0.
func (p *preparer) sft(path string) error {
	if !strings.HasSuffix(path, ".jsonl") {
		return fmt.Errorf("data: prepare: %q: %w: instruction (--sft) inputs must be .jsonl files", path, ErrBadInput)
	}
	return p.eachLine(path, func(line int, b []byte) error {
		segs, err := ParseSFTLine(b, p.opt.SFTFields)
		if err != nil {
			return fmt.Errorf("data: prepare: %q line %d: %w: %v; want {\"prompt\": ..., \"response\": ...} (or the --sft-fields keys) or {\"messages\": [{\"role\": \"user\", \"content\": ...}, {\"role\": \"assistant\", ...}]} per line",
				path, line, ErrBadInput, err)
		}
		w := p.writer()
		n := 1 // the final 0
		for _, s := range segs {
			ids := p.opt.Tokenizer.Encode(s.Text)
			if err := w.writeSFT(ids, s.Learn); err != nil {
				return err
			}
			n += len(ids)
		}
		if p.opt.CtxLen > 0 && n > p.opt.CtxLen+1 {
			p.long++
		}
		if err := w.mask.write(1, true); err != nil {
			return err
		}
		w.learn++
		return p.endDoc(w, false)
	})
}

// eachLine calls fn with each non-blank line of the file at path (spaces
// trimmed, numbered from 1, valid until fn returns), counting the bytes read
// for progress and cancellation.
func (p *preparer) eachLine(path string, fn func(line int, b []byte) error) error {
	f, err := openRegular(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if p.rd == nil {
		p.rd = bufio.NewReaderSize(f, 1<<20)
	} else {
		p.rd.Reset(f)
	}
	for line := 1; ; line++ {
		b, err := p.readLine()
		if err != nil && err != io.EOF {
			return fmt.Errorf("data: prepare: read %q: %w", path, err)
		}
		if rerr := p.read(len(b)); rerr != nil {
			return rerr
		}
		if trimmed := bytes.TrimSpace(b); len(trimmed) > 0 {
			if ferr := fn(line, trimmed); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

// readLine returns the next line of p.rd, valid until the next call.
func (p *preparer) readLine() ([]byte, error) {
	b, err := p.rd.ReadSlice('\n')
	if err != bufio.ErrBufferFull {
		return b, err
	}
	p.line = append(p.line[:0], b...)
	for err == bufio.ErrBufferFull {
		b, err = p.rd.ReadSlice('\n')
		p.line = append(p.line, b...)
	}
	return p.line, err
}

// jsonlText returns the "text" string of a JSON object, as valid UTF-8, and
// whether it had to replace invalid UTF-8 or a lone surrogate escape.
// encoding/json alone would match "Text" or "TEXT" too, and replace each
// invalid byte rather than each maximal invalid sequence.
func jsonlText(line []byte) (string, bool, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		// Python's json, which make_data.py reads with, also takes NaN and Infinity.
		if fixed, ok := pythonNonFinite(line); !ok || json.Unmarshal(fixed, &obj) != nil {
			return "", false, err
		}
	}
	raw, ok := obj["text"]
	switch {
	case obj == nil:
		return "", false, errors.New("null, not an object")
	case !ok:
		keys := slices.Sorted(maps.Keys(obj))
		if len(keys) > 5 {
			keys = append(keys[:5], "...")
		}
		return "", false, fmt.Errorf("no \"text\" key (keys are case-sensitive; this object has %q)", keys)
	case raw[0] != '"':
		return "", false, fmt.Errorf("\"text\" is %.20s, not a string", raw)
	}
	invalid := false
	if !utf8.Valid(raw) {
		raw, _, _ = appendLossyUTF8(nil, raw, true)
		invalid = true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, err
	}
	if !invalid && strings.ContainsRune(s, utf8.RuneError) && hasLoneSurrogate(raw) {
		invalid = true // encoding/json made it U+FFFD; Python would keep it and fail to encode it
	}
	return s, invalid, nil
}

// pythonNonFinite returns line with the NaN, Infinity and -Infinity that
// Python's json.dumps writes for non-finite floats (outside strings) made
// null, and whether there were any.
func pythonNonFinite(line []byte) ([]byte, bool) {
	var out []byte
	inString, found := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		if !inString {
			if n := nonFiniteWord(line[i:]); n > 0 {
				out, found = append(out, "null"...), true
				i += n - 1
				continue
			}
		}
		out = append(out, c)
		switch {
		case c == '"':
			inString = !inString
		case inString && c == '\\' && i+1 < len(line):
			i++
			out = append(out, line[i])
		}
	}
	return out, found
}

// nonFiniteWord returns the length of the NaN, Infinity or -Infinity that b
// starts with, 0 if none.
func nonFiniteWord(b []byte) int {
	for _, w := range []string{"NaN", "Infinity", "-Infinity"} {
		if bytes.HasPrefix(b, []byte(w)) {
			return len(w)
		}
	}
	return 0
}

// hasLoneSurrogate reports whether a JSON string literal holds a \uD800-\uDFFF
// escape that is not part of a surrogate pair.
func hasLoneSurrogate(raw []byte) bool {
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if v := hexEscape(raw, i); v >= 0xD800 && v < 0xE000 {
			if v >= 0xDC00 {
				return true
			}
			if w := hexEscape(raw, i+6); w < 0xDC00 || w >= 0xE000 {
				return true
			}
			i += 6
		}
		i++ // skip the escaped character
	}
	return false
}

// hexEscape returns the value of a \uXXXX escape at raw[i:], -1 if there is none.
func hexEscape(raw []byte, i int) int {
	if i+6 > len(raw) || raw[i] != '\\' || raw[i+1] != 'u' {
		return -1
	}
	v, err := strconv.ParseUint(string(raw[i+2:i+6]), 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}
