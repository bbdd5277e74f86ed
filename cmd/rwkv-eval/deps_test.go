package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLinksNoTrainer: rwkv-eval loads weights through package weights and links neither the
// trainer nor the optimizer (nor anything they alone pull in).
func TestLinksNoTrainer(t *testing.T) {
	for _, pkg := range []string{"github.com/rwkv-go/rwkv-go/cmd/rwkv-eval", "github.com/rwkv-go/rwkv-go/weights"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Skipf("go list unavailable: %v", err)
		}
		for _, d := range strings.Fields(string(out)) {
			switch d {
			case "github.com/rwkv-go/rwkv-go/train", "github.com/rwkv-go/rwkv-go/optim", "github.com/spf13/viper", "github.com/spf13/cobra":
				t.Errorf("%s depends on %s", pkg, d)
			}
		}
	}
}
