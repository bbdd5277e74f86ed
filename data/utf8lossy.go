package data

import (
	"strings"
	"unicode/utf8"
)

// ToValidUTF8Lossy returns b as valid UTF-8, with each maximal invalid
// subsequence replaced by one U+FFFD, and whether anything was replaced. This
// is Unicode's "substitution of maximal subparts" (chapter 3, U+FFFD
// substitution), which Python's errors="replace", Rust's
// String::from_utf8_lossy and WHATWG's TextDecoder all follow: a truncated
// sequence such as E2 82 is one U+FFFD, while each byte that cannot start or
// continue a well-formed sequence (C0, F5..FF, a lone continuation byte, the
// A0 after ED) is one U+FFFD of its own. So FF FF gives two, where
// strings.ToValidUTF8 gives one.
func ToValidUTF8Lossy(b []byte) (s string, replaced bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	var sb strings.Builder
	sb.Grow(len(b) + 8)
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			sb.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			sb.Write(b[i : i+n])
			i += n
			continue
		}
		sb.WriteString("\uFFFD")
		i += maximalSubpart(b[i:])
	}
	return sb.String(), true
}

// toValidUTF8Lossy is ToValidUTF8Lossy for a string.
func toValidUTF8Lossy(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	out, _ := ToValidUTF8Lossy([]byte(s))
	return out
}

// maximalSubpart returns the length (>= 1) of the maximal subpart of an
// ill-formed sequence at the start of b: the longest prefix that is the
// start of some well-formed sequence (Unicode table 3-7), or 1 if b[0]
// cannot start one.
func maximalSubpart(b []byte) int {
	lo, hi, need := byte(0x80), byte(0xBF), 0
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		need = 1
	case c == 0xE0:
		lo, need = 0xA0, 2
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 2
	case c == 0xED:
		hi, need = 0x9F, 2
	case c == 0xF0:
		lo, need = 0x90, 3
	case c >= 0xF1 && c <= 0xF3:
		need = 3
	case c == 0xF4:
		hi, need = 0x8F, 3
	default:
		return 1
	}
	n := 1
	for ; n <= need && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return n
}
