#!/usr/bin/env python3
"""Golden for the model's parity with Hugging Face transformers on a Qwen2 with its sliding
window on (tests/t_model.c, model_parity_qwen2_window_with_hf_transformers): use_sliding_window
true, sliding_window 4, max_window_layers 1, so layer 0 attends globally and layers 1 and 2
see at most 4 keys, over rows of 9, 7 and 6 tokens; q/k/v biases (Qwen2's), random around their init.

Writes into tests/golden/parity_qwen2_window/ (MU_GOLDEN_OUT overrides): config.json and
model.safetensors of a tiny random Qwen2ForCausalLM (4 heads, 2 kv heads, hidden 32, 3 layers,
vocab 97, d_ff 64, untied), F32, every norm weight random around 1 and every bias random;
golden.safetensors as tests/gen/hf_parity.py writes it.

Run (a developer with torch and transformers >= 5; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_qwen2_window_parity.py
"""
import os

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from hf_parity import randomize_biases, randomize_norms, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_qwen2_window")


def main():
    torch.manual_seed(20261210)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False,
                      use_sliding_window=True, sliding_window=4, max_window_layers=1,
                      bos_token_id=None, eos_token_id=1, pad_token_id=0, initializer_range=0.2)
    model = Qwen2ForCausalLM(cfg).float()
    randomize_norms(model, 1.0)
    randomize_biases(model)
    save_model(model, OUT)
    # rows of 9, 7 and 6 tokens: every padded query still sees a key in its window (one that
    # sees none gives NaN in transformers' eager attention, which then reaches the whole row)
    loss = write_golden(Qwen2ForCausalLM, OUT, cfg.vocab_size, 17, "tests/gen/gen_qwen2_window_parity.py",
                        lengths=(9, 7, 6))
    print("loss", loss, "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
