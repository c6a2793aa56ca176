#!/usr/bin/env python3
"""PyTorch reference figures for tests/bench/bench_model.c (and the CUDA bench).

Builds LlamaForCausalLM (transformers) with the same shapes as the C bench — the
SmolLM2-135M shape (30 layers, width 576, 9 heads, 3 kv heads, MLP 1536, vocab 49152,
tied) and, with --stories DIR, the stories260K model — and times, at the same batch:
forward (no grad) and forward+backward of the mean cross-entropy (all parameters
trainable), printing tokens/s and GFLOP/s counted exactly as the C bench counts them.

  python3 tests/bench/torch_model.py [--batch 8] [--seq 256] [--iters 1] [--device cpu|cuda]
                                     [--dtype float32|bfloat16] [--stories DIR] [--shape NAME]
                                     [--layers N]
Shapes: smollm2-135m (default), llama3-8b (for GPUs).
"""
import argparse
import json
import os
import sys
import time

try:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
except Exception as e:  # noqa: BLE001 - any import failure means "not available"
    print("torch: not available (%s)" % e)
    sys.exit(0)

SHAPES = {
    "smollm2-135m": dict(num_hidden_layers=30, hidden_size=576, num_attention_heads=9,
                         num_key_value_heads=3, head_dim=64, intermediate_size=1536,
                         vocab_size=49152, tie_word_embeddings=True, rope_theta=100000.0),
    "llama3-8b": dict(num_hidden_layers=32, hidden_size=4096, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, intermediate_size=14336,
                      vocab_size=128256, tie_word_embeddings=False, rope_theta=500000.0),
}


def flops(cfg, B, T):
    N, D = B * T, cfg.hidden_size
    hd = cfg.head_dim
    qd, kd = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    F, V, L = cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    linear = 2 * N * (D * qd + 2 * D * kd + qd * D + 3 * D * F)
    attn = 4.0 * hd * B * cfg.num_attention_heads * (T * (T + 1) / 2)
    head = 2 * N * D * V
    fwd = L * (linear + attn) + head
    bwd = 2 * (L * linear + head) + 2.5 * L * attn
    return fwd, bwd


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def bench(label, cfg, args):
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).to(device=args.device, dtype=dtype)
    B, T = args.batch, args.seq
    ids = torch.randint(0, cfg.vocab_size, (B, T), device=args.device)
    fwd_f, bwd_f = flops(cfg, B, T)
    best = float("inf")
    with torch.no_grad():
        for it in range(args.iters + 1):
            sync(args.device)
            t = time.perf_counter()
            model(input_ids=ids, use_cache=False)
            sync(args.device)
            t = time.perf_counter() - t
            if it:
                best = min(best, t)
    print("torch %-12s forward      %9.0f tokens/s  %7.1f GFLOP/s" %
          (label, B * T / best, fwd_f / best / 1e9))
    best = float("inf")
    for it in range(args.iters + 1):
        sync(args.device)
        t = time.perf_counter()
        out = model(input_ids=ids, use_cache=False)
        logits = out.logits[:, :-1].reshape(-1, cfg.vocab_size)
        loss = torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:].reshape(-1))
        loss.backward()
        sync(args.device)
        t = time.perf_counter() - t
        model.zero_grad(set_to_none=True)
        if it:
            best = min(best, t)
    print("torch %-12s fwd+bwd      %9.0f tokens/s  %7.1f GFLOP/s" %
          (label, B * T / best, (fwd_f + bwd_f) / best / 1e9))
    del model


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--stories", default=None)
    ap.add_argument("--layers", type=int, default=0, help="override the shape's layer count")
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch: cuda not available")
        return
    print("torch %s, %d threads, device %s, %s" %
          (torch.__version__, torch.get_num_threads(), args.device, args.dtype))
    base = dict(max_position_embeddings=max(2048, args.seq), rms_norm_eps=1e-5,
                hidden_act="silu", attention_bias=False)
    shape = dict(SHAPES[args.shape])
    if args.layers > 0:
        shape["num_hidden_layers"] = args.layers
    bench(args.shape, LlamaConfig(**base, **shape), args)
    if args.stories:
        with open(os.path.join(args.stories, "config.json")) as f:
            c = json.load(f)
        c.pop("architectures", None)
        c["max_position_embeddings"] = max(c.get("max_position_embeddings", 512), args.seq)
        args.iters *= 5
        bench("stories260K", LlamaConfig(**c), args)


if __name__ == "__main__":
    main()
