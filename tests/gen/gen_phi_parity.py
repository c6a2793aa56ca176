#!/usr/bin/env python3
"""Goldens for the model's parity with Hugging Face transformers on Phi (phi-1, phi-1.5 and
phi-2's architecture, TOFU's Phi-1.5; tests/t_model.c, model_parity_phi*_with_hf_transformers):
LayerNorms with weights and biases, one input norm feeding the attention and the MLP in
parallel, separate q/k/v projections with biases, partial rotary, a plain GELU MLP (fc1, fc2)
with biases, a dense output projection with a bias, and a bias on lm_head.

Writes two tiny random PhiForCausalLM (vocab 97, hidden 32, 2 layers, d_ff 64), F32, with
every LayerNorm weight around 1 and every bias random (transformers initializes them to 1
and 0, which would hide a wrong norm or bias), into tests/golden/ (MU_GOLDEN_OUT overrides
the parent directory):
  parity_phi/      4 heads (head_dim 8), partial_rotary_factor 0.5 (4 dims rotate),
                   gelu_new (tanh form), rope_theta 10000, untied lm_head;
  parity_phi_gqa/  4 heads over 2 kv heads (head_dim 8), partial_rotary_factor 0.75 (6 dims
                   rotate), gelu (erf form), rope_theta 500, lm_head tied to the embedding
                   (its bias still its own);
each with config.json, model.safetensors and golden.safetensors as tests/gen/hf_parity.py
writes it.

Run (a developer with torch and transformers >= 5; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_phi_parity.py
"""
from transformers import PhiConfig, PhiForCausalLM

from hf_parity import make_parity, randomize_biases, randomize_norms


def prepare(model):
    randomize_norms(model, 1.0, suffixes=("layernorm.weight",))
    randomize_biases(model)


def make(sub, seed, **kw):
    cfg = PhiConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=64, layer_norm_eps=1e-5,
                    bos_token_id=None, eos_token_id=1, pad_token_id=0, initializer_range=0.2,
                    resid_pdrop=0.0, embd_pdrop=0.0, attention_dropout=0.0, qk_layernorm=False, **kw)
    make_parity(PhiForCausalLM, cfg, sub, seed, "tests/gen/gen_phi_parity.py", prepare)


def main():
    make("parity_phi", 20261207, num_key_value_heads=4, partial_rotary_factor=0.5, rope_theta=10000.0,
         hidden_act="gelu_new", tie_word_embeddings=False)
    make("parity_phi_gqa", 20261208, num_key_value_heads=2, partial_rotary_factor=0.75, rope_theta=500.0,
         hidden_act="gelu", tie_word_embeddings=True)


if __name__ == "__main__":
    main()
