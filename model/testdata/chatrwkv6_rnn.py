#!/usr/bin/python3
"""ChatRWKV's per-token RWKV-5.2 / RWKV-6 form, the independent reference of rnn6_test.go.

usage: chatrwkv6_rnn.py IN.safetensors OUT.safetensors [IN2 OUT2 ...]

Written from the equations of ChatRWKV's RWKV_v5_demo.py / RWKV_v6_demo.py (BlinkDL/ChatRWKV)
time_mixing and channel_mixing, in torch float64. Their WKV state is [key][value] per head
(a = k @ v with k a column, v a row; y = r @ (u*a + s); s = a + w*s); the Go side keeps
[value][key], so this script transposes at the boundary, and only there.

GroupNorm: eps 64e-5 for both archs (RWKV-LM trains x052 with ln_x(y/8) at eps 1e-5, which is
the same; ChatRWKV's v6 demo writes eps 64e-5 with that remark, its v5 demo at one commit
leaves the default 1e-5).

IN holds param/<RWKV-LM name> (F64), tokens (I64 [B,T]), state_in/att_x, state_in/ffn_x
([L,B,C]) and state_in/wkv ([L,B,H,N,N], [value][key]); metadata "arch" is x052 or x060.
OUT holds logits [B,T,V] and state_out/* as state_in.
"""
import json
import struct
import sys

import numpy as np
import torch
from torch.nn import functional as F

DT = {"F64": np.float64, "F32": np.float32, "I64": np.int64}


def read_st(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    out = {}
    for name, e in head.items():
        a, b = e["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=DT[e["dtype"]]).reshape(e["shape"]).copy()
    return out, meta


def write_st(path, tensors):
    head, off, blobs = {}, 0, []
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float64).tobytes()
        head[name] = {"dtype": "F64", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(head).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(in_path, out_path):
    ins, meta = read_st(in_path)
    arch = meta["arch"]
    w = {k[len("param/"):]: torch.from_numpy(v) for k, v in ins.items() if k.startswith("param/")}
    for k in list(w):  # as ChatRWKV loads them: time_* squeezed, u as a column
        if ".time_" in k:
            w[k] = w[k].squeeze()
        if ".time_faaaa" in k:
            w[k] = w[k].unsqueeze(-1)
        if arch == "x052" and ".time_decay" in k:
            w[k] = torch.exp(-torch.exp(w[k])).unsqueeze(-1)
    tokens = ins["tokens"]
    B, T = tokens.shape
    L = int(meta["n_layer"])
    H, S = w["blocks.0.att.time_faaaa"].shape[:2]
    C = H * S

    def ln(x, name):
        return F.layer_norm(x, (C,), weight=w[name + ".weight"], bias=w[name + ".bias"])

    def time_mixing(x, st, i):
        p = f"blocks.{i}.att."
        if arch == "x052":
            xk = x * w[p + "time_mix_k"] + st["att"] * (1 - w[p + "time_mix_k"])
            xv = x * w[p + "time_mix_v"] + st["att"] * (1 - w[p + "time_mix_v"])
            xr = x * w[p + "time_mix_r"] + st["att"] * (1 - w[p + "time_mix_r"])
            xg = x * w[p + "time_mix_g"] + st["att"] * (1 - w[p + "time_mix_g"])
            decay = w[p + "time_decay"]  # already exp(-exp(.)), (H, S, 1)
        else:
            sx = st["att"] - x
            xxx = x + sx * w[p + "time_maa_x"]
            xxx = torch.tanh(xxx @ w[p + "time_maa_w1"]).view(5, 1, -1)
            xxx = torch.bmm(xxx, w[p + "time_maa_w2"]).view(5, -1)
            mw, mk, mv, mr, mg = xxx.unbind(dim=0)
            xw = x + sx * (w[p + "time_maa_w"] + mw)
            xk = x + sx * (w[p + "time_maa_k"] + mk)
            xv = x + sx * (w[p + "time_maa_v"] + mv)
            xr = x + sx * (w[p + "time_maa_r"] + mr)
            xg = x + sx * (w[p + "time_maa_g"] + mg)
            dw = w[p + "time_decay"] + torch.tanh(xw @ w[p + "time_decay_w1"]) @ w[p + "time_decay_w2"]
            decay = torch.exp(-torch.exp(dw)).view(H, S, 1)
        st["att"] = x
        r = (w[p + "receptance.weight"] @ xr).view(H, 1, S)
        k = (w[p + "key.weight"] @ xk).view(H, S, 1)
        v = (w[p + "value.weight"] @ xv).view(H, 1, S)
        g = F.silu(w[p + "gate.weight"] @ xg)
        a = k @ v  # [key][value]
        y = (r @ (w[p + "time_faaaa"] * a + st["wkv"])).flatten()
        st["wkv"] = a + decay * st["wkv"]
        y = F.group_norm(y.unsqueeze(0), num_groups=H, weight=w[p + "ln_x.weight"], bias=w[p + "ln_x.bias"],
                         eps=64e-5).squeeze(0) * g
        return w[p + "output.weight"] @ y

    def channel_mixing(x, st, i):
        p = f"blocks.{i}.ffn."
        if arch == "x052":
            xk = x * w[p + "time_mix_k"] + st["ffn"] * (1 - w[p + "time_mix_k"])
            xr = x * w[p + "time_mix_r"] + st["ffn"] * (1 - w[p + "time_mix_r"])
        else:
            sx = st["ffn"] - x
            xk = x + sx * w[p + "time_maa_k"]
            xr = x + sx * w[p + "time_maa_r"]
        st["ffn"] = x
        r = torch.sigmoid(w[p + "receptance.weight"] @ xr)
        k = torch.square(torch.relu(w[p + "key.weight"] @ xk))
        return r * (w[p + "value.weight"] @ k)

    att_in = torch.from_numpy(ins["state_in/att_x"])
    ffn_in = torch.from_numpy(ins["state_in/ffn_x"])
    wkv_in = torch.from_numpy(ins["state_in/wkv"])  # [L,B,H,value,key]
    logits = np.zeros((B, T, w["head.weight"].shape[0]))
    att_out, ffn_out, wkv_out = np.zeros(att_in.shape), np.zeros(ffn_in.shape), np.zeros(wkv_in.shape)
    with torch.no_grad():
        for b in range(B):
            states = [{"att": att_in[i, b].clone(), "ffn": ffn_in[i, b].clone(),
                       "wkv": wkv_in[i, b].transpose(1, 2).clone()} for i in range(L)]  # -> [key][value]
            for t in range(T):
                x = ln(w["emb.weight"][int(tokens[b, t])], "blocks.0.ln0")
                for i in range(L):
                    x = x + time_mixing(ln(x, f"blocks.{i}.ln1"), states[i], i)
                    x = x + channel_mixing(ln(x, f"blocks.{i}.ln2"), states[i], i)
                logits[b, t] = (w["head.weight"] @ ln(x, "ln_out")).numpy()
            for i in range(L):
                att_out[i, b] = states[i]["att"].numpy()
                ffn_out[i, b] = states[i]["ffn"].numpy()
                wkv_out[i, b] = states[i]["wkv"].transpose(1, 2).numpy()  # back to [value][key]
    write_st(out_path, {"logits": logits, "state_out/att_x": att_out, "state_out/wkv": wkv_out,
                           "state_out/ffn_x": ffn_out})


if __name__ == "__main__":
    for j in range(1, len(sys.argv) - 1, 2):
        run(sys.argv[j], sys.argv[j + 1])
