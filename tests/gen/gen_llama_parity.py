#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers (tests/t_model.c,
model_parity_with_hf_transformers).

Writes into tests/golden/parity/:
  config.json, model.safetensors   a tiny random Llama (GQA: 4 heads, 2 kv heads; untied;
                                   2 layers; vocab 97; d 32; head_dim 8; d_ff 64), F32
  golden.safetensors               input_ids i32 [B,T] (right-padded with 0), lengths i32 [B],
                                   targets i32 [B,T] (next token, -1 at padding/last),
                                   logits f32 [B,T,V], loss f32 [1] (mean CE over targets >= 0),
                                   grad.<HF name> f32 for EVERY parameter (d loss / d param)
  rope_llama3.safetensors          inv_freq f32 [64] of transformers' llama3 rope scaling
                                   (Llama 3.1: theta 500000, head_dim 128, factor 8, low 1,
                                   high 4, original 8192) for mu_rope_inv_freq
The logits and gradients are computed by LlamaForCausalLM in float64 (eager attention, the
attention mask marking padding) from the same f32 weights the C test loads.

Run (a developer with the venv; CI never runs it):
  /root/gold/bin/python tests/gen/gen_llama_parity.py
"""
import json
import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

from hf_parity import save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity")


def rope_llama3():
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
    cfg = LlamaConfig(hidden_size=4096, num_attention_heads=32, head_dim=128,
                      max_position_embeddings=131072, rope_theta=500000.0,
                      rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 8192})
    inv_freq, _ = ROPE_INIT_FUNCTIONS["llama3"](cfg, "cpu")
    save_file({"inv_freq": inv_freq.float().contiguous()},
              os.path.join(OUT, "rope_llama3.safetensors"))


def main():
    torch.manual_seed(20240611)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                      max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
                      tie_word_embeddings=False, attention_bias=False, hidden_act="silu",
                      bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    model = LlamaForCausalLM(cfg).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):       # non-trivial norm weights
                p.copy_(1 + 0.2 * torch.randn_like(p))
    save_model(model, OUT)
    loss = write_golden(LlamaForCausalLM, OUT, cfg.vocab_size, 7, "tests/gen/gen_llama_parity.py")
    rope_llama3()
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
