#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on OLMo-2 (tests/t_model.c,
model_parity_olmo2_with_hf_transformers): RMSNorm on each block's output before the
residual add (post_attention_layernorm, post_feedforward_layernorm), none on its input, and
RMSNorm on the q and k projections over all heads (q_norm, k_norm).

Writes into tests/golden/parity_olmo2/ (MU_GOLDEN_OUT overrides): config.json and
model.safetensors of a tiny random Olmo2ForCausalLM (4 heads, 2 kv heads, head_dim 8,
hidden 32, 2 layers, vocab 97, d_ff 64, untied), F32, every norm weight random around 1;
golden.safetensors as tests/gen/hf_parity.py writes it.

Run (a developer with torch and transformers >= 4.47; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_olmo2_parity.py
"""
import os

import torch
from transformers import Olmo2Config, Olmo2ForCausalLM

from hf_parity import randomize_norms, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_olmo2")


def main():
    torch.manual_seed(20241206)
    cfg = Olmo2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=500000.0, tie_word_embeddings=False,
                      attention_bias=False, hidden_act="silu", bos_token_id=None, eos_token_id=1,
                      pad_token_id=0, initializer_range=0.2)
    model = Olmo2ForCausalLM(cfg).float()
    randomize_norms(model, 1.0)                    # non-trivial norm weights
    save_model(model, OUT)
    loss = write_golden(Olmo2ForCausalLM, OUT, cfg.vocab_size, 13, "tests/gen/gen_olmo2_parity.py")
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
