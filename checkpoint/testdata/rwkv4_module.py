"""Loads a .pth into a module with RWKV-LM's RWKV-4 structure (RWKV-v4neo
src/model.py: parameters only, no forward) with load_state_dict(strict=True),
the way RWKV-LM resumes, after a plain torch.load as rwkv.cpp's
convert_pytorch_to_ggml.py and the rwkv package call it.

usage: python3 testdata/rwkv4_module.py VOCAB EMBD FFN LAYERS MODEL.pth...
"""
import sys

import torch
from torch import nn


class TimeMix(nn.Module):
    def __init__(self, C):
        super().__init__()
        self.time_decay = nn.Parameter(torch.zeros(C))
        self.time_first = nn.Parameter(torch.zeros(C))
        self.time_mix_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_v = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)


class ChannelMix(nn.Module):
    def __init__(self, C, F):
        super().__init__()
        self.time_mix_k = nn.Parameter(torch.zeros(1, 1, C))
        self.time_mix_r = nn.Parameter(torch.zeros(1, 1, C))
        self.key = nn.Linear(C, F, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F, C, bias=False)


class Block(nn.Module):
    def __init__(self, C, F, layer_id):
        super().__init__()
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        self.att = TimeMix(C)
        self.ffn = ChannelMix(C, F)


class RWKV(nn.Module):
    def __init__(self, V, C, F, L):
        super().__init__()
        self.emb = nn.Embedding(V, C)
        self.blocks = nn.ModuleList([Block(C, F, i) for i in range(L)])
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, V, bias=False)


def check(path, V, C, F, L):
    sd = torch.load(path, map_location="cpu")  # as rwkv.cpp and the rwkv package do
    for k, v in sd.items():
        v.float().numpy()  # rwkv.cpp's converter path
    model = RWKV(V, C, F, L)
    want = list(model.state_dict().keys())
    assert list(sd.keys()) == want, (list(sd.keys()), want)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    print("ok", len(sd))


if __name__ == "__main__":
    dims = list(map(int, sys.argv[1:5]))
    for path in sys.argv[5:]:
        check(path, *dims)
