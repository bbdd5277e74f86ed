package train

import (
	"slices"
	"testing"
)

// TestQuickstartSampleOptions: the quickstart's sample penalises repeated whitespace and
// punctuation (the runs of tabs and braces it printed without penalties) and never letters,
// digits or '_', has no presence penalty, and never ends the snippet early.
func TestQuickstartSampleOptions(t *testing.T) {
	o := QuickstartSampleOptions()
	if o.AlphaFrequency <= 0 || o.PenaltyDecay <= 0 || o.PenaltyDecay >= 1 || o.AlphaPresence != 0 {
		t.Fatalf("penalties %+v: want a frequency penalty with decay in (0, 1) and no presence penalty", o)
	}
	for _, c := range []byte("\t\n {}();,.") {
		if slices.Contains(o.PenaltyExempt, int(c)) {
			t.Errorf("%q is exempt from the frequency penalty", c)
		}
	}
	for _, c := range []byte("azAZ09_") {
		if !slices.Contains(o.PenaltyExempt, int(c)) {
			t.Errorf("%q is penalised", c)
		}
	}
	if len(o.PenaltyExempt) != 63 || !slices.Equal(o.Ban, []int{0}) || o.StopToken != -1 || o.MaxTokens <= 0 {
		t.Fatalf("exempt %d bytes (want 63), ban %v (want [0]), stop %d, max %d", len(o.PenaltyExempt), o.Ban, o.StopToken, o.MaxTokens)
	}
}
