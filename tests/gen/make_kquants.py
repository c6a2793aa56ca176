#!/usr/bin/env python3
"""Writes tests/golden/kquants.gguf, a GGUF v3 holding one [3, 512] tensor in each ggml type
that mu dequantizes beyond make_gguf.py's (the k-quants Q2_K Q3_K Q4_K Q5_K Q6_K, IQ4_NL,
IQ4_XS) plus one IQ2_XXS tensor mu does not dequantize, and
tests/golden/kquants.expect.safetensors: each tensor as llama.cpp's own numpy dequantizers
(gguf.quants.dequantize, the `gguf` package from llama.cpp's gguf-py) read it.

The blocks are random bytes whose f16 scale fields are set to finite values of either sign,
so every bit pattern of the packed quants and scales is exercised.
Needs numpy and gguf (pip install gguf; made with gguf 0.19.0):
    python3 tests/gen/make_kquants.py      (from the project root)
"""
import os
import struct
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf import gstr, kv, write_safetensors  # noqa: E402

RNG = np.random.default_rng(20261205)
ROWS, COLS, ALIGN = 3, 512, 32
# ggml type -> byte offsets of its f16 scale fields within a block
F16_FIELDS = {T.Q2_K: (80, 82), T.Q3_K: (108,), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,),
              T.IQ4_NL: (0,), T.IQ4_XS: (0,)}


def random_blocks(qtype, nblocks):
    block, size = GGML_QUANT_SIZES[qtype]
    raw = RNG.integers(0, 256, (nblocks, size), dtype=np.uint8)
    for off in F16_FIELDS.get(qtype, ()):
        d = RNG.uniform(0.0005, 0.004, nblocks) * RNG.choice([-1.0, 1.0], nblocks)
        raw[:, off:off + 2] = d.astype(np.float16).view(np.uint8).reshape(nblocks, 2)
    return raw


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    meta = [kv("general.architecture", "str", "none"), kv("general.alignment", "u32", ALIGN)]
    infos, blobs, expect, off = [], [], {}, 0
    for qtype in list(F16_FIELDS) + [T.IQ2_XXS]:
        block, size = GGML_QUANT_SIZES[qtype]
        raw = random_blocks(qtype, ROWS * COLS // block)
        name = "t." + qtype.name.lower()
        if qtype in F16_FIELDS:
            x = dequantize(raw.reshape(ROWS, -1), qtype)
            assert x.shape == (ROWS, COLS) and np.isfinite(x).all(), name
            expect[name] = x.astype(np.float32)
        b = raw.tobytes()
        infos.append(gstr(name) + struct.pack("<I", 2) + struct.pack("<QQ", COLS, ROWS)
                     + struct.pack("<IQ", int(qtype), off))
        pad = (-len(b)) % ALIGN
        blobs.append(b + b"\0" * pad)
        off += len(b) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(root + "/tests/golden/kquants.gguf", "wb") as f:
        f.write(head + b"".join(blobs))
    write_safetensors(root + "/tests/golden/kquants.expect.safetensors", expect)
    for name, x in expect.items():
        print("%-10s range [%.4g, %.4g]" % (name, x.min(), x.max()))


if __name__ == "__main__":
    main()
