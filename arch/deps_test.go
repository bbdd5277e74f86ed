package arch

import (
	"os/exec"
	"strings"
	"testing"
)

// TestStdlibOnly: arch imports nothing outside the standard library, so that model and
// checkpoint (which must not import each other) can both use it.
func TestStdlibOnly(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != "github.com/rwkv-go/rwkv-go/arch" {
			t.Errorf("arch depends on %s", d)
		}
	}
}
