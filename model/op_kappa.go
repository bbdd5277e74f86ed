package model

import (
	"fmt"
	"hash"
	"math"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// RWKV-7's key preparation for the WKV-7 op, as three single-output ops:
//
//	α  = KappaAlpha(k, k_k, H)   = -κ̂,  κ = k⊙k_k,  κ̂ = κ / max(‖κ‖₂ per head, 1e-12)
//	β  = KappaBeta(α, a)         = -α⊙a  (= κ̂⊙a)
//	k' = KeyMod(k, a, k_a)       = k⊙(1 + (a-1)⊙k_a)
//
// Why this split (and not one op with a packed [k'|α|β] output): Gorgonia ops have one output,
// and the gradient of a packed output is the sum of one full-size zeroed scatter per extracted
// view (op.go extractOp), i.e. 3 zeroings of 3·N·C plus two 3·N·C additions, more memory traffic
// than the kernels themselves. With three ops each output has its own gradient, the only sums
// Gorgonia adds are gk (from KeyMod and KappaAlpha) and gα (from WKV-7 and KappaBeta), one N·C
// addition each. Each forward is one pass over its inputs, the norm is computed once (β reads α
// instead of renormalising), and each op is gradient-checked on its own.

// kappaEps is F.normalize's default eps, the floor of the norm (RWKV-7 relies on it).
const kappaEps = 1e-12

// kappaAlphaOp: (k (N,C), kk (C)) -> α (N,C) = -normalize(k⊙kk) per head of S = C/H channels.
type kappaAlphaOp struct {
	opBase
	N, C, H int
	buf     *outBuf
}

// KappaAlpha is WKV-7's α input: minus the per-head L2-normalised k⊙k_k (F.normalize, eps 1e-12
// on the norm). k is (N, C), kk = att.k_k flattened to (C). Its gradient is exact in both regions
// of the clamp: with n = ‖κ_head‖, gκ = (gκ̂ - κ̂(κ̂·gκ̂))/n when n ≥ 1e-12, else gκ̂/1e-12.
func KappaAlpha(k, kk *G.Node, H int) (*G.Node, error) {
	s := k.Shape()
	if len(s) != 2 || H <= 0 || s[1]%H != 0 || kk.Dims() != 1 || kk.Shape()[0] != s[1] {
		return nil, fmt.Errorf("model: KappaAlpha shapes k %v, k_k %v do not fit H=%d", s, kk.Shape(), H)
	}
	return G.ApplyOp(kappaAlphaOp{N: s[0], C: s[1], H: H, buf: newOutBuf()}, k, kk)
}

func (o kappaAlphaOp) Arity() int    { return 2 }
func (o kappaAlphaOp) Type() hm.Type { return hm.NewFnType(matT, vecT, matT) }
func (o kappaAlphaOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o kappaAlphaOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		kappaForward(f32(in[0]), f32(in[1]), d, o.N, o.C, o.H)
	case []float64:
		kappaForward(f64(in[0]), f64(in[1]), d, o.N, o.C, o.H)
	}
	return out, nil
}
func (o kappaAlphaOp) String() string {
	return fmt.Sprintf("KappaAlpha{N=%d,C=%d,H=%d}", o.N, o.C, o.H)
}
func (o kappaAlphaOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o kappaAlphaOp) Hashcode() uint32      { return hashcode(o) }
func (o kappaAlphaOp) DiffWRT(int) []bool    { return []bool{true, true} }
func (o kappaAlphaOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(kappaAlphaBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.C})
}

// headNorm is ‖k⊙kk‖₂ over one head, in float64.
func headNorm[F Float](k, kk []F) float64 {
	var ss float64
	for j := range k {
		x := float64(k[j]) * float64(kk[j])
		ss += x * x
	}
	return math.Sqrt(ss)
}

func kappaForward[F Float](k, kk, out []F, N, C, H int) {
	S := C / H
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			kg, kkg := k[i:i+S], kk[c0:c0+S]
			inv := -1 / math.Max(headNorm(kg, kkg), kappaEps)
			for j := range kg {
				out[i+j] = F(float64(kg[j]) * float64(kkg[j]) * inv)
			}
		}
	})
}

// kappaAlphaBackOp: (k, kk, gα) -> packed [gk (N*C) | gkk (C)].
type kappaAlphaBackOp struct {
	opBase
	fwd kappaAlphaOp
	buf *outBuf
}

func (o kappaAlphaBackOp) Arity() int    { return 3 }
func (o kappaAlphaBackOp) Type() hm.Type { return hm.NewFnType(matT, vecT, matT, vecT) }
func (o kappaAlphaBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.fwd.N*o.fwd.C + o.fwd.C}, nil
}
func (o kappaAlphaBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	out := o.buf.get(dtypeOf(in[0]), false, N*C+C)
	switch d := out.Data().(type) {
	case []float32:
		kappaBackward(f32(in[0]), f32(in[1]), f32(in[2]), d[:N*C], d[N*C:], N, C, o.fwd.H)
	case []float64:
		kappaBackward(f64(in[0]), f64(in[1]), f64(in[2]), d[:N*C], d[N*C:], N, C, o.fwd.H)
	}
	return out, nil
}
func (o kappaAlphaBackOp) String() string        { return "KappaAlphaBack" + o.fwd.String()[10:] }
func (o kappaAlphaBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o kappaAlphaBackOp) Hashcode() uint32      { return hashcode(o) }

func kappaBackward[F Float](k, kk, ga, gk, gkk []F, N, C, H int) {
	S := C / H
	np := pieces(N, C)
	part := make([]float64, np*C)
	parallelFor(N, np, func(p, lo, hi int) {
		pp := part[p*C : (p+1)*C]
		for i := lo * C; i < hi*C; i += S {
			c0 := i % C
			kg, kkg, gag := k[i:i+S], kk[c0:c0+S], ga[i:i+S]
			raw := headNorm(kg, kkg)
			// torch's clamp_min passes the gradient to the norm where norm ≥ eps.
			clamped := raw < kappaEps
			inv := 1 / math.Max(raw, kappaEps)
			// gκ̂ = -gα; dot = κ̂·gκ̂ is needed only above the clamp.
			var dot float64
			if !clamped {
				for j := range kg {
					dot -= float64(kg[j]) * float64(kkg[j]) * float64(gag[j])
				}
				dot *= inv
			}
			for j := range kg {
				kh := float64(kg[j]) * float64(kkg[j]) * inv
				gkappa := (-float64(gag[j]) - kh*dot) * inv
				gk[i+j] = F(gkappa * float64(kkg[j]))
				pp[c0+j] += gkappa * float64(kg[j])
			}
		}
	})
	sumParts(part, np, C, 1, 0, gkk)
}

// KappaBeta is WKV-7's β input κ̂⊙a, computed from α = -κ̂ (KappaAlpha) and a (both (N, C)):
// β = -α⊙a, the negated Hadamard product (backward gα = -gβ⊙a, ga = -gβ⊙α).
func KappaBeta(alpha, a *G.Node) (*G.Node, error) {
	s := alpha.Shape()
	if len(s) != 2 || !a.Shape().Eq(s) {
		return nil, fmt.Errorf("model: KappaBeta shapes alpha %v, a %v differ", s, a.Shape())
	}
	return G.ApplyOp(hadamardOp{N: s[0], C: s[1], neg: true, buf: newOutBuf()}, alpha, a)
}

// keyModOp: (k (N,C), a (N,C), ka (C)) -> k' = k⊙(1 + (a-1)⊙ka) (N,C), RWKV-7's key after the
// in-context learning rate. Backward: gk = g⊙(1+(a-1)⊙ka), ga = g⊙k⊙ka, gka = Σ_rows g⊙k⊙(a-1).
type keyModOp struct {
	opBase
	N, C int
	buf  *outBuf
}

// KeyMod is k⊙(1 + (a-1)⊙k_a) for k, a (N, C) and k_a = att.k_a flattened to (C).
func KeyMod(k, a, ka *G.Node) (*G.Node, error) {
	s := k.Shape()
	if len(s) != 2 || !a.Shape().Eq(s) || ka.Dims() != 1 || ka.Shape()[0] != s[1] {
		return nil, fmt.Errorf("model: KeyMod shapes k %v, a %v, k_a %v do not fit", s, a.Shape(), ka.Shape())
	}
	return G.ApplyOp(keyModOp{N: s[0], C: s[1], buf: newOutBuf()}, k, a, ka)
}

func (o keyModOp) Arity() int    { return 3 }
func (o keyModOp) Type() hm.Type { return hm.NewFnType(matT, matT, vecT, matT) }
func (o keyModOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{o.N, o.C}, nil
}
func (o keyModOp) Do(in ...G.Value) (G.Value, error) {
	out := o.buf.get(dtypeOf(in[0]), false, o.N, o.C)
	switch d := out.Data().(type) {
	case []float32:
		keyModForward(f32(in[0]), f32(in[1]), f32(in[2]), d, o.N, o.C)
	case []float64:
		keyModForward(f64(in[0]), f64(in[1]), f64(in[2]), d, o.N, o.C)
	}
	return out, nil
}
func (o keyModOp) String() string        { return fmt.Sprintf("KeyMod{N=%d,C=%d}", o.N, o.C) }
func (o keyModOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o keyModOp) Hashcode() uint32      { return hashcode(o) }
func (o keyModOp) DiffWRT(int) []bool    { return []bool{true, true, true} }
func (o keyModOp) SymDiff(in G.Nodes, out, grad *G.Node) (G.Nodes, error) {
	packed, err := G.ApplyOp(keyModBackOp{fwd: o, buf: newOutBuf()}, in[0], in[1], in[2], grad)
	if err != nil {
		return nil, err
	}
	return split(packed, []int{o.N, o.C}, []int{o.N, o.C}, []int{o.C})
}

func keyModForward[F Float](k, a, ka, out []F, N, C int) {
	parallelFor(N, pieces(N, C), func(_, lo, hi int) {
		for r := lo; r < hi; r++ {
			kr, ar, or := k[r*C:(r+1)*C], a[r*C:(r+1)*C], out[r*C:(r+1)*C]
			for c, m := range ka {
				or[c] = kr[c] * (1 + (ar[c]-1)*m)
			}
		}
	})
}

// keyModBackOp: (k, a, ka, g) -> packed [gk (N*C) | ga (N*C) | gka (C)].
type keyModBackOp struct {
	opBase
	fwd keyModOp
	buf *outBuf
}

func (o keyModBackOp) Arity() int    { return 4 }
func (o keyModBackOp) Type() hm.Type { return hm.NewFnType(matT, matT, vecT, matT, vecT) }
func (o keyModBackOp) InferShape(...G.DimSizer) (tensor.Shape, error) {
	return tensor.Shape{2*o.fwd.N*o.fwd.C + o.fwd.C}, nil
}
func (o keyModBackOp) Do(in ...G.Value) (G.Value, error) {
	N, C := o.fwd.N, o.fwd.C
	n := N * C
	out := o.buf.get(dtypeOf(in[0]), false, 2*n+C)
	switch d := out.Data().(type) {
	case []float32:
		keyModBackward(f32(in[0]), f32(in[1]), f32(in[2]), f32(in[3]), d[:n], d[n:2*n], d[2*n:], N, C)
	case []float64:
		keyModBackward(f64(in[0]), f64(in[1]), f64(in[2]), f64(in[3]), d[:n], d[n:2*n], d[2*n:], N, C)
	}
	return out, nil
}
func (o keyModBackOp) String() string        { return "KeyModBack" + o.fwd.String()[6:] }
func (o keyModBackOp) WriteHash(h hash.Hash) { writeHash(h, o) }
func (o keyModBackOp) Hashcode() uint32      { return hashcode(o) }

func keyModBackward[F Float](k, a, ka, g, gk, ga, gka []F, N, C int) {
	np := pieces(N, C)
	part := make([]float64, np*C)
	parallelFor(N, np, func(p, lo, hi int) {
		pp := part[p*C : (p+1)*C]
		for r := lo; r < hi; r++ {
			o := r * C
			for c, m := range ka {
				gi, ki, ai := g[o+c], k[o+c], a[o+c]
				gk[o+c] = gi * (1 + (ai-1)*m)
				ga[o+c] = gi * ki * m
				pp[c] += float64(gi) * float64(ki) * (float64(ai) - 1)
			}
		}
	})
	sumParts(part, np, C, 1, 0, gka)
}

func (o kappaAlphaOp) outBuffer() *outBuf     { return o.buf }
func (o kappaAlphaBackOp) outBuffer() *outBuf { return o.buf }
func (o keyModOp) outBuffer() *outBuf         { return o.buf }
func (o keyModBackOp) outBuffer() *outBuf     { return o.buf }
