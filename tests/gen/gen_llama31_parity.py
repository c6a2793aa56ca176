#!/usr/bin/env python3
"""Golden for Llama 3.1's rope scaling, in a Hugging Face directory and in GGUF
(tests/t_model.c: model_parity_llama31_with_hf_transformers, model_llama31_gguf_same_as_dir).

Writes into tests/golden/parity_llama31/:
  config.json, model.safetensors   a tiny random Llama (2 heads, 1 kv head, head_dim 16,
                                   hidden 32, 1 layer, vocab 97, d_ff 48, untied) with Llama
                                   3.1's rope: theta 500000, rope_scaling llama3 (factor 8,
                                   low 1, high 4, original 8192), whose frequencies span all
                                   three of its bands at head_dim 16
  golden.safetensors               hf_parity.write_golden: LlamaForCausalLM in float64
  model.gguf                       the same model as llama.cpp's convert_hf_to_gguf.py writes
                                   it (LlamaModel): q/k rows permuted (LlamaModel.permute), the
                                   llama3 scaling as a rope_freqs.weight tensor of per-pair
                                   divisors (LlamaModel.generate_extra_tensors) and no rope
                                   scaling key; written with llama.cpp's gguf package
Run (a developer with torch, transformers and gguf; CI never runs it):
  /root/torchenv/bin/python tests/gen/gen_llama31_parity.py
"""
import math
import os

import gguf
import numpy as np
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from hf_parity import save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_llama31")
ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192}


def rope_divisors(theta, dim):
    """llama.cpp's rope_freqs for a llama3 scaling: 1, factor, or 1 / ((1 - s) / factor + s)."""
    freqs = 1.0 / (theta ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    lo_wl = ROPE["original_max_position_embeddings"] / ROPE["low_freq_factor"]
    hi_wl = ROPE["original_max_position_embeddings"] / ROPE["high_freq_factor"]
    out = []
    for f in freqs:
        wl = 2 * math.pi / f
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(ROPE["factor"])
        else:
            s = (ROPE["original_max_position_embeddings"] / wl - ROPE["low_freq_factor"]) / (
                ROPE["high_freq_factor"] - ROPE["low_freq_factor"])
            out.append(1 / ((1 - s) / ROPE["factor"] + s))
    return np.array(out, dtype=np.float32)


def permute(w, n_head):
    """LlamaModel.permute: HF's rotate-half row order to GGUF's interleaved pairs."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, cfg):
    w = gguf.GGUFWriter(os.path.join(OUT, "model.gguf"), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(cfg.vocab_size)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    w.add_tensor("rope_freqs.weight", rope_divisors(cfg.rope_theta, cfg.hidden_size // cfg.num_attention_heads))
    for name, t in model.state_dict().items():
        t = t.float().numpy()
        if name.endswith("q_proj.weight"):
            t = permute(t, cfg.num_attention_heads)
        elif name.endswith("k_proj.weight"):
            t = permute(t, cfg.num_key_value_heads)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        w.add_tensor(new, np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    torch.manual_seed(20261206)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                      rms_norm_eps=1e-5, rope_theta=500000.0, rope_scaling=ROPE, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2, initializer_range=0.2)
    model = LlamaForCausalLM(cfg).float()
    save_model(model, OUT)
    write_gguf(model, cfg)
    # positions up to 40 so that the low-frequency pairs, divided by 8, still turn
    loss = write_golden(LlamaForCausalLM, OUT, cfg.vocab_size, 17, "tests/gen/gen_llama31_parity.py",
                        lengths=(40, 23, 9))
    print("loss", loss, "divisors", rope_divisors(cfg.rope_theta, 16), "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
