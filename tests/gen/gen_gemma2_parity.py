#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on Gemma-2 (tests/t_model.c,
model_parity_gemma2_with_hf_transformers): Gemma's conventions (GeGLU with gelu's tanh form,
RMSNorm by (1 + w), embeddings times sqrt(hidden_size), tied head) plus Gemma-2's: norms on
both sides of each block (input_layernorm, post_attention_layernorm,
pre_feedforward_layernorm, post_feedforward_layernorm), soft-capped attention scores and
final logits, a sliding window on the even layers, and scores scaled by
query_pre_attn_scalar^-1/2 instead of head_dim^-1/2.

Writes into tests/golden/parity_gemma2/:
  config.json, model.safetensors   a tiny random Gemma-2 (4 heads, 2 kv heads, head_dim 16,
                                   hidden 32, 3 layers: 0 and 2 slide, 1 is global; vocab 97,
                                   d_ff 64; sliding_window 4, shorter than the batch's 9
                                   tokens; attention soft-cap 1.5 and final soft-cap 2.5,
                                   which the scores and logits reach; query_pre_attn_scalar
                                   24 != head_dim), F32, norm weights random around 0
  golden.safetensors               as gen_gemma_parity.py (hf_parity.write_golden), rows of
                                   9, 7 and 6 tokens
The logits and gradients come from Gemma2ForCausalLM in float64 (eager attention, no
cache) from the same f32 weights the C test loads.

Run (a developer with torch and transformers; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_gemma2_parity.py
"""
import os

import torch
from transformers import Gemma2Config, Gemma2ForCausalLM

from hf_parity import gemma_norms_around_zero, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_gemma2")


def main():
    torch.manual_seed(20261205)
    cfg = Gemma2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
                       hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
                       sliding_window=4, attn_logit_softcapping=1.5, final_logit_softcapping=2.5,
                       attention_bias=False, bos_token_id=2, eos_token_id=1, pad_token_id=0,
                       initializer_range=0.2, use_cache=False)
    model = Gemma2ForCausalLM(cfg).float()
    gemma_norms_around_zero(model)
    save_model(model, OUT)
    # transformers' eager attention takes its softmax in float32, where a query whose keys are
    # all masked (a padded query past a short row's window) turns into NaN and spreads through
    # V: every row is long enough that each query keeps a key (length >= 9 - 4 + 1).
    loss = write_golden(Gemma2ForCausalLM, OUT, cfg.vocab_size, 13, "tests/gen/gen_gemma2_parity.py",
                        lengths=(9, 7, 6))
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
