/* model.c — the decoder-only transformer (the Llama family's layout and its variants:
 * Gemma, OLMo-2, Qwen; GPT-NeoX's and GPT-2's LayerNorms, fused q/k/v, partial rotary or
 * learned positions, Conv1D weights, parallel residual and plain MLP as switches of the same
 * code), written once against the backend interface
 * (kernels.h): forward with hooks, explicit backward into trainable parameters only,
 * KV-cache decoding. API and conventions: model.h. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "model.h"
#include "ckpt.h"
#include "rng.h"
#include "tensor.h"
#include "cli.h"

/* Stages of a layer in forward order. Backward at stage s computes the gradient into
 * the stage's input only when something below it (a trainable parameter or a gradient
 * hook) still needs it: depth(L, s) = L * S_COUNT + s orders all of them. */
enum {
    S_RESID_PRE, S_ATTN_NORM, S_QKV, S_ATTN_HEAD, S_O, S_ATTN_OUT, S_RESID_MID,
    S_MLP_NORM, S_GATEUP, S_MLP_IN, S_MLP_POST, S_DOWN, S_MLP_OUT, S_RESID_POST, S_COUNT
};
#define DEPTH_EMBED (-1)

/* A layer's parameters by role (-1: absent). OLMo-2 has no attn_norm / mlp_norm but q_norm,
 * k_norm and the norms on the attention and MLP outputs (attn_post_norm, mlp_post_norm);
 * Gemma-2 and Gemma-3 have all four block norms (and Gemma-3 q_norm, k_norm per head). */
typedef struct { int attn_norm, q, k, v, qb, kb, vb, o, mlp_norm, gate, up, down, qn, kn, apn, mpn;
                 int anb, qkv, qkvb, ob, mnb, ub, db;   /* GPT-NeoX, GPT-2 (qkv: also Phi-3) */
                 int gu; } layer_params;                /* Phi-3's gate_up_proj */

/* What one layer keeps from a forward. x: layer input (resid_pre) [N,D]; q [N,H*hd]
 * (after rope), k, v [N,Hkv*hd] (after rope), o [N,H*hd] attention output, lse [B,H,T],
 * mid [N,D] resid_mid, rstd1/rstd2 [N] (of the input norms), g, u, a [N,F]; with qk_norm
 * qr [N,H*hd], kr [N,Hkv*hd] the projections before their norms and rq, rk [N] those
 * norms' rstd ([N*H], [N*Hkv] when per head); with post_norm ar, mr [N,D] the attention and MLP outputs before their
 * norms and ra, rm [N] those norms' rstd; with LayerNorms mean1, mean2 [N] the input norms'
 * means. A plain MLP (GPT-NeoX) has no g. In inference all layers share one set (x
 * alternates between two buffers). */
typedef struct {
    float *x, *q, *k, *v, *o, *lse, *mid, *rstd1, *rstd2, *g, *u, *a, *qr, *kr, *rq, *rk, *ar, *mr,
          *ra, *rm, *mean1, *mean2;
} layer_acts;

struct mu_kvcache {
    mu_model *m;
    int B, max_T;
    int32_t *len;            /* host [B] */
    float **k, **v;          /* per layer [B, max_T, Hkv*hd] */
};

struct mu_model {
    mu_config cfg;
    const mu_backend *be;
    mu_weights weights;               /* storage of the GEMM and embedding weights */
    int n_params;
    mu_param *p;
    layer_params *lp;
    int embed, final_norm, lm_head;   /* lm_head == embed when tied */
    int pos_embed;                    /* GPT-2's learned positions (wpe), or -1 */
    int final_bias;                   /* the final LayerNorm's bias, or -1 */
    int head_bias;                    /* lm_head's bias (Phi), or -1 */
    float *inv_freq;                  /* host [hd/2] */
    float *inv_freq_local;            /* host [hd/2]: the sliding layers' (rope_local_theta), or NULL */
    float *inv_freq_long;             /* host [hd/2]: longrope's long factors', or NULL */
    int rope_long;                    /* this batch reaches past rope_orig_max_pos: inv_freq_long */
    int D, H, Hkv, hd, F, V, NL, qd, kd;
    int gelu, gelu_tanh;              /* MLP activation: SwiGLU (0) or GeGLU (1, tanh or erf form) */
    float embed_mult;                 /* embeddings times this (Gemma: sqrt(d_model)), else 1 */
    int pre_norm;                     /* the blocks' input norms (all but OLMo-2) */
    int rd;                           /* rotating dims of a head: hd, or fewer (GPT-NeoX) */

    /* the last forward */
    int B, T, N, train, layers_run, full, last_only, have_train;
    int32_t *ids, *lens, *pos0, *pos, *klen;   /* host [N], [B], [B], [N], [B] */
    int sel, n_sel, cap_sel;          /* logits at selected rows only (logit_rows) */
    int32_t *lrows;                   /* host [n_sel]: flat positions b*T + t */
    int32_t *inv; int cap_inv;        /* host [N]: row of position p among them, or n_sel */
    float *dsel;                      /* backend [cap_N + 1, D]: d hf at the selected rows */

    /* workspace (backend buffers), reallocated when a batch needs more */
    int cap_N, cap_train;
    size_t cap_logits;
    void **ws; int n_ws, cap_ws;
    layer_acts *acts;                 /* [NL + 1]; acts[NL].x = output of the last layer */
    float *h, *hf, *rstdf, *meanf, *rows, *logits;
    float *qkv;                       /* fused q/k/v [N, qd + 2 kd], and their gradient in backward */
    float *gu;                        /* fused gate/up [N, 2F] (Phi-3), and their gradient */
    float *rot;                       /* partial rotary: the rotating dims [N * H, rd] */
    float *dpar;                      /* parallel residual: d resid_pre from the MLP's norm */
    float *dx, *dh, *dq, *dk, *dv, *d_o, *dg, *du, *da, *dbr, *dlog;
    float *dqr, *dkr;                 /* qk_norm: d of q, k before their norms */
    float *gscratch; int64_t gscratch_cap; /* backend: a packed parameter's whole dW */
    mu_lora *lora;                    /* [n_params]: adapters (A NULL: none), or NULL */
    int lora_rmax;                    /* the largest adapter rank */
    float *lora_ws;                   /* workspace [2, cap_N, lora_rmax]: X A^T and dY B */
    float *host;  size_t host_cap;    /* host scratch for hooks on device backends, mlp_in */
    float *logits_host; size_t logits_host_cap;
    float *hidden_host; size_t hidden_host_cap;
    mu_soft_prompt soft;              /* n = 0: none */
    int32_t *soft_runs;               /* host [n_soft_runs, 3] of the last batch: flat position,
                                         vector, length of each run of consecutive slots */
    int n_soft_runs, cap_soft_runs;
};

/* ---- small helpers ------------------------------------------------------------------- */
static size_t fsz(size_t n) { return n * sizeof(float); }
static float *W(const mu_model *m, int i) { return i < 0 ? NULL : m->p[i].w; }
/* Where backward accumulates the gradient of parameter i: its gradient buffer; for a
 * packed one the shared scratch, zeroed, which grad_done then adds into the packed
 * gradient; NULL when frozen. Every G(m, i) is followed by grad_done(m, i). */
static float *G(const mu_model *m, int i)
{
    if (i < 0 || !m->p[i].trainable) return NULL;
    if (!m->p[i].packed) return m->p[i].g;
    m->be->zero(m->gscratch, fsz((size_t)m->p[i].numel));
    return m->gscratch;
}

static void release_packed(mu_model *m, mu_param *p);

static void grad_done(const mu_model *m, int i)
{
    if (i >= 0 && m->p[i].trainable && m->p[i].packed)
        m->be->elems_gather_add(m->p[i].g, m->gscratch, &m->p[i].el);
}
static const mu_lora *adapter(const mu_model *m, int i)
{
    return i >= 0 && m->lora && m->lora[i].A ? &m->lora[i] : NULL;
}
/* Whether backward must reach weight i: it trains, or its adapter does. */
static int trainable(const mu_model *m, int i) { return i >= 0 && (m->p[i].trainable || adapter(m, i)); }

/* U = scale X A^T [N, r], an adapter's down projection, in the workspace's first half
 * (the forward makes it, the backward makes it again). */
static float *lora_down(const mu_model *m, const mu_lora *a, const float *X, int N)
{
    float *U = m->lora_ws;
    m->be->matmul(U, X, a->A, N, a->K, a->r, 0);
    m->be->scale(U, a->scale, (size_t)N * a->r);
    return U;
}

/* Y[N,M] (+)= X[N,K] . W[M,K]^T with weight i in its storage dtype (kernels.h); a Conv1D
 * weight (GPT-2) is stored [K, M] and read as such. */
static void linear(const mu_model *m, float *Y, const float *X, int i, int N, int K, int M,
                   int accumulate)
{
    const mu_param *p = &m->p[i];
    const mu_backend *be = m->be;
    if (p->w16) (p->conv1d ? be->matmul_wt_bf16 : be->matmul_bf16)(Y, X, p->w16, N, K, M, accumulate);
    else (p->conv1d ? be->matmul_wt : be->matmul)(Y, X, p->w, N, K, M, accumulate);
    const mu_lora *a = adapter(m, i);
    if (a) be->matmul(Y, lora_down(m, a, X, N), a->B, N, a->r, M, 1);   /* Y += U B^T */
}

/* The adapter's part of linear_bwd: V = scale dY B [N, r]; dX += V A; gA += V^T X;
 * U = scale X A^T (recomputed); gB += dY^T U. */
static void lora_bwd(const mu_model *m, const mu_lora *a, float *dX, const float *dY, const float *X, int N)
{
    const mu_backend *be = m->be;
    float *V = m->lora_ws + (size_t)m->cap_N * m->lora_rmax;
    be->matmul_wt(V, dY, a->B, N, a->M, a->r, 0);          /* B read as [in = M, out = r] */
    be->scale(V, a->scale, (size_t)N * a->r);
    if (dX) be->matmul_wt(dX, V, a->A, N, a->r, a->K, 1);   /* A read as [in = r, out = K] */
    be->matmul_bwd(NULL, a->gA, V, X, a->A, N, a->K, a->r, 0);
    be->matmul_bwd(NULL, a->gB, dY, lora_down(m, a, X, N), a->B, N, a->r, a->M, 0);
}

/* dX[N,K] (+)= dY[N,M] . W[M,K];  dW += dY^T X when weight i is trainable (Conv1D: their
 * transposes, W and dW [K, M]). */
static void linear_bwd(const mu_model *m, float *dX, int i, const float *dY, const float *X,
                       int N, int K, int M, int accumulate_dx)
{
    const mu_param *p = &m->p[i];
    const mu_backend *be = m->be;
    if (p->w16)
        (p->conv1d ? be->matmul_wt_bf16_bwd : be->matmul_bf16_bwd)(dX, G(m, i), dY, X, p->w16, N, K, M,
                                                                   accumulate_dx);
    else (p->conv1d ? be->matmul_wt_bwd : be->matmul_bwd)(dX, G(m, i), dY, X, p->w, N, K, M, accumulate_dx);
    grad_done(m, i);
    const mu_lora *a = adapter(m, i);
    if (a) lora_bwd(m, a, dX, dY, X, N);
}

/* Y[N,D] = the block norm of weight wi (and bias bi, -1: none) over X: RMSNorm, or a
 * LayerNorm (GPT-NeoX) that also saves its mean. mean, rstd may be NULL (recomputation). */
static void norm_fwd(const mu_model *m, int wi, int bi, float *Y, float *mean, float *rstd,
                     const float *X, int N)
{
    if (m->cfg.layer_norm)
        m->be->layernorm(Y, mean, rstd, X, W(m, wi), W(m, bi), N, m->D, m->cfg.rms_eps);
    else m->be->rmsnorm(Y, rstd, X, W(m, wi), N, m->D, m->cfg.rms_eps);
}

static void bias_bwd(const mu_model *m, int i, const float *dY, int N, int M);

/* Backward of the block norm of weight wi, bias bi over X[N,D] (mean, rstd saved by the
 * forward): dX += the input gradient from dh; dw, db accumulate when they train. */
static void norm_bwd(const mu_model *m, int wi, int bi, float *dX, const float *X,
                     const float *mean, const float *rstd, int N)
{
    if (m->cfg.layer_norm)
        m->be->layernorm_bwd(dX, G(m, wi), NULL, m->dh, X, W(m, wi), mean, rstd, N, m->D);
    else m->be->rmsnorm_bwd(dX, G(m, wi), m->dh, X, W(m, wi), rstd, N, m->D);
    grad_done(m, wi);
    bias_bwd(m, bi, m->dh, N, m->D);            /* a LayerNorm's db = sum_n dh */
}

/* Backward of a norm of weight i over X [rows, Wd] whose input feeds nothing else: a
 * block's output norm (post_norm; dX = m->dh; rows N) or a q or k norm (qk_norm; rows N, or
 * N * heads per head). dX is zeroed here (the backend accumulates into it); the weight's
 * gradient accumulates when it trains. */
static float *own_norm_bwd(const mu_model *m, int i, float *dX, const float *dY, const float *X,
                           const float *rstd, int rows, int Wd)
{
    m->be->zero(dX, fsz((size_t)rows * Wd));
    m->be->rmsnorm_bwd(dX, G(m, i), dY, X, W(m, i), rstd, rows, Wd);
    grad_done(m, i);
    return dX;
}

/* db[M] += sum_n dY[n, M] for bias i when it trains */
static void bias_bwd(const mu_model *m, int i, const float *dY, int N, int M)
{
    if (!trainable(m, i)) return;
    m->be->bias_add_bwd(G(m, i), dY, N, M);
    grad_done(m, i);
}

/* The q or k norm of a token normalizes this many groups of its `heads` heads: each head
 * alone (Gemma-3) or all of them together (OLMo-2). */
static int qk_heads(const mu_model *m, int heads)
{
    return m->cfg.qk_norm == MU_QK_NORM_PER_HEAD ? heads : 1;
}

/* The rotary frequencies of layer L: the sliding layers' own (Gemma-3), longrope's long ones
 * for a batch past the original length, or the model's. */
static const float *layer_inv_freq(const mu_model *m, int L)
{
    if (m->inv_freq_local && mu_config_layer_window(&m->cfg, L) > 0) return m->inv_freq_local;
    return m->rope_long ? m->inv_freq_long : m->inv_freq;
}

/* Y[N,D] = embedding rows of ids */
static void embed_rows(const mu_model *m, float *Y, const int32_t *ids, int N)
{
    const mu_param *p = &m->p[m->embed];
    if (p->w16) m->be->embed_bf16(Y, p->w16, ids, N, m->D);
    else m->be->embed(Y, p->w, ids, N, m->D);
}

const char *mu_site_name(mu_site s)
{
    static const char *names[MU_SITE_COUNT] = {
        "embed", "resid_pre", "attn_head", "attn_out", "resid_mid", "mlp_in", "mlp_post",
        "mlp_out", "resid_post", "logits" };
    return (unsigned)s < MU_SITE_COUNT ? names[s] : "?";
}

int mu_site_width(mu_site s, const mu_config *c)
{
    switch (s) {
    case MU_SITE_ATTN_HEAD: return c->n_head * c->head_dim;
    case MU_SITE_MLP_IN: return c->plain_mlp ? c->d_ff : 2 * c->d_ff;
    case MU_SITE_MLP_POST: return c->d_ff;
    case MU_SITE_LOGITS: return c->vocab;
    default: return c->d_model;
    }
}

int mu_site_is_layered(mu_site s) { return s != MU_SITE_EMBED && s != MU_SITE_LOGITS; }

static int site_stage(mu_site s)
{
    switch (s) {
    case MU_SITE_RESID_PRE: return S_RESID_PRE;
    case MU_SITE_ATTN_HEAD: return S_ATTN_HEAD;
    case MU_SITE_ATTN_OUT: return S_ATTN_OUT;
    case MU_SITE_RESID_MID: return S_RESID_MID;
    case MU_SITE_MLP_IN: return S_MLP_IN;
    case MU_SITE_MLP_POST: return S_MLP_POST;
    case MU_SITE_MLP_OUT: return S_MLP_OUT;
    default: return S_RESID_POST;
    }
}

/* ---- construction ---------------------------------------------------------------------- */
static int role_is(const mu_param_info *pi, const char *r) { return !strcmp(pi->role, r); }

/* Index fields of the model's parameters by role. */
static void map_roles(mu_model *m)
{
    memset(m->lp, 0xff, (size_t)m->NL * sizeof *m->lp);   /* every role -1: absent */
    m->embed = m->final_norm = m->lm_head = m->final_bias = m->pos_embed = m->head_bias = -1;
    for (int i = 0; i < m->n_params; i++) {
        const mu_param_info *pi = &m->p[i].info;
        layer_params *l = pi->layer >= 0 && pi->layer < m->NL ? &m->lp[pi->layer] : NULL;
        if (role_is(pi, "embed")) m->embed = i;
        else if (role_is(pi, "final_norm")) m->final_norm = i;
        else if (role_is(pi, "lm_head")) m->lm_head = i;
        else if (role_is(pi, "final_norm_bias")) m->final_bias = i;
        else if (role_is(pi, "pos_embed")) m->pos_embed = i;
        else if (role_is(pi, "lm_head_bias")) m->head_bias = i;
        else if (!l) continue;
        else if (role_is(pi, "attn_norm")) l->attn_norm = i;
        else if (role_is(pi, "q")) l->q = i;
        else if (role_is(pi, "k")) l->k = i;
        else if (role_is(pi, "v")) l->v = i;
        else if (role_is(pi, "q_bias")) l->qb = i;
        else if (role_is(pi, "k_bias")) l->kb = i;
        else if (role_is(pi, "v_bias")) l->vb = i;
        else if (role_is(pi, "o")) l->o = i;
        else if (role_is(pi, "mlp_norm")) l->mlp_norm = i;
        else if (role_is(pi, "gate")) l->gate = i;
        else if (role_is(pi, "up")) l->up = i;
        else if (role_is(pi, "down")) l->down = i;
        else if (role_is(pi, "q_norm")) l->qn = i;
        else if (role_is(pi, "k_norm")) l->kn = i;
        else if (role_is(pi, "attn_post_norm")) l->apn = i;
        else if (role_is(pi, "mlp_post_norm")) l->mpn = i;
        else if (role_is(pi, "attn_norm_bias")) l->anb = i;
        else if (role_is(pi, "qkv")) l->qkv = i;
        else if (role_is(pi, "qkv_bias")) l->qkvb = i;
        else if (role_is(pi, "o_bias")) l->ob = i;
        else if (role_is(pi, "mlp_norm_bias")) l->mnb = i;
        else if (role_is(pi, "up_bias")) l->ub = i;
        else if (role_is(pi, "down_bias")) l->db = i;
        else if (role_is(pi, "gate_up")) l->gu = i;
    }
    if (m->lm_head < 0) m->lm_head = m->embed;     /* tied */
    for (int L = 0; m->cfg.shared_norm && L < m->NL; L++) {   /* Phi: the MLP reads the attention's norm */
        m->lp[L].mlp_norm = m->lp[L].attn_norm;
        m->lp[L].mnb = m->lp[L].anb;
    }
}

static int check_roles(const mu_model *m, char *err, size_t errlen)
{
    if (m->embed < 0 || m->final_norm < 0 || m->lm_head < 0 || (m->cfg.layer_norm && m->final_bias < 0) ||
        (m->cfg.learned_pos && m->pos_embed < 0) || (m->cfg.head_bias && m->head_bias < 0)) {
        snprintf(err, errlen, "model: parameter list lacks embed/final_norm/lm_head");
        return -1;
    }
    for (int L = 0; L < m->NL; L++) {
        const layer_params *l = &m->lp[L];
        int pre = !m->pre_norm || (l->attn_norm >= 0 && l->mlp_norm >= 0);
        int post = !m->cfg.post_norm || (l->apn >= 0 && l->mpn >= 0);
        int qk = !m->cfg.qk_norm || (l->qn >= 0 && l->kn >= 0);
        int qkv = m->cfg.fused_qkv ? l->qkv >= 0 : l->q >= 0 && l->k >= 0 && l->v >= 0;
        int ln = !m->cfg.layer_norm || (l->anb >= 0 && l->mnb >= 0);
        int gate_up = l->gu >= 0 || ((l->gate >= 0 || m->cfg.plain_mlp) && l->up >= 0);
        if (!pre || !post || !qk || !qkv || !ln || l->o < 0 || !gate_up || l->down < 0) {
            snprintf(err, errlen, "model: layer %d: parameter list incomplete", L);
            return -1;
        }
    }
    return 0;
}

/* 1 when parameter p is kept in bf16: the GEMM weights and the embedding of a bf16
 * model (norm weights and biases stay f32). */
static int stored_bf16(const mu_model *m, const mu_param *p)
{
    static const char *const roles[] = { "embed", "q", "k", "v", "o", "gate", "up", "down",
                                         "lm_head", "qkv", "gate_up" };
    if (m->weights != MU_WEIGHTS_BF16) return 0;
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (!strcmp(p->info.role, roles[i])) return 1;
    return 0;
}

/* A model with its parameter buffers allocated (contents zero). */
static mu_model *model_new(const mu_config *cfg, const mu_backend *be, mu_weights weights,
                           char *err, size_t errlen)
{
    if (mu_config_validate(cfg, err, errlen)) return NULL;
    mu_param_info *info = NULL;
    int n = mu_arch_params(cfg, &info);
    if (n <= 0) {
        snprintf(err, errlen, "model: architecture '%s' not supported", cfg->arch);
        return NULL;
    }
    mu_model *m = calloc(1, sizeof *m);
    if (!m) { free(info); snprintf(err, errlen, "model: out of memory"); return NULL; }
    m->cfg = *cfg;
    m->be = be;
    m->weights = weights;
    m->gelu = mu_config_gelu(cfg, &m->gelu_tanh) == 1;
    m->embed_mult = cfg->embed_scale ? (float)sqrt((double)cfg->d_model) : 1.0f;
    m->pre_norm = !cfg->post_norm || cfg->sandwich_norm;
    m->rd = mu_config_rotary_dims(cfg);
    m->D = cfg->d_model; m->H = cfg->n_head; m->Hkv = cfg->n_kv_head; m->hd = cfg->head_dim;
    m->F = cfg->d_ff; m->V = cfg->vocab; m->NL = cfg->n_layer;
    m->qd = m->H * m->hd; m->kd = m->Hkv * m->hd;
    m->n_params = n;
    m->p = calloc(n, sizeof *m->p);
    m->lp = calloc(m->NL, sizeof *m->lp);
    m->inv_freq = malloc(fsz(m->hd / 2 + 1));
    if (!m->p || !m->lp || !m->inv_freq) goto oom;
    for (int i = 0; i < n; i++) {
        mu_param *p = &m->p[i];
        p->info = info[i];
        p->w = NULL;
        p->w16 = NULL;
        p->numel = p->info.ndim == 1 ? p->info.shape[0] : p->info.shape[0] * p->info.shape[1];
        p->conv1d = mu_arch_is_conv1d(&p->info, cfg);
        if (stored_bf16(m, p)) p->w16 = be->alloc((size_t)p->numel * sizeof(uint16_t));
        else p->w = be->alloc(fsz(p->numel));
        if (!p->w && !p->w16) goto oom;
    }
    free(info);
    info = NULL;
    map_roles(m);
    if (check_roles(m, err, errlen)) { mu_model_free(m); return NULL; }
    mu_rope_inv_freq(cfg, m->inv_freq);
    if (cfg->rope_local_theta > 0) {
        mu_config local = *cfg;
        local.rope_theta = cfg->rope_local_theta;
        local.rope_scaling[0] = 0;                  /* the local rope is never scaled */
        if (!(m->inv_freq_local = malloc(fsz(m->hd / 2 + 1)))) goto oom;
        mu_rope_inv_freq(&local, m->inv_freq_local);
    }
    if (!strcmp(cfg->rope_scaling, "longrope")) {
        if (!(m->inv_freq_long = malloc(fsz(m->hd / 2 + 1)))) goto oom;
        mu_rope_inv_freq_long(cfg, m->inv_freq_long);
    }
    return m;
oom:
    free(info);
    mu_model_free(m);
    snprintf(err, errlen, "model: out of memory for parameters");
    return NULL;
}

/* A packed parameter's master wp = host values of its trained elements. 0, or -1 (memory). */
static int store_packed(mu_model *m, mu_param *p, const float *host)
{
    float *vals = malloc(fsz((size_t)p->set.n + 1));
    if (!vals) return -1;
    FOR_SET_ENTRY(&p->set, j, flat, vals[j] = host[flat]);
    m->be->upload(p->wp, vals, fsz((size_t)p->set.n));
    free(vals);
    return 0;
}

/* host values of a packed parameter's trained elements = its master wp. 0, or -1 (memory). */
static int load_packed(mu_model *m, const mu_param *p, float *host)
{
    float *vals = malloc(fsz((size_t)p->set.n + 1));
    if (!vals) return -1;
    m->be->download(vals, p->wp, fsz((size_t)p->set.n));
    FOR_SET_ENTRY(&p->set, j, flat, host[flat] = vals[j]);
    free(vals);
    return 0;
}

/* Writes host f32 values into parameter p: the f32 buffer and/or the bf16 copy (rounded
 * on the host), and a packed master. 0, or -1 when a host buffer cannot be allocated. */
static int store_param(mu_model *m, mu_param *p, const float *host)
{
    if (p->w) m->be->upload(p->w, host, fsz(p->numel));
    if (p->packed && store_packed(m, p, host)) return -1;
    if (!p->w16) return 0;
    uint16_t *h = malloc((size_t)p->numel * sizeof *h);
    if (!h) return -1;
    for (int64_t j = 0; j < p->numel; j++) h[j] = mu_f32_to_bf16(host[j]);
    m->be->upload(p->w16, h, (size_t)p->numel * sizeof *h);
    free(h);
    return 0;
}

/* host f32 = parameter p: its f32 buffer, or the widened bf16 copy; a packed parameter's
 * trained elements from its master. 0, or -1 (memory). */
static int load_param(mu_model *m, const mu_param *p, float *host)
{
    if (p->w) {
        m->be->download(host, p->w, fsz(p->numel));
    } else {
        uint16_t *h = malloc((size_t)p->numel * sizeof *h);
        if (!h) return -1;
        m->be->download(h, p->w16, (size_t)p->numel * sizeof *h);
        for (int64_t j = 0; j < p->numel; j++) host[j] = mu_bf16_to_f32(h[j]);
        free(h);
    }
    return p->packed ? load_packed(m, p, host) : 0;
}

/* host[numel] = parameter p's initial values: 1 for norm weights, else N(0, std^2) from
 * the sub-stream (seed, i). */
static void random_values(const mu_param *p, uint64_t seed, uint64_t i, float std, float *host)
{
    int is_norm = mu_arch_is_norm(&p->info);
    mu_rng rng;
    mu_rng_seed2(&rng, seed, i);
    for (int64_t j = 0; j < p->numel; j++)
        host[j] = is_norm ? 1.0f : (float)(std * mu_rng_normal(&rng));
}

mu_model *mu_model_init_random(const mu_config *cfg, uint64_t seed, float std,
                               const mu_backend *be, char *err, size_t errlen)
{
    return mu_model_init_random_as(cfg, seed, std, be, MU_WEIGHTS_F32, err, errlen);
}

mu_model *mu_model_init_random_as(const mu_config *cfg, uint64_t seed, float std,
                                  const mu_backend *be, mu_weights weights, char *err,
                                  size_t errlen)
{
    mu_model *m = model_new(cfg, be, weights, err, errlen);
    if (!m) return NULL;
    int failed = 0;
    /* parameters in parallel (each has its own random stream, so the values do not depend
     * on the thread count); the backend is called by one thread at a time */
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < m->n_params; i++) {
        mu_param *p = &m->p[i];
        float *host = failed ? NULL : malloc(fsz(p->numel));
        if (host) random_values(p, seed, (uint64_t)i, std, host);
        #pragma omp critical(mu_model_init_store)
        {
            if (!host || store_param(m, p, host)) failed = 1;
        }
        free(host);
    }
    if (failed) { mu_model_free(m); snprintf(err, errlen, "model: out of memory"); return NULL; }
    return m;
}

mu_model *mu_model_load(const char *path, const char *const *deltas, int n_deltas,
                        const mu_backend *be, char *err, size_t errlen)
{
    return mu_model_load_as(path, deltas, NULL, n_deltas, be, MU_WEIGHTS_F32, err, errlen);
}

mu_model *mu_model_load_as(const char *path, const char *const *deltas, const float *scales, int n_deltas,
                           const mu_backend *be, mu_weights weights, char *err, size_t errlen)
{
    mu_ckpt *ck = mu_ckpt_open_with_deltas(path, deltas, scales, n_deltas, err, errlen);
    if (!ck) return NULL;
    mu_model *m = model_new(mu_ckpt_config(ck), be, weights, err, errlen);
    if (!m) { mu_ckpt_close(ck); return NULL; }
    for (int i = 0; i < m->n_params; i++) {
        mu_param *p = &m->p[i];
        int direct = be->host_memory && p->w;          /* read straight into the buffer */
        float *dst = direct ? p->w : malloc(fsz(p->numel));
        int rc = dst ? mu_ckpt_read_f32(ck, p->info.name, p->info.ndim, p->info.shape, dst,
                                        err, errlen) : -1;
        if (!dst) snprintf(err, errlen, "%s: out of memory", path);
        float off = mu_arch_stored_offset(&m->cfg, &p->info);
        if (!rc && off != 0)
            for (int64_t e = 0; e < p->numel; e++) dst[e] += off;
        if (!rc && !direct && store_param(m, p, dst)) {
            snprintf(err, errlen, "%s: out of memory", path);
            rc = -1;
        }
        if (!direct) free(dst);
        if (rc) { mu_model_free(m); mu_ckpt_close(ck); return NULL; }
    }
    mu_ckpt_close(ck);
    return m;
}

static void ws_free(mu_model *m)
{
    for (int i = 0; i < m->n_ws; i++) m->be->free(m->ws[i]);
    m->n_ws = 0;
    m->cap_N = 0;
    m->cap_train = 0;
    m->cap_logits = 0;
    m->logits = NULL;
    m->dlog = NULL;
    m->dsel = NULL;
    m->have_train = 0;
}

void mu_model_free(mu_model *m)
{
    if (!m) return;
    if (m->be) ws_free(m);
    free(m->ws);
    free(m->acts);
    for (int i = 0; m->p && i < m->n_params; i++) {
        release_packed(m, &m->p[i]);
        m->be->free(m->p[i].w);
        m->be->free(m->p[i].w16);
        m->be->free(m->p[i].g);
    }
    for (int i = 0; m->lora && i < m->n_params; i++) {
        mu_lora *a = &m->lora[i];
        m->be->free(a->A); m->be->free(a->B); m->be->free(a->gA); m->be->free(a->gB);
    }
    free(m->lora);
    m->be->free(m->soft.P);
    m->be->free(m->soft.g);
    free(m->soft_runs);
    if (m->be) m->be->free(m->gscratch);
    free(m->p); free(m->lp); free(m->inv_freq); free(m->inv_freq_local); free(m->inv_freq_long);
    free(m->ids); free(m->lens); free(m->pos0); free(m->pos); free(m->klen);
    free(m->host); free(m->logits_host); free(m->hidden_host); free(m->lrows); free(m->inv);
    free(m);
}

const mu_config *mu_model_config(const mu_model *m) { return &m->cfg; }
const mu_backend *mu_model_backend(const mu_model *m) { return m->be; }
int mu_model_n_params(const mu_model *m) { return m->n_params; }
mu_param *mu_model_param(mu_model *m, int i)
{
    return i >= 0 && i < m->n_params ? &m->p[i] : NULL;
}
mu_param_info *mu_model_param_infos(const mu_model *m)
{
    mu_param_info *info = mu_xmalloc((size_t)(m->n_params ? m->n_params : 1) * sizeof *info);
    for (int i = 0; i < m->n_params; i++) info[i] = m->p[i].info;
    return info;
}

int mu_model_find(const mu_model *m, const char *hf_name)
{
    for (int i = 0; i < m->n_params; i++)
        if (!strcmp(m->p[i].info.name, hf_name)) return i;
    return -1;
}

/* The f32 master copy of a bf16 weight that becomes trainable (exact: bf16 widens to
 * f32). It stays until the model is freed. 0, or -1 out of memory. */
static int add_master(mu_model *m, mu_param *p)
{
    float *host = malloc(fsz(p->numel));
    if (!host || load_param(m, p, host)) { free(host); return -1; }
    p->w = m->be->alloc(fsz(p->numel));
    if (p->w) m->be->upload(p->w, host, fsz(p->numel));
    free(host);
    return p->w ? 0 : -1;
}

/* Frees a packed parameter's gradient, master and index set: it is frozen after. */
static void release_packed(mu_model *m, mu_param *p)
{
    if (!p->packed) return;
    m->be->free(p->g);
    m->be->free(p->wp);
    mu_elems_release(m->be, &p->el, p->own_el);
    mu_idxset_free(&p->set);
    p->g = p->wp = NULL;
    p->packed = p->own_el = p->trainable = 0;
}

/* The shared dW scratch of packed parameters holds at least numel floats. 0, or -1. */
static int reserve_gscratch(mu_model *m, int64_t numel)
{
    if (m->gscratch_cap >= numel) return 0;
    float *g = m->be->alloc(fsz((size_t)numel));
    if (!g) return -1;
    m->be->free(m->gscratch);
    m->gscratch = g;
    m->gscratch_cap = numel;
    return 0;
}

int mu_model_set_trainable_elems(mu_model *m, int i, const mu_idxset *set)
{
    if (i < 0 || i >= m->n_params || set->numel != m->p[i].numel) return -1;
    if (set->dense || set->n == set->numel) return mu_model_set_trainable(m, i, 1);
    mu_param *p = &m->p[i];
    float *host = malloc(fsz((size_t)p->numel));
    if (!host || load_param(m, p, host)) { free(host); return -1; }   /* nothing changed */
    mu_model_set_trainable(m, i, 0);            /* drops a whole gradient or packed state */
    if (p->w && p->w16) { m->be->free(p->w); p->w = NULL; }  /* no whole master */
    mu_idxset_copy(&p->set, set);
    p->packed = 1;                              /* release_packed undoes what follows */
    p->g = m->be->alloc(fsz((size_t)set->n + 1));
    p->wp = m->be->alloc(fsz((size_t)set->n + 1));
    int rc = !p->g || !p->wp || mu_elems_of(m->be, &p->set, &p->el, &p->own_el) ||
             reserve_gscratch(m, p->numel) || store_packed(m, p, host) ? -1 : 0;
    if (rc) release_packed(m, p);
    free(host);
    p->trainable = rc == 0;
    return rc;
}

int mu_model_set_trainable(mu_model *m, int i, int on)
{
    if (i < 0 || i >= m->n_params) return -1;
    mu_param *p = &m->p[i];
    if (p->packed) {                  /* unpack: a whole master keeps the trained values */
        if (on && !p->w && add_master(m, p)) return -1;
        release_packed(m, p);
    }
    if (on && !p->w && add_master(m, p)) return -1;
    if (on && !p->g) {
        p->g = m->be->alloc(fsz(p->numel));
        if (!p->g) return -1;
    } else if (!on && p->g) {
        m->be->free(p->g);
        p->g = NULL;
    }
    p->trainable = on != 0;
    return 0;
}

int mu_model_set_all_trainable(mu_model *m, int on)
{
    for (int i = 0; i < m->n_params; i++)
        if (mu_model_set_trainable(m, i, on)) return -1;
    return 0;
}

/* Floats in parameter p's gradient buffer. */
static size_t grad_numel(const mu_param *p) { return (size_t)(p->packed ? p->set.n : p->numel); }

void mu_model_zero_grad(mu_model *m)
{
    for (int i = 0; i < m->n_params; i++) {
        if (m->p[i].g) m->be->zero(m->p[i].g, fsz(grad_numel(&m->p[i])));
        const mu_lora *a = adapter(m, i);
        if (a) {
            m->be->zero(a->gA, fsz((size_t)a->r * a->K));
            m->be->zero(a->gB, fsz((size_t)a->M * a->r));
        }
    }
    if (m->soft.g) m->be->zero(m->soft.g, fsz((size_t)m->soft.n * m->D));
}

int mu_model_lora_factors(const mu_model *m, int i, float *Bs, float *As)
{
    const mu_lora *a = adapter(m, i);
    if (!a) return -1;
    size_t na = (size_t)a->r * a->K, nb = (size_t)a->M * a->r;
    if (!m->p[i].conv1d) {
        m->be->download(Bs, a->B, fsz(nb));
        m->be->download(As, a->A, fsz(na));
        return 0;
    }
    float *A = malloc(fsz(na)), *B = malloc(fsz(nb));   /* W^T += scale A^T B^T */
    int rc = A && B ? 0 : -1;
    if (!rc) {
        m->be->download(A, a->A, fsz(na));
        m->be->download(B, a->B, fsz(nb));
        for (int j = 0; j < a->r; j++) {
            for (int k = 0; k < a->K; k++) Bs[(size_t)k * a->r + j] = A[(size_t)j * a->K + k];   /* [K, r] */
            for (int o = 0; o < a->M; o++) As[(size_t)j * a->M + o] = B[(size_t)o * a->r + j];   /* [r, M] */
        }
    }
    free(A);
    free(B);
    return rc;
}

/* host (W in its stored layout [rows, cols]) += scale Bs As, the adapter's factors. */
static int merge_lora(const mu_model *m, int i, const mu_lora *a, float *host)
{
    const int64_t *sh = m->p[i].info.shape;   /* [rows, cols]: As [r, cols], Bs [rows, r] */
    float *As = malloc(fsz((size_t)(a->r * sh[1]))), *Bs = malloc(fsz((size_t)(sh[0] * a->r)));
    int rc = As && Bs ? mu_model_lora_factors(m, i, Bs, As) : -1;
    if (!rc) mu_lowrank_add(host, (int)sh[0], (int)sh[1], a->r, a->scale, Bs, As);
    free(As);
    free(Bs);
    return rc;
}

int mu_model_get_param(mu_model *m, int i, float *host)
{
    if (load_param(m, &m->p[i], host)) return -1;
    const mu_lora *a = adapter(m, i);
    return a ? merge_lora(m, i, a, host) : 0;
}

int mu_model_lora_eligible(const mu_model *m, int i)
{
    /* a layer matrix, or an lm_head of its own (a tied one is the embedding, gathered) */
    return i >= 0 && i < m->n_params && m->p[i].info.ndim == 2 &&
           (m->p[i].info.layer >= 0 || (i == m->lm_head && i != m->embed));
}

const mu_lora *mu_model_lora(const mu_model *m, int i) { return adapter(m, i); }

void mu_model_matrix_dims(const mu_model *m, int i, int *in, int *out)
{
    const mu_param *p = &m->p[i];
    *in = (int)p->info.shape[p->conv1d ? 0 : 1];
    *out = (int)p->info.shape[p->conv1d ? 1 : 0];
}

/* A backend buffer holding host[n] (n > 0), or NULL. */
static float *upload_new(const mu_backend *be, const float *host, size_t n)
{
    float *d = be->alloc(fsz(n));
    if (d) be->upload(d, host, fsz(n));
    return d;
}

int mu_model_add_lora(mu_model *m, int i, int r, float scale, const float *A, const float *B)
{
    if (!mu_model_lora_eligible(m, i) || adapter(m, i) || r < 1) return -1;
    if (!m->lora && !(m->lora = calloc((size_t)m->n_params, sizeof *m->lora))) return -1;
    mu_lora a = { r, 0, 0, scale, NULL, NULL, NULL, NULL };
    mu_model_matrix_dims(m, i, &a.K, &a.M);
    size_t na = (size_t)r * a.K, nb = (size_t)a.M * r;
    a.A = upload_new(m->be, A, na);
    a.B = upload_new(m->be, B, nb);
    a.gA = m->be->alloc(fsz(na));
    a.gB = m->be->alloc(fsz(nb));
    if (!a.A || !a.B || !a.gA || !a.gB) {
        m->be->free(a.A); m->be->free(a.B); m->be->free(a.gA); m->be->free(a.gB);
        return -1;
    }
    m->be->zero(a.gA, fsz(na));
    m->be->zero(a.gB, fsz(nb));
    m->lora[i] = a;
    if (r > m->lora_rmax) {       /* the workspace is made again, with room for this rank */
        m->lora_rmax = r;
        ws_free(m);
    }
    return 0;
}

/* ---- soft prompt ------------------------------------------------------------------- */
int mu_model_set_soft_prompt(mu_model *m, int n, const float *host, int trainable)
{
    m->be->free(m->soft.P);
    m->be->free(m->soft.g);
    m->soft = (mu_soft_prompt){ 0, NULL, NULL };
    m->have_train = 0;
    if (n <= 0) return 0;
    size_t len = (size_t)n * m->D;
    float *P = upload_new(m->be, host, len), *g = trainable ? m->be->alloc(fsz(len)) : NULL;
    if (!P || (trainable && !g)) {
        m->be->free(P);
        m->be->free(g);
        return -1;
    }
    if (g) m->be->zero(g, fsz(len));
    m->soft = (mu_soft_prompt){ n, P, g };
    return 0;
}

const mu_soft_prompt *mu_model_soft_prompt(const mu_model *m) { return m->soft.n ? &m->soft : NULL; }

int mu_soft_slot_check(int64_t id, int nsoft, char *msg, size_t len)
{
    if (id >= 0 || id >= -(int64_t)nsoft) return 0;
    if (!nsoft)
        snprintf(msg, len, "a soft-prompt slot, but no soft prompt is loaded (--soft-prompt FILE, or mu-train "
                 "--soft-tokens N)");
    else
        snprintf(msg, len, "a soft-prompt slot past the soft prompt's %d vectors", nsoft);
    return -1;
}

int mu_model_embedding_rows(mu_model *m, const int32_t *ids, int n, float *host)
{
    float *Y = m->be->alloc(fsz((size_t)n * m->D));
    if (!Y) return -1;
    embed_rows(m, Y, ids, n);
    m->be->download(host, Y, fsz((size_t)n * m->D));
    m->be->free(Y);
    return 0;
}

/* The batch's soft-prompt slots (ids -1 - j) as runs of consecutive positions holding
 * consecutive vectors, in m->soft_runs; their ids become 0 for the token gather. */
static int find_soft_runs(mu_model *m)
{
    m->n_soft_runs = 0;
    for (int r = 0; r < m->B; r++) {
        for (int t = 0; t < m->T; t++) {
            int32_t *id = &m->ids[(size_t)r * m->T + t];
            if (*id >= 0) continue;
            int j = -1 - *id;
            int32_t *last = m->n_soft_runs ? &m->soft_runs[3 * (m->n_soft_runs - 1)] : NULL;
            *id = 0;
            if (last && t > 0 && last[0] + last[2] == r * m->T + t && last[1] + last[2] == j) {
                last[2]++;
                continue;
            }
            if (m->n_soft_runs == m->cap_soft_runs) {
                int cap = 2 * m->cap_soft_runs + 16;
                int32_t *nr = realloc(m->soft_runs, (size_t)cap * 3 * sizeof *nr);
                if (!nr) return -1;
                m->soft_runs = nr;
                m->cap_soft_runs = cap;
            }
            int32_t *run = &m->soft_runs[3 * m->n_soft_runs++];
            run[0] = r * m->T + t; run[1] = j; run[2] = 1;
        }
    }
    return 0;
}

/* X[N, D] (the token embeddings): each slot's row replaced by its soft-prompt vector. */
static void soft_forward(const mu_model *m, float *X)
{
    for (int k = 0; k < m->n_soft_runs; k++) {
        const int32_t *run = &m->soft_runs[3 * k];
        m->be->copy(X + (size_t)run[0] * m->D, m->soft.P + (size_t)run[1] * m->D, fsz((size_t)run[2] * m->D));
    }
}

/* soft.g[j] += dX at the slots holding vector j (when the prompt trains); then dX's slot
 * rows are zeroed, so a trained token embedding gets nothing from them. dX[N, D]: d loss /
 * d token embeddings. */
static void soft_backward(const mu_model *m, float *dX)
{
    for (int k = 0; k < m->n_soft_runs; k++) {
        const int32_t *run = &m->soft_runs[3 * k];
        float *d = dX + (size_t)run[0] * m->D;
        size_t n = (size_t)run[2] * m->D;
        if (m->soft.g) m->be->add(m->soft.g + (size_t)run[1] * m->D, d, n);
        m->be->zero(d, fsz(n));
    }
}

int mu_model_set_param(mu_model *m, int i, const float *host)
{
    return store_param(m, &m->p[i], host);
}

void mu_model_param_changed(mu_model *m, int i)
{
    mu_param *p = &m->p[i];
    if (p->packed) {
        if (p->w) m->be->elems_scatter(p->w, p->wp, &p->el);
        if (p->w16) m->be->elems_scatter_bf16(p->w16, p->wp, &p->el);
    } else if (p->w && p->w16) {
        m->be->to_bf16(p->w16, p->w, (size_t)p->numel);
    }
}

mu_weights mu_model_weights(const mu_model *m) { return m->weights; }

void mu_model_report_memory(const mu_model *m, const char *what)
{
    const char *v = getenv("MU_VERBOSE");
    if (m->be->host_memory || (!mu_progress_on && !(v && !strcmp(v, "1")))) return;
    int64_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->p[i].numel;
    mu_info("%s: %.1fM parameters, %.1f MiB on %s (%s weights)", what, n / 1e6,
            mu_model_param_bytes(m) / 1048576.0, m->be->name,
            m->weights == MU_WEIGHTS_BF16 ? "bf16" : "f32");
    if (m->be->mem_report) m->be->mem_report(what);
}

int mu_weights_parse(const char *s, mu_weights *out)
{
    if (!strcmp(s, "f32")) *out = MU_WEIGHTS_F32;
    else if (!strcmp(s, "bf16")) *out = MU_WEIGHTS_BF16;
    else return -1;
    return 0;
}

size_t mu_model_param_bytes(const mu_model *m)
{
    size_t b = 0;
    for (int i = 0; i < m->n_params; i++) {
        const mu_param *p = &m->p[i];
        b += (size_t)p->numel * ((p->w ? 4 : 0) + (p->w16 ? 2 : 0));
        if (p->g) b += fsz(grad_numel(p));
        if (p->packed) b += fsz((size_t)p->set.n) + (p->own_el ? mu_idxset_bytes(&p->set) : 0);
    }
    return b + fsz((size_t)m->gscratch_cap);
}

void mu_model_get_grad(mu_model *m, int i, float *host)
{
    const mu_param *p = &m->p[i];
    if (!p->g) {
        memset(host, 0, fsz(p->numel));
    } else if (!p->packed) {
        m->be->download(host, p->g, fsz(p->numel));
    } else {
        float *g = mu_xmalloc(fsz(grad_numel(p) + 1));
        m->be->download(g, p->g, fsz(grad_numel(p)));
        memset(host, 0, fsz(p->numel));
        FOR_SET_ENTRY(&p->set, j, flat, host[flat] = g[j]);
        free(g);
    }
}

/* ---- workspace ------------------------------------------------------------------------- */
static float *ws_alloc(mu_model *m, size_t n)
{
    if (m->n_ws == m->cap_ws) {
        int cap = m->cap_ws ? 2 * m->cap_ws : 64;
        void **w = realloc(m->ws, cap * sizeof *w);
        if (!w) return NULL;
        m->ws = w;
        m->cap_ws = cap;
    }
    float *p = m->be->alloc(fsz(n ? n : 1));
    if (p) m->ws[m->n_ws++] = p;
    return p;
}

/* Activation buffers for N token rows (train: one set per layer + backward scratch). */
static int ws_ensure(mu_model *m, int N, int train)
{
    if (N <= m->cap_N && train <= m->cap_train) return 0;
    ws_free(m);
    size_t n = (size_t)N;
    int D = m->D, F = m->F, qd = m->qd, kd = m->kd;
    free(m->acts);
    m->acts = calloc(m->NL + 1, sizeof *m->acts);
    if (!m->acts) return -1;
    int ok = 1;
#define A(ptr, cnt) do { if (!((ptr) = ws_alloc(m, (cnt)))) ok = 0; } while (0)
    int sets = train ? m->NL : 1;
    for (int s = 0; s < sets && ok; s++) {
        layer_acts *a = &m->acts[s];
        A(a->q, n * qd); A(a->k, n * kd); A(a->v, n * kd); A(a->o, n * qd);
        A(a->lse, n * m->H); A(a->mid, n * D); A(a->rstd1, n); A(a->rstd2, n);
        if (!m->cfg.plain_mlp) A(a->g, n * F);
        A(a->u, n * F); A(a->a, n * F);
        if (m->cfg.layer_norm) { A(a->mean1, n); A(a->mean2, n); }
        if (m->cfg.qk_norm) {
            A(a->qr, n * qd); A(a->kr, n * kd);
            A(a->rq, n * qk_heads(m, m->H)); A(a->rk, n * qk_heads(m, m->Hkv));
        }
        if (m->cfg.post_norm) { A(a->ar, n * D); A(a->mr, n * D); A(a->ra, n); A(a->rm, n); }
    }
    if (train) {
        for (int L = 0; L <= m->NL && ok; L++) A(m->acts[L].x, n * D);
        A(m->dx, n * D); A(m->dh, n * D); A(m->dq, n * qd); A(m->dk, n * kd);
        A(m->dv, n * kd); A(m->d_o, n * qd); A(m->du, n * F);
        A(m->da, n * F); A(m->dbr, n * D);
        if (!m->cfg.plain_mlp) A(m->dg, n * F);
        if (m->cfg.parallel_residual) A(m->dpar, n * D);
        if (m->cfg.qk_norm) { A(m->dqr, n * qd); A(m->dkr, n * kd); }
    } else {
        float *x0 = NULL, *x1 = NULL;       /* layers share acts[0]; x alternates */
        A(x0, n * D); A(x1, n * D);
        for (int L = 0; L <= m->NL; L++) m->acts[L].x = L % 2 ? x1 : x0;
    }
    A(m->h, n * D); A(m->hf, n * D); A(m->rstdf, n); A(m->rows, n * D);
    if (m->cfg.layer_norm) A(m->meanf, n);
    if (m->cfg.fused_qkv) A(m->qkv, n * (qd + 2 * kd));
    if (m->cfg.fused_gate_up) A(m->gu, n * 2 * m->F);
    if (m->rd < m->hd) A(m->rot, n * (m->H > m->Hkv ? m->H : m->Hkv) * m->rd);
    if (m->lora_rmax) A(m->lora_ws, 2 * n * m->lora_rmax);
#undef A
    if (!ok) { ws_free(m); return -1; }
    m->cap_N = N;
    m->cap_train = train;
    return 0;
}

static int ensure_logits(mu_model *m, size_t n)
{
    if (n <= m->cap_logits && m->logits) return 0;
    m->logits = ws_alloc(m, n);
    if (!m->logits) return -1;
    m->cap_logits = n;
    return 0;
}

static float *host_scratch(mu_model *m, size_t n)
{
    if (n > m->host_cap) {
        float *h = realloc(m->host, fsz(n));
        if (!h) return NULL;
        m->host = h;
        m->host_cap = n;
    }
    return m->host;
}

/* ---- hooks ----------------------------------------------------------------------------- */
static int hook_matches(const mu_hook *h, mu_site site, int layer, int backward)
{
    return h->fn && h->site == site && (h->backward != 0) == (backward != 0) &&
           (!mu_site_is_layered(site) || h->layer < 0 || h->layer == layer);
}

static int has_hook(const mu_hook *hooks, int n, mu_site site, int layer, int backward)
{
    for (int i = 0; i < n; i++)
        if (hook_matches(&hooks[i], site, layer, backward)) return 1;
    return 0;
}

/* Calls the matching hooks on host f32 act [rows, T, D]. */
static int call_hooks_host(mu_model *m, const mu_hook *hooks, int n, mu_site site, int layer,
                           int backward, float *act, int rows, int T, int D, char *err,
                           size_t errlen)
{
    mu_hook_info info = { site, mu_site_is_layered(site) ? layer : -1, backward, rows, T, D,
                          m->lens, m->pos0 };
    for (int i = 0; i < n; i++) {
        if (!hook_matches(&hooks[i], site, layer, backward)) continue;
        if (hooks[i].fn(&info, act, hooks[i].user)) {
            if (mu_site_is_layered(site))
                snprintf(err, errlen, "%s hook at %s:%d failed", backward ? "backward" : "forward",
                         mu_site_name(site), layer);
            else
                snprintf(err, errlen, "%s hook at %s failed", backward ? "backward" : "forward",
                         mu_site_name(site));
            return -1;
        }
    }
    return 0;
}

/* Runs the hooks of (site, layer) on backend buffer buf [rows, T, D]. */
static int run_hooks(mu_model *m, const mu_hook *hooks, int n, mu_site site, int layer,
                     int backward, float *buf, int rows, int T, int D, char *err, size_t errlen)
{
    if (!has_hook(hooks, n, site, layer, backward)) return 0;
    size_t cnt = (size_t)rows * T * D;
    if (m->be->host_memory)
        return call_hooks_host(m, hooks, n, site, layer, backward, buf, rows, T, D, err, errlen);
    float *h = host_scratch(m, cnt);
    if (!h) { snprintf(err, errlen, "model: out of memory for hook buffer"); return -1; }
    m->be->download(h, buf, fsz(cnt));
    if (call_hooks_host(m, hooks, n, site, layer, backward, h, rows, T, D, err, errlen)) return -1;
    m->be->upload(buf, h, fsz(cnt));
    return 0;
}

/* mlp_in: gate and up buffers [N,F] shown to hooks as one [N, 2F] = [gate | up] per token. */
static int run_hooks_mlp_in(mu_model *m, const mu_hook *hooks, int n, int layer, int backward,
                            float *g, float *u, char *err, size_t errlen)
{
    if (!has_hook(hooks, n, MU_SITE_MLP_IN, layer, backward)) return 0;
    size_t N = (size_t)m->N, F = (size_t)m->F;
    float *h = host_scratch(m, N * 2 * F);
    if (!h) { snprintf(err, errlen, "model: out of memory for hook buffer"); return -1; }
    for (size_t r = 0; r < N; r++) {
        m->be->download(h + r * 2 * F, g + r * F, fsz(F));
        m->be->download(h + r * 2 * F + F, u + r * F, fsz(F));
    }
    if (call_hooks_host(m, hooks, n, MU_SITE_MLP_IN, layer, backward, h, m->B, m->T,
                        (int)(2 * F), err, errlen))
        return -1;
    for (size_t r = 0; r < N; r++) {
        m->be->upload(g + r * F, h + r * 2 * F, fsz(F));
        m->be->upload(u + r * F, h + r * 2 * F + F, fsz(F));
    }
    return 0;
}

/* ---- forward --------------------------------------------------------------------------- */
/* Appends this batch's k, v rows to the cache of layer L; returns the attention shape that
 * reads keys from the cache. */
static void cache_append(mu_model *m, mu_kvcache *c, int L, const float *k, const float *v)
{
    size_t kd = (size_t)m->kd;
    for (int b = 0; b < m->B; b++) {
        size_t dst = ((size_t)b * c->max_T + m->pos0[b]) * kd, src = (size_t)b * m->T * kd;
        m->be->copy(c->k[L] + dst, k + src, fsz((size_t)m->lens[b] * kd));
        m->be->copy(c->v[L] + dst, v + src, fsz((size_t)m->lens[b] * kd));
    }
}

/* The attention of layer L over this batch (keys from the batch itself). */
static mu_attn_shape attn_shape(const mu_model *m, int L)
{
    mu_attn_shape s = { m->B, m->T, m->T, m->H, m->Hkv, m->hd, NULL, m->lens,
                        mu_config_attn_scale(&m->cfg), m->cfg.attn_softcap,
                        mu_config_layer_window(&m->cfg, L) };
    return s;
}

static void attention_forward(mu_model *m, int L, layer_acts *A, mu_kvcache *c)
{
    mu_attn_shape s = attn_shape(m, L);
    const float *K = A->k, *V = A->v;
    if (c) {
        cache_append(m, c, L, A->k, A->v);
        s.Tk = c->max_T;
        s.q_pos0 = m->pos0;
        s.k_len = m->klen;
        K = c->k[L];
        V = c->v[L];
    }
    m->be->attention(A->o, A->lse, A->q, K, V, &s);
}

/* Rotary embedding of layer L on X [N, heads, hd] in place (bwd: its transpose): every dim,
 * or only the first rd of each head (GPT-NeoX), copied out and back; the rotated dims times
 * longrope's attention factor (the scale is its own transpose); none with learned positions
 * (GPT-2). */
static void rope_heads(mu_model *m, int L, float *X, int heads, int bwd)
{
    const mu_backend *be = m->be;
    void (*rot)(float *, const int32_t *, const float *, int, int, int) = bwd ? be->rope_bwd : be->rope;
    int N = m->N, hd = m->hd, rd = m->rd;
    float s = m->inv_freq_long ? m->cfg.rope_attn : 1.0f;   /* longrope: the rotated dims scaled */
    if (m->cfg.learned_pos) return;               /* GPT-2: positions were added to the embeddings */
    if (rd == hd) {
        rot(X, m->pos, layer_inv_freq(m, L), N, heads, hd);
        if (s != 1.0f) be->scale(X, s, (size_t)N * heads * hd);
        return;
    }
    be->copy_rows(m->rot, rd, X, hd, N * heads, rd);
    rot(m->rot, m->pos, layer_inv_freq(m, L), N, heads, rd);
    if (s != 1.0f) be->scale(m->rot, s, (size_t)N * heads * rd);
    be->copy_rows(X, hd, m->rot, rd, N * heads, rd);
}

/* The fused projection split into q [N, H, hd], k, v [N, Hkv, hd] (join: dq, dk, dv back
 * into it, every element written): [N, H, 3, hd] (GPT-NeoX, rows of hd) or [N, qd + 2 kd]
 * (GPT-2 and Phi-3: the q block, then the k and the v blocks). */
static void qkv_split(const mu_model *m, float *qkv, float *q, float *k, float *v, int join)
{
    int blocks = m->cfg.fused_qkv == MU_QKV_BLOCKS;
    int rows = blocks ? m->N : m->N * m->H, ld = blocks ? m->qd + 2 * m->kd : 3 * m->hd;
    int w[3] = { blocks ? m->qd : m->hd, blocks ? m->kd : m->hd, blocks ? m->kd : m->hd };
    int at[3] = { 0, w[0], w[0] + w[1] };
    float *part[3] = { q, k, v };
    for (int j = 0; j < 3; j++) {
        if (join) m->be->copy_rows(qkv + at[j], ld, part[j], w[j], rows, w[j]);
        else m->be->copy_rows(part[j], w[j], qkv + at[j], ld, rows, w[j]);
    }
}

/* Phi-3's fused gate/up output [N, 2F] split into g, u [N, F] (join: dg, du back into it). */
static void gate_up_split(const mu_model *m, float *gu, float *g, float *u, int join)
{
    int F = m->F;
    if (join) {
        m->be->copy_rows(gu, 2 * F, g, F, m->N, F);
        m->be->copy_rows(gu + F, 2 * F, u, F, m->N, F);
    } else {
        m->be->copy_rows(g, F, gu, 2 * F, m->N, F);
        m->be->copy_rows(u, F, gu + F, 2 * F, m->N, F);
    }
}

/* q, k, v projections (+ biases) of the layer's input h (normed, or the residual stream
 * itself without input norms), from one fused tensor (GPT-NeoX, GPT-2) or three. */
static void qkv_project(mu_model *m, const layer_params *P, layer_acts *A, const float *h,
                        float *q, float *k)
{
    const mu_backend *be = m->be;
    int N = m->N, D = m->D;
    if (P->qkv >= 0) {
        int w = m->qd + 2 * m->kd;
        linear(m, m->qkv, h, P->qkv, N, D, w, 0);
        if (P->qkvb >= 0) be->bias_add(m->qkv, W(m, P->qkvb), N, w);
        qkv_split(m, m->qkv, q, k, A->v, 0);
        return;
    }
    linear(m, q, h, P->q, N, D, m->qd, 0);
    linear(m, k, h, P->k, N, D, m->kd, 0);
    linear(m, A->v, h, P->v, N, D, m->kd, 0);
    if (P->qb >= 0) be->bias_add(q, W(m, P->qb), N, m->qd);
    if (P->kb >= 0) be->bias_add(k, W(m, P->kb), N, m->kd);
    if (P->vb >= 0) be->bias_add(A->v, W(m, P->vb), N, m->kd);
}

/* q, k, v of the layer's input h, q and k normed (qk_norm), then rotated. */
static void qkv_forward(mu_model *m, int L, const layer_params *P, layer_acts *A, const float *h)
{
    const mu_backend *be = m->be;
    int N = m->N, qk = m->cfg.qk_norm;
    qkv_project(m, P, A, h, qk ? A->qr : A->q, qk ? A->kr : A->k);
    if (qk) {
        int hq = qk_heads(m, m->H), hk = qk_heads(m, m->Hkv);
        be->rmsnorm(A->q, A->rq, A->qr, W(m, P->qn), N * hq, m->qd / hq, m->cfg.rms_eps);
        be->rmsnorm(A->k, A->rk, A->kr, W(m, P->kn), N * hk, m->kd / hk, m->cfg.rms_eps);
    }
    rope_heads(m, L, A->q, m->H, 0);
    rope_heads(m, L, A->k, m->Hkv, 0);
}

/* The MLP's activation a [N,F] from the input h: act(gate h) * (up h), or GPT-NeoX's plain
 * act(up h + b); mlp_in hooks see the pre-activations. */
static int mlp_act_forward(mu_model *m, int L, const layer_params *P, layer_acts *A, const float *h,
                           const mu_fwd_opts *o, char *err, size_t errlen)
{
    const mu_backend *be = m->be;
    int N = m->N, D = m->D, F = m->F;
    if (P->gu < 0) linear(m, A->u, h, P->up, N, D, F, 0);
    if (m->cfg.plain_mlp) {
        if (P->ub >= 0) be->bias_add(A->u, W(m, P->ub), N, F);
        if (run_hooks(m, o->hooks, o->n_hooks, MU_SITE_MLP_IN, L, 0, A->u, m->B, m->T, F, err, errlen))
            return -1;
        be->gelu(A->a, A->u, (size_t)N * F, m->gelu_tanh);
        return 0;
    }
    if (P->gu >= 0) {                 /* Phi-3: gate_up_proj, split */
        linear(m, m->gu, h, P->gu, N, D, 2 * F, 0);
        gate_up_split(m, m->gu, A->g, A->u, 0);
    } else {
        linear(m, A->g, h, P->gate, N, D, F, 0);
    }
    if (run_hooks_mlp_in(m, o->hooks, o->n_hooks, L, 0, A->g, A->u, err, errlen)) return -1;
    if (m->gelu) be->geglu(A->a, A->g, A->u, (size_t)N * F, m->gelu_tanh);
    else be->swiglu(A->a, A->g, A->u, (size_t)N * F);
    return 0;
}

#define HOOK(site, buf, D) do { if (run_hooks(m, o->hooks, o->n_hooks, site, L, 0, buf, m->B, \
                                               m->T, D, err, errlen)) return -1; } while (0)

/* One decoder layer: acts[L].x -> acts[L+1].x. */
static int layer_forward(mu_model *m, int L, const mu_fwd_opts *o, char *err, size_t errlen)
{
    const mu_backend *be = m->be;
    const layer_params *P = &m->lp[L];
    layer_acts *A = &m->acts[m->train ? L : 0];
    float *x = m->acts[L].x, *out = m->acts[L + 1].x;
    int N = m->N, D = m->D, F = m->F;
    float eps = m->cfg.rms_eps;

    int pre = m->pre_norm, post = m->cfg.post_norm;
    HOOK(MU_SITE_RESID_PRE, x, D);
    if (pre) norm_fwd(m, P->attn_norm, P->anb, m->h, A->mean1, A->rstd1, x, N);
    qkv_forward(m, L, P, A, pre ? m->h : x);
    attention_forward(m, L, A, o->cache);
    HOOK(MU_SITE_ATTN_HEAD, A->o, m->qd);
    linear(m, post ? A->ar : A->mid, A->o, P->o, N, m->qd, D, 0);
    if (P->ob >= 0) be->bias_add(post ? A->ar : A->mid, W(m, P->ob), N, D);
    if (post) be->rmsnorm(A->mid, A->ra, A->ar, W(m, P->apn), N, D, eps);
    HOOK(MU_SITE_ATTN_OUT, A->mid, D);
    be->add(A->mid, x, (size_t)N * D);
    HOOK(MU_SITE_RESID_MID, A->mid, D);

    /* the MLP reads resid_mid, or with a parallel residual (GPT-NeoX) resid_pre */
    const float *mlp_x = m->cfg.parallel_residual ? x : A->mid;
    if (pre) norm_fwd(m, P->mlp_norm, P->mnb, m->h, A->mean2, A->rstd2, mlp_x, N);
    if (mlp_act_forward(m, L, P, A, pre ? m->h : mlp_x, o, err, errlen)) return -1;
    HOOK(MU_SITE_MLP_POST, A->a, F);
    linear(m, post ? A->mr : out, A->a, P->down, N, F, D, 0);
    if (P->db >= 0) be->bias_add(post ? A->mr : out, W(m, P->db), N, D);
    if (post) be->rmsnorm(out, A->rm, A->mr, W(m, P->mpn), N, D, eps);
    HOOK(MU_SITE_MLP_OUT, out, D);
    be->add(out, A->mid, (size_t)N * D);
    HOOK(MU_SITE_RESID_POST, out, D);
    return 0;
}

/* Y[rows, V] = lm_head's output X[rows, D] . W^T, with its bias (Phi) and soft-capped
 * (Gemma-2's final_logit_softcapping). */
static void logits_forward(const mu_model *m, float *Y, const float *X, int rows)
{
    linear(m, Y, X, m->lm_head, rows, m->D, m->V, 0);
    if (m->head_bias >= 0) m->be->bias_add(Y, W(m, m->head_bias), rows, m->V);
    if (m->cfg.final_softcap > 0 && rows > 0) m->be->softcap(Y, (size_t)rows * m->V, m->cfg.final_softcap);
}

/* Final norm and lm_head (soft-capped); with last_only only each row's last valid token. */
static int head_forward(mu_model *m, const mu_fwd_opts *o, char *err, size_t errlen)
{
    const mu_backend *be = m->be;
    int N = m->N, D = m->D, V = m->V, L = -1;
    norm_fwd(m, m->final_norm, m->final_bias, m->hf, m->meanf, m->rstdf, m->acts[m->NL].x, N);
    if (m->sel) {                     /* rows[n_sel, D] = hf[lrows]; kept for backward */
        if (m->n_sel > 0) {
            be->embed(m->rows, m->hf, m->lrows, m->n_sel, D);
            logits_forward(m, m->logits, m->rows, m->n_sel);
        }
        return 0;
    }
    if (!m->last_only) {
        logits_forward(m, m->logits, m->hf, N);
        HOOK(MU_SITE_LOGITS, m->logits, V);
        return 0;
    }
    be->zero(m->rows, fsz((size_t)m->B * D));
    for (int b = 0; b < m->B; b++)
        if (m->lens[b] > 0)
            be->copy(m->rows + (size_t)b * D, m->hf + ((size_t)b * m->T + m->lens[b] - 1) * D,
                     fsz(D));
    logits_forward(m, m->logits, m->rows, m->B);
    if (run_hooks(m, o->hooks, o->n_hooks, MU_SITE_LOGITS, -1, 0, m->logits, m->B, 1, V, err,
                  errlen))
        return -1;
    return 0;
}
#undef HOOK

/* logit_rows: strictly increasing flat positions at valid tokens; no logits hooks. */
static int check_logit_rows(const mu_batch *b, const mu_fwd_opts *o, char *err, size_t errlen)
{
    if (o->logits_last_only || o->n_logit_rows < 0 ||
        has_hook(o->hooks, o->n_hooks, MU_SITE_LOGITS, -1, 0)) {
        snprintf(err, errlen, "forward: logit_rows with %s", o->n_logit_rows < 0 ?
                 "a negative count" : o->logits_last_only ? "logits_last_only" : "a logits hook");
        return -1;
    }
    for (int i = 0; i < o->n_logit_rows; i++) {
        int32_t r = o->logit_rows[i];
        int row = r >= 0 ? r / b->T : -1, t = r >= 0 ? r % b->T : -1;
        if (r < 0 || row >= b->B || t >= (b->lens ? b->lens[row] : b->T) ||
            (i > 0 && r <= o->logit_rows[i - 1])) {
            snprintf(err, errlen, "forward: logit row %d (position %d) is not an increasing "
                     "valid position of the %d x %d batch", i, (int)r, b->B, b->T);
            return -1;
        }
    }
    return 0;
}

static int check_batch(const mu_model *m, const mu_batch *b, const mu_fwd_opts *o, char *err,
                       size_t errlen)
{
    if (!b || b->B <= 0 || b->T <= 0 || !b->ids) {
        snprintf(err, errlen, "forward: empty batch");
        return -1;
    }
    if ((int64_t)b->B * b->T > INT_MAX / 4) {
        snprintf(err, errlen, "forward: batch too large (%d x %d)", b->B, b->T);
        return -1;
    }
    for (int r = 0; r < b->B; r++) {
        int len = b->lens ? b->lens[r] : b->T;
        if (len < 0 || len > b->T) {
            snprintf(err, errlen, "forward: row %d: length %d outside [0, %d]", r, len, b->T);
            return -1;
        }
        for (int t = 0; t < b->T; t++) {
            int32_t id = b->ids[(size_t)r * b->T + t];
            char what[160];
            if (mu_soft_slot_check(id, m->soft.n, what, sizeof what)) {
                snprintf(err, errlen, "forward: row %d position %d: token id %d is %s", r, t, id, what);
                return -1;
            }
            if (id >= m->V) {
                snprintf(err, errlen, "forward: row %d position %d: token id %d outside vocab [0, %d)",
                         r, t, id, m->V);
                return -1;
            }
        }
        int p0 = o->cache ? o->cache->len[r] : 0;
        if (m->cfg.learned_pos && p0 + len > m->cfg.max_pos) {
            snprintf(err, errlen, "forward: row %d: positions up to %d, but the model has %d (n_positions)",
                     r, p0 + len - 1, m->cfg.max_pos);
            return -1;
        }
        if (o->cache && o->cache->len[r] + len > o->cache->max_T) {
            snprintf(err, errlen, "forward: row %d: KV cache full (%d + %d > %d tokens)", r,
                     o->cache->len[r], len, o->cache->max_T);
            return -1;
        }
    }
    if (o->n_layers < 0 || o->n_layers > m->NL) {
        snprintf(err, errlen, "forward: n_layers %d outside [0, %d]", o->n_layers, m->NL);
        return -1;
    }
    if (o->cache && (o->train || o->cache->B != b->B || o->cache->m != m)) {
        snprintf(err, errlen, o->train ? "forward: a KV cache cannot be used for training"
                                       : "forward: KV cache made for another model or batch size");
        return -1;
    }
    if (o->train && o->logits_last_only) {
        snprintf(err, errlen, "forward: training needs logits at every position");
        return -1;
    }
    return o->logit_rows ? check_logit_rows(b, o, err, errlen) : 0;
}

/* Copies the batch's host arrays and derives positions. */
static int set_batch(mu_model *m, const mu_batch *b, const mu_fwd_opts *o)
{
    int N = b->B * b->T;
    if (m->N < N || m->B < b->B || !m->ids) {
        free(m->ids); free(m->pos); free(m->lens); free(m->pos0); free(m->klen);
        m->ids = malloc(N * sizeof *m->ids);
        m->pos = malloc(N * sizeof *m->pos);
        m->lens = malloc(b->B * sizeof *m->lens);
        m->pos0 = malloc(b->B * sizeof *m->pos0);
        m->klen = malloc(b->B * sizeof *m->klen);
        if (!m->ids || !m->pos || !m->lens || !m->pos0 || !m->klen) return -1;
    }
    m->B = b->B; m->T = b->T; m->N = N;
    memcpy(m->ids, b->ids, N * sizeof *m->ids);
    if (find_soft_runs(m)) return -1;
    for (int r = 0; r < b->B; r++) {
        m->lens[r] = b->lens ? b->lens[r] : b->T;
        m->pos0[r] = o->cache ? o->cache->len[r] : 0;
        m->klen[r] = m->pos0[r] + m->lens[r];
        for (int t = 0; t < b->T; t++) m->pos[(size_t)r * b->T + t] = m->pos0[r] + t;
    }
    int reach = 0;                    /* the batch's last position + 1, as transformers' longrope */
    for (int r = 0; r < b->B; r++) if (m->pos0[r] + b->T > reach) reach = m->pos0[r] + b->T;
    m->rope_long = m->inv_freq_long && reach > m->cfg.rope_orig_max_pos;
    return 0;
}

/* Copies the logit row selection (m->sel = 0 without one). */
static int set_logit_rows(mu_model *m, const mu_fwd_opts *o)
{
    m->sel = o->logit_rows != NULL;
    m->n_sel = m->sel ? o->n_logit_rows : 0;
    if (m->n_sel > m->cap_sel) {
        int32_t *r = realloc(m->lrows, (size_t)m->n_sel * sizeof *r);
        if (!r) return -1;
        m->lrows = r;
        m->cap_sel = m->n_sel;
    }
    if (m->n_sel) memcpy(m->lrows, o->logit_rows, (size_t)m->n_sel * sizeof *m->lrows);
    return 0;
}

int mu_model_logit_rows(const mu_model *m)
{
    if (!m->full) return 0;
    return m->sel ? m->n_sel : m->last_only ? m->B : m->N;
}

int mu_model_forward(mu_model *m, const mu_batch *b, const mu_fwd_opts *opts, char *err,
                     size_t errlen)
{
    static const mu_fwd_opts defaults = { 0 };
    const mu_fwd_opts *o = opts ? opts : &defaults;
    m->have_train = 0;
    if (check_batch(m, b, o, err, errlen)) return -1;
    int last = (o->n_layers ? o->n_layers : m->NL) - 1;
    m->train = o->train != 0;
    m->full = o->n_layers == 0 || o->n_layers == m->NL;
    m->last_only = o->logits_last_only != 0;
    if (set_batch(m, b, o) || set_logit_rows(m, o) || ws_ensure(m, m->N, m->train) ||
        (m->full && ensure_logits(m, (size_t)mu_model_logit_rows(m) * m->V))) {
        snprintf(err, errlen, "forward: out of memory for a %d x %d batch", b->B, b->T);
        return -1;
    }
    embed_rows(m, m->acts[0].x, m->ids, m->N);
    soft_forward(m, m->acts[0].x);
    if (m->embed_mult != 1.0f) m->be->scale(m->acts[0].x, m->embed_mult, (size_t)m->N * m->D);
    if (m->pos_embed >= 0) {          /* GPT-2: + the learned position embeddings */
        m->be->embed(m->h, W(m, m->pos_embed), m->pos, m->N, m->D);
        m->be->add(m->acts[0].x, m->h, (size_t)m->N * m->D);
    }
    if (run_hooks(m, o->hooks, o->n_hooks, MU_SITE_EMBED, -1, 0, m->acts[0].x, m->B, m->T,
                  m->D, err, errlen))
        return -1;
    for (int L = 0; L <= last; L++)
        if (layer_forward(m, L, o, err, errlen)) return -1;
    m->layers_run = last + 1;
    if (o->cache)
        for (int r = 0; r < m->B; r++) o->cache->len[r] = m->klen[r];
    if (m->full && head_forward(m, o, err, errlen)) return -1;
    m->have_train = m->train;
    return 0;
}

const float *mu_model_logits(mu_model *m)
{
    if (!m->full || !m->logits) return NULL;
    size_t n = (size_t)mu_model_logit_rows(m) * m->V;
    if (m->be->host_memory) return m->logits;
    if (n > m->logits_host_cap || !m->logits_host) {
        float *h = realloc(m->logits_host, fsz(n ? n : 1));
        if (!h) return NULL;
        m->logits_host = h;
        m->logits_host_cap = n;
    }
    m->be->download(m->logits_host, m->logits, fsz(n));
    return m->logits_host;
}

const float *mu_model_hidden(mu_model *m)
{
    if (!m->acts || m->layers_run <= 0) return NULL;
    const float *x = m->acts[m->layers_run].x;
    if (m->be->host_memory) return x;
    size_t n = (size_t)m->N * m->D;
    if (n > m->hidden_host_cap) {
        float *h = realloc(m->hidden_host, fsz(n));
        if (!h) return NULL;
        m->hidden_host = h;
        m->hidden_host_cap = n;
    }
    m->be->download(m->hidden_host, x, fsz(n));
    return m->hidden_host;
}

/* ---- backward -------------------------------------------------------------------------- */
static int depth(int L, int stage) { return L * S_COUNT + stage; }

static int param_stage(const char *role)
{
    static const struct { const char *role; int stage; } t[] = {
        { "attn_norm", S_ATTN_NORM }, { "q", S_QKV }, { "k", S_QKV }, { "v", S_QKV },
        { "q_bias", S_QKV }, { "k_bias", S_QKV }, { "v_bias", S_QKV }, { "o", S_O },
        { "mlp_norm", S_MLP_NORM }, { "gate", S_GATEUP }, { "up", S_GATEUP },
        { "down", S_DOWN }, { "q_norm", S_QKV }, { "k_norm", S_QKV }, { "attn_post_norm", S_O },
        { "mlp_post_norm", S_DOWN }, { "attn_norm_bias", S_ATTN_NORM }, { "qkv", S_QKV },
        { "qkv_bias", S_QKV }, { "o_bias", S_O }, { "mlp_norm_bias", S_MLP_NORM },
        { "up_bias", S_GATEUP }, { "down_bias", S_DOWN }, { "gate_up", S_GATEUP } };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (!strcmp(role, t[i].role)) return t[i].stage;
    return -1;
}

/* The lowest depth that needs a gradient (INT_MAX: none). The head sits above all
 * layers: final_norm at top, lm_head at top + 1, the logits hook at top + 2. */
static int lowest_needed(const mu_model *m, const mu_hook *hooks, int n, int top)
{
    int low = INT_MAX;
    for (int i = 0; i < m->n_params; i++) {
        if (!trainable(m, i)) continue;
        int d;
        if (i == m->embed || i == m->pos_embed) d = DEPTH_EMBED;
        else if (i == m->final_norm || i == m->final_bias) d = top;
        else if (i == m->lm_head || i == m->head_bias) d = top + 1;
        else d = m->p[i].info.layer < m->layers_run ?
                 depth(m->p[i].info.layer, param_stage(m->p[i].info.role)) : INT_MAX;
        if (d < low) low = d;
    }
    if (m->soft.g) low = DEPTH_EMBED;
    for (int i = 0; i < n; i++) {
        if (!hooks[i].backward || !hooks[i].fn) continue;
        int d;
        if (hooks[i].site == MU_SITE_EMBED) d = DEPTH_EMBED;
        else if (hooks[i].site == MU_SITE_LOGITS) d = top + 2;
        else if (hooks[i].layer >= m->layers_run) continue;
        else d = depth(hooks[i].layer < 0 ? 0 : hooks[i].layer, site_stage(hooks[i].site));
        if (d < low) low = d;
    }
    return low;
}

#define BHOOK(site, buf, D) do { if (run_hooks(m, hooks, nh, site, L, 1, buf, m->B, m->T, D, \
                                                err, errlen)) return -1; } while (0)
#define BELOW(stage) (low < depth(L, stage))

/* The gradient entering a branch (attn_out / mlp_out): dx itself, or a copy when a hook
 * may change the branch's gradient without touching the residual path. */
static float *branch_grad(mu_model *m, const mu_hook *hooks, int nh, mu_site site, int L,
                          float *dx)
{
    if (!has_hook(hooks, nh, site, L, 1)) return dx;
    m->be->copy(m->dbr, dx, fsz((size_t)m->N * m->D));
    return m->dbr;
}

/* The MLP activation's backward: du (and dg) from da, then the mlp_in hooks on them. */
static int mlp_act_backward(mu_model *m, int L, layer_acts *A, const mu_hook *hooks, int nh, char *err,
                            size_t errlen)
{
    const mu_backend *be = m->be;
    size_t n = (size_t)m->N * m->F;
    if (m->cfg.plain_mlp) {
        be->gelu_bwd(m->du, m->da, A->u, n, m->gelu_tanh);
        return run_hooks(m, hooks, nh, MU_SITE_MLP_IN, L, 1, m->du, m->B, m->T, m->F, err, errlen);
    }
    if (m->gelu) be->geglu_bwd(m->dg, m->du, m->da, A->g, A->u, n, m->gelu_tanh);
    else be->swiglu_bwd(m->dg, m->du, m->da, A->g, A->u, n);
    return run_hooks_mlp_in(m, hooks, nh, L, 1, m->dg, m->du, err, errlen);
}

/* MLP half of layer L backward: dx = d resid_post on entry, d resid_mid on exit (with a
 * parallel residual, dpar = the MLP's part of d resid_pre, when something below needs it).
 * Returns 1 when nothing below needs a gradient (stop), 0 to continue, -1 on error. */
static int mlp_backward(mu_model *m, int L, int low, const mu_hook *hooks, int nh, char *err,
                        size_t errlen)
{
    const mu_backend *be = m->be;
    const layer_params *P = &m->lp[L];
    layer_acts *A = &m->acts[L];
    int N = m->N, D = m->D, F = m->F;
    float *dout = branch_grad(m, hooks, nh, MU_SITE_MLP_OUT, L, m->dx);
    BHOOK(MU_SITE_MLP_OUT, dout, D);
    if (!BELOW(S_MLP_OUT)) return 1;
    int pre = m->pre_norm, post = m->cfg.post_norm;
    if (post) dout = own_norm_bwd(m, P->mpn, m->dh, dout, A->mr, A->rm, N, D);   /* d of the MLP's output */
    /* down: out[N,D] = a[N,F] Wd[D,F]^T (+ b) */
    linear_bwd(m, BELOW(S_DOWN) ? m->da : NULL, P->down, dout, A->a, N, F, D, 0);
    bias_bwd(m, P->db, dout, N, D);
    if (!BELOW(S_DOWN)) return 1;
    BHOOK(MU_SITE_MLP_POST, m->da, F);
    if (!BELOW(S_MLP_POST)) return 1;
    if (mlp_act_backward(m, L, A, hooks, nh, err, errlen)) return -1;
    if (!BELOW(S_MLP_IN)) return 1;
    bias_bwd(m, P->ub, m->du, N, F);
    /* gate/up: [N,F] = h2[N,D] W[F,D]^T, h2 = norm(mlp_x) recomputed (no input norm: mlp_x),
     * mlp_x = resid_mid, or resid_pre with a parallel residual */
    const float *mlp_x = m->cfg.parallel_residual ? A->x : A->mid;
    if (pre && (trainable(m, P->gate) || trainable(m, P->up) || trainable(m, P->gu)))
        norm_fwd(m, P->mlp_norm, P->mnb, m->h, NULL, NULL, mlp_x, N);
    const float *hm = pre ? m->h : mlp_x;
    int need_dh = BELOW(S_GATEUP);
    if (P->gu >= 0) {                 /* Phi-3: dg, du joined for gate_up_proj */
        gate_up_split(m, m->gu, m->dg, m->du, 1);
        linear_bwd(m, need_dh ? m->dh : NULL, P->gu, m->gu, hm, N, D, 2 * F, 0);
    } else {
        if (P->gate >= 0) linear_bwd(m, need_dh ? m->dh : NULL, P->gate, m->dg, hm, N, D, F, 0);
        linear_bwd(m, need_dh ? m->dh : NULL, P->up, m->du, hm, N, D, F, P->gate >= 0);
    }
    if (!need_dh) return 1;
    /* the norm's input gradient: into d resid_mid, or (parallel) kept for resid_pre */
    float *dmx = m->cfg.parallel_residual ? m->dpar : m->dx;
    if (m->cfg.parallel_residual) be->zero(dmx, fsz((size_t)N * D));
    if (pre) norm_bwd(m, P->mlp_norm, P->mnb, dmx, mlp_x, A->mean2, A->rstd2, N);
    else be->add(dmx, m->dh, (size_t)N * D);
    if (!BELOW(S_MLP_NORM)) return 1;
    BHOOK(MU_SITE_RESID_MID, m->dx, D);
    return BELOW(S_RESID_MID) ? 0 : 1;
}

/* The q, k, v projections' backward from dq, dk (dv in m->dv) into their weights and biases
 * and, dh non-NULL, dh = d of their input hin: three tensors, or the fused one (joined). */
static void qkv_backward(mu_model *m, const layer_params *P, float *dh, float *dq, float *dk,
                         const float *hin)
{
    int N = m->N, D = m->D, qd = m->qd, kd = m->kd;
    if (P->qkv >= 0) {
        qkv_split(m, m->qkv, dq, dk, m->dv, 1);
        bias_bwd(m, P->qkvb, m->qkv, N, qd + 2 * kd);
        linear_bwd(m, dh, P->qkv, m->qkv, hin, N, D, qd + 2 * kd, 0);
        return;
    }
    bias_bwd(m, P->qb, dq, N, qd);
    bias_bwd(m, P->kb, dk, N, kd);
    bias_bwd(m, P->vb, m->dv, N, kd);
    linear_bwd(m, dh, P->q, dq, hin, N, D, qd, 0);
    linear_bwd(m, dh, P->k, dk, hin, N, D, kd, 1);
    linear_bwd(m, dh, P->v, m->dv, hin, N, D, kd, 1);
}

/* Attention half of layer L backward: dx = d resid_mid on entry, d resid_pre on exit. */
static int attn_backward(mu_model *m, int L, int low, const mu_hook *hooks, int nh, char *err,
                         size_t errlen)
{
    const mu_backend *be = m->be;
    const layer_params *P = &m->lp[L];
    layer_acts *A = &m->acts[L];
    int N = m->N, D = m->D, qd = m->qd, kd = m->kd;
    float *dattn = branch_grad(m, hooks, nh, MU_SITE_ATTN_OUT, L, m->dx);
    BHOOK(MU_SITE_ATTN_OUT, dattn, D);
    if (!BELOW(S_ATTN_OUT)) return 1;
    int pre = m->pre_norm, post = m->cfg.post_norm;
    if (post) dattn = own_norm_bwd(m, P->apn, m->dh, dattn, A->ar, A->ra, N, D);   /* d of o_proj's output */
    linear_bwd(m, BELOW(S_O) ? m->d_o : NULL, P->o, dattn, A->o, N, qd, D, 0);
    bias_bwd(m, P->ob, dattn, N, D);
    if (!BELOW(S_O)) return 1;
    BHOOK(MU_SITE_ATTN_HEAD, m->d_o, qd);
    if (!BELOW(S_ATTN_HEAD)) return 1;
    mu_attn_shape s = attn_shape(m, L);
    be->attention_bwd(m->dq, m->dk, m->dv, m->d_o, A->o, A->lse, A->q, A->k, A->v, &s);
    rope_heads(m, L, m->dq, m->H, 1);
    rope_heads(m, L, m->dk, m->Hkv, 1);
    float *dq = m->dq, *dk = m->dk;
    if (m->cfg.qk_norm) {            /* through the q and k norms to the projections */
        int hq = qk_heads(m, m->H), hk = qk_heads(m, m->Hkv);
        dq = own_norm_bwd(m, P->qn, m->dqr, m->dq, A->qr, A->rq, N * hq, qd / hq);
        dk = own_norm_bwd(m, P->kn, m->dkr, m->dk, A->kr, A->rk, N * hk, kd / hk);
    }
    if (pre && (trainable(m, P->q) || trainable(m, P->k) || trainable(m, P->v) || trainable(m, P->qkv)))
        norm_fwd(m, P->attn_norm, P->anb, m->h, NULL, NULL, A->x, N);
    const float *hin = pre ? m->h : A->x;
    int need_dh = BELOW(S_QKV);
    qkv_backward(m, P, need_dh ? m->dh : NULL, dq, dk, hin);
    if (!need_dh) return 1;
    if (pre) norm_bwd(m, P->attn_norm, P->anb, m->dx, A->x, A->mean1, A->rstd1, N);
    else be->add(m->dx, m->dh, (size_t)N * D);
    if (m->cfg.parallel_residual) be->add(m->dx, m->dpar, (size_t)N * D);   /* the MLP's part */
    if (!BELOW(S_ATTN_NORM)) return 1;
    BHOOK(MU_SITE_RESID_PRE, m->dx, D);
    return BELOW(S_RESID_PRE) ? 0 : 1;
}
#undef BELOW
#undef BHOOK

/* lm_head and final norm: dx = d (last layer output). Returns 1 to stop, 0 go on, -1 err. */
/* The dlogits buffer on the backend ([cap_N, V] workspace), or NULL out of memory. */
static float *dlog_buffer(mu_model *m)
{
    if (!m->dlog) m->dlog = ws_alloc(m, (size_t)m->cap_N * m->V);
    return m->dlog;
}

/* dh[N,D] = d loss / d hf from dl [n_sel, V] at the selected rows (zero elsewhere), and
 * the lm_head gradient from the gathered rows; dh NULL: only the latter. The scatter is a
 * gather through the inverse selection (inv[p] = row of p, or the zero row n_sel), so every
 * element of dh is written once, in parallel. 0, or -1 out of memory. */
static int lm_head_bwd_rows(mu_model *m, float *dh, const float *dl)
{
    int D = m->D, n = m->n_sel, N = m->N;
    if (!m->dsel) m->dsel = ws_alloc(m, ((size_t)m->cap_N + 1) * D);
    if (N > m->cap_inv) {
        int32_t *v = realloc(m->inv, (size_t)N * sizeof *v);
        if (v) { m->inv = v; m->cap_inv = N; }
    }
    if (!m->dsel || N > m->cap_inv) return -1;
    if (n > 0) linear_bwd(m, dh ? m->dsel : NULL, m->lm_head, dl, m->rows, n, D, m->V, 0);
    if (!dh) return 0;
    m->be->zero(m->dsel + (size_t)n * D, fsz(D));
    for (int p = 0; p < N; p++) m->inv[p] = n;
    for (int r = 0; r < n; r++) m->inv[m->lrows[r]] = r;
    m->be->embed(dh, m->dsel, m->inv, N, D);
    return 0;
}

/* dlogits: host [R, V] (R = logit rows), or NULL with on_backend = 1 when m->dlog already
 * holds them. */
static int head_backward(mu_model *m, const float *dlogits, int on_backend, int low, int top,
                         const mu_hook *hooks, int nh, char *err, size_t errlen)
{
    const mu_backend *be = m->be;
    int N = m->N, D = m->D, V = m->V;
    size_t nl = (size_t)mu_model_logit_rows(m) * V;
    const float *dl = dlogits;
    if (!dlogits && !on_backend) return low < top ? 0 : 1;
    int hooked = has_hook(hooks, nh, MU_SITE_LOGITS, -1, 1);
    if (hooked && m->sel) {
        snprintf(err, errlen, "backward: a logits hook with logit_rows");
        return -1;
    }
    if (on_backend) {
        if (run_hooks(m, hooks, nh, MU_SITE_LOGITS, -1, 1, m->dlog, m->B, m->T, V, err, errlen))
            return -1;
        dl = m->dlog;
    } else if (!be->host_memory || hooked || m->cfg.final_softcap > 0) {
        if (!dlog_buffer(m)) {
            snprintf(err, errlen, "backward: out of memory for dlogits");
            return -1;
        }
        be->upload(m->dlog, dlogits, fsz(nl));
        if (run_hooks(m, hooks, nh, MU_SITE_LOGITS, -1, 1, m->dlog, m->B, m->T, V, err, errlen))
            return -1;
        dl = m->dlog;
    }
    if (low > top + 1) return 1;
    if (m->cfg.final_softcap > 0 && nl > 0)   /* dl is m->dlog: through the soft-cap */
        be->softcap_bwd(m->dlog, m->logits, nl, m->cfg.final_softcap);
    if (m->sel && lm_head_bwd_rows(m, low < top + 1 ? m->dh : NULL, dl)) {
        snprintf(err, errlen, "backward: out of memory for the logit rows' gradient");
        return -1;
    }
    if (!m->sel) linear_bwd(m, low < top + 1 ? m->dh : NULL, m->lm_head, dl, m->hf, N, D, V, 0);
    bias_bwd(m, m->head_bias, dl, mu_model_logit_rows(m), V);
    if (low >= top + 1) return 1;
    norm_bwd(m, m->final_norm, m->final_bias, m->dx, m->acts[m->NL].x, m->meanf, m->rstdf, N);
    return low < top ? 0 : 1;
}

static int backward_from(mu_model *m, const float *dlogits, int on_backend,
                         const mu_hook *hooks, int n_hooks, char *err, size_t errlen);

int mu_model_backward(mu_model *m, const float *dlogits, const mu_hook *hooks, int n_hooks,
                      char *err, size_t errlen)
{
    return backward_from(m, dlogits, 0, hooks, n_hooks, err, errlen);
}

/* Mean cross-entropy of the last forward's logits over targets in [0, V); dl (a backend
 * buffer [N, V], or NULL) receives d mean / d logits. *cnt = targets counted. NAN when
 * host memory runs out. */
static double mean_ce(mu_model *m, const int32_t *targets, float *dl, int *cnt)
{
    int N = mu_model_logit_rows(m), V = m->V, c = 0;
    for (int n = 0; n < N; n++) c += targets[n] >= 0 && targets[n] < V;
    *cnt = c;
    float *loss = calloc(N ? N : 1, sizeof *loss);
    if (!loss) return NAN;
    m->be->cross_entropy(loss, dl, m->logits, targets, N, V, c ? 1.0f / c : 0.0f);
    double s = 0;
    for (int n = 0; n < N; n++) s += loss[n];
    free(loss);
    return c ? s / c : 0;
}

double mu_model_backward_ce(mu_model *m, const int32_t *targets, const mu_hook *hooks,
                            int n_hooks, int *count, char *err, size_t errlen)
{
    int cnt = 0;
    if (count) *count = 0;
    if (!m->have_train || !m->full || m->last_only || !m->logits) {
        snprintf(err, errlen, "backward: no whole-model training forward to go back through");
        return NAN;
    }
    double loss = dlog_buffer(m) ? mean_ce(m, targets, m->dlog, &cnt) : NAN;
    if (isnan(loss)) {
        snprintf(err, errlen, "backward: out of memory for dlogits");
        return NAN;
    }
    if (backward_from(m, NULL, 1, hooks, n_hooks, err, errlen)) return NAN;
    if (count) *count = cnt;
    return loss;
}

int mu_model_target_logprobs(mu_model *m, const int32_t *targets, double *logp, char *err,
                             size_t errlen)
{
    if (!m->full || !m->logits) {
        snprintf(err, errlen, "target log-probs: the last forward made no logits");
        return -1;
    }
    int R = mu_model_logit_rows(m);
    if (R > 0) m->be->target_logprob(logp, m->logits, targets, R, m->V);
    return 0;
}

int mu_model_backward_logp(mu_model *m, const int32_t *targets, const double *a,
                           const float *dlogits, const mu_hook *hooks, int n_hooks, char *err,
                           size_t errlen)
{
    if (!m->have_train || !m->full || m->last_only || !m->logits) {
        snprintf(err, errlen, "backward: no whole-model training forward to go back through");
        return -1;
    }
    int R = mu_model_logit_rows(m);
    if (!dlog_buffer(m)) {
        snprintf(err, errlen, "backward: out of memory for dlogits");
        return -1;
    }
    size_t nl = (size_t)R * m->V;
    if (dlogits) m->be->upload(m->dlog, dlogits, fsz(nl));
    else m->be->zero(m->dlog, fsz(nl));
    if (R > 0) m->be->logp_grad(m->dlog, m->logits, targets, a, R, m->V);
    return backward_from(m, NULL, 1, hooks, n_hooks, err, errlen);
}

static int backward_from(mu_model *m, const float *dlogits, int on_backend,
                         const mu_hook *hooks, int n_hooks, char *err, size_t errlen)
{
    if (!m->have_train) {
        snprintf(err, errlen, "backward: no training forward to go back through");
        return -1;
    }
    if (dlogits && !m->full) {
        snprintf(err, errlen, "backward: dlogits given but the forward stopped at layer %d",
                 m->layers_run - 1);
        return -1;
    }
    int top = depth(m->NL, 0);
    int low = lowest_needed(m, hooks, n_hooks, top);
    if (low == INT_MAX) return 0;
    m->be->zero(m->dx, fsz((size_t)m->N * m->D));
    if (m->full) {
        int rc = head_backward(m, dlogits, on_backend, low, top, hooks, n_hooks, err, errlen);
        if (rc) return rc < 0 ? -1 : 0;
    }
    for (int L = m->layers_run - 1; L >= 0; L--) {
        if (low > depth(L, S_RESID_POST)) return 0;
        if (run_hooks(m, hooks, n_hooks, MU_SITE_RESID_POST, L, 1, m->dx, m->B, m->T, m->D,
                      err, errlen))
            return -1;
        if (low == depth(L, S_RESID_POST)) return 0;
        int rc = mlp_backward(m, L, low, hooks, n_hooks, err, errlen);
        if (rc) return rc < 0 ? -1 : 0;
        rc = attn_backward(m, L, low, hooks, n_hooks, err, errlen);
        if (rc) return rc < 0 ? -1 : 0;
    }
    if (run_hooks(m, hooks, n_hooks, MU_SITE_EMBED, -1, 1, m->dx, m->B, m->T, m->D, err, errlen))
        return -1;
    if (trainable(m, m->pos_embed)) {
        m->be->embed_bwd(G(m, m->pos_embed), m->dx, m->pos, m->N, m->D);
        grad_done(m, m->pos_embed);
    }
    int soft = m->soft.g && m->n_soft_runs;
    if (!trainable(m, m->embed) && !soft) return 0;
    if (m->embed_mult != 1.0f) m->be->scale(m->dx, m->embed_mult, (size_t)m->N * m->D);
    soft_backward(m, m->dx);
    if (trainable(m, m->embed)) {
        m->be->embed_bwd(G(m, m->embed), m->dx, m->ids, m->N, m->D);
        grad_done(m, m->embed);
    }
    return 0;
}

double mu_model_cross_entropy(mu_model *m, const int32_t *targets, float *dlogits, int *count)
{
    int cnt = 0;
    if (count) *count = 0;
    if (!m->full || m->last_only || !m->logits) return 0;
    /* on a device the gradient goes through the dlogits workspace, then to the host */
    float *dl = dlogits && !m->be->host_memory ? dlog_buffer(m) : dlogits;
    if (dlogits && !dl) return NAN;
    double loss = mean_ce(m, targets, dl, &cnt);
    if (dl != dlogits && !isnan(loss))
        m->be->download(dlogits, dl, fsz((size_t)mu_model_logit_rows(m) * m->V));
    if (count && !isnan(loss)) *count = cnt;
    return loss;
}

/* ---- KV cache and greedy decoding ------------------------------------------------------ */
mu_kvcache *mu_kvcache_new(mu_model *m, int B, int max_T)
{
    if (B <= 0 || max_T <= 0) return NULL;
    mu_kvcache *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m; c->B = B; c->max_T = max_T;
    c->len = calloc(B, sizeof *c->len);
    c->k = calloc(m->NL, sizeof *c->k);
    c->v = calloc(m->NL, sizeof *c->v);
    if (!c->len || !c->k || !c->v) { mu_kvcache_free(c); return NULL; }
    size_t n = (size_t)B * max_T * m->kd;
    for (int L = 0; L < m->NL; L++) {
        c->k[L] = m->be->alloc(fsz(n));
        c->v[L] = m->be->alloc(fsz(n));
        if (!c->k[L] || !c->v[L]) { mu_kvcache_free(c); return NULL; }
    }
    return c;
}

void mu_kvcache_free(mu_kvcache *c)
{
    if (!c) return;
    for (int L = 0; c->k && c->v && L < c->m->NL; L++) {
        c->m->be->free(c->k[L]);
        c->m->be->free(c->v[L]);
    }
    free(c->k); free(c->v); free(c->len);
    free(c);
}

const int32_t *mu_kvcache_lens(const mu_kvcache *c) { return c->len; }

static int32_t argmax(const float *x, int n)
{
    int32_t best = 0;
    for (int i = 1; i < n; i++) if (x[i] > x[best]) best = i;
    return best;
}

int mu_model_greedy(mu_model *m, const int32_t *prompt, int n_prompt, int n_new, int eos,
                    int32_t *out, char *err, size_t errlen)
{
    if (n_prompt < 1 || n_new < 0) {
        snprintf(err, errlen, "greedy: need a prompt of at least one token");
        return -1;
    }
    if (n_new == 0) return 0;
    mu_kvcache *c = mu_kvcache_new(m, 1, n_prompt + n_new);
    if (!c) { snprintf(err, errlen, "greedy: out of memory for the KV cache"); return -1; }
    mu_fwd_opts o = { .logits_last_only = 1, .cache = c };
    mu_batch b = { 1, n_prompt, prompt, NULL };
    int n = 0;
    while (n < n_new) {
        if (mu_model_forward(m, &b, &o, err, errlen)) { mu_kvcache_free(c); return -1; }
        out[n] = argmax(mu_model_logits(m), m->V);
        if (out[n++] == eos) break;
        b = (mu_batch){ 1, 1, &out[n - 1], NULL };
    }
    mu_kvcache_free(c);
    return n;
}
