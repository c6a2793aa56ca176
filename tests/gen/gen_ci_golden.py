#!/usr/bin/env python3
"""gen_ci_golden.py — golden values for lib/ci.c (tests/t_metrics.c) and mu-score's
confidence intervals (tests/sh/t_score.sh) from scipy and statsmodels.

Run from the project root with a venv holding scipy and statsmodels:
    /root/gold/bin/python tests/gen/gen_ci_golden.py
Writes tests/golden/metrics/ci.json:
  norm_ppf   [p, scipy.stats.norm.ppf(p)]
  t_ppf      [p, df, scipy.stats.t.ppf(p, df)]
  t_cdf      [t, df, scipy.stats.t.cdf(t, df)]
  mean       [values, level, lo, hi]: scipy.stats.t.interval(level, n - 1, mean,
             std(ddof=1) / sqrt(n))
  wilson     [k, n, level, lo, hi]: statsmodels proportion_confint(method='wilson')
  paired_diff [n11, b, c, n00, level, lo, hi]: Newcombe's interval of a paired difference
             of proportions (paired_ci.py: statsmodels' Wilson intervals, checked against
             Fagerland et al.'s worked example)
  score      [metric, split, lo, hi]: the 95% intervals mu-score --by split must give on
             tests/golden/metrics/score.outputs.mpk.zst (per-record choice_acc: Wilson;
             choice_prob, answer_prob: t), from the stream's records read here
"""
import json, os
import msgpack, zstandard
import numpy as np
import scipy.stats
from statsmodels.stats.proportion import proportion_confint
from paired_ci import newcombe_paired

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "metrics", "ci.json")

ps = [1e-300, 1e-12, 1e-6, 0.001, 0.01, 0.025, 0.05, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95, 0.975,
      0.99, 0.995, 0.999, 1 - 1e-9]
dfs = [1, 2, 3, 4, 5, 7, 10, 15, 29, 30, 63, 100, 1000, 1e6]
rng = np.random.default_rng(7)
samples = [
    [0.25, 0.5, 0.75],
    [1.0, 2.0],
    list(rng.uniform(0, 1, 16)),
    list(rng.normal(0.3, 0.1, 40)),
    list(rng.exponential(0.05, 200)),
    [0.5] * 5 + [0.6],
]
golden = {
    "norm_ppf": [[p, float(scipy.stats.norm.ppf(p))] for p in ps],
    "t_ppf": [[p, df, float(scipy.stats.t.ppf(p, df))] for p in ps if p >= 1e-12 for df in dfs],
    "t_cdf": [[t, df, float(scipy.stats.t.cdf(t, df))]
              for t in [-40.0, -5.0, -2.0, -0.3, 0.0, 0.01, 1.0, 2.5, 8.0, 100.0] for df in dfs],
    "mean": [],
    "wilson": [],
}
for x in samples:
    x = [float(v) for v in x]
    a = np.array(x)
    for level in (0.9, 0.95, 0.99):
        lo, hi = scipy.stats.t.interval(level, len(a) - 1, a.mean(), a.std(ddof=1) / np.sqrt(len(a)))
        golden["mean"].append([x, level, float(lo), float(hi)])
for k, n in [(0, 16), (6, 16), (9, 16), (16, 16), (1, 1), (0, 1), (37, 40), (123, 1000), (3, 8)]:
    for level in (0.9, 0.95, 0.99):
        lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
        golden["wilson"].append([k, n, level, float(lo), float(hi)])
# tables: Cavo et al. and Bentur et al. (Fagerland et al. ch. 8), empty margins, no
# discordant pairs, negative correlation, one record, large and lopsided
golden["paired_diff"] = []
for t in [(59, 6, 16, 80), (1, 1, 7, 12), (0, 0, 0, 16), (16, 0, 0, 0), (9, 0, 0, 7), (0, 8, 8, 0),
          (5, 9, 0, 2), (2, 0, 5, 9), (120, 4, 11, 65), (1, 0, 0, 0), (0, 1, 0, 0), (400, 37, 12, 551)]:
    for level in (0.9, 0.95, 0.99):
        golden["paired_diff"].append(list(t) + [level, *newcombe_paired(*t, level)])
# the per-record values of score.outputs.mpk.zst, by split
STREAM = os.path.join(os.path.dirname(OUT), "score.outputs.mpk.zst")
with open(STREAM, "rb") as f:
    objs = list(msgpack.Unpacker(zstandard.ZstdDecompressor().stream_reader(f), raw=False))
vals = {}
for r in objs[1:]:
    f32 = lambda key: np.frombuffer(r[key]["data"], dtype="<f4").astype(np.float64)
    cl, ans, tl = f32("choice_logprobs"), r["answer"], f32("target_logprobs")
    v = vals.setdefault(r["meta"]["split"], {"choice_acc": [], "choice_prob": [], "answer_prob": []})
    v["choice_acc"].append(float(np.argmax(cl) == ans))
    v["choice_prob"].append(float(np.exp(cl[ans]) / np.exp(cl).sum()))
    v["answer_prob"].append(float(np.exp(tl.mean())))
golden["score"] = []
for split in sorted(vals):
    for metric, xs in vals[split].items():
        a = np.array(xs)
        if metric == "choice_acc":
            lo, hi = proportion_confint(int(a.sum()), len(a), alpha=0.05, method="wilson")
        else:
            lo, hi = scipy.stats.t.interval(0.95, len(a) - 1, a.mean(), a.std(ddof=1) / np.sqrt(len(a)))
        golden["score"].append([metric, split, float(lo), float(hi)])
with open(OUT, "w") as f:
    json.dump(golden, f, indent=0)
    f.write("\n")
print("wrote", OUT)
