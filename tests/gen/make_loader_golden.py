#!/usr/bin/env python3
"""Reference values for tests/t_loaders.c, read with independent libraries:
  - stories260K (../shared/data/models/stories260K) through the `safetensors` package:
    per tensor shape, sum, sum of squares, a few elements;
  - the vocab-only GGUFs ggml-vocab-{gpt-2,llama-spm}.gguf through llama.cpp's `gguf`
    package (pip install gguf; optional): token count, tokenizer model, a few tokens.
    They are read from $MU_GGML_VOCAB_DIR if set, else ../shared/data/tokenizers.
    NOTE: the copies in ../shared/data/tokenizers (as of this writing) are damaged: bytes
    that were not valid UTF-8 were replaced by U+FFFD (EF BF BD), so their binary fields
    are wrong and no GGUF reader can parse them. The genuine files are in llama.cpp's
    models/ directory, e.g. inside the PyPI sdist llama-cpp-python==0.3.2
    (vendor/llama.cpp/models/); the golden values were made from those.
Writes tests/golden/loaders.json.  Run from the project root with the gold venv:
  PYTHONPATH=<dir with gguf> /root/gold/bin/python tests/gen/make_loader_golden.py
"""
import json
import os

import numpy as np
from safetensors.numpy import load_file

DATA = os.environ.get("MU_SHARED", "../shared") + "/data"
out = {"stories260K": {}, "vocab": {}}
st = load_file(DATA + "/models/stories260K/model.safetensors")
for name in ["model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
             "model.layers.4.mlp.down_proj.weight", "model.norm.weight",
             "model.layers.2.post_attention_layernorm.weight"]:
    x = st[name].astype(np.float64)
    flat = x.reshape(-1)
    out["stories260K"][name] = {
        "shape": list(x.shape), "sum": float(flat.sum()), "sumsq": float((flat ** 2).sum()),
        "at": {str(i): float(flat[i]) for i in sorted({0, 1, 37, flat.size - 1})},
    }
out["stories260K_numel"] = int(sum(v.size for v in st.values()))
out["stories260K_count"] = len(st)
try:
    from gguf import GGUFReader
    for v in ["gpt-2", "llama-spm"]:
        vdir = os.environ.get("MU_GGML_VOCAB_DIR", DATA + "/tokenizers")
        r = GGUFReader(vdir + "/ggml-vocab-%s.gguf" % v)
        toks = r.fields["tokenizer.ggml.tokens"]
        get = lambda i: bytes(toks.parts[toks.data[i]]).decode("utf-8")  # noqa: E731
        n = len(toks.data)
        out["vocab"][v] = {
            "n_tokens": n, "model": bytes(r.fields["tokenizer.ggml.model"].parts[-1]).decode(),
            "n_kv": int(r.fields["GGUF.kv_count"].parts[-1][0]),
            "bos": int(r.fields["tokenizer.ggml.bos_token_id"].parts[-1][0]),
            "tokens": {str(i): get(i) for i in [0, 1, 2, 100, n - 1]},
        }
except ImportError:
    print("gguf package absent: vocab references not written")
with open("tests/golden/loaders.json", "w") as f:
    json.dump(out, f, indent=1, ensure_ascii=False)
print(json.dumps(out)[:600])
