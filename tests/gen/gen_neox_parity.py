#!/usr/bin/env python3
"""Goldens for the model's parity with Hugging Face transformers on GPT-NeoX (Pythia's
architecture; tests/t_model.c, model_parity_neox*_with_hf_transformers): LayerNorms with
weights and biases, fused query_key_value (each head's q, k, v rows together), partial
rotary, a plain GELU MLP, biases on every projection, untied embed_out.

Writes two tiny random GPTNeoXForCausalLM (vocab 97, hidden 32, 2 layers, d_ff 64), F32,
with every LayerNorm weight around 1 and every bias random (transformers initializes them to
1 and 0, which would hide a wrong norm or bias), into tests/golden/ (MU_GOLDEN_OUT
overrides the parent directory):
  parity_neox/      4 heads (head_dim 8), rotary_pct 0.5 (4 dims rotate), parallel residual,
                    gelu (erf form), rotary base 10000;
  parity_neox_seq/  2 heads (head_dim 16), rotary_pct 0.25 (4 dims rotate), sequential
                    residual, gelu_new (tanh form), rotary base 500, no attention biases;
each with config.json, model.safetensors and golden.safetensors as tests/gen/hf_parity.py
writes it.

Run (a developer with torch and transformers >= 5; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_neox_parity.py
"""
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

from hf_parity import make_parity, randomize_biases, randomize_norms


def prepare(model):
    randomize_norms(model, 1.0, suffixes=("layernorm.weight", "layer_norm.weight"))
    randomize_biases(model)


def make(sub, seed, **kw):
    cfg = GPTNeoXConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        max_position_embeddings=64, layer_norm_eps=1e-5, tie_word_embeddings=False,
                        bos_token_id=None, eos_token_id=1, pad_token_id=0, initializer_range=0.2, **kw)
    make_parity(GPTNeoXForCausalLM, cfg, sub, seed, "tests/gen/gen_neox_parity.py", prepare,
                rename={"lm_head.weight": "embed_out.weight"})


def main():
    make("parity_neox", 20261206, num_attention_heads=4, rotary_pct=0.5, rotary_emb_base=10000,
         use_parallel_residual=True, hidden_act="gelu", attention_bias=True)
    make("parity_neox_seq", 20261207, num_attention_heads=2, rotary_pct=0.25, rotary_emb_base=500,
         use_parallel_residual=False, hidden_act="gelu_new", attention_bias=False)


if __name__ == "__main__":
    main()
