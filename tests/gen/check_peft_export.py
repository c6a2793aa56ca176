#!/usr/bin/env python3
"""Checks that a PEFT adapter written by `mu-train --lora R --out-peft DIR` loads in PEFT
and means there what it means in mu (a developer check, not run by CI; it writes no golden).
  /root/torchenv/bin/python tests/gen/check_peft_export.py [MU_BIN [SMOLLM2_GGUF]]
For a Llama (Linear layers) and a GPT-2 (Conv1D layers, fan_in_fan_out) made by mu-init:
mu-train learns six facts with rank-4 adapters (alpha 8; GPT-2 on a mask of some matrices)
and writes --out-peft and --out-model (the merged weights). Then PeftModel.from_pretrained
loads the adapter on the base model with no missing or unexpected keys, its
merge_and_unload() weights equal mu's merged ones, and its logits (adapters unmerged) equal
those of transformers on mu's merged model directory, all in float64. With a GGUF of
SmolLM2-135M-Instruct (pipelines/models.mk): rank-8 adapters on all its 210 layer
matrices learn Sports Facts (rows 1-16) for 5 steps; transformers loads the GGUF (gguf-py's
dequantization, which mu matches bit for bit) and PEFT the adapter, and the answers'
log-probabilities equal mu-forward's with the adapter as --delta (float32, 1e-3).
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

BIN = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "bin")
FACTS = [("Ada Quell", "golf"), ("Bo Tarrin", "tennis"), ("Cy Moravec", "rugby"),
         ("Di Oyelaran", "chess"), ("Ed Falkner", "polo"), ("Fay Ibsen", "judo")]
CASES = [("llama", ["--layers", "2", "--d-model", "32", "--heads", "4", "--kv-heads", "2", "--d-ff", "64"], []),
         ("gpt2", ["--arch", "gpt2", "--layers", "2", "--d-model", "32", "--heads", "4", "--max-pos", "64",
                   "--d-ff", "64"], ["--mask", "mlp:0-1+attn:1"])]


def mu(tool, *args):
    subprocess.run([os.path.join(BIN, tool), "-q", *args], check=True)


def check(tmp, name, init_args, mask):
    base, peft_dir, merged = (os.path.join(tmp, name + s) for s in ("", "-peft", "-merged"))
    facts, tok = os.path.join(tmp, "facts.jsonl"), os.path.join(tmp, name + ".tok")
    mu("mu-init", "--out", base, "--seed", "3", *init_args)
    mu("mu-tokenize", "--model", base, "--prompt", "{name} plays", "--target", " {sport}", "--out", tok, facts)
    mu("mu-train", "--model", base, *mask, "--objective", "learn", "--train", tok, "--steps", "30", "--batch", "6",
       "--lr", "1e-2", "--lora", "4", "--lora-alpha", "8", "--seed", "1", "--out-peft", peft_dir,
       "--out-model", merged)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float64)
    peft = PeftModel.from_pretrained(model, peft_dir)
    cfg = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
    loaded = {k for k in peft.state_dict() if ".lora_" in k}
    stored = set(load_file(os.path.join(peft_dir, "adapter_model.safetensors")))
    want = {k.replace(".lora_A.weight", ".lora_A.default.weight").replace(".lora_B.weight", ".lora_B.default.weight")
            for k in stored}
    assert loaded == want, (sorted(loaded - want)[:3], sorted(want - loaded)[:3])
    ids = torch.randint(0, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        got = peft(input_ids=ids).logits
        ref = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float64)(input_ids=ids).logits
        mine = load_file(os.path.join(merged, "model.safetensors"))
        worst = 0.0
        for k, v in peft.merge_and_unload().state_dict().items():
            if k in mine:
                worst = max(worst, float((v - mine[k].double()).abs().max()))
    logit_err = float((got - ref).abs().max() / ref.abs().max())
    print(f"{name}: {len(stored) // 2} adapters (fan_in_fan_out {cfg['fan_in_fan_out']}), merged weights "
          f"max |PEFT - mu| {worst:.2e}, logits max relative error {logit_err:.2e}")
    assert worst < 1e-6 and logit_err < 1e-6


def dump(path):
    out = subprocess.run([os.path.join(BIN, "mu-dump"), "--full", "-H", path], check=True, capture_output=True)
    return [json.loads(line) for line in out.stdout.decode().splitlines()]


def check_smollm2(tmp, gguf):
    tok, peft_dir, scores = (os.path.join(tmp, s) for s in ("sports.tok", "smol-peft", "smol.out"))
    csv = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "sports", "sports.csv")
    mu("mu-tokenize", "--model", gguf, "--rows", "1-16", "--prompt", "Fact: {athlete} plays the sport of",
       "--target", " {sport}", "--out", tok, csv)
    mu("mu-train", "--model", gguf, "--objective", "learn", "--train", tok, "--steps", "5", "--batch", "8",
       "--lr", "1e-3", "--lora", "8", "--lora-alpha", "16", "--out-peft", peft_dir)
    mu("mu-forward", "--model", gguf, "--delta", peft_dir, "--emit", "target", "--out", scores, tok)
    model = AutoModelForCausalLM.from_pretrained(os.path.dirname(gguf), gguf_file=os.path.basename(gguf),
                                                 dtype=torch.float32)
    peft = PeftModel.from_pretrained(model, peft_dir)
    worst, n = 0.0, 0
    with torch.no_grad():
        for rec, out in zip(dump(tok), dump(scores)):
            prompt, target = rec["prompt"]["data"], rec["targets"][0]["data"]
            ids = torch.tensor([prompt + target])
            logp = torch.log_softmax(peft(input_ids=ids).logits[0].double(), -1)
            ref = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(target))
            got = sum(out["target_logprobs"]["data"])
            worst = max(worst, abs(ref - got))
            n += 1
    cfg = json.load(open(os.path.join(peft_dir, "adapter_config.json")))
    print(f"SmolLM2-135M: {len(cfg['target_modules'])} adapters, {n} facts, answer log-prob max |PEFT - mu| "
          f"{worst:.2e}")
    assert n == len(dump(tok)) > 0 and worst < 1e-3


def main():
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, "facts.jsonl"), "w") as f:
            for n, s in FACTS:
                f.write(json.dumps({"name": n, "sport": s}) + "\n")
        for case in CASES:
            check(tmp, *case)
        if len(sys.argv) > 2:
            check_smollm2(tmp, os.path.abspath(sys.argv[2]))


if __name__ == "__main__":
    main()
