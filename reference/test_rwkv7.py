"""Checks of reference/rwkv7.py. Run: /usr/bin/python3 reference/test_rwkv7.py
Plain asserts; any failure exits non-zero."""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7  # noqa: E402
from testkit import l2wrap_extra, maxdiff, run_tests  # noqa: E402

torch.set_num_threads(1)
D = torch.float64


def rand_wkv_inputs(B, T, H, N, w_shift=0.0, w_scale=2.0, state=True, seed=0):
    """r, w~, k, v, a = -kappa^, b = kappa^ * iclr, s0, as the model produces them."""
    g = torch.Generator().manual_seed(seed)
    C = H * N
    randn = lambda *s: torch.randn(*s, generator=g, dtype=D)
    r, k, v = randn(B, T, C), randn(B, T, C), randn(B, T, C)
    w = w_scale * randn(B, T, C) + w_shift
    kap = torch.nn.functional.normalize(randn(B, T, H, N), dim=-1).view(B, T, C)
    b = kap * torch.sigmoid(randn(B, T, C))
    s0 = randn(B, H, N, N) if state else torch.zeros(B, H, N, N, dtype=D)
    return [r, w, k, v, -kap, b, s0]


def grads_of(fn, inputs, wy, ws):
    y, s = fn(*inputs)
    return torch.autograd.grad((y * wy).sum() + (s * ws).sum(), inputs)


def test_names_and_ranks():
    assert rwkv7.lora_ranks(768) == (64, 64, 32, 128)
    assert rwkv7.lora_ranks(1024) == (64, 64, 64, 160), rwkv7.lora_ranks(1024)  # round(2.5) == 2
    assert rwkv7.lora_ranks(2048) == (128, 128, 64, 224)
    assert rwkv7.lora_ranks(2560) == (128, 128, 96, 256)
    assert rwkv7.lora_ranks(4096) == (160, 160, 96, 320)
    assert rwkv7.lora_ranks(768, "released") == (64, 64, 32, 128)
    assert rwkv7.lora_ranks(2048, "released") == (96, 96, 64, 256)
    assert rwkv7.lora_ranks(2560, "released") == (96, 96, 64, 320)
    assert rwkv7.lora_ranks(4096, "released") == (128, 128, 96, 480)
    # parameter count (RWKV-LM README): 2VC + 4C + L(19C + 12C^2 + 2C(Dw+Dv+Da+Dg))
    L, C, V = 12, 768, 65536
    s = rwkv7.param_shapes(L, C, V)
    assert len(s) == 6 + 33 * L  # with layer 0's v0/v1/v2 (RWKV-LM state dicts)
    assert len(rwkv7.param_shapes(L, C, V, layer0_v=False)) == 3 + 33 * L
    n = sum(math.prod(x) for x in s.values())
    assert n == 2 * V * C + 4 * C + L * (19 * C + 12 * C * C + 2 * C * (64 + 32 + 64 + 128)), n
    names = list(rwkv7.param_shapes(2, 128, 64))
    att = [x.split(".", 3)[3] for x in names if x.startswith("blocks.1.att.")]
    assert att == ["x_r", "x_w", "x_k", "x_v", "x_a", "x_g", "w1", "w2", "w0", "a1", "a2", "a0",
                   "v1", "v2", "v0", "g1", "g2", "k_k", "k_a", "r_k", "receptance.weight",
                   "key.weight", "value.weight", "output.weight", "ln_x.weight", "ln_x.bias"], att
    assert names[1:7] == ["blocks.0.ln1.weight", "blocks.0.ln1.bias", "blocks.0.ln2.weight",
                          "blocks.0.ln2.bias", "blocks.0.ln0.weight", "blocks.0.ln0.bias"], names[:7]
    print("LoRA ranks (both rules), names, order and parameter count: ok")


def test_init():
    L, C, V = 3, 128, 300
    p = rwkv7.init_params(L, C, V, dtype=D)
    assert list(p) == list(rwkv7.param_shapes(L, C, V))
    assert p["emb.weight"].abs().max() <= 1e-4
    W = p["blocks.1.att.receptance.weight"]
    assert maxdiff(W @ W.t(), torch.eye(C, dtype=D)) < 1e-12
    W = p["blocks.1.att.key.weight"]
    assert maxdiff(W @ W.t(), 0.01 * torch.eye(C, dtype=D)) < 1e-12
    W = p["head.weight"]  # [V,C], V > C: orthonormal columns times 0.5*sqrt(V/C)
    assert maxdiff(W.t() @ W, 0.25 * V / C * torch.eye(C, dtype=D)) < 1e-12
    W = p["blocks.0.att.w2"]  # [Dw,C] rows orthonormal x 0.1
    assert maxdiff(W @ W.t(), 0.01 * torch.eye(W.shape[0], dtype=D)) < 1e-12
    for z in ("att.output.weight", "ffn.value.weight", "att.w1", "att.a1", "att.v1", "att.g1"):
        assert p["blocks.2." + z].abs().max() == 0, z
    assert abs(p["blocks.2.att.ln_x.weight"][0].item() - 1.0) < 1e-15
    assert abs(p["blocks.0.att.ln_x.weight"][0].item() - (1 / 3) ** 0.7) < 1e-15
    w0 = p["blocks.0.att.w0"].view(-1)
    # www_0 = -6, zigzag_0 = -1: w0[0] = -6 + 0.5 - 2.5
    assert abs(w0[0].item() - (-8.0)) < 1e-12, w0[0]
    assert abs(p["blocks.0.att.r_k"][1, 5].item() + 0.04) < 1e-15
    assert abs(p["blocks.0.att.x_r"].view(-1)[0].item() - 1.0) < 1e-15  # 1 - 0^0.2
    print("effective init (orthogonal gains, zeros, ln_x, w0, r_k): ok")


def test_fast_equals_seq():
    worst = {"recompute": 0.0, "backstep": 0.0, "chunked": 0.0}
    fwd_worst = 0.0
    for T in (1, 5, 16, 17, 33):
        for st in (False, True):
            args = rand_wkv_inputs(2, T, 2, 8, state=st, seed=T)
            inp = [a.clone().requires_grad_(True) for a in args]
            g = torch.Generator().manual_seed(100 + T)
            wy = torch.randn(2, T, 16, generator=g, dtype=D)
            ws = torch.randn(2, 2, 8, 8, generator=g, dtype=D)
            ys, ss = rwkv7.wkv7_seq(*args)
            gs = grads_of(rwkv7.wkv7_seq, inp, wy, ws)
            for mode in ("recompute", "backstep"):
                yf, sf = rwkv7.wkv7_fast(*args, mode=mode)
                assert maxdiff(ys, yf) == 0.0 and maxdiff(ss, sf) == 0.0, f"T={T}: forward differs"
                gf = grads_of(lambda *x: rwkv7.wkv7_fast(*x, mode=mode), inp, wy, ws)
                worst[mode] = max(worst[mode], max(maxdiff(a, b) for a, b in zip(gf, gs)))
            yc, sc = rwkv7.wkv7_chunked(*args)
            fwd_worst = max(fwd_worst, maxdiff(ys, yc), maxdiff(ss, sc))
            gc = grads_of(rwkv7.wkv7_chunked, inp, wy, ws)
            worst["chunked"] = max(worst["chunked"], max(maxdiff(a, b) for a, b in zip(gc, gs)))
    assert worst["recompute"] < 1e-12 and worst["backstep"] < 1e-12, worst
    assert fwd_worst < 1e-12 and worst["chunked"] < 1e-11, (fwd_worst, worst)
    print("WKV7 forward == seq (bitwise); grads vs seq autograd: " +
          ", ".join(f"{k} {v:.3g}" for k, v in worst.items()) + f"; chunked forward {fwd_worst:.3g}")


def test_float32_accuracy():
    """float32 WKV-7 (seq, the Function, the chunked form with its divisions by decay products
    down to 0.545^16) against float64 seq: relative to each tensor's scale."""
    worst = {}
    for shift in (0.0, 8.0):  # w~ ~ N(0, 3^2), and shifted to d near 0.545 (fastest decay)
        args = rand_wkv_inputs(2, 40, 2, 64, w_shift=shift, w_scale=3.0, seed=7)
        ref = None
        for name, dt in (("seq", D), ("seq", torch.float32), ("fast", torch.float32),
                         ("chunked", torch.float32)):
            ins = [x.to(dt).clone().requires_grad_(True) for x in args]
            y, s = rwkv7.WKV_FNS[name](*ins)
            outs = [y, s] + list(torch.autograd.grad((y * y.detach()).sum() + s.sum(), ins))
            if ref is None:
                ref = outs
                continue
            e = max(((o.double() - q).abs().max() / q.abs().max()).item() for o, q in zip(outs, ref))
            worst[name] = max(worst.get(name, 0.0), e)
    assert max(worst.values()) < 1e-5, worst
    print("float32 WKV-7 vs float64 (y, state, all grads, relative): " +
          ", ".join(f"{k} {v:.2g}" for k, v in worst.items()))


def test_gradcheck():
    cases = [
        # name, B, T, H, N, w_shift, w_scale, state
        ("T=1", 2, 1, 2, 4, 0.0, 2.0, True),
        ("T=17 fresh state", 1, 17, 2, 2, 0.0, 2.0, False),
        ("T=17 carried state", 1, 17, 2, 2, 0.0, 2.0, True),
        ("w~ very negative (d -> 1)", 1, 7, 1, 4, -12.0, 1.0, True),
        ("w~ very positive (d -> 0.545)", 1, 7, 1, 4, 12.0, 1.0, True),
        ("w~ both ends, T=18", 1, 18, 1, 3, 0.0, 9.0, True),
    ]
    for name, B, T, H, N, sh, sc, st in cases:
        args = rand_wkv_inputs(B, T, H, N, w_shift=sh, w_scale=sc, state=st, seed=B * 100 + T)
        # backstep on every case; recompute (also compared with seq autograd above) on one
        for mode in ("backstep", "recompute") if name == "T=17 carried state" else ("backstep",):
            inp = [a.clone().requires_grad_(True) for a in args]
            f = lambda *x: rwkv7.WKV7.apply(*x, mode)
            if not st:
                inp = inp[:6]
                f = lambda *x: rwkv7.WKV7.apply(*x, args[6], mode)
            ok = torch.autograd.gradcheck(f, inp, eps=1e-6, atol=1e-7, rtol=1e-6)
            assert ok, (name, mode)
        print(f"gradcheck WKV7 ({name}): ok")


def tiny_params(dtype=D, seed=0, layer0_v=True):
    import gen_golden7
    return gen_golden7.make_params(2, 128, 64, 64, (16, 24, 8, 32), seed=seed, dtype=dtype,
                                   layer0_v=layer0_v)


def random_state(L, B, C, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [{"att_x": torch.randn(B, C, generator=g, dtype=D),
             "wkv": 0.5 * torch.randn(B, C // N, N, N, generator=g, dtype=D),
             "ffn_x": torch.randn(B, C, generator=g, dtype=D)} for _ in range(L)]


def test_rnn_equals_parallel():
    p = tiny_params()
    B, T = 2, 9
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(3))
    worst = {}
    for name, st in (("empty state", None), ("random state", random_state(2, B, 128, 64))):
        lp, sp = rwkv7.forward(p, tokens, st)
        lr, sr = rwkv7.forward_rnn(p, tokens, st)
        d = maxdiff(lp, lr)
        for a, b in zip(sp, sr):
            for key in rwkv7.STATE_KEYS:
                d = max(d, maxdiff(a[key], b[key]))
        worst[name] = d
        assert d < 1e-12, f"RNN vs parallel ({name}): maxdiff {d}"
    print("RNN == parallel (float64, logits and final state): " +
          ", ".join(f"{k} maxdiff {v:.3g}" for k, v in worst.items()))
    tokens = torch.randint(0, 64, (B, 17), generator=torch.Generator().manual_seed(4))
    l1, s1 = rwkv7.forward(p, tokens[:, :7])
    l2, s2 = rwkv7.forward(p, tokens[:, 7:], s1)
    lp, sp = rwkv7.forward(p, tokens)
    d = maxdiff(torch.cat([l1, l2], 1), lp)
    for a, b in zip(s2, sp):
        for key in rwkv7.STATE_KEYS:
            d = max(d, maxdiff(a[key], b[key]))
    assert d < 1e-12, f"chunked vs one pass: {d}"
    print(f"chunked (7+10) == one pass (logits and state): maxdiff {d:.3g}")


def test_layer0_v_optional():
    p = tiny_params()
    q = {k: v for k, v in p.items() if not k.startswith(("blocks.0.att.v0", "blocks.0.att.v1",
                                                          "blocks.0.att.v2"))}
    assert len(q) == len(p) - 3
    assert list(q) == list(rwkv7.param_shapes(2, 128, 64, ranks=(16, 24, 8, 32), layer0_v=False))
    tokens = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(8))
    assert torch.equal(rwkv7.forward(p, tokens)[0], rwkv7.forward(q, tokens)[0])
    print("layer 0 v0/v1/v2 unused and optional: ok")


def test_model_fast_equals_seq():
    p = {k: v.clone().requires_grad_(True) for k, v in tiny_params().items()}
    B, T = 2, 17
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 64, (B, T), generator=g)
    targets = torch.randint(0, 64, (B, T), generator=g)
    st = random_state(2, B, 128, 64, seed=5)
    for s in st:
        for v in s.values():
            v.requires_grad_(True)
    leaves = list(p.values()) + [v for s in st for v in s.values()]
    res = {}
    for kind in ("seq", "fast", "backstep", "chunked"):
        logits, _ = rwkv7.forward(p, tokens, st, wkv=kind)
        loss = rwkv7.loss_fn(logits, targets, l2wrap=True)
        gr = torch.autograd.grad(loss, leaves, allow_unused=True)
        res[kind] = (logits, [torch.zeros_like(x) if y is None else y for x, y in zip(leaves, gr)])
    msg = []
    for kind in ("fast", "backstep", "chunked"):
        d = maxdiff(res["seq"][0], res[kind][0])
        dg = max(maxdiff(a, b) for a, b in zip(res["seq"][1], res[kind][1]))
        assert d < 1e-12 and dg < 1e-11, f"model seq vs {kind}: logits {d}, grads {dg}"
        msg.append(f"{kind} logits {d:.3g} grads {dg:.3g}")
    print("model with fast WKV == seq WKV: " + "; ".join(msg))
    names = list(p)
    gl0 = res["seq"][1][names.index("blocks.0.att.v1")]
    assert gl0.abs().max() == 0
    for n, gr in zip(names, res["seq"][1]):
        if not n.startswith(("blocks.0.att.v0", "blocks.0.att.v1", "blocks.0.att.v2")):
            assert gr.abs().max() > 0, f"zero gradient for {n}"


def test_l2wrap():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 5, generator=g, dtype=D, requires_grad=True)
    targets = torch.randint(0, 5, (2, 3), generator=g)
    g0 = torch.autograd.grad(rwkv7.loss_fn(logits, targets) * 2.0, logits)[0]
    l1 = rwkv7.loss_fn(logits, targets, l2wrap=True)
    assert l1.item() == rwkv7.loss_fn(logits, targets).item()
    g1 = torch.autograd.grad(l1 * 2.0, logits)[0]
    extra = l2wrap_extra(logits)
    assert maxdiff(g1, g0 + 2.0 * extra) < 1e-15  # LM7: scaled by the incoming gradient
    print("L2Wrap gradient: ok")


def test_schedule_and_groups():
    lrs = [rwkv7.lr_at(s, 4e-3, 1e-3, 2, 6) for s in range(7)]
    assert abs(lrs[0] - 4e-3 * 0.01) < 1e-18
    assert abs(lrs[2] - 4e-3) < 1e-18 and abs(lrs[6] - 1e-3) < 1e-18, lrs
    assert abs(lrs[4] - 2.5e-3) < 1e-15, lrs
    p = rwkv7.param_shapes(2, 128, 64)
    groups = {n: rwkv7.param_group(n, torch.zeros(s)) for n, s in p.items()}
    assert groups["blocks.1.att.w0"] == (2.0, False)
    decayed = sorted(n for n, (_, wd) in groups.items() if wd)
    assert decayed == sorted(n for n in p if n.endswith(".weight") and len(p[n]) == 2), decayed
    assert "blocks.0.att.w1" not in decayed and "blocks.0.att.r_k" not in decayed
    print("lr schedule and optimiser groups: " + " ".join(f"{x:.4g}" for x in lrs))


if __name__ == "__main__":
    run_tests(globals(), timed=True)
