package data

import (
	"bytes"
	"encoding/hex"
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

// TestLossyUTF8Python compares with what Python 3 decoded for 500 inputs
// built from the bytes at the edges of Unicode's Table 3-7.
func TestLossyUTF8Python(t *testing.T) {
	b, err := os.ReadFile("testdata/lossy_utf8.txt")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		inHex, wantHex, _ := strings.Cut(line, " ")
		in, err1 := hex.DecodeString(inHex)
		want, err2 := hex.DecodeString(wantHex)
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", line)
		}
		if got := lossyUTF8(in); got != string(want) {
			t.Errorf("lossyUTF8(%q) = %q, Python gives %q", in, got, want)
		}
		n++
	}
	if n != 500 {
		t.Errorf("%d cases, want 500", n)
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
