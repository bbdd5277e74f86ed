package checkpoint

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps checkpoint a leaf: no model, train, viper or os/exec in
// its (non-test) dependencies.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("skipping: go list failed: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasSuffix(dep, "rwkv-go/model") || strings.HasSuffix(dep, "rwkv-go/train") ||
			strings.Contains(dep, "viper") || dep == "os/exec" {
			t.Errorf("checkpoint depends on %s", dep)
		}
	}
}
