#!/usr/bin/env python3
"""Golden for mu's LoRA adapters (mu-train --lora; tests/t_model.c model_lora_parity_with_peft)
against PEFT's LoRA on the HF parity models: tests/golden/parity (Llama: Linear layers),
tests/golden/parity_gpt2 (GPT-2: Conv1D layers, PEFT's fan_in_fan_out), tests/golden/parity_phi
(Phi: Linear layers with biases, dense, fc1, fc2, and its untied lm_head) and tests/golden/parity_phi3 (Phi-3: the fused
qkv_proj and gate_up_proj adapted whole).

Writes lora.safetensors beside each model: the batch of its golden.safetensors (input_ids,
lengths, targets), "scale" f32 [1] (lora_alpha / r = 5/3, r = 3), and per adapted weight W
(every layer matrix) A.<W> [r, in] and B.<W> [out, r] (random f32, B not 0 so that every
gradient is alive), then PEFT's float64 eager run with them: logits, loss (mean cross-entropy
over the targets) and grad_A.<W>, grad_B.<W>. PEFT's own save of the adapters (f32) goes to
peft_adapter/ beside it (adapter_config.json, adapter_model.safetensors): `--delta DIR` reads
it (man/mu-delta.5, PEFT ADAPTERS). And an adapter with an embedding adapter (PEFT's
lora_embedding_A/B) on the Llama model's embed_tokens, with lm_head and q_proj, and its
logits: parity/peft_embed_adapter/, parity/lora_embed.safetensors.

Run (a developer with a venv of torch, transformers and peft; CI never runs it):
  python3 tests/gen/gen_lora_parity.py [CASE ...]   (made with peft 0.21.2, transformers 5.25)
CASEs (parity, parity_gpt2, parity_phi, parity_phi3, embed) make only those; none, all of them.
"""
import json
import os
import sys

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
R, ALPHA = 3, 5.0
CASES = [("parity", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], 20261206),
         ("parity_gpt2", ["c_attn", "c_proj", "c_fc"], 20261207),
         ("parity_phi", ["q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2", "lm_head"], 20261209),
         ("parity_phi3", ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"], 20261210)]


def weight_name(module_name):
    """PEFT's base_model.model.X.lora_A.default -> X.weight, the checkpoint's name."""
    return module_name.removeprefix("base_model.model.").split(".lora_")[0] + ".weight"


def save_adapter(model, out, sub, name="peft_adapter"):
    """PEFT's save_pretrained into out/name (A, B as stored in lora.safetensors: f32), less its
    model card, the base recorded by its path in the repository (not this machine's)."""
    adir = os.path.join(out, name)
    model.float().save_pretrained(adir)
    os.remove(os.path.join(adir, "README.md"))
    cfg_path = os.path.join(adir, "adapter_config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["base_model_name_or_path"] = "tests/golden/" + sub
    cfg["target_modules"] = sorted(cfg["target_modules"])   # PEFT writes a set: any order
    with open(cfg_path, "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
        f.write("\n")


def write(sub, targets, seed):
    out = os.path.join(GOLDEN, sub)
    batch = load_file(os.path.join(out, "golden.safetensors"))
    ids, lens, tg = batch["input_ids"], batch["lengths"], batch["targets"]
    B, T = ids.shape
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float64, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=targets, lora_dropout=0.0,
                                             fan_in_fan_out=sub == "parity_gpt2"))
    model.train(False)
    gen = torch.Generator().manual_seed(seed)
    tensors = {"input_ids": ids, "lengths": lens, "targets": tg,
               "scale": torch.tensor([ALPHA / R], dtype=torch.float32)}
    adapters = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_A." in name or ".lora_B." in name:
                v = (0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64)).float()
                p.copy_(v.double())
                key = ("A." if ".lora_A." in name else "B.") + weight_name(name)
                tensors[key] = v.contiguous()
                adapters[key] = p
    mask = (torch.arange(T).unsqueeze(0) < lens.long().unsqueeze(1)).long()
    logits = model(input_ids=ids.long(), attention_mask=mask, position_ids=torch.arange(T).unsqueeze(0).expand(B, T)).logits
    V = logits.shape[-1]
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), tg.long().reshape(-1), ignore_index=-1)
    loss.backward()
    tensors["logits"] = logits.detach().float().contiguous()
    tensors["loss"] = loss.detach().float().reshape(1)
    for key, p in adapters.items():
        tensors["grad_" + key] = p.grad.detach().float().contiguous()
    save_file(tensors, os.path.join(out, "lora.safetensors"), metadata={"generator": "tests/gen/gen_lora_parity.py"})
    save_adapter(model, out, sub)
    print(sub, "adapters", len(adapters) // 2, "loss", float(loss))


def write_embedding_adapter():
    """An adapter on the parity model's embed_tokens (PEFT's lora_embedding_A [r, vocab], _B
    [dim, r]), lm_head and q_proj, random factors: saved by PEFT to parity/peft_embed_adapter/
    and its float64 logits on the golden batch to parity/lora_embed.safetensors."""
    out = os.path.join(GOLDEN, "parity")
    batch = load_file(os.path.join(out, "golden.safetensors"))
    ids, lens, tg = batch["input_ids"], batch["lengths"], batch["targets"]
    B, T = ids.shape
    model = AutoModelForCausalLM.from_pretrained(out, torch_dtype=torch.float64, attn_implementation="eager")
    model = get_peft_model(model, LoraConfig(r=R, lora_alpha=ALPHA, target_modules=["embed_tokens", "lm_head", "q_proj"],
                                             lora_dropout=0.0))
    model.train(False)
    gen = torch.Generator().manual_seed(20261208)
    n = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_" in name:
                p.copy_((0.3 * torch.randn(p.shape, generator=gen, dtype=torch.float64)).float().double())
                n += 1
    mask = (torch.arange(T).unsqueeze(0) < lens.long().unsqueeze(1)).long()
    with torch.no_grad():
        logits = model(input_ids=ids.long(), attention_mask=mask,
                       position_ids=torch.arange(T).unsqueeze(0).expand(B, T)).logits
    save_file({"input_ids": ids, "lengths": lens, "targets": tg, "logits": logits.float().contiguous()},
              os.path.join(out, "lora_embed.safetensors"), metadata={"generator": "tests/gen/gen_lora_parity.py"})
    save_adapter(model, out, "parity", "peft_embed_adapter")
    print("parity embed adapter: factors", n)


def main():
    want = set(sys.argv[1:])
    for sub, targets, seed in CASES:
        if not want or sub in want:
            write(sub, targets, seed)
    if not want or "embed" in want:
        write_embedding_adapter()


if __name__ == "__main__":
    main()
