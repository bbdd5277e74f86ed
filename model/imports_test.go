package model

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection keeps the package graph one-way: model knows nothing of training, config
// files or processes, and checkpoint knows nothing of the model.
func TestImportDirection(t *testing.T) {
	for _, tc := range []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/rwkv-go/rwkv-go/model", []string{"github.com/rwkv-go/rwkv-go/train", "github.com/rwkv-go/rwkv-go/optim",
			"github.com/rwkv-go/rwkv-go/data", "github.com/rwkv-go/rwkv-go/checkpoint", "github.com/spf13/viper", "os/exec"}},
		{"github.com/rwkv-go/rwkv-go/checkpoint", []string{"github.com/rwkv-go/rwkv-go/model", "github.com/rwkv-go/rwkv-go/train", "github.com/spf13/viper"}},
		{"github.com/rwkv-go/rwkv-go/data", []string{"github.com/rwkv-go/rwkv-go/model", "github.com/rwkv-go/rwkv-go/train", "github.com/spf13/viper"}},
		{"github.com/rwkv-go/rwkv-go/optim", []string{"github.com/rwkv-go/rwkv-go/model", "github.com/rwkv-go/rwkv-go/train", "github.com/spf13/viper"}},
		{"github.com/rwkv-go/rwkv-go/train", []string{"github.com/spf13/viper"}},
	} {
		out, err := exec.Command("go", "list", "-deps", tc.pkg).Output()
		if err != nil {
			t.Skipf("go list unavailable: %v", err)
		}
		deps := map[string]bool{}
		for _, d := range strings.Fields(string(out)) {
			deps[d] = true
		}
		for _, f := range tc.forbidden {
			if deps[f] {
				t.Errorf("%s depends on %s", tc.pkg, f)
			}
		}
	}
}

// TestGorgoniaStaysInModel: no package but model imports Gorgonia, in its code or its tests;
// the others use model's typed views (Param.F32, Graph.LogitsF32, Graph.GradF32, State, DType).
func TestGorgoniaStaysInModel(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}} {{join .XTestImports \" \"}}",
		"github.com/rwkv-go/rwkv-go/...").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "github.com/rwkv-go/rwkv-go/model" {
			continue
		}
		for _, imp := range f[1:] {
			if strings.HasPrefix(imp, "gorgonia.org/") {
				t.Errorf("%s imports %s", f[0], imp)
			}
		}
	}
}
