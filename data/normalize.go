package data

// Regenerate unicode_tables.go with the reference installed (see gen_unicode.go):
//go:generate go run gen_unicode.go

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Hugging Face tokenizers normalizes with the unicode-normalization-alignments
// crate, whose tables are Unicode 9.0's; golang.org/x/text/unicode/norm has
// Unicode 15.0's. refNormalize gives the reference's result with Go's package:
//
//   - Code points Go normalizes but the reference does not know
//     (refNormUnknown, from gen_unicode.go: marks such as U+07FD or U+1DF6,
//     added after 9.0) are unassigned there: combining class 0, no
//     decomposition, no composition. Such a code point is a starter that
//     combines with nothing, so the text normalizes independently on each
//     side of it and it stays as it is.
//   - Go's package puts U+034F COMBINING GRAPHEME JOINER after 30
//     non-starters in a row (UAX #15's Stream-Safe Text Format); the
//     reference does not. And Go's package looks compositions up by the low
//     16 bits of the two runes, so it composes U+11F21 U+0345 to U+1F91
//     (refGoComposeBug lists the 6,016 code points it does this to); and it
//     lets a mark compose across a character of class 0 that composes with a
//     preceding one (refGoMaybeStarter): D U+11127 U+0323 gives U+1E0C
//     U+11127. Where Go adds a joiner or the text holds such a code point,
//     refNormalize normalizes those segments itself (refNormalizeSegment).
func refNormalize(f norm.Form, s string) string {
	composing := f == norm.NFC || f == norm.NFKC
	var sb strings.Builder
	done := 0 // s[:done] is in sb
	for k := 0; ; {
		at := indexFunc(s[k:], &specialLead, isSpecial)
		if at < 0 {
			break
		}
		at += k
		r, n := utf8.DecodeRuneInString(s[at:])
		k = at + n
		if isNormUnknown(r) {
			sb.WriteString(normalizeNoCGJ(f, s[done:at]))
			sb.WriteString(s[at:k])
			done = k
			continue
		}
		// r is in refGoComposeBug or refGoMaybeStarter: Go's package can
		// compose wrongly only when another character follows in r's
		// normalization segment. U+09BE BENGALI VOWEL SIGN AA, in most
		// Bengali words, is nearly always last in its segment.
		if !composing || k == len(s) || f.PropertiesString(s[k:]).BoundaryBefore() {
			continue
		}
		i, j := at, k // the segment
		for i > done && !f.PropertiesString(s[i:]).BoundaryBefore() {
			_, n := utf8.DecodeLastRuneInString(s[:i])
			i -= n
		}
		for j < len(s) && !f.PropertiesString(s[j:]).BoundaryBefore() {
			r, n := utf8.DecodeRuneInString(s[j:])
			if isNormUnknown(r) {
				break
			}
			j += n
		}
		sb.WriteString(normalizeNoCGJ(f, s[done:i]))
		sb.WriteString(refNormalizeSegment(f, s[i:j]))
		done, k = j, j
	}
	if done == 0 {
		return normalizeNoCGJ(f, s) // the usual case
	}
	sb.WriteString(normalizeNoCGJ(f, s[done:]))
	return sb.String()
}

const cgj = "\u034F"

// normUnknownLead and composeBugLead mark the UTF-8 lead bytes of the code
// points in refNormUnknown, and in refGoComposeBug and refGoMaybeStarter.
var normUnknownLead, composeBugLead = leadBytes(refNormUnknown), orLeads(leadBytes(refGoComposeBug), leadBytes(refGoMaybeStarter))

func orLeads(a, b [256]bool) [256]bool {
	for i := range a {
		a[i] = a[i] || b[i]
	}
	return a
}

// isGoComposeBug reports whether Go's package may compose wrongly in the
// normalization segment of r.
func isGoComposeBug(r rune) bool {
	if r <= 0xFFFF {
		return goComposeBugBMP.has(r)
	}
	return unicode.Is(refGoComposeBug, r) || unicode.Is(refGoMaybeStarter, r)
}

// bmpSet is a set of code points below U+10000, a bit each.
type bmpSet [1 << 16 / 64]uint64

func (b *bmpSet) has(r rune) bool { return b[r>>6]&(1<<(r&63)) != 0 }

func newBMPSet(tables ...*unicode.RangeTable) *bmpSet {
	b := new(bmpSet)
	for _, t := range tables {
		for _, rg := range t.R16 {
			for c := rune(rg.Lo); c <= rune(rg.Hi); c += rune(rg.Stride) {
				b[c>>6] |= 1 << (c & 63)
			}
		}
	}
	return b
}

var (
	goComposeBugBMP = newBMPSet(refGoComposeBug, refGoMaybeStarter)
	normUnknownBMP  = newBMPSet(refNormUnknown)
	specialBMP      = newBMPSet(refGoComposeBug, refGoMaybeStarter, refNormUnknown)
	specialLead     = orLeads(normUnknownLead, composeBugLead)
)

// isSpecial reports whether r is in refNormUnknown, refGoComposeBug or
// refGoMaybeStarter.
func isSpecial(r rune) bool {
	if r <= 0xFFFF {
		return specialBMP.has(r)
	}
	return unicode.Is(refNormUnknown, r) || unicode.Is(refGoComposeBug, r) || unicode.Is(refGoMaybeStarter, r)
}

func isNormUnknown(r rune) bool {
	if r <= 0xFFFF {
		return normUnknownBMP.has(r)
	}
	return unicode.Is(refNormUnknown, r)
}

func leadBytes(t *unicode.RangeTable) (lead [256]bool) {
	for _, r := range t.R16 {
		for c := rune(r.Lo); c <= rune(r.Hi); c++ {
			lead[utf8.AppendRune(nil, c)[0]] = true
		}
	}
	for _, r := range t.R32 {
		for c := rune(r.Lo); c <= rune(r.Hi); c++ {
			lead[utf8.AppendRune(nil, c)[0]] = true
		}
	}
	return lead
}

// indexNormUnknown returns the index of the first code point of s in
// refNormUnknown, or -1.
func indexNormUnknown(s string) int { return indexFunc(s, &normUnknownLead, isNormUnknown) }

// indexFunc returns the index of the first rune of s that starts with a
// byte marked in lead and satisfies f, or -1.
func indexFunc(s string, lead *[256]bool, f func(rune) bool) int {
	for i := 0; i < len(s); i++ {
		if !lead[s[i]] {
			continue
		}
		if r, _ := utf8.DecodeRuneInString(s[i:]); f(r) {
			return i
		}
	}
	return -1
}

// normalizeNoCGJ is f.String(s) without the grapheme joiners Go's package adds.
func normalizeNoCGJ(f norm.Form, s string) string {
	out := f.String(s)
	if strings.Contains(out, cgj) && strings.Count(out, cgj) != strings.Count(s, cgj) {
		return normalizeSegments(f, s)
	}
	return out
}

// normalizeSegments normalizes s segment by segment: runs of short segments
// with Go's package, long ones (where it would add a grapheme joiner) and
// those where it may compose wrongly with refNormalizeSegment.
func normalizeSegments(f norm.Form, s string) string {
	composing := f == norm.NFC || f == norm.NFKC
	var sb strings.Builder
	sb.Grow(len(s) + len(s)/8)
	chunk, seg := 0, 0 // start of the text not yet written, of the segment
	runes, bug, afterBug := 0, false, false
	flush := func(end int) {
		if runes >= 16 || bug {
			sb.WriteString(f.String(s[chunk:seg]))
			sb.WriteString(refNormalizeSegment(f, s[seg:end]))
			chunk = end
		}
	}
	for i, r := range s {
		if f.PropertiesString(s[i:]).BoundaryBefore() {
			flush(i)
			seg, runes, bug, afterBug = i, 0, false, false
		}
		runes++
		bug = bug || afterBug // something follows a code point Go may compose wrongly
		afterBug = afterBug || composing && composeBugLead[s[i]] && isGoComposeBug(r)
	}
	flush(len(s))
	sb.WriteString(f.String(s[chunk:]))
	return sb.String()
}

// refNormalizeSegment normalizes s by UAX #15's algorithm step by step:
// full decomposition, canonical ordering, and for NFC and NFKC canonical
// composition, taking each character's data from Go's package. It is slow
// and used only where Go's package would add a grapheme joiner.
func refNormalizeSegment(f norm.Form, s string) string {
	decomp, composing := norm.NFD, f == norm.NFC || f == norm.NFKC
	if f == norm.NFKC || f == norm.NFKD {
		decomp = norm.NFKD
	}
	var rs []rune
	for i := 0; i < len(s); {
		_, n := utf8.DecodeRuneInString(s[i:])
		rs = append(rs, []rune(decomp.String(s[i:i+n]))...)
		i += n
	}
	ccc := func(r rune) uint8 { return norm.NFD.PropertiesString(string(r)).CCC() }
	for i := 0; i < len(rs); {
		if ccc(rs[i]) == 0 {
			i++
			continue
		}
		j := i
		for j < len(rs) && ccc(rs[j]) != 0 {
			j++
		}
		slices.SortStableFunc(rs[i:j], func(a, b rune) int { return int(ccc(a)) - int(ccc(b)) })
		i = j
	}
	if !composing {
		return string(rs)
	}
	out := rs[:0]
	starter, last := -1, 0 // index in out of the last starter; class of the last character
	for _, r := range rs {
		c := int(ccc(r))
		if starter >= 0 && (last < c || last == 0 && len(out)-1 == starter) {
			if p, ok := composePair(out[starter], r); ok {
				out[starter] = p
				continue
			}
		}
		if c == 0 {
			starter = len(out)
		}
		last = c
		out = append(out, r)
	}
	return string(out)
}

// composePair returns the primary composite of a and b, if there is one.
func composePair(a, b rune) (rune, bool) {
	s := norm.NFC.String(string(a) + string(b))
	p, n := utf8.DecodeRuneInString(s)
	if n != len(s) || unicode.Is(refNormUnknown, p) ||
		norm.NFD.String(s) != norm.NFD.String(string(a))+string(b) {
		return 0, false
	}
	return p, true
}
