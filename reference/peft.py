"""PyTorch reference for rwkv-go's parameter-efficient fine-tuning blocks (model/op_lora.go,
model/pissa.go), written from RWKV-PEFT's definitions (NEXT-ARCH section 4.1):

  LoRA   y = x W^T + s * ((drop(x) A^T) B^T), A [r,in], B [out,r], s = alpha/r, W frozen
  PiSSA  U, S, V = torch.svd_lowrank(W, r, niter); A = diag(sqrt S) V^T; B = U diag(sqrt S);
         W_res = W - B A (scale 1, no dropout)

Reads one JSON object on stdin and writes one on stdout, float64 throughout:

  {"lora": [{"N", "in", "out", "r", "s", "p", "x", "W", "A", "B", "R", "mask" (0/1 per element
             of x, or null for no dropout)}, ...],
   "pissa": {"out", "in", "r", "niter", "W"}}

-> {"lora": [{"y", "gx", "gA", "gB", "W_has_grad"}, ...],
    "pissa": {"S", "BA", "recon_err"}}

The LoRA loss is sum(y * R); drop(x) = x * mask / (1 - p), the mask given by the caller so
that rwkv-go's seeded mask can be replayed here. Used by model/lora_test.go
(TestLoRAMatchesTorch); torch 1.13 (Debian python3-torch).
"""
import json
import sys

import torch
import torch.nn.functional as F


def lora(c):
    N, n_in, n_out, r = c["N"], c["in"], c["out"], c["r"]
    t = lambda k, *shape: torch.tensor(c[k], dtype=torch.float64).reshape(*shape)
    x = t("x", N, n_in).requires_grad_(True)
    W = t("W", n_out, n_in)  # frozen: no requires_grad, as RWKV-PEFT freezes the base
    A = t("A", r, n_in).requires_grad_(True)
    B = t("B", n_out, r).requires_grad_(True)
    R = t("R", N, n_out)
    xd = x
    if c["mask"] is not None:
        xd = x * t("mask", N, n_in) / (1 - c["p"])
    y = F.linear(x, W) + c["s"] * F.linear(F.linear(xd, A), B)
    (y * R).sum().backward()
    flat = lambda v: v.detach().flatten().tolist()
    return {"y": flat(y), "gx": flat(x.grad), "gA": flat(A.grad), "gB": flat(B.grad),
            "W_has_grad": W.grad is not None}


def pissa(c):
    W = torch.tensor(c["W"], dtype=torch.float64).reshape(c["out"], c["in"])
    torch.manual_seed(0)
    U, S, V = torch.svd_lowrank(W, q=c["r"], niter=c["niter"])
    A = torch.diag(torch.sqrt(S)) @ V.t()
    B = U @ torch.diag(torch.sqrt(S))
    W_res = W - B @ A
    return {"S": S.tolist(), "BA": (B @ A).flatten().tolist(),
            "recon_err": (W_res + B @ A - W).abs().max().item()}


def main():
    torch.set_num_threads(1)
    req = json.load(sys.stdin)
    out = {}
    if "lora" in req:
        out["lora"] = [lora(c) for c in req["lora"]]
    if "pissa" in req:
        out["pissa"] = pissa(req["pissa"])
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
