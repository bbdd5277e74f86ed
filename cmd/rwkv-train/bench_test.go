package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
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

// TestBenchArch: `bench --arch x052|x060|x070` runs full training steps of that architecture
// and reports them; an unknown architecture and a head size that does not divide n_embd are
// usage errors naming the problem; --torch picks the PyTorch peer of the architecture.
func TestBenchArch(t *testing.T) {
	var stdout, stderr bytes.Buffer
	for _, a := range []string{"x052", "x060", "x070"} {
		stdout.Reset()
		stderr.Reset()
		code := run(context.Background(), []string{"bench", "--arch", a, "--layers", "1", "--embd", "64", "--vocab", "32", "--head-size", "32",
			"--ctx", "8", "--batch", "1", "--steps", "1", "--warmup", "0", "--peak=false", "--json"}, &stdout, &stderr)
		if code != exitOK {
			t.Fatalf("%s: exit %d\n%s", a, code, stderr.String())
		}
		var r benchReport
		if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || !(r.TokensPerSec > 0) {
			t.Fatalf("%s: report %q: %+v, %v", a, stdout.String(), r, err)
		}
		if !strings.Contains(stderr.String(), "bench "+a+" L1-D64-V32") {
			t.Errorf("stderr %q does not name the %s model", stderr.String(), a)
		}
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--arch", "x050"}, `model.arch = "x050"`},
		{[]string{"--arch", "x070", "--embd", "64", "--head-size", "48"}, "model.head_size = 48"},
		{[]string{"--arch", "x060", "--embd", "64", "--head-size", "48"}, "model.head_size = 48"},
	} {
		stderr.Reset()
		if code := run(context.Background(), append([]string{"bench"}, tt.args...), &stdout, &stderr); code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("bench %v: exit %d, want %d and %q:\n%s", tt.args, code, exitUsage, tt.want, stderr.String())
		}
	}
	if got := torchScript(arch.X070); got != filepath.Join("reference", "bench_torch7.py") {
		t.Errorf("x070 PyTorch peer %s", got)
	}
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		if got := torchScript(a); got != filepath.Join("reference", "bench_torch6.py") {
			t.Errorf("%s PyTorch peer %s", a, got)
		}
	}
	if got := torchScript(""); got != filepath.Join("reference", "bench_torch.py") {
		t.Errorf("x040 PyTorch peer %s", got)
	}
}
