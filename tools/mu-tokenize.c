/* mu-tokenize — data records (JSON Lines, JSON, CSV) -> a "tokens" stream, with the
 * token positions of template fields; --raw text -> ids; --decode ids -> text.
 * See mu-tokenize(1) and the "tokens" section of mu-stream(5). */
#define _GNU_SOURCE
#include "cli.h"
#include "ckpt.h"
#include "dataset.h"
#include "stream.h"
#include "tokenizer.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static const char usage[] =
    "Usage: mu-tokenize --model M [OPTIONS] [DATA]\n"
    "       mu-tokenize --model M --raw [--bos] [--eos] [--ids] [TEXTFILE]\n"
    "       mu-tokenize --model M --decode [--field F] [--ids] [STREAM]\n"
    "Tokenizes records of DATA (JSON Lines, a JSON array or CSV; '-' or none = stdin)\n"
    "into a \"tokens\" stream: per record the prompt ids, one id list per target\n"
    "candidate, the index of the right candidate, the token span of every template field\n"
    "and the other fields as metadata.\n"
    "\n"
    "Model:\n"
    "  --model M          HF model directory, tokenizer.json, or .gguf\n"
    "Records:\n"
    "  --format F         jsonl, json or csv (default: from the extension or content)\n"
    "  --columns A,B,..   names of the columns of a CSV without a header row\n"
    "  --prompt T         prompt template, e.g. 'Fact: {athlete} plays the sport of'\n"
    "                     (default '{prompt}'); escapes \\n \\t \\\\ \\{ \\}\n"
    "  --target T         target template, e.g. ' {sport}'\n"
    "  --choices 'A|B|..' candidate templates separated by '|' (e.g. ' football| golf')\n"
    "  --choices-field F  a field holding a list of candidate strings\n"
    "  --answer-field F   field holding the index of the right candidate\n"
    "                     (default: the candidate equal to the --target text; a --target\n"
    "                     not among the candidates becomes candidate 0)\n"
    "  --mc               multiple choice: prompt + '\\nA. ..\\nB. ..\\nAnswer:', candidates\n"
    "                     ' A', ' B', ..; the answer letter from --mc-answer\n"
    "  --mc-options LIST  option fields (default A,B,C,D)\n"
    "  --mc-answer F      field holding the answer letter (default answer)\n"
    "  --id-field F       record id from this field (default: the record index)\n"
    "  --rows A-B         only records A..B-1 (0-based; 'A-' to the end), e.g. a forget\n"
    "                     set of the first 16 rows: --rows 0-16; record ids stay global\n"
    "  --select FILE      only the records whose 0-based index is listed in FILE\n"
    "                     (whitespace-separated integers, in any order)\n"
    "  --span F           also record the token span of field F's value where it occurs\n"
    "                     in the prompt text (last occurrence; e.g. CounterFact's subject\n"
    "                     in its ready-made prompt); repeatable\n"
    "  --chat             wrap the prompt as a user turn in the model's chat template\n"
    "                     (ChatML, Llama-3, Llama-2, Gemma; from tokenizer_config.json or\n"
    "                     GGUF tokenizer.chat_template)\n"
    "  --system TEXT      system message for --chat (default: the template's own)\n"
    "Special tokens:\n"
    "  --bos, --no-bos    add / do not add BOS before the prompt (default: the model's)\n"
    "  --eos              add EOS after each target (after the prompt if no target)\n"
    "  --soft-tokens N    put N soft-prompt slots (ids -1 .. -N) at the prompt's start,\n"
    "                     after the BOS: their vectors come from mu-train --soft-tokens N\n"
    "                     (a soft prompt attack) and --soft-prompt FILE in the tools\n"
    "Modes:\n"
    "  --raw              encode all of the input as one text (no BOS unless --bos)\n"
    "  --decode           decode a tokens or outputs stream to text, records separated\n"
    "                     by a newline (none after the last)\n"
    "  --field F          tensor field to decode (default prompt, or generation for\n"
    "                     outputs); a list of tensors (targets) gives a line each\n"
    "  --keep-special     keep special tokens when decoding\n"
    "  --ids              text ids instead of streams: --raw prints them, --decode reads\n"
    "                     one sequence of whitespace-separated ids per line\n"
    "Output:\n"
    "  -o, --out FILE     output stream (atomic; default stdout)\n"
    "  -q, --quiet        no progress or warnings\n"
    "  -h, --help         this help;  -V, --version  version\n";

enum { O_MODEL = 256, O_FORMAT, O_COLUMNS, O_PROMPT, O_TARGET, O_CHOICES, O_CHOICES_FIELD, O_ANSWER_FIELD,
       O_MC, O_MC_OPTIONS, O_MC_ANSWER, O_ID_FIELD, O_CHAT, O_SYSTEM, O_BOS, O_NO_BOS, O_EOS, O_RAW,
       O_DECODE, O_FIELD, O_KEEP_SPECIAL, O_IDS, O_SPAN, O_ROWS, O_SELECT, O_SOFT };

typedef struct {
    const char *model, *out, *input, *format, *columns, *system, *choices_field, *answer_field,
        *mc_answer, *id_field, *field;
    mu_template *prompt, *target, **choices;
    int n_choices;
    char **mc_opts;
    int n_mc;
    const char **span_fields;
    int n_span_fields;
    size_t row_lo, row_hi;   /* --rows */
    const char *select;      /* --select FILE */
    long n_decoded;          /* records printed by --decode */
    int mc, chat, bos, eos, keep_special, ids;
    int soft;                /* --soft-tokens: slots after the BOS */
    size_t model_vocab;      /* --decode: the model's vocabulary (may pad the tokenizer's) */
    mu_tokenizer *tk;
    mu_chat_kind chat_kind;
    long n_boundary_fallback;
} opts;

/* ---------------------------------------------------------------- helpers */
static char **split_list(const char *s, char sep, int *n) {
    char **v = NULL;
    *n = 0;
    for (const char *p = s;;) {
        const char *e = strchr(p, sep);
        size_t l = e ? (size_t)(e - p) : strlen(p);
        v = mu_xrealloc(v, (size_t)(*n + 1) * sizeof *v);
        v[*n] = mu_xmalloc(l + 1);
        memcpy(v[*n], p, l); v[*n][l] = 0;
        (*n)++;
        if (!e) break;
        p = e + 1;
    }
    return v;
}

static mu_template *parse_template_or_die(const char *what, const char *spec) {
    char err[256];
    mu_template *t = mu_template_parse(spec, err, sizeof err);
    if (!t) mu_usage_error("--%s: %s", what, err);
    return t;
}

static void pack_ids(msgpack_packer *pk, const int32_t *ids, size_t n) {
    int64_t shape[1] = { (int64_t)n };
    mu_pack_tensor(pk, MU_I32, 1, shape, ids);
}

static void encode_or_die(opts *o, const char *what, const char *text, size_t len, int32_t **ids, size_t **offs, size_t *n) {
    char err[256];
    int rc = offs ? mu_tok_encode_offsets(o->tk, text, len, ids, offs, n, err, sizeof err)
                  : mu_tok_encode(o->tk, text, len, 0, ids, n, err, sizeof err);
    if (rc) mu_die("%s: %s", what, err);
}

/* ---------------------------------------------------------------- records */
typedef struct { char **text; int n; int answer; } cands;

static void cands_add(cands *c, char *t) {
    c->text = mu_xrealloc(c->text, (size_t)(c->n + 1) * sizeof *c->text);
    c->text[c->n++] = t;
}

static char *fill_or_die(const opts *o, const mu_template *t, json_t *rec, const char *dname, size_t ri,
                         mu_span *spans, size_t *len) {
    char err[256], *text;
    size_t l;
    (void)o;
    if (mu_template_fill(t, rec, &text, &l, spans, err, sizeof err)) mu_die("%s: record %zu: %s", dname, ri, err);
    if (len) *len = l;
    return text;
}

/* The candidates of a record and the index of the right one (-1 if none). */
/* An integer, or a string of decimal digits (CSV fields are strings). */
static int json_integer_or_digits(json_t *v, int64_t *out) {
    if (json_is_integer(v)) { *out = json_integer_value(v); return 1; }
    if (!json_is_string(v)) return 0;
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (end == s || *end || errno) return 0;
    *out = x;
    return 1;
}

static cands record_candidates(const opts *o, json_t *rec, const char *dname, size_t ri) {
    cands c = { NULL, 0, -1 };
    char err[256];
    if (o->mc) {
        for (int k = 0; k < o->n_mc; k++) {
            char t[8];
            snprintf(t, sizeof t, " %c", 'A' + k);
            cands_add(&c, mu_xstrdup(t));
        }
        char *ans = mu_field_text(json_object_get(rec, o->mc_answer), o->mc_answer, err, sizeof err);
        if (!ans) mu_die("%s: record %zu: %s", dname, ri, err);
        for (int k = 0; k < o->n_mc; k++) if (ans[0] == 'A' + k && !ans[1]) c.answer = k;
        if (c.answer < 0) mu_die("%s: record %zu: answer \"%s\" is not one of A..%c", dname, ri, ans, 'A' + o->n_mc - 1);
        free(ans);
        return c;
    }
    for (int k = 0; k < o->n_choices; k++) cands_add(&c, fill_or_die(o, o->choices[k], rec, dname, ri, NULL, NULL));
    if (o->choices_field) {
        json_t *arr = json_object_get(rec, o->choices_field), *x;
        size_t i;
        if (!json_is_array(arr)) mu_die("%s: record %zu: field %s is %s, not a list", dname, ri, o->choices_field, arr ? "not a list" : "missing");
        json_array_foreach(arr, i, x) {
            char *t = mu_field_text(x, o->choices_field, err, sizeof err);
            if (!t) mu_die("%s: record %zu: %s[%zu]: %s", dname, ri, o->choices_field, i, err);
            cands_add(&c, t);
        }
    }
    if (o->target) {
        char *t = fill_or_die(o, o->target, rec, dname, ri, NULL, NULL);
        for (int k = 0; k < c.n && c.answer < 0; k++) if (!strcmp(c.text[k], t)) c.answer = k;
        if (c.answer < 0) {
            c.text = mu_xrealloc(c.text, (size_t)(c.n + 1) * sizeof *c.text);
            memmove(c.text + 1, c.text, (size_t)c.n * sizeof *c.text);
            c.text[0] = t; c.n++;
            c.answer = c.n > 1 ? 0 : -1;
        } else free(t);
    }
    if (o->answer_field) {
        int64_t a;
        json_t *v = json_object_get(rec, o->answer_field);
        if (!json_integer_or_digits(v, &a) || a < 0 || a >= c.n)
            mu_die("%s: record %zu: %s is not a candidate index in 0..%d", dname, ri, o->answer_field, c.n - 1);
        c.answer = (int)a;
    }
    return c;
}

/* Target ids: the tokens that follow the prompt when prompt+target is tokenized as one
 * text (what a model scoring the pair sees). If the prompt's own tokens are not a prefix
 * of that (a merge across the boundary), the target is tokenized alone. */
static int32_t *target_ids(opts *o, const char *ptext, size_t plen, const int32_t *pids, size_t np,
                           const char *ttext, size_t *nt, const char *what) {
    size_t tl = strlen(ttext), n;
    char *joint = mu_xmalloc(plen + tl + 1);
    memcpy(joint, ptext, plen); memcpy(joint + plen, ttext, tl + 1);
    int32_t *ids;
    encode_or_die(o, what, joint, plen + tl, &ids, NULL, &n);
    free(joint);
    if (n >= np && !memcmp(ids, pids, np * sizeof *ids)) {
        memmove(ids, ids + np, (n - np) * sizeof *ids);
        *nt = n - np;
        return ids;
    }
    free(ids);
    o->n_boundary_fallback++;
    encode_or_die(o, what, ttext, tl, &ids, NULL, nt);
    return ids;
}

/* Wraps the user text in the chat template; *delta is where user[0] landed (the
 * templates that trim the message shift it by the trimmed whitespace). */
static char *chat_wrap(const opts *o, const char *user, long *delta) {
    char *t = mu_tok_chat(o->tk, o->system, user);
    const char *u = user;
    while (*u && strchr(" \t\r\n", *u)) u++;
    size_t ul = strlen(u);
    while (ul && strchr(" \t\r\n", u[ul - 1])) ul--;
    const char *at = NULL;
    if (ul) {
        /* the user text is the last occurrence before the assistant opening */
        for (const char *p = t; (p = memmem(p, strlen(p), u, ul)); p++) at = p;
    }
    *delta = at ? (long)(at - t) - (long)(u - user) : 0;
    return t;
}

static int field_used(const opts *o, const char *f) {
    const mu_template *ts[2] = { o->prompt, o->target };
    for (int k = 0; k < 2; k++)
        if (ts[k]) for (int i = 0; i < mu_template_nfields(ts[k]); i++) if (!strcmp(mu_template_field(ts[k], i), f)) return 1;
    for (int c = 0; c < o->n_choices; c++)
        for (int i = 0; i < mu_template_nfields(o->choices[c]); i++) if (!strcmp(mu_template_field(o->choices[c], i), f)) return 1;
    if (o->choices_field && !strcmp(o->choices_field, f)) return 1;
    if (o->answer_field && !strcmp(o->answer_field, f)) return 1;
    if (o->id_field && !strcmp(o->id_field, f)) return 1;
    if (o->mc) {
        if (!strcmp(o->mc_answer, f)) return 1;
        for (int k = 0; k < o->n_mc; k++) if (!strcmp(o->mc_opts[k], f)) return 1;
    }
    return 0;
}

/* Appends "\nA. <option>..." and "\nAnswer:" (--mc). */
static char *append_mc_options(const opts *o, json_t *rec, const char *what, char *ptext, size_t *plen) {
    char err[256];
    for (int k = 0; k < o->n_mc; k++) {
        char *opt = mu_field_text(json_object_get(rec, o->mc_opts[k]), o->mc_opts[k], err, sizeof err);
        if (!opt) mu_die("%s: %s", what, err);
        size_t ol = strlen(opt);
        ptext = mu_xrealloc(ptext, *plen + ol + 8);
        *plen += (size_t)sprintf(ptext + *plen, "\n%c. ", 'A' + k);
        memcpy(ptext + *plen, opt, ol + 1);
        *plen += ol;
        free(opt);
    }
    ptext = mu_xrealloc(ptext, *plen + 16);
    *plen += (size_t)sprintf(ptext + *plen, "\nAnswer:");
    return ptext;
}

/* --span F: the byte range of F's value in the prompt text (its last occurrence). */
static mu_span locate_field(const opts *o, json_t *rec, const char *what, const char *f, const char *ptext, size_t plen) {
    char err[256], *val = mu_field_text(json_object_get(rec, f), f, err, sizeof err);
    if (!val) mu_die("%s: --span: %s", what, err);
    size_t vl = strlen(val);
    const char *at = NULL;
    (void)o;
    for (const char *p = ptext; vl && (p = memmem(p, plen - (size_t)(p - ptext), val, vl)); p++) at = p;
    if (!at) mu_die("%s: --span %s: \"%.60s\" does not occur in the prompt", what, f, val);
    free(val);
    return (mu_span){ f, (size_t)(at - ptext), (size_t)(at - ptext) + vl };
}

/* The prompt text of a record: template, multiple-choice options, chat template; with the
 * byte ranges of its fields in spans (*nspans of them). */
static char *build_prompt(const opts *o, json_t *rec, const char *dname, size_t ri, const char *what,
                          mu_span *spans, int *nspans, size_t *plen) {
    int nf = mu_template_nfields(o->prompt);
    char *ptext = fill_or_die(o, o->prompt, rec, dname, ri, spans, plen);
    if (o->mc) ptext = append_mc_options(o, rec, what, ptext, plen);
    if (o->chat) {
        long delta;
        char *c = chat_wrap(o, ptext, &delta);
        for (int i = 0; i < nf; i++) {
            long s = (long)spans[i].start + delta, e = (long)spans[i].end + delta;
            spans[i].start = s < 0 ? 0 : (size_t)s;
            spans[i].end = e < 0 ? 0 : (size_t)e;
        }
        free(ptext);
        ptext = c;
        *plen = strlen(c);
    }
    for (int k = 0; k < o->n_span_fields; k++) spans[nf + k] = locate_field(o, rec, what, o->span_fields[k], ptext, *plen);
    *nspans = nf + o->n_span_fields;
    return ptext;
}

/* "targets": one id list per candidate (continuations of the prompt), "target_texts",
 * "answer". */
static void pack_targets(opts *o, msgpack_packer *pk, const cands *c, const char *ptext, size_t plen,
                         const int32_t *pids, size_t np, const char *what) {
    mu_pack_str(pk, "targets");
    msgpack_pack_array(pk, (size_t)c->n);
    for (int t = 0; t < c->n; t++) {
        size_t nt;
        int32_t *tids = target_ids(o, ptext, plen, pids, np, c->text[t], &nt, what);
        if (o->eos) { tids = mu_xrealloc(tids, (nt + 1) * sizeof *tids); tids[nt++] = mu_tok_eos(o->tk); }
        pack_ids(pk, tids, nt);
        free(tids);
    }
    mu_pack_str(pk, "target_texts");
    msgpack_pack_array(pk, (size_t)c->n);
    for (int t = 0; t < c->n; t++) mu_pack_str(pk, c->text[t]);
    if (c->answer >= 0) mu_pack_kv_int(pk, "answer", c->answer);
}

static int span_overridden(const mu_span *spans, int n, int i) {
    for (int j = i + 1; j < n; j++) if (!strcmp(spans[i].field, spans[j].field)) return 1;
    return 0;
}

/* "spans": field -> [start, end) in prompt tokens (shifted by the BOS); a field's last
 * occurrence wins. */
static void pack_spans(msgpack_packer *pk, const mu_span *spans, int n, const size_t *offs, size_t np, int shift) {
    int nuniq = 0;
    for (int i = 0; i < n; i++) nuniq += !span_overridden(spans, n, i);
    mu_pack_str(pk, "spans");
    msgpack_pack_map(pk, (size_t)nuniq);
    for (int i = 0; i < n; i++) {
        if (span_overridden(spans, n, i)) continue;
        size_t ts, te;
        mu_tok_span(offs, np, spans[i].start, spans[i].end, &ts, &te);
        mu_pack_str(pk, spans[i].field);
        msgpack_pack_array(pk, 2);
        msgpack_pack_int64(pk, (int64_t)ts + shift);
        msgpack_pack_int64(pk, (int64_t)te + shift);
    }
}

/* "meta": the fields no template or option used. */
static void pack_meta(const opts *o, msgpack_packer *pk, json_t *rec) {
    const char *k;
    json_t *v;
    size_t nmeta = 0;
    json_object_foreach(rec, k, v) nmeta += !field_used(o, k);
    mu_pack_str(pk, "meta");
    msgpack_pack_map(pk, nmeta);
    json_object_foreach(rec, k, v) if (!field_used(o, k)) { mu_pack_str(pk, k); mu_pack_json(pk, v); }
}

static void tokenize_record(opts *o, mu_writer *w, json_t *rec, const char *dname, size_t ri) {
    char what[512];
    snprintf(what, sizeof what, "%s: record %zu", dname, ri);
    json_t *idv = o->id_field ? json_object_get(rec, o->id_field) : NULL;
    if (o->id_field && !idv) mu_die("%s: id field %s is not in the record", what, o->id_field);
    mu_span *spans = mu_xcalloc((size_t)(mu_template_nfields(o->prompt) + o->n_span_fields) + 1, sizeof *spans);
    int nspans;
    size_t plen, np, *offs;
    char *ptext = build_prompt(o, rec, dname, ri, what, spans, &nspans, &plen);
    int32_t *pids;
    encode_or_die(o, what, ptext, plen, &pids, &offs, &np);
    cands c = record_candidates(o, rec, dname, ri);
    /* prompt ids: BOS, the soft-prompt slots, the text's ids, EOS when there are no targets
       and --eos */
    int nb = (o->bos ? 1 : 0) + o->soft;
    size_t nfull = np + (size_t)nb + (o->eos && c.n == 0 ? 1 : 0);
    int32_t *full = mu_xmalloc((nfull + 1) * sizeof *full);
    if (o->bos) full[0] = mu_tok_bos(o->tk);
    for (int j = 0; j < o->soft; j++) full[nb - o->soft + j] = -1 - j;
    memcpy(full + nb, pids, np * sizeof *pids);
    if (o->eos && c.n == 0) full[nfull - 1] = mu_tok_eos(o->tk);

    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 5 + (c.n ? 2 : 0) + (c.n && c.answer >= 0 ? 1 : 0));
    mu_pack_str(pk, "id");
    if (idv) mu_pack_json(pk, idv); else msgpack_pack_int64(pk, (int64_t)ri);
    mu_pack_str(pk, "prompt");
    pack_ids(pk, full, nfull);
    mu_pack_kv_str(pk, "prompt_text", ptext);
    if (c.n) pack_targets(o, pk, &c, ptext, plen, pids, np, what);
    pack_spans(pk, spans, nspans, offs, np, nb);
    pack_meta(o, pk, rec);
    mu_writer_end_record(w);
    for (int t = 0; t < c.n; t++) free(c.text[t]);
    free(c.text); free(full); free(pids); free(offs); free(ptext); free(spans);
}

static void write_header_meta(opts *o, mu_writer *w, const char *prompt_spec, const char *target_spec) {
    msgpack_packer *pk;
    mu_writer_add_input(w, "model", o->model);
    if (o->input && strcmp(o->input, "-")) mu_writer_add_input(w, "data", o->input);
    pk = mu_writer_meta(w, "model"); mu_pack_str(pk, o->model);
    pk = mu_writer_meta(w, "tokenizer"); mu_pack_str(pk, mu_tok_model_kind(o->tk));
    pk = mu_writer_meta(w, "vocab_size"); msgpack_pack_int64(pk, (int64_t)mu_tok_vocab_size(o->tk));
    pk = mu_writer_meta(w, "bos"); msgpack_pack_int64(pk, o->bos ? mu_tok_bos(o->tk) : -1);
    pk = mu_writer_meta(w, "eos"); msgpack_pack_int64(pk, mu_tok_eos(o->tk));
    pk = mu_writer_meta(w, "add_eos"); if (o->eos) msgpack_pack_true(pk); else msgpack_pack_false(pk);
    if (o->soft) { pk = mu_writer_meta(w, "soft_tokens"); msgpack_pack_int64(pk, o->soft); }
    if (prompt_spec) { pk = mu_writer_meta(w, "prompt_template"); mu_pack_str(pk, prompt_spec); }
    if (target_spec) { pk = mu_writer_meta(w, "target_template"); mu_pack_str(pk, target_spec); }
    pk = mu_writer_meta(w, "chat"); mu_pack_str(pk, o->chat ? mu_chat_kind_name(o->chat_kind) : "none");
    pk = mu_writer_meta(w, "span_rule");
    mu_pack_str(pk, "whole-prompt tokenization; a span is the tokens whose input bytes overlap the field value");
}

/* ---------------------------------------------------------------- modes */
static char *read_all(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) mu_die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *b = mu_xmalloc(cap + 1);
    for (;;) {
        n += fread(b + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        b = mu_xrealloc(b, cap + 1);
    }
    if (ferror(f)) mu_die("%s: read error", path);
    if (f != stdin) fclose(f);
    b[n] = 0;
    *len = n;
    return b;
}

static void print_ids(const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
}

static int run_raw(opts *o) {
    size_t len, n;
    const char *name = strcmp(o->input, "-") ? o->input : "(stdin)";
    char *text = read_all(o->input, &len), err[256];
    int32_t *ids;
    if (mu_tok_encode(o->tk, text, len, 0, &ids, &n, err, sizeof err)) mu_die("%s: %s", name, err);
    size_t nf = n + (o->bos ? 1 : 0) + (o->eos ? 1 : 0);
    int32_t *full = mu_xmalloc((nf + 1) * sizeof *full);
    if (o->bos) full[0] = mu_tok_bos(o->tk);
    memcpy(full + (o->bos ? 1 : 0), ids, n * sizeof *ids);
    if (o->eos) full[nf - 1] = mu_tok_eos(o->tk);
    if (o->ids) {
        print_ids(full, nf);
        mu_stdout_flush_or_die();
    } else {
        mu_writer *w = mu_writer_open(o->out, "tokens");
        write_header_meta(o, w, NULL, NULL);
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 2);
        mu_pack_kv_int(pk, "id", 0);
        mu_pack_str(pk, "prompt");
        pack_ids(pk, full, nf);
        mu_writer_end_record(w);
        mu_writer_close(w);
    }
    free(full); free(ids); free(text);
    return 0;
}

/* The vocabulary of the model at path (its config may pad the tokenizer's), or the
 * tokenizer's when path is no checkpoint (a bare tokenizer.json). */
static size_t model_vocab(const char *path, const mu_tokenizer *tk) {
    char err[256];
    size_t v = mu_tok_vocab_size(tk);
    mu_ckpt *c = mu_ckpt_open(path, err, sizeof err);
    if (c) {
        if (mu_ckpt_config(c)->vocab > 0 && (size_t)mu_ckpt_config(c)->vocab > v) v = (size_t)mu_ckpt_config(c)->vocab;
        mu_ckpt_close(c);
    }
    return v;
}

static void print_decoded(opts *o, const int32_t *ids, size_t n, const char *what) {
    char *text, err[256];
    size_t len;
    if (mu_tok_decode_model_ids(o->tk, ids, n, o->model_vocab, !o->keep_special, &text, &len, err, sizeof err))
        mu_die("%s: %s", what, err);
    /* records are separated by a newline, none after the last: one record decodes to
       exactly its text (the stories260K greedy text byte for byte) */
    if (o->n_decoded++) fputc('\n', stdout);
    fwrite(text, 1, len, stdout);
    free(text);
}

static int run_decode_ids(opts *o) {
    size_t len;
    const char *name = strcmp(o->input, "-") ? o->input : "(stdin)";
    char *text = read_all(o->input, &len), *line = text, what[300];
    size_t lineno = 0;
    while (line && *line) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        lineno++;
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        for (char *p = line;;) {
            while (*p == ' ' || *p == '\t' || *p == '\r' || *p == ',') p++;
            if (!*p) break;
            char *e;
            errno = 0;
            long v = strtol(p, &e, 10);
            if (e == p || errno || v < 0 || v > INT32_MAX) mu_die("%s: line %zu: not a token id: \"%.20s\"", name, lineno, p);
            if (n == cap) { cap = cap * 2 + 64; ids = mu_xrealloc(ids, cap * sizeof *ids); }
            ids[n++] = (int32_t)v;
            p = e;
        }
        snprintf(what, sizeof what, "%s: line %zu", name, lineno);
        print_decoded(o, ids, n, what);
        free(ids);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    mu_stdout_flush_or_die();
    return 0;
}

/* Decodes one i32/i64 tensor of the current record. */
static void decode_tensor(opts *o, mu_reader *r, const char *field, const msgpack_object *f) {
    char err[256], what[300];
    mu_tensor_view t;
    if (mu_obj_tensor(f, &t, err, sizeof err)) mu_reader_die(r, "%s: %s", field, err);
    if (t.dtype != MU_I32 && t.dtype != MU_I64) mu_reader_die(r, "%s: dtype %s, want i32 or i64", field, mu_dtype_name(t.dtype));
    int64_t numel = mu_shape_numel(t.ndim, t.shape);
    int32_t *ids = mu_xmalloc(((size_t)numel + 1) * sizeof *ids);
    size_t n = 0;
    for (int64_t i = 0; i < numel; i++) {
        int64_t v;
        if (t.dtype == MU_I32) { int32_t x; memcpy(&x, (const char *)t.data + 4 * i, 4); v = x; }
        else memcpy(&v, (const char *)t.data + 8 * i, 8);
        if (v < -65536 || v > INT32_MAX) mu_reader_die(r, "%s: token %lld is %lld", field, (long long)i, (long long)v);
        if (v >= 0) ids[n++] = (int32_t)v;   /* soft-prompt slots (ids -1 .. -65536) have no text */
    }
    snprintf(what, sizeof what, "%s: record %ld", mu_reader_path(r), mu_reader_record_index(r));
    print_decoded(o, ids, n, what);
    free(ids);
}

/* Each record's field (a tensor, or a list of tensors such as "targets": one line each). */
static int run_decode_stream(opts *o) {
    mu_reader *r = mu_reader_open_or_die(o->input, NULL);
    const char *kind = mu_reader_kind(r);
    const char *field = o->field ? o->field : !strcmp(kind, "outputs") ? "generation" : "prompt";
    const msgpack_object *rec;
    while ((rec = mu_reader_next_or_die(r))) {
        const msgpack_object *f = mu_obj_get(rec, field);
        if (!f) mu_reader_die(r, "no \"%s\" tensor", field);
        if (f->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t k = 0; k < f->via.array.size; k++) decode_tensor(o, r, field, &f->via.array.ptr[k]);
        else decode_tensor(o, r, field, f);
    }
    mu_reader_close(r);
    mu_stdout_flush_or_die();
    return 0;
}

/* --select FILE: a flag per record index listed in FILE (indices must be < n). */
static unsigned char *read_selection_or_die(const char *path, size_t n) {
    FILE *f = fopen(path, "r");
    if (!f) mu_die("%s: %s", path, strerror(errno));
    unsigned char *keep = mu_xcalloc(n ? n : 1, 1);
    char tok[64];
    long k = 0;
    while (fscanf(f, "%63s", tok) == 1) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(tok, &end, 10);
        if (*end || end == tok || errno || tok[0] == '-')
            mu_die("%s: entry %ld: \"%s\" is not a record index", path, k + 1, tok);
        if (v >= n) mu_die("%s: entry %ld: record %llu, but the data has %zu records", path, k + 1, v, n);
        keep[v] = 1;
        k++;
    }
    if (ferror(f)) mu_die("%s: read error", path);
    fclose(f);
    return keep;
}

/* --rows A-B: records A..B-1; "A-" runs to the end. */
static void parse_rows_or_die(const char *spec, size_t *lo, size_t *hi) {
    char *end;
    errno = 0;
    unsigned long long a = strtoull(spec, &end, 10), b = SIZE_MAX;
    if (end == spec || *end != '-' || errno) mu_usage_error("--rows %s: expected A-B (e.g. 0-16) or A-", spec);
    const char *rest = end + 1;
    if (*rest) {
        b = strtoull(rest, &end, 10);
        if (end == rest || *end || errno || b < a) mu_usage_error("--rows %s: expected A-B with A <= B", spec);
    }
    *lo = (size_t)a;
    *hi = (size_t)b;
}

static int run_records(opts *o, const char *prompt_spec, const char *target_spec) {
    char err[512];
    mu_ds_format fmt = MU_DS_AUTO;
    if (o->format) {
        if (!strcmp(o->format, "jsonl")) fmt = MU_DS_JSONL;
        else if (!strcmp(o->format, "json")) fmt = MU_DS_JSON;
        else if (!strcmp(o->format, "csv")) fmt = MU_DS_CSV;
        else mu_usage_error("--format: %s is not jsonl, json or csv", o->format);
    }
    mu_dataset *ds = mu_dataset_load(o->input, fmt, o->columns, err, sizeof err);
    if (!ds) mu_die("%s", err);
    mu_writer *w = mu_writer_open(o->out, "tokens");
    write_header_meta(o, w, prompt_spec, target_spec);
    size_t n = mu_dataset_len(ds);
    size_t lo = o->row_lo < n ? o->row_lo : n, hi = o->row_hi < n ? o->row_hi : n;
    unsigned char *keep = o->select ? read_selection_or_die(o->select, n) : NULL;
    for (size_t i = lo; i < hi; i++) {
        if (keep && !keep[i]) continue;
        tokenize_record(o, w, mu_dataset_record(ds, i), mu_dataset_path(ds), i);
        mu_progress("tokenize", i + 1 - lo, hi - lo);
    }
    mu_progress_done();
    mu_writer_close(w);
    if (o->n_boundary_fallback && !mu_quiet)
        mu_warn("%ld target(s) merged with the end of their prompt; those were tokenized alone", o->n_boundary_fallback);
    mu_dataset_free(ds);
    free(keep);
    return 0;
}

/* Records' BOS and EOS: the tokenizer's defaults unless --bos/--no-bos/--eos said, each
 * refused where the model has no such token; --chat's template family */
static void set_record_specials(opts *o) {
    if (o->bos < 0) o->bos = mu_tok_add_bos_default(o->tk) && mu_tok_bos(o->tk) >= 0;
    if (o->bos && mu_tok_bos(o->tk) < 0) mu_die("%s: --bos: the model has no BOS token", o->model);
    if (!o->eos && mu_tok_add_eos_default(o->tk)) o->eos = 1;
    if (o->eos && mu_tok_eos(o->tk) < 0) mu_die("%s: --eos: the model has no EOS token", o->model);
    if (o->chat) {
        o->chat_kind = mu_tok_chat_kind(o->tk);
        if (o->chat_kind == MU_CHAT_NONE)
            mu_die("%s: --chat: no chat template of a known family (ChatML, Llama-3, Llama-2, Gemma)", o->model);
    }
}

/* The records' templates: --prompt (default {prompt}), --target, --choices (A|B|...) and
 * --mc-options */
static void parse_record_templates(opts *o, const char *prompt_spec, const char *target_spec,
                                   const char *choices_spec, const char *mc_opts) {
    o->prompt = parse_template_or_die("prompt", prompt_spec ? prompt_spec : "{prompt}");
    if (target_spec) o->target = parse_template_or_die("target", target_spec);
    if (choices_spec) {
        int n;
        char **parts = split_list(choices_spec, '|', &n);
        o->choices = mu_xmalloc((size_t)n * sizeof *o->choices);
        for (int i = 0; i < n; i++) { o->choices[i] = parse_template_or_die("choices", parts[i]); free(parts[i]); }
        o->n_choices = n;
        free(parts);
    }
    if (o->mc) {
        o->mc_opts = split_list(mc_opts, ',', &o->n_mc);
        if (o->n_mc < 2 || o->n_mc > 26) mu_usage_error("--mc-options: 2 to 26 fields");
    }
}

static void free_record_templates(opts *o) {
    mu_template_free(o->prompt);
    mu_template_free(o->target);
    for (int i = 0; i < o->n_choices; i++) mu_template_free(o->choices[i]);
    free(o->choices);
    for (int i = 0; i < o->n_mc; i++) free(o->mc_opts[i]);
    free(o->mc_opts);
}

int main(int argc, char **argv) {
    mu_cli_init("mu-tokenize", argc, argv);
    opts o;
    memset(&o, 0, sizeof o);
    o.out = "-";
    o.bos = -1;
    o.mc_answer = "answer";
    o.row_hi = SIZE_MAX;
    const char *prompt_spec = NULL, *target_spec = NULL, *choices_spec = NULL, *mc_opts = "A,B,C,D";
    int raw = 0, decode = 0, opt;
    static const struct option lo[] = {
        {"model", required_argument, 0, O_MODEL}, {"format", required_argument, 0, O_FORMAT},
        {"columns", required_argument, 0, O_COLUMNS}, {"prompt", required_argument, 0, O_PROMPT},
        {"target", required_argument, 0, O_TARGET}, {"choices", required_argument, 0, O_CHOICES},
        {"choices-field", required_argument, 0, O_CHOICES_FIELD}, {"answer-field", required_argument, 0, O_ANSWER_FIELD},
        {"mc", no_argument, 0, O_MC}, {"mc-options", required_argument, 0, O_MC_OPTIONS},
        {"mc-answer", required_argument, 0, O_MC_ANSWER}, {"id-field", required_argument, 0, O_ID_FIELD},
        {"chat", no_argument, 0, O_CHAT}, {"system", required_argument, 0, O_SYSTEM},
        {"bos", no_argument, 0, O_BOS}, {"no-bos", no_argument, 0, O_NO_BOS}, {"eos", no_argument, 0, O_EOS},
        {"raw", no_argument, 0, O_RAW}, {"decode", no_argument, 0, O_DECODE}, {"field", required_argument, 0, O_FIELD},
        {"keep-special", no_argument, 0, O_KEEP_SPECIAL}, {"ids", no_argument, 0, O_IDS},
        {"span", required_argument, 0, O_SPAN}, {"rows", required_argument, 0, O_ROWS},
        {"select", required_argument, 0, O_SELECT}, {"soft-tokens", required_argument, 0, O_SOFT},
        {"out", required_argument, 0, 'o'}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    while ((opt = getopt_long(argc, argv, ":o:hVq", lo, NULL)) != -1) {
        if (mu_cli_common(opt, usage)) continue;
        switch (opt) {
        case O_MODEL: o.model = optarg; break;
        case O_FORMAT: o.format = optarg; break;
        case O_COLUMNS: o.columns = optarg; break;
        case O_PROMPT: prompt_spec = optarg; break;
        case O_TARGET: target_spec = optarg; break;
        case O_CHOICES: choices_spec = optarg; break;
        case O_CHOICES_FIELD: o.choices_field = optarg; break;
        case O_ANSWER_FIELD: o.answer_field = optarg; break;
        case O_MC: o.mc = 1; break;
        case O_MC_OPTIONS: mc_opts = optarg; break;
        case O_MC_ANSWER: o.mc_answer = optarg; break;
        case O_ID_FIELD: o.id_field = optarg; break;
        case O_CHAT: o.chat = 1; break;
        case O_SYSTEM: o.system = optarg; break;
        case O_BOS: o.bos = 1; break;
        case O_NO_BOS: o.bos = 0; break;
        case O_EOS: o.eos = 1; break;
        case O_RAW: raw = 1; break;
        case O_DECODE: decode = 1; break;
        case O_FIELD: o.field = optarg; break;
        case O_KEEP_SPECIAL: o.keep_special = 1; break;
        case O_IDS: o.ids = 1; break;
        case O_SPAN:
            o.span_fields = mu_xrealloc(o.span_fields, (size_t)(o.n_span_fields + 1) * sizeof *o.span_fields);
            o.span_fields[o.n_span_fields++] = optarg;
            break;
        case O_SELECT: o.select = optarg; break;
        case O_SOFT: o.soft = (int)mu_parse_int("--soft-tokens", optarg, 1, 65536); break;
        case O_ROWS: parse_rows_or_die(optarg, &o.row_lo, &o.row_hi); break;
        case 'o': o.out = optarg; break;
        case ':': mu_usage_error("option %s needs a value", argv[optind - 1]);
        default: mu_usage_error("unknown option %s (see --help)", argv[optind - 1]);
        }
    }
    if (!o.model) mu_usage_error("--model is required");
    if (optind + 1 < argc) mu_usage_error("one input at most (got %d)", argc - optind);
    o.input = optind < argc ? argv[optind] : "-";
    if (raw && decode) mu_usage_error("--raw and --decode exclude each other");
    if (o.soft && (raw || decode)) mu_usage_error("--soft-tokens puts slots in records' prompts: not with --raw or --decode");
    if (o.mc && (choices_spec || o.choices_field || target_spec)) mu_usage_error("--mc makes its own candidates: no --target/--choices");
    if (o.answer_field && !choices_spec && !o.choices_field) mu_usage_error("--answer-field needs --choices or --choices-field");
    char err[512];
    o.tk = mu_tokenizer_load(o.model, err, sizeof err);
    if (!o.tk) mu_die("%s", err);
    if (decode) {
        o.model_vocab = model_vocab(o.model, o.tk);
        int rc = o.ids ? run_decode_ids(&o) : run_decode_stream(&o);
        mu_tokenizer_free(o.tk);
        return rc;
    }
    if (raw) {
        if (o.bos < 0) o.bos = 0;
        if (o.bos && mu_tok_bos(o.tk) < 0) mu_die("%s: --bos: the model has no BOS token", o.model);
        if (o.eos && mu_tok_eos(o.tk) < 0) mu_die("%s: --eos: the model has no EOS token", o.model);
        int rc = run_raw(&o);
        mu_tokenizer_free(o.tk);
        return rc;
    }
    set_record_specials(&o);
    parse_record_templates(&o, prompt_spec, target_spec, choices_spec, mc_opts);
    int rc = run_records(&o, prompt_spec ? prompt_spec : "{prompt}", target_spec);
    free_record_templates(&o);
    free(o.span_fields);
    mu_tokenizer_free(o.tk);
    return rc;
}
