"""Writes testdata/torch_saved.pth with torch.save (torch 1.13, Debian python3-torch).

Every value is exactly representable in its dtype: element i of each tensor is
(i % 16 - 8) / 4, so the Go test checks it without python. The file holds a
bf16, an fp16 and an fp32 tensor, a non-contiguous (transposed) view, a slice
that shares its storage with another tensor, and a module's state_dict, whose
_metadata attribute makes pickle emit BUILD.

usage: python3 testdata/gen_pth.py OUT.pth
"""
import collections
import sys

import torch


def values(*shape, dtype):
    n = 1
    for s in shape:
        n *= s
    return ((torch.arange(n) % 16 - 8).to(torch.float32) / 4).reshape(*shape).to(dtype)


def main(out):
    sd = torch.nn.Linear(3, 2, bias=True).state_dict()  # OrderedDict with _metadata
    for k in list(sd.keys()):
        del sd[k]
    sd["bf16"] = values(3, 5, dtype=torch.bfloat16)
    sd["fp16"] = values(1, 1, 4, dtype=torch.float16)
    sd["fp32"] = values(7, dtype=torch.float32)
    base = values(4, 6, dtype=torch.float32)
    sd["transposed"] = base.t()          # shape (6, 4), stride (1, 6)
    sd["base"] = base
    sd["row2"] = base[2]                 # storage offset 12, shares base's storage
    sd["scalar"] = torch.tensor(1.5)
    torch.save(sd, out)


if __name__ == "__main__":
    main(sys.argv[1])
