package train

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/rwkv-go/rwkv-go/data"
	"github.com/rwkv-go/rwkv-go/internal/testutil"
	"github.com/rwkv-go/rwkv-go/model"
)

// TestPEFTStepMatchesTorch: one LoRA step (adapters + train_parts) and one state-tuning step of
// the trainer match PyTorch (reference/peft_step.py over reference/rwkv4.py): the loss, every
// trained tensor's gradient and its value after the Adam step; only those tensors move. It skips
// where /usr/bin/python3 cannot import torch, unless RWKV_REQUIRE_TORCH is set.
func TestPEFTStepMatchesTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts PyTorch")
	}
	py := testutil.RequireTorch(t)
	type refStep struct {
		Loss  float64
		Grads map[string][]float64
		After map[string][]float64
	}
	modes := []string{PEFTLoRA, PEFTState}
	var reqs []map[string]any
	trainers := map[string]*Trainer{}
	befores := map[string]map[string][]float32{}
	const lr = 1e-3
	for _, mode := range modes {
		func() {
			c := peftBase(t, mode)
			c.PEFT.LoRADropout = 0
			c.Train.L2Wrap, c.Optim.LayerwiseLR, c.Optim.GradClip, c.Optim.WeightDecay = false, false, 0, 0
			tr := newTrainer(t, c, Options{})
			rng := rand.New(rand.NewPCG(9, 9))
			for _, p := range tr.Model.Params { // B != 0, so that A has a gradient too
				if model.IsAdapter(p.Name) {
					d := p.F32()
					for i := range d {
						d[i] = float32(0.2 * rng.NormFloat64())
					}
					if model.IsAdapterState(p.Name) { // aa, bb > 0, pp
						C := p.Shape[1]
						for i := C; i < 2*C; i++ {
							d[i] = float32(math.Abs(float64(d[i])) + 0.2)
						}
					}
				}
			}
			B, T, V := c.Train.MicroBsz, c.Model.CtxLen, c.Model.Vocab
			b := &data.Batch{X: make([]int, B*T), Y: make([]int, B*T), B: B, T: T}
			for i := range b.X {
				b.X[i], b.Y[i] = rng.IntN(V), rng.IntN(V)
			}
			tr.loader = &fixedBatches{batches: []*data.Batch{b}}
			req := map[string]any{"mode": mode, "scale": c.PEFT.LoRAAlpha / float64(c.PEFT.LoRAR),
				"modules": append([]string{}, tr.Model.LoRAModules()...), "lr": lr, "beta1": c.Optim.Beta1, "beta2": c.Optim.Beta2, "eps": c.Optim.Eps}
			params, shapes, train := map[string][]float64{}, map[string][]int{}, []string{}
			before := map[string][]float32{}
			for _, p := range tr.Model.Params {
				params[p.Name], shapes[p.Name] = p.Float64s(), p.Shape
				before[p.Name] = slices.Clone(p.F32())
				if !tr.Model.Frozen(p.Name) && !model.IsAdapter(p.Name) {
					train = append(train, p.Name)
				}
			}
			req["params"], req["shapes"], req["train"] = params, shapes, train
			rows := func(v []int) [][]int {
				var out [][]int
				for i := 0; i < B; i++ {
					out = append(out, v[i*T:(i+1)*T])
				}
				return out
			}
			req["tokens"], req["targets"] = rows(b.X), rows(b.Y)
			reqs = append(reqs, req)
			trainers[mode], befores[mode] = tr, before
		}()
	}
	body, err := json.Marshal(reqs)
	if err != nil {
		t.Fatal(err)
	}
	var refs []refStep
	func() {
		{
			cmd := exec.Command(py, filepath.Join("..", "reference", "peft_step.py"))
			cmd.Stdin = bytes.NewReader(body)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("peft_step.py: %v\n%s", err, stderr.String())
			}
			if err := json.Unmarshal(out, &refs); err != nil || len(refs) != len(modes) {
				t.Fatalf("peft_step.py: %v, %d results", err, len(refs))
			}
		}
	}()
	for k, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			tr, ref, before := trainers[mode], refs[k], befores[mode]

			res, err := tr.TrainStep(lr)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(res.Loss-ref.Loss) > 1e-5*math.Abs(ref.Loss) {
				t.Errorf("loss %.8g, torch %.8g", res.Loss, ref.Loss)
			}
			if len(ref.Grads) != len(tr.params) {
				t.Fatalf("torch trains %d tensors, the trainer %d", len(ref.Grads), len(tr.params))
			}
			for _, p := range tr.params {
				g, want := p.Grad, ref.Grads[p.Name]
				mx := 0.0
				for _, v := range want {
					mx = math.Max(mx, math.Abs(v))
				}
				for j := range want {
					if d := math.Abs(float64(g[j]) - want[j]); d > 1e-4*mx+1e-7 {
						t.Fatalf("grad %s[%d] = %.8g, torch %.8g (max |g| %.3g)", p.Name, j, g[j], want[j], mx)
					}
					// Adam's first step moves by about lr·sign(g): compare where |g| is clear of eps
					a, wa := float64(p.Data[j]), ref.After[p.Name][j]
					tol := 1e-6 + lr*1e-3
					if math.Abs(want[j]) < 1e-5*mx {
						tol = 2 * lr
					}
					if math.Abs(a-wa) > tol {
						t.Fatalf("%s[%d] after the step %.8g, torch %.8g", p.Name, j, a, wa)
					}
				}
			}
			for _, p := range tr.Model.Params {
				if tr.Model.Frozen(p.Name) && !slices.Equal(p.F32(), before[p.Name]) {
					t.Errorf("frozen %s moved", p.Name)
				}
			}
		})
	}
}
