/* t_optim.c — the optimizer against PyTorch trajectories (tests/golden/train/optim.json,
 * made by tests/gen/gen_adamw_golden.py), index sets, schedules, memory accounting. */
#include "test.h"
#include "optim.h"
#include "rng.h"
#include "tensor.h"
#include <jansson.h>
#include <limits.h>

static void json_floats(json_t *arr, float *out, size_t n) {
    CHECK(json_is_array(arr) && json_array_size(arr) == n);
    for (size_t i = 0; i < n; i++) out[i] = (float)json_number_value(json_array_get(arr, i));
}

static double cfg_num(json_t *cfg, const char *k) { return json_number_value(json_object_get(cfg, k)); }

static void run_golden_case(json_t *c) {
    json_t *cfg = json_object_get(c, "config");
    mu_optim_config oc;
    mu_optim_config_default(&oc);
    CHECK(mu_opt_kind_parse(json_string_value(json_object_get(cfg, "opt")), &oc.kind) == 0);
    CHECK(mu_sched_kind_parse(json_string_value(json_object_get(cfg, "sched")), &oc.sched) == 0);
    oc.lr = cfg_num(cfg, "lr");
    oc.beta1 = cfg_num(cfg, "beta1");
    oc.beta2 = cfg_num(cfg, "beta2");
    oc.eps = cfg_num(cfg, "eps");
    oc.weight_decay = cfg_num(cfg, "wd");
    oc.momentum = cfg_num(cfg, "momentum");
    oc.clip = cfg_num(cfg, "clip");
    oc.warmup = (int64_t)cfg_num(cfg, "warmup");
    oc.total = (int64_t)cfg_num(cfg, "total");
    oc.min_lr_ratio = cfg_num(cfg, "min_ratio");

    float a[20], ga[20], b[60], gb[60], want[60];
    json_floats(json_object_get(c, "a0"), a, 20);
    json_floats(json_object_get(c, "b0"), b, 60);
    json_t *jidx = json_object_get(c, "idx");
    int64_t idx[60];
    size_t nidx = json_array_size(jidx);
    for (size_t i = 0; i < nidx; i++) idx[i] = json_integer_value(json_array_get(jidx, i));

    mu_optim *o = mu_optim_new(&oc, mu_backend_cpu());
    mu_idxset sa, sb;
    char err[128];
    mu_idxset_init_dense(&sa, 20);
    CHECK(mu_idxset_init_list(&sb, 60, idx, (int64_t)nidx, err, sizeof err) == 0);
    mu_optim_add(o, "a", a, ga, &sa);
    mu_optim_add(o, "b", b, gb, &sb);
    float b_before[60];
    json_t *steps = json_object_get(c, "steps");
    for (size_t t = 0; t < json_array_size(steps); t++) {
        json_t *st = json_array_get(steps, t);
        json_floats(json_object_get(st, "grad_a"), ga, 20);
        json_floats(json_object_get(st, "grad_b"), gb, 60);
        memcpy(b_before, b, sizeof b);
        double norm, lr;
        mu_optim_step(o, &norm, &lr);
        CHECK_CLOSE(lr, json_number_value(json_object_get(st, "lr")), 1e-12, 0);
        if (oc.clip > 0) CHECK_CLOSE(norm, json_number_value(json_object_get(st, "norm")), 1e-5, 0);
        json_floats(json_object_get(st, "a"), want, 20);
        for (int i = 0; i < 20; i++)
            CHECK_MSG(fabsf(a[i] - want[i]) <= 2e-6f * fabsf(want[i]) + 1e-7f,
                      "step %zu a[%d]: %.9g vs torch %.9g", t, i, a[i], want[i]);
        json_floats(json_object_get(st, "b"), want, 60);
        size_t k = 0;
        for (int i = 0; i < 60; i++) {
            int sel = k < nidx && idx[k] == i;
            if (sel) k++;
            else CHECK_MSG(memcmp(&b[i], &b_before[i], 4) == 0, "untrained b[%d] moved", i);
            CHECK_MSG(fabsf(b[i] - want[i]) <= 2e-6f * fabsf(want[i]) + 1e-7f,
                      "step %zu b[%d]: %.9g vs torch %.9g", t, i, b[i], want[i]);
        }
    }
    CHECK_EQ_INT(mu_optim_step_count(o), json_array_size(steps));
    mu_optim_free(o);
}

TEST(optim_matches_pytorch) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/tests/golden/train/optim.json", mu_test_root());
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    CHECK_MSG(root, "%s: %s", path, je.text);
    json_t *cases = json_object_get(root, "cases");
    CHECK(json_array_size(cases) >= 5);
    for (size_t i = 0; i < json_array_size(cases); i++) run_golden_case(json_array_get(cases, i));
    json_decref(root);
}

TEST(optim_schedule_shapes) {
    mu_optim_config c;
    mu_optim_config_default(&c);
    c.lr = 1.0; c.warmup = 4; c.total = 14; c.sched = MU_SCHED_LINEAR;
    CHECK_NEAR(mu_optim_lr_at(&c, 0), 0.25, 1e-15);
    CHECK_NEAR(mu_optim_lr_at(&c, 3), 1.0, 1e-15);
    CHECK_NEAR(mu_optim_lr_at(&c, 4), 1.0, 1e-15);
    CHECK_NEAR(mu_optim_lr_at(&c, 9), 0.5, 1e-15);
    CHECK_NEAR(mu_optim_lr_at(&c, 14), 0.0, 1e-15);
    c.sched = MU_SCHED_COSINE; c.min_lr_ratio = 0.1;
    CHECK_NEAR(mu_optim_lr_at(&c, 9), 0.5, 1e-12);
    CHECK_NEAR(mu_optim_lr_at(&c, 6), 0.5 * (1 + cos(M_PI * 0.2)), 1e-12);
    CHECK_NEAR(mu_optim_lr_at(&c, 14), 0.1, 1e-15);
    c.sched = MU_SCHED_CONSTANT;
    CHECK_NEAR(mu_optim_lr_at(&c, 100), 1.0, 1e-15);
    mu_opt_kind k;
    CHECK(mu_opt_kind_parse("adam", &k) < 0);
}

TEST(idxset_roundtrip_and_errors) {
    int64_t numel = 300000, idx[1000];
    mu_rng r;
    mu_rng_seed(&r, 7);
    int64_t n = 0;
    for (int64_t i = 0; i < numel && n < 1000; i++)
        if (mu_rng_below(&r, 250) == 0) idx[n++] = i;
    idx[n - 1] = numel - 1;
    mu_idxset s;
    char err[128];
    CHECK(mu_idxset_init_list(&s, numel, idx, n, err, sizeof err) == 0);
    CHECK_EQ_INT(s.n, n);
    int64_t back[1000];
    mu_idxset_to_list(&s, back);
    for (int64_t j = 0; j < n; j++) CHECK_EQ_INT(back[j], idx[j]);
    mu_idxset_free(&s);
    int64_t bad[3] = {5, 5, 9};
    CHECK(mu_idxset_init_list(&s, 10, bad, 3, err, sizeof err) < 0);
    CHECK(strstr(err, "sorted") != NULL);
    int64_t oob[2] = {1, 10};
    CHECK(mu_idxset_init_list(&s, 10, oob, 2, err, sizeof err) < 0);
    CHECK(strstr(err, "out of range") != NULL);
}

/* Optimizer memory for a 1% element mask is about 1% of full training's. */
TEST(optim_memory_follows_mask) {
    int64_t numel = 1 << 22;
    float *p = calloc(numel, 4), *g = calloc(numel, 4);
    mu_optim_config c;
    mu_optim_config_default(&c);
    mu_optim *full = mu_optim_new(&c, mu_backend_cpu()), *part = mu_optim_new(&c, mu_backend_cpu());
    mu_idxset s;
    mu_idxset_init_dense(&s, numel);
    mu_optim_add(full, "w", p, g, &s);
    int64_t n = numel / 100, *idx = malloc(n * sizeof *idx);
    mu_rng r;
    mu_rng_seed(&r, 3);
    int64_t k = 0;
    for (int64_t i = 0; i < numel && k < n; i++)      /* ~1% uniformly spread */
        if ((int64_t)mu_rng_below(&r, numel - i) < n - k) idx[k++] = i;
    CHECK_EQ_INT(k, n);
    char err[64];
    CHECK(mu_idxset_init_list(&s, numel, idx, n, err, sizeof err) == 0);
    mu_optim_add(part, "w", p, g, &s);
    double ratio = (double)mu_optim_state_bytes(part) / (double)mu_optim_state_bytes(full);
    CHECK_MSG(ratio > 0.009 && ratio < 0.0135, "state ratio %.4f for a 1%% mask", ratio);
    /* a step touches only selected elements */
    for (int64_t i = 0; i < numel; i++) g[i] = 1.0f;
    mu_optim_step(part, NULL, NULL);
    int64_t moved = 0;
    for (int64_t i = 0; i < numel; i++) moved += p[i] != 0.0f;
    CHECK_EQ_INT(moved, n);
    mu_optim_free(full);
    mu_optim_free(part);
    free(idx); free(p); free(g);
}

/* ---- the backend ops (kernels.h) against plain scalar loops over the index list ---- */

/* A list over 3 chunks and a partial fourth: chunk 1 empty, chunk 3 holds its last element. */
static int64_t sparse_list(int64_t numel, int64_t *idx, uint64_t seed) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    int64_t n = 0;
    for (int64_t i = 0; i < numel; i++) {
        int64_t c = i >> MU_IDX_CHUNK_BITS;
        if (c != 1 && mu_rng_below(&r, 7) == 0) idx[n++] = i;
    }
    if (idx[n - 1] != numel - 1) idx[n++] = numel - 1;
    return n;
}

static void fill_normal(float *x, int64_t n, uint64_t seed, float sd) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(sd * mu_rng_normal(&r));
}

static void check_near_f32(const char *what, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        CHECK_MSG(fabsf(got[i] - want[i]) <= 1e-6f * fabsf(want[i]) + 1e-12f,
                  "%s[%lld]: %.9g vs reference %.9g", what, (long long)i, got[i], want[i]);
}

TEST(optim_backend_ops_match_scalar_reference) {
    const mu_backend *be = mu_backend_cpu();
    const int64_t numel = 3 * 65536 + 1234;
    int64_t *idx = malloc(numel * sizeof *idx), n = sparse_list(numel, idx, 11);
    mu_idxset s;
    char err[128];
    CHECK(mu_idxset_init_list(&s, numel, idx, n, err, sizeof err) == 0);
    CHECK_EQ_INT(s.chunk_start[2] - s.chunk_start[1], 0);          /* the empty chunk */
    mu_elems e = {.numel = numel, .n = n, .dense = 0, .nchunks = s.nchunks,
                  .chunk_start = s.chunk_start, .off = s.off};
    float *w = malloc(numel * 4), *g = malloc(numel * 4), *m = calloc(n, 4), *v = calloc(n, 4);
    float *rw = malloc(numel * 4), *rm = calloc(n, 4), *rv = calloc(n, 4), *packed = malloc(n * 4);
    fill_normal(w, numel, 1, 0.5f);
    fill_normal(g, numel, 2, 0.01f);
    memcpy(rw, w, numel * 4);
    float *w0 = malloc(numel * 4);
    memcpy(w0, w, numel * 4);

    /* sum of squares: double over the listed entries */
    double want = 0;
    for (int64_t j = 0; j < n; j++) want += (double)g[idx[j]] * g[idx[j]];
    CHECK_CLOSE(be->elems_sumsq(g, &e), want, 1e-12, 0);

    /* AdamW: three steps with wd, the formulas of optim.h in f32 */
    const float omb1 = 0.1f, b2 = 0.999f, omb2 = (float)(1.0 - 0.999), eps = 1e-8f, lr = 1e-3f;
    for (int t = 1; t <= 3; t++) {
        mu_adamw_args a = {.omb1 = omb1, .b2 = b2, .omb2 = omb2, .eps = eps,
                           .decay = 1.0f - lr * 0.01f, .decay_on = 1,
                           .step_size = (float)(lr / (1 - pow(0.9, t))),
                           .bc2_sqrt = (float)sqrt(1 - pow(0.999, t))};
        be->adamw_step(w, g, m, v, &e, &a);
        for (int64_t j = 0; j < n; j++) {
            int64_t k = idx[j];
            float wk = rw[k] * a.decay;
            rm[j] = rm[j] + omb1 * (g[k] - rm[j]);
            rv[j] = rv[j] * b2 + omb2 * (g[k] * g[k]);
            rw[k] = wk - a.step_size * (rm[j] / (sqrtf(rv[j]) / a.bc2_sqrt + eps));
        }
    }
    check_near_f32("adamw w", w, rw, numel);    /* untrained elements: both unchanged */
    check_near_f32("adamw m", m, rm, n);
    check_near_f32("adamw v", v, rv, n);
    int64_t moved = 0;                          /* every trained element, and only those */
    for (int64_t k = 0; k < numel; k++) moved += w[k] != w0[k];
    CHECK_EQ_INT(moved, n);

    /* SGD with momentum and weight decay: two steps */
    float *buf = calloc(n, 4), *rbuf = calloc(n, 4);
    for (int t = 1; t <= 2; t++) {
        mu_sgd_args a = {.lr = 0.05f, .wd = 0.02f, .momentum = 0.9f, .first = t == 1};
        be->sgd_step(w, g, buf, &e, &a);
        for (int64_t j = 0; j < n; j++) {
            int64_t k = idx[j];
            float d = g[k] + 0.02f * rw[k];
            rbuf[j] = t == 1 ? d : rbuf[j] * 0.9f + d;
            rw[k] -= 0.05f * rbuf[j];
        }
    }
    check_near_f32("sgd w", w, rw, numel);
    check_near_f32("sgd buf", buf, rbuf, n);

    /* scale, gather, scatter */
    memcpy(rw, g, numel * 4);
    be->elems_scale(g, 0.25f, &e);
    for (int64_t j = 0; j < n; j++) rw[idx[j]] *= 0.25f;
    check_near_f32("scaled g", g, rw, numel);
    be->elems_gather(packed, w, &e);
    for (int64_t j = 0; j < n; j++) CHECK_MSG(packed[j] == w[idx[j]], "gather[%lld]", (long long)j);
    for (int64_t j = 0; j < n; j++) packed[j] = (float)j;
    memcpy(rw, w, numel * 4);
    be->elems_scatter(w, packed, &e);
    for (int64_t j = 0; j < n; j++) rw[idx[j]] = (float)j;
    CHECK(memcmp(w, rw, numel * 4) == 0);
    mu_idxset_free(&s);
    free(idx); free(w); free(g); free(m); free(v); free(rw); free(rm); free(rv); free(packed);
    free(buf); free(rbuf); free(w0);
}

/* The optimizer on a backend without host memory (the CPU ops presented as a device: index
 * arrays copied, trained values and moments moved through get/set) steps to the same bits
 * as on the CPU, and get/set of trained values and moments round-trip. */
TEST(optim_device_memory_path_matches_host) {
    static mu_backend fake;
    fake = *mu_backend_cpu();
    fake.host_memory = 0;
    const int64_t numel = 2 * 65536 + 77;
    int64_t *idx = malloc(numel * sizeof *idx), n = sparse_list(numel, idx, 5);
    float *w[2], *gd[2], *g, *got = malloc(n * 4), *mom = malloc(n * 4);
    mu_optim *o[2];
    mu_optim_config c;
    mu_optim_config_default(&c);
    c.clip = 0.5;
    for (int d = 0; d < 2; d++) {
        w[d] = malloc(numel * 4);
        gd[d] = malloc(numel * 4);       /* each its own: clipping scales it in place */
        fill_normal(w[d], numel, 8, 1.0f);
        fill_normal(gd[d], numel, 9, 0.1f);
        o[d] = mu_optim_new(&c, d ? &fake : mu_backend_cpu());
        mu_idxset s;
        char err[64];
        CHECK(mu_idxset_init_list(&s, numel, idx, n, err, sizeof err) == 0);
        CHECK(mu_optim_add(o[d], "w", w[d], gd[d], &s) == 0);
    }
    for (int t = 0; t < 3; t++) {
        double norm[2];
        for (int d = 0; d < 2; d++) mu_optim_step(o[d], &norm[d], NULL);
        CHECK(norm[0] == norm[1]);
    }
    CHECK(memcmp(w[0], w[1], numel * 4) == 0);
    CHECK(memcmp(gd[0], gd[1], numel * 4) == 0);
    g = gd[0];
    CHECK_EQ_INT(mu_optim_state_bytes(o[0]), mu_optim_state_bytes(o[1]));
    mu_optim_get_trained(o[1], 0, got);
    for (int64_t j = 0; j < n; j++) CHECK(got[j] == w[0][idx[j]]);
    for (int which = 0; which < 2; which++) {
        CHECK(mu_optim_has_moment(o[1], 0, which));
        CHECK(mu_optim_get_moment(o[0], 0, which, mom) == 0);
        CHECK(mu_optim_get_moment(o[1], 0, which, got) == 0);
        CHECK(memcmp(mom, got, n * 4) == 0);
        for (int64_t j = 0; j < n; j++) mom[j] = (float)(j + which);
        CHECK(mu_optim_set_moment(o[1], 0, which, mom) == 0);
        CHECK(mu_optim_get_moment(o[1], 0, which, got) == 0);
        CHECK(memcmp(mom, got, n * 4) == 0);
    }
    for (int64_t j = 0; j < n; j++) mom[j] = -(float)j;
    memcpy(g, w[1], numel * 4);               /* g: the tensor before the set */
    mu_optim_set_trained(o[1], 0, mom);
    for (int64_t j = 0; j < n; j++) g[idx[j]] = -(float)j;
    CHECK(memcmp(g, w[1], numel * 4) == 0);
    /* the same set on the CPU (host memory: scattered in place), then read back */
    memcpy(g, w[0], numel * 4);
    mu_optim_set_trained(o[0], 0, mom);
    for (int64_t j = 0; j < n; j++) g[idx[j]] = -(float)j;
    CHECK(memcmp(g, w[0], numel * 4) == 0);
    mu_optim_get_trained(o[0], 0, got);
    CHECK(memcmp(got, mom, n * 4) == 0);
    /* SGD without momentum keeps no moment */
    c.kind = MU_OPT_SGD;
    mu_optim *sgd = mu_optim_new(&c, &fake);
    mu_idxset s;
    mu_idxset_init_dense(&s, numel);
    CHECK(mu_optim_add(sgd, "w", w[0], g, &s) == 0);
    CHECK(!mu_optim_has_moment(sgd, 0, 0) && !mu_optim_has_moment(sgd, 0, 1));
    CHECK(mu_optim_get_moment(sgd, 0, 0, got) == -1);
    CHECK_EQ_INT(mu_optim_state_bytes(sgd), 0);
    mu_optim_free(sgd);
    for (int d = 0; d < 2; d++) { mu_optim_free(o[d]); free(w[d]); free(gd[d]); }
    free(idx); free(got); free(mom);
}

/* ---- packed tensors: kernels.h mu_elems.packed, elems_gather_add, elems_scatter_bf16,
 * optim.h mu_optim_add_packed ---- */

/* got[i] and want[i] hold the same 4 bytes, for every i < n. */
static void check_same_bits(const char *what, const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        CHECK_MSG(memcmp(&got[i], &want[i], 4) == 0, "%s[%lld]: %.9g vs %.9g (bits differ)",
                  what, (long long)i, got[i], want[i]);
}

/* out[j] = whole[idx[j]]  (plain loop; out [n]) */
static void gather_loop(float *out, const float *whole, const int64_t *idx, int64_t n) {
    for (int64_t j = 0; j < n; j++) out[j] = whole[idx[j]];
}

/* dense: every element of 2 full chunks and a partial one; else sparse_list's set (an
 * empty chunk, a partial last chunk holding the last element). *idx: its flat indices. */
static void make_packed_test_set(mu_idxset *s, int dense, int64_t **idx) {
    if (dense) {
        int64_t numel = 2 * 65536 + 999;
        mu_idxset_init_dense(s, numel);
        *idx = malloc((size_t)numel * sizeof **idx);
        CHECK(*idx);
        for (int64_t i = 0; i < numel; i++) (*idx)[i] = i;
        return;
    }
    int64_t numel = 3 * 65536 + 1234;
    *idx = malloc((size_t)numel * sizeof **idx);
    CHECK(*idx);
    int64_t n = sparse_list(numel, *idx, 21);
    char err[128];
    CHECK_MSG(mu_idxset_init_list(s, numel, *idx, n, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(s->chunk_start[2] - s->chunk_start[1], 0);             /* empty chunk 1 */
    CHECK((*idx)[n - 1] == numel - 1 && numel % 65536 != 0);           /* partial chunk 3 */
}

/* f32 bit patterns and their bf16 roundings, worked out by hand (nearest even); b 0xFFFF:
 * any NaN. */
static const struct { uint32_t f; uint16_t b; } bf16_cases[] = {
    {0x3F808000u, 0x3F80}, /* 1.00390625: a tie, down to the even 0x3F80 */
    {0x3F818000u, 0x3F82}, /* 1.01171875: a tie, up to the even 0x3F82 */
    {0x3F808001u, 0x3F81}, /* just above a tie: up */
    {0x3F817FFFu, 0x3F81}, /* just below a tie: down */
    {0xBF808000u, 0xBF80}, /* negative tie, to even */
    {0x00008000u, 0x0000}, /* subnormal tie, to even (zero) */
    {0x00018000u, 0x0002}, /* subnormal tie, up to even */
    {0x7F7FFFFFu, 0x7F80}, /* FLT_MAX rounds to +inf */
    {0x80000000u, 0x8000}, /* -0 */
    {0xFF800000u, 0xFF80}, /* -inf */
    {0x7F800001u, 0xFFFF}, /* NaN whose upper half alone is +inf: must stay NaN */
    {0xFFC00000u, 0xFFC0}, /* quiet negative NaN */
};

static int bf16_is_nan(uint16_t b) { return (b & 0x7F80) == 0x7F80 && (b & 0x7F) != 0; }

/* elems_gather_add and elems_scatter_bf16 against plain loops over the flat indices, on a
 * dense set and a chunked list; both ignore e->packed (run with it 0 and 1). */
TEST(optim_gather_add_and_scatter_bf16_match_loops) {
    const mu_backend *be = mu_backend_cpu();
    for (int dense = 0; dense < 2; dense++)
        for (int pk = 0; pk < 2; pk++) {
            mu_idxset s;
            int64_t *idx;
            make_packed_test_set(&s, dense, &idx);
            int64_t numel = s.numel, n = s.n;
            mu_elems e;
            int owned;
            CHECK(mu_elems_of(be, &s, &e, &owned) == 0 && !owned && !e.packed);
            e.packed = pk;
            float *g = malloc(numel * 4), *g0 = malloc(numel * 4);
            float *p = malloc(n * 4), *want = malloc(n * 4);
            CHECK(g && g0 && p && want);
            fill_normal(g, numel, 31 + dense, 1.0f);
            memcpy(g0, g, numel * 4);
            fill_normal(p, n, 32 + dense, 1.0f);
            memcpy(want, p, n * 4);
            for (int rep = 0; rep < 2; rep++) {               /* accumulates: += twice */
                be->elems_gather_add(p, g, &e);
                for (int64_t j = 0; j < n; j++) want[j] += g0[idx[j]];
                check_same_bits(dense ? "gather_add dense" : "gather_add list", p, want, n);
            }
            CHECK_MSG(memcmp(g, g0, numel * 4) == 0, "gather_add changed its source");

            /* scatter_bf16: random values, the hand-worked cases at the first entries */
            int ncase = (int)(sizeof bf16_cases / sizeof bf16_cases[0]);
            CHECK(n > ncase);
            fill_normal(p, n, 33 + dense, 2.0f);
            for (int k = 0; k < ncase; k++) memcpy(&p[k], &bf16_cases[k].f, 4);
            uint16_t *w16 = malloc(numel * 2), *ref = malloc(numel * 2);
            CHECK(w16 && ref);
            for (int64_t i = 0; i < numel; i++)
                w16[i] = ref[i] = (uint16_t)(0x5A5Bu ^ (i * 40503u));
            be->elems_scatter_bf16(w16, p, &e);
            for (int64_t j = 0; j < n; j++) ref[idx[j]] = mu_f32_to_bf16(p[j]);
            for (int64_t i = 0; i < numel; i++)           /* untouched elements too */
                CHECK_MSG(w16[i] == ref[i], "scatter_bf16 %s: w16[%lld] = 0x%04x, want 0x%04x",
                          dense ? "dense" : "list", (long long)i, w16[i], ref[i]);
            for (int k = 0; k < ncase; k++) {
                uint16_t b = w16[idx[k]];
                if (bf16_cases[k].b == 0xFFFF)
                    CHECK_MSG(bf16_is_nan(b), "bf16(0x%08x) = 0x%04x, not a NaN",
                              bf16_cases[k].f, b);
                else
                    CHECK_MSG(b == bf16_cases[k].b, "bf16(0x%08x) = 0x%04x, want 0x%04x",
                              bf16_cases[k].f, b, bf16_cases[k].b);
            }
            mu_elems_release(be, &e, owned);
            mu_idxset_free(&s);
            free(idx); free(g); free(g0); free(p); free(want); free(w16); free(ref);
        }
}

/* The four update ops on a packed tensor (w and g gathered into [n], e->packed = 1) give the
 * bits they give on the whole tensor: three steps each of AdamW (weight decay), SGD with
 * momentum and weight decay, and plain SGD; every step first takes the sum of squares and
 * scales the gradient, as mu_optim_step does when clipping. */
TEST(optim_packed_update_ops_match_whole_tensor_bits) {
    const mu_backend *be = mu_backend_cpu();
    mu_idxset s;
    int64_t *idx;
    make_packed_test_set(&s, 0, &idx);
    const int64_t numel = s.numel, n = s.n;
    mu_elems ew, ep;
    int owned;
    CHECK(mu_elems_of(be, &s, &ew, &owned) == 0);
    ep = ew;
    ep.packed = 1;
    float *W = malloc(numel * 4), *G = malloc(numel * 4), *W0 = malloc(numel * 4);
    float *P = malloc(n * 4), *GP = malloc(n * 4), *tmp = malloc(n * 4);
    float *m[2] = {calloc(n, 4), calloc(n, 4)}, *v[2] = {calloc(n, 4), calloc(n, 4)};
    CHECK(W && G && W0 && P && GP && tmp && m[0] && m[1] && v[0] && v[1]);
    fill_normal(W0, numel, 41, 0.5f);
    const char *names[3] = {"adamw", "sgd momentum", "sgd plain"};
    for (int kind = 0; kind < 3; kind++) {
        memcpy(W, W0, numel * 4);
        gather_loop(P, W, idx, n);
        for (int k = 0; k < 2; k++) { memset(m[k], 0, n * 4); memset(v[k], 0, n * 4); }
        for (int t = 1; t <= 3; t++) {
            fill_normal(G, numel, 50 + 3 * kind + t, 0.02f);
            gather_loop(GP, G, idx, n);
            double ssw = be->elems_sumsq(G, &ew), ssp = be->elems_sumsq(GP, &ep), want = 0;
            for (int64_t j = 0; j < n; j++) want += (double)GP[j] * GP[j];
            CHECK_CLOSE(ssw, want, 1e-12, 0);
            CHECK_MSG(ssp == ssw, "%s step %d: sumsq packed %.17g vs whole %.17g", names[kind],
                      t, ssp, ssw);
            float sc = (float)(0.3 / sqrt(ssw));
            be->elems_scale(G, sc, &ew);
            be->elems_scale(GP, sc, &ep);
            gather_loop(tmp, G, idx, n);
            check_same_bits("scaled packed g", GP, tmp, n);
            if (kind == 0) {
                mu_adamw_args a = {.omb1 = 0.1f, .b2 = 0.999f, .omb2 = (float)(1.0 - 0.999),
                                   .eps = 1e-8f, .decay = 1.0f - 1e-2f * 0.05f, .decay_on = 1,
                                   .step_size = (float)(1e-2 / (1 - pow(0.9, t))),
                                   .bc2_sqrt = (float)sqrt(1 - pow(0.999, t))};
                be->adamw_step(W, G, m[0], v[0], &ew, &a);
                be->adamw_step(P, GP, m[1], v[1], &ep, &a);
            } else {
                mu_sgd_args a = {.lr = 0.05f, .wd = kind == 1 ? 0.02f : 0.0f,
                                 .momentum = 0.9f, .first = t == 1};
                be->sgd_step(W, G, kind == 1 ? m[0] : NULL, &ew, &a);
                be->sgd_step(P, GP, kind == 1 ? m[1] : NULL, &ep, &a);
            }
            gather_loop(tmp, W, idx, n);
            CHECK_MSG(memcmp(P, tmp, n * 4) == 0, "%s step %d: packed w differs", names[kind], t);
            check_same_bits("packed w", P, tmp, n);
            CHECK_MSG(memcmp(m[0], m[1], n * 4) == 0, "%s step %d: first moment", names[kind], t);
            CHECK_MSG(memcmp(v[0], v[1], n * 4) == 0, "%s step %d: second moment", names[kind], t);
            gather_loop(tmp, G, idx, n);
            CHECK_MSG(memcmp(GP, tmp, n * 4) == 0, "%s step %d: the update changed g",
                      names[kind], t);
        }
        int64_t moved = 0;                       /* the whole tensor really trained */
        for (int64_t j = 0; j < n; j++) moved += W[idx[j]] != W0[idx[j]];
        CHECK_MSG(moved > n * 9 / 10, "%s: only %lld of %lld trained elements moved",
                  names[kind], (long long)moved, (long long)n);
    }
    mu_elems_release(be, &ew, owned);
    mu_idxset_free(&s);
    free(idx); free(W); free(G); free(W0); free(P); free(GP); free(tmp);
    for (int k = 0; k < 2; k++) { free(m[k]); free(v[k]); }
}

/* Through the public API: mu_optim_add (whole tensor) and mu_optim_add_packed (its trained
 * elements) with clipping that bites give the same norms and the same trained values,
 * AdamW and SGD with momentum, three steps. */
TEST(optim_add_packed_trains_like_whole_tensor) {
    mu_idxset s;
    int64_t *idx;
    make_packed_test_set(&s, 0, &idx);
    const int64_t numel = s.numel, n = s.n;
    mu_idxset_free(&s);
    float *W = malloc(numel * 4), *G = malloc(numel * 4), *P = malloc(n * 4), *GP = malloc(n * 4);
    float *tw = malloc(n * 4), *tp = malloc(n * 4);
    CHECK(W && G && P && GP && tw && tp);
    for (int kind = 0; kind < 2; kind++) {
        mu_optim_config c;
        mu_optim_config_default(&c);
        c.kind = kind ? MU_OPT_SGD : MU_OPT_ADAMW;
        c.lr = 1e-2;
        c.momentum = 0.9;
        c.weight_decay = 0.05;
        c.clip = 0.05;
        mu_optim *ow = mu_optim_new(&c, mu_backend_cpu());
        mu_optim *op = mu_optim_new(&c, mu_backend_cpu());
        mu_idxset sw, sp;
        char err[128];
        CHECK(mu_idxset_init_list(&sw, numel, idx, n, err, sizeof err) == 0);
        CHECK(mu_idxset_init_list(&sp, numel, idx, n, err, sizeof err) == 0);
        fill_normal(W, numel, 61, 0.5f);
        gather_loop(P, W, idx, n);
        CHECK(mu_optim_add(ow, "w", W, G, &sw) == 0);
        CHECK(mu_optim_add_packed(op, "w", P, GP, &sp, NULL) == 0);
        for (int t = 0; t < 3; t++) {
            fill_normal(G, numel, 70 + t, 0.01f);
            gather_loop(GP, G, idx, n);
            double nw, np;
            mu_optim_step(ow, &nw, NULL);
            mu_optim_step(op, &np, NULL);
            CHECK_MSG(nw == np, "%s step %d: norm %.17g whole vs %.17g packed",
                      kind ? "sgd" : "adamw", t, nw, np);
            CHECK_MSG(nw > 4 * c.clip, "norm %.3g: the clip does not bite", nw);
            mu_optim_get_trained(ow, 0, tw);
            mu_optim_get_trained(op, 0, tp);
            check_same_bits(kind ? "sgd trained" : "adamw trained", tp, tw, n);
            gather_loop(tp, G, idx, n);                 /* both gradients clipped alike */
            check_same_bits("clipped g", GP, tp, n);
        }
        for (int which = 0; which < 2; which++) {
            CHECK_EQ_INT(mu_optim_has_moment(ow, 0, which), mu_optim_has_moment(op, 0, which));
            if (!mu_optim_has_moment(ow, 0, which)) continue;
            CHECK(mu_optim_get_moment(ow, 0, which, tw) == 0);
            CHECK(mu_optim_get_moment(op, 0, which, tp) == 0);
            check_same_bits("moment", tp, tw, n);
        }
        CHECK_EQ_INT(mu_optim_state_bytes(ow), mu_optim_state_bytes(op));
        mu_optim_free(ow);
        mu_optim_free(op);
    }
    free(idx); free(W); free(G); free(P); free(GP); free(tw); free(tp);
}

/* Weight masking (kernels.h wmask_forward/backward): the projection of m onto [0, 1]
 * (NaN kept, so a broken mask is not hidden), w = w0 * m, and dL/dm = g * w0 - lam, on
 * values chosen so that every branch runs. */
TEST(optim_weight_mask_ops_project_and_chain) {
    const mu_backend *be = mu_backend_cpu();
    enum { N = 9 };
    float m[N] = {-0.5f, 0.0f, 0.25f, 1.0f, 1.5f, NAN, -INFINITY, INFINITY, 0.75f};
    const float want_m[N] = {0.0f, 0.0f, 0.25f, 1.0f, 1.0f, NAN, 0.0f, 1.0f, 0.75f};
    const float w0[N] = {2, -3, 4, -5, 6, 7, -8, 9, -0.1f};
    float w[N], g[N], gm[N];
    for (int j = 0; j < N; j++) g[j] = 0.5f * (float)(j - 4);
    be->wmask_forward(w, m, w0, N);
    for (int j = 0; j < N; j++) {
        if (isnan(want_m[j])) {
            CHECK_MSG(isnan(m[j]) && isnan(w[j]), "entry %d: NaN mask not kept", j);
            continue;
        }
        CHECK_MSG(m[j] == want_m[j], "m[%d] = %g, want %g", j, m[j], want_m[j]);
        CHECK_MSG(w[j] == w0[j] * want_m[j], "w[%d] = %g, want %g", j, w[j], w0[j] * want_m[j]);
    }
    be->wmask_backward(gm, g, w0, 0.125f, N);
    for (int j = 0; j < N; j++) CHECK_MSG(gm[j] == g[j] * w0[j] - 0.125f, "gm[%d] = %g", j, gm[j]);
    be->wmask_forward(w, m, w0, 0);   /* n = 0: nothing */
}

/* wmask_cut: sum(1 - m) in double over three chunks of 2^16 and a partial one, against a
 * sequential long double sum; exact on dyadic masks; NaN when a mask is; 0 for n = 0. */
TEST(optim_weight_mask_cut_sums_one_minus_m) {
    const mu_backend *be = mu_backend_cpu();
    const int64_t n = 3 * ((int64_t)1 << MU_ELEMS_CHUNK_BITS) + 1234;
    float *m = malloc(n * sizeof *m);
    CHECK(m);
    mu_rng r;
    mu_rng_seed(&r, 77);
    long double want = 0;
    for (int64_t j = 0; j < n; j++) {
        m[j] = (float)mu_rng_uniform(&r);
        want += 1.0L - (long double)m[j];
    }
    double got = be->wmask_cut(m, n);
    CHECK_MSG(fabsl((long double)got - want) <= 1e-12L * want, "cut %.17g, want %.17Lg", got, want);
    for (int64_t j = 0; j < n; j++) m[j] = (float)(j % 5) * 0.25f;   /* 0 .. 1: exact sums */
    double exact = 0;
    for (int64_t j = 0; j < n; j++) exact += 1.0 - m[j];
    CHECK_MSG(be->wmask_cut(m, n) == exact, "dyadic cut %.17g, want %.17g", be->wmask_cut(m, n), exact);
    CHECK(be->wmask_cut(m, 0) == 0);
    m[n - 1] = NAN;
    CHECK(isnan(be->wmask_cut(m, n)));
    free(m);
}
