package train

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/checkpoint"
	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/model"
	"github.com/rwkv-go/rwkv-go/optim"
	"github.com/rwkv-go/rwkv-go/weights"
)

// fixedBatches hands out batches from a list, for tests that must see given data.
type fixedBatches struct {
	batches []*data.Batch
	next    int
}

func (f *fixedBatches) Next() *data.Batch      { b := f.batches[f.next]; f.next++; return b }
func (f *fixedBatches) State() ([]byte, error) { return []byte(strconv.Itoa(f.next)), nil }
func (f *fixedBatches) SetState(b []byte) error {
	var err error
	f.next, err = strconv.Atoi(string(b))
	return err
}
func (f *fixedBatches) Close() error { return nil }

// npyCorpus writes n random token ids below vocab as a .npy int32 array.
func npyCorpus(t *testing.T, vocab, n int) string {
	header := fmt.Sprintf("{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }", n)
	for (10+len(header)+1)%64 != 0 {
		header += " "
	}
	header += "\n"
	buf := append([]byte("\x93NUMPY\x01\x00"), byte(len(header)), byte(len(header)>>8))
	buf = append(buf, header...)
	for i := 0; i < n; i++ {
		buf = binary.LittleEndian.AppendUint32(buf, uint32((i*7919)%vocab))
	}
	path := filepath.Join(t.TempDir(), "tokens.npy")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func i64s(t *testing.T, f *checkpoint.File, name string) []int {
	ten, ok := f.Get(name)
	if !ok {
		t.Fatalf("golden has no %q", name)
	}
	out := make([]int, len(ten.Data)/8)
	for i := range out {
		out[i] = int(int64(binary.LittleEndian.Uint64(ten.Data[8*i:])))
	}
	return out
}

func f64s(t *testing.T, f *checkpoint.File, name string) []float64 {
	ten, ok := f.Get(name)
	if !ok {
		t.Fatalf("golden has no %q", name)
	}
	v, err := ten.Float64s()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAdamWMatchesPyTorch runs 10 training steps through the trainer's step (L2Wrap, clipping
// at 1.0, AdamW with weight decay 0.1 on matrices, layerwise lr, RWKV-LM schedule with warmup)
// and compares the losses, the gradient norms, the learning rates and the weights after the
// first and the last step with torch.optim.AdamW (reference/gen_golden.py).
func TestAdamWMatchesPyTorch(t *testing.T) {
	f, err := checkpoint.OpenSafetensors("testdata/adamw_golden.safetensors")
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 reference/gen_golden.py)", err)
	}
	meta := func(k string) int { v, _ := strconv.Atoi(f.Meta[k]); return v }
	steps, B, T := meta("steps"), meta("B"), meta("T")
	c := tinyConfig(t)
	c.Model.Config = model.Config{Layers: meta("n_layer"), Embd: meta("n_embd"), Vocab: meta("vocab_size"), CtxLen: T, FFN: meta("dim_ffn")}
	c.Data = data.Config{Train: npyCorpus(t, meta("vocab_size"), 4096), Sampling: "random"}
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.L2Wrap = B, steps, true
	c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = 6e-3, 1e-3, 3
	c.Optim.WeightDecay, c.Optim.GradClip, c.Optim.LayerwiseLR = 0.1, 1.0, true
	tr := newTrainer(t, c, Options{})
	checkAdamWGolden(t, tr, f, steps, B, T)
}

// TestAdamWMatchesPyTorchX070 runs 6 x070 training steps through the trainer's step with
// RWKV-LM's v7 recipe (L2Wrap, clipping at 1.0, AdamW with betas 0.9/0.99, eps 1e-18, weight
// decay 0.1 only on >= 2-D ".weight" tensors, att.w0 at 2x lr, the cosine_v7 schedule with 2
// warmup steps) and compares the losses, the gradient norms, the learning rates and the
// weights after the first and the last step with torch.optim.AdamW (reference/gen_golden7.py).
// The golden's layer 0 carries the unused v0/v1/v2, whose gradients are zero.
func TestAdamWMatchesPyTorchX070(t *testing.T) {
	f, err := checkpoint.OpenSafetensors("testdata/adamw7_golden.safetensors")
	if err != nil {
		t.Fatalf("%v (regenerate with /usr/bin/python3 reference/gen_golden7.py)", err)
	}
	meta := func(k string) int { v, _ := strconv.Atoi(f.Meta[k]); return v }
	metaF := func(k string) float64 { v, _ := strconv.ParseFloat(f.Meta[k], 64); return v }
	steps, B, T := meta("steps"), meta("B"), meta("T")
	c := tinyConfig(t)
	c.Model.Config = model.Config{Arch: arch.X070, Layers: meta("n_layer"), Embd: meta("n_embd"), Vocab: meta("vocab_size"),
		CtxLen: T, FFN: meta("dim_ffn"), HeadSize: meta("head_size"),
		DimDecay: meta("D_decay"), DimAAA: meta("D_aaa"), DimMV: meta("D_mv"), DimGate: meta("D_gate")}
	c.Data = data.Config{Train: npyCorpus(t, meta("vocab_size"), 4096), Sampling: "random"}
	c.Train.MicroBsz, c.Train.MaxSteps, c.Train.L2Wrap = B, steps, true
	c.Optim.Kind, c.Optim.LRInit, c.Optim.LRFinal, c.Optim.WarmupSteps = optim.CosineV7, metaF("lr_init"), metaF("lr_final"), meta("warmup_steps")
	c.Optim.Beta1, c.Optim.Beta2, c.Optim.Eps = metaF("beta1"), metaF("beta2"), metaF("eps")
	c.Optim.WeightDecay, c.Optim.GradClip, c.Optim.LayerwiseLR = metaF("weight_decay"), metaF("grad_clip"), true
	if c.Optim.Eps != 1e-18 || c.Optim.WeightDecay != 0.1 || c.Optim.Kind != "cosine_v7" {
		t.Fatalf("golden metadata: eps %v, weight_decay %v", c.Optim.Eps, c.Optim.WeightDecay)
	}
	tr := newTrainer(t, c, Options{})
	checkAdamWGolden(t, tr, f, steps, B, T)
}

// checkAdamWGolden sets the golden's initial weights, feeds its batches and compares every
// step's lr, loss and gradient norm, and the weights after the first and the last step, in
// units of that step's lr times the tensor's lr scale.
func checkAdamWGolden(t *testing.T, tr *Trainer, f *checkpoint.File, steps, B, T int) {
	t.Helper()
	a := tr.cfg.Model.Arch
	var ts []checkpoint.Tensor
	for _, p := range tr.Model.Params {
		ts = append(ts, checkpoint.FromFloat64(p.Name, p.Shape, f64s(t, f, "param/"+p.Name), checkpoint.F32))
	}
	if err := weights.Set(tr.Model, ts); err != nil {
		t.Fatal(err)
	}
	toks, tgts := i64s(t, f, "tokens"), i64s(t, f, "targets")
	src := &fixedBatches{}
	for s := 0; s < steps; s++ {
		n := B * T
		src.batches = append(src.batches, &data.Batch{X: toks[s*n : (s+1)*n], Y: tgts[s*n : (s+1)*n], B: B, T: T})
	}
	tr.loader.Close()
	tr.loader = src
	wantLR, wantLoss, wantNorm := f64s(t, f, "lr"), f64s(t, f, "loss"), f64s(t, f, "grad_norm")
	checkWeights := func(prefix string, lr float64) {
		t.Helper()
		var worst float64
		for _, p := range tr.Model.Params {
			want := f64s(t, f, prefix+p.Name)
			scale, _ := optim.Groups(a, p.Name, p.Shape, true)
			got := p.F32()
			for j := range want {
				d := math.Abs(float64(got[j])-want[j]) / (lr * scale)
				if d > 0.05 {
					t.Fatalf("%s%s[%d]: got %v, want %v: %.3g lr apart", prefix, p.Name, j, got[j], want[j], d)
				}
				worst = math.Max(worst, d)
			}
		}
		t.Logf("%s weights: worst difference %.3g lr", prefix, worst)
	}
	var worstLoss, worstNorm float64
	for s := 0; s < steps; s++ {
		lr := tr.sched.LR(s)
		if math.Abs(lr-wantLR[s]) > 1e-12*wantLR[s] {
			t.Fatalf("step %d: lr %v, want %v", s, lr, wantLR[s])
		}
		res, err := tr.TrainStep(lr)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(res.Loss-wantLoss[s]) > 1e-5*wantLoss[s] {
			t.Fatalf("step %d: loss %.8f, want %.8f", s, res.Loss, wantLoss[s])
		}
		if math.Abs(res.GradNorm-wantNorm[s]) > 1e-4*wantNorm[s] {
			t.Fatalf("step %d: grad norm %.6f, want %.6f", s, res.GradNorm, wantNorm[s])
		}
		worstLoss = math.Max(worstLoss, math.Abs(res.Loss-wantLoss[s])/wantLoss[s])
		worstNorm = math.Max(worstNorm, math.Abs(res.GradNorm-wantNorm[s])/wantNorm[s])
		if s == 0 {
			checkWeights("after1/", wantLR[0])
		}
	}
	t.Logf("loss: worst relative difference %.3g, grad norm %.3g", worstLoss, worstNorm)
	checkWeights("final/", wantLR[steps-1])
}
