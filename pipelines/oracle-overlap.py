#!/usr/bin/env python3
"""oracle-overlap.py REGION MASK — localization precision of MASK against the oracle REGION.

Prints one TSV line: overlap (the fraction of MASK's selected parameters that lie inside
REGION, in [0, 1]), the parameters in both, and MASK's selected parameters. Both are mask
streams (mu-stream(5)) of the same model, read with `mu-dump --full` (on PATH); python3
standard library only. A tensor must have the same granularity and unit count in both
(bitsets are then compared bit by bit, whatever their bit order); a unit holds
params/selected parameters of its record.
"""
import base64
import json
import subprocess
import sys


def fail(msg):
    sys.stderr.write(f"oracle-overlap: {msg}\n")
    sys.exit(1)


def read_mask(path):
    """The records of a mask stream: name -> (granularity, units, bitset bytes, params, selected)."""
    try:
        out = subprocess.run(["mu-dump", "--full", "--quiet", "--kind", "mask", "--no-header", path],
                             check=True, capture_output=True, text=True).stdout
    except subprocess.CalledProcessError as e:
        fail(e.stderr.strip() or f"{path}: mu-dump failed")
    except OSError as e:
        fail(f"{path}: cannot run mu-dump: {e}")
    recs = {}
    for i, line in enumerate(out.splitlines()):
        r = json.loads(line)
        try:
            bits = base64.b64decode(r["bits"]["base64"])
            recs[r["name"]] = (r["granularity"], r["units"], bits, r["params"], r["selected"])
        except (KeyError, TypeError) as e:
            fail(f"{path}: record {i}: no field {e}")
    return recs


def popcount(b):
    return sum(bin(x).count("1") for x in b)


def overlap(region_path, mask_path):
    """(params of MASK inside REGION, params of MASK)."""
    region, mask = read_mask(region_path), read_mask(mask_path)
    inside = total = 0
    for name, (gran, units, bits, params, selected) in mask.items():
        total += params
        if name not in region or selected == 0:
            continue
        rgran, runits, rbits, _, _ = region[name]
        if (rgran, runits, len(rbits)) != (gran, units, len(bits)):
            fail(f"{mask_path}: tensor {name}: granularity {gran}/{units} units, "
                 f"but {rgran}/{runits} in {region_path}")
        both = popcount(bytes(a & b for a, b in zip(bits, rbits)))
        inside += both * params // selected
    return inside, total


def main():
    if len(sys.argv) != 3:
        sys.stderr.write("usage: oracle-overlap.py REGION MASK\n")
        sys.exit(2)
    inside, total = overlap(sys.argv[1], sys.argv[2])
    if total == 0:
        fail(f"{sys.argv[2]}: selects no parameters")
    print(f"{inside / total:.6f}\t{inside}\t{total}")


if __name__ == "__main__":
    main()
