#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on Qwen3 (tests/t_model.c,
model_parity_qwen3_with_hf_transformers): Llama's layout with an RMSNorm on each q and k head
over head_dim (one [head_dim] weight, scaling by w), head_dim given apart from
hidden / heads, and a tied head (as Qwen3-0.6B).

Writes into tests/golden/parity_qwen3/:
  config.json, model.safetensors   a tiny random Qwen3 (4 heads, 2 kv heads, head_dim 16,
                                   hidden 32, 2 layers, vocab 97, d_ff 64, tied), F32, the
                                   q/k norm weights random around 1
  golden.safetensors               hf_parity.write_golden
Qwen3 needs transformers >= 4.51 (see gen_gemma3_parity.py):
  PYTHONPATH=/root/tf451 /root/torchenv/bin/python tests/gen/gen_qwen3_parity.py
"""
import os

import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from hf_parity import randomize_norms, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_qwen3")


def main():
    torch.manual_seed(20261209)
    cfg = Qwen3Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=True, bos_token_id=1,
                      eos_token_id=2, initializer_range=0.2)
    model = Qwen3ForCausalLM(cfg).float()
    randomize_norms(model, 1.0, 0.3, ("q_norm.weight", "k_norm.weight"))
    save_model(model, OUT)
    loss = write_golden(Qwen3ForCausalLM, OUT, cfg.vocab_size, 29, "tests/gen/gen_qwen3_parity.py")
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
