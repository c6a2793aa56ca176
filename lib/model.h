/* model.h — the Llama-family transformer of mu, written once against kernels.h.
 *
 * RMSNorm, RoPE (HF rotate_half; llama3 / linear scaling), grouped-query attention
 * (causal, key padding), SwiGLU MLP, tied or untied embeddings, optional q/k/v biases
 * (Qwen2). Weights and gradients live in backend buffers: f32, or (mu_model_load_as with
 * MU_WEIGHTS_BF16) the GEMM and embedding weights in bf16 with f32 accumulation, f32
 * activations, and an f32 master copy for each trainable weight (kernels.h "bf16 weights").
 *
 *   mu_model *m = mu_model_load("model_dir", deltas, n_deltas, mu_backend_cpu(), err, sizeof err);
 *   mu_batch b = { .B = 2, .T = 5, .ids = ids, .lens = lens };   // right-padded rows
 *   mu_fwd_opts o = { .train = 1 };                          // whole model
 *   mu_model_set_trainable(m, mu_model_find(m, "model.layers.1.mlp.down_proj.weight"), 1);
 *   mu_model_forward(m, &b, &o, err, sizeof err);
 *   const float *logits = mu_model_logits(m);              // [B,T,V] host f32
 *   ... dlogits = d loss / d logits (host [B,T,V]) ...
 *   mu_model_backward(m, dlogits, NULL, 0, err, sizeof err);   // grads += into param->g
 *
 * One forward pass per call; a train forward keeps what backward needs (per layer: the
 * residual input, q/k/v, attention output and log-sum-exp, resid_mid, gate/up
 * pre-activations and the MLP activation; the normed inputs are recomputed). Memory:
 * about (2*d_model + 2*H*hd + 2*Hkv*hd + 3*d_ff) floats per token per layer, plus the
 * [B,T,V] logits. Rows are independent: a padded batch gives the same
 * results at valid positions as each row alone.
 */
#ifndef MU_MODEL_H
#define MU_MODEL_H
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "arch.h"
#include "kernels.h"
#include "optim.h"

/* ---- sites (hook points; DESIGN.md) --------------------------------------------------
 * Width D of the activation handed to a hook, per token:
 *   EMBED       d_model   token embeddings (before layer 0; GPT-2: plus the position
 *                         embeddings)                                          layer -1
 *   RESID_PRE   d_model   residual stream entering layer L
 *   ATTN_HEAD   n_head*head_dim  per-head attention outputs before o_proj, [H, hd] per token
 *   ATTN_OUT    d_model   o_proj output (the attention block's write to the residual)
 *   RESID_MID   d_model   resid_pre + attn_out (with a parallel residual, GPT-NeoX, the MLP
 *                         reads resid_pre: resid_mid only feeds resid_post)
 *   MLP_IN      2*d_ff    gate and up pre-activations, [gate(d_ff) | up(d_ff)] per token;
 *               d_ff      with a plain MLP (GPT-NeoX): the up projection's (+ bias)
 *   MLP_POST    d_ff      neuron activations silu(gate)*up, or gelu(up) (value-vector weights)
 *   MLP_OUT     d_model   down_proj output
 *   RESID_POST  d_model   resid_mid + mlp_out (= resid_pre of layer L+1)
 *   LOGITS      vocab     lm_head output                                       layer -1
 */
typedef enum {
    MU_SITE_EMBED = 0, MU_SITE_RESID_PRE, MU_SITE_ATTN_HEAD, MU_SITE_ATTN_OUT,
    MU_SITE_RESID_MID, MU_SITE_MLP_IN, MU_SITE_MLP_POST, MU_SITE_MLP_OUT,
    MU_SITE_RESID_POST, MU_SITE_LOGITS, MU_SITE_COUNT
} mu_site;

const char *mu_site_name(mu_site s);                 /* "resid_post", ... */
int mu_site_width(mu_site s, const mu_config *c);    /* D above */
int mu_site_is_layered(mu_site s);                   /* 0 for embed and logits */

/* ---- hooks ---------------------------------------------------------------------------- */
typedef struct {
    mu_site site;
    int layer;               /* -1 for embed / logits */
    int backward;            /* 0: act is the activation; 1: act is d loss / d activation */
    int B, T, D;             /* act is [B, T, D] host f32, row-major (logits with
                                logits_last_only: T = 1, each row's last valid token) */
    const int32_t *lens;     /* [B] valid tokens per row */
    const int32_t *pos0;     /* [B] absolute position of t = 0 (KV-cache decode), or NULL = 0 */
} mu_hook_info;

/* A hook may read act (cache, attribution) and write it in place (patch, add noise or a
 * steering vector, zero/mean-ablate; in backward: add an injected loss gradient). The
 * model continues with act as the hook leaves it. Backward treats a forward hook as the
 * identity (the gradient flows through the patched value unchanged; a patch of attn_head
 * is also seen by the attention backward's softmax term). Return 0, or non-zero to abort the
 * pass (the forward/backward then fails with "hook at SITE:L failed"). On a device
 * backend act is a host copy, uploaded back after the call. Hooks run in the order given. */
typedef int (*mu_hook_fn)(const mu_hook_info *info, float *act, void *user);

typedef struct {
    mu_site site;
    int layer;               /* a layer, or -1 = every layer (ignored for embed / logits) */
    int backward;            /* 0: forward hook; 1: backward (gradient) hook */
    mu_hook_fn fn;
    void *user;
} mu_hook;

/* ---- batches --------------------------------------------------------------------------- */
typedef struct {
    int B, T;                /* rows, padded length */
    const int32_t *ids;      /* host [B*T]; pad positions must hold a valid id (e.g. 0) */
    const int32_t *lens;     /* host [B]: valid tokens per row, 0..T; NULL = all T */
} mu_batch;

typedef struct mu_kvcache mu_kvcache;

typedef struct {
    int train;               /* keep activations for mu_model_backward (no cache allowed) */
    int n_layers;            /* 0 = the whole model; k > 0: run layers 0..k-1 only, then stop
                                (no final norm, no logits; RMU: loss on resid_post of layer
                                k-1). A zero-initialized struct runs the whole model. */
    int logits_last_only;    /* logits only at each row's last valid token: [B, V] */
    const int32_t *logit_rows;  /* host [n_logit_rows] or NULL: logits only at these flat
                                positions b*T + t (strictly increasing, t < lens[b]): [n, V],
                                and backward takes dlogits [n, V]. Training on a few labeled
                                positions then skips the lm_head GEMMs of all the others.
                                No LOGITS hooks with it; not with logits_last_only. */
    int n_logit_rows;        /* 0 with logit_rows non-NULL: no logits at all */
    const mu_hook *hooks;    /* forward hooks (entries with backward=1 are ignored here) */
    int n_hooks;
    mu_kvcache *cache;       /* NULL, or append this batch after what the cache holds (row b's
                                tokens get positions cache_len[b] ..); train must be 0 */
} mu_fwd_opts;

/* ---- parameters ------------------------------------------------------------------------ */
/* Storage of the GEMM and embedding weights. */
typedef enum { MU_WEIGHTS_F32 = 0, MU_WEIGHTS_BF16 = 1 } mu_weights;
int mu_weights_parse(const char *s, mu_weights *out);     /* "f32", "bf16"; -1 otherwise */

typedef struct {
    mu_param_info info;      /* HF name, shape, layer, role (arch.h) */
    int64_t numel;
    float *w;                /* f32 backend buffer [numel]; in a bf16 model, the f32 master
                                copy of a GEMM/embedding weight once it was made trainable
                                (NULL while it never was) */
    uint16_t *w16;           /* bf16 backend buffer [numel] the GEMMs read (bf16 models,
                                GEMM and embedding weights), else NULL */
    float *g;                /* gradient buffer (backend), allocated while trainable, else NULL;
                                [numel], or [set.n] when packed */
    int trainable;
    int conv1d;              /* a projection weight stored [in, out] (GPT-2): the GEMMs read it
                                transposed (kernels.h matmul_wt) */
    /* A PACKED parameter (mu_model_set_trainable_elems): only the elements of set train,
     * and they alone have a gradient (g) and an f32 master (wp), [set.n] in entry order.
     * w (f32 models) and w16 (bf16) are whole; a bf16 one keeps no whole f32 master. */
    int packed;
    float *wp;               /* backend [set.n]: the trained elements' f32 values */
    mu_idxset set;           /* host: which elements (a list set) */
    mu_elems el;             /* the set in backend memory (packed 0) */
    int own_el;              /* el's arrays were allocated on the backend */
} mu_param;

typedef struct mu_model mu_model;

/* Loads an HF directory or a GGUF file through lib/ckpt.h, deltas applied in order
 * (n_deltas may be 0). NULL + one-line err on failure. No parameter is trainable. */
mu_model *mu_model_load(const char *path, const char *const *deltas, int n_deltas,
                        const mu_backend *be, char *err, size_t errlen);
/* A model with seeded N(0, std^2) weights (lib/rng.h: sub-stream per parameter index),
 * norm weights 1, biases N(0, std^2). For tests and benchmarks. */
mu_model *mu_model_init_random(const mu_config *cfg, uint64_t seed, float std,
                               const mu_backend *be, char *err, size_t errlen);
/* The same with a choice of weight storage (the *_as forms; the plain ones are f32), and
 * deltas[i] applied at strength scales[i] (mu_ckpt_add_delta_scaled; scales NULL: all 1). A
 * bf16 model rounds every GEMM/embedding weight to bf16 when it is stored. */
mu_model *mu_model_load_as(const char *path, const char *const *deltas, const float *scales, int n_deltas,
                           const mu_backend *be, mu_weights weights, char *err,
                           size_t errlen);
mu_model *mu_model_init_random_as(const mu_config *cfg, uint64_t seed, float std,
                                  const mu_backend *be, mu_weights weights, char *err,
                                  size_t errlen);
mu_weights mu_model_weights(const mu_model *m);
/* Bytes of parameter storage on the backend: f32 buffers, bf16 copies, gradients, packed
 * masters with their index arrays, and the packed parameters' gradient scratch. */
size_t mu_model_param_bytes(const mu_model *m);
/* On a device backend, info lines on stderr: parameter count and storage, and the
 * device's memory in use. Printed when stderr is a terminal (and not --quiet) or
 * MU_VERBOSE=1, so that captured stderr holds only errors; nothing on host-memory
 * backends. what: "model", "reference model", ... */
void mu_model_report_memory(const mu_model *m, const char *what);
void mu_model_free(mu_model *m);

const mu_config *mu_model_config(const mu_model *m);
const mu_backend *mu_model_backend(const mu_model *m);

int mu_model_n_params(const mu_model *m);
mu_param *mu_model_param(mu_model *m, int i);
/* The parameters' infos in index order [mu_model_n_params], for the mask functions; the
 * caller frees it */
mu_param_info *mu_model_param_infos(const mu_model *m);
int mu_model_find(const mu_model *m, const char *hf_name);          /* index or -1 */
/* Allocates (zeroed) / frees the gradient of parameter i (and, in a bf16 model, creates
 * the f32 master copy of a bf16 weight from its bf16 values). 0 ok, -1 out of memory. */
int mu_model_set_trainable(mu_model *m, int i, int on);
/* Makes only the elements of set (borrowed; set->numel must be the parameter's) of
 * parameter i trainable, PACKED: its gradient and f32 master hold those elements only,
 * [set->n] each (8 bytes per trained element, instead of 4 (f32) or 8 (bf16) per element
 * of the tensor). Backward computes the tensor's dW into one scratch buffer the model
 * shares between its packed parameters and adds the entries into the gradient;
 * mu_model_param_changed scatters the master into the weight (rounding it into a bf16
 * one). A dense set makes it plainly trainable. Train it with mu_optim_add_packed(o, name,
 * p->wp, p->g, set, &p->el) (the optimizer borrows the model's index arrays): the same
 * bits as the whole tensor with mu_optim_add and that set. mu_model_set_trainable(m, i,
 * on) unpacks it. 0 ok, -1 out of memory or bad set. */
int mu_model_set_trainable_elems(mu_model *m, int i, const mu_idxset *set);
/* A LoRA adapter (Hu et al. 2021) on a layer's projection weight W, out x in = M x K: the
 * layer then computes X W^T + scale (X A^T) B^T, W frozen, with A [r, K] and B [M, r] f32
 * backend buffers trained through their gradients gA, gB (zeroed by mu_model_zero_grad).
 * The weight mu_model_get_param reads is then the merged W + scale B A (in W's stored
 * layout), so deltas and exported models carry the adapter. */
typedef struct { int r, K, M; float scale; float *A, *B, *gA, *gB; } mu_lora;
/* Whether parameter i can carry an adapter: a 2-D weight of a layer, or an untied lm_head
 * (every one goes through the projections' GEMMs). */
int mu_model_lora_eligible(const mu_model *m, int i);
/* The in (K) and out (M) dimensions of 2-D weight i: [M, K] as stored, or [K, M] for a
 * Conv1D weight (GPT-2). */
void mu_model_matrix_dims(const mu_model *m, int i, int *in, int *out);
/* Adds an adapter of rank r to parameter i with A, B from host [r*K], [M*r] (PEFT's
 * initialization: A uniform in +-1/sqrt(K), B zero). 0 ok, -1 not eligible, already adapted,
 * r < 1 or out of memory. */
int mu_model_add_lora(mu_model *m, int i, int r, float scale, const float *A, const float *B);
const mu_lora *mu_model_lora(const mu_model *m, int i);             /* NULL: none */
/* Adapter i's factors in W's stored layout [rows, cols], so W + scale Bs As is the merged
 * weight: Bs [rows, r] = B and As [r, cols] = A, or A^T and B^T for a Conv1D weight
 * (stored [in, out]). What a delta's low-rank entry holds. 0 ok, -1 no adapter or memory. */
int mu_model_lora_factors(const mu_model *m, int i, float *Bs, float *As);
/* A soft prompt (Lester et al. 2021; as an attack on unlearning, Schwinn et al. 2024): n
 * vectors P [n, D] (f32 backend buffer) that stand in for the token embedding wherever an
 * input id is a soft-prompt slot: id -1 - j takes vector j (mu-tokenize --soft-tokens
 * writes ids -1 .. -n after the BOS). P replaces the token's embedding row before the
 * embedding scale and the learned positions are applied, as inputs_embeds does in
 * transformers. With a prompt set, mu_model_forward accepts ids in [-n, V). trainable:
 * backward accumulates d loss / d P into g (zeroed by mu_model_zero_grad), and a trained
 * token embedding gets no gradient from the slots. n = 0 removes the prompt. Host [n*D].
 * 0 ok, -1 out of memory. */
typedef struct { int n; float *P, *g; } mu_soft_prompt;
int mu_model_set_soft_prompt(mu_model *m, int n, const float *host, int trainable);
const mu_soft_prompt *mu_model_soft_prompt(const mu_model *m);   /* NULL: none */
/* Whether a negative input id is a slot of a soft prompt of nsoft vectors: 0, or -1 with
 * what is wrong in msg ("a soft-prompt slot, but no soft prompt is loaded ...", "a
 * soft-prompt slot past the soft prompt's N vectors"), for the caller's one-line error. */
int mu_soft_slot_check(int64_t id, int nsoft, char *msg, size_t len);
/* The token embedding rows of ids [n] (each in [0, V)), as stored (before any embedding
 * scale), into host [n * D]. 0 ok, -1 out of memory. */
int mu_model_embedding_rows(mu_model *m, const int32_t *ids, int n, float *host);
int mu_model_set_all_trainable(mu_model *m, int on);
void mu_model_zero_grad(mu_model *m);
/* Copies parameter i (or its gradient) to / from host f32 [numel]. A bf16 weight reads as
 * its widened bf16 values (or its f32 master when trainable) and is rounded when set.
 * 0, or -1 when host memory for the conversion runs out. */
int mu_model_get_param(mu_model *m, int i, float *host);
int mu_model_set_param(mu_model *m, int i, const float *host);
void mu_model_get_grad(mu_model *m, int i, float *host);            /* zeros if frozen */
/* Tells the model that the f32 values of trainable parameter i were changed in place in
 * its backend buffer (param->w, or param->wp when packed; an optimizer step): refreshes
 * the bf16 copy the GEMMs read when the model keeps bf16 weights, and scatters a packed
 * master into the weight. A no-op for whole f32 parameters. mu_model_set_param does this
 * itself. */
void mu_model_param_changed(mu_model *m, int i);

/* ---- forward / backward ---------------------------------------------------------------- */
/* Runs the model on a batch. Checks ids < vocab (ids < 0: soft-prompt slots, see above), 0 <= lens <= T, cache capacity.
 * 0 ok; -1 + err. opts NULL = inference, whole model, no hooks. */
int mu_model_forward(mu_model *m, const mu_batch *b, const mu_fwd_opts *opts,
                     char *err, size_t errlen);
/* Logits of the last forward, host-readable f32 owned by the model and valid until the
 * next forward: [B, T, V], or [B, V] with logits_last_only (rows of length 0: zeros), or
 * [n_logit_rows, V] with logit_rows. NULL when the forward stopped early (n_layers). */
const float *mu_model_logits(mu_model *m);
/* Rows of the last forward's logits: B*T, B (logits_last_only) or n_logit_rows; 0 when the
 * forward stopped early. The "per logit row" arrays below have this length. */
int mu_model_logit_rows(const mu_model *m);
/* logp[r] = log softmax(logits row r)[targets[r]] in double (the backend's target_logprob;
 * 0 where targets[r] < 0), for every logit row r of the last forward; targets, logp host
 * [mu_model_logit_rows]. Only N doubles leave a device. 0, or -1 + err (no logits). */
int mu_model_target_logprobs(mu_model *m, const int32_t *targets, double *logp, char *err,
                             size_t errlen);
/* Backpropagates d loss / d logits = dlogits + sum_r a[r] * d logp[r] / d logits through the
 * last whole-model train forward: the form of every objective that reads the logits only
 * through its targets' log-probabilities (CE, gradient ascent, -log(1-p), WGA, NPO, DPO ...):
 * the gradient is made on the backend (logp_grad) from a [R] (host double) and targets [R]
 * (host), R = mu_model_logit_rows. dlogits: host [R, V] for the terms that need whole rows
 * (KL, UNDIAL), or NULL. Otherwise as mu_model_backward. 0 ok, -1 + err. */
int mu_model_backward_logp(mu_model *m, const int32_t *targets, const double *a,
                           const float *dlogits, const mu_hook *hooks, int n_hooks, char *err,
                           size_t errlen);
/* Residual stream after the last layer run (before the final norm), host f32 [B, T, D]. */
const float *mu_model_hidden(mu_model *m);

/* Backpropagates through the last train forward. dlogits: host [B, T, V] (d loss / d
 * logits; zero at pad positions; [n_logit_rows, V] with logit_rows), or NULL when the forward stopped early (n_layers) or the
 * whole loss is injected by backward hooks. Gradients ACCUMULATE into param->g of
 * trainable parameters only (frozen weights get no dW GEMM). Backward hooks (backward=1
 * entries of hooks) receive d loss / d site and may add to it. The pass stops below the
 * lowest layer that still has a trainable parameter or a backward hook (the embedding
 * counts as below layer 0). 0 ok, -1 + err (no train forward before, ...). */
int mu_model_backward(mu_model *m, const float *dlogits, const mu_hook *hooks, int n_hooks,
                      char *err, size_t errlen);

/* The mean cross-entropy of the last whole-model train forward (targets host [R], R =
 * mu_model_logit_rows, -1 = none) backpropagated with its gradient computed and kept on the backend: the same as
 * mu_model_cross_entropy + mu_model_backward without the [B,T,V] round trip through host
 * memory (2 x 1 GB per step for a Llama-3 vocabulary at 2048 tokens). Returns the loss
 * (*count = targets counted, may be NULL), or NAN + err. */
double mu_model_backward_ce(mu_model *m, const int32_t *targets, const mu_hook *hooks,
                            int n_hooks, int *count, char *err, size_t errlen);

/* Mean cross-entropy over logit rows with targets[n] >= 0 (host [R], R =
 * mu_model_logit_rows) of the last forward's logits; if dlogits (host [R*V]) is non-NULL it receives
 * d mean / d logits. Returns the loss; *count = number of targets (mean is 0 if none). */
double mu_model_cross_entropy(mu_model *m, const int32_t *targets, float *dlogits,
                              int *count);

/* ---- KV cache and generation ----------------------------------------------------------- */
/* A cache of K and V for B rows of up to max_T tokens each. NULL on out of memory. */
mu_kvcache *mu_kvcache_new(mu_model *m, int B, int max_T);
void mu_kvcache_free(mu_kvcache *c);
const int32_t *mu_kvcache_lens(const mu_kvcache *c);  /* [B] tokens held per row */

/* Greedy decoding of one prompt (n_prompt >= 1) with a KV cache: appends up to n_new
 * argmax tokens to out (stops after eos when eos >= 0). Each step is O(context).
 * Returns the number of tokens written, or -1 + err. */
int mu_model_greedy(mu_model *m, const int32_t *prompt, int n_prompt, int n_new, int eos,
                    int32_t *out, char *err, size_t errlen);

#endif
