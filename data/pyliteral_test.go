package data

import "testing"

func TestParsePyLiteral(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{`'a'`, "a", false},
		{`"it's"`, "it's", false},
		{`'it\'s'`, "it's", false},
		{`'"'`, `"`, false},
		{`'\\'`, `\`, false},
		{`'\n\t\r'`, "\n\t\r", false},
		{`'\a\b\f\v'`, "\a\b\f\v", false},
		{`'\x00\x7f'`, "\x00\x7f", false},
		{`'\xe9'`, "é", false}, // str: \xe9 is U+00E9, encoded as UTF-8
		{`b'\xe9'`, "\xe9", false},
		{`b'\xe4\xb8'`, "\xe4\xb8", false},
		{`B"x\x80"`, "x\x80", false},
		{`'\u4f60\u597d'`, "你好", false},
		{`'\U0001F600'`, "😀", false},
		{`b'\u4f60'`, `\u4f60`, false}, // not an escape in bytes
		{`'你好'`, "你好", false},
		{`'\101\0'`, "A\x00", false},
		{`'\q'`, `\q`, false}, // unknown escapes keep the backslash
		{`r'\n'`, `\n`, false},
		{`u'x'`, "x", false},
		{`' '`, " ", false},
		{`''`, "", false},
		{`'abc`, "", true},
		{`'abc"`, "", true},
		{`'a'b'`, "", true},
		{`'\x4'`, "", true},
		{`'\xzz'`, "", true},
		{`'\ud800'`, "", true},
		{`'\U00110000'`, "", true},
		{`'\N{DASH}'`, "", true},
		{`b'é'`, "", true},
		{`f'x'`, "", true},
		{`x`, "", true},
		{`'a\'`, "", true},
		{`'''a'''`, "", true},
		{`b'\777'`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePyLiteral(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parsePyLiteral(%s) error %v, want error %v", tt.in, err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("parsePyLiteral(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
