"""Writes the RWKV-5.2 (x052) and RWKV-6 (x060) golden files the Go tests compare against.

    /usr/bin/python3 reference/gen_golden6.py

model/testdata/golden5_{f32,f64}.safetensors (x052), golden6_{f32,f64}.safetensors (x060)
    forward/backward of the tiny model (same weights, computed in float32 resp. float64):
    logits, loss, every parameter gradient with and without L2Wrap, and a run from a random
    initial state (final state, every parameter gradient, the initial state's gradient)
train/testdata/adamw5_golden.safetensors (x052), adamw6_golden.safetensors (x060)
    6 AdamW steps (float32) with RWKV-LM's v5/v6 recipe (each tensor's lr multiplier and weight
    decay stored in parameter order as groups/lr_mult, groups/weight_decay) (layerwise lr groups, weight decay on
    >= 2-D tensors outside them, betas (0.9, 0.99), eps 1e-8, clipping 1.0, L2Wrap, cosine
    schedule with the 0.01 + 0.99 step/warmup warmup)

Deterministic: seeds fixed, one thread, sequential WKV; rerunning gives byte-identical files.
"""
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv6  # noqa: E402
from gen_golden import (adamw_run, deterministic_torch, make_matrix_state, model_outputs,  # noqa: E402
                        write_adamw_golden, write_model_golden)

# RWKV_GOLDEN_ROOT redirects the output tree (the Go test that checks the committed files are current).
ROOT = os.environ.get("RWKV_GOLDEN_ROOT") or os.path.dirname(HERE)
SEED = 20261216
# n_embd 64 with head_size 16 gives four heads, so the per-head code (GroupNorm, u, the WKV
# state) is tested across head boundaries. V, C, F and the two LoRA widths all differ, so a
# transposed or swapped matrix fails on its shape. T = 17 is one 16-step chunk plus one.
# The sizes keep each file under 3 MB.
CFG = dict(n_layer=2, n_embd=64, head_size=16, vocab_size=40, dim_ffn=96, B=2, T=17)
LORA6 = dict(D_mix=4, D_decay=8)
ADAMW = dict(steps=6, lr_init=4e-3, lr_final=1e-3, warmup_steps=2, beta1=0.9, beta2=0.99,
             eps=1e-8, weight_decay=0.1, grad_clip=1.0)
FILES = {"x052": ("golden5", "adamw5_golden"), "x060": ("golden6", "adamw6_golden")}
# Per-arch seed offsets (weights, tokens and state: SEED_OFFSET; the AdamW batches:
# ADAMW_BATCHES). AdamW with eps 1e-8 amplifies the rounding of gradient elements near 1e-8
# (step 1's update is lr*g/(|g|+eps)), and float32 gradients of that size are mostly rounding:
# the x060 offsets were picked so that PyTorch's unvectorised kernels move no weight by more
# than 0.005 lr (other choices moved one by 0.05 to 0.4 lr, or step 6's gradient norm by 4e-5).
SEED_OFFSET = {"x052": 0, "x060": 17}
ADAMW_BATCHES = {"x052": 2, "x060": 4}


def shapes(arch):
    c = CFG
    return rwkv6.param_shapes(arch, c["n_layer"], c["n_embd"], c["vocab_size"], c["head_size"],
                              c["dim_ffn"], LORA6["D_mix"], LORA6["D_decay"])


# ----------------------------------------------------------------------------- weights


def make_params(arch, seed=SEED):
    """Non-degenerate random weights, generated in float64.

    Linears [out,in] ~ N(0, 1/in) (also att.output, ffn.receptance and ffn.value, zero at
    init); emb ~ N(0,1); LoRA first matrices [C,D] ~ N(0, 1/C), second ones ~ N(0, 0.25/D);
    time_mix/time_maa/time_faaaa = the RWKV-LM init (rwkv6.init_params) + N(0, 0.1^2);
    time_decay = init + N(0, 0.5^2); LN/GroupNorm weights init + N(0, 0.1^2), biases
    N(0, 0.1^2). No tensor is zero, so every gradient is non-trivial."""
    c = CFG
    g = torch.Generator().manual_seed(seed)
    base = rwkv6.init_params(arch, c["n_layer"], c["n_embd"], c["vocab_size"], c["head_size"],
                             c["dim_ffn"], LORA6["D_mix"], LORA6["D_decay"], seed=seed,
                             dtype=torch.float64)
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    p = {}
    for name, shape in shapes(arch).items():
        last = name.rsplit(".", 1)[-1]
        if name == "emb.weight":
            t = randn(*shape)
        elif name.endswith(".bias"):
            t = 0.1 * randn(*shape)
        elif name.endswith(("ln0.weight", "ln1.weight", "ln2.weight", "ln_x.weight")) or \
                name == "ln_out.weight":
            t = base[name] + 0.1 * randn(*shape)
        elif name.endswith(".weight"):  # linear [out, in]
            t = randn(*shape) / shape[1] ** 0.5
        elif last in ("time_maa_w1", "time_decay_w1"):
            t = randn(*shape) / shape[0] ** 0.5
        elif last in ("time_maa_w2", "time_decay_w2"):
            t = 0.5 * randn(*shape) / shape[-2] ** 0.5
        elif last == "time_decay":
            t = base[name] + 0.5 * randn(*shape)
        else:  # time_mix_*, time_maa_*, time_faaaa
            t = base[name] + 0.1 * randn(*shape)
        assert tuple(t.shape) == tuple(shape), name
        p[name] = t
    return p


# ----------------------------------------------------------------------------- goldens


def model_golden(dtype, params64, tokens, targets, state64):
    out = model_outputs(rwkv6, dtype, params64, tokens, targets, state64)
    for n, g in out:
        if n.startswith("grad"):
            assert g.abs().max() > 0, f"{n}: all-zero gradient"
    return out


def adamw_golden(params64, batches_tokens, batches_targets):
    a = ADAMW

    def group_of(n, t):
        mult, decays = rwkv6.param_group(n, t)
        return mult, a["weight_decay"] if decays else 0.0

    def groups_out(groups):
        return [("groups/lr_mult", torch.tensor([gr["lr_mult"] for gr in groups], dtype=torch.float64)),
                ("groups/weight_decay", torch.tensor([gr["weight_decay"] for gr in groups], dtype=torch.float64))]

    return adamw_run(rwkv6, a, params64, batches_tokens, batches_targets, group_of, groups_out)


def meta_model(arch):
    m = {**CFG, "arch": arch, "seed": SEED + SEED_OFFSET[arch], "torch_version": torch.__version__,
         "param_order": "RWKV-LM state_dict order (reference/rwkv6.py param_shapes)",
         "wkv": "sequential WKV-5/6 loop, autograd (reference/rwkv6.py wkv6_seq)",
         "wkv_state": "[B,H,N,N] rows = value index i, columns = key index j; "
                      "y_t[i] = sum_j r_t[j] (u_j k_t[j] v_t[i] + S_{t-1}[i][j]); "
                      "S_t[i][j] = d_t[j] S_{t-1}[i][j] + k_t[j] v_t[i]",
         "loss": "mean cross-entropy over B*T; grad_l2wrap adds RWKV-LM L2Wrap (1e-4/(B*T))",
         "layer_norm_eps": "1e-5", "head_size_divisor": "8"}
    if arch == "x052":
        m["decay"] = "d = exp(-exp(att.time_decay)), [H,N], the same for every token"
        m["group_norm"] = "ln_x(y / 8), GroupNorm(H, C) eps 1e-5 (= GroupNorm(y) eps 64e-5)"
        m["token_shift"] = "x*time_mix + x_prev*(1 - time_mix)"
    else:
        m.update(LORA6)
        m["decay"] = ("d_t = exp(-exp(time_decay + tanh(xw @ time_decay_w1) @ time_decay_w2)), "
                      "xw = x + (x_prev - x)*(time_maa_w + mw)")
        m["group_norm"] = "ln_x(y), GroupNorm(H, C) eps 64e-5"
        m["token_shift"] = ("x + (x_prev - x)*(time_maa_* + m_*), [mw,mk,mv,mr,mg] = "
                            "tanh((x + (x_prev - x)*time_maa_x) @ time_maa_w1) as [5,M] bmm time_maa_w2")
    return m


def main():
    deterministic_torch(SEED)
    L, C, N, V, B, T = (CFG[k] for k in ("n_layer", "n_embd", "head_size", "vocab_size", "B", "T"))
    for arch in ("x052", "x060"):
        seed = SEED + SEED_OFFSET[arch]
        mfile, afile = FILES[arch]
        params64 = make_params(arch, seed=seed)
        g = torch.Generator().manual_seed(seed + 1)
        tokens = torch.randint(0, V, (B, T), generator=g)
        targets = torch.randint(0, V, (B, T), generator=g)
        state64 = make_matrix_state(L, B, C, N, g)
        for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
            out = model_golden(dtype, params64, tokens, targets, state64)
            path = os.path.join(ROOT, "model", "testdata", f"{mfile}_{tag}.safetensors")
            write_model_golden(ROOT, path, out, {**meta_model(arch), "dtype": "F64" if tag == "f64" else "F32"})

        g = torch.Generator().manual_seed(seed + ADAMW_BATCHES[arch])
        S = ADAMW["steps"]
        btok = torch.randint(0, V, (S, B, T), generator=g)
        btgt = torch.randint(0, V, (S, B, T), generator=g)
        out, norms = adamw_golden(params64, btok, btgt)
        assert max(norms) > ADAMW["grad_clip"], f"clipping never active: {norms}"
        meta = {**meta_model(arch), "dtype": "F32", **{k: repr(v) for k, v in ADAMW.items()},
                "optimizer": "torch.optim.AdamW (decoupled weight decay, bias correction), one param "
                             "group per tensor, lr = schedule * lr_mult",
                "lr_mult_rule": "RWKV-LM v5 configure_optimizers, layerwise_lr 1, my_pile_stage 1: "
                                "'_w1'/'_w2' in name -> 1; 'time_mix'/'time_maa' -> 1; 'time_decay'/"
                                "'time_daaaa' -> 2; 'time_faaaa' -> 1; 'time_first' -> 3; else 1",
                "weight_decay_rule": "0.1 for tensors outside the named groups above with "
                                     "tensor.squeeze().dim() >= 2, else 0",
                "clip": "torch.nn.utils.clip_grad_norm_(params, 1.0): coef = 1.0/(norm+1e-6), clamped to 1",
                "schedule": "cosine_v7 (RWKV-LM v5 trainer with my_exit_tokens > 0, in steps): "
                            "progress=clamp((step-warmup)/(steps-warmup),0,1); f=lr_final/lr_init; "
                            "lr=lr_init*((0.5+f/2)+(0.5-f/2)*cos(pi*progress)); "
                            "if step<warmup: lr*=0.01+0.99*step/warmup; step from 0",
                "loss": "mean cross-entropy with L2Wrap"}
        path = os.path.join(ROOT, "train", "testdata", f"{afile}.safetensors")
        write_adamw_golden(ROOT, path, out, meta)


if __name__ == "__main__":
    main()
