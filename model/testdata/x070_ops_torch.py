# PyTorch oracle for TestX070OpsMatchTorch (model/op_x070_torch_test.go): reads a JSON object
# {op: {"dims": {...}, "in": {name: [shape, values]}}} on stdin, evaluates each op's PyTorch
# definition in float64 and writes {op: {"out0": [...], ..., "grad/<name>": [...]}} where the
# gradients are those of sum_j out_j * R_j (R_j are inputs named R0, R1, ...).
import json
import sys

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def shift(x, prev, B, T, C):
    x3 = x.view(B, T, C)
    xx = torch.cat([prev.view(B, 1, C), x3[:, :-1]], dim=1)
    return (xx - x3).reshape(B * T, C)


def run(op, d, t):
    H, S = d["H"], d["S"]
    N, C = d["N"], H * S
    if op == "GroupNorm":
        return [F.group_norm(t["x"], H, t["w"], t["b"], eps=64e-5)]
    if op == "Kappa":
        kh = F.normalize((t["k"] * t["kk"]).view(N, H, S), dim=-1, p=2.0).view(N, C)
        alpha = -kh
        return [alpha, kh * t["a"], t["k"] * (1 + (t["a"] - 1) * t["ka"])]
    if op == "Bonus":
        s = (t["r"] * t["k"] * t["rk"].view(-1)).view(N, H, S).sum(-1, keepdim=True)
        return [t["o"] + (s * t["v"].view(N, H, S)).view(N, C)]
    if op == "ValueResidual":
        return [t["v"] + (t["vf"] - t["v"]) * torch.sigmoid(t["v0"] + t["z"])]
    if op == "Activate":
        return [torch.tanh(t["x"]), torch.sigmoid(t["x"] + t["b"]), t["x"] + t["b"]]
    if op == "ShiftLerp":
        dx = shift(t["x"], t["prev"], d["B"], d["T"], C)
        return [t["x"] + dx * t["m0"], t["x"] + dx * t["m1"]]
    raise ValueError(op)


req = json.load(sys.stdin)
res = {}
for op, spec in req.items():
    t = {n: torch.tensor(v, dtype=torch.float64).view(*s).requires_grad_(True) for n, (s, v) in spec["in"].items()}
    outs = run(op, spec["dims"], t)
    loss = sum((o * t["R%d" % j]).sum() for j, o in enumerate(outs))
    loss.backward()
    r = {"out%d" % j: o.detach().reshape(-1).tolist() for j, o in enumerate(outs)}
    for n, v in t.items():
        if not n.startswith("R"):
            r["grad/" + n] = v.grad.reshape(-1).tolist()
    res[op] = r
json.dump(res, sys.stdout)
