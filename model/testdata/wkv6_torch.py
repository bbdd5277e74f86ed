# PyTorch oracle for TestWKV6MatchesTorch (model/wkv6_torch_test.go): reads a JSON object
# {case: {"dtype": "float32"|"float64", "B", "T", "H", "N", "r", "k", "v", "w", "u", "s0", "dy",
# "dsT": flat lists}} on stdin, runs the WKV-5/6 recurrence token by token with einsum in that
# dtype, and writes {case: {"y", "sT", "grad/r", ..., "grad/s0": flat lists}}, the gradients
# being those of sum(y*dy) + sum(sT*dsT). w is per token when it has B*T*H*N values (x060),
# else one per channel (H, N; x052). The state is [value i][key j] per head:
#   y_t[i] = sum_j r_t[j] (u[j] k_t[j] v_t[i] + S[i][j]);  S <- S diag(exp(-exp(w_t))) + v_t k_t^T
import json
import sys

import torch


def run(c):
    dt = torch.float64 if c["dtype"] == "float64" else torch.float32
    B, T, H, N = c["B"], c["T"], c["H"], c["N"]
    per_token = len(c["w"]) == B * T * H * N

    def leaf(key, shape):
        return torch.tensor(c[key], dtype=dt).reshape(shape).requires_grad_()

    r, k, v = (leaf(x, (B, T, H, N)) for x in "rkv")
    w = leaf("w", (B, T, H, N) if per_token else (H, N))
    u = leaf("u", (H, N))
    s0 = leaf("s0", (B, H, N, N))
    d = torch.exp(-torch.exp(w))
    S = s0
    ys = []
    for t in range(T):
        rt, kt, vt = r[:, t], k[:, t], v[:, t]
        dtk = d[:, t] if per_token else d.expand(B, H, N)
        kv = torch.einsum("bhi,bhj->bhij", vt, kt)
        ys.append(torch.einsum("bhj,bhij->bhi", rt, S + u[None, :, None, :] * kv))
        S = S * dtk[:, :, None, :] + kv
    y = torch.stack(ys, 1)
    dy = torch.tensor(c["dy"], dtype=dt).reshape(y.shape)
    dsT = torch.tensor(c["dsT"], dtype=dt).reshape(S.shape)
    ((y * dy).sum() + (S * dsT).sum()).backward()
    out = {"y": y, "sT": S}
    for name, x in zip(["r", "k", "v", "w", "u", "s0"], [r, k, v, w, u, s0]):
        out["grad/" + name] = x.grad
    return {key: x.detach().double().reshape(-1).tolist() for key, x in out.items()}


req = json.load(sys.stdin)
json.dump({name: run(c) for name, c in req.items()}, sys.stdout)
