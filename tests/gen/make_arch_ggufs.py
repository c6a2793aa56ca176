#!/usr/bin/env python3
"""Writes tests/golden/parity_gemma/model.gguf and tests/golden/parity_olmo2/model.gguf:
the F32 weights of those directories' Hugging Face models as llama.cpp's
convert_hf_to_gguf.py stores them, written with llama.cpp's own `gguf` package
(GGUFWriter, and its TensorNameMap for the tensor names):
  gemma  architecture "gemma": norm weights stored as 1 + w (GemmaModel.modify_tensors),
         no q/k row permutation, no output tensor (tied), key_length = head_dim
  olmo2  architecture "olmo2": tensors as they are (no permutation), output tensor kept
t_model.c loads each and requires the logits of its Hugging Face directory.

Run (a developer with numpy, safetensors, gguf; CI never runs it):
  /root/torchenv/bin/python tests/gen/make_arch_ggufs.py
"""
import json
import os

import gguf
import numpy as np
from safetensors.numpy import load_file

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")


def write(sub, arch, arch_name):
    d = os.path.join(GOLDEN, sub)
    cfg = json.load(open(os.path.join(d, "config.json")))
    tensors = load_file(os.path.join(d, "model.safetensors"))
    w = gguf.GGUFWriter(os.path.join(d, "model.gguf"), arch_name)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg["rope_theta"])
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    for name, t in tensors.items():
        if arch == gguf.MODEL_ARCH.GEMMA and name == "lm_head.weight":
            continue
        t = t.astype(np.float32)
        if arch == gguf.MODEL_ARCH.GEMMA and name.endswith("norm.weight"):
            t = t + np.float32(1)
        new = names.get_name(name, try_suffixes=(".weight", ".bias"))
        assert new is not None, name
        w.add_tensor(new, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(sub, "model.gguf:", len(tensors), "tensors")


write("parity_gemma", gguf.MODEL_ARCH.GEMMA, "gemma")
write("parity_olmo2", gguf.MODEL_ARCH.OLMO2, "olmo2")
