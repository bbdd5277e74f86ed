"""Checks of reference/rwkv6.py (x052 and x060). Run: /usr/bin/python3 reference/test_rwkv6.py
Plain asserts; any failure exits non-zero."""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv6  # noqa: E402
from testkit import l2wrap_extra, maxdiff, run_tests  # noqa: E402

torch.set_num_threads(1)
D = torch.float64
ARCHS = rwkv6.ARCHS


def rel(a, b):
    return maxdiff(a, b) / max(b.abs().max().item(), 1e-300)


def rand_wkv_inputs(B, T, H, N, x052=False, w_shift=-1.0, w_scale=1.5, state=True, seed=0, dtype=D):
    """r, k, v, w~ ([B,T,C], or [H,N] for x052), u [H,N], s0 [B,H,N,N]."""
    g = torch.Generator().manual_seed(seed)
    C = H * N
    randn = lambda *s: torch.randn(*s, generator=g, dtype=D)
    r, k, v = randn(B, T, C), randn(B, T, C), randn(B, T, C)
    w = w_scale * (randn(H, N) if x052 else randn(B, T, C)) + w_shift
    u = randn(H, N)
    s0 = randn(B, H, N, N) if state else torch.zeros(B, H, N, N, dtype=D)
    return [x.to(dtype) for x in (r, k, v, w, u, s0)]


def grads_of(fn, inputs, wy, ws):
    inputs = [x.detach().clone().requires_grad_(True) for x in inputs]
    y, s = fn(*inputs)
    return (y, s) + torch.autograd.grad((y * wy).sum() + (s * ws).sum(), inputs)


def test_names_and_shapes():
    # RWKV-LM RWKV-v5/src/model.py registration order (RWKV_Tmix_x052/x060, RWKV_CMix_*), the
    # order arch/x060.go's layoutX052/layoutX060 list (checked in Go by TestGoldenLayout6).
    att5 = ["time_mix_k", "time_mix_v", "time_mix_r", "time_mix_g", "time_decay", "time_faaaa",
            "receptance.weight", "key.weight", "value.weight", "output.weight", "gate.weight",
            "ln_x.weight", "ln_x.bias"]
    att6 = ["time_maa_x", "time_maa_w", "time_maa_k", "time_maa_v", "time_maa_r", "time_maa_g",
            "time_maa_w1", "time_maa_w2", "time_decay", "time_decay_w1", "time_decay_w2",
            "time_faaaa", "receptance.weight", "key.weight", "value.weight", "output.weight",
            "gate.weight", "ln_x.weight", "ln_x.bias"]
    ffn5 = ["time_mix_k", "time_mix_r", "key.weight", "receptance.weight", "value.weight"]
    ffn6 = ["time_maa_k", "time_maa_r", "key.weight", "receptance.weight", "value.weight"]
    for arch, att, ffn in (("x052", att5, ffn5), ("x060", att6, ffn6)):
        s = rwkv6.param_shapes(arch, 2, 128, 96, 32, None, 8, 16)
        names = list(s)
        want = ["emb.weight"]
        for l in range(2):
            b = f"blocks.{l}."
            want += [b + "ln1.weight", b + "ln1.bias", b + "ln2.weight", b + "ln2.bias"]
            if l == 0:
                want += [b + "ln0.weight", b + "ln0.bias"]
            want += [b + "att." + x for x in att] + [b + "ffn." + x for x in ffn]
        want += ["ln_out.weight", "ln_out.bias", "head.weight"]
        assert names == want, (arch, names)
        assert len(names) == 6 + (22 if arch == "x052" else 28) * 2
        a = "blocks.1.att."
        assert s[a + "time_faaaa"] == (4, 32)
        assert s[a + "time_decay"] == ((4, 32) if arch == "x052" else (1, 1, 128))
        assert s["blocks.1.ffn.key.weight"] == (448, 128) and s["blocks.1.ffn.value.weight"] == (128, 448)
        if arch == "x060":
            assert s[a + "time_maa_w1"] == (128, 40) and s[a + "time_maa_w2"] == (5, 8, 128)
            assert s[a + "time_decay_w1"] == (128, 16) and s[a + "time_decay_w2"] == (16, 128)
    # dim_ffn default int(3.5 C)//32*32 (NEXT-ARCH §3) and parameter counts
    assert [rwkv6.default_ffn(c) for c in (768, 1024, 2048, 2560, 4096)] == [2688, 3584, 7168, 8960, 14336]
    L, C, V = 24, 2048, 65536
    F_ = rwkv6.default_ffn(C)
    n5 = sum(math.prod(x) for x in rwkv6.param_shapes("x052", L, C, V).values())
    assert n5 == 2 * V * C + 4 * C + L * (14 * C + 6 * C * C + 2 * C * F_), n5
    n6 = sum(math.prod(x) for x in rwkv6.param_shapes("x060", L, C, V).values())
    assert n6 == 2 * V * C + 4 * C + L * (16 * C + 6 * C * C + 2 * C * F_ + 10 * C * 32 + 2 * C * 64), n6
    for arch in ARCHS:
        assert rwkv6.arch_of(rwkv6.init_params(arch, 1, 64, 40, 16, 96, 4, 8)) == arch
    print(f"names, order, shapes: ok (x052 L24-D2048 {n5 / 1e9:.3f}B, x060 {n6 / 1e9:.3f}B parameters)")


def test_init():
    L, C, V, N = 3, 128, 256, 32
    H = C // N
    n = torch.arange(C, dtype=D)
    ddd = n / C
    for arch in ARCHS:
        p = rwkv6.init_params(arch, L, C, V, N, None, 8, 16, seed=3, dtype=D)
        for l in range(L):
            b, a, f = f"blocks.{l}.", f"blocks.{l}.att.", f"blocks.{l}.ffn."
            r0, r1 = l / (L - 1), 1 - l / L
            ds = -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r0)
            assert maxdiff(p[a + "time_decay"].reshape(-1), ds) < 1e-15
            fa = r0 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1
            assert maxdiff(p[a + "time_faaaa"].reshape(-1), fa) < 1e-15
            assert p[a + "time_faaaa"].shape == (H, N)
            assert torch.all(p[a + "ln_x.weight"] == ((1 + l) / L) ** 0.7)
            assert torch.all(p[a + "ln_x.bias"] == 0)
            for ln in ("ln1", "ln2"):
                assert torch.all(p[b + ln + ".weight"] == 1) and torch.all(p[b + ln + ".bias"] == 0)
            for m in ("att.output", "ffn.value", "ffn.receptance"):
                assert torch.all(p[b + m + ".weight"] == 0), m
            for m, gain in (("att.receptance", 1), ("att.value", 1), ("att.key", 0.1), ("att.gate", 0.1)):
                W = p[b + m + ".weight"]
                assert maxdiff(W @ W.t(), gain ** 2 * torch.eye(C, dtype=D)) < 1e-13, m
            K = p[f + "key.weight"]  # [F,C], F > C: orthonormal columns
            assert maxdiff(K.t() @ K, torch.eye(C, dtype=D)) < 1e-13
            if arch == "x052":
                assert maxdiff(p[a + "time_mix_k"].reshape(-1), ddd ** r1) < 1e-15
                assert maxdiff(p[a + "time_mix_v"].reshape(-1), ddd ** r1 + 0.3 * r0) < 1e-15
                assert maxdiff(p[a + "time_mix_r"].reshape(-1), ddd ** (0.5 * r1)) < 1e-15
                assert maxdiff(p[a + "time_mix_g"], p[a + "time_mix_r"]) == 0
                assert maxdiff(p[f + "time_mix_k"].reshape(-1), ddd ** r1) < 1e-15
                assert maxdiff(p[f + "time_mix_r"], p[f + "time_mix_k"]) == 0
            else:
                for m in "xwk":
                    assert maxdiff(p[a + "time_maa_" + m].reshape(-1), 1 - ddd ** r1) < 1e-15
                assert maxdiff(p[a + "time_maa_v"].reshape(-1), 1 - (ddd ** r1 + 0.3 * r0)) < 1e-15
                for m in "rg":
                    assert maxdiff(p[a + "time_maa_" + m].reshape(-1), 1 - ddd ** (0.5 * r1)) < 1e-15
                for m in "kr":
                    assert maxdiff(p[f + "time_maa_" + m].reshape(-1), 1 - ddd ** (r1 ** 3)) < 1e-15
                for m in ("time_maa_w1", "time_decay_w1"):
                    assert torch.all(p[a + m] == 0), m
                for m in ("time_maa_w2", "time_decay_w2"):
                    x = p[a + m]
                    assert x.abs().max() <= 0.01 and x.abs().max() > 0.009 and abs(x.mean()) < 1e-3, m
        e = p["emb.weight"]
        assert e.abs().max() <= 1e-4 and e.abs().max() > 0.9e-4
        h = p["head.weight"]  # [V,C], V > C: orthonormal columns times 0.5 sqrt(V/C)
        assert maxdiff(h.t() @ h, 0.25 * V / C * torch.eye(C, dtype=D)) < 1e-12
        assert torch.all(p["blocks.0.ln0.weight"] == 1) and torch.all(p["ln_out.bias"] == 0)
    print("init: ok")


def test_wkv_implementations_agree():
    for x052 in (False, True):
        for T, state in ((1, False), (16, True), (37, True)):
            ins = rand_wkv_inputs(2, T, 3, 8, x052=x052, state=state, seed=T)
            g = torch.Generator().manual_seed(99)
            wy = torch.randn(2, T, 24, generator=g, dtype=D)
            ws = torch.randn(2, 3, 8, 8, generator=g, dtype=D)
            ref = grads_of(rwkv6.wkv6_seq, ins, wy, ws)
            fast = grads_of(rwkv6.wkv6_fast, ins, wy, ws)
            ch = grads_of(rwkv6.wkv6_chunked, ins, wy, ws)
            assert maxdiff(fast[0], ref[0]) == 0 and maxdiff(fast[1], ref[1]) == 0  # same loop
            for a, b in zip(fast[2:], ref[2:]):
                assert rel(a, b) < 1e-14, rel(a, b)
            for a, b in zip(ch, ref):
                assert rel(a, b) < 1e-13, rel(a, b)
    # decay at both ends: w~ = +4 (d = exp(-e^4) ~ 2e-24) and -30 (d ~ 1 - 1e-13)
    ins = rand_wkv_inputs(1, 40, 2, 8, state=True, seed=5)
    ins[3][..., 0] = 4.0
    ins[3][..., 1] = -30.0
    ins[3][:, 5:9, 2:6] = 6.0  # d underflows to 0 for a few steps
    wy, ws = torch.randn(1, 40, 16, dtype=D), torch.randn(1, 2, 8, 8, dtype=D)
    ref = grads_of(rwkv6.wkv6_seq, ins, wy, ws)
    for fn in (rwkv6.wkv6_fast, rwkv6.wkv6_chunked):
        out = grads_of(fn, ins, wy, ws)
        for a, b in zip(out, ref):
            assert torch.isfinite(a).all() and rel(a, b) < 1e-12, rel(a, b)
    print("WKV6 Function == chunked == seq (float64, x052 and x060 decay, d near 0 and 1): ok")


def test_float32_accuracy():
    ins = rand_wkv_inputs(2, 33, 2, 16, seed=7)
    y64, s64 = rwkv6.wkv6_seq(*ins)
    worst = 0.0
    for fn in rwkv6.WKV_FNS.values():
        y, s = fn(*[x.float() for x in ins])
        worst = max(worst, rel(y.double(), y64), rel(s.double(), s64))
    assert worst < 1e-5, worst
    print(f"float32 WKV6 within {worst:.2g} of float64: ok")


def test_gradcheck():
    for x052 in (False, True):
        for T in (1, 17):
            ins = rand_wkv_inputs(1, T, 2, 3, x052=x052, seed=T)
            for fn in (rwkv6.wkv6_seq, rwkv6.wkv6_fast):
                xs = [x.clone().requires_grad_(True) for x in ins]
                assert torch.autograd.gradcheck(lambda *a: fn(*a), xs, eps=1e-6, atol=1e-8, rtol=1e-6)
    print("gradcheck of wkv6_seq (autograd through the loop) and WKV6 (hand-written backward): ok")


def tiny_params(arch, dtype=D, seed=0):
    """Random non-init weights as gen_golden6 makes them, on a smaller model."""
    import gen_golden6
    saved = dict(gen_golden6.CFG)
    gen_golden6.CFG.update(n_layer=2, n_embd=32, head_size=8, vocab_size=24, dim_ffn=64)
    try:
        p = gen_golden6.make_params(arch, seed=seed)
    finally:
        gen_golden6.CFG.clear()
        gen_golden6.CFG.update(saved)
    return {k: v.to(dtype) for k, v in p.items()}


def random_state(L, B, C, N, seed=1):
    g = torch.Generator().manual_seed(seed)
    H = C // N
    return [{"att_x": torch.randn(B, C, generator=g, dtype=D),
             "wkv": 0.5 * torch.randn(B, H, N, N, generator=g, dtype=D),
             "ffn_x": torch.randn(B, C, generator=g, dtype=D)} for _ in range(L)]


def test_rnn_equals_parallel():
    for arch in ARCHS:
        p = tiny_params(arch)
        L, C, H, N = rwkv6.dims_of(p)
        tokens = torch.randint(0, 24, (2, 11), generator=torch.Generator().manual_seed(2))
        for state in (None, random_state(L, 2, C, N)):
            lp, sp = rwkv6.forward(p, tokens, state)
            lr_, sr = rwkv6.forward_rnn(p, tokens, state)
            worst = rel(lr_, lp)
            for a, b in zip(sp, sr):
                for k in rwkv6.STATE_KEYS:
                    worst = max(worst, rel(b[k], a[k]))
            assert worst < 1e-12, (arch, worst)
    print("RNN == parallel (float64, empty and random state, both archs): ok")


def test_chunks_carry_state():
    for arch in ARCHS:
        p = {k: v.clone().requires_grad_(True) for k, v in tiny_params(arch).items()}
        L, C, H, N = rwkv6.dims_of(p)
        tokens = torch.randint(0, 24, (2, 17), generator=torch.Generator().manual_seed(4))
        s0 = random_state(L, 2, C, N)
        l1, st1 = rwkv6.forward(p, tokens, s0)
        g1 = torch.autograd.grad(l1.square().sum(), list(p.values()))
        la, st = rwkv6.forward(p, tokens[:, :9], s0)
        lb, st2 = rwkv6.forward(p, tokens[:, 9:], st)
        l2 = torch.cat([la, lb], 1)
        g2 = torch.autograd.grad(l2.square().sum(), list(p.values()))
        assert rel(l2, l1) < 1e-13
        for a, b in zip(st1, st2):
            for k in rwkv6.STATE_KEYS:
                assert rel(b[k], a[k]) < 1e-13, (arch, k)
        for a, b in zip(g2, g1):
            assert rel(a, b) < 1e-12
    print("two calls carrying the state == one pass (logits, final state, gradients through both): ok")


def test_model_wkv_variants():
    for arch in ARCHS:
        p = {k: v.clone().requires_grad_(True) for k, v in tiny_params(arch).items()}
        L, C, H, N = rwkv6.dims_of(p)
        tokens = torch.randint(0, 24, (2, 19), generator=torch.Generator().manual_seed(5))
        targets = torch.randint(0, 24, (2, 19), generator=torch.Generator().manual_seed(6))
        st = [{k: v.clone().requires_grad_(True) for k, v in s.items()} for s in random_state(L, 2, C, N)]
        leaves = list(p.values()) + [s[k] for s in st for k in rwkv6.STATE_KEYS]
        res = {}
        for wkv in rwkv6.WKV_FNS:
            logits, _ = rwkv6.forward(p, tokens, st, wkv=wkv)
            loss = rwkv6.loss_fn(logits, targets)
            res[wkv] = [logits] + list(torch.autograd.grad(loss, leaves))
        for wkv in ("fast", "chunked"):
            for a, b in zip(res[wkv], res["seq"]):
                assert rel(a, b) < 1e-11, (arch, wkv, rel(a, b))
        for g in res["seq"][1:]:
            assert g.abs().max() > 0
    print("model with each WKV == seq (logits, every parameter and state gradient): ok")


def test_x052_group_norm_eps():
    """ln_x(y/8) with eps 1e-5 == GroupNorm(y) with eps 64e-5 (NEXT-ARCH §1.1)."""
    y = torch.randn(34, 64, dtype=D) * 0.01  # small y, where eps matters
    w, b = torch.randn(64, dtype=D), torch.randn(64, dtype=D)
    a = torch.nn.functional.group_norm(y / 8, 4, w, b, 1e-5)
    c = torch.nn.functional.group_norm(y, 4, w, b, 64e-5)
    d = torch.nn.functional.group_norm(y, 4, w, b, 1e-5)
    assert rel(a, c) < 1e-13 and rel(d, c) > 1e-3
    print("x052 GroupNorm eps: ok")


def test_l2wrap():
    logits = torch.randn(2, 3, 5, dtype=D, requires_grad=True)
    targets = torch.randint(0, 5, (2, 3))
    g0 = torch.autograd.grad(rwkv6.loss_fn(logits, targets), logits)[0]
    g1 = torch.autograd.grad(rwkv6.loss_fn(logits, targets, l2wrap=True), logits)[0]
    extra = l2wrap_extra(logits)
    assert maxdiff(g1, g0 + extra) < 1e-15
    print("L2Wrap gradient: ok")


def test_schedule_and_groups():
    lrs = [rwkv6.lr_at(s, 4e-3, 1e-3, 2, 6) for s in range(7)]
    assert abs(lrs[0] - 4e-3 * 0.01) < 1e-18 and abs(lrs[1] - 4e-3 * 0.505) < 1e-18
    assert abs(lrs[2] - 4e-3) < 1e-18 and abs(lrs[6] - 1e-3) < 1e-18, lrs
    assert abs(lrs[4] - 2.5e-3) < 1e-15, lrs
    for arch in ARCHS:
        p = rwkv6.param_shapes(arch, 2, 128, 96, 32, None, 8, 16)
        groups = {n: rwkv6.param_group(n, torch.zeros(s)) for n, s in p.items()}
        x2 = sorted(n for n, (m, _) in groups.items() if m == 2.0)
        assert x2 == [f"blocks.{l}.att.time_decay" for l in range(2)], x2  # not time_decay_w1/w2
        assert all(m in (1.0, 2.0) for m, _ in groups.values())
        decayed = sorted(n for n, (_, wd) in groups.items() if wd)
        assert decayed == sorted(n for n in p if n.endswith(".weight") and len(p[n]) == 2), decayed
        # without layerwise lr the LoRA matrices (>= 2-D) decay too
        if arch == "x060":
            assert rwkv6.param_group("blocks.0.att.time_maa_w2", torch.zeros(5, 8, 128), False) == (1.0, True)
            assert rwkv6.param_group("blocks.0.att.time_decay", torch.zeros(1, 1, 128), False) == (1.0, False)
        else:
            assert rwkv6.param_group("blocks.0.att.time_decay", torch.zeros(4, 32), False) == (1.0, True)
    print("lr schedule and optimiser groups: " + " ".join(f"{x:.4g}" for x in lrs))


if __name__ == "__main__":
    run_tests(globals(), timed=True)
