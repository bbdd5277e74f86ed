"""Writes the RWKV-7 (x070) golden files the Go tests compare against.

    /usr/bin/python3 reference/gen_golden7.py

model/testdata/golden7_f32.safetensors, model/testdata/golden7_f64.safetensors
    forward/backward of the tiny x070 model (same weights, computed in float32 resp. float64),
    plus the WKV-7 op alone on random inputs
train/testdata/adamw7_golden.safetensors
    6 AdamW steps (float32) with the x070 recipe: w0 at 2x lr, weight decay only on >=2-D
    `.weight`, betas (0.9, 0.99), eps 1e-18, clipping 1.0, L2Wrap, cosine schedule with warmup

Deterministic: seeds fixed, one thread, sequential WKV-7; rerunning gives byte-identical files.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv7  # noqa: E402
from gen_golden import (adamw_run, deterministic_torch, make_matrix_state, model_outputs,  # noqa: E402
                        write_adamw_golden, write_model_golden)

# RWKV_GOLDEN_ROOT redirects the output tree (the Go test that checks the committed files are current).
ROOT = os.environ.get("RWKV_GOLDEN_ROOT") or os.path.dirname(HERE)
SEED = 20261201
# n_embd 128 with head_size 64 gives two heads, so the per-head code (L2 normalisation of
# kappa, GroupNorm, r_k bonus, the WKV state) is tested across a head boundary; distinct LoRA
# ranks make a swapped LoRA matrix fail on its shape. T = 17 is one 16-step chunk plus one.
CFG = dict(n_layer=2, n_embd=128, head_size=64, vocab_size=64, dim_ffn=512,
           D_decay=16, D_aaa=24, D_mv=8, D_gate=32, B=2, T=17)
ADAMW = dict(steps=6, lr_init=4e-3, lr_final=1e-3, warmup_steps=2, beta1=0.9, beta2=0.99,
             eps=1e-18, weight_decay=0.1, grad_clip=1.0, lr_mult_w0=2.0)


def ranks():
    return CFG["D_decay"], CFG["D_aaa"], CFG["D_mv"], CFG["D_gate"]


# ----------------------------------------------------------------------------- weights


def make_params(n_layer, n_embd, vocab, head_size=64, ranks_=None, seed=SEED, dtype=torch.float64,
                layer0_v=True):
    """Non-degenerate random weights, generated in float64 then cast.

    Linears [out,in] ~ N(0, 1/in); emb ~ N(0,1); LoRA first matrices [C,D] ~ N(0, 1/C), second
    [D,C] ~ N(0, 0.25/D); the [1,1,C] vectors and r_k = the RWKV-LM init (rwkv7.init_params)
    plus N(0, 0.1^2); LN/GroupNorm weights init + N(0, 0.1^2), biases N(0, 0.1^2). No tensor is
    zero, so every gradient is non-trivial (except layer 0's unused v0/v1/v2)."""
    g = torch.Generator().manual_seed(seed)
    base = rwkv7.init_params(n_layer, n_embd, vocab, head_size, ranks_, layer0_v, seed=seed,
                             dtype=torch.float64)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    p = {}
    for name, shape in rwkv7.param_shapes(n_layer, n_embd, vocab, head_size, None, ranks_,
                                          layer0_v).items():
        last = name.rsplit(".", 1)[-1]
        if name == "emb.weight":
            t = randn(*shape)
        elif name.endswith(".bias"):
            t = 0.1 * randn(*shape)
        elif name.endswith("ln0.weight") or name.endswith("ln1.weight") or \
                name.endswith("ln2.weight") or name.endswith("ln_x.weight") or name == "ln_out.weight":
            t = base[name] + 0.1 * randn(*shape)
        elif name.endswith(".weight"):  # linear [out, in]
            t = randn(*shape) / shape[1] ** 0.5
        elif last in ("w1", "a1", "v1", "g1"):
            t = randn(*shape) / shape[0] ** 0.5
        elif last in ("w2", "a2", "v2", "g2"):
            t = 0.5 * randn(*shape) / shape[0] ** 0.5
        else:  # x_*, w0, a0, v0, k_k, k_a, r_k, ffn.x_k
            t = base[name] + 0.1 * randn(*shape)
        assert tuple(t.shape) == tuple(shape), name
        p[name] = t
    return {k: v.to(dtype) for k, v in p.items()}


def make_wkv_inputs(B, T, C, N, g):
    """WKV-7 op inputs as the model produces them: r, k, v ~ N(0,1); w~ ~ N(0, 3^2) with the
    first head's channel 0 at -30 and channel 1 at +30 (decay at both ends of (0.545, 1));
    a = -kappa^, b = kappa^ * sigmoid(N(0,1)) with kappa^ unit per head; s0 ~ N(0, 0.5^2);
    dy, dsT ~ N(0,1) the incoming gradients."""
    H = C // N
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    r, k, v = randn(B, T, C), randn(B, T, C), randn(B, T, C)
    w = 3 * randn(B, T, C)
    w[..., 0] = -30.0
    w[..., 1] = 30.0
    kap = torch.nn.functional.normalize(randn(B, T, H, N), dim=-1).view(B, T, C)
    a = -kap
    b = kap * torch.sigmoid(randn(B, T, C))
    s0 = 0.5 * randn(B, H, N, N)
    return dict(r=r, w=w, k=k, v=v, a=a, b=b, s0=s0, dy=randn(B, T, C), dsT=randn(B, H, N, N))


# ----------------------------------------------------------------------------- goldens


def grad(loss, leaves):
    """torch.autograd.grad, with zeros for leaves the loss does not use (layer 0's v0/v1/v2)."""
    gs = torch.autograd.grad(loss, leaves, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(leaves, gs)]


def model_golden(dtype, params64, tokens, targets, state64, wkv64):
    out = model_outputs(rwkv7, dtype, params64, tokens, targets, state64, grad=grad)

    # the WKV-7 op alone: y, sT and the gradients of L = sum(y*dy) + sum(sT*dsT)
    x = {k: v.to(dtype) for k, v in wkv64.items()}
    ins = {k: x[k].clone().requires_grad_(True) for k in ("r", "w", "k", "v", "a", "b", "s0")}
    y, sT = rwkv7.wkv7_seq(*ins.values())
    gr = torch.autograd.grad((y * x["dy"]).sum() + (sT * x["dsT"]).sum(), list(ins.values()))
    out += [("wkv/" + k, t) for k, t in ins.items()]
    out += [("wkv/dy", x["dy"]), ("wkv/dsT", x["dsT"]), ("wkv/y", y), ("wkv/sT", sT)]
    out += [("wkv/grad_" + k, t) for k, t in zip(ins, gr)]
    return out


def adamw_golden(params64, batches_tokens, batches_targets):
    a = ADAMW

    def group_of(n, t):
        mult, decays = rwkv7.param_group(n, t)
        return mult, a["weight_decay"] if decays else 0.0

    return adamw_run(rwkv7, a, params64, batches_tokens, batches_targets, group_of)


def main():
    deterministic_torch(SEED)
    L, C, N, V, B, T = (CFG[k] for k in ("n_layer", "n_embd", "head_size", "vocab_size", "B", "T"))
    params64 = make_params(L, C, V, N, ranks(), seed=SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    state64 = make_matrix_state(L, B, C, N, g)
    wkv64 = make_wkv_inputs(B, T, C, N, g)
    meta_common = {
        **CFG, "arch": "x070", "seed": SEED, "torch_version": torch.__version__,
        "layer0_v": "true (layer 0 carries the unused v0/v1/v2, as RWKV-LM state dicts do)",
        "param_order": "RWKV-LM state_dict order (reference/rwkv7.py param_shapes)",
        "wkv": "sequential WKV-7 loop, autograd (reference/rwkv7.py wkv7_seq)",
        "decay": "d = exp(-exp(-0.5) * sigmoid(w0 + tanh(xw @ w1) @ w2))",
        "wkv_state": "[B,H,N,N] rows = value index, columns = key index; y = S r",
        "wkv_op": "wkv/*: y, sT = wkv7_seq(r, w, k, v, a, b, s0) on [B,T,C] inputs, w raw; "
                  "grad_* of sum(y*dy) + sum(sT*dsT)",
        "loss": "mean cross-entropy over B*T; grad_l2wrap adds RWKV-LM L2Wrap (1e-4/(B*T))",
        "layer_norm_eps": "1e-5", "group_norm_eps": "64e-5", "l2_normalize_eps": "1e-12"}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        out = model_golden(dtype, params64, tokens, targets, state64, wkv64)
        path = os.path.join(ROOT, "model", "testdata", f"golden7_{tag}.safetensors")
        write_model_golden(ROOT, path, out, {**meta_common, "dtype": "F64" if tag == "f64" else "F32"})

    g = torch.Generator().manual_seed(SEED + 2)
    S = ADAMW["steps"]
    btok = torch.randint(0, V, (S, B, T), generator=g)
    btgt = torch.randint(0, V, (S, B, T), generator=g)
    out, norms = adamw_golden(params64, btok, btgt)
    assert max(norms) > ADAMW["grad_clip"], f"clipping never active: {norms}"
    meta = {**CFG, "arch": "x070", "seed": SEED, "torch_version": torch.__version__, "dtype": "F32",
            **{k: repr(v) for k, v in ADAMW.items()},
            "optimizer": "torch.optim.AdamW (decoupled weight decay, bias correction), one param "
                         "group per tensor, lr = schedule * lr_mult",
            "lr_mult_rule": "2.0 if 'att.w0' in name else 1.0",
            "weight_decay_rule": "0.1 if 'att.w0' not in name and tensor.squeeze().dim() >= 2 "
                                 "and '.weight' in name else 0",
            "clip": "torch.nn.utils.clip_grad_norm_(params, 1.0): coef = 1.0/(norm+1e-6), clamped to 1",
            "schedule": "progress=clamp((step-warmup)/(steps-warmup),0,1); f=lr_final/lr_init; "
                        "lr=lr_init*((0.5+f/2)+(0.5-f/2)*cos(pi*progress)); "
                        "if step<warmup: lr*=0.01+0.99*step/warmup; step from 0",
            "loss": "mean cross-entropy with L2Wrap"}
    path = os.path.join(ROOT, "train", "testdata", "adamw7_golden.safetensors")
    write_adamw_golden(ROOT, path, out, meta)


if __name__ == "__main__":
    main()
