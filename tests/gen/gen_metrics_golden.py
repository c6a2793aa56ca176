#!/usr/bin/env python3
"""gen_metrics_golden.py — golden values for lib/metrics (tests/t_metrics.c) and
mu-score (tests/sh/t_score.sh) from the reference Python libraries.

Run from the project root with the golden venv (numpy, scipy, scikit-learn,
rouge_score, nltk, msgpack, zstandard):
    /root/gold/bin/python tests/gen/gen_metrics_golden.py
Writes tests/golden/metrics/:
  rouge.json       rouge_score RougeScorer(['rouge1','rougeL'], use_stemmer=True/False)
                   on sentence pairs (TOFU-like answers, edits, punctuation, Unicode)
  porter.json      nltk PorterStemmer().stem on tricky words
  ks.json          scipy.stats.ks_2samp(method='auto') on LCG-generated samples
                   (both the exact and the asymptotic branch, ties, n1 == n2 and not)
  kolmogorov.json  scipy.stats.kstwo.sf(x, n) and scipy.special.smirnov(n, x) grids
  auc.json         sklearn.metrics.roc_auc_score with ties
  zlib.json        len(zlib.compress(text))
  score.outputs.mpk.zst, score.reference.mpk.zst, score.expected.json
                   a small outputs stream (written with msgpack + zstandard exactly as
                   man/mu-stream.5 describes) and the numbers mu-score must print.
Samples for ks.json come from a 64-bit LCG the C test re-creates, so large samples
need no data in the file.
"""
import json, math, os, random, zlib
import numpy as np
import scipy.stats, scipy.special
from sklearn.metrics import roc_auc_score
from rouge_score import rouge_scorer
from nltk.stem import porter

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "metrics")
os.makedirs(OUT, exist_ok=True)
rng = random.Random(1234)


def dump(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(obj, f, indent=0, ensure_ascii=False)
        f.write("\n")


# ---------------- ROUGE ----------------
def tofu_answers():
    path = os.path.join(os.path.dirname(OUT), "..", "..", "..", "shared", "data", "tofu", "forget10_perturbed.jsonl")
    out = []
    if os.path.exists(path):
        for line in open(path):
            r = json.loads(line)
            out.append((r["answer"], r["paraphrased_answer"]))
            for p in r["perturbed_answer"][:2]:
                out.append((r["answer"], p))
    return out


def mutate(s):
    w = s.split()
    for _ in range(rng.randint(0, 4)):
        op = rng.randint(0, 3)
        if not w:
            break
        i = rng.randrange(len(w))
        if op == 0:
            del w[i]
        elif op == 1:
            w.insert(i, rng.choice(["the", "Running", "happily", "nationalization", "(x)", "A.", "42"]))
        elif op == 2:
            w[i] = w[i].upper()
        else:
            j = rng.randrange(len(w))
            w[i], w[j] = w[j], w[i]
    return " ".join(w)


pairs = tofu_answers()
rng.shuffle(pairs)
pairs = pairs[:150]
base = ["The cat sat on the mat.", "cats are running quickly!", "Running runs ran runner",
        "Generalization of conditional rationality", "hopping hoped hoping hopeful",
        "", "   ", "!!!", "Kelvin \u212a and \u0130stanbul caf\u00e9 na\u00efve", "ABC-def_ghi 123x",
        "It was relational, operational and national.", "skies skiing sky dying lying",
        "one two three four five six", "six five four three two one"]
for a in base:
    for b in base[:8]:
        pairs.append((a, b))
for a, _ in list(pairs[:60]):
    pairs.append((a, mutate(a)))
rouge = []
for stem in (True, False):
    sc = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=stem)
    for t, p in pairs:
        s = sc.score(t, p)
        rouge.append({"stem": int(stem), "target": t, "prediction": p,
                      "r1": [s["rouge1"].precision, s["rouge1"].recall, s["rouge1"].fmeasure],
                      "rl": [s["rougeL"].precision, s["rougeL"].recall, s["rougeL"].fmeasure]})
dump("rouge.json", rouge)

st = porter.PorterStemmer()
words = ["caresses", "ponies", "ties", "cats", "feed", "agreed", "plastered", "bled", "motoring",
         "sing", "conflated", "troubled", "sized", "hopping", "tanned", "falling", "hissing",
         "fizzed", "failing", "filing", "happy", "sky", "relational", "conditional", "rational",
         "valenci", "hesitanci", "digitizer", "conformabli", "radicalli", "differentli", "vileli",
         "analogousli", "vietnamization", "predication", "operator", "feudalism", "decisiveness",
         "hopefulness", "callousness", "formaliti", "sensitiviti", "sensibiliti", "triplicate",
         "formative", "formalize", "electriciti", "electrical", "hopeful", "goodness", "revival",
         "allowance", "inference", "airliner", "gyroscopic", "adjustable", "defensible",
         "irritant", "replacement", "adjustment", "dependent", "adoption", "homologou",
         "communism", "activate", "angulariti", "homologous", "effective", "bowdlerize",
         "probate", "rate", "cease", "controll", "roll", "yyyy", "syzygy", "enjoy", "dying",
         "lying", "innings", "generously", "fullness", "archaeology", "analogi", "spied", "died",
         "flies", "skies", "news", "howe", "succeed", "proceeding", "exceeded", "abc123ing"]
dump("porter.json", [[w, st.stem(w)] for w in words])

# the whole TOFU vocabulary (tokens as rouge_score makes them, longer than 3): "word stem" lines
tofu_dir = os.path.join(OUT, "..", "..", "..", "..", "shared", "data", "tofu")
if os.path.isdir(tofu_dir):
    import re
    vocab = set()
    for fn in sorted(os.listdir(tofu_dir)):
        if fn.endswith(".jsonl"):
            for tok in re.split(r"[^a-z0-9]+", open(os.path.join(tofu_dir, fn)).read().lower()):
                if len(tok) > 3:
                    vocab.add(tok)
    with open(os.path.join(OUT, "porter_tofu.txt"), "w") as f:
        for w in sorted(vocab):
            f.write("%s %s\n" % (w, st.stem(w)))


# ---------------- KS ----------------
M64 = (1 << 64) - 1


def lcg_sample(seed, n, r, shift):
    """x_i = ((state >> 33) % r) / r + shift with state = state*A + C mod 2^64."""
    s = seed & M64
    out = []
    for _ in range(n):
        s = (s * 6364136223846793005 + 1442695040888963407) & M64
        out.append(((s >> 33) % r) / r + shift)
    return out


ks = []
cases = [(5, 5, 1000, 0.0), (8, 8, 3, 0.1), (10, 7, 1000, 0.2), (20, 30, 50, 0.05),
         (40, 40, 1 << 30, 0.1), (40, 200, 1 << 30, 0.15), (100, 80, 20, 0.0), (200, 200, 1 << 30, 0.05),
         (400, 400, 1 << 30, 0.02), (400, 399, 1 << 30, 0.03), (1, 1, 10, 0.0), (1, 7, 10, 0.5),
         (3, 1000, 1 << 30, 0.0), (1000, 1000, 1 << 30, 0.01), (999, 1001, 100, 0.0),
         (2500, 4000, 1 << 30, 0.02), (10000, 10000, 1 << 30, 0.005), (50, 50, 1 << 30, 0.3),
         (12000, 30, 1 << 30, 0.05), (10001, 5, 1 << 30, 0.1), (20000, 15000, 1 << 30, 0.01),
         (11000, 11000, 1 << 30, 0.004), (15000, 400, 1 << 30, 0.0), (64, 96, 7, 0.0),
         (300, 7000, 1 << 30, 0.01), (2, 3, 10, 0.0), (30, 30, 1 << 30, 1.0), (60, 45, 1 << 30, 0.2)]
# plus many random small/medium cases (ties from few levels, equal and unequal sizes)
for _ in range(150):
    n1 = rng.randint(1, 80)
    n2 = n1 if rng.random() < 0.3 else rng.randint(1, 300)
    cases.append((n1, n2, rng.choice([2, 5, 20, 1 << 30]), rng.choice([0.0, 0.05, 0.2, 0.5])))
for i, (n1, n2, r, shift) in enumerate(cases):
    a = lcg_sample(1000 + i, n1, r, 0.0)
    b = lcg_sample(5000 + i, n2, r, shift)
    res = scipy.stats.ks_2samp(a, b, method="auto")
    ks.append({"seed_a": 1000 + i, "seed_b": 5000 + i, "n1": n1, "n2": n2, "r": r, "shift": shift,
               "statistic": float(res.statistic), "pvalue": float(res.pvalue)})
dump("ks.json", ks)

kol = []
for n in (3, 10, 50, 140, 141, 500, 2000, 8000, 20000, 120000):
    for x in (0.001, 0.01, 0.02, 0.05, 0.08, 0.1, 0.2, 0.3, 0.45, 0.6, 0.9):
        kol.append({"n": n, "x": x, "kstwo_sf": float(scipy.stats.kstwo.sf(x, n)),
                    "smirnov": float(scipy.special.smirnov(n, x))})
# n*x in (0.5, 1]: the closed form 1 - n!/n^n (2nx - 1)^n, by Stirling's series past n = 140
for n in (10, 140, 141, 500, 2000, 120000):
    for t in (0.55, 0.75, 0.95, 1.0):
        x = t / n
        kol.append({"n": n, "x": x, "kstwo_sf": float(scipy.stats.kstwo.sf(x, n)),
                    "smirnov": float(scipy.special.smirnov(n, x))})
dump("kolmogorov.json", kol)


# ---------------- ROC AUC ----------------
auc = []
for i in range(40):
    n = rng.randint(2, 60)
    levels = rng.choice([3, 10, 1000])
    score = [rng.randrange(levels) / levels for _ in range(n)]
    label = [rng.randint(0, 1) for _ in range(n)]
    label[0], label[1] = 0, 1
    auc.append({"score": score, "label": label, "auc": float(roc_auc_score(label, score))})
dump("auc.json", auc)

texts = ["", "a", "hello hello hello hello", "The quick brown fox jumps over the lazy dog. " * 5,
         "caf\u00e9 na\u00efve \u2014 \u65e5\u672c\u8a9e", "".join(chr(rng.randint(32, 126)) for _ in range(300))]
dump("zlib.json", [{"text": t, "len": len(zlib.compress(t.encode("utf-8")))} for t in texts])


# ---------------- an outputs stream for mu-score ----------------
import msgpack, zstandard


def tensor(dtype, arr):
    arr = np.asarray(arr, dtype={"f32": "<f4", "i32": "<i4"}[dtype])
    return {"dtype": dtype, "shape": list(arr.shape), "data": arr.tobytes()}


def write_stream(path, kind, records):
    cctx = zstandard.ZstdCompressor(write_checksum=True)
    header = {"format": "mu-stream", "version": [1, 0], "kind": kind,
              "producer": {"tool": "gen_metrics_golden.py", "version": "0", "args": []},
              "inputs": [], "meta": {}}
    body = msgpack.packb(header, use_bin_type=True)
    for r in records:
        body += msgpack.packb(r, use_bin_type=True)
    with open(path, "wb") as f:
        f.write(cctx.compress(body))


def make_records(seed, nrec):
    g = np.random.default_rng(seed)
    recs = []
    for i in range(nrec):
        split = "forget" if i % 2 == 0 else "retain"
        m = int(g.integers(2, 7))
        tl = np.log(g.uniform(0.05, 1.0, m)).astype(np.float32)
        ranks = g.integers(0, 3, m).astype(np.int32)
        k = 4
        cl = (-g.uniform(1, 12, k)).astype(np.float32)
        cn = g.integers(1, 6, k).astype(np.int32)
        ans = int(g.integers(0, k))
        words = ["alpha", "beta", "gamma", "delta", "running", "ran"]
        target = " ".join(g.choice(words, 4))
        gen = target if i % 3 == 0 else " ".join(g.choice(words, 3))
        recs.append({"id": i, "meta": {"split": split, "topic": "t%d" % (i % 3)},
                     "target_logprobs": tensor("f32", tl), "target_ranks": tensor("i32", ranks),
                     "choice_logprobs": tensor("f32", cl), "choice_ntokens": tensor("i32", cn),
                     "answer": ans, "generation_text": (" " + gen + "\n") if i % 4 == 0 else gen,
                     "target_text": target,
                     "text_logprobs": tensor("f32", tl)})
    return recs


recs = make_records(7, 24)
ref = make_records(8, 24)
write_stream(os.path.join(OUT, "score.outputs.mpk.zst"), "outputs", recs)
write_stream(os.path.join(OUT, "score.reference.mpk.zst"), "outputs", ref)


def arr(r, key):
    t = r[key]
    return np.frombuffer(t["data"], dtype={"f32": "<f4", "i32": "<i4"}[t["dtype"]]).astype(np.float64)


def truth_ratio(r):
    cl, cn, a = arr(r, "choice_logprobs"), arr(r, "choice_ntokens"), r["answer"]
    norm = cl / cn
    pert = np.delete(norm, a).mean()
    return math.exp(pert - norm[a])


sc = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
expected = {}
for split in ("forget", "retain"):
    rs = [r for r in recs if r["meta"]["split"] == split]
    e = {}
    e["n"] = len(rs)
    e["choice_acc"] = float(np.mean([int(np.argmax(arr(r, "choice_logprobs")) == r["answer"]) for r in rs]))
    e["choice_prob"] = float(np.mean([scipy.special.softmax(arr(r, "choice_logprobs"))[r["answer"]] for r in rs]))
    e["target_prob"] = float(np.mean([math.exp(arr(r, "target_logprobs").sum()) for r in rs]))
    e["answer_prob"] = float(np.mean([math.exp(arr(r, "target_logprobs").mean()) for r in rs]))
    e["target_loss"] = float(np.mean([-arr(r, "target_logprobs").mean() for r in rs]))
    tl = np.concatenate([arr(r, "text_logprobs") for r in rs])
    e["text_loss"] = float(-tl.mean())
    e["perplexity"] = float(math.exp(-tl.mean()))
    e["exact_match"] = float(np.mean([int(r["generation_text"].strip() == r["target_text"].strip()) for r in rs]))
    e["rougeL_recall"] = float(np.mean([sc.score(r["target_text"], r["generation_text"])["rougeL"].recall for r in rs]))
    e["rouge1_recall"] = float(np.mean([sc.score(r["target_text"], r["generation_text"])["rouge1"].recall for r in rs]))
    e["exact_memorization"] = float(np.mean([np.mean(arr(r, "target_ranks") == 0) for r in rs]))
    es = []
    for r in rs:
        rk = arr(r, "target_ranks")
        for k in range(len(rk)):
            if np.all(rk[k:] == 0):
                break
        es.append(1 - k / len(rk))
    e["extraction_strength"] = float(np.mean(es))
    trs = np.array([truth_ratio(r) for r in rs])
    e["truth_ratio"] = float(np.mean(np.minimum(trs, 1 / (trs + 1e-10)))) if split == "forget" \
        else float(np.mean(np.maximum(0, 1 - trs)))
    e["min_k"] = float(np.mean([-np.mean(np.sort(arr(r, "text_logprobs"))[:max(1, int(len(arr(r, "text_logprobs")) * 0.2))]) for r in rs]))
    if split == "forget":
        rt = np.array([truth_ratio(r) for r in ref if r["meta"]["split"] == "forget"])
        e["forget_quality"] = float(scipy.stats.ks_2samp(trs, rt).pvalue)
    expected[split] = e
# model utility over the non-forget groups (here only retain): hmean(Prob., ROUGE-L, TR)
e = expected["retain"]
expected["model_utility"] = float(scipy.stats.hmean([e["answer_prob"], e["rougeL_recall"], e["truth_ratio"]]))
# MIA AUC, forget = members (label 0), retain = non-members (label 1), score = mean NLL
fr = [r for r in recs if r["meta"]["split"] == "forget"] + [r for r in recs if r["meta"]["split"] == "retain"]
expected["mia_auc_loss"] = float(roc_auc_score([0] * 12 + [1] * 12, [-arr(r, "target_logprobs").mean() for r in fr]))


# AUES with original = score.outputs, one run = score.reference (choice_prob forget/retain)
def choice_prob(rs, split):
    return float(np.mean([scipy.special.softmax(arr(r, "choice_logprobs"))[r["answer"]]
                          for r in rs if r["meta"]["split"] == split]))


f0, r0 = choice_prob(recs, "forget"), choice_prob(recs, "retain")
f1, r1 = choice_prob(ref, "forget"), choice_prob(ref, "retain")
x1 = min(1.0, max(0.0, (f0 - f1) / f0))
y1 = min(1.0, max(0.0, r1 / r0))
expected["aues"] = (x1 - 0.0) * (1.0 + y1) / 2


# Min-K%++ (Zhang et al.): per token (log p - mu) / sigma with mu, sigma the mean and std
# of log p over the vocabulary at that position (mu-forward --emit mu-sigma), variance
# floored at 1e-6; the score is minus the mean of the lowest int(k * n) (at least 1)
def make_mu_sigma_records(seed, nrec):
    g = np.random.default_rng(seed)
    recs = []
    for i in range(nrec):
        m = int(g.integers(1, 12))
        lp = np.log(g.uniform(0.01, 1.0, m)).astype(np.float32)
        mu = (-g.uniform(5, 12, m)).astype(np.float32)
        sigma = g.uniform(0.5, 4, m).astype(np.float32)
        if i == 3:
            sigma[0] = 1e-4          # below the floor
        recs.append({"id": i, "meta": {"split": "forget" if i % 3 else "retain"},
                     "text_logprobs": tensor("f32", lp), "token_mu": tensor("f32", mu),
                     "token_sigma": tensor("f32", sigma)})
    return recs


def min_k_pp(r, k):
    lp, mu, sg = arr(r, "text_logprobs"), arr(r, "token_mu"), arr(r, "token_sigma")
    z = np.sort((lp - mu) / np.sqrt(np.maximum(sg * sg, 1e-6)))
    return -z[:max(1, int(len(z) * k))].mean()


mk = make_mu_sigma_records(11, 18)
write_stream(os.path.join(OUT, "score.minkpp.mpk.zst"), "outputs", mk)
expected["min_k_pp"] = {"%s@%g" % (split, k): float(np.mean([min_k_pp(r, k) for r in mk if r["meta"]["split"] == split]))
                        for split in ("forget", "retain") for k in (0.2, 0.5)}
# members (label 0) forget, non-members retain: the AUC of the Min-K%++ score
lab = [0 if r["meta"]["split"] == "forget" else 1 for r in mk]
expected["mia_auc_min_k_pp"] = float(roc_auc_score(lab, [min_k_pp(r, 0.2) for r in mk]))

# --paired: score.outputs (A) against score.reference's records in reverse order (B,
# matched by id), per split of A: the mean difference, its interval (Newcombe's for
# choice_acc, paired_ci.py; else scipy's t interval) and statsmodels' exact McNemar p
# (choice_acc) or scipy's ttest_rel p (answer_prob, target_loss)
from statsmodels.stats.contingency_tables import mcnemar
from paired_ci import newcombe_paired
write_stream(os.path.join(OUT, "score.paired.mpk.zst"), "outputs", ref[::-1])
by_id = {r["id"]: r for r in ref}
paired = {}
for split in ("forget", "retain"):
    rs = [r for r in recs if r["meta"]["split"] == split]
    acc = lambda r: int(np.argmax(arr(r, "choice_logprobs")) == r["answer"])
    a = np.array([acc(r) for r in rs]); b = np.array([acc(by_id[r["id"]]) for r in rs])
    table = [[int(np.sum((a == 1) & (b == 1))), int(np.sum((a == 1) & (b == 0)))],
             [int(np.sum((a == 0) & (b == 1))), int(np.sum((a == 0) & (b == 0)))]]
    d = a - b
    paired["choice_acc@" + split] = {"value": float(d.mean()), "p": float(mcnemar(table, exact=True).pvalue),
                                     "ci": list(newcombe_paired(table[0][0], table[0][1], table[1][0], table[1][1], 0.95))}
    for name, f in (("answer_prob", lambda r: math.exp(arr(r, "target_logprobs").mean())),
                    ("target_loss", lambda r: -arr(r, "target_logprobs").mean())):
        x = np.array([f(r) for r in rs]); y = np.array([f(by_id[r["id"]]) for r in rs])
        d = x - y
        paired[name + "@" + split] = {"value": float(d.mean()), "p": float(scipy.stats.ttest_rel(x, y).pvalue),
                                      "ci": [float(v) for v in scipy.stats.t.interval(0.95, len(d) - 1, d.mean(), scipy.stats.sem(d))]}
# McNemar's exact p on larger and lopsided discordant counts
paired["mcnemar"] = [{"b": b, "c": c, "p": float(mcnemar([[0, b], [c, 0]], exact=True).pvalue)}
                     for b, c in ((0, 0), (0, 1), (3, 9), (10, 10), (40, 17), (1, 300), (250, 230))]
expected["paired"] = paired
dump("score.expected.json", expected)
print("wrote", OUT)
