/* t_optim.c — the optimizer against PyTorch trajectories (tests/golden/train/optim.json,
 * made by tests/gen/gen_adamw_golden.py), index sets, schedules, memory accounting. */
#include "test.h"
#include "optim.h"
#include "rng.h"
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
