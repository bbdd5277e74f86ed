"""RWKV-5.2 "Eagle" (x052) and RWKV-6 "Finch" (x060) reference in PyTorch, written from the
equations in /work/shared/NEXT-ARCH.md (§1.0-1.2, §3; RWKV-LM RWKV-v5/src/model.py
RWKV_Tmix_x052/x060, RWKV_CMix_x052/x060, RWKV.generate_init_weight, configure_optimizers);
no code copied from other projects.

Parameters live in a plain dict keyed by the RWKV-LM state_dict names, with RWKV-LM shapes
(C = n_embd = dim_att, H = C / N heads of N = head_size channels, F = dim_ffn, M and W the x060
token-shift and decay LoRA widths), in the order RWKV-LM's modules register them
(`param_shapes`, which must equal arch/x060.go's layoutX052/layoutX060):

    emb.weight [V,C]
    blocks.l.ln1.{weight,bias} [C]   blocks.l.ln2.{weight,bias} [C]   blocks.0.ln0.{weight,bias} [C]
  x052:
    blocks.l.att.time_mix_{k,v,r,g} [1,1,C]
    blocks.l.att.time_decay [H,N]  time_faaaa [H,N]
    blocks.l.att.{receptance,key,value,output,gate}.weight [C,C]   att.ln_x.{weight,bias} [C]
    blocks.l.ffn.time_mix_{k,r} [1,1,C]
  x060:
    blocks.l.att.time_maa_{x,w,k,v,r,g} [1,1,C]
    blocks.l.att.time_maa_w1 [C,5M]  time_maa_w2 [5,M,C]   (mixes in the order w, k, v, r, g)
    blocks.l.att.time_decay [1,1,C]  time_decay_w1 [C,W]  time_decay_w2 [W,C]  time_faaaa [H,N]
    blocks.l.att.{receptance,key,value,output,gate}.weight [C,C]   att.ln_x.{weight,bias} [C]
    blocks.l.ffn.time_maa_{k,r} [1,1,C]
  both:
    blocks.l.ffn.key.weight [F,C]  ffn.receptance.weight [C,C]  ffn.value.weight [C,F]
    ln_out.{weight,bias} [C]   head.weight [V,C]

Linears are y = x @ W.T without bias; LoRA matrices are used as x @ w1 (no transpose).
LayerNorm eps 1e-5. GroupNorm ln_x: x052 `ln_x(y / 8)` with eps 1e-5 (RWKV-LM's literal form),
x060 `ln_x(y)` with eps 1e-5 * 8^2 = 64e-5.

Recurrent state: a list with one dict per layer:
    att_x  [B,C]      ln1 output of the previous token (token shift of TimeMix)
    wkv    [B,H,N,N]  WKV state per head, rows = value index i, columns = key index j
    ffn_x  [B,C]      ln2 output of the previous token (token shift of ChannelMix)

WKV-5/6 per head (d = exp(-exp(w~)); x052: w~ = time_decay, constant in t; x060: w~_t per token):
    y_t[i] = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S_{t-1}[i][j])
    S_t[i][j] = d_t[j] S_{t-1}[i][j] + k_t[j] v_t[i]
(the state is read before the token's decay is applied). Three implementations:
    wkv6_seq      plain loop, autograd differentiates through it: the truth of the goldens.
    WKV6          autograd.Function: the same loop forward, a hand-written backward (the state
                  stored every 16 steps and each chunk's states recomputed forward; no division
                  by d). Gradients for r, k, v, w~ (raw; summed over B and T when w~ is [H,N]),
                  u and the initial state.
    wkv6_chunked  chunked form (chunks of 16): pairwise decays exp(cum_{t-1} - cum_s) <= 1, so
                  nothing overflows however strong the decay; autograd through it
                  (bench_torch6.py).
"""
import math

import torch
import torch.nn.functional as F

from rwkv_common import (LN_EPS, L2Wrap, empty_state, heads as _heads, layer_norm, linear,  # noqa: F401
                         ln_by_hand, loss_with, lr_cosine as lr_at, n_layer_of,
                         orthogonal as _orthogonal, run_rnn, shift)

HEAD_SIZE_DIVISOR = 8
GN_EPS_X052 = 1e-5  # on y / 8
GN_EPS_X060 = 1e-5 * HEAD_SIZE_DIVISOR ** 2  # on y
HEAD_SIZE = 64
D_MIX_LORA = 32
D_DECAY_LORA = 64
CHUNK = 16
STATE_KEYS = ("att_x", "wkv", "ffn_x")
ARCHS = ("x052", "x060")


# ----------------------------------------------------------------------------- names, shapes


def default_ffn(n_embd):
    """RWKV-LM v5/v6 dim_ffn: int(3.5 C) // 32 * 32."""
    return int(n_embd * 3.5) // 32 * 32


def param_shapes(arch, n_layer, n_embd, vocab, head_size=HEAD_SIZE, dim_ffn=None,
                 d_mix=D_MIX_LORA, d_decay=D_DECAY_LORA):
    """Ordered {name: shape} in RWKV-LM state_dict order (module registration order: Block
    registers ln1, ln2, then ln0 in layer 0, then att, then ffn; inside att the Parameters in
    __init__ order, then the Linears receptance, key, value, output, gate and ln_x; inside
    ffn its time_mix/time_maa, then key, receptance, value)."""
    assert arch in ARCHS, f"param_shapes: unknown arch {arch!r}; use x052 or x060"
    C, V = n_embd, vocab
    assert C % head_size == 0, f"n_embd {C} is not a multiple of head_size {head_size}"
    H, N = C // head_size, head_size
    Fd = default_ffn(C) if dim_ffn is None else dim_ffn
    s = {"emb.weight": (V, C)}
    for i in range(n_layer):
        p = f"blocks.{i}."
        for ln in ("ln1", "ln2") + (("ln0",) if i == 0 else ()):
            s[p + ln + ".weight"] = (C,)
            s[p + ln + ".bias"] = (C,)
        a = p + "att."
        if arch == "x052":
            for m in "kvrg":
                s[a + "time_mix_" + m] = (1, 1, C)
            s[a + "time_decay"] = (H, N)
        else:
            for m in "xwkvrg":
                s[a + "time_maa_" + m] = (1, 1, C)
            s[a + "time_maa_w1"] = (C, 5 * d_mix)
            s[a + "time_maa_w2"] = (5, d_mix, C)
            s[a + "time_decay"] = (1, 1, C)
            s[a + "time_decay_w1"] = (C, d_decay)
            s[a + "time_decay_w2"] = (d_decay, C)
        s[a + "time_faaaa"] = (H, N)
        for m in ("receptance", "key", "value", "output", "gate"):
            s[a + m + ".weight"] = (C, C)
        s[a + "ln_x.weight"] = (C,)
        s[a + "ln_x.bias"] = (C,)
        f = p + "ffn."
        mix = "time_mix_" if arch == "x052" else "time_maa_"
        s[f + mix + "k"] = (1, 1, C)
        s[f + mix + "r"] = (1, 1, C)
        s[f + "key.weight"] = (Fd, C)
        s[f + "receptance.weight"] = (C, C)
        s[f + "value.weight"] = (C, Fd)
    s["ln_out.weight"] = (C,)
    s["ln_out.bias"] = (C,)
    s["head.weight"] = (V, C)
    return s


def arch_of(params):
    """x060 when the tensors have time_maa_x, x052 when they have a 2-D time_decay."""
    if "blocks.0.att.time_maa_x" in params:
        return "x060"
    if params["blocks.0.att.time_decay"].dim() == 2:
        return "x052"
    raise ValueError("arch_of: neither x060 (att.time_maa_x) nor x052 (2-D att.time_decay)")


def dims_of(params):
    """(n_layer, C, H, N) from the tensors."""
    H, N = params["blocks.0.att.time_faaaa"].shape
    return n_layer_of(params), params["emb.weight"].shape[1], H, N


# ----------------------------------------------------------------------------- init


def init_params(arch, n_layer, n_embd, vocab, head_size=HEAD_SIZE, dim_ffn=None,
                d_mix=D_MIX_LORA, d_decay=D_DECAY_LORA, seed=0, dtype=torch.float32):
    """The effective RWKV-LM v5/v6 init: the module __init__ values for everything
    generate_init_weight keeps (names with "ln_", ".ln" or "time_"; ln_x.weight set to
    ((1+l)/L)^0.7), then its redraw of the other 2-D `.weight` tensors: emb U(+-1e-4); head
    orthogonal 0.5*sqrt(V/C) (0.5 when V <= C); att.output, ffn.value, ffn.receptance zero;
    att.key, att.gate orthogonal 0.1; att.receptance, att.value, ffn.key orthogonal 1.
    Computed in float64, cast to dtype. n_layer == 1 takes r0 = 0 (RWKV-LM divides by
    n_layer - 1). x060's ffn.time_maa_k/r are 1 - ddd^(r1^3) (RWKV-LM @ b3b4d056, NEXT-ARCH
    §1.2; earlier revisions used ddd^r1)."""
    g = torch.Generator().manual_seed(seed)
    C, L, V = n_embd, n_layer, vocab
    f64 = torch.float64
    n = torch.arange(C, dtype=f64)
    ddd = (n / C).reshape(1, 1, C)
    decay_speed = lambda r0: -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r0)
    faaaa = lambda r0: r0 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1
    p = {}
    for name, shape in param_shapes(arch, L, C, V, head_size, dim_ffn, d_mix, d_decay).items():
        parts = name.split(".")
        l = int(parts[1]) if parts[0] == "blocks" else -1
        r0 = l / (L - 1) if L > 1 else 0.0
        r1 = 1.0 - l / L
        last = name.split(".", 2)[-1] if l >= 0 else name
        if name == "emb.weight":
            t = (torch.rand(shape, generator=g, dtype=f64) * 2 - 1) * 1e-4
        elif name == "head.weight":
            t = _orthogonal(shape, 0.5 * math.sqrt(V / C) if V > C else 0.5, g)
        elif last == "att.ln_x.weight":
            t = torch.full(shape, ((1 + l) / L) ** 0.7, dtype=f64)
        elif name.endswith(".bias"):
            t = torch.zeros(shape, dtype=f64)
        elif last.endswith(("ln0.weight", "ln1.weight", "ln2.weight")) or name == "ln_out.weight":
            t = torch.ones(shape, dtype=f64)
        # x052
        elif last in ("att.time_mix_k", "ffn.time_mix_k", "ffn.time_mix_r"):
            t = ddd ** r1
        elif last == "att.time_mix_v":
            t = ddd ** r1 + 0.3 * r0
        elif last in ("att.time_mix_r", "att.time_mix_g"):
            t = ddd ** (0.5 * r1)
        # x060
        elif last in ("att.time_maa_x", "att.time_maa_w", "att.time_maa_k"):
            t = 1 - ddd ** r1
        elif last == "att.time_maa_v":
            t = 1 - (ddd ** r1 + 0.3 * r0)
        elif last in ("att.time_maa_r", "att.time_maa_g"):
            t = 1 - ddd ** (0.5 * r1)
        elif last in ("ffn.time_maa_k", "ffn.time_maa_r"):
            t = 1 - ddd ** (r1 ** 3)
        elif last in ("att.time_maa_w1", "att.time_decay_w1"):
            t = torch.zeros(shape, dtype=f64)
        elif last in ("att.time_maa_w2", "att.time_decay_w2"):
            t = (torch.rand(shape, generator=g, dtype=f64) * 2 - 1) * 0.01
        # both
        elif last == "att.time_decay":
            t = decay_speed(r0).reshape(shape)
        elif last == "att.time_faaaa":
            t = faaaa(r0).reshape(shape)
        elif last in ("att.output.weight", "ffn.value.weight", "ffn.receptance.weight"):
            t = torch.zeros(shape, dtype=f64)
        elif last in ("att.key.weight", "att.gate.weight"):
            t = _orthogonal(shape, 0.1, g)
        elif last in ("att.receptance.weight", "att.value.weight", "ffn.key.weight"):
            t = _orthogonal(shape, 1.0, g)
        else:
            raise AssertionError(f"init_params: no rule for {name}")
        t = t.reshape(shape)
        p[name] = t
    return {k: v.to(dtype) for k, v in p.items()}


# ----------------------------------------------------------------------------- WKV-5/6


def _decay_seq(w, B, T, H, N):
    """w~ as [B,T,H,N]: x060's per-token [B,T,C] or x052's constant [H,N] broadcast."""
    if w.dim() == 2:
        return w.view(1, 1, H, N).expand(B, T, H, N)
    return _heads(w, H)


def decay(w):
    """d = exp(-exp(w~)), elementwise."""
    return torch.exp(-torch.exp(w))


def wkv6_seq(r, k, v, w, u, s0):
    """WKV-5/6 as a plain loop; autograd differentiates through it.

    r, k, v: [B,T,C]; w: raw w~, [B,T,C] (x060) or [H,N] (x052, the same for every token);
    u: [H,N]; s0: [B,H,N,N] ([value][key]). Returns y [B,T,C] and the final state [B,H,N,N].
    """
    B, T, C = r.shape
    H = s0.shape[1]
    N = C // H
    rh, kh, vh = (_heads(x, H) for x in (r, k, v))
    d = decay(_decay_seq(w, B, T, H, N))
    S = s0
    ys = []
    for t in range(T):
        kv = vh[:, t].unsqueeze(3) * kh[:, t].unsqueeze(2)  # [B,H,i,j]
        ys.append(torch.einsum("bhij,bhj->bhi", S + u.unsqueeze(1) * kv, rh[:, t]))
        S = S * d[:, t].unsqueeze(2) + kv
    return torch.stack(ys, 1).reshape(B, T, C), S


class WKV6(torch.autograd.Function):
    """WKV-5/6 with a hand-written backward (NEXT-ARCH §1.2 formulas, state [value][key]).

    forward(r, k, v, w, u, s0) -> y [B,T,C], sT [B,H,N,N]; the same loop as wkv6_seq.
    Saved: the inputs and the state at every chunk boundary (t = 0, 16, 32, ...). Backward,
    t = T-1 .. 0, with D the gradient wrt S_t (starts as dsT) and S_{t-1} recomputed from the
    chunk's first state (never by dividing by d, which has no lower bound):
        dr_t[j] = sum_i (u_j k_t[j] v_t[i] + S_{t-1}[i][j]) g_t[i]
        du[j]  += r_t[j] k_t[j] sum_i v_t[i] g_t[i]
        dk_t[j] = sum_i (u_j r_t[j] g_t[i] + D[i][j]) v_t[i]
        dv_t[i] = sum_j (u_j r_t[j] g_t[i] + D[i][j]) k_t[j]
        dw~_t[j] = sum_i D[i][j] S_{t-1}[i][j] * d_t[j] * (-exp(w~_t[j]))
        D <- D diag(d_t) + g_t r_t^T
    After t = 0, D is the gradient of the initial state. For a [H,N] w~ (x052) dw~ is summed
    over B and T.
    """

    @staticmethod
    def forward(ctx, r, k, v, w, u, s0):
        B, T, C = r.shape
        H = s0.shape[1]
        N = C // H
        rh, kh, vh = (_heads(x, H) for x in (r, k, v))
        d = decay(_decay_seq(w, B, T, H, N))
        y = torch.empty(B, T, H, N, dtype=r.dtype)
        snaps = []
        S = s0
        for t in range(T):
            if t % CHUNK == 0:
                snaps.append(S)
            kv = vh[:, t].unsqueeze(3) * kh[:, t].unsqueeze(2)
            y[:, t] = torch.einsum("bhij,bhj->bhi", S + u.unsqueeze(1) * kv, rh[:, t])
            S = S * d[:, t].unsqueeze(2) + kv
        ctx.save_for_backward(r, k, v, w, u, torch.stack(snaps) if snaps else s0.unsqueeze(0))
        return y.view(B, T, C), S.clone()

    @staticmethod
    def backward(ctx, gy, gsT):
        r, k, v, w, u, snaps = ctx.saved_tensors
        B, T, C = r.shape
        H = snaps.shape[2]
        N = C // H
        rh, kh, vh = (_heads(x, H) for x in (r, k, v))
        wt = _decay_seq(w, B, T, H, N)
        d = decay(wt)
        gy = torch.zeros(B, T, H, N, dtype=r.dtype) if gy is None else _heads(gy, H)
        D = torch.zeros_like(snaps[0]) if gsT is None else gsT.clone()
        dr, dk, dv, dw = (torch.empty(B, T, H, N, dtype=r.dtype) for _ in range(4))
        du = torch.zeros_like(u)
        states = None
        for t in range(T - 1, -1, -1):
            c = t // CHUNK
            if states is None or t % CHUNK == CHUNK - 1:
                S = snaps[c]
                states = [S]  # states[m] = S_{c*16 + m - 1}
                for s in range(c * CHUNK, t):
                    S = S * d[:, s].unsqueeze(2) + vh[:, s].unsqueeze(3) * kh[:, s].unsqueeze(2)
                    states.append(S)
            Sp = states[t - c * CHUNK]
            g, rt, kt, vt = gy[:, t], rh[:, t], kh[:, t], vh[:, t]
            vg = (vt * g).sum(-1, keepdim=True)  # [B,H,1]
            dr[:, t] = u * kt * vg + torch.einsum("bhij,bhi->bhj", Sp, g)
            du = du + (rt * kt * vg).sum(0)
            dk[:, t] = u * rt * vg + torch.einsum("bhij,bhi->bhj", D, vt)
            dv[:, t] = g * (u * rt * kt).sum(-1, keepdim=True) + torch.einsum("bhij,bhj->bhi", D, kt)
            dw[:, t] = (D * Sp).sum(2) * d[:, t] * -torch.exp(wt[:, t])
            D = D * d[:, t].unsqueeze(2) + g.unsqueeze(3) * rt.unsqueeze(2)
        gw = dw.sum((0, 1)) if w.dim() == 2 else dw.view(B, T, C)
        return dr.view(B, T, C), dk.view(B, T, C), dv.view(B, T, C), gw, du, D


def wkv6_fast(r, k, v, w, u, s0):
    return WKV6.apply(r, k, v, w, u, s0)


def wkv6_chunked(r, k, v, w, u, s0, chunk=CHUNK):
    """Chunked form, autograd through it. Within a chunk of length L, with lw = -exp(w~) (log d)
    and cum_t = sum_{s<=t} lw_s (cum_{-1} = 0):
        y_t[i] = sum_{s<t} v_s[i] sum_j r_t[j] k_s[j] e^(cum_{t-1}[j] - cum_s[j])
               + v_t[i] sum_j r_t[j] u_j k_t[j] + sum_j S0[i][j] r_t[j] e^(cum_{t-1}[j])
        S_end[i][j] = S0[i][j] e^(cum_{L-1}[j]) + sum_s v_s[i] k_s[j] e^(cum_{L-1}[j] - cum_s[j])
    Every exponent is <= 0. T need not be a multiple of chunk."""
    B, T, C = r.shape
    H = s0.shape[1]
    N = C // H
    perm = lambda x: x.permute(0, 2, 1, 3)  # [B,T,H,N] -> [B,H,T,N]
    rh, kh, vh = (perm(_heads(x, H)) for x in (r, k, v))
    lw = perm(-torch.exp(_decay_seq(w, B, T, H, N)))
    uu = u.view(1, H, 1, N)
    S = s0
    ys = []
    for c0 in range(0, T, chunk):
        c1 = min(T, c0 + chunk)
        L = c1 - c0
        cum = torch.cumsum(lw[:, :, c0:c1], 2)  # [B,H,L,N]
        prev = cum - lw[:, :, c0:c1]  # cum_{t-1}
        rc, kc, vc = rh[:, :, c0:c1], kh[:, :, c0:c1], vh[:, :, c0:c1]
        strict = torch.ones(L, L, dtype=torch.bool).tril(-1)
        expo = (prev.unsqueeze(3) - cum.unsqueeze(2)).masked_fill(~strict.view(1, 1, L, L, 1), -math.inf)
        A = (rc.unsqueeze(3) * kc.unsqueeze(2) * torch.exp(expo)).sum(-1)  # [B,H,t,s]
        A = A + torch.diag_embed((rc * uu * kc).sum(-1))
        y = A @ vc + (rc * torch.exp(prev)) @ S.transpose(-1, -2)
        ys.append(y)
        last = cum[:, :, -1:]  # [B,H,1,N]
        S = S * torch.exp(last) + vc.transpose(-1, -2) @ (kc * torch.exp(last - cum))
    y = torch.cat(ys, 2).permute(0, 2, 1, 3).reshape(B, T, C)
    return y, S


WKV_FNS = {"seq": wkv6_seq, "fast": wkv6_fast, "chunked": wkv6_chunked}


# ----------------------------------------------------------------------------- model


def time_mix(arch, p, i, x, st, wkv):
    at = f"blocks.{i}.att."
    B, T, C = x.shape
    H, N = p[at + "time_faaaa"].shape
    xp = shift(x, st["att_x"])
    if arch == "x052":
        mix = lambda m: x * p[at + "time_mix_" + m] + xp * (1 - p[at + "time_mix_" + m])
        xr, xk, xv, xg = mix("r"), mix("k"), mix("v"), mix("g")
        w = p[at + "time_decay"]
    else:
        xx = xp - x
        xxx = x + xx * p[at + "time_maa_x"]
        M = p[at + "time_maa_w2"].shape[1]
        lo = torch.tanh(xxx @ p[at + "time_maa_w1"]).view(B * T, 5, M).transpose(0, 1)
        mw, mk, mv, mr, mg = torch.bmm(lo, p[at + "time_maa_w2"]).view(5, B, T, C).unbind(0)
        xw = x + xx * (p[at + "time_maa_w"] + mw)
        xk = x + xx * (p[at + "time_maa_k"] + mk)
        xv = x + xx * (p[at + "time_maa_v"] + mv)
        xr = x + xx * (p[at + "time_maa_r"] + mr)
        xg = x + xx * (p[at + "time_maa_g"] + mg)
        w = p[at + "time_decay"] + torch.tanh(xw @ p[at + "time_decay_w1"]) @ p[at + "time_decay_w2"]
    r = linear(xr, p[at + "receptance.weight"])
    k = linear(xk, p[at + "key.weight"])
    v = linear(xv, p[at + "value.weight"])
    g = F.silu(linear(xg, p[at + "gate.weight"]))
    y, s = wkv(r, k, v, w, p[at + "time_faaaa"], st["wkv"])
    y = y.reshape(B * T, C)
    if arch == "x052":
        y = F.group_norm(y / HEAD_SIZE_DIVISOR, H, p[at + "ln_x.weight"], p[at + "ln_x.bias"], GN_EPS_X052)
    else:
        y = F.group_norm(y, H, p[at + "ln_x.weight"], p[at + "ln_x.bias"], GN_EPS_X060)
    out = linear(y.view(B, T, C) * g, p[at + "output.weight"])
    return out, {"att_x": x[:, -1], "wkv": s}


def channel_mix(arch, p, i, x, st):
    f = f"blocks.{i}.ffn."
    xp = shift(x, st["ffn_x"])
    if arch == "x052":
        xk = x * p[f + "time_mix_k"] + xp * (1 - p[f + "time_mix_k"])
        xr = x * p[f + "time_mix_r"] + xp * (1 - p[f + "time_mix_r"])
    else:
        xk = x + (xp - x) * p[f + "time_maa_k"]
        xr = x + (xp - x) * p[f + "time_maa_r"]
    kv = linear(torch.relu(linear(xk, p[f + "key.weight"])) ** 2, p[f + "value.weight"])
    return torch.sigmoid(linear(xr, p[f + "receptance.weight"])) * kv, {"ffn_x": x[:, -1]}


def forward(p, tokens, state=None, wkv="seq"):
    """Parallel form. tokens: (B,T) int64; state: list of per-layer dicts or None (zeros).

    Returns logits (B,T,V) and the final state (list of per-layer dicts).
    """
    arch = arch_of(p)
    wkv_fn = WKV_FNS[wkv]
    L, C, H, N = dims_of(p)
    B, T = tokens.shape
    if state is None:
        state = empty_state(L, B, C, N, p["emb.weight"].dtype)
    x = layer_norm(F.embedding(tokens, p["emb.weight"]), p, "blocks.0.ln0")
    new_state = []
    for i in range(L):
        dx, sa = time_mix(arch, p, i, layer_norm(x, p, f"blocks.{i}.ln1"), state[i], wkv_fn)
        x = x + dx
        dx, sf = channel_mix(arch, p, i, layer_norm(x, p, f"blocks.{i}.ln2"), state[i])
        x = x + dx
        new_state.append({**sa, **sf})
    logits = linear(layer_norm(x, p, "ln_out"), p["head.weight"])
    return logits, new_state


def forward_rnn_step(p, token, state):
    """RNN form, one token. token: (B,) int64; state: list of per-layer dicts (required).

    Written independently of forward(): per-token vectors, LayerNorm and GroupNorm by hand,
    an explicit head loop for the WKV step (x052's GroupNorm with its eps scaled: 64e-5 on y,
    which equals 1e-5 on y/8). Returns logits (B,V) and the new state.
    """
    arch = arch_of(p)
    L, C, H, N = dims_of(p)

    ln = ln_by_hand
    sig = lambda z: 1 / (1 + torch.exp(-z))
    x = ln(p["emb.weight"][token], p["blocks.0.ln0.weight"], p["blocks.0.ln0.bias"], LN_EPS)
    B = x.shape[0]
    new_state = []
    for i in range(L):
        at, f, s = f"blocks.{i}.att.", f"blocks.{i}.ffn.", state[i]
        q = lambda n: p[at + n].reshape(-1)
        xa = ln(x, p[f"blocks.{i}.ln1.weight"], p[f"blocks.{i}.ln1.bias"], LN_EPS)
        prev = s["att_x"]
        if arch == "x052":
            mix = lambda m: xa * q("time_mix_" + m) + prev * (1 - q("time_mix_" + m))
            xr, xk, xv, xg = mix("r"), mix("k"), mix("v"), mix("g")
            wt = p[at + "time_decay"].reshape(1, C).expand(B, C)
        else:
            dlt = prev - xa
            M = p[at + "time_maa_w2"].shape[1]
            lo = torch.tanh((xa + dlt * q("time_maa_x")) @ p[at + "time_maa_w1"])
            m5 = [lo[:, j * M:(j + 1) * M] @ p[at + "time_maa_w2"][j] for j in range(5)]
            xw, xk, xv, xr, xg = (xa + dlt * (q("time_maa_" + n) + m) for n, m in zip("wkvrg", m5))
            wt = q("time_decay") + torch.tanh(xw @ p[at + "time_decay_w1"]) @ p[at + "time_decay_w2"]
        r = (xr @ p[at + "receptance.weight"].t()).view(B, H, N)
        k = (xk @ p[at + "key.weight"].t()).view(B, H, N)
        v = (xv @ p[at + "value.weight"].t()).view(B, H, N)
        z = xg @ p[at + "gate.weight"].t()
        g = z * sig(z)
        d = torch.exp(-torch.exp(wt)).view(B, H, N)
        u = p[at + "time_faaaa"]
        out_heads, new_S = [], []
        for h in range(H):
            Sh = s["wkv"][:, h]  # [B, N(value), N(key)]
            kv = v[:, h].unsqueeze(2) * k[:, h].unsqueeze(1)
            o = ((Sh + u[h] * kv) * r[:, h].unsqueeze(1)).sum(-1)
            new_S.append(Sh * d[:, h].unsqueeze(1) + kv)
            o = ln(o, p[at + "ln_x.weight"][h * N:(h + 1) * N], p[at + "ln_x.bias"][h * N:(h + 1) * N],
                   GN_EPS_X060)
            out_heads.append(o)
        x = x + (torch.cat(out_heads, -1) * g) @ p[at + "output.weight"].t()

        xf = ln(x, p[f"blocks.{i}.ln2.weight"], p[f"blocks.{i}.ln2.bias"], LN_EPS)
        pf = s["ffn_x"]
        if arch == "x052":
            mk, mr = p[f + "time_mix_k"].reshape(-1), p[f + "time_mix_r"].reshape(-1)
            fk, fr = xf * mk + pf * (1 - mk), xf * mr + pf * (1 - mr)
        else:
            fk = xf + (pf - xf) * p[f + "time_maa_k"].reshape(-1)
            fr = xf + (pf - xf) * p[f + "time_maa_r"].reshape(-1)
        kk = torch.relu(fk @ p[f + "key.weight"].t()) ** 2
        x = x + sig(fr @ p[f + "receptance.weight"].t()) * (kk @ p[f + "value.weight"].t())
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


def param_group(name, tensor, layerwise_lr=True, weight_decay=True):
    """RWKV-LM v5 configure_optimizers (my_pile_stage != 2): (lr scale, weight decay applies).
    With layerwise_lr: names with _w1/_w2 -> 1x; time_mix/time_maa -> 1x; time_decay or
    time_daaaa -> 2x; time_faaaa -> 1x; time_first -> 3x; none of these decays. Otherwise
    (or without layerwise_lr) a tensor with squeeze().dim() >= 2 decays (when weight_decay > 0),
    everything else is 1x without decay."""
    if layerwise_lr:
        if "_w1" in name or "_w2" in name:
            return 1.0, False
        if "time_mix" in name or "time_maa" in name:
            return 1.0, False
        if "time_decay" in name or "time_daaaa" in name:
            return 2.0, False
        if "time_faaaa" in name:
            return 1.0, False
        if "time_first" in name:
            return 3.0, False
    if tensor.squeeze().dim() >= 2 and weight_decay:
        return 1.0, True
    return 1.0, False
