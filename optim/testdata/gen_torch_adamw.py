"""Writes torch_adamw_f32.bin and torch_adamw_f64.bin for TestAdamWMatchesTorchLong.

Run with Debian's /usr/bin/python3 (torch 1.13.0a0, x86-64 with AVX2):
    cd optim/testdata && /usr/bin/python3 gen_torch_adamw.py

Three tensors in RWKV-LM-style groups, torch.optim.AdamW(betas=(0.9, 0.99),
eps=1e-8), 10 steps with group lr = lr(step) * my_lr_scale. Data and grads
come from exact rational formulas that adamw_torch_test.go repeats. Each
file holds, little-endian in the tensor's dtype, for each tensor in order:
the params after 10 steps, then exp_avg, then exp_avg_sq.
"""
import struct
import torch

SHAPES = [("w", [40, 25], 0.1, 1.0), ("time_decay", [37], 0.0, 2.0), ("time_first", [1, 1, 13], 0.0, 3.0)]
POW10 = [1.0, 0.1, 0.01, 0.001]


def init(t, i):
    return ((i * 53 + t * 17) % 199 - 99) / 64.0


def grad(t, s, i):
    if (i + 3 * s + t) % 29 == 0:
        return 0.0
    return ((i * 37 + s * 101 + t * 7) % 211 - 105) / 100.0 * POW10[(i + s) % 4]


def lr(s):
    return 0.01 * (1.0 - 0.05 * s)


def run(dtype, fmt, path):
    params, groups = [], []
    for t, (name, shape, wd, scale) in enumerate(SHAPES):
        n = 1
        for d in shape:
            n *= d
        p = torch.tensor([init(t, i) for i in range(n)], dtype=dtype).reshape(shape).requires_grad_()
        params.append(p)
        groups.append({"params": [p], "weight_decay": wd, "my_lr_scale": scale})
    opt = torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for s in range(10):
        for t, p in enumerate(params):
            p.grad = torch.tensor([grad(t, s, i) for i in range(p.numel())], dtype=dtype).reshape(p.shape)
        for g in opt.param_groups:
            g["lr"] = lr(s) * g["my_lr_scale"]
        opt.step()
    with open(path, "wb") as f:
        for p in params:
            st = opt.state[p]
            for x in (p.detach(), st["exp_avg"], st["exp_avg_sq"]):
                vals = x.reshape(-1).tolist()
                f.write(struct.pack("<%d%s" % (len(vals), fmt), *vals))


run(torch.float32, "f", "torch_adamw_f32.bin")
run(torch.float64, "d", "torch_adamw_f64.bin")
print(torch.__version__)
