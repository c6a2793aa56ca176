/* t_attrib.c — attribution scores (lib/attrib.c) against PyTorch autograd in float64
 * (tests/gen/gen_attrib_golden.py on the tiny Llama of tests/golden/parity). */
#include "test.h"
#include "gpu_test.h"
#include "attrib.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"
#include "stream.h"
#include <stdint.h>

static mu_st *golden_open(void) {
    char path[1200], err[512];
    snprintf(path, sizeof path, "%s/tests/golden/attrib/golden.safetensors", mu_test_root());
    mu_st *g = mu_st_open(path, err, sizeof err);
    CHECK_MSG(g != NULL, "%s", err);
    return g;
}

static mu_model *parity_model_on(const mu_backend *be, mu_weights w) {
    char dir[1200], err[512];
    snprintf(dir, sizeof dir, "%s/tests/golden/parity", mu_test_root());
    mu_model *m = mu_model_load_as(dir, NULL, NULL, 0, be, w, err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    return m;
}

static mu_model *parity_model(void) { return parity_model_on(mu_backend_cpu(), MU_WEIGHTS_F32); }

static const void *golden_data(mu_st *g, const char *name, mu_dtype want, int64_t *shape) {
    mu_dtype dt;
    int nd;
    const void *data;
    size_t nb;
    int i = mu_st_find(g, name);
    CHECK_MSG(i >= 0, "golden lacks %s", name);
    CHECK(mu_st_info(g, i, &dt, &nd, shape, &data, &nb) == 0);
    CHECK_MSG(dt == want, "%s: dtype %d", name, (int)dt);
    return data;
}

/* The golden set "forget" or "retain" as a mu_train_set. */
static void golden_set(mu_st *g, const char *which, mu_train_set *s) {
    char k[64];
    int64_t sh[MU_MAX_DIMS], sl[MU_MAX_DIMS];
    snprintf(k, sizeof k, "%s.ids", which);
    const int32_t *ids = golden_data(g, k, MU_I32, sh);
    snprintf(k, sizeof k, "%s.len", which);
    const int32_t *len = golden_data(g, k, MU_I32, sl);
    snprintf(k, sizeof k, "%s.prompt", which);
    const int32_t *prompt = golden_data(g, k, MU_I32, sl);
    int n = (int)sh[0];
    int32_t **rows = malloc((size_t)n * sizeof *rows);
    int *ln = malloc((size_t)n * sizeof *ln), *pl = malloc((size_t)n * sizeof *pl);
    for (int i = 0; i < n; i++) {
        rows[i] = (int32_t *)ids + (size_t)i * sh[1];
        ln[i] = len[i];
        pl[i] = prompt[i];
    }
    mu_train_set_from_arrays(s, n, rows, ln, pl);
    free(rows); free(ln); free(pl);
}

/* A tensor list of one tensor (bits unused). */
static void one_tensor(mu_model *m, const char *name, mu_mask *mask) {
    char err[256];
    int i = mu_model_find(m, name);
    CHECK_MSG(i >= 0, "no %s", name);
    const mu_param_info *p = &mu_model_param(m, i)->info;
    mu_mask_init(mask, "matrix", 0);
    CHECK(mu_mask_add(mask, name, p->ndim, p->shape, MU_GRAN_MATRIX, 1, err, sizeof err) != NULL);
}

/* max |got - want| / max(max |want|, 1e-12) */
static double rel_err(const float *got, const double *want, int64_t n) {
    double scale = 1e-12, e = 0;
    for (int64_t i = 0; i < n; i++) if (fabs(want[i]) > scale) scale = fabs(want[i]);
    for (int64_t i = 0; i < n; i++) if (fabs(got[i] - want[i]) > e) e = fabs(got[i] - want[i]);
    return e / scale;
}

typedef struct { mu_attr_method method; const char *key; int answer; } method_case;

/* Runs one method on one tensor and compares with golden "<key>|<gran>|<name>". */
static void check_against_golden(mu_model *m, mu_st *g, const mu_train_set *f, const mu_train_set *r,
                                 const method_case *mc, const char *gran, const char *name, int batch) {
    mu_mask tensors;
    one_tensor(m, name, &tensors);
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    o.method = mc->method;
    o.answer_positions = mc->answer;
    o.gamma = 2;
    o.memflex_mu = 0.1;
    o.batch = batch;
    CHECK(mu_gran_parse(gran, &o.gran) == 0);
    mu_attr_result res;
    char err[512], key[256];
    CHECK_MSG(mu_attrib_run(m, &tensors, f, r, &o, &res, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(res.n, 1);
    int64_t sh[MU_MAX_DIMS];
    snprintf(key, sizeof key, "%s|%s|%s", mc->key, gran, name);
    const double *want = golden_data(g, key, MU_F64, sh);
    CHECK_EQ_INT(res.t[0].units, sh[0]);
    double e = rel_err(res.t[0].score, want, sh[0]);
    CHECK_MSG(e < 2e-5, "%s: relative error %.3g", key, e);
    if (mc->method == MU_ATTR_MEMFLEX) {
        snprintf(key, sizeof key, "memflex.norm_f|%s|%s", gran, name);
        CHECK(rel_err(res.t[0].norm_f, golden_data(g, key, MU_F64, sh), sh[0]) < 2e-5);
        snprintf(key, sizeof key, "memflex.cos|%s|%s", gran, name);
        const double *cw = golden_data(g, key, MU_F64, sh);
        for (int64_t u = 0; u < sh[0]; u++) CHECK_NEAR(res.t[0].cos[u], cw[u], 1e-4);
    }
    if (mc->method >= MU_ATTR_GRAD) {
        const double *lf = golden_data(g, "loss_f", MU_F64, sh);
        CHECK_NEAR(res.loss_f, lf[0], 1e-5 * lf[0]);
        if (mu_attr_needs_retain(mc->method)) {
            const double *lr = golden_data(g, "loss_r", MU_F64, sh);
            CHECK_NEAR(res.loss_r, lr[0], 1e-5 * lr[0]);
        }
    }
    mu_attr_result_free(&res);
    mu_mask_free(&tensors);
}

static const char *GRAD_TENSORS[][2] = {
    {"model.layers.0.mlp.down_proj.weight", "neuron"},
    {"model.layers.1.mlp.down_proj.weight", "neuron"},
    {"model.layers.1.mlp.gate_proj.weight", "neuron"},
    {"model.layers.1.self_attn.o_proj.weight", "head"},
    {"model.layers.0.self_attn.k_proj.weight", "head"},
    {"model.layers.0.input_layernorm.weight", "element"},
    {"model.layers.0.self_attn.q_proj.weight", "matrix"},
};
static const char *ACT_TENSORS[] = {"model.layers.0.mlp.down_proj.weight",
                                    "model.layers.1.mlp.down_proj.weight",
                                    "model.layers.1.mlp.up_proj.weight"};

TEST(attrib_gradient_methods_match_torch) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f, r;
    golden_set(g, "forget", &f);
    golden_set(g, "retain", &r);
    const method_case cases[] = {{MU_ATTR_GRAD, "grad", 0}, {MU_ATTR_WAGLE, "wagle", 0},
                                 {MU_ATTR_MEMFLEX, "memflex", 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t t = 0; t < sizeof GRAD_TENSORS / sizeof *GRAD_TENSORS; t++)
            check_against_golden(m, g, &f, &r, &cases[c], GRAD_TENSORS[t][1], GRAD_TENSORS[t][0], 3);
    mu_train_set_free(&f);
    mu_train_set_free(&r);
    mu_model_free(m);
    mu_st_close(g);
}

TEST(attrib_activation_methods_match_torch) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f, r;
    golden_set(g, "forget", &f);
    golden_set(g, "retain", &r);
    const method_case cases[] = {{MU_ATTR_ACT, "act", 0}, {MU_ATTR_ACT, "act_answer", 1},
                                 {MU_ATTR_ACT_CONTRAST, "act-contrast", 0}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (size_t t = 0; t < sizeof ACT_TENSORS / sizeof *ACT_TENSORS; t++)
            check_against_golden(m, g, &f, &r, &cases[c], "neuron", ACT_TENSORS[t], 2);
    mu_train_set_free(&f);
    mu_train_set_free(&r);
    mu_model_free(m);
    mu_st_close(g);
}

/* Padding must not matter: one sequence per forward gives the same scores as all at once,
 * and the model is left with no trainable tensor. */
TEST(attrib_batch_size_and_model_state) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f, r;
    golden_set(g, "forget", &f);
    golden_set(g, "retain", &r);
    mu_mask tensors;
    one_tensor(m, "model.layers.1.mlp.down_proj.weight", &tensors);
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    o.method = MU_ATTR_WAGLE;
    mu_attr_result a, b;
    char err[512];
    o.batch = 1;
    CHECK_MSG(mu_attrib_run(m, &tensors, &f, &r, &o, &a, err, sizeof err) == 0, "%s", err);
    o.batch = 16;
    CHECK_MSG(mu_attrib_run(m, &tensors, &f, &r, &o, &b, err, sizeof err) == 0, "%s", err);
    for (int64_t u = 0; u < a.t[0].units; u++)
        CHECK_NEAR(a.t[0].score[u], b.t[0].score[u], 1e-5 * (fabs(b.t[0].score[u]) + 1e-6));
    for (int i = 0; i < mu_model_n_params(m); i++) CHECK(!mu_model_param(m, i)->trainable);
    mu_attr_result_free(&a);
    mu_attr_result_free(&b);
    mu_mask_free(&tensors);
    mu_train_set_free(&f);
    mu_train_set_free(&r);
    mu_model_free(m);
    mu_st_close(g);
}

TEST(attrib_rejects_what_it_cannot_score) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f;
    golden_set(g, "forget", &f);
    mu_mask tensors;
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    mu_attr_result res;
    char err[512];
    one_tensor(m, "model.layers.0.self_attn.q_proj.weight", &tensors);
    o.method = MU_ATTR_ACT;
    CHECK(mu_attrib_run(m, &tensors, &f, NULL, &o, &res, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "q_proj") && strstr(err, "MLP neurons"), "%s", err);
    o.method = MU_ATTR_WAGLE;
    CHECK(mu_attrib_run(m, &tensors, &f, NULL, &o, &res, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "retain"), "%s", err);
    o.method = MU_ATTR_GRAD;
    mu_mask_free(&tensors);
    one_tensor(m, "model.layers.0.mlp.down_proj.weight", &tensors);
    mu_train_set empty = {0};
    CHECK(mu_attrib_run(m, &tensors, &empty, NULL, &o, &res, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "no answer tokens"), "%s", err);
    mu_mask_free(&tensors);
    mu_train_set_free(&f);
    mu_model_free(m);
    mu_st_close(g);
}

/* The scores stream holds what the run computed: names, shapes, units, scores, meta. */
TEST(attrib_scores_stream_roundtrip) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f, r;
    golden_set(g, "forget", &f);
    golden_set(g, "retain", &r);
    mu_mask tensors;
    one_tensor(m, "model.layers.1.self_attn.o_proj.weight", &tensors);
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    o.method = MU_ATTR_MEMFLEX;
    o.gran = MU_GRAN_HEAD;
    mu_attr_result res;
    char err[512], path[1200];
    CHECK_MSG(mu_attrib_run(m, &tensors, &f, &r, &o, &res, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/s.mpk.zst", mu_test_tmpdir());
    mu_attr_write(&res, &o, path, NULL, NULL, NULL, 0);
    mu_reader *rd = mu_reader_open(path, "scores", err, sizeof err);
    CHECK_MSG(rd != NULL, "%s", err);
    const msgpack_object *meta = mu_obj_get(mu_reader_header(rd), "meta");
    CHECK(mu_obj_streq(mu_obj_get(meta, "method"), "memflex"));
    CHECK(mu_obj_streq(mu_obj_get(meta, "granularity"), "head"));
    int64_t total;
    CHECK(mu_obj_int(mu_obj_get(meta, "params_total"), &total) == 0 && total == res.params_total);
    const msgpack_object *rec;
    CHECK(mu_reader_next(rd, &rec) == 1);
    CHECK(mu_obj_streq(mu_obj_get(rec, "name"), "model.layers.1.self_attn.o_proj.weight"));
    int64_t units;
    CHECK(mu_obj_int(mu_obj_get(rec, "units"), &units) == 0 && units == 4);
    const char *keys[] = {"score", "norm_f", "norm_r", "cos"};
    const float *want[] = {res.t[0].score, res.t[0].norm_f, res.t[0].norm_r, res.t[0].cos};
    for (int k = 0; k < 4; k++) {
        mu_tensor_view v;
        CHECK_MSG(mu_obj_tensor(mu_obj_get(rec, keys[k]), &v, err, sizeof err) == 0, "%s", err);
        CHECK(v.dtype == MU_F32 && v.ndim == 1 && v.shape[0] == 4);
        CHECK(memcmp(v.data, want[k], 4 * sizeof(float)) == 0);
    }
    CHECK(mu_reader_next(rd, &rec) == 0);
    mu_reader_close(rd);
    mu_attr_result_free(&res);
    mu_mask_free(&tensors);
    mu_train_set_free(&f);
    mu_train_set_free(&r);
    mu_model_free(m);
    mu_st_close(g);
}

/* ---- output tracing: causal-trace and atp, against explicit patching done here ---------- */

typedef struct {
    mu_site site;
    int layer, D, s0, s1, mode;    /* mode: 0 nothing, 1 cache the component, 2 restore it */
    const float *noise;            /* added to the embeddings of [s0, s1), or NULL */
    int npos;                      /* positions 0 .. npos-1 are restored */
    float *buf;                    /* [T, D] */
} ref_ctx;

/* act[t] += noise[t - s0] for the tokens t of [s0, s1) (rows of D) */
static void add_subject_noise(float *act, int D, int s0, int s1, const float *noise) {
    for (int t = s0; t < s1; t++)
        for (int j = 0; j < D; j++) act[(size_t)t * D + j] += noise[(size_t)(t - s0) * D + j];
}

static int ref_embed(const mu_hook_info *info, float *act, void *user) {
    ref_ctx *c = user;
    if (c->noise) add_subject_noise(act, c->D, c->s0, c->s1, c->noise);
    (void)info;
    return 0;
}

static int ref_component(const mu_hook_info *info, float *act, void *user) {
    ref_ctx *c = user;
    if (info->layer != c->layer) return 0;
    if (c->mode == 1) memcpy(c->buf, act, (size_t)info->T * c->D * sizeof *act);
    if (c->mode == 2) memcpy(act, c->buf, (size_t)c->npos * c->D * sizeof *act);
    return 0;
}

/* Answer log-probability of sequence q, alone in a forward with hooks h. */
static double hooked_answer_logprob(mu_model *m, const mu_train_seq *q, const mu_hook *h, int nh) {
    int32_t rows[64], tgt[64], R = 0;
    for (int t = q->lab_from; t + 1 < q->len; t++) { rows[R] = t; tgt[R++] = q->ids[t + 1]; }
    mu_batch b = {.B = 1, .T = q->len, .ids = q->ids, .lens = &q->len};
    mu_fwd_opts o = {.logit_rows = rows, .n_logit_rows = R, .hooks = h, .n_hooks = nh};
    char err[256];
    double lp[64], s = 0;
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    CHECK(mu_model_target_logprobs(m, tgt, lp, err, sizeof err) == 0);
    for (int r = 0; r < R; r++) s += lp[r];
    return s;
}

/* Answer log-probability of sequence q under the hooks of c. */
static double ref_answer_logprob(mu_model *m, const mu_train_seq *q, ref_ctx *c) {
    mu_hook h[2] = {{.site = MU_SITE_EMBED, .layer = -1, .fn = ref_embed, .user = c},
                    {.site = c->site, .layer = c->layer, .fn = ref_component, .user = c}};
    return hooked_answer_logprob(m, q, h, 2);
}

static double ref_embedding_std(mu_model *m) {
    int i = mu_model_find(m, "model.embed_tokens.weight");
    int64_t n = mu_model_param(m, i)->numel;
    float *w = malloc((size_t)n * sizeof *w);
    CHECK(mu_model_get_param(m, i, w) == 0);
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < n; k++) s += w[k];
    for (int64_t k = 0; k < n; k++) s2 += (w[k] - s / n) * (w[k] - s / n);
    free(w);
    return sqrt(s2 / n);
}

/* The subject of each golden forget record: its prompt tokens after the first. */
static void golden_spans(const mu_train_set *f, int32_t *s0, int32_t *s1) {
    for (int i = 0; i < f->n; i++) { s0[i] = 1; s1[i] = f->s[i].lab_from + 1; }
}

/* Runs method on the parity model's block tensors of the mask spec; effects out. */
static void run_trace_tensors(mu_model *m, const mu_train_set *f, mu_attr_method method, const char *spec,
                              double noise, int samples, const int32_t *s0, const int32_t *s1,
                              mu_attr_result *res) {
    char err[512];
    int np = mu_model_n_params(m);
    mu_param_info *info = mu_model_param_infos(m);
    mu_mask tensors;
    CHECK_MSG(mu_mask_from_spec(spec, info, np, &tensors, err, sizeof err) == 0, "%s", err);
    free(info);
    mu_attr_opts o;
    mu_attr_opts_default(&o);
    o.method = method;
    o.gran = MU_GRAN_MATRIX;
    o.noise = noise;
    o.samples = samples;
    o.seed = 5;
    o.subj_start = s0;
    o.subj_end = s1;
    o.restore_all = method != MU_ATTR_PATH_PATCH;
    CHECK_MSG(mu_attrib_run(m, &tensors, f, NULL, &o, res, err, sizeof err) == 0, "%s", err);
    for (int k = 0; k < res->n; k++) {   /* every tensor carries its block's effect */
        int L = mu_model_param(m, mu_model_find(m, res->t[k].name))->info.layer;
        int mlp = strstr(res->t[k].name, ".mlp.") != NULL;
        CHECK(res->t[k].units == 1 && res->t[k].score[0] == (float)res->effect[mlp][L]);
    }
    mu_mask_free(&tensors);
}

/* run_trace_tensors on every attention and MLP block. */
static void run_trace_method(mu_model *m, const mu_train_set *f, mu_attr_method method, double noise,
                             int samples, const int32_t *s0, const int32_t *s1, mu_attr_result *res) {
    run_trace_tensors(m, f, method, "mlp:all+attn:all", noise, samples, s0, s1, res);
}

/* With no noise a tracing method finds nothing (but the rounding of batched forwards). */
static void check_no_noise_no_effect(mu_model *m, const mu_train_set *f, mu_attr_method method,
                                     const int32_t *s0, const int32_t *s1) {
    mu_attr_result res;
    run_trace_method(m, f, method, 0.0, 1, s0, s1, &res);
    for (int k = 0; k < 2; k++)
        for (int L = 0; L < res.n_layer; L++)
            CHECK_MSG(fabs(res.effect[k][L]) < 1e-6, "%s %s %d: %.3g", mu_attr_method_name(method),
                      k ? "mlp" : "attn", L, res.effect[k][L]);
    mu_attr_result_free(&res);
}

/* causal-trace: per block, mean over records and samples of p(noised run with the block's
 * clean output restored at every prompt token) - p(noised run), made here step by step. */
TEST(attrib_causal_trace_matches_explicit_restoration) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f;
    golden_set(g, "forget", &f);
    int32_t s0[16], s1[16];
    golden_spans(&f, s0, s1);
    mu_attr_result res;
    const int samples = 2;
    run_trace_method(m, &f, MU_ATTR_CAUSAL_TRACE, 3.0, samples, s0, s1, &res);
    const mu_config *c = mu_model_config(m);
    double sigma = 3.0 * ref_embedding_std(m), pc = 0;
    for (int k = 0; k < 2; k++)
        for (int L = 0; L < c->n_layer; L++) {
            double want = 0;
            for (int i = 0; i < f.n; i++) {
                const mu_train_seq *q = &f.s[i];
                float *noise = malloc((size_t)(s1[i] - s0[i]) * c->d_model * sizeof *noise);
                float *buf = malloc((size_t)q->len * c->d_model * sizeof *buf);
                ref_ctx rc = {.site = k ? MU_SITE_MLP_OUT : MU_SITE_ATTN_OUT, .layer = L, .D = c->d_model,
                              .s0 = s0[i], .s1 = s1[i], .npos = q->lab_from + 1, .buf = buf, .mode = 1};
                double p_clean = exp(ref_answer_logprob(m, q, &rc));
                if (k == 0 && L == 0) pc += p_clean / f.n;
                for (int s = 0; s < samples; s++) {
                    mu_attr_noise(5, i, s, sigma, noise, (int64_t)(s1[i] - s0[i]) * c->d_model);
                    rc.noise = noise;
                    rc.mode = 0;
                    double p_corr = exp(ref_answer_logprob(m, q, &rc));
                    rc.mode = 2;
                    double p_rest = exp(ref_answer_logprob(m, q, &rc));
                    want += (p_rest - p_corr) / samples / f.n;
                    rc.noise = NULL;
                    rc.mode = 1;   /* the clean cache stays as it is (same clean run) */
                }
                free(noise);
                free(buf);
            }
            /* 1e-5: the restored runs share a batched forward (other GEMM rounding) */
            CHECK_MSG(fabs(res.effect[k][L] - want) <= 1e-5 * fabs(want) + 1e-10,
                      "%s %d: %.9g vs %.9g", k ? "mlp" : "attn", L, res.effect[k][L], want);
        }
    CHECK_NEAR(res.p_clean, pc, 1e-7 * pc);
    CHECK(res.p_corrupt != res.p_clean);
    mu_attr_result_free(&res);
    check_no_noise_no_effect(m, &f, MU_ATTR_CAUSAL_TRACE, s0, s1);   /* nothing to recover */
    mu_train_set_free(&f);
    mu_model_free(m);
    mu_st_close(g);
}

/* atp is the first-order term of the exact noising effect: with small noise, its scores
 * equal -(m(clean run with the block's noised output at every prompt token) - m(clean))
 * up to a second-order remainder, so the relative remainder shrinks like the noise. */
TEST(attrib_atp_is_the_linearization_of_exact_patching) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f;
    golden_set(g, "forget", &f);
    int32_t s0[16], s1[16];
    golden_spans(&f, s0, s1);
    const mu_config *c = mu_model_config(m);
    double rel[2];
    const double noises[2] = {0.02, 0.01};
    for (int n = 0; n < 2; n++) {
        mu_attr_result res;
        run_trace_method(m, &f, MU_ATTR_ATP, noises[n], 1, s0, s1, &res);
        double sigma = noises[n] * ref_embedding_std(m), num = 0, den = 0;
        for (int k = 0; k < 2; k++)
            for (int L = 0; L < c->n_layer; L++) {
                double exact = 0;
                for (int i = 0; i < f.n; i++) {
                    const mu_train_seq *q = &f.s[i];
                    float *noise = malloc((size_t)(s1[i] - s0[i]) * c->d_model * sizeof *noise);
                    float *buf = malloc((size_t)q->len * c->d_model * sizeof *buf);
                    mu_attr_noise(5, i, 0, sigma, noise, (int64_t)(s1[i] - s0[i]) * c->d_model);
                    ref_ctx rc = {.site = k ? MU_SITE_MLP_OUT : MU_SITE_ATTN_OUT, .layer = L, .D = c->d_model,
                                  .s0 = s0[i], .s1 = s1[i], .npos = q->lab_from + 1, .buf = buf,
                                  .noise = noise, .mode = 1};
                    ref_answer_logprob(m, q, &rc);          /* caches the noised output */
                    rc.noise = NULL;
                    rc.mode = 0;
                    double m_clean = ref_answer_logprob(m, q, &rc);
                    rc.mode = 2;
                    double m_noised = ref_answer_logprob(m, q, &rc);
                    exact += -(m_noised - m_clean) / f.n;
                    free(noise);
                    free(buf);
                }
                num += (res.effect[k][L] - exact) * (res.effect[k][L] - exact);
                den += exact * exact;
            }
        rel[n] = sqrt(num / den);
        mu_attr_result_free(&res);
    }
    /* a correct first-order term leaves a remainder that halves with the noise (0.077 and
     * 0.039 here); a wrong one leaves an O(1) error that does not shrink */
    CHECK_MSG(rel[0] < 0.15 && rel[1] > 0.4 * rel[0] && rel[1] < 0.6 * rel[0],
              "relative remainder %.3g (noise 0.02), %.3g (0.01)", rel[0], rel[1]);
    mu_train_set_free(&f);
    mu_model_free(m);
    mu_st_close(g);
}

/* ---- path-patch, against the same path made by patching the residual stream ------------- */

/* Reference: the residual stream at the subject's last token s is overwritten with
 * clean + delta at every residual site after the sender (delta = the sender's noised minus
 * clean output at s), whatever the blocks at s compute; positions after s read it. */
typedef struct {
    int D, s, n_layer, mode;       /* mode: 0 cache clean, 1 cache the noised sender, 2 patch */
    int sender;                    /* 2 * layer + (0 attention, 1 MLP) */
    const float *noise;            /* added to the embeddings of [s0, s1) in mode 1 */
    int s0, s1;
    float *resid;                  /* clean residual at s: [3 sites][n_layer][D] (pre, mid, post) */
    float *out[2];                 /* the sender's output at s: clean, noised [D] */
} pp_ref;

static int pp_embed(const mu_hook_info *info, float *act, void *user) {
    pp_ref *c = user;
    if (c->mode == 1) add_subject_noise(act, c->D, c->s0, c->s1, c->noise);
    (void)info;
    return 0;
}

static int pp_sender(const mu_hook_info *info, float *act, void *user) {
    pp_ref *c = user;
    int order = 2 * info->layer + (info->site == MU_SITE_MLP_OUT);
    if (order == c->sender && c->mode < 2) memcpy(c->out[c->mode], act + (size_t)c->s * c->D, (size_t)c->D * sizeof *act);
    return 0;
}

/* Order of the residual sites among the blocks, doubled: pre(L) = 4L-1, mid(L) = 4L+1,
 * post(L) = 4L+3, block (L, k) = 4L+2k. */
static int pp_resid(const mu_hook_info *info, float *act, void *user) {
    pp_ref *c = user;
    int r = info->site == MU_SITE_RESID_PRE ? 0 : info->site == MU_SITE_RESID_MID ? 1 : 2;
    float *clean = c->resid + ((size_t)r * c->n_layer + info->layer) * c->D, *x = act + (size_t)c->s * c->D;
    if (c->mode == 0) memcpy(clean, x, (size_t)c->D * sizeof *x);
    if (c->mode == 2 && 4 * info->layer + 2 * r - 1 > 2 * c->sender)
        for (int j = 0; j < c->D; j++) x[j] = clean[j] + (c->out[1][j] - c->out[0][j]);
    return 0;
}

static double pp_answer_logprob(mu_model *m, const mu_train_seq *q, pp_ref *c) {
    mu_hook h[6] = {{.site = MU_SITE_EMBED, .layer = -1, .fn = pp_embed, .user = c},
                    {.site = MU_SITE_ATTN_OUT, .layer = -1, .fn = pp_sender, .user = c},
                    {.site = MU_SITE_MLP_OUT, .layer = -1, .fn = pp_sender, .user = c},
                    {.site = MU_SITE_RESID_PRE, .layer = -1, .fn = pp_resid, .user = c},
                    {.site = MU_SITE_RESID_MID, .layer = -1, .fn = pp_resid, .user = c},
                    {.site = MU_SITE_RESID_POST, .layer = -1, .fn = pp_resid, .user = c}};
    return hooked_answer_logprob(m, q, h, 6);
}

/* Mean over records and samples of m(clean) - m(path-patched) for sender (L, k), m the
 * answer log-probability. */
static double pp_reference(mu_model *m, const mu_train_set *f, const int32_t *s0, const int32_t *s1,
                           double sigma, int samples, int L, int k) {
    const mu_config *cfg = mu_model_config(m);
    int D = cfg->d_model;
    double want = 0;
    for (int i = 0; i < f->n; i++) {
        const mu_train_seq *q = &f->s[i];
        pp_ref c = {.D = D, .s = s1[i] - 1, .n_layer = cfg->n_layer, .sender = 2 * L + k, .s0 = s0[i], .s1 = s1[i]};
        c.resid = malloc((size_t)3 * cfg->n_layer * D * sizeof *c.resid);
        c.out[0] = malloc((size_t)D * sizeof(float));
        c.out[1] = malloc((size_t)D * sizeof(float));
        float *noise = malloc((size_t)(s1[i] - s0[i]) * D * sizeof *noise);
        c.noise = noise;
        double m_clean = pp_answer_logprob(m, q, &c);
        for (int s = 0; s < samples; s++) {
            mu_attr_noise(5, i, s, sigma, noise, (int64_t)(s1[i] - s0[i]) * D);
            c.mode = 1;
            pp_answer_logprob(m, q, &c);
            c.mode = 2;
            want += (m_clean - pp_answer_logprob(m, q, &c)) / samples / f->n;
            c.mode = 0;
        }
        free(noise); free(c.resid); free(c.out[0]); free(c.out[1]);
    }
    return want;
}

/* The subject ends one token before the last prompt token here, so that s is read only by
 * later positions. Blocks of the last layer then have no path to the answer: 0 (up to the
 * rounding of the batched patched forward against the clean one: 1e-7 here). */
TEST(attrib_path_patch_matches_residual_patching) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f;
    golden_set(g, "forget", &f);
    int32_t s0[16], s1[16];
    for (int i = 0; i < f.n; i++) {
        CHECK(f.s[i].lab_from >= 1);
        s0[i] = f.s[i].lab_from >= 2;
        s1[i] = f.s[i].lab_from;
    }
    const mu_config *c = mu_model_config(m);
    mu_attr_result res;
    const int samples = 2;
    run_trace_method(m, &f, MU_ATTR_PATH_PATCH, 3.0, samples, s0, s1, &res);
    double sigma = 3.0 * ref_embedding_std(m), want[2][8] = {{0}}, scale = 0;
    CHECK(c->n_layer <= 8);
    for (int k = 0; k < 2; k++)
        for (int L = 0; L + 1 < c->n_layer; L++) {
            want[k][L] = pp_reference(m, &f, s0, s1, sigma, samples, L, k);
            scale = fmax(scale, fabs(want[k][L]));
        }
    CHECK_MSG(scale > 1e-3, "largest path effect %.3g", scale);   /* 0.065 here */
    for (int k = 0; k < 2; k++)
        for (int L = 0; L < c->n_layer; L++)   /* last layer: want 0 */
            CHECK_MSG(fabs(res.effect[k][L] - want[k][L]) <= 1e-5 * scale,
                      "%s %d: %.9g vs %.9g", k ? "mlp" : "attn", L, res.effect[k][L], want[k][L]);
    mu_attr_result_free(&res);
    check_no_noise_no_effect(m, &f, MU_ATTR_PATH_PATCH, s0, s1);     /* nothing sent */
    mu_train_set_free(&f);
    mu_model_free(m);
    mu_st_close(g);
}

/* causal-trace and path-patch patch only the blocks of the scored tensors: their effects
 * are those of the run over every block (up to the rounding of differently batched
 * forwards), the other blocks have none (NaN); atp scores every block anyway. */
TEST(attrib_tracing_patches_the_scored_blocks_only) {
    mu_st *g = golden_open();
    mu_model *m = parity_model();
    mu_train_set f;
    golden_set(g, "forget", &f);
    int32_t s0[16], s1[16];
    golden_spans(&f, s0, s1);
    const mu_attr_method ms[3] = {MU_ATTR_CAUSAL_TRACE, MU_ATTR_PATH_PATCH, MU_ATTR_ATP};
    const char *specs[2] = {"mlp:all", "attn:1"};
    for (int i = 0; i < 3; i++) {
        mu_attr_result all, part;
        run_trace_method(m, &f, ms[i], 3.0, 1, s0, s1, &all);
        for (int sp = 0; sp < 2; sp++) {
            run_trace_tensors(m, &f, ms[i], specs[sp], 3.0, 1, s0, s1, &part);
            for (int k = 0; k < 2; k++)
                for (int L = 0; L < all.n_layer; L++) {
                    int scored = sp == 0 ? k == 1 : (k == 0 && L == 1);
                    double a = all.effect[k][L], b = part.effect[k][L];
                    if (scored || ms[i] == MU_ATTR_ATP)
                        CHECK_MSG(fabs(a - b) <= 1e-5 * fabs(a) + 1e-9, "%s %s: %s %d: %.9g vs %.9g",
                                  mu_attr_method_name(ms[i]), specs[sp], k ? "mlp" : "attn", L, b, a);
                    else
                        CHECK_MSG(isnan(b), "%s %s: %s %d not patched, scored %.9g",
                                  mu_attr_method_name(ms[i]), specs[sp], k ? "mlp" : "attn", L, b);
                }
            CHECK_NEAR(part.p_corrupt, all.p_corrupt, 1e-9);
            mu_attr_result_free(&part);
        }
        mu_attr_result_free(&all);
    }
    mu_train_set_free(&f);
    mu_model_free(m);
    mu_st_close(g);
}

/* ---- backends ---------------------------------------------------------------------------- */

/* scores of every method on down_proj of layer 1 (atp, path-patch: on the MLP/attention
 * blocks) */
enum { N_ALL_SCORES = 6 };
static void all_scores(mu_model *m, const mu_train_set *f, const mu_train_set *r, const int32_t *s0,
                       const int32_t *s1, float out[][64], int *units) {
    const mu_attr_method ms[] = {MU_ATTR_ACT, MU_ATTR_GRAD, MU_ATTR_WAGLE, MU_ATTR_MEMFLEX, MU_ATTR_ATP,
                                 MU_ATTR_PATH_PATCH};
    for (int k = 0; k < N_ALL_SCORES; k++) {
        mu_attr_result res;
        if (mu_attr_is_causal(ms[k])) {
            run_trace_method(m, f, ms[k], 1.0, 1, s0, s1, &res);
            units[k] = res.n;
            for (int i = 0; i < res.n && i < 64; i++) out[k][i] = res.t[i].score[0];
        } else {
            mu_mask tensors;
            one_tensor(m, "model.layers.1.mlp.down_proj.weight", &tensors);
            mu_attr_opts o;
            mu_attr_opts_default(&o);
            o.method = ms[k];
            o.memflex_mu = 2;   /* every unit passes: compare the norms, not a threshold's flips */
            char err[512];
            CHECK_MSG(mu_attrib_run(m, &tensors, f, r, &o, &res, err, sizeof err) == 0, "%s", err);
            units[k] = (int)res.t[0].units;
            memcpy(out[k], res.t[0].score, (size_t)units[k] * sizeof(float));
            mu_mask_free(&tensors);
        }
        mu_attr_result_free(&res);
    }
}

/* The same scores on a device backend as on the CPU (MU_TEST_FAKE_GPU=1: the CPU posing as
 * a device, every copy path run; on a GPU: CUDA against the CPU, f32 tolerances), and close
 * to them with bf16 weights. */
TEST(cuda_attrib_matches_cpu) {
    const mu_backend *dev = mu_test_gpu();
    mu_st *g = golden_open();
    mu_train_set f, r;
    golden_set(g, "forget", &f);
    golden_set(g, "retain", &r);
    int32_t s0[16], s1[16];
    golden_spans(&f, s0, s1);
    static float want[N_ALL_SCORES][64], got[N_ALL_SCORES][64];
    int uw[N_ALL_SCORES], ug[N_ALL_SCORES];
    mu_model *m = parity_model();
    all_scores(m, &f, &r, s0, s1, want, uw);
    mu_model_free(m);
    const mu_weights ws[2] = {MU_WEIGHTS_F32, MU_WEIGHTS_BF16};
    for (int w = 0; w < 2; w++) {
        m = parity_model_on(dev, ws[w]);
        all_scores(m, &f, &r, s0, s1, got, ug);
        for (int k = 0; k < N_ALL_SCORES; k++) {
            CHECK_EQ_INT(ug[k], uw[k]);
            double num = 0, den = 0;
            for (int u = 0; u < uw[k]; u++) {
                num += (got[k][u] - want[k][u]) * (got[k][u] - want[k][u]);
                den += want[k][u] * (double)want[k][u];
            }
            double tol = w ? 1e-2 : 1e-6;   /* normalized MSE; bf16 here: 3e-5 (act) to 1.3e-3 (atp),
                                               4e-4 (path-patch) */
            CHECK_MSG(num <= tol * den, "method %d, %s weights: normalized MSE %.3g", k, w ? "bf16" : "f32",
                      den > 0 ? num / den : num);
        }
        mu_model_free(m);
    }
    mu_train_set_free(&f);
    mu_train_set_free(&r);
    mu_st_close(g);
}
