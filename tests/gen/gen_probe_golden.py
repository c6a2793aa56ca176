#!/usr/bin/env python3
"""gen_probe_golden.py — golden values for lib/probe (tests/t_probe.c) from
scikit-learn's LogisticRegression.

Run from the project root with the golden venv (numpy, scikit-learn):
    /root/gold/bin/python tests/gen/gen_probe_golden.py
Writes tests/golden/probe/logreg.json: a seeded synthetic data set (3 overlapping
Gaussian classes in D=6, 60 points stored as float32 values; the first n_train are the
train split), standardized with sklearn's StandardScaler fitted on the train split
(population std), and a multinomial LogisticRegression (lbfgs, tol 1e-12) fitted to it.
mu's objective is (1/N) sum CE + (l2/2) ||W||^2 with an unpenalized bias, the same
minimizer as sklearn's C * sum CE + ||W||^2 / 2 with C = 1 / (l2 * N). The bias is
stored centred (sum_c b_c = 0; softmax is unchanged by a common shift) as mu reports it.
"""
import json, os
import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import StandardScaler

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "probe")
os.makedirs(OUT, exist_ok=True)

rng = np.random.default_rng(20240611)
C, D, N, N_TRAIN, L2 = 3, 6, 60, 45, 0.05
centres = rng.normal(0.0, 1.0, size=(C, D))
y = np.arange(N) % C
rng.shuffle(y)
scales = np.array([1.0, 3.0, 0.5, 10.0, 0.2, 2.0])   # unequal feature scales
offsets = np.array([0.0, 5.0, -2.0, 100.0, 0.1, -7.0])
X = ((centres[y] + rng.normal(0.0, 1.1, size=(N, D))) * scales + offsets).astype(np.float32)
X64 = X.astype(np.float64)

sc = StandardScaler().fit(X64[:N_TRAIN])
Z = sc.transform(X64)
clf = LogisticRegression(C=1.0 / (L2 * N_TRAIN), solver="lbfgs", tol=1e-12, max_iter=100000)
clf.fit(Z[:N_TRAIN], y[:N_TRAIN])
W = clf.coef_.copy()
b = clf.intercept_ - clf.intercept_.mean()
P = clf.predict_proba(Z)
pred = P.argmax(axis=1)

# the objective's gradient at sklearn's solution (a check that it is the minimizer)
Zt, yt = Z[:N_TRAIN], y[:N_TRAIN]
logits = Zt @ W.T + b
Pt = np.exp(logits - logits.max(1, keepdims=True)); Pt /= Pt.sum(1, keepdims=True)
R = Pt.copy(); R[np.arange(N_TRAIN), yt] -= 1
gW = R.T @ Zt / N_TRAIN + L2 * W
gb = R.mean(0)
loss = -np.log(Pt[np.arange(N_TRAIN), yt]).mean() + 0.5 * L2 * (W ** 2).sum()
maj = np.bincount(yt, minlength=C).argmax()

golden = {
    "sklearn": sklearn.__version__, "C": C, "D": D, "N": N, "n_train": N_TRAIN, "l2": L2,
    "X": X.tolist(), "y": y.tolist(),
    "mean": sc.mean_.tolist(), "std": sc.scale_.tolist(),
    "W": W.tolist(), "b": b.tolist(), "loss": float(loss),
    "grad_max": float(max(np.abs(gW).max(), np.abs(gb).max())),
    "proba": P.tolist(),
    "train_acc": float((pred[:N_TRAIN] == y[:N_TRAIN]).mean()),
    "test_acc": float((pred[N_TRAIN:] == y[N_TRAIN:]).mean()),
    "train_log_loss": float(log_loss(y[:N_TRAIN], P[:N_TRAIN], labels=range(C))),
    "test_log_loss": float(log_loss(y[N_TRAIN:], P[N_TRAIN:], labels=range(C))),
    "majority_class": int(maj),
    "majority_acc": float((y[N_TRAIN:] == maj).mean()),
}
with open(os.path.join(OUT, "logreg.json"), "w") as f:
    json.dump(golden, f, indent=0)
    f.write("\n")
print("train_acc %.4f test_acc %.4f grad_max %.2e loss %.6f"
      % (golden["train_acc"], golden["test_acc"], golden["grad_max"], loss))
