/* forward.c — batching, emit logic and interventions of mu-forward (see forward.h). */
#define _GNU_SOURCE
#include "forward.h"
#include "cli.h"
#include "rng.h"
#include "sites.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* ---- small utilities ------------------------------------------------------------------ */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A msgpack object packed into owned bytes (records outlive the reader's buffer). */
typedef struct { char *data; size_t len; } packed;

static packed pack_copy(const msgpack_object *o)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *o);
    packed p = { sb.data, sb.size };
    return p;
}

static void pack_raw(msgpack_packer *pk, const packed *p) { pk->callback(pk->data, p->data, p->len); }

/* ---- emit list -------------------------------------------------------------------------- */

int mu_emit_parse(const char *list, unsigned *out, char *err, size_t errlen)
{
    static const struct { const char *name; unsigned bits; } names[] = {
        {"target", MU_EMIT_TARGET}, {"ranks", MU_EMIT_RANKS}, {"choices", MU_EMIT_CHOICES},
        {"topk", MU_EMIT_TOPK}, {"text", MU_EMIT_TEXT}, {"mu-sigma", MU_EMIT_MUSIGMA},
        {"all-scores", MU_EMIT_TARGET | MU_EMIT_RANKS | MU_EMIT_CHOICES | MU_EMIT_TEXT | MU_EMIT_MUSIGMA}};
    const char *p = list;
    while (*p) {
        size_t n = strcspn(p, ",");
        size_t i;
        for (i = 0; i < sizeof names / sizeof *names; i++)
            if (strlen(names[i].name) == n && !strncmp(names[i].name, p, n)) break;
        if (i == sizeof names / sizeof *names)
            return fail(err, errlen, "unknown emit '%.*s' (target, ranks, choices, topk, text, mu-sigma, all-scores)",
                        (int)n, p);
        *out |= names[i].bits;
        p += n;
        if (*p == ',') p++;
    }
    return 0;
}

mu_fw_opts mu_fw_default_opts(void)
{
    mu_fw_opts o;
    memset(&o, 0, sizeof o);
    o.topk = 10;
    o.top_p = 1.0;
    o.eos = -1;
    o.batch_tokens = 2048;
    o.cache_dtype = MU_F32;
    o.subject = "subject";
    return o;
}

/* ---- log-softmax statistics -------------------------------------------------------------- */

double mu_fw_logsumexp(const float *x, int V)
{
    float mx = x[0];
    for (int i = 1; i < V; i++) if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < V; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

int mu_fw_rank(const float *x, int V, int tok)
{
    int r = 0;
    for (int i = 0; i < V; i++) r += x[i] > x[tok];
    return r;
}

void mu_fw_mu_sigma(const float *x, int V, double lse, float *mu, float *sigma)
{
    double m = 0, m2 = 0;
    for (int i = 0; i < V; i++) {
        double lp = (double)x[i] - lse, p = exp(lp);
        m += p * lp;
        m2 += p * lp * lp;
    }
    double var = m2 - m * m;
    *mu = (float)m;
    *sigma = (float)sqrt(var > 0 ? var : 0);
}

/* ---- activation files (patch / mean / add sources) ------------------------------------------ */

/* One captured (site, layer) block of an activations record. */
typedef struct {
    mu_site site;
    int layer;
    int P, D;
    int32_t *pos;      /* [P] */
    float *x;          /* [P, D] */
} act_entry;

typedef struct {
    packed id;
    uint64_t hash;
    int n;
    act_entry *e;
} act_record;

typedef struct {
    char *path;
    int n, cap;
    act_record *r;
    int *table;        /* open addressing over id hashes, size tcap, -1 empty */
    int tcap;
} act_file;

static void act_file_free(act_file *a)
{
    if (!a) return;
    for (int i = 0; i < a->n; i++) {
        for (int j = 0; j < a->r[i].n; j++) { free(a->r[i].e[j].pos); free(a->r[i].e[j].x); }
        free(a->r[i].e);
        free(a->r[i].id.data);
    }
    free(a->r); free(a->table); free(a->path);
    free(a);
}

static int tensor_to_f32(const mu_tensor_view *t, float *dst)
{
    return mu_to_f32(t->dtype, t->data, (size_t)mu_shape_numel(t->ndim, t->shape), dst);
}

static int parse_act_entry(const msgpack_object *o, act_entry *e, char *err, size_t errlen)
{
    const msgpack_object *s = mu_obj_get(o, "site");
    int64_t layer;
    if (!s || s->type != MSGPACK_OBJECT_STR || mu_site_from_name(s->via.str.ptr, s->via.str.size, &e->site))
        return fail(err, errlen, "acts: \"site\" is not a site name");
    if (mu_obj_int(mu_obj_get(o, "layer"), &layer) || layer < -1 || layer > 100000)
        return fail(err, errlen, "acts: \"layer\" is not an integer");
    e->layer = (int)layer;
    mu_tensor_view tp, tx;
    const msgpack_object *po = mu_obj_get(o, "positions"), *xo = mu_obj_get(o, "x");
    if (!po || mu_obj_tensor(po, &tp, err, errlen)) return po ? -1 : fail(err, errlen, "acts: no \"positions\"");
    if (!xo || mu_obj_tensor(xo, &tx, err, errlen)) return xo ? -1 : fail(err, errlen, "acts: no \"x\"");
    if (tp.dtype != MU_I32 || tp.ndim != 1) return fail(err, errlen, "acts: positions must be i32 [P]");
    if (tx.ndim != 2 || tx.shape[0] != tp.shape[0] || (tx.dtype != MU_F32 && tx.dtype != MU_F16 && tx.dtype != MU_BF16))
        return fail(err, errlen, "acts: x must be f32/f16/bf16 [P, D] with P = %lld", (long long)tp.shape[0]);
    e->P = (int)tp.shape[0];
    e->D = (int)tx.shape[1];
    e->pos = mu_xcalloc((size_t)e->P, sizeof *e->pos);
    memcpy(e->pos, tp.data, (size_t)e->P * 4);
    e->x = mu_xcalloc((size_t)e->P * e->D, sizeof *e->x);
    tensor_to_f32(&tx, e->x);
    return 0;
}

static void act_table_insert(act_file *a, int i)
{
    int m = a->tcap - 1, j = (int)(a->r[i].hash & (uint64_t)m);
    while (a->table[j] >= 0) j = (j + 1) & m;
    a->table[j] = i;
}

static const act_record *act_lookup(const act_file *a, const packed *id)
{
    uint64_t h = XXH3_64bits(id->data, id->len);
    int m = a->tcap - 1, j = (int)(h & (uint64_t)m);
    for (; a->table[j] >= 0; j = (j + 1) & m) {
        const act_record *r = &a->r[a->table[j]];
        if (r->hash == h && r->id.len == id->len && !memcmp(r->id.data, id->data, id->len)) return r;
    }
    return NULL;
}

static act_file *act_file_load(const char *path, char *err, size_t errlen)
{
    char e2[512];
    mu_reader *rd = mu_reader_open(path, "activations", e2, sizeof e2);
    if (!rd) { fail(err, errlen, "%s", e2); return NULL; }
    act_file *a = mu_xcalloc(1, sizeof *a);
    a->path = mu_xstrdup(path);
    const msgpack_object *rec;
    int rc;
    while ((rc = mu_reader_next(rd, &rec)) == 1) {
        if (a->n == a->cap) { a->cap = a->cap * 2 + 16; a->r = mu_xrealloc(a->r, (size_t)a->cap * sizeof *a->r); }
        act_record *r = &a->r[a->n];
        memset(r, 0, sizeof *r);
        const msgpack_object *id = mu_obj_get(rec, "id"), *acts = mu_obj_get(rec, "acts");
        if (!id || !acts || acts->type != MSGPACK_OBJECT_ARRAY) {
            fail(err, errlen, "%s: record %ld: need \"id\" and an \"acts\" array", path, mu_reader_record_index(rd));
            goto bad;
        }
        r->id = pack_copy(id);
        r->hash = XXH3_64bits(r->id.data, r->id.len);
        a->n++;
        r->e = mu_xcalloc(acts->via.array.size, sizeof *r->e);
        for (uint32_t k = 0; k < acts->via.array.size; k++) {
            if (parse_act_entry(&acts->via.array.ptr[k], &r->e[k], e2, sizeof e2)) {
                r->n = (int)k + 1;
                fail(err, errlen, "%s: record %ld: %s", path, mu_reader_record_index(rd), e2);
                goto bad;
            }
            r->n = (int)k + 1;
        }
    }
    if (rc < 0) { fail(err, errlen, "%s", mu_reader_error(rd)); goto bad; }
    mu_reader_close(rd);
    for (a->tcap = 16; a->tcap < 2 * a->n; a->tcap *= 2) {}
    a->table = mu_xcalloc((size_t)a->tcap, sizeof *a->table);
    memset(a->table, 0xff, (size_t)a->tcap * sizeof *a->table);
    for (int i = 0; i < a->n; i++) act_table_insert(a, i);
    return a;
bad:
    mu_reader_close(rd);
    act_file_free(a);
    return NULL;
}

/* Mean vector over all positions of all records at (site, layer); NULL if none. */
static float *act_file_mean(const act_file *a, mu_site site, int layer, int D)
{
    double *acc = mu_xcalloc((size_t)D, sizeof *acc);
    long cnt = 0;
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < a->r[i].n; j++) {
            const act_entry *e = &a->r[i].e[j];
            if (e->site != site || e->layer != layer || e->D != D) continue;
            for (int p = 0; p < e->P; p++, cnt++)
                for (int d = 0; d < D; d++) acc[d] += e->x[(size_t)p * D + d];
        }
    float *m = NULL;
    if (cnt) {
        m = mu_xcalloc((size_t)D, sizeof *m);
        for (int d = 0; d < D; d++) m[d] = (float)(acc[d] / cnt);
    }
    free(acc);
    return m;
}

/* ---- specs ---------------------------------------------------------------------------------- */

typedef enum { ACT_ZERO, ACT_MEAN_BATCH, ACT_MEAN_FILE, ACT_NOISE, ACT_PATCH, ACT_ADD } act_kind;

typedef struct mu_fw mu_fw;

typedef struct {
    mu_fw *f;
    int is_cache;
    int idx;           /* into f->cache or f->iv */
} hook_ctx;

typedef struct {
    mu_site_spec spec;
    char text[128];    /* canonical */
    int D, nl;         /* width; layers captured (1 for embed/logits) */
} cache_spec;

typedef struct {
    mu_site_spec spec;
    char text[256];
    act_kind kind;
    double std;
    act_file *file;
    float **means;     /* ACT_MEAN_FILE: per layer index of spec (or [0]) */
} iv_spec;

/* ---- queued records and rows ------------------------------------------------------------------ */

typedef struct {
    long index;
    packed id, meta;
    int has_meta;
    int32_t *prompt; int np;
    int ntg; int32_t **tg; int *ntgk;
    int answer;         /* -1 unknown */
    int ta;             /* target candidate for target/text fields: answer, else 0; -1 none */
    char *target_text;
    int subj_s, subj_e;
    unsigned emit;      /* resolved per record */
    int one_row;        /* every candidate is one token: one row, the prompt alone, scores them
                           all from its last position's logits (ROW_ALL_CHOICES) */
    /* positions of each cache / intervention spec in the prompt */
    int *cpos[MU_FW_MAX_SPECS]; int ncpos[MU_FW_MAX_SPECS];
    int *ipos[MU_FW_MAX_SPECS]; int nipos[MU_FW_MAX_SPECS];
    const act_record *patch[MU_FW_MAX_SPECS];
    float *cdata[MU_FW_MAX_SPECS];   /* [nl, P, D] */
    /* results */
    float *tlp, *tmu, *tsig; int32_t *trank; int ntl;
    float *clp; int32_t *cnt;
    int32_t *topk_ids; float *topk_lp; int ntopk;
    float *xlp, *xmu, *xsig; int nxl;
    int32_t *gen; int ngen;
} fw_rec;

typedef struct {
    int rec;            /* index into f->recs */
    int k;              /* candidate, or -1 for the prompt alone, or ROW_ALL_CHOICES */
    int len;
} fw_row;
/* the row of a one_row record: the prompt alone, scoring every candidate */
#define ROW_ALL_CHOICES (-2)

struct mu_fw {
    mu_model *m;
    mu_tokenizer *tk;
    mu_fw_opts o;
    int V, n_layer;
    int n_cache, n_iv;
    cache_spec cache[MU_FW_MAX_SPECS];
    iv_spec iv[MU_FW_MAX_SPECS];
    hook_ctx hctx[2 * MU_FW_MAX_SPECS];
    mu_hook hooks[2 * MU_FW_MAX_SPECS];
    int n_hooks;
    int nrec, caprec;
    fw_rec *recs;
    long pending;
    /* current batch */
    const fw_row *brows;
    char hook_err[512];
};

static int spec_layer_index(const mu_site_spec *s, int layer)
{
    if (!mu_site_is_layered(s->site)) return 0;
    for (int i = 0; i < s->n_layers; i++) if (s->layers[i] == layer) return i;
    return -1;
}

static int hook_fn(const mu_hook_info *info, float *act, void *user);

static int parse_iv(mu_fw *f, const char *arg, iv_spec *iv, char *err, size_t errlen)
{
    char e2[512];
    const char *eq = strchr(arg, '=');
    if (!eq) return fail(err, errlen, "--intervene '%s': want SITE:LAYERS:POSITIONS=ACTION", arg);
    snprintf(iv->text, sizeof iv->text, "%s", arg);
    char *spec = strndup(arg, (size_t)(eq - arg));
    int rc = mu_site_parse(spec, f->n_layer, &iv->spec, e2, sizeof e2);
    free(spec);
    if (rc) return fail(err, errlen, "--intervene: %s", e2);
    const char *a = eq + 1;
    if (!strcmp(a, "zero")) iv->kind = ACT_ZERO;
    else if (!strcmp(a, "mean")) iv->kind = ACT_MEAN_BATCH;
    else if (!strncmp(a, "noise=", 6)) {
        char *end;
        iv->kind = ACT_NOISE;
        iv->std = strtod(a + 6, &end);
        if (end == a + 6 || *end || !(iv->std >= 0) || iv->std > 1e30)
            return fail(err, errlen, "--intervene '%s': noise wants a standard deviation >= 0", arg);
    } else if (!strncmp(a, "mean=", 5) || !strncmp(a, "patch=", 6) || !strncmp(a, "add=", 4)) {
        iv->kind = a[0] == 'm' ? ACT_MEAN_FILE : a[0] == 'p' ? ACT_PATCH : ACT_ADD;
        const char *path = strchr(a, '=') + 1;
        iv->file = act_file_load(path, e2, sizeof e2);
        if (!iv->file) return fail(err, errlen, "--intervene: %s", e2);
        if (iv->kind == ACT_MEAN_FILE) {
            int nl = mu_site_is_layered(iv->spec.site) ? iv->spec.n_layers : 1;
            int D = mu_site_width(iv->spec.site, mu_model_config(f->m));
            iv->means = mu_xcalloc((size_t)nl, sizeof *iv->means);
            for (int l = 0; l < nl; l++) {
                int layer = mu_site_is_layered(iv->spec.site) ? iv->spec.layers[l] : -1;
                iv->means[l] = act_file_mean(iv->file, iv->spec.site, layer, D);
                if (!iv->means[l])
                    return fail(err, errlen, "--intervene: %s: no %s:%d vectors of width %d", path,
                                mu_site_name(iv->spec.site), layer, D);
            }
        }
    } else return fail(err, errlen, "--intervene '%s': unknown action '%s' (zero, mean, mean=FILE, noise=STD, patch=FILE, add=FILE)", arg, a);
    return 0;
}

static void add_hook(mu_fw *f, mu_site site, int is_cache, int idx)
{
    hook_ctx *c = &f->hctx[f->n_hooks];
    c->f = f; c->is_cache = is_cache; c->idx = idx;
    f->hooks[f->n_hooks] = (mu_hook){ .site = site, .layer = -1, .backward = 0, .fn = hook_fn, .user = c };
    f->n_hooks++;
}

mu_fw *mu_fw_new(mu_model *m, mu_tokenizer *tk, const mu_fw_opts *o, char *err, size_t errlen)
{
    char e2[512];
    if (o->batch_tokens < 1) { fail(err, errlen, "batch token budget must be >= 1"); return NULL; }
    if (o->n_cache > MU_FW_MAX_SPECS || o->n_intervene > MU_FW_MAX_SPECS) {
        fail(err, errlen, "at most %d --cache and %d --intervene specs", MU_FW_MAX_SPECS, MU_FW_MAX_SPECS);
        return NULL;
    }
    mu_fw *f = mu_xcalloc(1, sizeof *f);
    const mu_config *c = mu_model_config(m);
    f->m = m; f->tk = tk; f->o = *o;
    if (!f->o.subject) f->o.subject = "subject";
    f->V = c->vocab; f->n_layer = c->n_layer;
    /* interventions first: hooks run in order, so an intervention at a site is seen by a cache there */
    for (int i = 0; i < o->n_intervene; i++) {
        if (parse_iv(f, o->intervene[i], &f->iv[i], err, errlen)) { f->n_iv = i + 1; mu_fw_free(f); return NULL; }
        f->n_iv = i + 1;
        add_hook(f, f->iv[i].spec.site, 0, i);
    }
    for (int i = 0; i < o->n_cache; i++) {
        cache_spec *cs = &f->cache[i];
        if (mu_site_parse(o->cache[i], f->n_layer, &cs->spec, e2, sizeof e2)) {
            fail(err, errlen, "--cache: %s", e2);
            mu_fw_free(f);
            return NULL;
        }
        f->n_cache = i + 1;
        mu_site_spec_format(&cs->spec, cs->text, sizeof cs->text);
        cs->D = mu_site_width(cs->spec.site, c);
        cs->nl = mu_site_is_layered(cs->spec.site) ? cs->spec.n_layers : 1;
        add_hook(f, cs->spec.site, 1, i);
    }
    return f;
}

static void rec_free(mu_fw *f, fw_rec *r)
{
    free(r->id.data); free(r->meta.data); free(r->prompt);
    for (int k = 0; k < r->ntg; k++) free(r->tg[k]);
    free(r->tg); free(r->ntgk); free(r->target_text);
    for (int i = 0; i < f->n_cache; i++) { free(r->cpos[i]); free(r->cdata[i]); }
    for (int i = 0; i < f->n_iv; i++) free(r->ipos[i]);
    free(r->tlp); free(r->tmu); free(r->tsig); free(r->trank);
    free(r->clp); free(r->cnt); free(r->topk_ids); free(r->topk_lp);
    free(r->xlp); free(r->xmu); free(r->xsig); free(r->gen);
    memset(r, 0, sizeof *r);
}

void mu_fw_free(mu_fw *f)
{
    if (!f) return;
    for (int i = 0; i < f->nrec; i++) rec_free(f, &f->recs[i]);
    free(f->recs);
    for (int i = 0; i < f->n_cache; i++) mu_site_spec_free(&f->cache[i].spec);
    for (int i = 0; i < f->n_iv; i++) {
        iv_spec *iv = &f->iv[i];
        if (iv->means) {
            int nl = mu_site_is_layered(iv->spec.site) ? iv->spec.n_layers : 1;
            for (int l = 0; l < nl; l++) free(iv->means[l]);
            free(iv->means);
        }
        act_file_free(iv->file);
        mu_site_spec_free(&iv->spec);
    }
    free(f);
}

/* ---- parsing a tokens record -------------------------------------------------------------------- */

/* Copies an i32/i64 id tensor, checking -nsoft <= id < V (ids below 0: the model's
 * soft-prompt slots). */
static int read_ids(const msgpack_object *o, const char *what, int V, int nsoft, int32_t **out, int *n, char *err,
                    size_t errlen)
{
    mu_tensor_view t;
    char e2[256];
    if (mu_obj_tensor(o, &t, e2, sizeof e2)) return fail(err, errlen, "%s: %s", what, e2);
    if ((t.dtype != MU_I32 && t.dtype != MU_I64) || t.ndim != 1)
        return fail(err, errlen, "%s: want an i32 tensor [n], got %s with %d dims", what, mu_dtype_name(t.dtype), t.ndim);
    int64_t cnt = t.shape[0];
    if (cnt > (1 << 24)) return fail(err, errlen, "%s: %lld tokens is too long", what, (long long)cnt);
    int32_t *ids = mu_xcalloc((size_t)cnt + 1, sizeof *ids);
    for (int64_t i = 0; i < cnt; i++) {
        int64_t v;
        if (t.dtype == MU_I32) { int32_t x; memcpy(&x, (const char *)t.data + 4 * i, 4); v = x; }
        else memcpy(&v, (const char *)t.data + 8 * i, 8);
        if (mu_soft_slot_check(v, nsoft, e2, sizeof e2)) {
            free(ids);
            return fail(err, errlen, "%s: token %lld is %lld, %s", what, (long long)i, (long long)v, e2);
        }
        if (v >= V) {
            free(ids);
            return fail(err, errlen, "%s: token %lld is %lld, outside the model's vocabulary of %d", what,
                        (long long)i, (long long)v, V);
        }
        ids[i] = (int32_t)v;
    }
    *out = ids;
    *n = (int)cnt;
    return 0;
}

static int read_targets(fw_rec *r, const msgpack_object *rec, int V, char *err, size_t errlen)
{
    const msgpack_object *tg = mu_obj_get(rec, "targets");
    if (!tg) return 0;
    if (tg->type != MSGPACK_OBJECT_ARRAY) return fail(err, errlen, "targets: not an array of tensors");
    r->ntg = (int)tg->via.array.size;
    r->tg = mu_xcalloc((size_t)r->ntg, sizeof *r->tg);
    r->ntgk = mu_xcalloc((size_t)r->ntg, sizeof *r->ntgk);
    for (int k = 0; k < r->ntg; k++) {
        char what[32];
        snprintf(what, sizeof what, "targets[%d]", k);
        if (read_ids(&tg->via.array.ptr[k], what, V, 0, &r->tg[k], &r->ntgk[k], err, errlen)) return -1;
    }
    return 0;
}

static int read_answer_and_text(fw_rec *r, const msgpack_object *rec, char *err, size_t errlen)
{
    const msgpack_object *a = mu_obj_get(rec, "answer");
    int64_t ans = -1;
    r->answer = -1;
    if (a && a->type != MSGPACK_OBJECT_NIL) {
        if (mu_obj_int(a, &ans) || ans < 0 || (r->ntg && ans >= r->ntg))
            return fail(err, errlen, "answer: not a candidate index in [0, %d)", r->ntg);
        r->answer = (int)ans;
    }
    r->ta = r->ntg ? (r->answer >= 0 ? r->answer : 0) : -1;
    const msgpack_object *tt = mu_obj_get(rec, "target_texts");
    if (r->ta >= 0 && tt && tt->type == MSGPACK_OBJECT_ARRAY && (int)tt->via.array.size > r->ta)
        r->target_text = mu_obj_strdup(&tt->via.array.ptr[r->ta]);
    return 0;
}

static void read_subject(fw_rec *r, const msgpack_object *rec, const char *name)
{
    const msgpack_object *sp = mu_obj_get(rec, "spans"), *s = sp ? mu_obj_get(sp, name) : NULL;
    int64_t a, b;
    r->subj_s = r->subj_e = -1;
    if (s && s->type == MSGPACK_OBJECT_ARRAY && s->via.array.size == 2 && !mu_obj_int(&s->via.array.ptr[0], &a) &&
        !mu_obj_int(&s->via.array.ptr[1], &b) && a >= 0 && b >= a && b <= r->np) {
        r->subj_s = (int)a;
        r->subj_e = (int)b;
    }
}

/* Prompt positions of a spec for this record (malloc'd). */
static int spec_positions(const fw_rec *r, const mu_site_spec *s, const char *name, const char *subject, int **out,
                          int *n, char *err, size_t errlen)
{
    char e2[256];
    if ((s->pos == MU_POS_SUBJECT || s->pos == MU_POS_SUBJECT_LAST) && r->subj_s < 0)
        return fail(err, errlen, "%s: no span \"%s\" in the record (spans name the fields; pick one with --subject)",
                    name, subject);
    int *pos = mu_xcalloc((size_t)r->np, sizeof *pos);
    int cnt = mu_site_positions(s, r->np, r->subj_s, r->subj_e, pos, r->np, e2, sizeof e2);
    if (cnt < 0) { free(pos); return fail(err, errlen, "%s: %s", name, e2); }
    *out = pos;
    *n = cnt;
    return 0;
}

static unsigned resolve_emit(const mu_fw *f, const fw_rec *r)
{
    unsigned e = f->o.emit;
    unsigned scores = e & ~(unsigned)MU_EMIT_GENERATE;
    if (!scores && !f->n_cache && !(e & MU_EMIT_GENERATE)) e |= r->ntg ? MU_EMIT_TARGET : MU_EMIT_TEXT;
    return e;
}

static int needs_forward(const mu_fw *f, const fw_rec *r)
{
    return (r->emit & ~(unsigned)MU_EMIT_GENERATE) || f->n_cache;
}

static int n_rows(const fw_rec *r)
{
    return (r->emit & MU_EMIT_CHOICES) && !r->one_row ? r->ntg : 1;
}

/* The candidate of a record's row j (of n_rows): ROW_ALL_CHOICES, each candidate, or the
 * target (-1: the prompt alone). */
static int row_k(const fw_rec *r, int j)
{
    if (r->one_row) return ROW_ALL_CHOICES;
    return (r->emit & MU_EMIT_CHOICES) ? j : r->ta;
}

/* 1 when one row, the prompt alone, can score all of r's candidates: choices of one token
 * each, nothing read past the prompt's last position (text, mu-sigma), and no mean over the
 * batch (which weighs a record by its rows). Causal: the logits at the prompt's last position
 * are those of every candidate's row, so the outputs are the same. */
static int scores_in_one_row(const mu_fw *f, const fw_rec *r)
{
    if (f->o.row_per_candidate || !(r->emit & MU_EMIT_CHOICES) || (r->emit & (MU_EMIT_TEXT | MU_EMIT_MUSIGMA))) return 0;
    for (int k = 0; k < r->ntg; k++)
        if (r->ntgk[k] != 1) return 0;
    for (int i = 0; i < f->n_iv; i++)
        if (f->iv[i].kind == ACT_MEAN_BATCH) return 0;
    return 1;
}

/* The tokens a row adds to the prompt: its candidate's, none for the prompt alone. */
static int row_extra(const fw_rec *r, int k)
{
    return k >= 0 && r->ntg ? r->ntgk[k] : 0;
}

int mu_fw_add(mu_fw *f, const msgpack_object *rec, long index, char *err, size_t errlen)
{
    if (f->nrec == f->caprec) {
        f->caprec = f->caprec * 2 + 16;
        f->recs = mu_xrealloc(f->recs, (size_t)f->caprec * sizeof *f->recs);
    }
    fw_rec *r = &f->recs[f->nrec];
    memset(r, 0, sizeof *r);
    r->index = index;
    const msgpack_object *id = mu_obj_get(rec, "id"), *meta = mu_obj_get(rec, "meta"), *pr = mu_obj_get(rec, "prompt");
    if (!pr) return fail(err, errlen, "no \"prompt\" tensor (not a tokens record?)");
    const mu_soft_prompt *sp = mu_model_soft_prompt(f->m);
    if (read_ids(pr, "prompt", f->V, sp ? sp->n : 0, &r->prompt, &r->np, err, errlen)) goto bad;
    if (r->np < 1) { fail(err, errlen, "prompt: empty (a model needs at least one token, e.g. BOS)"); goto bad; }
    if (read_targets(r, rec, f->V, err, errlen) || read_answer_and_text(r, rec, err, errlen)) goto bad;
    read_subject(r, rec, f->o.subject);
    r->emit = resolve_emit(f, r);
    if ((r->emit & MU_EMIT_CHOICES) && r->ntg < 1) {
        fail(err, errlen, "--emit choices needs candidate targets; the record has none");
        goto bad;
    }
    if ((r->emit & (MU_EMIT_TARGET | MU_EMIT_RANKS)) && r->ntg < 1) {
        fail(err, errlen, "--emit target/ranks needs targets; the record has none");
        goto bad;
    }
    for (int k = 0; k < r->ntg; k++)
        if (r->ntgk[k] < 1 && (r->emit & (MU_EMIT_CHOICES | MU_EMIT_TARGET | MU_EMIT_RANKS))) {
            fail(err, errlen, "targets[%d]: empty candidate", k);
            goto bad;
        }
    for (int i = 0; i < f->n_cache; i++)
        if (spec_positions(r, &f->cache[i].spec, f->cache[i].text, f->o.subject, &r->cpos[i], &r->ncpos[i], err, errlen)) goto bad;
    for (int i = 0; i < f->n_iv; i++) {
        if (spec_positions(r, &f->iv[i].spec, f->iv[i].text, f->o.subject, &r->ipos[i], &r->nipos[i], err, errlen)) goto bad;
        if (f->iv[i].kind == ACT_PATCH || f->iv[i].kind == ACT_ADD) {
            packed idp = id ? pack_copy(id) : (packed){ NULL, 0 };
            r->patch[i] = idp.data ? act_lookup(f->iv[i].file, &idp) : NULL;
            free(idp.data);
            if (!r->patch[i]) { fail(err, errlen, "%s: no record with this id", f->iv[i].file->path); goto bad; }
        }
    }
    if (id) r->id = pack_copy(id);
    if (meta) { r->meta = pack_copy(meta); r->has_meta = 1; }
    if (r->emit & MU_EMIT_GENERATE) f->pending += r->np + f->o.gen_n;
    r->one_row = scores_in_one_row(f, r);
    if (needs_forward(f, r)) {
        int nr = n_rows(r);
        for (int j = 0; j < nr; j++) f->pending += r->np + row_extra(r, row_k(r, j));
    }
    f->nrec++;
    return 0;
bad:
    rec_free(f, r);
    return -1;
}

long mu_fw_pending_tokens(const mu_fw *f) { return f->pending; }
int mu_fw_pending_records(const mu_fw *f) { return f->nrec; }

/* The row of a record that caches and top-k read (all rows agree on the prompt). */
static int primary_row(const fw_rec *r, int k) { return (r->emit & MU_EMIT_CHOICES) && !r->one_row ? k == 0 : 1; }

/* ---- hooks ---------------------------------------------------------------------------------------- */

static void cache_hook(mu_fw *f, const cache_spec *cs, int ci, const mu_hook_info *in, const float *act)
{
    int li = spec_layer_index(&cs->spec, in->layer);
    if (li < 0) return;
    for (int b = 0; b < in->B; b++) {
        const fw_row *row = &f->brows[b];
        fw_rec *r = &f->recs[row->rec];
        if (!primary_row(r, row->k)) continue;
        int P = r->ncpos[ci];
        if (!r->cdata[ci]) r->cdata[ci] = mu_xcalloc((size_t)cs->nl * P * in->D, sizeof(float));
        for (int p = 0; p < P; p++)
            memcpy(r->cdata[ci] + ((size_t)li * P + p) * in->D, act + ((size_t)b * in->T + r->cpos[ci][p]) * in->D,
                   (size_t)in->D * sizeof(float));
    }
}

static const act_entry *find_entry(const act_record *ar, mu_site site, int layer)
{
    for (int j = 0; j < ar->n; j++)
        if (ar->e[j].site == site && ar->e[j].layer == layer) return &ar->e[j];
    return NULL;
}

static void mean_over_batch(const mu_fw *f, int ii, const mu_hook_info *in, float *act)
{
    int D = in->D;
    double *acc = mu_xcalloc((size_t)D, sizeof *acc);
    long cnt = 0;
    for (int b = 0; b < in->B; b++) {
        const fw_rec *r = &f->recs[f->brows[b].rec];
        for (int p = 0; p < r->nipos[ii]; p++, cnt++)
            for (int d = 0; d < D; d++) acc[d] += act[((size_t)b * in->T + r->ipos[ii][p]) * D + d];
    }
    for (int b = 0; b < in->B && cnt; b++) {
        const fw_rec *r = &f->recs[f->brows[b].rec];
        for (int p = 0; p < r->nipos[ii]; p++)
            for (int d = 0; d < D; d++) act[((size_t)b * in->T + r->ipos[ii][p]) * D + d] = (float)(acc[d] / cnt);
    }
    free(acc);
}

static int intervene_hook(mu_fw *f, const iv_spec *iv, int ii, const mu_hook_info *in, float *act)
{
    int li = spec_layer_index(&iv->spec, in->layer);
    if (li < 0) return 0;
    if (iv->kind == ACT_MEAN_BATCH) { mean_over_batch(f, ii, in, act); return 0; }
    int D = in->D;
    for (int b = 0; b < in->B; b++) {
        const fw_rec *r = &f->recs[f->brows[b].rec];
        const act_entry *e = NULL;
        mu_rng rng;
        if (iv->kind == ACT_PATCH || iv->kind == ACT_ADD) {
            e = find_entry(r->patch[ii], iv->spec.site, in->layer);
            if (!e || e->D != D || e->P != r->nipos[ii] || memcmp(e->pos, r->ipos[ii], (size_t)e->P * sizeof(int))) {
                snprintf(f->hook_err, sizeof f->hook_err,
                         "record %ld: %s: no %s:%d vectors at the same %d positions (width %d) in the record with this id",
                         r->index, iv->file->path, mu_site_name(iv->spec.site), in->layer, r->nipos[ii], D);
                return -1;
            }
        }
        if (iv->kind == ACT_NOISE)
            mu_rng_seed2(&rng, f->o.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(ii + 1)) ^ ((uint64_t)(in->layer + 1) << 40),
                         (uint64_t)r->index);
        for (int p = 0; p < r->nipos[ii]; p++) {
            float *x = act + ((size_t)b * in->T + r->ipos[ii][p]) * D;
            switch (iv->kind) {
            case ACT_ZERO: memset(x, 0, (size_t)D * sizeof *x); break;
            case ACT_MEAN_FILE: memcpy(x, iv->means[li], (size_t)D * sizeof *x); break;
            case ACT_NOISE: for (int d = 0; d < D; d++) x[d] += (float)(iv->std * mu_rng_normal(&rng)); break;
            case ACT_PATCH: memcpy(x, e->x + (size_t)p * D, (size_t)D * sizeof *x); break;
            case ACT_ADD: for (int d = 0; d < D; d++) x[d] += e->x[(size_t)p * D + d]; break;
            case ACT_MEAN_BATCH: break;
            }
        }
    }
    return 0;
}

static int hook_fn(const mu_hook_info *info, float *act, void *user)
{
    hook_ctx *c = user;
    mu_fw *f = c->f;
    if (c->is_cache) { cache_hook(f, &f->cache[c->idx], c->idx, info, act); return 0; }
    return intervene_hook(f, &f->iv[c->idx], c->idx, info, act);
}

/* ---- scoring a batch --------------------------------------------------------------------------------- */

static const int32_t *row_target(const fw_rec *r, int k, int *m)
{
    if (k < 0 || r->ntg == 0) { *m = 0; return NULL; }
    *m = r->ntgk[k];
    return r->tg[k];
}

static void row_ids(const fw_rec *r, int k, int32_t *dst)
{
    int m;
    const int32_t *t = row_target(r, k, &m);
    memcpy(dst, r->prompt, (size_t)r->np * sizeof *dst);
    if (m) memcpy(dst + r->np, t, (size_t)m * sizeof *dst);
}

static void alloc_results(fw_rec *r)
{
    int m = r->ta >= 0 ? r->ntgk[r->ta] : 0, len = r->np + m;
    if (r->emit & (MU_EMIT_TARGET | MU_EMIT_RANKS | MU_EMIT_MUSIGMA)) {
        r->ntl = m;
        r->tlp = mu_xcalloc((size_t)m, sizeof *r->tlp);
        r->trank = mu_xcalloc((size_t)m, sizeof *r->trank);
    }
    if (r->emit & MU_EMIT_MUSIGMA) {
        int n = m ? m : len - 1;
        r->tmu = mu_xcalloc((size_t)n, sizeof *r->tmu);
        r->tsig = mu_xcalloc((size_t)n, sizeof *r->tsig);
    }
    if (r->emit & MU_EMIT_CHOICES) {
        r->clp = mu_xcalloc((size_t)r->ntg, sizeof *r->clp);
        r->cnt = mu_xcalloc((size_t)r->ntg, sizeof *r->cnt);
    }
    if (r->emit & (MU_EMIT_TEXT | MU_EMIT_MUSIGMA)) {
        r->nxl = len - 1;
        r->xlp = mu_xcalloc((size_t)r->nxl, sizeof *r->xlp);
    }
}

/* Top-k of logits x[V] into ids/lp (descending; ties: lower id first). */
static void topk(const float *x, int V, double lse, int K, int32_t *ids, float *lp)
{
    int n = 0;
    for (int v = 0; v < V; v++) {
        if (n == K && !(x[v] > x[ids[K - 1]])) continue;
        int j = n < K ? n++ : K - 1;
        while (j > 0 && x[v] > x[ids[j - 1]]) { ids[j] = ids[j - 1]; j--; }
        ids[j] = v;
    }
    for (int i = 0; i < n; i++) lp[i] = (float)(x[ids[i]] - lse);
}

/* The positions [*t0, *t1] of a row whose logits score_row reads: the prompt's last token
 * and the target's tokens but its last; every position when the text is scored. */
static void scored_span(const mu_fw *f, const fw_row *row, int *t0, int *t1)
{
    const fw_rec *r = &f->recs[row->rec];
    int m;
    row_target(r, row->k, &m);
    *t0 = row->k == r->ta && r->xlp ? 0 : r->np - 1;
    *t1 = m > 1 ? r->np + m - 2 : r->np - 1;
}

/* The one-token candidates of a one_row record from x [V], the logits at its prompt's last
 * position: each choice's log-prob, and the target's (with its rank) when asked; the values
 * score_row gives a one-token candidate's own row. */
static void score_all_choices(const mu_fw *f, fw_rec *r, const float *x)
{
    double lse = mu_fw_logsumexp(x, f->V);
    for (int k = 0; k < r->ntg; k++) {
        float lp = (float)(x[r->tg[k][0]] - lse);
        r->clp[k] = lp;
        r->cnt[k] = 1;
        if (k == r->ta && r->tlp) { r->tlp[0] = lp; r->trank[0] = mu_fw_rank(x, f->V, r->tg[k][0]); }
    }
}

/* Reads the logits of one row into the record's results: lg [t1 - t0 + 1, V] holds the
 * logits of positions t0 .. t1 (scored_span). */
static void score_row(mu_fw *f, const fw_row *row, const float *lg, int t0)
{
    fw_rec *r = &f->recs[row->rec];
    int V = f->V, np = r->np, m;
    const int32_t *tgt = row_target(r, row->k, &m);
    int is_target_row = row->k == r->ta;    /* also true for the prompt-only row (-1 == -1) */
    int text = is_target_row && r->xlp, want_t = is_target_row && r->tlp;
    double csum = 0;
    for (int t = text ? 0 : np - 1; t < np + m - 1 || t == np - 1; t++) {
        const float *x = lg + (size_t)(t - t0) * V;
        double lse = mu_fw_logsumexp(x, V);
        if (t == np - 1 && (r->emit & MU_EMIT_TOPK) && primary_row(r, row->k) && !r->topk_ids) {
            r->ntopk = f->o.topk < V ? f->o.topk : V;
            r->topk_ids = mu_xcalloc((size_t)r->ntopk, sizeof *r->topk_ids);
            r->topk_lp = mu_xcalloc((size_t)r->ntopk, sizeof *r->topk_lp);
            topk(x, V, lse, r->ntopk, r->topk_ids, r->topk_lp);
        }
        if (t >= np + m - 1) break;    /* prompt-only row: no next token after the last */
        int next = t + 1 < np ? r->prompt[t + 1] : tgt[t + 1 - np];
        float lp = next < 0 ? NAN : (float)(x[next] - lse);   /* a soft-prompt slot: no token */
        if (text) r->xlp[t] = lp;
        if (is_target_row && r->tmu && (m ? t >= np - 1 : 1)) {
            int i = m ? t - (np - 1) : t;
            mu_fw_mu_sigma(x, V, lse, &r->tmu[i], &r->tsig[i]);
        }
        if (t < np - 1) continue;
        int i = t - (np - 1);
        csum += lp;
        if (want_t) { r->tlp[i] = lp; r->trank[i] = mu_fw_rank(x, V, next); }
    }
    if ((r->emit & MU_EMIT_CHOICES) && row->k >= 0) {
        r->clp[row->k] = (float)csum;
        r->cnt[row->k] = m;
    }
    if (row->k == ROW_ALL_CHOICES) score_all_choices(f, r, lg + (size_t)(np - 1 - t0) * V);
}

/* 1 when one of hooks[0 .. n) is at the logits site (it then sees every position) */
static int logits_hooked(const mu_fw *f, int n)
{
    for (int i = 0; i < n; i++)
        if (f->hooks[i].site == MU_SITE_LOGITS) return 1;
    return 0;
}

static int run_batch(mu_fw *f, const fw_row *rows, int B, char *err, size_t errlen)
{
    int T = 0;
    for (int b = 0; b < B; b++) if (rows[b].len > T) T = rows[b].len;
    int32_t *ids = mu_xcalloc((size_t)B * T, sizeof *ids), *lens = mu_xcalloc((size_t)B, sizeof *lens);
    for (int b = 0; b < B; b++) {
        row_ids(&f->recs[rows[b].rec], rows[b].k, ids + (size_t)b * T);
        lens[b] = rows[b].len;
    }
    mu_batch bt = { .B = B, .T = T, .ids = ids, .lens = lens };
    mu_fwd_opts fo = { .hooks = f->hooks, .n_hooks = f->n_hooks };
    /* logits only where they are read (unless a hook wants the whole logits site) */
    int sel = !logits_hooked(f, f->n_hooks), n = 0;
    int32_t *pos = sel ? mu_xmalloc((size_t)B * T * sizeof *pos) : NULL;
    /* row b's logits: logit row first[b] holds position from[b] */
    int *first = mu_xmalloc((size_t)B * sizeof *first), *from = mu_xmalloc((size_t)B * sizeof *from);
    for (int b = 0; b < B; b++) {
        int t0, t1;
        scored_span(f, &rows[b], &t0, &t1);
        first[b] = sel ? n : b * T;
        from[b] = sel ? t0 : 0;
        for (int t = t0; sel && t <= t1; t++) pos[n++] = b * T + t;
    }
    fo.logit_rows = pos;
    fo.n_logit_rows = n;
    f->brows = rows;
    f->hook_err[0] = 0;
    char e2[512];
    int rc = mu_model_forward(f->m, &bt, &fo, e2, sizeof e2);
    if (rc) {
        if (f->hook_err[0]) fail(err, errlen, "%s", f->hook_err);
        else fail(err, errlen, "forward: %s", e2);
    } else {
        const float *lg = mu_model_logits(f->m);
        for (int b = 0; b < B; b++) score_row(f, &rows[b], lg + (size_t)first[b] * f->V, from[b]);
    }
    free(ids); free(lens); free(pos); free(first); free(from);
    return rc ? -1 : 0;
}

static int row_cmp(const void *a, const void *b)
{
    const fw_row *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    if (x->rec != y->rec) return x->rec < y->rec ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* All rows of the queued records, sorted by length, in batches of <= batch_tokens padded tokens. */
static int score_all(mu_fw *f, char *err, size_t errlen)
{
    int n = 0, cap = 0;
    fw_row *rows = NULL;
    for (int i = 0; i < f->nrec; i++) {
        fw_rec *r = &f->recs[i];
        if (!needs_forward(f, r)) continue;
        alloc_results(r);
        int nr = n_rows(r);
        for (int j = 0; j < nr; j++) {
            if (n == cap) { cap = cap * 2 + 64; rows = mu_xrealloc(rows, (size_t)cap * sizeof *rows); }
            int k = row_k(r, j);
            rows[n++] = (fw_row){ .rec = i, .k = k, .len = r->np + row_extra(r, k) };
        }
    }
    if (n) qsort(rows, (size_t)n, sizeof *rows, row_cmp);
    int rc = 0;
    for (int s = 0; s < n && !rc;) {
        int e = s + 1;
        while (e < n && (long)(e + 1 - s) * rows[e].len <= f->o.batch_tokens) e++;
        rc = run_batch(f, rows + s, e - s, err, errlen);
        s = e;
    }
    free(rows);
    return rc;
}

/* ---- generation --------------------------------------------------------------------------------------- */

/* Samples from logits x[V] with temperature and nucleus top_p (x is overwritten). */
static int32_t sample(float *x, int V, double temp, double top_p, mu_rng *rng, int32_t *order)
{
    double mx = x[0];
    for (int v = 1; v < V; v++) if (x[v] > mx) mx = x[v];
    double z = 0;
    for (int v = 0; v < V; v++) { x[v] = (float)exp((x[v] - mx) / temp); z += x[v]; order[v] = v; }
    int n = V;
    if (top_p < 1) {
        /* sort by probability, descending (insertion into a partial order is fine for small V;
           use qsort_r-free selection: simple sort) */
        for (int i = 1; i < V; i++) {
            int32_t id = order[i];
            int j = i;
            while (j > 0 && x[order[j - 1]] < x[id]) { order[j] = order[j - 1]; j--; }
            order[j] = id;
        }
        double c = 0;
        for (n = 0; n < V; n++) { c += x[order[n]] / z; if (c >= top_p) { n++; break; } }
        if (n > V) n = V;
        z = 0;
        for (int i = 0; i < n; i++) z += x[order[i]];
    }
    double u = mu_rng_uniform(rng) * z, c = 0;
    for (int i = 0; i < n; i++) {
        c += x[order[i]];
        if (u < c) return order[i];
    }
    return order[n - 1];
}

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

/* The next token of one row from its logits x[V]: argmax (greedy) or a sample. */
static int32_t next_token(const mu_fw *f, const float *x, float *scratch, int32_t *order, mu_rng *rng)
{
    if (f->o.temperature <= 0) return argmax(x, f->V);
    memcpy(scratch, x, (size_t)f->V * sizeof *scratch);
    return sample(scratch, f->V, f->o.temperature, f->o.top_p, rng, order);
}

/* Decodes up to gen_n tokens after the prompts of records ri[0..B) together, with a KV
 * cache of B rows (finished rows continue with length 0). Interventions act on the pass
 * over the prompts (their positions index the prompt); the decode steps run unhooked.
 * Each row samples from its own stream (seed, record index). */
static int generate_batch(mu_fw *f, const int *ri, int B, char *err, size_t errlen)
{
    int N = f->o.gen_n, V = f->V, T = 0;
    for (int b = 0; b < B; b++) {
        fw_rec *r = &f->recs[ri[b]];
        r->gen = mu_xcalloc((size_t)N + 1, sizeof *r->gen);
        if (r->np > T) T = r->np;
    }
    if (N == 0) return 0;
    mu_kvcache *c = mu_kvcache_new(f->m, B, T + N);
    if (!c) return fail(err, errlen, "generate: out of memory for a KV cache of %d x %d tokens", B, T + N);
    fw_row *rows = mu_xcalloc((size_t)B, sizeof *rows);
    int32_t *ids = mu_xcalloc((size_t)B * T, sizeof *ids), *lens = mu_xcalloc((size_t)B, sizeof *lens);
    mu_rng *rng = mu_xcalloc((size_t)B, sizeof *rng);
    for (int b = 0; b < B; b++) {
        fw_rec *r = &f->recs[ri[b]];
        rows[b] = (fw_row){ .rec = ri[b], .k = -1, .len = r->np };
        memcpy(ids + (size_t)b * T, r->prompt, (size_t)r->np * sizeof *ids);
        lens[b] = r->np;
        mu_rng_seed2(&rng[b], f->o.seed, (uint64_t)r->index);
    }
    f->brows = rows;
    f->hook_err[0] = 0;
    float *x = mu_xcalloc((size_t)V, sizeof *x);
    int32_t *order = mu_xcalloc((size_t)V, sizeof *order);
    /* hooks[0 .. n_iv) are the interventions (caches come after them); with interventions
     * the prompt pass computes logits at each row's last token as logit rows (last_only
     * would skip the hooks' view of the logits site, so a logits intervention gets them all) */
    int32_t *last = mu_xcalloc((size_t)B, sizeof *last);
    int nlast = 0;
    for (int b = 0; b < B; b++)
        if (lens[b] > 0) last[nlast++] = b * T + lens[b] - 1;
    mu_fwd_opts o = { .logits_last_only = !f->n_iv, .cache = c, .hooks = f->hooks, .n_hooks = f->n_iv };
    if (f->n_iv && !logits_hooked(f, f->n_iv)) {
        o.logit_rows = last;
        o.n_logit_rows = nlast;
    }
    mu_batch bt = { B, T, ids, lens };
    char e2[512];
    int rc = 0, active = B;
    while (active) {
        if (mu_model_forward(f->m, &bt, &o, e2, sizeof e2)) {
            rc = f->hook_err[0] ? fail(err, errlen, "%s", f->hook_err) : fail(err, errlen, "generate: %s", e2);
            break;
        }
        const float *lg = mu_model_logits(f->m);
        int k = 0;                    /* logit row of b in a logit_rows pass */
        for (int b = 0; b < B; b++) {
            if (!lens[b]) continue;
            fw_rec *r = &f->recs[ri[b]];
            const float *row = o.logits_last_only ? lg + (size_t)b * V
                             : o.logit_rows ? lg + (size_t)k++ * V
                             : lg + ((size_t)b * bt.T + lens[b] - 1) * V;   /* all positions */
            int32_t t = next_token(f, row, x, order, &rng[b]);
            r->gen[r->ngen++] = t;
            if (t == f->o.eos || r->ngen == N) { lens[b] = 0; active--; }
            else lens[b] = 1;
            ids[b] = lens[b] ? t : 0;
        }
        bt = (mu_batch){ B, 1, ids, lens };
        o.hooks = NULL;
        o.n_hooks = 0;
        o.logits_last_only = 1;
        o.logit_rows = NULL;
        o.n_logit_rows = 0;
    }
    free(x); free(order); free(rng); free(rows); free(ids); free(lens); free(last);
    mu_kvcache_free(c);
    return rc;
}

static int prompt_cmp(const void *a, const void *b, void *user)
{
    const mu_fw *f = user;
    int x = *(const int *)a, y = *(const int *)b, nx = f->recs[x].np, ny = f->recs[y].np;
    return nx != ny ? (nx < ny ? -1 : 1) : (x > y) - (x < y);
}

/* Generation for every queued record that asks for it: sorted by prompt length, in
 * batches whose KV cache (rows x (longest prompt + gen_n)) fits batch_tokens. */
static int generate_all(mu_fw *f, char *err, size_t errlen)
{
    int *ri = mu_xcalloc((size_t)f->nrec, sizeof *ri), n = 0, rc = 0;
    for (int i = 0; i < f->nrec; i++) if (f->recs[i].emit & MU_EMIT_GENERATE) ri[n++] = i;
    if (n) qsort_r(ri, (size_t)n, sizeof *ri, prompt_cmp, f);
    for (int s = 0; s < n && !rc;) {
        int e = s + 1;
        while (e < n && e - s < 256 && (long)(e + 1 - s) * (f->recs[ri[e]].np + f->o.gen_n) <= f->o.batch_tokens) e++;
        rc = generate_batch(f, ri + s, e - s, err, errlen);
        s = e;
    }
    free(ri);
    return rc;
}

/* ---- writing --------------------------------------------------------------------------------------------- */

static void kv_f32(msgpack_packer *pk, const char *key, const float *x, int n)
{
    int64_t s[1] = { n };
    mu_pack_kv_tensor(pk, key, MU_F32, 1, s, x);
}

static void kv_i32(msgpack_packer *pk, const char *key, const int32_t *x, int n)
{
    int64_t s[1] = { n };
    mu_pack_kv_tensor(pk, key, MU_I32, 1, s, x);
}

static int write_outputs(mu_fw *f, fw_rec *r, mu_writer *w, char *err, size_t errlen)
{
    char *gtext = NULL;
    size_t glen = 0;
    if (r->gen && f->tk) {
        char e2[256];
        if (mu_tok_decode_model_ids(f->tk, r->gen, (size_t)r->ngen, (size_t)f->V, 1, &gtext, &glen, e2, sizeof e2))
            return fail(err, errlen, "record %ld: decoding the generation: %s", r->index, e2);
    }
    int tgt = (r->emit & MU_EMIT_TARGET) && r->tlp, rk = (r->emit & MU_EMIT_RANKS) && r->tlp;
    int ms = (r->emit & MU_EMIT_MUSIGMA) && r->tmu, ch = (r->emit & MU_EMIT_CHOICES) && r->clp;
    int tx = (r->emit & MU_EMIT_TEXT) && r->xlp, tk = r->topk_ids != NULL;
    int n = (r->id.data != NULL) + r->has_meta + (r->answer >= 0) + (r->target_text != NULL) + tgt + rk + 2 * ms +
            2 * ch + 2 * tk + tx + (r->gen != NULL) + (gtext != NULL);
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, (size_t)n);
    if (r->id.data) { mu_pack_str(pk, "id"); pack_raw(pk, &r->id); }
    if (r->has_meta) { mu_pack_str(pk, "meta"); pack_raw(pk, &r->meta); }
    if (r->answer >= 0) mu_pack_kv_int(pk, "answer", r->answer);
    if (r->target_text) mu_pack_kv_str(pk, "target_text", r->target_text);
    if (tgt) kv_f32(pk, "target_logprobs", r->tlp, r->ntl);
    if (rk) kv_i32(pk, "target_ranks", r->trank, r->ntl);
    if (ms) {
        int nm = r->ntl ? r->ntl : r->nxl;
        kv_f32(pk, "token_mu", r->tmu, nm);
        kv_f32(pk, "token_sigma", r->tsig, nm);
    }
    if (ch) { kv_f32(pk, "choice_logprobs", r->clp, r->ntg); kv_i32(pk, "choice_ntokens", r->cnt, r->ntg); }
    if (tk) { kv_i32(pk, "topk_ids", r->topk_ids, r->ntopk); kv_f32(pk, "topk_logprobs", r->topk_lp, r->ntopk); }
    if (tx) kv_f32(pk, "text_logprobs", r->xlp, r->nxl);
    if (r->gen) kv_i32(pk, "generation", r->gen, r->ngen);
    if (gtext) mu_pack_kv_str(pk, "generation_text", gtext);
    mu_writer_end_record(w);
    free(gtext);
    return 0;
}

static void write_acts(mu_fw *f, fw_rec *r, mu_writer *w)
{
    int total = 0;
    for (int i = 0; i < f->n_cache; i++) total += f->cache[i].nl;
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, (size_t)(2 + (r->id.data != NULL) + r->has_meta));
    if (r->id.data) { mu_pack_str(pk, "id"); pack_raw(pk, &r->id); }
    if (r->has_meta) { mu_pack_str(pk, "meta"); pack_raw(pk, &r->meta); }
    mu_pack_kv_int(pk, "len", r->np);
    mu_pack_str(pk, "acts");
    msgpack_pack_array(pk, (size_t)total);
    for (int i = 0; i < f->n_cache; i++) {
        const cache_spec *cs = &f->cache[i];
        int P = r->ncpos[i], D = cs->D;
        int32_t *pos = mu_xcalloc((size_t)P, sizeof *pos);
        for (int p = 0; p < P; p++) pos[p] = r->cpos[i][p];
        uint16_t *h = f->o.cache_dtype == MU_F16 ? mu_xcalloc((size_t)P * D, sizeof *h) : NULL;
        for (int l = 0; l < cs->nl; l++) {
            const float *x = r->cdata[i] ? r->cdata[i] + (size_t)l * P * D : NULL;
            float *zeros = NULL;
            if (!x) x = zeros = mu_xcalloc((size_t)P * D, sizeof *zeros);   /* P == 0 */
            msgpack_pack_map(pk, 4);
            mu_pack_kv_str(pk, "site", mu_site_name(cs->spec.site));
            mu_pack_kv_int(pk, "layer", mu_site_is_layered(cs->spec.site) ? cs->spec.layers[l] : -1);
            int64_t s1[1] = { P }, s2[2] = { P, D };
            mu_pack_kv_tensor(pk, "positions", MU_I32, 1, s1, pos);
            if (h) {
                for (size_t j = 0; j < (size_t)P * D; j++) h[j] = mu_f32_to_f16(x[j]);
                mu_pack_kv_tensor(pk, "x", MU_F16, 2, s2, h);
            } else mu_pack_kv_tensor(pk, "x", MU_F32, 2, s2, x);
            free(zeros);
        }
        free(h); free(pos);
    }
    mu_writer_end_record(w);
}

void mu_fw_acts_meta(const mu_fw *f, mu_writer *acts)
{
    msgpack_packer *pk = mu_writer_meta(acts, "sites");
    msgpack_pack_array(pk, (size_t)f->n_cache);
    for (int i = 0; i < f->n_cache; i++) mu_pack_str(pk, f->cache[i].text);
    pk = mu_writer_meta(acts, "dtype");
    mu_pack_str(pk, mu_dtype_name(f->o.cache_dtype));
}

int mu_fw_flush(mu_fw *f, mu_writer *out, mu_writer *acts, char *err, size_t errlen)
{
    int rc = score_all(f, err, errlen);
    if (!rc) rc = generate_all(f, err, errlen);
    for (int i = 0; i < f->nrec && !rc; i++) {
        fw_rec *r = &f->recs[i];
        if (write_outputs(f, r, out, err, errlen)) { rc = -1; break; }
        if (acts && f->n_cache) write_acts(f, r, acts);
    }
    for (int i = 0; i < f->nrec; i++) rec_free(f, &f->recs[i]);
    f->nrec = 0;
    f->pending = 0;
    return rc;
}
