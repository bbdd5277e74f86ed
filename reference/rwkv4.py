"""RWKV-4 reference in PyTorch, written from the equations in /work/shared/REFERENCE.md.

Parameters live in a plain dict keyed by the RWKV-LM state_dict names, with RWKV-LM shapes:

    emb.weight [V,C]            blocks.0.ln0.{weight,bias} [C]
    blocks.N.ln1.{weight,bias} [C]         blocks.N.ln2.{weight,bias} [C]
    blocks.N.att.time_decay [C] (raw, w = -exp(time_decay))   blocks.N.att.time_first [C]
    blocks.N.att.time_mix_{k,v,r} [1,1,C]
    blocks.N.att.{key,value,receptance,output}.weight [C,C]
    blocks.N.ffn.time_mix_{k,r} [1,1,C]
    blocks.N.ffn.key.weight [F,C]  blocks.N.ffn.receptance.weight [C,C]  blocks.N.ffn.value.weight [C,F]
    ln_out.{weight,bias} [C]    head.weight [V,C]

Linears are y = x @ W.T without bias; LayerNorm eps is 1e-5.

Recurrent state: a list with one dict per layer, each holding five (B,C) tensors:
    att_x  LN1 output of the previous token (token shift of TimeMix)
    aa, bb numerator / denominator of the WKV, scaled by exp(-pp)
    pp     the log-scale of aa and bb (-1e38 = empty)
    ffn_x  LN2 output of the previous token (token shift of ChannelMix)

WKV comes in two flavours:
    wkv_seq   a plain loop of the stable recurrence; autograd differentiates through it.
              This is the truth the goldens are computed with.
    WKV       torch.autograd.Function, same loop in the forward and a hand-derived reverse
              sweep in the backward (vectorised over (B,C), sequential over T). It takes and
              returns the recurrent state and gives gradients for the initial state.
"""
import math

import torch
import torch.nn.functional as F

from rwkv_common import LN_EPS, L2Wrap, layer_norm, linear, loss_with, n_layer_of, shift  # noqa: F401

PP_EMPTY = -1e38
STATE_KEYS = ("att_x", "aa", "bb", "pp", "ffn_x")


# ----------------------------------------------------------------------------- names, shapes


def param_shapes(n_layer, n_embd, vocab, dim_ffn):
    """Ordered {name: shape} in RWKV-LM state_dict order."""
    C, F_, V = n_embd, dim_ffn, vocab
    s = {"emb.weight": (V, C)}
    for i in range(n_layer):
        p = f"blocks.{i}."
        if i == 0:
            s[p + "ln0.weight"] = (C,)
            s[p + "ln0.bias"] = (C,)
        s[p + "ln1.weight"] = (C,)
        s[p + "ln1.bias"] = (C,)
        s[p + "ln2.weight"] = (C,)
        s[p + "ln2.bias"] = (C,)
        s[p + "att.time_decay"] = (C,)
        s[p + "att.time_first"] = (C,)
        s[p + "att.time_mix_k"] = (1, 1, C)
        s[p + "att.time_mix_v"] = (1, 1, C)
        s[p + "att.time_mix_r"] = (1, 1, C)
        s[p + "att.key.weight"] = (C, C)
        s[p + "att.value.weight"] = (C, C)
        s[p + "att.receptance.weight"] = (C, C)
        s[p + "att.output.weight"] = (C, C)
        s[p + "ffn.time_mix_k"] = (1, 1, C)
        s[p + "ffn.time_mix_r"] = (1, 1, C)
        s[p + "ffn.key.weight"] = (F_, C)
        s[p + "ffn.receptance.weight"] = (C, C)
        s[p + "ffn.value.weight"] = (C, F_)
    s["ln_out.weight"] = (C,)
    s["ln_out.bias"] = (C,)
    s["head.weight"] = (V, C)
    return s


def empty_state(n_layer, B, C, dtype=torch.float64):
    """Default state: zeros, pp = -1e38."""
    st = []
    for _ in range(n_layer):
        st.append({
            "att_x": torch.zeros(B, C, dtype=dtype),
            "aa": torch.zeros(B, C, dtype=dtype),
            "bb": torch.zeros(B, C, dtype=dtype),
            "pp": torch.full((B, C), PP_EMPTY, dtype=dtype),
            "ffn_x": torch.zeros(B, C, dtype=dtype),
        })
    return st


# ----------------------------------------------------------------------------- WKV


def wkv_seq(w, u, k, v, aa=None, bb=None, pp=None):
    """Stable WKV recurrence, plain loop, autograd through it.

    w, u: (C) with w = -exp(time_decay) already applied; k, v: (B,T,C); aa, bb, pp: (B,C).
    Returns y (B,T,C) and the state (aa, bb, pp) after the last step.
    """
    B, T, C = k.shape
    if aa is None:
        aa = torch.zeros(B, C, dtype=k.dtype)
        bb = torch.zeros(B, C, dtype=k.dtype)
        pp = torch.full((B, C), PP_EMPTY, dtype=k.dtype)
    ys = []
    for t in range(T):
        kt, vt = k[:, t], v[:, t]
        ww = u + kt
        p = torch.maximum(pp, ww)
        e1 = torch.exp(pp - p)
        e2 = torch.exp(ww - p)
        ys.append((e1 * aa + e2 * vt) / (e1 * bb + e2))
        ww = w + pp
        p = torch.maximum(ww, kt)
        e1 = torch.exp(ww - p)
        e2 = torch.exp(kt - p)
        aa = e1 * aa + e2 * vt
        bb = e1 * bb + e2
        pp = p
    return torch.stack(ys, dim=1), aa, bb, pp


def wkv_naive(w, u, k, v, A0=None, B0=None):
    """O(T^2) exact formula (no stabilisation), for tests on small values.

    A0, B0: (B,C) the unscaled initial numerator and denominator (aa*exp(pp), bb*exp(pp)).
    Returns y (B,T,C) and the unscaled final (A, B).
    """
    Bn, T, C = k.shape
    if A0 is None:
        A0 = torch.zeros(Bn, C, dtype=k.dtype)
        B0 = torch.zeros(Bn, C, dtype=k.dtype)
    ys = []
    for t in range(T):
        num = A0 * torch.exp(t * w) + torch.exp(u + k[:, t]) * v[:, t]
        den = B0 * torch.exp(t * w) + torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp((t - 1 - i) * w + k[:, i])
            num = num + e * v[:, i]
            den = den + e
        ys.append(num / den)
    A = A0 * torch.exp(T * w)
    Bd = B0 * torch.exp(T * w)
    for i in range(T):
        e = torch.exp((T - 1 - i) * w + k[:, i])
        A = A + e * v[:, i]
        Bd = Bd + e
    return torch.stack(ys, dim=1), A, Bd


class WKV(torch.autograd.Function):
    """WKV with a hand-derived backward.

    forward(w (C), u (C), k (B,T,C), v (B,T,C), aa0, bb0, pp0 (B,C)) -> y (B,T,C), aa, bb, pp (B,C)

    The backward is the exact reverse-mode derivative of the stable recurrence as computed
    (including the branch taken by each max: ties go to the first argument, pp resp. w+pp),
    sweeping t = T-1..0 with the gradient of the carried (aa, bb, pp). It uses the states
    saved by the forward, (T+1) x 3 x (B,C).
    """

    @staticmethod
    def forward(ctx, w, u, k, v, aa0, bb0, pp0):
        B, T, C = k.shape
        aas = torch.empty(T + 1, B, C, dtype=k.dtype)
        bbs = torch.empty_like(aas)
        pps = torch.empty_like(aas)
        y = torch.empty_like(k)
        aa, bb, pp = aa0, bb0, pp0
        aas[0], bbs[0], pps[0] = aa, bb, pp
        for t in range(T):
            kt, vt = k[:, t], v[:, t]
            ww = u + kt
            p = torch.maximum(pp, ww)
            e1 = torch.exp(pp - p)
            e2 = torch.exp(ww - p)
            y[:, t] = (e1 * aa + e2 * vt) / (e1 * bb + e2)
            ww = w + pp
            p = torch.maximum(ww, kt)
            e1 = torch.exp(ww - p)
            e2 = torch.exp(kt - p)
            aa = e1 * aa + e2 * vt
            bb = e1 * bb + e2
            pp = p
            aas[t + 1], bbs[t + 1], pps[t + 1] = aa, bb, pp
        ctx.save_for_backward(w, u, k, v, y, aas, bbs, pps)
        return y, aa.clone(), bb.clone(), pp.clone()

    @staticmethod
    def backward(ctx, gy, gaa_out, gbb_out, gpp_out):
        w, u, k, v, y, aas, bbs, pps = ctx.saved_tensors
        B, T, C = k.shape
        z = torch.zeros(B, C, dtype=k.dtype)
        gy = z.new_zeros(B, T, C) if gy is None else gy
        gaa = z.clone() if gaa_out is None else gaa_out.clone()  # d/d state after step t
        gbb = z.clone() if gbb_out is None else gbb_out.clone()
        gpp = z.clone() if gpp_out is None else gpp_out.clone()
        gk = torch.zeros_like(k)
        gv = torch.zeros_like(v)
        gw = z.clone()
        gu = z.clone()
        for t in range(T - 1, -1, -1):
            aa, bb, pp = aas[t], bbs[t], pps[t]
            kt, vt, yt, gyt = k[:, t], v[:, t], y[:, t], gy[:, t]
            # state update: aa' = f1*aa + f2*v, bb' = f1*bb + f2, pp' = max(w+pp, k)
            ww2 = w + pp
            take_w = ww2 >= kt
            p2 = torch.where(take_w, ww2, kt)
            f1 = torch.exp(ww2 - p2)
            f2 = torch.exp(kt - p2)
            gf1 = (gaa * aa + gbb * bb) * f1  # d/d(ww2) through f1
            gf2 = (gaa * vt + gbb) * f2  # d/d(k) through f2
            gp2 = gpp - gf1 - gf2
            n_gaa = gaa * f1
            n_gbb = gbb * f1
            gvt = gaa * f2
            gww2 = gf1 + torch.where(take_w, gp2, z)
            gkt = gf2 + torch.where(take_w, z, gp2)
            gw += gww2
            n_gpp = gww2
            # output: y = (e1*aa + e2*v) / (e1*bb + e2), e1 = exp(pp-p), e2 = exp(u+k-p)
            ww = u + kt
            take_pp = pp >= ww
            p = torch.where(take_pp, pp, ww)
            e1 = torch.exp(pp - p)
            e2 = torch.exp(ww - p)
            den = e1 * bb + e2
            gnum = gyt / den
            gden = -gnum * yt
            ge1 = (gnum * aa + gden * bb) * e1  # d/d(pp) through e1
            ge2 = (gnum * vt + gden) * e2  # d/d(ww) through e2
            gp = -ge1 - ge2  # zero up to rounding: y does not depend on p
            n_gaa += gnum * e1
            n_gbb += gden * e1
            gvt += gnum * e2
            n_gpp += ge1 + torch.where(take_pp, gp, z)
            gww = ge2 + torch.where(take_pp, z, gp)
            gu += gww
            gkt += gww
            gk[:, t] = gkt
            gv[:, t] = gvt
            gaa, gbb, gpp = n_gaa, n_gbb, n_gpp
        return gw.sum(0), gu.sum(0), gk, gv, gaa, gbb, gpp


def wkv_fast(w, u, k, v, aa=None, bb=None, pp=None):
    B, T, C = k.shape
    if aa is None:
        aa = torch.zeros(B, C, dtype=k.dtype)
        bb = torch.zeros(B, C, dtype=k.dtype)
        pp = torch.full((B, C), PP_EMPTY, dtype=k.dtype)
    return WKV.apply(w, u, k, v, aa, bb, pp)


# ----------------------------------------------------------------------------- model


def time_mix(p, i, x, st, wkv):
    a = f"blocks.{i}.att."
    xx = shift(x, st["att_x"])
    mk, mv, mr = p[a + "time_mix_k"], p[a + "time_mix_v"], p[a + "time_mix_r"]
    k = linear(x * mk + xx * (1 - mk), p[a + "key.weight"])
    v = linear(x * mv + xx * (1 - mv), p[a + "value.weight"])
    r = linear(x * mr + xx * (1 - mr), p[a + "receptance.weight"])
    w = -torch.exp(p[a + "time_decay"])
    y, aa, bb, pp = wkv(w, p[a + "time_first"], k, v, st["aa"], st["bb"], st["pp"])
    out = linear(torch.sigmoid(r) * y, p[a + "output.weight"])
    return out, {"att_x": x[:, -1], "aa": aa, "bb": bb, "pp": pp}


def channel_mix(p, i, x, st):
    f = f"blocks.{i}.ffn."
    xx = shift(x, st["ffn_x"])
    mk, mr = p[f + "time_mix_k"], p[f + "time_mix_r"]
    k = linear(x * mk + xx * (1 - mk), p[f + "key.weight"])
    r = linear(x * mr + xx * (1 - mr), p[f + "receptance.weight"])
    out = torch.sigmoid(r) * linear(torch.square(torch.relu(k)), p[f + "value.weight"])
    return out, {"ffn_x": x[:, -1]}


def forward(p, tokens, state=None, wkv="seq"):
    """Parallel form. tokens: (B,T) int64; state: list of per-layer dicts or None.

    Returns logits (B,T,V) and the final state (list of per-layer dicts of (B,C)).
    """
    wkv_fn = {"seq": wkv_seq, "fast": wkv_fast}[wkv]
    L = n_layer_of(p)
    B, T = tokens.shape
    C = p["emb.weight"].shape[1]
    if state is None:
        state = empty_state(L, B, C, p["emb.weight"].dtype)
    x = F.embedding(tokens, p["emb.weight"])
    x = layer_norm(x, p, "blocks.0.ln0")
    new_state = []
    for i in range(L):
        xa = layer_norm(x, p, f"blocks.{i}.ln1")
        dx, sa = time_mix(p, i, xa, state[i], wkv_fn)
        x = x + dx
        xf = layer_norm(x, p, f"blocks.{i}.ln2")
        dx, sf = channel_mix(p, i, xf, state[i])
        x = x + dx
        new_state.append({key: {**sa, **sf}[key] for key in STATE_KEYS})
    logits = linear(layer_norm(x, p, "ln_out"), p["head.weight"])
    return logits, new_state


def forward_rnn_step(p, token, state):
    """RNN form, one token. token: (B,) int64; state: list of per-layer dicts (required).

    Written independently of forward(): explicit per-token mixing and WKV step.
    Returns logits (B,V) and the new state.
    """
    L = n_layer_of(p)

    def ln(x, name):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        return (x - mu) / torch.sqrt(var + LN_EPS) * p[name + ".weight"] + p[name + ".bias"]

    x = ln(p["emb.weight"][token], "blocks.0.ln0")
    new_state = []
    for i in range(L):
        a, f, s = f"blocks.{i}.att.", f"blocks.{i}.ffn.", state[i]
        xa = ln(x, f"blocks.{i}.ln1")
        prev = s["att_x"]
        mix = lambda m: xa * p[a + m].view(-1) + prev * (1 - p[a + m].view(-1))
        k = mix("time_mix_k") @ p[a + "key.weight"].t()
        v = mix("time_mix_v") @ p[a + "value.weight"].t()
        r = mix("time_mix_r") @ p[a + "receptance.weight"].t()
        w = -torch.exp(p[a + "time_decay"])
        u = p[a + "time_first"]
        aa, bb, pp = s["aa"], s["bb"], s["pp"]
        ww = u + k
        q = torch.maximum(pp, ww)
        e1, e2 = torch.exp(pp - q), torch.exp(ww - q)
        wkv = (e1 * aa + e2 * v) / (e1 * bb + e2)
        ww = w + pp
        q = torch.maximum(ww, k)
        e1, e2 = torch.exp(ww - q), torch.exp(k - q)
        aa, bb, pp = e1 * aa + e2 * v, e1 * bb + e2, q
        x = x + (torch.sigmoid(r) * wkv) @ p[a + "output.weight"].t()

        xf = ln(x, f"blocks.{i}.ln2")
        prevf = s["ffn_x"]
        mixf = lambda m: xf * p[f + m].view(-1) + prevf * (1 - p[f + m].view(-1))
        kf = torch.relu(mixf("time_mix_k") @ p[f + "key.weight"].t()) ** 2
        rf = torch.sigmoid(mixf("time_mix_r") @ p[f + "receptance.weight"].t())
        x = x + rf * (kf @ p[f + "value.weight"].t())
        new_state.append({"att_x": xa, "aa": aa, "bb": bb, "pp": pp, "ffn_x": xf})
    logits = ln(x, "ln_out") @ p["head.weight"].t()
    return logits, new_state


def forward_rnn(p, tokens, state=None):
    """Runs forward_rnn_step over T; returns logits (B,T,V) and the final state."""
    L = n_layer_of(p)
    B, T = tokens.shape
    C = p["emb.weight"].shape[1]
    if state is None:
        state = empty_state(L, B, C, p["emb.weight"].dtype)
    out = []
    for t in range(T):
        lg, state = forward_rnn_step(p, tokens[:, t], state)
        out.append(lg)
    return torch.stack(out, dim=1), state


# ----------------------------------------------------------------------------- loss


def loss_fn(logits, targets, l2wrap=False):
    """Mean cross-entropy over all B*T positions; logits (B,T,V), targets (B,T) int64; l2wrap
    applies L2Wrap."""
    return loss_with(L2Wrap, logits, targets, l2wrap)


# ----------------------------------------------------------------------------- schedule


def lr_at(step, lr_init, lr_final, warmup_steps, total_steps):
    """RWKV-LM exponential schedule with linear warmup factor; step counts from 0."""
    progress = (step - warmup_steps + 1) / (total_steps - warmup_steps)
    progress = min(1.0, max(0.0, progress))
    if lr_final == 0 or lr_init == 0:
        lr = lr_init + (lr_final - lr_init) * progress
    else:
        lr = lr_init * math.exp(math.log(lr_final / lr_init) * progress)
    if step < warmup_steps:
        lr = lr * (0.2 + 0.8 * step / warmup_steps)
    return lr
