package data

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parsePyLiteral parses s, one Python str or bytes literal ('...', "...",
// b'...', with r/u prefixes), and returns its bytes: UTF-8 for a str. It
// follows Python's escape rules: \\ \' \" \a \b \f \n \r \t \v, \ooo, \xhh,
// and in str also \uXXXX and \UXXXXXXXX; an unknown escape keeps its
// backslash. Triple quotes and \N{...} are not supported.
func parsePyLiteral(s string) ([]byte, error) {
	prefix := strings.ToLower(s[:strings.IndexAny(s+"'", "'\"")])
	var isBytes, raw bool
	switch prefix {
	case "", "u":
	case "b":
		isBytes = true
	case "r":
		raw = true
	case "br", "rb":
		isBytes, raw = true, true
	default:
		return nil, fmt.Errorf("bad literal prefix %q", prefix)
	}
	body := s[len(prefix):]
	if len(body) < 2 || body[len(body)-1] != body[0] {
		return nil, fmt.Errorf("unterminated literal")
	}
	q := body[0]
	if strings.HasPrefix(body, strings.Repeat(string(q), 3)) && len(body) >= 6 {
		return nil, fmt.Errorf("triple-quoted literals are not supported")
	}
	body = body[1 : len(body)-1]
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); {
		c := body[i]
		if c == q {
			return nil, fmt.Errorf("unescaped quote at byte %d", len(prefix)+1+i)
		}
		if c != '\\' {
			if isBytes && c >= 0x80 {
				return nil, fmt.Errorf("bytes literal holds non-ASCII byte 0x%02x", c)
			}
			r, n := utf8.DecodeRuneInString(body[i:])
			if r == utf8.RuneError && n == 1 {
				return nil, fmt.Errorf("invalid UTF-8 at byte %d", len(prefix)+1+i)
			}
			out = append(out, body[i:i+n]...)
			i += n
			continue
		}
		if i+1 >= len(body) {
			return nil, fmt.Errorf("literal ends with a backslash")
		}
		if raw {
			out = append(out, '\\', body[i+1])
			i += 2
			continue
		}
		var err error
		out, i, err = pyEscape(out, body, i, isBytes)
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// pyEscape decodes the escape at body[i] (a backslash) into out.
func pyEscape(out []byte, body string, i int, isBytes bool) ([]byte, int, error) {
	simple := map[byte]byte{'\\': '\\', '\'': '\'', '"': '"', 'a': 7, 'b': 8, 'f': 12, 'n': '\n', 'r': '\r', 't': '\t', 'v': 11}
	e := body[i+1]
	if v, ok := simple[e]; ok {
		return append(out, v), i + 2, nil
	}
	switch {
	case e == '\n':
		return out, i + 2, nil
	case e >= '0' && e <= '7':
		j := i + 1
		for j < len(body) && j < i+4 && body[j] >= '0' && body[j] <= '7' {
			j++
		}
		v, _ := strconv.ParseUint(body[i+1:j], 8, 32)
		if isBytes {
			if v > 0xff {
				return nil, 0, fmt.Errorf("octal escape \\%s out of range for bytes", body[i+1:j])
			}
			return append(out, byte(v)), j, nil
		}
		return utf8.AppendRune(out, rune(v)), j, nil
	case e == 'x', !isBytes && (e == 'u' || e == 'U'):
		n := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
		if i+2+n > len(body) {
			return nil, 0, fmt.Errorf("truncated \\%c escape", e)
		}
		v, err := strconv.ParseUint(body[i+2:i+2+n], 16, 32)
		if err != nil {
			return nil, 0, fmt.Errorf("bad \\%c escape %q", e, body[i:i+2+n])
		}
		if e == 'x' && isBytes {
			return append(out, byte(v)), i + 2 + n, nil
		}
		if v > utf8.MaxRune || (v >= 0xd800 && v < 0xe000) {
			return nil, 0, fmt.Errorf("escape %q is not encodable as UTF-8", body[i:i+2+n])
		}
		return utf8.AppendRune(out, rune(v)), i + 2 + n, nil
	case e == 'N' && !isBytes:
		return nil, 0, fmt.Errorf("\\N{...} escapes are not supported")
	}
	// Unknown escapes keep the backslash, as in Python.
	return append(out, '\\'), i + 1, nil
}
