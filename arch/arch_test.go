package arch

import (
	"errors"
	"strings"
	"testing"
)

var tiny = Dims{Arch: X040, Vocab: 11, Embd: 4, FFN: 16, Layers: 2}

// TestLayoutX040: RWKV-4's layout has 6 + 18·L tensors in RWKV-LM state-dict order, and
// RWKV-4-Pile-169M's shape gives its published 169,342,464 weights.
func TestLayoutX040(t *testing.T) {
	l := tiny.Layout()
	if len(l) != 6+18*tiny.Layers {
		t.Fatalf("%d tensors, want %d", len(l), 6+18*tiny.Layers)
	}
	for i, want := range map[int]string{0: "emb.weight", 1: "blocks.0.ln1.weight", 5: "blocks.0.ln0.weight", 7: "blocks.0.att.time_decay", 20: "blocks.0.ffn.value.weight", 21: "blocks.1.ln1.weight", len(l) - 1: "head.weight"} {
		if l[i].Name != want {
			t.Errorf("tensor %d is %s, want %s", i, l[i].Name, want)
		}
	}
	if got := tiny.Shape("blocks.1.ffn.value.weight"); len(got) != 2 || got[0] != 4 || got[1] != 16 {
		t.Errorf("ffn.value shape %v, want [4 16]", got)
	}
	pile := Dims{Vocab: 50277, Embd: 768, FFN: 3072, Layers: 12} // zero Arch: x040
	if n := pile.NumParams(); n != 169342464 {
		t.Errorf("RWKV-4 169M: %d weights, want 169342464", n)
	}
}

func without(ts []Spec, name string) []Spec {
	var out []Spec
	for _, t := range ts {
		if t.Name != name {
			out = append(out, t)
		}
	}
	return out
}

func with(ts []Spec, more ...Spec) []Spec { return append(append([]Spec{}, ts...), more...) }

// TestInfer: sizes come from the tensors in any order; every way a set can be wrong is an
// ErrTensors error naming the tensor; other RWKV versions are ErrUnsupported naming the version.
func TestInfer(t *testing.T) {
	x040 := tiny.Layout()
	rev := make([]Spec, len(x040))
	for i, s := range x040 {
		rev[len(x040)-1-i] = s
	}
	d, err := Infer(rev)
	if err != nil || d != tiny {
		t.Fatalf("Infer = %+v, %v; want %+v", d, err, tiny)
	}
	badShape := with(x040)
	badShape[3] = Spec{badShape[3].Name, []int{5}}
	tests := []struct {
		name string
		ts   []Spec
		err  error
		arch Arch
		want string
	}{
		{"missing ln0", without(x040, "blocks.0.ln0.bias"), ErrTensors, X040, `missing tensor "blocks.0.ln0.bias"`},
		{"missing head", without(x040, "head.weight"), ErrTensors, X040, `missing tensor "head.weight"`},
		{"missing emb", without(x040, "emb.weight"), ErrTensors, X040, "missing emb.weight"},
		{"extra", with(x040, Spec{"blocks.0.att.extra", []int{1}}), ErrTensors, X040, `unexpected tensor "blocks.0.att.extra"`},
		{"extra layer part", without(x040, "blocks.1.ln1.weight"), ErrTensors, X040, `unexpected tensor "blocks.1.ln1.bias"`},
		{"duplicate", with(x040, x040[0]), ErrTensors, "", `duplicate tensor "emb.weight"`},
		{"bad shape", badShape, ErrTensors, X040, `tensor "blocks.0.ln2.weight": shape [5], want [4]`},
		{"no blocks", []Spec{{"emb.weight", []int{11, 4}}, {"ln_out.weight", []int{4}}, {"ln_out.bias", []int{4}}, {"head.weight", []int{11, 4}}}, ErrTensors, X040, "no blocks"},
		// x070 has a layout: an RWKV-4 set with a k_k is checked against it, and the error says so.
		{"x070", with(x040, Spec{"blocks.1.att.k_k", []int{1, 1, 4}}, Spec{"blocks.0.att.ln_x.weight", []int{4}}), ErrTensors, X070,
			`RWKV-7 (x070) model (tensor "blocks.1.att.k_k"): missing tensor "blocks.0.att.x_r"`},
		// x060 and x052 have layouts too.
		{"x060", with(x040, Spec{"blocks.0.att.time_maa_x", []int{1, 1, 4}}), ErrTensors, X060,
			`RWKV-6 (x060) model (tensor "blocks.0.att.time_maa_x"): missing tensor "blocks.0.att.time_maa_w"`},
		{"x052", with(without(x040, "blocks.0.att.time_decay"), Spec{"blocks.0.att.gate.weight", []int{4, 4}}, Spec{"blocks.0.att.time_decay", []int{2, 2}}), ErrTensors, X052,
			`RWKV-5.2 (x052) model (tensor "blocks.0.att.gate.weight"): missing tensor "blocks.0.att.time_mix_g"`},
		// RWKV-5.1 has a gate and a [H,1] time_decay: refused as RWKV-5.
		{"x051", with(without(x040, "blocks.0.att.time_decay"), Spec{"blocks.0.att.gate.weight", []int{4, 4}}, Spec{"blocks.0.att.time_decay", []int{4, 1}},
			Spec{"blocks.0.att.ln_x.weight", []int{4}}), ErrUnsupported, X050, "RWKV-5 (x050) model; x050 is not supported"},
		{"x050", with(x040, Spec{"blocks.0.att.ln_x.weight", []int{4}}), ErrUnsupported, X050, `tensor "blocks.0.att.ln_x.weight": the tensors hold an RWKV-5 (x050) model`},
		// a gate without a 2-D time_decay is not x052's; with ln_x it is RWKV-5.
		{"x050 gate", with(x040, Spec{"blocks.0.att.gate.weight", []int{4, 4}}, Spec{"blocks.0.att.ln_x.bias", []int{4}}), ErrUnsupported, X050, "RWKV-5 (x050)"},
		{"markers outside blocks do not count", with(x040, Spec{"att.k_k", []int{4}}), ErrTensors, X040, `unexpected tensor "att.k_k"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Infer(tt.ts)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %v containing %q", err, tt.err, tt.want)
			}
			if d.Arch != tt.arch {
				t.Errorf("arch %q, want %q", d.Arch, tt.arch)
			}
		})
	}
}

// TestArchDefault: the zero Arch is x040; x040, x052, x060 and x070 are supported; x050 (no layout) and
// unknown names are refused, naming them.
func TestArchDefault(t *testing.T) {
	for _, tt := range []struct {
		a                    Arch
		supported, hasLayout bool
		title                string
	}{{"", true, true, "RWKV-4 (x040)"}, {X040, true, true, "RWKV-4 (x040)"}, {X070, true, true, "RWKV-7 (x070)"},
		{X060, true, true, "RWKV-6 (x060)"}, {X050, false, false, "RWKV-5 (x050)"}, {"x999", false, false, `"x999"`}} {
		if got := tt.a.IsSupported(); got != tt.supported {
			t.Errorf("%q.IsSupported() = %v, want %v", tt.a, got, tt.supported)
		}
		if got := tt.a.HasLayout(); got != tt.hasLayout {
			t.Errorf("%q.HasLayout() = %v, want %v", tt.a, got, tt.hasLayout)
		}
		err := tt.a.CheckSupported()
		if tt.supported != (err == nil) || !tt.supported && (!errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tt.title+" is not supported yet")) {
			t.Errorf("%q.CheckSupported() = %v", tt.a, err)
		}
		if got := tt.a.Title(); got != tt.title {
			t.Errorf("%q.Title() = %q, want %q", tt.a, got, tt.title)
		}
	}
}
