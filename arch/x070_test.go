package arch

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// rwkv7_1b5 is RWKV7-1.5B's shape (NEXT-ARCH §1.3: L24-D2048, LoRA 96/96/64/256, 798 tensors
// with layer 0's v0/v1/v2).
var rwkv7_1b5 = Dims{Arch: X070, Vocab: 65536, Embd: 2048, FFN: 8192, Layers: 24, HeadSize: 64,
	LoRA: LoRA{W: 96, A: 96, V: 64, G: 256}, V0Layer0: true}

// TestLayoutX070: tensor counts of released files, RWKV-LM's parameter-count formula
// 2VC + 4C + L(19C + 12C² + 2C(W+A+V+G)) (with layer 0's v0/v1/v2; C + 2C·V fewer without),
// and a few names and shapes in state-dict order.
func TestLayoutX070(t *testing.T) {
	for _, v0 := range []bool{true, false} {
		d := rwkv7_1b5
		d.V0Layer0 = v0
		l := d.Layout()
		C, L, r := d.Embd, d.Layers, d.LoRA
		wantN, wantP := 798, 2*d.Vocab*C+4*C+L*(19*C+12*C*C+2*C*(r.W+r.A+r.V+r.G))
		if !v0 {
			wantN, wantP = 795, wantP-C-2*C*r.V
		}
		if len(l) != wantN || d.NumParams() != wantP {
			t.Errorf("v0 in layer 0 %v: %d tensors, %d weights; want %d, %d", v0, len(l), d.NumParams(), wantN, wantP)
		}
	}
	l := rwkv7_1b5.Layout()
	for i, want := range map[int]Spec{0: {"emb.weight", []int{65536, 2048}}, 5: {"blocks.0.ln0.weight", []int{2048}},
		7: {"blocks.0.att.x_r", []int{1, 1, 2048}}, 12: {"blocks.0.att.x_g", []int{1, 1, 2048}}, 13: {"blocks.0.att.w1", []int{2048, 96}},
		14: {"blocks.0.att.w2", []int{96, 2048}}, 15: {"blocks.0.att.w0", []int{1, 1, 2048}}, 21: {"blocks.0.att.v0", []int{1, 1, 2048}},
		24: {"blocks.0.att.k_k", []int{1, 1, 2048}}, 27: {"blocks.0.att.receptance.weight", []int{2048, 2048}},
		33: {"blocks.0.ffn.x_k", []int{1, 1, 2048}}, 36: {"blocks.1.ln1.weight", []int{2048}}} {
		if l[i].Name != want.Name || !equal(l[i].Shape, want.Shape) {
			t.Errorf("tensor %d: %s %v, want %s %v", i, l[i].Name, l[i].Shape, want.Name, want.Shape)
		}
	}
	for name, want := range map[string][]int{"blocks.3.att.r_k": {32, 64}, "blocks.3.att.v1": {2048, 64}, "blocks.3.att.g2": {256, 2048},
		"blocks.23.ffn.key.weight": {8192, 2048}, "blocks.23.ffn.value.weight": {2048, 8192}, "blocks.0.att.ln_x.bias": {2048}} {
		if got := rwkv7_1b5.Shape(name); !equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
	if l[len(l)-1].Name != "head.weight" || l[len(l)-4].Name != "blocks.23.ffn.value.weight" {
		t.Errorf("last tensors %s, %s", l[len(l)-4].Name, l[len(l)-1].Name)
	}
}

func equal(a, b []int) bool { return slices.Equal(a, b) }

// TestInferX070: the sizes come back from the tensors, with and without layer 0's v0/v1/v2 and
// for one layer (no v1 to read V from: DefaultLoRA's V); x070 is supported (CheckSupported).
func TestInferX070(t *testing.T) {
	small := Dims{Arch: X070, Vocab: 17, Embd: 64, FFN: 256, Layers: 3, HeadSize: 16, LoRA: LoRA{W: 8, A: 4, V: 12, G: 20}}
	one := small
	one.Layers, one.LoRA.V = 1, DefaultLoRA(64).V
	oneV0 := one
	oneV0.V0Layer0, oneV0.LoRA.V = true, 12
	withV0 := small
	withV0.V0Layer0 = true
	for _, d := range []Dims{small, withV0, one, oneV0} {
		ts := d.Layout()
		if got := inferX070(ts); got != d {
			t.Errorf("inferX070 = %+v, want %+v", got, d)
		}
		if err := Match(d, ts); err != nil {
			t.Errorf("%+v: Match: %v", d, err)
		}
		slices.Reverse(ts)
		got, err := Infer(ts)
		if err != nil || got != d {
			t.Errorf("Infer = %+v, %v; want %+v", got, err, d)
		}
		if err := got.Arch.CheckSupported(); err != nil {
			t.Errorf("CheckSupported = %v, want nil", err)
		}
	}
	for _, tt := range []struct{ name, variant string }{
		{"7a", "blocks.1.ffn.s_emb.weight"}, {"7a s0", "blocks.0.ffn.s0"}, {"7b", "blocks.0.qkv.k_emb.weight"},
	} {
		_, err := Infer(append(small.Layout(), Spec{tt.variant, []int{17, 4}}))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `tensor "`+tt.variant+`" belongs to an RWKV-7a/7b variant`) {
			t.Errorf("%s: %v, want ErrUnsupported naming %s", tt.name, err, tt.variant)
		}
	}
	// Outside a block the names are not a variant's, only an extra tensor.
	if _, err := Infer(append(small.Layout(), Spec{"qkv.x", []int{1}})); !errors.Is(err, ErrTensors) || !strings.Contains(err.Error(), `unexpected tensor "qkv.x"`) {
		t.Errorf("top-level qkv.x: %v, want ErrTensors", err)
	}
	bad := small.Layout()
	bad = append(bad[:len(bad)-1:len(bad)-1], Spec{"head.weight", []int{17, 32}})
	if err := Match(small, bad); !errors.Is(err, ErrTensors) {
		t.Errorf("Match of a wrong head: %v", err)
	}
	if l := (Dims{Arch: X070, Embd: 64, Layers: 1}).Layout(); len(l) != 6+30 { // no head size: no division by 0
		t.Errorf("%d tensors", len(l))
	}
}

// TestDefaultLoRA: RWKV-LM's current rule and the released checkpoints' older one, NEXT-ARCH
// §1.3's tables (C = 1024 is a tie that rounds to even under the current rule, and the released
// 0.4B's G = 128 under the older one); 64 shows the floor of 32.
func TestDefaultLoRA(t *testing.T) {
	for _, tt := range []struct {
		C                 int
		current, released LoRA
	}{{768, LoRA{W: 64, A: 64, V: 32, G: 128}, LoRA{W: 64, A: 64, V: 32, G: 128}}, {1024, LoRA{W: 64, A: 64, V: 64, G: 160}, LoRA{W: 64, A: 64, V: 32, G: 128}},
		{2048, LoRA{W: 128, A: 128, V: 64, G: 224}, LoRA{W: 96, A: 96, V: 64, G: 256}}, {2560, LoRA{W: 128, A: 128, V: 96, G: 256}, LoRA{W: 96, A: 96, V: 64, G: 320}},
		{4096, LoRA{W: 160, A: 160, V: 96, G: 320}, LoRA{W: 128, A: 128, V: 96, G: 480}}, {64, LoRA{W: 32, A: 32, V: 32, G: 32}, LoRA{W: 32, A: 32, V: 32, G: 32}}} {
		if got := DefaultLoRA(tt.C); got != tt.current {
			t.Errorf("DefaultLoRA(%d) = %+v, want %+v", tt.C, got, tt.current)
		}
		if got := ReleasedLoRA(tt.C); got != tt.released {
			t.Errorf("ReleasedLoRA(%d) = %+v, want %+v", tt.C, got, tt.released)
		}
	}
	if got := ReleasedLoRA(rwkv7_1b5.Embd); got != rwkv7_1b5.LoRA { // the released 1.5B's widths
		t.Errorf("ReleasedLoRA(2048) = %+v, want RWKV7-1.5B's %+v", got, rwkv7_1b5.LoRA)
	}
}
