package data

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestOpenBinidxEveryDtype(t *testing.T) {
	docs := [][]int{{1, 2, 3}, {4, 5}, {6, 7, 8, 9}, {0}}
	want := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 0}
	tests := []struct {
		name string
		code uint8
		dt   dtype
	}{
		{"u8", 1, dtU8}, {"i8", 2, dtI8}, {"i16", 3, dtI16}, {"i32", 4, dtI32}, {"i64", 5, dtI64},
		{"float as f32", 6, dtF32}, {"float as f64", 6, dtF64}, {"f64", 7, dtF64}, {"u16", 8, dtU16},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			prefix := writeBinidx(t, dir, "c", tt.code, tt.dt, docs)
			for _, path := range []string{prefix, prefix + ".idx", prefix + ".bin"} {
				toks, err := Open(path)
				if err != nil {
					t.Fatalf("Open(%q): %v", path, err)
				}
				if got := toks.Len(); got != len(want) {
					t.Errorf("Len = %d, want %d", got, len(want))
				}
				if got := toks.Slice(0, toks.Len(), nil); !slices.Equal(got, want) {
					t.Errorf("Slice = %v, want %v", got, want)
				}
				if got := toks.Slice(3, 4, make([]int, 0, 8)); !slices.Equal(got, want[3:7]) {
					t.Errorf("Slice(3, 4) = %v, want %v", got, want[3:7])
				}
				if got, want := toks.Docs(), []int{0, 3, 5, 9}; !slices.Equal(got, want) {
					t.Errorf("Docs = %v, want %v", got, want)
				}
				if err := toks.CheckVocab(10); err != nil {
					t.Errorf("CheckVocab(10): %v", err)
				}
				if err := toks.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}

func TestOpenBinidxErrors(t *testing.T) {
	good := func() ([]byte, []byte) {
		return idxFor(8, dtU16, [][]int{{1, 2}, {3}}), encodeTokens(dtU16, []int{1, 2, 3})
	}
	tests := []struct {
		name    string
		edit    func(idx, bin []byte) ([]byte, []byte)
		noBin   bool
		want    error
		inError string // file the error must name
	}{
		{"wrong magic", func(i, b []byte) ([]byte, []byte) { i[0] = 'X'; return i, b }, false, ErrBadMagic, ".idx"},
		{"short file", func(i, b []byte) ([]byte, []byte) { return i[:20], b }, false, ErrIndexSize, ".idx"},
		{"wrong version", func(i, b []byte) ([]byte, []byte) { i[9] = 2; return i, b }, false, ErrBadVersion, ".idx"},
		{"dtype code 0", func(i, b []byte) ([]byte, []byte) { i[17] = 0; return i, b }, false, ErrBadDtype, ".idx"},
		{"dtype code 9", func(i, b []byte) ([]byte, []byte) { i[17] = 9; return i, b }, false, ErrBadDtype, ".idx"},
		{"idx one byte long", func(i, b []byte) ([]byte, []byte) { return append(i, 0), b }, false, ErrIndexSize, ".idx"},
		{"idx one byte short", func(i, b []byte) ([]byte, []byte) { return i[:len(i)-1], b }, false, ErrIndexSize, ".idx"},
		{"N too large", func(i, b []byte) ([]byte, []byte) { i[18] = 200; return i, b }, false, ErrIndexSize, ".idx"},
		{"pointers not monotonic", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{2, 0}, []int64{0, 1, 2}), b
		}, false, ErrPointers, ".idx"},
		{"pointer past end of bin", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 100}, []int64{0, 1, 2}), b
		}, false, ErrPointers, ".idx"},
		{"sequence past end of bin", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 6}, []int64{0, 1, 2}), b
		}, false, ErrPointers, ".idx"},
		{"bin too long", func(i, b []byte) ([]byte, []byte) { return i, append(b, 0, 0) }, false, ErrBinSize, ".bin"},
		{"bin too short", func(i, b []byte) ([]byte, []byte) { return i, b[:4] }, false, ErrBinSize, ".bin"},
		{"bin odd size", func(i, b []byte) ([]byte, []byte) { return i, append(b, 0) }, false, ErrBinSize, ".bin"},
		{"negative size", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{-1, 1}, []int64{0, 0}, []int64{0, 1, 2}), b
		}, false, ErrIndexSize, ".idx"},
		{"doc_idx not from 0", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 4}, []int64{1, 2}), b
		}, false, ErrDocIndex, ".idx"},
		{"doc_idx decreasing", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 4}, []int64{0, 2, 1}), b
		}, false, ErrDocIndex, ".idx"},
		{"doc_idx past N", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 4}, []int64{0, 3}), b
		}, false, ErrDocIndex, ".idx"},
		{"no doc_idx", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{2, 1}, []int64{0, 4}, nil), b
		}, false, ErrDocIndex, ".idx"},
		{"idx without bin", nil, true, ErrMissingBin, ".idx"},
		{"no sequences", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, nil, nil, []int64{0}), nil
		}, false, ErrEmpty, ".idx"},
		{"empty sequences", func(i, b []byte) ([]byte, []byte) {
			return buildIdx(8, []int32{0, 0}, []int64{0, 0}, []int64{0, 1, 2}), nil
		}, false, ErrEmpty, ".idx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			idx, bin := good()
			if tt.edit != nil {
				idx, bin = tt.edit(idx, bin)
			}
			prefix := filepath.Join(dir, "c")
			writeFile(t, prefix+".idx", idx)
			if !tt.noBin {
				writeFile(t, prefix+".bin", bin)
			}
			toks, err := Open(prefix)
			if err == nil {
				toks.Close()
				t.Fatal("Open succeeded, want an error")
			}
			if !errors.Is(err, tt.want) {
				t.Errorf("Open: %v, want %v", err, tt.want)
			}
			if want := fmt.Sprintf("%q", prefix+tt.inError); !strings.Contains(err.Error(), want) {
				t.Errorf("Open: %v, want it to name %s", err, want)
			}
		})
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "none"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open: %v, want not exist", err)
	}
	if _, err := OpenFormat("x", "parquet"); !errors.Is(err, ErrUnknownFormat) {
		t.Errorf("OpenFormat: %v, want ErrUnknownFormat", err)
	}
}

func TestCheckVocab(t *testing.T) {
	tests := []struct {
		name    string
		code    uint8
		dt      dtype
		toks    []int
		vocab   int
		wantPos int // -1 for no error
	}{
		{"u16 in range", 8, dtU16, []int{0, 5, 65535}, 65536, -1},
		{"u16 too large", 8, dtU16, []int{0, 5, 50277, 3}, 50277, 2},
		{"i16 negative", 3, dtI16, []int{1, -1}, 100, 1},
		{"i32 at vocab", 4, dtI32, []int{9, 10}, 10, 1},
		{"i64 huge", 5, dtI64, []int{1, 1 << 30}, 1 << 20, 1},
		{"u8 fast path", 1, dtU8, []int{255}, 256, -1},
		{"f64 in range", 7, dtF64, []int{3, 4}, 5, -1},
		{"f64 too large", 7, dtF64, []int{3, 5}, 5, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := writeBinidx(t, t.TempDir(), "c", tt.code, tt.dt, [][]int{tt.toks})
			toks, err := Open(prefix)
			if err != nil {
				t.Fatal(err)
			}
			defer toks.Close()
			err = toks.CheckVocab(tt.vocab)
			if tt.wantPos < 0 {
				if err != nil {
					t.Errorf("CheckVocab: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTokenRange) || !strings.Contains(err.Error(), fmt.Sprintf("position %d,", tt.wantPos)) ||
				!strings.Contains(err.Error(), prefix+".bin") {
				t.Errorf("CheckVocab: %v, want ErrTokenRange at position %d naming the .bin", err, tt.wantPos)
			}
		})
	}
}

func TestCheckVocabFloatNotIntegral(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "c")
	writeFile(t, prefix+".idx", idxFor(7, dtF64, [][]int{{1, 2}}))
	b := encodeTokens(dtF64, []int{1, 2})
	b[8] = 1 // 2.0000000000000004
	writeFile(t, prefix+".bin", b)
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	if err := toks.CheckVocab(10); !errors.Is(err, ErrTokenRange) {
		t.Errorf("CheckVocab: %v, want ErrTokenRange", err)
	}
}

// TestCheckVocabParallel covers the parallel scan on a corpus of several
// chunks, with the bad token in the last one.
func TestCheckVocabParallel(t *testing.T) {
	toks := make([]int, 3<<20)
	toks[len(toks)-2] = 70
	prefix := writeBinidx(t, t.TempDir(), "c", 8, dtU16, [][]int{toks})
	c, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.CheckVocab(50)
	if want := fmt.Sprintf("token 70 at position %d,", len(toks)-2); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("CheckVocab: %v, want %q", err, want)
	}
	if err := c.CheckVocab(71); err != nil {
		t.Errorf("CheckVocab(71): %v", err)
	}
}

func TestCheckLen(t *testing.T) {
	prefix := writeBinidx(t, t.TempDir(), "c", 8, dtU16, [][]int{seq(0, 10)})
	toks, err := Open(prefix)
	if err != nil {
		t.Fatal(err)
	}
	defer toks.Close()
	if err := toks.CheckLen(9); err != nil {
		t.Errorf("CheckLen(9): %v", err)
	}
	if err := toks.CheckLen(10); !errors.Is(err, ErrTooShort) {
		t.Errorf("CheckLen(10): %v, want ErrTooShort", err)
	}
	for _, kind := range []string{SamplingRandom, SamplingMagicPrime, SamplingSequential} {
		if _, err := NewSampler(kind, toks, 10, 1); !errors.Is(err, ErrTooShort) {
			t.Errorf("NewSampler(%s, ctx 10): %v, want ErrTooShort", kind, err)
		}
	}
}

func TestOpenNpy(t *testing.T) {
	want := []int{0, 1, 2, 100, 127}
	tests := []struct {
		descr string
		dt    dtype
		v2    bool
	}{
		{"|u1", dtU8, false}, {"|i1", dtI8, false}, {"<u2", dtU16, false}, {"<i2", dtI16, true},
		{"<u4", dtU32, false}, {"<i4", dtI32, false}, {"<u8", dtU64, false}, {"<i8", dtI64, true},
		{">i4", dtI32BE, false}, {">u2", dtU16BE, false}, {">i8", dtI64BE, false},
	}
	for _, tt := range tests {
		t.Run(tt.descr, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.npy")
			dict := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }", tt.descr, len(want))
			writeFile(t, path, npyBytes(dict, encodeTokens(tt.dt, want), tt.v2))
			toks, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer toks.Close()
			if got := toks.Slice(0, toks.Len(), nil); !slices.Equal(got, want) {
				t.Errorf("tokens = %v, want %v", got, want)
			}
			if got := toks.Docs(); !slices.Equal(got, []int{0}) {
				t.Errorf("Docs = %v", got)
			}
		})
	}
}

func TestOpenNpyErrors(t *testing.T) {
	data := encodeTokens(dtU16, []int{1, 2, 3})
	tests := []struct {
		name string
		file []byte
		want error
	}{
		{"not npy", []byte("hello world, not numpy"), ErrBadMagic},
		{"float", npyBytes("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", data, false), ErrBadDtype},
		{"2-D", npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (1, 3), }", data, false), ErrBadHeader},
		{"0-D", npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (), }", data, false), ErrBadHeader},
		{"short data", npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (4,), }", data, false), ErrBinSize},
		{"long data", npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (2,), }", data, false), ErrBinSize},
		{"empty", npyBytes("{'descr': '<u2', 'fortran_order': False, 'shape': (0,), }", nil, false), ErrEmpty},
		{"no shape", npyBytes("{'descr': '<u2', 'fortran_order': False}", data, false), ErrBadHeader},
		{"version 9", append([]byte(npyMagic+"\x09\x00"), 0, 0), ErrBadVersion},
		{"garbage dict", npyBytes("{'descr': '<u2', 'fortran_order': Fals", data, false), ErrBadHeader},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t.npy")
			writeFile(t, path, tt.file)
			_, err := Open(path)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("Open: %v, want %v naming %s", err, tt.want, path)
			}
		})
	}
}
