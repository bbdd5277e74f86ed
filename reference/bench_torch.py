"""PyTorch peer of `rwkv-train bench`: full training steps (forward, backward, global-norm
clipping, AdamW) of the reference RWKV-4 with the fastest WKV we have in PyTorch (rwkv4.WKV, an
autograd.Function running the sequential recurrence vectorised over (B,C) with a hand-derived
backward), denormals flushed, a fixed number of threads. Prints one JSON object.

    /usr/bin/python3 reference/bench_torch.py --layers 6 --embd 512 --vocab 256 --ctx 256 --batch 8 --steps 5
"""
import argparse
import json
import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv4  # noqa: E402
from gen_golden import make_params  # noqa: E402


def peak_rss_mib():
    """VmHWM: this process's own peak resident set (ru_maxrss would include the parent's peak,
    which Linux carries across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_parser():
    """The arguments every bench_torch*.py takes (the model size, the batch, the steps timed)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--embd", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--ctx", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    return ap


def bench_setup(a):
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)


def grouped_adamw(rwkv, params, eps):
    """AdamW (lr 1e-4, betas 0.9/0.99) with one group per tensor as rwkv.param_group says: lr
    1e-4 times its multiplier, weight decay 0.001 where it decays."""
    groups = []
    for n, t in params.items():
        mult, decays = rwkv.param_group(n, t)
        groups.append({"params": [t], "lr": 1e-4 * mult, "weight_decay": 0.001 if decays else 0.0})
    return torch.optim.AdamW(groups, lr=1e-4, betas=(0.9, 0.99), eps=eps)


def time_training(rwkv, params, opt, a, g, wkv):
    """Runs a.warmup then a.steps training steps of rwkv (forward with wkv, loss with L2Wrap,
    clipping 1.0, opt) on random batches drawn from g; returns (tokens per second, seconds per
    step) of the timed steps."""

    def step():
        x = torch.randint(0, a.vocab, (a.batch, a.ctx), generator=g)
        y = torch.randint(0, a.vocab, (a.batch, a.ctx), generator=g)
        logits, _ = rwkv.forward(params, x, wkv=wkv)
        loss = rwkv.loss_fn(logits, y, l2wrap=True)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    el = time.perf_counter() - t0
    return a.steps * a.batch * a.ctx / el, el / a.steps


def main():
    a = bench_parser().parse_args()
    bench_setup(a)
    p64 = make_params(a.layers, a.embd, a.vocab, 4 * a.embd, seed=1)
    params = {k: v.to(torch.float32).requires_grad_(True) for k, v in p64.items()}
    opt = torch.optim.AdamW(list(params.values()), lr=1e-4, betas=(0.9, 0.99), eps=1e-8, weight_decay=0)
    g = torch.Generator().manual_seed(2)
    tps, sps = time_training(rwkv4, params, opt, a, g, "fast")
    print(json.dumps({"impl": "pytorch " + torch.__version__, "threads": a.threads,
                      "tokens_per_sec": tps, "step_seconds": sps,
                      "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
