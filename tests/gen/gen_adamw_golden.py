#!/usr/bin/env python3
"""gen_adamw_golden.py — PyTorch references for mu's training library.

Run with the golden venv (torch):  /root/gold/bin/python tests/gen/gen_adamw_golden.py
Writes (deterministically; re-running reproduces the committed files):
  tests/golden/train/optim.json       AdamW/SGD trajectories, read by tests/t_optim.c
  tests/golden/train/objectives.json  objective losses + autograd gradients (part 2
                                      below), read by tests/t_objectives.c

Part 1, the optimizer:

Each case: a config (optimizer, lr, betas, eps, weight decay, momentum, clip, schedule,
warmup, total), two parameters — "a" trained in full, "b" trained only at the flat indices
`idx` (in torch: the gathered elements form their own parameter, which is exactly what a
mask means: untrained elements are neither decayed nor moved) — the gradients fed at every
step, and the parameters after every step. The lr schedule is mu's (see optim.h), applied
through torch.optim.lr_scheduler.LambdaLR; clipping is torch.nn.utils.clip_grad_norm_.
Numbers are written with repr() so float32 values round-trip exactly.
"""
import json, math, os
import torch

def lam(step, warmup, total, sched, min_ratio):
    if step < warmup:
        return (step + 1) / warmup
    if sched == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    f = 1 - progress if sched == "linear" else 0.5 * (1 + math.cos(math.pi * progress))
    return max(f, min_ratio)

def run_case(name, cfg, seed):
    g = torch.Generator().manual_seed(seed)
    a0 = torch.randn(5, 4, generator=g)
    b0 = torch.randn(60, generator=g)
    idx = sorted(torch.randperm(60, generator=g)[:13].tolist())
    a = a0.clone().requires_grad_(True)
    bsel = b0[idx].clone().requires_grad_(True)
    if cfg["opt"] == "adamw":
        opt = torch.optim.AdamW([a, bsel], lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]),
                                eps=cfg["eps"], weight_decay=cfg["wd"], foreach=False)
    else:
        opt = torch.optim.SGD([a, bsel], lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["wd"], foreach=False)
    sch = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lam(s, cfg["warmup"], cfg["total"], cfg["sched"], cfg["min_ratio"]))
    steps = []
    for t in range(cfg["total"]):
        ga = torch.randn(5, 4, generator=g) * (3.0 if t % 2 else 0.5)
        gb = torch.randn(60, generator=g) * (3.0 if t % 2 else 0.5)
        a.grad = ga.clone()
        bsel.grad = gb[idx].clone()
        lr = opt.param_groups[0]["lr"]
        norm = -1.0
        if cfg["clip"] > 0:
            norm = float(torch.nn.utils.clip_grad_norm_([a, bsel], cfg["clip"], foreach=False))
        opt.step()
        sch.step()
        b = b0.clone()
        b[idx] = bsel.detach()
        steps.append({"grad_a": ga.flatten().tolist(), "grad_b": gb.tolist(), "lr": lr,
                      "norm": norm, "a": a.detach().flatten().tolist(), "b": b.tolist()})
    return {"name": name, "config": cfg, "a0": a0.flatten().tolist(), "b0": b0.tolist(),
            "idx": idx, "steps": steps}

base = dict(opt="adamw", lr=0.05, beta1=0.9, beta2=0.999, eps=1e-8, wd=0.1, momentum=0.0,
            clip=0.0, sched="constant", warmup=0, total=6, min_ratio=0.0)
cases = [
    run_case("adamw_plain", dict(base, wd=0.0), 1),
    run_case("adamw_wd_cosine_warmup_clip", dict(base, sched="cosine", warmup=2, total=7, clip=2.0,
                                                  beta2=0.95, eps=1e-6), 2),
    run_case("adamw_linear_clip", dict(base, sched="linear", warmup=1, total=6, clip=1.0,
                                       min_ratio=0.1), 3),
    run_case("sgd_momentum_wd", dict(base, opt="sgd", lr=0.02, momentum=0.9, wd=0.01, clip=4.0), 4),
    run_case("sgd_plain", dict(base, opt="sgd", lr=0.1, wd=0.0), 5),
]
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "train", "optim.json")
with open(out, "w") as f:
    json.dump({"generator": "tests/gen/gen_adamw_golden.py", "torch": torch.__version__,
               "cases": cases}, f)
print("wrote", out, os.path.getsize(out), "bytes")

# ---------------------------------------------------------------------------------------
# Part 2: objectives (lib/objectives.c) — losses and gradients on logits, computed in
# float64 with autograd from the open-unlearning formulas. Writes objectives.json, read
# by tests/t_objectives.c. Sums over labeled positions (mu's convention; see objectives.h).
import torch.nn.functional as F

def objectives_golden():
    g = torch.Generator().manual_seed(11)
    T, V = 7, 13
    z32 = (torch.randn(T, V, generator=g) * 2).float()
    zw32 = (torch.randn(T, V, generator=g) * 2).float()      # DPO's preferred sequence
    r32 = (torch.randn(T, V, generator=g) * 2).float()       # reference logits
    rw32 = (torch.randn(T, V, generator=g) * 2).float()
    labels = torch.tensor([-1, -1, -1, 4, 0, 12, 7])
    wlabels = torch.tensor([-1, -1, 2, 9, 5, 5, -1])
    m = labels >= 0
    mw = wlabels >= 0
    out = {"T": T, "V": V, "logits": z32.flatten().tolist(), "wlogits": zw32.flatten().tolist(),
           "ref": r32.flatten().tolist(), "wref": rw32.flatten().tolist(),
           "labels": labels.tolist(), "wlabels": wlabels.tolist(), "cases": {}}

    def seq_logp(z, lab, mask):
        lp = F.log_softmax(z, -1)
        return lp[mask].gather(-1, lab[mask].unsqueeze(-1)).sum()

    def record(name, fn, params):
        z = z32.double().requires_grad_(True)
        zw = zw32.double().requires_grad_(True)
        loss = fn(z, zw)
        loss.backward()
        zero = torch.zeros(T * V, dtype=torch.float64)
        out["cases"][name] = {"params": params, "loss": float(loss.detach()),
                              "grad": (z.grad if z.grad is not None else zero).flatten().tolist(),
                              "wgrad": (zw.grad if zw.grad is not None else zero).flatten().tolist()}

    def ce(z, zw):
        return F.cross_entropy(z[m], labels[m], reduction="sum")
    record("ce", ce, {})

    floor = -2.6
    def log1mp(z, zw):
        lp = F.log_softmax(z, -1)[m].gather(-1, labels[m].unsqueeze(-1)).squeeze(-1)
        keep = (lp >= floor).double()
        return -(torch.log1p(-torch.exp(lp)) * keep).sum()
    record("log1mp", log1mp, {"floor": floor})

    def wga(z, zw, beta=1.5):
        ce_t = F.cross_entropy(z[m], labels[m], reduction="none")
        w = torch.exp(-ce_t).detach() ** beta
        return -(w * ce_t).sum()
    record("wga", wga, {"beta": 1.5})

    def satimp(z, zw, beta1=2.0, beta2=1.5):
        ce_t = F.cross_entropy(z[m], labels[m], reduction="none")
        w = (torch.exp(-ce_t).detach() ** beta1) * ((1 - torch.exp(-ce_t).detach()) ** beta2)
        return -(w * ce_t).sum()
    record("satimp", satimp, {"beta1": 2.0, "beta2": 1.5})

    def me(z, zw):
        lp = F.log_softmax(z[m], -1)
        return ((lp.exp() * lp).sum(-1) + math.log(V)).sum()
    record("me", me, {})

    def undial(z, zw, beta=3.0):
        r = r32.double()[m]
        onehot = F.one_hot(labels[m], V).double()
        q = F.softmax(r - beta * onehot, -1)
        return F.cross_entropy(z[m], q, reduction="sum")
    record("undial", undial, {"beta": 3.0})

    def kl(z, zw):
        rl = F.log_softmax(r32.double()[m], -1)
        return F.kl_div(F.log_softmax(z[m], -1), rl, reduction="sum", log_target=True)
    record("kl", kl, {})

    def npo(z, zw, beta=0.7):
        s = seq_logp(z, labels, m)
        s_ref = seq_logp(r32.double(), labels, m)
        return -2 / beta * F.logsigmoid(-beta * (s - s_ref))
    record("npo", npo, {"beta": 0.7})

    def simnpo(z, zw, beta=2.5, delta=0.3):
        nll = -seq_logp(z, labels, m)
        a = nll / m.sum() - delta
        return -F.logsigmoid(beta * a) * 2 / beta
    record("simnpo", simnpo, {"beta": 2.5, "delta": 0.3})

    def dpo(z, zw, beta=0.4):
        win = seq_logp(zw, wlabels, mw) - seq_logp(rw32.double(), wlabels, mw)
        lose = seq_logp(z, labels, m) - seq_logp(r32.double(), labels, m)
        return -2 / beta * F.logsigmoid(beta * (win - lose))
    record("dpo", dpo, {"beta": 0.4})

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "train",
                        "objectives.json")
    with open(path, "w") as f:
        json.dump(out, f)
    print("wrote", path, os.path.getsize(path), "bytes")

objectives_golden()
