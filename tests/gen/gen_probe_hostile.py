#!/usr/bin/env python3
"""gen_probe_hostile.py — small activations and probes streams that mu-probe must refuse,
each with one defect, and activations labelled by integers and booleans (which mu-probe
takes as classes by their text); for tests/sh/t_probe.sh. Written with msgpack +
zstandard exactly as man/mu-stream.5 describes.

Run from the project root with a venv holding msgpack and zstandard:
    /root/torchenv/bin/python tests/gen/gen_probe_hostile.py
Writes tests/golden/probe/hostile/*.mpk.zst (each under a kilobyte).
"""
import os
import struct
import msgpack
import zstandard

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "probe", "hostile")
D = 4


def tensor(dtype, shape, values):
    fmt = {"f32": "f", "i32": "i"}[dtype]
    return {"dtype": dtype, "shape": list(shape), "data": struct.pack("<%d%s" % (len(values), fmt), *values)}


def write(name, kind, meta, records):
    header = {"format": "mu-stream", "version": [1, 0], "kind": kind,
              "producer": {"tool": "gen_probe_hostile.py", "version": "0", "args": []},
              "inputs": [], "meta": meta}
    body = msgpack.packb(header, use_bin_type=True)
    for r in records:
        body += msgpack.packb(r, use_bin_type=True)
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(zstandard.ZstdCompressor(write_checksum=True).compress(body))


def entry(i, **kw):
    """resid_post layer 0 at position 2: two separable classes (x[0] = +-1 plus a little)"""
    sign = 1.0 if i % 2 else -1.0
    e = {"site": "resid_post", "layer": 0, "positions": tensor("i32", [1], [2]),
         "x": tensor("f32", [1, D], [sign + 0.01 * i, 0.1 * (i % 3), -0.2, 0.05 * i])}
    e.update(kw)
    return e


def record(i, label=None, acts=None):
    return {"id": i, "meta": {"kind": label if label is not None else ("cat" if i % 2 else "dog")},
            "len": 3, "acts": acts if acts is not None else [entry(i)]}


ACTS_META = {"sites": ["resid_post:0:last"], "dtype": "f32", "model": "gen_probe_hostile"}


def acts(name, bad):
    """eight good records, then bad (a record) as the ninth (record 8)"""
    write(name, "activations", ACTS_META, [record(i) for i in range(8)] + [bad])


os.makedirs(OUT, exist_ok=True)
acts("entry_not_map.mpk.zst", record(8, acts=[3]))
acts("x_not_2d.mpk.zst", record(8, acts=[entry(8, x=tensor("f32", [D], [1, 2, 3, 4]))]))
acts("positions_rows.mpk.zst", record(8, acts=[entry(8, positions=tensor("i32", [2], [1, 2]))]))
acts("x_int.mpk.zst", record(8, acts=[entry(8, x=tensor("i32", [1, D], [1, 2, 3, 4]))]))
acts("label_list.mpk.zst", record(8, label=[1, 2]))
write("int_labels.mpk.zst", "activations", ACTS_META, [record(i, label=7 if i % 2 else -3) for i in range(8)])
write("bool_labels.mpk.zst", "activations", ACTS_META, [record(i, label=bool(i % 2)) for i in range(8)])
write("good.mpk.zst", "activations", ACTS_META, [record(i) for i in range(8)])

# probes streams (kind probes) of one probe for resid_post layer 0 over classes cat, dog
PROBES_META = {"label": "kind", "classes": ["cat", "dog"], "position": "last", "l2": 0.001, "seed": 0,
               "test_fraction": 0.25}


def probe(layer=0, **kw):
    p = {"site": "resid_post", "layer": layer, "classes": ["cat", "dog"], "n_train": 6, "n_test": 2,
         "train_acc": 1.0, "test_acc": 1.0, "train_loss": 0.01, "test_loss": 0.02, "majority_acc": 0.5,
         "majority_class": "cat", "mean": tensor("f32", [D], [0, 0, 0, 0]), "std": tensor("f32", [D], [1, 1, 1, 1]),
         "W": tensor("f32", [2, D], [1, 0, 0, 0, -1, 0, 0, 0]), "b": tensor("f32", [2], [0, 0]),
         "iterations": 10, "converged": True, "loss": 0.01, "grad_max": 1e-6}
    p.update(kw)
    return p


def probes(name, records):
    write(name, "probes", PROBES_META, records)


probes("probes_good.mpk.zst", [probe()])
probes("probes_w_shape.mpk.zst", [probe(W=tensor("f32", [2, D + 1], [0] * (2 * D + 2)))])
probes("probes_std_zero.mpk.zst", [probe(std=tensor("f32", [D], [1, 0, 1, 1]))])
probes("probes_twice.mpk.zst", [probe(), probe()])
probes("probes_no_n_test.mpk.zst", [{k: v for k, v in probe().items() if k != "n_test"}])
probes("probes_no_test_loss.mpk.zst", [{k: v for k, v in probe().items() if k != "test_loss"}])
print("wrote", OUT)
