package arch

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// blockName is the layer prefix of a block tensor's name: "blocks.3." of "blocks.3.att.k_k".
var blockName = regexp.MustCompile(`^blocks\.\d+\.`)

// markers tell the architecture from one tensor of a block, checked in this order (x070, x060
// and x052 also have ln_x), as ChatRWKV, web-rwkv and llama.cpp's converter tell them. part is
// the name inside the block ("att.k_k"), shape[name] any tensor's shape.
var markers = []struct {
	arch Arch
	is   func(part, block string, shape map[string][]int) bool
}{
	{X070, func(p, _ string, _ map[string][]int) bool { return p == "att.k_k" }},
	{X060, func(p, _ string, _ map[string][]int) bool { return strings.HasPrefix(p, "att.time_maa") }},
	{X052, func(p, b string, shape map[string][]int) bool {
		td := shape[b+"att.time_decay"] // [H,N]; RWKV-5.1's is [H,1]
		return p == "att.gate.weight" && len(td) == 2 && td[1] > 1
	}},
	{X050, func(p, _ string, _ map[string][]int) bool { return strings.HasPrefix(p, "att.ln_x.") }},
}

// Detect names the architecture ts hold, from the first tensor only that architecture has
// (marker is its name; "" for x040, which has no marker).
func Detect(ts []Spec) (a Arch, marker string) {
	shape := make(map[string][]int, len(ts))
	for _, t := range ts {
		shape[t.Name] = t.Shape
	}
	for _, m := range markers {
		for _, t := range ts {
			block := blockName.FindString(t.Name)
			if block != "" && m.is(t.Name[len(block):], block, shape) {
				return m.arch, t.Name
			}
		}
	}
	return X040, ""
}

// Infer tells the architecture and sizes from the tensors' RWKV-LM names and shapes, as
// runtimes do, and checks that ts hold exactly that architecture's tensors with its shapes
// (order does not matter; Dims.Layout gives it). It reads every architecture with a layout
// (Layouts), including those a model cannot be built from yet: callers that build one check
// Dims.Arch.CheckSupported. An architecture without a layout, or an RWKV-7a/7b variant, is an
// ErrUnsupported error naming it, with Dims.Arch set; any other mismatch is ErrTensors.
func Infer(ts []Spec) (Dims, error) {
	seen := make(map[string]bool, len(ts))
	for _, t := range ts {
		if seen[t.Name] {
			return Dims{}, fmt.Errorf("duplicate tensor %q: %w", t.Name, ErrTensors)
		}
		seen[t.Name] = true
	}
	a, marker := Detect(ts)
	var d Dims
	switch a {
	case X040:
		d = inferX040(ts)
	case X070:
		if v := x070Variant(ts); v != "" {
			return Dims{Arch: a}, fmt.Errorf("tensor %q belongs to an RWKV-7a/7b variant (DeepEmbed or DEA), which is not supported; use a plain RWKV-7 (x070) model: %w", v, ErrUnsupported)
		}
		d = inferX070(ts)
	case X052, X060:
		d = inferX05(a, ts)
	default:
		return Dims{Arch: a}, fmt.Errorf("tensor %q: the tensors hold an %s model; %s is not supported yet (rwkv-go reads %s): %w",
			marker, a.Title(), a, list(Layouts), ErrUnsupported)
	}
	if err := Match(d, ts); err != nil {
		if a != X040 { // say which layout the names were checked against
			return d, fmt.Errorf("%s model (tensor %q): %w", a.Title(), marker, err)
		}
		return d, err
	}
	return d, nil
}

// inferX040 reads RWKV-4's sizes: V and C from emb.weight [V,C], L from the blocks.l.ln1.weight
// present, F from blocks.0.ffn.key.weight [F,C]. Match checks the rest.
func inferX040(ts []Spec) Dims {
	shape := make(map[string][]int, len(ts))
	for _, t := range ts {
		shape[t.Name] = t.Shape
	}
	d := Dims{Arch: X040}
	if e := shape["emb.weight"]; len(e) == 2 {
		d.Vocab, d.Embd = e[0], e[1]
	}
	for ; ; d.Layers++ {
		if _, ok := shape[Block(d.Layers)+"ln1.weight"]; !ok {
			break
		}
	}
	if k := shape["blocks.0.ffn.key.weight"]; len(k) == 2 {
		d.FFN = k[0]
	}
	return d
}

// Match checks that ts hold exactly the tensors of d's layout with its shapes: the first
// missing tensor (in layout order), wrong shape, or extra tensor (in ts order) is an ErrTensors
// error naming it.
func Match(d Dims, ts []Spec) error {
	byName := make(map[string][]int, len(ts))
	for _, t := range ts {
		byName[t.Name] = t.Shape
	}
	if e, ok := byName["emb.weight"]; !ok || len(e) != 2 {
		return fmt.Errorf("missing emb.weight [V,C]: %w", ErrTensors)
	}
	for _, w := range d.Layout() {
		shape, ok := byName[w.Name]
		if !ok {
			return fmt.Errorf("missing tensor %q: %w", w.Name, ErrTensors)
		}
		if !slices.Equal(shape, w.Shape) {
			return fmt.Errorf("tensor %q: shape %v, want %v: %w", w.Name, shape, w.Shape, ErrTensors)
		}
		delete(byName, w.Name)
	}
	for _, t := range ts {
		if _, extra := byName[t.Name]; extra {
			return fmt.Errorf("unexpected tensor %q: %w", t.Name, ErrTensors)
		}
	}
	if d.Layers == 0 {
		return fmt.Errorf("no blocks: %w", ErrTensors)
	}
	return nil
}
