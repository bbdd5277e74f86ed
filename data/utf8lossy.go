package data

import "unicode/utf8"

// ToValidUTF8Lossy returns b as valid UTF-8, with each maximal invalid subsequence replaced by
// one U+FFFD, and whether anything was replaced. This is Unicode's "substitution of maximal
// subparts" (§3.9, U+FFFD substitution), which Python's bytes.decode(errors="replace"), Rust's
// String::from_utf8_lossy and WHATWG's TextDecoder all follow: a truncated sequence such as
// E2 82 is one U+FFFD, while each byte that cannot start or continue a well-formed sequence
// (C0, F5..FF, a lone continuation byte, the A0 after ED) is one of its own. So FF FF gives
// two, where strings.ToValidUTF8 gives one (and utf8.DecodeRune one per bad byte).
func ToValidUTF8Lossy(b []byte) (s string, replaced bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	out, _, replaced := appendLossyUTF8(make([]byte, 0, len(b)+8), b, true)
	return string(out), replaced
}

// lossyUTF8 is ToValidUTF8Lossy without the report.
func lossyUTF8(b []byte) string {
	s, _ := ToValidUTF8Lossy(b)
	return s
}

// toValidUTF8Lossy is ToValidUTF8Lossy for a string.
func toValidUTF8Lossy(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return lossyUTF8([]byte(s))
}

// appendLossyUTF8 appends src to dst as lossyUTF8 converts it and returns
// how many bytes of src it used and whether it replaced any. Unless atEOF it
// stops before a trailing sequence that is incomplete but may still be
// completed by what follows, so a stream can be converted chunk by chunk.
func appendLossyUTF8(dst, src []byte, atEOF bool) (out []byte, used int, replaced bool) {
	i := 0
	for i < len(src) {
		if c := src[i]; c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		n, complete := utf8Prefix(src[i:])
		switch {
		case complete:
			dst = append(dst, src[i:i+n]...)
		case n > 0 && i+n == len(src) && !atEOF:
			return dst, i, replaced
		default:
			dst = append(dst, "\uFFFD"...)
			replaced = true
			n = max(n, 1)
		}
		i += n
	}
	return dst, i, replaced
}

// utf8Prefix returns the length of the longest prefix of b that starts a
// well-formed UTF-8 sequence (Unicode Table 3-7), and whether that prefix is
// a whole character. A byte that cannot start a sequence gives 0.
func utf8Prefix(b []byte) (n int, complete bool) {
	size, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c < 0x80:
		return 1, true
	case c >= 0xC2 && c <= 0xDF:
		size = 2
	case c == 0xE0:
		size, lo = 3, 0xA0
	case c == 0xED: // no surrogates
		size, hi = 3, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		size = 3
	case c == 0xF0:
		size, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		size = 4
	case c == 0xF4: // nothing above U+10FFFF
		size, hi = 4, 0x8F
	default: // continuation bytes, C0, C1 (overlong) and F5..FF
		return 0, false
	}
	for n = 1; n < size && n < len(b); n++ {
		if b[n] < lo || b[n] > hi {
			return n, false
		}
		lo, hi = 0x80, 0xBF
	}
	return n, n == size
}

// incompleteUTF8Tail returns the length of a trailing sequence of b that is
// incomplete but well-formed so far (at most 3 bytes), 0 if there is none.
func incompleteUTF8Tail(b []byte) int {
	for k := 1; k <= 3 && k <= len(b); k++ {
		c := b[len(b)-k]
		if c < utf8.RuneSelf {
			return 0
		}
		if c >= 0xC0 { // a lead byte (or an invalid one)
			if n, complete := utf8Prefix(b[len(b)-k:]); n == k && !complete {
				return k
			}
			return 0
		}
	}
	return 0
}
