package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"

	"github.com/rwkv-go/rwkv-go/internal/blas"
)

// InitLoRA sets a LoRA pair as PyTorch's nn.Linear-style init that RWKV-PEFT and HF peft use:
// A (r,in) ~ kaiming_uniform(a=√5), that is U(-bound, bound) with
// bound = sqrt(6/((1+a²)·in)) = 1/sqrt(in), and B (out,r) = 0, so the adapted layer starts
// equal to the base one.
func InitLoRA[F Float](a, b []F, r, in int, rng *rand.Rand) error {
	if r < 1 || in < 1 || len(a) != r*in || len(b)%r != 0 {
		return fmt.Errorf("model: InitLoRA: A has %d elements for r=%d in=%d, B %d (want r·in and out·r)", len(a), r, in, len(b))
	}
	const a2 = 5.0 // a = √5
	bound := math.Sqrt(6 / ((1 + a2) * float64(in)))
	for i := range a {
		a[i] = F((2*rng.Float64() - 1) * bound)
	}
	clear(b)
	return nil
}

// LowRankSVD is the rank-k truncated SVD M ≈ U diag(S) Vᵀ of a rows×cols matrix: U (rows,k),
// S (k) descending, V (cols,k), all row-major.
type LowRankSVD struct {
	Rows, Cols, K int
	U, S, V       []float64
}

// RandomizedSVD approximates the top k singular triplets of the row-major rows×cols matrix m
// as torch.svd_lowrank(m, q=k, niter) does (Halko, Martinsson & Tropp 2009, algorithms 4.4 and
// 5.1, without oversampling): an orthonormal basis Q of m·Ω for a Gaussian Ω (cols,k), refined
// by niter power iterations Q ← orth(m·orth(mᵀQ)), then the exact SVD of the small k×cols
// matrix Qᵀm (gonum), U = Q·Ũ. Products run through BLAS, orthonormalisation through ThinQR.
// Like torch it works on mᵀ when rows < cols, so the basis is found in the smaller space. The
// Gaussian draws differ from torch's: the result matches svd_lowrank's to the accuracy of the
// approximation, not bit for bit.
func RandomizedSVD(m []float64, rows, cols, k, niter int, rng *rand.Rand) (LowRankSVD, error) {
	if rows < 1 || cols < 1 || len(m) != rows*cols {
		return LowRankSVD{}, fmt.Errorf("model: RandomizedSVD of %d×%d needs %d elements, got %d", rows, cols, rows*cols, len(m))
	}
	if k < 1 || k > min(rows, cols) || niter < 0 {
		return LowRankSVD{}, fmt.Errorf("model: RandomizedSVD rank %d of a %d×%d matrix must be in [1, %d] and niter %d >= 0", k, rows, cols, min(rows, cols), niter)
	}
	if rows < cols { // factor mᵀ = V S Uᵀ and swap
		t := transpose(m, rows, cols)
		r, err := RandomizedSVD(t, cols, rows, k, niter, rng)
		if err != nil {
			return LowRankSVD{}, err
		}
		return LowRankSVD{Rows: rows, Cols: cols, K: k, U: r.V, S: r.S, V: r.U}, nil
	}
	omega := make([]float64, cols*k)
	for i := range omega {
		omega[i] = rng.NormFloat64()
	}
	q := make([]float64, rows*k)
	blas.Gemm(false, false, rows, k, cols, 1, m, cols, omega, k, 0, q, k) // m·Ω
	if _, err := blas.ThinQR(rows, k, q); err != nil {
		return LowRankSVD{}, err
	}
	z := make([]float64, cols*k)
	for range niter {
		blas.Gemm(true, false, cols, k, rows, 1, m, cols, q, k, 0, z, k) // mᵀQ
		if _, err := blas.ThinQR(cols, k, z); err != nil {
			return LowRankSVD{}, err
		}
		blas.Gemm(false, false, rows, k, cols, 1, m, cols, z, k, 0, q, k) // m·Z
		if _, err := blas.ThinQR(rows, k, q); err != nil {
			return LowRankSVD{}, err
		}
	}
	small := make([]float64, k*cols) // Qᵀm (k,cols)
	blas.Gemm(true, false, k, cols, rows, 1, q, k, m, cols, 0, small, cols)
	var svd mat.SVD
	if !svd.Factorize(mat.NewDense(k, cols, small), mat.SVDThin) {
		return LowRankSVD{}, fmt.Errorf("model: RandomizedSVD: the SVD of the %d×%d projection did not converge", k, cols)
	}
	var ut, vt mat.Dense
	svd.UTo(&ut) // (k,k)
	svd.VTo(&vt) // (cols,k)
	out := LowRankSVD{Rows: rows, Cols: cols, K: k, S: svd.Values(nil), U: make([]float64, rows*k), V: make([]float64, cols*k)}
	uSmall := ut.RawMatrix()
	blas.Gemm(false, false, rows, k, k, 1, q, k, uSmall.Data, uSmall.Stride, 0, out.U, k)
	vr := vt.RawMatrix()
	for i := range cols {
		copy(out.V[i*k:(i+1)*k], vr.Data[i*vr.Stride:i*vr.Stride+k])
	}
	return out, nil
}

func transpose(m []float64, rows, cols int) []float64 {
	t := make([]float64, len(m))
	for i := range rows {
		for j := range cols {
			t[j*rows+i] = m[i*cols+j]
		}
	}
	return t
}

// PiSSAResult is a PiSSA initialisation of a Linear weight W (out,in): A (r,in), B (out,r) and
// the residual WRes = W − B·A (out,in) that replaces W as the frozen base, with S the top r
// singular values found.
type PiSSAResult struct {
	A, B, WRes, S []float64
}

// PiSSA initialises an adapter from the principal singular directions of w (out,in, row-major),
// as RWKV-PEFT's pissa_init: U, S, V = svd_lowrank(W, r, niter); A = diag(√S)·Vᵀ,
// B = U·diag(√S), W_res = W − B·A. The layer then computes W_res·x + B·(A·x): scale 1, no
// dropout. Keep A and B as they are now (the init file): merging needs them (MergePiSSA).
// The arithmetic is float64; W_res + B·A reproduces W to rounding.
func PiSSA(w []float64, out, in, r, niter int, rng *rand.Rand) (PiSSAResult, error) {
	svd, err := RandomizedSVD(w, out, in, r, niter, rng)
	if err != nil {
		return PiSSAResult{}, fmt.Errorf("model: PiSSA of a %d×%d weight: %w", out, in, err)
	}
	res := PiSSAResult{A: make([]float64, r*in), B: make([]float64, out*r), S: svd.S}
	for j := range r {
		sq := math.Sqrt(svd.S[j])
		for c := range in { // A[j,c] = √S_j · V[c,j]
			res.A[j*in+c] = sq * svd.V[c*r+j]
		}
		for o := range out { // B[o,j] = U[o,j] · √S_j
			res.B[o*r+j] = svd.U[o*r+j] * sq
		}
	}
	res.WRes = append([]float64(nil), w...)
	blas.Gemm(false, false, out, in, r, -1, res.B, r, res.A, in, 1, res.WRes, in)
	return res, nil
}

// MergeLoRA folds an adapter into its base weight in place: W (out,in) ← W + s·B·A with
// B (out,r), A (r,in), s = α/r (RWKV-PEFT merge_lora.py). Accumulate in float64 and round once
// when the export is float32 or narrower.
func MergeLoRA[F Float](w, b, a []F, out, in, r int, scale float64) error {
	if len(w) != out*in || len(b) != out*r || len(a) != r*in {
		return fmt.Errorf("model: MergeLoRA: W %d, B %d, A %d elements do not fit out=%d in=%d r=%d", len(w), len(b), len(a), out, in, r)
	}
	blas.Gemm(false, false, out, in, r, F(scale), b, r, a, in, 1, w, in)
	return nil
}

// MergePiSSA folds a trained PiSSA adapter into the original weight in place:
// W (out,in) ← (W − B0·A0) + B·A, with B0, A0 the saved initialisation (the init file's
// init_lora_B / init_lora_A) and B, A the trained pair (RWKV-PEFT merge_pissa.py). w is the
// original base weight, not W_res; pass W_res with b0, a0 = nil to only add B·A.
func MergePiSSA[F Float](w, b0, a0, b, a []F, out, in, r int) error {
	if b0 != nil || a0 != nil {
		if err := MergeLoRA(w, b0, a0, out, in, r, -1); err != nil {
			return fmt.Errorf("model: MergePiSSA init: %w", err)
		}
	}
	if err := MergeLoRA(w, b, a, out, in, r, 1); err != nil {
		return fmt.Errorf("model: MergePiSSA: %w", err)
	}
	return nil
}
