#!/usr/bin/env python3
"""Golden for a multimodal Gemma-3 checkpoint (model_type gemma3, Gemma3ForConditionalGeneration,
as Google ships Gemma-3 4B, 12B and 27B), whose text model mu runs (tests/t_model.c,
model_parity_gemma3_multimodal_text_with_hf_transformers): the config's text_config, its
tensors named language_model.*, the vision tower's ignored.

Writes into tests/golden/parity_gemma3mm/:
  config.json          Gemma3Config with a tiny SigLIP vision config and a text_config that,
                       like the Hub's, lists only what differs from Gemma3TextConfig's
                       defaults: hidden 32, d_ff 64, 3 layers, head_dim 8, vocab 300, window
                       4 on layers 0 and 2 (pattern 2), query_pre_attn_scalar 8; the 8 heads,
                       4 kv heads, rope bases 1e6 and 10000, eps, token ids and activation
                       are Gemma3TextConfig's defaults
  model.safetensors    its F32 weights, norm weights random around 0
  golden.safetensors   hf_parity.write_golden on text tokens (no image) in float64: logits,
                       loss, and the gradients of the text model's parameters, named without
                       their language_model. prefix
Needs transformers >= 4.50 (see gen_gemma3_parity.py):
  PYTHONPATH=/root/tf451 /root/torchenv/bin/python tests/gen/gen_gemma3mm_parity.py
"""
import json
import os

import torch
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3TextConfig, SiglipVisionConfig

from hf_parity import gemma_norms_around_zero, save_model, write_golden

OUT = os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                                      "golden", "parity_gemma3mm")


def minimal_text_config(path):
    """Drops from text_config every key equal to Gemma3TextConfig's default, as the Hub's
    configs were saved."""
    cfg = json.load(open(path))
    defaults = Gemma3TextConfig().to_dict()
    cfg["text_config"] = {k: v for k, v in cfg["text_config"].items()
                          if k == "model_type" or k not in defaults or defaults[k] != v}
    json.dump(cfg, open(path, "w"), indent=2)
    return cfg["text_config"]


def main():
    torch.manual_seed(20261208)
    tc = Gemma3TextConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                          head_dim=8, query_pre_attn_scalar=8, sliding_window=4, sliding_window_pattern=2,
                          initializer_range=0.2)
    vc = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                            image_size=16, patch_size=4)
    cfg = Gemma3Config(text_config=tc, vision_config=vc, mm_tokens_per_image=4, boi_token_index=290,
                       eoi_token_index=291, image_token_index=292)
    model = Gemma3ForConditionalGeneration(cfg).float()
    gemma_norms_around_zero(model, prefix="language_model.")
    save_model(model, OUT)
    kept = minimal_text_config(os.path.join(OUT, "config.json"))
    loss = write_golden(Gemma3ForConditionalGeneration, OUT, 300, 23, "tests/gen/gen_gemma3mm_parity.py",
                        lengths=(9, 7, 6), strip="language_model.")
    print("loss", loss, "text_config keys", sorted(kept), "files in", os.path.normpath(OUT))


if __name__ == "__main__":
    main()
