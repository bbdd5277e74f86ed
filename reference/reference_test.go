package reference

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
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
// them to be byte-identical to the committed ones.
func TestGoldenFilesAreCurrent(t *testing.T) {
	needTorch(t)
	root := t.TempDir()
	files := []string{"model/testdata/golden_f32.safetensors", "model/testdata/golden_f64.safetensors", "train/testdata/adamw_golden.safetensors"}
	for _, f := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(f)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(python, "gen_golden.py")
	cmd.Env = append(os.Environ(), "RWKV_GOLDEN_ROOT="+root)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gen_golden.py: %v\n%s", err, out)
	}
	for _, f := range files {
		got, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join("..", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what reference/gen_golden.py writes now; regenerate and commit it", f)
		}
	}
}
