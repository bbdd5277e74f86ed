"""Writes the Hugging Face directories of a tiny RWKV-4 model as transformers does,
with torch.save (torch 1.13, Debian python3-torch; transformers itself is not needed):

  bin/          config.json + pytorch_model.bin: one torch.save of a module
                state_dict (an OrderedDict with _metadata, as save_pretrained
                writes it), fp32
  bin_sharded/  config.json + pytorch_model-0000{1,2}-of-00002.bin +
                pytorch_model.bin.index.json, as convert_rwkv_checkpoint_to_hf.py
                writes them (torch.save of plain dict shards, the index with
                metadata.total_size and weight_map, indent=2, sort_keys), fp16

The model is vocab 11, hidden 4, ffn 16, 2 layers. Element j of the k-th tensor
in RWKV-LM state_dict order is ((5*j + 3*k) % 16 - 8) / 16, exact in every
float dtype, so the Go test knows the values without python.

usage: python3 gen_hf.py OUTDIR
"""
import collections
import json
import os
import sys

import torch

V, C, F, L = 11, 4, 16, 2


def layout():
    """RWKV-LM names and shapes in state_dict order (checkpoint.Dims.Layout)."""
    out = [("emb.weight", (V, C))]
    for i in range(L):
        p = "blocks.%d." % i
        out += [(p + "ln1.weight", (C,)), (p + "ln1.bias", (C,)), (p + "ln2.weight", (C,)), (p + "ln2.bias", (C,))]
        if i == 0:
            out += [(p + "ln0.weight", (C,)), (p + "ln0.bias", (C,))]
        out += [(p + "att.time_decay", (C,)), (p + "att.time_first", (C,)),
                (p + "att.time_mix_k", (1, 1, C)), (p + "att.time_mix_v", (1, 1, C)), (p + "att.time_mix_r", (1, 1, C)),
                (p + "att.key.weight", (C, C)), (p + "att.value.weight", (C, C)),
                (p + "att.receptance.weight", (C, C)), (p + "att.output.weight", (C, C)),
                (p + "ffn.time_mix_k", (1, 1, C)), (p + "ffn.time_mix_r", (1, 1, C)),
                (p + "ffn.key.weight", (F, C)), (p + "ffn.receptance.weight", (C, C)), (p + "ffn.value.weight", (C, F))]
    out += [("ln_out.weight", (C,)), ("ln_out.bias", (C,)), ("head.weight", (V, C))]
    return out


def hf_name(name):
    """convert_rwkv_checkpoint_to_hf.py's convert_state_dict."""
    if name == "head.weight":
        return name
    if name.startswith("emb."):
        name = name.replace("emb.", "embeddings.")
    if name.startswith("blocks.0.ln0"):
        name = name.replace("blocks.0.ln0", "blocks.0.pre_ln")
    name = name.replace(".att.", ".attention.").replace(".ffn.", ".feed_forward.")
    for a, b in ((".time_mix_k", ".time_mix_key"), (".time_mix_v", ".time_mix_value"), (".time_mix_r", ".time_mix_receptance")):
        if name.endswith(a):
            name = name[: -len(a)] + b
    return "rwkv." + name


def state_dict(dtype):
    sd = collections.OrderedDict()
    for k, (name, shape) in enumerate(layout()):
        n = 1
        for s in shape:
            n *= s
        v = ((torch.arange(n) * 5 + 3 * k) % 16 - 8).to(torch.float32) / 16
        sd[hf_name(name)] = v.reshape(shape).to(dtype)
    return sd


def config(dtype):
    return {
        "architectures": ["RwkvForCausalLM"], "attention_hidden_size": C, "bos_token_id": 0,
        "context_length": 64, "eos_token_id": 0, "hidden_size": C, "intermediate_size": F,
        "layer_norm_epsilon": 1e-05, "model_type": "rwkv", "num_hidden_layers": L, "rescale_every": 6,
        "tie_word_embeddings": False, "torch_dtype": dtype, "transformers_version": "4.30.2",
        "use_cache": True, "vocab_size": V,
    }


def write_config(d, dtype):
    with open(os.path.join(d, "config.json"), "w") as f:
        f.write(json.dumps(config(dtype), indent=2, sort_keys=True) + "\n")


def main(out):
    d = os.path.join(out, "bin")
    os.makedirs(d, exist_ok=True)
    sd = state_dict(torch.float32)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("rwkv", {"version": 1}), ("head", {"version": 1})])
    torch.save(sd, os.path.join(d, "pytorch_model.bin"))
    write_config(d, "float32")

    d = os.path.join(out, "bin_sharded")
    os.makedirs(d, exist_ok=True)
    sd = state_dict(torch.float16)
    names = list(sd)
    shards = [names[: len(names) // 2], names[len(names) // 2 :]]
    index = {"metadata": {"total_size": sum(v.numel() * v.element_size() for v in sd.values())}, "weight_map": {}}
    for i, shard in enumerate(shards):
        fname = "pytorch_model-%05d-of-%05d.bin" % (i + 1, len(shards))
        torch.save({k: sd[k] for k in shard}, os.path.join(d, fname))
        for k in shard:
            index["weight_map"][k] = fname
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    write_config(d, "float16")


if __name__ == "__main__":
    main(sys.argv[1])
