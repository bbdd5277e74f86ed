//go:build ignore

// gen_unicode.go writes unicode_tables.go: the character data Hugging Face
// tokenizers 0.23.2 uses for GPT-NeoX's tokenizer, read off the reference
// itself through testdata/neox_ref.js, so the tables are what the released
// library does rather than what some Unicode version says:
//
//   - refLetter, refNumber, refSpace: \p{L}, \p{N} and \s of the ByteLevel
//     pre-tokenizer's regex (Oniguruma, bundled by the onig crate). They are
//     Unicode 16.0's: every code point is probed.
//   - refNormUnknown: the code points Go's golang.org/x/text/unicode/norm
//     (Unicode 15.0) normalizes but tokenizers' normalizer (the
//     unicode-normalization-alignments crate, older tables) leaves alone as
//     unassigned. Every code point that has a decomposition, a nonzero
//     combining class or takes part in a composition in Go's tables is
//     probed.
//   - refGoComposeBug: the code points Go's package wrongly composes with a
//     following mark: its composition lookup keys on the low 16 bits of both
//     runes, so U+11F21 U+0345 becomes U+1F91 (ἡ U+1F21 with ypogegrammeni)
//     and, in NFKC, U+317D U+11127 becomes U+1112F. Found by trying every
//     code point whose low 16 bits are those of a composing starter, and
//     every one with a decomposition, with every mark that composes.
//   - refGoMaybeStarter: the characters of combining class 0 that compose
//     with a preceding one (U+11127, U+0CD5, U+09BE, ...). Go's package
//     does not treat them as starters when it checks whether a later mark is
//     blocked, so D U+11127 U+0323 becomes U+1E0C U+11127.
//
// Run from data/ with the reference installed (npm install --ignore-scripts
// tokenizers@0.23.2; NODE_PATH pointing at its node_modules):
//
//	NODE_PATH=/tmp/tokref/node_modules go run gen_unicode.go
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"go/format"
	"log"
	"os"
	"os/exec"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

const vocab = "vocab/20B_tokenizer.json"

func ref(mode string, inputs []string, out any) {
	in := make([]string, len(inputs))
	for i, s := range inputs {
		in[i] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	b, _ := json.Marshal(in)
	cmd := exec.Command("node", "testdata/neox_ref.js", mode, vocab)
	cmd.Stdin, cmd.Stderr = bytes.NewReader(b), os.Stderr
	res, err := cmd.Output()
	if err != nil {
		log.Fatalf("node testdata/neox_ref.js %s: %v", mode, err)
	}
	if err := json.Unmarshal(res, out); err != nil {
		log.Fatalf("node testdata/neox_ref.js %s: %v", mode, err)
	}
}

func refStrings(mode string, inputs []string) []string {
	var b64 []string
	ref(mode, inputs, &b64)
	out := make([]string, len(b64))
	for i, s := range b64 {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			log.Fatal(err)
		}
		out[i] = string(b)
	}
	return out
}

// byteLevel undoes GPT-2's bytes_to_unicode.
var byteLevel = func() map[rune]byte {
	m := map[rune]byte{}
	n := rune(0)
	for b := range 256 {
		if b >= '!' && b <= '~' || b >= 0xa1 && b <= 0xac || b >= 0xae && b <= 0xff {
			m[rune(b)] = byte(b)
		} else {
			m[256+n] = byte(b)
			n++
		}
	}
	return m
}()

func unByteLevel(s string) string {
	var b []byte
	for _, r := range s {
		b = append(b, byteLevel[r])
	}
	return string(b)
}

func allRunes() []rune {
	var rs []rune
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r < 0xD800 || r > 0xDFFF {
			rs = append(rs, r)
		}
	}
	return rs
}

// pretokPieces returns, for each probe built as prefix+c+"!", the set of
// pieces the reference's pre-tokenizer cuts.
func pretokPieces(prefix string, rs []rune) map[string]bool {
	const chunk = 1 << 14
	var inputs []string
	for i := 0; i < len(rs); i += chunk {
		var sb strings.Builder
		for _, r := range rs[i:min(i+chunk, len(rs))] {
			sb.WriteString(prefix + string(r) + "!")
		}
		inputs = append(inputs, sb.String())
	}
	var pieces [][]string
	ref("pretok", inputs, &pieces)
	set := map[string]bool{}
	for _, ps := range pieces {
		for _, p := range ps {
			set[unByteLevel(p)] = true
		}
	}
	return set
}

func categories() (letter, number, space []rune) {
	rs := allRunes()
	afterA, after1 := pretokPieces("a", rs), pretokPieces("1", rs)
	for r := range rune(0x80) { // ASCII: as Go's unicode package, checked below
		switch {
		case unicode.IsLetter(r):
			letter = append(letter, r)
		case unicode.IsNumber(r):
			number = append(number, r)
		case unicode.IsSpace(r):
			space = append(space, r)
		}
	}
	for _, r := range rs {
		c := string(r)
		switch {
		case afterA["a"+c]:
			letter = append(letter, r)
		case after1["1"+c]:
			number = append(number, r)
		case afterA[c] && after1[c]:
			space = append(space, r)
		}
	}
	var asciiProbe []string
	for r := rune(0x20); r < 0x7f; r++ {
		asciiProbe = append(asciiProbe, "a"+string(r)+"!", "1"+string(r)+"!")
	}
	var ap [][]string
	ref("pretok", asciiProbe, &ap)
	for i, r := 0, rune(0x20); r < 0x7f; i, r = i+2, r+1 {
		if r == ' ' || r == '\'' {
			continue // the " ?" prefix and the contractions
		}
		wantL, wantN := len(ap[i]) == 1 || ap[i][0] == "a"+string(r), ap[i+1][0] == "1"+string(r)
		if wantL != unicode.IsLetter(r) || wantN != unicode.IsNumber(r) {
			log.Fatalf("ASCII %q: reference letter %v number %v", r, wantL, wantN)
		}
	}
	return
}

// normProbe is a string to normalize and the code points it tests.
type normProbe struct {
	s     string
	nfkc  bool
	tests []rune
}

func relevant(r rune) bool {
	s := string(r)
	p := norm.NFC.PropertiesString(s)
	return p.CCC() != 0 || !p.BoundaryBefore() || !p.BoundaryAfter() ||
		norm.NFD.String(s) != s || norm.NFKD.String(s) != s
}

func normProbes() []normProbe {
	var probes []normProbe
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF || !relevant(r) {
			continue
		}
		s := string(r)
		probes = append(probes, normProbe{s, false, []rune{r}}, normProbe{s, true, []rune{r}})
		switch ccc := norm.NFC.PropertiesString(s).CCC(); {
		case ccc > 1:
			probes = append(probes, normProbe{"-" + s + "\u0334", false, []rune{r}})
		case ccc == 1:
			probes = append(probes, normProbe{"-\u0301" + s, false, []rune{r}})
		}
		if d := norm.NFD.String(s); d != s && norm.NFC.String(d) == s {
			// r is a composite NFC keeps: its decomposition must compose.
			probes = append(probes, normProbe{d, false, append([]rune{r}, []rune(d)...)})
		}
	}
	return probes
}

func normalizeWithUnknown(f norm.Form, unknown map[rune]bool, s string) string {
	var sb strings.Builder
	start := 0
	for i, r := range s {
		if unknown[r] {
			sb.WriteString(f.String(s[start:i]))
			sb.WriteRune(r)
			start = i + utf8.RuneLen(r)
		}
	}
	sb.WriteString(f.String(s[start:]))
	return sb.String()
}

func normUnknown() []rune {
	probes := normProbes()
	var nfc, nfkc []string
	for _, p := range probes {
		if p.nfkc {
			nfkc = append(nfkc, p.s)
		} else {
			nfc = append(nfc, p.s)
		}
	}
	refNFC, refNFKC := refStrings("nfc", nfc), refStrings("nfkc", nfkc)
	want := make([]string, len(probes))
	for i, j, k := 0, 0, 0; i < len(probes); i++ {
		if probes[i].nfkc {
			want[i], k = refNFKC[k], k+1
		} else {
			want[i], j = refNFC[j], j+1
		}
	}
	form := func(p normProbe) norm.Form {
		if p.nfkc {
			return norm.NFKC
		}
		return norm.NFC
	}
	unknown := map[rune]bool{}
	for i, p := range probes {
		if form(p).String(p.s) == want[i] {
			continue
		}
		if len(p.tests) == 1 {
			unknown[p.tests[0]] = true
			continue
		}
		// A composition the reference does not make: the composite, and
		// the components nothing else tests (starters without a
		// decomposition) are unknown to it.
		for _, r := range p.tests {
			if pr := norm.NFC.PropertiesString(string(r)); r == p.tests[0] || pr.CCC() == 0 && norm.NFD.String(string(r)) == string(r) {
				unknown[r] = true
			}
		}
	}
	bad := 0
	for i, p := range probes {
		if got := normalizeWithUnknown(form(p), unknown, p.s); got != want[i] {
			bad++
			log.Printf("still differs: %+q: %+q, reference %+q", p.s, got, want[i])
		}
	}
	log.Printf("normalization: %d probes, %d code points unknown to the reference, %d probes still differ", len(probes), len(unknown), bad)
	if bad > 0 {
		log.Fatal("the unknown set does not explain the reference")
	}
	var rs []rune
	for r := range unknown {
		rs = append(rs, r)
	}
	slices.Sort(rs)
	return rs
}

func goComposeBug(unknown []rune) []rune {
	var marks []rune               // characters that compose with a preceding one
	firstsLow := map[uint16]bool{} // low 16 bits of the starters that compose
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		s := string(r)
		if !norm.NFC.PropertiesString(s).BoundaryBefore() && !(r >= 0x1161 && r <= 0x11C2) && // Hangul jamo compose apart
			!slices.Contains(unknown, r) { // never next to another character: normalized alone
			marks = append(marks, r)
		}
		if d := norm.NFD.String(s); d != s && norm.NFC.String(d) == s {
			rs := []rune(d)
			if a := []rune(norm.NFC.String(string(rs[:len(rs)-1]))); len(rs) > 1 && len(a) == 1 {
				firstsLow[uint16(a[0])] = true
			}
		}
	}
	var bug []rune
	for a := rune(0); a <= unicode.MaxRune; a++ {
		if a >= 0xD800 && a <= 0xDFFF || a >= 0xAC00 && a <= 0xD7A3 {
			continue
		}
		if s := string(a); !firstsLow[uint16(a)] && norm.NFKD.String(s) == s || slices.Contains(unknown, a) {
			continue
		}
		for _, b := range marks {
			x := string(a) + string(b)
			if norm.NFD.String(norm.NFC.String(x)) != norm.NFD.String(x) || norm.NFKD.String(norm.NFKC.String(x)) != norm.NFKD.String(x) {
				bug = append(bug, a)
				break
			}
		}
	}
	log.Printf("Go's package composes %d code points wrongly", len(bug))
	return bug
}

func maybeStarters() []rune {
	var rs []rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF || r >= 0x1161 && r <= 0x1175 || r >= 0x11A8 && r <= 0x11C2 {
			continue // Go's package composes Hangul apart, and right (see neoxRefInputs)
		}
		for _, f := range []norm.Form{norm.NFC, norm.NFKC} {
			if p := f.PropertiesString(string(r)); p.CCC() == 0 && !p.BoundaryBefore() {
				rs = append(rs, r)
				break
			}
		}
	}
	log.Printf("%d characters of class 0 compose with a preceding one", len(rs))
	return rs
}

func rangeTable(name, doc string, rs []rune) string {
	var r16, r32 []string
	for i := 0; i < len(rs); {
		j := i
		for j+1 < len(rs) && rs[j+1] == rs[j]+1 {
			j++
		}
		if rs[j] <= 0xFFFF {
			r16 = append(r16, fmt.Sprintf("{%#04x, %#04x, 1},", rs[i], rs[j]))
		} else if rs[i] > 0xFFFF {
			r32 = append(r32, fmt.Sprintf("{%#x, %#x, 1},", rs[i], rs[j]))
		} else {
			r16 = append(r16, fmt.Sprintf("{%#04x, 0xffff, 1},", rs[i]))
			r32 = append(r32, fmt.Sprintf("{0x10000, %#x, 1},", rs[j]))
		}
		i = j + 1
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\nvar %s = &unicode.RangeTable{\n", doc, name)
	if len(r16) > 0 {
		fmt.Fprintf(&sb, "R16: []unicode.Range16{\n%s\n},\n", strings.Join(r16, "\n"))
	}
	if len(r32) > 0 {
		fmt.Fprintf(&sb, "R32: []unicode.Range32{\n%s\n},\n", strings.Join(r32, "\n"))
	}
	sb.WriteString("}\n\n")
	return sb.String()
}

func diff(name string, rs []rune, goTable func(rune) bool) {
	set := map[rune]bool{}
	for _, r := range rs {
		set[r] = true
	}
	more, fewer := 0, 0
	for r := rune(0); r <= unicode.MaxRune; r++ {
		switch {
		case set[r] && !goTable(r):
			more++
		case !set[r] && goTable(r):
			fewer++
		}
	}
	log.Printf("%s: %d code points, %d more than Go's unicode package, %d fewer", name, len(rs), more, fewer)
}

func main() {
	letter, number, space := categories()
	diff("letter", letter, unicode.IsLetter)
	diff("number", number, unicode.IsNumber)
	diff("space", space, unicode.IsSpace)
	unknown := normUnknown()
	bug := goComposeBug(unknown)
	var sb strings.Builder
	sb.WriteString(`// Code generated by gen_unicode.go from Hugging Face tokenizers 0.23.2; DO NOT EDIT.

package data

import "unicode"

`)
	sb.WriteString(rangeTable("refLetter", "// refLetter is \\p{L} of tokenizers' ByteLevel pre-tokenizer regex (Unicode 16.0).", letter))
	sb.WriteString(rangeTable("refNumber", "// refNumber is \\p{N} of tokenizers' ByteLevel pre-tokenizer regex (Unicode 16.0).", number))
	sb.WriteString(rangeTable("refSpace", "// refSpace is \\s of tokenizers' ByteLevel pre-tokenizer regex.", space))
	sb.WriteString(rangeTable("refNormUnknown", "// refNormUnknown holds the code points that Go's norm package (Unicode 15.0)\n// normalizes and tokenizers' normalizer leaves alone as unassigned.", unknown))
	sb.WriteString(rangeTable("refGoComposeBug", "// refGoComposeBug holds the code points that Go's norm package composes with\n// a following mark although they compose with nothing.", bug))
	sb.WriteString(rangeTable("refGoMaybeStarter", "// refGoMaybeStarter holds the characters of combining class 0 that compose\n// with a preceding one.", maybeStarters()))
	src, err := format.Source([]byte(sb.String()))
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("unicode_tables.go", src, 0o644); err != nil {
		log.Fatal(err)
	}
}
