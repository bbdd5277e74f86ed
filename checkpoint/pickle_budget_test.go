package checkpoint

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestPickleMemoryIsBounded: pickles of cheap one-byte opcodes that each
// make a value are refused quickly, having allocated a bounded amount,
// instead of holding millions of values (a 30 MB pickle of EMPTY_LIST once
// took 2.1 GB and 11 s before the STOP check refused it).
func TestPickleMemoryIsBounded(t *testing.T) {
	pickle := func(prefix, unit string, size int) []byte {
		b := bytes.Repeat([]byte(unit), size/len(unit))
		return append(append([]byte(prefix), b...), '.')
	}
	tests := []struct {
		name    string
		data    []byte
		msg     string // "": the pickle may be accepted, its cost must be bounded
		maxPerB uint64 // bytes allocated per byte of pickle
	}{
		// The stack grows by one value per byte: refused after 64 Ki.
		{"EMPTY_LIST", pickle("\x80\x02", "]", 3<<20), "values on the stack", 8},
		{"EMPTY_DICT", pickle("\x80\x02", "}", 3<<20), "values on the stack", 8},
		{"MARK", pickle("\x80\x02", "(", 3<<20), "values on the stack", 8},
		// A list grows by about one item per byte, the stack staying
		// shallow: refused at half the file by the value budget.
		{"APPENDS", pickle("\x80\x02]", "("+strings.Repeat("]", 1000)+"e", 1<<20), "values made by a", 64},
		// The memo grows by one entry per byte: within the budget, so
		// bounded only by it.
		{"MEMOIZE", pickle("\x80\x04}", "\x94", 1<<20), "", 64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := decodeStateDict(tt.data)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if tt.msg != "" && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("error %v, want ErrMalformed with %q", err, tt.msg)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d-byte pickle: %v, %.1f MB allocated: %v", len(tt.data), elapsed, float64(alloc)/(1<<20), err)
			if limit := tt.maxPerB * uint64(len(tt.data)); alloc > limit {
				t.Errorf("allocated %.1f MB, want at most %.1f MB (%d bytes per byte of pickle)", float64(alloc)/(1<<20), float64(limit)/(1<<20), tt.maxPerB)
			}
			if elapsed > 5*time.Second {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

// TestPickleBudgetFitsStateDicts: the state dicts torch.save wrote and
// WritePTH writes stay well inside the value budget.
func TestPickleBudgetFitsStateDicts(t *testing.T) {
	var w bytes.Buffer
	if err := WritePTH(&w, tinyModel(Dims{Vocab: 11, Embd: 4, FFN: 16, Layers: 24})); err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join("testdata", "torch_saved.pth"))
	if err != nil {
		t.Fatal(err)
	}
	archives := map[string][]byte{"torch_saved.pth": committed, "WritePTH": w.Bytes()}
	for _, extra := range strings.Fields(os.Getenv("RWKV_PTH_FILES")) { // more files to check by hand
		b, err := os.ReadFile(extra)
		if err != nil {
			t.Fatal(err)
		}
		archives[extra] = b
	}
	for name, archive := range archives {
		zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range zr.File {
			if !strings.HasSuffix(f.Name, "/data.pkl") {
				continue
			}
			rc, _ := f.Open()
			pkl, _ := io.ReadAll(rc)
			u := &unpickler{data: pkl, global: pthGlobal, persistent: pthPersistent, call: pthCall}
			if _, err := u.run(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			ratio := float64(u.cells) / float64(len(pkl))
			t.Logf("%s: %d-byte pickle, %d values, %.2f per byte", name, len(pkl), u.cells, ratio)
			if ratio > 0.7 {
				t.Errorf("%s: %.2f values per byte, too close to the limit of 1", name, ratio)
			}
		}
	}
}
