/* optim.h — optimizers (AdamW, SGD with momentum), learning-rate schedules with warmup,
 * global-norm gradient clipping, over parameter tensors that may be only partly trainable.
 *
 * A parameter is a full f32 tensor (numel elements) with its gradient buffer, or a PACKED
 * one (mu_optim_add_packed): only its trained elements, tensor and gradient [n] each. Which
 * elements train is given by a mu_idxset: all of them (dense) or a sorted list of flat
 * indices kept compressed (chunks of 65536 elements, 16-bit offsets inside a chunk), so the
 * optimizer state (m, v) and the index list together take about 10 bytes per TRAINED element:
 * optimizer memory follows the mask, not the model (and with packed tensors, so do the
 * gradients and masters: lib/model.h mu_model_set_trainable_elems).
 *
 * Semantics follow PyTorch exactly (torch.optim.AdamW / SGD, clip_grad_norm_):
 *   AdamW, step t = 1, 2, ...:  p *= 1 - lr*wd;  m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2;
 *                               p -= (lr / (1-b1^t)) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
 *   SGD:  g += wd*p;  buf = momentum*buf + g (buf = g at t=1);  p -= lr*buf
 *   clip: total = ||g||_2 over every trained element; if clip > 0: g *= min(1, clip/(total+1e-6))
 * Only trained elements are read from the gradient and written in the parameter.
 *
 * The arithmetic runs on a compute backend (kernels.h: elems_sumsq, elems_scale,
 * adamw_step, sgd_step), and the parameters, gradients, moments and the index arrays of
 * partly trained tensors live in that backend's memory: on the CUDA backend nothing of
 * the optimizer is on the host except the index sets themselves (mu_optim_set) and the
 * scalars, and a step transfers only one double per 65536-element chunk (the norm). */
#ifndef MU_OPTIM_H
#define MU_OPTIM_H
#include <stddef.h>
#include <stdint.h>
#include "kernels.h"

/* ---- index sets: which flat elements of a tensor are trained ---- */
#define MU_IDX_CHUNK_BITS 16
typedef struct {
    int64_t numel;       /* elements of the tensor */
    int64_t n;           /* elements in the set */
    int dense;           /* 1: every element (no lists below) */
    int64_t nchunks;     /* ceil(numel / 65536) */
    int64_t *chunk_start;/* [nchunks+1]: position in off[] where each chunk's entries begin */
    uint16_t *off;       /* [n]: offset of each element inside its chunk, ascending */
} mu_idxset;

void mu_idxset_init_dense(mu_idxset *s, int64_t numel);
/* From sorted, unique flat indices in [0, numel). Returns 0, or -1 with err if unsorted,
 * duplicated or out of range. */
int mu_idxset_init_list(mu_idxset *s, int64_t numel, const int64_t *idx, int64_t n,
                        char *err, size_t errlen);
void mu_idxset_free(mu_idxset *s);
void mu_idxset_copy(mu_idxset *dst, const mu_idxset *src);   /* a copy with its own arrays */
/* Writes the flat indices (n of them) into out. */
void mu_idxset_to_list(const mu_idxset *s, int64_t *out);
size_t mu_idxset_bytes(const mu_idxset *s);  /* memory the set itself holds */
/* Iteration helper: flat index of entry j of chunk c is (c << 16) | off[j].
 * FOR_SET_ENTRY runs stmt with j (entry) and flat (element) for every entry of host set s,
 * in entry order. */
#define FOR_SET_ENTRY(s, j, flat, stmt)                                                   \
    do {                                                                                  \
        const mu_idxset *s_ = (s);                                                        \
        for (int64_t c_ = 0, j = 0; c_ < (s_->dense ? 1 : s_->nchunks); c_++)             \
            for (; j < (s_->dense ? s_->numel : s_->chunk_start[c_ + 1]); j++) {          \
                int64_t flat = s_->dense ? j : (c_ << MU_IDX_CHUNK_BITS) | s_->off[j];    \
                stmt;                                                                     \
            }                                                                             \
    } while (0)

/* The set as backend be sees it (kernels.h mu_elems, packed 0): on a device backend the
 * chunk arrays are copied into its memory and *owned set to 1 (release with
 * mu_elems_release); on a host backend e borrows s's arrays (s must outlive it). 0, or -1
 * when the backend is out of memory (nothing left allocated). */
int mu_elems_of(const mu_backend *be, const mu_idxset *s, mu_elems *e, int *owned);
void mu_elems_release(const mu_backend *be, mu_elems *e, int owned);

/* ---- configuration ---- */
typedef enum { MU_OPT_ADAMW = 0, MU_OPT_SGD = 1 } mu_opt_kind;
typedef enum { MU_SCHED_CONSTANT = 0, MU_SCHED_LINEAR = 1, MU_SCHED_COSINE = 2 } mu_sched_kind;

typedef struct {
    mu_opt_kind kind;
    double lr;
    double beta1, beta2, eps;     /* AdamW */
    double momentum;              /* SGD */
    double weight_decay;
    double clip;                  /* global-norm clip; <= 0: none */
    mu_sched_kind sched;
    int64_t warmup;               /* warmup steps (linear from 1/warmup to 1) */
    int64_t total;                /* total steps, for linear/cosine decay */
    double min_lr_ratio;          /* decay floor, as a fraction of lr */
} mu_optim_config;

void mu_optim_config_default(mu_optim_config *c); /* AdamW 1e-3 (0.9,0.999) eps 1e-8, wd 0.01 */
int mu_opt_kind_parse(const char *s, mu_opt_kind *out);      /* "adamw", "sgd" */
int mu_sched_kind_parse(const char *s, mu_sched_kind *out);  /* "constant","linear","cosine" */
const char *mu_opt_kind_name(mu_opt_kind k);                 /* the names the parsers take */
const char *mu_sched_kind_name(mu_sched_kind k);

/* Learning rate of update number `step` (0-based):
 *   step < warmup:   lr * (step+1)/warmup
 *   after warmup:    progress = (step-warmup)/max(1,total-warmup) in [0,1]
 *                    constant: lr; linear: lr*(1-progress); cosine: lr*0.5*(1+cos(pi*progress)),
 *                    each floored at lr*min_lr_ratio. */
double mu_optim_lr_at(const mu_optim_config *c, int64_t step);

/* ---- the optimizer ---- */
typedef struct mu_optim mu_optim;

/* An optimizer whose state and arithmetic live on backend be. */
mu_optim *mu_optim_new(const mu_optim_config *c, const mu_backend *be);
void mu_optim_free(mu_optim *o);
/* Adds a parameter: param and grad are backend buffers of `set->numel` f32 (borrowed, must
 * outlive o); set is taken over (o frees it, also on failure). Allocates the moments
 * (zeroed) and, on a device backend, a copy of the index arrays. Returns the parameter's
 * index, or -1 when the backend is out of memory. */
int mu_optim_add(mu_optim *o, const char *name, float *param, float *grad, mu_idxset *set);
/* The same for a PACKED tensor (a list set, lib/model.h's partly trained parameters):
 * param and grad hold only the trained elements, [set->n] in entry order. Trains to the
 * same bits as mu_optim_add with the whole tensor and gradient. el: the set as the backend
 * already holds it (the model's param->el; borrowed, must outlive o), or NULL for a copy
 * of the optimizer's own. */
int mu_optim_add_packed(mu_optim *o, const char *name, float *param, float *grad,
                        mu_idxset *set, const mu_elems *el);
int mu_optim_count(const mu_optim *o);
const char *mu_optim_name(const mu_optim *o, int i);
const mu_idxset *mu_optim_set(const mu_optim *o, int i);   /* host index set */
int64_t mu_optim_step_count(const mu_optim *o);   /* updates done so far */

/* L2 norm of the gradient over all trained elements (double accumulation, fixed order:
 * per-chunk partials in chunk order, tensors in the order added). */
double mu_optim_grad_norm(const mu_optim *o);
/* Multiplies the trained elements' gradients by s (e.g. 1/accumulation steps). */
void mu_optim_scale_grads(mu_optim *o, float s);
/* One update: clips (if configured; returns the pre-clip norm in *norm_out when not NULL),
 * applies the scheduled lr, advances the step count. Deterministic: same inputs -> same bits. */
void mu_optim_step(mu_optim *o, double *norm_out, double *lr_out);

/* Bytes of optimizer state allocated on the backend (moments + index arrays; not the
 * arrays a packed tensor borrows), for memory accounting. */
size_t mu_optim_state_bytes(const mu_optim *o);

/* State access for checkpoints, copying to / from host arrays of set->n floats.
 * which 0: m (or the SGD momentum buffer), 1: v. has: whether the optimizer keeps that
 * moment (v only for AdamW, the buffer only for SGD with momentum); get/set return -1
 * when it does not, else 0. The step count is restored with mu_optim_set_step. */
int mu_optim_has_moment(const mu_optim *o, int i, int which);
int mu_optim_get_moment(const mu_optim *o, int i, int which, float *host);
int mu_optim_set_moment(mu_optim *o, int i, int which, const float *host);
void mu_optim_set_step(mu_optim *o, int64_t step);
/* The trained elements of parameter i (set->n floats, in entry order) to / from a host
 * array; the other elements are untouched. (After a set, a model must be told:
 * mu_model_param_changed.) */
void mu_optim_get_trained(const mu_optim *o, int i, float *host);
void mu_optim_set_trained(mu_optim *o, int i, const float *host);
#endif
