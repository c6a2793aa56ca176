#!/usr/bin/env python3
"""Writes tests/golden/kquants.gguf, a GGUF v3 holding one [3, 512] tensor in each ggml type
that mu dequantizes beyond make_gguf.py's (the k-quants Q2_K Q3_K Q4_K Q5_K Q6_K, IQ4_NL,
IQ4_XS) plus one IQ2_XXS tensor mu does not dequantize, and
tests/golden/kquants.expect.safetensors: each tensor as llama.cpp's own numpy dequantizers
(gguf.quants.dequantize, the `gguf` package from llama.cpp's gguf-py) read it.
Also tests/golden/kquants_llama.gguf, a 1-layer Llama (d_model 256) whose matrices are in
those types, as in a Q4_K_M file, and kquants_llama.expect.safetensors: every 7th element
(flat index 0, 7, 14, ...) of each of its tensors under their Hugging Face names and in HF
row order (q/k rows un-permuted as make_gguf.py does); sampled to keep the golden small.
And tests/golden/iquants.gguf with iquants.expect.safetensors: the i-quants (IQ1_S IQ1_M IQ2_XXS
IQ2_XS IQ2_S IQ3_XXS IQ3_S), TQ1_0, TQ2_0, MXFP4 and NVFP4 the same way (write_iquants).

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
from make_gguf import gstr, kv, unpermute, write_safetensors  # noqa: E402

RNG = np.random.default_rng(20261205)
ROWS, COLS, ALIGN = 3, 512, 32
STRIDE = 7  # kquants_llama.expect holds every STRIDE-th element
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


def write_gguf(path, meta, tensors):
    """tensors: (name, ggml type, shape (rows, cols) or (cols,), raw block bytes)."""
    infos, blobs, off = [], [], 0
    for name, qtype, shape, raw in tensors:
        b = raw.tobytes()
        ne = tuple(reversed(shape))
        infos.append(gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
                     + struct.pack("<IQ", int(qtype), off))
        pad = (-len(b)) % ALIGN
        blobs.append(b + b"\0" * pad)
        off += len(b) + pad
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(path, "wb") as f:
        f.write(head + b"".join(blobs))


def quantized(qtype, shape):
    """Random blocks of a tensor (F32: values near 1) and gguf.quants' dequantization of them."""
    if qtype == T.F32:
        x = (1 + RNG.normal(0, 0.05, shape)).astype(np.float32)
        return x, x
    rows, cols = shape
    raw = random_blocks(qtype, rows * cols // GGML_QUANT_SIZES[qtype][0])
    x = dequantize(raw.reshape(rows, -1), qtype)
    assert x.shape == (rows, cols) and np.isfinite(x).all()
    return raw, x.astype(np.float32)


def write_types(root):
    meta = [kv("general.architecture", "str", "none"), kv("general.alignment", "u32", ALIGN)]
    tensors, expect = [], {}
    for qtype in list(F16_FIELDS) + [T.IQ2_XXS]:
        name = "t." + qtype.name.lower()
        if qtype in F16_FIELDS:
            raw, expect[name] = quantized(qtype, (ROWS, COLS))
        else:
            raw = random_blocks(qtype, ROWS * COLS // GGML_QUANT_SIZES[qtype][0])
        tensors.append((name, qtype, (ROWS, COLS), raw))
    write_gguf(root + "/tests/golden/kquants.gguf", meta, tensors)
    write_safetensors(root + "/tests/golden/kquants.expect.safetensors", expect)
    for name, x in expect.items():
        print("%-10s range [%.4g, %.4g]" % (name, x.min(), x.max()))


def write_llama(root):
    D, F, V, NH, NKV, HD = 256, 256, 16, 4, 2, 64
    tokens = ["<unk>", "<s>", "</s>"] + ["tok%d" % i for i in range(V - 3)]
    meta = [kv("general.architecture", "str", "llama"), kv("general.alignment", "u32", ALIGN),
            kv("llama.block_count", "u32", 1), kv("llama.context_length", "u32", 256),
            kv("llama.embedding_length", "u32", D), kv("llama.feed_forward_length", "u32", F),
            kv("llama.attention.head_count", "u32", NH), kv("llama.attention.head_count_kv", "u32", NKV),
            kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5), kv("llama.rope.freq_base", "f32", 1e4),
            kv("tokenizer.ggml.model", "str", "llama"), kv("tokenizer.ggml.tokens", "arr", ("str", tokens)),
            kv("tokenizer.ggml.scores", "arr", ("f32", [-float(i) for i in range(V)])),
            kv("tokenizer.ggml.token_type", "arr", ("i32", [2, 3, 3] + [1] * (V - 3))),
            kv("tokenizer.ggml.bos_token_id", "u32", 1), kv("tokenizer.ggml.eos_token_id", "u32", 2)]
    L = "model.layers.0."
    # (hf name, gguf name, ggml type, shape, heads whose q/k rows llama.cpp permuted)
    spec = [("model.embed_tokens.weight", "token_embd.weight", T.Q4_K, (V, D), 0),
            (L + "input_layernorm.weight", "blk.0.attn_norm.weight", T.F32, (D,), 0),
            (L + "self_attn.q_proj.weight", "blk.0.attn_q.weight", T.Q4_K, (NH * HD, D), NH),
            (L + "self_attn.k_proj.weight", "blk.0.attn_k.weight", T.Q2_K, (NKV * HD, D), NKV),
            (L + "self_attn.v_proj.weight", "blk.0.attn_v.weight", T.Q6_K, (NKV * HD, D), 0),
            (L + "self_attn.o_proj.weight", "blk.0.attn_output.weight", T.IQ4_XS, (D, NH * HD), 0),
            (L + "post_attention_layernorm.weight", "blk.0.ffn_norm.weight", T.F32, (D,), 0),
            (L + "mlp.gate_proj.weight", "blk.0.ffn_gate.weight", T.Q5_K, (F, D), 0),
            (L + "mlp.up_proj.weight", "blk.0.ffn_up.weight", T.Q3_K, (F, D), 0),
            (L + "mlp.down_proj.weight", "blk.0.ffn_down.weight", T.Q6_K, (D, F), 0),
            ("model.norm.weight", "output_norm.weight", T.F32, (D,), 0),
            ("lm_head.weight", "output.weight", T.Q4_K, (V, D), 0)]
    tensors, expect = [], {}
    for hf, gg, qtype, shape, heads in spec:
        raw, x = quantized(qtype, shape)
        tensors.append((gg, qtype, shape, raw))
        x = unpermute(x, heads) if heads else x
        expect[hf] = np.ascontiguousarray(x.reshape(-1)[::STRIDE])
    write_gguf(root + "/tests/golden/kquants_llama.gguf", meta, tensors)
    write_safetensors(root + "/tests/golden/kquants_llama.expect.safetensors", expect)


# i-quants, ternary and FP4 types -> byte offsets of their f16 scale fields
IQ_F16_FIELDS = {T.IQ2_XXS: (0,), T.IQ2_XS: (0,), T.IQ2_S: (0,), T.IQ3_XXS: (0,), T.IQ3_S: (0,),
                 T.IQ1_S: (0,), T.IQ1_M: (), T.TQ1_0: (52,), T.TQ2_0: (64,), T.MXFP4: (), T.NVFP4: ()}


def iq_blocks(rng, qtype, nblocks):
    """Random blocks of an i-quant, ternary or FP4 type with finite scales of either sign: the
    f16 fields as random_blocks sets them; IQ1_M's f16 spread over the top nibbles of its four
    u16 scales; MXFP4's E8M0 exponent near 2^0 or at the two subnormal codes; NVFP4's E4M3
    scales left random but for block 0's, set to 0x7F (read as 0), 0, a subnormal and 0xFF."""
    block, size = GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, (nblocks, size), dtype=np.uint8)
    d = (rng.uniform(0.0005, 0.004, nblocks) * rng.choice([-1.0, 1.0], nblocks)).astype(np.float16)
    for off in IQ_F16_FIELDS[qtype]:
        raw[:, off:off + 2] = d.view(np.uint8).reshape(nblocks, 2)
    if qtype == T.IQ1_M:
        bits = d.view(np.uint16)
        for k in range(4):  # nibble k of d into the top nibble of the u16 at 48 + 2k
            raw[:, 49 + 2 * k] = (raw[:, 49 + 2 * k] & 0x0F) | (((bits >> (4 * k)) & 0xF) << 4).astype(np.uint8)
    if qtype == T.MXFP4:
        raw[:, 0] = rng.choice(np.r_[0, 1, 110:141], nblocks).astype(np.uint8)
    if qtype == T.NVFP4:
        raw[0, :4] = (0x7F, 0x00, 0x05, 0xFF)
    return raw


def write_iquants(root):
    """tests/golden/iquants.gguf: one [3, 512] tensor per type of IQ_F16_FIELDS and one Q1_0
    tensor (gguf.quants has no dequantizer for it: mu refuses it by name);
    iquants.expect.safetensors: gguf.quants' dequantization of each. Own seed: the k-quant
    goldens stay as they were."""
    rng = np.random.default_rng(20261206)
    meta = [kv("general.architecture", "str", "none"), kv("general.alignment", "u32", ALIGN)]
    tensors, expect = [], {}
    for qtype in list(IQ_F16_FIELDS) + [T.Q1_0]:
        name = "t." + qtype.name.lower()
        raw = iq_blocks(rng, qtype, ROWS * COLS // GGML_QUANT_SIZES[qtype][0]) if qtype in IQ_F16_FIELDS \
            else rng.integers(0, 256, (ROWS * COLS // GGML_QUANT_SIZES[qtype][0], GGML_QUANT_SIZES[qtype][1]), dtype=np.uint8)
        tensors.append((name, qtype, (ROWS, COLS), raw))
        if qtype in IQ_F16_FIELDS:
            x = dequantize(raw.reshape(ROWS, -1), qtype)
            assert x.shape == (ROWS, COLS) and np.isfinite(x).all(), name
            expect[name] = x.astype(np.float32)
            print("%-10s range [%.4g, %.4g]" % (name, x.min(), x.max()))
    write_gguf(root + "/tests/golden/iquants.gguf", meta, tensors)
    write_safetensors(root + "/tests/golden/iquants.expect.safetensors", expect)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    write_types(root)
    write_llama(root)
    write_iquants(root)


if __name__ == "__main__":
    main()
