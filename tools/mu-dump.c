/* mu-dump — prints mu streams as JSON Lines: the header, then one line per record.
 * Tensor maps {"dtype","shape","data"} are summarized (first 8 values) unless --full.
 * Several files read as one concatenated stream (same kind required). With --model, the
 * checkpoint as mu reads it instead: its config and digest, then one line per parameter. */
#define _GNU_SOURCE
#include "arch.h"
#include "ckpt.h"
#include "cli.h"
#include "model_cli.h"
#include "safetensors.h"
#include "soft.h"
#include "stream.h"
#include "tokenizer.h"
#include <getopt.h>
#include <limits.h>
#include <sys/stat.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static const char usage[] =
    "Usage: mu-dump [OPTION]... [FILE]...\n"
    "  or:  mu-dump --model PATH [--delta FILE]... [OPTION]...\n"
    "  or:  mu-dump --soft-prompt FILE [--model PATH [--delta FILE]...] [OPTION]...\n"
    "Print mu streams (*.mpk.zst) as JSON Lines: the header map first, then one line\n"
    "per record. Several FILEs read as one stream (all of the same kind); no FILE or\n"
    "'-' reads standard input. With --model, print the checkpoint (HF directory or GGUF\n"
    "file) as mu reads it: a header line with its format, digest and config (HF keys,\n"
    "as mu understood them), then one line per parameter tensor (HF name, role, layer,\n"
    "block, shape, element count, stored type, and with --delta the elements each\n"
    "delta sets; --stats adds the weights' statistics). With --soft-prompt, print a\n"
    "soft-prompt file (mu-soft-prompt(5)): a header line with its metadata, then one\n"
    "line per vector (its slot id, L2 norm and values), with --model also the tokens\n"
    "whose input embedding rows are nearest by cosine similarity.\n"
    "\n"
    "  -m, --model PATH  dump a model's layout instead of streams\n"
    "      --delta FILE  with --model: a delta (or a PEFT LoRA adapter dir) on top\n"
    "                    (repeatable, in order)\n"
    "      --scaled-delta S=FILE  the same at strength S (w0 + S (w - w0); in order\n"
    "                    with --delta)\n"
    "      --stats       with --model: per tensor, the values' RMS and the L2 norm of\n"
    "                    each delta's change (absolute and relative); reads the weights\n"
    "      --soft-prompt FILE  dump a soft-prompt file instead of streams\n"
    "      --nearest K   with --soft-prompt and --model: the K nearest tokens per vector\n"
    "                    (default 5; 0 for none)\n"
    "  -n, --head N      print only the first N records (parameters, vectors)\n"
    "  -k, --kind KIND   fail unless the stream is of kind KIND\n"
    "  -f, --full        print every value of tensors, bins and vectors (default: a\n"
    "                    summary)\n"
    "  -H, --no-header   do not print the header line\n"
    "  -o, --out FILE    write to FILE (atomically) instead of standard output\n"
    "  -q, --quiet       no progress\n"
    "  -h, --help        show this help and exit\n"
    "  -V, --version     show the version and exit\n"
    "\n"
    "Tensors print as {\"dtype\":..,\"shape\":[..],\"first\":[at most 8 values]}, with\n"
    "--full as {\"dtype\":..,\"shape\":[..],\"data\":[all values]}. Other bins print as\n"
    "{\"bin_bytes\":N,\"base64\":..} (only the first 48 bytes as \"head_base64\" when\n"
    "longer than 64 bytes, unless --full). Strings that are not valid UTF-8 show each\n"
    "invalid byte as \\u00XX. Non-finite floats print as the strings \"nan\", \"inf\",\n"
    "\"-inf\". Exit status: 0 ok, 1 bad input, 2 usage error. See mu-dump(1), mu-stream(5).\n";

#define SUMMARY_VALUES 8
#define BIN_INLINE 64
#define BIN_HEAD 48

typedef struct {
    FILE *fp;
    int full;
    const mu_reader *r;   /* for error messages inside records */
    const char *file;     /* for error messages inside the header */
} dumper;

static void put_str(FILE *fp, const char *s, size_t n) {
    fputc('"', fp);
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
            if (k > 0) { fwrite(s + i, 1, (size_t)k, fp); i += (size_t)k; }
            else { fprintf(fp, "\\u%04x", c); i++; }   /* invalid UTF-8 byte, shown as Latin-1 */
            continue;
        }
        switch (c) {
        case '"': fputs("\\\"", fp); break;
        case '\\': fputs("\\\\", fp); break;
        case '\n': fputs("\\n", fp); break;
        case '\r': fputs("\\r", fp); break;
        case '\t': fputs("\\t", fp); break;
        case '\b': fputs("\\b", fp); break;
        case '\f': fputs("\\f", fp); break;
        default:
            if (c < 0x20 || c == 0x7f) fprintf(fp, "\\u%04x", c);
            else fputc(c, fp);
        }
        i++;
    }
    fputc('"', fp);
}

static void put_cstr(FILE *fp, const char *s) { put_str(fp, s, strlen(s)); }

/* Shortest decimal that reads back to the same value (float or double). */
static void put_real(FILE *fp, double v, int is_f32) {
    if (isnan(v)) { fputs("\"nan\"", fp); return; }
    if (isinf(v)) { fputs(v > 0 ? "\"inf\"" : "\"-inf\"", fp); return; }
    char buf[40];
    for (int prec = is_f32 ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (is_f32 ? strtof(buf, NULL) == (float)v : strtod(buf, NULL) == v) break;
    }
    /* keep it a JSON number: "1e+20" is fine, "inf" was handled */
    fputs(buf, fp);
}

static void put_base64(FILE *fp, const unsigned char *p, size_t n) {
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    fputc('"', fp);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        fputc(tb[v >> 18], fp); fputc(tb[(v >> 12) & 63], fp); fputc(tb[(v >> 6) & 63], fp); fputc(tb[v & 63], fp);
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)p[i] << 16;
        fputc(tb[v >> 18], fp); fputc(tb[(v >> 12) & 63], fp); fputs("==", fp);
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
        fputc(tb[v >> 18], fp); fputc(tb[(v >> 12) & 63], fp); fputc(tb[(v >> 6) & 63], fp); fputc('=', fp);
    }
    fputc('"', fp);
}

static void put_bin(const dumper *d, const char *p, size_t n, int ext_type, int is_ext) {
    fputc('{', d->fp);
    if (is_ext) fprintf(d->fp, "\"ext_type\":%d,", ext_type);
    fprintf(d->fp, "\"bin_bytes\":%zu,", n);
    if (d->full || n <= BIN_INLINE) {
        fputs("\"base64\":", d->fp);
        put_base64(d->fp, (const unsigned char *)p, n);
    } else {
        fputs("\"head_base64\":", d->fp);
        put_base64(d->fp, (const unsigned char *)p, BIN_HEAD);
    }
    fputc('}', d->fp);
}

/* One element of a tensor, read with memcpy (any alignment). */
static void put_elem(FILE *fp, mu_dtype dt, const unsigned char *p) {
    union { float f; double d; int8_t i8; uint8_t u8; int16_t i16; uint16_t u16;
            int32_t i32; uint32_t u32; int64_t i64; uint64_t u64; } v;
    memcpy(&v, p, mu_dtype_size(dt));
    switch (dt) {
    case MU_F32: put_real(fp, v.f, 1); break;
    case MU_F16: put_real(fp, mu_f16_to_f32(v.u16), 1); break;
    case MU_BF16: put_real(fp, mu_bf16_to_f32(v.u16), 1); break;
    case MU_F64: put_real(fp, v.d, 0); break;
    case MU_I8: fprintf(fp, "%d", v.i8); break;
    case MU_U8: fprintf(fp, "%u", v.u8); break;
    case MU_I16: fprintf(fp, "%d", v.i16); break;
    case MU_U16: fprintf(fp, "%u", v.u16); break;
    case MU_I32: fprintf(fp, "%d", v.i32); break;
    case MU_U32: fprintf(fp, "%u", v.u32); break;
    case MU_I64: fprintf(fp, "%lld", (long long)v.i64); break;
    case MU_U64: fprintf(fp, "%llu", (unsigned long long)v.u64); break;
    case MU_BOOL: fputs(v.u8 ? "true" : "false", fp); break;
    default: fputs("null", fp);
    }
}

static void put_tensor(const dumper *d, const mu_tensor_view *t) {
    fputs("{\"dtype\":", d->fp);
    put_cstr(d->fp, mu_dtype_name(t->dtype));
    fputs(",\"shape\":[", d->fp);
    for (int i = 0; i < t->ndim; i++) fprintf(d->fp, "%s%lld", i ? "," : "", (long long)t->shape[i]);
    size_t esz = mu_dtype_size(t->dtype), n = esz ? t->nbytes / esz : 0;
    size_t show = d->full || n <= SUMMARY_VALUES ? n : SUMMARY_VALUES;
    fputs(d->full ? "],\"data\":[" : "],\"first\":[", d->fp);
    for (size_t i = 0; i < show; i++) {
        if (i) fputc(',', d->fp);
        put_elem(d->fp, t->dtype, (const unsigned char *)t->data + i * esz);
    }
    fputs("]}", d->fp);
}

static int is_tensor_map(const msgpack_object *o) {
    return o->type == MSGPACK_OBJECT_MAP && o->via.map.size == 3 && mu_obj_get(o, "dtype") &&
           mu_obj_get(o, "shape") && mu_obj_get(o, "data");
}

/* path: the key path for error messages ("x.logits") */
static void put_obj(const dumper *d, const msgpack_object *o, const char *path);

static void put_key(const dumper *d, const msgpack_object *k) {
    if (k->type == MSGPACK_OBJECT_STR) { put_str(d->fp, k->via.str.ptr, k->via.str.size); return; }
    /* JSON keys are strings: render the key as JSON, then quote that text */
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    if (!mem) mu_die("out of memory");
    dumper sub = *d;
    sub.fp = mem;
    put_obj(&sub, k, "(key)");
    fclose(mem);
    put_str(d->fp, text, len);
    free(text);
}

static void put_obj(const dumper *d, const msgpack_object *o, const char *path) {
    FILE *fp = d->fp;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", fp); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", fp); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(fp, "%llu", (unsigned long long)o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(fp, "%lld", (long long)o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32: put_real(fp, o->via.f64, 1); break;
    case MSGPACK_OBJECT_FLOAT64: put_real(fp, o->via.f64, 0); break;
    case MSGPACK_OBJECT_STR: put_str(fp, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: put_bin(d, o->via.bin.ptr, o->via.bin.size, 0, 0); break;
    case MSGPACK_OBJECT_EXT: put_bin(d, o->via.ext.ptr, o->via.ext.size, o->via.ext.type, 1); break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', fp);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', fp);
            char sub[256];
            snprintf(sub, sizeof sub, "%s[%u]", path, i);
            put_obj(d, &o->via.array.ptr[i], sub);
        }
        fputc(']', fp);
        break;
    case MSGPACK_OBJECT_MAP:
        if (is_tensor_map(o)) {
            mu_tensor_view t;
            char err[512];
            if (mu_obj_tensor(o, &t, err, sizeof err) != 0) {
                if (d->r) mu_reader_die(d->r, "%s: %s", path, err);
                mu_die("%s: header: %s: %s", d->file, path, err);
            }
            put_tensor(d, &t);
            break;
        }
        fputc('{', fp);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_kv *kv = &o->via.map.ptr[i];
            if (i) fputc(',', fp);
            put_key(d, &kv->key);
            fputc(':', fp);
            char sub[256];
            if (kv->key.type == MSGPACK_OBJECT_STR)
                snprintf(sub, sizeof sub, "%s%s%.*s", path, *path ? "." : "", (int)(kv->key.via.str.size > 64 ? 64 : kv->key.via.str.size),
                         kv->key.via.str.ptr);
            else
                snprintf(sub, sizeof sub, "%s%s(key %u)", path, *path ? "." : "", i);
            put_obj(d, &kv->val, sub);
        }
        fputc('}', fp);
        break;
    default:
        fputs("null", fp);
    }
}

/* --model: the checkpoint as mu reads it. Header: {"model","format","digest","deltas",
 * "params","numel","config"}; then per parameter {"name","role","layer","block","shape",
 * "numel","stored"[,"delta_elems"][,"rms"[,"delta_l2","delta_rel"]]}. */
typedef struct {
    FILE *fp;
    mu_ckpt *c;           /* the model with its deltas */
    int n_deltas, stats;
    float *cur, *prev;    /* --stats: one tensor's values, after and before a delta */
} model_dump;

/* sqrt(sum x^2) over n values, in double */
static double l2_norm(const float *x, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

static double l2_dist(const float *x, const float *y, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
    return sqrt(s);
}

/* ,"rms":..[,"delta_l2":[..],"delta_rel":[..]]: the values' root mean square with every
 * delta, and the L2 norm of each delta's change, absolute and relative to the values
 * before it (null when those are all 0). */
static void put_param_stats(model_dump *m, const mu_param_info *p) {
    size_t n = (size_t)mu_arch_numel(p, 1);
    double l2[m->n_deltas > 0 ? m->n_deltas : 1], rel[m->n_deltas > 0 ? m->n_deltas : 1];
    char err[1024];
    if (mu_ckpt_read_f32_upto(m->c, 0, p->name, p->ndim, p->shape, m->cur, err, sizeof err)) mu_die("%s", err);
    for (int k = 0; k < m->n_deltas; k++) {
        memcpy(m->prev, m->cur, n * sizeof *m->cur);
        if (mu_ckpt_apply_delta(m->c, k, p->name, m->cur, n, err, sizeof err)) mu_die("%s", err);
        double before = l2_norm(m->prev, n);
        l2[k] = l2_dist(m->cur, m->prev, n);
        rel[k] = before > 0 ? l2[k] / before : NAN;
    }
    fputs(",\"rms\":", m->fp);
    put_real(m->fp, n ? l2_norm(m->cur, n) / sqrt((double)n) : 0, 1);
    if (!m->n_deltas) return;
    for (int pass = 0; pass < 2; pass++) {
        fputs(pass ? "],\"delta_rel\":[" : ",\"delta_l2\":[", m->fp);
        for (int k = 0; k < m->n_deltas; k++) {
            double v = pass ? rel[k] : l2[k];
            if (k) fputc(',', m->fp);
            if (isnan(v)) fputs("null", m->fp);
            else put_real(m->fp, v, 1);
        }
    }
    fputc(']', m->fp);
}

static void put_param(model_dump *m, const mu_param_info *p) {
    static const char *blocks[] = {"attention", "mlp"};
    FILE *fp = m->fp;
    mu_ckpt *c = m->c;
    int b = mu_arch_block(p);
    const char *stored = mu_ckpt_stored_type(c, p->name);
    fputs("{\"name\":", fp);
    put_cstr(fp, p->name);
    fputs(",\"role\":", fp);
    put_cstr(fp, p->role);
    if (p->layer >= 0) fprintf(fp, ",\"layer\":%d", p->layer);
    else fputs(",\"layer\":null", fp);
    if (b >= 0) fprintf(fp, ",\"block\":\"%s\"", blocks[b]);
    else fputs(",\"block\":null", fp);
    fprintf(fp, ",\"shape\":[%lld", (long long)p->shape[0]);
    if (p->ndim == 2) fprintf(fp, ",%lld", (long long)p->shape[1]);
    fprintf(fp, "],\"numel\":%lld,\"stored\":", (long long)mu_arch_numel(p, 1));
    put_cstr(fp, stored ? stored : "?");
    if (m->n_deltas) {
        fputs(",\"delta_elems\":[", fp);
        for (int i = 0; i < m->n_deltas; i++) fprintf(fp, "%s%lld", i ? "," : "", (long long)mu_ckpt_delta_elems(c, i, p->name));
        fputc(']', fp);
    }
    if (m->stats) put_param_stats(m, p);
    fputs("}\n", fp);
}

/* A PEFT adapter's metadata: {"format":"peft","adapter_config":{...}}. */
static void put_peft_metadata(FILE *fp, const char *dir) {
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    json_t *o = json_pack("{s:s, s:o}", "format", "peft", "adapter_config", json_load_file(cfg, 0, NULL));
    char *text = o ? json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENSURE_ASCII) : NULL;
    if (!text) mu_die("%s: cannot read it again", cfg);
    fputs(text, fp);
    free(text);
    json_decref(o);
}

/* A safetensors file's __metadata__ as an object, its "mu_train" (mu-train's options, JSON
 * text) as the object it holds. */
static void put_st_metadata(FILE *fp, const mu_st *s, const char *path) {
    json_t *o = json_object();
    const char *k;
    for (int i = 0; (k = mu_st_metadata_key(s, i)); i++) {
        const char *v = mu_st_metadata(s, k);
        int is_json = !strcmp(k, "mu_train") || !strcmp(k, "token_ids");   /* JSON text: shown as JSON */
        json_t *x = is_json ? json_loads(v, JSON_DECODE_ANY, NULL) : NULL;
        json_object_set_new(o, k, x ? x : json_string(v));
    }
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(15) | JSON_ENSURE_ASCII);
    if (!text) mu_die("%s: its metadata is not valid UTF-8", path);
    fputs(text, fp);
    free(text);
    json_decref(o);
}

/* A delta's metadata (put_st_metadata), or a PEFT adapter's. */
static void put_delta_metadata(FILE *fp, const char *path) {
    char err[1024];
    if (mu_delta_is_peft(path)) {   /* read and checked when the model opened */
        put_peft_metadata(fp, path);
        return;
    }
    mu_st *s = mu_st_open(path, err, sizeof err);
    if (!s) mu_die("%s", err);
    put_st_metadata(fp, s, path);
    mu_st_close(s);
}

/* ,"deltas":[paths] and, when a delta applies at a strength other than 1 (--scaled-delta),
 * ,"delta_scales":[one per delta] */
static void put_deltas(FILE *fp, const mu_model_args *ma) {
    fputs(",\"deltas\":[", fp);
    for (int i = 0; i < ma->n_deltas; i++) {
        if (i) fputc(',', fp);
        put_cstr(fp, ma->deltas[i]);
    }
    fputc(']', fp);
    if (!mu_model_args_scaled(ma)) return;
    fputs(",\"delta_scales\":[", fp);
    for (int i = 0; i < ma->n_deltas; i++) fprintf(fp, "%s%.9g", i ? "," : "", ma->delta_scales[i]);
    fputc(']', fp);
}

static void put_model_header(FILE *fp, mu_ckpt *c, const mu_model_args *ma, const mu_param_info *p, int n) {
    char err[1024], digest[33];
    if (mu_ckpt_digest(c, digest)) mu_die("%s: cannot read it for its digest", ma->path);
    char *cfg = mu_config_json_text(mu_ckpt_config(c), NULL, 0, ma->path, err, sizeof err);
    if (!cfg) mu_die("%s", err);
    fputs("{\"model\":", fp);
    put_cstr(fp, ma->path);
    fprintf(fp, ",\"format\":\"%s\",\"digest\":\"%s\"", mu_ckpt_is_gguf(c) ? "gguf" : "safetensors", digest);
    put_deltas(fp, ma);
    fputs(",\"delta_metadata\":[", fp);
    for (int i = 0; i < ma->n_deltas; i++) {
        if (i) fputc(',', fp);
        put_delta_metadata(fp, ma->deltas[i]);
    }
    fprintf(fp, "],\"params\":%d,\"numel\":%lld,\"config\":%s}\n", n, (long long)mu_arch_numel(p, n), cfg);
    free(cfg);
}

static mu_ckpt *open_model_or_die(const mu_model_args *ma) {
    char err[1024];
    mu_ckpt *c = mu_ckpt_open_with_deltas(ma->path, ma->deltas, ma->delta_scales, ma->n_deltas, err, sizeof err);
    if (!c) mu_die("%s", err);
    return c;
}

static void dump_model(FILE *fp, const mu_model_args *ma, long head, int no_header, int stats) {
    mu_ckpt *c = open_model_or_die(ma);
    model_dump m = {fp, c, ma->n_deltas, stats, NULL, NULL};
    const mu_config *cf = mu_ckpt_config(c);
    mu_param_info *p;
    int n = mu_arch_params(cf, &p);
    if (n < 0) mu_die("%s: architecture %s is not supported", ma->path, cf->arch);
    if (!no_header) put_model_header(fp, c, ma, p, n);
    if (stats) {
        int64_t most = 1;
        for (int i = 0; i < n; i++) most = mu_arch_numel(&p[i], 1) > most ? mu_arch_numel(&p[i], 1) : most;
        m.cur = mu_xmalloc(sizeof(float) * (size_t)most);
        m.prev = mu_xmalloc(sizeof(float) * (size_t)most);
    }
    for (int i = 0; i < n && (head < 0 || i < head); i++) {
        put_param(&m, &p[i]);
        if (stats) mu_progress("mu-dump", (uint64_t)i + 1, (uint64_t)n);
    }
    if (stats) mu_progress_done();
    free(m.cur);
    free(m.prev);
    free(p);
    mu_ckpt_close(c);
}

/* The input embedding [V, D] of c (role "embed", deltas applied), malloc'd. */
static float *read_embedding(mu_ckpt *c, const char *path, int *V, int *D) {
    char name[256], err[1024];
    const mu_config *cf = mu_ckpt_config(c);
    if (mu_arch_param_name("embed", 0, name, sizeof name)) mu_die("%s: no input embedding", path);
    int64_t shape[2] = {cf->vocab, cf->d_model};
    float *E = mu_xmalloc((size_t)cf->vocab * (size_t)cf->d_model * sizeof *E);
    if (mu_ckpt_read_f32(c, name, 2, shape, E, err, sizeof err)) mu_die("%s", err);
    *V = cf->vocab;
    *D = cf->d_model;
    return E;
}

/* The tokenizer beside a model, or NULL when a model directory has none (mu-init's). */
static mu_tokenizer *model_tokenizer(const char *path) {
    char err[1024], json[4096];
    struct stat st;
    snprintf(json, sizeof json, "%s/tokenizer.json", path);
    if (!stat(path, &st) && S_ISDIR(st.st_mode) && stat(json, &st)) return NULL;
    mu_tokenizer *tk = mu_tokenizer_load(path, err, sizeof err);
    if (!tk) mu_die("%s", err);
    return tk;
}

/* A soft prompt dumped against a model: the embedding, its tokens, the digest. */
typedef struct {
    const mu_model_args *ma;   /* the model and its deltas */
    char digest[33];
    float *E;
    int V, D;
    mu_tokenizer *tk;   /* NULL: ids only */
} soft_model;

static void open_soft_model(soft_model *sm) {
    mu_ckpt *c = open_model_or_die(sm->ma);
    if (mu_ckpt_digest(c, sm->digest)) mu_die("%s: cannot read it for its digest", sm->ma->path);
    sm->E = read_embedding(c, sm->ma->path, &sm->V, &sm->D);
    mu_ckpt_close(c);
    sm->tk = model_tokenizer(sm->ma->path);
}

/* ,"embedding_norm":{"mean":..,"min":..,"max":..}: the L2 norms of the embedding's rows */
static void put_embedding_norms(FILE *fp, const soft_model *sm) {
    double sum = 0, lo = INFINITY, hi = 0;
    for (int r = 0; r < sm->V; r++) {
        double x = l2_norm(sm->E + (size_t)r * sm->D, (size_t)sm->D);
        sum += x;
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    fputs(",\"embedding_norm\":{\"mean\":", fp);
    put_real(fp, sum / sm->V, 1);
    fputs(",\"min\":", fp);
    put_real(fp, lo, 1);
    fputs(",\"max\":", fp);
    put_real(fp, hi, 1);
    fputc('}', fp);
}

/* {"soft_prompt":path,"metadata":{..},"vectors":n,"d_model":D[,"model":..,"digest":..,
 *  "deltas":[..],"trained_on_this_model":bool,"embedding_norm":{"mean","min","max"}]} */
static void put_soft_header(FILE *fp, const char *path, int n, int D, const soft_model *sm) {
    char err[1024];
    mu_st *st = mu_st_open(path, err, sizeof err);   /* read and checked already */
    if (!st) mu_die("%s", err);
    fputs("{\"soft_prompt\":", fp);
    put_cstr(fp, path);
    fputs(",\"metadata\":", fp);
    put_st_metadata(fp, st, path);
    fprintf(fp, ",\"vectors\":%d,\"d_model\":%d", n, D);
    if (sm) {
        const char *on = mu_st_metadata(st, "trained_on");
        fputs(",\"model\":", fp);
        put_cstr(fp, sm->ma->path);
        fprintf(fp, ",\"digest\":\"%s\"", sm->digest);
        put_deltas(fp, sm->ma);
        fprintf(fp, ",\"trained_on_this_model\":%s", on && !strcmp(on, sm->digest) ? "true" : "false");
        put_embedding_norms(fp, sm);
    }
    fputs("}\n", fp);
    mu_st_close(st);
}

/* ,"nearest":[{"id":..,"token":..,"cos":..},..] ("token" null without a tokenizer) */
static void put_nearest(FILE *fp, const soft_model *sm, const int32_t *ids, const float *cos, int k) {
    char err[1024];
    fputs(",\"nearest\":[", fp);
    for (int i = 0; i < k; i++) {
        fprintf(fp, "%s{\"id\":%d,\"token\":", i ? "," : "", ids[i]);
        char *text = NULL;
        size_t len = 0;
        if (!sm->tk) fputs("null", fp);
        else if (mu_tok_decode_model_ids(sm->tk, &ids[i], 1, (size_t)sm->V, 0, &text, &len, err, sizeof err))
            mu_die("%s: %s", sm->ma->path, err);
        else put_str(fp, text, len);
        free(text);
        fputs(",\"cos\":", fp);
        put_real(fp, cos[i], 1);
        fputc('}', fp);
    }
    fputc(']', fp);
}

static void dump_soft_prompt(FILE *fp, const char *path, soft_model *sm, int nearest, long head, int no_header,
                             int full) {
    char err[1024];
    int n, D;
    float *vec;
    if (sm) open_soft_model(sm);
    if (sm ? mu_soft_prompt_read(path, sm->D, &n, &vec, err, sizeof err)
           : mu_soft_prompt_read_any(path, &n, &D, &vec, err, sizeof err))
        mu_die("%s", err);
    if (sm) D = sm->D;
    if (!no_header) put_soft_header(fp, path, n, D, sm);
    int k = sm && nearest > sm->V ? sm->V : nearest;
    int shown = head >= 0 && head < n ? (int)head : n;
    int32_t *ids = mu_xmalloc(sizeof *ids * (size_t)(k > 0 ? k : 1) * (size_t)(shown > 0 ? shown : 1));
    float *cos = mu_xmalloc(sizeof *cos * (size_t)(k > 0 ? k : 1) * (size_t)(shown > 0 ? shown : 1));
    if (sm && k > 0) mu_soft_nearest(vec, shown, sm->E, sm->V, D, k, ids, cos);
    dumper d = {fp, full, NULL, path};
    for (int j = 0; j < shown; j++) {
        const float *x = vec + (size_t)j * D;
        mu_tensor_view t = {MU_F32, 1, {D}, x, (size_t)D * sizeof *x};
        fprintf(fp, "{\"slot\":%d,\"id\":%d,\"norm\":", j, -1 - j);
        put_real(fp, l2_norm(x, (size_t)D), 1);
        fputs(",\"vector\":", fp);
        put_tensor(&d, &t);
        if (sm && k > 0) put_nearest(fp, sm, ids + (size_t)j * k, cos + (size_t)j * k, k);
        fputs("}\n", fp);
    }
    free(ids);
    free(cos);
    free(vec);
    if (sm) {
        free(sm->E);
        if (sm->tk) mu_tokenizer_free(sm->tk);
    }
}

/* The streams files[nfiles] (one kind: the first's, or kind) as JSON lines into out: the
 * first's header unless no_header, then every record, head at the most (< 0: all) */
static void dump_streams(char **files, int nfiles, const char *out, const char *kind, long head,
                         int no_header, int full) {
    mu_outfile of;
    mu_out_open_or_die(&of, out);
    static char obuf[1 << 16];
    setvbuf(of.fp, obuf, _IOFBF, sizeof obuf);
    dumper d = {of.fp, full, NULL, NULL};
    long printed = 0;
    char *stream_kind = NULL;
    for (int f = 0; f < nfiles && (head < 0 || printed < head || f == 0); f++) {
        mu_reader *r = mu_reader_open_or_die(files[f], stream_kind ? stream_kind : kind);
        if (!stream_kind) {
            stream_kind = mu_xstrdup(mu_reader_kind(r));
            if (!no_header) {
                d.file = mu_reader_path(r);
                put_obj(&d, mu_reader_header(r), "");
                fputc('\n', of.fp);
            }
        }
        d.r = r;
        const msgpack_object *rec;
        while ((head < 0 || printed < head) && (rec = mu_reader_next_or_die(r))) {
            put_obj(&d, rec, "");
            fputc('\n', of.fp);
            printed++;
            mu_progress("mu-dump", (uint64_t)printed, 0);
        }
        mu_reader_close(r);
        d.r = NULL;
    }
    mu_progress_done();
    free(stream_kind);
    mu_out_commit_or_die(&of);
}

/* A count option's value: a whole number from 0 to max, else a usage error naming it */
static long parse_count(const char *opt, const char *arg, long max) {
    char *end;
    long v = strtol(arg, &end, 10);
    if (*arg == 0 || *end || v < 0 || v > max) {
        if (max == LONG_MAX) mu_usage_error("%s wants a count >= 0, not '%s'", opt, arg);
        mu_usage_error("%s wants a count from 0 to %ld, not '%s'", opt, max, arg);
    }
    return v;
}

int main(int argc, char **argv) {
    mu_cli_init("mu-dump", argc, argv);
    static const struct option longopts[] = {
        {"head", required_argument, 0, 'n'}, {"kind", required_argument, 0, 'k'},
        {"full", no_argument, 0, 'f'},       {"no-header", no_argument, 0, 'H'},
        {"out", required_argument, 0, 'o'},  {"model", required_argument, 0, 'm'},
        {"delta", required_argument, 0, 'D'}, {"scaled-delta", required_argument, 0, 'Z'},
        {"stats", no_argument, 0, 'S'},
        {"soft-prompt", required_argument, 0, 'P'}, {"nearest", required_argument, 0, 'N'},
        MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    long head = -1;
    const char *kind = NULL, *out = "-", *soft = NULL;
    long nearest = -1;
    mu_model_args ma;   /* --model, --delta, --scaled-delta */
    mu_model_args_init(&ma);
    int full = 0, no_header = 0, stats = 0, opt;
    while ((opt = getopt_long(argc, argv, ":n:k:fHo:m:hVq", longopts, NULL)) != -1) {
        switch (opt) {
        case 'n': head = parse_count("--head", optarg, LONG_MAX); break;
        case 'k': kind = optarg; break;
        case 'f': full = 1; break;
        case 'H': no_header = 1; break;
        case 'o': out = optarg; break;
        case 'm': mu_model_args_option(&ma, 'm', optarg); break;
        case 'D': mu_model_args_option(&ma, MU_OPT_DELTA, optarg); break;
        case 'Z': mu_model_args_option(&ma, MU_OPT_SCALED_DELTA, optarg); break;
        case 'S': stats = 1; break;
        case 'P': soft = optarg; break;
        case 'N': nearest = parse_count("--nearest", optarg, 1000000); break;
        default:
            if (!mu_cli_common(opt, usage)) mu_usage_error("unexpected option (see --help)");
        }
    }
    const char *model = ma.path;
    if (!model && (ma.n_deltas || stats)) mu_usage_error("--delta, --scaled-delta and --stats need --model");
    if (nearest >= 0 && !(soft && model)) mu_usage_error("--nearest needs --soft-prompt and --model");
    if (soft) {
        if (optind < argc || kind || stats) mu_usage_error("--soft-prompt takes no FILE, --kind or --stats");
        soft_model sm = {.ma = &ma};
        mu_outfile of;
        mu_out_open_or_die(&of, out);
        dump_soft_prompt(of.fp, soft, model ? &sm : NULL, nearest >= 0 ? (int)nearest : 5, head, no_header, full);
        mu_out_commit_or_die(&of);
        mu_model_args_free(&ma);
        return MU_EXIT_OK;
    }
    if (model && (optind < argc || kind || full))
        mu_usage_error("--model takes no FILE, --kind or --full");
    if (model) {
        mu_outfile of;
        mu_out_open_or_die(&of, out);
        dump_model(of.fp, &ma, head, no_header, stats);
        mu_out_commit_or_die(&of);
        mu_model_args_free(&ma);
        return MU_EXIT_OK;
    }
    mu_model_args_free(&ma);
    char *stdin_only[] = {"-"};
    if (optind < argc) dump_streams(argv + optind, argc - optind, out, kind, head, no_header, full);
    else dump_streams(stdin_only, 1, out, kind, head, no_header, full);
    return MU_EXIT_OK;
}
