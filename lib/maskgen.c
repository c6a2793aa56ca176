/* maskgen.c — candidates from scores streams or model configs, ordering (scores or a
 * seeded shuffle), the size rules and the complement; see maskgen.h. */
#include "maskgen.h"
#include "arch.h"
#include "cli.h"
#include "rng.h"
#include "stream.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- candidates ---- */

static void cands_init(mu_cands *c, int64_t params_total) {
    memset(c, 0, sizeof *c);
    mu_mask_init(&c->m, "mixed", params_total);
    mu_mask_init(&c->excl, "mixed", params_total);
}

void mu_cands_free(mu_cands *c) {
    if (c->score)
        for (int i = 0; i < c->m.n; i++) free(c->score[i]);
    free(c->score);
    mu_mask_free(&c->m);
    mu_mask_free(&c->excl);
    memset(c, 0, sizeof *c);
}

/* Adds one candidate tensor (validated by mu_mask_add); 0 ok, -1 + err. */
static int cands_add(mu_cands *c, const char *name, int ndim, const int64_t *shape, mu_granularity g,
                     int64_t units, char *err, size_t errlen) {
    if (!mu_mask_add(&c->m, name, ndim, shape, g, units, err, errlen)) return -1;
    if (!mu_mask_add(&c->excl, name, ndim, shape, g, units, err, errlen)) return -1;
    return 0;
}

/* Header granularity of a set of tensors: their common one, else "mixed". */
static void common_granularity(const mu_mask *m, char *out, size_t len) {
    const char *g = m->n ? mu_gran_name(m->t[0].gran) : "mixed";
    for (int i = 1; i < m->n; i++)
        if (m->t[i].gran != m->t[0].gran) g = "mixed";
    snprintf(out, len, "%s", g);
}

static void cands_finish(mu_cands *c) {
    common_granularity(&c->m, c->m.granularity, sizeof c->m.granularity);
    snprintf(c->excl.granularity, sizeof c->excl.granularity, "%s", c->m.granularity);
}

int64_t mu_cands_units(const mu_cands *c) {
    int64_t k = 0;
    for (int i = 0; i < c->m.n; i++) k += c->m.t[i].units - mu_mask_selected(&c->excl.t[i]);
    return k;
}

int64_t mu_cands_params(const mu_cands *c) {
    int64_t k = 0;
    for (int i = 0; i < c->m.n; i++) {
        const mu_mask_tensor *t = &c->m.t[i];
        k += (t->units - mu_mask_selected(&c->excl.t[i])) * (mu_mask_tensor_numel(t) / t->units);
    }
    return k;
}

/* Reads one scores record into c; 0 ok, -1 + message (without the file/record prefix). */
static int read_scores_record(const msgpack_object *rec, mu_cands *c, char *msg, size_t len) {
    char *name;
    int ndim;
    int64_t shape[2], units;
    mu_granularity g;
    if (mu_mask_read_layout(rec, &name, &ndim, shape, &g, &units, msg, len)) return -1;
    int rc = -1;
    const msgpack_object *o;
    if (cands_add(c, name, ndim, shape, g, units, msg, len) < 0) goto out;
    mu_tensor_view tv;
    char terr[160];
    o = mu_obj_get(rec, "score");
    if (!o) { snprintf(msg, len, "tensor %s: missing \"score\"", name); goto out; }
    if (mu_obj_tensor(o, &tv, terr, sizeof terr) < 0) {
        snprintf(msg, len, "tensor %s: score: %s", name, terr);
        goto out;
    }
    if (tv.dtype != MU_F32 || tv.ndim != 1 || tv.shape[0] != units) {
        snprintf(msg, len, "tensor %s: score must be f32 [%lld], got %s with %d dims", name,
                 (long long)units, mu_dtype_name(tv.dtype), tv.ndim);
        goto out;
    }
    float *s = mu_xmalloc((size_t)units * sizeof *s);
    memcpy(s, tv.data, (size_t)units * sizeof *s);
    c->score[c->m.n - 1] = s;
    for (int64_t u = 0; u < units; u++)
        if (isnan(s[u])) {
            snprintf(msg, len, "tensor %s: score of unit %lld is NaN", name, (long long)u);
            goto out;
        }
    rc = 0;
out:
    free(name);
    return rc;
}

/* params_total and method from the header meta; 0 ok, -1 + err. */
static int read_scores_header(mu_reader *r, const char *path, mu_cands *c, char *err, size_t errlen) {
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta");
    int64_t total;
    if (mu_obj_int(mu_obj_get(meta, "params_total"), &total) < 0 || total < 1) {
        snprintf(err, errlen, "%s: header: meta \"params_total\" must be a positive int", path);
        return -1;
    }
    cands_init(c, total);
    char *method = mu_obj_strdup(mu_obj_get(meta, "method"));
    if (method) snprintf(c->method, sizeof c->method, "%s", method);
    free(method);
    return 0;
}

int mu_cands_read_scores(const char *path, mu_cands *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    mu_reader *r = mu_reader_open(path, "scores", err, errlen);
    if (!r) return -1;
    if (read_scores_header(r, path, c, err, errlen) < 0) { mu_reader_close(r); return -1; }
    const msgpack_object *rec;
    int st, cap = 0;
    char msg[384];
    while ((st = mu_reader_next(r, &rec)) == 1) {
        if (c->m.n + 1 > cap) {   /* score[] grows ahead of the tensors */
            cap = cap ? 2 * cap : 64;
            c->score = mu_xrealloc(c->score, (size_t)cap * sizeof *c->score);
        }
        c->score[c->m.n] = NULL;
        if (read_scores_record(rec, c, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s: record %ld: %s", path, mu_reader_record_index(r), msg);
            goto fail;
        }
    }
    if (st < 0) { snprintf(err, errlen, "%s", mu_reader_error(r)); goto fail; }
    if (c->m.n == 0) { snprintf(err, errlen, "%s: no records (nothing was scored)", path); goto fail; }
    int64_t numel = 0;
    for (int i = 0; i < c->m.n; i++) numel += mu_mask_tensor_numel(&c->m.t[i]);
    if (numel > c->m.params_total) {
        snprintf(err, errlen, "%s: the scored tensors hold %lld parameters, more than params_total %lld",
                 path, (long long)numel, (long long)c->m.params_total);
        goto fail;
    }
    mu_reader_close(r);
    cands_finish(c);
    return 0;
fail:
    mu_reader_close(r);
    mu_cands_free(c);
    return -1;
}

static int is_attention_role(const char *role) {
    static const char *roles[] = {"q", "k", "v", "o", "q_bias", "k_bias", "v_bias", "qkv", "qkv_bias", "o_bias"};
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (!strcmp(role, roles[i])) return 1;
    return 0;
}

/* Units of parameter p at granularity g; -1 + err when g does not apply. */
static int64_t model_units(const mu_param_info *p, const mu_config *cfg, mu_granularity g, char *err,
                           size_t errlen) {
    int64_t units = mu_mask_units_for(p->name, p->ndim, p->shape, g, mu_arch_head_rows(p, cfg));
    if (g == MU_GRAN_HEAD && (!is_attention_role(p->role) || units < 0)) {
        snprintf(err, errlen, "tensor %s: head granularity applies to attention tensors only "
                 "(q/k/v/o_proj, query_key_value, dense; pick them with attn:L)", p->name);
        return -1;
    }
    return units;
}

int mu_cands_from_model(const mu_config *cfg, const char *spec, mu_granularity g, mu_cands *c,
                        char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    mu_param_info *p;
    int np = mu_arch_params(cfg, &p);
    if (np < 0) { snprintf(err, errlen, "architecture %s is not supported", cfg->arch); return -1; }
    mu_mask sel;
    if (mu_mask_from_spec(spec, p, np, &sel, err, errlen) < 0) { free(p); return -1; }
    cands_init(c, mu_arch_numel(p, np));
    int rc = 0;
    for (int i = 0; i < sel.n && rc == 0; i++) {
        const mu_param_info *pi = &p[mu_arch_find(p, np, sel.t[i].name)];
        int64_t units = model_units(pi, cfg, g, err, errlen);
        rc = units < 0 ? -1 : cands_add(c, pi->name, pi->ndim, pi->shape, g, units, err, errlen);
    }
    mu_mask_free(&sel);
    free(p);
    if (rc < 0) { mu_cands_free(c); return -1; }
    cands_finish(c);
    return 0;
}

/* Marks in ex every unit of cand's layout that covers a selected element of mt. */
static void exclude_tensor(mu_mask_tensor *ex, const mu_mask_tensor *mt) {
    if (mt->gran == ex->gran && mt->units == ex->units) {
        for (int64_t b = 0; b < (ex->units + 7) / 8; b++) ex->bits[b] |= mt->bits[b];
        return;
    }
    int64_t numel = mu_mask_tensor_numel(ex);
    for (int64_t i = 0; i < numel; i++)
        if (mu_mask_element(mt, i)) mu_mask_set(ex, mu_mask_unit_of(ex, i), 1);
}

int mu_cands_exclude(mu_cands *c, const mu_mask *mask, char *err, size_t errlen) {
    if (mask->params_total != c->m.params_total) {
        snprintf(err, errlen, "the mask's params_total %lld differs from the candidates' %lld "
                 "(another model?)", (long long)mask->params_total, (long long)c->m.params_total);
        return -1;
    }
    for (int j = 0; j < mask->n; j++) {
        const mu_mask_tensor *mt = &mask->t[j];
        int i = mu_mask_find(&c->m, mt->name);
        if (i < 0) continue;
        const mu_mask_tensor *ct = &c->m.t[i];
        if (ct->ndim != mt->ndim || ct->shape[0] != mt->shape[0] || ct->shape[1] != mt->shape[1]) {
            snprintf(err, errlen, "tensor %s: mask shape [%lld,%lld] but the candidates have [%lld,%lld]",
                     mt->name, (long long)mt->shape[0], (long long)mt->shape[1],
                     (long long)ct->shape[0], (long long)ct->shape[1]);
            return -1;
        }
        exclude_tensor(&c->excl.t[i], mt);
    }
    return 0;
}

/* ---- selection ---- */

int64_t mu_maskgen_fraction_target(double f, int64_t params_total) {
    return (int64_t)llround(f * (double)params_total);
}

/* Start of each tensor's units in the global numbering (off[n] = all units). */
static int64_t *unit_offsets(const mu_cands *c) {
    int64_t *off = mu_xmalloc((size_t)(c->m.n + 1) * sizeof *off);
    off[0] = 0;
    for (int i = 0; i < c->m.n; i++) off[i + 1] = off[i] + c->m.t[i].units;
    return off;
}

/* Tensor holding global unit id (binary search over off). */
static int tensor_of(const int64_t *off, int n, int64_t id) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (off[mid] <= id) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* Global ids of the candidate units left, ascending (record, unit). Returns the count. */
static int64_t candidate_ids(const mu_cands *c, const int64_t *off, int64_t **ids) {
    int64_t n = mu_cands_units(c), k = 0;
    *ids = mu_xmalloc((size_t)(n ? n : 1) * sizeof **ids);
    for (int i = 0; i < c->m.n; i++)
        for (int64_t u = 0; u < c->m.t[i].units; u++)
            if (!mu_mask_get(&c->excl.t[i], u)) (*ids)[k++] = off[i] + u;
    return k;
}

typedef struct { float s; int64_t id; } scored_unit;

static int cmp_desc(const void *a, const void *b) {
    const scored_unit *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_asc(const void *a, const void *b) {
    const scored_unit *x = a, *y = b;
    if (x->s != y->s) return x->s < y->s ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Sorts ids[n] by score (descending or ascending), ties by id ascending. */
static void order_by_score(const mu_cands *c, const int64_t *off, int64_t *ids, int64_t n, int lowest) {
    scored_unit *su = mu_xmalloc((size_t)(n ? n : 1) * sizeof *su);
    for (int64_t k = 0; k < n; k++) {
        int i = tensor_of(off, c->m.n, ids[k]);
        su[k].s = c->score[i][ids[k] - off[i]];
        su[k].id = ids[k];
    }
    qsort(su, (size_t)n, sizeof *su, lowest ? cmp_asc : cmp_desc);
    for (int64_t k = 0; k < n; k++) ids[k] = su[k].id;
    free(su);
}

/* Candidate units left in tensor i. */
static int64_t units_left(const mu_cands *c, int i) {
    return c->m.t[i].units - mu_mask_selected(&c->excl.t[i]);
}

/* Per-tensor unit quotas for scope tensor (see maskgen.h) into k[n]. */
static void tensor_quotas(const mu_cands *c, const mu_select_opts *o, int64_t *k) {
    int n = c->m.n;
    if (o->units <= 0) {   /* ceil(P * a_t / C): reaches P in total, never above a_t */
        unsigned __int128 P = (unsigned __int128)o->params, C = (unsigned __int128)mu_cands_params(c);
        for (int i = 0; i < n; i++) k[i] = (int64_t)((P * (unsigned __int128)units_left(c, i) + C - 1) / C);
        return;
    }
    unsigned __int128 N = (unsigned __int128)o->units, U = (unsigned __int128)mu_cands_units(c);
    int64_t *rem = mu_xmalloc((size_t)n * sizeof *rem), given = 0;
    for (int i = 0; i < n; i++) {
        unsigned __int128 q = N * (unsigned __int128)units_left(c, i);
        k[i] = (int64_t)(q / U);
        rem[i] = (int64_t)(q % U);
        given += k[i];
    }
    for (int64_t r = given; r < o->units; r++) {   /* largest remainder, earlier tensor on ties */
        int best = -1;
        for (int i = 0; i < n; i++)
            if (rem[i] > 0 && (best < 0 || rem[i] > rem[best])) best = i;
        k[best]++;
        rem[best] = 0;
    }
    free(rem);
}

/* Checks the target against the candidates; 0 ok, -1 + err. */
static int check_target(const mu_cands *c, const mu_select_opts *o, char *err, size_t errlen) {
    if (o->units > 0) {
        int64_t have = mu_cands_units(c);
        if (o->units > have) {
            snprintf(err, errlen, "%lld units asked, but only %lld candidate units", (long long)o->units,
                     (long long)have);
            return -1;
        }
        return 0;
    }
    if (o->params <= 0) {
        snprintf(err, errlen, "the target selects no parameter (it rounds to 0 of %lld)",
                 (long long)c->m.params_total);
        return -1;
    }
    int64_t have = mu_cands_params(c);
    if (o->params > have) {
        snprintf(err, errlen, "%lld parameters asked, but the candidate units hold only %lld",
                 (long long)o->params, (long long)have);
        return -1;
    }
    return 0;
}

/* A mask with the tensors of src, nothing selected. */
static void clone_empty(const mu_mask *src, mu_mask *dst) {
    char err[256];
    mu_mask_init(dst, src->granularity, src->params_total);
    for (int i = 0; i < src->n; i++) {
        const mu_mask_tensor *t = &src->t[i];
        if (!mu_mask_add(dst, t->name, t->ndim, t->shape, t->gran, t->units, err, sizeof err))
            mu_die("internal: %s", err);   /* src was validated */
    }
}

/* out = the tensors of sel with a unit selected, in order. */
static void keep_selected(const mu_mask *sel, mu_mask *out) {
    char err[256];
    mu_mask_init(out, sel->granularity, sel->params_total);
    for (int i = 0; i < sel->n; i++) {
        const mu_mask_tensor *t = &sel->t[i];
        if (!mu_mask_selected(t)) continue;
        mu_mask_tensor *o = mu_mask_add(out, t->name, t->ndim, t->shape, t->gran, t->units, err, sizeof err);
        if (!o) mu_die("internal: %s", err);
        memcpy(o->bits, t->bits, (size_t)(t->units + 7) / 8);
    }
}

/* Walks ids in order and selects units into sel by the size rule. */
static void take_units(const mu_cands *c, const mu_select_opts *o, const int64_t *off, const int64_t *ids,
                       int64_t n, mu_mask *sel) {
    int64_t *quota = NULL, taken = 0, params = 0;
    if (o->scope == MU_SCOPE_TENSOR) {
        quota = mu_xcalloc((size_t)c->m.n, sizeof *quota);
        tensor_quotas(c, o, quota);
    }
    for (int64_t k = 0; k < n; k++) {
        int i = tensor_of(off, c->m.n, ids[k]);
        mu_mask_tensor *t = &sel->t[i];
        if (quota) {
            if (!quota[i]) continue;
            quota[i]--;
        } else {
            if (o->units > 0 ? taken >= o->units : params >= o->params) break;
            taken++;
            params += mu_mask_tensor_numel(t) / t->units;
        }
        mu_mask_set(t, ids[k] - off[i], 1);
    }
    free(quota);
}

int mu_maskgen_select(const mu_cands *c, const mu_select_opts *o, mu_mask *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    if (o->order != MU_ORDER_RANDOM && !c->score) {
        snprintf(err, errlen, "ranking needs scores; these candidates have none");
        return -1;
    }
    if (check_target(c, o, err, errlen) < 0) return -1;
    int64_t *off = unit_offsets(c), *ids, n = candidate_ids(c, off, &ids);
    if (o->order == MU_ORDER_RANDOM) {
        mu_rng r;
        mu_rng_seed(&r, o->seed);
        mu_rng_shuffle_i64(&r, ids, n);
    } else {
        order_by_score(c, off, ids, n, o->order == MU_ORDER_LOWEST);
    }
    mu_mask sel;
    clone_empty(&c->m, &sel);
    take_units(c, o, off, ids, n, &sel);
    keep_selected(&sel, out);
    mu_mask_free(&sel);
    free(ids);
    free(off);
    return 0;
}

int mu_maskgen_invert(const mu_mask *in, mu_mask *out, char *err, size_t errlen) {
    mu_mask all;
    clone_empty(in, &all);
    for (int i = 0; i < in->n; i++)
        for (int64_t u = 0; u < in->t[i].units; u++)
            mu_mask_set(&all.t[i], u, !mu_mask_get(&in->t[i], u));
    keep_selected(&all, out);
    mu_mask_free(&all);
    if (out->n == 0) {
        mu_mask_free(out);
        snprintf(err, errlen, "the mask selects every unit of its tensors; its complement is empty");
        return -1;
    }
    return 0;
}
