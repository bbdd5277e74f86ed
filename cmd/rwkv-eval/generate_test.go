package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
)

// TestGenerateSamplingFlagsRefused: out-of-range sampling flags exit 2 with a message naming
// the flag, before the model is read.
func TestGenerateSamplingFlagsRefused(t *testing.T) {
	f := setup(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--penalty-decay", "-0.5"}, "--penalty-decay -0.5"},
		{[]string{"--penalty-decay", "1.01"}, "--penalty-decay 1.01"},
		{[]string{"--penalty-decay", "NaN"}, "--penalty-decay NaN"},
		{[]string{"--alpha-presence", "NaN"}, "--alpha-presence NaN"},
		{[]string{"--alpha-frequency", "Inf"}, "--alpha-frequency +Inf"},
		{[]string{"--temperature", "NaN"}, "--temperature NaN"},
		{[]string{"--top-p", "NaN"}, "--top-p NaN"},
		{[]string{"--top-p", "-1"}, "--top-p -1"},
		{[]string{"--top-k", "-1"}, "--top-k -1"},
		{[]string{"--ban", "1,x"}, `--ban: "x"`},
		{[]string{"--ban", "256"}, "--ban: token 256"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			args := append([]string{"generate", "--model", f.st, "--prompt", "the "}, tt.args...)
			code, _, errOut := runCLI(t, context.Background(), args...)
			if code != exitUsage || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, want %d with %q in:\n%s", code, exitUsage, tt.want, errOut)
			}
		})
	}
}

// TestGeneratePenaltyFlags: the penalty flags reach the sampler. Greedy decoding of the fixture
// model with a presence penalty of 100 never repeats a byte (and so differs from greedy decoding
// without penalties), and a banned byte never appears.
func TestGeneratePenaltyFlags(t *testing.T) {
	f := setup(t)
	gen := func(extra ...string) string {
		t.Helper()
		args := append([]string{"generate", "--model", f.st, "--prompt", "the ", "--max-tokens", "40", "--stop-token", "-1",
			"--echo=false", "--temperature", "0"}, extra...)
		code, out, errOut := runCLI(t, context.Background(), args...)
		if code != exitOK {
			t.Fatalf("%v: exit %d\n%s", extra, code, errOut)
		}
		return out
	}
	plain := gen("--alpha-presence", "0", "--alpha-frequency", "0")
	strong := gen("--alpha-presence", "100", "--penalty-exempt", "")
	if plain == strong {
		t.Fatalf("strong penalties did not change greedy output %q", plain)
	}
	seen := map[byte]bool{}
	for _, c := range []byte(strings.TrimSuffix(strong, "\n")) {
		if seen[c] {
			t.Fatalf("presence penalty 100 repeated byte %q in %q", c, strong)
		}
		seen[c] = true
	}
	b := plain[0]
	if banned := gen("--alpha-presence", "0", "--alpha-frequency", "0", "--ban", "0,"+strconv.Itoa(int(b))); strings.IndexByte(banned, b) >= 0 {
		t.Fatalf("banned byte %q appears in %q", b, banned)
	}
}
