#!/usr/bin/env python3
"""Writes tests/golden/parity_{gemma,gemma2,gemma3,olmo2,qwen3}/model.gguf:
the F32 weights of those directories' Hugging Face models as llama.cpp's
convert_hf_to_gguf.py stores them, written with llama.cpp's own `gguf` package
(GGUFWriter, and its TensorNameMap for the tensor names):
  gemma  architecture "gemma": norm weights stored as 1 + w (GemmaModel.modify_tensors),
         no q/k row permutation, no output tensor (tied), key_length = head_dim
  gemma2 architecture "gemma2": as gemma (Gemma2Model.modify_tensors), plus
         attn_logit_softcapping, final_logit_softcapping and attention.sliding_window;
         GGUF has no query_pre_attn_scalar (llama.cpp scales by head_dim^-1/2 but for
         the 27B model), so the test compares against the directory run with
         query_pre_attn_scalar = head_dim
  gemma3 architecture "gemma3": as gemma2 (Gemma3Model.modify_tensors: every norm weight,
         the per-head q/k norms too, stored as 1 + w), no soft-caps, the global layers'
         linear rope scaling as rope.scaling.type/factor; GGUF has neither the window
         pattern nor the local rotary base (llama.cpp fixes them at 6 and 10000), so the
         test's reference directory has those as well as query_pre_attn_scalar = head_dim
  olmo2  architecture "olmo2": tensors as they are (no permutation), output tensor kept
  qwen3  architecture "qwen3": tensors as they are (no permutation; attn_q_norm and
         attn_k_norm of [head_dim]), no output tensor (tied)
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
    gemma = arch in (gguf.MODEL_ARCH.GEMMA, gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3)
    if arch == gguf.MODEL_ARCH.GEMMA2:
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    if arch in (gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3):
        w.add_sliding_window(cfg["sliding_window"])
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg["rope_scaling"]["factor"])
    names = gguf.get_tensor_name_map(arch, cfg["num_hidden_layers"])
    for name, t in tensors.items():
        if gemma and name == "lm_head.weight":
            continue
        t = t.astype(np.float32)
        if gemma and name.endswith("norm.weight"):
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
write("parity_gemma2", gguf.MODEL_ARCH.GEMMA2, "gemma2")
write("parity_gemma3", gguf.MODEL_ARCH.GEMMA3, "gemma3")
write("parity_olmo2", gguf.MODEL_ARCH.OLMO2, "olmo2")
write("parity_qwen3", gguf.MODEL_ARCH.QWEN3, "qwen3")
