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

    mu_optim *o = mu_optim_new(&oc);
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
    mu_optim *full = mu_optim_new(&c), *part = mu_optim_new(&c);
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
