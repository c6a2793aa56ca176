/* t_tokenizer.c — the tokenizer against independent references:
 *   - golden ids from Hugging Face `tokenizers` for six model-family configurations
 *     (tests/gen/gen_tokenizer_golden.py -> tests/golden/tokenizer/);
 *   - llama.cpp's own test vectors for ggml-vocab-gpt-2.gguf / ggml-vocab-llama-spm.gguf
 *     (../shared/data/tokenizers; the shared copies are damaged, see repair_vocab_gguf);
 *   - stories260K: greedy_200.json decodes to greedy_200.txt and encodes back;
 *   - HF ids and decodes for one small tokenizer.json per component the families leave out
 *     (tests/gen/gen_tokenizer_components.py -> tests/golden/tokenizer/components/). */
#include "test.h"
#include "tokenizer.h"
#include "utf8.h"
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long L = ftell(f);
    rewind(f);
    char *b = malloc((size_t)L + 1);
    *n = fread(b, 1, (size_t)L, f);
    b[*n] = 0;
    fclose(f);
    return b;
}

static mu_tokenizer *load_or_fail(const char *path) {
    char err[512];
    mu_tokenizer *tk = mu_tokenizer_load(path, err, sizeof err);
    CHECK_MSG(tk != NULL, "load %s: %s", path, err);
    return tk;
}

static void ids_str(const int32_t *ids, size_t n, char *out, size_t cap) {
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o + 16 < cap; i++) o += (size_t)snprintf(out + o, cap - o, "%s%d", i ? " " : "", ids[i]);
}

/* ---- repairing the shared vocab GGUFs ------------------------------------------------
 * The copies of llama.cpp's ggml-vocab-*.gguf in ../shared/data were passed through a
 * lossy UTF-8 decode: every byte of a binary field that was not valid UTF-8 became
 * U+FFFD (EF BF BD), so lengths, counts, ids and float scores are damaged while the token
 * strings (valid UTF-8) are intact. repair_vocab_gguf() rebuilds a valid GGUF holding the
 * tokenizer.* keys: a damaged byte of a fixed-size field stands for exactly one byte;
 * a damaged string length is the candidate 0x80..0xFF after which the next length
 * field parses; a damaged array count is found by reading elements up to the next key;
 * SentencePiece scores (llama's layout: 0 for specials and bytes, -(id - 259) for the
 * pieces, -1e9 for a few) are recovered as the candidate whose bytes, put through the
 * same lossy decode with their neighbours, reproduce the damaged bytes exactly (a
 * replacement may stand for 1-3 bytes there); otherwise the repair fails. Damaged
 * scalars (bos/eos ids) are left out. The result is only used when every check passes. */
typedef struct { const unsigned char *p; size_t n, i; } rcur;
typedef struct { unsigned char *p; size_t n, cap; } rbuf;

static void rb_put(rbuf *b, const void *s, size_t n) {
    if (b->n + n > b->cap) { b->cap = (b->n + n) * 2; b->p = realloc(b->p, b->cap); }
    memcpy(b->p + b->n, s, n); b->n += n;
}
static void rb_u32(rbuf *b, uint32_t v) { rb_put(b, &v, 4); }
static void rb_u64(rbuf *b, uint64_t v) { rb_put(b, &v, 8); }

static int is_fffd(const rcur *c, size_t i) { return i + 3 <= c->n && c->p[i] == 0xEF && c->p[i + 1] == 0xBF && c->p[i + 2] == 0xBD; }

/* Reads a fixed field of k bytes; out[j] = byte or -1 (damaged). -1 at end of file. */
static int rd_fixed(rcur *c, int k, int *out) {
    for (int j = 0; j < k; j++) {
        if (c->i >= c->n) return -1;
        if (is_fffd(c, c->i)) { out[j] = -1; c->i += 3; } else out[j] = c->p[c->i++];
    }
    return 0;
}
static int fixed_known(const int *b, int k, uint64_t *v) {
    *v = 0;
    for (int j = k - 1; j >= 0; j--) { if (b[j] < 0) return 0; *v = (*v << 8) | (uint64_t)b[j]; }
    return 1;
}
/* Does a plausible string (u64 length < 65536, then that many bytes) start at i? */
static int plausible_str_at(const rcur *c, size_t i, size_t *len) {
    if (i + 8 > c->n) return 0;
    uint64_t v = 0;
    for (int j = 7; j >= 0; j--) v = (v << 8) | c->p[i + j];
    if (v >= 65536 || i + 8 + v > c->n) return 0;
    *len = (size_t)v;
    return 1;
}
/* Reads a string whose length may be damaged; copies it to *s. */
static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c0 = s[i];
        size_t k = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 0;
        if (!k || i + k > n) return 0;
        for (size_t j = 1; j < k; j++) if ((s[i + j] & 0xC0) != 0x80) return 0;
        i += k;
    }
    return 1;
}
static int rd_str(rcur *c, const unsigned char **s, size_t *len, int last_before_key) {
    int b[8];
    size_t at = c->i;
    uint64_t v;
    if (rd_fixed(c, 8, b)) return -1;
    if (fixed_known(b, 8, &v)) {
        if (c->i + v > c->n) return -1;
        *s = c->p + c->i; *len = (size_t)v; c->i += (size_t)v;
        return 0;
    }
    (void)at;
    for (int j = 1; j < 8; j++) if (b[j] != 0) return -1;   /* only a damaged low byte */
    for (int cand = 0x80; cand <= 0xFF; cand++) {
        size_t nl;
        if (c->i + (size_t)cand > c->n) break;
        if (!valid_utf8(c->p + c->i, (size_t)cand)) continue;
        if (plausible_str_at(c, c->i + (size_t)cand, &nl) || (last_before_key && c->i + (size_t)cand == c->n)) {
            *s = c->p + c->i; *len = (size_t)cand; c->i += (size_t)cand;
            return 0;
        }
    }
    return -1;
}
/* Is a KV key ("tokenizer."/"general."/arch) next? */
static int key_next(const rcur *c) {
    size_t L;
    if (!plausible_str_at(c, c->i, &L) || L < 5) return 0;
    const unsigned char *k = c->p + c->i + 8;
    if (k[0] < 'a' || k[0] > 'z') return 0;
    for (size_t j = 0; j < L; j++) if (!(k[j] == '.' || k[j] == '_' || (k[j] >= 'a' && k[j] <= 'z') || (k[j] >= '0' && k[j] <= '9'))) return 0;
    return memchr(k, '.', L) != NULL && c->i + 8 + L + 4 <= c->n && c->p[c->i + 8 + L] < 13 && !c->p[c->i + 9 + L];
}

static int score_matches(float f, const int *b) {
    unsigned char x[4];
    memcpy(x, &f, 4);
    for (int j = 0; j < 4; j++) if (b[j] >= 0 && b[j] != x[j]) return 0;
    return 1;
}


/* One step of a lossy UTF-8 decode (Python's errors="replace": a maximal invalid subpart
 * becomes one U+FFFD) at b[i..n): returns the bytes consumed and sets *valid; returns 0
 * when the sequence runs into the end of b and could still be completed by later bytes. */
static size_t lossy_step(const unsigned char *b, size_t n, size_t i, int *valid) {
    unsigned c = b[i];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) { *valid = 1; return 1; }
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else { *valid = 0; return 1; }
    for (size_t j = 1; j <= need; j++) {
        if (i + j >= n) return 0;
        unsigned x = b[i + j];
        unsigned l = j == 1 ? lo : 0x80, h = j == 1 ? hi : 0xBF;
        if (x < l || x > h) { *valid = 0; return j; }
    }
    *valid = 1;
    return need + 1;
}

/* Decodes b[0..n) lossily while the result is final, comparing with the damaged bytes
 * at c->i + *dp. Returns the bytes of b consumed (the rest is pending), -1 on mismatch. */
static long lossy_match(const rcur *c, size_t *dp, const unsigned char *b, size_t n, int final) {
    size_t i = 0;
    while (i < n) {
        int valid;
        size_t k = lossy_step(b, n, i, &valid);
        if (!k) {
            if (!final) break;
            k = n - i; valid = 0;     /* truncated at the very end: one replacement */
        }
        const unsigned char *want = valid ? b + i : (const unsigned char *)"\xef\xbf\xbd";
        size_t wl = valid ? k : 3;
        if (c->i + *dp + wl > c->n || memcmp(c->p + c->i + *dp, want, wl)) return -1;
        *dp += wl;
        i += k;
    }
    return (long)i;
}

/* The f32 scores array of a llama vocabulary: each score is the first of -(id - 259), 0,
 * -1e9 whose bytes, run through the lossy decode with their neighbours, give exactly the
 * damaged bytes. */
static int recover_scores(rcur *c, uint64_t cnt, rbuf *val, char *why, size_t wn) {
    unsigned char pend[16];
    size_t np = 0, dp = 0;
    for (uint64_t k = 0; k < cnt; k++) {
        float cands[3] = { -(float)((int64_t)k - 259), 0.0f, -1e9f };
        int ok = 0;
        for (int j = 0; j < 3 && !ok; j++) {
            unsigned char b[20];
            size_t d2 = dp;
            memcpy(b, pend, np);
            memcpy(b + np, &cands[j], 4);
            long used = lossy_match(c, &d2, b, np + 4, 0);
            if (used < 0) continue;
            rb_put(val, &cands[j], 4);
            np = np + 4 - (size_t)used;
            memmove(pend, b + used, np);
            dp = d2;
            ok = 1;
        }
        if (!ok) { snprintf(why, wn, "score %llu not recoverable", (unsigned long long)k); return -1; }
    }
    if (np && lossy_match(c, &dp, pend, np, 1) < 0) { snprintf(why, wn, "scores: damaged tail"); return -1; }
    c->i += dp;
    return 0;
}

static int repair_vocab_gguf(const char *in, const char *out, char *why, size_t wn) {
    FILE *f = fopen(in, "rb");
    if (!f) { snprintf(why, wn, "%s: cannot open", in); return -1; }
    fseek(f, 0, SEEK_END);
    long L = ftell(f);
    rewind(f);
    unsigned char *d = malloc((size_t)L);
    if (fread(d, 1, (size_t)L, f) != (size_t)L) { fclose(f); free(d); snprintf(why, wn, "%s: short read", in); return -1; }
    fclose(f);
    rcur c = { d, (size_t)L, 0 };
    rbuf o = { 0 };
    int b[8], rc = -1;
    uint64_t nkv, ntok = 0, v;
    size_t kv_count_at;
    if (L < 24 || memcmp(d, "GGUF", 4)) { snprintf(why, wn, "%s: not GGUF", in); goto done; }
    rb_put(&o, d, 4); c.i = 4;
    if (rd_fixed(&c, 4, b) || !fixed_known(b, 4, &v)) goto bad;
    rb_u32(&o, (uint32_t)v);
    if (rd_fixed(&c, 8, b) || !fixed_known(b, 8, &v) || v != 0) goto bad;
    rb_u64(&o, 0);
    if (rd_fixed(&c, 8, b) || !fixed_known(b, 8, &nkv)) goto bad;
    kv_count_at = o.n; rb_u64(&o, 0);
    uint64_t kept = 0;
    for (uint64_t k = 0; k < nkv; k++) {
        const unsigned char *key; size_t kl;
        if (rd_str(&c, &key, &kl, 0)) goto bad;
        if (rd_fixed(&c, 4, b) || !fixed_known(b, 4, &v) || v > 12) goto bad;
        uint32_t type = (uint32_t)v;
        int keep = kl > 10 && !memcmp(key, "tokenizer.", 10);
        rbuf val = { 0 };
        int ok = 1;
        static const int fixsz[13] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
        if (type == 8) {
            const unsigned char *s; size_t sl;
            if (rd_str(&c, &s, &sl, k + 1 == nkv)) goto bad;
            rb_u64(&val, sl); rb_put(&val, s, sl);
        } else if (type != 9) {
            if (rd_fixed(&c, fixsz[type], b)) goto bad;
            if (!fixed_known(b, fixsz[type], &v)) ok = 0;
            else rb_put(&val, &v, (size_t)fixsz[type]);
        } else {
            if (rd_fixed(&c, 4, b) || !fixed_known(b, 4, &v) || v > 12 || v == 9) goto bad;
            uint32_t et = (uint32_t)v;
            uint64_t cnt;
            int known;
            if (rd_fixed(&c, 8, b)) goto bad;
            known = fixed_known(b, 8, &cnt);
            int is_scores = kl == 21 && !memcmp(key, "tokenizer.ggml.scores", 21);
            int is_types = kl == 25 && !memcmp(key, "tokenizer.ggml.token_type", 25);
            if (!known && is_types && ntok) { cnt = ntok; known = 1; }
            rb_u32(&val, et);
            size_t cnt_at = val.n;
            rb_u64(&val, 0);
            uint64_t got = 0;
            if (is_scores && et == 6 && known && ntok == cnt) {
                char sw[160];
                if (recover_scores(&c, cnt, &val, sw, sizeof sw)) { snprintf(why, wn, "%s: %s", in, sw); free(val.p); goto done; }
                got = cnt;
            }
            while (known ? got < cnt : (c.i < c.n && !key_next(&c))) {
                if (et == 8) {
                    const unsigned char *s; size_t sl;
                    if (rd_str(&c, &s, &sl, 0)) goto bad;
                    rb_u64(&val, sl); rb_put(&val, s, sl);
                } else {
                    if (rd_fixed(&c, fixsz[et], b)) goto bad;
                    if (is_scores && et == 6) {
                        float cands[3] = { 0.0f, -(float)((int64_t)got - 259), -1e9f }, pick = 0;
                        int n_ok = 0;
                        for (int j = 0; j < 3; j++) if (score_matches(cands[j], b)) { if (!n_ok) pick = cands[j]; n_ok++; }
                        if (!n_ok) { snprintf(why, wn, "%s: score %llu not recoverable", in, (unsigned long long)got); goto done; }
                        rb_put(&val, &pick, 4);
                    } else {
                        if (!fixed_known(b, fixsz[et], &v)) { snprintf(why, wn, "%s: damaged array element", in); goto done; }
                        rb_put(&val, &v, (size_t)fixsz[et]);
                    }
                }
                got++;
            }
            memcpy(val.p + cnt_at, &got, 8);
            if (kl == 21 && !memcmp(key, "tokenizer.ggml.tokens", 21)) ntok = got;
        }
        if (keep && ok) {
            rb_u64(&o, kl); rb_put(&o, key, kl); rb_u32(&o, type); rb_put(&o, val.p, val.n);
            kept++;
        }
        free(val.p);
    }
    if (c.i != c.n) goto bad;
    memcpy(o.p + kv_count_at, &kept, 8);
    f = fopen(out, "wb");
    if (!f || fwrite(o.p, 1, o.n, f) != o.n) { if (f) fclose(f); snprintf(why, wn, "%s: cannot write", out); goto done; }
    fclose(f);
    rc = 0;
    goto done;
bad:
    snprintf(why, wn, "%s: damaged beyond repair near byte %zu", in, c.i);
done:
    free(d); free(o.p);
    return rc;
}

/* ---------------------------------------------------------------- HF goldens */
static void check_family(const char *name) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s.json", mu_test_root(), name);
    mu_tokenizer *tk = load_or_fail(path);
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/cases.json", mu_test_root());
    json_error_t je;
    json_t *all = json_load_file(path, 0, &je);
    CHECK_MSG(all != NULL, "%s: %s", path, je.text);
    json_t *cases = json_object_get(all, name), *c;
    CHECK(json_array_size(cases) > 10);
    size_t i;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t tl = json_string_length(json_object_get(c, "text"));
        for (int special = 0; special < 2; special++) {
            json_t *want = json_object_get(c, special ? "ids_special" : "ids");
            int32_t *ids;
            size_t n;
            CHECK_MSG(mu_tok_encode(tk, text, tl, special, &ids, &n, err, sizeof err) == 0, "%s", err);
            char got[4096], exp[4096];
            ids_str(ids, n, got, sizeof got);
            size_t k;
            json_t *x;
            int32_t *w = malloc((json_array_size(want) + 1) * sizeof *w);
            json_array_foreach(want, k, x) w[k] = (int32_t)json_integer_value(x);
            ids_str(w, json_array_size(want), exp, sizeof exp);
            CHECK_MSG(!strcmp(got, exp), "%s case %zu \"%s\" special=%d:\n  want %s\n  got  %s", name, i, text, special, exp, got);
            free(w);
            if (!special) {
                char *dec;
                size_t dl;
                CHECK(mu_tok_decode(tk, ids, n, 1, &dec, &dl, err, sizeof err) == 0);
                const char *wd = json_string_value(json_object_get(c, "decoded"));
                CHECK_MSG(!strcmp(dec, wd), "%s case %zu: decode \"%s\" != HF \"%s\"", name, i, dec, wd);
                free(dec);
            }
            free(ids);
        }
    }
    json_decref(all);
    mu_tokenizer_free(tk);
}

/* The same vocabularies as vocab-only GGUF files (tokenizer.ggml.pre gpt-2, llama-bpe,
 * qwen2, smollm) give the same ids as HF (qwen2: llama.cpp applies no NFC, so only the
 * texts NFC leaves unchanged). */
static void check_family_gguf(const char *name, int skip_non_nfc) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s.gguf", mu_test_root(), name);
    mu_tokenizer *tk = load_or_fail(path);
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/cases.json", mu_test_root());
    json_error_t je;
    json_t *all = json_load_file(path, 0, &je), *c;
    CHECK(all);
    size_t i;
    int compared = 0;
    json_array_foreach(json_object_get(all, name), i, c) {
        if (skip_non_nfc && !json_is_true(json_object_get(c, "nfc_stable"))) continue;
        const char *text = json_string_value(json_object_get(c, "text"));
        for (int special = 0; special < 2; special++) {
            json_t *want = json_object_get(c, special ? "ids_special" : "ids"), *x;
            int32_t *ids;
            size_t n, k;
            CHECK(mu_tok_encode(tk, text, strlen(text), special, &ids, &n, err, sizeof err) == 0);
            int same = n == json_array_size(want);
            json_array_foreach(want, k, x) if (same && ids[k] != json_integer_value(x)) same = 0;
            CHECK_MSG(same, "%s.gguf case %zu \"%s\" special=%d differs from HF", name, i, text, special);
            free(ids);
        }
        compared++;
    }
    CHECK(compared > 15);
    json_decref(all);
    mu_tokenizer_free(tk);
}

TEST(tok_gguf_gpt2) { check_family_gguf("gpt2", 0); }
TEST(tok_gguf_llama_bpe) { check_family_gguf("llama3", 0); }
TEST(tok_gguf_qwen2) { check_family_gguf("qwen2", 1); }
TEST(tok_gguf_smollm) { check_family_gguf("smollm", 0); }

TEST(tok_hf_gpt2) { check_family("gpt2"); }
TEST(tok_hf_llama3) { check_family("llama3"); }
TEST(tok_hf_qwen2) { check_family("qwen2"); }
TEST(tok_hf_smollm) { check_family("smollm"); }
TEST(tok_hf_spm_byte_fallback) { check_family("spm"); }
TEST(tok_hf_gemma) { check_family("gemma"); }

/* Offsets: every token's byte range, decoded alone (byte-level), is the text it covers;
 * ranges are increasing and cover the text. */
TEST(tok_offsets_cover_text) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/llama3.json", mu_test_root());
    mu_tokenizer *tk = load_or_fail(path);
    const char *text = "Fact: Tiger Woods plays the sport of golf\nFact: Größe 12345 東京!";
    int32_t *ids;
    size_t *offs, n;
    CHECK(mu_tok_encode_offsets(tk, text, strlen(text), &ids, &offs, &n, err, sizeof err) == 0);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ_INT(offs[2 * i], at);
        CHECK(offs[2 * i + 1] > offs[2 * i]);
        char *dec;
        size_t dl;
        CHECK(mu_tok_decode(tk, &ids[i], 1, 0, &dec, &dl, err, sizeof err) == 0);
        if (dl == offs[2 * i + 1] - offs[2 * i]) CHECK(!memcmp(dec, text + offs[2 * i], dl));
        free(dec);
        at = offs[2 * i + 1];
    }
    CHECK_EQ_INT(at, strlen(text));
    free(ids); free(offs);
    mu_tokenizer_free(tk);
}

/* SentencePiece-style: the inserted leading ▁ maps to an empty range at 0 or is part of
 * the first word's token; "Tiger" is found where it is. */
TEST(tok_offsets_spm) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data");
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/models/stories260K", d);
    mu_tokenizer *tk = load_or_fail(path);
    const char *text = "Lily saw a big tiger.";
    int32_t *ids;
    size_t *offs, n;
    CHECK(mu_tok_encode_offsets(tk, text, strlen(text), &ids, &offs, &n, err, sizeof err) == 0);
    CHECK(n > 3);
    CHECK_EQ_INT(offs[2 * n - 1], strlen(text));
    for (size_t i = 1; i < n; i++) CHECK(offs[2 * i] >= offs[2 * i - 1]);
    free(ids); free(offs);
    mu_tokenizer_free(tk);
}

/* ---------------------------------------------------------------- llama.cpp vectors */
static void check_llama_vectors(const char *name) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data (../shared/data)");
    char gg[1024], inp[1100], outp[1100], fixed[1100], why[4096], err[512];
    snprintf(gg, sizeof gg, "%s/tokenizers/%s", d, name);
    snprintf(inp, sizeof inp, "%s.inp", gg);
    snprintf(outp, sizeof outp, "%s.out", gg);
    snprintf(fixed, sizeof fixed, "%s/repaired.gguf", mu_test_tmpdir());
    const char *use = gg;
    mu_tokenizer *tk = mu_tokenizer_load(gg, err, sizeof err);
    if (!tk) {   /* the damaged shared copy: rebuild its tokenizer keys */
        if (repair_vocab_gguf(gg, fixed, why, sizeof why)) SKIP("%s unusable (%s); repair failed: %s", name, err, why);
        use = fixed;
        tk = load_or_fail(use);
    }
    size_t ni, no;
    char *in = read_file(inp, &ni), *out = read_file(outp, &no);
    CHECK(in && out);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *p = in, *q = out;
    int k = 0, is_spm = !strcmp(mu_tok_model_kind(tk), "bpe-spm");
    for (char *e; (e = strstr(p, sep)); p = e + strlen(sep), k++) {
        *e = 0;
        char *nl = strchr(q, '\n');
        CHECK_MSG(nl != NULL, "%s: fewer output lines than inputs", outp);
        *nl = 0;
        int32_t *ids;
        size_t n;
        CHECK(mu_tok_encode(tk, p, strlen(p), 0, &ids, &n, err, sizeof err) == 0);
        char got[8192];
        ids_str(ids, n, got, sizeof got);
        const char *want = q;
        while (*want == ' ') want++;
        CHECK_MSG(!strcmp(got, want), "%s input %d \"%s\":\n  want %s\n  got  %s", name, k, p, want, got);
        char *dec;
        size_t dl;
        CHECK(mu_tok_decode(tk, ids, n, 1, &dec, &dl, err, sizeof err) == 0);
        /* SentencePiece: encoding prepends one space (the leading U+2581 in the ids above,
         * e.g. " " -> 259 "▁▁"); decoding drops exactly one leading space, so the round
         * trip gives back the input exactly, leading spaces included */
        CHECK_MSG(!strcmp(dec, p), "%s input %d: decode \"%s\" != \"%s\"%s", name, k, dec, p, is_spm ? " (spm)" : "");
        free(dec); free(ids);
        q = nl + 1;
    }
    CHECK(k >= 40);
    free(in); free(out);
    mu_tokenizer_free(tk);
}

TEST(tok_llamacpp_gpt2_vectors) { check_llama_vectors("ggml-vocab-gpt-2.gguf"); }
TEST(tok_llamacpp_llama_spm_vectors) { check_llama_vectors("ggml-vocab-llama-spm.gguf"); }

/* ---------------------------------------------------------------- stories260K */
TEST(tok_stories_greedy_decode_encode) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data");
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/models/stories260K", d);
    mu_tokenizer *tk = load_or_fail(path);
    CHECK_EQ_INT(mu_tok_vocab_size(tk), 512);
    CHECK_EQ_INT(mu_tok_bos(tk), 1);
    CHECK_EQ_INT(mu_tok_eos(tk), 2);
    CHECK(mu_tok_add_bos_default(tk));
    size_t n;
    snprintf(path, sizeof path, "%s/models/stories260K/greedy_200.json", d);
    json_error_t je;
    json_t *g = json_load_file(path, 0, &je), *x;
    CHECK(g);
    json_t *arr = json_object_get(g, "greedy_ids");
    size_t ng = json_array_size(arr), i;
    CHECK(ng == 201);
    int32_t *ids = malloc(ng * sizeof *ids);
    json_array_foreach(arr, i, x) ids[i] = (int32_t)json_integer_value(x);
    snprintf(path, sizeof path, "%s/models/stories260K/greedy_200.txt", d);
    char *txt = read_file(path, &n), *dec;
    size_t dl;
    CHECK(mu_tok_decode(tk, ids, ng, 1, &dec, &dl, err, sizeof err) == 0);
    CHECK_EQ_INT(dl, n);
    CHECK_MSG(!memcmp(dec, txt, n), "decode differs:\n%s\n---\n%s", dec, txt);
    /* encoding the text with BOS gives back exactly the generated ids */
    int32_t *enc;
    size_t ne;
    CHECK(mu_tok_encode(tk, txt, n, 1, &enc, &ne, err, sizeof err) == 0);
    CHECK_EQ_INT(ne, ng);
    for (size_t k = 0; k < ng; k++) CHECK_MSG(enc[k] == ids[k], "token %zu: %d != %d", k, enc[k], ids[k]);
    free(enc); free(dec); free(txt); free(ids);
    json_decref(g);
    mu_tokenizer_free(tk);
}

/* ---------------------------------------------------------------- errors */
TEST(tok_malformed_json_is_an_error) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", mu_test_tmpdir());
    FILE *f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, ", f);
    fclose(f);
    err[0] = 0;
    CHECK(mu_tokenizer_load(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, path) && !strchr(err, '\n'), "message: %s", err);
    f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", f);
    fclose(f);
    CHECK(mu_tokenizer_load(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "merge 0"), "message: %s", err);
    f = fopen(path, "w");
    fputs("{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", f);
    fclose(f);
    CHECK(mu_tokenizer_load(path, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "Unigram"), "message: %s", err);
}

/* A tokenizer.json of BPE vocabularies and merges that cannot be loaded as they say: each a
 * one-line error naming the file and what is wrong */
TEST(tok_json_vocab_and_merges_refused) {
#define BL "\"pre_tokenizer\": {\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}"
    static const struct { const char *json, *want; } cases[] = {
        {"{\"model\": 3}", "no \"model\" object"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": [], \"merges\": []}}", "model.vocab is not an object"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", "vocab entry \"a\" has a bad id"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"0\"}, \"merges\": []}}", "vocab entry \"a\" has a bad id"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
         "\"added_tokens\": [{\"id\": \"x\", \"content\": \"b\"}]}", "added_tokens[0] is malformed"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, "
         "\"added_tokens\": [{\"id\": 1}]}", "added_tokens[0] is malformed"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"added_tokens\": []}", "empty vocabulary"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 100000}, \"merges\": []}}",
         "token id 100000 is far beyond the 2 tokens given"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [], \"continuing_subword_prefix\": \"##\"}}",
         "continuing_subword_prefix/end_of_word_suffix is not supported"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [[\"a\"]]}}",
         "merge 0 is malformed"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a b\", 7]}}",
         "merge 1 is malformed"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"ab\"]}}",
         "merge 0 is not \"a b\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"a \u20ac\"]}, " BL "}",
         "merge 0 has a character outside the byte alphabet"},
    };
#undef BL
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", mu_test_tmpdir());
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        mu_test_spit(path, cases[i].json, strlen(cases[i].json));
        err[0] = 0;
        mu_tokenizer *tk = mu_tokenizer_load(path, err, sizeof err);
        CHECK_MSG(tk == NULL, "case %zu was accepted: %s", i, cases[i].json);
        CHECK_MSG(!strncmp(err, path, strlen(path)) && strstr(err, cases[i].want) && !strchr(err, '\n'),
                  "case %zu: message \"%s\" should name %s and \"%s\"", i, err, path, cases[i].want);
    }
}

TEST(tok_invalid_utf8_is_an_error) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/gpt2.json", mu_test_root());
    mu_tokenizer *tk = load_or_fail(path);
    int32_t *ids;
    size_t n;
    CHECK(mu_tok_encode(tk, "ab\xff" "cd", 5, 0, &ids, &n, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "invalid UTF-8 at byte 2"), "message: %s", err);
    CHECK(mu_tok_encode(tk, "\xed\xa0\x80", 3, 0, &ids, &n, err, sizeof err) == -1);   /* surrogate */
    int32_t bad = 1 << 30;
    char *t;
    size_t tl;
    CHECK(mu_tok_decode(tk, &bad, 1, 0, &t, &tl, err, sizeof err) == -1);
    mu_tokenizer_free(tk);
}

/* ---------------------------------------------------------------- components
 * One small tokenizer.json per component that the model-family goldens leave out (NFD,
 * NFKC, NFKD normalizers; Split behaviors and literal patterns; the Metaspace decoder;
 * Bert/Roberta post-processors; added tokens that strip whitespace), with HF's ids and
 * decodes: tests/gen/gen_tokenizer_components.py -> tests/golden/tokenizer/components/. */
static void component_path(const char *name, char *out, size_t cap) {
    snprintf(out, cap, "%s/tests/golden/tokenizer/components/%s", mu_test_root(), name);
}

static json_t *component_expected(void) {
    char path[1024];
    json_error_t je;
    component_path("expected.json", path, sizeof path);
    json_t *all = json_load_file(path, JSON_ALLOW_NUL, &je);   /* decodes of byte 0 */
    CHECK_MSG(all != NULL, "%s: line %d: %s", path, je.line, je.text);
    return all;
}

/* ids == the JSON array want, else a failure naming what and both id lists. */
static void check_ids_equal(const char *what, json_t *want, const int32_t *ids, size_t n) {
    size_t k;
    json_t *x;
    int same = n == json_array_size(want);
    json_array_foreach(want, k, x) if (same && ids[k] != json_integer_value(x)) same = 0;
    if (same) return;
    char got[4096], exp[4096];
    int32_t *w = malloc((json_array_size(want) + 1) * sizeof *w);
    json_array_foreach(want, k, x) w[k] = (int32_t)json_integer_value(x);
    ids_str(ids, n, got, sizeof got);
    ids_str(w, json_array_size(want), exp, sizeof exp);
    free(w);
    CHECK_MSG(0, "%s:\n  want %s\n  got  %s", what, exp, got);
}

/* The decode of ids == the JSON string want (which may hold NULs: byte tokens). */
static void check_decode_equal(const char *what, const mu_tokenizer *tk, const int32_t *ids, size_t n,
                               int skip_special, json_t *want) {
    char *dec, err[256], shown[512];
    size_t dl;
    CHECK_MSG(json_is_string(want), "%s: no expected decode", what);
    CHECK_MSG(mu_tok_decode(tk, ids, n, skip_special, &dec, &dl, err, sizeof err) == 0, "%s: %s", what, err);
    CHECK_MSG(dl == json_string_length(want) && !memcmp(dec, json_string_value(want), dl),
              "%s: decode \"%s\" (%zu bytes) != HF \"%s\"", what, mu_utf8_printable(shown, sizeof shown, dec), dl,
              json_string_value(want));
    free(dec);
}

/* Token byte ranges lie in the text and in order: an added token's stripped whitespace
 * never reaches back into the token before it. */
static void check_offsets_ordered(const char *what, const size_t *offs, size_t n, size_t len) {
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        CHECK_MSG(offs[2 * i] <= offs[2 * i + 1] && offs[2 * i + 1] <= len, "%s: token %zu has range [%zu, %zu)",
                  what, i, offs[2 * i], offs[2 * i + 1]);
        CHECK_MSG(offs[2 * i] >= at, "%s: token %zu starts at %zu, before the end %zu of the one before",
                  what, i, offs[2 * i], at);
        at = offs[2 * i + 1];
    }
}

/* The largest x of the JSON integer array xs with x <= at (want_le) or the smallest with
 * x >= at; -1 if none. */
static long nearest_start(json_t *xs, size_t at, int want_le) {
    long best = -1;
    size_t k;
    json_t *x;
    json_array_foreach(xs, k, x) {
        long v = (long)json_integer_value(x);
        if (want_le ? (v <= (long)at && v > best) : (v >= (long)at && (best < 0 || v < best))) best = v;
    }
    return best;
}

/* mu's token byte ranges against HF's (byte offsets of its character offsets). mu's are
 * per byte where HF's are per character: widened to whole characters, each must hold HF's
 * and, behind a Unicode normalizer, lie within the chunks around HF's (starts: where
 * python's unicodedata lets a normalization chunk start), else equal it. A token of text a
 * normalizer inserted (SentencePiece's ▁) has an empty range where HF's starts. */
static void check_offsets_hf(const char *what, const char *text, json_t *hf, json_t *starts,
                             const size_t *offs, size_t n) {
    size_t len = strlen(text);
    CHECK_MSG(json_array_size(hf) == 2 * n, "%s: %zu offsets, HF %zu", what, 2 * n, json_array_size(hf));
    for (size_t k = 0; k < n; k++) {
        size_t s = offs[2 * k], e = offs[2 * k + 1];
        size_t hs = (size_t)json_integer_value(json_array_get(hf, 2 * k));
        size_t he = (size_t)json_integer_value(json_array_get(hf, 2 * k + 1));
        if (s == e) { CHECK_MSG(s == hs, "%s: token %zu empty at %zu, HF [%zu, %zu)", what, k, s, hs, he); continue; }
        size_t sw = s, ew = e;
        while (sw > 0 && ((unsigned char)text[sw] & 0xC0) == 0x80) sw--;
        while (ew < len && ((unsigned char)text[ew] & 0xC0) == 0x80) ew++;
        int ok = sw <= hs && he <= ew;
        if (starts) ok = ok && nearest_start(starts, hs, 1) <= (long)sw && (long)ew <= nearest_start(starts, he, 0);
        else ok = ok && sw == hs && ew == he;
        CHECK_MSG(ok, "%s: token %zu has [%zu, %zu) (characters [%zu, %zu)), HF [%zu, %zu)", what, k, s, e, sw, ew, hs, he);
    }
}

/* Every case of one component file: ids without and with special tokens (and with
 * offsets, against HF's), decode skipping and keeping specials.
 * ordered: check that token ranges do not overlap (not behind a normalizer that changes
 * the text: its output is aligned per chunk, an ASCII byte and the non-ASCII characters
 * after it, so the tokens of "caf" and of a decomposed "é" share that chunk's range). */
static void check_component(const char *name, int ordered) {
    char path[1024], file[256], what[1200], err[512];
    snprintf(file, sizeof file, "%s.json", name);
    component_path(file, path, sizeof path);
    mu_tokenizer *tk = load_or_fail(path);
    json_t *all = component_expected(), *c;
    json_t *cases = json_object_get(json_object_get(all, "cases"), name);
    CHECK_MSG(json_array_size(cases) >= 10, "expected.json has no cases for %s", name);
    size_t i;
    json_array_foreach(cases, i, c) {
        const char *text = json_string_value(json_object_get(c, "text"));
        size_t tl = strlen(text), n, *offs;
        json_t *want_sp = json_object_get(c, "ids_special");
        int32_t *ids;
        snprintf(what, sizeof what, "%s case %zu \"%s\"", name, i, text);
        CHECK_MSG(mu_tok_encode(tk, text, tl, 0, &ids, &n, err, sizeof err) == 0, "%s: %s", what, err);
        check_ids_equal(what, json_object_get(c, "ids"), ids, n);
        check_decode_equal(what, tk, ids, n, 1, json_object_get(c, "decoded"));
        free(ids);
        CHECK_MSG(mu_tok_encode_offsets(tk, text, tl, &ids, &offs, &n, err, sizeof err) == 0, "%s: %s", what, err);
        snprintf(what, sizeof what, "%s case %zu \"%s\" (with offsets)", name, i, text);
        check_ids_equal(what, json_object_get(c, "ids"), ids, n);
        if (ordered) check_offsets_ordered(what, offs, n, tl);
        check_offsets_hf(what, text, json_object_get(c, "offsets"), json_object_get(c, "starts"), offs, n);
        free(ids); free(offs);
        snprintf(what, sizeof what, "%s case %zu \"%s\" special=1", name, i, text);
        CHECK_MSG(mu_tok_encode(tk, text, tl, 1, &ids, &n, err, sizeof err) == 0, "%s: %s", what, err);
        check_ids_equal(what, want_sp ? want_sp : json_object_get(c, "ids"), ids, n);
        if (want_sp) check_decode_equal(what, tk, ids, n, 0, json_object_get(c, "decoded_special"));
        free(ids);
    }
    json_decref(all);
    mu_tokenizer_free(tk);
}

TEST(tok_component_nfd) { check_component("nfd", 0); }
TEST(tok_component_nfkc) { check_component("nfkc", 0); }
TEST(tok_component_nfkd) { check_component("nfkd", 0); }
TEST(tok_component_split_removed) { check_component("split_removed", 1); }
TEST(tok_component_split_merged_prev) { check_component("split_merged_prev", 1); }
TEST(tok_component_split_merged_next_literal) { check_component("split_merged_next", 1); }
TEST(tok_component_split_literal_metachars) { check_component("split_literal", 1); }
TEST(tok_component_metaspace_decoder) {
    check_component("metaspace", 1);
    check_component("metaspace_never", 1);
    check_component("metaspace_first_nosplit", 1);
}
TEST(tok_component_spm_no_byte_decoder) { check_component("spm_no_byte_decoder", 1); }

/* Random id sequences (mostly byte tokens, special tokens and tokens holding U+2581)
 * decoded skipping and keeping special tokens, as HF decodes them: runs of byte tokens
 * that are or are not valid UTF-8, byte tokens without a ByteFallback decoder, the
 * Metaspace decoder's first token. */
TEST(tok_decode_random_ids_match_hf) {
    json_t *all = component_expected(), *rows, *row;
    json_t *dec = json_object_get(all, "decode");
    CHECK_MSG(json_object_size(dec) >= 14, "expected.json: %zu decode files", json_object_size(dec));
    const char *file;
    json_object_foreach(dec, file, rows) {
        char path[1024], what[1400];
        snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s", mu_test_root(), file);
        mu_tokenizer *tk = load_or_fail(path);
        size_t i, k;
        json_t *x;
        CHECK_MSG(json_array_size(rows) >= 50, "%s: %zu decode rows", file, json_array_size(rows));
        json_array_foreach(rows, i, row) {
            json_t *want_ids = json_array_get(row, 0);
            size_t n = json_array_size(want_ids);
            int32_t ids[16];
            CHECK(n >= 1 && n <= 16);
            json_array_foreach(want_ids, k, x) ids[k] = (int32_t)json_integer_value(x);
            snprintf(what, sizeof what, "%s decode row %zu (skip special)", file, i);
            check_decode_equal(what, tk, ids, n, 1, json_array_get(row, 1));
            snprintf(what, sizeof what, "%s decode row %zu (keep special)", file, i);
            check_decode_equal(what, tk, ids, n, 0, json_array_get(row, 2));
        }
        mu_tokenizer_free(tk);
    }
    json_decref(all);
}
TEST(tok_component_added_lstrip_rstrip) { check_component("added", 1); }

/* BertProcessing (nfd: [CLS] ... [SEP]) and RobertaProcessing (nfkc: <s> ... </s>) make
 * those the BOS/EOS that are added by default. */
TEST(tok_component_bert_roberta_specials) {
    static const char *const files[][3] = { { "nfd.json", "[CLS]", "[SEP]" }, { "nfkc.json", "<s>", "</s>" } };
    for (int f = 0; f < 2; f++) {
        char path[1024];
        component_path(files[f][0], path, sizeof path);
        mu_tokenizer *tk = load_or_fail(path);
        CHECK(mu_tok_bos(tk) >= 0 && mu_tok_bos(tk) == mu_tok_token_to_id(tk, files[f][1]));
        CHECK(mu_tok_eos(tk) >= 0 && mu_tok_eos(tk) == mu_tok_token_to_id(tk, files[f][2]));
        CHECK(mu_tok_add_bos_default(tk) && mu_tok_add_eos_default(tk));
        CHECK(mu_tok_is_special(tk, mu_tok_bos(tk)) && mu_tok_is_special(tk, mu_tok_eos(tk)));
        mu_tokenizer_free(tk);
    }
}

/* ---- the piece cache: it empties itself when half of its slots are used; 140000 distinct
 * words (about 150000 distinct pieces) fill it twice over. Encoding them must give HF's
 * ids chunk by chunk (count and FNV-1a hash), whatever was cached or dropped before. */
static const char *const CACHE_LETTERS[30] = {
    "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
    "t", "u", "v", "w", "x", "y", "z", "\xc3\xa9", "\xc3\xbc", "\xc3\x9f", "\xc3\xb8" };   /* é ü ß ø */

static uint64_t cache_lcg(uint64_t *s) {
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

/* Appends word i to out (as cache_words in the generator); returns bytes written. */
static size_t cache_word(uint64_t i, uint64_t seed, uint64_t *state, char *out) {
    uint64_t v = (i * 2654435761ULL + seed) % 729000000ULL;   /* 30^6 */
    size_t o = 0;
    for (int k = 0; k < 6; k++, v /= 30) o += (size_t)sprintf(out + o, "%s", CACHE_LETTERS[v % 30]);
    uint64_t extra = cache_lcg(state) % 4;
    for (uint64_t k = 0; k < extra; k++) o += (size_t)sprintf(out + o, "%s", CACHE_LETTERS[cache_lcg(state) % 30]);
    return o;
}

static uint64_t fnv1a_ids(const int32_t *ids, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) { h ^= ((uint32_t)ids[i] >> (8 * b)) & 0xFF; h *= 0x100000001b3ULL; }
    return h;
}

TEST(tok_component_cache_reset) {
    /* a reset that leaves slots occupied fills the table, and the next miss probes
     * forever: the alarm turns that into a failure long before the runner's watchdog */
    alarm(120);
    json_t *all = component_expected(), *cache = json_object_get(all, "cache"), *chunk;
    char path[1200], name[256], err[256];
    snprintf(name, sizeof name, "%s.json", json_string_value(json_object_get(cache, "tokenizer")));
    component_path(name, path, sizeof path);
    mu_tokenizer *tk = load_or_fail(path);
    uint64_t words = (uint64_t)json_integer_value(json_object_get(cache, "words"));
    uint64_t per = (uint64_t)json_integer_value(json_object_get(cache, "per_chunk"));
    uint64_t seed = (uint64_t)json_integer_value(json_object_get(cache, "seed")), state = seed, w = 0;
    json_t *chunks = json_object_get(cache, "chunks");
    CHECK(words >= 140000 && per > 0 && json_array_size(chunks) == (words + per - 1) / per);
    char *text = malloc(per * 32);
    size_t k;
    json_array_foreach(chunks, k, chunk) {
        size_t tl = 0, n;
        for (uint64_t j = 0; j < per && w < words; j++, w++) {
            if (j) text[tl++] = ' ';
            tl += cache_word(w, seed, &state, text + tl);
        }
        int32_t *ids;
        CHECK_MSG(mu_tok_encode(tk, text, tl, 0, &ids, &n, err, sizeof err) == 0, "chunk %zu: %s", k, err);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)fnv1a_ids(ids, n));
        CHECK_MSG(n == (size_t)json_integer_value(json_object_get(chunk, "n_ids")) &&
                  !strcmp(hex, json_string_value(json_object_get(chunk, "hash"))),
                  "chunk %zu (words %llu..): %zu ids hash %s, HF %lld ids hash %s", k,
                  (unsigned long long)(k * per), n, hex, json_integer_value(json_object_get(chunk, "n_ids")),
                  json_string_value(json_object_get(chunk, "hash")));
        free(ids);
    }
    alarm(0);
    free(text);
    json_decref(all);
    mu_tokenizer_free(tk);
}

/* ---- unsupported components: a load error "file: what", never a silent approximation */
static void expect_refused(const char *base, const char *key, const char *value_json, const char *want) {
    char path[1024], out[1200], err[512];
    json_error_t je;
    component_path(base, path, sizeof path);
    json_t *root = json_load_file(path, 0, &je), *v = json_loads(value_json, 0, &je);
    CHECK_MSG(root && v, "%s / %s: %s", base, value_json, je.text);
    json_object_set_new(root, key, v);
    snprintf(out, sizeof out, "%s/tokenizer.json", mu_test_tmpdir());
    CHECK(json_dump_file(root, out, 0) == 0);
    json_decref(root);
    err[0] = 0;
    mu_tokenizer *tk = mu_tokenizer_load(out, err, sizeof err);
    CHECK_MSG(tk == NULL, "%s = %s was accepted", key, value_json);
    CHECK_MSG(strstr(err, out) && strstr(err, want) && !strchr(err, '\n'),
              "%s = %s: message \"%s\" should name %s and \"%s\"", key, value_json, err, out, want);
}

TEST(tok_component_unsupported_refused) {
    expect_refused("nfd.json", "normalizer", "{\"type\": \"Lowercase\"}", "unsupported normalizer Lowercase");
    expect_refused("nfd.json", "normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFD\"}, "
                   "{\"type\": \"StripAccents\"}]}", "unsupported normalizer StripAccents");
    expect_refused("nfd.json", "normalizer", "{\"type\": \"Replace\", \"pattern\": {\"Regex\": \"\\\\s+\"}, "
                   "\"content\": \" \"}", "Replace normalizer");
    expect_refused("nfd.json", "normalizer", "{\"prepend\": \"x\"}", "normalizer without a type");
    expect_refused("nfd.json", "pre_tokenizer", "{\"type\": \"Whitespace\"}", "unsupported pre-tokenizer Whitespace");
    expect_refused("nfd.json", "pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                   "\"Punctuation\", \"behavior\": \"Isolated\"}]}", "unsupported pre-tokenizer Punctuation");
    expect_refused("split_removed.json", "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, "
                   "\"behavior\": \"Contiguous\", \"invert\": false}", "unsupported behavior Contiguous");
    expect_refused("split_removed.json", "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s\"}, "
                   "\"behavior\": \"Removed\", \"invert\": true}", "(inverted)");
    expect_refused("split_removed.json", "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"String\": \"\"}, "
                   "\"behavior\": \"Removed\"}", "Split pre-tokenizer without a pattern");
    expect_refused("split_removed.json", "pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}, "
                   "\"behavior\": \"Removed\"}", "pre-tokenizer regex");
    expect_refused("metaspace.json", "decoder", "{\"type\": \"WordPiece\", \"prefix\": \"##\"}", "unsupported decoder WordPiece");
    expect_refused("metaspace.json", "decoder", "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Metaspace\"}, "
                   "{\"type\": \"CTC\"}]}", "unsupported decoder CTC");
    expect_refused("metaspace.json", "decoder", "{\"type\": \"Replace\", \"pattern\": {\"String\": \"_\"}, "
                   "\"content\": \" \"}", "unsupported Replace decoder");
    expect_refused("metaspace.json", "decoder", "{\"type\": \"Strip\", \"content\": \"x\", \"start\": 1, \"stop\": 0}",
                   "unsupported Strip decoder");
    /* HF strips each token before a Fuse, the fused text after one; and stop strips the end */
    expect_refused("metaspace.json", "decoder", "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 0}",
                   "unsupported Strip decoder");
    expect_refused("metaspace.json", "decoder", "{\"type\": \"Sequence\", \"decoders\": [{\"type\": \"Fuse\"}, "
                   "{\"type\": \"Strip\", \"content\": \" \", \"start\": 1, \"stop\": 1}]}", "unsupported Strip decoder");
}

/* A post-processor naming a token id outside the vocabulary would put that id in every
 * encoding (and index past a model's embeddings): refused at load. */
TEST(tok_component_postproc_bad_id_refused) {
    expect_refused("nfd.json", "post_processor", "{\"type\": \"BertProcessing\", \"sep\": [\"[SEP]\", 3], "
                   "\"cls\": [\"[CLS]\", 100000]}", "post_processor");
    expect_refused("nfkc.json", "post_processor", "{\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", -1], "
                   "\"cls\": [\"<s>\", 0], \"trim_offsets\": false, \"add_prefix_space\": false}", "post_processor");
    expect_refused("nfkc.json", "post_processor", "{\"type\": \"RobertaProcessing\", \"sep\": [\"</s>\", \"1\"], "
                   "\"cls\": [\"<s>\", 0]}", "post_processor");
    expect_refused("nfd.json", "post_processor", "{\"type\": \"NoSuchProcessing\"}",
                   "unsupported post_processor NoSuchProcessing");
    /* 2^32 + 1 would wrap to id 1 as an int32 */
    expect_refused("nfd.json", "post_processor", "{\"type\": \"TemplateProcessing\", \"single\": "
                   "[{\"SpecialToken\": {\"id\": \"[X]\", \"type_id\": 0}}, {\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
                   "\"pair\": [], \"special_tokens\": {\"[X]\": {\"id\": \"[X]\", \"ids\": [4294967297], \"tokens\": [\"[X]\"]}}}",
                   "post_processor names unknown token");
}

/* ---------------------------------------------------------------- chat templates */
TEST(tok_chat_templates) {
    CHECK(mu_chat_detect("{% for m in messages %}<|im_start|>{{ m.role }}") == MU_CHAT_CHATML);
    CHECK(mu_chat_detect("{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' }}") == MU_CHAT_LLAMA3);
    CHECK(mu_chat_detect("{{ bos_token + '[INST] ' + content + ' [/INST]' }}") == MU_CHAT_LLAMA2);
    CHECK(mu_chat_detect("{{ '<start_of_turn>' + role + '\\n' }}") == MU_CHAT_GEMMA);
    CHECK(mu_chat_detect("plain") == MU_CHAT_NONE);
    char *s = mu_chat_format(MU_CHAT_CHATML, "Be brief.", "Hi?");
    CHECK_STR(s, "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n");
    free(s);
    s = mu_chat_format(MU_CHAT_LLAMA3, NULL, " Hi? ");
    CHECK_STR(s, "<|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
    s = mu_chat_format(MU_CHAT_LLAMA2, "Sys", "Hi?");
    CHECK_STR(s, "[INST] <<SYS>>\nSys\n<</SYS>>\n\nHi? [/INST]");
    free(s);
    s = mu_chat_format(MU_CHAT_GEMMA, NULL, "Hi?");
    CHECK_STR(s, "<start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n");
    free(s);
    CHECK(mu_chat_format(MU_CHAT_NONE, NULL, "x") == NULL);
}

/* A model directory (the test's tmpdir) of the Qwen2 golden tokenizer.json and the
 * tokenizer_config.json cfg; its path */
static const char *qwen2_dir_with_config(const char *cfg) {
    static char dir[1024];
    char path[1200];
    snprintf(dir, sizeof dir, "%s", mu_test_tmpdir());
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/qwen2.json", mu_test_root());
    size_t n;
    char *j = read_file(path, &n);
    CHECK(j);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    mu_test_spit(path, j, n);
    free(j);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    mu_test_spit(path, cfg, strlen(cfg));
    return dir;
}
#define CHATML_TEMPLATE "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}" \
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + " \
    "message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"

/* A ChatML tokenizer_config.json next to tokenizer.json: template detected, its default
 * system message found, "<|im_start|>" encoded as one special token. */
TEST(tok_chat_from_config) {
    char err[512];
    const char *dir = qwen2_dir_with_config("{\"eos_token\": \"<|im_end|>\", \"chat_template\": \"" CHATML_TEMPLATE "\"}");
    mu_tokenizer *tk = load_or_fail(dir);
    CHECK(mu_tok_chat_kind(tk) == MU_CHAT_CHATML);
    CHECK_STR(mu_tok_chat_default_system(tk), "You are a helpful assistant.");
    char *chat = mu_tok_chat(tk, NULL, "Hi");
    CHECK_STR(chat, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(chat);
    chat = mu_tok_chat(tk, "", "Hi");
    CHECK_STR(chat, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
    free(chat);
    CHECK_EQ_INT(mu_tok_eos(tk), mu_tok_token_to_id(tk, "<|im_end|>"));
    int32_t *ids;
    size_t ni;
    const char *t = "<|im_start|>user\nHi<|im_end|>";
    CHECK(mu_tok_encode(tk, t, strlen(t), 0, &ids, &ni, err, sizeof err) == 0);
    CHECK_EQ_INT(ids[0], mu_tok_token_to_id(tk, "<|im_start|>"));
    CHECK_EQ_INT(ids[ni - 1], mu_tok_token_to_id(tk, "<|im_end|>"));
    CHECK(mu_tok_is_special(tk, ids[0]));
    free(ids);
    mu_tokenizer_free(tk);
}

/* tokenizer_config.json's add_eos_token puts EOS after every encoding, and a list of named
 * chat templates gives the one named "default" (as transformers picks it) */
TEST(tok_config_add_eos_and_named_templates) {
    char err[512];
    const char *dir = qwen2_dir_with_config(
        "{\"eos_token\": \"<|im_end|>\", \"add_eos_token\": true, \"chat_template\": ["
        "{\"name\": \"tool_use\", \"template\": \"{{ '[INST] ' + content + ' [/INST]' }}\"}, "
        "{\"name\": \"default\", \"template\": \"" CHATML_TEMPLATE "\"}]}");
    mu_tokenizer *tk = load_or_fail(dir);
    CHECK(mu_tok_add_eos_default(tk));
    CHECK(mu_tok_chat_kind(tk) == MU_CHAT_CHATML);
    int32_t *ids;
    size_t n;
    CHECK_MSG(mu_tok_encode(tk, "Hi", 2, 1, &ids, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n >= 2 && ids[n - 1] == mu_tok_eos(tk) && mu_tok_eos(tk) == mu_tok_token_to_id(tk, "<|im_end|>"));
    free(ids);
    mu_tokenizer_free(tk);
    /* add_eos_token false: nothing appended */
    dir = qwen2_dir_with_config("{\"eos_token\": \"<|im_end|>\", \"add_eos_token\": false}");
    tk = load_or_fail(dir);
    CHECK(!mu_tok_add_eos_default(tk));
    CHECK_MSG(mu_tok_encode(tk, "Hi", 2, 1, &ids, &n, err, sizeof err) == 0, "%s", err);
    CHECK(n >= 1 && ids[n - 1] != mu_tok_eos(tk));
    free(ids);
    mu_tokenizer_free(tk);
}

/* A character cut short decodes to U+FFFD as HF does: one per maximal invalid subpart
 * for byte-level vocabularies (from_utf8_lossy), one per byte token for byte fallback. */
TEST(tok_decode_partial_character) {
    char path[1024], err[256], *dec;
    size_t n, dl;
    int32_t *ids;
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/gpt2.json", mu_test_root());
    mu_tokenizer *tk = load_or_fail(path);
    CHECK(mu_tok_encode(tk, "\xe2\x82\xac" "a", 4, 0, &ids, &n, err, sizeof err) == 0);
    CHECK_EQ_INT(n, 4);                     /* e2, 82, ac, a: the golden has no merge for € */
    int32_t cut[3] = { ids[0], ids[1], ids[3] };
    CHECK(mu_tok_decode(tk, cut, 3, 1, &dec, &dl, err, sizeof err) == 0);
    CHECK_STR(dec, "\xef\xbf\xbd" "a");     /* HF: '\ufffda' */
    free(dec); free(ids);
    mu_tokenizer_free(tk);
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/spm.json", mu_test_root());
    tk = load_or_fail(path);
    CHECK(mu_tok_encode(tk, "x\xe2\x82\xac", 4, 0, &ids, &n, err, sizeof err) == 0);
    CHECK(n >= 3);
    CHECK(mu_tok_decode(tk, ids, n - 1, 1, &dec, &dl, err, sizeof err) == 0);
    CHECK_STR(dec, "x\xef\xbf\xbd\xef\xbf\xbd"); /* HF: 'x\ufffd\ufffd' */
    free(dec); free(ids);
    mu_tokenizer_free(tk);
}

/* ---------------------------------------------------------------- round-trip property */
static uint64_t lcg_next(uint64_t *s) { *s = *s * 6364136223846793005ULL + 1442695040888963407ULL; return *s >> 33; }

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) { o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63)); return 3; }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63)); o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Random text over ASCII, whitespace, Latin-1, combining marks, Cyrillic, Arabic, CJK,
 * Hangul and emoji; decode(encode(text)) must give the text back exactly for lossless
 * tokenizers (byte-level BPE; SentencePiece with byte fallback and a Prepend normalizer),
 * and the offsets must tile the text. */
static void check_roundtrip(const char *path, int n_texts) {
    static const uint32_t ranges[][2] = { {0x20, 0x7E}, {0x20, 0x7E}, {0x20, 0x7E}, {0x09, 0x0D}, {0x20, 0x20},
        {0xA0, 0xFF}, {0x300, 0x36F}, {0x400, 0x4FF}, {0x600, 0x6FF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0x1F300, 0x1F64F} };
    char err[512];
    mu_tokenizer *tk = load_or_fail(path);
    uint64_t rng = 12345;
    for (int t = 0; t < n_texts; t++) {
        char text[400];
        size_t len = 0, nch = lcg_next(&rng) % 60;
        for (size_t c = 0; c < nch; c++) {
            const uint32_t *r = ranges[lcg_next(&rng) % (sizeof ranges / sizeof *ranges)];
            len += put_utf8(text + len, r[0] + (uint32_t)(lcg_next(&rng) % (r[1] - r[0] + 1)));
        }
        text[len] = 0;
        int32_t *ids;
        size_t *offs, n;
        char *dec;
        size_t dl;
        CHECK_MSG(mu_tok_encode_offsets(tk, text, len, &ids, &offs, &n, err, sizeof err) == 0, "%s", err);
        CHECK(mu_tok_decode(tk, ids, n, 0, &dec, &dl, err, sizeof err) == 0);
        CHECK_MSG(dl == len && !memcmp(dec, text, len), "%s: text %d \"%s\" decodes to \"%s\"", path, t, text, dec);
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            CHECK(offs[2 * i] <= offs[2 * i + 1] && offs[2 * i + 1] <= len);
            if (offs[2 * i + 1] > offs[2 * i]) { CHECK(offs[2 * i] >= at); at = offs[2 * i + 1]; }
        }
        CHECK(at == len);
        int32_t *ids2;
        size_t n2;
        CHECK(mu_tok_encode(tk, text, len, 0, &ids2, &n2, err, sizeof err) == 0);   /* same ids without offsets */
        CHECK(n2 == n && !memcmp(ids2, ids, n * sizeof *ids));
        free(ids2); free(dec); free(ids); free(offs);
    }
    mu_tokenizer_free(tk);
}

TEST(tok_roundtrip_random_bytelevel) {
    const char *fam[] = { "gpt2", "llama3", "smollm" };
    for (int i = 0; i < 3; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s.json", mu_test_root(), fam[i]);
        check_roundtrip(path, 300);
    }
}

TEST(tok_roundtrip_random_spm) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K", d);
    check_roundtrip(path, 300);
}
