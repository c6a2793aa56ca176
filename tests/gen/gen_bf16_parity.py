#!/usr/bin/env python3
"""Golden for mu's bf16-weight model (tests/t_model.c, model_bf16_parity_with_torch).

mu's bf16 semantics (kernels.h, "bf16 weights"): GEMM and embedding weights are stored in
bf16; every GEMM rounds its f32 operands (X forward; dY and X backward) to bf16 and
accumulates exactly-representable products in f32; everything else (norms, RoPE,
attention, SwiGLU, residual adds, losses) stays f32; gradients are f32.

This script computes that with Hugging Face's LlamaForCausalLM in float32 on the tiny
random model of tests/golden/parity (gen_llama_parity.py): each nn.Linear runs through an
autograd function that rounds its input and weight to bf16 (torch.bfloat16, round to
nearest even) forward and rounds the incoming gradient to bf16 backward; the embedding
table is rounded to bf16. float32, not float64: bf16 rounding of gradients amplifies
tiny differences (a value on the other side of a rounding boundary changes by one bf16
ulp, which moves the next values across boundaries), so a float64 reference sits about
3e-3 (relative L2) from ANY f32 computation in the first layer's gradients, torch's own
included, while f32 computations agree with each other far more closely.

Writes tests/golden/parity/golden_bf16.safetensors: logits f32 [B,T,V], loss f32 [1], and
grad.<HF name> f32 for every parameter, for the batch stored in golden.safetensors.

Run (a developer with the venv; CI never runs it):
  /root/gold/bin/python tests/gen/gen_bf16_parity.py
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import LlamaForCausalLM

DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "parity")


def bf(t):
    return t.to(torch.bfloat16).to(t.dtype)


class BfLinear(torch.autograd.Function):
    """y = bf(x) bf(W)^T;  dx = bf(dy) bf(W);  dW = bf(dy)^T bf(x)"""

    @staticmethod
    def forward(ctx, x, w):
        xb, wb = bf(x), bf(w)
        ctx.save_for_backward(xb, wb)
        return xb @ wb.T

    @staticmethod
    def backward(ctx, dy):
        xb, wb = ctx.saved_tensors
        dyb = bf(dy)
        dx = dyb @ wb
        dw = dyb.reshape(-1, dyb.shape[-1]).T @ xb.reshape(-1, xb.shape[-1])
        return dx, dw


def patch_linears(model):
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            assert mod.bias is None
            mod.forward = (lambda m: (lambda x: BfLinear.apply(x, m.weight)))(mod)


def main():
    g = load_file(os.path.join(DIR, "golden.safetensors"))
    ids, lengths, targets = g["input_ids"], g["lengths"], g["targets"]
    B, T = ids.shape
    mask = torch.zeros((B, T), dtype=torch.long)
    for b, n in enumerate(lengths.tolist()):
        mask[b, :n] = 1
    model = LlamaForCausalLM.from_pretrained(DIR, torch_dtype=torch.float32,
                                             attn_implementation="eager")
    model.train(False)
    patch_linears(model)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.copy_(bf(emb))
    out = model(input_ids=ids.long(), attention_mask=mask,
                position_ids=torch.arange(T).unsqueeze(0).expand(B, T))
    logits = out.logits
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.long().reshape(-1),
                                             ignore_index=-1)
    loss.backward()
    tensors = {"logits": logits.detach().float().contiguous(),
               "loss": loss.detach().float().reshape(1)}
    for name, p in model.named_parameters():
        tensors["grad." + name] = p.grad.detach().float().contiguous()
    save_file(tensors, os.path.join(DIR, "golden_bf16.safetensors"),
              metadata={"generator": "tests/gen/gen_bf16_parity.py"})
    gap = (logits.detach().float() - g["logits"]).abs().max().item()
    print("loss", float(loss.detach()), "max |logits_bf16 - logits_f32|", gap)


if __name__ == "__main__":
    main()
