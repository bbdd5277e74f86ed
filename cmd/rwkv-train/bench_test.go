package main

import (
	"math"
	"testing"
)

func TestMedianReport(t *testing.T) {
	for _, tc := range []struct {
		name     string
		tps, rss []float64
		wantTPS  float64
		wantRSS  float64
	}{
		{"one round", []float64{100}, []float64{50}, 100, 50},
		{"odd", []float64{300, 100, 200}, []float64{10, 30, 20}, 200, 30},
		{"even takes the upper median", []float64{400, 100, 300, 200}, []float64{1, 2, 3, 4}, 300, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs []benchReport
			for i := range tc.tps {
				rs = append(rs, benchReport{TokensPerSec: tc.tps[i], StepSeconds: 1 / tc.tps[i], PeakRSSMiB: tc.rss[i]})
			}
			m := medianReport(rs)
			if m.TokensPerSec != tc.wantTPS || m.StepSeconds != 1/tc.wantTPS || m.PeakRSSMiB != tc.wantRSS {
				t.Errorf("median %+v, want %g tokens/s with peak RSS %g", m, tc.wantTPS, tc.wantRSS)
			}
			if rs[0].TokensPerSec != tc.tps[0] {
				t.Error("medianReport reordered its input")
			}
		})
	}
}

func TestRoundRatios(t *testing.T) {
	ours := []benchReport{{TokensPerSec: 150}, {TokensPerSec: 120}, {TokensPerSec: 200}}
	theirs := []benchReport{{TokensPerSec: 100}, {TokensPerSec: 100}, {TokensPerSec: 100}}
	lo, hi := roundRatios(ours, theirs)
	if math.Abs(lo-1.2) > 1e-12 || math.Abs(hi-2) > 1e-12 {
		t.Errorf("ratios %g..%g, want 1.2..2", lo, hi)
	}
}
