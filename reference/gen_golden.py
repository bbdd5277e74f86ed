"""Writes the golden files the Go tests compare against.

    /usr/bin/python3 reference/gen_golden.py

model/testdata/golden_f32.safetensors, model/testdata/golden_f64.safetensors
    forward/backward of the tiny model (same weights, computed in float32 resp. float64)
train/testdata/adamw_golden.safetensors
    10 AdamW steps (float32) with clipping, layerwise lr, weight decay, L2Wrap, lr schedule

Deterministic: seeds fixed, one thread, sequential WKV; rerunning gives byte-identical files.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import rwkv4  # noqa: E402

# RWKV_GOLDEN_ROOT redirects the output tree (the Go test that checks the committed files are current).
ROOT = os.environ.get("RWKV_GOLDEN_ROOT") or os.path.dirname(HERE)
SEED = 20241127
TORCH_PINNED = "1.13.0a0"  # Debian python3-torch 1.13; other versions may change the last bits
CFG = dict(n_layer=2, n_embd=32, vocab_size=64, dim_ffn=128, B=2, T=16)
ADAMW = dict(steps=10, lr_init=6e-3, lr_final=1e-3, warmup_steps=3, beta1=0.9, beta2=0.99,
             eps=1e-8, weight_decay=0.1, grad_clip=1.0, lr_mult_time_decay=2.0,
             lr_mult_time_first=3.0)


# ----------------------------------------------------------------------------- safetensors


_DT = {torch.float32: ("F32", "<f4"), torch.float64: ("F64", "<f8"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, metadata):
    """tensors: list of (name, tensor) written in this order, contiguous, no gaps.
    Header: __metadata__ first, then tensors in order; padded with spaces to a multiple of 8."""
    header = {"__metadata__": {k: str(v) for k, v in metadata.items()}}
    blobs, off = [], 0
    for name, t in tensors:
        t = t.detach().contiguous()
        code, npdt = _DT[t.dtype]
        b = t.numpy().astype(npdt, copy=False).tobytes(order="C")
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """Minimal reader (for the self-check at the end)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    np_dt = {"F32": "<f4", "F64": "<f8", "I64": "<i8"}
    out = {}
    for name, h in header.items():
        b, e = h["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[b:e], dtype=np_dt[h["dtype"]]).copy()
                                     .reshape(h["shape"]))
    return out, meta


# ----------------------------------------------------------------------------- weights


def make_params(n_layer, n_embd, vocab, dim_ffn, seed=SEED, dtype=torch.float64):
    """Non-degenerate random weights, generated in float64 then cast.

    Matrices ~ N(0, 1/in); emb ~ N(0, 1); time_* from the RWKV-LM init formulas (REFERENCE §3)
    plus N(0, 0.1^2) noise (mix: 0.05); LN weight 1 + N(0, 0.1^2), bias N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    C, L = n_embd, n_layer
    randn = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    ddd = torch.arange(C, dtype=torch.float64) / C
    p = {}
    for name, shape in rwkv4.param_shapes(n_layer, n_embd, vocab, dim_ffn).items():
        if name == "emb.weight":
            t = randn(*shape)
        elif name.endswith("ln0.weight") or name.endswith("ln1.weight") or \
                name.endswith("ln2.weight") or name == "ln_out.weight":
            t = 1 + 0.1 * randn(*shape)
        elif name.endswith(".bias"):
            t = 0.1 * randn(*shape)
        elif name.endswith(".weight"):  # linear [out, in]
            t = randn(*shape) / math.sqrt(shape[1])
        else:
            i = int(name.split(".")[1])
            r01 = i / (L - 1) if L > 1 else 0.0
            r1a0 = 1.0 - i / L
            kind = name.split(".")[-1]
            if kind == "time_decay":
                c = torch.arange(C, dtype=torch.float64)
                t = -5 + 8 * (c / (C - 1)) ** (0.7 + 1.3 * r01) + 0.1 * randn(C)
            elif kind == "time_first":
                c = torch.arange(C, dtype=torch.float64)
                t = math.log(0.3) + 0.5 * (((c + 1) % 3) - 1) + 0.1 * randn(C)
            else:
                expo = {"att.time_mix_k": r1a0, "att.time_mix_v": r1a0, "att.time_mix_r": 0.5 * r1a0,
                        "ffn.time_mix_k": r1a0, "ffn.time_mix_r": r1a0}[name.split(".", 2)[2]]
                t = ddd ** expo
                if name.endswith("att.time_mix_v"):
                    t = t + 0.3 * r01
                t = (t + 0.05 * randn(C)).view(1, 1, C)
        assert tuple(t.shape) == tuple(shape), name
        p[name] = t
    return {k: v.to(dtype) for k, v in p.items()}


def make_state(L, B, C, g):
    """Random non-trivial initial state, float64, each [L,B,C]."""
    randn = lambda: torch.randn(L, B, C, generator=g, dtype=torch.float64)
    att_x = randn()
    aa = randn()
    bb = 0.5 + 1.5 * torch.rand(L, B, C, generator=g, dtype=torch.float64)
    pp = randn()
    ffn_x = randn()
    return {"att_x": att_x, "aa": aa, "bb": bb, "pp": pp, "ffn_x": ffn_x}


def deterministic_torch(seed):
    """One thread, deterministic kernels, torch's global seed; warns when torch is not the
    version the goldens were pinned with."""
    if torch.__version__ != TORCH_PINNED:
        print(f"warning: torch {torch.__version__}, goldens were pinned with {TORCH_PINNED}; "
              "the files may not be byte-identical", file=sys.stderr)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)


def make_matrix_state(L, B, C, N, g):
    """Random non-trivial x052/x060/x070 initial state, float64: att_x, ffn_x [L,B,C] ~ N(0,1)
    (like an LN output), wkv [L,B,H,N,N] ~ N(0, 0.5^2)."""
    H = C // N
    return {"att_x": torch.randn(L, B, C, generator=g, dtype=torch.float64),
            "wkv": 0.5 * torch.randn(L, B, H, N, N, generator=g, dtype=torch.float64),
            "ffn_x": torch.randn(L, B, C, generator=g, dtype=torch.float64)}


def split_state_keys(keys, st):
    """{key: [L,...]} -> list of per-layer dicts of views (autograd flows to st)."""
    return [{k: st[k][i] for k in keys} for i in range(st[keys[0]].shape[0])]


def stack_state_keys(keys, layers):
    return {k: torch.stack([s[k] for s in layers]) for k in keys}


def model_outputs(rwkv, dtype, params64, tokens, targets, state64, grad=torch.autograd.grad):
    """The model golden of a reference module rwkv (rwkv4, rwkv6, rwkv7): the parameters in
    dtype, tokens, targets, logits, loss and every gradient, the gradients with L2Wrap, and a run
    from state64 (state in and out, logits, loss, the gradients of the parameters and the initial
    state), as (name, tensor) pairs in file order. grad is torch.autograd.grad or a stand-in."""
    p = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in params64.items()}
    names = list(p)
    keys = rwkv.STATE_KEYS
    out = [("param/" + n, p[n]) for n in names]
    out += [("tokens", tokens), ("targets", targets)]

    logits, _ = rwkv.forward(p, tokens)
    loss = rwkv.loss_fn(logits, targets)
    grads = grad(loss, [p[n] for n in names])
    out += [("logits", logits), ("loss", loss.reshape(1))]
    out += [("grad/" + n, g) for n, g in zip(names, grads)]

    logits2, _ = rwkv.forward(p, tokens)
    loss2 = rwkv.loss_fn(logits2, targets, l2wrap=True)
    grads = grad(loss2, [p[n] for n in names])
    out += [("grad_l2wrap/" + n, g) for n, g in zip(names, grads)]

    st = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in state64.items()}
    logits3, st_out = rwkv.forward(p, tokens, split_state_keys(keys, st))
    loss3 = rwkv.loss_fn(logits3, targets)
    grads = grad(loss3, [p[n] for n in names] + [st[k] for k in keys])
    out += [("state_in/" + k, st[k]) for k in keys]
    so = stack_state_keys(keys, st_out)
    out += [("state_out/" + k, so[k]) for k in keys]
    out += [("logits_state", logits3), ("loss_state", loss3.reshape(1))]
    out += [("grad_state/" + n, g) for n, g in zip(names, grads[:len(names)])]
    out += [("grad_state_in/" + k, g) for k, g in zip(keys, grads[len(names):])]
    return out


def adamw_run(rwkv, a, params64, batches_tokens, batches_targets, group_of, extra=None):
    """a["steps"] steps of torch.optim.AdamW from params64 (float32, one param group per tensor,
    group_of(name, tensor) -> (lr_mult, weight_decay), lr = rwkv.lr_at * lr_mult, loss with
    L2Wrap, clipping to a["grad_clip"]). Returns the golden's (name, tensor) pairs (the
    parameters before, after the first step and at the end, the batches, extra(groups)'s pairs
    when extra is given, lr, loss, grad_norm per step) and the gradient norms."""
    p = {k: v.detach().to(torch.float32).clone().requires_grad_(True) for k, v in params64.items()}
    names = list(p)
    groups = []
    for n in names:
        mult, wd = group_of(n, p[n])
        groups.append({"params": [p[n]], "lr_mult": mult, "weight_decay": wd, "name": n})
    opt = torch.optim.AdamW(groups, lr=a["lr_init"], betas=(a["beta1"], a["beta2"]), eps=a["eps"],
                            weight_decay=0.0, amsgrad=False)
    out = [("param/" + n, p[n].detach().clone()) for n in names]
    lrs, losses, norms = [], [], []
    after1 = None
    for step in range(a["steps"]):
        lr = rwkv.lr_at(step, a["lr_init"], a["lr_final"], a["warmup_steps"], a["steps"])
        for gr in opt.param_groups:
            gr["lr"] = lr * gr["lr_mult"]
        opt.zero_grad(set_to_none=True)
        logits, _ = rwkv.forward(p, batches_tokens[step])
        loss = rwkv.loss_fn(logits, batches_targets[step], l2wrap=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p[n] for n in names], a["grad_clip"])
        opt.step()
        lrs.append(lr)
        losses.append(loss.item())
        norms.append(norm.item())
        if step == 0:
            after1 = [("after1/" + n, p[n].detach().clone()) for n in names]
    out += after1
    out += [("final/" + n, p[n].detach().clone()) for n in names]
    out += [("tokens", batches_tokens), ("targets", batches_targets)]
    if extra is not None:
        out += extra(groups)
    out += [("lr", torch.tensor(lrs, dtype=torch.float64)),
            ("loss", torch.tensor(losses, dtype=torch.float64)),
            ("grad_norm", torch.tensor(norms, dtype=torch.float64))]
    return out, norms


def write_model_golden(root, path, out, meta):
    """Writes a model golden and says so."""
    write_safetensors(path, out, meta)
    print(f"wrote {os.path.relpath(path, root)}: {len(out)} tensors, loss "
          f"{dict(out)['loss'].item():.10g}, loss_state {dict(out)['loss_state'].item():.10g}")


def write_adamw_golden(root, path, out, meta):
    """Writes an AdamW golden, prints its lr, loss and grad_norm, and checks that it reads back
    to what was written."""
    write_safetensors(path, out, meta)
    d = dict(out)
    print(f"wrote {os.path.relpath(path, root)}: {len(out)} tensors")
    print("  lr        " + " ".join(f"{x:.4g}" for x in d["lr"].tolist()))
    print("  loss      " + " ".join(f"{x:.4f}" for x in d["loss"].tolist()))
    print("  grad_norm " + " ".join(f"{x:.4f}" for x in d["grad_norm"].tolist()))
    back, m = read_safetensors(path)
    assert m["torch_version"] == torch.__version__
    for n, t in out:
        assert torch.equal(back[n], t.detach().to(back[n].dtype)), n


# ----------------------------------------------------------------------------- goldens


def model_golden(dtype, params64, tokens, targets, state64):
    return model_outputs(rwkv4, dtype, params64, tokens, targets, state64)


def adamw_golden(params64, batches_tokens, batches_targets):
    a = ADAMW

    def group_of(n, t):
        mult = a["lr_mult_time_decay"] if n.endswith("att.time_decay") else \
            a["lr_mult_time_first"] if n.endswith("att.time_first") else 1.0
        return mult, a["weight_decay"] if t.squeeze().dim() >= 2 else 0.0

    return adamw_run(rwkv4, a, params64, batches_tokens, batches_targets, group_of)


def main():
    deterministic_torch(SEED)
    L, C, V, Fd, B, T = (CFG[k] for k in ("n_layer", "n_embd", "vocab_size", "dim_ffn", "B", "T"))
    params64 = make_params(L, C, V, Fd, seed=SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    tokens = torch.randint(0, V, (B, T), generator=g)
    targets = torch.randint(0, V, (B, T), generator=g)
    state64 = make_state(L, B, C, g)
    meta_common = {**CFG, "seed": SEED, "torch_version": torch.__version__,
                   "wkv": "sequential stable recurrence, autograd (reference/rwkv4.py wkv_seq)",
                   "loss": "mean cross-entropy over B*T; grad_l2wrap adds RWKV-LM L2Wrap (1e-4/(B*T))",
                   "layer_norm_eps": "1e-5"}
    for dtype, tag in ((torch.float64, "f64"), (torch.float32, "f32")):
        out = model_golden(dtype, params64, tokens, targets, state64)
        path = os.path.join(ROOT, "model", "testdata", f"golden_{tag}.safetensors")
        write_model_golden(ROOT, path, out, {**meta_common, "dtype": "F64" if tag == "f64" else "F32"})

    g = torch.Generator().manual_seed(SEED + 2)
    S = ADAMW["steps"]
    btok = torch.randint(0, V, (S, B, T), generator=g)
    btgt = torch.randint(0, V, (S, B, T), generator=g)
    out, norms = adamw_golden(params64, btok, btgt)
    assert max(norms) > ADAMW["grad_clip"], f"clipping never active: {norms}"
    assert min(norms) < ADAMW["grad_clip"] or True
    meta = {**CFG, "seed": SEED, "torch_version": torch.__version__, "dtype": "F32",
            **{k: repr(v) for k, v in ADAMW.items()},
            "optimizer": "torch.optim.AdamW, one param group per tensor, lr = schedule * lr_mult",
            "weight_decay_rule": "0.1 if tensor.squeeze().dim() >= 2 else 0",
            "clip": "torch.nn.utils.clip_grad_norm_(params, 1.0): coef = 1.0/(norm+1e-6), clamped to 1",
            "schedule": "progress=clamp((step-warmup+1)/(steps-warmup),0,1); "
                        "lr=lr_init*exp(ln(lr_final/lr_init)*progress); "
                        "if step<warmup: lr*=0.2+0.8*step/warmup; step from 0",
            "loss": "mean cross-entropy with L2Wrap"}
    path = os.path.join(ROOT, "train", "testdata", "adamw_golden.safetensors")
    write_adamw_golden(ROOT, path, out, meta)


if __name__ == "__main__":
    main()
