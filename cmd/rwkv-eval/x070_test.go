package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/eval"
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
	base := pplJSON(t, "--model", f7.st, "--data", f.text, "--tokenizer", "byte", "--dtype", "fp64")
	want := num(t, base, "loss")
	if cfg, _ := base["config"].(string); !strings.HasPrefix(cfg, "x070 L2-D32-V256") {
		t.Fatalf("config %q, want an x070 L2-D32-V256 model", cfg)
	}
	if math.Abs(want-math.Log(256)) < 0.05 {
		t.Fatalf("loss %v is that of a uniform model: the fixture does not exercise the model", want)
	}
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
	// Beyond --ctx-len the unbounded modes agree with each other, not with the windows.
	rnn := num(t, pplJSON(t, "--model", f7.st, "--data", f.text, "--dtype", "fp64", "--mode", "rnn", "--ctx-len", "16"), "loss")
	chunked := num(t, pplJSON(t, "--model", f7.st, "--data", f.text, "--dtype", "fp64", "--mode", "rnn", "--chunk", "7", "--ctx-len", "16"), "loss")
	if math.Abs(rnn-chunked) > 1e-9 {
		t.Fatalf("rnn %.12g, chunked %.12g with ctx-len 16", rnn, chunked)
	}
}

func TestX070Lambada(t *testing.T) {
	f, f7 := setup7(t)
	var res []eval.LambadaResult
	for _, batch := range []string{"1", "3"} {
		code, out, errOut := runCLI(t, context.Background(), "lambada", "--model", f7.st, "--data", f.lambada, "--json", "--batch", batch, "--dtype", "fp64")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		var r eval.LambadaResult
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		if r.Count != 3 || r.TargetTokens != 14 || r.Accuracy < 0 || r.Accuracy > 1 || !(r.PPL > 1) {
			t.Fatalf("batch %s: got %+v", batch, r)
		}
		res = append(res, r)
	}
	if math.Abs(res[0].Loss-res[1].Loss) > 1e-9 || res[0].Correct != res[1].Correct {
		t.Fatalf("batch 1 %+v and batch 3 %+v differ", res[0], res[1])
	}
}

// TestX070Generate: the same seed gives the same text, with the repetition penalties on, and a
// different seed other text.
func TestX070Generate(t *testing.T) {
	_, f7 := setup7(t)
	gen := func(seed string) string {
		t.Helper()
		code, out, errOut := runCLI(t, context.Background(), "generate", "--model", f7.hf, "--prompt", "the ", "--max-tokens", "24",
			"--stop-token", "-1", "--echo=false", "--seed", seed, "--temperature", "1.2", "--top-p", "0.95",
			"--alpha-presence", "0.3", "--alpha-frequency", "0.3")
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, errOut)
		}
		return out
	}
	a, b, c := gen("7"), gen("7"), gen("8")
	if a != b || len(a) == 0 {
		t.Fatalf("seed 7 twice: %q and %q", a, b)
	}
	if a == c {
		t.Fatalf("seeds 7 and 8 both gave %q", a)
	}
}
