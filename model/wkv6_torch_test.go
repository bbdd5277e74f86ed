package model

import (
	"bytes"
	"encoding/json"
	"maps"
	"os/exec"
	"slices"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// wkv6OpRun evaluates the WKV6 op in a graph of dtype dt on in's inputs, with the loss
// y·dy + sT·dsT, and returns y, sT and the gradients of r, k, v, w, u, s0 as float64.
func wkv6OpRun(t *testing.T, in wkv6In[float64], dt tensor.Dtype) map[string][]float64 {
	t.Helper()
	g := G.NewGraph()
	BT, C, NS := in.B*in.T, in.H*in.N, in.B*in.H*in.N
	node := func(name string, d []float64, rows, cols int) *G.Node {
		var back any = append([]float64(nil), d...)
		if dt == tensor.Float32 {
			back = convert[float32](d)
		}
		v := tensor.New(tensor.WithShape(rows, cols), tensor.WithBacking(back))
		return G.NewMatrix(g, dt, G.WithShape(rows, cols), G.WithName(name), G.WithValue(v))
	}
	wr, wc := BT, C
	if len(in.w) != BT*C {
		wr, wc = in.H, in.N
	}
	ns := G.Nodes{node("r", in.r, BT, C), node("k", in.k, BT, C), node("v", in.v, BT, C),
		node("w", in.w, wr, wc), node("u", in.u, in.H, in.N), node("s0", in.s0, NS, in.N)}
	y, sT, err := WKV6(ns[0], ns[1], ns[2], ns[3], ns[4], ns[5], in.B, in.T, in.H)
	if err != nil {
		t.Fatal(err)
	}
	f64 := func(v G.Value) []float64 {
		if d, ok := v.Data().([]float32); ok {
			return convert[float64](d)
		}
		return append([]float64(nil), v.Data().([]float64)...)
	}
	out := map[string][]float64{}
	wkvGraphRun(t, g, y, sT, node("R1", in.dy, BT, C), node("R2", in.dsT, NS, in.N), ns, func(vals []G.Value) {
		for i, name := range []string{"y", "sT", "grad/r", "grad/k", "grad/v", "grad/w", "grad/u", "grad/s0"} {
			out[name] = f64(vals[i])
		}
	})
	return out
}

// TestWKV6MatchesTorch compares the WKV6 op (y, sT and the gradients of every input) in float32
// and float64 with an autograd einsum loop in PyTorch (testdata/wkv6_torch.py) in the same
// dtype, for both decay layouts, fresh and carried state, head sizes 8 and 64 (the AVX2 kernels
// in float32) and 5 (the Go kernels), and decays near both ends. Tolerances: max|diff|/max|torch|
// per tensor, 1e-12 in float64 and 1e-5 in float32 (summation order differs). It skips where
// /usr/bin/python3 cannot import torch, unless RWKV_REQUIRE_TORCH is set.
func TestWKV6MatchesTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts PyTorch (about 4 s)")
	}
	py := testutil.RequireTorch(t)
	cases := []wkv6Case{
		{2, 20, 2, 8, -1, 1, false, true}, {2, 20, 2, 8, -1, 1, true, true}, {2, 17, 2, 8, -1, 1, false, false},
		{1, 18, 2, 8, -8, 0.1, false, true}, {1, 18, 2, 8, 8, 0.1, true, true},
		{1, 33, 1, 64, -2, 1, false, true}, {2, 9, 2, 5, -1, 1, true, true},
	}
	type req struct {
		Dtype string    `json:"dtype"`
		B     int       `json:"B"`
		T     int       `json:"T"`
		H     int       `json:"H"`
		N     int       `json:"N"`
		R     []float64 `json:"r"`
		K     []float64 `json:"k"`
		V     []float64 `json:"v"`
		W     []float64 `json:"w"`
		U     []float64 `json:"u"`
		S0    []float64 `json:"s0"`
		Dy    []float64 `json:"dy"`
		DsT   []float64 `json:"dsT"`
	}
	body := map[string]req{}
	ins := map[string]wkv6In[float64]{}
	dtypes := map[string]tensor.Dtype{"float32": tensor.Float32, "float64": tensor.Float64}
	for _, c := range cases {
		in := c.inputs(11)
		if in.dsT == nil {
			in.dsT = make([]float64, len(in.s0))
		}
		for dn := range dtypes {
			name := c.String() + "/" + dn
			ins[name] = in
			body[name] = req{dn, in.B, in.T, in.H, in.N, in.r, in.k, in.v, in.w, in.u, in.s0, in.dy, in.dsT}
		}
	}
	js, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/wkv6_torch.py")
	cmd.Stdin = bytes.NewReader(js)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testdata/wkv6_torch.py: %v\n%s", err, stderr.String())
	}
	var want map[string]map[string][]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	names := slices.Sorted(maps.Keys(ins))
	for _, name := range names {
		in := ins[name]
		dn := body[name].Dtype
		tol := map[string]float64{"float32": 1e-5, "float64": 1e-12}[dn]
		got := wkv6OpRun(t, in, dtypes[dn])
		worst := 0.0
		for key, w := range want[name] {
			gv := got[key]
			if len(gv) != len(w) {
				t.Errorf("%s %s: Go has %d values, torch %d", name, key, len(gv), len(w))
				continue
			}
			d := maxRelDiff(gv, w)
			worst = max(worst, d)
			if !(d <= tol) {
				t.Errorf("%s %s: max rel diff to torch %.3g, want <= %g", name, key, d, tol)
			}
		}
		if len(want[name]) != 8 {
			t.Errorf("%s: torch returned %d tensors, want 8", name, len(want[name]))
		}
		t.Logf("%s: worst max rel diff to torch %.2g", name, worst)
	}
}
