#!/usr/bin/env python3
"""PyTorch reference figures for tests/bench/bench_model.c (CPU) and bench_cuda.c (GPU).

Builds LlamaForCausalLM (transformers) with the same shapes as the C benches — the
SmolLM2-135M shape (30 layers, width 576, 9 heads, 3 kv heads, MLP 1536, vocab 49152,
tied), the Llama-3-8B shape (--layers N of its 32), a tiny shape for smoke runs and, with
--stories DIR, the stories260K model — and times, at the same batch, the passes asked for:

  forward   no grad, logits of every position
  fwdbwd    forward + mean cross-entropy + backward, every parameter trainable, no step
  train     fwdbwd + torch.optim.AdamW step (fused when available) + zero_grad
  masked    the same step with only the mlp.down_proj weights trainable, their gradients
            multiplied by a 0/1 mask that keeps --mask-frac of the MODEL's parameter count
            as whole value vectors (columns f of down_proj [D, F], chosen with a seeded
            generator over all layers): the usual gradient-masking recipe (AdamW over the
            whole down_proj tensors; masked elements still see weight decay)
  lora      the step training rank-16 LoRA adapters (alpha 32) on every layer's q, k, v, o,
            gate, up, down projections, the weights frozen (PEFT's recipe, written out:
            y = W x + 2 B A x, A and B f32 parameters); bench.h's FLOPs of forward and the
            backward without weight gradients. It wraps the model's layers, so it runs last

Precision: --dtype float32 (no TF32, like mu's default), --dtype bfloat16 = the standard
mixed precision: torch.autocast("cuda", bfloat16) over an f32 model (f32 master weights,
gradients and AdamW state, bf16 GEMMs), --dtype bfloat16 --pure-bf16 = the model itself in
bf16 (weights, gradients and AdamW state in bf16: the common fast baseline).

Weights are random N(0, 0.02) (transformers' initializer_range) drawn on the device, so
"identical weights" with mu means the same shapes and distribution: the values differ, the
speed does not depend on them. Best of --iters timed runs after one warm-up. Peak memory:
torch.cuda.max_memory_allocated() with the peak reset at the start of each pass (so it
includes the model's weights), on CUDA only. Tokens/s and GFLOP/s are counted exactly as the
C benches count them (bench.h: bench_count_flops).

Each figure is printed twice: a human line and a machine-readable one that bench.h parses,
  torch-result shape=S layers=L mode=f32|autocast|pure pass=P tokens_s=X gflops=Y peak_gib=Z

  python3 tests/bench/torch_model.py [--batch 8] [--seq 256] [--iters 1] [--device cpu|cuda]
        [--dtype float32|bfloat16] [--pure-bf16] [--passes forward,fwdbwd,train,masked,lora]
        [--mask-frac 0.01] [--shape smollm2-135m|llama3-8b|tiny] [--layers N] [--stories DIR]
"""
import argparse
import contextlib
import json
import math
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
    "tiny": dict(num_hidden_layers=2, hidden_size=64, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=16, intermediate_size=128,
                 vocab_size=512, tie_word_embeddings=False, rope_theta=10000.0),
}
PASSES = ("forward", "fwdbwd", "train", "masked", "lora")
LORA_R, LORA_ALPHA = 16, 32.0
OOM = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def flops(cfg, B, T):
    """(forward, backward, backward with only down_proj trained, backward without weight
    gradients), as bench.h counts them."""
    N, D = B * T, cfg.hidden_size
    hd = cfg.head_dim
    qd, kd = cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd
    F, V, L = cfg.intermediate_size, cfg.vocab_size, cfg.num_hidden_layers
    linear = 2 * N * (D * qd + 2 * D * kd + qd * D + 3 * D * F)
    attn = 4.0 * hd * B * cfg.num_attention_heads * (T * (T + 1) / 2)
    head = 2 * N * D * V
    fwd = L * (linear + attn) + head
    bwd = 2 * (L * linear + head) + 2.5 * L * attn
    bwd_down = L * (linear + 2 * N * D * F) + head + 2.5 * L * attn
    bwd_data = L * linear + head + 2.5 * L * attn
    return fwd, bwd, bwd_down, bwd_data


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def mode_of(args):
    if args.dtype == "float32":
        return "f32"
    return "pure" if args.pure_bf16 else "autocast"


def precision(args):
    """The autocast context of a pass (a no-op unless --dtype bfloat16 without --pure-bf16)."""
    if mode_of(args) == "autocast":
        return torch.autocast(device_type=args.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_model(cfg, args):
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(cfg)
    if mode_of(args) == "pure":
        model.to(torch.bfloat16)
    return model


def loss_of(model, ids, cfg, args):
    with precision(args):
        out = model(input_ids=ids, use_cache=False)
        logits = out.logits[:, :-1].reshape(-1, cfg.vocab_size)
    return torch.nn.functional.cross_entropy(logits.float(), ids[:, 1:].reshape(-1))


def best_time(fn, args):
    best = float("inf")
    for it in range(args.iters + 1):          # iteration 0 warms up
        sync(args.device)
        t = time.perf_counter()
        fn()
        sync(args.device)
        t = time.perf_counter() - t
        if it:
            best = min(best, t)
    return best


def adamw(params):
    """AdamW with mu's defaults (lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0.01)."""
    kw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01)
    try:
        return torch.optim.AdamW(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.AdamW(params, **kw)


def down_proj_masks(model, frac, seed=1):
    """[(weight, 0/1 mask)] over every layer's mlp.down_proj: whole columns, frac of the
    model's parameter count, spread over the layers by a seeded permutation."""
    layers = model.model.layers
    D, F = layers[0].mlp.down_proj.weight.shape
    total = sum(p.numel() for p in model.parameters())
    k = min(len(layers) * F, math.ceil(frac * total / D))
    g = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(layers) * F, generator=g)[:k]
    out = []
    for li, layer in enumerate(layers):
        w = layer.mlp.down_proj.weight
        cols = chosen[(chosen // F) == li] % F
        mask = torch.zeros(1, F, dtype=w.dtype)
        mask[0, cols] = 1
        out.append((w, mask.to(w.device)))
    return out


class LoraLinear(torch.nn.Module):
    """A frozen linear layer plus a rank-LORA_R adapter: W x + (alpha / r) B (A x), as PEFT
    computes it (A uniform in +-1/sqrt(in), B 0); A and B f32 on the layer's device."""

    def __init__(self, base):
        super().__init__()
        self.base = base
        dev = base.weight.device
        self.A = torch.nn.Parameter(torch.empty(LORA_R, base.in_features, device=dev).uniform_(
            -1 / math.sqrt(base.in_features), 1 / math.sqrt(base.in_features)))
        self.B = torch.nn.Parameter(torch.zeros(base.out_features, LORA_R, device=dev))
        self.scale = LORA_ALPHA / LORA_R

    def forward(self, x):
        return self.base(x) + self.scale * torch.nn.functional.linear(
            torch.nn.functional.linear(x, self.A.to(x.dtype)), self.B.to(x.dtype))


def add_lora(model):
    """Wraps every decoder layer's projections; returns the adapters' parameters."""
    for layer in model.model.layers:
        for parent, names in ((layer.self_attn, ("q_proj", "k_proj", "v_proj", "o_proj")),
                              (layer.mlp, ("gate_proj", "up_proj", "down_proj"))):
            for n in names:
                setattr(parent, n, LoraLinear(getattr(parent, n)))
    return [p for n, p in model.named_parameters() if n.endswith((".A", ".B"))]


def run_pass(name, model, ids, cfg, args):
    """Seconds of the best iteration of pass `name`."""
    if name == "forward":
        def step():
            with torch.no_grad(), precision(args):
                model(input_ids=ids, use_cache=False)
        return best_time(step, args)
    masks = down_proj_masks(model, args.mask_frac) if name == "masked" else []
    adapters = add_lora(model) if name == "lora" else []
    for p in model.parameters():
        p.requires_grad_(not masks and not adapters)
    for w in [w for w, _ in masks] + adapters:
        w.requires_grad_(True)
    opt = None
    if name != "fwdbwd":
        opt = adamw([w for w, _ in masks] if masks else adapters or list(model.parameters()))

    def step():
        loss_of(model, ids, cfg, args).backward()
        for w, m in masks:
            w.grad.mul_(m)
        if opt is not None:
            opt.step()
        model.zero_grad(set_to_none=True)
    try:
        return best_time(step, args)
    finally:
        opt = None
        model.zero_grad(set_to_none=True)
        for p in model.parameters():
            p.requires_grad_(True)


def report(label, layers, name, t, flop, peak, args):
    B, T = args.batch, args.seq
    mem = "  peak %.2f GiB" % peak if args.device == "cuda" else ""
    print("torch %-12s %-8s %-8s %9.0f tokens/s  %7.1f GFLOP/s%s" %
          (label, mode_of(args), name, B * T / t, flop / t / 1e9, mem))
    print("torch-result shape=%s layers=%d mode=%s pass=%s tokens_s=%.1f gflops=%.1f peak_gib=%.3f" %
          (label, layers, mode_of(args), name, B * T / t, flop / t / 1e9, peak))
    sys.stdout.flush()


def bench(label, cfg, args):
    try:
        model = make_model(cfg, args)
    except OOM:
        print("torch %s: out of device memory for the model" % label)
        return
    B, T = args.batch, args.seq
    ids = torch.randint(0, cfg.vocab_size, (B, T), device=args.device)
    fwd_f, bwd_f, down_f, data_f = flops(cfg, B, T)
    work = {"forward": fwd_f, "fwdbwd": fwd_f + bwd_f, "train": fwd_f + bwd_f,
            "masked": fwd_f + down_f, "lora": fwd_f + data_f}
    for name in args.passes:
        if args.device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        try:
            t = run_pass(name, model, ids, cfg, args)
        except OOM:
            print("torch %s %s %s: out of device memory" % (label, mode_of(args), name))
            continue
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else 0.0
        report(label, cfg.num_hidden_layers, name, t, work[name], peak, args)
    del model


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--pure-bf16", action="store_true",
                    help="with --dtype bfloat16: bf16 weights instead of autocast")
    ap.add_argument("--passes", default="forward,fwdbwd",
                    help="comma-separated of: " + ",".join(PASSES))
    ap.add_argument("--mask-frac", type=float, default=0.01)
    ap.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    ap.add_argument("--stories", default=None)
    ap.add_argument("--layers", type=int, default=0, help="override the shape's layer count")
    args = ap.parse_args(argv)
    args.passes = [p for p in args.passes.split(",") if p]
    bad = [p for p in args.passes if p not in PASSES]
    if bad:
        ap.error("unknown pass %s (one of %s)" % (bad[0], ",".join(PASSES)))
    if args.pure_bf16 and args.dtype != "bfloat16":
        ap.error("--pure-bf16 needs --dtype bfloat16")
    if not 0 < args.mask_frac <= 1:
        ap.error("--mask-frac must be in (0, 1]")
    return args


def main():
    args = parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("torch: cuda not available")
        return
    print("torch %s, %d threads, device %s, %s" %
          (torch.__version__, torch.get_num_threads(), args.device, mode_of(args)))
    base = dict(max_position_embeddings=max(2048, args.seq), rms_norm_eps=1e-5,
                hidden_act="silu", attention_bias=False, initializer_range=0.02)
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
