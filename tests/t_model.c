/* t_model.c — the model against an independent double-precision reference (naive loops,
 * written from the HF Llama definition): logits, every parameter gradient by finite
 * differences, gradients at every site, hooks, padded batches, KV-cache decoding,
 * trainable subsets, HF transformers parity (tests/golden/parity) and stories260K greedy. */
#define _GNU_SOURCE   /* memmem */
#include <stdint.h>
#include <limits.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>
#include <omp.h>
#include "test.h"
#include "model.h"
#include "kernels.h"
#include "rng.h"
#include "ckpt.h"
#include "safetensors.h"
#include "gguf.h"
#include "soft.h"
#include "tensor.h"
#include <jansson.h>

/* ---- the reference ---------------------------------------------------------------------- */
typedef struct {
    const mu_config *c;
    int n;                  /* parameters, in the model's order */
    double **w;
    int embed, final_norm, lm_head;
    int *attn_norm, *q, *k, *v, *qb, *kb, *vb, *o, *mlp_norm, *gate, *up, *down;
    float *inv_freq;
} ref_model;

/* A reference hook: may change act [B,T,D] (site, layer) in place. */
typedef void (*ref_hook_fn)(mu_site site, int layer, double *act, int B, int T, int D, void *u);

static int find_role(mu_model *m, const char *role, int layer)
{
    char name[128];
    if (mu_arch_param_name(role, layer, name, sizeof name)) return -1;
    return mu_model_find(m, name);
}

static ref_model *ref_from_model(mu_model *m)
{
    const mu_config *c = mu_model_config(m);
    ref_model *r = calloc(1, sizeof *r);
    r->c = c;
    r->n = mu_model_n_params(m);
    r->w = calloc(r->n, sizeof *r->w);
    for (int i = 0; i < r->n; i++) {
        mu_param *p = mu_model_param(m, i);
        float *f = malloc(p->numel * sizeof *f);
        mu_model_get_param(m, i, f);
        r->w[i] = malloc(p->numel * sizeof(double));
        for (int64_t j = 0; j < p->numel; j++) r->w[i][j] = f[j];
        free(f);
    }
    r->embed = find_role(m, "embed", -1);
    r->final_norm = find_role(m, "final_norm", -1);
    r->lm_head = c->tie_embeddings ? r->embed : find_role(m, "lm_head", -1);
    int **fields[] = { &r->attn_norm, &r->q, &r->k, &r->v, &r->qb, &r->kb, &r->vb, &r->o,
                       &r->mlp_norm, &r->gate, &r->up, &r->down };
    const char *roles[] = { "attn_norm", "q", "k", "v", "q_bias", "k_bias", "v_bias", "o",
                            "mlp_norm", "gate", "up", "down" };
    for (int f = 0; f < 12; f++) {
        *fields[f] = malloc(c->n_layer * sizeof(int));
        for (int L = 0; L < c->n_layer; L++) (*fields[f])[L] = find_role(m, roles[f], L);
    }
    r->inv_freq = malloc(c->head_dim / 2 * sizeof(float));
    mu_rope_inv_freq(c, r->inv_freq);
    return r;
}

static void ref_free(ref_model *r)
{
    for (int i = 0; i < r->n; i++) free(r->w[i]);
    free(r->w);
    int *fields[] = { r->attn_norm, r->q, r->k, r->v, r->qb, r->kb, r->vb, r->o, r->mlp_norm,
                      r->gate, r->up, r->down };
    for (int f = 0; f < 12; f++) free(fields[f]);
    free(r->inv_freq);
    free(r);
}

static void ref_rmsnorm(double *y, const double *x, const double *w, int N, int D, double eps)
{
    for (int n = 0; n < N; n++) {
        double ss = 0;
        for (int d = 0; d < D; d++) ss += x[n * D + d] * x[n * D + d];
        double rs = 1 / sqrt(ss / D + eps);
        for (int d = 0; d < D; d++) y[n * D + d] = x[n * D + d] * rs * w[d];
    }
}

/* y[N,M] = x[N,K] W[M,K]^T (+ b) */
static void ref_linear(double *y, const double *x, const double *W, const double *b, int N,
                       int K, int M)
{
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double s = b ? b[m] : 0;
            for (int k = 0; k < K; k++) s += x[n * K + k] * W[m * K + k];
            y[n * M + m] = s;
        }
}

static void ref_rope(double *x, int B, int T, int H, int hd, const float *inv_freq)
{
    int half = hd / 2;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < H; h++) {
                double *v = x + (((size_t)b * T + t) * H + h) * hd;
                for (int i = 0; i < half; i++) {
                    double a = (double)((float)t * inv_freq[i]), x1 = v[i], x2 = v[i + half];
                    v[i] = x1 * cos(a) - x2 * sin(a);
                    v[i + half] = x2 * cos(a) + x1 * sin(a);
                }
            }
}

static void ref_attention(double *o, const double *q, const double *k, const double *v,
                          const int32_t *lens, int B, int T, int H, int Hkv, int hd)
{
    double *p = malloc(T * sizeof *p);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < T; t++) {
                int kh = h / (H / Hkv), nk = t + 1 < lens[b] ? t + 1 : lens[b];
                double *out = o + (((size_t)b * T + t) * H + h) * hd;
                for (int i = 0; i < hd; i++) out[i] = 0;
                if (nk <= 0) continue;
                const double *qq = q + (((size_t)b * T + t) * H + h) * hd;
                double mx = -INFINITY, sum = 0;
                for (int j = 0; j < nk; j++) {
                    const double *kk = k + (((size_t)b * T + j) * Hkv + kh) * hd;
                    double d = 0;
                    for (int i = 0; i < hd; i++) d += qq[i] * kk[i];
                    p[j] = d / sqrt((double)hd);
                    if (p[j] > mx) mx = p[j];
                }
                for (int j = 0; j < nk; j++) { p[j] = exp(p[j] - mx); sum += p[j]; }
                for (int j = 0; j < nk; j++) {
                    const double *vv = v + (((size_t)b * T + j) * Hkv + kh) * hd;
                    for (int i = 0; i < hd; i++) out[i] += p[j] / sum * vv[i];
                }
            }
    free(p);
}

/* Forward in double. logits [B,T,V] when last_layer < 0, else hidden [B,T,D] = resid_post
 * of last_layer. Hooks like the model's (mlp_in shown as [gate | up]). */
static void ref_forward(const ref_model *r, const int32_t *ids, const int32_t *lens, int B,
                        int T, int last_layer, double *out, ref_hook_fn hook, void *u)
{
    const mu_config *c = r->c;
    int N = B * T, D = c->d_model, H = c->n_head, Hkv = c->n_kv_head, hd = c->head_dim;
    int F = c->d_ff, V = c->vocab, qd = H * hd, kd = Hkv * hd;
    double *x = malloc(sizeof(double) * N * D), *h = malloc(sizeof(double) * N * D);
    double *q = malloc(sizeof(double) * N * qd), *k = malloc(sizeof(double) * N * kd);
    double *v = malloc(sizeof(double) * N * kd), *o = malloc(sizeof(double) * N * qd);
    double *br = malloc(sizeof(double) * N * D), *gu = malloc(sizeof(double) * N * 2 * F);
    double *g = malloc(sizeof(double) * N * F), *up = malloc(sizeof(double) * N * F);
    double *a = malloc(sizeof(double) * N * F);
#define RH(site, L, buf, W) do { if (hook) hook(site, L, buf, B, T, W, u); } while (0)
    for (int n = 0; n < N; n++)
        for (int d = 0; d < D; d++) x[n * D + d] = r->w[r->embed][ids[n] * D + d];
    RH(MU_SITE_EMBED, -1, x, D);
    int last = last_layer < 0 ? c->n_layer - 1 : last_layer;
    for (int L = 0; L <= last; L++) {
        RH(MU_SITE_RESID_PRE, L, x, D);
        ref_rmsnorm(h, x, r->w[r->attn_norm[L]], N, D, c->rms_eps);
        ref_linear(q, h, r->w[r->q[L]], r->qb[L] >= 0 ? r->w[r->qb[L]] : NULL, N, D, qd);
        ref_linear(k, h, r->w[r->k[L]], r->kb[L] >= 0 ? r->w[r->kb[L]] : NULL, N, D, kd);
        ref_linear(v, h, r->w[r->v[L]], r->vb[L] >= 0 ? r->w[r->vb[L]] : NULL, N, D, kd);
        ref_rope(q, B, T, H, hd, r->inv_freq);
        ref_rope(k, B, T, Hkv, hd, r->inv_freq);
        ref_attention(o, q, k, v, lens, B, T, H, Hkv, hd);
        RH(MU_SITE_ATTN_HEAD, L, o, qd);
        ref_linear(br, o, r->w[r->o[L]], NULL, N, qd, D);
        RH(MU_SITE_ATTN_OUT, L, br, D);
        for (int i = 0; i < N * D; i++) x[i] += br[i];
        RH(MU_SITE_RESID_MID, L, x, D);
        ref_rmsnorm(h, x, r->w[r->mlp_norm[L]], N, D, c->rms_eps);
        ref_linear(g, h, r->w[r->gate[L]], NULL, N, D, F);
        ref_linear(up, h, r->w[r->up[L]], NULL, N, D, F);
        if (hook) {
            for (int n = 0; n < N; n++) {
                memcpy(gu + (size_t)n * 2 * F, g + (size_t)n * F, F * sizeof(double));
                memcpy(gu + (size_t)n * 2 * F + F, up + (size_t)n * F, F * sizeof(double));
            }
            RH(MU_SITE_MLP_IN, L, gu, 2 * F);
            for (int n = 0; n < N; n++) {
                memcpy(g + (size_t)n * F, gu + (size_t)n * 2 * F, F * sizeof(double));
                memcpy(up + (size_t)n * F, gu + (size_t)n * 2 * F + F, F * sizeof(double));
            }
        }
        for (int i = 0; i < N * F; i++) a[i] = g[i] / (1 + exp(-g[i])) * up[i];
        RH(MU_SITE_MLP_POST, L, a, F);
        ref_linear(br, a, r->w[r->down[L]], NULL, N, F, D);
        RH(MU_SITE_MLP_OUT, L, br, D);
        for (int i = 0; i < N * D; i++) x[i] += br[i];
        RH(MU_SITE_RESID_POST, L, x, D);
    }
    if (last_layer >= 0) {
        memcpy(out, x, sizeof(double) * N * D);
    } else {
        ref_rmsnorm(h, x, r->w[r->final_norm], N, D, c->rms_eps);
        ref_linear(out, h, r->w[r->lm_head], NULL, N, D, V);
        RH(MU_SITE_LOGITS, -1, out, V);
    }
#undef RH
    free(x); free(h); free(q); free(k); free(v); free(o); free(br); free(gu); free(g); free(up);
    free(a);
}

/* ---- fixtures --------------------------------------------------------------------------- */
static mu_config tiny_config(int tied, int qkv_bias)
{
    mu_config c;
    mu_config_init(&c);
    c.n_layer = 2; c.d_model = 16; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 6;
    c.d_ff = 24; c.vocab = 11; c.max_pos = 64; c.rms_eps = 1e-5f; c.rope_theta = 10000;
    c.tie_embeddings = tied; c.qkv_bias = qkv_bias;
    return c;
}

static mu_model *model_from(const mu_config *cfg, uint64_t seed)
{
    char err[256];
    mu_model *m = mu_model_init_random(cfg, seed, 0.35f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "init_random: %s", err);
    return m;
}

static mu_model *tiny_model(int tied, int qkv_bias, uint64_t seed)
{
    mu_config c = tiny_config(tied, qkv_bias);
    char err[256];
    mu_model *m = mu_model_init_random(&c, seed, 0.35f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "init_random: %s", err);
    return m;
}

/* Batch: B=3, T=7, rows of lengths 7, 4, 1; targets = next token, -1 at the end/padding. */
enum { TB = 3, TT = 7 };
static const int32_t t_lens[TB] = { 7, 4, 1 };
static void tiny_batch(int32_t *ids, int32_t *targets, int V)
{
    mu_rng r;
    mu_rng_seed(&r, 1234);
    for (int b = 0; b < TB; b++)
        for (int t = 0; t < TT; t++)
            ids[b * TT + t] = t < t_lens[b] ? (int32_t)mu_rng_below(&r, V) : 0;
    for (int b = 0; b < TB; b++)
        for (int t = 0; t < TT; t++)
            targets[b * TT + t] = t + 1 < t_lens[b] ? ids[b * TT + t + 1] : -1;
}

/* Mean cross-entropy of reference logits over targets >= 0. */
static double ref_ce_loss(const double *logits, const int32_t *targets, int N, int V)
{
    double s = 0;
    int cnt = 0;
    for (int n = 0; n < N; n++) {
        if (targets[n] < 0) continue;
        const double *x = logits + (size_t)n * V;
        double mx = -INFINITY, z = 0;
        for (int j = 0; j < V; j++) if (x[j] > mx) mx = x[j];
        for (int j = 0; j < V; j++) z += exp(x[j] - mx);
        s += mx + log(z) - x[targets[n]];
        cnt++;
    }
    return s / cnt;
}

static double ref_loss_of(const ref_model *r, const int32_t *ids, const int32_t *targets,
                          ref_hook_fn hook, void *u)
{
    int N = TB * TT, V = r->c->vocab;
    double *lg = malloc(sizeof(double) * N * V);
    ref_forward(r, ids, t_lens, TB, TT, -1, lg, hook, u);
    double l = ref_ce_loss(lg, targets, N, V);
    free(lg);
    return l;
}

/* ---- forward and parameter gradients ----------------------------------------------------- */
static void check_logits_and_grads_of(mu_model *m)
{
    const mu_config *c = mu_model_config(m);
    int N = TB * TT, V = c->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    char err[256];
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_batch b = { TB, TT, ids, t_lens };
    mu_fwd_opts o = { .train = 1};
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    float *dl = malloc(sizeof(float) * N * V);
    int cnt;
    double loss = mu_model_cross_entropy(m, targets, dl, &cnt);
    CHECK_EQ_INT(cnt, 6 + 3);
    CHECK_MSG(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0, "%s", err);

    ref_model *r = ref_from_model(m);
    double *lg = malloc(sizeof(double) * N * V);
    ref_forward(r, ids, t_lens, TB, TT, -1, lg, NULL, NULL);
    const float *logits = mu_model_logits(m);
    for (int b2 = 0; b2 < TB; b2++)
        for (int t = 0; t < t_lens[b2]; t++)
            for (int j = 0; j < V; j++) {
                size_t i = ((size_t)b2 * TT + t) * V + j;
                CHECK_MSG(fabs(logits[i] - lg[i]) <= 1e-5 * (1 + fabs(lg[i])),
                          "logits[%d,%d,%d] %.8g vs reference %.8g", b2, t, j, logits[i], lg[i]);
            }
    CHECK_CLOSE(loss, ref_ce_loss(lg, targets, N, V), 1e-5, 0);

    /* every element of every parameter against central differences of the reference */
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        float *g = malloc(p->numel * sizeof *g);
        mu_model_get_grad(m, i, g);
        double *fd = malloc(p->numel * sizeof *fd), scale = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            double w0 = r->w[i][j], h = 1e-5;
            r->w[i][j] = w0 + h;
            double lp = ref_loss_of(r, ids, targets, NULL, NULL);
            r->w[i][j] = w0 - h;
            double lm = ref_loss_of(r, ids, targets, NULL, NULL);
            r->w[i][j] = w0;
            fd[j] = (lp - lm) / (2 * h);
            if (fabs(fd[j]) > scale) scale = fabs(fd[j]);
        }
        CHECK_MSG(scale > 1e-6, "%s: reference gradient is zero", p->info.name);
        for (int64_t j = 0; j < p->numel; j++)
            CHECK_MSG(fabs(g[j] - fd[j]) <= 1e-4 * scale + 1e-6,
                      "%s[%lld]: backward %.8g vs finite difference %.8g (scale %.3g)",
                      p->info.name, (long long)j, g[j], fd[j], scale);
        free(g);
        free(fd);
    }
    ref_free(r);
    free(lg);
    free(dl);
    mu_model_free(m);
}

TEST(model_logits_and_all_grads_untied_bias)
{
    check_logits_and_grads_of(tiny_model(0, 1, 42));
}

TEST(model_logits_and_all_grads_tied)
{
    check_logits_and_grads_of(tiny_model(1, 0, 42));
}

/* Qwen2-like: tied, q/k/v biases, 3 query heads per kv head, head_dim != d_model / heads,
 * llama3 rope scaling with frequencies in all three regimes (kept, smoothed, divided). */
TEST(model_logits_and_all_grads_gqa3_llama3_rope)
{
    mu_config c = tiny_config(1, 1);
    c.n_head = 6; c.n_kv_head = 2; c.head_dim = 8; c.d_model = 12;
    snprintf(c.rope_scaling, sizeof c.rope_scaling, "llama3");
    c.rope_factor = 8; c.rope_low_freq = 1; c.rope_high_freq = 4; c.rope_orig_max_pos = 64;
    check_logits_and_grads_of(model_from(&c, 43));
}

/* ---- gradients at sites ------------------------------------------------------------------ */
typedef struct { mu_site site; int layer; float *grad; size_t n; } grab_ctx;

static int grab_hook(const mu_hook_info *info, float *act, void *user)
{
    grab_ctx *g = user;
    g->n = (size_t)info->B * info->T * info->D;
    g->grad = malloc(g->n * sizeof *g->grad);
    memcpy(g->grad, act, g->n * sizeof *g->grad);
    return 0;
}

typedef struct { mu_site site; int layer; size_t at; double delta; } nudge_ctx;

static void nudge(mu_site site, int layer, double *act, int B, int T, int D, void *u)
{
    (void)B; (void)T; (void)D;
    nudge_ctx *n = u;
    if (site == n->site && layer == n->layer) act[n->at] += n->delta;
}

TEST(model_site_gradients_match_fd)
{
    mu_model *m = tiny_model(0, 1, 7);
    const mu_config *c = mu_model_config(m);
    int N = TB * TT, V = c->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    ref_model *r = ref_from_model(m);
    char err[256];
    struct { mu_site s; int L; } cases[] = {
        { MU_SITE_EMBED, -1 }, { MU_SITE_RESID_PRE, 0 }, { MU_SITE_ATTN_HEAD, 0 },
        { MU_SITE_ATTN_OUT, 1 }, { MU_SITE_RESID_MID, 0 }, { MU_SITE_MLP_IN, 1 },
        { MU_SITE_MLP_POST, 0 }, { MU_SITE_MLP_OUT, 1 }, { MU_SITE_RESID_POST, 0 },
        { MU_SITE_LOGITS, -1 } };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        /* no trainable parameter: the pass must still reach the site */
        grab_ctx gc = { cases[k].s, cases[k].L, NULL, 0 };
        mu_hook hk = { cases[k].s, cases[k].L, 1, grab_hook, &gc };
        mu_batch b = { TB, TT, ids, t_lens };
        mu_fwd_opts o = { .train = 1};
        CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
        float *dl = malloc(sizeof(float) * N * V);
        mu_model_cross_entropy(m, targets, dl, NULL);
        CHECK_MSG(mu_model_backward(m, dl, &hk, 1, err, sizeof err) == 0, "%s", err);
        CHECK_MSG(gc.grad != NULL, "no gradient hook call at %s", mu_site_name(cases[k].s));
        CHECK_EQ_INT(gc.n, (size_t)N * mu_site_width(cases[k].s, c));
        double scale = 0, *fd = malloc(gc.n * sizeof *fd);
        for (size_t j = 0; j < gc.n; j++) {
            nudge_ctx nc = { cases[k].s, cases[k].L, j, 1e-5 };
            double lp = ref_loss_of(r, ids, targets, nudge, &nc);
            nc.delta = -1e-5;
            double lm = ref_loss_of(r, ids, targets, nudge, &nc);
            fd[j] = (lp - lm) / 2e-5;
            if (fabs(fd[j]) > scale) scale = fabs(fd[j]);
        }
        CHECK_MSG(scale > 1e-6, "%s: zero reference gradient", mu_site_name(cases[k].s));
        for (size_t j = 0; j < gc.n; j++)
            CHECK_MSG(fabs(gc.grad[j] - fd[j]) <= 1e-4 * scale + 1e-7,
                      "%s:%d grad[%zu] %.8g vs finite difference %.8g", mu_site_name(cases[k].s),
                      cases[k].L, j, gc.grad[j], fd[j]);
        free(fd);
        free(gc.grad);
        free(dl);
    }
    ref_free(r);
    mu_model_free(m);
}

/* RMU-style: forward to layer 0 only, loss = sum R * resid_post(0) injected by a backward
 * hook; parameter gradients of layer 0 and the embedding match finite differences. */
typedef struct { const float *R; } inject_ctx;

static int inject_hook(const mu_hook_info *info, float *act, void *user)
{
    const inject_ctx *ic = user;
    size_t n = (size_t)info->B * info->T * info->D;
    for (size_t i = 0; i < n; i++) act[i] += ic->R[i];
    return 0;
}

static double ref_hidden_loss(const ref_model *r, const int32_t *ids, const double *R, int L)
{
    int N = TB * TT, D = r->c->d_model;
    double *hid = malloc(sizeof(double) * N * D), s = 0;
    ref_forward(r, ids, t_lens, TB, TT, L, hid, NULL, NULL);
    for (int i = 0; i < N * D; i++) s += R[i] * hid[i];
    free(hid);
    return s;
}

TEST(model_injected_gradient_early_stop)
{
    mu_model *m = tiny_model(0, 0, 9);
    const mu_config *c = mu_model_config(m);
    int N = TB * TT, D = c->d_model;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, c->vocab);
    float *R = malloc(sizeof(float) * N * D);
    double *Rd = malloc(sizeof(double) * N * D);
    mu_rng rng;
    mu_rng_seed(&rng, 5);
    for (int b = 0; b < TB; b++)
        for (int t = 0; t < TT; t++)
            for (int d = 0; d < D; d++) {
                size_t i = ((size_t)b * TT + t) * D + d;
                R[i] = t < t_lens[b] ? (float)mu_rng_normal(&rng) : 0;
                Rd[i] = R[i];
            }
    char err[256];
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_batch b = { TB, TT, ids, t_lens };
    mu_fwd_opts o = { .train = 1, .n_layers = 1 };
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    CHECK(mu_model_logits(m) == NULL);
    inject_ctx ic = { R };
    mu_hook hk = { MU_SITE_RESID_POST, 0, 1, inject_hook, &ic };
    CHECK_MSG(mu_model_backward(m, NULL, &hk, 1, err, sizeof err) == 0, "%s", err);
    ref_model *r = ref_from_model(m);
    /* the hidden state handed back equals the reference's */
    const float *hid = mu_model_hidden(m);
    double *hd = malloc(sizeof(double) * N * D);
    ref_forward(r, ids, t_lens, TB, TT, 0, hd, NULL, NULL);
    for (int i = 0; i < N * D; i++) CHECK_NEAR(hid[i], hd[i], 1e-5 * (1 + fabs(hd[i])));
    free(hd);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        float *g = malloc(p->numel * sizeof *g);
        mu_model_get_grad(m, i, g);
        if (p->info.layer != 0 && strcmp(p->info.role, "embed")) {
            for (int64_t j = 0; j < p->numel; j++)
                CHECK_MSG(g[j] == 0, "%s above the stop layer got a gradient", p->info.name);
            free(g);
            continue;
        }
        double scale = 0, *fd = malloc(p->numel * sizeof *fd);
        for (int64_t j = 0; j < p->numel; j++) {
            double w0 = r->w[i][j];
            r->w[i][j] = w0 + 1e-5;
            double lp = ref_hidden_loss(r, ids, Rd, 0);
            r->w[i][j] = w0 - 1e-5;
            double lm = ref_hidden_loss(r, ids, Rd, 0);
            r->w[i][j] = w0;
            fd[j] = (lp - lm) / 2e-5;
            if (fabs(fd[j]) > scale) scale = fabs(fd[j]);
        }
        for (int64_t j = 0; j < p->numel; j++)
            CHECK_MSG(fabs(g[j] - fd[j]) <= 1e-4 * scale + 1e-6,
                      "%s[%lld]: %.8g vs finite difference %.8g", p->info.name, (long long)j,
                      g[j], fd[j]);
        free(fd);
        free(g);
    }
    ref_free(r);
    free(R);
    free(Rd);
    mu_model_free(m);
}

/* ---- trainable subsets ------------------------------------------------------------------- */
TEST(model_trainable_subset_same_grads_no_others)
{
    mu_model *m = tiny_model(0, 1, 11);
    const mu_config *c = mu_model_config(m);
    int N = TB * TT, V = c->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    char err[256];
    mu_batch b = { TB, TT, ids, t_lens };
    mu_fwd_opts o = { .train = 1};
    float *dl = malloc(sizeof(float) * N * V);
    int n = mu_model_n_params(m);
    float **full = calloc(n, sizeof *full);
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
    mu_model_cross_entropy(m, targets, dl, NULL);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    for (int i = 0; i < n; i++) {
        full[i] = malloc(mu_model_param(m, i)->numel * sizeof(float));
        mu_model_get_grad(m, i, full[i]);
    }
    /* only layer 1's down_proj and q bias of layer 1: everything else stays frozen */
    CHECK(mu_model_set_all_trainable(m, 0) == 0);
    int down = mu_model_find(m, "model.layers.1.mlp.down_proj.weight");
    int qb = mu_model_find(m, "model.layers.1.self_attn.q_proj.bias");
    CHECK(down >= 0 && qb >= 0);
    CHECK(mu_model_set_trainable(m, down, 1) == 0);
    CHECK(mu_model_set_trainable(m, qb, 1) == 0);
    for (int rep = 0; rep < 2; rep++) {            /* grads accumulate over calls */
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        mu_model_cross_entropy(m, targets, dl, NULL);
        CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    }
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(m, i);
        if (i != down && i != qb) { CHECK(p->g == NULL && !p->trainable); continue; }
        for (int64_t j = 0; j < p->numel; j++)
            CHECK_NEAR(p->g[j], 2 * full[i][j], 1e-6 + 1e-5 * fabs(full[i][j]));
    }
    mu_model_zero_grad(m);
    CHECK(mu_model_param(m, down)->g[0] == 0);
    for (int i = 0; i < n; i++) free(full[i]);
    free(full);
    free(dl);
    mu_model_free(m);
}

/* ---- batches and the KV cache ------------------------------------------------------------ */
TEST(model_padded_batch_equals_each_row_alone)
{
    mu_model *m = tiny_model(0, 1, 13);
    int V = mu_model_config(m)->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    for (int i = 0; i < TB * TT; i++) if (ids[i] == 0 && i % TT >= t_lens[i / TT]) ids[i] = 5;
    char err[256];
    mu_batch b = { TB, TT, ids, t_lens };
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    float *all = malloc(sizeof(float) * TB * TT * V);
    memcpy(all, mu_model_logits(m), sizeof(float) * TB * TT * V);
    for (int r = 0; r < TB; r++) {
        mu_batch one = { 1, t_lens[r], ids + r * TT, NULL };
        CHECK(mu_model_forward(m, &one, NULL, err, sizeof err) == 0);
        const float *lg = mu_model_logits(m);
        for (int t = 0; t < t_lens[r]; t++)
            for (int j = 0; j < V; j++)
                CHECK_NEAR(all[((size_t)r * TT + t) * V + j], lg[(size_t)t * V + j], 1e-5);
    }
    free(all);
    mu_model_free(m);
}

/* A forward the model cannot run is refused in one line saying why, and the model stays
 * usable: an empty or oversized batch, a row longer than the batch, an id past the
 * vocabulary, n_layers past the model, a KV cache for training or for another batch size, a
 * full cache, logits at the last token only when training, logit rows out of order */
static void check_forward_refused(mu_model *m, const mu_batch *b, const mu_fwd_opts *o, const char *want)
{
    char err[256] = "";
    CHECK_MSG(mu_model_forward(m, b, o, err, sizeof err) == -1, "accepted (want \"%s\")", want);
    CHECK_MSG(strstr(err, want) && !strchr(err, '\n'), "\"%s\" lacks \"%s\"", err, want);
}

TEST(model_forward_refusals)
{
    mu_model *m = tiny_model(0, 0, 5);
    int32_t ids[10] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, lens[2] = { 5, 6 }, rows[2] = { 3, 1 };
    mu_batch ok = { 2, 5, ids, NULL }, empty = { 0, 5, ids, NULL }, huge = { 1 << 20, 1 << 10, ids, NULL };
    mu_batch long_row = { 2, 5, ids, lens }, one = { 1, 5, ids, NULL };
    check_forward_refused(m, &empty, NULL, "forward: empty batch");
    check_forward_refused(m, &huge, NULL, "forward: batch too large (1048576 x 1024)");
    check_forward_refused(m, &long_row, NULL, "forward: row 1: length 6 outside [0, 5]");
    ids[7] = 11;
    check_forward_refused(m, &ok, NULL, "forward: row 1 position 2: token id 11 outside vocab [0, 11)");
    ids[7] = 8;
    check_forward_refused(m, &ok, &(mu_fwd_opts){ .n_layers = 3 }, "forward: n_layers 3 outside [0, 2]");
    check_forward_refused(m, &ok, &(mu_fwd_opts){ .train = 1, .logits_last_only = 1 },
                          "forward: training needs logits at every position");
    check_forward_refused(m, &ok, &(mu_fwd_opts){ .logit_rows = rows, .n_logit_rows = 2 },
                          "forward: logit row 1 (position 1) is not an increasing");
    mu_kvcache *c = mu_kvcache_new(m, 2, 8);
    CHECK(c != NULL);
    check_forward_refused(m, &ok, &(mu_fwd_opts){ .train = 1, .cache = c },
                          "forward: a KV cache cannot be used for training");
    check_forward_refused(m, &one, &(mu_fwd_opts){ .cache = c },
                          "forward: KV cache made for another model or batch size");
    char err[256];
    CHECK_MSG(mu_model_forward(m, &ok, &(mu_fwd_opts){ .cache = c }, err, sizeof err) == 0, "%s", err);
    check_forward_refused(m, &ok, &(mu_fwd_opts){ .cache = c }, "forward: row 0: KV cache full (5 + 5 > 8 tokens)");
    mu_kvcache_free(c);
    CHECK_MSG(mu_model_forward(m, &ok, NULL, err, sizeof err) == 0, "%s", err);
    mu_model_free(m);
}

TEST(model_kv_cache_decode_equals_full_forward)
{
    mu_model *m = tiny_model(0, 1, 17);
    int V = mu_model_config(m)->vocab;
    int32_t ids[2 * 9];
    mu_rng r;
    mu_rng_seed(&r, 3);
    for (int i = 0; i < 18; i++) ids[i] = (int32_t)mu_rng_below(&r, V);
    char err[256];
    mu_batch full = { 2, 9, ids, NULL };
    CHECK(mu_model_forward(m, &full, NULL, err, sizeof err) == 0);
    float *ref = malloc(sizeof(float) * 18 * V);
    memcpy(ref, mu_model_logits(m), sizeof(float) * 18 * V);
    /* prefill rows with 4 and 2 tokens, then feed the rest, rows advancing unevenly */
    mu_kvcache *c = mu_kvcache_new(m, 2, 9);
    CHECK(c != NULL);
    int32_t pre[2 * 4] = { ids[0], ids[1], ids[2], ids[3], ids[9], ids[10], 0, 0 };
    int32_t lens[2] = { 4, 2 };
    mu_fwd_opts o = { .logits_last_only = 1, .cache = c };
    mu_batch pb = { 2, 4, pre, lens };
    CHECK_MSG(mu_model_forward(m, &pb, &o, err, sizeof err) == 0, "%s", err);
    const float *lg = mu_model_logits(m);
    for (int j = 0; j < V; j++) {
        CHECK_NEAR(lg[j], ref[3 * V + j], 1e-5);
        CHECK_NEAR(lg[V + j], ref[(9 + 1) * V + j], 1e-5);
    }
    while (mu_kvcache_lens(c)[1] < 9) {
        int p0 = mu_kvcache_lens(c)[0], p1 = mu_kvcache_lens(c)[1];
        int32_t step[2] = { p0 < 9 ? ids[p0] : 0, ids[9 + p1] };
        int32_t sl[2] = { p0 < 9, 1 };
        mu_batch sb = { 2, 1, step, sl };
        CHECK_MSG(mu_model_forward(m, &sb, &o, err, sizeof err) == 0, "%s", err);
        lg = mu_model_logits(m);
        for (int j = 0; j < V; j++) {
            if (p0 < 9) CHECK_NEAR(lg[j], ref[(size_t)p0 * V + j], 1e-5);
            CHECK_NEAR(lg[V + j], ref[(size_t)(9 + p1) * V + j], 1e-5);
        }
    }
    /* full cache: one token more is an error naming the row */
    int32_t one[2] = { 1, 1 };
    mu_batch sb = { 2, 1, one, NULL };
    CHECK(mu_model_forward(m, &sb, &o, err, sizeof err) == -1);
    CHECK(strstr(err, "KV cache full") != NULL);
    mu_kvcache_free(c);
    free(ref);
    mu_model_free(m);
}

TEST(model_bad_inputs)
{
    mu_model *m = tiny_model(0, 0, 1);
    char err[256];
    int32_t ids[4] = { 1, 2, 11, 0 }, lens[2] = { 2, 3 };
    mu_batch b = { 2, 2, ids, NULL };
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "token id 11") != NULL);
    ids[2] = 3;
    b.lens = lens;
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "length 3") != NULL);
    CHECK(mu_model_backward(m, NULL, NULL, 0, err, sizeof err) == -1);
    mu_fwd_opts o = { .n_layers = 5 };
    b.lens = NULL;
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == -1);
    mu_model_free(m);
}

/* ---- forward hooks ----------------------------------------------------------------------- */
typedef struct { float *saved; size_t n; int mode; } patch_ctx;   /* mode 0 save, 1 write */

static int patch_hook(const mu_hook_info *info, float *act, void *user)
{
    patch_ctx *p = user;
    size_t n = (size_t)info->B * info->T * info->D;
    if (p->mode == 0) {
        p->saved = realloc(p->saved, n * sizeof *act);
        memcpy(p->saved, act, n * sizeof *act);
        p->n = n;
    } else {
        if (n != p->n) return -1;
        memcpy(act, p->saved, n * sizeof *act);
    }
    return 0;
}

TEST(hooks_patch_with_itself_changes_nothing)
{
    mu_model *m = tiny_model(0, 1, 19);
    int V = mu_model_config(m)->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    char err[256];
    mu_batch b = { TB, TT, ids, t_lens };
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    size_t nl = (size_t)TB * TT * V;
    float *base = malloc(nl * sizeof *base);
    memcpy(base, mu_model_logits(m), nl * sizeof *base);
    for (int s = 0; s < MU_SITE_COUNT; s++) {
        patch_ctx pc = { NULL, 0, 0 };
        mu_hook hk = { (mu_site)s, 1, 0, patch_hook, &pc };
        mu_fwd_opts o = { .hooks = &hk, .n_hooks = 1 };
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        CHECK_MSG(pc.saved != NULL, "hook at %s not called", mu_site_name((mu_site)s));
        pc.mode = 1;
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        CHECK(memcmp(base, mu_model_logits(m), nl * sizeof *base) == 0);
        free(pc.saved);
    }
    /* a failing hook aborts the forward with a message naming the site */
    patch_ctx bad = { malloc(4), 1, 1 };
    mu_hook hk = { MU_SITE_MLP_POST, 0, 0, patch_hook, &bad };
    mu_fwd_opts o = { .hooks = &hk, .n_hooks = 1 };
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == -1);
    CHECK_STR(err, "forward hook at mlp_post:0 failed");
    free(bad.saved);
    free(base);
    mu_model_free(m);
}

static int zero_hook(const mu_hook_info *info, float *act, void *user)
{
    (void)user;
    memset(act, 0, (size_t)info->B * info->T * info->D * sizeof *act);
    return 0;
}

TEST(hooks_zero_ablate_mlp_post_equals_zero_down_proj)
{
    mu_model *m = tiny_model(0, 1, 23);
    int V = mu_model_config(m)->vocab;
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    char err[256];
    mu_batch b = { TB, TT, ids, t_lens };
    mu_hook hk = { MU_SITE_MLP_POST, 1, 0, zero_hook, NULL };
    mu_fwd_opts o = { .hooks = &hk, .n_hooks = 1 };
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
    size_t nl = (size_t)TB * TT * V;
    float *abl = malloc(nl * sizeof *abl);
    memcpy(abl, mu_model_logits(m), nl * sizeof *abl);
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    CHECK(memcmp(abl, mu_model_logits(m), nl * sizeof *abl) != 0);  /* the ablation matters */
    int down = mu_model_find(m, "model.layers.1.mlp.down_proj.weight");
    mu_param *p = mu_model_param(m, down);
    float *zero = calloc(p->numel, sizeof *zero);
    mu_model_set_param(m, down, zero);
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    const float *lg = mu_model_logits(m);
    for (size_t i = 0; i < nl; i++) CHECK_NEAR(lg[i], abl[i], 1e-6);
    free(zero);
    free(abl);
    mu_model_free(m);
}

/* ---- HF transformers parity (tests/gen/gen_llama_parity.py) -------------------------------- */
/* max over valid positions of |got - want| / max(|want|, 0.1) */
static double logits_maxrel(const float *got, const float *want, const int32_t *lens, int B,
                            int T, int V)
{
    double maxrel = 0;
    for (int r = 0; r < B; r++)
        for (int t = 0; t < lens[r]; t++)
            for (int j = 0; j < V; j++) {
                size_t i = ((size_t)r * T + t) * V + j;
                double rel = fabs(got[i] - want[i]) / (fabs(want[i]) > 0.1 ? fabs(want[i]) : 0.1);
                if (rel > maxrel) maxrel = rel;
            }
    return maxrel;
}

/* The batch of tests/golden/parity/golden.safetensors (gen_llama_parity.py): right-padded
 * ids [B,T], lengths [B], next-token targets [B,T] (-1 = none). Pointers into g. */
typedef struct { int B, T; const int32_t *ids, *lens, *targets; } parity_batch;

static const int32_t *golden_i32(mu_st *g, const char *name, int64_t *shape)
{
    mu_dtype dt;
    int nd;
    const void *data;
    size_t nb;
    int i = mu_st_find(g, name);
    CHECK_MSG(i >= 0, "golden lacks %s", name);
    CHECK(mu_st_info(g, i, &dt, &nd, shape, &data, &nb) == 0);
    CHECK_MSG(dt == MU_I32, "%s: not i32", name);
    return data;
}

static parity_batch parity_batch_of(mu_st *g)
{
    int64_t shape[MU_MAX_DIMS];
    parity_batch p;
    p.ids = golden_i32(g, "input_ids", shape);
    p.B = (int)shape[0];
    p.T = (int)shape[1];
    p.lens = golden_i32(g, "lengths", shape);
    CHECK(shape[0] == p.B);
    p.targets = golden_i32(g, "targets", shape);
    CHECK(shape[0] == p.B && shape[1] == p.T);
    return p;
}

/* tests/golden/SUB/NAME opened, or a failed CHECK; dir receives the folder. */
static mu_st *parity_open_in(const char *sub, const char *name, char *dir, size_t dirlen)
{
    char path[1200], err[512];
    snprintf(dir, dirlen, "%s/tests/golden/%s", mu_test_root(), sub);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    mu_st *g = mu_st_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    return g;
}
static mu_st *parity_open(const char *name, char *dir, size_t dirlen)
{
    return parity_open_in("parity", name, dir, dirlen);
}

/* The model of tests/golden/SUB against transformers' float64 run of it on the batch of its
 * golden file (check_hf_parity: golden.safetensors): logits, loss and the gradient of every
 * parameter. */
static void check_hf_parity_on(const char *sub, const char *golden)
{
    char dir[1024], err[512];
    mu_st *g = parity_open_in(sub, golden, dir, sizeof dir);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    mu_dtype dt;
    int nd;
    int64_t shape[MU_MAX_DIMS];
    const void *data;
    size_t nb;
    parity_batch pb = parity_batch_of(g);
    int B = pb.B, T = pb.T, V = mu_model_config(m)->vocab;
    const int32_t *ids = pb.ids, *lens = pb.lens, *targets = pb.targets;
    CHECK(mu_st_info(g, mu_st_find(g, "logits"), &dt, &nd, shape, &data, &nb) == 0);
    CHECK(dt == MU_F32 && shape[0] == B && shape[1] == T && shape[2] == V);
    const float *want = data;
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_batch b = { B, T, ids, lens };
    mu_fwd_opts o = { .train = 1};
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    double maxrel = logits_maxrel(mu_model_logits(m), want, lens, B, T, V);
    CHECK_MSG(maxrel < 1e-4, "logits max relative error %.3g", maxrel);
    float *dl = malloc(sizeof(float) * B * T * V);
    double loss = mu_model_cross_entropy(m, targets, dl, NULL);
    CHECK(mu_st_info(g, mu_st_find(g, "loss"), &dt, &nd, shape, &data, &nb) == 0);
    CHECK_CLOSE(loss, ((const float *)data)[0], 1e-5, 0);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", p->info.name);
        int gi = mu_st_find(g, gname);
        CHECK_MSG(gi >= 0, "golden lacks %s", gname);
        CHECK(mu_st_info(g, gi, &dt, &nd, shape, &data, &nb) == 0);
        CHECK(nb == (size_t)p->numel * sizeof(float));
        const float *gw = data;
        double scale = 0, maxerr = 0;
        for (int64_t j = 0; j < p->numel; j++) if (fabs(gw[j]) > scale) scale = fabs(gw[j]);
        for (int64_t j = 0; j < p->numel; j++)
            if (fabs(p->g[j] - gw[j]) > maxerr) maxerr = fabs(p->g[j] - gw[j]);
        CHECK_MSG(maxerr <= 1e-3 * scale, "%s: gradient max error %.3g (scale %.3g)",
                  p->info.name, maxerr, scale);
    }
    free(dl);
    mu_model_free(m);
    mu_st_close(g);
}

static void check_hf_parity(const char *sub) { check_hf_parity_on(sub, "golden.safetensors"); }

TEST(model_parity_with_hf_transformers) { check_hf_parity("parity"); }

/* f32 tensor `name` of g: its data, its element count in *n (checked when *n > 0); NULL +
 * a failed CHECK when g lacks it. */
static const float *golden_f32_n(mu_st *g, const char *name, int64_t *n)
{
    mu_dtype dt;
    int nd;
    int64_t shape[MU_MAX_DIMS];
    const void *data;
    size_t nb;
    int i = mu_st_find(g, name);
    CHECK_MSG(i >= 0, "golden lacks %s", name);
    if (i < 0) return NULL;
    CHECK(mu_st_info(g, i, &dt, &nd, shape, &data, &nb) == 0);
    CHECK_MSG(dt == MU_F32 && (*n <= 0 || nb == (size_t)*n * sizeof(float)), "%s: %zu bytes, want %lld f32", name,
              nb, (long long)*n);
    *n = (int64_t)(nb / sizeof(float));
    return data;
}
/* A tensor of a golden file (f32) of n values, or NULL + a failed CHECK. */
static const float *golden_f32(mu_st *g, const char *name, size_t n)
{
    int64_t k = (int64_t)n;
    return golden_f32_n(g, name, &k);
}

/* LoRA adapters (mu_model_add_lora) on every layer matrix of the model of tests/golden/SUB
 * against PEFT's float64 run with the same A, B and scale (tests/gen/gen_lora_parity.py):
 * logits, loss and every dA, dB; the weights frozen. */
/* The golden's PEFT adapters as a mu-delta version 2 at path, mapped as mu-delta(5) says:
 * NAME::lora_A = PEFT's A [r, in] and ::lora_B = B [out, r] on an [out, in] weight, or
 * B^T and A^T on a Conv1D one (stored [in, out]); ::lora_scale = alpha / r. */
/* The golden's adapter of parameter i: A.<name> [r, in] and B.<name> [out, r] (their float
 * counts in *na, *nb) and r; 0 when i can carry none, or is an lm_head that PEFT left alone
 * (every other eligible weight must have one). */
static int golden_adapter(mu_st *g, mu_model *m, int i, const float **A, int64_t *na, const float **B, int64_t *nb)
{
    if (!mu_model_lora_eligible(m, i)) return 0;
    mu_param *p = mu_model_param(m, i);
    char an[200], bn[200];
    snprintf(an, sizeof an, "A.%s", p->info.name);
    snprintf(bn, sizeof bn, "B.%s", p->info.name);
    if (mu_st_find(g, an) < 0 && !strcmp(p->info.role, "lm_head")) return 0;   /* lm_head: where PEFT adapted it */
    *na = *nb = 0;
    *A = golden_f32_n(g, an, na);
    *B = golden_f32_n(g, bn, nb);
    if (!*A || !*B) return 0;
    int in, out;
    mu_model_matrix_dims(m, i, &in, &out);
    return (int)(*na / in);
}

static void write_peft_delta(mu_st *g, mu_model *m, float *scale, const char *path)
{
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_meta(w, "format", MU_DELTA_FORMAT);
    mu_st_writer_meta(w, "version", MU_DELTA_VERSION_LOWRANK);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        const float *A, *B;
        int64_t na, nb, one = 1, r = golden_adapter(g, m, i, &A, &na, &B, &nb);
        if (!r) continue;
        mu_param *p = mu_model_param(m, i);
        char key[220];
        int in, out;
        mu_model_matrix_dims(m, i, &in, &out);
        int64_t ash[2] = {r, p->info.shape[1]}, bsh[2] = {p->info.shape[0], r};
        float *As = malloc(sizeof(float) * ash[0] * ash[1]), *Bs = malloc(sizeof(float) * bsh[0] * bsh[1]);
        for (int64_t j = 0; j < r; j++) {
            for (int k = 0; k < in; k++) *(p->conv1d ? &Bs[k * r + j] : &As[j * in + k]) = A[j * in + k];
            for (int o = 0; o < out; o++) *(p->conv1d ? &As[j * out + o] : &Bs[o * r + j]) = B[o * r + j];
        }
        snprintf(key, sizeof key, "%s::lora_A", p->info.name);
        mu_st_writer_add_copy(w, key, MU_F32, 2, ash, As);
        snprintf(key, sizeof key, "%s::lora_B", p->info.name);
        mu_st_writer_add_copy(w, key, MU_F32, 2, bsh, Bs);
        snprintf(key, sizeof key, "%s::lora_scale", p->info.name);
        mu_st_writer_add_copy(w, key, MU_F32, 1, &one, scale);
        free(As);
        free(Bs);
    }
    char err[512];
    CHECK_MSG(!mu_st_writer_write(w, path, err, sizeof err), "%s", err);
    mu_st_writer_free(w);
}

/* The golden's PEFT adapter saved with use_rslora and lora_alpha = 5/sqrt(3), so that its
 * scale alpha / sqrt(r) is the golden's 5/3, as directory path (its weights linked). */
static void write_rslora_variant(const char *dir, const char *path)
{
    char src[1300], dst[1300], abs[PATH_MAX];
    json_error_t je;
    mkdir(path, 0755);
    snprintf(src, sizeof src, "%s/peft_adapter/adapter_config.json", dir);
    json_t *cfg = json_load_file(src, 0, &je);
    CHECK_MSG(cfg && json_integer_value(json_object_get(cfg, "r")) == 3, "%s", je.text);
    json_object_set_new(cfg, "use_rslora", json_true());
    json_object_set_new(cfg, "lora_alpha", json_real(5 / sqrt(3.0)));
    snprintf(dst, sizeof dst, "%s/adapter_config.json", path);
    CHECK(!json_dump_file(cfg, dst, JSON_REAL_PRECISION(17)));
    json_decref(cfg);
    snprintf(src, sizeof src, "%s/peft_adapter/adapter_model.safetensors", dir);
    snprintf(dst, sizeof dst, "%s/adapter_model.safetensors", path);
    unlink(dst);
    CHECK(realpath(src, abs) && !symlink(abs, dst));
}

/* The model dir with delta (a file or a PEFT adapter directory) gives the golden's logits. */
static void check_delta_logits(const char *dir, const char *delta, mu_st *g, const char *what)
{
    char err[512];
    const char *deltas[1] = {delta};
    mu_model *m = mu_model_load(dir, deltas, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    parity_batch pb = parity_batch_of(g);
    int64_t nl = (int64_t)pb.B * pb.T * mu_model_config(m)->vocab;
    mu_batch b = { pb.B, pb.T, pb.ids, pb.lens };
    mu_fwd_opts o = { 0 };
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    double maxrel = logits_maxrel(mu_model_logits(m), golden_f32_n(g, "logits", &nl), pb.lens, pb.B, pb.T,
                                  mu_model_config(m)->vocab);
    CHECK_MSG(maxrel < 1e-4, "%s: logits with %s: max relative error %.3g", dir, what, maxrel);
    mu_model_free(m);
}

/* PEFT's logits again from the adapters merged at load: as a mu low-rank delta, as PEFT
 * saved them (adapter directory), and saved with rsLoRA's scaling. */
static void check_lora_delta_parity(const char *sub, mu_st *g, const char *dir, float scale)
{
    char path[1200], err[512];
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    snprintf(path, sizeof path, "%s/%s_lora_delta.safetensors", mu_test_tmpdir(), sub);
    write_peft_delta(g, m, &scale, path);
    mu_model_free(m);
    check_delta_logits(dir, path, g, "a low-rank delta");
    snprintf(path, sizeof path, "%s/peft_adapter", dir);
    check_delta_logits(dir, path, g, "the PEFT adapter");
    snprintf(path, sizeof path, "%s/%s_rslora", mu_test_tmpdir(), sub);
    write_rslora_variant(dir, path);
    check_delta_logits(dir, path, g, "the adapter as rsLoRA");
}

static void check_lora_parity(const char *sub)
{
    char dir[1024], err[512];
    mu_st *g = parity_open_in(sub, "lora.safetensors", dir, sizeof dir);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    int64_t one = 1;
    float scale = golden_f32_n(g, "scale", &one)[0];
    int adapted = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        const float *A, *B;
        int64_t na, nb;
        int r = golden_adapter(g, m, i, &A, &na, &B, &nb);
        if (!r) continue;
        mu_param *p = mu_model_param(m, i);
        CHECK_MSG(mu_model_add_lora(m, i, r, scale, A, B) == 0, "%s", p->info.name);
        const mu_lora *a = mu_model_lora(m, i);
        CHECK(a && na == (int64_t)a->r * a->K && nb == (int64_t)a->M * a->r);
        adapted++;
    }
    CHECK(adapted >= 8);
    parity_batch pb = parity_batch_of(g);
    int B = pb.B, T = pb.T, V = mu_model_config(m)->vocab;
    int64_t nl = (int64_t)B * T * V;
    const float *want = golden_f32_n(g, "logits", &nl);
    mu_batch b = { B, T, pb.ids, pb.lens };
    mu_fwd_opts o = { .train = 1 };
    mu_model_zero_grad(m);
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    double maxrel = logits_maxrel(mu_model_logits(m), want, pb.lens, B, T, V);
    CHECK_MSG(maxrel < 1e-4, "logits max relative error %.3g", maxrel);
    float *dl = malloc(sizeof(float) * B * T * V);
    double loss = mu_model_cross_entropy(m, pb.targets, dl, NULL);
    CHECK_CLOSE(loss, golden_f32_n(g, "loss", &one)[0], 1e-5, 0);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        const mu_lora *a = mu_model_lora(m, i);
        CHECK(!mu_model_param(m, i)->g);
        if (!a) continue;
        for (int part = 0; part < 2; part++) {
            char gname[200];
            snprintf(gname, sizeof gname, "grad_%s.%s", part ? "B" : "A", mu_model_param(m, i)->info.name);
            int64_t n = part ? (int64_t)a->M * a->r : (int64_t)a->r * a->K;
            const float *gw = golden_f32_n(g, gname, &n), *got = part ? a->gB : a->gA;
            double sc = 0, maxerr = 0;
            for (int64_t j = 0; j < n; j++) if (fabs(gw[j]) > sc) sc = fabs(gw[j]);
            for (int64_t j = 0; j < n; j++) if (fabs(got[j] - gw[j]) > maxerr) maxerr = fabs(got[j] - gw[j]);
            CHECK_MSG(sc > 0 && maxerr <= 1e-3 * sc, "%s: max error %.3g (scale %.3g)", gname, maxerr, sc);
        }
    }
    free(dl);
    mu_model_free(m);
    check_lora_delta_parity(sub, g, dir, scale);
    mu_st_close(g);
}

/* Llama's Linear layers, and GPT-2's Conv1D ones (stored [in, out]; PEFT's fan_in_fan_out);
 * then the adapters as a low-rank delta (mu-delta(5) version 2) */
/* A PEFT adapter on the embedding (lora_embedding_A [r, vocab], _B [dim, r]: added as
 * scale A^T B^T), lm_head and q_proj, saved with the embedding layers' own weights
 * (base_layer.weight: the model's here; t_loaders' delta_peft_embedding_adapter_values
 * checks that they replace the tensor), gives PEFT's logits (the embedding's scale 1% off:
 * a relative error of 1.07). */
TEST(model_peft_embedding_adapter_parity)
{
    char dir[1024], path[1200];
    mu_st *g = parity_open_in("parity", "lora_embed.safetensors", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/peft_embed_adapter", dir);
    check_delta_logits(dir, path, g, "the PEFT adapter with an embedding adapter");
    mu_st_close(g);
}

TEST(model_lora_parity_with_peft) { check_lora_parity("parity"); }
TEST(model_lora_gpt2_parity_with_peft) { check_lora_parity("parity_gpt2"); }
TEST(model_lora_phi_parity_with_peft) { check_lora_parity("parity_phi"); }   /* dense, fc1, fc2 */
TEST(model_lora_phi3_parity_with_peft) { check_lora_parity("parity_phi3"); }  /* qkv_proj, gate_up_proj */

/* Gemma (tests/gen/gen_gemma_parity.py): GeGLU (tanh form), RMSNorm by 1 + w, embeddings
 * times sqrt(d_model), tied head, head_dim 16 with d_model 32 and 4 heads. */
TEST(model_parity_gemma_with_hf_transformers) { check_hf_parity("parity_gemma"); }

/* OLMo-2 (tests/gen/gen_olmo2_parity.py): norms on the blocks' outputs, none on their
 * inputs, q and k normed over all heads. */
TEST(model_parity_olmo2_with_hf_transformers) { check_hf_parity("parity_olmo2"); }

/* Gemma-2 (tests/gen/gen_gemma2_parity.py): Gemma's conventions with norms on both sides of
 * each block, attention scores and logits soft-capped (to caps they reach), a sliding window
 * of 4 on layers 0 and 2 over 9 tokens, query_pre_attn_scalar 24 with head_dim 16. */
TEST(model_parity_gemma2_with_hf_transformers) { check_hf_parity("parity_gemma2"); }

/* Qwen3 (tests/gen/gen_qwen3_parity.py, transformers 4.51): q and k normed per head by
 * w (not 1 + w), head_dim 16 with hidden 32 and 4 heads, tied head. */
TEST(model_parity_qwen3_with_hf_transformers) { check_hf_parity("parity_qwen3"); }

/* Gemma-3 text (tests/gen/gen_gemma3_parity.py, transformers 4.51): Gemma-2's layout
 * without soft-caps, q and k normed per head, the sliding layers (0 and 2, window 4) with
 * rotary base 100 and the global one with base 10000 scaled linearly by 4. */
TEST(model_parity_gemma3_with_hf_transformers) { check_hf_parity("parity_gemma3"); }

/* A multimodal Gemma-3 checkpoint (tests/gen/gen_gemma3mm_parity.py): its text model from
 * text_config, which lists only what differs from Gemma3TextConfig's defaults (8 heads, 4
 * kv heads, rope bases, ids...), and from the tensors named language_model.*. */
TEST(model_parity_gemma3_multimodal_text_with_hf_transformers)
{
    check_hf_parity("parity_gemma3mm");
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/parity_gemma3mm/config.json", mu_test_root());
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(c.model_type, "gemma3_text") && !strcmp(c.tensor_prefix, "language_model.") &&
          c.n_head == 8 && c.n_kv_head == 4 && c.head_dim == 8 && c.rope_theta == 1e6f &&
          c.bos_id == 2 && c.eos_id == 1 && c.pad_id == 0 && c.global_every == 2);
}

/* Llama 3.1's rope (tests/gen/gen_llama31_parity.py): theta 500000 with the llama3 scaling
 * (factor 8), whose bands all occur at head_dim 16, over 40 positions. */
TEST(model_parity_llama31_with_hf_transformers) { check_hf_parity("parity_llama31"); }

/* For the architectures beyond Llama's layout (tests/golden/SUB): each parameter trained
 * alone gets the gradient it gets when all train (the backward stops no earlier than its
 * role needs), and decoding through the KV cache gives the full forward's logits, on the
 * batch of its golden file (check_alone_grads_and_cache: golden.safetensors). */
static void check_alone_grads_and_cache_on(const char *sub, const char *golden)
{
    char dir[1024], err[512];
    mu_st *g = parity_open_in(sub, golden, dir, sizeof dir);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    parity_batch pb = parity_batch_of(g);
    int B = pb.B, T = pb.T, V = mu_model_config(m)->vocab, n = mu_model_n_params(m);
    mu_batch b = { B, T, pb.ids, pb.lens };
    mu_fwd_opts o = { .train = 1 };
    float *dl = malloc(sizeof(float) * B * T * V), **full = calloc(n, sizeof *full);
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
    mu_model_cross_entropy(m, pb.targets, dl, NULL);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    for (int i = 0; i < n; i++) {
        full[i] = malloc(mu_model_param(m, i)->numel * sizeof(float));
        mu_model_get_grad(m, i, full[i]);
    }
    for (int i = 0; i < n; i++) {
        mu_param *p = mu_model_param(m, i);
        CHECK(mu_model_set_all_trainable(m, 0) == 0 && mu_model_set_trainable(m, i, 1) == 0);
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        mu_model_cross_entropy(m, pb.targets, dl, NULL);
        CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
        double maxerr = 0, scale = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            if (fabs(full[i][j]) > scale) scale = fabs(full[i][j]);
            if (fabs(p->g[j] - full[i][j]) > maxerr) maxerr = fabs(p->g[j] - full[i][j]);
        }
        CHECK_MSG(scale > 0 && maxerr <= 1e-6 * scale, "%s alone: gradient max error %.3g (scale %.3g)",
                  p->info.name, maxerr, scale);
        free(full[i]);
    }
    free(full);
    /* row 0 (all T tokens): prefill 3, then one token at a time */
    mu_batch row = { 1, T, pb.ids, NULL };
    CHECK(mu_model_forward(m, &row, NULL, err, sizeof err) == 0);
    float *ref = malloc(sizeof(float) * T * V);
    memcpy(ref, mu_model_logits(m), sizeof(float) * T * V);
    mu_kvcache *c = mu_kvcache_new(m, 1, T);
    mu_fwd_opts co = { .logits_last_only = 1, .cache = c };
    for (int t0 = 0, len = 3; t0 < T; t0 += len, len = 1) {
        mu_batch sb = { 1, len, pb.ids + t0, NULL };
        CHECK_MSG(mu_model_forward(m, &sb, &co, err, sizeof err) == 0, "%s", err);
        const float *lg = mu_model_logits(m);
        for (int j = 0; j < V; j++) CHECK_NEAR(lg[j], ref[(size_t)(t0 + len - 1) * V + j], 1e-5);
    }
    mu_kvcache_free(c);
    free(ref); free(dl);
    mu_model_free(m);
    mu_st_close(g);
}
static void check_alone_grads_and_cache(const char *sub) { check_alone_grads_and_cache_on(sub, "golden.safetensors"); }

TEST(model_gemma_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gemma"); }

/* Qwen2 with use_sliding_window (tests/gen/gen_qwen2_window_parity.py, transformers 5.25):
 * layer 0 global, layers 1 and 2 with a window of 4 over 9 tokens (max_window_layers 1,
 * layer_types). */
TEST(model_parity_qwen2_window_with_hf_transformers)
{
    check_hf_parity("parity_qwen2_window");
    check_alone_grads_and_cache("parity_qwen2_window");
}

/* GPT-NeoX (tests/gen/gen_neox_parity.py, transformers 5.25): LayerNorms with biases, fused
 * q/k/v, half of each head rotating, parallel residual, plain GELU MLP (erf form), biases on
 * every projection; parity_neox_seq: two heads of 16 with a quarter rotating (base 500),
 * sequential residual, gelu_new, no attention biases. Both configs are transformers 5's
 * (rope_parameters). */
TEST(model_parity_neox_with_hf_transformers)
{
    check_hf_parity("parity_neox");
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/parity_neox/config.json", mu_test_root());
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.layer_norm && c.plain_mlp && c.fused_qkv && c.parallel_residual && c.qkv_bias && c.o_bias &&
          c.mlp_bias && c.head_dim == 8 && c.rotary_dim == 4 && c.n_kv_head == 4 && !c.tie_embeddings &&
          c.rms_eps == 1e-5f && c.rope_theta == 10000.0f && !strcmp(c.hidden_act, "gelu"));
}
TEST(model_parity_neox_sequential_with_hf_transformers)
{
    check_hf_parity("parity_neox_seq");
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/parity_neox_seq/config.json", mu_test_root());
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(!c.parallel_residual && !c.qkv_bias && !c.o_bias && c.mlp_bias && c.head_dim == 16 &&
          c.rotary_dim == 4 && c.rope_theta == 500.0f && !strcmp(c.hidden_act, "gelu_new"));
}
TEST(model_neox_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_neox"); }

/* GPT-2 (tests/gen/gen_gpt2_parity.py, transformers 5.25): learned positions, LayerNorms with
 * biases, Conv1D weights read as stored ([in, out]), fused c_attn in blocks, gelu_new, tied
 * head; parity_gpt2_untied: an untied lm_head, gelu's erf form, n_inner 4 n_embd, and the
 * tensors stored without "transformer." as the hub's gpt2 checkpoint. */
TEST(model_parity_gpt2_with_hf_transformers)
{
    check_hf_parity("parity_gpt2");
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/parity_gpt2/config.json", mu_test_root());
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.layer_norm && c.plain_mlp && c.fused_qkv == MU_QKV_BLOCKS && c.learned_pos && c.conv1d &&
          !c.parallel_residual && c.tie_embeddings && c.d_ff == 64 && c.max_pos == 64 && c.head_dim == 8 &&
          !strcmp(c.hidden_act, "gelu_new"));
}
TEST(model_parity_gpt2_untied_bare_names_with_hf_transformers)
{
    check_hf_parity("parity_gpt2_untied");
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/parity_gpt2_untied/config.json", mu_test_root());
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(!c.tie_embeddings && c.d_ff == 128 && !strcmp(c.hidden_act, "gelu"));
}
TEST(model_gpt2_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gpt2"); }
TEST(model_gpt2_untied_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gpt2_untied"); }

/* The config of tests/golden/SUB, parsed as the model loader parses it (a failed CHECK when it
 * is refused). */
static mu_config parity_config(const char *sub)
{
    char path[1200], err[512];
    mu_config c;
    snprintf(path, sizeof path, "%s/tests/golden/%s/config.json", mu_test_root(), sub);
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    return c;
}

/* Phi (tests/gen/gen_phi_parity.py, transformers 5.25): LayerNorms with biases, one input
 * norm for the parallel attention and MLP, separate q/k/v with biases, half of each head
 * rotating, gelu_new, dense and fc1/fc2 biases, an untied lm_head with a bias;
 * parity_phi_gqa: 2 kv heads for 4, three quarters rotating (base 500), gelu's erf form, and
 * lm_head tied to the embedding with a bias of its own. */
TEST(model_parity_phi_with_hf_transformers)
{
    check_hf_parity("parity_phi");
    mu_config c = parity_config("parity_phi");
    CHECK(c.layer_norm && c.plain_mlp && !c.fused_qkv && c.parallel_residual && c.shared_norm && c.head_bias &&
          c.qkv_bias && c.o_bias && c.mlp_bias && c.head_dim == 8 && c.rotary_dim == 4 && c.n_kv_head == 4 &&
          !c.tie_embeddings && c.rope_theta == 10000.0f && !strcmp(c.hidden_act, "gelu_new"));
}
TEST(model_parity_phi_gqa_tied_with_hf_transformers)
{
    check_hf_parity("parity_phi_gqa");
    mu_config c = parity_config("parity_phi_gqa");
    CHECK(c.n_kv_head == 2 && c.rotary_dim == 6 && c.tie_embeddings && c.head_bias && c.rope_theta == 500.0f &&
          !strcmp(c.hidden_act, "gelu"));
}
TEST(model_phi_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_phi"); }

/* Phi-3 (tests/gen/gen_phi3_parity.py, transformers 5.25): Llama's layout with qkv_proj (the q,
 * k and v blocks; 2 kv heads for 4) and gate_up_proj (the gate, then the up rows) fused, a
 * 4-token sliding window; parity_phi3_partial: half of each head rotating (base 500), a tied
 * head. */
TEST(model_parity_phi3_with_hf_transformers)
{
    check_hf_parity("parity_phi3");
    mu_config c = parity_config("parity_phi3");
    CHECK(c.fused_qkv == MU_QKV_BLOCKS && c.fused_gate_up && !c.layer_norm && !c.plain_mlp && !c.qkv_bias &&
          c.n_kv_head == 2 && c.head_dim == 8 && c.sliding_window == 4 && !c.rotary_dim && !c.tie_embeddings &&
          !strcmp(c.hidden_act, "silu"));
}
TEST(model_parity_phi3_partial_tied_with_hf_transformers)
{
    check_hf_parity("parity_phi3_partial");
    mu_config c = parity_config("parity_phi3_partial");
    CHECK(c.rotary_dim == 4 && c.tie_embeddings && c.rope_theta == 500.0f && !c.sliding_window);
}
TEST(model_phi3_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_phi3"); }

/* Phi-3.5's longrope (parity_phi3_longrope: original length 8 of 64, so the rotated dims are
 * scaled by sqrt 2): rows reaching position 9 rotate with the long factors, rows within 8
 * (golden_short.safetensors) with the short ones, as transformers picks them per forward. */
TEST(model_parity_phi3_longrope_with_hf_transformers)
{
    check_hf_parity("parity_phi3_longrope");
    check_hf_parity_on("parity_phi3_longrope", "golden_short.safetensors");
    mu_config c = parity_config("parity_phi3_longrope");
    CHECK(!strcmp(c.rope_scaling, "longrope") && c.rope_pairs == 4 && c.rope_orig_max_pos == 8 &&
          c.rope_factor == 8.0f && c.rope_short[1] == 1.25f && c.rope_long[3] == 4.0f);
    CHECK_NEAR(c.rope_attn, sqrt(2.0), 1e-6);
    float s[4], l[4];
    mu_rope_inv_freq(&c, s);
    mu_rope_inv_freq_long(&c, l);
    CHECK_NEAR(s[1], 1.0 / (1.25 * pow(10000.0, 2.0 / 8)), 1e-7);
    CHECK_NEAR(l[1], 1.0 / (2.0 * pow(10000.0, 2.0 / 8)), 1e-7);
}
/* (Within the original length: a cache decoding past it would rotate its new tokens with the
 * long factors and keep its cached keys' short ones, as transformers does, unlike one forward
 * over the whole row.) */
TEST(model_phi3_longrope_alone_grads_and_kv_cache)
{
    check_alone_grads_and_cache_on("parity_phi3_longrope", "golden_short.safetensors");
}
TEST(model_phi3_partial_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_phi3_partial"); }
TEST(model_phi_gqa_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_phi_gqa"); }

/* Positions past GPT-2's n_positions have no embedding: refused, not read out of bounds. */
TEST(model_gpt2_positions_past_n_positions_refused)
{
    char dir[1024], err[512];
    mu_st *g = parity_open_in("parity_gpt2", "golden.safetensors", dir, sizeof dir);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    int32_t ids[65] = { 0 };
    mu_batch b = { 1, 65, ids, NULL };
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == -1 && strstr(err, "n_positions"));
    b.T = 64;
    CHECK_MSG(mu_model_forward(m, &b, NULL, err, sizeof err) == 0, "%s", err);
    mu_kvcache *c = mu_kvcache_new(m, 1, 80);
    mu_fwd_opts co = { .logits_last_only = 1, .cache = c };
    CHECK(mu_model_forward(m, &b, &co, err, sizeof err) == 0);
    b.T = 1;
    CHECK(mu_model_forward(m, &b, &co, err, sizeof err) == -1 && strstr(err, "positions up to 64"));
    mu_kvcache_free(c);
    mu_model_free(m);
    mu_st_close(g);
}
TEST(model_neox_sequential_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_neox_seq"); }

/* tests/golden/SUB/model.gguf (tests/gen/make_arch_ggufs.py: written by llama.cpp's gguf
 * package as its converter stores the model) is the model of the directory (or of ref,
 * when non-NULL): same config flags, same logits. */
static void check_gguf_same_as(const char *sub, const char *ref)
{
    char dir[1024], path[1100], err[512];
    mu_st *g = parity_open_in(sub, "golden.safetensors", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    mu_model *a = mu_model_load(ref ? ref : dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(a != NULL, "%s", err);
    mu_model *b = mu_model_load(path, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(b != NULL, "%s", err);
    const mu_config *ca = mu_model_config(a), *cb = mu_model_config(b);
    CHECK(ca->norm_plus_one == cb->norm_plus_one && ca->embed_scale == cb->embed_scale &&
          ca->post_norm == cb->post_norm && ca->qk_norm == cb->qk_norm && ca->head_dim == cb->head_dim &&
          ca->tie_embeddings == cb->tie_embeddings && !strcmp(ca->hidden_act, cb->hidden_act) &&
          ca->sandwich_norm == cb->sandwich_norm && ca->attn_softcap == cb->attn_softcap &&
          ca->final_softcap == cb->final_softcap && ca->sliding_window == cb->sliding_window &&
          ca->global_every == cb->global_every && mu_config_attn_scale(ca) == mu_config_attn_scale(cb) &&
          !strcmp(ca->rope_scaling, cb->rope_scaling) && ca->rope_factor == cb->rope_factor &&
          ca->rope_local_theta == cb->rope_local_theta && !strcmp(ca->model_type, cb->model_type) &&
          ca->rotary_dim == cb->rotary_dim && ca->layer_norm == cb->layer_norm && ca->shared_norm == cb->shared_norm &&
          ca->head_bias == cb->head_bias && ca->rms_eps == cb->rms_eps && ca->rope_theta == cb->rope_theta);
    CHECK_EQ_INT(mu_model_n_params(a), mu_model_n_params(b));
    parity_batch pb = parity_batch_of(g);
    int V = ca->vocab, n = pb.B * pb.T * V;
    mu_batch batch = { pb.B, pb.T, pb.ids, pb.lens };
    CHECK(mu_model_forward(a, &batch, NULL, err, sizeof err) == 0);
    float *la = malloc(sizeof(float) * n);
    memcpy(la, mu_model_logits(a), sizeof(float) * n);
    CHECK(mu_model_forward(b, &batch, NULL, err, sizeof err) == 0);
    double maxrel = logits_maxrel(mu_model_logits(b), la, pb.lens, pb.B, pb.T, V);
    CHECK_MSG(maxrel < 1e-6, "%s: GGUF logits max relative error %.3g", sub, maxrel);
    free(la);
    mu_model_free(a); mu_model_free(b);
    mu_st_close(g);
}

static void check_gguf_same_as_dir(const char *sub) { check_gguf_same_as(sub, NULL); }

TEST(model_gemma_gguf_same_as_dir) { check_gguf_same_as_dir("parity_gemma"); }
TEST(model_olmo2_gguf_same_as_dir) { check_gguf_same_as_dir("parity_olmo2"); }
/* Phi-2's GGUF (architecture phi2): its LayerNorms' eps and rotating dims from its own keys,
 * dense, fc1, fc2, final_layernorm and lm_head's bias under llama.cpp's names. */
TEST(model_phi_gguf_same_as_dir) { check_gguf_same_as_dir("parity_phi"); }
/* Phi-3's GGUF (architecture phi3): attn_qkv and ffn_up hold the fused tensors as stored, the
 * window from attention.sliding_window. */
TEST(model_phi3_gguf_same_as_dir) { check_gguf_same_as_dir("parity_phi3"); }
/* ... and with longrope: the factors from rope_factors_long/short, the attention factor and
 * the original length from their keys (rows of 9: the long factors). */
TEST(model_phi3_longrope_gguf_same_as_dir) { check_gguf_same_as_dir("parity_phi3_longrope"); }

/* tests/golden/SUB/model.gguf with tensor `from` renamed `to` (of the same length) is refused
 * in one line naming the file and holding needle. */
static void check_gguf_renamed_refused(const char *sub, const char *from, const char *to, const char *needle)
{
    char path[1200], q[1200], err[512] = "";
    snprintf(path, sizeof path, "%s/tests/golden/%s/model.gguf", mu_test_root(), sub);
    size_t len, n = strlen(from);
    unsigned char *b = mu_test_slurp(path, &len);
    unsigned char *at = memmem(b, len, from, n);
    CHECK(at != NULL && strlen(to) == n);
    if (at) memcpy(at, to, n);
    snprintf(q, sizeof q, "%s/renamed_%s.gguf", mu_test_tmpdir(), sub);
    mu_test_spit(q, b, len);
    free(b);
    mu_model *m = mu_model_load(q, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(!m && strstr(err, q) && strstr(err, needle), "%s", err);
    mu_model_free(m);
}

/* An older phi-2 conversion's fused attn_qkv, and longrope factors of the wrong size: refused. */
TEST(model_phi_gguf_fused_qkv_and_longrope_refused)
{
    check_gguf_renamed_refused("parity_phi", "blk.0.ffn_down.weight", "blk.0.attn_qkv.weight", "fused attn_qkv");
    check_gguf_renamed_refused("parity_phi3", "blk.0.attn_output.weight", "rope_factors_long.weight",
                               "rope_factors_long.weight: has 1024 elements, caller expects 4");
}

/* A Llama 3.1 GGUF: the llama3 scaling as llama.cpp's converter stores it, per-pair
 * divisors in rope_freqs.weight, read back as the HF parameters (factor 8, low 1, high 4,
 * original 8192). */
TEST(model_llama31_gguf_same_as_dir)
{
    check_gguf_same_as_dir("parity_llama31");
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/parity_llama31/model.gguf", mu_test_root());
    mu_model *m = mu_model_load(path, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    const mu_config *c = mu_model_config(m);
    CHECK(!strcmp(c->rope_scaling, "llama3") && c->rope_factor == 8.0f && c->rope_low_freq == 1.0f &&
          c->rope_high_freq == 4.0f && c->rope_orig_max_pos == 8192);
    mu_model_free(m);
    /* divisors of no known scaling (the last one 9 instead of 8): refused in one line */
    mu_gguf *g = mu_gguf_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    float div[8];
    CHECK_MSG(mu_gguf_tensor_f32(g, "rope_freqs.weight", div, 8, err, sizeof err) == 0, "%s", err);
    mu_gguf_close(g);
    size_t n;
    unsigned char *buf = mu_test_slurp(path, &n);
    unsigned char *at = memmem(buf, n, div, sizeof div);
    CHECK(at != NULL);
    float nine = 9.0f;
    memcpy(at + 7 * sizeof(float), &nine, sizeof nine);
    char bad[1200];
    snprintf(bad, sizeof bad, "%s/rope9.gguf", mu_test_tmpdir());
    mu_test_spit(bad, buf, n);
    free(buf);
    CHECK(mu_model_load(bad, NULL, 0, mu_backend_cpu(), err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "rope9.gguf: rope_freqs.weight is no llama3 rope scaling") && !strchr(err, '\n'),
              "%s", err);
}

/* Gemma-2's and Gemma-3's GGUFs (llama.cpp's keys for the soft-caps and the window) have no
 * query_pre_attn_scalar: as llama.cpp, mu scales by head_dim^-1/2 (but for the 27B models);
 * nor Gemma-3's window pattern and local rotary base, which llama.cpp fixes at 6 and 10000.
 * So each is the directory's model with those values: written to a copy of it here. */
static void check_gguf_same_as_dir_llamacpp(const char *sub)
{
    char dir[1024], ref[1100], path[1200], target[1200], err[512];
    snprintf(dir, sizeof dir, "%s/tests/golden/%s", mu_test_root(), sub);
    mu_config c;
    snprintf(path, sizeof path, "%s/config.json", dir);
    CHECK_MSG(mu_config_from_json_file(path, &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.query_scalar == 24.0f && c.head_dim == 16);
    c.query_scalar = 0;                                      /* = head_dim */
    if (c.rope_local_theta > 0) {
        CHECK(c.rope_local_theta != 10000.0f && c.global_every != 6);
        c.rope_local_theta = 10000.0f;
        c.global_every = 6;
    }
    snprintf(ref, sizeof ref, "%s/%s_ref", mu_test_tmpdir(), sub);
    CHECK(mkdir(ref, 0755) == 0 || errno == EEXIST);
    snprintf(path, sizeof path, "%s/config.json", ref);
    CHECK_MSG(mu_config_write_json(&c, path, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", ref);
    snprintf(target, sizeof target, "%s/model.safetensors", dir);
    size_t n;
    unsigned char *weights = mu_test_slurp(target, &n);
    mu_test_spit(path, weights, n);
    free(weights);
    check_gguf_same_as(sub, ref);
}

TEST(model_gemma2_gguf_same_as_dir) { check_gguf_same_as_dir_llamacpp("parity_gemma2"); }
TEST(model_gemma3_gguf_same_as_dir) { check_gguf_same_as_dir_llamacpp("parity_gemma3"); }
TEST(model_olmo2_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_olmo2"); }
TEST(model_gemma2_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gemma2"); }
TEST(model_gemma3_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gemma3"); }
TEST(model_gemma3mm_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_gemma3mm"); }
TEST(model_qwen3_alone_grads_and_kv_cache) { check_alone_grads_and_cache("parity_qwen3"); }
TEST(model_qwen3_gguf_same_as_dir) { check_gguf_same_as_dir("parity_qwen3"); }

/* ---- bf16 weights ------------------------------------------------------------------------------ */

/* The bf16-weight model (GEMM operands rounded to bf16, f32 accumulation) against the
 * torch reference of tests/gen/gen_bf16_parity.py: logits, loss and every gradient. The
 * f32 model's results are far farther away (logits 0.36 vs 6e-7 relative, gradients
 * 1e-2 vs 1e-7 here), so the test sees the difference. */
TEST(model_bf16_parity_with_torch)
{
    char dir[1024], err[512];
    mu_st *g = parity_open("golden.safetensors", dir, sizeof dir);
    mu_st *g16 = parity_open("golden_bf16.safetensors", dir, sizeof dir);
    mu_model *m = mu_model_load_as(dir, NULL, NULL, 0, mu_backend_cpu(), MU_WEIGHTS_BF16, err,
                                   sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    CHECK(mu_model_weights(m) == MU_WEIGHTS_BF16);
    parity_batch pb = parity_batch_of(g);
    int B = pb.B, T = pb.T, V = mu_model_config(m)->vocab;
    const int32_t *ids = pb.ids, *lens = pb.lens, *targets = pb.targets;
    size_t nl = (size_t)B * T * V;
    const float *want = golden_f32(g16, "logits", nl), *want32 = golden_f32(g, "logits", nl);
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_batch b = { B, T, ids, lens };
    mu_fwd_opts o = { .train = 1 };
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    const float *lg = mu_model_logits(m);
    double rel = logits_maxrel(lg, want, lens, B, T, V);
    double rel32 = logits_maxrel(lg, want32, lens, B, T, V);
    CHECK_MSG(rel < 1e-4, "bf16 logits max relative error %.3g", rel);
    CHECK_MSG(rel32 > 100 * rel, "bf16 logits as close to f32 (%.3g) as to bf16 (%.3g)", rel32, rel);
    float *dl = malloc(sizeof(float) * nl);
    CHECK(dl);
    double loss = mu_model_cross_entropy(m, targets, dl, NULL);
    CHECK_CLOSE(loss, golden_f32(g16, "loss", 1)[0], 1e-4, 0);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        char gname[160];
        snprintf(gname, sizeof gname, "grad.%s", p->info.name);
        const float *gw = golden_f32(g16, gname, (size_t)p->numel);
        const float *gw32 = golden_f32(g, gname, (size_t)p->numel);
        /* relative L2 errors: against the bf16 reference, and the f32 one's distance */
        double ss = 0, se = 0, se32 = 0;
        for (int64_t j = 0; j < p->numel; j++) {
            ss += (double)gw[j] * gw[j];
            se += ((double)p->g[j] - gw[j]) * ((double)p->g[j] - gw[j]);
            se32 += ((double)gw32[j] - gw[j]) * ((double)gw32[j] - gw[j]);
        }
        double e = sqrt(se / ss), e32 = sqrt(se32 / ss);
        /* Rounding dY to bf16 amplifies summation-order differences: a value on the
         * other side of a rounding boundary moves one bf16 ulp and pushes later values
         * across theirs. Here mu and torch (both f32) agree to ~1e-7; a float64 reference
         * sits up to 0.3 x the f32 distance away in layer 0. The bound tolerates such a
         * cascade on other CPUs; the head, reached by one rounding, is held tight. */
        int head = !strcmp(p->info.role, "lm_head") || !strcmp(p->info.role, "final_norm");
        CHECK_MSG(e < 0.5 * e32 && e < (head ? 1e-4 : 5e-3),
                  "%s: gradient relative L2 error %.3g (f32 gradients: %.3g)", p->info.name, e, e32);
    }
    free(dl);
    mu_model_free(m);
    mu_st_close(g16);
    mu_st_close(g);
}

/* Random initialization runs parameters in parallel: the values must not depend on the
 * number of threads. */
TEST(model_init_random_independent_of_threads)
{
    char err[256];
    mu_config c = tiny_config(0, 1);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    mu_model *a = mu_model_init_random(&c, 42, 0.3f, mu_backend_cpu(), err, sizeof err);
    omp_set_num_threads(4);
    mu_model *b = mu_model_init_random(&c, 42, 0.3f, mu_backend_cpu(), err, sizeof err);
    omp_set_num_threads(saved);
    CHECK(a && b);
    for (int i = 0; i < mu_model_n_params(a); i++) {
        mu_param *pa = mu_model_param(a, i), *pb = mu_model_param(b, i);
        CHECK_MSG(memcmp(pa->w, pb->w, (size_t)pa->numel * sizeof(float)) == 0, "%s differs",
                  pa->info.name);
    }
    mu_model_free(a);
    mu_model_free(b);
}

/* mu_model_backward_ce = mu_model_cross_entropy + mu_model_backward, bit for bit, on the
 * CPU and on the CPU posing as a device (dlogits kept in backend memory). */
TEST(model_backward_ce_equals_host_round_trip)
{
    char err[256];
    mu_backend fake = *mu_backend_cpu();
    fake.host_memory = 0;
    const mu_backend *bes[2] = { mu_backend_cpu(), &fake };
    mu_config c = tiny_config(1, 1);
    int32_t ids[2 * 6] = { 3, 9, 4, 1, 7, 2,  5, 8, 2, 0, 0, 0 }, lens[2] = { 6, 3 };
    int32_t tg[2 * 6] = { 9, 4, 1, 7, 2, -1,  8, 2, -1, -1, -1, -1 };
    for (int k = 0; k < 2; k++) {
        mu_model *m = mu_model_init_random(&c, 11, 0.3f, bes[k], err, sizeof err);
        CHECK_MSG(m, "%s", err);
        CHECK(mu_model_set_all_trainable(m, 1) == 0);
        int n = mu_model_n_params(m), V = c.vocab;
        mu_batch b = { 2, 6, ids, lens };
        mu_fwd_opts o = { .train = 1 };
        float *dl = malloc(sizeof(float) * 12 * V);
        float **g1 = calloc(n, sizeof *g1);
        CHECK(dl && g1);
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        int c1 = 0, c2 = 0;
        double l1 = mu_model_cross_entropy(m, tg, dl, &c1);
        CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
        for (int i = 0; i < n; i++) {
            g1[i] = malloc(sizeof(float) * mu_model_param(m, i)->numel);
            mu_model_get_grad(m, i, g1[i]);
        }
        mu_model_zero_grad(m);
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        double l2 = mu_model_backward_ce(m, tg, NULL, 0, &c2, err, sizeof err);
        CHECK_MSG(!isnan(l2), "%s", err);
        CHECK(l1 == l2 && c1 == 7 && c2 == 7);
        float *g2 = NULL;
        for (int i = 0; i < n; i++) {
            int64_t ne = mu_model_param(m, i)->numel;
            g2 = realloc(g2, sizeof(float) * ne);
            mu_model_get_grad(m, i, g2);
            CHECK_MSG(memcmp(g1[i], g2, sizeof(float) * ne) == 0, "%s: gradient differs (%s)",
                      mu_model_param(m, i)->info.name, k ? "device" : "cpu");
            free(g1[i]);
        }
        free(g2); free(g1); free(dl);
        mu_model_free(m);
    }
}

/* Storage rules of a bf16 model: GEMM weights read back rounded, norms exact, a trainable
 * weight keeps its f32 master, and mu_model_param_changed refreshes what the GEMMs read. */
TEST(model_bf16_storage_and_master_copy)
{
    char err[256];
    mu_config c = tiny_config(0, 0);
    mu_model *m = mu_model_init_random_as(&c, 5, 0.3f, mu_backend_cpu(), MU_WEIGHTS_BF16, err,
                                          sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    int q = mu_model_find(m, "model.layers.0.self_attn.q_proj.weight");
    int nrm = mu_model_find(m, "model.layers.0.input_layernorm.weight");
    CHECK(q >= 0 && nrm >= 0);
    mu_param *pq = mu_model_param(m, q), *pn = mu_model_param(m, nrm);
    CHECK(pq->w16 != NULL && pq->w == NULL && pn->w != NULL && pn->w16 == NULL);
    size_t n = (size_t)pq->numel;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
    CHECK(x && y);
    for (size_t j = 0; j < n; j++) x[j] = 1.0f + (float)j * 1e-4f;     /* not bf16 values */
    CHECK(mu_model_set_param(m, q, x) == 0);
    CHECK(mu_model_get_param(m, q, y) == 0);
    for (size_t j = 0; j < n; j++) CHECK_EQ_INT(mu_f32_to_bf16(x[j]), mu_f32_to_bf16(y[j]));
    CHECK(y[1] == 1.0f && x[1] != 1.0f);       /* 1.0001 rounds to 1 in bf16 */
    /* logits before / after a master update that only mu_model_param_changed publishes */
    int32_t ids[4] = { 1, 5, 9, 2 };
    mu_batch b = { 1, 4, ids, NULL };
    size_t nl = (size_t)4 * c.vocab;
    float *l0 = malloc(nl * sizeof *l0), *l1 = malloc(nl * sizeof *l1);
    CHECK(l0 && l1);
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    memcpy(l0, mu_model_logits(m), nl * sizeof *l0);
    CHECK(mu_model_set_trainable(m, q, 1) == 0);
    CHECK(pq->w != NULL);
    CHECK(mu_model_get_param(m, q, y) == 0);
    CHECK(y[1] == 1.0f);                        /* the master starts from the bf16 values */
    for (size_t j = 0; j < n; j++) pq->w[j] += 0.25f;
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    CHECK(memcmp(mu_model_logits(m), l0, nl * sizeof *l0) == 0);   /* not yet published */
    mu_model_param_changed(m, q);
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    memcpy(l1, mu_model_logits(m), nl * sizeof *l1);
    CHECK(memcmp(l1, l0, nl * sizeof *l0) != 0);
    CHECK(mu_model_get_param(m, q, y) == 0);
    CHECK(y[1] == 1.25f);                       /* reads the master */
    free(x); free(y); free(l0); free(l1);
    mu_model_free(m);
}

/* ---- the real model: stories260K greedy decoding ------------------------------------------- */
TEST(model_stories260k_greedy_200)
{
    const char *shared = mu_test_shared_data();
    if (!shared) SKIP("../shared/data absent: stories260K not available");
    char dir[1024], path[1100], err[512];
    snprintf(dir, sizeof dir, "%s/models/stories260K", shared);
    snprintf(path, sizeof path, "%s/greedy_200.json", dir);
    json_error_t je;
    json_t *want = json_load_file(path, 0, &je);
    if (!want) SKIP("%s: %s", path, je.text);
    json_t *arr = json_object_get(want, "greedy_ids"), *pr = json_object_get(want, "prompt_ids");
    CHECK_MSG(json_is_array(arr) && json_is_array(pr), "%s: no greedy_ids/prompt_ids", path);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    int n_prompt = (int)json_array_size(pr), n = (int)json_array_size(arr);
    int32_t prompt[16], out[512];
    CHECK(n_prompt >= 1 && n_prompt <= 16 && n > n_prompt && n - n_prompt <= 512);
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)json_integer_value(json_array_get(pr, i));
    int want_n = n - n_prompt;      /* greedy_ids = prompt followed by the generated ids */
    CHECK_EQ_INT(want_n, 200);
    int got = mu_model_greedy(m, prompt, n_prompt, want_n, -1, out, err, sizeof err);
    CHECK_MSG(got == want_n, "greedy: %s", err);
    for (int i = 0; i < want_n; i++)
        CHECK_MSG(out[i] == json_integer_value(json_array_get(arr, i + n_prompt)),
                  "token %d: got %d, want %lld", i, out[i],
                  (long long)json_integer_value(json_array_get(arr, i + n_prompt)));
    json_decref(want);
    mu_model_free(m);
}

/* ---- site specs (lib/sites.c) --------------------------------------------------------------- */
#include "sites.h"

TEST(sites_parse_layers_positions)
{
    mu_site_spec s;
    char err[256], buf[256];
    CHECK(mu_site_parse("resid_post:0-3:subject_last", 8, &s, err, sizeof err) == 0);
    CHECK(s.site == MU_SITE_RESID_POST && s.n_layers == 4 && s.layers[3] == 3);
    CHECK(s.pos == MU_POS_SUBJECT_LAST);
    CHECK(mu_site_spec_has_layer(&s, 2) && !mu_site_spec_has_layer(&s, 4));
    int pos[16];
    CHECK_EQ_INT(mu_site_positions(&s, 10, 2, 5, pos, 16, err, sizeof err), 1);
    CHECK_EQ_INT(pos[0], 4);
    CHECK(mu_site_positions(&s, 10, -1, -1, pos, 16, err, sizeof err) == -1);
    CHECK(strstr(err, "subject") != NULL);
    mu_site_spec_free(&s);

    CHECK(mu_site_parse("mlp_post:0,4,7,2-3:last", 8, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(s.n_layers, 5);
    mu_site_spec_format(&s, buf, sizeof buf);
    CHECK_STR(buf, "mlp_post:0,2-4,7:last");
    CHECK_EQ_INT(mu_site_positions(&s, 6, -1, -1, pos, 16, err, sizeof err), 1);
    CHECK_EQ_INT(pos[0], 5);
    mu_site_spec_free(&s);

    CHECK(mu_site_parse("attn_head:all:0,-1,2,2", 3, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(s.n_layers, 3);
    CHECK_EQ_INT(mu_site_positions(&s, 5, -1, -1, pos, 16, err, sizeof err), 3);
    CHECK(pos[0] == 0 && pos[1] == 2 && pos[2] == 4);
    CHECK(mu_site_positions(&s, 2, -1, -1, pos, 16, err, sizeof err) == -1);   /* 2 >= len */
    mu_site_spec_free(&s);

    CHECK(mu_site_parse("mlp_in", 2, &s, err, sizeof err) == 0);            /* defaults */
    CHECK(s.n_layers == 2 && s.pos == MU_POS_ALL);
    CHECK_EQ_INT(mu_site_positions(&s, 4, -1, -1, pos, 16, err, sizeof err), 4);
    mu_site_spec_free(&s);

    CHECK(mu_site_parse("embed::subject", 2, &s, err, sizeof err) == 0);
    CHECK(s.site == MU_SITE_EMBED && s.pos == MU_POS_SUBJECT);
    CHECK_EQ_INT(mu_site_positions(&s, 9, 3, 6, pos, 16, err, sizeof err), 3);
    CHECK(pos[0] == 3 && pos[2] == 5);
    mu_site_spec_format(&s, buf, sizeof buf);
    CHECK_STR(buf, "embed:all:subject");
    mu_site_spec_free(&s);
}

TEST(sites_parse_errors)
{
    mu_site_spec s;
    char err[256];
    const char *bad[] = { "resid:0:all", "resid_post:9:all", "resid_post:3-1:all",
                          "resid_post:1,:all", "resid_post:x:all", "resid_post:0:first",
                          "resid_post:0:1,,2", "logits:3:last", "resid_post:0:all:extra",
                          "resid_post:-1:all", "" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_MSG(mu_site_parse(bad[i], 8, &s, err, sizeof err) == -1, "accepted '%s'", bad[i]);
        CHECK_MSG(strstr(err, "bad site spec") != NULL, "'%s': %s", bad[i], err);
    }
    mu_site m;
    CHECK(mu_site_from_name("mlp_out", 7, &m) == 0 && m == MU_SITE_MLP_OUT);
    CHECK(mu_site_from_name("mlp_outx", 8, &m) == -1);
}

TEST(model_backward_is_deterministic)
{
    mu_model *m = tiny_model(1, 1, 29);
    int V = mu_model_config(m)->vocab, n = mu_model_n_params(m);
    int32_t ids[TB * TT], targets[TB * TT];
    tiny_batch(ids, targets, V);
    char err[256];
    CHECK(mu_model_set_all_trainable(m, 1) == 0);
    mu_batch b = { TB, TT, ids, t_lens };
    mu_fwd_opts o = { .train = 1};
    float *dl = malloc(sizeof(float) * TB * TT * V);
    float **g1 = calloc(n, sizeof *g1);
    for (int rep = 0; rep < 2; rep++) {
        mu_model_zero_grad(m);
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == 0);
        mu_model_cross_entropy(m, targets, dl, NULL);
        CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
        for (int i = 0; i < n; i++) {
            mu_param *p = mu_model_param(m, i);
            if (!rep) {
                g1[i] = malloc(p->numel * sizeof(float));
                memcpy(g1[i], p->g, p->numel * sizeof(float));
            } else {
                CHECK_MSG(memcmp(g1[i], p->g, p->numel * sizeof(float)) == 0,
                          "%s: gradient differs between identical runs", p->info.name);
            }
        }
    }
    for (int i = 0; i < n; i++) free(g1[i]);
    free(g1);
    free(dl);
    mu_model_free(m);
}

TEST(model_rope_llama3_matches_transformers)
{
    char path[1100], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/parity/rope_llama3.safetensors", mu_test_root());
    mu_st *g = mu_st_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    mu_dtype dt;
    int nd;
    int64_t shape[MU_MAX_DIMS];
    const void *data;
    size_t nb;
    CHECK(mu_st_info(g, mu_st_find(g, "inv_freq"), &dt, &nd, shape, &data, &nb) == 0);
    CHECK(dt == MU_F32 && nd == 1 && shape[0] == 64);
    mu_config c;
    mu_config_init(&c);
    c.head_dim = 128; c.rope_theta = 500000;
    snprintf(c.rope_scaling, sizeof c.rope_scaling, "llama3");
    c.rope_factor = 8; c.rope_low_freq = 1; c.rope_high_freq = 4; c.rope_orig_max_pos = 8192;
    float f[64];
    mu_rope_inv_freq(&c, f);
    const float *want = data;
    for (int i = 0; i < 64; i++) CHECK_CLOSE(f[i], want[i], 1e-6, 0);
    mu_st_close(g);
}

/* Loading applies deltas (lib/ckpt.h): a delta zeroing layer 1's down_proj gives the same
 * logits as zeroing it in memory; a missing model is a one-line error naming the path. */
TEST(model_load_with_delta_and_errors)
{
    char dir[1024], delta[1100], err[512];
    snprintf(dir, sizeof dir, "%s/tests/golden/parity", mu_test_root());
    snprintf(delta, sizeof delta, "%s/zero_down.safetensors", mu_test_tmpdir());
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    int down = mu_model_find(m, "model.layers.1.mlp.down_proj.weight");
    mu_param *p = mu_model_param(m, down);
    float *zero = calloc(p->numel, sizeof *zero);
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add(w, p->info.name, MU_F32, 2, p->info.shape, zero);
    mu_st_writer_meta(w, "format", "mu-delta");
    mu_st_writer_meta(w, "version", "1");
    CHECK_MSG(mu_st_writer_write(w, delta, err, sizeof err) == 0, "%s", err);
    mu_st_writer_free(w);
    const char *deltas[] = { delta };
    mu_model *md = mu_model_load(dir, deltas, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(md != NULL, "%s", err);
    mu_model_set_param(m, down, zero);
    int32_t ids[6] = { 5, 17, 3, 90, 42, 8 };
    mu_batch b = { 1, 6, ids, NULL };
    CHECK(mu_model_forward(m, &b, NULL, err, sizeof err) == 0);
    CHECK(mu_model_forward(md, &b, NULL, err, sizeof err) == 0);
    CHECK(memcmp(mu_model_logits(m), mu_model_logits(md), sizeof(float) * 6 * 97) == 0);
    mu_model_free(md);
    mu_model_free(m);
    free(zero);
    CHECK(mu_model_load("/nonexistent/model", NULL, 0, mu_backend_cpu(), err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "/nonexistent/model") != NULL && !strchr(err, '\n'), "%s", err);
}

/* Sliding windows (Mistral: every layer): with one layer, the last token of 9 sees only
 * the last 4 tokens' keys, and rotary attention depends on relative positions only, so its
 * logits equal those of the same 4 tokens run alone; without the window they differ. Which
 * layers slide (Gemma-2: the even ones) and the window's config.json round trip. */
TEST(model_sliding_window_sees_only_the_window)
{
    char err[256];
    mu_config c = tiny_config(1, 0);
    c.n_layer = 1;
    c.sliding_window = 4;
    int32_t ids[9] = {1, 7, 3, 9, 5, 6, 2, 8, 4};
    mu_batch full = { 1, 9, ids, NULL }, tail = { 1, 4, ids + 5, NULL };
    float want[11], got[11];
    for (int windowed = 1; windowed >= 0; windowed--) {
        c.sliding_window = windowed ? 4 : 0;
        mu_model *m = model_from(&c, 3);
        CHECK_MSG(mu_model_forward(m, &full, NULL, err, sizeof err) == 0, "%s", err);
        memcpy(got, mu_model_logits(m) + 8 * 11, sizeof got);
        CHECK_MSG(mu_model_forward(m, &tail, NULL, err, sizeof err) == 0, "%s", err);
        memcpy(want, mu_model_logits(m) + 3 * 11, sizeof want);
        double d = 0;
        for (int j = 0; j < 11; j++) d = fmax(d, fabs((double)got[j] - want[j]));
        if (windowed) CHECK_MSG(d < 1e-5, "window 4: last logits differ from the last 4 tokens' by %.3g", d);
        else CHECK_MSG(d > 1e-3, "no window: last logits equal the last 4 tokens' (%.3g)", d);
        mu_model_free(m);
    }
    c.sliding_window = 4;
    CHECK_EQ_INT(mu_config_layer_window(&c, 0), 4);
    CHECK_EQ_INT(mu_config_layer_window(&c, 7), 4);
    c.global_every = 2;                      /* Gemma-2: even layers slide */
    CHECK_EQ_INT(mu_config_layer_window(&c, 0), 4);
    CHECK_EQ_INT(mu_config_layer_window(&c, 1), 0);
    CHECK_EQ_INT(mu_config_layer_window(&c, 2), 4);
    c.global_every = 0;
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", mu_test_tmpdir());
    CHECK_MSG(mu_config_write_json(&c, path, err, sizeof err) == 0, "%s", err);
    mu_config back;
    CHECK_MSG(mu_config_from_json_file(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(back.sliding_window, 4);
}

/* Qwen2 and Qwen3 keep their sliding_window off unless use_sliding_window, and then apply it
 * from max_window_layers on (default 28; layer_types, when given, decides and must be full
 * layers then sliding ones); Qwen3's head_dim defaults to 128. */
TEST(config_qwen_windows_from_json)
{
    char err[256];
    mu_config c;
    const char *qwen = "{\"model_type\": \"qwen2\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                       "\"num_attention_heads\": 4, \"intermediate_size\": 24, \"vocab_size\": 11, "
                       "\"sliding_window\": 4, \"use_sliding_window\": false}";
    CHECK_MSG(mu_config_from_json_str(qwen, strlen(qwen), "q.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(c.sliding_window, 0);
    char on[512];
    snprintf(on, sizeof on, "%.*s true}", (int)(strlen(qwen) - 7), qwen);
    CHECK_MSG(mu_config_from_json_str(on, strlen(on), "q.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.sliding_window == 4 && c.window_from == 2);          /* max_window_layers 28 > 2 layers */
    CHECK(mu_config_layer_window(&c, 0) == 0 && mu_config_layer_window(&c, 1) == 0);
    snprintf(on, sizeof on, "%.*s true, \"max_window_layers\": 1}", (int)(strlen(qwen) - 7), qwen);
    CHECK_MSG(mu_config_from_json_str(on, strlen(on), "q.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.window_from == 1 && mu_config_layer_window(&c, 0) == 0 && mu_config_layer_window(&c, 1) == 4);
    snprintf(on, sizeof on, "%.*s true, \"max_window_layers\": 1, \"layer_types\": [\"full_attention\", "
             "\"full_attention\"]}", (int)(strlen(qwen) - 7), qwen);
    CHECK_MSG(mu_config_from_json_str(on, strlen(on), "q.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.window_from == 2);                                   /* layer_types decides */
    snprintf(on, sizeof on, "%.*s true, \"layer_types\": [\"sliding_attention\", \"full_attention\"]}",
             (int)(strlen(qwen) - 7), qwen);
    CHECK(mu_config_from_json_str(on, strlen(on), "q.json", &c, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "q.json: \"layer_types\"") == err, "%s", err);
    /* Qwen3: head_dim defaults to 128 (Qwen3Config), q/k norms per head, window as Qwen2's */
    const char *q3 = "{\"model_type\": \"qwen3\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                     "\"num_attention_heads\": 4, \"intermediate_size\": 24, \"vocab_size\": 11, "
                     "\"sliding_window\": 4, \"use_sliding_window\": true, \"max_window_layers\": 0}";
    CHECK_MSG(mu_config_from_json_str(q3, strlen(q3), "q3.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.window_from == 0 && mu_config_layer_window(&c, 0) == 4);
    /* written back with use_sliding_window and max_window_layers, read back the same */
    const char *path = "q3_back.json";
    char full[1100];
    snprintf(full, sizeof full, "%s/%s", mu_test_tmpdir(), path);
    c.window_from = 1;
    mu_config back;
    CHECK_MSG(mu_config_write_json(&c, full, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mu_config_from_json_file(full, &back, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(&c, &back, sizeof c));
    strcpy(c.model_type, "llama");               /* a window from a layer on: Qwen's only */
    c.qk_norm = 0;
    CHECK(mu_config_write_json(&c, full, err, sizeof err) == -1 && strstr(err, "max_window_layers"));
    const char *q3off = "{\"model_type\": \"qwen3\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                        "\"num_attention_heads\": 4, \"intermediate_size\": 24, \"vocab_size\": 11, "
                        "\"sliding_window\": 4}";
    CHECK_MSG(mu_config_from_json_str(q3off, strlen(q3off), "q3.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.head_dim == 128 && c.qk_norm == MU_QK_NORM_PER_HEAD && c.sliding_window == 0 && !c.norm_plus_one);
}

/* Gemma-2's keys, their defaults and nulls. */
TEST(config_gemma2_keys_from_json)
{
    char err[256];
    mu_config c;
    const char *g2 = "{\"model_type\": \"gemma2\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                     "\"num_attention_heads\": 4, \"head_dim\": 8, \"intermediate_size\": 24, "
                     "\"vocab_size\": 11}";
    CHECK_MSG(mu_config_from_json_str(g2, strlen(g2), "g.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.attn_softcap == 50.0f && c.final_softcap == 30.0f && c.sliding_window == 4096 &&
          c.global_every == 2 && c.post_norm && c.sandwich_norm && c.norm_plus_one && c.tie_embeddings);
    CHECK_CLOSE(mu_config_attn_scale(&c), 1.0 / 16, 1e-7, 0);       /* query_pre_attn_scalar 256 */
    const char *g2n = "{\"model_type\": \"gemma2\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                      "\"num_attention_heads\": 4, \"head_dim\": 8, \"intermediate_size\": 24, "
                      "\"vocab_size\": 11, \"attn_logit_softcapping\": null, \"final_logit_softcapping\": "
                      "null, \"sliding_window\": null, \"query_pre_attn_scalar\": 144, "
                      "\"hidden_activation\": \"gelu\"}";
    CHECK_MSG(mu_config_from_json_str(g2n, strlen(g2n), "g.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.attn_softcap == 0 && c.final_softcap == 0 && c.sliding_window == 0 &&
          !strcmp(c.hidden_act, "gelu"));
    CHECK_CLOSE(mu_config_attn_scale(&c), 1.0 / 12, 1e-7, 0);
    const char *bad = "{\"model_type\": \"gemma2\", \"num_hidden_layers\": 2, \"hidden_size\": 16, "
                      "\"num_attention_heads\": 4, \"intermediate_size\": 24, \"vocab_size\": 11, "
                      "\"attn_logit_softcapping\": -1}";
    CHECK(mu_config_from_json_str(bad, strlen(bad), "b.json", &c, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "b.json: ") == err, "%s", err);
}

/* GGUF has no query_pre_attn_scalar: the metadata of Gemma-2 9B/27B and Gemma-3 12B/27B as
 * llama.cpp's converter writes it (tests/gen/make_arch_ggufs.py) gives back each release's
 * own config.json value (256, 144, 256, 168), the 27B models by their layer count. */
TEST(config_gemma23_release_query_scale_from_gguf)
{
    static const struct { const char *name; int layers, d_model, heads, head_dim, window; float scalar; } r[] = {
        {"gemma2-9b", 42, 3584, 16, 256, 4096, 256}, {"gemma2-27b", 46, 4608, 32, 128, 4096, 144},
        {"gemma3-12b", 48, 3840, 16, 256, 1024, 256}, {"gemma3-27b", 62, 5376, 32, 128, 1024, 168},
    };
    for (size_t i = 0; i < sizeof r / sizeof *r; i++) {
        char path[1200], err[512];
        snprintf(path, sizeof path, "%s/tests/golden/gguf_meta/%s.gguf", mu_test_root(), r[i].name);
        mu_gguf *g = mu_gguf_open(path, err, sizeof err);
        CHECK_MSG(g != NULL, "%s", err);
        mu_config c;
        mu_config_init(&c);
        CHECK_MSG(g && !mu_config_from_gguf(g, &c, err, sizeof err), "%s", err);
        CHECK_MSG(!mu_config_validate(&c, err, sizeof err), "%s: %s", r[i].name, err);
        CHECK_MSG(c.n_layer == r[i].layers && c.d_model == r[i].d_model && c.n_head == r[i].heads &&
                  c.head_dim == r[i].head_dim && c.sliding_window == r[i].window, "%s", r[i].name);
        CHECK_MSG(c.query_scalar == r[i].scalar, "%s: query scalar %g, its config.json says %g", r[i].name,
                  c.query_scalar, r[i].scalar);
        CHECK(fabsf(mu_config_attn_scale(&c) - 1.0f / sqrtf(r[i].scalar)) < 1e-7f);
        if (g) mu_gguf_close(g);
    }
}

/* Gemma-3 text: its defaults, and newer configs' layer_types when they follow a pattern. */
TEST(config_gemma3_keys_from_json)
{
    char err[256];
    mu_config c;
    /* rope_theta 1e6, local base 10000, 5 sliding layers of 6, q/k norms per head */
    const char *g3 = "{\"model_type\": \"gemma3_text\", \"num_hidden_layers\": 4, \"hidden_size\": 16, "
                     "\"num_attention_heads\": 4, \"head_dim\": 8, \"intermediate_size\": 24, "
                     "\"vocab_size\": 11}";
    CHECK_MSG(mu_config_from_json_str(g3, strlen(g3), "g3.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK(c.rope_theta == 1e6f && c.rope_local_theta == 10000.0f && c.global_every == 6 &&
          c.qk_norm == MU_QK_NORM_PER_HEAD && c.attn_softcap == 0 && c.final_softcap == 0 && c.sandwich_norm);
    char lt[1024];
    snprintf(lt, sizeof lt, "%.*s, \"layer_types\": [\"sliding_attention\", \"sliding_attention\", "
             "\"full_attention\", \"sliding_attention\"]}", (int)strlen(g3) - 1, g3);
    CHECK_MSG(mu_config_from_json_str(lt, strlen(lt), "g3.json", &c, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(c.global_every, 3);
    CHECK_EQ_INT(mu_config_layer_window(&c, 2), 0);
    CHECK_EQ_INT(mu_config_layer_window(&c, 3), 4096);
    snprintf(lt, sizeof lt, "%.*s, \"layer_types\": [\"sliding_attention\", \"full_attention\", "
             "\"sliding_attention\", \"sliding_attention\"]}", (int)strlen(g3) - 1, g3);
    CHECK(mu_config_from_json_str(lt, strlen(lt), "g3.json", &c, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "g3.json: \"layer_types\"") == err, "%s", err);
}

/* ---- logits at selected rows (logit_rows) and the per-row log-prob backward ------------ */
/* Max |got - want| / max |want| over n values. */
static double max_rel_diff(const float *got, const float *want, size_t n)
{
    double d = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)got[i] - want[i]));
        s = fmax(s, fabs((double)want[i]));
    }
    return s > 0 ? d / s : d;
}

/* Every gradient of m into one host array (parameter order). */
static float *all_grads(mu_model *m, size_t *total)
{
    size_t n = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) n += (size_t)mu_model_param(m, i)->numel;
    float *g = malloc(sizeof(float) * n), *p = g;
    CHECK(g != NULL);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_model_get_grad(m, i, p);
        p += mu_model_param(m, i)->numel;
    }
    *total = n;
    return g;
}

/* Reference: d/dlogits of sum_r a_r log softmax(z_r)[y_r] in long double, [R, V]. */
static void ref_logp_grad(float *d, const float *z, const int32_t *y, const double *a, int R,
                          int V)
{
    for (int r = 0; r < R; r++) {
        const float *x = z + (size_t)r * V;
        long double mx = x[0], s = 0;
        for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
        for (int j = 0; j < V; j++) s += expl((long double)x[j] - mx);
        for (int j = 0; j < V; j++)
            d[(size_t)r * V + j] = (float)(a[r] * ((j == y[r]) - expl((long double)x[j] - mx) / s));
    }
}

/* Logits at the labeled positions only equal those rows of the full logits; the target
 * log-probs match a long-double reference; and mu_model_backward_logp (the backend's
 * logp_grad) gives the gradients of the full-logits backward with that reference gradient at
 * the labeled rows and zero elsewhere. Tied and untied lm_head (trained through the gathered
 * rows), f32 and bf16 weights, the CPU and the CPU posing as a device. */
TEST(model_logit_rows_and_backward_logp)
{
    char err[256];
    mu_backend fake = *mu_backend_cpu();
    fake.host_memory = 0;
    const mu_backend *bes[2] = { mu_backend_cpu(), &fake };
    int32_t ids[TB * TT], tg[TB * TT], rows[TB * TT], ty[TB * TT];
    for (int cse = 0; cse < 8; cse++) {
        int tied = cse & 1, bf16 = (cse >> 1) & 1, dev = cse >> 2;
        mu_config c = tiny_config(tied, 0);
        int V = c.vocab;
        tiny_batch(ids, tg, V);
        int R = 0;
        for (int n = 0; n < TB * TT; n++)
            if (tg[n] >= 0 && n % 3 != 1) { rows[R] = n; ty[R++] = tg[n]; }   /* a subset */
        mu_model *m = mu_model_init_random_as(&c, 17, 0.35f, bes[dev],
                                              bf16 ? MU_WEIGHTS_BF16 : MU_WEIGHTS_F32, err,
                                              sizeof err);
        CHECK_MSG(m, "%s", err);
        CHECK(mu_model_set_all_trainable(m, 1) == 0);
        double a[TB * TT];
        for (int r = 0; r < R; r++) a[r] = 0.1 * (r % 4) - 0.13;
        mu_batch b = { TB, TT, ids, t_lens };
        /* full logits, reference gradient placed at the selected rows */
        mu_fwd_opts full = { .train = 1 };
        CHECK(mu_model_forward(m, &b, &full, err, sizeof err) == 0);
        CHECK_EQ_INT(mu_model_logit_rows(m), TB * TT);
        float *zf = malloc(sizeof(float) * TB * TT * V), *dsel = malloc(sizeof(float) * R * V);
        float *dfull = calloc((size_t)TB * TT * V, sizeof(float)), *zs = malloc(sizeof(float) * R * V);
        memcpy(zf, mu_model_logits(m), sizeof(float) * TB * TT * V);
        for (int r = 0; r < R; r++) memcpy(zs + (size_t)r * V, zf + (size_t)rows[r] * V, sizeof(float) * V);
        ref_logp_grad(dsel, zs, ty, a, R, V);
        for (int r = 0; r < R; r++)
            memcpy(dfull + (size_t)rows[r] * V, dsel + (size_t)r * V, sizeof(float) * V);
        CHECK(mu_model_backward(m, dfull, NULL, 0, err, sizeof err) == 0);
        size_t ng;
        float *g_full = all_grads(m, &ng);
        /* selected rows */
        mu_model_zero_grad(m);
        mu_fwd_opts sel = { .train = 1, .logit_rows = rows, .n_logit_rows = R };
        CHECK_MSG(mu_model_forward(m, &b, &sel, err, sizeof err) == 0, "%s", err);
        CHECK_EQ_INT(mu_model_logit_rows(m), R);
        double dz = max_rel_diff(mu_model_logits(m), zs, (size_t)R * V);
        CHECK_MSG(dz < 1e-6, "case %d: selected logits differ by %g", cse, dz);
        double lp[TB * TT];
        CHECK(mu_model_target_logprobs(m, ty, lp, err, sizeof err) == 0);
        for (int r = 0; r < R; r++) {
            const float *x = zs + (size_t)r * V;
            long double mx = x[0], s = 0;
            for (int j = 1; j < V; j++) mx = x[j] > mx ? x[j] : mx;
            for (int j = 0; j < V; j++) s += expl((long double)x[j] - mx);
            double want = (double)((long double)x[ty[r]] - mx - logl(s));
            CHECK_CLOSE(lp[r], want, 1e-12, 1e-12);
        }
        CHECK_MSG(mu_model_backward_logp(m, ty, a, NULL, NULL, 0, err, sizeof err) == 0, "%s", err);
        float *g_sel = all_grads(m, &ng);
        double dg = max_rel_diff(g_sel, g_full, ng);
        CHECK_MSG(dg < 2e-6, "case %d: gradients differ by %g", cse, dg);
        /* half through host dlogits, half through a: the same sum */
        mu_model_zero_grad(m);
        CHECK(mu_model_forward(m, &b, &sel, err, sizeof err) == 0);
        double ah[TB * TT];
        for (int r = 0; r < R; r++) ah[r] = a[r] / 2;
        for (size_t i = 0; i < (size_t)R * V; i++) dsel[i] /= 2;
        CHECK(mu_model_backward_logp(m, ty, ah, dsel, NULL, 0, err, sizeof err) == 0);
        float *g_mix = all_grads(m, &ng);
        dg = max_rel_diff(g_mix, g_full, ng);
        CHECK_MSG(dg < 2e-6, "case %d: host + backend gradient differs by %g", cse, dg);
        free(zf); free(dsel); free(dfull); free(zs); free(g_full); free(g_sel); free(g_mix);
        mu_model_free(m);
    }
}

static int nop_hook(const mu_hook_info *info, float *act, void *user)
{
    (void)info; (void)act; (void)user;
    return 0;
}

TEST(model_logit_rows_bad_selections)
{
    char err[256];
    mu_model *m = tiny_model(0, 0, 3);
    int32_t ids[TB * TT], tg[TB * TT];
    tiny_batch(ids, tg, mu_model_config(m)->vocab);
    mu_batch b = { TB, TT, ids, t_lens };
    int32_t down[2] = { 3, 2 }, pad[1] = { TT + 5 }, out[1] = { TB * TT }, ok[2] = { 0, 8 };
    struct { const int32_t *r; int n; const char *want; } bad[] = {
        { down, 2, "not an increasing valid position" },
        { pad, 1, "not an increasing valid position" },      /* row 1 has 4 tokens */
        { out, 1, "not an increasing valid position" },
        { ok, -1, "negative count" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        mu_fwd_opts o = { .logit_rows = bad[i].r, .n_logit_rows = bad[i].n };
        CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == -1);
        CHECK_MSG(strstr(err, bad[i].want), "got: %s", err);
    }
    mu_hook h = { MU_SITE_LOGITS, -1, 0, nop_hook, NULL };
    mu_fwd_opts o = { .logit_rows = ok, .n_logit_rows = 2, .hooks = &h, .n_hooks = 1 };
    CHECK(mu_model_forward(m, &b, &o, err, sizeof err) == -1 && strstr(err, "logits hook"));
    mu_fwd_opts none = { .train = 1, .logit_rows = ok, .n_logit_rows = 0 };
    CHECK(mu_model_forward(m, &b, &none, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_model_logit_rows(m), 0);
    CHECK(mu_model_set_trainable(m, mu_model_find(m, "lm_head.weight"), 1) == 0);
    CHECK(mu_model_backward_logp(m, tg, NULL, NULL, NULL, 0, err, sizeof err) == 0);
    mu_model_free(m);
}

/* ---- packed training of partly trained tensors ------------------------------------------- */
/* The tensors the packed tests train, each on a seeded list of about a third of its
 * elements: two GEMM weights, a norm weight, the embedding and (untied) lm_head. */
static const char *const PK_NAMES[] = {
    "model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.q_proj.weight",
    "model.layers.1.post_attention_layernorm.weight", "model.embed_tokens.weight",
    "lm_head.weight",
};
enum { PK_N = 5, PK_STEPS = 3 };

/* s = a seeded list of parameter i's elements (each kept with probability 1/3, and the
 * last one), never all of them. */
static void pk_set(mu_model *m, int i, mu_idxset *s)
{
    int64_t numel = mu_model_param(m, i)->numel, n = 0;
    int64_t *idx = malloc(sizeof *idx * (size_t)numel);
    CHECK(idx);
    mu_rng r;
    mu_rng_seed2(&r, 77, (uint64_t)i);
    for (int64_t j = 0; j + 1 < numel; j++)
        if (mu_rng_below(&r, 3) == 0) idx[n++] = j;
    idx[n++] = numel - 1;
    char err[160];
    CHECK_MSG(mu_idxset_init_list(s, numel, idx, n, err, sizeof err) == 0, "%s", err);
    free(idx);
}

typedef struct {
    double norm[PK_STEPS];
    float *val[PK_N], *grad[PK_N];   /* after training: values, the last step's gradient */
    int64_t *list[PK_N], n[PK_N], numel[PK_N];   /* the trained elements */
    int idx[PK_N];                   /* parameter index, -1 when absent (tied lm_head) */
    size_t param_bytes, optim_bytes;
} pk_run;

/* PK_STEPS AdamW steps (weight decay, a clip that bites) of the tiny batch's mean CE on
 * the PK_NAMES tensors' sets, packed or whole. */
static void pk_train(const mu_backend *be, int tied, mu_weights wt, int packed, pk_run *out)
{
    char err[256];
    mu_config c = tiny_config(tied, 0);
    mu_model *m = mu_model_init_random_as(&c, 19, 0.3f, be, wt, err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    oc.lr = 0.02; oc.weight_decay = 0.1; oc.clip = 0.05;
    mu_optim *o = mu_optim_new(&oc, be);
    for (int k = 0; k < PK_N; k++) {
        int i = out->idx[k] = mu_model_find(m, PK_NAMES[k]);
        if (i < 0) continue;
        mu_param *p = mu_model_param(m, i);
        mu_idxset s;
        pk_set(m, i, &s);
        out->numel[k] = p->numel;
        out->n[k] = s.n;
        out->list[k] = malloc(sizeof(int64_t) * (size_t)s.n);
        CHECK(out->list[k]);
        mu_idxset_to_list(&s, out->list[k]);
        if (packed) {
            CHECK(mu_model_set_trainable_elems(m, i, &s) == 0);
            CHECK(p->packed && p->trainable && (!p->w16 || !p->w));   /* no whole master */
            CHECK(mu_optim_add_packed(o, PK_NAMES[k], p->wp, p->g, &s, &p->el) >= 0);
        } else {
            CHECK(mu_model_set_trainable(m, i, 1) == 0);
            CHECK(mu_optim_add(o, PK_NAMES[k], p->w, p->g, &s) >= 0);
        }
    }
    int32_t ids[TB * TT], tg[TB * TT];
    tiny_batch(ids, tg, c.vocab);
    mu_batch b = { TB, TT, ids, t_lens };
    mu_fwd_opts fo = { .train = 1 };
    for (int step = 0; step < PK_STEPS; step++) {
        mu_model_zero_grad(m);
        CHECK(mu_model_forward(m, &b, &fo, err, sizeof err) == 0);
        CHECK_MSG(!isnan(mu_model_backward_ce(m, tg, NULL, 0, NULL, err, sizeof err)), "%s", err);
        for (int k = 0; k < PK_N && step + 1 == PK_STEPS; k++) {
            if (out->idx[k] < 0) continue;
            out->grad[k] = malloc(sizeof(float) * (size_t)out->numel[k]);
            CHECK(out->grad[k]);
            mu_model_get_grad(m, out->idx[k], out->grad[k]);
        }
        mu_optim_step(o, &out->norm[step], NULL);
        for (int k = 0; k < PK_N; k++)
            if (out->idx[k] >= 0) mu_model_param_changed(m, out->idx[k]);
    }
    for (int k = 0; k < PK_N; k++) {
        if (out->idx[k] < 0) continue;
        out->val[k] = malloc(sizeof(float) * (size_t)out->numel[k]);
        CHECK(out->val[k] && mu_model_get_param(m, out->idx[k], out->val[k]) == 0);
    }
    out->param_bytes = mu_model_param_bytes(m);
    out->optim_bytes = mu_optim_state_bytes(o);
    mu_optim_free(o);
    mu_model_free(m);
}

static void pk_free(pk_run *r)
{
    for (int k = 0; k < PK_N; k++) { free(r->val[k]); free(r->grad[k]); free(r->list[k]); }
}

/* got == want bit for bit (exact), or within 1e-4 relative plus 1e-7: summation order
 * differences carried through three steps (they reach 2e-6 relative under -O0). */
static int pk_same(float got, float want, int exact)
{
    if (exact) return memcmp(&got, &want, sizeof got) == 0;
    return fabsf(got - want) <= 1e-4f * fabsf(want) + 1e-7f;
}

/* Tensor k of a packed run against the whole run: values everywhere, and the gradient:
 * the whole one at the trained elements, 0 elsewhere. */
static void pk_compare(const pk_run *pk, const pk_run *whole, int k, int exact, const char *what)
{
    for (int64_t e = 0, j = 0; e < pk->numel[k]; e++) {
        int in = j < pk->n[k] && pk->list[k][j] == e;
        j += in;
        float want = in ? whole->grad[k][e] : 0.0f;
        CHECK_MSG(pk_same(pk->grad[k][e], want, exact), "%s grad[%lld]: %.9g vs %.9g (%s)",
                  PK_NAMES[k], (long long)e, pk->grad[k][e], want, what);
        CHECK_MSG(pk_same(pk->val[k][e], whole->val[k][e], exact), "%s[%lld]: %.9g vs %.9g (%s)",
                  PK_NAMES[k], (long long)e, pk->val[k][e], whole->val[k][e], what);
    }
}

/* Partly trained tensors kept packed (mu_model_set_trainable_elems + mu_optim_add_packed:
 * gradient and f32 master of the trained elements only) train to the same bits as the
 * same sets in whole tensors, untied, f32 and bf16 weights, the CPU and the CPU posing as
 * a device: same clipped norms, same values everywhere; the packed gradient reads as the
 * whole one at its elements and 0 elsewhere. Tied (the embedding gets two gradient
 * contributions, added in another order) within 1e-6 (norms) and 1e-4 (values). And the storage is what packing
 * promises: no whole gradient or bf16 master, only the packed arrays and one scratch. */
TEST(model_packed_training_equals_whole)
{
    mu_backend fake = *mu_backend_cpu();
    fake.host_memory = 0;
    for (int cse = 0; cse < 8; cse++) {
        int tied = cse & 1, bf16 = (cse >> 1) & 1, dev = cse >> 2;
        const mu_backend *be = dev ? &fake : mu_backend_cpu();
        pk_run whole = {0}, pk = {0};
        pk_train(be, tied, bf16 ? MU_WEIGHTS_BF16 : MU_WEIGHTS_F32, 0, &whole);
        pk_train(be, tied, bf16 ? MU_WEIGHTS_BF16 : MU_WEIGHTS_F32, 1, &pk);
        char what[64];
        snprintf(what, sizeof what, "%s, %s, %s", dev ? "device" : "cpu", bf16 ? "bf16" : "f32",
                 tied ? "tied" : "untied");
        for (int s = 0; s < PK_STEPS; s++) {
            CHECK(whole.norm[s] > 0.05);        /* the clip bites */
            CHECK_MSG(tied ? fabs(pk.norm[s] - whole.norm[s]) <= 1e-6 * whole.norm[s]
                           : pk.norm[s] == whole.norm[s],
                      "step %d: norm %.17g vs %.17g (%s)", s, pk.norm[s], whole.norm[s], what);
        }
        for (int k = 0; k < PK_N; k++)
            if (pk.idx[k] >= 0) pk_compare(&pk, &whole, k, !tied, what);
        /* storage: whole gradients (and bf16 masters) out; packed ones, masters, index
         * arrays on a device, and one scratch of the largest tensor in */
        int64_t saved = 0, added = 0, scratch = 0;
        for (int k = 0; k < PK_N; k++) {
            if (pk.idx[k] < 0) continue;
            int has16 = bf16 && !strstr(PK_NAMES[k], "layernorm");
            saved += 4 * pk.numel[k] * (has16 ? 2 : 1);
            added += 8 * pk.n[k];
            if (dev) added += 8 * ((pk.numel[k] + 65535) / 65536 + 1) + 2 * pk.n[k];
            if (pk.numel[k] > scratch) scratch = pk.numel[k];
        }
        CHECK_MSG((int64_t)whole.param_bytes - (int64_t)pk.param_bytes == saved - added - 4 * scratch,
                  "bytes: whole %zu, packed %zu, expected a difference of %lld (%s)",
                  whole.param_bytes, pk.param_bytes, (long long)(saved - added - 4 * scratch), what);
        /* the optimizer: the same moments; on a device the packed entries borrow the model's
         * index arrays (counted above) instead of holding a copy of their own */
        int64_t idx_bytes = 0;
        for (int k = 0; k < PK_N; k++)
            if (pk.idx[k] >= 0) idx_bytes += 8 * ((pk.numel[k] + 65535) / 65536 + 1) + 2 * pk.n[k];
        CHECK_MSG((int64_t)whole.optim_bytes - (int64_t)pk.optim_bytes == (dev ? idx_bytes : 0),
                  "optimizer bytes: whole %zu, packed %zu (%s)", whole.optim_bytes, pk.optim_bytes, what);
        pk_free(&whole);
        pk_free(&pk);
    }
}

/* ---- soft prompts -------------------------------------------------------------------------- */
/* The batch of tests/golden/SUB with the tokens at positions 1..3 of each row turned into
 * soft-prompt slots whose vectors are those tokens' embedding rows: the same logits, and
 * the token-embedding gradient of the plain batch split between the soft prompt's gradient
 * (at the slots) and the embedding's (elsewhere) — through the embedding scale (Gemma) and
 * the learned positions (GPT-2). */
static void check_soft_prompt_as_tokens(const char *sub)
{
    char dir[1024], err[512];
    mu_st *g = parity_open_in(sub, "golden.safetensors", dir, sizeof dir);
    mu_model *m = mu_model_load(dir, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    parity_batch pb = parity_batch_of(g);
    int B = pb.B, T = pb.T, V = mu_model_config(m)->vocab, D = mu_model_config(m)->d_model;
    int ei = -1;
    for (int i = 0; i < mu_model_n_params(m) && ei < 0; i++)
        if (!strcmp(mu_model_param(m, i)->info.role, "embed")) ei = i;
    CHECK(ei >= 0);
    int64_t ne = mu_model_param(m, ei)->numel;
    float *E = malloc(ne * sizeof *E), *P = malloc((size_t)B * 3 * D * sizeof *P);
    CHECK(mu_model_get_param(m, ei, E) == 0);
    int32_t *ids = malloc((size_t)B * T * sizeof *ids), *orig = malloc((size_t)B * 3 * sizeof *orig);
    memcpy(ids, pb.ids, (size_t)B * T * sizeof *ids);
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 1; t <= 3 && t < pb.lens[b]; t++, n++) {
            int32_t id = ids[(size_t)b * T + t];
            memcpy(P + (size_t)n * D, E + (size_t)id * D, D * sizeof *P);
            orig[n] = id;
            ids[(size_t)b * T + t] = -1 - n;
        }
    CHECK(n >= 3);
    mu_batch plain = { B, T, pb.ids, pb.lens }, soft = { B, T, ids, pb.lens };
    mu_fwd_opts o = { .train = 1 };
    float *dl = malloc(sizeof(float) * B * T * V), *logits = malloc(sizeof(float) * B * T * V);
    float *dE = malloc(ne * sizeof *dE), *dEs = malloc(ne * sizeof *dEs), *dP = malloc((size_t)n * D * sizeof *dP);
    CHECK(mu_model_set_trainable(m, ei, 1) == 0);
    CHECK(mu_model_forward(m, &plain, &o, err, sizeof err) == 0);
    memcpy(logits, mu_model_logits(m), sizeof(float) * B * T * V);
    mu_model_cross_entropy(m, pb.targets, dl, NULL);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    mu_model_get_grad(m, ei, dE);

    CHECK(mu_model_forward(m, &soft, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "no soft prompt is loaded") != NULL, "%s", err);
    CHECK(mu_model_set_soft_prompt(m, n - 1, P, 1) == 0);
    CHECK(mu_model_forward(m, &soft, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "has 2 vectors") || strstr(err, "vectors"), "%s", err);
    CHECK(mu_model_set_soft_prompt(m, n, P, 1) == 0);
    mu_model_zero_grad(m);
    CHECK_MSG(mu_model_forward(m, &soft, &o, err, sizeof err) == 0, "%s", err);
    const float *ls = mu_model_logits(m);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < pb.lens[b]; t++)
            for (int v = 0; v < V; v++) {
                size_t k = ((size_t)b * T + t) * V + v;
                CHECK_MSG(ls[k] == logits[k], "%s: soft logits [%d,%d,%d] %.9g vs tokens %.9g", sub, b, t, v,
                          ls[k], logits[k]);
            }
    mu_model_cross_entropy(m, pb.targets, dl, NULL);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    mu_model_get_grad(m, ei, dEs);
    const mu_soft_prompt *sp = mu_model_soft_prompt(m);
    CHECK(sp && sp->n == n && sp->g);
    mu_model_backend(m)->download(dP, sp->g, (size_t)n * D * sizeof *dP);
    for (int j = 0; j < n; j++)
        for (int d = 0; d < D; d++) dEs[(size_t)orig[j] * D + d] += dP[(size_t)j * D + d];
    double scale = 0, maxerr = 0;
    for (int64_t k = 0; k < ne; k++) {
        if (fabs(dE[k]) > scale) scale = fabs(dE[k]);
        if (fabs(dE[k] - dEs[k]) > maxerr) maxerr = fabs(dE[k] - dEs[k]);
    }
    CHECK_MSG(scale > 0 && maxerr <= 1e-6 * scale, "%s: embedding gradient vs soft + embedding: max error %.3g "
              "(scale %.3g)", sub, maxerr, scale);

    /* frozen model, only the prompt trains: the same dP; removing it refuses the slots again */
    CHECK(mu_model_set_trainable(m, ei, 0) == 0);
    mu_model_zero_grad(m);
    CHECK(mu_model_forward(m, &soft, &o, err, sizeof err) == 0);
    mu_model_cross_entropy(m, pb.targets, dl, NULL);
    CHECK(mu_model_backward(m, dl, NULL, 0, err, sizeof err) == 0);
    float *dP2 = malloc((size_t)n * D * sizeof *dP2);
    mu_model_backend(m)->download(dP2, mu_model_soft_prompt(m)->g, (size_t)n * D * sizeof *dP2);
    for (int k = 0; k < n * D; k++) CHECK_NEAR(dP2[k], dP[k], 1e-6 * scale);
    CHECK(mu_model_set_soft_prompt(m, 0, NULL, 0) == 0 && mu_model_soft_prompt(m) == NULL);
    CHECK(mu_model_forward(m, &soft, NULL, err, sizeof err) == -1);
    free(dP2); free(E); free(P); free(ids); free(orig); free(dl); free(logits); free(dE); free(dEs); free(dP);
    mu_model_free(m);
    mu_st_close(g);
}

TEST(model_soft_prompt_llama_as_tokens) { check_soft_prompt_as_tokens("parity"); }
TEST(model_soft_prompt_gemma_as_tokens) { check_soft_prompt_as_tokens("parity_gemma"); }
TEST(model_soft_prompt_gpt2_as_tokens) { check_soft_prompt_as_tokens("parity_gpt2"); }
TEST(model_soft_prompt_neox_as_tokens) { check_soft_prompt_as_tokens("parity_neox"); }

/* qsort order for the reference: cosine descending, then id ascending */
typedef struct { double cos; int id; } cos_id;
static int by_cos_then_id(const void *a, const void *b) {
    const cos_id *x = a, *y = b;
    if (x->cos != y->cos) return x->cos < y->cos ? 1 : -1;
    return x->id - y->id;
}

/* mu-dump --soft-prompt --nearest: hand-made rows (ties, a zero row, a zero vector), then
 * random ones against a sort of the cosines computed here in double. */
TEST(soft_prompt_nearest_tokens) {
    const float E[] = {1, 0, 0, 1, 2, 0, 0, 0, -1, 0, 1, 1};   /* V 6, D 2 */
    const float vec[] = {3, 0, 0, 0, 1, -1};
    int32_t ids[18];
    float cos[18];
    mu_soft_nearest(vec, 3, E, 6, 2, 6, ids, cos);
    const int32_t want[18] = {0, 2, 5, 1, 3, 4, 0, 1, 2, 3, 4, 5, 0, 2, 3, 5, 1, 4};
    const float wcos[6] = {1, 1, 0.70710678f, 0, 0, -1};
    for (int i = 0; i < 18; i++) CHECK_EQ_INT(ids[i], want[i]);
    for (int i = 0; i < 6; i++) CHECK_NEAR(cos[i], wcos[i], 1e-6);
    for (int i = 6; i < 12; i++) CHECK(cos[i] == 0);
    CHECK_NEAR(cos[12], 0.70710678, 1e-6);
    CHECK_NEAR(cos[17], -0.70710678, 1e-6);
    mu_soft_nearest(vec + 4, 1, E, 6, 2, 2, ids, cos);   /* k < V keeps the first two */
    CHECK(ids[0] == 0 && ids[1] == 2);

    enum { V = 300, D = 9, N = 4, K = 7 };
    float *R = malloc(sizeof *R * V * D), *X = malloc(sizeof *X * N * D), c[N * K];
    int32_t got[N * K];
    mu_rng rng;
    mu_rng_seed(&rng, 77);
    for (int i = 0; i < V * D; i++) R[i] = mu_rng_normal(&rng);
    for (int i = 0; i < N * D; i++) X[i] = mu_rng_normal(&rng);
    mu_soft_nearest(X, N, R, V, D, K, got, c);
    for (int j = 0; j < N; j++) {
        cos_id all[V];
        for (int r = 0; r < V; r++) {
            double dot = 0, a = 0, b = 0;
            for (int i = 0; i < D; i++) {
                dot += (double)X[j * D + i] * R[r * D + i];
                a += (double)X[j * D + i] * X[j * D + i];
                b += (double)R[r * D + i] * R[r * D + i];
            }
            all[r] = (cos_id){dot / sqrt(a * b), r};
        }
        qsort(all, V, sizeof *all, by_cos_then_id);
        for (int i = 0; i < K; i++) {
            CHECK_EQ_INT(got[j * K + i], all[i].id);
            CHECK_NEAR(c[j * K + i], all[i].cos, 1e-6);
        }
    }
    free(R);
    free(X);
}

/* GCG's candidate ranking: random rows, a duplicated row (a tie: the lower id first) and
 * a mask of allowed tokens, merged over three chunks of rows, against a sort of -E[v].g
 * computed here in double; a mask allowing fewer than k leaves have short. */
TEST(soft_gcg_rank_merges_chunks_in_score_order) {
    enum { V = 300, D = 9, N = 3, K = 7 };
    float *R = malloc(sizeof *R * V * D), G[N * D], sc[N * K];
    int32_t got[N * K];
    int have[N] = {0};
    unsigned char ok[V];
    mu_rng rng;
    mu_rng_seed(&rng, 91);
    for (int i = 0; i < V * D; i++) R[i] = mu_rng_normal(&rng);
    for (int i = 0; i < N * D; i++) G[i] = mu_rng_normal(&rng);
    for (int v = 0; v < V; v++) ok[v] = mu_rng_uniform(&rng) < 0.7;
    int best = 0;            /* copy slot 0's best allowed row to a higher allowed id: a tie */
    double bs = INFINITY;
    for (int v = 0; v < V; v++) {
        double dot = 0;
        for (int i = 0; i < D; i++) dot += (double)G[i] * R[v * D + i];
        if (ok[v] && dot < bs) { bs = dot; best = v; }
    }
    int twin = best < V - 1 ? V - 1 : V - 2;
    memcpy(R + twin * D, R + best * D, D * sizeof *R);
    ok[twin] = 1;
    for (int at = 0; at < V; at += 100) mu_soft_gcg_rank(G, N, R + at * D, 100, at, D, ok, K, got, sc, have);
    for (int j = 0; j < N; j++) {
        cos_id all[V];
        int n = 0;
        for (int v = 0; v < V; v++) {
            if (!ok[v]) continue;
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)G[j * D + i] * R[v * D + i];
            all[n++] = (cos_id){-dot, v};
        }
        qsort(all, n, sizeof *all, by_cos_then_id);
        CHECK_EQ_INT(have[j], K);
        for (int i = 0; i < K; i++) {
            CHECK_EQ_INT(got[j * K + i], all[i].id);
            CHECK_NEAR(sc[j * K + i], all[i].cos, 1e-5);
        }
    }
    CHECK(got[0] == (best < twin ? best : twin) && got[1] == (best < twin ? twin : best));
    memset(ok, 0, sizeof ok);            /* three allowed tokens: three entries, best first */
    ok[4] = ok[150] = ok[299] = 1;
    memset(have, 0, sizeof have);
    mu_soft_gcg_rank(G, N, R, V, 0, D, ok, K, got, sc, have);
    for (int j = 0; j < N; j++) {
        CHECK_EQ_INT(have[j], 3);
        CHECK(sc[j * K] >= sc[j * K + 1] && sc[j * K + 1] >= sc[j * K + 2]);
        for (int i = 0; i < 3; i++) CHECK(got[j * K + i] == 4 || got[j * K + i] == 150 || got[j * K + i] == 299);
    }
    free(R);
}
