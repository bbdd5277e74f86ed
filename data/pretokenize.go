package data

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// byteLevelChars maps each byte to the printable character GPT-2's byte-level
// BPE uses for it (bytes_to_unicode): printable Latin-1 bytes map to
// themselves, the others to U+0100 upwards in order.
var byteLevelChars, byteLevelBytes = func() ([256]rune, map[rune]byte) {
	var chars [256]rune
	inv := map[rune]byte{}
	n := rune(0)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae && b <= 0xff {
			chars[b] = rune(b)
		} else {
			chars[b] = 256 + n
			n++
		}
		inv[chars[b]] = byte(b)
	}
	return chars, inv
}()

// byteLevelDecode turns a byte-level token string back into bytes; a
// character outside the map stands for its own UTF-8 (as HF's decoder does).
func byteLevelDecode(s string) []byte {
	out := make([]byte, 0, len(s))
	for _, r := range s {
		if b, ok := byteLevelBytes[r]; ok {
			out = append(out, b)
		} else {
			out = utf8.AppendRune(out, r)
		}
	}
	return out
}

// nextPreToken returns the end of the pre-token that starts at s[i], matching
// the GPT-2 pattern HF's ByteLevel pre-tokenizer uses:
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
func nextPreToken(s string, i int) int {
	if s[i] == '\'' {
		for _, c := range [...]string{"s", "t", "re", "ve", "m", "ll", "d"} {
			if strings.HasPrefix(s[i+1:], c) {
				return i + 1 + len(c)
			}
		}
	}
	j := i
	r, n := utf8.DecodeRuneInString(s[i:])
	if r == ' ' && i+1 < len(s) {
		if r2, n2 := utf8.DecodeRuneInString(s[i+1:]); !unicode.IsSpace(r2) {
			j, r, n = i+1, r2, n2
		}
	}
	if cls := runeClass(r); cls != classSpace {
		k := j + n
		for k < len(s) {
			r, n := utf8.DecodeRuneInString(s[k:])
			if runeClass(r) != cls {
				break
			}
			k += n
		}
		return k
	}
	k, last := i, i // last: start of the run's last character
	for k < len(s) {
		r, n := utf8.DecodeRuneInString(s[k:])
		if !unicode.IsSpace(r) {
			break
		}
		last, k = k, k+n
	}
	if k < len(s) && last > i {
		return last // \s+(?!\S) gives back the space before a non-space
	}
	return k
}

const (
	classSpace = iota
	classLetter
	classNumber
	classOther
)

func runeClass(r rune) int {
	switch {
	case unicode.IsSpace(r):
		return classSpace
	case unicode.IsLetter(r):
		return classLetter
	case unicode.IsNumber(r):
		return classNumber
	}
	return classOther
}

// isSpaceBefore reports whether b ends with a whitespace character.
func isSpaceBefore(b []byte) bool {
	r, _ := utf8.DecodeLastRune(b)
	return unicode.IsSpace(r)
}

// addedSet finds added tokens in text, leftmost first and longest at a
// position, as HF's added vocabulary does (Aho-Corasick, LeftmostLongest).
type addedSet struct {
	byFirst *[256][]addedToken // by first byte, longest first; nil if empty
}

type addedToken struct {
	content string
	id      int
}

func (a *addedSet) add(content string, id int) {
	if a.byFirst == nil {
		a.byFirst = new([256][]addedToken)
	}
	list := append(a.byFirst[content[0]], addedToken{content, id})
	for i := len(list) - 1; i > 0 && len(list[i].content) > len(list[i-1].content); i-- {
		list[i], list[i-1] = list[i-1], list[i]
	}
	a.byFirst[content[0]] = list
}

// split calls fn for each piece of s in order: id >= 0 for an added token,
// -1 for text between them.
func (a *addedSet) split(s string, fn func(piece string, id int)) {
	if a.byFirst == nil {
		if s != "" {
			fn(s, -1)
		}
		return
	}
	start := 0
	for i := 0; i < len(s); i++ {
		for _, tok := range a.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], tok.content) {
				if i > start {
					fn(s[start:i], -1)
				}
				fn(tok.content, tok.id)
				i += len(tok.content) - 1
				start = i + 1
				break
			}
		}
	}
	if start < len(s) {
		fn(s[start:], -1)
	}
}
