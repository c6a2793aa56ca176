#!/usr/bin/env python3
"""Golden for mu-forward on a real model (tests/t_forward.c, forward_stories260K_matches_transformers).

Input (committed): tests/golden/forward/sports8.tokens.mpk.zst, made by
  mu-tokenize --model ../shared/data/models/stories260K ../shared/data/sports/sports.csv \
    --rows 0-8 --prompt 'Fact: Tiger Woods plays the sport of golf\\nFact: {athlete} plays the sport of' \
    --target ' {sport}' --choices ' football| baseball| basketball' \
    -o tests/golden/forward/sports8.tokens.mpk.zst
Output: tests/golden/forward/sports8.expected.json, one object per record with what
`mu-forward -e all-scores --topk 5 --generate 16 --eos -1` must emit:
  choice_logprobs [k], choice_ntokens [k], target_logprobs [m], target_ranks [m],
  token_mu [m], token_sigma [m] (the answer's target positions), text_logprobs [n-1]
  (prompt ++ answer target), topk_ids [5], topk_logprobs [5] (after the prompt),
  generation [16] (greedy argmax, no EOS stop, KV-cached decoding by transformers).
Computed by transformers' LlamaForCausalLM in float64 (eager attention) from the model's
F32 weights, each row alone (no padding).

Run (a developer with the venv and ../shared/data; CI never runs it):
  /root/gold/bin/python tests/gen/gen_forward_golden.py
"""
import json
import os

import msgpack
import numpy as np
import torch
import zstandard
from transformers import LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
GOLD = os.path.join(HERE, "..", "golden", "forward")
MODEL = os.path.join(HERE, "..", "..", "..", "shared", "data", "models", "stories260K")
TOPK, NEW = 5, 16


def read_stream(path):
    with open(path, "rb") as f:
        rd = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)
        objs = list(msgpack.Unpacker(rd, raw=False))
    return objs[0], objs[1:]


def ids_of(t):
    assert t["dtype"] == "i32"
    return np.frombuffer(t["data"], "<i4").astype(np.int64).tolist()


def logprobs(model, ids):
    with torch.no_grad():
        lg = model(torch.tensor([ids])).logits[0].double()
    return torch.log_softmax(lg, -1)


def main():
    model = LlamaForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float64, attn_implementation="eager")
    model.eval()
    _, recs = read_stream(os.path.join(GOLD, "sports8.tokens.mpk.zst"))
    out = []
    for r in recs:
        prompt = ids_of(r["prompt"])
        cands = [ids_of(t) for t in r["targets"]]
        ans = r["answer"]
        np_ = len(prompt)
        e = {"id": r["id"], "choice_logprobs": [], "choice_ntokens": []}
        for k, c in enumerate(cands):
            row = prompt + c
            lp = logprobs(model, row)
            tl = [lp[np_ - 1 + j, c[j]].item() for j in range(len(c))]
            e["choice_logprobs"].append(sum(tl))
            e["choice_ntokens"].append(len(c))
            if k != ans:
                continue
            e["target_logprobs"] = tl
            e["target_ranks"] = [int((lp[np_ - 1 + j] > lp[np_ - 1 + j, c[j]]).sum()) for j in range(len(c))]
            p = lp.exp()
            mu = (p * lp).sum(-1)
            sigma = ((p * lp * lp).sum(-1) - mu * mu).clamp(min=0).sqrt()
            e["token_mu"] = [mu[np_ - 1 + j].item() for j in range(len(c))]
            e["token_sigma"] = [sigma[np_ - 1 + j].item() for j in range(len(c))]
            e["text_logprobs"] = [lp[t, row[t + 1]].item() for t in range(len(row) - 1)]
            top = torch.topk(lp[np_ - 1], TOPK)
            e["topk_ids"] = top.indices.tolist()
            e["topk_logprobs"] = top.values.tolist()
        with torch.no_grad():
            g = model.generate(torch.tensor([prompt]), max_new_tokens=NEW, min_new_tokens=NEW, do_sample=False,
                               eos_token_id=None, pad_token_id=0)
        e["generation"] = g[0, np_:].tolist()
        out.append(e)
    with open(os.path.join(GOLD, "sports8.expected.json"), "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
