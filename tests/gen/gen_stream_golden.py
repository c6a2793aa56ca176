#!/usr/bin/env python3
"""gen_stream_golden.py — independent references for the stream/tensor tests.

Run from the project root with the golden venv:
    /root/gold/bin/python tests/gen/gen_stream_golden.py
It writes (small, committed):
  tests/golden/stream/python.mpk.zst  a mu stream written by Python (msgpack + zstandard,
                                      two frames, content checksums on), one record per
                                      dtype plus a record of plain values
  tests/golden/stream/python.json     what the C reader must find in it (values, shapes,
                                      the file's XXH3-128 digest from the xxhash package)
  tests/golden/stream/halfs.json      f32 bit patterns and PyTorch's f16 and bf16
                                      conversions of them (round to nearest even)
Needs numpy, torch, msgpack, zstandard, xxhash.
"""
import json, os, struct
import numpy as np
import torch, msgpack, zstandard, xxhash

OUT = os.path.join("tests", "golden", "stream")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(20241122)

# ---------------------------------------------------------------- a Python-written stream
DT = {  # mu dtype -> numpy dtype (f16/bf16 handled through torch)
    "f32": np.float32, "f64": np.float64, "i8": np.int8, "u8": np.uint8, "i16": np.int16,
    "u16": np.uint16, "i32": np.int32, "u32": np.uint32, "i64": np.int64, "u64": np.uint64,
    "bool": np.bool_,
}
shapes = {"f32": [2, 3], "f16": [5], "bf16": [2, 2], "f64": [3], "i8": [4], "u8": [2, 2, 2],
          "i16": [3], "u16": [3], "i32": [1, 4], "u32": [2], "i64": [3], "u64": [2], "bool": [5]}
records, expect = [], []
for name, shape in shapes.items():
    n = int(np.prod(shape))
    if name in ("f16", "bf16"):
        x = torch.tensor(rng.normal(size=n) * 100, dtype=torch.float32)
        t = x.to(torch.float16 if name == "f16" else torch.bfloat16)
        data = t.view(torch.int16).numpy().astype("<i2").tobytes()
        values = [float(v) for v in t.to(torch.float32).tolist()]
    elif name == "bool":
        a = rng.integers(0, 2, size=n).astype(np.bool_)
        data, values = a.tobytes(), [bool(v) for v in a]
    else:
        dt = np.dtype(DT[name]).newbyteorder("<")
        if dt.kind == "f":
            a = (rng.normal(size=n) * 1000).astype(dt)
            values = [float(v) for v in a]
        else:
            info = np.iinfo(dt)
            a = np.array([info.min, info.max] + list(rng.integers(info.min, info.max, size=n - 2, endpoint=True)),
                         dtype=dt)[:n] if n >= 2 else np.array([info.max], dtype=dt)
            values = [str(int(v)) for v in a]  # strings: u64 exceeds JSON parsers' int64
        data = a.tobytes()
    records.append({"name": name, "t": {"dtype": name, "shape": shape, "data": data}})
    expect.append({"name": name, "shape": shape, "values": values})
plain = {"text": "héllo \"wörld\"\n\u2603", "ints": [-1, 0, 2**40, -2**40], "x": 0.25,
         "nested": {"a": [1, [2, [3]]], "b": None, "c": True}}
records.append(plain)

header = {"format": "mu-stream", "version": [1, 0], "kind": "tokens",
          "producer": {"tool": "gen_stream_golden.py", "version": "1", "args": []},
          "inputs": [], "meta": {"writer": "python"}}
cctx = zstandard.ZstdCompressor(level=3, write_checksum=True)
objs = [msgpack.packb(header, use_bin_type=True)] + [msgpack.packb(r, use_bin_type=True) for r in records]
half = len(objs) // 2
blob = cctx.compress(b"".join(objs[:half])) + cctx.compress(b"".join(objs[half:]))
path = os.path.join(OUT, "python.mpk.zst")
with open(path, "wb") as f:
    f.write(blob)
with open(os.path.join(OUT, "python.json"), "w") as f:
    json.dump({"kind": "tokens", "records": expect, "plain": {"text": plain["text"], "ints": plain["ints"],
               "x": plain["x"]}, "nrecords": len(records),
               "xxh3": xxhash.xxh3_128_hexdigest(blob), "size": len(blob)}, f, indent=0)

# ---------------------------------------------------------------- f16 / bf16 conversions
def bits(a):
    return [int(v) for v in np.asarray(a, dtype=np.float32).view(np.uint32)]

special = np.array([0.0, -0.0, 1.0, -2.0, 0.1, 1 / 3, 65504.0, 65519.99, 65520.0, 1e6, -1e6,
                    2.0**-14, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25, 2.0**-26, 3 * 2.0**-25,
                    6.1e-5, 5.96e-8, np.inf, -np.inf, 3.3895314e38, 3.4e38, 1.00390625,
                    1.001953125, 1.0009765625, 1.00048828125, 1.0029296875], dtype=np.float32)
# random f32 over many exponents, plus exact ties for both formats
rand = (rng.normal(size=3000) * np.exp2(rng.integers(-30, 30, size=3000))).astype(np.float32)
u = rng.integers(0, 2**32, size=1500, dtype=np.uint64).astype(np.uint32)
rbits = u.view(np.float32)
rbits = rbits[np.isfinite(rbits)]
ties16 = (np.arange(1, 400, dtype=np.uint32) << 13 | 0x1000 | 0x3c000000).view(np.float32)
tiesbf = (np.arange(1, 400, dtype=np.uint32) << 16 | 0x8000 | 0x3f800000).view(np.float32)
allx = np.concatenate([special, rand, rbits, ties16, tiesbf]).astype(np.float32)
t = torch.from_numpy(allx.copy())
f16 = t.to(torch.float16).view(torch.int16).numpy().view(np.uint16)
bf16 = t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
with open(os.path.join(OUT, "halfs.json"), "w") as f:
    json.dump({"f32_bits": bits(allx), "f16_bits": [int(v) for v in f16],
               "bf16_bits": [int(v) for v in bf16]}, f, separators=(",", ":"))
print("wrote", OUT, len(allx), "conversions,", len(blob), "byte stream")
