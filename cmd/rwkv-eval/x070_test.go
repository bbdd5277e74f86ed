package main

import (
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// fixture7 is a tiny byte-level RWKV-7 model in every form rwkv-eval reads it from.
type fixture7 struct {
	pth, st, hf, gguf string // RWKV-LM .pth and safetensors, fla-hub directory, GGUF
	ckpt, outDir      string // a training checkpoint file and its directory
}

var (
	fix7Once sync.Once
	fix7     fixture7
	fix7Err  error
)

func setup7(t *testing.T) (fixture, fixture7) {
	t.Helper()
	f := setup(t)
	fix7Once.Do(func() { fix7, fix7Err = makeFixture7() })
	if fix7Err != nil {
		t.Fatal(fix7Err)
	}
	return f, fix7
}

// makeFixture7 writes an L2-D32 x070 model (2 heads of 16) with RWKV-LM's init plus noise, so that
// the time mix, the WKV-7 state and the value residual all change the logits.
func makeFixture7() (fixture7, error) {
	dir, err := os.MkdirTemp("", "rwkv-eval-test7")
	if err != nil {
		return fixture7{}, err
	}
	f := fixture7{pth: filepath.Join(dir, "rwkv7.pth"), st: filepath.Join(dir, "rwkv7.safetensors"), hf: filepath.Join(dir, "hf7"),
		gguf: filepath.Join(dir, "rwkv7.gguf"), outDir: filepath.Join(dir, "out")}
	m, err := model.New(model.Config{Arch: arch.X070, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 256, CtxLen: 64}, model.Float32)
	if err != nil {
		return f, err
	}
	m.Init(1, 0)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, p := range m.Params {
		v := p.Float64s()
		for i := range v {
			v[i] += 0.2 * rng.NormFloat64()
		}
		if err := p.SetFloat64s(v); err != nil {
			return f, err
		}
	}
	ts := weights.Tensors(m, checkpoint.F32)
	for _, w := range []struct {
		path  string
		write func(io.Writer) error
	}{
		{f.pth, func(w io.Writer) error { return checkpoint.ExportX070PTH(w, ts, checkpoint.F32) }},
		{f.st, func(w io.Writer) error { return checkpoint.ExportX070RWKV(w, ts, checkpoint.F32) }},
		{f.gguf, func(w io.Writer) error {
			return checkpoint.ExportGGUF7(w, ts, checkpoint.GGUF7Options{DType: checkpoint.F32})
		}},
	} {
		if err := checkpoint.WriteFileAtomic(w.path, w.write); err != nil {
			return f, err
		}
	}
	if err := checkpoint.ExportHF7(f.hf, ts, checkpoint.HF7Config{}, checkpoint.F32); err != nil {
		return f, err
	}
	f.ckpt, err = checkpoint.Save(f.outDir, 3, ts, nil, nil, checkpoint.State{})
	return f, err
}

// TestX070PPLModesAgree: an RWKV-7 model read from each file form gives the same loss through
// `rwkv-eval ppl`, and the parallel, rnn and chunked modes agree (fp64 to 1e-9, fp32 to 1e-5 of
// the fp64 loss) on a document shorter than --ctx-len.
func TestX070PPLModesAgree(t *testing.T) {
	f, f7 := setup7(t)
	want := basePPL(t, f7.st, f.text, "x070")
	for _, tt := range []struct {
		name string
		args []string
		tol  float64
	}{
		{"rnn fp64", []string{"--model", f7.st, "--data", f.text, "--dtype", "fp64", "--mode", "rnn"}, 1e-9},
		{"chunked fp64", []string{"--model", f7.st, "--data", f.text, "--dtype", "fp64", "--mode", "rnn", "--chunk", "16"}, 1e-9},
		{"parallel batch stride fp64", []string{"--model", f7.st, "--data", f.text, "--dtype", "fp64", "--ctx-len", "200", "--stride", "50", "--batch", "2"}, 1e-9},
		{"parallel fp32", []string{"--model", f7.st, "--data", f.text}, 1e-5},
		{"rnn fp32", []string{"--model", f7.st, "--data", f.text, "--mode", "rnn"}, 1e-5},
		{"chunked fp32", []string{"--model", f7.st, "--data", f.text, "--mode", "rnn", "--chunk", "32"}, 1e-5},
		{"pth", []string{"--model", f7.pth, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"fla-hub directory", []string{"--model", f7.hf, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"gguf", []string{"--model", f7.gguf, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"checkpoint", []string{"--model", f7.ckpt, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"out_dir", []string{"--model", f7.outDir, "--data", f.text, "--dtype", "fp64"}, 1e-9},
		{"binidx rnn", []string{"--model", f7.st, "--data", f.bin, "--dtype", "fp64", "--mode", "rnn", "--max-tokens", fmt.Sprint(f.textLen - 1)}, 1e-9},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := pplJSON(t, tt.args...)
			if got := num(t, r, "loss"); math.Abs(got-want) > tt.tol*math.Max(1, want) {
				t.Fatalf("loss %.12g, want %.12g (parallel fp64 on the text)", got, want)
			}
		})
	}
	checkUnboundedModesAgree(t, f7.st, f.text)
}

// TestX070Lambada: lambada scores the same with batches of 1 and 3.
func TestX070Lambada(t *testing.T) {
	f, f7 := setup7(t)
	checkLambadaBatches(t, f7.st, f.lambada)
}

// TestX070Generate: the same seed gives the same text, with the repetition penalties on, and a
// different seed other text.
func TestX070Generate(t *testing.T) {
	_, f7 := setup7(t)
	gen := func(seed string) string { return generateText(t, f7.hf, seed) }
	a, b, c := gen("7"), gen("7"), gen("8")
	if a != b || len(a) == 0 {
		t.Fatalf("seed 7 twice: %q and %q", a, b)
	}
	if a == c {
		t.Fatalf("seeds 7 and 8 both gave %q", a)
	}
}
