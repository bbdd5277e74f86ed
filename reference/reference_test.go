package reference

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
)

const python = "/usr/bin/python3"

// needTorch skips when Debian's python3-torch is absent, unless RWKV_REQUIRE_TORCH is set (as
// .ci/run does), in which case its absence fails the test.
func needTorch(t *testing.T) {
	t.Helper()
	if err := exec.Command(python, "-c", "import torch").Run(); err != nil {
		if os.Getenv("RWKV_REQUIRE_TORCH") != "" {
			t.Fatalf("RWKV_REQUIRE_TORCH is set but %s cannot import torch: %v (apt-get install python3-torch)", python, err)
		}
		t.Skipf("skipping: %s cannot import torch (apt-get install python3-torch to run the PyTorch reference)", python)
	}
}

func TestReferenceSelfTest(t *testing.T) {
	needTorch(t)
	out, err := exec.Command(python, "test_reference.py").CombinedOutput()
	if err != nil {
		t.Fatalf("test_reference.py: %v\n%s", err, out)
	}
}

// TestGoldenFilesAreCurrent regenerates the golden files into a temporary tree and requires
// them to equal the committed ones within goldenTolerances: on another CPU PyTorch rounds
// differently, so the bytes may differ while the values agree to a few ulps of each tensor's
// scale. The committed files stay the truth for the Go tests. Besides the CPU's own kernels it
// regenerates with ATEN_CPU_CAPABILITY=default (PyTorch's unvectorised kernels), which rounds
// like another machine would: measured against the committed files, 9.1e-7 (float32), 2.1e-15
// (float64) and 1.3e-6 (AdamW) of the tensors' scales.
func TestGoldenFilesAreCurrent(t *testing.T) {
	needTorch(t)
	for _, capability := range []string{"", "default"} {
		name := "native"
		if capability != "" {
			name = "ATEN_CPU_CAPABILITY=" + capability
		}
		t.Run(name, func(t *testing.T) { checkGoldenFiles(t, capability) })
	}
}

func checkGoldenFiles(t *testing.T, capability string) {
	root := t.TempDir()
	files := slices.Sorted(maps.Keys(goldenTolerances))
	for _, f := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(python, "gen_golden.py")
	cmd.Env = append(os.Environ(), "RWKV_GOLDEN_ROOT="+root)
	if capability != "" {
		cmd.Env = append(cmd.Env, "ATEN_CPU_CAPABILITY="+capability)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen_golden.py: %v\n%s", err, out)
	}
	for _, f := range files {
		got, err := checkpoint.OpenSafetensors(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := checkpoint.OpenSafetensors(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if g, w := got.Meta["torch_version"], want.Meta["torch_version"]; g != w {
			t.Logf("%s: regenerated with torch %s, committed with %s", f, g, w)
		}
		diffs := compareGolden(got, want, goldenTolerances[f])
		for _, d := range diffs {
			t.Errorf("%s: %s", f, d)
		}
		if len(diffs) > 0 {
			t.Logf("%s differs from what reference/gen_golden.py writes now beyond the tolerance; if the change is intended, regenerate and commit it", f)
		}
	}
}
