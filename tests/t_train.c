/* t_train.c — the training loop on tiny random models: memorizing facts with `learn`,
 * masked training leaves every unmasked parameter bit-identical, end-to-end gradients of
 * combined objectives match finite differences, seeded runs are bit-identical, resume
 * from a checkpoint ends in the same bits, NaN stops with the step named, optimizer
 * memory follows the mask. */
#include "test.h"
#include "train.h"
#include "config.h"
#include "rng.h"
#include "stream.h"
#include "safetensors.h"
#include <limits.h>
#include <math.h>
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static mu_config tiny_cfg(void) {
    mu_config c;
    mu_config_init(&c);
    c.n_layer = 2; c.d_model = 16; c.n_head = 2; c.n_kv_head = 1; c.head_dim = 8;
    c.d_ff = 32; c.vocab = 24; c.max_pos = 64;
    return c;
}

static mu_model *tiny_model(uint64_t seed) {
    mu_config c = tiny_cfg();
    char err[256];
    mu_model *m = mu_model_init_random(&c, seed, 0.2f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    return m;
}

/* n facts: prompt of 3 random tokens (the first is 1, like a BOS), answer of 1-2 tokens. */
static void facts(mu_train_set *set, int n, uint64_t seed, int alt) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    int32_t *ids[32];
    int len[32], pl[32];
    for (int i = 0; i < n; i++) {
        len[i] = 4 + (i % 2);
        pl[i] = 3;
        ids[i] = malloc(sizeof(int32_t) * len[i]);
        ids[i][0] = 1;
        for (int k = 1; k < len[i]; k++) ids[i][k] = 2 + (int32_t)mu_rng_below(&r, 22);
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) {
        if (alt) {   /* DPO: prompt then token 3 ("I don't know") */
            set->s[i].alt = malloc(4 * sizeof(int32_t));
            memcpy(set->s[i].alt, set->s[i].ids, 3 * sizeof(int32_t));
            set->s[i].alt[3] = 3;
            set->s[i].alt_len = 4;
            set->s[i].alt_lab_from = 2;
        }
        free(ids[i]);
    }
}

static float **snapshot(mu_model *m) {
    int n = mu_model_n_params(m);
    float **s = calloc(n, sizeof *s);
    for (int i = 0; i < n; i++) {
        s[i] = malloc(mu_model_param(m, i)->numel * sizeof(float));
        mu_model_get_param(m, i, s[i]);
    }
    return s;
}

static void free_snapshot(mu_model *m, float **s) {
    for (int i = 0; i < mu_model_n_params(m); i++) free(s[i]);
    free(s);
}

TEST(train_memorizes_facts_with_learn) {
    mu_model *m = tiny_model(1);
    mu_train_opts o;
    mu_train_opts_default(&o);
    o.coef[MU_OBJ_LEARN] = 1;
    o.steps = 120; o.batch = 4; o.seed = 5;
    o.opt.lr = 2e-2;
    char err[512];
    mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, ev;
    facts(&f, 8, 42, 0);
    facts(&ev, 8, 42, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_add_eval(t, "facts", &ev);
    double acc0 = mu_trainer_eval_metric(t, "facts.acc"), nll0 = mu_trainer_eval_metric(t, "facts.nll");
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    double acc = mu_trainer_eval_metric(t, "facts.acc"), nll = mu_trainer_eval_metric(t, "facts.nll");
    CHECK_MSG(acc == 1.0 && nll < 0.1 && nll < nll0, "acc %.3f -> %.3f, nll %.3f -> %.3f", acc0, acc, nll0, nll);
    CHECK(acc0 < 0.5);
    mu_trainer_free(t);
    mu_model_free(m);
}

/* A mixed mask: neuron rows of up_proj (layer 1), head columns of o_proj (layer 0), a
 * few elements of the embedding. Everything else must keep its exact bits. */
static void mixed_mask(mu_model *m, mu_mask *mask) {
    char err[256];
    mu_mask_init(mask, "mixed", 0);
    mu_param *p = mu_model_param(m, mu_model_find(m, "model.layers.1.mlp.up_proj.weight"));
    mu_mask_tensor *t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_NEURON, 32, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_mask_set(t, 2, 1); mu_mask_set(t, 17, 1);
    p = mu_model_param(m, mu_model_find(m, "model.layers.0.self_attn.o_proj.weight"));
    t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_HEAD, 2, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_mask_set(t, 1, 1);
    p = mu_model_param(m, mu_model_find(m, "model.embed_tokens.weight"));
    t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_ELEMENT, p->numel, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    for (int64_t u = 0; u < p->numel; u += 13) mu_mask_set(t, u, 1);
}

TEST(train_masked_leaves_unmasked_bits) {
    mu_model *m = tiny_model(2), *ref = tiny_model(2);
    mu_mask mask;
    mixed_mask(m, &mask);
    float **before = snapshot(m);
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse("npo=1,retain-kl=1,log1mp=0.5", o.coef, err, sizeof err) == 0);
    o.steps = 6; o.batch = 3; o.opt.lr = 1e-2; o.opt.weight_decay = 0.1;
    mu_trainer *t = mu_trainer_new(m, ref, &mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    CHECK_EQ_INT(mu_trainer_n_trained(t), 3);
    mu_train_set f, r;
    facts(&f, 6, 1, 0);
    facts(&r, 6, 2, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    int64_t changed = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        float *now = malloc(p->numel * sizeof(float));
        mu_model_get_param(m, i, now);
        int k = mu_mask_find(&mask, p->info.name);
        for (int64_t e = 0; e < p->numel; e++) {
            int sel = k >= 0 && mu_mask_element(&mask.t[k], e);
            if (!sel) CHECK_MSG(memcmp(&now[e], &before[i][e], 4) == 0, "%s[%lld] changed", p->info.name, (long long)e);
            else changed += now[e] != before[i][e];
        }
        /* frozen tensors have no gradient buffer at all */
        if (k < 0) CHECK_MSG(p->g == NULL && !p->trainable, "%s has a gradient", p->info.name);
        free(now);
    }
    CHECK_MSG(changed > 2 * 16 + 16 * 8, "only %lld masked elements changed", (long long)changed);
    free_snapshot(m, before);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
    mu_model_free(ref);
}

/* A trainer of m (ref, mask may be NULL) with options o, forgetting 5 facts (seed 7) and
 * retaining 5 others (seed 8). */
static mu_trainer *trainer_on_facts(mu_model *m, mu_model *ref, const mu_mask *mask, const mu_train_opts *o) {
    char err[512];
    mu_trainer *t = mu_trainer_new(m, ref, mask, o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    if (!t) return NULL;
    mu_train_set f, r;
    facts(&f, 5, 7, 0);
    facts(&r, 5, 8, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    return t;
}

/* Every trained tensor's gradient (mu_trainer_opt_grad) at about five of its trained values
 * (or LoRA's A and B) against central differences of the trainer's loss, the values moved by
 * mu_trainer_set_trained; *checked counts them, *biggest is the largest |difference|. */
static void fd_trained(mu_trainer *t, const char *what, int *checked, double *biggest) {
    char err[512];
    for (int k = 0; k < mu_trainer_n_trained(t); k++) {
        int64_t n = mu_trainer_trained_set(t, k)->n;
        float *v = malloc(n * 4), *gr = malloc(n * 4);
        mu_trainer_get_trained(t, k, v);
        mu_trainer_loss_and_grad(t, 1, err, sizeof err);   /* gradients at the unperturbed point */
        mu_trainer_opt_grad(t, k, gr);
        for (int64_t e = k % 3; e < n; e += n / 5 + 1) {
            float v0 = v[e], h = 1e-2f;
            v[e] = v0 + h; mu_trainer_set_trained(t, k, v);
            double lp = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
            v[e] = v0 - h; mu_trainer_set_trained(t, k, v);
            double lm = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
            v[e] = v0; mu_trainer_set_trained(t, k, v);
            double fd = (lp - lm) / (2.0 * h);
            CHECK_MSG(fabs(fd - gr[e]) <= 1e-2 * fabs(fd) + 5e-5, "%s: trained tensor %d (LoRA part %d) [%lld]: "
                      "grad %.6g vs FD %.6g", what, k, mu_trainer_lora_part(t, k), (long long)e, gr[e], fd);
            (*checked)++;
            if (fabs(fd) > *biggest) *biggest = fabs(fd);
        }
        free(v); free(gr);
    }
}

/* d loss / d w of the whole pipeline (model forward, objectives, backward, hooks for
 * RMU / mlp-l2) against central differences of the loss on trained elements. */
static void fd_check(const char *objective, int with_alt) {
    mu_model *m = tiny_model(3), *ref = tiny_model(4);
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse(objective, o.coef, err, sizeof err) == 0);
    o.batch = 3; o.accum = 2; o.rmu_layer = 0; o.rmu_c = 2.0; o.rmu_alpha = 3.0;
    o.npo_beta = 0.5; o.simnpo_beta = 1.5; o.dpo_beta = 0.5; o.undial_beta = 2.0;
    o.log1mp_floor = -50;
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_trainer *t = mu_trainer_new(m, ref, &mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, r, g;
    facts(&f, 5, 7, with_alt);
    facts(&r, 5, 8, 0);
    facts(&g, 4, 9, 0);
    for (int i = 0; i < g.n; i++) g.s[i].lab_from = 0;
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    mu_trainer_set_data(t, MU_DATA_GENERAL, &g);
    double l0 = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
    CHECK_MSG(isfinite(l0), "%s: %s", objective, err);
    int checked = 0;
    double biggest = 0;
    fd_trained(t, objective, &checked, &biggest);
    CHECK(checked >= 10);
    CHECK_MSG(biggest > 1e-3, "%s: every checked gradient is ~0 (max %.3g)", objective, biggest);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
    mu_model_free(ref);
}

TEST(train_gradient_fd_learn_retain_general) { fd_check("learn=1,retain-ce=0.5,general-lm=0.7", 0); }
TEST(train_gradient_fd_npo_kl) { fd_check("npo=1,retain-kl=2", 0); }
TEST(train_gradient_fd_simnpo_wga_log1mp) { fd_check("simnpo=1,log1mp=0.3,ga=0.2", 0); }
TEST(train_gradient_fd_dpo_undial) { fd_check("dpo=1,undial=0.5", 1); }
TEST(train_gradient_fd_me_undial_dpo) { fd_check("me=1,undial=0.5,dpo=0.3,retain-ce=0.5", 1); }
TEST(train_gradient_fd_idk_ga) { fd_check("idk=1,ga=0.5,retain-ce=0.5", 1); }

/* The loss of spec on the tiny model over forget set f (one step's batch of 3). */
static double loss_on(const char *spec, mu_train_set *f) {
    mu_model *m = tiny_model(3);
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse(spec, o.coef, err, sizeof err) == 0);
    o.batch = 3;
    mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_trainer_set_data(t, MU_DATA_FORGET, f);
    double loss = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
    CHECK_MSG(isfinite(loss), "%s: %s", spec, err);
    mu_trainer_free(t);
    mu_model_free(m);
    return loss;
}

/* idk (IdkNLL) is the mean cross-entropy of the forget rows' preferred answers: the same
 * loss as learn on records whose answers are those preferred answers. */
TEST(train_idk_is_learn_on_the_preferred_answers) {
    mu_train_set f, g;
    facts(&f, 5, 7, 1);
    facts(&g, 5, 7, 0);
    for (int i = 0; i < g.n; i++) {
        memcpy(g.s[i].ids, f.s[i].alt, (size_t)f.s[i].alt_len * sizeof(int32_t));
        g.s[i].len = f.s[i].alt_len;
        g.s[i].lab_from = f.s[i].alt_lab_from;
    }
    double a = loss_on("idk=1", &f), b = loss_on("learn=1", &g);
    CHECK_MSG(fabs(a - b) <= 1e-6 * fabs(b) && b > 0, "idk %.9g vs learn on the preferred answers %.9g", a, b);
}
TEST(train_gradient_fd_rmu) { fd_check("rmu=1", 0); }

/* The loss and every trained gradient of objective spec with (beta1, beta2) for satimp and
 * wga's beta = beta1, on the tiny model's forget facts: *n trained tensors (at most 16),
 * grads[k] [numel[k]]. */
static double weighted_step(const char *spec, double beta1, double beta2, float **grads, int64_t *numel, int *n) {
    mu_model *m = tiny_model(3);
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse(spec, o.coef, err, sizeof err) == 0);
    o.batch = 3; o.wga_beta = beta1; o.satimp_beta1 = beta1; o.satimp_beta2 = beta2;
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_trainer *t = trainer_on_facts(m, NULL, &mask, &o);
    double loss = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
    CHECK_MSG(isfinite(loss), "%s: %s", spec, err);
    *n = mu_trainer_n_trained(t);
    CHECK(*n > 0 && *n <= 16);
    for (int k = 0; k < *n; k++) {
        numel[k] = mu_trainer_trained_set(t, k)->n;
        grads[k] = malloc(numel[k] * sizeof **grads);
        mu_trainer_opt_grad(t, k, grads[k]);
    }
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
    return loss;
}

static int same_grads(float **a, float **b, int n, const int64_t *numel) {
    int same = 1;
    for (int k = 0; k < n; k++) {
        same &= !memcmp(a[k], b[k], numel[k] * sizeof **a);
        free(a[k]);
        free(b[k]);
    }
    return same;
}

/* SatImp's weight p^beta1 (1-p)^beta2 reaches the trainer with its two exponents in place:
 * beta2 = 0 is WGA with beta = beta1, beta1 = beta2 = 0 is gradient ascent, bit for bit
 * (loss and every gradient); beta2 > 0 changes the loss. */
TEST(train_satimp_reduces_to_wga_and_ga) {
    float *g1[16], *g2[16];
    int64_t numel[16];
    int n;
    double a = weighted_step("satimp=1", 1.5, 0, g1, numel, &n), b = weighted_step("wga=1", 1.5, 0, g2, numel, &n);
    CHECK_MSG(a == b, "satimp(1.5, 0) %.17g vs wga(1.5) %.17g", a, b);
    CHECK_MSG(same_grads(g1, g2, n, numel), "satimp(1.5, 0) and wga(1.5) gradients differ");
    a = weighted_step("satimp=1", 0, 0, g1, numel, &n), b = weighted_step("ga=1", 0, 0, g2, numel, &n);
    CHECK_MSG(a == b && a < 0, "satimp(0, 0) %.17g vs ga %.17g", a, b);
    CHECK_MSG(same_grads(g1, g2, n, numel), "satimp(0, 0) and ga gradients differ");
    a = weighted_step("satimp=1", 1.5, 2, g1, numel, &n), b = weighted_step("wga=1", 1.5, 0, g2, numel, &n);
    CHECK_MSG(a > b && a < 0, "satimp(1.5, 2) %.17g not above wga(1.5) %.17g", a, b);
    same_grads(g1, g2, n, numel);
}
TEST(train_gradient_fd_rmu_with_logits_and_mlp_l2) { fd_check("rmu=0.5,edit=1,mlp-l2=3", 0); }

/* LoRA (opts.lora_r): adapters on every layer matrix of the tiny model, B set to random
 * values (it starts at 0, where dL/dA is 0); dL/dA and dL/dB of the whole pipeline against
 * central differences of the loss; no base weight has a gradient; the weight the model
 * reads is W + (alpha / r) B A, recomputed here from the adapter's A and B. */
TEST(train_lora_gradient_fd_and_merge) {
    mu_model *m = tiny_model(3), *ref = tiny_model(4);
    int np = mu_model_n_params(m);
    float **base = calloc((size_t)np, sizeof *base);
    for (int i = 0; i < np; i++) {
        base[i] = malloc(mu_model_param(m, i)->numel * sizeof(float));
        mu_model_get_param(m, i, base[i]);
    }
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse("learn=1,retain-ce=0.5", o.coef, err, sizeof err) == 0);
    o.batch = 3; o.accum = 2; o.lora_r = 2; o.lora_alpha = 3;
    mu_trainer *t = trainer_on_facts(m, ref, NULL, &o);
    int nt = mu_trainer_n_trained(t), matrices = 0;
    mu_rng rng;
    mu_rng_seed(&rng, 11);
    for (int k = 0; k < nt; k++) {
        int pi = mu_trainer_trained_param(t, k);
        CHECK(mu_model_lora_eligible(m, pi) && mu_trainer_lora_part(t, k) == 1 + k % 2);
        if (mu_trainer_lora_part(t, k) != 2) continue;
        matrices++;
        int64_t n = mu_trainer_trained_set(t, k)->n;
        float *b = malloc(n * sizeof(float));
        for (int64_t e = 0; e < n; e++) b[e] = (float)(0.3 * mu_rng_normal(&rng));
        mu_trainer_set_trained(t, k, b);
        free(b);
    }
    CHECK_EQ_INT(matrices, 2 * 7);
    for (int i = 0; i < np; i++)
        CHECK_MSG(!mu_model_param(m, i)->trainable && !mu_model_param(m, i)->g, "%s trains", mu_model_param(m, i)->info.name);
    CHECK_MSG(isfinite(mu_trainer_loss_and_grad(t, 1, err, sizeof err)), "%s", err);
    int checked = 0;
    double biggest = 0;
    fd_trained(t, "lora", &checked, &biggest);
    const mu_backend *be = mu_model_backend(m);
    CHECK(checked >= 50);
    CHECK_MSG(biggest > 1e-3, "every checked gradient is ~0 (max %.3g)", biggest);
    /* the merged weight, in double from A and B */
    for (int k = 0; k < nt; k += 2) {
        int pi = mu_trainer_trained_param(t, k);
        mu_param *p = mu_model_param(m, pi);
        const mu_lora *a = mu_model_lora(m, pi);
        CHECK(a && a->r == 2 && a->scale == 1.5f && a->M == p->info.shape[0] && a->K == p->info.shape[1]);
        float *A = malloc((size_t)a->r * a->K * 4), *B = malloc((size_t)a->M * a->r * 4), *w = malloc(p->numel * 4);
        be->download(A, a->A, (size_t)a->r * a->K * 4);
        be->download(B, a->B, (size_t)a->M * a->r * 4);
        CHECK(mu_model_get_param(m, pi, w) == 0);
        double worst = 0;
        for (int i = 0; i < a->M; i++)
            for (int j = 0; j < a->K; j++) {
                double ba = 0;
                for (int q = 0; q < a->r; q++) ba += (double)B[i * a->r + q] * A[q * a->K + j];
                double want = base[pi][(size_t)i * a->K + j] + 1.5 * ba, d = fabs(w[(size_t)i * a->K + j] - want);
                if (d > worst) worst = d;
            }
        CHECK_MSG(worst < 1e-6, "%s: merged weight off by %.3g", p->info.name, worst);
        free(A); free(B); free(w);
    }
    for (int i = 0; i < np; i++) free(base[i]);
    free(base);
    mu_trainer_free(t);
    mu_model_free(m);
    mu_model_free(ref);
}

static void run_once(const char *ckpt, int64_t every, int64_t stop_at, const char *resume, float **out) {
    mu_model *m = tiny_model(5), *ref = tiny_model(5);
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse("npo=1,retain-ce=1", o.coef, err, sizeof err) == 0);
    o.steps = stop_at; o.batch = 2; o.seed = 77; o.opt.lr = 5e-3;
    o.opt.sched = MU_SCHED_COSINE; o.opt.warmup = 2; o.opt.total = 10; o.opt.clip = 1.0;
    o.checkpoint = ckpt; o.checkpoint_every = every;
    mu_trainer *t = mu_trainer_new(m, ref, &mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, r;
    facts(&f, 5, 11, 0);
    facts(&r, 7, 12, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    CHECK_MSG(mu_trainer_run(t, resume, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < mu_model_n_params(m); i++) mu_model_get_param(m, i, out[i]);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
    mu_model_free(ref);
}

TEST(train_seeded_runs_and_resume_are_bit_identical) {
    mu_model *shape = tiny_model(5);
    int n = mu_model_n_params(shape);
    float **a = snapshot(shape), **b = snapshot(shape), **c = snapshot(shape);
    char ck[PATH_MAX];
    snprintf(ck, sizeof ck, "%s/state.mpk.zst", mu_test_tmpdir());
    run_once(NULL, 0, 10, NULL, a);
    run_once(NULL, 0, 10, NULL, b);
    for (int i = 0; i < n; i++)
        CHECK(memcmp(a[i], b[i], mu_model_param(shape, i)->numel * 4) == 0);
    /* interrupted at step 4 (checkpoint every 2), then resumed to 10 */
    run_once(ck, 2, 4, NULL, c);
    run_once(ck, 2, 10, ck, c);
    for (int i = 0; i < n; i++)
        CHECK_MSG(memcmp(a[i], c[i], mu_model_param(shape, i)->numel * 4) == 0, "param %d differs after resume", i);
    free_snapshot(shape, a); free_snapshot(shape, b); free_snapshot(shape, c);
    mu_model_free(shape);
}

TEST(train_nan_loss_names_the_step) {
    mu_model *m = tiny_model(6);
    mu_train_opts o;
    mu_train_opts_default(&o);
    o.coef[MU_OBJ_LEARN] = 1;
    o.steps = 5; o.batch = 2;
    char err[512];
    mu_mask mask;
    CHECK(mu_mask_from_spec("mlp:1", NULL, 0, &mask, err, sizeof err) < 0);   /* no params: error */
    /* poison a frozen norm weight: the first forward gives NaN */
    int ni = mu_model_find(m, "model.norm.weight");
    float *w = malloc(16 * 4);
    mu_model_get_param(m, ni, w);
    w[3] = NAN;
    mu_model_set_param(m, ni, w);
    free(w);
    mu_param_info *info = mu_model_param_infos(m);
    CHECK(mu_mask_from_spec("mlp:1", info, mu_model_n_params(m), &mask, err, sizeof err) == 0);
    free(info);
    mu_trainer *t = mu_trainer_new(m, NULL, &mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f;
    facts(&f, 4, 3, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    CHECK(mu_trainer_run(t, NULL, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "step 1: loss is NaN") && strstr(err, "learn"), "%s", err);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
}

TEST(train_optimizer_memory_follows_mask) {
    mu_config c = tiny_cfg();
    c.d_model = 64; c.head_dim = 32; c.d_ff = 256; c.vocab = 512; c.n_layer = 2;
    char err[256];
    mu_model *m = mu_model_init_random(&c, 1, 0.02f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_train_opts o;
    mu_train_opts_default(&o);
    o.coef[MU_OBJ_LEARN] = 1;
    mu_trainer *full = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(full, "%s", err);
    size_t fb = mu_trainer_optim_bytes(full);
    mu_trainer_free(full);
    mu_model_set_all_trainable(m, 0);
    /* 1% of the elements of every tensor */
    mu_mask mask;
    mu_mask_init(&mask, "element", 0);
    mu_rng r;
    mu_rng_seed(&r, 1);
    int64_t total = 0, sel = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        mu_mask_tensor *t = mu_mask_add(&mask, p->info.name, p->info.ndim, p->info.shape, MU_GRAN_ELEMENT,
                                        p->numel, err, sizeof err);
        CHECK_MSG(t, "%s", err);
        for (int64_t e = 0; e < p->numel; e++)
            if (mu_rng_below(&r, 100) == 0) { mu_mask_set(t, e, 1); sel++; }
        total += p->numel;
    }
    mu_trainer *part = mu_trainer_new(m, NULL, &mask, &o, err, sizeof err);
    CHECK_MSG(part, "%s", err);
    double ratio = (double)mu_trainer_optim_bytes(part) / (double)fb;
    double frac = (double)sel / (double)total;
    CHECK_MSG(ratio < 1.4 * frac && ratio > 0.9 * frac, "optimizer bytes ratio %.4f for a %.4f mask", ratio, frac);
    mu_trainer_free(part);
    /* gradients and masters too: a bf16 model trained on the mask holds its bf16 weights,
     * 8 bytes per trained element (packed gradient and f32 master) and one f32 scratch of
     * the largest masked tensor, not 10 bytes per element of every masked tensor */
    mu_model *m16 = mu_model_init_random_as(&c, 1, 0.02f, mu_backend_cpu(), MU_WEIGHTS_BF16, err, sizeof err);
    CHECK_MSG(m16, "%s", err);
    size_t base = mu_model_param_bytes(m16);
    part = mu_trainer_new(m16, NULL, &mask, &o, err, sizeof err);
    CHECK_MSG(part, "%s", err);
    int64_t scratch = 0, packed_sel = 0;
    for (int i = 0; i < mu_model_n_params(m16); i++) {
        mu_param *p = mu_model_param(m16, i);
        if (!p->trainable) continue;
        CHECK_MSG(p->packed && !(p->w16 && p->w), "%s: not packed", p->info.name);
        packed_sel += p->set.n;
        if (p->numel > scratch) scratch = p->numel;
    }
    CHECK_EQ_INT(packed_sel, sel);
    CHECK_EQ_INT((int64_t)(mu_model_param_bytes(m16) - base), 8 * sel + 4 * scratch);
    mu_trainer_free(part);
    mu_model_free(m16);
    mu_mask_free(&mask);
    mu_model_free(m);
}

static void check_same_params(mu_model *a, mu_model *b, const char *what) {
    CHECK_EQ_INT(mu_model_n_params(a), mu_model_n_params(b));
    for (int i = 0; i < mu_model_n_params(a); i++) {
        int64_t n = mu_model_param(a, i)->numel;
        float *x = malloc(n * 4), *y = malloc(n * 4);
        mu_model_get_param(a, i, x);
        mu_model_get_param(b, i, y);
        CHECK_MSG(memcmp(x, y, n * 4) == 0, "%s: %s differs", what, mu_model_param(a, i)->info.name);
        free(x); free(y);
    }
}

/* A trainer of m that ran GA for 3 steps on 4 facts (mask, or LoRA rank lora_r on every layer
 * matrix when lora_r > 0), its delta to be written with delta_scale. */
static mu_trainer *ga_trained(mu_model *m, const mu_mask *mask, double delta_scale, int lora_r) {
    char err[512];
    mu_train_opts o;
    mu_train_opts_default(&o);
    o.coef[MU_OBJ_GA] = 1;
    o.steps = 3; o.batch = 2; o.opt.lr = 1e-2; o.delta_scale = delta_scale;
    o.lora_r = lora_r; o.lora_alpha = 2 * lora_r;
    mu_trainer *t = mu_trainer_new(m, NULL, lora_r ? NULL : mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f;
    facts(&f, 4, 5, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    return t;
}

/* Masked training, then: base + dense delta == base + sparse delta == exported model dir
 * == the trained model, bit for bit; the sparse delta is much smaller. */
TEST(train_deltas_and_model_dir_reproduce_the_model) {
    char err[512], base[PATH_MAX], dd[PATH_MAX], sd[PATH_MAX], out[PATH_MAX];
    const char *tmp = mu_test_tmpdir();
    snprintf(base, sizeof base, "%s/base", tmp);
    snprintf(dd, sizeof dd, "%s/dense.safetensors", tmp);
    snprintf(sd, sizeof sd, "%s/sparse.safetensors", tmp);
    snprintf(out, sizeof out, "%s/out", tmp);
    mu_model *init = tiny_model(8);
    int no_tok;
    CHECK_MSG(mu_train_write_model_dir(init, NULL, base, &no_tok, err, sizeof err) == 0, "%s", err);
    CHECK(no_tok);
    mu_model_free(init);
    mu_model *m = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_trainer *t = ga_trained(m, &mask, 1, 0);
    CHECK_MSG(mu_train_write_delta(t, base, NULL, NULL, 0, dd, 0, "ga", err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mu_train_write_delta(t, base, NULL, NULL, 0, sd, 1, "ga", err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mu_train_write_model_dir(m, base, out, &no_tok, err, sizeof err) == 0, "%s", err);
    const char *dl[1] = {dd}, *sl[1] = {sd};
    mu_model *a = mu_model_load(base, dl, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(a, "%s", err);
    mu_model *b = mu_model_load(base, sl, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(b, "%s", err);
    mu_model *c = mu_model_load(out, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    check_same_params(m, a, "dense delta");
    check_same_params(m, b, "sparse delta");
    check_same_params(m, c, "model dir");
    FILE *fd = fopen(dd, "rb"), *fs = fopen(sd, "rb");
    fseek(fd, 0, SEEK_END); fseek(fs, 0, SEEK_END);
    long szd = ftell(fd), szs = ftell(fs);
    fclose(fd); fclose(fs);
    /* embed: 1/13 of the elements, up rows 2/32, o_proj half the columns (12 bytes each) */
    CHECK_MSG(szs < szd, "sparse delta %ld bytes vs dense %ld", szs, szd);
    mu_model_free(a); mu_model_free(b); mu_model_free(c);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* ga_trained from the model at base (mixed mask, or LoRA rank lora_r), its delta (sparse or
 * dense) written with delta_scale to path. */
static void train_scaled_delta(const char *base, double scale, int sparse, int lora_r, const char *path) {
    char err[512];
    mu_model *m = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_trainer *t = ga_trained(m, &mask, scale, lora_r);
    CHECK_MSG(mu_train_write_delta(t, base, NULL, NULL, 0, path, sparse, "ga", err, sizeof err) == 0, "%s", err);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* Every parameter of base + neg against w0 + scale (w - w0), w of base + pos (bit for bit when
 * exact, else within 1e-6); returns how many elements moved. */
static int64_t check_scaled(const char *base, const char *pos, const char *neg, float scale, int exact) {
    char err[512];
    const char *pl[1] = {pos}, *nl[1] = {neg};
    mu_model *m0 = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    mu_model *mp = mu_model_load(base, pl, 1, mu_backend_cpu(), err, sizeof err);
    mu_model *mn = mu_model_load(base, nl, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m0 && mp && mn, "%s", err);
    int64_t moved = 0;
    for (int i = 0; i < mu_model_n_params(m0); i++) {
        int64_t n = mu_model_param(m0, i)->numel;
        float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
        mu_model_get_param(m0, i, a);
        mu_model_get_param(mp, i, b);
        mu_model_get_param(mn, i, c);
        for (int64_t e = 0; e < n; e++) {
            float want = a[e] + scale * (b[e] - a[e]);
            moved += b[e] != a[e];
            CHECK_MSG(exact ? c[e] == want : fabsf(c[e] - want) <= 1e-6f + 1e-5f * fabsf(want),
                      "%s %s[%lld]: %.9g, want %.9g", neg, mu_model_param(m0, i)->info.name, (long long)e, c[e], want);
        }
        free(a); free(b); free(c);
    }
    mu_model_free(m0); mu_model_free(mp); mu_model_free(mn);
    return moved;
}

/* delta_scale: a delta of w0 + s (w - w0), the same training written with s = 1 and s = -1
 * (task-vector negation) or 0.5, dense, sparse and as LoRA factors (their scale times s). */
TEST(train_delta_scale_writes_task_arithmetic) {
    char err[512], base[PATH_MAX], pos[PATH_MAX], neg[PATH_MAX], half[PATH_MAX];
    const char *tmp = mu_test_tmpdir();
    snprintf(base, sizeof base, "%s/tvbase", tmp);
    mu_model *init = tiny_model(8);
    int no_tok;
    CHECK_MSG(mu_train_write_model_dir(init, NULL, base, &no_tok, err, sizeof err) == 0, "%s", err);
    mu_model_free(init);
    snprintf(pos, sizeof pos, "%s/tv-pos.safetensors", tmp);
    snprintf(neg, sizeof neg, "%s/tv-neg.safetensors", tmp);
    snprintf(half, sizeof half, "%s/tv-half.safetensors", tmp);
    for (int sparse = 0; sparse < 2; sparse++) {
        train_scaled_delta(base, 1, sparse, 0, pos);
        train_scaled_delta(base, -1, sparse, 0, neg);
        train_scaled_delta(base, 0.5, sparse, 0, half);
        int64_t moved = check_scaled(base, pos, neg, -1.0f, 1);
        CHECK_MSG(moved > 100, "%s: %lld elements moved", sparse ? "sparse" : "dense", (long long)moved);
        check_scaled(base, pos, half, 0.5f, 1);
    }
    train_scaled_delta(base, 1, 0, 2, pos);
    train_scaled_delta(base, -1, 0, 2, neg);
    CHECK(check_scaled(base, pos, neg, -1.0f, 0) > 100);
}

/* ---- weight masking (mu_train_opts.weight_mask) ---- */

/* mixed_mask and the whole of layer 0's down_proj (a dense set). */
static void wmask_mask(mu_model *m, mu_mask *mask) {
    char err[256];
    mixed_mask(m, mask);
    mu_param *p = mu_model_param(m, mu_model_find(m, "model.layers.0.mlp.down_proj.weight"));
    mu_mask_tensor *t = mu_mask_add(mask, p->info.name, 2, p->info.shape, MU_GRAN_ELEMENT, p->numel, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    for (int64_t u = 0; u < p->numel; u++) mu_mask_set(t, u, 1);
}

/* lambda < 0: weight training, the same otherwise */
static mu_trainer *wmask_trainer(mu_model *m, const mu_mask *mask, double lambda, double lr, int64_t steps,
                                 const char *ckpt, int64_t every) {
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse("log1mp=1,retain-ce=0.5", o.coef, err, sizeof err) == 0);
    o.batch = 3; o.accum = 2; o.steps = steps; o.seed = 9; o.opt.lr = lr; o.log1mp_floor = -50;
    o.weight_mask = lambda >= 0; o.weight_mask_lambda = lambda;
    o.checkpoint = ckpt; o.checkpoint_every = every;
    return trainer_on_facts(m, NULL, mask, &o);
}

/* d (loss + lambda * sum(1 - m)) / d m against central differences in m, at masks inside
 * (0, 1) on packed (list) and dense tensors. */
TEST(train_weight_mask_gradient_fd) {
    mu_model *m = tiny_model(3);
    mu_mask mask;
    wmask_mask(m, &mask);
    mu_trainer *t = wmask_trainer(m, &mask, 1e-3, 1e-2, 1, NULL, 0);
    char err[512];
    CHECK_EQ_INT(mu_trainer_n_trained(t), 4);
    mu_rng r;
    mu_rng_seed(&r, 4);
    float **mk = calloc(4, sizeof *mk);
    for (int k = 0; k < 4; k++) {
        int64_t n = mu_trainer_trained_set(t, k)->n;
        mk[k] = malloc(n * sizeof(float));
        for (int64_t j = 0; j < n; j++) mk[k][j] = 0.3f + 0.6f * (float)mu_rng_uniform(&r);
        mu_trainer_set_trained(t, k, mk[k]);
    }
    int checked = 0, dense_checked = 0;
    double biggest = 0;
    for (int k = 0; k < 4; k++) {
        const mu_idxset *s = mu_trainer_trained_set(t, k);
        float *gm = malloc(s->n * sizeof(float));
        CHECK_MSG(isfinite(mu_trainer_loss_and_grad(t, 1, err, sizeof err)), "%s", err);
        mu_trainer_opt_grad(t, k, gm);
        for (int64_t j = 0; j < s->n; j += s->n / 6 + 1) {
            float m0 = mk[k][j], h = 1e-2f;
            mk[k][j] = m0 + h; mu_trainer_set_trained(t, k, mk[k]);
            double lp = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
            mk[k][j] = m0 - h; mu_trainer_set_trained(t, k, mk[k]);
            double lm = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
            mk[k][j] = m0; mu_trainer_set_trained(t, k, mk[k]);
            double fd = (lp - lm) / (2.0 * h);
            CHECK_MSG(fabs(fd - gm[j]) <= 1e-2 * fabs(fd) + 5e-5, "tensor %d entry %lld: dL/dm %.6g vs FD %.6g",
                      k, (long long)j, gm[j], fd);
            checked++;
            dense_checked += s->dense;
            if (fabs(fd) > biggest) biggest = fabs(fd);
        }
        free(gm);
    }
    CHECK(checked >= 16 && dense_checked >= 4);
    CHECK_MSG(biggest > 1e-3, "every checked gradient is ~0 (max %.3g)", biggest);
    for (int k = 0; k < 4; k++) free(mk[k]);
    free(mk);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* A masked run scales weights by m in [0, 1] and nothing else; the statistics count the
 * changed and zeroed weights; the sparse delta holds exactly the changed ones and loads
 * back to the trained model; a checkpointed, resumed run ends in the same bits. */
TEST(train_weight_mask_scales_masked_weights_only) {
    char err[512], base[PATH_MAX], sd[PATH_MAX], ck[PATH_MAX];
    const char *tmp = mu_test_tmpdir();
    snprintf(base, sizeof base, "%s/wbase", tmp);
    snprintf(sd, sizeof sd, "%s/wmask.safetensors", tmp);
    snprintf(ck, sizeof ck, "%s/wmask.ckpt.mpk.zst", tmp);
    mu_model *init = tiny_model(12);
    int no_tok;
    CHECK_MSG(mu_train_write_model_dir(init, NULL, base, &no_tok, err, sizeof err) == 0, "%s", err);
    mu_model_free(init);
    mu_model *m = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    mu_mask mask;
    wmask_mask(m, &mask);
    float **before = snapshot(m);
    mu_trainer *t = wmask_trainer(m, &mask, 1e-4, 0.2, 8, NULL, 0);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    int64_t changed = 0, zeroed = 0, halved = 0, inside = 0;
    double kept = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        float *now = malloc(p->numel * sizeof(float));
        mu_model_get_param(m, i, now);
        int k = mu_mask_find(&mask, p->info.name);
        for (int64_t e = 0; e < p->numel; e++) {
            float w0 = before[i][e], w = now[e];
            if (!(k >= 0 && mu_mask_element(&mask.t[k], e))) {
                CHECK_MSG(memcmp(&w, &w0, 4) == 0, "%s[%lld] changed outside the mask", p->info.name, (long long)e);
                continue;
            }
            inside++;
            CHECK_MSG(w0 != 0 && w * w0 >= 0 && fabsf(w) <= fabsf(w0), "%s[%lld]: %g is not %g times a mask in [0, 1]",
                      p->info.name, (long long)e, w, w0);
            changed += w != w0;
            zeroed += w == 0;
            halved += fabsf(w) <= 0.5f * fabsf(w0);
            kept += (double)w / w0;
        }
        free(now);
    }
    mu_wmask_stats st;
    CHECK(mu_trainer_wmask_stats(t, &st) == 0);
    CHECK_EQ_INT(st.elements, inside);
    CHECK_EQ_INT(st.masked, changed);
    CHECK_EQ_INT(st.ablated, zeroed);
    CHECK_EQ_INT(st.halved, halved);
    CHECK_CLOSE(st.cut, (double)inside - kept, 1e-4, 0);
    CHECK_MSG(zeroed > 0 && changed > zeroed && changed < inside, "changed %lld, zeroed %lld of %lld",
              (long long)changed, (long long)zeroed, (long long)inside);
    CHECK_CLOSE(st.penalty, 1e-4 * ((double)inside - kept), 1e-8, 0);
    /* the sparse delta: the changed weights, and the base plus it is the trained model */
    CHECK_MSG(mu_train_write_delta(t, base, NULL, NULL, 0, sd, 1, "log1mp", err, sizeof err) == 0, "%s", err);
    mu_st *d = mu_st_open(sd, err, sizeof err);
    CHECK_MSG(d, "%s", err);
    int64_t in_delta = 0;
    for (int i = 0; i < mu_st_count(d); i++) {
        int64_t shape[8];
        const char *nm = mu_st_name(d, i);
        if (strstr(nm, "::idx") && mu_st_info(d, i, NULL, NULL, shape, NULL, NULL) == 0) in_delta += shape[0];
    }
    mu_st_close(d);
    CHECK_EQ_INT(in_delta, changed);
    const char *sl[1] = {sd};
    mu_model *b = mu_model_load(base, sl, 1, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(b, "%s", err);
    check_same_params(m, b, "weight-mask sparse delta");
    mu_model_free(b);
    mu_trainer_free(t);
    /* interrupted at step 4, resumed to 8: the same bits */
    mu_model *c = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    t = wmask_trainer(c, &mask, 1e-4, 0.2, 4, ck, 2);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    mu_trainer_free(t);
    mu_model_free(c);
    c = mu_model_load(base, NULL, 0, mu_backend_cpu(), err, sizeof err);
    t = wmask_trainer(c, &mask, 1e-4, 0.2, 8, ck, 2);
    CHECK_MSG(mu_trainer_run(t, ck, err, sizeof err) == 0, "%s", err);
    check_same_params(m, c, "resumed weight-mask run");
    mu_trainer_free(t);
    /* a mask's checkpoint does not resume weight training */
    t = wmask_trainer(c, &mask, -1, 0.2, 8, NULL, 0);
    CHECK(mu_trainer_run(t, ck, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "other training options"), "%s", err);
    CHECK(mu_trainer_wmask_stats(t, &st) < 0);
    mu_trainer_free(t);
    mu_model_free(c);
    free_snapshot(m, before);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* A penalty that outweighs the loss holds every mask at 1 (the projection clamps it
 * there): the model keeps its bits and the sparse delta is empty of changes. */
TEST(train_weight_mask_strong_penalty_keeps_every_weight) {
    mu_model *m = tiny_model(13);
    mu_mask mask;
    wmask_mask(m, &mask);
    float **before = snapshot(m);
    mu_trainer *t = wmask_trainer(m, &mask, 100, 0.05, 5, NULL, 0);
    char err[512];
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        mu_param *p = mu_model_param(m, i);
        float *now = malloc(p->numel * sizeof(float));
        mu_model_get_param(m, i, now);
        CHECK_MSG(memcmp(now, before[i], p->numel * 4) == 0, "%s changed", p->info.name);
        free(now);
    }
    mu_wmask_stats st;
    CHECK(mu_trainer_wmask_stats(t, &st) == 0);
    CHECK_EQ_INT(st.masked, 0);
    CHECK(st.elements > 600 && st.penalty == 0);
    free_snapshot(m, before);
    mu_trainer_free(t);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* Gemma keeps HF's norm convention on disk: the engine holds 1 + w (mu_arch_stored_offset),
 * an exported model dir stores w again (within 2^-24 of the file it came from: 1 + w is
 * rounded to f32) and loads back to the same engine values, bit for bit. */
TEST(train_gemma_model_dir_stores_norms_as_hf_does) {
    char err[512], src[PATH_MAX], out[PATH_MAX], path[PATH_MAX + 32];
    snprintf(src, sizeof src, "%s/tests/golden/parity_gemma", mu_test_root());
    snprintf(out, sizeof out, "%s/gemma_out", mu_test_tmpdir());
    mu_model *m = mu_model_load(src, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    int no_tok;
    CHECK_MSG(mu_train_write_model_dir(m, src, out, &no_tok, err, sizeof err) == 0, "%s", err);
    mu_model *c = mu_model_load(out, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    CHECK(mu_model_config(c)->norm_plus_one && mu_model_config(c)->embed_scale);
    check_same_params(m, c, "gemma model dir");
    snprintf(path, sizeof path, "%s/model.safetensors", src);
    mu_st *a = mu_st_open(path, err, sizeof err);
    CHECK_MSG(a, "%s", err);
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    mu_st *b = mu_st_open(path, err, sizeof err);
    CHECK_MSG(b, "%s", err);
    int norms = 0;
    for (int i = 0; i < mu_model_n_params(m); i++) {
        const mu_param *p = mu_model_param(m, i);
        const void *da, *db;
        mu_dtype dt;
        int nd;
        int64_t shape[MU_MAX_DIMS];
        size_t na, nb;
        CHECK(mu_st_info(a, mu_st_find(a, p->info.name), &dt, &nd, shape, &da, &na) == 0);
        CHECK(mu_st_info(b, mu_st_find(b, p->info.name), &dt, &nd, shape, &db, &nb) == 0);
        CHECK(na == nb);
        float off = mu_arch_stored_offset(mu_model_config(m), &p->info);
        norms += off != 0;
        float *w = malloc((size_t)p->numel * sizeof *w);
        mu_model_get_param(m, i, w);
        for (int64_t e = 0; e < p->numel; e++) {
            float fa = ((const float *)da)[e], fb = ((const float *)db)[e];
            CHECK_MSG(fabsf(fa - fb) <= 6e-8f, "%s[%lld]: %.9g written as %.9g", p->info.name, (long long)e, fa, fb);
            CHECK_MSG(fabsf(w[e] - off - fa) <= 6e-8f, "%s[%lld]: engine %.9g, file %.9g", p->info.name, (long long)e,
                      w[e], fa);
        }
        free(w);
    }
    CHECK_EQ_INT(norms, 5);   /* 2 layers x 2 norms + the final norm */
    mu_st_close(a); mu_st_close(b);
    mu_model_free(c);
    mu_model_free(m);
}

/* Gradient ascent only lowers accuracy on the facts: with --keep-best facts.acc (max)
 * the run ends holding the step-0 parameters, bit for bit; with :min it keeps the last.
 * Also masked in a bf16 model: the packed masters go back and into the bf16 weights. */
TEST(train_keep_best_restores_best_eval) {
    for (int cse = 0; cse < 4; cse++) {
        int dir = cse & 1, masked = cse >> 1;
        mu_model *m = tiny_model(9);
        if (masked) {
            mu_model_free(m);
            mu_config c = tiny_cfg();
            char e[256];
            m = mu_model_init_random_as(&c, 9, 0.2f, mu_backend_cpu(), MU_WEIGHTS_BF16, e, sizeof e);
            CHECK_MSG(m, "%s", e);
        }
        mu_mask mask;
        if (masked) mixed_mask(m, &mask);
        float **before = snapshot(m);
        mu_train_opts o;
        mu_train_opts_default(&o);
        char err[512];
        CHECK(mu_objective_parse("ga", o.coef, err, sizeof err) == 0);
        o.steps = 12; o.batch = 4; o.opt.lr = 3e-2; o.eval_every = 3;
        o.keep_best = dir ? "facts.nll:max" : "facts.nll";
        mu_trainer *t = mu_trainer_new(m, NULL, masked ? &mask : NULL, &o, err, sizeof err);
        CHECK_MSG(t, "%s", err);
        mu_train_set f, ev;
        facts(&f, 4, 21, 0);
        facts(&ev, 4, 21, 0);
        mu_trainer_set_data(t, MU_DATA_FORGET, &f);
        mu_trainer_add_eval(t, "facts", &ev);
        double nll0 = mu_trainer_eval_metric(t, "facts.nll");
        CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
        double nll = mu_trainer_eval_metric(t, "facts.nll");
        if (!dir) {
            CHECK_NEAR(nll, nll0, 0);
            for (int i = 0; i < mu_model_n_params(m); i++) {
                float *now = malloc(mu_model_param(m, i)->numel * 4);
                mu_model_get_param(m, i, now);
                CHECK(memcmp(now, before[i], mu_model_param(m, i)->numel * 4) == 0);
                free(now);
            }
        } else {
            CHECK_MSG(nll > nll0 + (masked ? 0.1 : 1.0), "ga should raise nll: %.3f -> %.3f", nll0, nll);
        }
        for (int i = 0; masked && i < mu_model_n_params(m); i++)
            if (mu_model_param(m, i)->trainable) CHECK(mu_model_param(m, i)->packed);
        free_snapshot(m, before);
        mu_trainer_free(t);
        if (masked) mu_mask_free(&mask);
        mu_model_free(m);
    }
}

TEST(train_objective_spec_parsing) {
    double c[MU_OBJ_COUNT];
    char err[256];
    CHECK(mu_objective_parse("log1mp=1,retain-ce=2.5,general-lm=0.5", c, err, sizeof err) == 0);
    CHECK(c[MU_OBJ_LOG1MP] == 1 && c[MU_OBJ_RETAIN_CE] == 2.5 && c[MU_OBJ_GENERAL_LM] == 0.5 && c[MU_OBJ_NPO] == 0);
    CHECK(mu_objective_parse("graddiff=2,npo", c, err, sizeof err) == 0);
    CHECK(c[MU_OBJ_GA] == 2 && c[MU_OBJ_RETAIN_CE] == 2 && c[MU_OBJ_NPO] == 1);
    CHECK(mu_objective_parse("npo=x", c, err, sizeof err) < 0);
    CHECK(strstr(err, "not a number") != NULL);
    CHECK(mu_objective_parse("kl", c, err, sizeof err) < 0);
    CHECK(strstr(err, "unknown objective 'kl'") != NULL);
    CHECK(mu_objective_parse("", c, err, sizeof err) < 0);
    for (int i = 0; i < MU_OBJ_COUNT; i++) {
        char one[64];
        snprintf(one, sizeof one, "%s=3", mu_obj_name((mu_obj_id)i));
        CHECK(mu_objective_parse(one, c, err, sizeof err) == 0 && c[i] == 3);
    }
}

/* The trainer on a backend without host memory (the CPU ops presented as a device: the
 * optimizer's index arrays are copied to "device" buffers, trained values, moments and the
 * best snapshot move through packed gather/scatter) gives the same bits as on the CPU,
 * also when the device run is interrupted by a checkpoint and resumed in a fresh trainer,
 * with a keep-best evaluation restoring a snapshot at the end. */
static mu_trainer *device_path_trainer(mu_model *m, const mu_mask *mask, const char *ckpt,
                                       int64_t every) {
    char err[512];
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("simnpo=1,learn=0.1", o.coef, err, sizeof err) == 0);
    o.steps = 5; o.batch = 2; o.opt.lr = 1e-2; o.opt.weight_decay = 0.05; o.opt.clip = 0.5;
    o.eval_every = 2; o.keep_best = "facts.acc:max";
    o.checkpoint = ckpt; o.checkpoint_every = every;
    mu_trainer *t = mu_trainer_new(m, NULL, mask, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, ev;
    facts(&f, 5, 13, 0);
    facts(&ev, 5, 13, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_add_eval(t, "facts", &ev);
    return t;
}

TEST(train_device_memory_path_matches_host) {
    static mu_backend fake;
    fake = *mu_backend_cpu();
    fake.host_memory = 0;
    fake.name = "cpu-as-device";
    char ckpt[PATH_MAX], err[512];
    snprintf(ckpt, sizeof ckpt, "%s/state.mpk.zst", mu_test_tmpdir());
    mu_config c = tiny_cfg();
    float **res[3];
    for (int run = 0; run < 3; run++) {   /* host; device; device resumed from step 3 */
        mu_model *m = mu_model_init_random(&c, 12, 0.2f, run ? &fake : mu_backend_cpu(), err, sizeof err);
        CHECK_MSG(m, "%s", err);
        mu_mask mask;
        mixed_mask(m, &mask);
        mu_trainer *t = device_path_trainer(m, &mask, run == 1 ? ckpt : NULL, run == 1 ? 3 : 0);
        CHECK_MSG(mu_trainer_run(t, run == 2 ? ckpt : NULL, err, sizeof err) == 0, "%s", err);
        CHECK_EQ_INT(mu_trainer_step(t), 5);
        res[run] = snapshot(m);
        mu_trainer_free(t);
        mu_mask_free(&mask);
        mu_model_free(m);
    }
    mu_model *m = mu_model_init_random(&c, 12, 0.2f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m, "%s", err);
    for (int run = 1; run < 3; run++)
        for (int i = 0; i < mu_model_n_params(m); i++)
            CHECK_MSG(memcmp(res[0][i], res[run][i], mu_model_param(m, i)->numel * 4) == 0,
                      "%s differs between the host and the %s device run",
                      mu_model_param(m, i)->info.name, run == 1 ? "uninterrupted" : "resumed");
    for (int run = 0; run < 3; run++) free_snapshot(m, res[run]);
    mu_model_free(m);
}

static void pack_ids(msgpack_packer *pk, const int32_t *ids, int n) {
    int64_t shape[1] = {n};
    mu_pack_tensor(pk, MU_I32, 1, shape, ids);
}

/* The record {prompt, targets: [a, b], answer} into w. */
static void pack_choice_record(mu_writer *w, const int32_t *prompt, int np, const int32_t *a, int na,
                               const int32_t *b, int nb, int answer) {
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 3);
    mu_pack_str(pk, "prompt"); pack_ids(pk, prompt, np);
    mu_pack_str(pk, "targets"); msgpack_pack_array(pk, 2); pack_ids(pk, a, na); pack_ids(pk, b, nb);
    mu_pack_kv_int(pk, "answer", answer);
    mu_writer_end_record(w);
}

/* Token streams -> training sequences: targets[answer], DPO alternative, long general
 * text cut into overlapping windows, and one-line errors for bad records. */
TEST(train_set_read_records) {
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/t.mpk.zst", mu_test_tmpdir());
    int32_t prompt[10] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, a[2] = {11, 12}, b[1] = {13};
    mu_writer *w = mu_writer_open(path, "tokens");
    pack_choice_record(w, prompt, 3, a, 2, b, 1, 1);
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 1);
    mu_pack_str(pk, "prompt"); pack_ids(pk, prompt, 10);
    mu_writer_end_record(w);
    mu_writer_close(w);
    mu_train_set s;
    /* answer mode: the second record has no target */
    CHECK(mu_train_set_read(path, 0, 512, 24, 0, NULL, 0, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "record 1: no target tokens") && strstr(err, path), "%s", err);
    /* general text, windows of 4 */
    CHECK_MSG(mu_train_set_read(path, 1, 4, 24, 0, NULL, 0, &s, err, sizeof err) == 0, "%s", err);
    /* record 0: 3 + 1 tokens (targets[answer]) -> [0,4); record 1: [0,4) [3,7) [6,10) */
    CHECK_EQ_INT(s.n, 4);
    int labels = 0;
    for (int i = 0; i < s.n; i++) { labels += s.s[i].len - 1; CHECK(s.s[i].len <= 4 && s.s[i].lab_from == 0); }
    CHECK_EQ_INT(labels, 3 + 9);
    CHECK_EQ_INT(s.s[2].ids[0], 4);
    CHECK_EQ_INT(s.s[3].ids[3], 10);
    mu_train_set_free(&s);
    /* vocabulary bound */
    CHECK(mu_train_set_read(path, 1, 512, 10, 0, NULL, 0, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "record 0: \"targets\"[1]: token id 13 outside the model's vocabulary (10)"), "%s", err);
    /* answer mode on the first record only */
    w = mu_writer_open(path, "tokens");
    pack_choice_record(w, prompt, 3, a, 2, b, 1, 1);
    mu_writer_close(w);
    CHECK_MSG(mu_train_set_read(path, 0, 512, 24, 0, NULL, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(s.n, 1);
    CHECK_EQ_INT(s.s[0].len, 4);                 /* prompt + targets[answer=1] */
    CHECK_EQ_INT(s.s[0].ids[3], 13);
    CHECK_EQ_INT(s.s[0].lab_from, 2);
    CHECK_EQ_INT(s.s[0].alt_len, 5);             /* DPO: the other candidate */
    CHECK_EQ_INT(s.s[0].alt[4], 12);
    mu_train_set_free(&s);
    int32_t idk[2] = {20, 21};
    CHECK(mu_train_set_read(path, 0, 3, 24, 0, idk, 2, &s, err, sizeof err) == 0);
    CHECK_EQ_INT(s.s[0].len, 3);                 /* max_len 3: the prompt loses its first token */
    CHECK_EQ_INT(s.s[0].ids[0], 2);
    CHECK_EQ_INT(s.s[0].lab_from, 1);
    CHECK_EQ_INT(s.s[0].alt_len, 3);             /* --dpo-alt wins over the other candidate */
    CHECK_EQ_INT(s.s[0].alt[2], 21);
    mu_train_set_free(&s);
    CHECK(mu_train_set_read(path, 0, 512, 24, 0, NULL, 0, &s, err, sizeof err) == 0);
    mu_train_set_free(&s);
    /* wrong kind */
    w = mu_writer_open(path, "mask");
    mu_writer_close(w);
    CHECK(mu_train_set_read(path, 0, 512, 24, 0, NULL, 0, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "expected kind tokens"), "%s", err);
}

/* Soft-prompt slots under --max-len: left truncation may cut ordinary prompt tokens but
 * never a slot, of the trained answer's sequence nor of DPO's preferred one (the other
 * candidate, or --dpo-alt), each checked alone. */
TEST(train_set_read_max_len_keeps_soft_slots) {
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/slots.mpk.zst", mu_test_tmpdir());
    int32_t prompt[6] = {1, -1, -2, 4, 5, 6}, a[1] = {7}, b[4] = {8, 9, 10, 11};
    mu_writer *w = mu_writer_open(path, "tokens");
    pack_choice_record(w, prompt, 6, a, 1, b, 4, 0);
    mu_writer_close(w);
    mu_train_set s;
    /* answer: 6 + 1 tokens, the other candidate 6 + 4: max_len 10 keeps both whole */
    CHECK_MSG(mu_train_set_read(path, 0, 10, 24, 2, NULL, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.s[0].len == 7 && s.s[0].alt_len == 10 && s.s[0].ids[1] == -1 && s.s[0].alt[2] == -2);
    mu_train_set_free(&s);
    /* max_len 7: the answer's sequence is whole, the preferred one loses 3 tokens (the BOS
     * and both slots) */
    CHECK(mu_train_set_read(path, 0, 7, 24, 2, NULL, 0, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "record 0: --max-len 7 cuts the prompt's soft-prompt slots") && strstr(err, path), "%s", err);
    /* max_len 9: the preferred sequence loses only the BOS; no slot cut */
    CHECK_MSG(mu_train_set_read(path, 0, 9, 24, 2, NULL, 0, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.s[0].alt_len == 9 && s.s[0].alt[0] == -1 && s.s[0].alt[1] == -2 && s.s[0].alt_lab_from == 4);
    mu_train_set_free(&s);
    /* --dpo-alt of 5 tokens instead of the other candidate: max_len 9 cuts 2 (BOS, a slot) */
    int32_t alt[5] = {20, 21, 22, 23, 0};
    CHECK(mu_train_set_read(path, 0, 9, 24, 2, alt, 5, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "cuts the prompt's soft-prompt slots"), "%s", err);
    CHECK_MSG(mu_train_set_read(path, 0, 9, 24, 2, alt, 4, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.s[0].alt_len == 9 && s.s[0].alt[0] == -1 && s.s[0].alt[8] == 23);
    mu_train_set_free(&s);
    /* the answer's own sequence: max_len 6 cuts only its BOS, 5 a slot too */
    CHECK_MSG(mu_train_set_read(path, 0, 6, 24, 2, alt, 1, &s, err, sizeof err) == 0, "%s", err);
    CHECK(s.s[0].len == 6 && s.s[0].ids[0] == -1 && s.s[0].alt_len == 6 && s.s[0].alt[5] == 20);
    mu_train_set_free(&s);
    CHECK(mu_train_set_read(path, 0, 5, 24, 2, alt, 1, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "--max-len 5 cuts"), "%s", err);
    /* without slots allowed (nsoft 0) the negative ids are refused as such */
    CHECK(mu_train_set_read(path, 0, 10, 24, 0, NULL, 0, &s, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "\"prompt\""), "%s", err);
}

/* On a device, a step moves no logits between host and device: the objectives read the
 * labeled rows' target log-probs and the gradient is made on the device (counted on the CPU
 * backend posing as a device). Whole-row terms (retain-kl, undial, me) move only the labeled
 * rows: reference and model logits down, their gradient up. */
static size_t xfer_up, xfer_down;
static const mu_backend *xfer_cpu;
static void xfer_upload(void *d, const void *s, size_t n) { xfer_up += n; xfer_cpu->upload(d, s, n); }
static void xfer_download(void *d, const void *s, size_t n) { xfer_down += n; xfer_cpu->download(d, s, n); }

TEST(train_device_step_moves_no_logits) {
    static mu_backend dev;
    xfer_cpu = mu_backend_cpu();
    dev = *xfer_cpu;
    dev.host_memory = 0;
    dev.upload = xfer_upload;
    dev.download = xfer_download;
    mu_config c = tiny_cfg();
    c.vocab = 4000;                       /* logits dominate any other transfer */
    const char *specs[] = {"learn=1", "log1mp=1,retain-ce=1", "npo=1,ga=1,retain-ce=1", "dpo=1",
                           "wga=1,retain-kl=1", "satimp=1,retain-ce=1", "undial=1",
                           "me=1,retain-ce=1", "idk=1,retain-ce=1"};
    for (size_t k = 0; k < sizeof specs / sizeof *specs; k++) {
        char err[512];
        mu_model *m = mu_model_init_random(&c, 3, 0.2f, &dev, err, sizeof err);
        mu_model *ref = mu_model_init_random(&c, 3, 0.2f, &dev, err, sizeof err);
        CHECK_MSG(m && ref, "%s", err);
        mu_train_opts o;
        mu_train_opts_default(&o);
        CHECK(mu_objective_parse(specs[k], o.coef, err, sizeof err) == 0);
        o.steps = 1; o.batch = 4; o.opt.lr = 1e-3;
        mu_trainer *t = mu_trainer_new(m, ref, NULL, &o, err, sizeof err);
        CHECK_MSG(t, "%s", err);
        mu_train_set f, r;
        facts(&f, 8, 21, 1);
        facts(&r, 8, 22, 0);
        mu_trainer_set_data(t, MU_DATA_FORGET, &f);
        mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
        CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
        xfer_up = xfer_down = 0;
        mu_trainer_set_steps(t, 2);
        CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
        size_t row = (size_t)c.vocab * sizeof(float);   /* one row of logits */
        int whole_rows = strstr(specs[k], "kl") || strstr(specs[k], "undial") || strstr(specs[k], "me=");
        if (!whole_rows)
            CHECK_MSG(xfer_up + xfer_down < row, "%s: %zu bytes up, %zu down in one step", specs[k],
                      xfer_up, xfer_down);
        else   /* 4 rows of at most 2 labeled positions: at most 8 logit rows each way (x2 down) */
            CHECK_MSG(xfer_up <= 8 * row + row && xfer_down <= 16 * row + row && xfer_down >= row,
                      "%s: %zu bytes up, %zu down in one step", specs[k], xfer_up, xfer_down);
        mu_trainer_free(t);
        mu_model_free(m);
        mu_model_free(ref);
    }
}

/* ---- data parallelism (lib/dist.h) over forked processes, as MPI ranks are ---- */

/* Ranks are processes (not threads: the CPU backend switches OpenBLAS's thread count around
 * small GEMMs, which is process state) sharing one mapping: a process-shared barrier, a slot
 * per rank for dist.h's sums, and each rank's results. The test's own process runs no
 * model code, so each child starts with a fresh OpenMP runtime. */
#define RANK_SLOT (1 << 20)
#define RANK_FLOATS (1 << 16)
typedef struct {
    int ok;
    double loss, nll;            /* last step's loss, evaluation nll after training */
    int64_t steps, n;
    char err[512];
    float v[RANK_FLOATS];        /* every parameter after training, concatenated */
} rank_result;
typedef struct {
    pthread_barrier_t bar;
    int world;
    _Alignas(64) unsigned char slot[3][RANK_SLOT];
    rank_result res[3];
} rank_group;

/* dist.h's sum: each rank posts its buffer, rank 0 adds the others' in rank order and posts
 * the sum, which every rank copies. */
static void group_sum(const mu_dist *d, void *buf, int64_t n, size_t size) {
    rank_group *g = d->ctx;
    if ((size_t)n * size > RANK_SLOT) _exit(3);
    memcpy(g->slot[d->rank], buf, (size_t)n * size);
    pthread_barrier_wait(&g->bar);
    if (d->rank == 0) {
        for (int r = 1; r < g->world; r++)
            for (int64_t i = 0; i < n; i++) {
                if (size == sizeof(double)) ((double *)buf)[i] += ((const double *)g->slot[r])[i];
                else ((float *)buf)[i] += ((const float *)g->slot[r])[i];
            }
        memcpy(g->slot[0], buf, (size_t)n * size);
    }
    pthread_barrier_wait(&g->bar);
    if (d->rank) memcpy(buf, g->slot[0], (size_t)n * size);
    pthread_barrier_wait(&g->bar);
}
static void group_sum_f32(const mu_dist *d, float *buf, int64_t n) { group_sum(d, buf, n, sizeof *buf); }
static void group_sum_f64(const mu_dist *d, double *buf, int64_t n) { group_sum(d, buf, n, sizeof *buf); }

/* Rank `rank` of g (g->world 1: a plain run, no dist) of variant 0 (npo, dpo and retain-ce on
 * the mixed mask: reference log-probs shared out), 1 (weight masking) or 2 (LoRA on every
 * matrix): 3 steps of 4 micro-batches of 2, evaluated every 2 steps on 5 facts (batches of
 * 2 shared out); backend: the CPU, or (device 1) the CPU posing as a device. */
static void soft_facts(mu_train_set *set, int n, int ns, uint64_t seed);

/* Variants: 0 weights (NPO, DPO, retain-ce), 1 weight masking, 2 LoRA, 3 a soft prompt. */
static void rank_train(rank_group *g, int rank, int variant, int device, rank_result *out) {
    static const char *specs[] = {"npo=1,dpo=0.3,retain-ce=0.5", "log1mp=1,retain-ce=1", "learn=1,retain-ce=0.5",
                                  "npo=1,retain-ce=0.5"};
    static mu_backend fake;
    fake = *mu_backend_cpu();
    fake.host_memory = 0;
    mu_config c = tiny_cfg();
    mu_model *m = mu_model_init_random(&c, 12, 0.2f, device ? &fake : mu_backend_cpu(), out->err, sizeof out->err);
    if (!m) return;
    mu_mask mask;
    mixed_mask(m, &mask);
    mu_train_opts o;
    mu_train_opts_default(&o);
    mu_objective_parse(specs[variant], o.coef, out->err, sizeof out->err);
    o.steps = 3; o.batch = 2; o.accum = 4; o.opt.lr = 1e-2; o.opt.weight_decay = 0.05; o.eval_every = 2;
    if (variant == 1) { o.weight_mask = 1; o.weight_mask_lambda = 0.01; }
    if (variant == 2) { o.lora_r = 2; o.lora_alpha = 4; }
    if (variant == 3) o.soft_tokens = 3;
    mu_trainer *t = mu_trainer_new(m, NULL, variant >= 2 ? NULL : &mask, &o, out->err, sizeof out->err);
    if (t) {
        mu_train_set f, r, ev;
        if (variant == 3) soft_facts(&f, 9, 3, 7);
        else facts(&f, 9, 7, 1);
        facts(&r, 7, 8, 0);
        if (variant == 3) soft_facts(&ev, 5, 3, 9);
        else facts(&ev, 5, 7, 0);
        mu_trainer_set_data(t, MU_DATA_FORGET, &f);
        mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
        mu_trainer_add_eval(t, "facts", &ev);
        if (g->world > 1) {
            mu_dist d = {.rank = rank, .world = g->world, .sum_f32 = group_sum_f32, .sum_f64 = group_sum_f64, .ctx = g};
            mu_trainer_set_dist(t, &d);
        }
        if (mu_trainer_run(t, NULL, out->err, sizeof out->err) == 0) {
            out->steps = mu_trainer_step(t);
            out->loss = mu_trainer_last_loss(t);
            out->nll = mu_trainer_eval_metric(t, "facts.nll");
            out->ok = 1;
            if (variant == 3) {                                    /* the soft prompt's vectors */
                mu_trainer_get_trained(t, 0, out->v);
                out->n = mu_trainer_trained_set(t, 0)->n;
            }
            for (int i = 0; i < mu_model_n_params(m) && out->ok && variant != 3; i++) {   /* LoRA: the merged weights */
                int64_t k = mu_model_param(m, i)->numel;
                if (out->n + k > RANK_FLOATS) { snprintf(out->err, sizeof out->err, "too many parameters"); out->ok = 0; }
                else mu_model_get_param(m, i, out->v + out->n);
                out->n += k;
            }
        }
        mu_trainer_free(t);
    }
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* Runs world ranks as child processes (60 s each at most); 0 when every one exited 0. */
static int run_ranks(rank_group *g, int world, int variant, int device) {
    memset(g->res, 0, sizeof g->res);
    g->world = world;
    pthread_barrierattr_t a;
    pthread_barrierattr_init(&a);
    pthread_barrierattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_barrier_init(&g->bar, &a, (unsigned)world);
    pid_t pid[3];
    for (int r = 0; r < world; r++) {
        pid[r] = fork();
        if (pid[r] == 0) {
            alarm(60);
            omp_set_num_threads(1);   /* ranks share the cores; results do not depend on it */
            openblas_set_num_threads(1);
            rank_train(g, r, variant, device, &g->res[r]);
            _exit(g->res[r].ok ? 0 : 1);
        }
    }
    int bad = 0;
    for (int r = 0; r < world; r++) {
        int st = 0;
        if (pid[r] < 0 || waitpid(pid[r], &st, 0) < 0) st = -1;
        if (st && !g->res[r].err[0])
            snprintf(g->res[r].err, sizeof g->res[r].err, "%s %d", WIFSIGNALED(st) ? "killed by signal" : "exit",
                     WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
        bad |= st != 0;
    }
    /* (not pthread_barrier_destroy: a rank that died inside the barrier would hang it) */
    return bad ? -1 : 0;
}

/* 2 and 3 ranks (3: uneven, 2 + 1 + 1 micro-batches), on the CPU and (2 ranks) on the CPU
 * posing as a device (gradients summed through host arrays): every rank ends with the same
 * bits, and they are one process's parameters with the same accumulation up to the order
 * of float sums (the gradients' sum order differs: 6e-8 here, one ulp; checked < 1e-6). */
TEST(train_data_parallel_ranks_agree_and_match_one_process) {
    rank_group *g = mmap(NULL, sizeof *g, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CHECK(g != MAP_FAILED);
    if (g == MAP_FAILED) return;
    static rank_result one;
    for (int variant = 0; variant < 4; variant++) {
        CHECK_MSG(run_ranks(g, 1, variant, 0) == 0, "variant %d, one process: %s", variant, g->res[0].err);
        one = g->res[0];
        if (!one.ok) continue;
        for (int setup = 0; setup < 3; setup++) {
            int world = setup == 1 ? 3 : 2;
            const char *how = setup == 2 ? " (device path)" : "";
            int rc = run_ranks(g, world, variant, setup == 2);
            for (int r = 0; r < world; r++)
                CHECK_MSG(rc == 0 && g->res[r].ok, "variant %d, %d ranks%s: rank %d: %s", variant, world, how, r,
                          g->res[r].err);
            if (rc) continue;
            CHECK_EQ_INT(g->res[0].steps, 3);
            CHECK_EQ_INT(g->res[0].n, one.n);
            CHECK_CLOSE(g->res[0].loss, one.loss, 1e-6, 0);
            CHECK_CLOSE(g->res[0].nll, one.nll, 1e-6, 0);
            for (int r = 1; r < world; r++)
                CHECK_MSG(memcmp(g->res[r].v, g->res[0].v, (size_t)one.n * sizeof(float)) == 0,
                          "variant %d, %d ranks%s: rank %d's parameters differ from rank 0's", variant, world, how, r);
            double worst = 0;
            for (int64_t e = 0; e < one.n; e++) worst = fmax(worst, fabs((double)g->res[0].v[e] - one.v[e]));
            CHECK_MSG(worst < 1e-6, "variant %d, %d ranks%s: parameters differ from one process's by %g", variant,
                      world, how, worst);
        }
    }
    munmap(g, sizeof *g);
}

/* ---- soft prompts ---- */
/* n facts whose prompts are BOS, soft-prompt slots -1 .. -ns, then 1-2 random tokens; the
 * answer 1-2 tokens. */
static void soft_facts(mu_train_set *set, int n, int ns, uint64_t seed) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    int32_t *ids[32];
    int len[32], pl[32];
    for (int i = 0; i < n; i++) {
        pl[i] = 1 + ns + 1 + (i % 2);
        len[i] = pl[i] + 1 + (i % 3 == 0);
        ids[i] = malloc(sizeof(int32_t) * len[i]);
        ids[i][0] = 1;
        for (int k = 1; k < len[i]; k++) ids[i][k] = k <= ns ? -k : 2 + (int32_t)mu_rng_below(&r, 22);
    }
    mu_train_set_from_arrays(set, n, ids, len, pl);
    for (int i = 0; i < n; i++) free(ids[i]);
}

static mu_trainer *soft_trainer(mu_model *m, mu_model *ref, const char *objective, int ns, int64_t steps,
                                const char *ckpt, int64_t every) {
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse(objective, o.coef, err, sizeof err) == 0);
    o.soft_tokens = ns; o.batch = 3; o.accum = 2; o.steps = steps; o.seed = 5; o.opt.lr = 3e-2;
    o.npo_beta = 0.5; o.checkpoint = ckpt; o.checkpoint_every = every;
    mu_trainer *t = mu_trainer_new(m, ref, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, r;
    soft_facts(&f, 6, ns, 21);
    facts(&r, 5, 8, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    return t;
}

/* A soft prompt (opts.soft_tokens) trains alone: its gradient through the whole pipeline
 * (NPO with cached reference log-probs, retain-ce, retain-kl against a reference that gets
 * the starting vectors) against central differences; the vectors start as embedding rows;
 * training moves them, lowers the loss of learn, and leaves every weight's bits. */
TEST(train_soft_prompt_gradient_fd_and_frozen_weights) {
    mu_model *m = tiny_model(3), *ref = tiny_model(3);
    char err[512];
    mu_trainer *t = soft_trainer(m, ref, "npo=1,retain-ce=0.5,retain-kl=2", 3, 1, NULL, 0);
    CHECK(mu_trainer_n_trained(t) == 1 && mu_trainer_lora_part(t, 0) == 3 && mu_trainer_trained_param(t, 0) == -1);
    CHECK(mu_trainer_trained_set(t, 0)->n == 3 * 16);
    const mu_soft_prompt *sp = mu_model_soft_prompt(m), *rp = mu_model_soft_prompt(ref);
    CHECK(sp && sp->n == 3 && sp->g && rp && rp->n == 3 && !rp->g);
    float P[48], E[24 * 16];
    mu_trainer_get_trained(t, 0, P);
    CHECK(mu_model_get_param(m, mu_model_find(m, "model.embed_tokens.weight"), E) == 0);
    for (int j = 0; j < 3; j++) {      /* each vector is some token's embedding row */
        int found = 0;
        for (int v = 0; v < 24 && !found; v++) found = !memcmp(P + 16 * j, E + 16 * v, 16 * sizeof(float));
        CHECK_MSG(found, "soft vector %d is no embedding row", j);
    }
    double l0 = mu_trainer_loss_and_grad(t, 1, err, sizeof err);
    CHECK_MSG(isfinite(l0), "%s", err);
    int checked = 0;
    double biggest = 0;
    fd_trained(t, "soft prompt", &checked, &biggest);
    CHECK(checked >= 5);
    CHECK_MSG(biggest > 1e-3, "every checked soft-prompt gradient is ~0 (max %.3g)", biggest);
    mu_trainer_free(t);

    float **before = snapshot(m);
    mu_model_set_soft_prompt(m, 0, NULL, 0);
    mu_model_set_soft_prompt(ref, 0, NULL, 0);
    t = soft_trainer(m, ref, "learn", 3, 25, NULL, 0);
    mu_trainer_get_trained(t, 0, P);
    double first = mu_trainer_loss_and_grad(t, 0, err, sizeof err);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    double last = mu_trainer_loss_and_grad(t, 0, err, sizeof err);
    CHECK_MSG(last < 0.8 * first, "learn through the soft prompt: loss %.4g -> %.4g", first, last);
    float P1[48];
    mu_trainer_get_trained(t, 0, P1);
    CHECK(memcmp(P, P1, sizeof P) != 0);
    for (int i = 0; i < mu_model_n_params(m); i++) {
        float *now = malloc(mu_model_param(m, i)->numel * sizeof(float));
        mu_model_get_param(m, i, now);
        CHECK_MSG(!memcmp(now, before[i], mu_model_param(m, i)->numel * sizeof(float)), "%s changed",
                  mu_model_param(m, i)->info.name);
        free(now);
    }
    mu_trainer_free(t);
    free_snapshot(m, before);
    mu_model_free(m);
    mu_model_free(ref);
}

/* A trainer of some kind on m for `steps` steps, checkpointing to ckpt every `every`. */
typedef mu_trainer *(*trainer_maker)(mu_model *m, int64_t steps, const char *ckpt, int64_t every);

/* Six steps at once, and three then a resume from the checkpoint (name in the test
 * directory) to six, each on a fresh tiny_model(6): the same bits in trained tensor 0
 * ([n]). The resumed trainer is returned with its model in *mp, for more checks. */
static mu_trainer *straight_and_resumed(trainer_maker make, const char *name, size_t n, mu_model **mp) {
    char ck[PATH_MAX], err[512];
    snprintf(ck, sizeof ck, "%s/%s", mu_test_tmpdir(), name);
    float *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b);
    mu_model *m = tiny_model(6);
    mu_trainer *t = make(m, 6, NULL, 0);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    mu_trainer_get_trained(t, 0, a);
    mu_trainer_free(t);
    mu_model_free(m);
    m = tiny_model(6);
    t = make(m, 3, ck, 3);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    mu_trainer_free(t);
    mu_model_free(m);
    *mp = m = tiny_model(6);
    t = make(m, 6, ck, 3);
    CHECK_MSG(mu_trainer_run(t, ck, err, sizeof err) == 0, "%s", err);
    mu_trainer_get_trained(t, 0, b);
    CHECK(memcmp(a, b, n * sizeof *a) == 0);
    free(a);
    free(b);
    return t;
}

static mu_trainer *soft_maker(mu_model *m, int64_t steps, const char *ckpt, int64_t every) {
    return soft_trainer(m, NULL, "learn,retain-ce", 3, steps, ckpt, every);
}

TEST(train_soft_prompt_resume_is_bit_identical) {
    mu_model *m;
    mu_trainer *t = straight_and_resumed(soft_maker, "soft.mpk.zst", 48, &m);
    mu_trainer_free(t);
    mu_model_free(m);
}

/* ---- GCG (opts.gcg): tokens searched for the slots ---- */
static mu_trainer *gcg_trainer(mu_model *m, int ns, int topk, int cand, int64_t steps, const unsigned char *ok,
                               const char *ckpt, int64_t every) {
    mu_train_opts o;
    mu_train_opts_default(&o);
    char err[512];
    CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
    o.soft_tokens = ns; o.gcg = 1; o.gcg_topk = topk; o.gcg_candidates = cand; o.gcg_allowed = ok;
    o.batch = 6; o.steps = steps; o.seed = 5; o.checkpoint = ckpt; o.checkpoint_every = every;
    mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f;
    soft_facts(&f, 6, ns, 21);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    return t;
}

/* A plain soft-prompt trainer (vectors, the training path: forward keeping activations,
 * then backward) on a fresh tiny_model(3) whose slots hold the tokens ids: learn's loss on
 * gcg_trainer's facts, and its gradient into g [ns * 16] when g is not NULL. */
static double loss_with_tokens(const int32_t *ids, int ns, float *g) {
    mu_model *m = tiny_model(3);
    float P[8 * 16];
    char err[512];
    CHECK(mu_model_embedding_rows(m, ids, ns, P) == 0);
    CHECK(mu_model_set_soft_prompt(m, ns, P, 0) == 0);
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
    o.soft_tokens = ns; o.batch = 6; o.seed = 5;
    mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f;
    soft_facts(&f, 6, ns, 21);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    double l = mu_trainer_loss_and_grad(t, 0, err, sizeof err);
    CHECK_MSG(isfinite(l), "%s", err);
    if (g) mu_trainer_opt_grad(t, 0, g);
    mu_trainer_free(t);
    mu_model_free(m);
    return l;
}

/* The slots hold exactly the embedding rows of the trainer's tokens. */
static void check_slots_are_rows(mu_trainer *t, mu_model *m, int ns) {
    float P[8 * 16], E[8 * 16];
    mu_trainer_get_trained(t, 0, P);
    CHECK(mu_model_embedding_rows(m, mu_trainer_gcg_ids(t), ns, E) == 0);
    CHECK_MSG(!memcmp(P, E, (size_t)ns * 16 * sizeof *P), "the slots are not the rows of their tokens");
}

/* With room for every swap (2 slots x 22 allowed tokens <= 64 candidates) one GCG step
 * makes the best single-token swap that brute force finds, each loss computed by the
 * training path on a fresh model; tokens the mask refuses are never placed. */
TEST(train_gcg_step_takes_the_best_single_swap) {
    unsigned char ok[24];
    for (int v = 0; v < 24; v++) ok[v] = v != 0 && v != 5;
    mu_model *m = tiny_model(3);
    char err[512];
    mu_trainer *t = gcg_trainer(m, 2, 24, 64, 1, ok, NULL, 0);
    const int32_t *ids = mu_trainer_gcg_ids(t);
    int32_t start[2] = {ids[0], ids[1]};
    CHECK(ok[start[0]] && ok[start[1]]);
    check_slots_are_rows(t, m, 2);
    double l0 = loss_with_tokens(start, 2, NULL), best = INFINITY;
    int bj = -1, bv = -1;
    for (int j = 0; j < 2; j++)
        for (int v = 0; v < 24; v++) {
            if (!ok[v] || v == start[j]) continue;
            int32_t c[2] = {start[0], start[1]};
            c[j] = v;
            double l = loss_with_tokens(c, 2, NULL);
            if (l < best) { best = l; bj = j; bv = v; }
        }
    CHECK_MSG(best < l0, "no swap lowers the loss %.6g (best %.6g)", l0, best);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    ids = mu_trainer_gcg_ids(t);
    CHECK_EQ_INT(ids[bj], bv);
    CHECK_EQ_INT(ids[1 - bj], start[1 - bj]);
    check_slots_are_rows(t, m, 2);
    double held = mu_trainer_loss_and_grad(t, 0, err, sizeof err);
    CHECK_NEAR(held, best, 1e-9 * fabs(best));
    mu_trainer_free(t);
    mu_model_free(m);
}

/* With fewer candidates than swaps (top 2 of 24 per slot, 3 candidates) the swap made is
 * of one slot, to one of that slot's two tokens with the lowest E[v].g (computed here from
 * the embedding and the training path's gradient); the same seed makes the same swap. */
TEST(train_gcg_candidates_come_from_the_gradient_top_k) {
    mu_model *m = tiny_model(3);
    char err[512];
    mu_trainer *t = gcg_trainer(m, 3, 2, 3, 1, NULL, NULL, 0);
    int32_t start[3], after[3];
    memcpy(start, mu_trainer_gcg_ids(t), sizeof start);
    float g[48], E[24 * 16];
    loss_with_tokens(start, 3, g);
    CHECK(mu_model_get_param(m, mu_model_find(m, "model.embed_tokens.weight"), E) == 0);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    memcpy(after, mu_trainer_gcg_ids(t), sizeof after);
    mu_trainer_free(t);
    int changed = 0;
    for (int j = 0; j < 3; j++) {
        if (after[j] == start[j]) continue;
        changed++;
        int lower = 0;          /* tokens ranked ahead of the one placed */
        double mine = 0;
        for (int i = 0; i < 16; i++) mine += (double)g[j * 16 + i] * E[after[j] * 16 + i];
        for (int v = 0; v < 24; v++) {
            double dot = 0;
            for (int i = 0; i < 16; i++) dot += (double)g[j * 16 + i] * E[v * 16 + i];
            lower += dot < mine - 1e-12 || (fabs(dot - mine) <= 1e-12 && v < after[j]);
        }
        CHECK_MSG(lower < 2, "slot %d got token %d, ranked %d by the gradient", j, after[j], lower + 1);
    }
    CHECK_EQ_INT(changed, 1);
    mu_model_free(m);
    m = tiny_model(3);
    t = gcg_trainer(m, 3, 2, 3, 1, NULL, NULL, 0);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(!memcmp(after, mu_trainer_gcg_ids(t), sizeof after));
    mu_trainer_free(t);
    mu_model_free(m);
}

static mu_trainer *gcg_maker(mu_model *m, int64_t steps, const char *ckpt, int64_t every) {
    return gcg_trainer(m, 3, 4, 5, steps, NULL, ckpt, every);
}

/* Six GCG steps at once, and three then a resume from the checkpoint to six: the same
 * vectors, still the rows of the trainer's tokens (drawn candidates are seeded by the
 * step). The checkpoint does not resume a search allowed other tokens; a mask that allows
 * no token is refused. */
TEST(train_gcg_resume_is_bit_identical) {
    char err[512], ck[PATH_MAX];
    mu_model *m;
    mu_trainer *t = straight_and_resumed(gcg_maker, "gcg.mpk.zst", 48, &m);
    check_slots_are_rows(t, m, 3);
    mu_trainer_free(t);
    mu_model_free(m);
    m = tiny_model(6);
    unsigned char most[24];
    memset(most, 1, sizeof most);
    most[7] = 0;
    snprintf(ck, sizeof ck, "%s/gcg.mpk.zst", mu_test_tmpdir());
    t = gcg_trainer(m, 3, 4, 5, 6, most, ck, 3);
    CHECK(mu_trainer_run(t, ck, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "other training options"), "%s", err);
    mu_trainer_free(t);

    unsigned char none[24] = {0};
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
    o.soft_tokens = 2; o.gcg = 1; o.gcg_allowed = none;
    mu_model_set_soft_prompt(m, 0, NULL, 0);
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "no token of the vocabulary is allowed"), "%s", err);
    mu_model_free(m);
}

/* --keep-best with GCG: with :max (the worst evaluated nll; GCG lowers it) the run ends
 * holding the starting tokens, with :min tokens no worse than them; either way the
 * trainer's tokens are those whose rows the slots hold. */
TEST(train_gcg_keep_best_restores_the_tokens) {
    for (int dir = 0; dir < 2; dir++) {
        mu_model *m = tiny_model(3);
        mu_train_opts o;
        mu_train_opts_default(&o);
        char err[512];
        CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
        o.soft_tokens = 2; o.gcg = 1; o.gcg_topk = 6; o.gcg_candidates = 8;
        o.batch = 6; o.steps = 5; o.seed = 5; o.eval_every = 1;
        o.keep_best = dir ? "ev.nll:max" : "ev.nll:min";
        mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
        CHECK_MSG(t, "%s", err);
        mu_train_set f, ev;
        soft_facts(&f, 6, 2, 21);
        soft_facts(&ev, 6, 2, 21);
        mu_trainer_set_data(t, MU_DATA_FORGET, &f);
        mu_trainer_add_eval(t, "ev", &ev);
        int32_t start[2];
        memcpy(start, mu_trainer_gcg_ids(t), sizeof start);
        double nll0 = mu_trainer_eval_metric(t, "ev.nll");
        CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == 0, "%s", err);
        double nll = mu_trainer_eval_metric(t, "ev.nll");
        check_slots_are_rows(t, m, 2);
        if (dir) {
            CHECK_NEAR(nll, nll0, 0);
            CHECK(!memcmp(start, mu_trainer_gcg_ids(t), sizeof start));
        } else {
            CHECK_MSG(nll < nll0, "GCG's best tokens: nll %.6g, start %.6g", nll, nll0);
            CHECK(memcmp(start, mu_trainer_gcg_ids(t), sizeof start) != 0);
        }
        mu_trainer_free(t);
        mu_model_free(m);
    }
}

/* What a soft-prompt run refuses: a mask, LoRA, a forget set without slots, a model whose
 * soft prompt has another size. */
TEST(train_soft_prompt_refusals) {
    mu_model *m = tiny_model(3);
    char err[512];
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
    o.soft_tokens = 2;
    mu_mask mask;
    mixed_mask(m, &mask);
    CHECK(mu_trainer_new(m, NULL, &mask, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "no mask, LoRA or weight masking"), "%s", err);
    o.lora_r = 2;
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    o.lora_r = 0;
    mu_trainer *t = mu_trainer_new(m, NULL, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f;
    facts(&f, 4, 7, 0);
    mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    CHECK(mu_trainer_run(t, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "no soft-prompt slots"), "%s", err);
    mu_trainer_free(t);
    o.soft_tokens = 3;     /* the model keeps the 2 vectors of the first trainer */
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "has 2 vectors, but 3"), "%s", err);
    mu_mask_free(&mask);
    mu_model_free(m);
}

/* What a trainer refuses, in one line each, before or at its first step: sizes, an RMU
 * layer past the model, LoRA with weight masking, a mask that selects nothing, objectives
 * without their data or reference model, DPO without preferred answers */
static void check_run_refused(mu_model *m, mu_model *ref, const char *objectives, int forget, int alt,
                              int retain, const char *want) {
    char err[512] = "";
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK_MSG(mu_objective_parse(objectives, o.coef, err, sizeof err) == 0, "%s", err);
    mu_trainer *t = mu_trainer_new(m, ref, NULL, &o, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    mu_train_set f, r;
    facts(&f, 4, 7, alt);
    facts(&r, 4, 8, 0);
    f.path = strdup("forget.tok");
    if (forget) mu_trainer_set_data(t, MU_DATA_FORGET, &f);
    if (retain) mu_trainer_set_data(t, MU_DATA_RETAIN, &r);
    CHECK_MSG(mu_trainer_run(t, NULL, err, sizeof err) == -1, "%s: ran", objectives);
    CHECK_MSG(strstr(err, want) && !strchr(err, '\n'), "%s: \"%s\" lacks \"%s\"", objectives, err, want);
    mu_trainer_free(t);
    if (!forget) mu_train_set_free(&f);
    if (!retain) mu_train_set_free(&r);
}

TEST(train_refusals) {
    mu_model *m = tiny_model(3), *ref = tiny_model(3);
    char err[512];
    mu_train_opts o;
    mu_train_opts_default(&o);
    CHECK(mu_objective_parse("learn", o.coef, err, sizeof err) == 0);
    o.batch = 0;
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "batch and accumulation must be >= 1, steps >= 0"), "%s", err);
    o.batch = 4;
    o.rmu_layer = 9;
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "rmu layer 9: the model has 2 layers"), "%s", err);
    o.rmu_layer = -1;
    o.lora_r = 2;
    o.weight_mask = 1;
    CHECK(mu_trainer_new(m, NULL, NULL, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "LoRA and weight masking cannot be combined"), "%s", err);
    o.lora_r = 0;
    o.weight_mask = 0;
    mu_mask none;   /* a tensor, but not one of its units */
    mu_mask_init(&none, "neuron", 0);
    mu_param *p = mu_model_param(m, mu_model_find(m, "model.layers.1.mlp.up_proj.weight"));
    CHECK_MSG(mu_mask_add(&none, p->info.name, 2, p->info.shape, MU_GRAN_NEURON, 32, err, sizeof err), "%s", err);
    CHECK(mu_trainer_new(m, NULL, &none, &o, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "the mask selects no parameter"), "%s", err);
    mu_mask_free(&none);
    check_run_refused(m, NULL, "npo=1", 0, 0, 0, "the objectives need --forget data");
    check_run_refused(m, NULL, "ga=1,retain-ce=1", 1, 0, 0, "the objectives need --retain data");
    check_run_refused(m, NULL, "ga=1,general-lm=1", 1, 0, 0, "general-lm needs --general text");
    check_run_refused(m, NULL, "ga=1,retain-kl=1", 1, 0, 1, "undial, retain-kl, rmu and mlp-l2 need a reference model");
    check_run_refused(m, NULL, "undial=1", 1, 0, 0, "need a reference model");
    check_run_refused(m, ref, "dpo=1", 1, 0, 0, "forget.tok: record 0: dpo needs a preferred answer");
    check_run_refused(m, ref, "idk=1", 1, 0, 0, "forget.tok: record 0: idk needs a preferred answer");
    mu_model_free(ref);
    mu_model_free(m);
}
