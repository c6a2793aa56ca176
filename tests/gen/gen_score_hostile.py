#!/usr/bin/env python3
"""gen_score_hostile.py — small outputs streams that mu-score must refuse, each one record
(or a few) with one defect, and one whose meta values are of every scalar kind; for
tests/sh/t_score.sh. Written with msgpack + zstandard exactly as man/mu-stream.5 describes.

Run from the project root with a venv holding msgpack and zstandard:
    /root/torchenv/bin/python tests/gen/gen_score_hostile.py
Writes tests/golden/metrics/hostile/*.mpk.zst (each a few hundred bytes).
"""
import os
import struct
import msgpack
import zstandard

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "metrics", "hostile")


def f32(*v):
    return {"dtype": "f32", "shape": [len(v)], "data": struct.pack("<%df" % len(v), *v)}


def i32(*v):
    return {"dtype": "i32", "shape": [len(v)], "data": struct.pack("<%di" % len(v), *v)}


def header():
    return {"format": "mu-stream", "version": [1, 0], "kind": "outputs",
            "producer": {"tool": "gen_score_hostile.py", "version": "0", "args": []},
            "inputs": [], "meta": {}}


def write(name, records, patch=None):
    """records packed after the header; patch (old, new): bytes of the packed body replaced
    once (same length), to put bytes no msgpack packer writes into a string"""
    body = msgpack.packb(header(), use_bin_type=True)
    for r in records:
        body += msgpack.packb(r, use_bin_type=True)
    if patch:
        old, new = patch
        assert body.count(old) == 1 and len(old) == len(new)
        body = body.replace(old, new)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(zstandard.ZstdCompressor(write_checksum=True).compress(body))


def base(i=0, **kw):
    r = {"id": i, "meta": {"split": "forget"}, "target_logprobs": f32(-0.5, -1.0),
         "target_ranks": i32(0, 2), "generation_text": "alpha beta", "target_text": "alpha gamma"}
    r.update(kw)
    return r


os.makedirs(OUT, exist_ok=True)
write("mu_count.mpk.zst", [base(token_mu=f32(-1, -2, -3), token_sigma=f32(1, 1))])
write("sigma_count.mpk.zst", [base(token_mu=f32(-1, -2), token_sigma=f32(1))])
write("empty_logprobs.mpk.zst", [base(), base(1, target_logprobs=f32())])
write("empty_ranks.mpk.zst", [base(), base(1, target_ranks=i32())])
write("bad_utf8.mpk.zst", [base(generation_text="alpha QQQQ")], (b"alpha QQQQ", b"alpha \xff\xfe\xc3("))
write("meta_list.mpk.zst", [base(meta={"split": [1, 2]})])
write("no_id.mpk.zst", [{k: v for k, v in base().items() if k != "id"}])
# meta values of each scalar kind become --by groups as text
write("meta_kinds.mpk.zst", [base(0, meta={"k": 3}), base(1, meta={"k": -2}), base(2, meta={"k": True}),
                             base(3, meta={"k": 0.5}), base(4, meta={"k": "x"})])
print("wrote", OUT)
