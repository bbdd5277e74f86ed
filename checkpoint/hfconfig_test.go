package checkpoint

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHFConfigShared: readHFConfig serves both architectures' checks, so the cases that
// depend on the reader rather than on the architecture hold for both: no config.json is
// accepted, one that is not JSON is ErrMalformed, a null size is not checked; and each
// architecture keeps its own model_type rule (RWKV-4 accepts it absent, RWKV-7 does not).
func TestHFConfigShared(t *testing.T) {
	dir4, dir7 := t.TempDir(), t.TempDir()
	if err := ExportHF(dir4, tinyModel(tinyDims), HFConfig{ContextLength: 16}, F32); err != nil {
		t.Fatal(err)
	}
	if err := ExportHF7(dir7, tinyX070Model(tinyX070, true), HF7Config{}, F32); err != nil {
		t.Fatal(err)
	}
	testHFConfigs(t, []hfConfigCase{
		{"rwkv4 no config.json", dir4, "-", nil, ""},
		{"rwkv7 no config.json", dir7, "-", nil, ""},
		{"rwkv4 not JSON", dir4, "{", ErrMalformed, "config.json: not JSON"},
		{"rwkv7 not JSON", dir7, "{", ErrMalformed, "config.json: not JSON"},
		{"rwkv4 null size", dir4, `{"model_type": "rwkv", "hidden_size": null}`, nil, ""},
		{"rwkv7 null size", dir7, `{"model_type": "rwkv7", "hidden_size": null}`, nil, ""},
		{"rwkv4 wrong size", dir4, `{"hidden_size": 5}`, ErrTensors, "hidden_size is 5"},
		{"rwkv7 wrong size", dir7, `{"model_type": "rwkv7", "hidden_size": 5}`, ErrTensors, "hidden_size is 5 but the tensors give 128"},
		{"rwkv4 model_type absent", dir4, `{}`, nil, ""},
		{"rwkv7 model_type absent", dir7, `{}`, ErrTensors, `model_type absent, want "rwkv7"`},
		{"rwkv4 size not a number", dir4, `{"vocab_size": "x"}`, ErrMalformed, `vocab_size is "x", not a size`},
	})
}

// hfConfigCase is a config.json written into an HF directory and what ReadWeights of it must
// give: no error (err nil) or err with a message containing want.
type hfConfigCase struct {
	name string
	dir  string
	conf string // config.json; "-" removes it
	err  error
	want string
}

// testHFConfigs writes each case's config.json into its directory and checks ReadWeights (the
// RWKV-4/RWKV-7 and RWKV-5.2/RWKV-6 config tests share it).
func testHFConfigs(t *testing.T, cases []hfConfigCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(tc.dir, "config.json")
			if tc.conf == "-" {
				if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := ReadWeights(tc.dir)
			if tc.err == nil {
				if err != nil {
					t.Fatalf("ReadWeights: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ReadWeights: %v, want %v containing %q", err, tc.err, tc.want)
			}
		})
	}
}
