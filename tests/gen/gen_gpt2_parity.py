#!/usr/bin/env python3
"""Goldens for the model's parity with Hugging Face transformers on GPT-2 (tests/t_model.c,
model_parity_gpt2*_with_hf_transformers): learned position embeddings, LayerNorms with
weights and biases, Conv1D weights stored [in, out], the fused c_attn (all q, then k, then v
outputs), a plain GELU MLP, biases on every projection.

Writes two tiny random GPT2LMHeadModel (vocab 97, n_embd 32, 4 heads, 2 layers, 64
positions), F32, every LayerNorm weight around 1 and every bias random (transformers
initializes them to 1 and 0, which would hide a wrong norm or bias), into tests/golden/
(MU_GOLDEN_OUT overrides the parent directory):
  parity_gpt2/          tied head, gelu_new (tanh form), n_inner 64;
  parity_gpt2_untied/   untied lm_head, gelu (erf form), n_inner null (4 n_embd), and its
                        tensors stored without "transformer." (wte.weight, h.0.*), as the
                        hub's gpt2 checkpoint stores them;
each with config.json, model.safetensors and golden.safetensors as tests/gen/hf_parity.py
writes it (gradients under transformers' parameter names, transformer.*).

Run (a developer with torch and transformers >= 5; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_gpt2_parity.py
"""
import os

import torch
from safetensors.torch import load_file, save_file
from transformers import GPT2Config, GPT2LMHeadModel

from hf_parity import randomize_biases, randomize_norms, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden")


def strip_transformer_prefix(out):
    """model.safetensors rewritten with the base model's tensors named as the hub's gpt2."""
    path = os.path.join(out, "model.safetensors")
    sd = load_file(path)
    save_file({k.removeprefix("transformer."): v.contiguous() for k, v in sd.items()}, path,
              metadata={"format": "pt"})


def make(sub, seed, bare=False, **kw):
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=4, n_positions=64, layer_norm_epsilon=1e-5,
                     bos_token_id=None, eos_token_id=1, pad_token_id=0, initializer_range=0.2, **kw)
    model = GPT2LMHeadModel(cfg).float()
    randomize_norms(model, 1.0, suffixes=("ln_1.weight", "ln_2.weight", "ln_f.weight"))
    randomize_biases(model)
    out = os.path.join(OUT, sub)
    save_model(model, out)
    if bare:
        strip_transformer_prefix(out)
    loss = write_golden(GPT2LMHeadModel, out, cfg.vocab_size, seed, "tests/gen/gen_gpt2_parity.py")
    print(sub, "loss", loss, "files in", os.path.normpath(out))


def main():
    make("parity_gpt2", 20261208, n_inner=64, activation_function="gelu_new", tie_word_embeddings=True)
    make("parity_gpt2_untied", 20261209, bare=True, n_inner=None, activation_function="gelu",
         tie_word_embeddings=False)


if __name__ == "__main__":
    main()
