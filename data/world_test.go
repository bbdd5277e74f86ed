package data

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// worldVocabLine writes a token as the real vocabulary file does: a str
// literal (Python repr) when the bytes are UTF-8, else a bytes literal.
func worldVocabLine(id int, tok []byte) string {
	var lit string
	if utf8.Valid(tok) {
		var b strings.Builder
		b.WriteByte('\'')
		for _, r := range string(tok) {
			switch {
			case r == '\'' || r == '\\':
				b.WriteString(`\` + string(r))
			case r == '\n':
				b.WriteString(`\n`)
			case r < 0x20 || r == 0x7f:
				fmt.Fprintf(&b, `\x%02x`, r)
			default:
				b.WriteRune(r)
			}
		}
		b.WriteByte('\'')
		lit = b.String()
	} else {
		lit = "b'"
		for _, c := range tok {
			lit += fmt.Sprintf(`\x%02x`, c)
		}
		lit += "'"
	}
	return fmt.Sprintf("%d %s %d", id, lit, len(tok))
}

// testWorldVocab is every byte (ids 1..256) and some longer tokens.
var testWorldExtra = []string{"th", "the", " the", "he", " t", "ing", "in", "\n\n", "你", "你好", "\xe4\xbd", "'s", `"x"`, "==", "===="}

func writeWorldVocab(t testing.TB, extra []string) string {
	t.Helper()
	var lines []string
	for c := range 256 {
		lines = append(lines, worldVocabLine(c+1, []byte{byte(c)}))
	}
	for i, s := range extra {
		lines = append(lines, worldVocabLine(257+i, []byte(s)))
	}
	path := filepath.Join(t.TempDir(), "vocab.txt")
	writeFile(t, path, []byte(strings.Join(lines, "\n")+"\n"))
	return path
}

func TestWorldTokenizerEncode(t *testing.T) {
	tok, err := LoadWorldTokenizer(writeWorldVocab(t, testWorldExtra))
	if err != nil {
		t.Fatal(err)
	}
	id := func(s string) int { return 257 + slices.Index(testWorldExtra, s) }
	b := func(c byte) int { return int(c) + 1 }
	tests := []struct {
		in   string
		want []int
	}{
		{"", []int{}},
		{"the", []int{id("the")}},
		{"the the", []int{id("the"), id(" the")}},
		{"thing", []int{id("th"), id("ing")}},
		{"thin", []int{id("th"), id("in")}},
		{"hein", []int{id("he"), id("in")}},
		{" to", []int{id(" t"), b('o')}},
		{"你好你", []int{id("你好"), id("你")}},
		{"你们", []int{id("你"), b(0xe4), b(0xbb), b(0xac)}},
		{"it's", []int{b('i'), b('t'), id("'s")}},
		{"=====", []int{id("===="), b('=')}},
		{"\n\n\n", []int{id("\n\n"), b('\n')}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := tok.Encode(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("Encode(%q) = %v, want %v", tt.in, got, tt.want)
			}
			if got := tok.Decode(tok.Encode(tt.in)); got != tt.in {
				t.Errorf("Decode(Encode(%q)) = %q", tt.in, got)
			}
		})
	}
	if tok.VocabSize() != 65536 || tok.Name() != "world" {
		t.Errorf("VocabSize, Name = %d, %s", tok.VocabSize(), tok.Name())
	}
	if got := tok.Decode([]int{0, id("the"), 0, 99999}); got != "the\uFFFD" {
		t.Errorf("Decode with 0 and an unknown id = %q", got)
	}
}

// randomText mixes ASCII, the tokens' pieces, newlines and multi-byte runes.
func randomText(r *rand.Rand, n int) string {
	pieces := []string{"the", " ", "th", "ing", "\n", "\n\n", "你", "好", "é", "e\u0301", "😀", "'s", "=", "a", "Z", "9", "\t", "  ", "\u00a0", "\u2028"}
	var b strings.Builder
	for range n {
		if r.IntN(4) == 0 {
			b.WriteRune(rune(r.IntN(0x2fff) + 1))
		} else {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
	}
	return strings.ToValidUTF8(b.String(), "?")
}

func TestWorldTokenizerRoundTrip(t *testing.T) {
	tok, err := LoadWorldTokenizer(writeWorldVocab(t, testWorldExtra))
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		s := randomText(r, i%60)
		if got := tok.Decode(tok.Encode(s)); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

// TestPrefixEncoders checks that encoding a document piece by piece, as
// Prepare does, gives the tokens of encoding it whole.
func TestPrefixEncoders(t *testing.T) {
	world, err := LoadWorldTokenizer(writeWorldVocab(t, testWorldExtra))
	if err != nil {
		t.Fatal(err)
	}
	neox := loadTestNeoX(t, testNeoXJSON(t, `{"type": "NFC"}`, nil))
	r := rand.New(rand.NewPCG(3, 4))
	for _, tok := range []Tokenizer{NewByteTokenizer(), world, neox} {
		enc := tok.(prefixEncoder)
		for i := range 100 {
			s := randomText(r, 200) + "\nword\nx" + randomText(r, i)
			want := tok.Encode(s)
			var got []int
			var buf []byte
			for off, chunk := 0, 1+i%13; ; off += chunk {
				end := min(off+chunk, len(s))
				buf = append(buf, s[off:end]...)
				var used int
				got, used = enc.encodePrefix(got, buf, end == len(s))
				buf = buf[:copy(buf, buf[used:])]
				if end == len(s) {
					break
				}
			}
			if !slices.Equal(got, want) || len(buf) != 0 {
				t.Fatalf("%s: piecewise encoding of %q = %v, want %v", tok.Name(), s, got, want)
			}
		}
	}
}

func TestLoadWorldTokenizerErrors(t *testing.T) {
	all := func(extra ...string) string {
		var lines []string
		for c := range 256 {
			lines = append(lines, worldVocabLine(c+1, []byte{byte(c)}))
		}
		return strings.Join(append(lines, extra...), "\n")
	}
	tests := []struct {
		name, file, want string
	}{
		{"length mismatch", all("300 'ab' 3"), "line 257"},
		{"duplicate id", all("256 'ab' 2"), "duplicate id 256"},
		{"duplicate bytes", all("300 'ab' 2", "301 b'ab' 2"), "has the bytes of id 300"},
		{"id 0", all("0 'ab' 2"), "bad id"},
		{"bad literal", all("300 'ab 2"), "unterminated"},
		{"no literal", all("300 2"), "want `<id> <literal> <length>`"},
		{"missing byte", strings.Replace(all(), worldVocabLine(66, []byte("A"))+"\n", "", 1), "no token for byte 0x41"},
		{"empty token", all("300 '' 0"), "0 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "v.txt")
			writeFile(t, path, []byte(tt.file))
			_, err := LoadWorldTokenizer(path)
			if !errors.Is(err, ErrBadVocab) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("LoadWorldTokenizer: %v, want ErrBadVocab with %q", err, tt.want)
			}
		})
	}
	if _, err := LoadWorldTokenizer(filepath.Join(t.TempDir(), "none")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestParseTokenizer(t *testing.T) {
	vocab := writeWorldVocab(t, nil)
	neox := testNeoXJSON(t, `{"type": "NFC"}`, nil)
	tests := []struct {
		spec, name string
		wantErr    error
	}{
		{"byte", "byte", nil},
		{"world:" + vocab, "world", nil},
		{"neox:" + neox, "neox", nil},
		{"world", "world", nil},
		{"neox", "neox", nil},
		{"world:", "", ErrBadConfig},
		{"neox:", "", ErrBadConfig},
		{"gpt2:x", "", ErrBadConfig},
		{"byte:x", "", ErrBadConfig},
		{"world:/nonexistent", "", os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			tok, err := ParseTokenizer(tt.spec)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("ParseTokenizer: %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || tok.Name() != tt.name {
				t.Errorf("ParseTokenizer = %v, %v, want %s", tok, err, tt.name)
			}
		})
	}
}

func TestByteTokenizer(t *testing.T) {
	tok := NewByteTokenizer()
	r := rand.New(rand.NewPCG(5, 6))
	for i := range 200 {
		s := randomText(r, i)
		ids := tok.Encode(s)
		if len(ids) != len(s) || tok.Decode(ids) != s {
			t.Fatalf("round trip of %q failed", s)
		}
	}
	if tok.VocabSize() != 256 || tok.Decode([]int{300}) != "\uFFFD" {
		t.Error("VocabSize or Decode of an unknown id")
	}
}

// TestParseWorldLineRealFormat parses lines copied verbatim from
// rwkv_vocab_v20230424.txt, covering each quoting style the file uses.
func TestParseWorldLineRealFormat(t *testing.T) {
	tests := []struct {
		line string
		id   int
		want string
	}{
		{`1 '\x00' 1`, 1, "\x00"},
		{`11 '\n' 1`, 11, "\n"},
		{`33 ' ' 1`, 33, " "},
		{`35 '"' 1`, 35, `"`},
		{`40 "'" 1`, 40, "'"},
		{`93 '\\' 1`, 93, `\`},
		{`128 '\x7f' 1`, 128, "\x7f"},
		{`129 b'\x80' 1`, 129, "\x80"},
		{`263 '\r\n' 2`, 263, "\r\n"},
		{`274 " '" 2`, 274, " '"},
		{`379 '"\'' 2`, 379, `"'`},
		{`435 '\'"' 2`, 435, `'"`},
		{`454 "'\\" 2`, 454, `'\`},
		{`48305 ' 조선' 7`, 48305, " 조선"},
		{`48336 "'était" 7`, 48336, "'était"},
		{`48338 ',’’' 7`, 48338, ",’’"},
	}
	for _, tt := range tests {
		id, got, err := parseWorldLine(tt.line)
		if err != nil || id != tt.id || string(got) != tt.want {
			t.Errorf("parseWorldLine(%s) = %d, %q, %v; want %d, %q", tt.line, id, got, err, tt.id, tt.want)
		}
	}
}
