#!/usr/bin/env python3
"""Golden data for the tokenizer.json components that tests/gen/gen_tokenizer_golden.py's
model families leave out, made with Hugging Face `tokenizers` (0.21.4).

Run from the project root:
    /root/torchenv/bin/python tests/gen/gen_tokenizer_components.py

Writes under tests/golden/tokenizer/components/ small tokenizer.json files, each built
around one component mu claims to support (lib/tok_load.c):
  nfd, nfkc, nfkd    byte-level BPE behind an NFD / NFKC / Sequence[NFKD] normalizer;
                     nfd has a BertProcessing post-processor ([CLS] ... [SEP]), nfkc a
                     RobertaProcessing one (<s> ... </s>)
  split_removed      Split(Regex \\s+, Removed) + ByteLevel(use_regex=false)
  split_merged_prev  Split(Regex [\\s\\p{P}], MergedWithPrevious) + ByteLevel
  split_merged_next  Split(String " ", MergedWithNext) + ByteLevel: a literal pattern
  split_literal      Split(String "..", Isolated) then the GPT-2 regex: a literal whose
                     characters are regex metacharacters
  metaspace          SentencePiece-style BPE (no byte fallback, <unk>) with a Metaspace
                     pre-tokenizer and a Metaspace decoder, prepend_scheme "always"
  metaspace_never    the same with prepend_scheme "never" (the decoder strips nothing)
  metaspace_first_nosplit
                     the same with prepend_scheme "first" and split=false, so tokens
                     hold U+2581 inside (the decoder drops every one of the first token)
  spm_no_byte_decoder
                     ../spm.json (byte-fallback BPE) whose decoder lacks ByteFallback, so
                     byte tokens decode to their spelling "<0xXX>"
  added              byte-level BPE with added tokens that lstrip, rstrip, or both
and expected.json:
  {"cases": {name: [{"text", "ids" (add_special_tokens=False), "offsets" (HF's, as byte
                     offsets, flat: start, end, ...), "starts" (nfd, nfkc, nfkd: chunk_starts below),
                     "decoded" (decode(ids, skip_special_tokens=True)),
                     where add_special_tokens=True adds tokens: "ids_special" (its ids) and
                     "decoded_special" (decode(ids_special, skip_special_tokens=False))}]},
   "cache": {"tokenizer", "words", "per_chunk", "seed", "chunks": [{"n_ids", "hash"}]},
   "decode": {file: [[ids, decode(ids, skip_special_tokens=True), decode(ids, False)]]}}
"decode" holds random id sequences, not encodings, for every file here and the model-family
goldens ../spm.json and ../gemma.json (file names relative to tests/golden/tokenizer): ids
drawn mostly from byte tokens, special tokens and tokens holding U+2581, where decoders
differ (runs of byte tokens that are or are not valid UTF-8, a first token of U+2581s).
The "cache" entry is for the tokenizer's piece cache, which empties itself when half of its
2^17 slots are used (65536 pieces): 140000 distinct words (about 150000 distinct pieces
behind nfkd, so it empties twice), made by cache_words below, which the C test repeats,
are encoded "per_chunk" at a time, space-separated; each chunk's ids are given as their
count and an FNV-1a hash (ids_hash), so no text is stored.

Every vocabulary is trained here (a few hundred tokens), so the files stay small; the
split_* ones behind their own splits, so that their merges cross where another behavior
would cut. Output is the same from run to run (checked by running it twice).
"""
import json
import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")   # the trainer's tie order
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GPT2_RE = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

CORPUS = [
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
    "The quick brown fox jumps over the lazy dog; THE QUICK BROWN FOX JUMPS!",
    "Die Äpfel sind grün, und die Straße ist naß. Größe, Übermut, Öl.",
    "Le café est très chaud; à bientôt, garçon! Où est l'hôtel? Ça coûte cher.",
    "Fact: Tiger Woods plays the sport of golf... wait.. really?",
    "한국어 텍스트도 있습니다. Ελληνικά. Москва — столица.",
    "ﬁne ﬂags: Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３, ① ㎏ ½ ™ ℌ ǅ",
]
# the corpus and its NFD/NFKC/NFKD forms, so decomposed characters get merges too
TRAIN = [unicodedata.normalize(f, t) for t in CORPUS for f in ("NFC", "NFD", "NFKC", "NFKD")] * 2

TEXTS = [
    "",
    " ",
    "Hello world",
    "  leading and trailing  ",
    "Le café est très chaud à l'hôtel",
    "e\u0301 vs \u00e9, \u212b and \u00c5, n\u0303o",
    "Größe Übermut naß",
    "ﬁne ﬂags ﬃ",
    "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "① ㎏ ½ ™ ℌ ǅ x²",
    "한국어 텍스트",
    "Emoji 😀🎉👍🏽 and ❤️",
    "tabs\tand\r\nnewlines\n\n end",
    "wait.. what... ok.",
    "Hello, world! Really?! (yes); no: fine.",
    "a\u00a0b\u3000c",
]
ADDED_TEXTS = [
    "Hello <mask> world",
    "Hello   <mask>world",
    "a\t\n<mask>",
    "  <mask> at start",
    "<mask><mask>  <mask>",
    "x <eot>   y",
    "<eot>\n\nz",
    "end <eot>",
    "<eot> <mask>",
    " <both> ",
    "a  <both>  b <both>c",
    "a\u00a0<mask> b",
    "a\u3000<mask> b",
    "<eot>\u2003b",
    "<both>\u00a0\u00a0x",
]

SPECIALS = ["<s>", "</s>", "[CLS]", "[SEP]", "<unk>"]


def train_bytelevel(pre=None):
    """A byte-level vocabulary trained behind pre (default: ByteLevel with the GPT-2 regex),
    so that its merges cross where another splitting would cut."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre or pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tr = trainers.BpeTrainer(vocab_size=360, special_tokens=SPECIALS,
                             initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TRAIN, tr)
    tok.decoder = decoders.ByteLevel()
    return tok


def variant(base, normalizer=None, post=None):
    t = Tokenizer.from_str(base.to_str())
    if normalizer is not None:
        t.normalizer = normalizer
    if post is not None:
        t.post_processor = post
    return t


def split_variant(*splits):
    """Splits then ByteLevel without its regex; the vocabulary is trained behind them."""
    return train_bytelevel(pre_tokenizers.Sequence(
        list(splits) + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]))


def bytelevel_components():
    base = train_bytelevel()
    cls, sep, bos, eos = (("[CLS]", base.token_to_id("[CLS]")), ("[SEP]", base.token_to_id("[SEP]")),
                          ("<s>", base.token_to_id("<s>")), ("</s>", base.token_to_id("</s>")))
    out = {
        "nfd": variant(base, normalizers.NFD(), post=processors.BertProcessing(sep=sep, cls=cls)),
        "nfkc": variant(base, normalizers.NFKC(),
                        post=processors.RobertaProcessing(sep=eos, cls=bos, trim_offsets=False, add_prefix_space=False)),
        "nfkd": variant(base, normalizers.Sequence([normalizers.NFKD()])),
        "split_removed": split_variant(pre_tokenizers.Split(Regex(r"\s+"), behavior="removed")),
        "split_merged_prev": split_variant(pre_tokenizers.Split(Regex(r"[\s\p{P}]"), behavior="merged_with_previous")),
        "split_merged_next": split_variant(pre_tokenizers.Split(" ", behavior="merged_with_next")),
        "split_literal": split_variant(pre_tokenizers.Split("..", behavior="isolated"),
                                       pre_tokenizers.Split(Regex(GPT2_RE), behavior="isolated")),
    }
    added = variant(base)
    added.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True),
                              AddedToken("<eot>", lstrip=False, rstrip=True, normalized=False, special=True)])
    added.add_tokens([AddedToken("<both>", lstrip=True, rstrip=True, normalized=False, special=False)])
    out["added"] = added
    return out


def metaspace_components():
    out = {}
    for scheme in ("always", "never"):
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
        # the Latin lines only, every character kept (limit_alphabet would break ties
        # between equally frequent characters differently from run to run); the other
        # scripts become <unk>
        tr = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
        tok.train_from_iterator(CORPUS[:5] * 2, tr)
        tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme=scheme, split=True)
        out["metaspace" if scheme == "always" else "metaspace_" + scheme] = tok
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    tr = trainers.BpeTrainer(vocab_size=260, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(CORPUS[:5] * 2, tr)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    out["metaspace_first_nosplit"] = tok
    return out


def spm_no_byte_decoder(root):
    tok = Tokenizer.from_file(os.path.join(root, "tests", "golden", "tokenizer", "spm.json"))
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    return tok


# ---------------------------------------------------------------- decoding random ids
DECODE_SEQS, DECODE_SEED = 60, 20261206


def decode_golden(tok, seed):
    """DECODE_SEQS random id sequences of 1-8 ids and their decodes, skipping and keeping
    special tokens; ids mostly from the pools where decoders differ."""
    import random
    rng = random.Random(seed)
    vocab = tok.get_vocab(with_added_tokens=True)
    n = tok.get_vocab_size(with_added_tokens=True)
    pools = [sorted(i for t, i in vocab.items() if len(t) == 6 and t.startswith("<0x") and t.endswith(">")),
             sorted(tok.get_added_tokens_decoder()),
             sorted(i for t, i in vocab.items() if "▁" in t)]
    pools = [p for p in pools if p]
    rows = []
    for _ in range(DECODE_SEQS):
        ids = []
        for _ in range(rng.randint(1, 8)):
            pool = rng.choice(pools) if pools and rng.random() < 0.7 else range(n)
            ids.append(rng.choice(pool))
        rows.append([ids, tok.decode(ids, skip_special_tokens=True), tok.decode(ids, skip_special_tokens=False)])
    return rows


# ---------------------------------------------------------------- the piece cache
CACHE_WORDS, CACHE_PER_CHUNK, CACHE_SEED = 140000, 1000, 20240601
LETTERS = "abcdefghijklmnopqrstuvwxyzéüßø"   # 30 letters, the last four non-ASCII
MASK64 = (1 << 64) - 1


def cache_words(n, seed):
    """n distinct words: word i spells (i * 2654435761 + seed) mod 30^6 in base 30 over
    LETTERS (a bijection on 0..30^6-1, so all distinct), then 0-3 more letters from an LCG.
    tests/t_tokenizer.c (cache_word) makes the same words."""
    state = seed & MASK64
    words = []
    for i in range(n):
        v = (i * 2654435761 + seed) % 30 ** 6
        w = []
        for _ in range(6):
            w.append(LETTERS[v % 30])
            v //= 30
        state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
        extra = (state >> 33) % 4
        for _ in range(extra):
            state = (state * 6364136223846793005 + 1442695040888963407) & MASK64
            w.append(LETTERS[(state >> 33) % 30])
        words.append("".join(w))
    return words


def ids_hash(ids):
    """FNV-1a 64 over each id as 4 little-endian bytes, as hex (mirrored in the C test)."""
    h = 0xcbf29ce484222325
    for i in ids:
        for b in (i & 0xFFFFFFFF).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001b3) & MASK64
    return "%016x" % h


def cache_golden(tok, name):
    words = cache_words(CACHE_WORDS, CACHE_SEED)
    chunks = []
    for k in range(0, CACHE_WORDS, CACHE_PER_CHUNK):
        ids = tok.encode(" ".join(words[k:k + CACHE_PER_CHUNK]), add_special_tokens=False).ids
        chunks.append({"n_ids": len(ids), "hash": ids_hash(ids)})
    return {"tokenizer": name, "words": CACHE_WORDS, "per_chunk": CACHE_PER_CHUNK, "seed": CACHE_SEED,
            "chunks": chunks}


def byte_offsets(text, offsets):
    """HF's character offsets as byte offsets into the UTF-8 text, flat: start, end, ..."""
    at = [0]
    for ch in text:
        at.append(at[-1] + len(ch.encode()))
    return [x for s, e in offsets for x in (at[s], at[e])]


def chunk_starts(text, form):
    """Byte offsets where a normalization chunk may start (python's unicodedata): before a
    character whose decomposition starts with a starter (combining class 0) and that
    normalizes apart from the chunk before it; and the end of the text."""
    starts, at, chunk = [0], 0, 0
    for i, ch in enumerate(text):
        d = unicodedata.normalize("NFKD" if "K" in form else "NFD", ch)
        if i and unicodedata.combining(d[0]) == 0 and \
                unicodedata.normalize(form, text[chunk:i + 1]) == unicodedata.normalize(form, text[chunk:i]) + unicodedata.normalize(form, ch):
            starts.append(at)
            chunk = i
        at += len(ch.encode())
    if at:
        starts.append(at)
    return starts


NORM_FORMS = {"nfd": "NFD", "nfkc": "NFKC", "nfkd": "NFKD"}


def cases_for(tok, texts, form=None):
    rows = []
    for text in texts:
        enc = tok.encode(text, add_special_tokens=False)
        ids = enc.ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        row = {"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=True),
               "offsets": byte_offsets(text, enc.offsets)}
        if form:
            row["starts"] = chunk_starts(text, form)
        if ids_special != ids:   # only where a post-processor adds tokens (keeps the file small)
            row["ids_special"] = ids_special
            row["decoded_special"] = tok.decode(ids_special, skip_special_tokens=False)
        rows.append(row)
    return rows


def compact_json(v, depth=0):
    """JSON with one line per innermost object or list of numbers (small, and diffs well)."""
    flat = lambda x: json.dumps(x, ensure_ascii=False, separators=(",", ":"))
    if isinstance(v, dict) and any(isinstance(x, (dict, list)) and x and not is_leaf(x) for x in v.values()):
        items = ["%s:%s" % (flat(k), compact_json(x, depth + 1)) for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "}"
    if isinstance(v, list) and v and not is_leaf(v):
        return "[\n" + ",\n".join(compact_json(x, depth + 1) for x in v) + "]"
    return flat(v)


def is_leaf(v):
    if isinstance(v, dict):
        return all(not isinstance(x, (dict, list)) or (isinstance(x, list) and all(isinstance(y, int) for y in x))
                   for x in v.values())
    return all(isinstance(y, (int, str)) for y in v)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    outdir = os.path.join(root, "tests", "golden", "tokenizer", "components")
    os.makedirs(outdir, exist_ok=True)
    toks = {**bytelevel_components(), **metaspace_components(), "spm_no_byte_decoder": spm_no_byte_decoder(root)}
    expected = {"cases": {}}
    for name, tok in toks.items():
        with open(os.path.join(outdir, name + ".json"), "w", encoding="utf-8") as f:
            f.write(tok.to_str(pretty=False))
        expected["cases"][name] = cases_for(tok, TEXTS + (ADDED_TEXTS if name == "added" else []), NORM_FORMS.get(name))
    expected["cache"] = cache_golden(toks["nfkd"], "nfkd")
    expected["decode"] = {}
    for k, name in enumerate(sorted(toks)):
        expected["decode"]["components/%s.json" % name] = decode_golden(toks[name], DECODE_SEED + k)
    for k, name in enumerate(("spm", "gemma")):
        tok = Tokenizer.from_file(os.path.join(root, "tests", "golden", "tokenizer", name + ".json"))
        expected["decode"][name + ".json"] = decode_golden(tok, DECODE_SEED + 100 + k)
    with open(os.path.join(outdir, "expected.json"), "w", encoding="utf-8") as f:
        f.write(compact_json(expected))
    total = 0
    for fn in sorted(os.listdir(outdir)):
        total += os.path.getsize(os.path.join(outdir, fn))
        print(fn, os.path.getsize(os.path.join(outdir, fn)), "bytes")
    print("total", total, "bytes")


if __name__ == "__main__":
    main()
