package cli

import (
	"errors"
	"flag"
	"io"
	"testing"
)

// ParseFlags sorts a command line into the three outcomes the commands map to exit codes:
// help (0), a refusal the flag package printed (2, silent) and a usage error (2, explained).
func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		want  error
		usage bool
	}{
		{"ok", []string{"--n", "3"}, nil, false},
		{"help", []string{"-h"}, flag.ErrHelp, false},
		{"unknown flag", []string{"--nope"}, ErrFlags, false},
		{"bad value", []string{"--n", "x"}, ErrFlags, false},
		{"positional", []string{"--n", "3", "extra"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("t", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.Int("n", 0, "")
			err := ParseFlags(fs, tc.args)
			if tc.usage {
				if !errors.As(err, new(UsageError)) || err.Error() != `unexpected argument "extra"` {
					t.Fatalf("err = %v, want the UsageError unexpected argument \"extra\"", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}
