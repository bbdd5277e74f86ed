package checkpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestWriteFuzzSeeds regenerates the committed seed corpora under
// testdata/fuzz from safetensorsSeeds and pickleSeeds. It runs only when
// CHECKPOINT_WRITE_FUZZ_SEEDS=1; go test then reads the corpora as test cases.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("CHECKPOINT_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set CHECKPOINT_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz")
	}
	for name, seeds := range map[string][][]byte{"FuzzSafetensors": safetensorsSeeds(), "FuzzPickle": pickleSeeds()} {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", s)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
