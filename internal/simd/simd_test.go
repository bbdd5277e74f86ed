package simd

import (
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/cpu"
)

func TestEnabled(t *testing.T) {
	for _, tc := range []struct {
		avx2, fma bool
		kernels   string
		want      bool
	}{
		{true, true, "", true},
		{true, true, "c", true},
		{true, true, "go", false},
		{true, false, "", false},
		{false, true, "", false},
	} {
		if got := enabled(tc.avx2, tc.fma, tc.kernels); got != tc.want {
			t.Errorf("enabled(%v, %v, %q) = %v, want %v", tc.avx2, tc.fma, tc.kernels, got, tc.want)
		}
	}
}

// TestDetectionMatchesKernel: golang.org/x/sys/cpu sees AVX2 and FMA exactly when the Linux
// kernel lists them in /proc/cpuinfo (which, like x/sys/cpu, requires OS support for YMM).
func TestDetectionMatchesKernel(t *testing.T) {
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("skipping: reads /proc/cpuinfo on linux/amd64")
	}
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skipf("skipping: %v", err)
	}
	var flags map[string]bool
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "flags" {
			flags = map[string]bool{}
			for _, f := range strings.Fields(v) {
				flags[f] = true
			}
			break
		}
	}
	if flags == nil {
		t.Skip("skipping: no flags line in /proc/cpuinfo")
	}
	if cpu.X86.HasAVX2 != flags["avx2"] || cpu.X86.HasFMA != flags["fma"] {
		t.Errorf("x/sys/cpu AVX2 %v FMA %v, /proc/cpuinfo avx2 %v fma %v", cpu.X86.HasAVX2, cpu.X86.HasFMA, flags["avx2"], flags["fma"])
	}
}
