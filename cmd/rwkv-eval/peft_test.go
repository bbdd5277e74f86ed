package main

import (
	"io"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/weights"
)

// adaptedLoss is the mean cross-entropy of the corpus under m (adapters applied by the graph).
func adaptedLoss(t *testing.T, m *model.Model) float64 {
	t.Helper()
	ids := []byte(corpusText)
	T := len(ids) - 1
	gr, err := m.NewGraph(model.GraphOptions{B: 1, T: T, Grads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer gr.Close()
	x, y := make([]int, T), make([]int, T)
	for i := range x {
		x[i], y[i] = int(ids[i]), int(ids[i+1])
	}
	if err := gr.SetTokens(x, y); err != nil {
		t.Fatal(err)
	}
	if err := gr.Run(); err != nil {
		t.Fatal(err)
	}
	return gr.Loss()
}

// TestPPLWithAdapterAndState: `ppl --adapter` (LoRA, merged on load) and `ppl --state` (every
// sequence starts from the file's time_state) score the text as the adapted model's graph does,
// in parallel and rnn modes, and differently from the base.
func TestPPLWithAdapterAndState(t *testing.T) {
	f := setup(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(3, 3))
	// the fixture's RWKV-LM init has zero att.output, which would hide any state: add noise
	bm, err := weights.Load(f.st, 200, model.Float32)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range bm.Params {
		for i, d := 0, p.F32(); i < len(d); i++ {
			d[i] += float32(0.1 * rng.NormFloat64())
		}
	}
	st := filepath.Join(dir, "base.safetensors")
	ts := weights.Tensors(bm, checkpoint.F32)
	if err := checkpoint.WriteFileAtomic(st, func(w io.Writer) error { return checkpoint.ExportRWKV(w, ts, checkpoint.F32) }); err != nil {
		t.Fatal(err)
	}
	f.st = st
	base := num(t, pplJSON(t, "--model", f.st, "--data", f.text, "--dtype", "fp64", "--ctx-len", "200"), "loss")
	write := func(m *model.Model, keep func(string) bool) string {
		var ts []checkpoint.Tensor
		for _, p := range m.Params {
			if keep(p.Name) {
				ts = append(ts, checkpoint.FromFloat64(p.Name, p.Shape, p.F64(), checkpoint.F64))
			}
		}
		path := filepath.Join(dir, ts[0].Name+".pth")
		if err := checkpoint.WriteAdapterPTH(path, ts); err != nil {
			t.Fatal(err)
		}
		return path
	}
	randomize := func(m *model.Model) {
		for _, p := range m.Params {
			if model.IsAdapter(p.Name) {
				v := make([]float64, p.Len())
				for i := range v {
					v[i] = 0.5 * rng.NormFloat64()
				}
				if model.IsAdapterState(p.Name) { // RWKV-4 [3,C]: bb > 0
					C := p.Shape[1]
					for c := C; c < 2*C; c++ {
						v[c] = math.Abs(v[c]) + 0.5
					}
				}
				p.SetFloat64s(v)
			}
		}
	}

	m, err := weights.Load(f.st, 200, model.Float64)
	if err != nil {
		t.Fatal(err)
	}
	mods, _ := m.LoRAModulesFor(m.Config.DefaultLoRATargets())
	if err := m.AddLoRA(mods, 4, 8.0/4, 0, 1); err != nil {
		t.Fatal(err)
	}
	randomize(m)
	lora := write(m, model.IsAdapter)
	want := adaptedLoss(t, m)

	s, err := weights.Load(f.st, 200, model.Float64)
	if err != nil {
		t.Fatal(err)
	}
	s.AddTimeState()
	randomize(s)
	state := write(s, model.IsAdapterState)
	wantState := adaptedLoss(t, s)

	for _, tc := range []struct {
		name string
		args []string
		want float64
	}{
		{"lora parallel", []string{"--adapter", lora, "--lora-alpha", "8"}, want},
		{"lora rnn", []string{"--adapter", lora, "--lora-alpha", "8", "--mode", "rnn"}, want},
		{"state parallel", []string{"--state", state}, wantState},
		{"state rnn", []string{"--state", state, "--mode", "rnn"}, wantState},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--model", f.st, "--data", f.text, "--dtype", "fp64", "--ctx-len", "200"}, tc.args...)
			got := num(t, pplJSON(t, args...), "loss")
			if math.Abs(got-tc.want) > 1e-9 || math.Abs(got-base) < 1e-6 {
				t.Errorf("loss %.12g, adapted model %.12g, base %.12g", got, tc.want, base)
			}
		})
	}
	if code, _, stderr := runCLI(t, t.Context(), "ppl", "--model", lora, "--data", f.text); code == exitOK || !strings.Contains(stderr, "--adapter") {
		t.Errorf("an adapter file as --model: exit %d, %s", code, stderr)
	}
	if code, _, stderr := runCLI(t, t.Context(), "ppl", "--model", f.st, "--data", f.text, "--adapter", lora); code == exitOK {
		t.Errorf("a LoRA adapter without --lora-alpha was accepted: %s", stderr)
	}
}
