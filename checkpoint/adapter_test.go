package checkpoint

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

var adapterX070 = arch.Dims{Arch: arch.X070, Vocab: 11, Embd: 8, FFN: 32, Layers: 2, HeadSize: 4,
	LoRA: arch.LoRA{W: 2, A: 2, V: 2, G: 2}}

// adapterX052 and adapterX060 are RWKV-5.2/6 bases of 3 heads of 4 (a state [3,4,4]).
var (
	adapterX052 = arch.Dims{Arch: arch.X052, Vocab: 11, Embd: 12, FFN: 32, Layers: 2, HeadSize: 4}
	adapterX060 = arch.Dims{Arch: arch.X060, Vocab: 11, Embd: 12, FFN: 32, Layers: 2, HeadSize: 4, LoRA: arch.LoRA{Mix: 2, W: 3}}
)

// filled returns an F32 tensor whose values are a simple function of seed.
func filled(name string, seed float32, shape ...int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = seed + float32(i%7)*0.125 - float32(i%3)
	}
	return FromFloat32(name, shape, v, F32)
}

// tinyAdapter is an adapter for d: rank-2 pairs on att.key and ffn.value of every layer (and
// their init pairs), ln1/time_* train parts (att.r_k for x070), and every layer's state.
func tinyAdapter(t *testing.T, d arch.Dims) []Tensor {
	t.Helper()
	const r = 2
	var ts []Tensor
	shape := func(name string) []int { return d.Shape(name) }
	state, err := StateShape(d)
	if err != nil {
		t.Fatal(err)
	}
	for l := range d.Layers {
		b := arch.Block(l)
		for i, m := range []string{b + "att.key", b + "ffn.value"} {
			w := shape(m + ".weight")
			ts = append(ts,
				filled(m+".lora_B", float32(l+i), w[0], r), filled(m+".lora_A", float32(l-i), r, w[1]),
				filled(m+".init_lora_A", 0.5, r, w[1]), filled(m+".init_lora_B", -0.5, w[0], r))
		}
		ts = append(ts, filled(b+"ln1.weight", 1, d.Embd), filled(b+"att.time_state", float32(l), state...))
		if d.Arch == arch.X040 {
			ts = append(ts, filled(b+"att.time_decay", 2, d.Embd))
		}
	}
	return ts
}

func specsOf(d arch.Dims) []arch.Spec { return d.Layout() }

func sameTensor(a, b Tensor) bool {
	return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape) && bytes.Equal(a.Data, b.Data)
}

// TestAdapterRoundTrip: an adapter, a PiSSA init file and the states written as .pth read back
// identical and sorted into pairs (base order), parts and states, for RWKV-4 and x070; the
// state shapes are [3,C] and [H,N,N] (x052 and x060 as x070).
func TestAdapterRoundTrip(t *testing.T) {
	for _, d := range []arch.Dims{tinyDims, adapterX070, adapterX052, adapterX060} {
		t.Run(string(d.Arch.Resolve()), func(t *testing.T) {
			in, err := CheckAdapter(tinyAdapter(t, d), specsOf(d), AdapterRules{})
			if err != nil {
				t.Fatal(err)
			}
			if in.Rank != 2 || len(in.LoRA) != 2*d.Layers || len(in.Init) != 2*d.Layers || len(in.States) != d.Layers {
				t.Fatalf("rank %d, %d pairs, %d init pairs, %d states", in.Rank, len(in.LoRA), len(in.Init), len(in.States))
			}
			if in.LoRA[0].Module != "blocks.0.att.key" || in.LoRA[1].Module != "blocks.0.ffn.value" {
				t.Errorf("pairs not in base order: %s, %s", in.LoRA[0].Module, in.LoRA[1].Module)
			}
			want := map[arch.Arch][]int{arch.X040: {3, d.Embd}, arch.X070: {2, 4, 4}, arch.X052: {3, 4, 4}, arch.X060: {3, 4, 4}}[d.Arch.Resolve()]
			if !slices.Equal(in.States[0].Shape, want) {
				t.Errorf("state shape %v, want %v", in.States[0].Shape, want)
			}
			dir := t.TempDir()
			adapter, init := filepath.Join(dir, "rwkv-0.pth"), filepath.Join(dir, "init_pissa.pth")
			if err := WriteAdapterPTH(adapter, in.Tensors()); err != nil {
				t.Fatal(err)
			}
			if err := WriteAdapterPTH(init, in.InitTensors()); err != nil {
				t.Fatal(err)
			}
			a, err := ReadAdapter(specsOf(d), AdapterRules{Rank: 2}, adapter)
			if err != nil {
				t.Fatal(err)
			}
			i, err := ReadAdapter(specsOf(d), AdapterRules{Rank: 2}, init)
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Init) != 0 || len(i.LoRA) != 0 || len(i.States) != 0 {
				t.Errorf("the files mix: adapter has %d init pairs, init file %d pairs and %d states", len(a.Init), len(i.LoRA), len(i.States))
			}
			got := append(a.Tensors(), i.InitTensors()...)
			exp := append(in.Tensors(), in.InitTensors()...)
			if len(got) != len(exp) {
				t.Fatalf("read %d tensors, wrote %d", len(got), len(exp))
			}
			for k := range got {
				if !sameTensor(got[k], exp[k]) {
					t.Errorf("tensor %d: read %s %v, wrote %s %v", k, got[k].Name, got[k].Shape, exp[k].Name, exp[k].Shape)
				}
			}
		})
	}
}

// TestAdapterModelPrefix: "model."-prefixed names (RWKV-PEFT issue #54's init keys) read as
// the plain ones; the same tensor under both names is an error.
func TestAdapterModelPrefix(t *testing.T) {
	ts := tinyAdapter(t, tinyDims)
	for i := range ts {
		ts[i].Name = "model." + ts[i].Name
	}
	path := filepath.Join(t.TempDir(), "init_pissa.pth")
	if err := WriteAdapterPTH(path, ts); err != nil {
		t.Fatal(err)
	}
	a, err := ReadAdapter(specsOf(tinyDims), AdapterRules{}, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Init) != 4 || a.Init[0].A.Name != "blocks.0.att.key.init_lora_A" || a.InitTensors()[0].Name != "blocks.0.att.key.init_lora_A" {
		t.Errorf("prefixed init pairs read as %d pairs, first %q", len(a.Init), a.Init[0].A.Name)
	}
	both := append(tinyAdapter(t, tinyDims), ts[0])
	if _, err := CheckAdapter(both, specsOf(tinyDims), AdapterRules{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("a name with and without the prefix: %v", err)
	}
}

// TestAdapterRejects: each way an adapter can disagree with its base is an ErrTensors (or
// dtype/finite) error naming the tensor.
func TestAdapterRejects(t *testing.T) {
	d := tinyDims // C 4, F 16, 2 layers
	base := specsOf(d)
	ok := func() []Tensor { return tinyAdapter(t, d) }
	replace := func(ts []Tensor, name string, with Tensor) []Tensor {
		for i := range ts {
			if ts[i].Name == name {
				ts[i] = with
				return ts
			}
		}
		return append(ts, with)
	}
	drop := func(ts []Tensor, name string) []Tensor {
		return slices.DeleteFunc(ts, func(t Tensor) bool { return t.Name == name })
	}
	nan := filled("blocks.1.att.key.lora_A", 0, 2, 4)
	copy(nan.Data[4:8], []byte{0, 0, 0xc0, 0x7f})
	for _, c := range []struct {
		name  string
		ts    []Tensor
		rules AdapterRules
		want  string // the tensor the error must name
	}{
		{"wrong rank", ok(), AdapterRules{Rank: 4}, "blocks.0.att.key.lora_A"},
		{"mixed ranks", replace(replace(ok(), "blocks.1.ffn.value.lora_A", filled("blocks.1.ffn.value.lora_A", 0, 3, 16)), "blocks.1.ffn.value.lora_B", filled("blocks.1.ffn.value.lora_B", 0, 4, 3)), AdapterRules{}, "blocks.1.ffn.value.lora_A"},
		{"A width", replace(ok(), "blocks.0.ffn.value.lora_A", filled("blocks.0.ffn.value.lora_A", 0, 2, 4)), AdapterRules{}, "blocks.0.ffn.value.lora_A"},
		{"B height", replace(ok(), "blocks.0.att.key.lora_B", filled("blocks.0.att.key.lora_B", 0, 5, 2)), AdapterRules{}, "blocks.0.att.key.lora_B"},
		{"init B", replace(ok(), "blocks.1.att.key.init_lora_B", filled("blocks.1.att.key.init_lora_B", 0, 4, 3)), AdapterRules{}, "blocks.1.att.key.init_lora_B"},
		{"no partner", drop(ok(), "blocks.1.att.key.lora_B"), AdapterRules{}, "blocks.1.att.key.lora_B"},
		{"unknown module", append(ok(), filled("blocks.0.att.gate.lora_A", 0, 2, 4), filled("blocks.0.att.gate.lora_B", 0, 4, 2)), AdapterRules{}, "blocks.0.att.gate.lora_A"},
		{"layer out of range", append(ok(), filled("blocks.5.att.key.lora_A", 0, 2, 4), filled("blocks.5.att.key.lora_B", 0, 4, 2)), AdapterRules{}, "blocks.5.att.key.lora_A"},
		{"head", append(ok(), filled("head.lora_A", 0, 2, 4)), AdapterRules{}, "head.lora_A"},
		{"state shape", replace(ok(), "blocks.0.att.time_state", filled("blocks.0.att.time_state", 0, 4, 4)), AdapterRules{}, "blocks.0.att.time_state"},
		{"state layer", append(ok(), filled("blocks.2.att.time_state", 0, 3, 4)), AdapterRules{}, "blocks.2.att.time_state"},
		{"part outside train_parts", append(ok(), filled("blocks.0.att.key.weight", 0, 4, 4)), AdapterRules{}, "blocks.0.att.key.weight"},
		{"train_parts none", ok(), AdapterRules{TrainParts: []string{}}, "blocks.0.ln1.weight"},
		{"part shape", replace(ok(), "blocks.0.ln1.weight", filled("blocks.0.ln1.weight", 0, 5)), AdapterRules{}, "blocks.0.ln1.weight"},
		{"unknown name", append(ok(), filled("blocks.0.att.bonus", 0, 4)), AdapterRules{}, "blocks.0.att.bonus"},
		{"int dtype", append(ok(), Tensor{Name: "blocks.0.ln2.weight", DType: I32, Shape: []int{4}, Data: make([]byte, 16)}), AdapterRules{}, "blocks.0.ln2.weight"},
		{"NaN", replace(ok(), "blocks.1.att.key.lora_A", nan), AdapterRules{}, "blocks.1.att.key.lora_A"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := CheckAdapter(c.ts, base, c.rules)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %q", err, c.want)
			}
			if !errors.Is(err, ErrTensors) && !errors.Is(err, ErrDType) && !errors.Is(err, ErrNonFinite) {
				t.Errorf("error %v is not ErrTensors, ErrDType or ErrNonFinite", err)
			}
		})
	}
	if _, err := CheckAdapter(ok(), base[1:], AdapterRules{}); err == nil || !strings.Contains(err.Error(), "base model") {
		t.Errorf("an incomplete base: %v", err)
	}
}

// TestLoRATargets: the att and ffn Linear layers, never emb, head or x070's small matrices.
func TestLoRATargets(t *testing.T) {
	got := LoRATargets(specsOf(adapterX070))
	want := []string{"blocks.0.att.receptance", "blocks.0.att.key", "blocks.0.att.value", "blocks.0.att.output",
		"blocks.0.ffn.key", "blocks.0.ffn.value"}
	if len(got) != 2*len(want) || !slices.Equal(got[:len(want)], want) {
		t.Errorf("x070 targets %q", got)
	}
	if got := LoRATargets(specsOf(tinyDims)); len(got) != 2*7 || !slices.Contains(got, "blocks.1.ffn.receptance") {
		t.Errorf("RWKV-4 targets %q", got)
	}
}

// TestAdapterTorch: torch.load reads the adapter file (names, shapes, values), and a file
// torch.save wrote with model.-prefixed init keys reads here.
func TestAdapterTorch(t *testing.T) {
	py := testutil.RequireTorch(t)
	dir := t.TempDir()
	a, err := CheckAdapter(tinyAdapter(t, adapterX070), specsOf(adapterX070), AdapterRules{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rwkv-1.pth")
	if err := WriteAdapterPTH(path, a.Tensors()); err != nil {
		t.Fatal(err)
	}
	// One interpreter start (about 3 s): load the adapter, then torch.save an init file with
	// model.-prefixed keys, a BF16 factor among them.
	const script = `
import json, sys, torch
sd = torch.load(sys.argv[1], map_location="cpu")
json.dump([{"name": k, "shape": list(v.shape), "values": v.float().flatten().tolist()} for k, v in sd.items()], sys.stdout)
torch.manual_seed(0)
sd = {}
for l in range(2):
    for m in ["att.receptance", "ffn.key"]:
        o, i = (32, 8) if m == "ffn.key" else (8, 8)
        sd[f"model.blocks.{l}.{m}.init_lora_A"] = torch.randn(4, i)
        sd[f"model.blocks.{l}.{m}.init_lora_B"] = torch.randn(o, 4).bfloat16()
torch.save(sd, sys.argv[2])
`
	init := filepath.Join(dir, "init_pissa.pth")
	out, err := exec.Command(py, "-c", script, path, init).Output()
	if err != nil {
		t.Fatalf("torch: %v", err)
	}
	var got []struct {
		Name   string
		Shape  []int
		Values []float64
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	want := a.Tensors()
	if len(got) != len(want) {
		t.Fatalf("torch read %d tensors, want %d", len(got), len(want))
	}
	for i, w := range want {
		v, _ := w.Float64s()
		g := got[i]
		if g.Name != w.Name || !slices.Equal(g.Shape, w.Shape) || len(g.Values) != len(v) {
			t.Fatalf("torch tensor %d: %s %v, want %s %v", i, g.Name, g.Shape, w.Name, w.Shape)
		}
		for j := range v {
			if math.Abs(g.Values[j]-v[j]) > 1e-7 {
				t.Fatalf("%s[%d] = %g in torch, %g here", w.Name, j, g.Values[j], v[j])
			}
		}
	}
	i, err := ReadAdapter(specsOf(adapterX070), AdapterRules{Rank: 4}, init)
	if err != nil {
		t.Fatal(err)
	}
	if len(i.Init) != 4 || i.Init[0].Module != "blocks.0.att.receptance" || i.Init[0].B.DType != BF16 {
		t.Errorf("torch init file: %d pairs, first %q %s", len(i.Init), i.Init[0].Module, i.Init[0].B.DType)
	}
}

// FuzzCheckAdapter: any name and shape is accepted or refused with an error, never a panic.
func FuzzCheckAdapter(f *testing.F) {
	for _, s := range []string{"blocks.0.att.key.lora_A", "model.blocks.1.ffn.value.init_lora_B", "blocks.9.att.time_state", "blocks.0.ln1.weight", "head.weight", "blocks.00.att.key.lora_B"} {
		f.Add(s, 2, 4)
	}
	base := specsOf(tinyDims)
	f.Fuzz(func(t *testing.T, name string, d0, d1 int) {
		if d0 < 0 || d1 < 0 || d0*d1 > 1<<12 {
			return
		}
		extra := filled(name, 0.5, d0, d1)
		ts := append(tinyAdapter(t, tinyDims), extra)
		if a, err := CheckAdapter(ts, base, AdapterRules{}); err == nil && len(a.Tensors())+len(a.InitTensors()) != len(ts) {
			t.Errorf("accepted %q %v but kept %d of %d tensors", name, extra.Shape, len(a.Tensors())+len(a.InitTensors()), len(ts))
		}
	})
}

// TestMergeAdapter: LoRA merges W + s·B·A, PiSSA (W − B0·A0) + B·A, each against explicit
// sums; train_parts replace their base tensors; every other tensor keeps its bytes; the merged
// set is still a valid model in the base's dtype (BF16 here), and the base is unchanged.
func TestMergeAdapter(t *testing.T) {
	base := make([]Tensor, 0)
	for _, b := range tinyModel(tinyDims) {
		c, err := b.Convert(BF16)
		if err != nil {
			t.Fatal(err)
		}
		base = append(base, c)
	}
	baseCopy := make([]Tensor, len(base))
	for i, b := range base {
		baseCopy[i] = b
		baseCopy[i].Data = bytes.Clone(b.Data)
	}
	full, err := CheckAdapter(tinyAdapter(t, tinyDims), specsOf(tinyDims), AdapterRules{})
	if err != nil {
		t.Fatal(err)
	}
	const scale = 2.5
	explicit := func(name string, pairs []LoRAPair, s []float64) []float64 {
		var w Tensor
		for _, b := range base {
			if b.Name == name {
				w = b
			}
		}
		v, _ := w.Float64s()
		out, in := w.Shape[0], w.Shape[1]
		for k, p := range pairs {
			a, _ := p.A.Float64s()
			b, _ := p.B.Float64s()
			r := p.A.Shape[0]
			for o := range out {
				for c := range in {
					for j := range r {
						v[o*in+c] += s[k] * b[o*r+j] * a[j*in+c]
					}
				}
			}
		}
		return v
	}
	for _, pissa := range []bool{false, true} {
		a := *full
		if !pissa {
			a.Init = nil
		}
		merged, err := MergeAdapter(base, &a, scale)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := Check(merged); err != nil {
			t.Fatalf("merged model: %v", err)
		}
		adapted := map[string]bool{}
		for k, p := range a.LoRA {
			name := p.Module + ".weight"
			adapted[name] = true
			want := explicit(name, []LoRAPair{p}, []float64{scale})
			if pissa {
				want = explicit(name, []LoRAPair{a.Init[k], p}, []float64{-1, 1})
			}
			var got Tensor
			for _, m := range merged {
				if m.Name == name {
					got = m
				}
			}
			g, _ := got.Float64s()
			for i := range g {
				if math.Abs(g[i]-want[i]) > math.Abs(want[i])/128+1e-6 { // one BF16 rounding
					t.Fatalf("pissa %v: %s[%d] = %g, want %g", pissa, name, i, g[i], want[i])
				}
			}
			if got.DType != BF16 {
				t.Errorf("%s merged as %s, want the base's BF16", name, got.DType)
			}
		}
		for i, m := range merged {
			switch {
			case adapted[m.Name]:
			case slices.ContainsFunc(a.Parts, func(p Tensor) bool { return p.Name == m.Name }):
				pv, _ := a.Parts[slices.IndexFunc(a.Parts, func(p Tensor) bool { return p.Name == m.Name })].Float64s()
				mv, _ := m.Float64s()
				if maxAbs(pv, mv) > 1e-2 || m.DType != BF16 {
					t.Errorf("part %s not replaced (%s)", m.Name, m.DType)
				}
			default:
				if !sameTensor(m, base[i]) {
					t.Errorf("%s changed though nothing adapts it", m.Name)
				}
			}
		}
	}
	for i := range base {
		if !sameTensor(base[i], baseCopy[i]) {
			t.Fatalf("MergeAdapter changed the base's %s", base[i].Name)
		}
	}
	half := *full
	half.Init = half.Init[:1]
	if _, err := MergeAdapter(base, &half, 1); err == nil || !errors.Is(err, ErrTensors) {
		t.Errorf("PiSSA merge with a partial init file: %v", err)
	}
}

func maxAbs(a, b []float64) float64 {
	var m float64
	for i := range a {
		m = math.Max(m, math.Abs(a[i]-b[i]))
	}
	return m
}
