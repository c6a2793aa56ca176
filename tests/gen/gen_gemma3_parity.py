#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on Gemma-3 text
(tests/t_model.c, model_parity_gemma3_with_hf_transformers): Gemma-2's layout (norms on
both sides of each block, GeGLU, RMSNorm by (1 + w), scaled embeddings, tied head,
query_pre_attn_scalar, sliding windows) without its soft-caps, plus RMSNorm of each q and k
head over head_dim (one [head_dim] weight), and a rotary base of its own on the sliding
layers (rope_local_base_freq, unscaled) while the global layers' rope is scaled (linear).

Writes into tests/golden/parity_gemma3/:
  config.json, model.safetensors   a tiny random Gemma-3 text model (4 heads, 2 kv heads,
                                   head_dim 16, hidden 32, 3 layers with
                                   sliding_window_pattern 2: layers 0 and 2 slide with a
                                   window of 4 and rope base 100, layer 1 is global with
                                   base 10000 and linear scaling 4; vocab 97, d_ff 64,
                                   query_pre_attn_scalar 24), F32, norm weights random
                                   around 0
  golden.safetensors               hf_parity.write_golden, rows of 9, 7 and 6 tokens (each
                                   query keeps a key in its window: see gen_gemma2_parity.py)
Gemma-3 needs transformers >= 4.50; the other generators use 4.48.3, so:
  pip install --target /root/tf451 --no-deps transformers==4.51.3
  PYTHONPATH=/root/tf451 /root/torchenv/bin/python tests/gen/gen_gemma3_parity.py
(a developer with torch; CI never runs it).
"""
import os

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

from hf_parity import gemma_norms_around_zero, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_gemma3")


def main():
    torch.manual_seed(20261207)
    cfg = Gemma3TextConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                           num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                           max_position_embeddings=64, rms_norm_eps=1e-6, rope_theta=10000.0,
                           rope_scaling={"rope_type": "linear", "factor": 4.0}, rope_local_base_freq=100.0,
                           hidden_activation="gelu_pytorch_tanh", query_pre_attn_scalar=24,
                           sliding_window=4, sliding_window_pattern=2, attention_bias=False,
                           bos_token_id=2, eos_token_id=1, pad_token_id=0, initializer_range=0.2,
                           use_cache=False)
    model = Gemma3ForCausalLM(cfg).float()
    gemma_norms_around_zero(model)
    save_model(model, OUT)
    loss = write_golden(Gemma3ForCausalLM, OUT, cfg.vocab_size, 19, "tests/gen/gen_gemma3_parity.py",
                        lengths=(9, 7, 6))
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
