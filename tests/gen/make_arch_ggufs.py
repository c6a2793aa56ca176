#!/usr/bin/env python3
"""Writes tests/golden/parity_{gemma,gemma2,gemma3,olmo2,qwen3,phi,phi3}/model.gguf:
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
  phi    architecture "phi2" (Phi2Model): q, k, v separate with their biases, dense as
         attn_output, fc1/fc2 as ffn_up/ffn_down, final_layernorm as output_norm, lm_head and
         its bias as output; keys: layer_norm_epsilon, rope.dimension_count, no rope base
         (llama.cpp's 10000); feed_forward_length is the converter's 4 n_embd in every Phi
         release, the test model's intermediate_size here (half that)
  phi3   architecture "phi3" (Phi3MiniModel): qkv_proj as attn_qkv, gate_up_proj as ffn_up
         (both fused, as stored), no q/k permutation; keys: rope.dimension_count,
         rope.scaling.original_context_length, attention.sliding_window (0 when none);
         phi3_longrope: also longrope's rope.scaling.attn_factor and the factors as the
         tensors rope_factors_long and rope_factors_short
t_model.c loads each and requires the logits of its Hugging Face directory.

Also tests/golden/gguf_meta/{gemma2-9b,gemma2-27b,gemma3-12b,gemma3-27b}.gguf: the metadata
(no tensors) llama.cpp's converter writes for those releases, from their Hub config.json
values (below), plus {arch}.vocab_size. GGUF has no query_pre_attn_scalar; t_model.c
requires mu to read back each release's own (256, 144, 256, 168), which llama.cpp gets from
the layer count (46 and 62 layers are the 27B models).

Run (a developer with numpy, safetensors, gguf; CI never runs it):
  /root/torchenv/bin/python tests/gen/make_arch_ggufs.py [NAME ...]
NAMEs (gemma, gemma2, gemma3, olmo2, qwen3, phi, phi3, phi3_longrope, meta) make only those; none,
all of them.
"""
import json
import math
import os
import sys

import gguf
import numpy as np
from safetensors.numpy import load_file

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")


def rope_value(cfg, key, default):
    """A rope key of cfg: in transformers 5's rope_parameters, or at the top level."""
    return (cfg.get("rope_parameters") or {}).get(key, cfg.get(key, default))


def rope_dims(cfg, pct):
    """rope.dimension_count as the Phi converters write it."""
    return int(rope_value(cfg, "partial_rotary_factor", pct) * cfg["hidden_size"]) // cfg["num_attention_heads"]


def write_keys(w, arch, cfg):
    """The hyper-parameter keys llama.cpp's converter writes for cfg (Phi2Model: a LayerNorm eps,
    as many kv heads as heads, no rope base; Phi3MiniModel: the original context, the rotating
    dims and the window, 0 for none)."""
    phi2 = arch == gguf.MODEL_ARCH.PHI2
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])   # Phi2Model's 4 n_embd, as every Phi has
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_attention_heads" if phi2 else "num_key_value_heads"])
    if phi2:
        w.add_layer_norm_eps(cfg["layer_norm_eps"])
        w.add_rope_dimension_count(rope_dims(cfg, 0.5))
        return
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(rope_value(cfg, "rope_theta", None))
    if arch == gguf.MODEL_ARCH.PHI3:
        w.add_rope_scaling_orig_ctx_len(cfg["original_max_position_embeddings"])
        w.add_rope_dimension_count(rope_dims(cfg, 1.0))
        w.add_sliding_window(cfg.get("sliding_window") or 0)
        if rope_value(cfg, "rope_type", "") == "longrope":   # Phi3MiniModel.generate_extra_tensors
            scale = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
            orig = cfg["original_max_position_embeddings"]
            w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)) if scale > 1 else 1.0)
            for kind in ("long", "short"):
                w.add_tensor("rope_factors_%s.weight" % kind,
                             np.array(rope_value(cfg, kind + "_factor", None), dtype=np.float32))
    if "head_dim" in cfg:
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
    if arch == gguf.MODEL_ARCH.GEMMA2:
        w.add_attn_logit_softcapping(cfg["attn_logit_softcapping"])
        w.add_final_logit_softcapping(cfg["final_logit_softcapping"])
    if arch in (gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3):
        w.add_sliding_window(cfg["sliding_window"])
    if (cfg.get("rope_scaling") or {}).get("rope_type") == "linear":
        w.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        w.add_rope_scaling_factor(cfg["rope_scaling"]["factor"])


def write(sub, arch, arch_name):
    d = os.path.join(GOLDEN, sub)
    cfg = json.load(open(os.path.join(d, "config.json")))
    tensors = load_file(os.path.join(d, "model.safetensors"))
    w = gguf.GGUFWriter(os.path.join(d, "model.gguf"), arch_name)
    write_keys(w, arch, cfg)
    gemma = arch in (gguf.MODEL_ARCH.GEMMA, gguf.MODEL_ARCH.GEMMA2, gguf.MODEL_ARCH.GEMMA3)
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


# The Hub's config.json values of google/gemma-2-9b, gemma-2-27b, gemma-3-12b-pt (text_config),
# gemma-3-27b-pt (text_config), with query_pre_attn_scalar, which no GGUF key holds.
GEMMA2 = dict(vocab_size=256000, max_position_embeddings=8192, rms_norm_eps=1e-6, rope_theta=10000.0,
              attn_logit_softcapping=50.0, final_logit_softcapping=30.0, sliding_window=4096)
GEMMA3 = dict(vocab_size=262208, max_position_embeddings=131072, rms_norm_eps=1e-6, rope_theta=1000000.0,
              sliding_window=1024, rope_scaling={"rope_type": "linear", "factor": 8.0})
RELEASES = {
    "gemma2-9b": (gguf.MODEL_ARCH.GEMMA2, "gemma2", dict(GEMMA2, hidden_size=3584, intermediate_size=14336,
                  num_hidden_layers=42, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                  query_pre_attn_scalar=256)),
    "gemma2-27b": (gguf.MODEL_ARCH.GEMMA2, "gemma2", dict(GEMMA2, hidden_size=4608, intermediate_size=36864,
                   num_hidden_layers=46, num_attention_heads=32, num_key_value_heads=16, head_dim=128,
                   query_pre_attn_scalar=144)),
    "gemma3-12b": (gguf.MODEL_ARCH.GEMMA3, "gemma3", dict(GEMMA3, hidden_size=3840, intermediate_size=15360,
                   num_hidden_layers=48, num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                   query_pre_attn_scalar=256)),
    "gemma3-27b": (gguf.MODEL_ARCH.GEMMA3, "gemma3", dict(GEMMA3, hidden_size=5376, intermediate_size=21504,
                   num_hidden_layers=62, num_attention_heads=32, num_key_value_heads=16, head_dim=128,
                   query_pre_attn_scalar=168)),
}


def write_meta(name, arch, arch_name, cfg):
    d = os.path.join(GOLDEN, "gguf_meta")
    os.makedirs(d, exist_ok=True)
    w = gguf.GGUFWriter(os.path.join(d, name + ".gguf"), arch_name)
    write_keys(w, arch, cfg)
    w.add_vocab_size(cfg["vocab_size"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("gguf_meta/%s.gguf: query_pre_attn_scalar %g" % (name, cfg["query_pre_attn_scalar"]))


MODELS = {"gemma": (gguf.MODEL_ARCH.GEMMA, "gemma"), "gemma2": (gguf.MODEL_ARCH.GEMMA2, "gemma2"),
          "gemma3": (gguf.MODEL_ARCH.GEMMA3, "gemma3"), "olmo2": (gguf.MODEL_ARCH.OLMO2, "olmo2"),
          "qwen3": (gguf.MODEL_ARCH.QWEN3, "qwen3"), "phi": (gguf.MODEL_ARCH.PHI2, "phi2"),
          "phi3": (gguf.MODEL_ARCH.PHI3, "phi3"), "phi3_longrope": (gguf.MODEL_ARCH.PHI3, "phi3")}
want = set(sys.argv[1:])
for name, (arch, arch_name) in MODELS.items():
    if not want or name in want:
        write("parity_" + name, arch, arch_name)
if not want or "meta" in want:
    for name, (arch, arch_name, cfg) in RELEASES.items():
        write_meta(name, arch, arch_name, cfg)
