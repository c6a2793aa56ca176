#!/usr/bin/env python3
"""gen_adamw_golden.py — PyTorch reference trajectories for mu's optimizer (lib/optim.c).

Run with the golden venv (torch):  /root/gold/bin/python tests/gen/gen_adamw_golden.py
Writes tests/golden/train/optim.json, read by tests/t_optim.c.

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
