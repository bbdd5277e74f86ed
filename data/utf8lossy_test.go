package data

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

// TestLossyUTF8 checks one U+FFFD per maximal invalid subsequence, the rule
// of Python's errors="replace" and Rust's from_utf8_lossy (Go's
// strings.ToValidUTF8 gives one for a whole run).
func TestLossyUTF8(t *testing.T) {
	const r = "\uFFFD"
	tests := []struct {
		name, in, want string
	}{
		{"valid", "a\u00e9\u4e2d\U0001F600", "a\u00e9\u4e2d\U0001F600"},
		{"two bad bytes", "\xff\xff", r + r},
		{"truncated 3-byte", "\xe2\x82", r},
		{"truncated then ASCII", "\xe2\x82a", r + "a"},
		{"truncated 4-byte", "\xf0\x9f\x98", r},
		{"surrogate", "\xed\xa0\x80", r + r + r},
		{"above U+10FFFF", "\xf4\x90\x80\x80", r + r + r + r},
		{"overlong", "\xc0\xaf", r + r},
		{"overlong 3-byte", "\xe0\x80\xaf", r + r + r},
		{"lone continuation", "a\x80b", "a" + r + "b"},
		{"lead then lead", "\xe2\xe2\x82\xac", r + "\u20ac"},
		{"F5 and up", "\xf5\x80", r + r},
		{"truncated at end", "ok\xf4\x8f\xbf", "ok" + r},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := lossyUTF8([]byte(tt.in)); got != tt.want {
				t.Errorf("lossyUTF8(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzLossyUTF8 checks the output is valid, valid input is unchanged, and
// converting in chunks (as Prepare streams a file) gives the same text.
func FuzzLossyUTF8(f *testing.F) {
	f.Add([]byte("a\xe2\x82\xacb\xed\xa0\x80\xf0\x9f"), 3)
	f.Fuzz(func(t *testing.T, b []byte, chunk int) {
		whole := lossyUTF8(b)
		if !utf8.ValidString(whole) {
			t.Fatalf("lossyUTF8(%q) = %q is not valid UTF-8", b, whole)
		}
		if utf8.Valid(b) && whole != string(b) {
			t.Fatalf("lossyUTF8 changed valid %q to %q", b, whole)
		}
		chunk = 1 + max(chunk, -chunk)%8
		var out, pending []byte
		for i := 0; i < len(b); i += chunk {
			pending = append(pending, b[i:min(i+chunk, len(b))]...)
			var used int
			out, used, _ = appendLossyUTF8(out, pending, false)
			if len(pending)-used > 3 || len(pending)-used != incompleteUTF8Tail(pending) {
				t.Fatalf("held back %d bytes of %q, incompleteUTF8Tail says %d", len(pending)-used, pending, incompleteUTF8Tail(pending))
			}
			pending = append(pending[:0], pending[used:]...)
		}
		out, _, _ = appendLossyUTF8(out, pending, true)
		if !bytes.Equal(out, []byte(whole)) {
			t.Fatalf("in chunks of %d: %q, whole: %q", chunk, out, whole)
		}
	})
}

// TestToValidUTF8Lossy compares with Python's decode("utf-8", "replace")
// (testdata/utf8_lossy.py; Node's TextDecoder agrees on all of them) on
// truncated sequences, overlongs, surrogates, code points above U+10FFFF and
// lone continuation bytes.
func TestToValidUTF8Lossy(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"\xff\xff", "\uFFFD\uFFFD"},
		{"\xe2\x82", "\uFFFD"},
		{"\xe2\x82a", "\uFFFDa"},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD"},
		{"\xf4\x90\x80\x80", "\uFFFD\uFFFD\uFFFD\uFFFD"},
		{"\xf0\x9f\x98\xf0\x9f\x98\x80", "\uFFFD😀"},
		{"ok", "ok"},
	} {
		got, replaced := ToValidUTF8Lossy([]byte(tt.in))
		if got != tt.want || replaced != (tt.in != tt.want) {
			t.Errorf("ToValidUTF8Lossy(%q) = %+q, %v; want %+q", tt.in, got, replaced, tt.want)
		}
	}
	raw, err := os.ReadFile("testdata/utf8_lossy.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases [][2]string
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	bad := 0
	for _, c := range cases {
		in, _ := base64.StdEncoding.DecodeString(c[0])
		want, _ := base64.StdEncoding.DecodeString(c[1])
		if got, _ := ToValidUTF8Lossy(in); got != string(want) {
			bad++
			if bad < 10 {
				t.Errorf("ToValidUTF8Lossy(%q) = %+q, want %+q", in, got, want)
			}
		}
	}
	if bad > 0 || len(cases) < 1000 {
		t.Errorf("%d of %d cases differ from Python", bad, len(cases))
	}
}

func FuzzToValidUTF8Lossy(f *testing.F) {
	f.Add([]byte("\xff\xffa\xe2\x82"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, replaced := ToValidUTF8Lossy(b)
		if !utf8.ValidString(s) || replaced == utf8.Valid(b) {
			t.Fatalf("%q -> %q, %v", b, s, replaced)
		}
		if n := strings.Count(s, "\uFFFD") - strings.Count(string(b), "\uFFFD"); n > len(b) || (replaced && n < 1) {
			t.Fatalf("%q -> %q: %d replacements", b, s, n)
		}
	})
}
