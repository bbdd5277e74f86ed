"""Checks of reference/rwkv4.py. Run: /usr/bin/python3 reference/test_reference.py
Plain asserts; any failure exits non-zero."""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv4  # noqa: E402
from testkit import l2wrap_extra, maxdiff, run_tests  # noqa: E402

torch.set_num_threads(1)
D = torch.float64


def rand_wkv_inputs(B, T, C, k_scale=1.0, decay_shift=0.0, state=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    decay = torch.randn(C, generator=g, dtype=D) + decay_shift
    w = -torch.exp(decay)
    u = torch.randn(C, generator=g, dtype=D)
    k = torch.randn(B, T, C, generator=g, dtype=D) * k_scale
    v = torch.randn(B, T, C, generator=g, dtype=D)
    if state:
        aa = torch.randn(B, C, generator=g, dtype=D)
        bb = torch.rand(B, C, generator=g, dtype=D) * 1.5 + 0.5
        pp = torch.randn(B, C, generator=g, dtype=D) * k_scale
    else:
        aa = torch.zeros(B, C, dtype=D)
        bb = torch.zeros(B, C, dtype=D)
        pp = torch.full((B, C), rwkv4.PP_EMPTY, dtype=D)
    return w, u, k, v, aa, bb, pp


def test_fast_equals_seq_forward():
    for T in (1, 2, 7, 17):
        for st in (False, True):
            args = rand_wkv_inputs(2, T, 4, state=st, seed=T)
            ys, *ss = rwkv4.wkv_seq(*args)
            yf, *sf = rwkv4.wkv_fast(*args)
            assert maxdiff(ys, yf) == 0.0, f"T={T} state={st}: y differs"
            for a, b in zip(ss, sf):
                assert maxdiff(a, b) == 0.0, f"T={T} state={st}: state differs"
    print("fast forward == seq forward (bitwise): ok")


def test_seq_equals_naive():
    worst = 0.0
    for T in (1, 2, 7):
        w, u, k, v, aa, bb, pp = rand_wkv_inputs(2, T, 4, seed=10 + T)
        ys, aa2, bb2, pp2 = rwkv4.wkv_seq(w, u, k, v, aa, bb, pp)
        yn, A, Bd = rwkv4.wkv_naive(w, u, k, v, aa * torch.exp(pp), bb * torch.exp(pp))
        worst = max(worst, maxdiff(ys, yn))
        worst = max(worst, maxdiff(aa2 * torch.exp(pp2), A), maxdiff(bb2 * torch.exp(pp2), Bd))
    assert worst < 1e-12, f"seq vs naive maxdiff {worst}"
    print(f"seq == naive O(T^2): maxdiff {worst:.3g}")


def test_fast_gradcheck():
    cases = [
        # name, B, T, C, k_scale, decay_shift, state
        ("T=1", 2, 1, 4, 1.0, 0.0, True),
        ("T=7", 2, 7, 4, 1.0, 0.0, True),
        ("T=7 empty state", 2, 7, 4, 1.0, 0.0, False),
        ("T=17", 1, 17, 3, 1.0, 0.0, True),
        ("large k (x40)", 2, 7, 4, 40.0, 0.0, True),
        ("very large k (x500)", 2, 5, 3, 500.0, 0.0, True),
        ("very negative w (decay+4)", 2, 7, 4, 1.0, 4.0, True),
        ("w near 0 (decay-6)", 2, 7, 4, 1.0, -6.0, True),
    ]
    for name, B, T, C, ks, ds, st in cases:
        args = rand_wkv_inputs(B, T, C, k_scale=ks, decay_shift=ds, state=st, seed=B * 100 + T)
        w, u, k, v, aa, bb, pp = [a.clone().requires_grad_(True) for a in args]
        if st:
            inputs = (w, u, k, v, aa, bb, pp)
            f = rwkv4.WKV.apply
        else:
            inputs = (w, u, k, v)
            f = lambda w, u, k, v: rwkv4.WKV.apply(w, u, k, v, args[4], args[5], args[6])
        ok = torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)
        assert ok, name
        print(f"gradcheck WKV ({name}): ok")


def grads_of(fn, inputs, weights):
    outs = fn(*inputs)
    loss = sum((o * wt).sum() for o, wt in zip(outs, weights))
    return torch.autograd.grad(loss, inputs)


def test_fast_grad_equals_seq_and_naive():
    worst_seq, worst_naive = 0.0, 0.0
    for T in (1, 3, 7, 17):
        args = rand_wkv_inputs(2, T, 4, seed=50 + T)
        g = torch.Generator().manual_seed(T)
        wy = torch.randn(2, T, 4, generator=g, dtype=D)
        ws = [torch.randn(2, 4, generator=g, dtype=D) for _ in range(3)]
        inp = [a.clone().requires_grad_(True) for a in args]
        gf = grads_of(rwkv4.wkv_fast, inp, [wy] + ws)
        gs = grads_of(rwkv4.wkv_seq, inp, [wy] + ws)
        for a, b in zip(gf, gs):
            worst_seq = max(worst_seq, maxdiff(a, b))

        # naive: compare through the unscaled state (A = aa*exp(pp), B = bb*exp(pp)) only
        def via_fast(w, u, k, v, aa, bb, pp):
            y, a2, b2, p2 = rwkv4.wkv_fast(w, u, k, v, aa, bb, pp)
            return y, a2 * torch.exp(p2), b2 * torch.exp(p2)

        def via_naive(w, u, k, v, aa, bb, pp):
            return rwkv4.wkv_naive(w, u, k, v, aa * torch.exp(pp), bb * torch.exp(pp))

        gf = grads_of(via_fast, inp, [wy] + ws[:2])
        gn = grads_of(via_naive, inp, [wy] + ws[:2])
        for a, b in zip(gf, gn):
            worst_naive = max(worst_naive, maxdiff(a, b))
    assert worst_seq < 1e-12, f"fast vs seq grad maxdiff {worst_seq}"
    assert worst_naive < 1e-11, f"fast vs naive grad maxdiff {worst_naive}"
    print(f"WKV grads: fast vs seq autograd maxdiff {worst_seq:.3g}, fast vs naive {worst_naive:.3g}")


def tiny_params(dtype=D, seed=0):
    import gen_golden
    return gen_golden.make_params(2, 32, 64, 128, seed=seed, dtype=dtype)


def random_state(L, B, C, seed=1):
    g = torch.Generator().manual_seed(seed)
    st = []
    for _ in range(L):
        st.append({
            "att_x": torch.randn(B, C, generator=g, dtype=D),
            "aa": torch.randn(B, C, generator=g, dtype=D),
            "bb": torch.rand(B, C, generator=g, dtype=D) * 1.5 + 0.5,
            "pp": torch.randn(B, C, generator=g, dtype=D),
            "ffn_x": torch.randn(B, C, generator=g, dtype=D),
        })
    return st


def test_rnn_equals_parallel():
    p = tiny_params()
    B, T = 2, 16
    tokens = torch.randint(0, 64, (B, T), generator=torch.Generator().manual_seed(3))
    worst = {}
    for name, st in (("empty state", None), ("random state", random_state(2, B, 32))):
        lp, sp = rwkv4.forward(p, tokens, st)
        lr, sr = rwkv4.forward_rnn(p, tokens, st)
        d = maxdiff(lp, lr)
        for a, b in zip(sp, sr):
            for key in rwkv4.STATE_KEYS:
                d = max(d, maxdiff(a[key], b[key]))
        worst[name] = d
        assert d < 1e-12, f"RNN vs parallel ({name}): maxdiff {d}"
    print("RNN == parallel (float64, logits and final state): " +
          ", ".join(f"{k} maxdiff {v:.3g}" for k, v in worst.items()))
    # splitting the sequence in two chunks and carrying the state equals one pass
    l1, s1 = rwkv4.forward(p, tokens[:, :7])
    l2, s2 = rwkv4.forward(p, tokens[:, 7:], s1)
    lp, sp = rwkv4.forward(p, tokens)
    d = maxdiff(torch.cat([l1, l2], 1), lp)
    assert d < 1e-12, f"chunked vs one pass: {d}"
    print(f"chunked (7+9) == one pass: maxdiff {d:.3g}")


def test_model_fast_equals_seq():
    p = {k: v.clone().requires_grad_(True) for k, v in tiny_params().items()}
    B, T = 2, 16
    g = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, 64, (B, T), generator=g)
    targets = torch.randint(0, 64, (B, T), generator=g)
    st = random_state(2, B, 32, seed=5)
    for s in st:
        for v in s.values():
            v.requires_grad_(True)
    leaves = list(p.values()) + [v for s in st for v in s.values()]
    res = {}
    for kind in ("seq", "fast"):
        logits, _ = rwkv4.forward(p, tokens, st, wkv=kind)
        loss = rwkv4.loss_fn(logits, targets, l2wrap=True)
        res[kind] = (logits, torch.autograd.grad(loss, leaves))
    d = maxdiff(res["seq"][0], res["fast"][0])
    dg = max(maxdiff(a, b) for a, b in zip(res["seq"][1], res["fast"][1]))
    assert d < 1e-13 and dg < 1e-12, f"model seq vs fast: logits {d}, grads {dg}"
    print(f"model with fast WKV == seq WKV: logits maxdiff {d:.3g}, grads maxdiff {dg:.3g}")


def test_l2wrap():
    g = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 3, 5, generator=g, dtype=D, requires_grad=True)
    targets = torch.randint(0, 5, (2, 3), generator=g)
    g0 = torch.autograd.grad(rwkv4.loss_fn(logits, targets) * 2.0, logits)[0]
    l1 = rwkv4.loss_fn(logits, targets, l2wrap=True)
    assert l1.item() == rwkv4.loss_fn(logits, targets).item()
    g1 = torch.autograd.grad(l1 * 2.0, logits)[0]
    extra = l2wrap_extra(logits)  # not multiplied by the incoming 2.0
    assert maxdiff(g1, g0 + extra) < 1e-15
    print("L2Wrap gradient: ok")


def test_lr_schedule():
    want_end = 1e-3
    lrs = [rwkv4.lr_at(s, 6e-3, 1e-3, 3, 10) for s in range(10)]
    assert abs(lrs[0] - 6e-3 * 0.2) < 1e-18
    assert abs(lrs[-1] - want_end) < 1e-15, lrs
    print("lr schedule: " + " ".join(f"{x:.6g}" for x in lrs))


if __name__ == "__main__":
    run_tests(globals())
