package eval

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestModesAgreeOnShortDocument: on a document shorter than ctx_len the parallel windows and the
// recurrent stream see the same context, so they must give the same loss (float64, to 1e-9), for
// RWKV-4 and RWKV-7.
func TestModesAgreeOnShortDocument(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) {
			m := tinyModelOf(t, a, 64, model.Float64)
			toks := randomTokens(13, 64, 1) // 12 scored tokens, ctx_len 16
			want := sum(rnnNLL(t, m, toks)) / 12
			for _, tt := range []struct {
				name string
				o    Options
			}{
				{"parallel", Options{Mode: Parallel, CtxLen: 16}},
				{"parallel stride 4", Options{Mode: Parallel, CtxLen: 16, Stride: 4}},
				{"parallel batch 3", Options{Mode: Parallel, CtxLen: 16, Batch: 3}},
				{"rnn", Options{Mode: RNN}},
				{"rnn chunk 5", Options{Mode: RNN, Chunk: 5}},
			} {
				t.Run(tt.name, func(t *testing.T) {
					r, err := Perplexity(context.Background(), m, toks, tt.o)
					if err != nil {
						t.Fatal(err)
					}
					if r.Tokens != 12 || !near(r.Loss, want, 1e-9) {
						t.Fatalf("got %d tokens, loss %.15g; want 12, %.15g", r.Tokens, r.Loss, want)
					}
				})
			}
		})
	}
}

// TestModesAgreeFloat32: in float32 the three modes (parallel graph, token-by-token RNN, chunked
// graph with the state carried) agree with the float64 loss to 1e-5 relative, for both
// architectures, on a document that fits one window (so that all three see the same context).
func TestModesAgreeFloat32(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) {
			toks := randomTokens(16, 64, 11) // 15 scored tokens, ctx_len 16
			want := sum(rnnNLL(t, tinyModelOf(t, a, 64, model.Float64), toks)) / 15
			m := tinyModelOf(t, a, 64, model.Float32)
			for _, o := range []Options{{Mode: Parallel, CtxLen: 16}, {Mode: RNN}, {Mode: RNN, Chunk: 4}} {
				r, err := Perplexity(context.Background(), m, toks, o)
				if err != nil {
					t.Fatal(err)
				}
				if r.Tokens != 15 || !near(r.Loss, want, 1e-5) {
					t.Errorf("%+v: got %d tokens, loss %.9g; want 15, %.9g (float64)", o, r.Tokens, r.Loss, want)
				}
			}
		})
	}
}

// windowRef is the reference for parallel mode: target j is predicted from a fresh state that
// has read toks[start(j) : j].
func windowRef(t *testing.T, m *model.Model, o Options, toks Ints) (float64, int) {
	total := len(toks) - 1
	L, stride := o.CtxLen, o.Stride
	if stride == 0 {
		stride = L
	}
	var s float64
	n := 0
	for prev := 0; prev < total; {
		e := min(prev+stride, total)
		if prev == 0 {
			e = min(L, total)
		}
		start := max(0, e-L)
		nll := rnnNLL(t, m, toks[start:e+1])
		for j := prev + 1; j <= e; j++ {
			s += nll[j-1-start]
			n++
		}
		prev = e
	}
	return s / float64(n), n
}

// TestParallelWindows checks windowing, striding, batching and the clamped last window against
// the recurrent form run over each window's own context.
func TestParallelWindows(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) {
			m := tinyModelOf(t, a, 64, model.Float64)
			toks := randomTokens(42, 64, 3) // 41 targets
			for _, tt := range []struct {
				name string
				o    Options
			}{
				{"non-overlapping", Options{CtxLen: 8}},
				{"batched", Options{CtxLen: 8, Batch: 3}},
				{"stride 3", Options{CtxLen: 8, Stride: 3, Batch: 2}},
				{"stride 1", Options{CtxLen: 5, Stride: 1, Batch: 4}},
			} {
				t.Run(tt.name, func(t *testing.T) {
					want, n := windowRef(t, m, tt.o, toks)
					got, err := Perplexity(context.Background(), m, toks, tt.o)
					if err != nil {
						t.Fatal(err)
					}
					if got.Tokens != int64(n) || n != 41 || !near(got.Loss, want, 1e-9) {
						t.Fatalf("got %d tokens, loss %.15g; want %d (41), %.15g", got.Tokens, got.Loss, n, want)
					}
				})
			}
		})
	}
}

// TestRNNChunkedEqualsStepwise: feeding the stream through the graph in chunks with the state
// carried over is the same computation as stepping token by token, far beyond ctx_len (for
// RWKV-7 the carried state is the WKV-7 matrix state and both token shifts).
func TestRNNChunkedEqualsStepwise(t *testing.T) {
	for _, a := range archs {
		t.Run(string(a), func(t *testing.T) {
			m := tinyModelOf(t, a, 64, model.Float64)
			toks := randomTokens(100, 64, 4)
			want := sum(rnnNLL(t, m, toks)) / 99
			for _, chunk := range []int{0, 7, 64} {
				r, err := Perplexity(context.Background(), m, toks, Options{Mode: RNN, Chunk: chunk, BucketSize: 10})
				if err != nil {
					t.Fatal(err)
				}
				if r.Tokens != 99 || !near(r.Loss, want, 1e-9) {
					t.Fatalf("chunk %d: got %d tokens, loss %.15g; want 99, %.15g", chunk, r.Tokens, r.Loss, want)
				}
			}
		})
	}
}

func TestBucketsPartitionTheLoss(t *testing.T) {
	m := tinyModel(t, 64, model.Float64)
	toks := randomTokens(60, 64, 5)
	ref := rnnNLL(t, m, toks)
	for _, mode := range []Mode{RNN, Parallel} {
		r, err := Perplexity(context.Background(), m, toks, Options{Mode: mode, CtxLen: 100, BucketSize: 25, MaxTokens: 55})
		if err != nil {
			t.Fatal(err)
		}
		// Positions 1..55: buckets [0,25) holds 24, [25,50) 25, [50,75) 6.
		wantN := []int64{24, 25, 6}
		if len(r.Buckets) != 3 {
			t.Fatalf("%s: %d buckets, want 3", mode, len(r.Buckets))
		}
		for i, b := range r.Buckets {
			lo := max(1, b.Start)
			want := sum(ref[lo-1:min(b.Start+25, 56)-1]) / float64(wantN[i])
			if b.Start != int64(25*i) || b.Tokens != wantN[i] || !near(b.Loss, want, 1e-9) {
				t.Errorf("%s bucket %d = %+v, want start %d, %d tokens, loss %.12g", mode, i, b, 25*i, wantN[i], want)
			}
		}
	}
}

func TestPerplexityRejects(t *testing.T) {
	m := tinyModel(t, 64, model.Float64)
	for _, tt := range []struct {
		name string
		toks Ints
		o    Options
		want error
	}{
		{"one token", Ints{1}, Options{CtxLen: 4}, nil},
		{"no ctx_len", Ints{1, 2, 3}, Options{}, ErrOptions},
		{"stride above ctx_len", Ints{1, 2, 3}, Options{CtxLen: 2, Stride: 3}, ErrOptions},
		{"unknown mode", Ints{1, 2, 3}, Options{Mode: "beam", CtxLen: 2}, ErrOptions},
		{"token outside vocab (rnn)", Ints{1, 2, 99}, Options{Mode: RNN}, nil},
		{"token outside vocab (parallel)", Ints{1, 99, 2}, Options{CtxLen: 4}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Perplexity(context.Background(), m, tt.toks, tt.o)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPerplexityCancels(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, mode := range []Mode{RNN, Parallel} {
		if _, err := Perplexity(ctx, m, randomTokens(100, 64, 1), Options{Mode: mode, CtxLen: 8}); !errors.Is(err, context.Canceled) {
			t.Errorf("%s: err = %v, want context.Canceled", mode, err)
		}
	}
}

// genSource is a long token stream computed on the fly, so that the test measures the
// evaluation's memory and not the input's.
type genSource struct{ n, V int }

func (g genSource) Len() int { return g.n }

func (g genSource) Read(off, n int, dst []int) ([]int, error) {
	dst = dst[:0]
	for i := off; i < off+n; i++ {
		dst = append(dst, int(uint64(i)*0x9e3779b97f4a7c15>>40)%g.V)
	}
	return dst, nil
}

// TestRNNMemoryFlat: the recurrent mode's heap does not grow with the length of the stream.
func TestRNNMemoryFlat(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 20_000
	}
	m := tinyModel(t, 64, model.Float32)
	var heap []uint64
	var ms runtime.MemStats
	progress := func(done, total int64) {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap = append(heap, ms.HeapAlloc)
	}
	r, err := Perplexity(context.Background(), m, genSource{n: n + 1, V: 64},
		Options{Mode: RNN, BucketSize: 1000, Progress: progress, ProgressEvery: int64(n / 10)})
	if err != nil {
		t.Fatal(err)
	}
	if r.Tokens != int64(n) {
		t.Fatalf("scored %d tokens, want %d", r.Tokens, n)
	}
	t.Logf("heap at each %d tokens: %v", n/10, heap)
	// The buckets grow by one small struct per 1000 tokens (about 40 B each); allow 64 KiB.
	for i, h := range heap[1:] {
		if h > heap[0]+64<<10 {
			t.Fatalf("heap grew from %d to %d bytes by token %d", heap[0], h, (i+2)*n/10)
		}
	}
}

// TestTruncatedDataIsAnError: a token file truncated while it is being evaluated ends
// Perplexity with an error wrapping data.ErrTruncated that names the file, in every mode,
// instead of a panic (or SIGBUS) on the mapped file.
func TestTruncatedDataIsAnError(t *testing.T) {
	m := tinyModel(t, 64, model.Float32)
	for _, o := range []Options{{Mode: Parallel, CtxLen: 16}, {Mode: RNN}, {Mode: RNN, Chunk: 8}} {
		t.Run(fmt.Sprintf("%s chunk %d", o.Mode, o.Chunk), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "toks.npy")
			writeNpyU16(t, path, randomTokens(20000, 64, 3))
			toks, err := data.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer toks.Close()
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
			_, err = Perplexity(context.Background(), m, toks, o)
			if !errors.Is(err, data.ErrTruncated) || !strings.Contains(err.Error(), path) {
				t.Fatalf("got %v, want data.ErrTruncated naming %s", err, path)
			}
		})
	}
}

// writeNpyU16 writes ids as a 1-D little-endian uint16 .npy array.
func writeNpyU16(t *testing.T, path string, ids []int) {
	t.Helper()
	header := fmt.Sprintf("{'descr': '<u2', 'fortran_order': False, 'shape': (%d,), }", len(ids))
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	b := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	b = append(b, header...)
	for _, id := range ids {
		b = binary.LittleEndian.AppendUint16(b, uint16(id))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestShardsPartitionTheWindows: the shards of a Parallel evaluation score disjoint sets of
// targets whose union is the whole stream's, so their summed loss is the unsharded one.
func TestShardsPartitionTheWindows(t *testing.T) {
	m := tinyModel(t, 64, model.Float64)
	toks := randomTokens(42, 64, 3) // 41 targets, the last window partial
	for _, o := range []Options{{CtxLen: 8}, {CtxLen: 8, Batch: 2}, {CtxLen: 8, Stride: 3, Batch: 2}} {
		whole, err := Perplexity(context.Background(), m, toks, o)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range []int{2, 3, 7} {
			var sum float64
			var tokens int64
			for s := range n {
				o := o
				o.Shard, o.Shards = s, n
				r, err := Perplexity(context.Background(), m, toks, o)
				if err != nil {
					t.Fatal(err)
				}
				if r.Tokens > 0 {
					sum += r.Loss * float64(r.Tokens)
				}
				tokens += r.Tokens
			}
			if tokens != whole.Tokens || !near(sum/float64(tokens), whole.Loss, 1e-9) {
				t.Fatalf("%+v in %d shards: %d tokens, loss %.15g; unsharded %d, %.15g", o, n, tokens, sum/float64(tokens), whole.Tokens, whole.Loss)
			}
		}
	}
	if _, err := Perplexity(context.Background(), m, toks, Options{Mode: RNN, Shard: 0, Shards: 2}); !errors.Is(err, ErrOptions) {
		t.Fatalf("sharded RNN mode: %v, want ErrOptions", err)
	}
}
