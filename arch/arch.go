// Package arch is the one place where each RWKV architecture's tensor layout is written: the
// names, shapes and RWKV-LM state-dict order of its parameters (Layout), and how a set of tensors
// tells which architecture and sizes it holds (Infer), the way runtimes detect the version.
//
// It imports the standard library only, so that both model (which builds the parameters) and
// checkpoint (which reads and writes files and must never import model) use the same table.
package arch

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Arch is an RWKV architecture under RWKV-LM's module name: "x040" is RWKV-4, "x070" RWKV-7.
// The zero Arch is x040, the default of model.arch.
type Arch string

// The architectures Detect recognises. X040, X052, X060 and X070 have a layout (Layout, Infer:
// checkpoint reads, checks and exports their files, model builds them) and are supported
// (trained and evaluated). X050 (RWKV-5.0/5.1) is detected so that reading one fails naming it.
const (
	X040 Arch = "x040" // RWKV-4
	X050 Arch = "x050" // RWKV-5.0/5.1 (ln_x, no gate)
	X052 Arch = "x052" // RWKV-5.2 "Eagle"
	X060 Arch = "x060" // RWKV-6 "Finch"
	X070 Arch = "x070" // RWKV-7 "Goose"
)

// Supported lists the architectures rwkv-go's commands train and evaluate, in the order they
// were added; the trainer's config validation and weights loading refuse the others
// (CheckSupported).
var Supported = []Arch{X040, X052, X060, X070}

// Layouts lists the architectures with a tensor layout (Dims.Layout): Infer reads their tensor
// sets, whether or not a model can be built from them yet.
var Layouts = []Arch{X040, X052, X060, X070}

// Sentinel errors that callers can test with errors.Is.
var (
	// ErrTensors: the tensors are not a complete model of one architecture (missing, extra,
	// duplicate names, wrong shapes).
	ErrTensors = errors.New("wrong tensor set")
	// ErrUnsupported: the tensors or the config name an architecture rwkv-go cannot build yet.
	ErrUnsupported = errors.New("architecture not supported")
)

// Resolve applies the default: the zero Arch is x040.
func (a Arch) Resolve() Arch {
	if a == "" {
		return X040
	}
	return a
}

// IsSupported reports whether a (after Resolve) is in Supported.
func (a Arch) IsSupported() bool { return slices.Contains(Supported, a.Resolve()) }

// HasLayout reports whether a (after Resolve) is in Layouts.
func (a Arch) HasLayout() bool { return slices.Contains(Layouts, a.Resolve()) }

// HasHeads reports whether a (after Resolve) is a multi-head architecture with a matrix WKV
// state per head (x052, x060, x070); RWKV-4's state is per channel.
func (a Arch) HasHeads() bool {
	switch a.Resolve() {
	case X052, X060, X070:
		return true
	}
	return false
}

// CheckSupported is nil for a supported architecture and otherwise an ErrUnsupported error
// naming it: the gate between reading a file (Infer, any layout) and building a model of it.
func (a Arch) CheckSupported() error {
	if a.IsSupported() {
		return nil
	}
	return fmt.Errorf("%s is not supported yet: rwkv-go builds %s models: %w", a.Title(), list(Supported), ErrUnsupported)
}

// Title is the release name: "RWKV-4 (x040)".
func (a Arch) Title() string {
	a = a.Resolve()
	switch a {
	case X040:
		return "RWKV-4 (x040)"
	case X050:
		return "RWKV-5 (x050)"
	case X052:
		return "RWKV-5.2 (x052)"
	case X060:
		return "RWKV-6 (x060)"
	case X070:
		return "RWKV-7 (x070)"
	}
	return fmt.Sprintf("%q", string(a))
}

// Dims are the sizes of a model as its tensors give them. Fields that an architecture does not
// have are zero (RWKV-4 has no heads and no LoRAs).
type Dims struct {
	Arch   Arch // the zero Arch is x040
	Vocab  int  // V: emb.weight [V,C]
	Embd   int  // C: n_embd
	FFN    int  // F: dim_ffn, the channel-mix hidden size (4C in RWKV-LM's defaults)
	Layers int  // L: n_layer

	// x052, x060 and x070.
	HeadSize int // N: head_size (64); H = C/N heads
	// x060 and x070: low-rank widths (x070: decay, in-context rate, value residual and gate;
	// x060: token shift and decay).
	LoRA LoRA
	// V0Layer0: layer 0 carries v0/v1/v2, which it never uses (RWKV-LM state dicts have them,
	// FLA's drop them).
	V0Layer0 bool
}

// Heads is the number of heads of x052, x060 and x070, H = C/N (0 without a head size).
func (d Dims) Heads() int {
	if d.HeadSize <= 0 {
		return 0
	}
	return d.Embd / d.HeadSize
}

// list is "RWKV-4 (x040)" or "RWKV-4 (x040), RWKV-7 (x070)".
func list(as []Arch) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.Title()
	}
	return strings.Join(s, ", ")
}

// LoRA are the low-rank widths: x070's att.w1 [C,W], att.a1 [C,A], att.v1 [C,V], att.g1 [C,G];
// x060's att.time_decay_w1 [C,W] and att.time_maa_w1 [C,5·Mix].
type LoRA struct {
	W, A, V, G int
	Mix        int // x060 only: the data-dependent token shift's width (time_maa_w2 [5,Mix,C])
}

// Spec is one tensor's RWKV-LM name and shape.
type Spec struct {
	Name  string
	Shape []int
}

// Size is the number of elements of the tensor.
func (s Spec) Size() int {
	n := 1
	for _, d := range s.Shape {
		n *= d
	}
	return n
}

// Block is the name prefix of layer l's tensors: "blocks.3.".
func Block(l int) string { return fmt.Sprintf("blocks.%d.", l) }
