"""PyTorch reference for one parameter-efficient fine-tuning step of an RWKV-4 model
(rwkv-go's train with peft.mode lora or state), from reference/rwkv4.py's forward:

  lora   every target Linear computes x (W + s B A)^T with W frozen (a constant), A, B leaves:
         the same forward and the same gradients for A and B as x W^T + s (x A^T) B^T
         (no dropout); the train_parts are leaves too; everything else is a constant.
  state  each layer's time_state [3, C] (rows aa, bb, pp) is a leaf, broadcast over the batch
         as the initial WKV state; token-shift states are zero; every weight is a constant.

Then one torch.optim.Adam step (weight decay 0, so AdamW's) over the leaves only.

Reads a JSON list of cases on stdin (one torch start for all), float64 throughout, each
  {"params": {name: [values]}, "shapes": {name: shape}, "mode": "lora"|"state",
   "modules": [module names], "scale": s, "train": [names of trained base tensors],
   "tokens": [[...]], "targets": [[...]], "lr", "beta1", "beta2", "eps"}
-> a list of {"loss", "grads": {name: [...]}, "after": {name: [...]}} over every trained tensor.
Used by train/peft_golden_test.go (TestPEFTStepMatchesTorch).
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import rwkv4  # noqa: E402


def step(req):
    shapes = req["shapes"]
    t = lambda n: torch.tensor(req["params"][n], dtype=torch.float64).reshape(shapes[n])
    leaves = {}
    p = {}
    for n in req["params"]:
        if n.endswith(".lora_A") or n.endswith(".lora_B") or n.endswith(".att.time_state"):
            leaves[n] = t(n).requires_grad_(True)
    for n in req["params"]:
        if n in leaves:
            continue
        v = t(n)
        if n in req["train"]:
            v.requires_grad_(True)
            leaves[n] = v
        if n.endswith("time_mix_k") or n.endswith("time_mix_v") or n.endswith("time_mix_r"):
            v = v.reshape(-1)
        p[n] = v
    s = req["scale"]
    for m in req["modules"] or []:
        p[m + ".weight"] = p[m + ".weight"] + s * leaves[m + ".lora_B"] @ leaves[m + ".lora_A"]
    tokens = torch.tensor(req["tokens"], dtype=torch.int64)
    targets = torch.tensor(req["targets"], dtype=torch.int64)
    B = tokens.shape[0]
    state = None
    if req["mode"] == "state":
        L = rwkv4.n_layer_of(p)
        C = p["emb.weight"].shape[1]
        state = rwkv4.empty_state(L, B, C)
        for i in range(L):
            ts = leaves[f"blocks.{i}.att.time_state"]
            state[i]["aa"] = ts[0].expand(B, C)
            state[i]["bb"] = ts[1].expand(B, C)
            state[i]["pp"] = ts[2].expand(B, C)
            state[i]["att_x"] = torch.zeros(B, C, dtype=torch.float64)
            state[i]["ffn_x"] = torch.zeros(B, C, dtype=torch.float64)
    logits, _ = rwkv4.forward(p, tokens, state)
    loss = rwkv4.loss_fn(logits, targets)
    loss.backward()
    names = sorted(leaves)
    grads = {n: leaves[n].grad.flatten().tolist() for n in names}
    opt = torch.optim.Adam([leaves[n] for n in names], lr=req["lr"],
                           betas=(req["beta1"], req["beta2"]), eps=req["eps"])
    opt.step()
    after = {n: leaves[n].detach().flatten().tolist() for n in names}
    return {"loss": loss.item(), "grads": grads, "after": after}


def main():
    torch.set_num_threads(1)
    json.dump([step(c) for c in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
