"""RWKV-7 "Goose" (x070) reference in PyTorch, written from the equations in
/work/shared/NEXT-ARCH.md (§1.0, §1.3, §3); no code copied from other projects.

Parameters live in a plain dict keyed by the RWKV-LM state_dict names, with RWKV-LM shapes
(C = n_embd, H = C / N heads of N = head_size channels, F = dim_ffn = 4C, Dw/Da/Dv/Dg the
LoRA ranks), in the order RWKV-LM's modules register them (`param_shapes`):

    emb.weight [V,C]
    blocks.l.ln1.{weight,bias} [C]   blocks.l.ln2.{weight,bias} [C]   blocks.0.ln0.{weight,bias} [C]
    blocks.l.att.x_{r,w,k,v,a,g} [1,1,C]
    blocks.l.att.w1 [C,Dw]  w2 [Dw,C]  w0 [1,1,C]      (decay LoRA, used as x @ w1)
    blocks.l.att.a1 [C,Da]  a2 [Da,C]  a0 [1,1,C]      (in-context learning rate)
    blocks.l.att.v1 [C,Dv]  v2 [Dv,C]  v0 [1,1,C]      (value residual; unused in layer 0, optional there)
    blocks.l.att.g1 [C,Dg]  g2 [Dg,C]                  (gate)
    blocks.l.att.k_k [1,1,C]  k_a [1,1,C]  r_k [H,N]
    blocks.l.att.{receptance,key,value,output}.weight [C,C]
    blocks.l.att.ln_x.{weight,bias} [C]                (GroupNorm(H, C, eps 64e-5))
    blocks.l.ffn.x_k [1,1,C]  ffn.key.weight [F,C]  ffn.value.weight [C,F]
    ln_out.{weight,bias} [C]   head.weight [V,C]

Linears are y = x @ W.T without bias; LoRA matrices are used as x @ w1 @ w2. LayerNorm eps 1e-5.

Recurrent state: a list with one dict per layer:
    att_x  [B,C]      ln1 output of the previous token (token shift of TimeMix)
    wkv    [B,H,N,N]  WKV-7 state per head, rows = value index i, columns = key index j
    ffn_x  [B,C]      ln2 output of the previous token (token shift of ChannelMix)
v_first (layer 0's value, per token) is not state: the RNN recomputes it every token.

WKV-7, per head, with d_t = exp(-e^-0.5 * sigmoid(w~_t)) in (0.5452, 1):
    sa_t = S_{t-1} a_t ;  S_t = S_{t-1} diag(d_t) + sa_t b_t^T + v_t k_t^T ;  y_t = S_t r_t
with a = -kappa_hat, b = kappa_hat * iclr (RWKV-LM's `RWKV7_CLAMPW(r, w, k, v, -kk, kk*a)`).
Three implementations:
    wkv7_seq      plain loop, autograd differentiates through it: the truth of the goldens.
    WKV7          autograd.Function: the same loop forward, a hand-written backward in either
                  RWKV-LM's "backstepping" form (states rebuilt by dividing by d, reloaded every
                  16 steps) or the recompute form (state stored every 16 steps, the chunk's
                  states recomputed forward). Gradients for r, w~ (raw), k, v, a, b and the
                  initial state.
    wkv7_chunked  the chunked matrix form (chunks of 16, triangular solve), autograd through it:
                  the fastest CPU WKV-7 we have in PyTorch (bench_torch7.py).
"""
import math

import torch
import torch.nn.functional as F

from rwkv_common import (LN_EPS, L2WrapV7 as L2Wrap, empty_state, heads as _heads,  # noqa: F401
                         layer_norm, linear, ln_by_hand, loss_with, lr_cosine as lr_at, n_layer_of,
                         orthogonal as _orthogonal, run_rnn, shift)

GN_EPS = 64e-5
NORM_EPS = 1e-12
HEAD_SIZE = 64
W_SCALE = -math.exp(-0.5)  # d = exp(W_SCALE * sigmoid(w~)); RWKV-LM's -0.6065306597
CHUNK = 16
STATE_KEYS = ("att_x", "wkv", "ffn_x")


# ----------------------------------------------------------------------------- names, shapes


def lora_ranks(n_embd, rule="lm7"):
    """(Dw, Da, Dv, Dg) for width C.

    rule "lm7": current RWKV-LM v7 train_temp, max(32, int(round(k*sqrt(C)/32)*32)) with
        k = 2.5, 2.5, 1.7, 5.0 (Python round: half to even, so C=1024 gives Dw = 64).
    rule "released": the older rule the released checkpoints were trained with, k = 1.8, 1.8,
        1.3 for Dw, Da, Dv and Dg = max(32, int(round(0.6*C**0.8/32)*32)).
    """
    C = n_embd

    def r(x):
        return max(32, int(round(x / 32) * 32))

    if rule == "lm7":
        return r(2.5 * C ** 0.5), r(2.5 * C ** 0.5), r(1.7 * C ** 0.5), r(5 * C ** 0.5)
    if rule == "released":
        return r(1.8 * C ** 0.5), r(1.8 * C ** 0.5), r(1.3 * C ** 0.5), r(0.6 * C ** 0.8)
    raise ValueError(f"lora_ranks: unknown rule {rule!r}; use 'lm7' or 'released'")


def param_shapes(n_layer, n_embd, vocab, head_size=HEAD_SIZE, dim_ffn=None, ranks=None,
                 layer0_v=True):
    """Ordered {name: shape} in RWKV-LM state_dict order (module registration order:
    Block registers ln1, ln2, then ln0 in layer 0, then att, ffn; RWKV_Tmix_x070 registers
    x_r..x_g, w1, w2, w0, a1, a2, a0, v1, v2, v0, g1, g2, k_k, k_a, r_k, then the Linears and
    ln_x). layer0_v=False leaves out layer 0's unused v1/v2/v0 (as FLA-converted files do)."""
    C, V = n_embd, vocab
    assert C % head_size == 0, f"n_embd {C} is not a multiple of head_size {head_size}"
    H, N = C // head_size, head_size
    Fd = 4 * C if dim_ffn is None else dim_ffn
    Dw, Da, Dv, Dg = lora_ranks(C) if ranks is None else ranks
    s = {"emb.weight": (V, C)}
    for i in range(n_layer):
        p = f"blocks.{i}."
        s[p + "ln1.weight"] = (C,)
        s[p + "ln1.bias"] = (C,)
        s[p + "ln2.weight"] = (C,)
        s[p + "ln2.bias"] = (C,)
        if i == 0:
            s[p + "ln0.weight"] = (C,)
            s[p + "ln0.bias"] = (C,)
        a = p + "att."
        for m in "rwkvag":
            s[a + "x_" + m] = (1, 1, C)
        s[a + "w1"], s[a + "w2"], s[a + "w0"] = (C, Dw), (Dw, C), (1, 1, C)
        s[a + "a1"], s[a + "a2"], s[a + "a0"] = (C, Da), (Da, C), (1, 1, C)
        if i > 0 or layer0_v:
            s[a + "v1"], s[a + "v2"], s[a + "v0"] = (C, Dv), (Dv, C), (1, 1, C)
        s[a + "g1"], s[a + "g2"] = (C, Dg), (Dg, C)
        s[a + "k_k"], s[a + "k_a"], s[a + "r_k"] = (1, 1, C), (1, 1, C), (H, N)
        for m in ("receptance", "key", "value", "output"):
            s[a + m + ".weight"] = (C, C)
        s[a + "ln_x.weight"] = (C,)
        s[a + "ln_x.bias"] = (C,)
        s[p + "ffn.x_k"] = (1, 1, C)
        s[p + "ffn.key.weight"] = (Fd, C)
        s[p + "ffn.value.weight"] = (C, Fd)
    s["ln_out.weight"] = (C,)
    s["ln_out.bias"] = (C,)
    s["head.weight"] = (V, C)
    return s


def dims_of(params):
    """(n_layer, C, H, N) from the tensors."""
    H, N = params["blocks.0.att.r_k"].shape
    return n_layer_of(params), params["emb.weight"].shape[1], H, N


# ----------------------------------------------------------------------------- init


def init_params(n_layer, n_embd, vocab, head_size=HEAD_SIZE, ranks=None, layer0_v=True, seed=0,
                dtype=torch.float32):
    """The effective RWKV-LM x070 init: the module __init__ for everything that is not a 2-D
    `.weight`, then generate_init_weight's redraw of the 2-D `.weight` tensors (NEXT-ARCH §1.3
    table). Computed in float64, cast to dtype. n_layer == 1 takes r0 = 0 (RWKV-LM divides by
    n_layer - 1)."""
    g = torch.Generator().manual_seed(seed)
    C, L, V = n_embd, n_layer, vocab
    N = head_size
    f64 = torch.float64
    n = torch.arange(C, dtype=f64)
    ddd = n / C
    linear = n / (C - 1) - 0.5
    z = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)
    zigzag = z * z.abs()
    p = {}
    for name, shape in param_shapes(L, C, V, head_size, None, ranks, layer0_v).items():
        parts = name.split(".")
        l = int(parts[1]) if parts[0] == "blocks" else -1
        r0 = l / (L - 1) if L > 1 else 0.0
        r1 = 1.0 - l / L
        last = name.split(".", 2)[-1] if l >= 0 else name
        vec = lambda x: x.reshape(1, 1, C)
        if name == "emb.weight":
            t = (torch.rand(shape, generator=g, dtype=f64) * 2 - 1) * 1e-4
        elif name == "head.weight":
            t = _orthogonal(shape, 0.5 * math.sqrt(V / C) if V > C else 0.5, g)
        elif last.endswith(("ln0.weight", "ln1.weight", "ln2.weight")) or name == "ln_out.weight":
            t = torch.ones(shape, dtype=f64)
        elif name.endswith(".bias"):
            t = torch.zeros(shape, dtype=f64)
        elif last == "att.ln_x.weight":
            t = torch.full(shape, ((1 + l) / L) ** 0.7, dtype=f64)
        elif last.startswith("att.x_"):
            e = {"r": 0.2, "w": 0.9, "k": 0.7, "v": 0.7, "a": 0.9, "g": 0.2}[last[-1]]
            t = vec(1 - ddd ** (e * r1))
        elif last == "ffn.x_k":
            t = vec(1 - ddd ** (r1 ** 4))
        elif last == "att.w0":
            www = -6 + 6 * (n / (C - 1)) ** (1 + r0 ** 0.3)
            t = vec(www + 0.5 + 2.5 * zigzag)
        elif last == "att.a0":
            t = vec(-0.19 + 0.3 * zigzag + 0.4 * linear)
        elif last == "att.v0":
            t = vec(0.73 - 0.4 * linear)
        elif last == "att.k_k":
            t = vec(0.71 - 0.1 * linear)
        elif last == "att.k_a":
            t = torch.full(shape, 1.02, dtype=f64)
        elif last == "att.r_k":
            t = torch.full(shape, -0.04, dtype=f64)
        elif last in ("att.w1", "att.a1", "att.v1", "att.g1"):
            t = torch.zeros(shape, dtype=f64)
        elif last in ("att.w2", "att.a2", "att.v2", "att.g2"):
            rr, cc = shape  # ortho_init(x, 0.1): gain sqrt(r/c) if r > c else 1, times 0.1
            t = _orthogonal(shape, (math.sqrt(rr / cc) if rr > cc else 1.0) * 0.1, g)
        elif last in ("att.output.weight", "ffn.value.weight"):
            t = torch.zeros(shape, dtype=f64)
        elif last == "att.key.weight":
            t = _orthogonal(shape, 0.1, g)
        elif name.endswith(".weight"):  # receptance, value, ffn.key: orthogonal gain 1
            t = _orthogonal(shape, 1.0, g)
        else:
            raise AssertionError(f"init_params: no rule for {name}")
        assert tuple(t.shape) == tuple(shape), name
        p[name] = t
    return {k: v.to(dtype) for k, v in p.items()}


# ----------------------------------------------------------------------------- WKV-7


def decay(w):
    """d = exp(-e^-0.5 * sigmoid(w~)), elementwise."""
    return torch.exp(W_SCALE * torch.sigmoid(w))


def wkv7_seq(r, w, k, v, a, b, s0):
    """WKV-7 as a plain loop; autograd differentiates through it.

    r, w (raw w~), k, v, a, b: [B,T,C]; s0: [B,H,N,N] ([value][key]).
    Returns y [B,T,C] and the state after the last step [B,H,N,N].
    """
    B, T, C = r.shape
    H = s0.shape[1]
    r, w, k, v, a, b = (_heads(x, H) for x in (r, w, k, v, a, b))
    S = s0
    ys = []
    for t in range(T):
        d = decay(w[:, t])
        sa = torch.einsum("bhij,bhj->bhi", S, a[:, t])
        S = S * d.unsqueeze(2) + sa.unsqueeze(3) * b[:, t].unsqueeze(2) + \
            v[:, t].unsqueeze(3) * k[:, t].unsqueeze(2)
        ys.append(torch.einsum("bhij,bhj->bhi", S, r[:, t]))
    return torch.stack(ys, 1).reshape(B, T, C), S


def _step(S, d, a, b, k, v):
    sa = torch.einsum("bhij,bhj->bhi", S, a)
    return S * d.unsqueeze(2) + sa.unsqueeze(3) * b.unsqueeze(2) + v.unsqueeze(3) * k.unsqueeze(2), sa


class WKV7(torch.autograd.Function):
    """WKV-7 with a hand-written backward.

    forward(r, w, k, v, a, b, s0, mode) -> y [B,T,C], sT [B,H,N,N]; mode "backstep" or
    "recompute" selects the backward; the forward is the wkv7_seq loop (bitwise the same).

    Saved: the inputs, the state at every chunk boundary (t = 0, 16, 32, ... and T) and sa
    for every step. Backward, t = T-1 .. 0, with dS the gradient wrt S_t (starts as dsT):
        dS += dy_t r_t^T ;  dr_t = S_t^T dy_t
        S_{t-1}: backstep: (S_t - v_t k_t^T - sa_t b_t^T) diag(1/d_t), reloaded at chunk
                 boundaries; recompute: the chunk's states recomputed from its first state
        dd = sum_i dS * S_{t-1} ;  dk = dS^T v ;  dv = dS k ;  db = dS^T sa ;  dsa = dS b
        da = S_{t-1}^T dsa ;  dS <- dS diag(d_t) + dsa a_t^T ;  dw~ = dd * d * W_SCALE * s(1-s)
    After t = 0, dS is the gradient of the initial state.
    """

    @staticmethod
    def forward(ctx, r, w, k, v, a, b, s0, mode="recompute"):
        assert mode in ("backstep", "recompute"), mode
        B, T, C = r.shape
        H = s0.shape[1]
        N = C // H
        rh, wh, kh, vh, ah, bh = (_heads(x, H) for x in (r, w, k, v, a, b))
        y = torch.empty(B, T, H, N, dtype=r.dtype)
        sas = torch.empty(B, T, H, N, dtype=r.dtype)
        snaps = [s0]
        S = s0
        for t in range(T):
            S, sas[:, t] = _step(S, decay(wh[:, t]), ah[:, t], bh[:, t], kh[:, t], vh[:, t])
            y[:, t] = torch.einsum("bhij,bhj->bhi", S, rh[:, t])
            if (t + 1) % CHUNK == 0 or t == T - 1:
                snaps.append(S)
        ctx.mode = mode
        ctx.save_for_backward(r, w, k, v, a, b, sas, torch.stack(snaps))
        return y.view(B, T, C), S.clone()

    @staticmethod
    def backward(ctx, gy, gsT):
        r, w, k, v, a, b, sas, snaps = ctx.saved_tensors
        B, T, C = r.shape
        H = snaps.shape[2]
        N = C // H
        rh, wh, kh, vh, ah, bh = (_heads(x, H) for x in (r, w, k, v, a, b))
        gy = torch.zeros(B, T, H, N, dtype=r.dtype) if gy is None else _heads(gy, H)
        dS = torch.zeros_like(snaps[0]) if gsT is None else gsT.clone()
        out = [torch.empty(B, T, H, N, dtype=r.dtype) for _ in range(6)]
        dr, dw, dk, dv, da, db = out
        chunk_states = None
        for t in range(T - 1, -1, -1):
            c = t // CHUNK
            d = decay(wh[:, t])
            if ctx.mode == "recompute":
                if chunk_states is None or t % CHUNK == CHUNK - 1 or t == T - 1:
                    # states S_{c*16 - 1} .. S_{t}: recompute the chunk from its first state
                    S = snaps[c]
                    chunk_states = [S]
                    for u in range(c * CHUNK, t + 1):
                        S, _ = _step(S, decay(wh[:, u]), ah[:, u], bh[:, u], kh[:, u], vh[:, u])
                        chunk_states.append(S)
                St = chunk_states[t - c * CHUNK + 1]
                Sp = chunk_states[t - c * CHUNK]
            else:
                if t == T - 1 or t % CHUNK == CHUNK - 1:
                    St = snaps[c + 1]  # the state after step t, stored by the forward
                else:
                    St = Sp
                Sp = (St - vh[:, t].unsqueeze(3) * kh[:, t].unsqueeze(2)
                      - sas[:, t].unsqueeze(3) * bh[:, t].unsqueeze(2)) / d.unsqueeze(2)
            sa = sas[:, t]
            dS = dS + gy[:, t].unsqueeze(3) * rh[:, t].unsqueeze(2)
            dr[:, t] = torch.einsum("bhij,bhi->bhj", St, gy[:, t])
            dd = (dS * Sp).sum(2)
            dk[:, t] = torch.einsum("bhij,bhi->bhj", dS, vh[:, t])
            dv[:, t] = torch.einsum("bhij,bhj->bhi", dS, kh[:, t])
            db[:, t] = torch.einsum("bhij,bhi->bhj", dS, sa)
            dsa = torch.einsum("bhij,bhj->bhi", dS, bh[:, t])
            da[:, t] = torch.einsum("bhij,bhi->bhj", Sp, dsa)
            dS = dS * d.unsqueeze(2) + dsa.unsqueeze(3) * ah[:, t].unsqueeze(2)
            s = torch.sigmoid(wh[:, t])
            dw[:, t] = dd * d * W_SCALE * s * (1 - s)
        return tuple(x.view(B, T, C) for x in out) + (dS, None)


def wkv7_fast(r, w, k, v, a, b, s0, mode="recompute"):
    return WKV7.apply(r, w, k, v, a, b, s0, mode)


def wkv7_chunked(r, w, k, v, a, b, s0, chunk=CHUNK):
    """Chunked matrix form (NEXT-ARCH §1.3), autograd through it. Within a chunk, with
    P_t = prod_{s<=t} d_s (from exp of the cumulative sum of log d = W_SCALE * sigmoid(w~)):
        q^_t = r_t P_t, a^_t = a_t P_{t-1}, k~_t = k_t / P_t, b~_t = b_t / P_t
        U = (I - A_ab)^-1 (A_ak V + A^ S0^T)       (rows: sa_t; A_ab, A_ak strictly lower)
        Y = A_qk V + A_qb U + Q^ S0^T              (A_qk, A_qb lower incl. the diagonal)
        S_end = S0 diag(P_L) + V^T (K~ P_L) + U^T (B~ P_L)
    T need not be a multiple of chunk (the last chunk is shorter)."""
    B, T, C = r.shape
    H = s0.shape[1]
    perm = lambda x: _heads(x, H).permute(0, 2, 1, 3)  # [B,H,T,N]
    r, w, k, v, a, b = (perm(x) for x in (r, w, k, v, a, b))
    S = s0
    ys = []
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        L = c1 - c0
        logd = W_SCALE * torch.sigmoid(w[:, :, c0:c1])
        cum = torch.cumsum(logd, 2)  # log P_t
        P = torch.exp(cum)
        Pprev = torch.exp(cum - logd)
        Pinv = torch.exp(-cum)
        qh = r[:, :, c0:c1] * P
        ah = a[:, :, c0:c1] * Pprev
        kt = k[:, :, c0:c1] * Pinv
        bt = b[:, :, c0:c1] * Pinv
        vv = v[:, :, c0:c1]
        strict = torch.ones(L, L, dtype=torch.bool).tril(-1)
        incl = torch.ones(L, L, dtype=torch.bool).tril()
        Aab = (ah @ bt.transpose(-1, -2)).masked_fill(~strict, 0)
        Aak = (ah @ kt.transpose(-1, -2)).masked_fill(~strict, 0)
        Aqk = (qh @ kt.transpose(-1, -2)).masked_fill(~incl, 0)
        Aqb = (qh @ bt.transpose(-1, -2)).masked_fill(~incl, 0)
        eye = torch.eye(L, dtype=r.dtype)
        rhs = Aak @ vv + ah @ S.transpose(-1, -2)
        U = torch.linalg.solve_triangular(eye - Aab, rhs, upper=False, unitriangular=True)
        ys.append(Aqk @ vv + Aqb @ U + qh @ S.transpose(-1, -2))
        PL = P[:, :, -1:]  # [B,H,1,N]
        S = S * PL + vv.transpose(-1, -2) @ (kt * PL) + U.transpose(-1, -2) @ (bt * PL)
    y = torch.cat(ys, 2).permute(0, 2, 1, 3).reshape(B, T, C)
    return y, S


WKV_FNS = {
    "seq": wkv7_seq,
    "fast": lambda *x: wkv7_fast(*x, mode="recompute"),
    "backstep": lambda *x: wkv7_fast(*x, mode="backstep"),
    "chunked": wkv7_chunked,
}


# ----------------------------------------------------------------------------- model


def time_mix(p, i, x, st, v_first, wkv):
    at = f"blocks.{i}.att."
    B, T, C = x.shape
    H, N = p[at + "r_k"].shape
    xx = shift(x, st["att_x"]) - x
    xr, xw, xk, xv, xa, xg = (x + xx * p[at + "x_" + m] for m in "rwkvag")
    r = linear(xr, p[at + "receptance.weight"])
    w = p[at + "w0"] + torch.tanh(xw @ p[at + "w1"]) @ p[at + "w2"]
    k = linear(xk, p[at + "key.weight"])
    v = linear(xv, p[at + "value.weight"])
    if i == 0:
        v_first = v
    else:
        v = v + (v_first - v) * torch.sigmoid(p[at + "v0"] + (xv @ p[at + "v1"]) @ p[at + "v2"])
    a = torch.sigmoid(p[at + "a0"] + (xa @ p[at + "a1"]) @ p[at + "a2"])
    g = torch.sigmoid(xg @ p[at + "g1"]) @ p[at + "g2"]
    kk = F.normalize((k * p[at + "k_k"]).view(B, T, H, N), dim=-1, p=2.0, eps=NORM_EPS).view(B, T, C)
    k = k * (1 + (a - 1) * p[at + "k_a"])
    y, s = wkv(r, w, k, v, -kk, kk * a, st["wkv"])
    y = F.group_norm(y.reshape(B * T, C), H, p[at + "ln_x.weight"], p[at + "ln_x.bias"],
                     GN_EPS).view(B, T, C)
    bonus = (r.view(B, T, H, N) * k.view(B, T, H, N) * p[at + "r_k"]).sum(-1, keepdim=True)
    y = y + (bonus * v.view(B, T, H, N)).view(B, T, C)
    out = linear(y * g, p[at + "output.weight"])
    return out, v_first, {"att_x": x[:, -1], "wkv": s}


def channel_mix(p, i, x, st):
    f = f"blocks.{i}.ffn."
    xx = shift(x, st["ffn_x"]) - x
    k = torch.relu(linear(x + xx * p[f + "x_k"], p[f + "key.weight"])) ** 2
    return linear(k, p[f + "value.weight"]), {"ffn_x": x[:, -1]}


def forward(p, tokens, state=None, wkv="seq"):
    """Parallel form. tokens: (B,T) int64; state: list of per-layer dicts or None (zeros).

    Returns logits (B,T,V) and the final state (list of per-layer dicts).
    """
    wkv_fn = WKV_FNS[wkv]
    L, C, H, N = dims_of(p)
    B, T = tokens.shape
    if state is None:
        state = empty_state(L, B, C, N, p["emb.weight"].dtype)
    x = layer_norm(F.embedding(tokens, p["emb.weight"]), p, "blocks.0.ln0")
    v_first = None
    new_state = []
    for i in range(L):
        dx, v_first, sa = time_mix(p, i, layer_norm(x, p, f"blocks.{i}.ln1"), state[i], v_first, wkv_fn)
        x = x + dx
        dx, sf = channel_mix(p, i, layer_norm(x, p, f"blocks.{i}.ln2"), state[i])
        x = x + dx
        new_state.append({**sa, **sf})
    logits = linear(layer_norm(x, p, "ln_out"), p["head.weight"])
    return logits, new_state


def forward_rnn_step(p, token, state):
    """RNN form, one token. token: (B,) int64; state: list of per-layer dicts (required).

    Written independently of forward(): per-token vectors, explicit head loop for the
    normalisations, one WKV-7 step. Returns logits (B,V) and the new state.
    """
    L, C, H, N = dims_of(p)

    ln = ln_by_hand
    x = ln(p["emb.weight"][token], p["blocks.0.ln0.weight"], p["blocks.0.ln0.bias"], LN_EPS)
    B = x.shape[0]
    v_first = None
    new_state = []
    for i in range(L):
        at, f, s = f"blocks.{i}.att.", f"blocks.{i}.ffn.", state[i]
        q = lambda n: p[at + n].reshape(-1)
        xa = ln(x, p[f"blocks.{i}.ln1.weight"], p[f"blocks.{i}.ln1.bias"], LN_EPS)
        prev = s["att_x"]
        mix = lambda m: xa + (prev - xa) * q("x_" + m)
        r = mix("r") @ p[at + "receptance.weight"].t()
        k = mix("k") @ p[at + "key.weight"].t()
        v = mix("v") @ p[at + "value.weight"].t()
        d = torch.exp(W_SCALE / (1 + torch.exp(-(q("w0") + torch.tanh(mix("w") @ p[at + "w1"]) @ p[at + "w2"]))))
        if i == 0:
            v_first = v
        else:
            gate = 1 / (1 + torch.exp(-(q("v0") + (mix("v") @ p[at + "v1"]) @ p[at + "v2"])))
            v = v * (1 - gate) + v_first * gate
        iclr = 1 / (1 + torch.exp(-(q("a0") + (mix("a") @ p[at + "a1"]) @ p[at + "a2"])))
        g = (1 / (1 + torch.exp(-(mix("g") @ p[at + "g1"])))) @ p[at + "g2"]
        kk = (k * q("k_k")).view(B, H, N)
        kk = kk / torch.clamp(torch.sqrt((kk * kk).sum(-1, keepdim=True)), min=NORM_EPS)
        k = (k * (1 + (iclr - 1) * q("k_a"))).view(B, H, N)
        vh, rh, ah = v.view(B, H, N), r.view(B, H, N), iclr.view(B, H, N)
        S = s["wkv"]
        dh = d.view(B, H, N)
        out_heads = []
        new_S = []
        for h in range(H):
            Sh = S[:, h]  # [B, N(value), N(key)]
            sa = (Sh * -kk[:, h].unsqueeze(1)).sum(-1)  # S (-kappa^)
            Sh = Sh * dh[:, h].unsqueeze(1) + sa.unsqueeze(2) * (kk[:, h] * ah[:, h]).unsqueeze(1) + \
                vh[:, h].unsqueeze(2) * k[:, h].unsqueeze(1)
            new_S.append(Sh)
            o = (Sh * rh[:, h].unsqueeze(1)).sum(-1)
            o = ln(o, p[at + "ln_x.weight"][h * N:(h + 1) * N], p[at + "ln_x.bias"][h * N:(h + 1) * N],
                   GN_EPS)
            o = o + (rh[:, h] * k[:, h] * p[at + "r_k"][h]).sum(-1, keepdim=True) * vh[:, h]
            out_heads.append(o)
        x = x + (torch.cat(out_heads, -1) * g) @ p[at + "output.weight"].t()

        xf = ln(x, p[f"blocks.{i}.ln2.weight"], p[f"blocks.{i}.ln2.bias"], LN_EPS)
        kf = xf + (s["ffn_x"] - xf) * p[f + "x_k"].reshape(-1)
        x = x + torch.relu(kf @ p[f + "key.weight"].t()) ** 2 @ p[f + "value.weight"].t()
        new_state.append({"att_x": xa, "wkv": torch.stack(new_S, 1), "ffn_x": xf})
    logits = ln(x, p["ln_out.weight"], p["ln_out.bias"], LN_EPS) @ p["head.weight"].t()
    return logits, new_state


def forward_rnn(p, tokens, state=None):
    """Runs forward_rnn_step over T; returns logits (B,T,V) and the final state."""
    return run_rnn(forward_rnn_step, dims_of, p, tokens, state)


# ----------------------------------------------------------------------------- loss


def loss_fn(logits, targets, l2wrap=False):
    """Mean cross-entropy over all B*T positions; logits (B,T,V), targets (B,T) int64; l2wrap
    applies L2Wrap."""
    return loss_with(L2Wrap, logits, targets, l2wrap)


# ----------------------------------------------------------------------------- optimiser


def param_group(name, tensor):
    """RWKV-LM v7 configure_optimizers: (lr scale, weight decay applies)."""
    if "att.w0" in name:
        return 2.0, False
    return 1.0, tensor.squeeze().dim() >= 2 and ".weight" in name
