package model

import (
	"math"
	"strings"
	"testing"

	"github.com/rwkv-go/rwkv-go/arch"
)

// golden7Case is one x070 golden file (reference/gen_golden7.py) and its tolerances relative to
// each tensor's scale (issue 13: float64 1e-10, float32 1e-5 on outputs, 1e-4 on gradients).
type golden7Case struct {
	file          string
	f32           bool
	tolOut, tolGr float64
}

var golden7Cases = []golden7Case{
	{"golden7_f64.safetensors", false, 1e-10, 1e-10},
	{"golden7_f32.safetensors", true, 1e-5, 1e-4},
}

// golden7Params reads the param/* tensors of an x070 golden file as params7[F].
func golden7Params[F Float](g golden) params7[F] {
	p := params7[F]{}
	for _, ten := range g.f.Tensors {
		name, ok := strings.CutPrefix(ten.Name, "param/")
		if !ok {
			continue
		}
		p[name] = param7[F]{Shape: append([]int(nil), ten.Shape...), Data: convert[F](g.floats(ten.Name))}
	}
	return p
}

// runRNN7 runs the RNN over tokens [B,T] from the states st[b] (one []x070State per sequence)
// and returns the logits [B,T,V] as float64.
func runRNN7[F Float](t *testing.T, m *rnn7[F], tokens []int, B, T int, st [][]x070State[F]) []float64 {
	t.Helper()
	V := m.d.Vocab
	out := make([]float64, 0, B*T*V)
	lg := make([]F, V)
	for b := 0; b < B; b++ {
		for i := 0; i < T; i++ {
			if err := m.step(tokens[b*T+i], st[b], lg); err != nil {
				t.Fatal(err)
			}
			for _, x := range lg {
				out = append(out, float64(x))
			}
		}
	}
	return out
}

// statesFrom splits golden state tensors [L,B,...] into per-sequence, per-layer states.
func statesFrom[F Float](d arch.Dims, B int, attX, wkv, ffnX []float64) [][]x070State[F] {
	C, S := d.Embd, d.Embd*d.HeadSize
	st := make([][]x070State[F], B)
	for b := range st {
		st[b] = newX070States[F](d)
		for l := range st[b] {
			i := l*B + b
			copy(st[b][l].AttX, convert[F](attX[i*C:(i+1)*C]))
			copy(st[b][l].WKV, convert[F](wkv[i*S:(i+1)*S]))
			copy(st[b][l].FFNX, convert[F](ffnX[i*C:(i+1)*C]))
		}
	}
	return st
}

// statesTo joins per-sequence states back into [L,B,...] tensors.
func statesTo[F Float](st [][]x070State[F]) (attX, wkv, ffnX []float64) {
	B, L := len(st), len(st[0])
	for l := 0; l < L; l++ {
		for b := 0; b < B; b++ {
			s := st[b][l]
			attX = append(attX, convert[float64](s.AttX)...)
			wkv = append(wkv, convert[float64](s.WKV)...)
			ffnX = append(ffnX, convert[float64](s.FFNX)...)
		}
	}
	return
}

// TestRNN7Golden runs the x070 RNN form over the golden tokens, from the empty state and from
// the golden state_in, and compares logits and final states with PyTorch's parallel forward.
func TestRNN7Golden(t *testing.T) {
	for _, c := range golden7Cases {
		t.Run(c.file, func(t *testing.T) {
			g := openGolden(t, c.file)
			if c.f32 {
				testRNN7Golden[float32](t, g, c.tolOut)
			} else {
				testRNN7Golden[float64](t, g, c.tolOut)
			}
		})
	}
}

func testRNN7Golden[F Float](t *testing.T, g golden, tol float64) {
	p := golden7Params[F](g)
	m, err := newRNN7(p)
	if err != nil {
		t.Fatal(err)
	}
	d := m.d
	B, T := g.meta("B"), g.meta("T")
	want := arch.Dims{Arch: arch.X070, Layers: g.meta("n_layer"), Embd: g.meta("n_embd"), Vocab: g.meta("vocab_size"),
		HeadSize: g.meta("head_size"), FFN: g.meta("dim_ffn"),
		LoRA:     arch.LoRA{W: g.meta("D_decay"), A: g.meta("D_aaa"), V: g.meta("D_mv"), G: g.meta("D_gate")},
		V0Layer0: true}
	if d != want {
		t.Fatalf("inferred dims %+v, golden metadata says %+v", d, want)
	}
	tokens := g.ints("tokens")

	empty := make([][]x070State[F], B)
	for b := range empty {
		empty[b] = newX070States[F](d)
	}
	rel := compare(t, "logits (empty state)", runRNN7(t, m, tokens, B, T, empty), g.floats("logits"), tol)
	t.Logf("logits from the empty state: max diff %.3g of scale", rel)

	st := statesFrom[F](d, B, g.floats("state_in/att_x"), g.floats("state_in/wkv"), g.floats("state_in/ffn_x"))
	rel = compare(t, "logits_state", runRNN7(t, m, tokens, B, T, st), g.floats("logits_state"), tol)
	t.Logf("logits from state_in: max diff %.3g of scale", rel)
	attX, wkv, ffnX := statesTo(st)
	for _, s := range []struct {
		name string
		got  []float64
	}{{"att_x", attX}, {"wkv", wkv}, {"ffn_x", ffnX}} {
		rel = compare(t, "state_out/"+s.name, s.got, g.floats("state_out/"+s.name), tol)
		t.Logf("state_out/%s: max diff %.3g of scale", s.name, rel)
	}
}

// TestRNN7Layer0VOptional: layer 0's v0/v1/v2 are never used, so a model without them (as FLA
// files come) loads and gives bit-identical logits.
func TestRNN7Layer0VOptional(t *testing.T) {
	p := golden7Params[float64](openGolden(t, "golden7_f64.safetensors"))
	full, err := newRNN7(p)
	if err != nil {
		t.Fatal(err)
	}
	q := params7[float64]{}
	for k, v := range p {
		if k != "blocks.0.att.v0" && k != "blocks.0.att.v1" && k != "blocks.0.att.v2" {
			q[k] = v
		}
	}
	short, err := newRNN7(q)
	if err != nil {
		t.Fatal(err)
	}
	if short.d.V0Layer0 || short.d.LoRA != full.d.LoRA {
		t.Fatalf("without layer 0's v*: dims %+v, want %+v with V0Layer0 false", short.d, full.d)
	}
	// Poison layer 0's v tensors in the full model: a use of them would change the logits.
	for _, n := range []string{"blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2"} {
		for i := range p[n].Data {
			p[n].Data[i] = math.NaN()
		}
	}
	s1, s2 := newX070States[float64](full.d), newX070States[float64](full.d)
	l1, l2 := make([]float64, full.d.Vocab), make([]float64, full.d.Vocab)
	for _, tok := range []int{3, 1, 4, 1, 5} {
		if err := full.step(tok, s1, l1); err != nil {
			t.Fatal(err)
		}
		if err := short.step(tok, s2, l2); err != nil {
			t.Fatal(err)
		}
		for i := range l1 {
			if l1[i] != l2[i] || math.IsNaN(l1[i]) {
				t.Fatalf("token %d logit %d: %v with layer 0's v*, %v without", tok, i, l1[i], l2[i])
			}
		}
	}
}

// TestRNN7DimsErrors: a wrong tensor set or shape is refused with a message naming the tensor.
func TestRNN7DimsErrors(t *testing.T) {
	base := golden7Params[float64](openGolden(t, "golden7_f64.safetensors"))
	cases := []struct {
		name string
		edit func(p params7[float64])
		want string
	}{
		{"missing", func(p params7[float64]) { delete(p, "blocks.1.att.k_a") }, `missing tensor "blocks.1.att.k_a"`},
		{"shape", func(p params7[float64]) {
			p["blocks.1.att.w2"] = param7[float64]{Shape: []int{17, 128}, Data: make([]float64, 17*128)}
		}, `tensor "blocks.1.att.w2": shape [17 128], want [16 128]`},
		{"data", func(p params7[float64]) {
			x := p["ln_out.bias"]
			p["ln_out.bias"] = param7[float64]{Shape: x.Shape, Data: x.Data[:3]}
		}, `"ln_out.bias" has 3 values`},
		{"variant", func(p params7[float64]) {
			p["blocks.0.ffn.s_emb.weight"] = param7[float64]{Shape: []int{64, 1024}}
		}, "RWKV-7a/7b variant"},
		{"extra", func(p params7[float64]) { p["blocks.0.att.time_decay"] = param7[float64]{} }, `unexpected tensor "blocks.0.att.time_decay"`},
		{"heads", func(p params7[float64]) {
			p["blocks.0.att.r_k"] = param7[float64]{Shape: []int{4, 64}, Data: make([]float64, 256)}
		}, `tensor "blocks.0.att.r_k": shape [4 64], want [2 64]`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := params7[float64]{}
			for k, v := range base {
				p[k] = v
			}
			c.edit(p)
			_, err := newRNN7(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestWKV7GoldenOp checks the WKV-7 kernels (the dispatching runWKV7Forward/Backward, AVX2 for
// float32 where available, and the portable Go kernels) against the golden wkv/* block: the op
// alone in PyTorch's sequential loop, outputs y, sT and the gradients of
// sum(y·dy) + sum(sT·dsT) for r, w̃, k, v, a, b and the initial state.
func TestWKV7GoldenOp(t *testing.T) {
	for _, c := range golden7Cases {
		t.Run(c.file, func(t *testing.T) {
			g := openGolden(t, c.file)
			if c.f32 {
				testWKV7Golden[float32](t, g, c)
			} else {
				testWKV7Golden[float64](t, g, c)
			}
		})
	}
}

func testWKV7Golden[F Float](t *testing.T, g golden, c golden7Case) {
	B, T, C, N := g.meta("B"), g.meta("T"), g.meta("n_embd"), g.meta("head_size")
	H := C / N
	in := func(n string) []F { return convert[F](g.floats("wkv/" + n)) }
	r, w, k, v, a, b, s0, dy, dsT := in("r"), in("w"), in("k"), in("v"), in("a"), in("b"), in("s0"), in("dy"), in("dsT")
	for _, kern := range []struct {
		name string
		fwd  func(B, T, H, N int, r, w, k, v, a, b, s0, y, sT []F)
		bwd  func(B, T, H, N int, r, w, k, v, a, b, s0, dy, dsT, dr, dw, dk, dv, da, db, ds0 []F)
	}{{"run", runWKV7Forward[F], runWKV7Backward[F]}, {"go", wkv7Forward[F], wkv7Backward[F]}} {
		n, ns := B*T*C, B*H*N*N
		y, sT := make([]F, n), make([]F, ns)
		kern.fwd(B, T, H, N, r, w, k, v, a, b, s0, y, sT)
		worst := compare(t, kern.name+" wkv/y", convert[float64](y), g.floats("wkv/y"), c.tolOut)
		worst = max(worst, compare(t, kern.name+" wkv/sT", convert[float64](sT), g.floats("wkv/sT"), c.tolOut))
		gr := [7][]F{}
		for i := range gr {
			gr[i] = make([]F, n)
		}
		gr[6] = make([]F, ns)
		kern.bwd(B, T, H, N, r, w, k, v, a, b, s0, dy, dsT, gr[0], gr[1], gr[2], gr[3], gr[4], gr[5], gr[6])
		var worstG float64
		for i, name := range []string{"r", "w", "k", "v", "a", "b", "s0"} {
			worstG = max(worstG, compare(t, kern.name+" wkv/grad_"+name, convert[float64](gr[i]), g.floats("wkv/grad_"+name), c.tolGr))
		}
		t.Logf("%s kernels: outputs within %.3g, gradients within %.3g of scale", kern.name, worst, worstG)
	}
}
