/* tok_internal.h — the tokenizer's internal data, shared by lib/tokenizer.c (encoding,
 * decoding) and lib/tok_load.c (building it from tokenizer.json or GGUF). Not an API. */
#ifndef MU_TOK_INTERNAL_H
#define MU_TOK_INTERNAL_H
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stddef.h>
#include <stdint.h>
#include "tokenizer.h"

enum { TOK_NORMAL = 1, TOK_UNKNOWN = 2, TOK_CONTROL = 3, TOK_USER = 4, TOK_UNUSED = 5, TOK_BYTE = 6 };

typedef struct {
    char *spell;          /* the vocabulary's own spelling (NUL-terminated) */
    char *enc;            /* the bytes the encoder matches (raw bytes for byte-level) */
    uint32_t enc_len;
    char *dec;            /* the bytes it decodes to */
    uint32_t dec_len;
    float score;          /* SentencePiece score (GGUF llama) */
    uint8_t type;         /* TOK_* */
    int16_t byte;         /* 0..255 for <0xXX> byte tokens, else -1 */
} tok_entry;

/* string -> id, open addressing; keys are the entries' enc bytes */
typedef struct { uint32_t mask; int32_t *slot; } tok_strmap;
/* (left id, right id) -> (rank, merged id) */
typedef struct { uint64_t key; int32_t rank, id; } tok_pair;
typedef struct { uint32_t mask; tok_pair *slot; size_t n; } tok_pairmap;

/* text-rewriting steps (normalizers, and the rewriting half of pre-tokenizers) */
typedef enum { NORM_PREPEND, NORM_REPLACE, NORM_NFC, NORM_NFD, NORM_NFKC, NORM_NFKD } tok_norm_kind;
/* NORM_PREPEND when: 0 always (non-empty text), 1 unless the text starts with a,
 * 2 like 1 but only for the first segment of the input (Metaspace prepend_scheme "first") */
typedef struct { tok_norm_kind kind; int when; char *a; size_t alen; char *b; size_t blen; } tok_norm;

/* splitting steps of pre-tokenizers */
typedef enum { SPLIT_ISOLATED, SPLIT_REMOVED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT } tok_split_behavior;
typedef struct {
    pcre2_code *re;       /* NULL: literal split on lit */
    int jit;
    char *lit; size_t litlen;
    tok_split_behavior behavior;
} tok_split;

typedef struct { char *content; size_t len; int32_t id; int lstrip, rstrip, special; } tok_added;

typedef enum { MODEL_BYTELEVEL, MODEL_SPM } tok_model_kind;

struct tok_cache;

struct mu_tokenizer {
    char *path;
    tok_model_kind kind;
    int score_merges;          /* 1: merge by token score (SentencePiece/GGUF llama) */
    int byte_fallback, fuse_unk, ignore_merges;
    tok_entry *tok; size_t n_tok;
    tok_strmap vocab;
    tok_pairmap merges;
    int32_t byte_id[256];      /* byte-level: id of the single-byte token; spm: <0xXX> */
    tok_norm *norm; int n_norm;
    tok_split *split; int n_split;
    tok_added *added; int n_added;
    int added_start[257];      /* added[] sorted by first byte, then longest first: the
                                  tokens starting with byte b are [start[b], start[b+1]) */
    int32_t *prefix; int n_prefix;  /* special tokens the post-processor adds */
    int32_t *suffix; int n_suffix;
    int32_t bos, eos, pad, unk;
    int add_bos, add_eos;
    int dec_strip_space;       /* decoder removes this many leading spaces (Strip after Fuse) */
    int dec_byte_fallback;     /* byte tokens decode to their bytes (ByteFallback), else to "<0xXX>" */
    int dec_metaspace_first;   /* the first token decodes without its U+2581s (Metaspace) */
    int dec_fused;             /* (loading) a Fuse decoder came before */
    int spm_split;             /* no token holds a character then U+2581: pieces may be cut
                                  before such a U+2581 without changing the result */
    mu_chat_kind chat;
    char *chat_template;
    char *chat_system;         /* ChatML default system message, if the template has one */
    struct tok_cache *cache;
};

/* ---- shared helpers (tokenizer.c) ---- */
void tok_err(char *err, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int tok_strmap_build(mu_tokenizer *tk, char *err, size_t n);
int32_t tok_strmap_get(const mu_tokenizer *tk, const char *s, size_t len);
int tok_pairmap_init(tok_pairmap *m, size_t n_expected);
void tok_pairmap_put(tok_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
int tok_split_add_regex(mu_tokenizer *tk, const char *pattern, tok_split_behavior b, char *err, size_t n);
int tok_split_add_literal(mu_tokenizer *tk, const char *lit, size_t len, tok_split_behavior b);
void tok_norm_add(mu_tokenizer *tk, tok_norm_kind k, int when, const char *a, size_t alen, const char *b, size_t blen);
void tok_added_add(mu_tokenizer *tk, const char *s, size_t len, int32_t id, int lstrip, int rstrip, int special);
/* GPT-2's byte <-> unicode alphabet */
int tok_bytelevel_unmap(const char *s, size_t len, char *out, size_t *outlen);
/* after the vocabulary is set: byte ids, dec strings, maps, added-token table */
int tok_finish(mu_tokenizer *tk, char *err, size_t n);

/* ---- loaders (tok_load.c) ---- */
int tok_load_json(mu_tokenizer *tk, const char *json_path, const char *config_path, char *err, size_t n);
int tok_load_gguf(mu_tokenizer *tk, const char *gguf_path, char *err, size_t n);

extern const char *const TOK_RE_GPT2, *const TOK_RE_LLAMA3, *const TOK_RE_QWEN2;
#endif
