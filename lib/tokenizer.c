#define _GNU_SOURCE
/* tokenizer.c — encoding and decoding (see tokenizer.h). Loading is in tok_load.c.
 *
 * encode(text):
 *   1. split the raw text at added/special tokens (longest match, lstrip/rstrip honoured);
 *   2. each remaining segment: normalizers (with a byte alignment back to the input when
 *      offsets are wanted), then the pre-tokenizer's splits into pieces;
 *   3. each piece: BPE — initial symbols (bytes for byte-level, characters for
 *      SentencePiece-style), then repeatedly merge the adjacent pair of lowest merge rank
 *      (or highest token score), leftmost first; unknown symbols become byte tokens
 *      (byte_fallback) or <unk>. Pieces' results are cached. */
#include "tok_internal.h"
#include "utf8.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <xxhash.h>

#define META_UTF8 "\xe2\x96\x81"   /* U+2581, SentencePiece's space */

void tok_err(char *err, size_t n, const char *fmt, ...) {
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- growable vectors */
typedef struct { int32_t *ids; size_t *offs; size_t n, cap; int track; } tokvec;

static int tokvec_push(tokvec *v, int32_t id, size_t s, size_t e) {
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        int32_t *ni = realloc(v->ids, nc * sizeof *ni);
        if (!ni) return -1;
        v->ids = ni;
        if (v->track) {
            size_t *no = realloc(v->offs, nc * 2 * sizeof *no);
            if (!no) return -1;
            v->offs = no;
        }
        v->cap = nc;
    }
    v->ids[v->n] = id;
    if (v->track) { v->offs[2 * v->n] = s; v->offs[2 * v->n + 1] = e; }
    v->n++;
    return 0;
}

/* ---------------------------------------------------------------- UTF-8 */
/* Length of the maximal invalid subpart at s (a lead byte and the continuation bytes that
 * were still acceptable before the sequence broke off); at least 1. */
static size_t utf8_invalid_subpart(const unsigned char *s, size_t n) {
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) { need = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { need = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 1;
    size_t j = 1;
    for (; j <= need && j < n; j++) {
        unsigned x = s[j];
        if (x < (j == 1 ? lo : 0x80) || x > (j == 1 ? hi : 0xBF)) break;
    }
    return j;
}


/* ---------------------------------------------------------------- GPT-2 byte alphabet */
static int bl_init_done;
static uint16_t bl_byte_to_cp[256];
static int16_t bl_cp_to_byte[512];

static void bl_init(void) {
    if (bl_init_done) return;
    for (int i = 0; i < 512; i++) bl_cp_to_byte[i] = -1;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        bl_byte_to_cp[b] = (uint16_t)(keep ? b : 256 + n++);
        bl_cp_to_byte[bl_byte_to_cp[b]] = (int16_t)b;
    }
    bl_init_done = 1;
}

/* Maps a byte-level spelling ("Ġthe") to raw bytes (" the"); -1 if a character is
 * outside the alphabet. out must hold len bytes. */
int tok_bytelevel_unmap(const char *s, size_t len, char *out, size_t *outlen) {
    bl_init();
    size_t o = 0, i = 0;
    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(len - i), &cp);
        if (k <= 0 || cp < 0 || cp >= 512 || bl_cp_to_byte[cp] < 0) return -1;
        out[o++] = (char)bl_cp_to_byte[cp];
        i += (size_t)k;
    }
    *outlen = o;
    return 0;
}

/* ---------------------------------------------------------------- maps */
static uint64_t hash_bytes(const void *s, size_t len) { return XXH3_64bits(s, len); }

int tok_strmap_build(mu_tokenizer *tk, char *err, size_t n) {
    size_t cap = 16;
    while (cap < tk->n_tok * 2 + 16) cap *= 2;
    tk->vocab.mask = (uint32_t)(cap - 1);
    tk->vocab.slot = malloc(cap * sizeof(int32_t));
    if (!tk->vocab.slot) { tok_err(err, n, "%s: out of memory", tk->path); return -1; }
    for (size_t i = 0; i < cap; i++) tk->vocab.slot[i] = -1;
    for (size_t id = 0; id < tk->n_tok; id++) {
        tok_entry *t = &tk->tok[id];
        if (!t->enc) continue;
        uint32_t h = (uint32_t)hash_bytes(t->enc, t->enc_len) & tk->vocab.mask;
        for (;;) {
            int32_t o = tk->vocab.slot[h];
            if (o < 0) { tk->vocab.slot[h] = (int32_t)id; break; }
            if (tk->tok[o].enc_len == t->enc_len && !memcmp(tk->tok[o].enc, t->enc, t->enc_len))
                break; /* duplicate spelling: the first (lowest) id wins */
            h = (h + 1) & tk->vocab.mask;
        }
    }
    return 0;
}

int32_t tok_strmap_get(const mu_tokenizer *tk, const char *s, size_t len) {
    if (!tk->vocab.slot) return -1;
    uint32_t h = (uint32_t)hash_bytes(s, len) & tk->vocab.mask;
    for (;;) {
        int32_t o = tk->vocab.slot[h];
        if (o < 0) return -1;
        if (tk->tok[o].enc_len == len && !memcmp(tk->tok[o].enc, s, len)) return o;
        h = (h + 1) & tk->vocab.mask;
    }
}

static uint32_t pair_hash(uint64_t k) {
    k ^= k >> 33; k *= 0xff51afd7ed558ccdULL; k ^= k >> 33; k *= 0xc4ceb9fe1a85ec53ULL; k ^= k >> 33;
    return (uint32_t)k;
}

int tok_pairmap_init(tok_pairmap *m, size_t n_expected) {
    size_t cap = 16;
    while (cap < n_expected * 2 + 16) cap *= 2;
    m->slot = malloc(cap * sizeof *m->slot);
    if (!m->slot) return -1;
    m->mask = (uint32_t)(cap - 1);
    m->n = 0;
    for (size_t i = 0; i < cap; i++) m->slot[i].key = UINT64_MAX;
    return 0;
}

void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t h = pair_hash(key) & m->mask;
    while (m->slot[h].key != UINT64_MAX) {
        if (m->slot[h].key == key) return;   /* first (best) rank kept */
        h = (h + 1) & m->mask;
    }
    m->slot[h].key = key; m->slot[h].rank = rank; m->slot[h].id = id;
    m->n++;
}

static const tok_pair *pairmap_get(const tok_pairmap *m, int32_t a, int32_t b) {
    if (!m->slot) return NULL;
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    uint32_t h = pair_hash(key) & m->mask;
    for (;;) {
        if (m->slot[h].key == UINT64_MAX) return NULL;
        if (m->slot[h].key == key) return &m->slot[h];
        h = (h + 1) & m->mask;
    }
}

/* ---------------------------------------------------------------- configuration steps */
void tok_norm_add(mu_tokenizer *tk, tok_norm_kind k, int when, const char *a, size_t alen,
                  const char *b, size_t blen) {
    tk->norm = realloc(tk->norm, (size_t)(tk->n_norm + 1) * sizeof *tk->norm);
    tok_norm *s = &tk->norm[tk->n_norm++];
    memset(s, 0, sizeof *s);
    s->kind = k; s->when = when;
    if (a) { s->a = malloc(alen + 1); memcpy(s->a, a, alen); s->a[alen] = 0; s->alen = alen; }
    if (b) { s->b = malloc(blen + 1); memcpy(s->b, b, blen); s->b[blen] = 0; s->blen = blen; }
}

int tok_split_add_regex(mu_tokenizer *tk, const char *pattern, tok_split_behavior b, char *err, size_t n) {
    int ec; PCRE2_SIZE eo;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &ec, &eo, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ec, msg, sizeof msg);
        tok_err(err, n, "%s: pre-tokenizer regex at offset %zu: %s", tk->path, (size_t)eo, (char *)msg);
        return -1;
    }
    tk->split = realloc(tk->split, (size_t)(tk->n_split + 1) * sizeof *tk->split);
    tok_split *s = &tk->split[tk->n_split++];
    memset(s, 0, sizeof *s);
    s->re = re;
    s->jit = pcre2_jit_compile(re, PCRE2_JIT_COMPLETE) == 0;
    s->behavior = b;
    return 0;
}

int tok_split_add_literal(mu_tokenizer *tk, const char *lit, size_t len, tok_split_behavior b) {
    if (!len) return -1;
    tk->split = realloc(tk->split, (size_t)(tk->n_split + 1) * sizeof *tk->split);
    tok_split *s = &tk->split[tk->n_split++];
    memset(s, 0, sizeof *s);
    s->lit = malloc(len + 1); memcpy(s->lit, lit, len); s->lit[len] = 0; s->litlen = len;
    s->behavior = b;
    return 0;
}

void tok_added_add(mu_tokenizer *tk, const char *s, size_t len, int32_t id, int lstrip, int rstrip, int special) {
    if (!len) return;
    for (int i = 0; i < tk->n_added; i++)
        if (tk->added[i].len == len && !memcmp(tk->added[i].content, s, len)) return;
    tk->added = realloc(tk->added, (size_t)(tk->n_added + 1) * sizeof *tk->added);
    tok_added *a = &tk->added[tk->n_added++];
    a->content = malloc(len + 1); memcpy(a->content, s, len); a->content[len] = 0;
    a->len = len; a->id = id; a->lstrip = lstrip; a->rstrip = rstrip; a->special = special;
}

static int added_cmp(const void *x, const void *y) {
    const tok_added *a = x, *b = y;
    unsigned fa = (unsigned char)a->content[0], fb = (unsigned char)b->content[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    return a->len < b->len ? 1 : a->len > b->len ? -1 : 0;
}

/* Decoding strings: byte-level vocab decodes to its raw bytes; SentencePiece-style to
 * the spelling with U+2581 as a space; byte tokens to their byte. */
int tok_finish(mu_tokenizer *tk, char *err, size_t n) {
    for (int b = 0; b < 256; b++) tk->byte_id[b] = -1;
    for (size_t id = 0; id < tk->n_tok; id++) {
        tok_entry *t = &tk->tok[id];
        if (!t->spell) continue;
        if (!t->dec) {
            if (t->byte >= 0) {
                t->dec = malloc(1); t->dec[0] = (char)t->byte; t->dec_len = 1;
            } else if (tk->kind == MODEL_SPM && t->type != TOK_CONTROL) {
                size_t L = strlen(t->spell);
                t->dec = malloc(L + 1);
                size_t o = 0;
                for (size_t i = 0; i < L;) {
                    if (i + 3 <= L && !memcmp(t->spell + i, "\xe2\x96\x81", 3)) { t->dec[o++] = ' '; i += 3; }
                    else t->dec[o++] = t->spell[i++];
                }
                t->dec[o] = 0; t->dec_len = (uint32_t)o;
            } else {
                t->dec = malloc(t->enc_len + 1); memcpy(t->dec, t->enc, t->enc_len);
                t->dec[t->enc_len] = 0; t->dec_len = t->enc_len;
            }
        }
        if (tk->kind == MODEL_BYTELEVEL && t->enc_len == 1 && t->type != TOK_CONTROL && tk->byte_id[(unsigned char)t->enc[0]] < 0)
            tk->byte_id[(unsigned char)t->enc[0]] = (int32_t)id;
        if (tk->kind == MODEL_SPM && t->byte >= 0 && tk->byte_id[t->byte] < 0)
            tk->byte_id[t->byte] = (int32_t)id;
    }
    if (tok_strmap_build(tk, err, n)) return -1;
    tk->spm_split = tk->kind == MODEL_SPM && tk->n_split == 0;
    for (size_t id = 0; id < tk->n_tok && tk->spm_split; id++) {
        const tok_entry *t = &tk->tok[id];
        if (!t->enc || t->type == TOK_CONTROL || t->type == TOK_USER) continue;
        for (uint32_t i = 1; i + 3 <= t->enc_len; i++)
            if (!memcmp(t->enc + i, META_UTF8, 3) && !(i >= 3 && !memcmp(t->enc + i - 3, META_UTF8, 3))) { tk->spm_split = 0; break; }
    }
    if (tk->n_added) qsort(tk->added, (size_t)tk->n_added, sizeof *tk->added, added_cmp);
    for (int b = 0, i = 0; b <= 256; b++) {
        while (i < tk->n_added && (unsigned char)tk->added[i].content[0] < b) i++;
        tk->added_start[b] = i;
    }
    return 0;
}

/* ---------------------------------------------------------------- normalization */

/* Normalized text with, when tracked, the input byte range each byte came from. */
typedef struct { char *s; size_t len, cap; size_t *os, *oe; int track; } nbuf;

static int nbuf_reserve(nbuf *b, size_t need) {
    if (need <= b->cap) return 0;
    size_t nc = b->cap ? b->cap : 64;
    while (nc < need) nc *= 2;
    char *ns = realloc(b->s, nc + 1);
    if (!ns) return -1;
    b->s = ns;
    if (b->track) {
        size_t *a = realloc(b->os, nc * sizeof *a), *c;
        if (!a) return -1;
        b->os = a;
        c = realloc(b->oe, nc * sizeof *c);
        if (!c) return -1;
        b->oe = c;
    }
    b->cap = nc;
    return 0;
}

static int nbuf_put(nbuf *b, const char *s, size_t len, size_t os, size_t oe) {
    if (!len) return 0;
    if (nbuf_reserve(b, b->len + len)) return -1;
    memcpy(b->s + b->len, s, len);
    if (b->track)
        for (size_t i = 0; i < len; i++) { b->os[b->len + i] = os; b->oe[b->len + i] = oe; }
    b->len += len;
    return 0;
}

/* Appends src[i..i+len) keeping its own alignment. */
static int nbuf_put_aligned(nbuf *b, const nbuf *src, size_t i, size_t len) {
    if (!len) return 0;
    if (nbuf_reserve(b, b->len + len)) return -1;
    memcpy(b->s + b->len, src->s + i, len);
    if (b->track) {
        memcpy(b->os + b->len, src->os + i, len * sizeof(size_t));
        memcpy(b->oe + b->len, src->oe + i, len * sizeof(size_t));
    }
    b->len += len;
    return 0;
}

static void nbuf_swap(nbuf *a, nbuf *b) { nbuf t = *a; *a = *b; *b = t; }

static int norm_prepend(const tok_norm *st, nbuf *in, nbuf *out, int first) {
    if (!in->len) return 1;
    if (st->when >= 1 && in->len >= st->alen && !memcmp(in->s, st->a, st->alen)) return 1;
    if (st->when == 2 && !first) return 1;
    out->len = 0;
    size_t at = in->track ? in->os[0] : 0;
    if (nbuf_put(out, st->a, st->alen, at, at) || nbuf_put_aligned(out, in, 0, in->len)) return -1;
    return 0;
}

static int norm_replace(const tok_norm *st, nbuf *in, nbuf *out) {
    if (!st->alen || !memmem(in->s, in->len, st->a, st->alen)) return 1;
    out->len = 0;
    size_t i = 0;
    while (i < in->len) {
        const char *hit = memmem(in->s + i, in->len - i, st->a, st->alen);
        size_t j = hit ? (size_t)(hit - in->s) : in->len;
        if (nbuf_put_aligned(out, in, i, j - i)) return -1;
        if (!hit) break;
        size_t os = in->track ? in->os[j] : 0, oe = in->track ? in->oe[j + st->alen - 1] : 0;
        if (nbuf_put(out, st->b, st->blen, os, oe)) return -1;
        i = j + st->alen;
    }
    return 0;
}

static utf8proc_option_t norm_options(tok_norm_kind k) {
    switch (k) {
    case NORM_NFC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE;
    case NORM_NFD: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE;
    case NORM_NFKC: return UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT;
    default: return UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT;
    }
}

/* The normal form of s[0, n) (utf8proc_map; *out malloc'd), or -1. */
static utf8proc_ssize_t normal_form(const char *s, size_t n, utf8proc_option_t opt, utf8proc_uint8_t **out) {
    *out = NULL;
    utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, out, opt);
    if (r < 0) { free(*out); *out = NULL; }
    return r;
}

/* May a normalization chunk end before the character s[j, k), the chunk being s[i, j)? Only
 * where nothing after could reach back across: the character decomposes to a starter
 * first (canonical combining class 0: reordering never moves marks across it, and it
 * blocks later marks from composing with what precedes it), and it does not compose with
 * the chunk (the chunk and the character normalize as they do apart). */
static int chunk_may_end(const char *s, size_t i, size_t j, size_t k, utf8proc_option_t opt) {
    utf8proc_int32_t cp, first[8];
    utf8proc_int32_t bound = 0;
    if (utf8proc_iterate((const utf8proc_uint8_t *)s + j, (utf8proc_ssize_t)(k - j), &cp) < 0) return 0;
    utf8proc_option_t dopt = (utf8proc_option_t)(opt & (UTF8PROC_COMPAT | UTF8PROC_STABLE));
    utf8proc_ssize_t nd = utf8proc_decompose_char(cp, first, 8, (utf8proc_option_t)(dopt | UTF8PROC_DECOMPOSE), &bound);
    if (nd < 1 || utf8proc_get_property(nd <= 8 ? first[0] : cp)->combining_class != 0) return 0;
    utf8proc_uint8_t *a, *b, *ab;
    utf8proc_ssize_t na = normal_form(s + i, j - i, opt, &a), nb = normal_form(s + j, k - j, opt, &b);
    utf8proc_ssize_t nab = normal_form(s + i, k - i, opt, &ab);
    int apart = na >= 0 && nb >= 0 && nab == na + nb && !memcmp(ab, a, (size_t)na) && !memcmp(ab + na, b, (size_t)nb);
    free(a); free(b); free(ab);
    return apart;
}

/* Unicode normalization. Without tracking: the whole segment at once. With tracking:
 * chunk by chunk, a chunk ending before each ASCII character and before each character
 * that nothing before it interacts with (chunk_may_end), so each output byte maps to the
 * input range of its chunk: per character where the form changes characters one by one
 * (NFD of "é" maps both of "e\u0301" to the "é"), over the composed run where it joins
 * them (NFC of "e\u0301"). */
static int norm_unicode(const tok_norm *st, nbuf *in, nbuf *out) {
    utf8proc_option_t opt = norm_options(st->kind);
    size_t i = 0;
    int ascii = 1;
    for (size_t k = 0; k < in->len; k++) if ((unsigned char)in->s[k] >= 0x80) { ascii = 0; break; }
    if (ascii) return 1;
    out->len = 0;
    while (i < in->len) {
        size_t j = i + 1;
        if (!in->track) j = in->len;
        else {
            size_t q = mu_utf8_seq_len((const unsigned char *)in->s + i, in->len - i);
            j = i + (q ? q : 1);
            while (j < in->len && (unsigned char)in->s[j] >= 0x80) {
                size_t q2 = mu_utf8_seq_len((const unsigned char *)in->s + j, in->len - j), k = j + (q2 ? q2 : 1);
                if (chunk_may_end(in->s, i, j, k, opt)) break;
                j = k;
            }
        }
        if (j - i == 1 && (unsigned char)in->s[i] < 0x80) {
            if (nbuf_put_aligned(out, in, i, 1)) return -1;
            i = j; continue;
        }
        utf8proc_uint8_t *res = NULL;
        utf8proc_ssize_t r = normal_form(in->s + i, j - i, opt, &res);
        if (r < 0) return -1;
        if ((size_t)r == j - i && !memcmp(res, in->s + i, j - i)) {
            if (nbuf_put_aligned(out, in, i, j - i)) { free(res); return -1; }
        } else if (nbuf_put(out, (char *)res, (size_t)r, in->track ? in->os[i] : 0, in->track ? in->oe[j - 1] : 0)) {
            free(res); return -1;
        }
        free(res);
        i = j;
    }
    return 0;
}

/* Runs the rewriting steps; result in *b. first: this segment starts the input. */
static int normalize(const mu_tokenizer *tk, nbuf *b, nbuf *tmp, int first) {
    for (int k = 0; k < tk->n_norm; k++) {
        const tok_norm *st = &tk->norm[k];
        int r;
        tmp->track = b->track;
        switch (st->kind) {
        case NORM_PREPEND: r = norm_prepend(st, b, tmp, first); break;
        case NORM_REPLACE: r = norm_replace(st, b, tmp); break;
        default: r = norm_unicode(st, b, tmp); break;
        }
        if (r < 0) return -1;
        if (r == 0) nbuf_swap(b, tmp);
    }
    return 0;
}

/* ---------------------------------------------------------------- pre-tokenization */
typedef struct { size_t *p; size_t n, cap; } spanvec;  /* pairs start,end */

static int spanvec_push(spanvec *v, size_t s, size_t e) {
    if (s >= e) return 0;
    if (v->n == v->cap) {
        size_t nc = v->cap ? v->cap * 2 : 64;
        size_t *np = realloc(v->p, nc * 2 * sizeof *np);
        if (!np) return -1;
        v->p = np; v->cap = nc;
    }
    v->p[2 * v->n] = s; v->p[2 * v->n + 1] = e;
    v->n++;
    return 0;
}

/* Finds the next match of the split step in s[from..end): 1 found ([*ms,*me)), 0 none. */
static int split_find(const tok_split *sp, pcre2_match_data *md, const char *s, size_t base,
                      size_t end, size_t from, size_t *ms, size_t *me) {
    if (!sp->re) {
        const char *h = memmem(s + from, end - from, sp->lit, sp->litlen);
        if (!h) return 0;
        *ms = (size_t)(h - s); *me = *ms + sp->litlen;
        return 1;
    }
    int rc = sp->jit ? pcre2_jit_match(sp->re, (PCRE2_SPTR)(s + base), end - base, from - base, 0, md, NULL)
                     : pcre2_match(sp->re, (PCRE2_SPTR)(s + base), end - base, from - base, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc < 0) return 0;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = base + ov[0]; *me = base + ov[1];
    return 1;
}

/* Splits each piece of in into out according to one step. */
static int split_step(const tok_split *sp, pcre2_match_data *md, const char *s, const spanvec *in, spanvec *out) {
    out->n = 0;
    for (size_t k = 0; k < in->n; k++) {
        size_t ps = in->p[2 * k], pe = in->p[2 * k + 1], at = ps, last = ps, ms, me;
        while (at < pe && split_find(sp, md, s, ps, pe, at, &ms, &me)) {
            if (me == ms) {                      /* empty match: step one character */
                size_t step = mu_utf8_seq_len((const unsigned char *)s + ms, pe - ms);
                at = ms + (step ? step : 1);
                continue;
            }
            switch (sp->behavior) {
            case SPLIT_ISOLATED:
                if (spanvec_push(out, last, ms) || spanvec_push(out, ms, me)) return -1;
                last = me; break;
            case SPLIT_REMOVED:
                if (spanvec_push(out, last, ms)) return -1;
                last = me; break;
            case SPLIT_MERGED_PREV:
                if (spanvec_push(out, last, me)) return -1;
                last = me; break;
            case SPLIT_MERGED_NEXT:
                if (spanvec_push(out, last, ms)) return -1;
                last = ms; break;
            }
            at = me;
        }
        if (spanvec_push(out, last, pe)) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- BPE on one piece */
typedef struct { int32_t id; int32_t prev, next; uint32_t start, len; } bsym;
typedef struct { double rank; int32_t pos, rpos; uint32_t llen, rlen; int32_t id; } bcand;

typedef struct {
    bsym *sym; size_t sym_cap;
    bcand *heap; size_t heap_n, heap_cap;
} bpe_work;

static int cand_less(const bcand *a, const bcand *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static int heap_push(bpe_work *w, bcand c) {
    if (w->heap_n == w->heap_cap) {
        size_t nc = w->heap_cap ? w->heap_cap * 2 : 64;
        bcand *nh = realloc(w->heap, nc * sizeof *nh);
        if (!nh) return -1;
        w->heap = nh; w->heap_cap = nc;
    }
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p])) break;
        w->heap[i] = w->heap[p]; i = p;
    }
    w->heap[i] = c;
    return 0;
}

static bcand heap_pop(bpe_work *w) {
    bcand top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const bcand *best = &last;
        if (l < n && cand_less(&w->heap[l], best)) { m = l; best = &w->heap[l]; }
        if (r < n && cand_less(&w->heap[r], best)) { m = r; }
        if (m == i) break;
        w->heap[i] = w->heap[m]; i = m;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* Proposes merging symbols l and r (adjacent) if the model has that merge. */
static int try_pair(const mu_tokenizer *tk, bpe_work *w, const char *piece, int32_t l, int32_t r) {
    if (l < 0 || r < 0) return 0;
    const bsym *L = &w->sym[l], *R = &w->sym[r];
    bcand c = { 0, l, r, L->len, R->len, -1 };
    if (!tk->score_merges) {
        if (L->id < 0 || R->id < 0) return 0;
        const tok_pair *p = pairmap_get(&tk->merges, L->id, R->id);
        if (!p) return 0;
        c.rank = p->rank; c.id = p->id;
    } else {
        int32_t id = tok_strmap_get(tk, piece + L->start, L->len + R->len);
        if (id < 0) return 0;
        c.rank = -(double)tk->tok[id].score; c.id = id;
    }
    return heap_push(w, c);
}

/* Initial symbols: bytes (byte-level) or characters (SentencePiece-style), each with its
 * token id or -1. Returns the number of symbols, -1 on allocation failure. */
static long init_symbols(const mu_tokenizer *tk, bpe_work *w, const char *piece, size_t len) {
    size_t ns = 0;
    if (w->sym_cap < len) {
        bsym *nsym = realloc(w->sym, len * sizeof *nsym);
        if (!nsym) return -1;
        w->sym = nsym; w->sym_cap = len;
    }
    for (size_t i = 0; i < len;) {
        size_t k = 1;
        int32_t id;
        if (tk->kind == MODEL_BYTELEVEL) id = tk->byte_id[(unsigned char)piece[i]];
        else {
            k = mu_utf8_seq_len((const unsigned char *)piece + i, len - i);
            if (!k) k = 1;
            id = tok_strmap_get(tk, piece + i, k);
        }
        w->sym[ns] = (bsym){ id, (int32_t)ns - 1, (int32_t)ns + 1, (uint32_t)i, (uint32_t)k };
        ns++; i += k;
    }
    if (ns) w->sym[ns - 1].next = -1;
    return (long)ns;
}

/* Merges adjacent symbols, best rank (or score) first, leftmost first on ties. */
static int merge_symbols(const mu_tokenizer *tk, bpe_work *w, const char *piece, size_t ns) {
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        if (try_pair(tk, w, piece, (int32_t)i, (int32_t)i + 1)) return -1;
    while (w->heap_n) {
        bcand c = heap_pop(w);
        bsym *L = &w->sym[c.pos];
        if (L->len != c.llen || L->next != c.rpos) continue;   /* stale candidate */
        bsym *R = &w->sym[c.rpos];
        if (R->len != c.rlen) continue;
        L->id = c.id; L->len += R->len; L->next = R->next;
        R->len = 0;
        if (R->next >= 0) w->sym[R->next].prev = c.pos;
        if (try_pair(tk, w, piece, L->prev, c.pos) || try_pair(tk, w, piece, c.pos, L->next)) return -1;
    }
    return 0;
}

typedef struct { int32_t *ids; uint32_t *lens; size_t n, cap; uint32_t pending; } piece_out;

static int piece_push(piece_out *o, int32_t id, uint32_t len) {
    if (o->n == o->cap) {
        size_t nc = o->cap ? o->cap * 2 : 64;
        int32_t *ni = realloc(o->ids, nc * sizeof *ni);
        if (ni) o->ids = ni;
        uint32_t *nl = realloc(o->lens, nc * sizeof *nl);
        if (nl) o->lens = nl;
        if (!ni || !nl) return -1;
        o->cap = nc;
    }
    o->ids[o->n] = id;
    o->lens[o->n] = len + o->pending;   /* bytes dropped before it count as its own */
    o->pending = 0;
    o->n++;
    return 0;
}

/* A symbol with no token: its bytes as byte tokens (byte_fallback), else <unk> (fused
 * with a preceding <unk> when fuse_unk), else dropped like HF does without an <unk>. */
static int emit_unknown(const mu_tokenizer *tk, piece_out *o, const char *piece, const bsym *S) {
    int fallback = tk->byte_fallback;
    for (uint32_t b = 0; fallback && b < S->len; b++)
        if (tk->byte_id[(unsigned char)piece[S->start + b]] < 0) fallback = 0;
    if (fallback) {
        for (uint32_t b = 0; b < S->len; b++)
            if (piece_push(o, tk->byte_id[(unsigned char)piece[S->start + b]], 1)) return -1;
        return 0;
    }
    if (tk->unk < 0) {
        if (o->n) o->lens[o->n - 1] += S->len; else o->pending += S->len;
        return 0;
    }
    if (tk->fuse_unk && o->n && o->ids[o->n - 1] == tk->unk) { o->lens[o->n - 1] += S->len; return 0; }
    return piece_push(o, tk->unk, S->len);
}

/* Appends the ids (and byte lengths within the piece) of the BPE of piece[0..len). */
static int bpe_piece(const mu_tokenizer *tk, bpe_work *w, const char *piece, size_t len, piece_out *o) {
    long ns = init_symbols(tk, w, piece, len);
    if (ns <= 0) return (int)ns;
    if (merge_symbols(tk, w, piece, (size_t)ns)) return -1;
    for (int32_t i = 0; i >= 0; i = w->sym[i].next) {
        const bsym *S = &w->sym[i];
        if (S->id >= 0 ? piece_push(o, S->id, S->len) : emit_unknown(tk, o, piece, S)) return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- piece cache */
typedef struct { uint64_t h; uint32_t koff, klen, voff, vn; } cache_ent;
struct tok_cache {
    cache_ent *ent; uint32_t mask, n;
    char *keys; size_t klen, kcap;
    int32_t *ids; uint32_t *lens; size_t vlen, vcap;
};
#define CACHE_SLOTS (1u << 17)

static struct tok_cache *cache_get(mu_tokenizer *tk) {
    if (!tk->cache) {
        struct tok_cache *c = calloc(1, sizeof *c);
        if (!c) return NULL;
        c->ent = calloc(CACHE_SLOTS, sizeof *c->ent);
        if (!c->ent) { free(c); return NULL; }
        c->mask = CACHE_SLOTS - 1;
        tk->cache = c;
    }
    return tk->cache;
}

static void cache_reset(struct tok_cache *c) {
    memset(c->ent, 0, (size_t)(c->mask + 1) * sizeof *c->ent);
    c->n = 0; c->klen = 0; c->vlen = 0;
}

static cache_ent *cache_find(struct tok_cache *c, const char *s, size_t len, uint64_t h) {
    uint32_t i = (uint32_t)h & c->mask;
    for (;;) {
        cache_ent *e = &c->ent[i];
        if (!e->klen) return e;
        if (e->h == h && e->klen == len && !memcmp(c->keys + e->koff, s, len)) return e;
        i = (i + 1) & c->mask;
    }
}

static void cache_store(struct tok_cache *c, const char *s, size_t len, uint64_t h,
                        const int32_t *ids, const uint32_t *lens, size_t n) {
    if (len > 256 || len == 0) return;
    if (c->n >= (c->mask + 1) / 2) cache_reset(c);
    if (c->klen + len > c->kcap) {
        size_t nc = c->kcap ? c->kcap * 2 : 1 << 20;
        char *nk = realloc(c->keys, nc);
        if (!nk) return;
        c->keys = nk; c->kcap = nc;
    }
    if (c->vlen + n > c->vcap) {
        size_t nc = c->vcap ? c->vcap * 2 : 1 << 18;
        int32_t *ni = realloc(c->ids, nc * sizeof *ni);
        if (ni) c->ids = ni;
        uint32_t *nl = realloc(c->lens, nc * sizeof *nl);
        if (nl) c->lens = nl;
        if (!ni || !nl) return;
        c->vcap = nc;
    }
    cache_ent *e = cache_find(c, s, len, h);
    if (e->klen) return;
    memcpy(c->keys + c->klen, s, len);
    memcpy(c->ids + c->vlen, ids, n * sizeof *ids);
    memcpy(c->lens + c->vlen, lens, n * sizeof *lens);
    *e = (cache_ent){ h, (uint32_t)c->klen, (uint32_t)len, (uint32_t)c->vlen, (uint32_t)n };
    c->klen += len; c->vlen += n; c->n++;
}

/* ---------------------------------------------------------------- encoding */
typedef struct {
    nbuf nb, tmp;
    spanvec sv[2];
    bpe_work bw;
    piece_out po;
    pcre2_match_data *md;
} enc_work;

static void enc_work_free(enc_work *w) {
    free(w->nb.s); free(w->nb.os); free(w->nb.oe);
    free(w->tmp.s); free(w->tmp.os); free(w->tmp.oe);
    free(w->sv[0].p); free(w->sv[1].p);
    free(w->bw.sym); free(w->bw.heap);
    free(w->po.ids); free(w->po.lens);
    if (w->md) pcre2_match_data_free(w->md);
}

/* Encodes one piece of the normalized text (bytes [ps, pe) of w->nb) into v. */
static int encode_piece(mu_tokenizer *tk, enc_work *w, size_t ps, size_t pe, tokvec *v) {
    const char *piece = w->nb.s + ps;
    size_t len = pe - ps, n = 0;
    if (tk->ignore_merges) {
        int32_t id = tok_strmap_get(tk, piece, len);
        if (id >= 0)
            return tokvec_push(v, id, v->track ? w->nb.os[ps] : 0, v->track ? w->nb.oe[pe - 1] : 0);
    }
    struct tok_cache *c = cache_get(tk);
    uint64_t h = 0;
    const int32_t *ids; const uint32_t *lens;
    cache_ent *e = NULL;
    if (c && len <= 256) {
        h = hash_bytes(piece, len) | 1;
        e = cache_find(c, piece, len, h);
    }
    if (e && e->klen) {
        ids = c->ids + e->voff; lens = c->lens + e->voff; n = e->vn;
    } else {
        w->po.n = 0; w->po.pending = 0;
        if (bpe_piece(tk, &w->bw, piece, len, &w->po)) return -1;
        ids = w->po.ids; lens = w->po.lens; n = w->po.n;
        if (c && n) cache_store(c, piece, len, h, ids, lens, n);
    }
    size_t at = ps;
    for (size_t i = 0; i < n; i++) {
        size_t s = at, e2 = at + lens[i];
        if (tokvec_push(v, ids[i], v->track ? w->nb.os[s] : 0, v->track ? w->nb.oe[e2 - 1] : 0)) return -1;
        at = e2;
    }
    return 0;
}

/* Encodes one segment text[s..e) (no added tokens inside). */
static int encode_segment(mu_tokenizer *tk, enc_work *w, const char *text, size_t s, size_t e, int first, tokvec *v) {
    w->nb.len = 0; w->nb.track = v->track;
    if (nbuf_reserve(&w->nb, e - s)) return -1;
    memcpy(w->nb.s, text + s, e - s);
    if (v->track) for (size_t i = 0; i < e - s; i++) { w->nb.os[i] = s + i; w->nb.oe[i] = s + i + 1; }
    w->nb.len = e - s;
    if (normalize(tk, &w->nb, &w->tmp, first)) return -1;
    spanvec *cur = &w->sv[0], *nxt = &w->sv[1];
    cur->n = 0;
    if (spanvec_push(cur, 0, w->nb.len)) return -1;
    for (int k = 0; k < tk->n_split; k++) {
        if (split_step(&tk->split[k], w->md, w->nb.s, cur, nxt)) return -1;
        spanvec *t = cur; cur = nxt; nxt = t;
    }
    if (tk->spm_split) {   /* cut before each U+2581 that follows another character */
        const char *b = w->nb.s;
        size_t last = 0, n = w->nb.len;
        cur->n = 0;
        for (size_t i = 1; i + 3 <= n; i++)
            if (!memcmp(b + i, META_UTF8, 3) && !(i >= 3 && !memcmp(b + i - 3, META_UTF8, 3))) {
                if (spanvec_push(cur, last, i)) return -1;
                last = i;
            }
        if (spanvec_push(cur, last, n)) return -1;
    }
    for (size_t k = 0; k < cur->n; k++)
        if (encode_piece(tk, w, cur->p[2 * k], cur->p[2 * k + 1], v)) return -1;
    return 0;
}

/* Unicode White_Space (Rust's char::is_whitespace): what HF's lstrip/rstrip strip, so a
 * no-break or ideographic space next to an added token goes too. */
static int is_white_space(utf8proc_int32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

/* Byte length of the white-space character starting at text[i] (i < len), else 0. */
static size_t space_at(const char *text, size_t i, size_t len) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + i, (utf8proc_ssize_t)(len - i), &cp);
    return k > 0 && is_white_space(cp) ? (size_t)k : 0;
}

/* Byte length of the white-space character ending at text[i] (from < i), else 0. The text
 * is valid UTF-8, so the character starts after at most three continuation bytes. */
static size_t space_before(const char *text, size_t from, size_t i) {
    size_t s = i - 1;
    while (s > from && i - s < 4 && ((unsigned char)text[s] & 0xC0) == 0x80) s--;
    return space_at(text, s, i) == i - s ? i - s : 0;
}

/* Finds the next added token at or after from: returns its index, match range [*ms,*me)
 * (including stripped whitespace), or -1. */
static int find_added(const mu_tokenizer *tk, const char *text, size_t len, size_t from, size_t *ms, size_t *me) {
    if (!tk->n_added) return -1;
    for (size_t i = from; i < len; i++) {
        unsigned char b = (unsigned char)text[i];
        for (int k = tk->added_start[b]; k < tk->added_start[b + 1]; k++) {
            const tok_added *a = &tk->added[k];
            if (a->len > len - i || memcmp(text + i, a->content, a->len)) continue;
            size_t s = i, e = i + a->len, sp;
            while (a->lstrip && s > from && (sp = space_before(text, from, s)) > 0) s -= sp;
            while (a->rstrip && e < len && (sp = space_at(text, e, len)) > 0) e += sp;
            *ms = s; *me = e;
            return k;
        }
    }
    return -1;
}

static int encode_all(mu_tokenizer *tk, const char *text, size_t len, int add_special, tokvec *v, char *err, size_t errlen) {
    size_t bad;
    if (!mu_utf8_valid(text, len, &bad)) { tok_err(err, errlen, "invalid UTF-8 at byte %zu", bad); return -1; }
    enc_work w;
    memset(&w, 0, sizeof w);
    w.md = pcre2_match_data_create(4, NULL);
    int rc = -1;
    if (!w.md) goto out;
    if (add_special)
        for (int i = 0; i < tk->n_prefix; i++) if (tokvec_push(v, tk->prefix[i], 0, 0)) goto out;
    size_t at = 0, ms = 0, me = 0;
    while (at < len) {
        int k = find_added(tk, text, len, at, &ms, &me);
        size_t seg_end = k >= 0 ? ms : len;
        if (seg_end > at && encode_segment(tk, &w, text, at, seg_end, at == 0, v)) goto out;
        if (k < 0) break;
        if (tokvec_push(v, tk->added[k].id, ms, me)) goto out;
        at = me;
    }
    if (add_special)
        for (int i = 0; i < tk->n_suffix; i++) if (tokvec_push(v, tk->suffix[i], len, len)) goto out;
    rc = 0;
out:
    if (rc) tok_err(err, errlen, "out of memory while tokenizing");
    enc_work_free(&w);
    return rc;
}

int mu_tok_encode(mu_tokenizer *tk, const char *text, size_t len, int add_special,
                  int32_t **ids, size_t *n, char *err, size_t errlen) {
    tokvec v = { 0 };
    if (encode_all(tk, text, len, add_special, &v, err, errlen)) { free(v.ids); return -1; }
    if (!v.ids) v.ids = malloc(sizeof(int32_t));
    *ids = v.ids; *n = v.n;
    return 0;
}

int mu_tok_encode_offsets(mu_tokenizer *tk, const char *text, size_t len,
                          int32_t **ids, size_t **offs, size_t *n, char *err, size_t errlen) {
    tokvec v = { 0 };
    v.track = 1;
    if (encode_all(tk, text, len, 0, &v, err, errlen)) { free(v.ids); free(v.offs); return -1; }
    if (!v.ids) { v.ids = malloc(sizeof(int32_t)); v.offs = malloc(2 * sizeof(size_t)); }
    *ids = v.ids; *offs = v.offs; *n = v.n;
    return 0;
}

void mu_tok_span(const size_t *offs, size_t n, size_t s, size_t e, size_t *ts, size_t *te) {
    size_t a = n, b = 0;
    for (size_t i = 0; i < n; i++) {
        size_t os = offs[2 * i], oe = offs[2 * i + 1];
        if (os < oe && os < e && oe > s) { if (a == n) a = i; b = i + 1; }
    }
    if (a == n) {
        for (a = 0; a < n && offs[2 * a] < s; a++) {}
        b = a;
    }
    *ts = a; *te = b;
}

/* ---------------------------------------------------------------- decoding
 * As HF's decoder chains: byte-level vocabularies decode to their raw bytes, invalid UTF-8
 * replaced per maximal invalid subpart (String::from_utf8_lossy); SentencePiece-style
 * ones to their spelling with U+2581 as a space, where (ByteFallback) a run of byte
 * tokens is its bytes if they form valid UTF-8, else one U+FFFD per byte, and (no
 * ByteFallback decoder) a byte token is its spelling "<0xXX>"; Metaspace drops every
 * U+2581 of the first token, Strip after Fuse up to dec_strip_space leading spaces. */
static const char REPLACEMENT_CHAR[3] = { '\xef', '\xbf', '\xbd' };

/* Bytes out[from, *o) are one run of byte tokens: kept if valid UTF-8, else each byte
 * becomes U+FFFD (out has room for three bytes per byte). */
static void finish_byte_run(char *out, size_t from, size_t *o) {
    size_t n = *o - from;
    if (!n || mu_utf8_valid(out + from, n, NULL)) return;
    for (size_t k = 0; k < n; k++) memcpy(out + from + 3 * k, REPLACEMENT_CHAR, 3);
    *o = from + 3 * n;
}

/* The first token's text under a Metaspace decoder: its spelling without any U+2581. */
static size_t put_without_metaspace(const char *spell, char *out) {
    size_t o = 0;
    for (size_t i = 0; spell[i];) {
        if (!strncmp(spell + i, META_UTF8, 3)) { i += 3; continue; }
        out[o++] = spell[i++];
    }
    return o;
}

/* The byte-level path's replacement of invalid UTF-8, per maximal invalid subpart. */
static size_t replace_invalid_subparts(const char *raw, size_t n, char *out) {
    size_t q = 0, i = 0;
    while (i < n) {
        size_t k = mu_utf8_seq_len((const unsigned char *)raw + i, n - i);
        if (!k) {
            memcpy(out + q, REPLACEMENT_CHAR, 3); q += 3;
            i += utf8_invalid_subpart((const unsigned char *)raw + i, n - i);
            continue;
        }
        memcpy(out + q, raw + i, k); q += k; i += k;
    }
    return q;
}

/* SentencePiece-style tokens' texts, concatenated into out (room for three bytes per byte
 * of the longer of each token's text and spelling). */
static size_t put_spm_tokens(const mu_tokenizer *tk, const int32_t *ids, size_t n, int skip_special, char *out) {
    size_t o = 0, run = 0;
    int first = 1, in_run = 0;
    for (size_t i = 0; i < n; i++) {
        const tok_entry *t = &tk->tok[ids[i]];
        if (skip_special && (t->type == TOK_CONTROL || t->type == TOK_UNKNOWN)) continue;
        if (!t->dec) continue;
        int byte = t->type == TOK_BYTE && tk->dec_byte_fallback;
        if (in_run && !byte) { finish_byte_run(out, run, &o); in_run = 0; }
        if (byte && !in_run) { run = o; in_run = 1; }
        if (byte) out[o++] = t->dec[0];
        else if (t->type == TOK_BYTE) { memcpy(out + o, t->spell, strlen(t->spell)); o += strlen(t->spell); }
        else if (first && tk->dec_metaspace_first) o += put_without_metaspace(t->spell, out + o);
        else { memcpy(out + o, t->dec, t->dec_len); o += t->dec_len; }
        first = 0;
    }
    if (in_run) finish_byte_run(out, run, &o);
    return o;
}

/* Byte-level tokens' raw bytes, concatenated into out. */
static size_t put_bytelevel_tokens(const mu_tokenizer *tk, const int32_t *ids, size_t n, int skip_special, char *out) {
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const tok_entry *t = &tk->tok[ids[i]];
        if (skip_special && (t->type == TOK_CONTROL || t->type == TOK_UNKNOWN)) continue;
        if (!t->dec) continue;
        memcpy(out + o, t->dec, t->dec_len);
        o += t->dec_len;
    }
    return o;
}

int mu_tok_decode(const mu_tokenizer *tk, const int32_t *ids, size_t n, int skip_special,
                  char **text, size_t *len, char *err, size_t errlen) {
    size_t total = 1;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= tk->n_tok) {
            tok_err(err, errlen, "token %zu: id %d out of range (vocabulary %zu)", i, ids[i], tk->n_tok);
            return -1;
        }
        const tok_entry *t = &tk->tok[ids[i]];
        size_t sl = t->spell ? strlen(t->spell) : 0;
        total += t->dec_len > sl ? t->dec_len : sl;
    }
    char *outb = calloc(total, 3);
    if (!outb) { tok_err(err, errlen, "out of memory"); return -1; }
    size_t q = tk->kind == MODEL_BYTELEVEL ? put_bytelevel_tokens(tk, ids, n, skip_special, outb)
                                           : put_spm_tokens(tk, ids, n, skip_special, outb);
    if (!mu_utf8_valid(outb, q, NULL)) {   /* byte-level text, or a GGUF spelling that is not UTF-8 */
        char *lossy = malloc(q * 3 + 1);
        if (!lossy) { free(outb); tok_err(err, errlen, "out of memory"); return -1; }
        q = replace_invalid_subparts(outb, q, lossy);
        free(outb);
        outb = lossy;
    }
    size_t strip = 0;
    while ((int)strip < tk->dec_strip_space && strip < q && outb[strip] == ' ') strip++;
    memmove(outb, outb + strip, q - strip);
    q -= strip;
    outb[q] = 0;
    *text = outb; *len = q;
    return 0;
}

int mu_tok_decode_model_ids(const mu_tokenizer *tk, const int32_t *ids, size_t n, size_t model_vocab,
                            int skip_special, char **text, size_t *len, char *err, size_t errlen) {
    int32_t *known = malloc((n ? n : 1) * sizeof *known);
    if (!known) { tok_err(err, errlen, "out of memory"); return -1; }
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] < tk->n_tok || (size_t)ids[i] >= model_vocab) known[k++] = ids[i];
    int rc = mu_tok_decode(tk, known, k, skip_special, text, len, err, errlen);
    free(known);
    return rc;
}

/* ---------------------------------------------------------------- accessors */
int32_t mu_tok_bos(const mu_tokenizer *tk) { return tk->bos; }
int32_t mu_tok_eos(const mu_tokenizer *tk) { return tk->eos; }
int mu_tok_add_bos_default(const mu_tokenizer *tk) { return tk->add_bos; }
int mu_tok_add_eos_default(const mu_tokenizer *tk) { return tk->add_eos; }
size_t mu_tok_vocab_size(const mu_tokenizer *tk) { return tk->n_tok; }
mu_chat_kind mu_tok_chat_kind(const mu_tokenizer *tk) { return tk->chat; }
const char *mu_tok_model_kind(const mu_tokenizer *tk) {
    return tk->kind == MODEL_BYTELEVEL ? "bpe-bytelevel" : "bpe-spm";
}

int32_t mu_tok_token_to_id(const mu_tokenizer *tk, const char *token) {
    for (size_t id = 0; id < tk->n_tok; id++)   /* spelling lookup: rare, linear is fine */
        if (tk->tok[id].spell && !strcmp(tk->tok[id].spell, token)) return (int32_t)id;
    return -1;
}

int mu_tok_is_special(const mu_tokenizer *tk, int32_t id) {
    if (id < 0 || (size_t)id >= tk->n_tok) return 0;
    return tk->tok[id].type == TOK_CONTROL || tk->tok[id].type == TOK_UNKNOWN;
}

void mu_tokenizer_free(mu_tokenizer *tk) {
    if (!tk) return;
    for (size_t i = 0; i < tk->n_tok; i++) {
        if (tk->tok[i].enc != tk->tok[i].spell) free(tk->tok[i].enc);
        free(tk->tok[i].spell); free(tk->tok[i].dec);
    }
    free(tk->tok);
    free(tk->vocab.slot); free(tk->merges.slot);
    for (int i = 0; i < tk->n_norm; i++) { free(tk->norm[i].a); free(tk->norm[i].b); }
    free(tk->norm);
    for (int i = 0; i < tk->n_split; i++) { if (tk->split[i].re) pcre2_code_free(tk->split[i].re); free(tk->split[i].lit); }
    free(tk->split);
    for (int i = 0; i < tk->n_added; i++) free(tk->added[i].content);
    free(tk->added);
    free(tk->prefix); free(tk->suffix);
    free(tk->chat_template); free(tk->chat_system);
    if (tk->cache) { free(tk->cache->ent); free(tk->cache->keys); free(tk->cache->ids); free(tk->cache->lens); free(tk->cache); }
    free(tk->path);
    free(tk);
}
