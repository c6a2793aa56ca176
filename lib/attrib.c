/* attrib.c — parameter attribution scores (attrib.h). */
#include "attrib.h"
#include "cli.h"
#include "rng.h"
#include "stream.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *METHOD_NAMES[MU_ATTR_COUNT] = {"act", "act-contrast", "grad", "wagle", "memflex",
                                                  "causal-trace", "atp", "path-patch"};

const char *mu_attr_method_name(mu_attr_method m) { return METHOD_NAMES[m]; }

int mu_attr_method_parse(const char *s, mu_attr_method *out) {
    for (int i = 0; i < MU_ATTR_COUNT; i++)
        if (!strcmp(s, METHOD_NAMES[i])) { *out = (mu_attr_method)i; return 0; }
    return -1;
}

int mu_attr_needs_retain(mu_attr_method m) {
    return m == MU_ATTR_ACT_CONTRAST || m == MU_ATTR_WAGLE || m == MU_ATTR_MEMFLEX;
}

static int is_act(mu_attr_method m) { return m == MU_ATTR_ACT || m == MU_ATTR_ACT_CONTRAST; }

int mu_attr_is_causal(mu_attr_method m) {
    return m == MU_ATTR_CAUSAL_TRACE || m == MU_ATTR_ATP || m == MU_ATTR_PATH_PATCH;
}

void mu_attr_opts_default(mu_attr_opts *o) {
    memset(o, 0, sizeof *o);
    o->method = MU_ATTR_GRAD;
    o->gran = MU_GRAN_NEURON;
    o->gamma = 1;
    o->memflex_mu = 0;
    o->batch = 8;
    o->noise = 3;
    o->samples = 4;
    o->restore_all = 1;
}

void mu_attr_result_free(mu_attr_result *r) {
    for (int i = 0; i < r->n; i++) {
        free(r->t[i].name);
        free(r->t[i].score);
        free(r->t[i].norm_f);
        free(r->t[i].norm_r);
        free(r->t[i].cos);
    }
    free(r->t);
    free(r->effect[0]);
    free(r->effect[1]);
    memset(r, 0, sizeof *r);
}

/* ---- batches --------------------------------------------------------------------------- */

/* Sequences [i0, i1) of a set as a right-padded batch. rows: flat positions b*T+t that
 * predict an answer token (t in lab_from .. len-2), tgt: that token. */
typedef struct {
    int B, T;
    int32_t *ids, *lens, *lab_from;   /* [B*T], [B], [B] */
    int32_t *rows, *tgt;              /* [R] */
    int R;
} batch;

static void batch_free(batch *b) {
    free(b->ids); free(b->lens); free(b->lab_from); free(b->rows); free(b->tgt);
}

/* The first row predicting an answer token. A sequence whose answer alone is longer than
 * --max-len keeps all of it (mu_train_set_read never cuts answers) and has lab_from -1:
 * its first answer token then has no context and is not a target. */
static int first_label(const mu_train_seq *q) { return q->lab_from > 0 ? q->lab_from : 0; }

static void batch_build(batch *b, const mu_train_set *s, int i0, int i1) {
    batch_free(b);
    b->B = i1 - i0;
    b->T = 1;
    for (int i = i0; i < i1; i++) if (s->s[i].len > b->T) b->T = s->s[i].len;
    size_t n = (size_t)b->B * b->T;
    b->ids = mu_xcalloc(n, sizeof *b->ids);
    b->lens = mu_xmalloc((size_t)b->B * sizeof *b->lens);
    b->lab_from = mu_xmalloc((size_t)b->B * sizeof *b->lab_from);
    b->rows = mu_xmalloc(n * sizeof *b->rows);
    b->tgt = mu_xmalloc(n * sizeof *b->tgt);
    b->R = 0;
    for (int r = 0; r < b->B; r++) {
        const mu_train_seq *q = &s->s[i0 + r];
        memcpy(b->ids + (size_t)r * b->T, q->ids, (size_t)q->len * sizeof *q->ids);
        b->lens[r] = q->len;
        b->lab_from[r] = first_label(q);
        for (int t = first_label(q); t + 1 < q->len; t++) {
            b->rows[b->R] = (int32_t)((size_t)r * b->T + t);
            b->tgt[b->R++] = q->ids[t + 1];
        }
    }
}

static int64_t set_targets(const mu_train_set *s) {
    int64_t n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->s[i].len > first_label(&s->s[i]) + 1) n += s->s[i].len - 1 - first_label(&s->s[i]);
    return n;
}

/* ---- gradients ------------------------------------------------------------------------- */

/* g[k] (host, [numel] of parameter pidx[k]) = d L / d θ, L the mean target NLL of the set;
 * *loss = L, *ntok = target tokens. The tensors must be trainable. 0 ok, -1 + err. */
static int set_gradients(mu_model *m, const mu_train_set *s, const int *pidx, int np, float **g,
                         const mu_attr_opts *o, const char *what, double *loss, int64_t *ntok,
                         char *err, size_t errlen) {
    int64_t N = set_targets(s);
    if (N == 0) {
        snprintf(err, errlen, "%s: no answer tokens to attribute", s->path ? s->path : what);
        return -1;
    }
    mu_model_zero_grad(m);
    batch b = {0};
    double sum = 0;
    int rc = 0;
    for (int i0 = 0; i0 < s->n && !rc; i0 += o->batch) {
        int i1 = i0 + o->batch < s->n ? i0 + o->batch : s->n;
        batch_build(&b, s, i0, i1);
        if (b.R == 0) continue;
        mu_batch mb = {.B = b.B, .T = b.T, .ids = b.ids, .lens = b.lens};
        mu_fwd_opts fo = {.train = 1, .logit_rows = b.rows, .n_logit_rows = b.R};
        double *logp = mu_xmalloc((size_t)b.R * sizeof *logp), *a = mu_xmalloc((size_t)b.R * sizeof *a);
        rc = mu_model_forward(m, &mb, &fo, err, errlen) ||
             mu_model_target_logprobs(m, b.tgt, logp, err, errlen);
        if (!rc) {
            for (int r = 0; r < b.R; r++) { sum -= logp[r]; a[r] = -1.0 / (double)N; }
            rc = mu_model_backward_logp(m, b.tgt, a, NULL, NULL, 0, err, errlen);
        }
        free(logp);
        free(a);
        if (o->progress) mu_progress(what, (uint64_t)i1, (uint64_t)s->n);
    }
    if (o->progress) mu_progress_done();
    batch_free(&b);
    if (rc) return -1;
    for (int k = 0; k < np; k++) mu_model_get_grad(m, pidx[k], g[k]);
    *loss = sum / (double)N;
    *ntok = N;
    return 0;
}

/* ---- activations ----------------------------------------------------------------------- */

typedef struct {
    const batch *b;
    int only_answer;
    int d_ff;
    double *sum;     /* [n_layer * d_ff]: sum of |a| */
    int64_t count;   /* positions per layer (the same for every layer) */
} act_acc;

static int hook_abs_sum(const mu_hook_info *info, float *act, void *user) {
    act_acc *A = user;
    double *s = A->sum + (size_t)info->layer * A->d_ff;
    for (int r = 0; r < info->B; r++) {
        int t0 = A->only_answer ? A->b->lab_from[r] : 0;
        int t1 = A->only_answer ? info->lens[r] - 1 : info->lens[r];
        for (int t = t0; t < t1; t++) {
            const float *x = act + ((size_t)r * info->T + t) * info->D;
            for (int j = 0; j < info->D; j++) s[j] += fabsf(x[j]);
            if (info->layer == 0) A->count++;
        }
    }
    return 0;
}

/* mean |mlp_post| per (layer, neuron) over the set: mean[L*d_ff + j]. 0 ok, -1 + err. */
static int set_mean_abs_act(mu_model *m, const mu_train_set *s, int n_layers, const mu_attr_opts *o,
                            const char *what, double *mean, int64_t *npos, char *err, size_t errlen) {
    const mu_config *c = mu_model_config(m);
    act_acc A = {.only_answer = o->answer_positions, .d_ff = c->d_ff, .sum = mean};
    memset(mean, 0, (size_t)c->n_layer * c->d_ff * sizeof *mean);
    batch b = {0};
    A.b = &b;
    mu_hook h = {.site = MU_SITE_MLP_POST, .layer = -1, .fn = hook_abs_sum, .user = &A};
    int rc = 0;
    for (int i0 = 0; i0 < s->n && !rc; i0 += o->batch) {
        int i1 = i0 + o->batch < s->n ? i0 + o->batch : s->n;
        batch_build(&b, s, i0, i1);
        mu_batch mb = {.B = b.B, .T = b.T, .ids = b.ids, .lens = b.lens};
        mu_fwd_opts fo = {.n_layers = n_layers, .hooks = &h, .n_hooks = 1};
        rc = mu_model_forward(m, &mb, &fo, err, errlen);
        if (o->progress) mu_progress(what, (uint64_t)i1, (uint64_t)s->n);
    }
    if (o->progress) mu_progress_done();
    batch_free(&b);
    if (rc) return -1;
    if (A.count == 0) {
        snprintf(err, errlen, "%s: no positions to attribute", s->path ? s->path : what);
        return -1;
    }
    for (size_t i = 0; i < (size_t)n_layers * c->d_ff; i++) mean[i] /= (double)A.count;
    *npos = A.count;
    return 0;
}

/* ---- scores per unit ------------------------------------------------------------------- */

static int is_mlp_neuron_tensor(const mu_param *p) {
    const char *r = p->info.role;
    return !strcmp(r, "gate") || !strcmp(r, "up") || !strcmp(r, "down") || !strcmp(r, "up_bias") ||
           !strcmp(r, "gate_up");
}

/* score[u] = sum over elements i of unit u of e(i). */
static void unit_sums(const mu_mask_tensor *mt, int64_t numel, const float *ea, const float *eb,
                      const float *w, double gamma, int wagle, float *score) {
    double *acc = mu_xcalloc((size_t)mt->units, sizeof *acc);
    for (int64_t i = 0; i < numel; i++) {
        double e = wagle ? fabs(((double)w[i] - (double)eb[i] / gamma) * ea[i]) : fabs((double)ea[i]);
        acc[mu_mask_unit_of(mt, i)] += e;
    }
    for (int64_t u = 0; u < mt->units; u++) score[u] = (float)acc[u];
    free(acc);
}

static void memflex_units(const mu_mask_tensor *mt, int64_t numel, const float *gf, const float *gr,
                          double mu, mu_attr_tensor *t) {
    double *ff = mu_xcalloc((size_t)mt->units, sizeof *ff), *rr = mu_xcalloc((size_t)mt->units, sizeof *rr),
           *fr = mu_xcalloc((size_t)mt->units, sizeof *fr);
    for (int64_t i = 0; i < numel; i++) {
        int64_t u = mu_mask_unit_of(mt, i);
        ff[u] += (double)gf[i] * gf[i];
        rr[u] += (double)gr[i] * gr[i];
        fr[u] += (double)gf[i] * gr[i];
    }
    t->norm_f = mu_xmalloc((size_t)mt->units * sizeof *t->norm_f);
    t->norm_r = mu_xmalloc((size_t)mt->units * sizeof *t->norm_r);
    t->cos = mu_xmalloc((size_t)mt->units * sizeof *t->cos);
    for (int64_t u = 0; u < mt->units; u++) {
        double nf = sqrt(ff[u]), nr = sqrt(rr[u]);
        double c = nf > 0 && nr > 0 ? fr[u] / (nf * nr) : 0;
        t->norm_f[u] = (float)nf;
        t->norm_r[u] = (float)nr;
        t->cos[u] = (float)c;
        t->score[u] = c < mu ? (float)nf : 0.0f;
    }
    free(ff); free(rr); free(fr);
}

/* The mask tensor describing scored tensor t's units (for mu_mask_unit_of). */
static mu_mask_tensor unit_view(const mu_attr_tensor *t) {
    return (mu_mask_tensor){.name = t->name, .ndim = t->ndim, .shape = {t->shape[0], t->shape[1]},
                            .gran = t->gran, .units = t->units};
}

/* n copies of the single-sequence batch one (the patched runs of output tracing, a block
 * per copy). */
static void batch_repeat(batch *b, const batch *one, int n) {
    batch_free(b);
    size_t T = (size_t)one->T;
    b->B = n;
    b->T = one->T;
    b->R = n * one->R;
    b->ids = mu_xmalloc((size_t)n * T * sizeof *b->ids);
    b->lens = mu_xmalloc((size_t)n * sizeof *b->lens);
    b->lab_from = mu_xmalloc((size_t)n * sizeof *b->lab_from);
    b->rows = mu_xmalloc((size_t)b->R * sizeof *b->rows);
    b->tgt = mu_xmalloc((size_t)b->R * sizeof *b->tgt);
    for (int r = 0; r < n; r++) {
        memcpy(b->ids + r * T, one->ids, T * sizeof *b->ids);
        b->lens[r] = one->lens[0];
        b->lab_from[r] = one->lab_from[0];
        for (int j = 0; j < one->R; j++) {
            b->rows[r * one->R + j] = (int32_t)(r * T) + one->rows[j];
            b->tgt[r * one->R + j] = one->tgt[j];
        }
    }
}

/* ---- output tracing (causal-trace, atp, path-patch) ---------------------------------------- */

void mu_attr_noise(uint64_t seed, int rec, int s, double sigma, float *out, int64_t n) {
    mu_rng r;
    mu_rng_seed2(&r, seed, ((uint64_t)rec << 20) + (uint64_t)s);
    for (int64_t i = 0; i < n; i++) out[i] = (float)(sigma * mu_rng_normal(&r));
}

enum { TR_OFF = 0, TR_CACHE_CLEAN, TR_SUM_CORRUPT, TR_CACHE_CORRUPT, TR_PATCH, TR_PATH };

/* State of the hooks for one record (a batch of one sequence of T tokens). */
typedef struct {
    int T, D, n_layer;
    int s0, s1;                 /* subject span */
    const float *noise;         /* [(s1-s0) * D] added to the subject's embeddings, or NULL */
    const int32_t *pos;         /* positions restored / attributed */
    int npos;
    int mode;
    const int *blocks;          /* [n_blocks] the blocks patched (block k * n_layer + L: component
                                   k of layer L), ascending */
    int n_blocks;
    int block0;                 /* TR_PATCH, TR_PATH: row r of the batch patches blocks[block0 + r] */
    float *clean[2], *corrupt[2], *grad[2];   /* [n_layer * T * D] per component */
    /* corrupt: atp sums the samples' outputs; path-patch caches the current sample's */
} trace_ctx;

static int kind_of(mu_site s) { return s == MU_SITE_MLP_OUT; }

static int hook_embed_noise(const mu_hook_info *info, float *act, void *user) {
    trace_ctx *c = user;
    if (!c->noise) return 0;
    for (int r = 0; r < info->B; r++) {
        float *x = act + (size_t)r * c->T * c->D;
        for (int t = c->s0; t < c->s1; t++)
            for (int j = 0; j < c->D; j++) x[(size_t)t * c->D + j] += c->noise[(size_t)(t - c->s0) * c->D + j];
    }
    return 0;
}

/* act[pos] = src[pos] at the traced positions; act and src are one layer's [T, D]. */
static void copy_positions(const trace_ctx *c, float *act, const float *src) {
    for (int p = 0; p < c->npos; p++)
        memcpy(act + (size_t)c->pos[p] * c->D, src + (size_t)c->pos[p] * c->D, (size_t)c->D * sizeof *act);
}

/* Path patching: the sender (component sk of layer sl) writes its corrupted output at the
 * positions and every block after it (in the order attn 0, mlp 0, attn 1, ...) its clean
 * one, so the residual stream there is clean + (corrupt - clean sender output) from the
 * sender on, and reaches the answer only through what later positions' attention reads. */
static void path_patch(const trace_ctx *c, int k, int layer, int sk, int sl, float *act) {
    int order = 2 * layer + k, sender = 2 * sl + sk;
    size_t off = (size_t)layer * c->T * c->D;
    if (order >= sender) copy_positions(c, act, (order == sender ? c->corrupt[k] : c->clean[k]) + off);
}

/* TR_PATCH, TR_PATH: row r of act ([B, T, D]) is the run of block blocks[block0 + r]. */
static void patch_rows(const trace_ctx *c, int k, int layer, int B, float *act) {
    size_t n = (size_t)c->T * c->D, off = (size_t)layer * n;
    for (int r = 0; r < B; r++) {
        int blk = c->blocks[c->block0 + r], sk = blk / c->n_layer, sl = blk % c->n_layer;
        if (c->mode == TR_PATH) path_patch(c, k, layer, sk, sl, act + r * n);
        else if (k == sk && layer == sl) copy_positions(c, act + r * n, c->clean[k] + off);
    }
}

static int hook_component(const mu_hook_info *info, float *act, void *user) {
    trace_ctx *c = user;
    int k = kind_of(info->site);
    size_t n = (size_t)c->T * c->D, off = (size_t)info->layer * n;
    if (info->backward) {
        memcpy(c->grad[k] + off, act, n * sizeof *act);
    } else if (c->mode == TR_CACHE_CLEAN) {
        memcpy(c->clean[k] + off, act, n * sizeof *act);
    } else if (c->mode == TR_SUM_CORRUPT) {
        for (size_t i = 0; i < n; i++) c->corrupt[k][off + i] += act[i];
    } else if (c->mode == TR_CACHE_CORRUPT) {
        memcpy(c->corrupt[k] + off, act, n * sizeof *act);
    } else if (c->mode == TR_PATCH || c->mode == TR_PATH) {
        patch_rows(c, k, info->layer, info->B, act);
    }
    return 0;
}

/* Answer log-probability m of each row of the last forward over b: out [b->B]. */
static int answer_logprob(mu_model *m, const batch *b, double *out, char *err, size_t errlen) {
    double *lp = mu_xmalloc((size_t)b->R * sizeof *lp);
    int rc = mu_model_target_logprobs(m, b->tgt, lp, err, errlen);
    for (int r = 0; r < b->B; r++) out[r] = 0;
    for (int j = 0; j < b->R && !rc; j++) out[b->rows[j] / b->T] += lp[j];
    free(lp);
    return rc;
}

/* One forward of b with the trace hooks in mode; mlp [b->B] = the answer log-probabilities. */
static int trace_forward(mu_model *m, const batch *b, trace_ctx *c, int mode, int train, double *mlp,
                         char *err, size_t errlen) {
    mu_hook h[3] = {
        {.site = MU_SITE_EMBED, .layer = -1, .fn = hook_embed_noise, .user = c},
        {.site = MU_SITE_ATTN_OUT, .layer = -1, .fn = hook_component, .user = c},
        {.site = MU_SITE_MLP_OUT, .layer = -1, .fn = hook_component, .user = c},
    };
    c->mode = mode;
    mu_batch mb = {.B = b->B, .T = b->T, .ids = b->ids, .lens = b->lens};
    mu_fwd_opts fo = {.train = train, .logit_rows = b->rows, .n_logit_rows = b->R, .hooks = h, .n_hooks = 3};
    if (mu_model_forward(m, &mb, &fo, err, errlen)) return -1;
    return answer_logprob(m, b, mlp, err, errlen);
}

/* dm/d(attn_out, mlp_out) of the clean run into c->grad (after a train forward). */
static int trace_gradients(mu_model *m, const batch *b, trace_ctx *c, char *err, size_t errlen) {
    mu_hook bh[2] = {
        {.site = MU_SITE_ATTN_OUT, .layer = -1, .backward = 1, .fn = hook_component, .user = c},
        {.site = MU_SITE_MLP_OUT, .layer = -1, .backward = 1, .fn = hook_component, .user = c},
    };
    double *a = mu_xmalloc((size_t)b->R * sizeof *a);
    for (int r = 0; r < b->R; r++) a[r] = 1;
    int rc = mu_model_backward_logp(m, b->tgt, a, NULL, bh, 2, err, errlen);
    free(a);
    return rc;
}

static double embedding_std(mu_model *m) {
    int i = 0;
    while (i < mu_model_n_params(m) - 1 && strcmp(mu_model_param(m, i)->info.role, "embed")) i++;
    mu_param *p = mu_model_param(m, i);
    float *w = mu_xmalloc((size_t)p->numel * sizeof *w);
    double s = 0, s2 = 0;
    if (mu_model_get_param(m, i, w) == 0)
        for (int64_t k = 0; k < p->numel; k++) { s += w[k]; s2 += (double)w[k] * w[k]; }
    free(w);
    double mean = s / (double)p->numel, var = s2 / (double)p->numel - mean * mean;
    return var > 0 ? sqrt(var) : 0;
}

static void trace_ctx_init(trace_ctx *c, const batch *b, int D, int n_layer, int s0, int s1, int restore_all,
                           mu_attr_method method, int32_t *pos) {
    int atp = method == MU_ATTR_ATP, corrupt = atp || method == MU_ATTR_PATH_PATCH;
    memset(c, 0, sizeof *c);
    c->T = b->T; c->D = D; c->n_layer = n_layer; c->s0 = s0; c->s1 = s1;
    int np = b->lab_from[0] + 1;   /* prompt tokens */
    if (restore_all) { for (int t = 0; t < np; t++) pos[c->npos++] = t; }
    else pos[c->npos++] = s1 - 1;
    c->pos = pos;
    size_t n = (size_t)n_layer * b->T * D;
    for (int k = 0; k < 2; k++) {
        c->clean[k] = mu_xmalloc(n * sizeof(float));
        c->corrupt[k] = corrupt ? mu_xcalloc(n, sizeof(float)) : NULL;
        c->grad[k] = atp ? mu_xmalloc(n * sizeof(float)) : NULL;
    }
}

static void trace_ctx_free(trace_ctx *c) {
    for (int k = 0; k < 2; k++) { free(c->clean[k]); free(c->corrupt[k]); free(c->grad[k]); }
}

/* atp effect of component (k, L): -sum over positions of (mean corrupt - clean) . grad */
static double atp_effect(const trace_ctx *c, int k, int L, int samples) {
    size_t off = (size_t)L * c->T * c->D;
    double d = 0;
    for (int p = 0; p < c->npos; p++)
        for (int j = 0; j < c->D; j++) {
            size_t i = off + (size_t)c->pos[p] * c->D + j;
            d += ((double)c->corrupt[k][i] / samples - c->clean[k][i]) * c->grad[k][i];
        }
    return -d;
}

/* One sample's patched runs, every block of c->blocks: causal-trace restores the block's clean output in
 * the corrupted run (effect p_restored - p_corrupt); path-patch sends its corrupted output
 * in the clean run (c->noise off) along the path of path_patch (effect m_clean - m_patched,
 * in log-probability: one path's drop of a well-known answer's p ~ 1 is invisible in p). */
static int patch_blocks(mu_model *m, const batch *one, trace_ctx *c, int path, int per_forward, double m_clean,
                        double m_corr, mu_attr_result *r, double w, char *err, size_t errlen) {
    const float *noise = c->noise;
    if (path) c->noise = NULL;
    int nb = c->n_blocks, rc = 0;
    double *m_patched = mu_xmalloc((size_t)per_forward * sizeof *m_patched);
    batch rep = {0};
    for (int b0 = 0; b0 < nb && !rc; b0 += per_forward) {
        int n = nb - b0 < per_forward ? nb - b0 : per_forward;
        batch_repeat(&rep, one, n);
        c->block0 = b0;
        rc = trace_forward(m, &rep, c, path ? TR_PATH : TR_PATCH, 0, m_patched, err, errlen);
        for (int i = 0; i < n && !rc; i++) {
            int k = c->blocks[b0 + i] / c->n_layer, l = c->blocks[b0 + i] % c->n_layer;
            r->effect[k][l] += w * (path ? m_clean - m_patched[i] : exp(m_patched[i]) - exp(m_corr));
        }
    }
    batch_free(&rep);
    free(m_patched);
    c->noise = noise;
    return rc;
}

/* Adds record rec's effects (already divided by the number of records) into r->effect;
 * causal-trace and path-patch patch the n_blocks blocks only. */
static int trace_record(mu_model *m, const mu_train_set *f, int rec, const mu_attr_opts *o, double sigma,
                        const int *blocks, int n_blocks, mu_attr_result *r, double w, char *err,
                        size_t errlen) {
    const mu_config *cfg = mu_model_config(m);
    int D = cfg->d_model, L = cfg->n_layer, atp = o->method == MU_ATTR_ATP;
    int path = o->method == MU_ATTR_PATH_PATCH;
    int s0 = o->subj_start[rec], s1 = o->subj_end[rec];
    batch b = {0};
    batch_build(&b, f, rec, rec + 1);
    int32_t *pos = mu_xmalloc((size_t)b.T * sizeof *pos);
    trace_ctx c;
    trace_ctx_init(&c, &b, D, L, s0, s1, o->restore_all, o->method, pos);
    c.blocks = blocks;
    c.n_blocks = n_blocks;
    float *noise = mu_xmalloc((size_t)(s1 - s0) * D * sizeof *noise);
    double m_clean = 0, m_corr = 0;
    int rc = trace_forward(m, &b, &c, TR_CACHE_CLEAN, atp, &m_clean, err, errlen);
    if (!rc && atp) rc = trace_gradients(m, &b, &c, err, errlen);
    r->p_clean += w * exp(m_clean);
    int corrupt_mode = atp ? TR_SUM_CORRUPT : path ? TR_CACHE_CORRUPT : TR_OFF;
    for (int s = 0; s < o->samples && !rc; s++) {
        mu_attr_noise(o->seed, rec, s, sigma, noise, (int64_t)(s1 - s0) * D);
        c.noise = noise;
        rc = trace_forward(m, &b, &c, corrupt_mode, 0, &m_corr, err, errlen);
        r->p_corrupt += w * exp(m_corr) / o->samples;
        if (!rc && !atp)
            rc = patch_blocks(m, &b, &c, path, o->batch, m_clean, m_corr, r, w / o->samples, err, errlen);
    }
    for (int k = 0; k < 2 && !rc && atp; k++)
        for (int l = 0; l < L; l++) r->effect[k][l] += w * atp_effect(&c, k, l, o->samples);
    free(noise);
    free(pos);
    trace_ctx_free(&c);
    batch_free(&b);
    return rc;
}

/* The blocks (k * n_layer + L) holding a scored tensor, ascending: blocks [2 * n_layer];
 * returns their number. */
static int scored_blocks(mu_model *m, const int *pidx, int np, int *blocks) {
    int L = mu_model_config(m)->n_layer, nb = 0;
    char *scored = mu_xcalloc((size_t)2 * L, 1);
    for (int k = 0; k < np; k++) {
        const mu_param *p = mu_model_param(m, pidx[k]);
        scored[mu_arch_block(&p->info) * L + p->info.layer] = 1;
    }
    for (int b = 0; b < 2 * L; b++) if (scored[b]) blocks[nb++] = b;
    free(scored);
    return nb;
}

static int run_trace(mu_model *m, const mu_train_set *forget, const mu_attr_opts *o, mu_attr_result *r,
                     const int *pidx, char *err, size_t errlen) {
    const mu_config *cfg = mu_model_config(m);
    int L = cfg->n_layer;
    r->n_layer = L;
    for (int k = 0; k < 2; k++) r->effect[k] = mu_xcalloc((size_t)L, sizeof(double));
    r->p_clean = r->p_corrupt = 0;
    double sigma = o->noise * embedding_std(m);
    int *blocks = mu_xmalloc((size_t)2 * L * sizeof *blocks), nb = scored_blocks(m, pidx, r->n, blocks);
    int rc = 0;
    for (int i = 0; i < forget->n && !rc; i++) {
        rc = trace_record(m, forget, i, o, sigma, blocks, nb, r, 1.0 / forget->n, err, errlen);
        if (o->progress) mu_progress("attrib trace", (uint64_t)i + 1, (uint64_t)forget->n);
    }
    if (o->progress) mu_progress_done();
    r->tokens_f = forget->n;
    if (o->method != MU_ATTR_ATP)   /* blocks not patched: no score (atp has every block's) */
        for (int b = 0, i = 0; b < 2 * L; b++) {
            if (i < nb && blocks[i] == b) i++;
            else r->effect[b / L][b % L] = NAN;
        }
    free(blocks);
    for (int k = 0; k < r->n && !rc; k++) {
        const mu_param *p = mu_model_param(m, pidx[k]);
        r->t[k].score[0] = (float)r->effect[mu_arch_block(&p->info)][p->info.layer];
    }
    return rc;
}

/* ---- the run ----------------------------------------------------------------------------- */

static int init_result(mu_model *m, const mu_mask *tensors, const mu_attr_opts *o, mu_attr_result *r,
                       int *pidx, char *err, size_t errlen) {
    const mu_config *c = mu_model_config(m);
    memset(r, 0, sizeof *r);
    r->loss_f = r->loss_r = NAN;
    r->t = mu_xcalloc((size_t)tensors->n, sizeof *r->t);
    for (int i = 0; i < mu_model_n_params(m); i++) r->params_total += mu_model_param(m, i)->numel;
    for (int k = 0; k < tensors->n; k++) {
        int pi = mu_model_find(m, tensors->t[k].name);
        if (pi < 0) { snprintf(err, errlen, "tensor %s: not in the model", tensors->t[k].name); return -1; }
        mu_param *p = mu_model_param(m, pi);
        if (is_act(o->method) && (o->gran != MU_GRAN_NEURON || !is_mlp_neuron_tensor(p))) {
            snprintf(err, errlen, "tensor %s: %s scores MLP neurons only (gate_proj, up_proj and its bias, down_proj, "
                     "gate_up_proj at neuron granularity)", p->info.name, mu_attr_method_name(o->method));
            return -1;
        }
        if (mu_attr_is_causal(o->method) && (o->gran != MU_GRAN_MATRIX || mu_arch_block(&p->info) < 0)) {
            snprintf(err, errlen, "tensor %s: %s scores the tensors of attention and MLP blocks as whole "
                     "matrices (granularity matrix)", p->info.name, mu_attr_method_name(o->method));
            return -1;
        }
        mu_attr_tensor *t = &r->t[r->n++];
        t->name = mu_xstrdup(p->info.name);
        t->ndim = p->info.ndim;
        t->shape[0] = p->info.shape[0];
        t->shape[1] = p->info.ndim == 2 ? p->info.shape[1] : 1;
        t->gran = o->gran;
        t->units = mu_mask_units_for(t->name, t->ndim, t->shape, o->gran, mu_arch_head_rows(&p->info, c));
        if (t->units < 1) {
            snprintf(err, errlen, "tensor %s: has no %s units", t->name, mu_gran_name(o->gran));
            return -1;
        }
        t->score = mu_xcalloc((size_t)t->units, sizeof *t->score);
        pidx[k] = pi;
    }
    return 0;
}

static int run_act(mu_model *m, const mu_train_set *forget, const mu_train_set *retain,
                   const mu_attr_opts *o, mu_attr_result *r, const int *pidx, char *err, size_t errlen) {
    const mu_config *c = mu_model_config(m);
    int n_layers = 0;
    for (int k = 0; k < r->n; k++) {
        int L = mu_model_param(m, pidx[k])->info.layer;
        if (L + 1 > n_layers) n_layers = L + 1;
    }
    size_t n = (size_t)c->n_layer * c->d_ff;
    double *mf = mu_xmalloc(n * sizeof *mf), *mr = NULL;
    int rc = set_mean_abs_act(m, forget, n_layers, o, "attrib forget", mf, &r->tokens_f, err, errlen);
    if (!rc && o->method == MU_ATTR_ACT_CONTRAST) {
        mr = mu_xmalloc(n * sizeof *mr);
        rc = set_mean_abs_act(m, retain, n_layers, o, "attrib retain", mr, &r->tokens_r, err, errlen);
    }
    for (int k = 0; k < r->n && !rc; k++) {
        const double *f = mf + (size_t)mu_model_param(m, pidx[k])->info.layer * c->d_ff;
        const double *g = mr ? mr + (size_t)mu_model_param(m, pidx[k])->info.layer * c->d_ff : NULL;
        /* a fused gate_up_proj's units are its 2 d_ff rows: gate row j and up row d_ff + j are neuron j's */
        for (int64_t u = 0; u < r->t[k].units; u++) {
            int64_t j = u % c->d_ff;
            r->t[k].score[u] = (float)(f[j] - (g ? g[j] : 0));
        }
    }
    free(mf);
    free(mr);
    return rc;
}

static float **alloc_grads(mu_model *m, const int *pidx, int np) {
    float **g = mu_xcalloc((size_t)np, sizeof *g);
    for (int k = 0; k < np; k++) g[k] = mu_xmalloc((size_t)mu_model_param(m, pidx[k])->numel * sizeof **g);
    return g;
}

static void free_grads(float **g, int np) {
    if (!g) return;
    for (int k = 0; k < np; k++) free(g[k]);
    free(g);
}

static int run_grad(mu_model *m, const mu_train_set *forget, const mu_train_set *retain,
                    const mu_attr_opts *o, mu_attr_result *r, const int *pidx, char *err, size_t errlen) {
    int np = r->n, rc = 0;
    for (int k = 0; k < np && !rc; k++)
        if (mu_model_set_trainable(m, pidx[k], 1)) {
            snprintf(err, errlen, "tensor %s: out of memory for its gradient", r->t[k].name);
            rc = -1;
        }
    float **gf = rc ? NULL : alloc_grads(m, pidx, np), **gr = NULL;
    if (!rc) rc = set_gradients(m, forget, pidx, np, gf, o, "attrib forget", &r->loss_f, &r->tokens_f, err, errlen);
    if (!rc && mu_attr_needs_retain(o->method)) {
        gr = alloc_grads(m, pidx, np);
        rc = set_gradients(m, retain, pidx, np, gr, o, "attrib retain", &r->loss_r, &r->tokens_r, err, errlen);
    }
    for (int k = 0; k < np && !rc; k++) {
        mu_attr_tensor *t = &r->t[k];
        mu_mask_tensor v = unit_view(t);
        int64_t numel = mu_model_param(m, pidx[k])->numel;
        if (o->method == MU_ATTR_MEMFLEX) {
            memflex_units(&v, numel, gf[k], gr[k], o->memflex_mu, t);
        } else if (o->method == MU_ATTR_WAGLE) {
            float *w = mu_xmalloc((size_t)numel * sizeof *w);
            if (mu_model_get_param(m, pidx[k], w)) {
                snprintf(err, errlen, "tensor %s: out of memory reading it", t->name);
                rc = -1;
            } else {
                unit_sums(&v, numel, gf[k], gr[k], w, o->gamma, 1, t->score);
            }
            free(w);
        } else {
            unit_sums(&v, numel, gf[k], NULL, NULL, 1, 0, t->score);
        }
    }
    free_grads(gf, np);
    free_grads(gr, np);
    for (int k = 0; k < np; k++) mu_model_set_trainable(m, pidx[k], 0);
    return rc;
}

int mu_attrib_run(mu_model *m, const mu_mask *tensors, const mu_train_set *forget,
                  const mu_train_set *retain, const mu_attr_opts *o, mu_attr_result *out,
                  char *err, size_t errlen) {
    if (tensors->n == 0) { snprintf(err, errlen, "no tensors to score"); return -1; }
    if (mu_attr_needs_retain(o->method) && (!retain || retain->n == 0)) {
        snprintf(err, errlen, "%s needs a retain set", mu_attr_method_name(o->method));
        return -1;
    }
    if (o->method == MU_ATTR_WAGLE && !(o->gamma > 0)) {
        snprintf(err, errlen, "wagle: gamma must be > 0");
        return -1;
    }
    int *pidx = mu_xmalloc((size_t)tensors->n * sizeof *pidx);
    int rc = init_result(m, tensors, o, out, pidx, err, errlen);
    if (!rc && mu_attr_is_causal(o->method) && (!o->subj_start || !o->subj_end || o->samples < 1)) {
        snprintf(err, errlen, "%s needs the subject span of every forget record", mu_attr_method_name(o->method));
        rc = -1;
    }
    if (!rc && o->method == MU_ATTR_PATH_PATCH && o->restore_all) {
        snprintf(err, errlen, "path-patch sends from the subject's last token only (positions subject_last)");
        rc = -1;
    }
    if (!rc) rc = is_act(o->method) ? run_act(m, forget, retain, o, out, pidx, err, errlen)
                : mu_attr_is_causal(o->method) ? run_trace(m, forget, o, out, pidx, err, errlen)
                                               : run_grad(m, forget, retain, o, out, pidx, err, errlen);
    free(pidx);
    if (rc) mu_attr_result_free(out);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

static void pack_units(msgpack_packer *pk, const char *key, const float *v, int64_t units) {
    mu_pack_kv_tensor(pk, key, MU_F32, 1, &units, v);
}

static void pack_f64_array(msgpack_packer *pk, const double *v, int n) {
    msgpack_pack_array(pk, (size_t)n);
    for (int i = 0; i < n; i++) msgpack_pack_double(pk, v[i]);
}

static void pack_trace_meta(mu_writer *w, const mu_attr_result *r, const mu_attr_opts *o) {
    msgpack_pack_double(mu_writer_meta(w, "noise"), o->noise);
    msgpack_pack_int(mu_writer_meta(w, "samples"), o->samples);
    msgpack_pack_uint64(mu_writer_meta(w, "seed"), o->seed);
    mu_pack_str(mu_writer_meta(w, "positions"), o->restore_all ? "prompt" : "subject_last");
    msgpack_pack_double(mu_writer_meta(w, "p_clean"), r->p_clean);
    msgpack_pack_double(mu_writer_meta(w, "p_corrupt"), r->p_corrupt);
    pack_f64_array(mu_writer_meta(w, "attn_effect"), r->effect[0], r->n_layer);
    pack_f64_array(mu_writer_meta(w, "mlp_effect"), r->effect[1], r->n_layer);
}

void mu_attr_write(const mu_attr_result *r, const mu_attr_opts *o, const char *path,
                   const char *const *input_roles, const char *const *input_paths, const float *input_scales,
                   int n_inputs) {
    mu_writer *w = mu_writer_open(path, "scores");
    for (int i = 0; i < n_inputs; i++)
        mu_writer_add_input_scaled(w, input_roles[i], input_paths[i], input_scales ? input_scales[i] : 1);
    mu_pack_str(mu_writer_meta(w, "method"), mu_attr_method_name(o->method));
    mu_pack_str(mu_writer_meta(w, "granularity"), mu_gran_name(o->gran));
    msgpack_pack_int64(mu_writer_meta(w, "params_total"), r->params_total);
    if (o->method == MU_ATTR_WAGLE) msgpack_pack_double(mu_writer_meta(w, "gamma"), o->gamma);
    if (o->method == MU_ATTR_MEMFLEX) msgpack_pack_double(mu_writer_meta(w, "mu"), o->memflex_mu);
    if (is_act(o->method)) {
        msgpack_pack_int(mu_writer_meta(w, "answer_positions"), o->answer_positions);
    } else if (mu_attr_is_causal(o->method)) {
        pack_trace_meta(w, r, o);
    } else {
        msgpack_pack_double(mu_writer_meta(w, "loss_f"), r->loss_f);
        if (!isnan(r->loss_r)) msgpack_pack_double(mu_writer_meta(w, "loss_r"), r->loss_r);
    }
    msgpack_pack_int64(mu_writer_meta(w, "tokens_f"), r->tokens_f);
    if (r->tokens_r) msgpack_pack_int64(mu_writer_meta(w, "tokens_r"), r->tokens_r);
    for (int k = 0; k < r->n; k++) {
        const mu_attr_tensor *t = &r->t[k];
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, t->cos ? 8 : 5);
        mu_mask_pack_layout(pk, t->name, t->ndim, t->shape, t->gran, t->units);
        pack_units(pk, "score", t->score, t->units);
        if (t->cos) {
            pack_units(pk, "norm_f", t->norm_f, t->units);
            pack_units(pk, "norm_r", t->norm_r, t->units);
            pack_units(pk, "cos", t->cos, t->units);
        }
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}
