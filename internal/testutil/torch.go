// Package testutil holds what the tests of several packages share. Only tests import it.
package testutil

import (
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Python is the interpreter the PyTorch cross-checks run: Debian's, with python3-torch.
const Python = "/usr/bin/python3"

var (
	torchOnce sync.Once
	torchErr  error
)

// RequireTorch returns Python when it can import torch. Otherwise it skips the test, or fails
// it when RWKV_REQUIRE_TORCH is set (as .ci/run does), so CI cannot pass a cross-check
// silently skipped. The import is tried once per test binary.
func RequireTorch(t testing.TB) string {
	t.Helper()
	torchOnce.Do(func() { torchErr = exec.Command(Python, "-c", "import torch").Run() })
	if torchErr != nil {
		if os.Getenv("RWKV_REQUIRE_TORCH") != "" {
			t.Fatalf("RWKV_REQUIRE_TORCH is set but %s cannot import torch: %v (apt-get install python3-torch)", Python, torchErr)
		}
		t.Skipf("skipping: %s cannot import torch (apt-get install python3-torch to run the PyTorch reference)", Python)
	}
	return Python
}
