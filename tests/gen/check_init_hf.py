#!/usr/bin/env python3
"""Checks that a model directory written by mu-init loads in Hugging Face transformers
and tokenizers (a developer check, not run by CI; it writes no golden).
  /root/gold/bin/python tests/gen/check_init_hf.py [MU_BIN]
Runs mu-init for f32/bf16 and tied/untied/qkv-bias variants, then: AutoModelForCausalLM
loads with no missing/unexpected keys, parameters equal the safetensors bytes, norms are
1, a forward pass gives finite logits of the right shape; tokenizers.Tokenizer maps each
byte of a UTF-8 string to its own id (id = byte value) and decodes back to the string;
AutoTokenizer loads with the special tokens <s> </s> <pad> = 256 257 258.
"""
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoModelForCausalLM, AutoTokenizer

BIN = sys.argv[1] if len(sys.argv) > 1 else "bin"
VARIANTS = [
    ["--dtype", "f32"],
    ["--dtype", "bf16", "--tied"],
    ["--qkv-bias", "--heads", "4", "--kv-heads", "1", "--head-dim", "8"],
    ["--dtype", "f16", "--layers", "1"],
]
with tempfile.TemporaryDirectory() as tmp:
    for i, extra in enumerate(VARIANTS):
        out = os.path.join(tmp, "m%d" % i)
        subprocess.run([BIN + "/mu-init", "--out", out, "--seed", "7"] + extra, check=True)
        model, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        sd = load_file(out + "/model.safetensors")
        for name, p in model.named_parameters():
            ref = sd[name] if name in sd else sd["model.embed_tokens.weight"]  # tied lm_head
            assert torch.equal(p.detach().float(), ref.float()), name
            if name.endswith("norm.weight"):
                assert bool((ref == 1).all()), name
            if name.endswith("bias"):
                assert bool((ref == 0).all()), name
        ids = torch.tensor([[256, 72, 105, 33]])
        logits = model(ids).logits
        assert logits.shape == (1, 4, model.config.vocab_size) and torch.isfinite(logits).all()
        tok = Tokenizer.from_file(out + "/tokenizer.json")
        text = "héllo, wörld ✓ \n\t end"
        enc = tok.encode(text).ids
        assert enc == list(text.encode("utf-8")), enc
        assert tok.decode(enc) == text
        at = AutoTokenizer.from_pretrained(out)
        assert (at.bos_token_id, at.eos_token_id, at.pad_token_id) == (256, 257, 258)
        assert at("<s>ab</s>", add_special_tokens=False).input_ids == [256, 97, 98, 257]
        emb = sd["model.embed_tokens.weight"].float()
        print("ok", extra, "params", sum(p.numel() for p in model.parameters()),
              "embed mean %.5f std %.5f" % (float(emb.mean()), float(emb.std())))
print("all ok")
