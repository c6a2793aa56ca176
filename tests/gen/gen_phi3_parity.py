#!/usr/bin/env python3
"""Goldens for the model's parity with Hugging Face transformers on Phi-3 (Phi-3-mini and
-medium's architecture; tests/t_model.c, model_parity_phi3*_with_hf_transformers): Llama's
layout with q, k and v fused in blocks (qkv_proj [q; k; v]) and gate and up fused
(gate_up_proj [gate; up]).

Writes two tiny random Phi3ForCausalLM (vocab 97, hidden 32, 2 layers, d_ff 64, 4 heads of 8),
F32, with every RMSNorm weight around 1 (transformers initializes them to 1, which would hide
a wrong norm), into tests/golden/ (MU_GOLDEN_OUT overrides the parent directory):
  parity_phi3/          2 kv heads (qkv_proj [32 + 2 x 16, 32]), a 4-token sliding window
                        (Phi-3-mini-4k's is 2047) over rows of 9, 7 and 6 tokens, untied
                        lm_head;
  parity_phi3_partial/  4 kv heads, partial_rotary_factor 0.5 (4 of 8 dims rotate, as
                        Phi-4-mini's 0.75 does), rope_theta 500, tied lm_head;
  parity_phi3_longrope/ Phi-3.5's longrope scaling: original length 8 of 64 (factor 8, the
                        rotated dims times sqrt(1 + ln 8 / ln 8) = sqrt 2), short and long
                        factors per pair, over rows of 9, 5 and 2 tokens: past the original
                        length, so the long factors rotate; and golden_short.safetensors, the
                        same model over rows of 8, 5 and 2: within it, the short factors;
each with config.json, model.safetensors and golden.safetensors as tests/gen/hf_parity.py
writes it.

Run (a developer with torch and transformers >= 5; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_phi3_parity.py
"""
import os

from transformers import Phi3Config, Phi3ForCausalLM

from hf_parity import golden_root, make_parity, randomize_norms, write_golden


def make(sub, seed, lengths=(9, 5, 2), **kw):
    kw.setdefault("original_max_position_embeddings", 64)
    cfg = Phi3Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=1, pad_token_id=0,
                     initializer_range=0.2, resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, **kw)
    make_parity(Phi3ForCausalLM, cfg, sub, seed, "tests/gen/gen_phi3_parity.py", lambda m: randomize_norms(m, 1.0),
                lengths=lengths)


def main():
    # rows of 9, 7 and 6 tokens: every padded query still sees a key in its window (one that
    # sees none gives NaN in transformers' eager attention, which then reaches the whole row)
    make("parity_phi3", 20261210, lengths=(9, 7, 6), num_key_value_heads=2, sliding_window=4,
         rope_theta=10000.0, tie_word_embeddings=False)
    make("parity_phi3_partial", 20261211, num_key_value_heads=4, sliding_window=None, rope_theta=500.0,
         partial_rotary_factor=0.5, tie_word_embeddings=True)
    longrope = dict(num_key_value_heads=2, sliding_window=None, rope_theta=10000.0, tie_word_embeddings=False,
                    original_max_position_embeddings=8,
                    rope_scaling={"type": "longrope", "short_factor": [1.0, 1.25, 1.5, 2.0],
                                  "long_factor": [1.5, 2.0, 3.0, 4.0]})
    make("parity_phi3_longrope", 20261212, **longrope)
    write_golden(Phi3ForCausalLM, os.path.join(golden_root(), "parity_phi3_longrope"), 97, 20261212,
                 "tests/gen/gen_phi3_parity.py", lengths=(8, 5, 2), golden="golden_short.safetensors")


if __name__ == "__main__":
    main()
