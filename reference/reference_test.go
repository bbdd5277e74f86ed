package reference

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

const python = testutil.Python

func TestReferenceSelfTest(t *testing.T) {
	testutil.RequireTorch(t)
	for _, script := range []string{"test_reference.py", "test_rwkv7.py", "test_rwkv6.py"} {
		t.Run(script, func(t *testing.T) {
			out, err := exec.Command(python, script).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: %v\n%s", script, err, out)
			}
		})
	}
}

// goldenScripts names the golden files (the keys of goldenTolerances) each script writes:
// gen_golden.py the RWKV-4 ones, gen_golden7.py the RWKV-7 (x070) ones, gen_golden6.py the
// RWKV-5.2 (x052) and RWKV-6 (x060) ones.
var goldenScripts = map[string][]string{
	"gen_golden.py": {
		"model/testdata/golden_f32.safetensors",
		"model/testdata/golden_f64.safetensors",
		"train/testdata/adamw_golden.safetensors",
	},
	"gen_golden7.py": {
		"model/testdata/golden7_f32.safetensors",
		"model/testdata/golden7_f64.safetensors",
		"train/testdata/adamw7_golden.safetensors",
	},
	"gen_golden6.py": {
		"model/testdata/golden5_f32.safetensors",
		"model/testdata/golden5_f64.safetensors",
		"model/testdata/golden6_f32.safetensors",
		"model/testdata/golden6_f64.safetensors",
		"train/testdata/adamw5_golden.safetensors",
		"train/testdata/adamw6_golden.safetensors",
	},
}

// goldenScript names the script that writes golden file f.
func goldenScript(f string) string {
	for script, files := range goldenScripts {
		if slices.Contains(files, f) {
			return script
		}
	}
	return ""
}

// TestGoldenScriptsCoverTolerances requires every golden file to have a tolerance and a script
// that regenerates it, so TestGoldenFilesAreCurrent cannot silently skip one.
func TestGoldenScriptsCoverTolerances(t *testing.T) {
	seen := map[string]bool{}
	for _, files := range goldenScripts {
		for _, f := range files {
			if _, ok := goldenTolerances[f]; !ok {
				t.Errorf("%s: written by a golden script but has no entry in goldenTolerances", f)
			}
			seen[f] = true
		}
	}
	for f := range goldenTolerances {
		if !seen[f] {
			t.Errorf("%s: in goldenTolerances but no script in goldenScripts writes it", f)
		}
	}
}

// TestGoldenFilesAreCurrent regenerates the golden files into a temporary tree and requires
// them to equal the committed ones within goldenTolerances: on another CPU PyTorch rounds
// differently, so the bytes may differ while the values agree to a few ulps of each tensor's
// scale. The committed files stay the truth for the Go tests. Besides the CPU's own kernels it
// regenerates with ATEN_CPU_CAPABILITY=default (PyTorch's unvectorised kernels), which rounds
// like another machine would: measured against the committed files, 9.1e-7 (float32), 2.1e-15
// (float64) and 1.3e-6 (AdamW) of the tensors' scales; for the x070 files 1.7e-6, 3.2e-15 and
// 3.5e-6; for x052/x060 (golden5, golden6, adamw5, adamw6) at most 3.1e-6, 1.0e-14 and 4.2e-6.
func TestGoldenFilesAreCurrent(t *testing.T) {
	testutil.RequireTorch(t)
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
	for _, script := range slices.Sorted(maps.Keys(goldenScripts)) {
		cmd := exec.Command(python, script)
		cmd.Env = append(os.Environ(), "RWKV_GOLDEN_ROOT="+root)
		if capability != "" {
			cmd.Env = append(cmd.Env, "ATEN_CPU_CAPABILITY="+capability)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
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
			t.Logf("%s differs from what reference/%s writes now beyond the tolerance; if the change is intended, regenerate and commit it", f, goldenScript(f))
		}
	}
}
