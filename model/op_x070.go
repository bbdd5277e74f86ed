package model

// RWKV-7 (x070) time mix from this package's ops, all activations (N = B·T, C) rows, C = H·S
// (head size S, 64 in released models), parameters in their graph shapes (RWKV-LM's [1,1,C]
// vectors as (C), att.r_k as (H,S)). Matmuls and WKV7 are not in these files; the LoRA matrices
// w1, a1, v1, g1 are stored [C, D] and w2, a2, v2, g2 [D, C], i.e. (in, out), so they need a
// product x@W (Linear computes x·Wᵀ for PyTorch's (out, in) Linear weights).
//
//	xr, xw, xk, xv, xa, xg := ShiftLerp(x, prev, {x_r, x_w, x_k, x_v, x_a, x_g}, B, T)
//	r  = xr·Wrᵀ ;  k = xk·Wkᵀ ;  v = xv·Wvᵀ                          (Linear)
//	w̃  = BiasAdd((Activate(xw@w1, nil, ActTanh))@w2, w0)            (WKV7 takes w̃ raw)
//	v  = ValueResidual(v, vFirst, v0, (xv@v1)@v2)                   (layers > 0; layer 0: vFirst = v)
//	a  = Activate((xa@a1)@a2, a0, ActSigmoid)
//	g  = Activate(xg@g1, nil, ActSigmoid)@g2
//	α  = KappaAlpha(k, k_k, H)        (-κ̂, κ̂ = normalize(k⊙k_k) per head, eps 1e-12)
//	β  = KappaBeta(α, a)              (κ̂⊙a)
//	k' = KeyMod(k, a, k_a)            (k⊙(1+(a-1)⊙k_a))
//	o, sT = WKV7(r, w̃, k', v, α, β, s0, B, T, H)
//	o  = GroupNorm(o, ln_x.weight, ln_x.bias, H, GroupNormEpsX070)
//	o  = Bonus(o, r, k', v, r_k, H)
//	out = Linear(Hadamard(o, g), Wo)
//
// Each op has one output and a packed backward split by extract views (op.go); every op keeps
// its output in an outBuf and declares everything its backward reads as an input, so
// shareBuffers applies unchanged (TestX070ChainSharedBuffers).
//
// Kernels are Go, parallel over rows (parallelFor/pieces), float64 accumulation. The exp-bound
// float32 ones (Activate tanh/sigmoid forward, ValueResidual both ways) also have AVX2 C
// versions (op_x070_avx2.go), used when the CPU has AVX2+FMA and RWKV_KERNELS != go.
