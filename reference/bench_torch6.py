"""PyTorch peer of `rwkv-train bench` for RWKV-5.2 (x052) and RWKV-6 (x060): full training steps
(forward, backward, global-norm clipping, AdamW with RWKV-LM's v5/v6 layerwise-lr groups) of
the reference model (rwkv6.py) with the fastest WKV-5/6 we have in PyTorch on CPU: by default
rwkv6.wkv6_chunked (chunks of 16, pairwise decays, autograd through it); `--wkv fast` is the
step-by-step loop with the hand-written backward (RWKV-LM's own code has no CPU WKV: its
kernels are CUDA only, so a loop is what a plain port would run), `--wkv seq` the loop with
autograd through it. Denormals flushed, a fixed number of threads. Prints one JSON object
(the same fields as bench_torch.py plus `arch`, `wkv`, `head_size`).

    /usr/bin/python3 reference/bench_torch6.py --arch x060 --layers 6 --embd 512 --vocab 256 --ctx 256 --batch 8 --steps 5
    /usr/bin/python3 reference/bench_torch6.py --arch x052 --layers 12 --embd 768 --vocab 65536 --ctx 512 --batch 1

Weights are random float32 (drawn directly in float32); dim_ffn int(3.5 C)//32*32, head size
64 and the x060 LoRA widths 32/64 unless given (RWKV-LM's defaults).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv6  # noqa: E402
from bench_torch import bench_parser, bench_setup, grouped_adamw, peak_rss_mib, time_training  # noqa: E402


def bench_params(arch, L, C, V, N, Fd, M, W, g):
    """Random float32 weights with sane magnitudes (speed does not depend on the values)."""
    p = {}
    for name, shape in rwkv6.param_shapes(arch, L, C, V, N, Fd, M, W).items():
        last = name.rsplit(".", 1)[-1]
        if name.endswith(".weight") and len(shape) == 2:
            t = torch.randn(shape, generator=g) / shape[1] ** 0.5
        elif last in ("time_maa_w1", "time_decay_w1", "time_maa_w2", "time_decay_w2"):
            t = 0.1 * torch.randn(shape, generator=g) / shape[-2] ** 0.5
        elif name.endswith(".bias"):
            t = torch.zeros(shape)
        elif name.endswith(".weight"):
            t = torch.ones(shape)
        elif last == "time_decay":
            t = -3.0 + torch.randn(shape, generator=g)
        else:  # time_mix_*, time_maa_*, time_faaaa
            t = 0.5 + 0.1 * torch.randn(shape, generator=g)
        p[name] = t.requires_grad_(True)
    return p


def main():
    ap = bench_parser()
    ap.add_argument("--arch", default="x060", choices=rwkv6.ARCHS)
    ap.add_argument("--head-size", type=int, default=rwkv6.HEAD_SIZE)
    ap.add_argument("--ffn", type=int, default=0, help="dim_ffn; 0 means int(3.5*embd)//32*32")
    ap.add_argument("--d-mix", type=int, default=rwkv6.D_MIX_LORA, help="x060 time_maa LoRA width")
    ap.add_argument("--d-decay", type=int, default=rwkv6.D_DECAY_LORA, help="x060 time_decay LoRA width")
    ap.add_argument("--wkv", default="chunked", choices=sorted(rwkv6.WKV_FNS))
    a = ap.parse_args()
    bench_setup(a)
    g = torch.Generator().manual_seed(1)
    Fd = a.ffn or rwkv6.default_ffn(a.embd)
    params = bench_params(a.arch, a.layers, a.embd, a.vocab, a.head_size, Fd, a.d_mix, a.d_decay, g)
    opt = grouped_adamw(rwkv6, params, eps=1e-8)
    gd = torch.Generator().manual_seed(2)
    tps, sps = time_training(rwkv6, params, opt, a, gd, a.wkv)
    print(json.dumps({"impl": "pytorch " + torch.__version__, "arch": a.arch, "wkv": a.wkv,
                      "head_size": a.head_size, "threads": a.threads, "tokens_per_sec": tps,
                      "step_seconds": sps, "peak_rss_mib": peak_rss_mib()}))


if __name__ == "__main__":
    main()
