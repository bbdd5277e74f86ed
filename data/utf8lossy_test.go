package data

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

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
