package data

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
)

// .npy layout: "\x93NUMPY" | u8 major | u8 minor | header length (u16 for
// version 1, u32 for 2 and 3) | header, a Python dict literal such as
// {'descr': '<u2', 'fortran_order': False, 'shape': (1000,), } | data.
const npyMagic = "\x93NUMPY"

// npyHeader is what Open needs from a .npy header.
type npyHeader struct {
	dt     dtype
	n      int64 // elements
	offset int64 // where the data starts
}

// parseNpyHeader parses the start of a .npy file holding a 1-D integer array.
func parseNpyHeader(b []byte) (npyHeader, error) {
	var h npyHeader
	if len(b) < 10 || string(b[:6]) != npyMagic {
		return h, fmt.Errorf("%w: not a .npy file", ErrBadMagic)
	}
	major := b[6]
	var hlen, pre int64
	switch major {
	case 1:
		hlen, pre = int64(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return h, fmt.Errorf("%w: truncated", ErrBadHeader)
		}
		hlen, pre = int64(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return h, fmt.Errorf("%w: .npy version %d.%d", ErrBadVersion, major, b[7])
	}
	if int64(len(b))-pre < hlen {
		return h, fmt.Errorf("%w: header of %d bytes truncated", ErrBadHeader, hlen)
	}
	dict, err := parseNpyDict(string(b[pre : pre+hlen]))
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrBadHeader, err)
	}
	descr, ok := dict["descr"].(string)
	if !ok {
		return h, fmt.Errorf("%w: no 'descr'", ErrBadHeader)
	}
	if h.dt, err = npyDtype(descr); err != nil {
		return h, err
	}
	if _, ok := dict["fortran_order"].(bool); !ok {
		return h, fmt.Errorf("%w: no 'fortran_order'", ErrBadHeader)
	}
	shape, ok := dict["shape"].([]int64)
	if !ok {
		return h, fmt.Errorf("%w: no 'shape'", ErrBadHeader)
	}
	if len(shape) != 1 {
		return h, fmt.Errorf("%w: shape %v, want a 1-D array", ErrBadHeader, shape)
	}
	h.n, h.offset = shape[0], pre+hlen
	return h, nil
}

// npyDtype accepts the integer dtypes: [<|=>][iu][1248].
func npyDtype(descr string) (dtype, error) {
	bad := fmt.Errorf("%w: descr %q, want a 1-D integer array", ErrBadDtype, descr)
	if len(descr) != 3 || !strings.ContainsRune("<|=>", rune(descr[0])) {
		return 0, bad
	}
	bigEndian := descr[0] == '>'
	switch descr[1:] {
	case "u1":
		return dtU8, nil
	case "i1":
		return dtI8, nil
	}
	if descr[0] == '|' {
		return 0, bad
	}
	le := map[string]dtype{"u2": dtU16, "i2": dtI16, "u4": dtU32, "i4": dtI32, "u8": dtU64, "i8": dtI64}
	be := map[string]dtype{"u2": dtU16BE, "i2": dtI16BE, "u4": dtU32BE, "i4": dtI32BE, "u8": dtU64BE, "i8": dtI64BE}
	m := le
	if bigEndian {
		m = be
	}
	if d, ok := m[descr[1:]]; ok {
		return d, nil
	}
	return 0, bad
}

// parseNpyDict parses the subset of Python literals numpy writes in headers:
// a dict of string keys to strings, True/False and tuples of integers.
func parseNpyDict(s string) (map[string]any, error) {
	p := &npyParser{s: s}
	p.space()
	if !p.eat('{') {
		return nil, fmt.Errorf("header does not start with '{'")
	}
	out := map[string]any{}
	for {
		p.space()
		if p.eat('}') {
			break
		}
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.eat(':') {
			return nil, fmt.Errorf("want ':' after key %q", key)
		}
		p.space()
		v, err := p.value()
		if err != nil {
			return nil, fmt.Errorf("key %q: %v", key, err)
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		out[key] = v
		p.space()
		if p.eat('}') {
			break
		}
		if !p.eat(',') {
			return nil, fmt.Errorf("want ',' or '}' at byte %d", p.i)
		}
	}
	if strings.TrimRight(p.s[p.i:], " \n\x00") != "" {
		return nil, fmt.Errorf("trailing bytes after the dict")
	}
	return out, nil
}

type npyParser struct {
	s string
	i int
}

func (p *npyParser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\n' || p.s[p.i] == '\t') {
		p.i++
	}
}

func (p *npyParser) eat(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *npyParser) str() (string, error) {
	if p.i >= len(p.s) || (p.s[p.i] != '\'' && p.s[p.i] != '"') {
		return "", fmt.Errorf("want a string at byte %d", p.i)
	}
	q := p.s[p.i]
	end := strings.IndexByte(p.s[p.i+1:], q)
	if end < 0 {
		return "", fmt.Errorf("unterminated string")
	}
	v := p.s[p.i+1 : p.i+1+end]
	if strings.ContainsRune(v, '\\') {
		return "", fmt.Errorf("escapes are not supported in header strings")
	}
	p.i += end + 2
	return v, nil
}

func (p *npyParser) value() (any, error) {
	switch {
	case strings.HasPrefix(p.s[p.i:], "True"):
		p.i += 4
		return true, nil
	case strings.HasPrefix(p.s[p.i:], "False"):
		p.i += 5
		return false, nil
	case p.eat('('):
		dims := []int64{}
		for {
			p.space()
			if p.eat(')') {
				return dims, nil
			}
			j := p.i
			for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
				p.i++
			}
			d, err := strconv.ParseInt(p.s[j:p.i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("bad dimension at byte %d", j)
			}
			p.eat('L') // Python 2 long
			dims = append(dims, d)
			p.space()
			if p.eat(')') {
				return dims, nil
			}
			if !p.eat(',') {
				return nil, fmt.Errorf("want ',' or ')' at byte %d", p.i)
			}
		}
	}
	return p.str()
}
