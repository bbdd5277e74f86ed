"""PyTorch peer of `rwkv-train bench` for RWKV-7 (x070): full training steps (forward,
backward, global-norm clipping, AdamW with the x070 groups) of the reference x070 with the
fastest WKV-7 we have in PyTorch on CPU (rwkv7.wkv7_chunked: the chunked matrix form with
chunks of 16, autograd through it; about 3x faster than the step-by-step WKV7 Function at
T = 256, H = 4, one thread), denormals flushed, a fixed number of threads. Prints one JSON
object.

    /usr/bin/python3 reference/bench_torch7.py --layers 6 --embd 512 --vocab 256 --ctx 256 --batch 8 --steps 5
    /usr/bin/python3 reference/bench_torch7.py --layers 12 --embd 768 --vocab 65536 --ctx 512 --batch 1

Weights are random float32 (drawn directly in float32, so the float64 temporaries of the golden
generator do not inflate the peak memory); LoRA ranks from rwkv7.lora_ranks (the LM7 rule).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv7  # noqa: E402
from bench_torch import bench_parser, bench_setup, grouped_adamw, peak_rss_mib, time_training  # noqa: E402


def bench_params(L, C, V, g):
    """Random float32 weights with sane magnitudes (speed does not depend on the values)."""
    p = {}
    for name, shape in rwkv7.param_shapes(L, C, V).items():
        last = name.rsplit(".", 1)[-1]
        if name.endswith(".weight") and len(shape) == 2:
            t = torch.randn(shape, generator=g) / shape[1] ** 0.5
        elif last in ("w1", "a1", "v1", "g1", "w2", "a2", "v2", "g2"):
            t = 0.1 * torch.randn(shape, generator=g) / shape[0] ** 0.5
        elif name.endswith(".bias"):
            t = torch.zeros(shape)
        elif name.endswith(".weight"):
            t = torch.ones(shape)
        else:
            t = {"w0": -2.0, "a0": 0.0, "v0": 0.0, "k_k": 0.7, "k_a": 1.0, "r_k": -0.04}.get(last, 0.5) + \
                0.1 * torch.randn(shape, generator=g)
        p[name] = t.requires_grad_(True)
    return p


def main():
    ap = bench_parser()
    ap.add_argument("--wkv", default="chunked", choices=sorted(rwkv7.WKV_FNS))
    a = ap.parse_args()
    bench_setup(a)
    g = torch.Generator().manual_seed(1)
    params = bench_params(a.layers, a.embd, a.vocab, g)
    opt = grouped_adamw(rwkv7, params, eps=1e-18)
    gd = torch.Generator().manual_seed(2)
    tps, sps = time_training(rwkv7, params, opt, a, gd, a.wkv)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "arch": "x070", "wkv": a.wkv,
                      "threads": a.threads, "tokens_per_sec": tps,
                      "step_seconds": sps, "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
