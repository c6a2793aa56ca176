#!/usr/bin/env python3
"""Golden data for tests/t_tokenizer.c, made with Hugging Face `tokenizers`.

Run from the project root with the golden venv:
    /root/gold/bin/python tests/gen/gen_tokenizer_golden.py

Trains small BPE vocabularies (a few hundred tokens, so the files stay small) on the
multilingual corpus below and writes, under tests/golden/tokenizer/:
  <name>.json   a tokenizer.json in the configuration of a real model family:
      gpt2    ByteLevel pre-tokenizer (GPT-2 / GPT-NeoX regex), ByteLevel decoder
      llama3  Split(Llama-3 regex) + ByteLevel(use_regex=false), ignore_merges, BOS
              <|begin_of_text|> from a TemplateProcessing post-processor
      qwen2   NFC normalizer + Split(Qwen2 regex) + ByteLevel
      smollm  Digits(individual) + ByteLevel (SmolLM / StarCoder)
      spm     SentencePiece-style BPE with byte fallback: Metaspace(prepend "first"),
              <0x00>..<0xFF> byte tokens, Replace/ByteFallback/Fuse/Strip decoder, BOS <s>
      gemma   the same vocabulary with Gemma's pipeline: Replace(" ", "▁") normalizer,
              no prefix space, BOS <bos>
  cases.json  {name: [{"text", "ids" (no special tokens), "ids_special"
              (add_special_tokens=True), "decoded" (decode(ids), skip special),
              "nfc_stable" (text is already NFC)}]}
  <name>.gguf for gpt2, llama3, qwen2, smollm: the same vocabulary as a vocab-only GGUF
              the way llama.cpp's converter writes it (tokenizer.ggml.model "gpt2",
              tokenizer.ggml.pre "gpt-2" / "llama-bpe" / "qwen2" / "smollm", tokens,
              token_type, merges, bos/eos, add_bos_token), to test the GGUF path
              against the same HF ids (llama.cpp applies no NFC: qwen2 is compared on
              NFC-stable texts only)

`bench` mode (used by tests/bench/bench_tokenize.sh) instead writes the GPT-2 vocabulary
held in ../shared/data/tokenizers/ggml-vocab-gpt-2.gguf out as a tokenizer.json:
    python tests/gen/gen_tokenizer_golden.py bench GGUF OUT.json
(The shared copy of that GGUF went through a lossy UTF-8 decode; its token strings are
intact, its binary fields are not, so the strings are read by walking the arrays; see
repair_vocab_gguf in tests/t_tokenizer.c.)
"""
import json
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")   # the trainer's tie order; files are made together anyway
import struct
import sys
import unicodedata

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
QWEN2_RE = r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "The quick brown fox jumps over the lazy dog; THE QUICK BROWN FOX JUMPS!",
    "I'm sure you'll like it, they've said. We'd go, but it's late. DON'T YOU'LL",
    "Fact: Tiger Woods plays the sport of golf\nFact: Michael Jordan plays the sport of basketball",
    "Die Äpfel sind grün, und die Straße ist naß. Größe, Übermut, Öl.",
    "Le café est très chaud; à bientôt, garçon! Où est l'hôtel?",
    "Москва — столица России. Привет, как дела?",
    "東京は日本の首都です。今日はいい天気ですね。",
    "北京是中国的首都。我喜欢学习语言。",
    "مرحبا بالعالم، كيف حالك؟",
    "Numbers: 1234567 and 3.14159, 2024-11-22, 1,000,000 people; 42nd street.",
    "def tokenize(text):\n\treturn [t for t in text.split()]  # code\n\n",
    "Tabs\tand  double  spaces   and\r\nwindows lines\n\n\nend",
    "Emoji: 😀🎉👍 and symbols ©®™ €£¥ ½ ¾",
    "한국어 텍스트도 있습니다. ελληνικά γράμματα. עברית",
]

CASES = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    "\n\n\n",
    "Hello world",
    " Hello world",
    "Hello World!",
    "I'm sure you'll like it; DON'T YOU?",
    "Fact: Tiger Woods plays the sport of golf\nFact: Serena Williams plays the sport of",
    "Die Äpfel sind grün. Größe!",
    "Москва — столица.",
    "東京は日本の首都です。",
    "مرحبا بالعالم",
    "Numbers 1234567 and 3.14159 or 2024-11-22",
    "  leading and trailing spaces  ",
    "tabs\tand\r\nnewlines\n\n end",
    "Emoji 😀🎉 and rare 齉 chars ǅ",
    "e\u0301 composed? \u00e9 vs e\u0301 and \u212b",
    "Hello<|endoftext|>world <s> text </s>",
    "unseen: zebra quokka xylophone 9876",
]


def train(pre, norm=None, vocab_size=700, special=()):
    tok = Tokenizer(models.BPE())
    if norm is not None:
        tok.normalizer = norm
    tok.pre_tokenizer = pre
    tr = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(special),
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 3, tr)
    return tok


def bytelevel_family():
    out = {}
    t = train(pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True), special=["<|endoftext|>"])
    t.decoder = decoders.ByteLevel()
    t.post_processor = processors.ByteLevel(trim_offsets=False)
    out["gpt2"] = t

    t = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        special=["<|begin_of_text|>", "<|end_of_text|>"])
    t.decoder = decoders.ByteLevel()
    bos = t.token_to_id("<|begin_of_text|>")
    t.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", bos)])])
    d = json.loads(t.to_str())
    d["model"]["ignore_merges"] = True
    out["llama3"] = Tokenizer.from_str(json.dumps(d))

    t = train(pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_RE), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
        norm=normalizers.NFC(), special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    t.decoder = decoders.ByteLevel()
    out["qwen2"] = t

    t = train(pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]),
        special=["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    t.decoder = decoders.ByteLevel()
    out["smollm"] = t
    return out


def spm_family():
    """BPE over characters with ▁ for spaces, then byte tokens inserted after the specials."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tr = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False,
                             limit_alphabet=120)
    tok.train_from_iterator(CORPUS * 3, tr)
    d = json.loads(tok.to_str())
    vocab = d["model"]["vocab"]
    order = sorted(vocab.items(), key=lambda kv: kv[1])
    new = {}
    for name in ["<unk>", "<s>", "</s>"]:
        new[name] = len(new)
    for b in range(256):
        new["<0x%02X>" % b] = len(new)
    for name, _ in order:
        if name not in new:
            new[name] = len(new)
    d["model"]["vocab"] = new
    for a in d["added_tokens"]:
        a["id"] = new[a["content"]]
    d["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    d["post_processor"] = {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                                    {"Sequence": {"id": "B", "type_id": 1}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [new["<s>"]], "tokens": ["<s>"]}}}
    spm = Tokenizer.from_str(json.dumps(d))

    g = json.loads(json.dumps(d))
    # Gemma: no prefix space, spaces replaced by the normalizer, BOS <bos>
    g["added_tokens"][1]["content"] = "<bos>"
    g["added_tokens"][2]["content"] = "<eos>"
    voc = {}
    for k, v in g["model"]["vocab"].items():
        voc[{"<s>": "<bos>", "</s>": "<eos>"}.get(k, k)] = v
    g["model"]["vocab"] = voc
    g["normalizer"] = {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
    g["pre_tokenizer"] = None
    g["decoder"] = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"}]}
    g["post_processor"]["single"][0]["SpecialToken"]["id"] = "<bos>"
    g["post_processor"]["pair"][0]["SpecialToken"]["id"] = "<bos>"
    g["post_processor"]["special_tokens"] = {"<bos>": {"id": "<bos>", "ids": [voc["<bos>"]], "tokens": ["<bos>"]}}
    gemma = Tokenizer.from_str(json.dumps(g))
    return {"spm": spm, "gemma": gemma}


def write_goldens(root):
    outdir = os.path.join(root, "tests", "golden", "tokenizer")
    os.makedirs(outdir, exist_ok=True)
    toks = {**bytelevel_family(), **spm_family()}
    cases = {}
    for name, t in toks.items():
        with open(os.path.join(outdir, name + ".json"), "w", encoding="utf-8") as f:
            f.write(t.to_str(pretty=False))
        rows = []
        for text in CASES:
            ids = t.encode(text, add_special_tokens=False).ids
            rows.append({"text": text, "ids": ids,
                         "ids_special": t.encode(text, add_special_tokens=True).ids,
                         "decoded": t.decode(ids, skip_special_tokens=True),
                         "nfc_stable": unicodedata.normalize("NFC", text) == text})
        cases[name] = rows
    for name, pre in (("gpt2", "gpt-2"), ("llama3", "llama-bpe"), ("qwen2", "qwen2"), ("smollm", "smollm")):
        write_gguf(toks[name], pre, os.path.join(outdir, name + ".gguf"))
    with open(os.path.join(outdir, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=0)
    for name in toks:
        print(name, os.path.getsize(os.path.join(outdir, name + ".json")), "bytes")


# ---------------------------------------------------------------- vocab-only GGUF
def _gguf_str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def write_gguf(tok, pre, path):
    d = json.loads(tok.to_str())
    vocab = d["model"]["vocab"]
    n = max(vocab.values()) + 1
    tokens = [""] * n
    for k, v in vocab.items():
        tokens[v] = k
    special = {a["id"] for a in d["added_tokens"] if a["special"]}
    types = [3 if i in special else 1 for i in range(n)]
    merges = [m if isinstance(m, str) else " ".join(m) for m in d["model"]["merges"]]
    pp = d.get("post_processor") or {}
    procs = pp.get("processors", [pp])
    bos = None
    for p in procs:
        if p.get("type") == "TemplateProcessing":
            first = p["single"][0]
            if "SpecialToken" in first:
                bos = p["special_tokens"][first["SpecialToken"]["id"]]["ids"][0]
    eos = min(special) if special else 0
    kv = []
    kv.append(("general.architecture", 8, _gguf_str("llama")))
    kv.append(("tokenizer.ggml.model", 8, _gguf_str("gpt2")))
    kv.append(("tokenizer.ggml.pre", 8, _gguf_str(pre)))
    kv.append(("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, n) + b"".join(_gguf_str(t) for t in tokens)))
    kv.append(("tokenizer.ggml.token_type", 9, struct.pack("<IQ", 5, n) + struct.pack("<%di" % n, *types)))
    kv.append(("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(_gguf_str(m) for m in merges)))
    kv.append(("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", eos)))
    if bos is not None:
        kv.append(("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", bos)))
    kv.append(("tokenizer.ggml.add_bos_token", 7, struct.pack("<B", 1 if bos is not None else 0)))
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(kv))
    for key, typ, val in kv:
        out += _gguf_str(key) + struct.pack("<I", typ) + val
    out += b"\0" * ((32 - len(out) % 32) % 32)
    with open(path, "wb") as f:
        f.write(out)


# ---------------------------------------------------------------- bench: GPT-2 from the damaged GGUF
def _gguf_strings_after(data, key):
    """The strings of the string array stored under key, read by walking u64 length + bytes
    (a length byte the lossy decode replaced by EF BF BD is resolved as the candidate after
    which the next length parses and the text is valid UTF-8)."""
    import struct
    k = data.find(key.encode() + b"\x09\x00\x00\x00\x08\x00\x00\x00")
    if k < 0:
        raise SystemExit("no %s array" % key)
    i = k + len(key) + 8
    # count field (may be damaged): skip 8 bytes, or 10 if it holds one EF BF BD
    i += 10 if data[i + 1:i + 4] == b"\xef\xbf\xbd" else 8
    out = []
    while i + 8 <= len(data):
        if data[i:i + 3] == b"\xef\xbf\xbd" and data[i + 3:i + 10] == b"\x00" * 7:
            i += 10
            for n in range(0x80, 0x100):
                try:
                    s = data[i:i + n].decode("utf-8")
                except UnicodeDecodeError:
                    continue
                (nl,) = struct.unpack("<Q", data[i + n:i + n + 8])
                if nl < 4096:
                    break
            out.append(s)
            i += n
            continue
        (n,) = struct.unpack("<Q", data[i:i + 8])
        if n > 4096:
            break
        s = data[i + 8:i + 8 + n]
        if s.startswith(b"tokenizer.") and data[i + 8 + n:i + 12 + n] in (b"\x09\x00\x00\x00", b"\x04\x00\x00\x00", b"\x08\x00\x00\x00", b"\x07\x00\x00\x00"):
            break
        out.append(s.decode("utf-8"))
        i += 8 + n
    return out


def write_bench_tokenizer(gguf, out):
    data = open(gguf, "rb").read()
    tokens = _gguf_strings_after(data, "tokenizer.ggml.tokens")
    merges = _gguf_strings_after(data, "tokenizer.ggml.merges")
    vocab = {t: i for i, t in enumerate(tokens)}
    d = {"version": "1.0", "truncation": None, "padding": None,
         "added_tokens": [{"id": vocab["<|endoftext|>"], "content": "<|endoftext|>", "single_word": False,
                           "lstrip": False, "rstrip": False, "normalized": False, "special": True}],
         "normalizer": None,
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
         "post_processor": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": True},
         "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
         "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                   "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                   "vocab": vocab, "merges": merges}}
    with open(out, "w", encoding="utf-8") as f:
        json.dump(d, f, ensure_ascii=False)
    Tokenizer.from_file(out)   # must load
    print("wrote %s: %d tokens, %d merges" % (out, len(tokens), len(merges)))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "bench":
        write_bench_tokenizer(sys.argv[2], sys.argv[3])
    else:
        write_goldens(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
