package model

import "fmt"

// State is the recurrent state of B sequences: everything RWKV-4 carries from one token (or one
// chunk) to the next. Per layer, each field holds B rows of C values (row-major (B, C)):
// AttX and FFNX are the last LayerNorm outputs seen by the time-mix and channel-mix token
// shifts; AA, BB, PP are the WKV numerator, denominator and their shared log-scale. It is kept in
// float64 whatever the model dtype; it is small.
type State struct {
	B, C   int
	Layers []LayerState
}

// LayerState is one layer's part of State.
type LayerState struct {
	AttX, AA, BB, PP, FFNX []float64
}

// NewState returns the state of B fresh sequences: zeros, with PP = -1e38.
func NewState(cfg Config, B int) *State {
	s := &State{B: B, C: cfg.Embd, Layers: make([]LayerState, cfg.Layers)}
	n := B * cfg.Embd
	for i := range s.Layers {
		s.Layers[i] = LayerState{AttX: make([]float64, n), AA: make([]float64, n), BB: make([]float64, n),
			PP: make([]float64, n), FFNX: make([]float64, n)}
	}
	s.Reset()
	return s
}

// Reset returns every sequence to the fresh state.
func (s *State) Reset() {
	for i := range s.Layers {
		l := &s.Layers[i]
		clear(l.AttX)
		clear(l.AA)
		clear(l.BB)
		clear(l.FFNX)
		for j := range l.PP {
			l.PP[j] = ppInit
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

// fields lists the per-layer tensors in a fixed order.
func (l *LayerState) fields() [5][]float64 { return [5][]float64{l.AttX, l.AA, l.BB, l.PP, l.FFNX} }

// CopyFrom copies o into s; the shapes must match.
func (s *State) CopyFrom(o *State) error {
	if s.B != o.B || s.C != o.C || len(s.Layers) != len(o.Layers) {
		return fmt.Errorf("model: state of %d layers x (%d, %d) cannot take one of %d layers x (%d, %d)",
			len(s.Layers), s.B, s.C, len(o.Layers), o.B, o.C)
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
	c := &State{B: s.B, C: s.C, Layers: make([]LayerState, len(s.Layers))}
	for i := range s.Layers {
		f := s.Layers[i].fields()
		c.Layers[i] = LayerState{AttX: clone(f[0]), AA: clone(f[1]), BB: clone(f[2]), PP: clone(f[3]), FFNX: clone(f[4])}
	}
	return c
}

func clone(x []float64) []float64 { return append([]float64(nil), x...) }
