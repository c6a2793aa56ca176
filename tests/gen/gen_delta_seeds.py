#!/usr/bin/env python3
"""Seed deltas (man/mu-delta.5) for the fuzz target fuzz_delta, on the tiny Llama of
tests/golden/parity: one dense, one sparse and one low-rank delta (version 2), written
with the standard library only (the safetensors layout by hand).

    python3 tests/gen/gen_delta_seeds.py   # -> tests/fuzz/seeds/fuzz_delta/*.safetensors
"""
import json
import os
import random
import struct

OUT = os.path.join(os.path.dirname(__file__), "..", "fuzz", "seeds", "fuzz_delta")
UP = "model.layers.0.mlp.up_proj.weight"   # [64, 32]
O = "model.layers.1.self_attn.o_proj.weight"  # [32, 32]


def write(name, version, tensors):
    """tensors: [(name, dtype, shape, bytes)] in order."""
    header = {"__metadata__": {"format": "mu-delta", "version": version}}
    off = 0
    for n, dt, shape, data in tensors:
        header[n] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(t[3] for t in tensors))


def f32(vals):
    return struct.pack("<%df" % len(vals), *vals)


def main():
    rng = random.Random(7)
    os.makedirs(OUT, exist_ok=True)
    write("dense.safetensors", "1", [("model.norm.weight", "F32", [32], f32([rng.uniform(0.5, 1.5) for _ in range(32)]))])
    idx = sorted(rng.sample(range(64 * 32), 9))
    write("sparse.safetensors", "1", [(UP + "::idx", "I64", [9], struct.pack("<9q", *idx)),
                                      (UP + "::val", "F32", [9], f32([rng.gauss(0, 1) for _ in range(9)]))])
    r = 2
    write("lowrank.safetensors", "2", [
        (UP + "::lora_A", "F32", [r, 32], f32([rng.gauss(0, 0.2) for _ in range(r * 32)])),
        (UP + "::lora_B", "F32", [64, r], f32([rng.gauss(0, 0.2) for _ in range(64 * r)])),
        (UP + "::lora_scale", "F32", [1], f32([0.5])),
        (O + "::lora_A", "F32", [1, 32], f32([rng.gauss(0, 0.2) for _ in range(32)])),
        (O + "::lora_B", "F32", [32, 1], f32([rng.gauss(0, 0.2) for _ in range(32)])),
        ("model.norm.weight", "F32", [32], f32([1.0] * 32))])


if __name__ == "__main__":
    main()
