/* optim.c — AdamW / SGD over compressed index sets; schedules; global-norm clipping.
 * See optim.h for the exact update rules (PyTorch's). */
#include "optim.h"
#include "cli.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHUNK ((int64_t)1 << MU_IDX_CHUNK_BITS)

/* ---- index sets ---- */

void mu_idxset_init_dense(mu_idxset *s, int64_t numel) {
    memset(s, 0, sizeof *s);
    s->numel = numel;
    s->n = numel;
    s->dense = 1;
}

int mu_idxset_init_list(mu_idxset *s, int64_t numel, const int64_t *idx, int64_t n,
                        char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    for (int64_t j = 0; j < n; j++) {
        if (idx[j] < 0 || idx[j] >= numel) {
            snprintf(err, errlen, "index %lld out of range [0, %lld)", (long long)idx[j], (long long)numel);
            return -1;
        }
        if (j > 0 && idx[j] <= idx[j - 1]) {
            snprintf(err, errlen, "indices not sorted and unique at position %lld", (long long)j);
            return -1;
        }
    }
    s->numel = numel;
    s->n = n;
    s->nchunks = (numel + CHUNK - 1) / CHUNK;
    s->chunk_start = mu_xcalloc((size_t)s->nchunks + 1, sizeof *s->chunk_start);
    s->off = mu_xmalloc((size_t)(n ? n : 1) * sizeof *s->off);
    for (int64_t j = 0; j < n; j++) {
        s->chunk_start[(idx[j] >> MU_IDX_CHUNK_BITS) + 1]++;
        s->off[j] = (uint16_t)(idx[j] & (CHUNK - 1));
    }
    for (int64_t c = 0; c < s->nchunks; c++) s->chunk_start[c + 1] += s->chunk_start[c];
    return 0;
}

void mu_idxset_free(mu_idxset *s) {
    free(s->chunk_start);
    free(s->off);
    memset(s, 0, sizeof *s);
}

void mu_idxset_to_list(const mu_idxset *s, int64_t *out) {
    if (s->dense) {
        for (int64_t i = 0; i < s->numel; i++) out[i] = i;
        return;
    }
    for (int64_t c = 0; c < s->nchunks; c++)
        for (int64_t j = s->chunk_start[c]; j < s->chunk_start[c + 1]; j++)
            out[j] = (c << MU_IDX_CHUNK_BITS) | s->off[j];
}

size_t mu_idxset_bytes(const mu_idxset *s) {
    if (s->dense) return 0;
    return (size_t)(s->nchunks + 1) * sizeof *s->chunk_start + (size_t)s->n * sizeof *s->off;
}

/* ---- configuration ---- */

void mu_optim_config_default(mu_optim_config *c) {
    memset(c, 0, sizeof *c);
    c->kind = MU_OPT_ADAMW;
    c->lr = 1e-3;
    c->beta1 = 0.9;
    c->beta2 = 0.999;
    c->eps = 1e-8;
    c->weight_decay = 0.01;
    c->sched = MU_SCHED_CONSTANT;
}

int mu_opt_kind_parse(const char *s, mu_opt_kind *out) {
    if (!strcmp(s, "adamw")) *out = MU_OPT_ADAMW;
    else if (!strcmp(s, "sgd")) *out = MU_OPT_SGD;
    else return -1;
    return 0;
}

int mu_sched_kind_parse(const char *s, mu_sched_kind *out) {
    if (!strcmp(s, "constant")) *out = MU_SCHED_CONSTANT;
    else if (!strcmp(s, "linear")) *out = MU_SCHED_LINEAR;
    else if (!strcmp(s, "cosine")) *out = MU_SCHED_COSINE;
    else return -1;
    return 0;
}

double mu_optim_lr_at(const mu_optim_config *c, int64_t step) {
    if (step < c->warmup) return c->lr * (double)(step + 1) / (double)c->warmup;
    if (c->sched == MU_SCHED_CONSTANT) return c->lr;
    int64_t span = c->total - c->warmup;
    double progress = (double)(step - c->warmup) / (double)(span > 1 ? span : 1);
    if (progress > 1) progress = 1;
    double f = c->sched == MU_SCHED_LINEAR ? 1.0 - progress : 0.5 * (1.0 + cos(M_PI * progress));
    if (f < c->min_lr_ratio) f = c->min_lr_ratio;
    return c->lr * f;
}

/* ---- the optimizer ---- */

typedef struct {
    char *name;
    float *param, *grad;
    mu_idxset set;
    float *m, *v;   /* [set.n] */
} opt_param;

struct mu_optim {
    mu_optim_config cfg;
    opt_param *p;
    int n, cap;
    int64_t step;
};

mu_optim *mu_optim_new(const mu_optim_config *c) {
    mu_optim *o = mu_xcalloc(1, sizeof *o);
    o->cfg = *c;
    return o;
}

void mu_optim_free(mu_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        free(o->p[i].name);
        free(o->p[i].m);
        free(o->p[i].v);
        mu_idxset_free(&o->p[i].set);
    }
    free(o->p);
    free(o);
}

static int needs_moment(const mu_optim_config *c, int which) {
    if (c->kind == MU_OPT_ADAMW) return 1;
    return which == 0 && c->momentum != 0;
}

int mu_optim_add(mu_optim *o, const char *name, float *param, float *grad, mu_idxset *set) {
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 16;
        o->p = mu_xrealloc(o->p, (size_t)o->cap * sizeof *o->p);
    }
    opt_param *p = &o->p[o->n];
    memset(p, 0, sizeof *p);
    p->name = mu_xstrdup(name);
    p->param = param;
    p->grad = grad;
    p->set = *set;
    memset(set, 0, sizeof *set);
    size_t nb = (size_t)(p->set.n ? p->set.n : 1) * sizeof(float);
    if (needs_moment(&o->cfg, 0)) p->m = mu_xcalloc(1, nb);
    if (needs_moment(&o->cfg, 1)) p->v = mu_xcalloc(1, nb);
    return o->n++;
}

int mu_optim_count(const mu_optim *o) { return o->n; }
const char *mu_optim_name(const mu_optim *o, int i) { return o->p[i].name; }
const mu_idxset *mu_optim_set(const mu_optim *o, int i) { return &o->p[i].set; }
int64_t mu_optim_step_count(const mu_optim *o) { return o->step; }
void mu_optim_set_step(mu_optim *o, int64_t step) { o->step = step; }
float *mu_optim_moment(mu_optim *o, int i, int which) { return which ? o->p[i].v : o->p[i].m; }

/* Calls body(j, flat) for entry j of the set, chunk by chunk (chunks run in parallel;
 * each entry is touched by exactly one thread, so results do not depend on threads). */
#define FOR_EACH_ENTRY(set, j, flat, body)                                          \
    do {                                                                            \
        const mu_idxset *s_ = (set);                                                \
        if (s_->dense) {                                                            \
            _Pragma("omp parallel for schedule(static)")                            \
            for (int64_t j = 0; j < s_->numel; j++) { int64_t flat = j; body; }     \
        } else {                                                                    \
            _Pragma("omp parallel for schedule(dynamic, 1)")                        \
            for (int64_t c_ = 0; c_ < s_->nchunks; c_++)                            \
                for (int64_t j = s_->chunk_start[c_]; j < s_->chunk_start[c_ + 1]; j++) { \
                    int64_t flat = (c_ << MU_IDX_CHUNK_BITS) | s_->off[j]; body;    \
                }                                                                   \
        }                                                                           \
    } while (0)

/* Sum of squares of one parameter's trained gradient entries, in a fixed order
 * (per-chunk partial sums in double, added in chunk order). */
static double grad_sumsq(const opt_param *p) {
    const mu_idxset *s = &p->set;
    int64_t nblk = s->dense ? (s->numel + CHUNK - 1) / CHUNK : s->nchunks;
    double *part = mu_xcalloc((size_t)(nblk ? nblk : 1), sizeof *part);
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < nblk; c++) {
        double acc = 0;
        if (s->dense) {
            int64_t end = (c + 1) * CHUNK < s->numel ? (c + 1) * CHUNK : s->numel;
            for (int64_t i = c * CHUNK; i < end; i++) acc += (double)p->grad[i] * p->grad[i];
        } else {
            for (int64_t j = s->chunk_start[c]; j < s->chunk_start[c + 1]; j++) {
                float g = p->grad[(c << MU_IDX_CHUNK_BITS) | s->off[j]];
                acc += (double)g * g;
            }
        }
        part[c] = acc;
    }
    double total = 0;
    for (int64_t c = 0; c < nblk; c++) total += part[c];
    free(part);
    return total;
}

double mu_optim_grad_norm(const mu_optim *o) {
    double ss = 0;
    for (int i = 0; i < o->n; i++) ss += grad_sumsq(&o->p[i]);
    return sqrt(ss);
}

void mu_optim_scale_grads(mu_optim *o, float s) {
    for (int i = 0; i < o->n; i++) {
        float *g = o->p[i].grad;
        FOR_EACH_ENTRY(&o->p[i].set, j, flat, { (void)j; g[flat] *= s; });
    }
}

static void adamw_update(const mu_optim_config *c, opt_param *p, int64_t t, float lr) {
    /* scalars rounded to f32 from double, as PyTorch does for python-float arguments */
    float omb1 = (float)(1.0 - c->beta1), b2 = (float)c->beta2, omb2 = (float)(1.0 - c->beta2);
    float eps = (float)c->eps;
    float decay = (float)(1.0 - (double)lr * c->weight_decay);
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    float step_size = (float)(lr / bc1);
    float bc2_sqrt = (float)sqrt(bc2);
    float *w = p->param, *g = p->grad, *m = p->m, *v = p->v;
    FOR_EACH_ENTRY(&p->set, j, flat, {
        float gi = g[flat];
        float wi = w[flat];
        if (c->weight_decay != 0) wi *= decay;
        m[j] += omb1 * (gi - m[j]);         /* torch: exp_avg.lerp_(grad, 1-b1) */
        v[j] = v[j] * b2 + omb2 * (gi * gi);
        float denom = sqrtf(v[j]) / bc2_sqrt + eps;
        w[flat] = wi - step_size * (m[j] / denom);
    });
}

static void sgd_update(const mu_optim_config *c, opt_param *p, int64_t t, float lr) {
    float wd = (float)c->weight_decay, mom = (float)c->momentum;
    float *w = p->param, *g = p->grad, *buf = p->m;
    FOR_EACH_ENTRY(&p->set, j, flat, {
        float d = g[flat];
        if (wd != 0) d += wd * w[flat];
        if (buf) {
            buf[j] = t == 1 ? d : buf[j] * mom + d;
            d = buf[j];
        }
        w[flat] -= lr * d;
    });
}

void mu_optim_step(mu_optim *o, double *norm_out, double *lr_out) {
    double norm = mu_optim_grad_norm(o);
    if (norm_out) *norm_out = norm;
    if (o->cfg.clip > 0) {
        double coef = o->cfg.clip / (norm + 1e-6);
        if (coef < 1.0) mu_optim_scale_grads(o, (float)coef);
    }
    double lr = mu_optim_lr_at(&o->cfg, o->step);
    if (lr_out) *lr_out = lr;
    o->step++;
    for (int i = 0; i < o->n; i++) {
        if (o->cfg.kind == MU_OPT_ADAMW) adamw_update(&o->cfg, &o->p[i], o->step, (float)lr);
        else sgd_update(&o->cfg, &o->p[i], o->step, (float)lr);
    }
}

size_t mu_optim_state_bytes(const mu_optim *o) {
    size_t b = 0;
    for (int i = 0; i < o->n; i++) {
        const opt_param *p = &o->p[i];
        size_t per = (p->m ? 1 : 0) + (p->v ? 1 : 0);
        b += per * (size_t)p->set.n * sizeof(float) + mu_idxset_bytes(&p->set);
    }
    return b;
}
