package model

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os/exec"
	"strconv"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// TestX070OpsMatchTorch evaluates every x070 op and its gradients in float64 and compares them
// with PyTorch's definitions (testdata/x070_ops_torch.py: F.group_norm, F.normalize, the
// RWKV-LM expressions), on inputs that include a near-constant GroupNorm group and keys below
// and at F.normalize's 1e-12 clamp. It skips where /usr/bin/python3 cannot import torch, unless
// RWKV_REQUIRE_TORCH is set.
func TestX070OpsMatchTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts PyTorch (about 4 s)")
	}
	py := testutil.RequireTorch(t)
	const B, T, H, S = 2, 3, 2, 4
	const N, C = B * T, H * S
	type input struct {
		name         string
		shape        []int
		scale, shift float64
	}
	type opCase struct {
		name   string
		ins    []input
		nOut   int
		adjust func(v map[string][]float64)
		build  func(n map[string]*G.Node) (G.Nodes, error)
	}
	m := func(name string, scale, shift float64) input { return input{name, []int{N, C}, scale, shift} }
	vc := func(name string, scale, shift float64) input { return input{name, []int{C}, scale, shift} }
	cases := []opCase{
		{"GroupNorm", []input{m("x", 2, 1), vc("w", 0.5, 1), vc("b", 1, 0)}, 1,
			func(v map[string][]float64) { // group 0 of row 0 nearly constant
				for j := 0; j < S; j++ {
					v["x"][j] = 3 + 1e-4*float64(j)
				}
			},
			func(n map[string]*G.Node) (G.Nodes, error) {
				y, err := GroupNorm(n["x"], n["w"], n["b"], H, GroupNormEpsX070)
				return G.Nodes{y}, err
			}},
		{"Kappa", []input{m("k", 1, 0), vc("kk", 0.3, 0.7), m("a", 0.3, 0.5), vc("ka", 0.2, 1)}, 3,
			func(v map[string][]float64) { // row 0: head 0 at 1e-14 (clamped), head 1 zero; row 1 head 0 at 3e-12
				for j := 0; j < S; j++ {
					v["k"][j] *= 1e-14
					v["k"][S+j] = 0
					v["k"][C+j] *= 3e-12
				}
			},
			func(n map[string]*G.Node) (G.Nodes, error) {
				al, err := KappaAlpha(n["k"], n["kk"], H)
				if err != nil {
					return nil, err
				}
				be, err := KappaBeta(al, n["a"])
				if err != nil {
					return nil, err
				}
				k2, err := KeyMod(n["k"], n["a"], n["ka"])
				return G.Nodes{al, be, k2}, err
			}},
		{"Bonus", []input{m("o", 1, 0), m("r", 1, 0), m("k", 1, 0), m("v", 1, 0), {"rk", []int{H, S}, 0.5, -0.04}}, 1, nil,
			func(n map[string]*G.Node) (G.Nodes, error) {
				y, err := Bonus(n["o"], n["r"], n["k"], n["v"], n["rk"], H)
				return G.Nodes{y}, err
			}},
		{"ValueResidual", []input{m("v", 1, 0), m("vf", 1, 0), vc("v0", 0.5, 0.7), m("z", 2, 0)}, 1, nil,
			func(n map[string]*G.Node) (G.Nodes, error) {
				y, err := ValueResidual(n["v"], n["vf"], n["v0"], n["z"])
				return G.Nodes{y}, err
			}},
		{"Activate", []input{m("x", 2, 0), vc("b", 1, 0.3)}, 3, nil,
			func(n map[string]*G.Node) (G.Nodes, error) {
				var out G.Nodes
				for _, c := range []struct {
					b    *G.Node
					kind ActKind
				}{{nil, ActTanh}, {n["b"], ActSigmoid}, {n["b"], ActIdentity}} {
					y, err := Activate(n["x"], c.b, c.kind)
					if err != nil {
						return nil, err
					}
					out = append(out, y)
				}
				return out, nil
			}},
		{"ShiftLerp", []input{m("x", 1, 0), {"prev", []int{B, C}, 1, 0}, vc("m0", 0.3, 0.5), vc("m1", 0.3, 0.5)}, 2, nil,
			func(n map[string]*G.Node) (G.Nodes, error) {
				return ShiftLerp(n["x"], n["prev"], G.Nodes{n["m0"], n["m1"]}, B, T)
			}},
	}
	type spec struct {
		Dims map[string]int    `json:"dims"`
		In   map[string][2]any `json:"in"`
	}
	req := map[string]spec{}
	got := map[string]map[string][]float64{}
	rng := rand.New(rand.NewPCG(12, 1))
	for _, c := range cases {
		vals := map[string][]float64{}
		shapes := map[string][]int{}
		for _, in := range c.ins {
			v := make([]float64, tensor.Shape(in.shape).TotalSize())
			for i := range v {
				v[i] = in.shift + in.scale*rng.NormFloat64()
			}
			vals[in.name], shapes[in.name] = v, in.shape
		}
		if c.adjust != nil {
			c.adjust(vals)
		}
		g := G.NewGraph()
		nodes := map[string]*G.Node{}
		var wrt G.Nodes
		var wrtNames []string
		mkNode := func(name string, shape []int, v []float64) *G.Node {
			tv := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
			if len(shape) == 1 {
				return G.NewVector(g, tensor.Float64, G.WithShape(shape...), G.WithName(name), G.WithValue(tv))
			}
			return G.NewMatrix(g, tensor.Float64, G.WithShape(shape...), G.WithName(name), G.WithValue(tv))
		}
		for _, in := range c.ins {
			nodes[in.name] = mkNode(in.name, in.shape, vals[in.name])
			wrt = append(wrt, nodes[in.name])
			wrtNames = append(wrtNames, in.name)
		}
		outs, err := c.build(nodes)
		if err != nil {
			t.Fatal(err)
		}
		var loss *G.Node
		for j, o := range outs {
			name := "R" + strconv.Itoa(j)
			r := make([]float64, o.Shape().TotalSize())
			for i := range r {
				r[i] = rng.NormFloat64()
			}
			vals[name], shapes[name] = r, []int(o.Shape())
			d, err := Dot(o, mkNode(name, o.Shape(), r))
			if err != nil {
				t.Fatal(err)
			}
			if loss == nil {
				loss = d
			} else if loss, err = G.Add(loss, d); err != nil {
				t.Fatal(err)
			}
		}
		grads, err := G.Grad(loss, wrt...)
		if err != nil {
			t.Fatal(err)
		}
		vm := G.NewTapeMachine(g)
		if err := vm.RunAll(); err != nil {
			t.Fatal(err)
		}
		res := map[string][]float64{}
		for j, o := range outs {
			res["out"+strconv.Itoa(j)] = append([]float64(nil), o.Value().Data().([]float64)...)
		}
		for i, gn := range grads {
			res["grad/"+wrtNames[i]] = append([]float64(nil), gn.Value().Data().([]float64)...)
		}
		vm.Close()
		got[c.name] = res
		sp := spec{Dims: map[string]int{"B": B, "T": T, "H": H, "S": S, "N": N}, In: map[string][2]any{}}
		for name, v := range vals {
			sp.In[name] = [2]any{shapes[name], v}
		}
		req[c.name] = sp
	}
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, "testdata/x070_ops_torch.py")
	cmd.Stdin = bytes.NewReader(body)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("testdata/x070_ops_torch.py: %v\n%s", err, stderr.String())
	}
	var want map[string]map[string][]float64
	if err := json.Unmarshal(out, &want); err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		for key, w := range want[c.name] {
			gv, ok := got[c.name][key]
			if !ok || len(gv) != len(w) {
				t.Errorf("%s %s: Go has %d values, torch %d", c.name, key, len(gv), len(w))
				continue
			}
			for i := range w { // per element: the clamped keys' gradients are ~1e12, the others ~1
				if d := math.Abs(gv[i] - w[i]); !(d <= 1e-9*math.Max(math.Abs(w[i]), 1)) {
					t.Errorf("%s %s[%d]: Go %v, torch %v", c.name, key, i, gv[i], w[i])
					break
				}
			}
		}
	}
}
