// Package checkpoint is the file-format layer of rwkv-go. It deals in named
// tensors (Tensor: name, dtype, shape, little-endian bytes) and never imports
// the model. Which tensors make a model (names, shapes, state-dict order) is
// package arch's table: Check tells the architecture and sizes from a set of
// tensors and puts them in that order. It reads every architecture arch has a
// layout for (RWKV-4, RWKV-5.2, RWKV-6 and RWKV-7), whether or not a model can be built from it
// yet; whoever builds one checks Dims.Arch.CheckSupported.
//
// Training checkpoints (Save, Load, Latest, Prune) are single safetensors
// files, step-<step>.safetensors, holding the weights ("model/<name>"), the
// AdamW moments ("optim.m/<name>", "optim.v/<name>") and, in the header
// metadata, the format name and version, the resume State as JSON, the
// resolved config as YAML and a CRC-32C of the tensor data. Every write goes
// through WriteFileAtomic (temporary file in the same directory, fsync,
// rename, fsync of the directory); SweepTemp removes what a killed writer
// left. Non-finite values are refused, naming the tensor.
//
// Exports: ExportRWKV (RWKV-LM names in F32, F16 or BF16), ExportWebRWKV
// (all F16; RWKV-4, and RWKV-5.2/6 in web-rwkv's names), ExportHF (a
// transformers RwkvForCausalLM directory) and ExportPTH / WritePTH (a
// torch.save-compatible zip), all RWKV-4; RWKV-5.2 and RWKV-6 have
// ExportX05PTH, ExportX05RWKV, ExportHF56 (the RWKV/rwkv-5-world and
// RWKV/v6-Finch remote-code layouts) and, RWKV-6 only, ExportGGUF6
// (llama.cpp's rwkv6), with CheckX05 for their tensor sets; RWKV-7 has
// ExportX070PTH, ExportX070RWKV, ExportHF7 (FLA) and ExportGGUF7 (llama.cpp),
// with CheckX070 for its tensor sets. Imports: ReadPTH,
// ReadHFDir (model.safetensors, pytorch_model.bin or either sharded with an
// index.json, checked against config.json; transformers' RWKV-4 names, the
// RWKV-5/6 remote code's or FLA's rwkv7 ones), ReadHF7Dir, X060FromGGUF6,
// X070FromGGUF7 and ReadWeights, which detects the layout (unquantized rwkv6
// and rwkv7 GGUF files and web-rwkv's RWKV-5.2/6 files among them) and returns
// RWKV-LM names; LoadLatest reads the newest
// checkpoint of a directory, naming a corrupt one and the newest intact one.
//
// Weights files are untrusted input. Only regular files are opened (a FIFO
// would block). The safetensors reader checks every size and offset against
// the file before allocating; the .pth reader is a minimal pickle machine
// that only knows the opcodes torch.save emits and only the globals
// collections.OrderedDict, torch._utils._rebuild_tensor*, and the torch
// storage classes: no code from a file ever runs, and the values it makes
// are bounded by the pickle's size. NaN or infinite weights and negative
// AdamW second moments are refused on load, naming the tensor.
package checkpoint
