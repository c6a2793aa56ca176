#!/usr/bin/env python3
"""Writes tests/golden/tiny_llama.gguf, a 1-layer Llama in GGUF v3 with tensors in every
ggml type mu dequantizes (F32 F16 BF16 Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q6_K), and
tests/golden/tiny_llama.expect.safetensors: the same tensors dequantized by numpy,
under their Hugging Face names and in the HF row order (q/k rows un-permuted).

Independent of mu: the GGUF bytes are written by hand from the GGUF spec
(github.com/ggerganov/ggml docs/gguf.md), the blocks are quantized and dequantized with
numpy following ggml-quants.c (quantize_row_*_ref / dequantize_row_*), and the q/k
permutation is the one of llama.cpp's convert_hf_to_gguf.py (LlamaModel.permute).
Only numpy is needed:  python3 tests/gen/make_gguf.py   (run from the project root)
If llama.cpp's own `gguf` Python package is importable (pip install gguf), the file is
also read back with gguf.GGUFReader and every tensor dequantized with gguf.quants is
compared with the expectations (checked with gguf 0.19.0: all equal, max diff 0).
"""
import json
import struct
import sys

import numpy as np

RNG = np.random.default_rng(20240611)
D, F, V, NH, NKV, HD = 64, 96, 64, 4, 2, 16
ALIGN = 32

GGML = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q5_0": 6, "Q5_1": 7, "Q8_0": 8, "Q6_K": 14, "BF16": 30}


def f16(x):
    return np.asarray(x, dtype=np.float32).astype(np.float16)


# ---- quantizers (ggml reference quantizers) and numpy dequantizers -------------------------
def q8_0(x):
    x = x.reshape(-1, 32)
    amax = np.abs(x).max(1)
    d = amax / 127.0
    idd = np.where(d > 0, 1.0 / np.where(d > 0, d, 1), 0)
    q = np.round(x * idd[:, None]).astype(np.int8)
    dh = f16(d)
    raw = b"".join(dh[i].tobytes() + q[i].tobytes() for i in range(len(x)))
    deq = q.astype(np.float32) * dh.astype(np.float32)[:, None]
    return raw, deq.reshape(-1)


def _signed_max(x):
    i = np.abs(x).argmax(1)
    return x[np.arange(len(x)), i]


def q4_0(x):
    x = x.reshape(-1, 32).astype(np.float32)
    d = _signed_max(x) / -8.0
    idd = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, (x * idd[:, None] + 8.5).astype(np.int8)).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    dh = f16(d)
    raw = b"".join(dh[i].tobytes() + qs[i].tobytes() for i in range(len(x)))
    deq = (q.astype(np.float32) - 8.0) * dh.astype(np.float32)[:, None]
    return raw, deq.reshape(-1)


def q4_1(x):
    x = x.reshape(-1, 32).astype(np.float32)
    mn, mx = x.min(1), x.max(1)
    d = (mx - mn) / 15.0
    idd = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(15, ((x - mn[:, None]) * idd[:, None] + 0.5).astype(np.int8)).astype(np.uint8)
    qs = q[:, :16] | (q[:, 16:] << 4)
    dh, mh = f16(d), f16(mn)
    raw = b"".join(dh[i].tobytes() + mh[i].tobytes() + qs[i].tobytes() for i in range(len(x)))
    deq = q.astype(np.float32) * dh.astype(np.float32)[:, None] + mh.astype(np.float32)[:, None]
    return raw, deq.reshape(-1)


def _qh_bits(q):
    hb = ((q >> 4) & 1).astype(np.uint32)           # [n, 32]: bit j of qh = high bit of q[j]
    return (hb << np.arange(32, dtype=np.uint32)).sum(1).astype(np.uint32)


def q5_0(x):
    x = x.reshape(-1, 32).astype(np.float32)
    d = _signed_max(x) / -16.0
    idd = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(31, (x * idd[:, None] + 16.5).astype(np.int8)).astype(np.uint8)
    qs = (q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)
    qh = _qh_bits(q)
    dh = f16(d)
    raw = b"".join(dh[i].tobytes() + struct.pack("<I", int(qh[i])) + qs[i].tobytes() for i in range(len(x)))
    deq = (q.astype(np.float32) - 16.0) * dh.astype(np.float32)[:, None]
    return raw, deq.reshape(-1)


def q5_1(x):
    x = x.reshape(-1, 32).astype(np.float32)
    mn, mx = x.min(1), x.max(1)
    d = (mx - mn) / 31.0
    idd = np.where(d != 0, 1.0 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.minimum(31, ((x - mn[:, None]) * idd[:, None] + 0.5).astype(np.int8)).astype(np.uint8)
    qs = (q[:, :16] & 0xF) | ((q[:, 16:] & 0xF) << 4)
    qh = _qh_bits(q)
    dh, mh = f16(d), f16(mn)
    raw = b"".join(dh[i].tobytes() + mh[i].tobytes() + struct.pack("<I", int(qh[i])) + qs[i].tobytes()
                   for i in range(len(x)))
    deq = q.astype(np.float32) * dh.astype(np.float32)[:, None] + mh.astype(np.float32)[:, None]
    return raw, deq.reshape(-1)


def q6_k_random(nblocks):
    """Random Q6_K blocks (ql[128] qh[64] scales int8[16] d f16) and their dequantization."""
    raw, out = b"", []
    for _ in range(nblocks):
        ql = RNG.integers(0, 256, 128, dtype=np.uint8)
        qh = RNG.integers(0, 256, 64, dtype=np.uint8)
        sc = RNG.integers(-128, 128, 16).astype(np.int8)
        d = f16(RNG.uniform(0.0005, 0.002))
        raw += ql.tobytes() + qh.tobytes() + sc.tobytes() + d.tobytes()
        y = np.zeros(256, np.float32)
        df = np.float32(d)
        for half in range(2):
            L, H, S = ql[64 * half:], qh[32 * half:], sc[8 * half:]
            l = np.arange(32)
            is_ = l // 16
            q1 = ((L[l] & 0xF) | (((H[l] >> 0) & 3) << 4)).astype(np.int32) - 32
            q2 = ((L[l + 32] & 0xF) | (((H[l] >> 2) & 3) << 4)).astype(np.int32) - 32
            q3 = ((L[l] >> 4) | (((H[l] >> 4) & 3) << 4)).astype(np.int32) - 32
            q4 = ((L[l + 32] >> 4) | (((H[l] >> 6) & 3) << 4)).astype(np.int32) - 32
            base = 128 * half
            for k, q in enumerate((q1, q2, q3, q4)):
                y[base + 32 * k + l] = (df * S[is_ + 2 * k].astype(np.float32)) * q.astype(np.float32)
        out.append(y)
    return raw, np.concatenate(out)


def plain(x, kind):
    x = x.astype(np.float32).reshape(-1)
    if kind == "F32":
        return x.tobytes(), x
    if kind == "F16":
        h = f16(x)
        return h.tobytes(), h.astype(np.float32)
    if kind == "BF16":  # round to nearest even
        u = x.view(np.uint32).astype(np.uint64)
        b = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        return b.tobytes(), (b.astype(np.uint32) << 16).view(np.float32)
    raise ValueError(kind)


QUANT = {"Q8_0": q8_0, "Q4_0": q4_0, "Q4_1": q4_1, "Q5_0": q5_0, "Q5_1": q5_1}


def encode(x, kind):
    return QUANT[kind](x) if kind in QUANT else plain(x, kind)


# ---- llama.cpp q/k permutation ----------------------------------------------------------
def permute(w, n_head):
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


# ---- GGUF writer --------------------------------------------------------------------------
def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def kv(key, typ, val):
    T = {"u8": 0, "i8": 1, "u16": 2, "i16": 3, "u32": 4, "i32": 5, "f32": 6, "bool": 7, "str": 8, "arr": 9,
         "u64": 10, "i64": 11, "f64": 12}
    F = {"u8": "<B", "i8": "<b", "u16": "<H", "i16": "<h", "u32": "<I", "i32": "<i", "f32": "<f", "bool": "<?",
         "u64": "<Q", "i64": "<q", "f64": "<d"}
    out = gstr(key) + struct.pack("<I", T[typ])
    if typ == "str":
        return out + gstr(val)
    if typ == "arr":
        et, items = val
        out += struct.pack("<IQ", T[et], len(items))
        return out + b"".join(gstr(v) if et == "str" else struct.pack(F[et], v) for v in items)
    return out + struct.pack(F[typ], val)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    tokens = ["<unk>", "<s>", "</s>"] + ["tok%d" % i for i in range(V - 3)]
    meta = [
        kv("general.architecture", "str", "llama"),
        kv("general.name", "str", "mu tiny llama"),
        kv("general.alignment", "u32", ALIGN),
        kv("llama.block_count", "u32", 1),
        kv("llama.context_length", "u32", 256),
        kv("llama.embedding_length", "u32", D),
        kv("llama.feed_forward_length", "u32", F),
        kv("llama.attention.head_count", "u32", NH),
        kv("llama.attention.head_count_kv", "u32", NKV),
        kv("llama.attention.layer_norm_rms_epsilon", "f32", 1e-5),
        kv("llama.rope.freq_base", "f32", 10000.0),
        kv("tokenizer.ggml.model", "str", "llama"),
        kv("tokenizer.ggml.tokens", "arr", ("str", tokens)),
        kv("tokenizer.ggml.scores", "arr", ("f32", [-float(i) for i in range(V)])),
        kv("tokenizer.ggml.token_type", "arr", ("i32", [2, 3, 3] + [1] * (V - 3))),
        kv("tokenizer.ggml.bos_token_id", "u32", 1),
        kv("tokenizer.ggml.eos_token_id", "u32", 2),
        kv("tokenizer.ggml.add_bos_token", "bool", True),
        kv("test.i8", "i8", -5),
        kv("test.u64", "u64", 1 << 40),
        kv("test.i64", "i64", -7),
        kv("test.f64", "f64", 0.25),
        kv("test.u16_arr", "arr", ("u16", [1, 65535])),
    ]
    W = lambda *s: RNG.normal(0, 0.05, s).astype(np.float32)  # noqa: E731
    wq, wk = W(NH * HD, D), W(NKV * HD, D)
    # (hf name, gguf name, HF tensor, ggml kind, permute heads)
    spec = [
        ("model.embed_tokens.weight", "token_embd.weight", W(V, D), "Q8_0", 0),
        ("model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight", 1 + W(D), "F32", 0),
        ("model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight", wq, "Q4_0", NH),
        ("model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight", wk, "Q4_1", NKV),
        ("model.layers.0.self_attn.v_proj.weight", "blk.0.attn_v.weight", W(NKV * HD, D), "F16", 0),
        ("model.layers.0.self_attn.o_proj.weight", "blk.0.attn_output.weight", W(D, NH * HD), "BF16", 0),
        ("model.layers.0.post_attention_layernorm.weight", "blk.0.ffn_norm.weight", 1 + W(D), "F32", 0),
        ("model.layers.0.mlp.gate_proj.weight", "blk.0.ffn_gate.weight", W(F, D), "Q5_0", 0),
        ("model.layers.0.mlp.up_proj.weight", "blk.0.ffn_up.weight", W(F, D), "Q5_1", 0),
        ("model.layers.0.mlp.down_proj.weight", "blk.0.ffn_down.weight", W(D, F), "Q8_0", 0),
        ("model.norm.weight", "output_norm.weight", 1 + W(D), "F32", 0),
        ("lm_head.weight", "output.weight", W(V, D), "Q4_0", 0),
        ("extra.q6_k", "extra.q6_k", None, "Q6_K", 0),
    ]
    infos, blobs, expect = [], [], {}
    off = 0
    for hf, gg, x, kind, heads in spec:
        if kind == "Q6_K":
            raw, deq = q6_k_random(2)
            shape = (2, 256)
        else:
            shape = x.shape
            stored = permute(x, heads) if heads else x
            raw, deq = encode(stored, kind)
            deq = deq.reshape(shape)
            if heads:
                deq = unpermute(deq, heads)
        ne = tuple(reversed(shape))
        infos.append(gstr(gg) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", n) for n in ne)
                     + struct.pack("<IQ", GGML[kind], off))
        pad = (-len(raw)) % ALIGN
        blobs.append(raw + b"\0" * pad)
        off += len(raw) + pad
        expect[hf] = deq.reshape(shape).astype(np.float32)
    head = b"GGUF" + struct.pack("<IQQ", 3, len(infos), len(meta)) + b"".join(meta) + b"".join(infos)
    head += b"\0" * ((-len(head)) % ALIGN)
    with open(root + "/tests/golden/tiny_llama.gguf", "wb") as f:
        f.write(head + b"".join(blobs))
    write_safetensors(root + "/tests/golden/tiny_llama.expect.safetensors", expect)
    crosscheck(root + "/tests/golden/tiny_llama.gguf", spec, expect)


def crosscheck(path, spec, expect):
    try:
        from gguf import GGUFReader
        from gguf.quants import dequantize
    except ImportError:
        print("gguf package not available: cross-check skipped")
        return
    byname = {gg: (hf, heads) for hf, gg, _, _, heads in spec}
    for t in GGUFReader(path).tensors:
        hf, heads = byname[t.name]
        x = dequantize(t.data, t.tensor_type).reshape(expect[hf].shape)
        if heads:
            x = unpermute(x, heads)
        diff = float(np.abs(x - expect[hf]).max())
        print("%-28s %-5s max |gguf - expect| = %g" % (t.name, t.tensor_type.name, diff))
        assert diff == 0, t.name


def write_safetensors(path, tensors):
    header, data, off = {}, b"", 0
    for name, t in tensors.items():
        b = np.ascontiguousarray(t, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        data += b
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


if __name__ == "__main__":
    main()
