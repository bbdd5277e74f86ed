package model

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
	"github.com/rwkv-go/rwkv-go/internal/testutil"
)

// The init-vector goldens of x052/x060 (init6_test.go) and x070 (init7_test.go): the formula
// tensors of the Go init against the reference's init_params, from a committed JSON file and
// from the reference run now.

// initGoldenCase is one shape of an init golden file, with the reference's tensors.
type initGoldenCase interface {
	dims() arch.Dims
	label() string // "x060 L3 C48", for messages
	vectors() map[string][]float64
}

// initGolden describes one architecture family's init golden.
type initGolden struct {
	init     func(d arch.Dims, seed uint64) (params7[float64], error)
	holds    func(name string, shape []int) bool // whether the file holds the tensor
	kind     string                              // what the file holds, for messages
	tol      float64                             // max |Go − reference| per value
	path     string                              // the committed file
	update   *bool                               // the -update flag
	flag     string                              // its name
	torch    string                              // the test that runs the reference
	script   string                              // Python: argv[1] the shapes as JSON, prints the cases
	ref      string                              // the reference file, for messages
	indented bool                                // the file is written with MarshalIndent
}

// checkInitVectors compares the Go init's tensors that g.holds with the reference's (to g.tol),
// and checks that both name the same set of them.
func checkInitVectors[C initGoldenCase](t *testing.T, g initGolden, cases []C) {
	t.Helper()
	for _, c := range cases {
		d := c.dims()
		p, err := g.init(d, 1)
		if err != nil {
			t.Fatal(err)
		}
		vectors := c.vectors()
		var worst float64
		count := 0
		for name, got := range p {
			want, ok := vectors[name]
			if g.holds(name, got.Shape) != ok {
				t.Errorf("%s: %s: %s in Go %v, in the reference %v", c.label(), name, g.kind, !ok, ok)
				continue
			}
			if !ok {
				continue
			}
			count++
			if len(got.Data) != len(want) {
				t.Fatalf("%s: %s: %d values, reference %d", c.label(), name, len(got.Data), len(want))
			}
			for i := range want {
				d := math.Abs(got.Data[i] - want[i])
				worst = max(worst, d)
				if !(d <= g.tol) {
					t.Fatalf("%s: %s[%d] = %.17g, reference %.17g", c.label(), name, i, got.Data[i], want[i])
				}
			}
		}
		if len(vectors) != count {
			t.Errorf("%s: reference has %d %s tensors, Go %d", c.label(), len(vectors), g.kind, count)
		}
		t.Logf("%s N%d: %d %s tensors, max |diff| %.3g", c.label(), d.HeadSize, count, g.kind, worst)
	}
}

// testInitVectorsGolden checks the committed reference values (no Python needed); shapes are
// the cases the file must hold.
func testInitVectorsGolden[C initGoldenCase](t *testing.T, g initGolden, shapes []C) {
	b, err := os.ReadFile(g.path)
	if err != nil {
		t.Fatalf("%v (regenerate with go test -run %s -%s ./model/)", err, g.torch, g.flag)
	}
	var cases []C
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatalf("%s: %v", g.path, err)
	}
	if len(cases) != len(shapes) {
		t.Fatalf("%s has %d cases, want %d (regenerate with -%s)", g.path, len(cases), len(shapes), g.flag)
	}
	checkInitVectors(t, g, cases)
}

// testInitVectorsTorch checks the Go init against the reference run now on shapes, and that the
// committed golden is what the reference computes (-update-… rewrites it). Skips without torch
// unless RWKV_REQUIRE_TORCH is set.
func testInitVectorsTorch[C initGoldenCase](t *testing.T, g initGolden, shapes []C) {
	python := testutil.RequireTorch(t)
	arg, err := json.Marshal(shapes)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", g.script, string(arg)).Output()
	if err != nil {
		t.Fatalf("%s init_params: %v", g.ref, err)
	}
	var cases []C
	if err := json.Unmarshal(out, &cases); err != nil {
		t.Fatalf("reference output: %v", err)
	}
	checkInitVectors(t, g, cases)
	if *g.update {
		var b []byte
		if g.indented {
			b, err = json.MarshalIndent(cases, "", " ")
		} else {
			b, err = json.Marshal(cases)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g.path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	b, err := os.ReadFile(g.path)
	if err != nil {
		t.Fatalf("%v (write it with -%s)", err, g.flag)
	}
	var committed []C
	if err := json.Unmarshal(b, &committed); err != nil {
		t.Fatalf("%s: %v", g.path, err)
	}
	for i := range cases {
		for name, want := range cases[i].vectors() {
			if !slices.Equal(committed[i].vectors()[name], want) {
				t.Errorf("%s case %d %s differs from %s; regenerate with -%s", g.path, i, name, g.ref, g.flag)
			}
		}
	}
}

// initDraws says what checkInitDraws expects of an init's tensors (names after "blocks.N.",
// or whole outside the blocks) besides head.weight (orthogonal, gain 0.5·√(V/C)).
type initDraws struct {
	gains         map[string]float64 // orthogonal with this gain
	zeros         []string           // all zero
	uniform       map[string]float64 // U(±bound), the largest |x| above 0.9·bound
	deterministic func(name string) bool
}

// checkInitDraws checks p = init(d, 7): the orthogonal, zero and uniform tensors w names, that
// every random tensor (not w.deterministic) is one of them, and that seed 7 again gives the same
// values and seed 8 other ones.
func checkInitDraws(t *testing.T, d arch.Dims, init func(arch.Dims, uint64) (params7[float64], error), p params7[float64], w initDraws) {
	t.Helper()
	checked, random := 0, 0
	for name, ten := range p {
		last := blockRest(name)
		if !w.deterministic(name) {
			random++
		}
		switch {
		case name == "head.weight":
			checkOrthogonal(t, name, ten, 0.5*math.Sqrt(float64(d.Vocab)/float64(d.Embd)))
		case w.gains[last] != 0:
			checkOrthogonal(t, name, ten, w.gains[last])
		case slices.Contains(w.zeros, last):
			for _, x := range ten.Data {
				if x != 0 {
					t.Fatalf("%s: %v, want zeros", name, x)
				}
			}
		case w.uniform[last] != 0:
			bound := w.uniform[last]
			var big float64
			for _, x := range ten.Data {
				if math.Abs(x) > bound {
					t.Fatalf("%s: %v outside ±%g", name, x, bound)
				}
				big = max(big, math.Abs(x))
			}
			if big < 0.9*bound {
				t.Fatalf("%s: max |x| %v, want U(±%g)", name, big, bound)
			}
		default:
			if !w.deterministic(name) {
				t.Fatalf("%s: no check", name)
			}
			continue
		}
		if !w.deterministic(name) {
			checked++
		}
	}
	if checked != random {
		t.Fatalf("%s: checked %d random tensors, want %d", d.Arch, checked, random)
	}
	q, _ := init(d, 7)
	r, _ := init(d, 8)
	for name := range p {
		if !slices.Equal(p[name].Data, q[name].Data) {
			t.Fatalf("%s: seed 7 twice gives different values", name)
		}
		if name == "blocks.1.att.key.weight" && slices.Equal(p[name].Data, r[name].Data) {
			t.Fatalf("%s: seeds 7 and 8 give the same values", name)
		}
	}
}

// initErrorCase is an edit of good dims and what init's error must then say.
type initErrorCase struct {
	name string
	edit func(d *arch.Dims)
	want string
}

// checkInitErrors: init of good changed by each case's edit is an error containing its want.
func checkInitErrors(t *testing.T, init func(arch.Dims, uint64) (params7[float64], error), good arch.Dims, cases []initErrorCase) {
	t.Helper()
	for _, c := range cases {
		d := good
		c.edit(&d)
		if _, err := init(d, 1); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}
