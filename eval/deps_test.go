package eval

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection: train imports eval, never the reverse, and only cmd/ reads config files.
func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/rwkv-go/rwkv-go/eval").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		switch d {
		case "github.com/rwkv-go/rwkv-go/train", "github.com/rwkv-go/rwkv-go/optim", "github.com/spf13/viper", "os/exec":
			t.Errorf("eval depends on %s", d)
		}
	}
}
