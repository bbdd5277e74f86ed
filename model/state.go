package model

import (
	"fmt"

	"github.com/rwkv-go/rwkv-go/arch"
)

// State is the recurrent state of B sequences: everything a model carries from one token (or one
// chunk) to the next. Per layer, each field holds B rows (row-major, sequence first):
//
//	both:  AttX, FFNX (B, C): the last LayerNorm outputs seen by the time-mix and channel-mix
//	       token shifts;
//	x040:  AA, BB, PP (B, C): the WKV numerator, denominator and their shared log-scale;
//	x052, x060, x070: WKV (B, H, N, N): the WKV state of each head, [value i][key j] as
//	       RWKV-LM's kernels (ChatRWKV's v5/v6 Python code holds the transpose).
//
// The fields an architecture does not have are nil. It is kept in float64 whatever the model
// dtype (a Float32 model's state holds float32 values exactly); it is small.
type State struct {
	B, C   int
	Arch   arch.Arch // resolved
	H, N   int       // x052, x060, x070: heads and head size
	Layers []LayerState
}

// LayerState is one layer's part of State.
type LayerState struct {
	AttX, AA, BB, PP, FFNX []float64
	WKV                    []float64
}

// NewState returns the state of B fresh sequences of a model of cfg: zeros, with PP = -1e38
// (x040).
func NewState(cfg Config, B int) *State {
	s := &State{B: B, C: cfg.Embd, Arch: cfg.Arch.Resolve(), Layers: make([]LayerState, cfg.Layers)}
	n := B * cfg.Embd
	for i := range s.Layers {
		if s.Arch.HasHeads() {
			s.H, s.N = cfg.Heads(), cfg.HeadDim()
			s.Layers[i] = LayerState{AttX: make([]float64, n), WKV: make([]float64, n*s.N), FFNX: make([]float64, n)}
			continue
		}
		s.Layers[i] = LayerState{AttX: make([]float64, n), AA: make([]float64, n), BB: make([]float64, n),
			PP: make([]float64, n), FFNX: make([]float64, n)}
	}
	s.Reset()
	return s
}

// Reset returns every sequence to the fresh state.
func (s *State) Reset() {
	s.Zero()
	for i := range s.Layers {
		for j := range s.Layers[i].PP {
			s.Layers[i].PP[j] = ppInit
		}
	}
}

// Zero sets every value to 0: the form of a state gradient with nothing flowing back.
func (s *State) Zero() {
	for i := range s.Layers {
		for _, f := range s.Layers[i].fields() {
			clear(f)
		}
	}
}

// fields lists the per-layer tensors the architecture has, in a fixed order: x040 AttX, AA, BB,
// PP, FFNX; x052, x060, x070 AttX, WKV, FFNX.
func (l *LayerState) fields() [][]float64 {
	if l.WKV != nil {
		return [][]float64{l.AttX, l.WKV, l.FFNX}
	}
	return [][]float64{l.AttX, l.AA, l.BB, l.PP, l.FFNX}
}

// fits reports whether o has the same architecture and shapes as s.
func (s *State) fits(o *State) bool {
	return s.B == o.B && s.C == o.C && s.Arch == o.Arch && s.H == o.H && s.N == o.N && len(s.Layers) == len(o.Layers)
}

// shape describes the state for messages: "x070 2 layers x (B=1, C=128, H=2)".
func (s *State) shape() string {
	if s.Arch.HasHeads() {
		return fmt.Sprintf("%s %d layers x (B=%d, C=%d, H=%d)", s.Arch, len(s.Layers), s.B, s.C, s.H)
	}
	return fmt.Sprintf("%s %d layers x (B=%d, C=%d)", s.Arch.Resolve(), len(s.Layers), s.B, s.C)
}

// CopyFrom copies o into s; the shapes must match.
func (s *State) CopyFrom(o *State) error {
	if !s.fits(o) {
		return fmt.Errorf("model: state of %s cannot take one of %s", s.shape(), o.shape())
	}
	for i := range s.Layers {
		dst, src := s.Layers[i].fields(), o.Layers[i].fields()
		for j := range dst {
			copy(dst[j], src[j])
		}
	}
	return nil
}

// Scale sets s = k·o, every value of every layer (a state gradient rescaled); the shapes must
// match.
func (s *State) Scale(o *State, k float64) error {
	if err := s.CopyFrom(o); err != nil {
		return err
	}
	for i := range s.Layers {
		for _, f := range s.Layers[i].fields() {
			for j := range f {
				f[j] *= k
			}
		}
	}
	return nil
}

// Clone returns a deep copy.
func (s *State) Clone() *State {
	c := *s
	c.Layers = make([]LayerState, len(s.Layers))
	for i, l := range s.Layers {
		c.Layers[i] = LayerState{AttX: clone(l.AttX), AA: clone(l.AA), BB: clone(l.BB), PP: clone(l.PP),
			FFNX: clone(l.FFNX), WKV: clone(l.WKV)}
	}
	return &c
}

func clone(x []float64) []float64 {
	if x == nil {
		return nil
	}
	return append([]float64(nil), x...)
}

// check is nil when s is the state of B sequences of a model of cfg, and otherwise an error
// naming both shapes (what is "graph" or "RNN").
func (s *State) check(cfg Config, B int, what string) error {
	a := cfg.Arch.Resolve()
	ok := s.B == B && s.C == cfg.Embd && s.Arch == a && len(s.Layers) == cfg.Layers
	if ok && a.HasHeads() {
		ok = s.H == cfg.Heads() && s.N == cfg.HeadDim()
	}
	if !ok {
		return fmt.Errorf("model: state of %s does not fit the %s of %v with B=%d", s.shape(), what, cfg, B)
	}
	return nil
}
