#!/usr/bin/env python3
"""gen_holm_golden.py — golden values for pipelines/holm.awk (tests/sh/t_score.sh) from
statsmodels' multipletests(method='holm').

Run from the project root with a venv holding numpy and statsmodels:
    /root/torchenv/bin/python tests/gen/gen_holm_golden.py
Writes tests/golden/metrics/holm.tsv: a line per p-value, "family<TAB>p<TAB>adjusted", the
families in order and each one's p-values in the order they are given to holm.awk.
"""
import os
import numpy as np
from statsmodels.stats.multitest import multipletests

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "metrics", "holm.tsv")

rng = np.random.default_rng(11)
families = [
    [0.03],                                       # one comparison: unchanged
    [0.01, 0.04, 0.03, 0.005],                    # the textbook case
    [0.5, 0.5, 0.5, 1.0, 1.0],                    # ties and ones (capped at 1)
    [0.0, 0.0019531249999999983, 0.0019531249999999983, 0.25000000000000006, 1.0],  # McNemar's
    [1e-300, 1e-12, 0.2, 0.2, 0.7, 0.00098],      # tiny values, out of order
    list(rng.uniform(0, 1, 40)),                  # a report's worth
    list(rng.uniform(0, 0.05, 72) ** 2),          # many small ones (monotonicity bites)
    [2.0 ** -k for k in range(1, 17)],            # powers of two (exact in binary)
]
with open(OUT, "w") as f:
    for i, ps in enumerate(families):
        adj = multipletests(ps, method="holm")[1]
        for p, a in zip(ps, adj):
            f.write("%d\t%.17g\t%.17g\n" % (i, p, a))
print("wrote", OUT)
