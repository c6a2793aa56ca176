/* tok_load.c — builds a mu_tokenizer from a Hugging Face tokenizer.json (+ the
 * tokenizer_config.json beside it) or from the tokenizer.ggml.* keys of a GGUF file;
 * and the chat templates of the supported families. */
#include "tok_internal.h"
#include "gguf.h"
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char *const TOK_RE_GPT2 =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *const TOK_RE_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
#define META "\xe2\x96\x81"   /* U+2581, SentencePiece's space */

static char *dupn(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n); d[n] = 0;
    return d;
}

/* "<0xAB>" -> 0xAB, else -1 */
static int parse_byte_token(const char *s) {
    unsigned v;
    char tail;
    if (strlen(s) == 6 && sscanf(s, "<0x%2X%c", &v, &tail) == 2 && tail == '>') return (int)v;
    return -1;
}

static int alloc_vocab(mu_tokenizer *tk, size_t n, char *err, size_t en) {
    tk->tok = calloc(n ? n : 1, sizeof *tk->tok);
    if (!tk->tok) { tok_err(err, en, "%s: out of memory", tk->path); return -1; }
    tk->n_tok = n;
    for (size_t i = 0; i < n; i++) { tk->tok[i].byte = -1; tk->tok[i].type = TOK_NORMAL; }
    return 0;
}

/* Sets token id's spelling and its encoder bytes (unmapped for byte-level vocabularies). */
static int set_token(mu_tokenizer *tk, size_t id, const char *s, size_t len, int raw) {
    tok_entry *t = &tk->tok[id];
    if (t->enc != t->spell) free(t->enc);
    free(t->spell);
    t->spell = dupn(s, len);
    if (!t->spell) return -1;
    t->enc = t->spell; t->enc_len = (uint32_t)len;
    if (tk->kind == MODEL_BYTELEVEL && !raw) {
        char *b = malloc(len + 1);
        size_t bl;
        if (!b) return -1;
        if (tok_bytelevel_unmap(s, len, b, &bl) == 0) { t->enc = b; t->enc_len = (uint32_t)bl; }
        else free(b);
    }
    if (tk->kind == MODEL_SPM) {
        int b = parse_byte_token(t->spell);
        if (b >= 0 && tk->byte_fallback) { t->byte = (int16_t)b; t->type = TOK_BYTE; }
    }
    return 0;
}

/* ================================================================ tokenizer.json */
static const char *jstr(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}
static int jbool(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

static int behavior_of(const char *s, tok_split_behavior *b) {
    if (!s || !strcmp(s, "Isolated")) *b = SPLIT_ISOLATED;
    else if (!strcmp(s, "Removed")) *b = SPLIT_REMOVED;
    else if (!strcmp(s, "MergedWithPrevious")) *b = SPLIT_MERGED_PREV;
    else if (!strcmp(s, "MergedWithNext")) *b = SPLIT_MERGED_NEXT;
    else return -1;
    return 0;
}

static int load_normalizer(mu_tokenizer *tk, json_t *n, char *err, size_t en) {
    if (!n || json_is_null(n)) return 0;
    const char *type = jstr(n, "type");
    if (!type) { tok_err(err, en, "%s: normalizer without a type", tk->path); return -1; }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(n, "normalizers"), *x;
        size_t i;
        json_array_foreach(arr, i, x) if (load_normalizer(tk, x, err, en)) return -1;
        return 0;
    }
    if (!strcmp(type, "Prepend")) {
        const char *p = jstr(n, "prepend");
        if (!p) { tok_err(err, en, "%s: Prepend normalizer without \"prepend\"", tk->path); return -1; }
        tok_norm_add(tk, NORM_PREPEND, 0, p, strlen(p), NULL, 0);
        return 0;
    }
    if (!strcmp(type, "Replace")) {
        json_t *pat = json_object_get(n, "pattern");
        const char *s = jstr(pat, "String"), *c = jstr(n, "content");
        if (!s || !c) { tok_err(err, en, "%s: Replace normalizer: only a String pattern is supported", tk->path); return -1; }
        tok_norm_add(tk, NORM_REPLACE, 0, s, strlen(s), c, strlen(c));
        return 0;
    }
    tok_norm_kind k;
    if (!strcmp(type, "NFC")) k = NORM_NFC;
    else if (!strcmp(type, "NFD")) k = NORM_NFD;
    else if (!strcmp(type, "NFKC")) k = NORM_NFKC;
    else if (!strcmp(type, "NFKD")) k = NORM_NFKD;
    else { tok_err(err, en, "%s: unsupported normalizer %s", tk->path, type); return -1; }
    tok_norm_add(tk, k, 0, NULL, 0, NULL, 0);
    return 0;
}

static int load_pretok(mu_tokenizer *tk, json_t *p, char *err, size_t en) {
    if (!p || json_is_null(p)) return 0;
    const char *type = jstr(p, "type");
    if (!type) { tok_err(err, en, "%s: pre_tokenizer without a type", tk->path); return -1; }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "pretokenizers"), *x;
        size_t i;
        json_array_foreach(arr, i, x) if (load_pretok(tk, x, err, en)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        if (jbool(p, "add_prefix_space", 0)) tok_norm_add(tk, NORM_PREPEND, 1, " ", 1, NULL, 0);
        if (jbool(p, "use_regex", 1)) return tok_split_add_regex(tk, TOK_RE_GPT2, SPLIT_ISOLATED, err, en);
        return 0;
    }
    if (!strcmp(type, "Split")) {
        tok_split_behavior b;
        if (behavior_of(jstr(p, "behavior"), &b) || jbool(p, "invert", 0)) {
            tok_err(err, en, "%s: Split pre-tokenizer: unsupported behavior %s%s", tk->path,
                    jstr(p, "behavior") ? jstr(p, "behavior") : "?", jbool(p, "invert", 0) ? " (inverted)" : "");
            return -1;
        }
        json_t *pat = json_object_get(p, "pattern");
        const char *re = jstr(pat, "Regex"), *lit = jstr(pat, "String");
        if (re) return tok_split_add_regex(tk, re, b, err, en);
        if (lit && *lit) return tok_split_add_literal(tk, lit, strlen(lit), b);
        tok_err(err, en, "%s: Split pre-tokenizer without a pattern", tk->path);
        return -1;
    }
    if (!strcmp(type, "Digits")) {
        return tok_split_add_regex(tk, jbool(p, "individual_digits", 0) ? "\\p{N}" : "\\p{N}+", SPLIT_ISOLATED, err, en);
    }
    if (!strcmp(type, "Metaspace")) {
        const char *rep = jstr(p, "replacement");
        if (!rep) rep = META;
        const char *scheme = jstr(p, "prepend_scheme");
        int when = scheme ? (!strcmp(scheme, "never") ? -1 : !strcmp(scheme, "first") ? 2 : 1)
                          : (jbool(p, "add_prefix_space", 1) ? 1 : -1);
        tok_norm_add(tk, NORM_REPLACE, 0, " ", 1, rep, strlen(rep));
        if (when > 0) tok_norm_add(tk, NORM_PREPEND, when, rep, strlen(rep), NULL, 0);
        if (jbool(p, "split", 1)) return tok_split_add_literal(tk, rep, strlen(rep), SPLIT_MERGED_NEXT);
        return 0;
    }
    tok_err(err, en, "%s: unsupported pre-tokenizer %s", tk->path, type);
    return -1;
}

static int load_decoder(mu_tokenizer *tk, json_t *d, char *err, size_t en) {
    if (!d || json_is_null(d)) return 0;
    const char *type = jstr(d, "type");
    if (!type) { tok_err(err, en, "%s: decoder without a type", tk->path); return -1; }
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(d, "decoders"), *x;
        size_t i;
        json_array_foreach(arr, i, x) if (load_decoder(tk, x, err, en)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0;
    if (!strcmp(type, "ByteFallback")) { tk->dec_byte_fallback = 1; return 0; }
    if (!strcmp(type, "Fuse")) { tk->dec_fused = 1; return 0; }
    if (!strcmp(type, "Replace")) {
        const char *s = jstr(json_object_get(d, "pattern"), "String"), *c = jstr(d, "content");
        if (s && c && !strcmp(s, META) && !strcmp(c, " ")) return 0;
        tok_err(err, en, "%s: unsupported Replace decoder", tk->path);
        return -1;
    }
    if (!strcmp(type, "Strip")) {
        const char *c = jstr(d, "content");
        json_t *st = json_object_get(d, "start"), *sp = json_object_get(d, "stop");
        /* on the fused text; before a Fuse HF strips every token */
        if (c && !strcmp(c, " ") && json_is_integer(st) && json_integer_value(st) >= 0 &&
            json_integer_value(st) <= 1024 && json_is_integer(sp) && json_integer_value(sp) == 0 && tk->dec_fused) {
            tk->dec_strip_space = (int)json_integer_value(st);
            return 0;
        }
        tok_err(err, en, "%s: unsupported Strip decoder (only of leading spaces, after a Fuse)", tk->path);
        return -1;
    }
    if (!strcmp(type, "Metaspace")) {
        const char *scheme = jstr(d, "prepend_scheme");
        tk->dec_metaspace_first = scheme ? strcmp(scheme, "never") != 0 : jbool(d, "add_prefix_space", 1);
        return 0;
    }
    tok_err(err, en, "%s: unsupported decoder %s", tk->path, type);
    return -1;
}

static int32_t special_id(json_t *specials, const char *name, const mu_tokenizer *tk) {
    json_t *s = json_object_get(specials, name);
    json_t *ids = json_object_get(s, "ids");
    if (json_is_array(ids) && json_array_size(ids) > 0) {   /* -1 (refused) unless an id of the vocabulary */
        json_int_t id = json_integer_value(json_array_get(ids, 0));
        return id >= 0 && id < (json_int_t)tk->n_tok ? (int32_t)id : -1;
    }
    return mu_tok_token_to_id(tk, name);
}

static void push_id(int32_t **arr, int *n, int32_t id) {
    *arr = realloc(*arr, (size_t)(*n + 1) * sizeof **arr);
    (*arr)[(*n)++] = id;
}

/* The id of a Bert/Roberta post-processor's cls or sep ([token, id]), pushed onto arr; an
 * id outside the vocabulary is refused (it would be in every encoding). */
static int push_processing_id(mu_tokenizer *tk, json_t *p, const char *type, const char *key,
                              int32_t **arr, int *n, char *err, size_t en) {
    json_t *pair = json_object_get(p, key), *id = json_array_get(pair, 1);
    if (json_array_size(pair) != 2 || !json_is_integer(id) || json_integer_value(id) < 0 ||
        json_integer_value(id) >= (json_int_t)tk->n_tok) {
        tok_err(err, en, "%s: post_processor %s: %s is not [token, id] of a token in the vocabulary", tk->path, type, key);
        return -1;
    }
    push_id(arr, n, (int32_t)json_integer_value(id));
    return 0;
}

static int load_postproc(mu_tokenizer *tk, json_t *p, char *err, size_t en) {
    if (!p || json_is_null(p)) return 0;
    const char *type = jstr(p, "type");
    if (!type) return 0;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(p, "processors"), *x;
        size_t i;
        json_array_foreach(arr, i, x) if (load_postproc(tk, x, err, en)) return -1;
        return 0;
    }
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single"), *item, *specials = json_object_get(p, "special_tokens");
        size_t i;
        int after = 0;
        json_array_foreach(single, i, item) {
            if (json_object_get(item, "Sequence")) { after = 1; continue; }
            const char *name = jstr(json_object_get(item, "SpecialToken"), "id");
            if (!name) continue;
            int32_t id = special_id(specials, name, tk);
            if (id < 0 || (size_t)id >= tk->n_tok) { tok_err(err, en, "%s: post_processor names unknown token %s", tk->path, name); return -1; }
            if (after) push_id(&tk->suffix, &tk->n_suffix, id); else push_id(&tk->prefix, &tk->n_prefix, id);
        }
        return 0;
    }
    if (!strcmp(type, "RobertaProcessing") || !strcmp(type, "BertProcessing"))
        return push_processing_id(tk, p, type, "cls", &tk->prefix, &tk->n_prefix, err, en) ||
               push_processing_id(tk, p, type, "sep", &tk->suffix, &tk->n_suffix, err, en) ? -1 : 0;
    if (!strcmp(type, "ByteLevel")) return 0;   /* it only trims offsets */
    tok_err(err, en, "%s: unsupported post_processor %s", tk->path, type);
    return -1;
}

/* A token named in tokenizer_config.json: a string or {"content": ...}. */
static const char *config_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_string(v)) return json_string_value(v);
    return jstr(v, "content");
}

static int32_t first_known(const mu_tokenizer *tk, const char *const *names) {
    for (; *names; names++) {
        int32_t id = mu_tok_token_to_id(tk, *names);
        if (id >= 0) return id;
    }
    return -1;
}

static void set_chat_template(mu_tokenizer *tk, const char *tmpl);

static int load_merges(mu_tokenizer *tk, json_t *merges, char *err, size_t en) {
    size_t nm = json_array_size(merges), i;
    if (tok_pairmap_init(&tk->merges, nm)) { tok_err(err, en, "%s: out of memory", tk->path); return -1; }
    json_t *m;
    char *buf = NULL;
    size_t cap = 0;
    json_array_foreach(merges, i, m) {
        const char *a, *b;
        size_t al, bl;
        if (json_is_string(m)) {
            a = json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp) { free(buf); tok_err(err, en, "%s: merge %zu is not \"a b\"", tk->path, i); return -1; }
            al = (size_t)(sp - a); b = sp + 1; bl = strlen(b);
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) && json_is_string(json_array_get(m, 1))) {
            a = json_string_value(json_array_get(m, 0)); al = strlen(a);
            b = json_string_value(json_array_get(m, 1)); bl = strlen(b);
        } else { free(buf); tok_err(err, en, "%s: merge %zu is malformed", tk->path, i); return -1; }
        if (al + bl + 1 > cap) { cap = (al + bl + 1) * 2; buf = realloc(buf, cap); }
        size_t l1 = al, l2 = bl;
        if (tk->kind == MODEL_BYTELEVEL) {
            if (tok_bytelevel_unmap(a, al, buf, &l1) || tok_bytelevel_unmap(b, bl, buf + l1, &l2)) {
                free(buf); tok_err(err, en, "%s: merge %zu has a character outside the byte alphabet", tk->path, i); return -1;
            }
        } else { memcpy(buf, a, al); memcpy(buf + al, b, bl); }
        int32_t ia = tok_strmap_get(tk, buf, l1), ib = tok_strmap_get(tk, buf + l1, l2), ic = tok_strmap_get(tk, buf, l1 + l2);
        if (ia < 0 || ib < 0 || ic < 0) { free(buf); tok_err(err, en, "%s: merge %zu names a token not in the vocabulary", tk->path, i); return -1; }
        tok_pairmap_put(&tk->merges, ia, ib, (int32_t)i, ic);
    }
    free(buf);
    return 0;
}

static int is_bytelevel_cfg(json_t *root) {
    char *s = json_dumps(json_object_get(root, "pre_tokenizer"), JSON_COMPACT);
    char *d = json_dumps(json_object_get(root, "decoder"), JSON_COMPACT);
    int r = (s && strstr(s, "\"ByteLevel\"")) || (d && strstr(d, "\"ByteLevel\""));
    free(s); free(d);
    return r;
}

/* The vocabulary (model.vocab and added_tokens) of a tokenizer.json. */
static int load_json_vocab(mu_tokenizer *tk, json_t *root, json_t *vocab, const char *path, char *err, size_t en) {
    json_t *added = json_object_get(root, "added_tokens"), *v, *a;
    const char *key;
    size_t i;
    int64_t maxid = -1;
    json_object_foreach(vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 10000000) {
            tok_err(err, en, "%s: vocab entry \"%s\" has a bad id", path, key);
            return -1;
        }
        if (json_integer_value(v) > maxid) maxid = json_integer_value(v);
    }
    json_array_foreach(added, i, a) {
        json_t *id = json_object_get(a, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 || json_integer_value(id) > 10000000 || !jstr(a, "content")) {
            tok_err(err, en, "%s: added_tokens[%zu] is malformed", path, i);
            return -1;
        }
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
    }
    size_t given = json_object_size(vocab) + json_array_size(added);
    if (maxid < 0) { tok_err(err, en, "%s: empty vocabulary", path); return -1; }
    if ((size_t)maxid > 16 * given + 4096) {
        tok_err(err, en, "%s: token id %lld is far beyond the %zu tokens given", path, (long long)maxid, given);
        return -1;
    }
    if (alloc_vocab(tk, (size_t)maxid + 1, err, en)) return -1;
    json_object_foreach(vocab, key, v)
        if (set_token(tk, (size_t)json_integer_value(v), key, strlen(key), 0)) { tok_err(err, en, "%s: out of memory", path); return -1; }
    json_array_foreach(added, i, a) {
        size_t id = (size_t)json_integer_value(json_object_get(a, "id"));
        const char *c = jstr(a, "content");
        int special = jbool(a, "special", 0);
        tok_entry *t = &tk->tok[id];
        if (!t->spell && set_token(tk, id, c, strlen(c), 1)) { tok_err(err, en, "%s: out of memory", path); return -1; }
        t->type = special ? TOK_CONTROL : TOK_USER;
        t->byte = -1;
        free(t->dec);
        t->dec = dupn(c, strlen(c));
        t->dec_len = (uint32_t)strlen(c);
        tok_added_add(tk, c, strlen(c), (int32_t)id, jbool(a, "lstrip", 0), jbool(a, "rstrip", 0), special);
    }
    return 0;
}

/* A special token named in tokenizer_config.json: its id; -1 when the config sets it to
 * null or names an unknown token; -2 when the config does not mention it. */
static int32_t config_special(const mu_tokenizer *tk, json_t *cfg, const char *key) {
    json_t *v = cfg ? json_object_get(cfg, key) : NULL;
    if (!v) return -2;
    const char *name = config_token(cfg, key);
    return name ? mu_tok_token_to_id(tk, name) : -1;
}

/* BOS/EOS/PAD/UNK ids and whether BOS/EOS are added: tokenizer_config.json when it says,
 * else the post-processor, else the usual names. */
static void set_special_ids(mu_tokenizer *tk, json_t *model, json_t *cfg) {
    static const char *const bos_names[] = { "<s>", "<|begin_of_text|>", "<bos>", "<|endoftext|>", NULL };
    static const char *const eos_names[] = { "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>", "<|im_end|>", NULL };
    const char *unk = jstr(model, "unk_token");
    int32_t cb = config_special(tk, cfg, "bos_token"), ce = config_special(tk, cfg, "eos_token"), cp = config_special(tk, cfg, "pad_token");
    tk->unk = unk ? mu_tok_token_to_id(tk, unk) : -1;
    tk->bos = cb != -2 ? cb : tk->n_prefix ? tk->prefix[0] : first_known(tk, bos_names);
    tk->eos = ce != -2 ? ce : tk->n_suffix ? tk->suffix[tk->n_suffix - 1] : first_known(tk, eos_names);
    tk->pad = cp >= 0 ? cp : -1;
    tk->add_bos = tk->n_prefix > 0;
    tk->add_eos = tk->n_suffix > 0;
    json_t *ab = cfg ? json_object_get(cfg, "add_bos_token") : NULL, *ae = cfg ? json_object_get(cfg, "add_eos_token") : NULL;
    if (json_is_boolean(ab) && tk->bos >= 0) {
        tk->n_prefix = 0;
        if (json_is_true(ab)) push_id(&tk->prefix, &tk->n_prefix, tk->bos);
        tk->add_bos = json_is_true(ab);
    }
    if (json_is_boolean(ae) && tk->eos >= 0) {
        tk->n_suffix = 0;
        if (json_is_true(ae)) push_id(&tk->suffix, &tk->n_suffix, tk->eos);
        tk->add_eos = json_is_true(ae);
    }
}

/* chat_template of tokenizer_config.json: a string, or a list of named templates. */
static void config_chat_template(mu_tokenizer *tk, json_t *cfg) {
    json_t *ct = cfg ? json_object_get(cfg, "chat_template") : NULL, *x;
    size_t i;
    if (json_is_string(ct)) set_chat_template(tk, json_string_value(ct));
    else if (json_is_array(ct))
        json_array_foreach(ct, i, x) if (jstr(x, "name") && !strcmp(jstr(x, "name"), "default") && jstr(x, "template"))
            set_chat_template(tk, jstr(x, "template"));
}

int tok_load_json(mu_tokenizer *tk, const char *json_path, const char *config_path, char *err, size_t en) {
    json_error_t je;
    json_t *root = json_load_file(json_path, JSON_REJECT_DUPLICATES, &je), *cfg = NULL;
    int rc = -1;
    if (!root) { tok_err(err, en, "%s: line %d: %s", json_path, je.line, je.text); return -1; }
    if (config_path) {
        cfg = json_load_file(config_path, 0, &je);
        if (!cfg) { tok_err(err, en, "%s: line %d: %s", config_path, je.line, je.text); goto out; }
    }
    json_t *model = json_object_get(root, "model"), *vocab = json_object_get(model, "vocab"), *merges;
    const char *mtype = jstr(model, "type");
    if (!json_is_object(root) || !json_is_object(model)) { tok_err(err, en, "%s: no \"model\" object", json_path); goto out; }
    if (!mtype && json_is_array(json_object_get(model, "merges"))) mtype = "BPE";
    if (!mtype || strcmp(mtype, "BPE")) { tok_err(err, en, "%s: unsupported tokenizer model %s (only BPE)", json_path, mtype ? mtype : "(none)"); goto out; }
    if (!json_is_object(vocab)) { tok_err(err, en, "%s: model.vocab is not an object", json_path); goto out; }
    if (json_is_string(json_object_get(model, "continuing_subword_prefix")) || json_is_string(json_object_get(model, "end_of_word_suffix"))) {
        tok_err(err, en, "%s: BPE with continuing_subword_prefix/end_of_word_suffix is not supported", json_path);
        goto out;
    }
    tk->kind = is_bytelevel_cfg(root) ? MODEL_BYTELEVEL : MODEL_SPM;
    tk->byte_fallback = jbool(model, "byte_fallback", 0);
    tk->fuse_unk = jbool(model, "fuse_unk", 0);
    tk->ignore_merges = jbool(model, "ignore_merges", 0);
    if (load_json_vocab(tk, root, vocab, json_path, err, en)) goto out;
    if (load_normalizer(tk, json_object_get(root, "normalizer"), err, en)) goto out;
    if (load_pretok(tk, json_object_get(root, "pre_tokenizer"), err, en)) goto out;
    if (load_decoder(tk, json_object_get(root, "decoder"), err, en)) goto out;
    if (tok_finish(tk, err, en)) goto out;
    merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) { tok_err(err, en, "%s: model.merges is not an array", json_path); goto out; }
    if (load_merges(tk, merges, err, en)) goto out;
    if (load_postproc(tk, json_object_get(root, "post_processor"), err, en)) goto out;
    set_special_ids(tk, model, cfg);
    config_chat_template(tk, cfg);
    rc = 0;
out:
    json_decref(root);
    if (cfg) json_decref(cfg);
    return rc;
}

/* ================================================================ GGUF */
static int gguf_pre_splits(mu_tokenizer *tk, const char *pre, size_t len, char *err, size_t en) {
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(len < 63 ? len : 63), pre);
    if (!strcmp(name, "gpt-2") || !strcmp(name, "gpt2") || !strcmp(name, "olmo") || !strcmp(name, "mpt") || !strcmp(name, "jais"))
        return tok_split_add_regex(tk, TOK_RE_GPT2, SPLIT_ISOLATED, err, en);
    if (!strcmp(name, "llama3") || !strcmp(name, "llama-bpe") || !strcmp(name, "llama-v3") || !strcmp(name, "dbrx") || !strcmp(name, "smaug-bpe")) {
        tk->ignore_merges = !strcmp(name, "llama3") || !strcmp(name, "llama-bpe") || !strcmp(name, "llama-v3");  /* as llama.cpp and HF */
        return tok_split_add_regex(tk, TOK_RE_LLAMA3, SPLIT_ISOLATED, err, en);
    }
    if (!strcmp(name, "qwen2") || !strcmp(name, "deepseek-r1-qwen"))
        return tok_split_add_regex(tk, TOK_RE_QWEN2, SPLIT_ISOLATED, err, en);
    if (!strcmp(name, "smollm") || !strcmp(name, "starcoder") || !strcmp(name, "refact") || !strcmp(name, "codeshell")) {
        if (tok_split_add_regex(tk, "\\p{N}", SPLIT_ISOLATED, err, en)) return -1;
        return tok_split_add_regex(tk, TOK_RE_GPT2, SPLIT_ISOLATED, err, en);
    }
    if (!strcmp(name, "default")) {   /* llama.cpp's legacy BPE pre-tokenizer */
        static const char *const res[] = { "[\\p{P}\\$\\+<=>\\^~\\|]+", TOK_RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]" };
        for (int i = 0; i < 4; i++) if (tok_split_add_regex(tk, i == 1 ? TOK_RE_GPT2 : res[i], SPLIT_ISOLATED, err, en)) return -1;
        return 0;
    }
    tok_err(err, en, "%s: unsupported tokenizer.ggml.pre \"%s\"", tk->path, name);
    return -1;
}

static int32_t gguf_id(const mu_gguf *g, const char *key, const mu_tokenizer *tk) {
    uint32_t v;
    if (mu_gguf_get_u32(g, key, &v) || v >= tk->n_tok) return -1;
    return (int32_t)v;
}

/* tokens, token_type and scores; control and user-defined tokens become added tokens. */
static int load_gguf_vocab(mu_tokenizer *tk, const mu_gguf *g, const char *path, char *err, size_t en) {
    const char *s;
    size_t sl;
    uint64_t n, nt = 0, ns = 0;
    int et, tt = -1, st = -1;
    if (mu_gguf_arr_len(g, "tokenizer.ggml.tokens", &n, &et) || et != GGUF_TYPE_STRING || n == 0 || n > 10000000) {
        tok_err(err, en, "%s: tokenizer.ggml.tokens is missing or not a string array", path);
        return -1;
    }
    if (alloc_vocab(tk, (size_t)n, err, en)) return -1;
    if (mu_gguf_arr_len(g, "tokenizer.ggml.token_type", &nt, &tt) == 0 && nt != n) {
        tok_err(err, en, "%s: tokenizer.ggml.token_type has %llu entries, tokens %llu", path, (unsigned long long)nt, (unsigned long long)n);
        return -1;
    }
    if (mu_gguf_arr_len(g, "tokenizer.ggml.scores", &ns, &st) == 0 && ns != n) {
        tok_err(err, en, "%s: tokenizer.ggml.scores has %llu entries, tokens %llu", path, (unsigned long long)ns, (unsigned long long)n);
        return -1;
    }
    if (tk->score_merges && !ns) { tok_err(err, en, "%s: SentencePiece vocabulary without tokenizer.ggml.scores", path); return -1; }
    for (uint64_t i = 0; i < n; i++) {
        int32_t type = TOK_NORMAL;
        if (mu_gguf_arr_str(g, "tokenizer.ggml.tokens", i, &s, &sl)) { tok_err(err, en, "%s: token %llu unreadable", path, (unsigned long long)i); return -1; }
        if (nt && mu_gguf_arr_i32(g, "tokenizer.ggml.token_type", i, &type)) { tok_err(err, en, "%s: token_type %llu unreadable", path, (unsigned long long)i); return -1; }
        int raw = type == TOK_CONTROL || type == TOK_USER;
        if (set_token(tk, (size_t)i, s, sl, raw)) { tok_err(err, en, "%s: out of memory", path); return -1; }
        tok_entry *t = &tk->tok[i];
        if (type >= TOK_NORMAL && type <= TOK_BYTE) t->type = (uint8_t)type;
        if (t->type == TOK_BYTE && t->byte < 0) {
            int b = parse_byte_token(t->spell);
            if (b < 0) { tok_err(err, en, "%s: byte token %llu is \"%s\"", path, (unsigned long long)i, t->spell); return -1; }
            t->byte = (int16_t)b;
        } else if (t->type != TOK_BYTE) t->byte = -1;
        if (ns && mu_gguf_arr_f32(g, "tokenizer.ggml.scores", i, &t->score)) { tok_err(err, en, "%s: score %llu unreadable", path, (unsigned long long)i); return -1; }
        if (raw) {
            t->dec = dupn(t->spell, strlen(t->spell));
            t->dec_len = (uint32_t)strlen(t->spell);
            tok_added_add(tk, t->enc, t->enc_len, (int32_t)i, 0, 0, type == TOK_CONTROL);
        }
    }
    return 0;
}

/* tokenizer.ggml.merges ("a b" in the byte-level alphabet), ranked by position. */
static int load_gguf_merges(mu_tokenizer *tk, const mu_gguf *g, const char *path, char *err, size_t en) {
    const char *s;
    size_t sl, cap = 0;
    uint64_t nm;
    int et, rc = -1;
    char *buf = NULL;
    if (mu_gguf_arr_len(g, "tokenizer.ggml.merges", &nm, &et) || et != GGUF_TYPE_STRING) { tok_err(err, en, "%s: no tokenizer.ggml.merges", path); return -1; }
    if (tok_pairmap_init(&tk->merges, nm)) { tok_err(err, en, "%s: out of memory", path); return -1; }
    for (uint64_t i = 0; i < nm; i++) {
        if (mu_gguf_arr_str(g, "tokenizer.ggml.merges", i, &s, &sl)) { tok_err(err, en, "%s: merge %llu unreadable", path, (unsigned long long)i); goto out; }
        const char *sp = memchr(s, ' ', sl);
        if (!sp) { tok_err(err, en, "%s: merge %llu is not \"a b\"", path, (unsigned long long)i); goto out; }
        if (sl + 1 > cap) { cap = 2 * sl + 16; buf = realloc(buf, cap); }
        size_t l1, l2;
        if (tok_bytelevel_unmap(s, (size_t)(sp - s), buf, &l1) || tok_bytelevel_unmap(sp + 1, sl - (size_t)(sp - s) - 1, buf + l1, &l2)) {
            tok_err(err, en, "%s: merge %llu has a character outside the byte alphabet", path, (unsigned long long)i);
            goto out;
        }
        int32_t ia = tok_strmap_get(tk, buf, l1), ib = tok_strmap_get(tk, buf + l1, l2), ic = tok_strmap_get(tk, buf, l1 + l2);
        if (ia < 0 || ib < 0 || ic < 0) { tok_err(err, en, "%s: merge %llu names a token not in the vocabulary", path, (unsigned long long)i); goto out; }
        tok_pairmap_put(&tk->merges, ia, ib, (int32_t)i, ic);
    }
    rc = 0;
out:
    free(buf);
    return rc;
}

/* bos/eos/pad/unk ids, add_bos/add_eos (llama.cpp's defaults: BOS for SentencePiece). */
static void gguf_special_ids(mu_tokenizer *tk, const mu_gguf *g) {
    int b;
    tk->bos = gguf_id(g, "tokenizer.ggml.bos_token_id", tk);
    tk->eos = gguf_id(g, "tokenizer.ggml.eos_token_id", tk);
    tk->pad = gguf_id(g, "tokenizer.ggml.padding_token_id", tk);
    tk->unk = gguf_id(g, "tokenizer.ggml.unknown_token_id", tk);
    if (tk->unk < 0)
        for (size_t i = 0; i < tk->n_tok; i++) if (tk->tok[i].type == TOK_UNKNOWN) { tk->unk = (int32_t)i; break; }
    tk->add_bos = tk->kind == MODEL_SPM;
    tk->add_eos = 0;
    if (mu_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0) tk->add_bos = b;
    if (mu_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) == 0) tk->add_eos = b;
    if (tk->add_bos && tk->bos >= 0) push_id(&tk->prefix, &tk->n_prefix, tk->bos); else tk->add_bos = 0;
    if (tk->add_eos && tk->eos >= 0) push_id(&tk->suffix, &tk->n_suffix, tk->eos); else tk->add_eos = 0;
}

int tok_load_gguf(mu_tokenizer *tk, const char *path, char *err, size_t en) {
    mu_gguf *g = mu_gguf_open(path, err, en);
    if (!g) return -1;
    int rc = -1, b;
    const char *s;
    size_t sl;
    if (mu_gguf_get_str(g, "tokenizer.ggml.model", &s, &sl)) { tok_err(err, en, "%s: no tokenizer.ggml.model", path); goto out; }
    if (sl == 4 && !memcmp(s, "gpt2", 4)) tk->kind = MODEL_BYTELEVEL;
    else if (sl == 5 && !memcmp(s, "llama", 5)) { tk->kind = MODEL_SPM; tk->score_merges = 1; tk->byte_fallback = 1; }
    else { tok_err(err, en, "%s: unsupported tokenizer.ggml.model \"%.*s\"", path, (int)sl, s); goto out; }
    if (load_gguf_vocab(tk, g, path, err, en)) goto out;
    if (tk->kind == MODEL_SPM) {
        int add_space = 1;
        if (mu_gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == 0) add_space = b;
        if (add_space) tok_norm_add(tk, NORM_PREPEND, 0, " ", 1, NULL, 0);
        tok_norm_add(tk, NORM_REPLACE, 0, " ", 1, META, 3);
        tk->dec_strip_space = add_space;
        tk->dec_byte_fallback = 1;   /* llama.cpp's byte tokens are their bytes */
    } else {
        const char *pre = "default";
        size_t pl = 7;
        if (mu_gguf_get_str(g, "tokenizer.ggml.pre", &s, &sl) == 0) { pre = s; pl = sl; }
        if (gguf_pre_splits(tk, pre, pl, err, en)) goto out;
    }
    if (tok_finish(tk, err, en)) goto out;
    if (tk->kind == MODEL_BYTELEVEL && load_gguf_merges(tk, g, path, err, en)) goto out;
    gguf_special_ids(tk, g);
    if (mu_gguf_get_str(g, "tokenizer.chat_template", &s, &sl) == 0) {
        char *t = dupn(s, sl);
        if (t) { set_chat_template(tk, t); free(t); }
    }
    rc = 0;
out:
    mu_gguf_close(g);
    return rc;
}

/* ================================================================ loading */
static int is_dir(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISDIR(st.st_mode); }
static int is_file(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode); }

static int has_gguf_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[4] = { 0 };
    if (!f) return 0;
    size_t r = fread(m, 1, 4, f);
    fclose(f);
    return r == 4 && !memcmp(m, "GGUF", 4);
}

mu_tokenizer *mu_tokenizer_load(const char *path, char *err, size_t en) {
    mu_tokenizer *tk = calloc(1, sizeof *tk);
    if (!tk) { tok_err(err, en, "%s: out of memory", path); return NULL; }
    tk->bos = tk->eos = tk->pad = tk->unk = -1;
    int rc;
    if (is_dir(path)) {
        size_t L = strlen(path) + 32;
        char *j = malloc(L), *c = malloc(L);
        snprintf(j, L, "%s/tokenizer.json", path);
        snprintf(c, L, "%s/tokenizer_config.json", path);
        tk->path = strdup(j);
        if (!is_file(j)) { tok_err(err, en, "%s: no tokenizer.json in this directory", path); rc = -1; }
        else rc = tok_load_json(tk, j, is_file(c) ? c : NULL, err, en);
        free(j); free(c);
    } else if (!is_file(path)) {
        tok_err(err, en, "%s: no such file", path);
        rc = -1;
    } else if (has_gguf_magic(path)) {
        tk->path = strdup(path);
        rc = tok_load_gguf(tk, path, err, en);
    } else {
        tk->path = strdup(path);
        const char *sl = strrchr(path, '/');
        size_t dl = sl ? (size_t)(sl - path) : 1;
        char *c = malloc(dl + 32);
        snprintf(c, dl + 32, "%.*s/tokenizer_config.json", (int)dl, sl ? path : ".");
        rc = tok_load_json(tk, path, is_file(c) ? c : NULL, err, en);
        free(c);
    }
    if (rc) { mu_tokenizer_free(tk); return NULL; }
    return tk;
}

/* ================================================================ chat templates */
mu_chat_kind mu_chat_detect(const char *t) {
    if (!t) return MU_CHAT_NONE;
    if (strstr(t, "<|im_start|>")) return MU_CHAT_CHATML;
    if (strstr(t, "<|start_header_id|>")) return MU_CHAT_LLAMA3;
    if (strstr(t, "<start_of_turn>")) return MU_CHAT_GEMMA;
    if (strstr(t, "[INST]")) return MU_CHAT_LLAMA2;
    return MU_CHAT_NONE;
}

const char *mu_chat_kind_name(mu_chat_kind k) {
    switch (k) {
    case MU_CHAT_CHATML: return "chatml";
    case MU_CHAT_LLAMA3: return "llama3";
    case MU_CHAT_LLAMA2: return "llama2";
    case MU_CHAT_GEMMA: return "gemma";
    default: return "none";
    }
}

/* The default system message a ChatML template inserts when there is none, as a literal
 * '<|im_start|>system\n...<|im_end|>' in the template (SmolLM2, Qwen2). */
static char *chatml_default_system(const char *t) {
    const char *pat = "<|im_start|>system";
    for (const char *p = strstr(t, pat); p; p = strstr(p + 1, pat)) {
        const char *s = p + strlen(pat);
        if (*s == '\n') s++;                               /* a newline in the template */
        else if (s[0] == '\\' && s[1] == 'n') s += 2;     /* or Jinja's '\n' escape */
        else continue;
        const char *e = strstr(s, "<|im_end|>");
        if (e && e > s && !memchr(s, '\'', (size_t)(e - s)) && !memchr(s, '{', (size_t)(e - s))) return dupn(s, (size_t)(e - s));
    }
    return NULL;
}

static void set_chat_template(mu_tokenizer *tk, const char *tmpl) {
    free(tk->chat_template);
    tk->chat_template = dupn(tmpl, strlen(tmpl));
    tk->chat = mu_chat_detect(tmpl);
    free(tk->chat_system);
    tk->chat_system = tk->chat == MU_CHAT_CHATML ? chatml_default_system(tmpl) : NULL;
}

const char *mu_tok_chat_default_system(const mu_tokenizer *tk) { return tk->chat_system; }

char *mu_tok_chat(const mu_tokenizer *tk, const char *system, const char *user) {
    return mu_chat_format(tk->chat, system ? system : tk->chat_system, user);
}

typedef struct { char *s; size_t n, cap; } sbuf;
static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) { b->cap = (b->n + n + 1) * 2; b->s = realloc(b->s, b->cap); }
    memcpy(b->s + b->n, s, n); b->n += n; b->s[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }
/* Jinja's |trim */
static void sb_trimmed(sbuf *b, const char *s) {
    size_t n = strlen(s);
    while (n && strchr(" \t\r\n", *s)) { s++; n--; }
    while (n && strchr(" \t\r\n", s[n - 1])) n--;
    sb_add(b, s, n);
}

char *mu_chat_format(mu_chat_kind kind, const char *system, const char *user) {
    sbuf b = { 0 };
    if (system && !*system) system = NULL;
    switch (kind) {
    case MU_CHAT_CHATML:
        if (system) { sb_str(&b, "<|im_start|>system\n"); sb_str(&b, system); sb_str(&b, "<|im_end|>\n"); }
        sb_str(&b, "<|im_start|>user\n"); sb_str(&b, user); sb_str(&b, "<|im_end|>\n<|im_start|>assistant\n");
        break;
    case MU_CHAT_LLAMA3:
        if (system) { sb_str(&b, "<|start_header_id|>system<|end_header_id|>\n\n"); sb_trimmed(&b, system); sb_str(&b, "<|eot_id|>"); }
        sb_str(&b, "<|start_header_id|>user<|end_header_id|>\n\n"); sb_trimmed(&b, user);
        sb_str(&b, "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    case MU_CHAT_LLAMA2:
        sb_str(&b, "[INST] ");
        if (system) { sb_str(&b, "<<SYS>>\n"); sb_trimmed(&b, system); sb_str(&b, "\n<</SYS>>\n\n"); }
        sb_trimmed(&b, user); sb_str(&b, " [/INST]");
        break;
    case MU_CHAT_GEMMA:
        sb_str(&b, "<start_of_turn>user\n");
        if (system) { sb_trimmed(&b, system); sb_str(&b, "\n\n"); }
        sb_trimmed(&b, user); sb_str(&b, "<end_of_turn>\n<start_of_turn>model\n");
        break;
    default:
        return NULL;
    }
    return b.s;
}
