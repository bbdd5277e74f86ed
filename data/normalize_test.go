package data

import (
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

var normForms = []struct {
	name string
	f    norm.Form
}{{"NFC", norm.NFC}, {"NFD", norm.NFD}, {"NFKC", norm.NFKC}, {"NFKD", norm.NFKD}}

// TestRefNormalizeSegment checks the step-by-step normalization (used where
// Go's package would add a grapheme joiner) against Go's package where that
// adds none and composes right: every code point alone, decomposed, and
// with marks after it.
func TestRefNormalizeSegment(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 5))
	marks := []string{"\u0301", "\u0323", "\u0334", "\u0308", "\u093c", "\u094d", "\u05b0", "\u0345", "\u0344", "\u302a", "\u1161", "\u11a8", "\u0cd5"}
	bad := 0
	for c := rune(0); c < 0x30000; c++ {
		if c >= 0xD800 && c <= 0xDFFF {
			continue
		}
		s := string(c)
		if norm.NFD.String(s) == s && c%61 != 0 {
			continue
		}
		in := []string{s, norm.NFD.String(s), s + marks[r.IntN(len(marks))] + marks[r.IntN(len(marks))]}
		for _, x := range in {
			if indexNormUnknown(x) >= 0 || indexFunc(x, &composeBugLead, isGoComposeBug) >= 0 {
				continue
			}
			for _, f := range normForms {
				if got, want := refNormalizeSegment(f.f, x), f.f.String(x); got != want {
					if bad++; bad < 10 {
						t.Errorf("%s %+q: %+q, Go's package %+q", f.name, x, got, want)
					}
				}
			}
		}
	}
}

// TestRefNormalize checks the cases the reference differs from Go's package
// in: a mark Unicode 9.0 does not have keeps its place, a long run of marks
// is ordered and composed with no grapheme joiner, and no wrong compositions
// (tokenizers 0.23.2 gives each want).
func TestRefNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a\u07fd\u0334", "a\u07fd\u0334"},               // U+07FD (Unicode 11): not reordered
		{"a\u0334\u07fd", "a\u0334\u07fd"},               // nor the other way round
		{"e\u0301\u1df6\u0323", "é\u1df6\u0323"},         // U+1DF6 (Unicode 10) stops composition
		{"\U00011935\U00011930", "\U00011935\U00011930"}, // Dives Akuru (Unicode 13): no composition
		{"a\u0301\u0334", "á\u0334"},                     // Unicode 9.0 marks still reorder and compose
		{"a" + strings.Repeat("\u0301", 35), "á" + strings.Repeat("\u0301", 34)},
		{"a" + strings.Repeat("\u0301", 30) + "\u0323", "ạ" + strings.Repeat("\u0301", 30)},
		{"x" + strings.Repeat("\u0301", 20) + "\u07fd" + strings.Repeat("\u0323", 40) + "\u0301", "x" + strings.Repeat("\u0301", 20) + "\u07fd" + strings.Repeat("\u0323", 40) + "\u0301"},
		{"\U00011f21\u0345", "\U00011f21\u0345"},                           // Go's package: U+1F91
		{"\U00020061\u0301\u0323", "\U00020061\u0323\u0301"},               // Go's package: U+1E09 and a wrong order
		{"D\U00011127\u05b0\u0308\u0323", "D\U00011127\u05b0\u0323\u0308"}, // Go's package: U+1E0C U+11127 U+05B0 U+0308
	}
	for _, tt := range tests {
		if got := refNormalize(norm.NFC, tt.in); got != tt.want {
			t.Errorf("refNormalize(NFC, %+q) = %+q, want %+q", tt.in, got, tt.want)
		}
	}
	// NFKC decomposes U+317D to U+1132, which Go's package then composes
	// with U+11127 as if it were U+11132 (tokenizers' NFKC: U+1132 U+11127).
	if got, want := refNormalize(norm.NFKC, "\u317d\U00011127"), "\u1132\U00011127"; got != want {
		t.Errorf("refNormalize(NFKC, U+317D U+11127) = %+q, want %+q", got, want)
	}
}

// FuzzRefNormalize checks that refNormalize gives valid, normalized text
// (normalizing again changes nothing) and equals Go's package wherever the
// text holds no code point newer than Unicode 9.0, none of refGoComposeBug
// and no long run of marks.
func FuzzRefNormalize(f *testing.F) {
	f.Add("a\u07fd\u0334e\u0301" + strings.Repeat("\u0323", 33))
	f.Add("\u1100\u1161\u11a8 ạ\u0302")
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		for _, form := range normForms {
			got := refNormalize(form.f, s)
			if again := refNormalize(form.f, got); again != got {
				t.Fatalf("%s %+q: %+q, again %+q", form.name, s, got, again)
			}
			if want := form.f.String(s); indexNormUnknown(s) < 0 && indexFunc(s, &composeBugLead, isGoComposeBug) < 0 &&
				strings.Count(want, cgj) == strings.Count(s, cgj) && got != want {
				t.Fatalf("%s %+q: %+q, Go's package %+q", form.name, s, got, want)
			}
		}
	})
}
