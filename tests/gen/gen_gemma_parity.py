#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on Gemma (tests/t_model.c,
model_parity_gemma_with_hf_transformers): GeGLU with gelu's tanh form, RMSNorm scaling by
(1 + w), embeddings times sqrt(hidden_size), a tied head, and head_dim != hidden/heads.

Writes into tests/golden/parity_gemma/:
  config.json, model.safetensors   a tiny random Gemma (4 heads, 2 kv heads, head_dim 16,
                                   hidden 32, 2 layers, vocab 97, d_ff 64), F32, norm weights
                                   random around 0 (so 1 + w is not 1)
  golden.safetensors               input_ids i32 [B,T] (right-padded with 0), lengths i32 [B],
                                   targets i32 [B,T] (next token, -1 at padding/last),
                                   logits f32 [B,T,V], loss f32 [1] (mean CE over targets >= 0),
                                   grad.<HF name> f32 for every parameter
The logits and gradients come from GemmaForCausalLM in float64 (eager attention) from the
same f32 weights the C test loads.

Run (a developer with torch and transformers; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_gemma_parity.py
"""
import os

import torch
from transformers import GemmaConfig, GemmaForCausalLM

from hf_parity import gemma_norms_around_zero, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_gemma")


def main():
    torch.manual_seed(20241205)
    cfg = GemmaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                      max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
                      hidden_act="gelu_pytorch_tanh", hidden_activation="gelu_pytorch_tanh",
                      attention_bias=False, bos_token_id=2, eos_token_id=1, pad_token_id=0,
                      initializer_range=0.2)
    model = GemmaForCausalLM(cfg).float()
    gemma_norms_around_zero(model)
    save_model(model, OUT)
    loss = write_golden(GemmaForCausalLM, OUT, cfg.vocab_size, 11, "tests/gen/gen_gemma_parity.py")
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
