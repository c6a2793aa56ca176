"""hf_parity.py — the part of the HF parity generators (gen_llama_parity.py,
gen_gemma_parity.py) that they share: a right-padded batch of random ids, the float64
eager forward of a saved model, the mean cross-entropy over next tokens and its gradient
for every parameter, written as golden.safetensors beside the model."""
import os

import numpy as np
import torch
from safetensors.torch import save_file


def save_model(model, out):
    """The model's config.json and model.safetensors in out (no generation_config.json)."""
    os.makedirs(out, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    extra = os.path.join(out, "generation_config.json")
    if os.path.exists(extra):
        os.remove(extra)


def randomize_norms(model, center, std=0.2, suffixes=("norm.weight",), prefix=""):
    """Norm weights drawn from N(center, std^2) instead of their constant initialization,
    for the parameters named prefix*suffix, in named_parameters order, so that a wrong norm
    shows."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(prefix) and name.endswith(suffixes):
                p.copy_(center + std * torch.randn_like(p))


def randomize_biases(model, std=0.2):
    """Every bias drawn from N(0, std^2), in named_parameters order (transformers starts them
    at 0, which would hide a wrong bias)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(std * torch.randn_like(p))


def gemma_norms_around_zero(model, prefix=""):
    """Gemma's RMSNorms scale by 1 + w, initialized to w = 0: w ~ N(0, 0.2^2), so that
    1 + w is not 1."""
    randomize_norms(model, 0.0, prefix=prefix)


def write_golden(model_cls, out, vocab, seed, generator, lengths=(9, 5, 2), strip="", rename=None,
                 golden="golden.safetensors"):
    """golden.safetensors (or the file golden) in out: input_ids, lengths, targets, logits, loss and grad.<name>
    of model_cls loaded from out in float64; returns the loss. Parameters that get no
    gradient (a multimodal model's vision tower) are left out; strip is taken off the front
    of the names (Gemma-3 multimodal: "language_model."); rename maps a parameter's module
    name to the checkpoint's where they differ (transformers 5's GPT-NeoX: lm_head.weight,
    stored as embed_out.weight)."""
    B, T = len(lengths), max(lengths)
    rng = np.random.default_rng(seed)
    ids = np.zeros((B, T), dtype=np.int32)
    targets = np.full((B, T), -1, dtype=np.int32)
    mask = np.zeros((B, T), dtype=np.int64)
    for b, n in enumerate(lengths):
        ids[b, :n] = rng.integers(3, vocab, size=n)
        targets[b, :n - 1] = ids[b, 1:n]
        mask[b, :n] = 1
    m64 = model_cls.from_pretrained(out, torch_dtype=torch.float64, attn_implementation="eager")
    m64.train(False)
    logits = m64(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask),
                 position_ids=torch.arange(T).unsqueeze(0).expand(B, T)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab),
                                             torch.tensor(targets, dtype=torch.long).reshape(-1),
                                             ignore_index=-1)
    loss.backward()
    tensors = {
        "input_ids": torch.tensor(ids),
        "lengths": torch.tensor(list(lengths), dtype=torch.int32),
        "targets": torch.tensor(targets),
        "logits": logits.detach().float().contiguous(),
        "loss": loss.detach().float().reshape(1),
    }
    for name, p in m64.named_parameters():
        if p.grad is not None:
            name = (rename or {}).get(name, name)
            tensors["grad." + name.removeprefix(strip)] = p.grad.detach().float().contiguous()
    save_file(tensors, os.path.join(out, golden), metadata={"generator": generator})
    return float(loss.detach())


def golden_root():
    """tests/golden, or MU_GOLDEN_OUT when set."""
    return os.environ.get("MU_GOLDEN_OUT") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")


def make_parity(model_cls, cfg, sub, seed, generator, prepare, lengths=(9, 5, 2), rename=None):
    """A random model_cls(cfg) in F32, seeded by seed, given prepare(model) (its norms and
    biases drawn), saved under golden_root()/sub with its golden; prints and returns the loss."""
    torch.manual_seed(seed)
    model = model_cls(cfg).float()
    prepare(model)
    out = os.path.join(golden_root(), sub)
    save_model(model, out)
    loss = write_golden(model_cls, out, cfg.vocab_size, seed, generator, lengths=lengths, rename=rename)
    print(sub, "loss", loss, "files in", os.path.normpath(out))
    return loss
