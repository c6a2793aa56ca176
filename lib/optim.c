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

void mu_idxset_copy(mu_idxset *dst, const mu_idxset *src) {
    *dst = *src;
    if (src->dense) return;
    dst->chunk_start = mu_xmalloc((size_t)(src->nchunks + 1) * sizeof *dst->chunk_start);
    dst->off = mu_xmalloc((size_t)(src->n ? src->n : 1) * sizeof *dst->off);
    memcpy(dst->chunk_start, src->chunk_start, (size_t)(src->nchunks + 1) * sizeof *dst->chunk_start);
    memcpy(dst->off, src->off, (size_t)src->n * sizeof *dst->off);
}

void mu_idxset_free(mu_idxset *s) {
    free(s->chunk_start);
    free(s->off);
    memset(s, 0, sizeof *s);
}

void mu_idxset_to_list(const mu_idxset *s, int64_t *out) {
    FOR_SET_ENTRY(s, j, flat, out[j] = flat);
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

/* the names of mu_opt_kind and mu_sched_kind, by value */
static const char *const OPT_KIND_NAMES[] = {"adamw", "sgd"};
static const char *const SCHED_KIND_NAMES[] = {"constant", "linear", "cosine"};

static int name_index(const char *const *names, int n, const char *s) {
    for (int i = 0; i < n; i++) if (!strcmp(s, names[i])) return i;
    return -1;
}

int mu_opt_kind_parse(const char *s, mu_opt_kind *out) {
    int i = name_index(OPT_KIND_NAMES, 2, s);
    if (i < 0) return -1;
    *out = (mu_opt_kind)i;
    return 0;
}

int mu_sched_kind_parse(const char *s, mu_sched_kind *out) {
    int i = name_index(SCHED_KIND_NAMES, 3, s);
    if (i < 0) return -1;
    *out = (mu_sched_kind)i;
    return 0;
}

const char *mu_opt_kind_name(mu_opt_kind k) { return OPT_KIND_NAMES[k]; }
const char *mu_sched_kind_name(mu_sched_kind k) { return SCHED_KIND_NAMES[k]; }

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

_Static_assert(MU_IDX_CHUNK_BITS == MU_ELEMS_CHUNK_BITS, "index sets and backend chunks agree");

typedef struct {
    char *name;
    float *param, *grad;   /* backend [numel] */
    mu_idxset set;         /* host */
    mu_elems e;            /* the set in backend memory (on a host backend: set's arrays) */
    int own_idx;           /* e's arrays were allocated on the backend */
    float *m, *v;          /* backend [set.n] */
} opt_param;

struct mu_optim {
    mu_optim_config cfg;
    const mu_backend *be;
    opt_param *p;
    int n, cap;
    int64_t step;
};

mu_optim *mu_optim_new(const mu_optim_config *c, const mu_backend *be) {
    mu_optim *o = mu_xcalloc(1, sizeof *o);
    o->cfg = *c;
    o->be = be;
    return o;
}

static void param_free(const mu_backend *be, opt_param *p) {
    free(p->name);
    be->free(p->m);
    be->free(p->v);
    mu_elems_release(be, &p->e, p->own_idx);
    mu_idxset_free(&p->set);
}

void mu_optim_free(mu_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) param_free(o->be, &o->p[i]);
    free(o->p);
    free(o);
}

static int needs_moment(const mu_optim_config *c, int which) {
    if (c->kind == MU_OPT_ADAMW) return 1;
    return which == 0 && c->momentum != 0;
}

/* A zero-filled backend buffer of nbytes (at least 1) holding host (if not NULL). */
static void *backend_copy(const mu_backend *be, const void *host, size_t nbytes) {
    void *d = be->alloc(nbytes ? nbytes : 1);
    if (d && host && nbytes) be->upload(d, host, nbytes);
    return d;
}

int mu_elems_of(const mu_backend *be, const mu_idxset *s, mu_elems *e, int *owned) {
    *e = (mu_elems){.numel = s->numel, .n = s->n, .dense = s->dense, .nchunks = s->nchunks};
    *owned = 0;
    if (s->dense) return 0;
    if (be->host_memory) {
        e->chunk_start = s->chunk_start;
        e->off = s->off;
        return 0;
    }
    e->chunk_start = backend_copy(be, s->chunk_start, (size_t)(s->nchunks + 1) * sizeof *s->chunk_start);
    e->off = backend_copy(be, s->off, (size_t)s->n * sizeof *s->off);
    if (e->chunk_start && e->off) {
        *owned = 1;
        return 0;
    }
    mu_elems_release(be, e, 1);
    return -1;
}

void mu_elems_release(const mu_backend *be, mu_elems *e, int owned) {
    if (owned) {
        be->free((void *)e->chunk_start);
        be->free((void *)e->off);
    }
    e->chunk_start = NULL;
    e->off = NULL;
}

/* el: NULL (a whole tensor, or a packed one whose index arrays the optimizer copies), or
 * the packed tensor's arrays on the backend, borrowed. */
static int add_param(mu_optim *o, const char *name, float *param, float *grad, mu_idxset *set,
                     int packed, const mu_elems *el) {
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
    size_t nb = (size_t)p->set.n * sizeof(float);
    int ok = 1;
    if (el) p->e = *el;                       /* own_idx stays 0 */
    else ok = mu_elems_of(o->be, &p->set, &p->e, &p->own_idx) == 0;
    p->e.packed = packed && !p->set.dense;
    if (ok && needs_moment(&o->cfg, 0)) ok = (p->m = backend_copy(o->be, NULL, nb)) != NULL;
    if (ok && needs_moment(&o->cfg, 1)) ok = (p->v = backend_copy(o->be, NULL, nb)) != NULL;
    if (!ok) {
        param_free(o->be, p);
        return -1;
    }
    return o->n++;
}

int mu_optim_add(mu_optim *o, const char *name, float *param, float *grad, mu_idxset *set) {
    return add_param(o, name, param, grad, set, 0, NULL);
}

int mu_optim_add_packed(mu_optim *o, const char *name, float *param, float *grad,
                        mu_idxset *set, const mu_elems *el) {
    return add_param(o, name, param, grad, set, 1, el);
}

int mu_optim_count(const mu_optim *o) { return o->n; }
const char *mu_optim_name(const mu_optim *o, int i) { return o->p[i].name; }
const mu_idxset *mu_optim_set(const mu_optim *o, int i) { return &o->p[i].set; }
int64_t mu_optim_step_count(const mu_optim *o) { return o->step; }
void mu_optim_set_step(mu_optim *o, int64_t step) { o->step = step; }

static float *moment_of(const mu_optim *o, int i, int which) { return which ? o->p[i].v : o->p[i].m; }

int mu_optim_has_moment(const mu_optim *o, int i, int which) { return moment_of(o, i, which) != NULL; }

int mu_optim_get_moment(const mu_optim *o, int i, int which, float *host) {
    float *mom = moment_of(o, i, which);
    if (!mom) return -1;
    o->be->download(host, mom, (size_t)o->p[i].set.n * sizeof(float));
    return 0;
}

int mu_optim_set_moment(mu_optim *o, int i, int which, const float *host) {
    float *mom = moment_of(o, i, which);
    if (!mom) return -1;
    o->be->upload(mom, host, (size_t)o->p[i].set.n * sizeof(float));
    return 0;
}

/* Copies trained elements between the backend tensor and host[set.n] (to_host 1: out of
 * the tensor). Host backends, dense sets and packed tensors copy directly; otherwise
 * through a packed backend buffer of set.n floats, or, without memory for one, the whole
 * tensor. */
static void copy_trained(const mu_optim *o, int i, float *host, int to_host) {
    const mu_backend *be = o->be;
    const opt_param *p = &o->p[i];
    size_t nb = (size_t)p->set.n * sizeof(float);
    if (p->set.dense || p->e.packed) {
        if (to_host) be->download(host, p->param, nb);
        else be->upload(p->param, host, nb);
        return;
    }
    if (be->host_memory) {
        if (to_host) be->elems_gather(host, p->param, &p->e);
        else be->elems_scatter(p->param, host, &p->e);
        return;
    }
    float *packed = be->alloc(nb ? nb : 1);
    if (packed) {
        if (to_host) {
            be->elems_gather(packed, p->param, &p->e);
            be->download(host, packed, nb);
        } else {
            be->upload(packed, host, nb);
            be->elems_scatter(p->param, packed, &p->e);
            be->sync();
        }
        be->free(packed);
        return;
    }
    size_t full = (size_t)p->set.numel * sizeof(float);
    float *w = mu_xmalloc(full ? full : 1);
    be->download(w, p->param, full);
    FOR_SET_ENTRY(&p->set, j, flat, {
        if (to_host) host[j] = w[flat];
        else w[flat] = host[j];
    });
    if (!to_host) be->upload(p->param, w, full);
    free(w);
}

void mu_optim_get_trained(const mu_optim *o, int i, float *host) { copy_trained(o, i, host, 1); }
void mu_optim_set_trained(mu_optim *o, int i, const float *host) { copy_trained(o, i, (float *)host, 0); }

double mu_optim_grad_norm(const mu_optim *o) {
    double ss = 0;
    for (int i = 0; i < o->n; i++) ss += o->be->elems_sumsq(o->p[i].grad, &o->p[i].e);
    return sqrt(ss);
}

void mu_optim_scale_grads(mu_optim *o, float s) {
    for (int i = 0; i < o->n; i++) o->be->elems_scale(o->p[i].grad, s, &o->p[i].e);
}

/* The f32 scalars of AdamW update t at learning rate lr, rounded from double as PyTorch
 * does for python-float arguments. */
static mu_adamw_args adamw_args(const mu_optim_config *c, int64_t t, float lr) {
    double bc1 = 1.0 - pow(c->beta1, (double)t), bc2 = 1.0 - pow(c->beta2, (double)t);
    return (mu_adamw_args){
        .omb1 = (float)(1.0 - c->beta1), .b2 = (float)c->beta2, .omb2 = (float)(1.0 - c->beta2),
        .eps = (float)c->eps,
        .decay = (float)(1.0 - (double)lr * c->weight_decay), .decay_on = c->weight_decay != 0,
        .step_size = (float)(lr / bc1), .bc2_sqrt = (float)sqrt(bc2),
    };
}

static void update_param(const mu_optim *o, opt_param *p, float lr) {
    const mu_optim_config *c = &o->cfg;
    if (c->kind == MU_OPT_ADAMW) {
        mu_adamw_args a = adamw_args(c, o->step, lr);
        o->be->adamw_step(p->param, p->grad, p->m, p->v, &p->e, &a);
    } else {
        mu_sgd_args a = {.lr = lr, .wd = (float)c->weight_decay, .momentum = (float)c->momentum,
                         .first = o->step == 1};
        o->be->sgd_step(p->param, p->grad, p->m, &p->e, &a);
    }
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
    for (int i = 0; i < o->n; i++) update_param(o, &o->p[i], (float)lr);
}

size_t mu_optim_state_bytes(const mu_optim *o) {
    size_t b = 0;
    for (int i = 0; i < o->n; i++) {
        const opt_param *p = &o->p[i];
        size_t per = (p->m ? 1 : 0) + (p->v ? 1 : 0);
        b += per * (size_t)p->set.n * sizeof(float);
        if (o->be->host_memory || p->own_idx) b += mu_idxset_bytes(&p->set);  /* not borrowed */
    }
    return b;
}
