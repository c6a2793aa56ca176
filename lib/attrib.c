/* attrib.c — parameter attribution scores (attrib.h). */
#include "attrib.h"
#include "cli.h"
#include "stream.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *METHOD_NAMES[MU_ATTR_COUNT] = {"act", "act-contrast", "grad", "wagle", "memflex"};

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

void mu_attr_opts_default(mu_attr_opts *o) {
    memset(o, 0, sizeof *o);
    o->method = MU_ATTR_GRAD;
    o->gran = MU_GRAN_NEURON;
    o->gamma = 1;
    o->memflex_mu = 0;
    o->batch = 8;
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
        b->lab_from[r] = q->lab_from;
        for (int t = q->lab_from; t + 1 < q->len; t++) {
            b->rows[b->R] = (int32_t)((size_t)r * b->T + t);
            b->tgt[b->R++] = q->ids[t + 1];
        }
    }
}

static int64_t set_targets(const mu_train_set *s) {
    int64_t n = 0;
    for (int i = 0; i < s->n; i++) if (s->s[i].len > s->s[i].lab_from + 1) n += s->s[i].len - 1 - s->s[i].lab_from;
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
    return !strcmp(r, "gate") || !strcmp(r, "up") || !strcmp(r, "down");
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
            snprintf(err, errlen, "tensor %s: %s scores MLP neurons only (gate_proj, up_proj, down_proj at "
                     "neuron granularity)", p->info.name, mu_attr_method_name(o->method));
            return -1;
        }
        mu_attr_tensor *t = &r->t[r->n++];
        t->name = mu_xstrdup(p->info.name);
        t->ndim = p->info.ndim;
        t->shape[0] = p->info.shape[0];
        t->shape[1] = p->info.ndim == 2 ? p->info.shape[1] : 1;
        t->gran = o->gran;
        t->units = mu_mask_units_for(t->name, t->ndim, t->shape, o->gran, c->head_dim);
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
        for (int64_t u = 0; u < r->t[k].units; u++) r->t[k].score[u] = (float)(f[u] - (g ? g[u] : 0));
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
    if (!rc) rc = is_act(o->method) ? run_act(m, forget, retain, o, out, pidx, err, errlen)
                                     : run_grad(m, forget, retain, o, out, pidx, err, errlen);
    free(pidx);
    if (rc) mu_attr_result_free(out);
    return rc;
}

/* ---- output ------------------------------------------------------------------------------ */

static void pack_units(msgpack_packer *pk, const char *key, const float *v, int64_t units) {
    mu_pack_kv_tensor(pk, key, MU_F32, 1, &units, v);
}

void mu_attr_write(const mu_attr_result *r, const mu_attr_opts *o, const char *path,
                   const char *const *input_roles, const char *const *input_paths, int n_inputs) {
    mu_writer *w = mu_writer_open(path, "scores");
    for (int i = 0; i < n_inputs; i++) mu_writer_add_input(w, input_roles[i], input_paths[i]);
    mu_pack_str(mu_writer_meta(w, "method"), mu_attr_method_name(o->method));
    mu_pack_str(mu_writer_meta(w, "granularity"), mu_gran_name(o->gran));
    msgpack_pack_int64(mu_writer_meta(w, "params_total"), r->params_total);
    if (o->method == MU_ATTR_WAGLE) msgpack_pack_double(mu_writer_meta(w, "gamma"), o->gamma);
    if (o->method == MU_ATTR_MEMFLEX) msgpack_pack_double(mu_writer_meta(w, "mu"), o->memflex_mu);
    if (is_act(o->method)) {
        msgpack_pack_int(mu_writer_meta(w, "answer_positions"), o->answer_positions);
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
        mu_pack_kv_str(pk, "name", t->name);
        mu_pack_str(pk, "shape");
        msgpack_pack_array(pk, (size_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) msgpack_pack_int64(pk, t->shape[d]);
        mu_pack_kv_str(pk, "granularity", mu_gran_name(t->gran));
        mu_pack_kv_int(pk, "units", t->units);
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
