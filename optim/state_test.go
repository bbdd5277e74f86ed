package optim

import (
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

func cloneParams[F Float](ps []Param[F]) []Param[F] {
	out := make([]Param[F], len(ps))
	for i, p := range ps {
		out[i] = p
		out[i].Data = append([]F(nil), p.Data...)
		out[i].Grad = append([]F(nil), p.Grad...)
	}
	return out
}

func cloneState[F Float](s AdamWState[F]) AdamWState[F] {
	c := AdamWState[F]{Step: s.Step}
	for i := range s.M {
		c.M = append(c.M, append([]F(nil), s.M[i]...))
		c.V = append(c.V, append([]F(nil), s.V[i]...))
	}
	return c
}

func bitsEqual[F Float](t *testing.T, what string, a, b []Param[F]) {
	t.Helper()
	for i := range a {
		for j := range a[i].Data {
			x, y := float64(a[i].Data[j]), float64(b[i].Data[j])
			if math.Float64bits(x) != math.Float64bits(y) {
				t.Fatalf("%s: %s[%d] = %v vs %v", what, a[i].Name, j, x, y)
			}
		}
	}
}

// TestStateRoundTrip resumes a second optimiser from State after 3 steps
// and checks both continue bit for bit.
func TestStateRoundTrip(t *testing.T) {
	cfg := DefaultAdamWConfig()
	cfg.WeightDecay = 0.1
	ps := newFixture[float32](3, true)
	o := NewAdamW(ps, cfg)
	rng := rand.New(rand.NewPCG(4, 4))
	for range 3 {
		fillGrads(ps, rng)
		o.Step(1e-3)
	}
	saved := cloneState(o.State())
	ps2 := cloneParams(ps)
	o2 := NewAdamW(ps2, cfg)
	if err := o2.SetState(saved); err != nil {
		t.Fatal(err)
	}
	saved.M[0][0] = 42 // SetState copied: the optimiser must not see this
	for s := range 3 {
		fillGrads(ps, rng)
		for i := range ps {
			copy(ps2[i].Grad, ps[i].Grad)
		}
		o.Step(1e-3 / float64(s+1))
		o2.Step(1e-3 / float64(s+1))
		bitsEqual(t, "after resume", ps, ps2)
	}
	if o.Steps() != 6 || o2.Steps() != 6 {
		t.Errorf("steps %d, %d; want 6", o.Steps(), o2.Steps())
	}
	// State shares memory with the optimiser.
	st := o.State()
	before := st.M[0][0]
	fillGrads(ps, rng)
	o.Step(1e-3)
	if st.M[0][0] == before {
		t.Errorf("State().M does not alias the optimiser's moments")
	}
}

func TestSetStateErrors(t *testing.T) {
	ps := newFixture[float64](5, true)
	o := NewAdamW(ps, DefaultAdamWConfig())
	good := cloneState(o.State())
	short := cloneState(good)
	short.V[6] = short.V[6][:10]
	for _, tt := range []struct {
		name string
		s    AdamWState[float64]
		want string
	}{
		{"negative step", AdamWState[float64]{Step: -1, M: good.M, V: good.V}, "negative step"},
		{"missing tensors", AdamWState[float64]{Step: 3, M: good.M[:2], V: good.V}, "8 params"},
		{"wrong size", short, `"blocks.0.ffn.value.weight"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := o.SetState(tt.s)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("SetState() = %v, want error containing %s", err, tt.want)
			}
			if o.Steps() != 0 {
				t.Fatalf("failed SetState changed step to %d", o.Steps())
			}
		})
	}
}

func TestNewAdamWPanics(t *testing.T) {
	for _, tt := range []struct {
		name string
		p    Param[float32]
		cfg  AdamWConfig
	}{
		{"grad size", Param[float32]{Name: "w", Shape: []int{2, 2}, Data: make([]float32, 4), Grad: make([]float32, 3), LRScale: 1}, DefaultAdamWConfig()},
		{"shape", Param[float32]{Name: "w", Shape: []int{3}, Data: make([]float32, 4), Grad: make([]float32, 4), LRScale: 1}, DefaultAdamWConfig()},
		{"lr scale", Param[float32]{Name: "w", Shape: []int{1}, Data: make([]float32, 1), Grad: make([]float32, 1), LRScale: -1}, DefaultAdamWConfig()},
		{"config", Param[float32]{Name: "w", Shape: []int{1}, Data: make([]float32, 1), Grad: make([]float32, 1), LRScale: 1}, AdamWConfig{Beta1: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("NewAdamW did not panic")
				}
			}()
			NewAdamW([]Param[float32]{tt.p}, tt.cfg)
		})
	}
}

func TestAdamWStepDoesNotAllocate(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(2)) // exercise the pool
	ps := newFixture[float32](6, true)
	fillGrads(ps, rand.New(rand.NewPCG(6, 6)))
	o := NewAdamW(ps, DefaultAdamWConfig())
	if n := testing.AllocsPerRun(20, func() { o.Step(1e-3) }); n != 0 {
		t.Errorf("Step allocates %v times per call, want 0", n)
	}
}

// TestDeterministicAcrossGOMAXPROCS runs the same steps (and grad norm)
// with GOMAXPROCS 1, 2 and 3 and wants identical bits.
func TestDeterministicAcrossGOMAXPROCS(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	run := func(procs int) ([]Param[float32], float64) {
		runtime.GOMAXPROCS(procs)
		ps := newFixture[float32](7, true)
		cfg := DefaultAdamWConfig()
		cfg.WeightDecay = 0.01
		o := NewAdamW(ps, cfg)
		rng := rand.New(rand.NewPCG(8, 8))
		var norm float64
		for range 4 {
			fillGrads(ps, rng)
			norm += ClipGlobalNorm(ps, 0.5)
			o.Step(2e-3)
		}
		return ps, norm
	}
	ps1, n1 := run(1)
	for _, procs := range []int{2, 3} {
		ps, n := run(procs)
		bitsEqual(t, "GOMAXPROCS "+string(rune('0'+procs)), ps1, ps)
		if math.Float64bits(n) != math.Float64bits(n1) {
			t.Errorf("GOMAXPROCS %d: grad norms sum %v, want %v", procs, n, n1)
		}
	}
}

// TestPoolWorkersExit checks that an AdamW that is no longer referenced
// takes its worker goroutines with it.
func TestPoolWorkersExit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(3))
	// Let the pools of earlier tests' optimisers wind down first.
	before := runtime.NumGoroutine()
	for stable := 0; stable < 3; {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
		if n := runtime.NumGoroutine(); n < before {
			before, stable = n, 0
		} else {
			stable++
		}
	}
	func() {
		ps := newFixture[float32](10, false)
		o := NewAdamW(ps, DefaultAdamWConfig())
		o.Step(1e-3)
		if n := runtime.NumGoroutine(); n < before+2 {
			t.Fatalf("%d goroutines after a pooled step, want at least %d", n, before+2)
		}
	}()
	for range 100 {
		runtime.GC()
		if runtime.NumGoroutine() <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines remain, want %d", runtime.NumGoroutine(), before)
}
