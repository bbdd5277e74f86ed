package main

import (
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

// fixture5 is a tiny byte-level RWKV-5.2 or RWKV-6 model in the forms rwkv-eval reads it from,
// with a LoRA adapter and a state file for it.
type fixture5 struct {
	pth, st      string // RWKV-LM .pth and safetensors
	ckpt, outDir string // a training checkpoint file and its directory
	lora, state  string // adapter files (LoRA with alpha 8; time_state)
	wantLoRA     float64
	wantState    float64 // the adapted graph's loss on the corpus text (fp64)
}

var (
	fix5Once sync.Once
	fix5     map[arch.Arch]fixture5
	fix5Err  error
)

func setup5(t *testing.T) (fixture, map[arch.Arch]fixture5) {
	t.Helper()
	f := setup(t)
	fix5Once.Do(func() { fix5, fix5Err = makeFixtures5() })
	if fix5Err != nil {
		t.Fatal(fix5Err)
	}
	return f, fix5
}

func makeFixtures5() (map[arch.Arch]fixture5, error) {
	out := map[arch.Arch]fixture5{}
	for _, cfg := range []model.Config{
		{Arch: arch.X052, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 256, CtxLen: 64},
		{Arch: arch.X060, Layers: 2, Embd: 32, HeadSize: 16, Vocab: 256, CtxLen: 64, DimMix: 8, DimDecay: 12},
	} {
		f, err := makeFixture5(cfg)
		if err != nil {
			return nil, err
		}
		out[cfg.Arch] = f
	}
	return out, nil
}

// makeFixture5 writes an L2-D32 model (2 heads of 16) with RWKV-LM's init plus noise, so that the
// token shift, the WKV state and the gate all change the logits, and random adapters for it.
func makeFixture5(cfg model.Config) (fixture5, error) {
	dir, err := os.MkdirTemp("", "rwkv-eval-test5")
	if err != nil {
		return fixture5{}, err
	}
	a := string(cfg.Arch)
	f := fixture5{pth: filepath.Join(dir, a+".pth"), st: filepath.Join(dir, a+".safetensors"), outDir: filepath.Join(dir, "out"),
		lora: filepath.Join(dir, "lora.pth"), state: filepath.Join(dir, "state.pth")}
	m, err := model.New(cfg, model.Float64)
	if err != nil {
		return f, err
	}
	m.Init(1, 0)
	rng := rand.New(rand.NewPCG(5, 6))
	noise := func(m *model.Model, keep func(string) bool, scale float64) error {
		for _, p := range m.Params {
			if !keep(p.Name) {
				continue
			}
			v := p.Float64s()
			for i := range v {
				v[i] += scale * rng.NormFloat64()
			}
			if err := p.SetFloat64s(v); err != nil {
				return err
			}
		}
		return nil
	}
	if err := noise(m, func(string) bool { return true }, 0.2); err != nil {
		return f, err
	}
	ts := weights.Tensors(m, checkpoint.F32)
	for _, w := range []struct {
		path  string
		write func(io.Writer) error
	}{
		{f.pth, func(w io.Writer) error { return checkpoint.WritePTH(w, ts) }},
		{f.st, func(w io.Writer) error { return checkpoint.WriteSafetensors(w, ts, nil) }},
	} {
		if err := checkpoint.WriteFileAtomic(w.path, w.write); err != nil {
			return f, err
		}
	}
	if f.ckpt, err = checkpoint.Save(f.outDir, 3, ts, nil, nil, checkpoint.State{}); err != nil {
		return f, err
	}
	// the adapters, on the weights as the files hold them (fp32)
	adapted := func() (*model.Model, error) { return weights.Load(f.st, 200, model.Float64) }
	write := func(m *model.Model, keep func(string) bool, path string) error {
		var ts []checkpoint.Tensor
		for _, p := range m.Params {
			if keep(p.Name) {
				ts = append(ts, checkpoint.FromFloat64(p.Name, p.Shape, p.F64(), checkpoint.F64))
			}
		}
		return checkpoint.WriteAdapterPTH(path, ts)
	}
	lm, err := adapted()
	if err != nil {
		return f, err
	}
	mods, err := lm.LoRAModulesFor(lm.Config.DefaultLoRATargets())
	if err != nil {
		return f, err
	}
	if err := lm.AddLoRA(mods, 4, 8.0/4, 0, 1); err != nil {
		return f, err
	}
	if err := noise(lm, model.IsAdapter, 0.5); err != nil {
		return f, err
	}
	if err := write(lm, model.IsAdapter, f.lora); err != nil {
		return f, err
	}
	if f.wantLoRA, err = graphLoss(lm); err != nil {
		return f, err
	}
	sm, err := adapted()
	if err != nil {
		return f, err
	}
	sm.AddTimeState()
	if err := noise(sm, model.IsAdapterState, 0.5); err != nil {
		return f, err
	}
	if err := write(sm, model.IsAdapterState, f.state); err != nil {
		return f, err
	}
	f.wantState, err = graphLoss(sm)
	return f, err
}

// graphLoss is the mean cross-entropy of the corpus text under m's training graph (adapters
// applied by the graph).
func graphLoss(m *model.Model) (float64, error) {
	ids := []byte(corpusText)
	T := len(ids) - 1
	gr, err := m.NewGraph(model.GraphOptions{B: 1, T: T, Grads: true})
	if err != nil {
		return 0, err
	}
	defer gr.Close()
	x, y := make([]int, T), make([]int, T)
	for i := range x {
		x[i], y[i] = int(ids[i]), int(ids[i+1])
	}
	if err := gr.SetTokens(x, y); err != nil {
		return 0, err
	}
	if err := gr.Run(); err != nil {
		return 0, err
	}
	return gr.Loss(), nil
}

// TestX05PPLModesAgree: an RWKV-5.2 and an RWKV-6 model read from each file form give the same
// loss through `rwkv-eval ppl`; the parallel, rnn and chunked modes agree (fp64 to 1e-9, fp32 to
// 1e-5 of the fp64 loss) on a document shorter than --ctx-len; and --adapter (LoRA) and --state
// score the text as the adapted model's training graph does.
func TestX05PPLModesAgree(t *testing.T) {
	f, fs := setup5(t)
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		f5 := fs[a]
		t.Run(string(a), func(t *testing.T) {
			want := basePPL(t, f5.st, f.text, string(a))
			t.Logf("%s: parallel fp64 loss %.6f", a, want)
			for _, tt := range []struct {
				name string
				args []string
				want float64
				tol  float64
			}{
				{"rnn fp64", []string{"--model", f5.st, "--dtype", "fp64", "--mode", "rnn"}, want, 1e-9},
				{"chunked fp64", []string{"--model", f5.st, "--dtype", "fp64", "--mode", "rnn", "--chunk", "16"}, want, 1e-9},
				{"parallel batch stride fp64", []string{"--model", f5.st, "--dtype", "fp64", "--ctx-len", "200", "--stride", "50", "--batch", "2"}, want, 1e-9},
				{"parallel fp32", []string{"--model", f5.st}, want, 1e-5},
				{"rnn fp32", []string{"--model", f5.st, "--mode", "rnn"}, want, 1e-5},
				{"chunked fp32", []string{"--model", f5.st, "--mode", "rnn", "--chunk", "32"}, want, 1e-5},
				{"pth", []string{"--model", f5.pth, "--dtype", "fp64"}, want, 1e-9},
				{"checkpoint", []string{"--model", f5.ckpt, "--dtype", "fp64"}, want, 1e-9},
				{"out_dir", []string{"--model", f5.outDir, "--dtype", "fp64"}, want, 1e-9},
				{"lora parallel", []string{"--model", f5.st, "--dtype", "fp64", "--ctx-len", "200", "--adapter", f5.lora, "--lora-alpha", "8"}, f5.wantLoRA, 1e-9},
				{"lora rnn", []string{"--model", f5.st, "--dtype", "fp64", "--mode", "rnn", "--adapter", f5.lora, "--lora-alpha", "8"}, f5.wantLoRA, 1e-9},
				{"state parallel", []string{"--model", f5.st, "--dtype", "fp64", "--ctx-len", "200", "--state", f5.state}, f5.wantState, 1e-9},
				{"state rnn", []string{"--model", f5.st, "--dtype", "fp64", "--mode", "rnn", "--state", f5.state}, f5.wantState, 1e-9},
			} {
				t.Run(tt.name, func(t *testing.T) {
					r := pplJSON(t, append(tt.args, "--data", f.text)...)
					if got := num(t, r, "loss"); math.Abs(got-tt.want) > tt.tol*math.Max(1, tt.want) {
						t.Fatalf("loss %.12g, want %.12g", got, tt.want)
					}
				})
			}
			for _, adapted := range []float64{f5.wantLoRA, f5.wantState} {
				if math.Abs(adapted-want) < 1e-6 {
					t.Errorf("an adapter leaves the loss at the base's %v: the fixture does not exercise it", want)
				}
			}
			checkUnboundedModesAgree(t, f5.st, f.text)
		})
	}
}

// TestX05Lambada: lambada scores the same with batches of 1 and 3, on both architectures.
func TestX05Lambada(t *testing.T) {
	f, fs := setup5(t)
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		t.Run(string(a), func(t *testing.T) { checkLambadaBatches(t, fs[a].st, f.lambada) })
	}
}

// TestX05Generate: the same seed gives the same text, with the repetition penalties on, a
// different seed other text, and a state file other text again.
func TestX05Generate(t *testing.T) {
	_, fs := setup5(t)
	for _, a := range []arch.Arch{arch.X052, arch.X060} {
		t.Run(string(a), func(t *testing.T) {
			gen := func(seed string, extra ...string) string { return generateText(t, fs[a].pth, seed, extra...) }
			x, y, z, s := gen("7"), gen("7"), gen("8"), gen("7", "--state", fs[a].state)
			if x != y || len(x) == 0 {
				t.Fatalf("seed 7 twice: %q and %q", x, y)
			}
			if x == z || x == s {
				t.Fatalf("seed 7 %q, seed 8 %q, seed 7 with a state %q: want three texts", x, z, s)
			}
		})
	}
}
