#!/usr/bin/env python3
"""Golden for lib/attrib.c (tests/t_attrib.c): attribution scores computed with PyTorch
autograd on the tiny random Llama of tests/golden/parity (gen_llama_parity.py), float64.

Writes tests/golden/attrib/golden.safetensors:
  forget.ids i32 [Nf, T], forget.len i32 [Nf], forget.prompt i32 [Nf]   (sequences: prompt
  retain.ids, retain.len, retain.prompt                                  then answer; ids
                                                                         right-padded with 0)
  loss_f, loss_r f64 [1]     mean NLL of the answer tokens of each set (all tokens pooled)
  <method>|<granularity>|<HF name>  f64 [units]  the expected scores, for
     act          mean |a_j| of mlp_post (the input of down_proj) over every token
     act_answer   the same over the rows that predict answer tokens only
     act-contrast forget minus retain (every token)
     grad         sum over the unit of |dL_f/dw|
     wagle        sum over the unit of |(w - dL_r/dw / GAMMA) * dL_f/dw|, GAMMA = 2
     memflex      ||g_f,u|| where cos(g_f,u, g_r,u) < MU (MU = 0.1), else 0; plus
                  memflex.norm_f|..., memflex.cos|... for every unit
  Units (lib/mask.h): neuron = rows of gate/up/k/q, columns of down_proj/o_proj; head =
  head_dim (8) consecutive rows (q/k/v) or columns (o_proj); element; matrix.
The unit mapping and the score formulas are written here independently of the C code.

Run (a developer with the venv; CI never runs it):
  /root/gold/bin/python tests/gen/gen_attrib_golden.py
"""
import os

import numpy as np
import torch
from safetensors.numpy import save_file
from transformers import LlamaForCausalLM

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
MODEL = os.path.join(ROOT, "parity")
OUT = os.path.join(ROOT, "attrib")
GAMMA, MU, HEAD_DIM = 2.0, 0.1, 8

GRAD_TENSORS = [  # (name, granularity)
    ("model.layers.0.mlp.down_proj.weight", "neuron"),
    ("model.layers.1.mlp.down_proj.weight", "neuron"),
    ("model.layers.1.mlp.gate_proj.weight", "neuron"),
    ("model.layers.1.self_attn.o_proj.weight", "head"),
    ("model.layers.0.self_attn.k_proj.weight", "head"),
    ("model.layers.0.input_layernorm.weight", "element"),
    ("model.layers.0.self_attn.q_proj.weight", "matrix"),
]
ACT_TENSORS = ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight",
               "model.layers.1.mlp.up_proj.weight"]


def make_set(rng, n, vocab):
    seqs = []
    for _ in range(n):
        p = int(rng.integers(2, 6))
        a = int(rng.integers(1, 4))
        seqs.append((rng.integers(3, vocab, size=p + a).astype(np.int32), p))
    T = max(len(s) for s, _ in seqs)
    ids = np.zeros((n, T), dtype=np.int32)
    for i, (s, _) in enumerate(seqs):
        ids[i, :len(s)] = s
    return seqs, ids, np.array([len(s) for s, _ in seqs], np.int32), np.array([p for _, p in seqs], np.int32)


def run(model, seqs):
    """Mean answer NLL (pooled), its gradients, and per-layer mlp_post activations."""
    acts = {}
    hooks = []
    for L, layer in enumerate(model.model.layers):
        hooks.append(layer.mlp.down_proj.register_forward_pre_hook(
            lambda mod, inp, L=L: acts.setdefault(L, []).append(inp[0].detach()[0].clone())))
    model.zero_grad()
    total, count = 0.0, 0
    for s, p in seqs:
        ids = torch.tensor(s, dtype=torch.long).unsqueeze(0)
        logits = model(input_ids=ids).logits[0]
        logp = torch.log_softmax(logits, dim=-1)
        for t in range(p - 1, len(s) - 1):
            total = total - logp[t, int(s[t + 1])]
            count += 1
    loss = total / count
    loss.backward()
    for h in hooks:
        h.remove()
    grads = {n: p.grad.detach().numpy().copy() for n, p in model.named_parameters()}
    return loss.item(), grads, acts


def mean_abs(acts, seqs, L, answer_only):
    rows = []
    for (s, p), a in zip(seqs, acts[L]):
        a = a.numpy()
        rows.append(a[p - 1:len(s) - 1] if answer_only else a[:len(s)])
    return np.abs(np.concatenate(rows, axis=0)).mean(axis=0)


def unit_axis(name, gran):
    if gran in ("element", "matrix"):
        return None
    return 1 if name.endswith("down_proj.weight") or name.endswith("o_proj.weight") else 0


def to_units(name, gran, x):
    """x: an element-wise array shaped like the weight -> list of per-unit element arrays."""
    if gran == "element":
        return [np.array([v]) for v in x.reshape(-1)]
    if gran == "matrix":
        return [x.reshape(-1)]
    axis = unit_axis(name, gran)
    m = x if x.ndim == 2 else x.reshape(-1, 1)
    vecs = [m[:, j] for j in range(m.shape[1])] if axis == 1 else [m[i, :] for i in range(m.shape[0])]
    if gran == "neuron":
        return vecs
    return [np.concatenate(vecs[h * HEAD_DIM:(h + 1) * HEAD_DIM]) for h in range(len(vecs) // HEAD_DIM)]


def main():
    model = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float64, attn_implementation="eager")
    model.train(False)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(11)
    fseqs, fids, flen, fp = make_set(rng, 4, vocab)
    rseqs, rids, rlen, rp = make_set(rng, 3, vocab)
    loss_f, gf, acts_f = run(model, fseqs)
    loss_r, gr, acts_r = run(model, rseqs)
    w = {n: p.detach().numpy() for n, p in model.named_parameters()}
    out = {"forget.ids": fids, "forget.len": flen, "forget.prompt": fp,
           "retain.ids": rids, "retain.len": rlen, "retain.prompt": rp,
           "loss_f": np.array([loss_f]), "loss_r": np.array([loss_r])}
    for name in ACT_TENSORS:
        L = int(name.split(".")[2])
        out[f"act|neuron|{name}"] = mean_abs(acts_f, fseqs, L, False)
        out[f"act_answer|neuron|{name}"] = mean_abs(acts_f, fseqs, L, True)
        out[f"act-contrast|neuron|{name}"] = mean_abs(acts_f, fseqs, L, False) - mean_abs(acts_r, rseqs, L, False)
    for name, gran in GRAD_TENSORS:
        uf = to_units(name, gran, gf[name])
        ur = to_units(name, gran, gr[name])
        uw = to_units(name, gran, w[name])
        out[f"grad|{gran}|{name}"] = np.array([np.abs(u).sum() for u in uf])
        out[f"wagle|{gran}|{name}"] = np.array([np.abs((x - r / GAMMA) * f).sum() for f, r, x in zip(uf, ur, uw)])
        nf = np.array([np.linalg.norm(u) for u in uf])
        nr = np.array([np.linalg.norm(u) for u in ur])
        cos = np.array([f @ r / (a * b) if a > 0 and b > 0 else 0.0 for f, r, a, b in zip(uf, ur, nf, nr)])
        out[f"memflex|{gran}|{name}"] = np.where(cos < MU, nf, 0.0)
        out[f"memflex.norm_f|{gran}|{name}"] = nf
        out[f"memflex.cos|{gran}|{name}"] = cos
    os.makedirs(OUT, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in out.items()}, os.path.join(OUT, "golden.safetensors"))
    print(f"loss_f {loss_f:.6f} loss_r {loss_r:.6f}; {len(out)} arrays")


if __name__ == "__main__":
    main()
