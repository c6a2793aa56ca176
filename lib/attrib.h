/* attrib.h — parameter attribution: which units (value vectors, elements, heads, matrices)
 * of a model are responsible for a forget set, the localizations that Lee et al. 2025
 * ("Does Localization Inform Unlearning?") compare. mu-attrib writes the result as a
 * "scores" stream, mu-maskgen turns it into a mask.
 *
 * Data: token streams read by mu_train_set_read (prompt ++ answer; the answer tokens are
 * the targets). L_f and L_r are the mean negative log-likelihoods of the forget and
 * retain sets' target tokens (mean over all target tokens of the set); g_f = dL_f/dθ,
 * g_r = dL_r/dθ, computed over the whole set (batches of `batch` sequences add up).
 *
 * Methods (score of a unit; higher = more responsible):
 *   act           mean |a_j| of neuron j (mlp_post, silu(gate)*up) over the forget set's
 *                 tokens: the value-vector (memory coefficient) activations. MLP tensors at
 *                 neuron granularity only (gate/up rows and down_proj columns are neuron j).
 *   act-contrast  mean_f |a_j| - mean_r |a_j| (forget minus retain).
 *   grad          sum over the unit's elements of |g_f|.
 *   wagle         sum over the unit's elements of |(θ - g_r/γ) ⊙ g_f|, the weight attribution
 *                 of WAGLE (Jia et al. 2024): the first-order effect of unlearning weight i on
 *                 the retain loss, with the Hessian diagonal approximated by γ.
 *   memflex       ||g_f,u|| when cos(g_f,u, g_r,u) < μ, else 0 (Tian et al. 2024's MemFlex:
 *                 units whose forget gradient is large and unlike the retain gradient). The
 *                 record also holds the norms and the cosine, to re-threshold without rerunning.
 * Positions of act: every token of each sequence (prompt and answer), or only the rows
 * that predict an answer token (answer_positions).
 *
 * Output tracing (Guo et al. 2024's comparison localizations; Meng et al. 2022): whole
 * components, the attention block (attn_out) and the MLP (mlp_out) of each layer, scored
 * per forget record and averaged. The corrupted run adds Gaussian noise of standard
 * deviation noise * std(embedding matrix) to the subject's token embeddings (the record's
 * span of the subject field), one draw per sample (mu_attr_noise); m = the answer's
 * log-probability (sum over its tokens, teacher-forced), p = exp(m).
 *   causal-trace  indirect effect: p(corrupted run with the component's clean output
 *                 restored at the positions) - p(corrupted run), mean over samples.
 *   atp           attribution patching: -(mean corrupted output - clean output) . dm/d(output)
 *                 at the clean run, summed over the positions: the first-order drop of m
 *                 when the component alone sees the corrupted subject.
 * Fact lookup (Guo et al. 2024's localization, after Nanda et al. 2023's path patching):
 *   path-patch    direct effect of a block's output at the subject's last token s on the
 *                 answer through later positions' attention: in the clean run the block
 *                 writes its corrupted output at s and every later block (attn 0, mlp 0,
 *                 attn 1, ... order) its clean output at s, so the residual stream at s is
 *                 clean + (corrupted - clean block output) from the block on, and it reaches
 *                 the answer only by being read (keys, values) from later positions. Effect
 *                 m(clean run) - m(path-patched run), the drop of the answer log-probability
 *                 (a known answer has p ~ 1, where one path's drop in p vanishes), mean over
 *                 samples. Excluded: the block's
 *                 effect through later blocks at s (those are output tracing's indirect
 *                 effects). Positions: the subject's last token only.
 * Positions: every prompt token (restore_all), or the subject's last token. Every tensor of
 * layer L's attention (q, k, v, o, biases, input norm) gets the attention score of L, every
 * tensor of its MLP (gate, up, down, post-attention norm) the MLP score; matrix units only. */
#ifndef MU_ATTRIB_H
#define MU_ATTRIB_H
#include <stddef.h>
#include <stdint.h>
#include "mask.h"
#include "model.h"
#include "train.h"

typedef enum {
    MU_ATTR_ACT = 0, MU_ATTR_ACT_CONTRAST, MU_ATTR_GRAD, MU_ATTR_WAGLE, MU_ATTR_MEMFLEX,
    MU_ATTR_CAUSAL_TRACE, MU_ATTR_ATP, MU_ATTR_PATH_PATCH, MU_ATTR_COUNT
} mu_attr_method;
const char *mu_attr_method_name(mu_attr_method m);      /* "act", ..., "memflex" */
int mu_attr_method_parse(const char *s, mu_attr_method *out);  /* 0 ok, -1 unknown */
int mu_attr_needs_retain(mu_attr_method m);

typedef struct {
    mu_attr_method method;
    mu_granularity gran;     /* units of the scores (act: neuron only) */
    double gamma;            /* wagle: γ (default 1) */
    double memflex_mu;       /* memflex: cosine threshold μ (default 0) */
    int batch;               /* sequences (causal-trace, path-patch: patched runs of a record)
                                per forward (default 8) */
    int answer_positions;    /* act: only rows predicting answer tokens */
    /* causal-trace, atp, path-patch */
    const int32_t *subj_start, *subj_end;   /* [forget->n] subject span [start, end) per record */
    double noise;            /* noise std in units of the embedding matrix's std (default 3) */
    int samples;             /* noise draws per record (default 4) */
    uint64_t seed;
    int restore_all;         /* positions: every prompt token (1, default) or subject last (0) */
    int progress;            /* mu_progress on stderr */
} mu_attr_opts;
void mu_attr_opts_default(mu_attr_opts *o);

typedef struct {
    char *name;
    int ndim;
    int64_t shape[2];
    mu_granularity gran;
    int64_t units;
    float *score;            /* [units] */
    float *norm_f, *norm_r, *cos;   /* memflex: ||g_f,u||, ||g_r,u||, cosine [units]; else NULL */
} mu_attr_tensor;

typedef struct {
    int n;
    mu_attr_tensor *t;
    int64_t params_total;    /* parameters of the whole model */
    double loss_f, loss_r;   /* L_f, L_r at the model (NaN when not computed) */
    int64_t tokens_f, tokens_r;   /* target tokens (grad methods) or positions (act) used */
    int n_layer;
    double *effect[2];       /* causal-trace, atp, path-patch: [n_layer] scores of attention (0)
                                and MLP (1); causal-trace and path-patch patch only the blocks
                                of the scored tensors, the others are NaN */
    double p_clean, p_corrupt;    /* the same: mean answer probability, clean and corrupted */
} mu_attr_result;
void mu_attr_result_free(mu_attr_result *r);

/* Scores every tensor of `tensors` (a mask; only its tensor list is used, not its bits)
 * over m, by o->method. retain may be NULL unless the method needs it. The model's
 * trainable state is changed (set for the scored tensors, then cleared) and its gradients
 * overwritten. 0 ok, -1 + one-line err. */
int mu_attrib_run(mu_model *m, const mu_mask *tensors, const mu_train_set *forget,
                  const mu_train_set *retain, const mu_attr_opts *o, mu_attr_result *out,
                  char *err, size_t errlen);

/* The noise of sample s of record rec: n values N(0, sigma^2) from lib/rng.h's stream
 * (seed, rec * 2^20 + s). */
void mu_attr_noise(uint64_t seed, int rec, int s, double sigma, float *out, int64_t n);
int mu_attr_is_causal(mu_attr_method m);   /* causal-trace, atp, path-patch */

/* Writes r as a "scores" stream (man/mu-stream.5) to path ("-" = stdout), atomically.
 * Header meta: method, granularity, params_total, gamma / mu when used, loss_f, loss_r,
 * tokens_f, tokens_r, answer_positions. Records: {"name","shape","granularity","units",
 * "score": f32 [units]} (+ "norm_f","norm_r","cos" for memflex). inputs as in
 * mu_mask_write. */
void mu_attr_write(const mu_attr_result *r, const mu_attr_opts *o, const char *path,
                   const char *const *input_roles, const char *const *input_paths, const float *input_scales,
                   int n_inputs);
#endif
