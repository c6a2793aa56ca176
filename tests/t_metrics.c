/* t_metrics.c — lib/metrics: hand-computed values for every per-record metric, and
 * goldens from scipy / scikit-learn / rouge_score / nltk (tests/gen/gen_metrics_golden.py). */
#include "test.h"
#include "metrics.h"
#include "stream.h"
#include <unistd.h>
#include <jansson.h>
#include <stdint.h>
#include <sys/wait.h>

static json_t *golden(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/metrics/%s", mu_test_root(), name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j != NULL, "cannot load %s: %s", path, e.text);
    return j;
}

/* ---------- hand-computed ---------- */

TEST(metrics_choice) {
    float lp[3] = {-1.0f, -0.5f, -3.0f};
    CHECK_EQ_INT(mu_choice_argmax(lp, 3), 1);
    float tie[3] = {-2.0f, -1.0f, -1.0f};
    CHECK_EQ_INT(mu_choice_argmax(tie, 3), 1); /* first max, like numpy */
    double z = exp(-1.0) + exp(-0.5) + exp(-3.0);
    CHECK_NEAR(mu_choice_prob(lp, 3, 0), exp(-1.0) / z, 1e-12);
    CHECK_NEAR(mu_choice_prob(lp, 3, 2), exp(-3.0) / z, 1e-12);
    /* huge magnitudes stay finite (log-sum-exp) */
    float big[2] = {-2000.0f, -2001.0f};
    CHECK_NEAR(mu_choice_prob(big, 2, 0), 1.0 / (1.0 + exp(-1.0)), 1e-12);
    CHECK(isnan(mu_choice_prob(lp, 3, 3)));
    int32_t nt[3] = {2, 1, 3};
    double p0 = exp(-0.5), p1 = exp(-0.5), p2 = exp(-1.0);
    CHECK_NEAR(mu_choice_prob_lennorm(lp, nt, 3, 2), p2 / (p0 + p1 + p2), 1e-12);
}

TEST(metrics_truth_ratio) {
    /* paraphrase (ans=0): lp -2 over 2 tokens -> mean -1; perturbed means -2, -4 */
    float lp[3] = {-2.0f, -4.0f, -12.0f};
    int32_t nt[3] = {2, 2, 3};
    double r = mu_truth_ratio(lp, nt, 3, 0);
    CHECK_NEAR(r, exp((-2.0 + -4.0) / 2 - (-1.0)), 1e-12); /* exp(-2) */
    double rs[3] = {0.5, 2.0, 1.0};
    CHECK_NEAR(mu_truth_ratio_forget_stat(rs, 3), (0.5 + 1 / (2.0 + 1e-10) + 1 / (1.0 + 1e-10)) / 3, 1e-12);
    CHECK_NEAR(mu_truth_ratio_retain_stat(rs, 3), (0.5 + 0 + 0) / 3, 1e-12);
    /* option prob: true answer mean lp -1, perturbed candidates 1 and 2 (ans=0 skipped) */
    double pt = exp(-1.0), q1 = exp(-2.0), q2 = exp(-4.0);
    CHECK_NEAR(mu_option_prob(-1.0, lp, nt, 3, 0), pt / (pt + q1 + q2), 1e-12);
    CHECK(isnan(mu_truth_ratio(lp, nt, 1, 0)));
}

TEST(metrics_memorization) {
    int32_t r1[5] = {3, 0, 1, 0, 0};
    CHECK_NEAR(mu_exact_memorization(r1, 5), 3.0 / 5, 1e-15);
    CHECK_NEAR(mu_extraction_strength(r1, 5), 1 - 3.0 / 5, 1e-15); /* suffix from k=3 */
    int32_t r2[4] = {0, 0, 0, 0};
    CHECK_NEAR(mu_extraction_strength(r2, 4), 1.0, 1e-15);
    int32_t r3[4] = {0, 0, 0, 5};
    CHECK_NEAR(mu_extraction_strength(r3, 4), 1 - 3.0 / 4, 1e-15); /* open-unlearning: k=m-1 */
    CHECK(isnan(mu_exact_memorization(r1, 0)));
}

TEST(metrics_exact_match) {
    CHECK(mu_exact_match("  Paris\n", "Paris"));
    CHECK(!mu_exact_match("paris", "Paris"));
    CHECK(mu_exact_match("", " \t"));
    CHECK(!mu_exact_match("Paris is", "Paris"));
    /* Unicode whitespace as Python's str.strip: NBSP, EM SPACE, U+2028, \x1c */
    CHECK(mu_exact_match("\xc2\xa0Paris\xe2\x80\x83\xe2\x80\xa8\x1c", "Paris"));
    CHECK(mu_exact_match("caf\xc3\xa9 ", "caf\xc3\xa9"));
    CHECK(!mu_exact_match("Pa ris", "Paris"));
}

TEST(metrics_logprob_sums) {
    float lp[4] = {-0.1f, -2.0f, -0.5f, -1.4f};
    CHECK_NEAR(mu_sum(lp, 4), -4.0, 1e-6);
    CHECK_NEAR(mu_mean(lp, 4), -1.0, 1e-6);
    CHECK(isnan(mu_mean(lp, 0)));
}

TEST(metrics_min_k) {
    float lp[10] = {-1, -2, -3, -4, -5, -6, -7, -8, -9, -10};
    CHECK_NEAR(mu_min_k(lp, 10, 0.2), (10 + 9) / 2.0, 1e-12);
    CHECK_NEAR(mu_min_k(lp, 3, 0.2), 3.0, 1e-12); /* max(1, floor(0.6)) = 1 */
    CHECK_NEAR(mu_min_k(lp, 10, 1.0), 5.5, 1e-12);
    float mu[3] = {-1.0f, -2.0f, -0.5f}, sg[3] = {0.5f, 1.0f, 0.0f};
    float t[3] = {-2.0f, -1.0f, -0.5f};
    /* scores: (-2+1)/0.5 = -2, (-1+2)/1 = 1, 0/sqrt(1e-6) = 0; lowest one (k=0.2 -> 1) = -2 */
    CHECK_NEAR(mu_min_k_pp(t, mu, sg, 3, 0.2), 2.0, 1e-6);
    CHECK_NEAR(mu_min_k_pp(t, mu, sg, 3, 1.0), (2.0 - 1.0 - 0.0) / 3, 1e-6);
}

TEST(metrics_hmean) {
    double x[3] = {1.0, 2.0, 4.0};
    CHECK_NEAR(mu_hmean(x, 3), 3.0 / (1 + 0.5 + 0.25), 1e-15);
    double y[2] = {0.5, 0.0};
    CHECK_NEAR(mu_hmean(y, 2), 0.0, 0);
    double z[2] = {0.5, -1.0};
    CHECK(isnan(mu_hmean(z, 2)));
}

TEST(metrics_curves) {
    /* original forget score 1.0, retain 0.8. Runs: removes 50% keeping all retention,
     * removes 100% keeping half. Points (0,1),(0.5,1),(1,0.5): area 0.5 + 0.375 */
    mu_curve_point runs[2] = {{0.0, 0.4}, {0.5, 0.8}};
    CHECK_NEAR(mu_aues(runs, 2, 1.0, 0.8), 0.875, 1e-12);
    /* a run that does nothing adds no area */
    mu_curve_point none[1] = {{1.0, 0.8}};
    CHECK_NEAR(mu_aues(none, 1, 1.0, 0.8), 0.0, 1e-12);
    double q[4] = {0.1, 0.5, 0.9, 0.7}, u[4] = {0.60, 0.58, 0.40, 0.56};
    /* u0 = 0.6: threshold 0.57 -> runs 0 and 1 qualify: best 0.5 */
    CHECK_NEAR(mu_mu95(q, u, 4, 0.6, 0), 0.5, 1e-15);
    /* interpolation between u=0.56 (q 0.7) and u=0.58 (q 0.5) at 0.57 -> 0.6 */
    CHECK_NEAR(mu_mu95(q, u, 4, 0.6, 1), 0.6, 1e-12);
    CHECK(isnan(mu_mu95(q, u, 4, 1.0, 0)));
}

/* ---------- against the reference libraries ---------- */

TEST(metrics_porter_nltk) {
    json_t *g = golden("porter.json");
    size_t i; json_t *pair;
    json_array_foreach(g, i, pair) {
        const char *w = json_string_value(json_array_get(pair, 0));
        const char *want = json_string_value(json_array_get(pair, 1));
        char *got = mu_porter_stem(w);
        CHECK_MSG(!strcmp(got, want), "stem(%s) = %s, nltk %s", w, got, want);
        free(got);
    }
    CHECK(i > 50);
    json_decref(g);
}

TEST(metrics_rouge_score) {
    json_t *g = golden("rouge.json");
    size_t i; json_t *c;
    json_array_foreach(g, i, c) {
        const char *t = json_string_value(json_object_get(c, "target"));
        const char *p = json_string_value(json_object_get(c, "prediction"));
        int stem = (int)json_integer_value(json_object_get(c, "stem"));
        mu_rouge r1, rl;
        CHECK(mu_rouge_1(t, p, stem, &r1) == 0);
        CHECK(mu_rouge_l(t, p, stem, &rl) == 0);
        json_t *e1 = json_object_get(c, "r1"), *el = json_object_get(c, "rl");
        double w1[3], wl[3], g1[3] = {r1.precision, r1.recall, r1.fmeasure},
               gl[3] = {rl.precision, rl.recall, rl.fmeasure};
        for (int k = 0; k < 3; k++) {
            w1[k] = json_real_value(json_array_get(e1, k)) + (double)json_integer_value(json_array_get(e1, k));
            wl[k] = json_real_value(json_array_get(el, k)) + (double)json_integer_value(json_array_get(el, k));
            CHECK_MSG(fabs(g1[k] - w1[k]) < 1e-12 && fabs(gl[k] - wl[k]) < 1e-12,
                      "case %zu stem=%d '%s' vs '%s': rouge1 %g/%g rougeL %g/%g", i, stem, t, p,
                      g1[k], w1[k], gl[k], wl[k]);
        }
    }
    CHECK(i > 300);
    json_decref(g);
}

TEST(metrics_rouge_invalid_utf8) {
    mu_rouge r;
    CHECK(mu_rouge_l("ok \xff\xfe bad", "ok", 1, &r) == -1);
    CHECK(mu_rouge_l("ok", "\xc3", 1, &r) == -1);
    CHECK(mu_rouge_l("caf\xc3\xa9", "caf", 1, &r) == 0 && r.recall == 1.0);
}

static double jnum(json_t *o, const char *k) {
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
}

/* The LCG of gen_metrics_golden.py: x = ((s >> 33) % r) / r + shift. */
static double *lcg_sample(uint64_t seed, long n, uint64_t r, double shift) {
    double *x = malloc((size_t)n * sizeof *x);
    uint64_t s = seed;
    for (long i = 0; i < n; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        x[i] = (double)((s >> 33) % r) / (double)r + shift;
    }
    return x;
}

TEST(metrics_ks_2samp_scipy) {
    json_t *g = golden("ks.json");
    size_t i; json_t *c;
    int saw_exact = 0, saw_asymp = 0;
    json_array_foreach(g, i, c) {
        long n1 = (long)jnum(c, "n1"), n2 = (long)jnum(c, "n2");
        double *a = lcg_sample((uint64_t)jnum(c, "seed_a"), n1, (uint64_t)jnum(c, "r"), 0.0);
        double *b = lcg_sample((uint64_t)jnum(c, "seed_b"), n2, (uint64_t)jnum(c, "r"), jnum(c, "shift"));
        double d, p; int exact;
        CHECK(mu_ks_2samp(a, (size_t)n1, b, (size_t)n2, &d, &p, &exact) == 0);
        saw_exact += exact; saw_asymp += !exact;
        double wd = jnum(c, "statistic"), wp = jnum(c, "pvalue");
        CHECK_MSG(fabs(d - wd) < 1e-12, "case %zu (%ld,%ld): D %.17g vs scipy %.17g", i, n1, n2, d, wd);
        CHECK_MSG(fabs(p - wp) <= 1e-9 * wp + 1e-300 || fabs(p - wp) < 1e-14,
                  "case %zu (%ld,%ld, %s): p %.17g vs scipy %.17g", i, n1, n2, exact ? "exact" : "asymp", p, wp);
        free(a); free(b);
    }
    CHECK(saw_exact > 10 && saw_asymp >= 3);
    json_decref(g);
}

TEST(metrics_kolmogorov_scipy) {
    json_t *g = golden("kolmogorov.json");
    size_t i; json_t *c;
    json_array_foreach(g, i, c) {
        long n = (long)jnum(c, "n");
        double x = jnum(c, "x"), wk = jnum(c, "kstwo_sf"), ws = jnum(c, "smirnov");
        double k = mu_kolmogorov_sf(n, x), s = mu_smirnov_sf(n, x);
        CHECK_MSG(fabs(k - wk) <= 1e-9 * wk + 1e-15, "kstwo.sf(%g, %ld) = %.17g, scipy %.17g", x, n, k, wk);
        CHECK_MSG(fabs(s - ws) <= 1e-9 * ws + 1e-15, "smirnov(%ld, %g) = %.17g, scipy %.17g", n, x, s, ws);
    }
    json_decref(g);
}

/* mu_ttest_rel_p of the differences d: their mean and sample standard deviation */
static double ttest_of(const double *d, long n) {
    double mean = 0, ss = 0;
    for (long i = 0; i < n; i++) mean += d[i];
    mean /= (double)n;
    for (long i = 0; i < n; i++) ss += (d[i] - mean) * (d[i] - mean);
    return mu_ttest_rel_p(mean, n > 1 ? sqrt(ss / (double)(n - 1)) : NAN, n);
}

/* McNemar's exact p against statsmodels; the paired t-test's edge cases (scipy.stats.
 * ttest_rel: NaN for fewer than 2 pairs or all differences 0; its p on real data is
 * checked through mu-score --paired in tests/sh/t_score.sh) */
TEST(metrics_paired_tests) {
    json_t *g = golden("score.expected.json"), *c;
    json_t *mc = json_object_get(json_object_get(g, "paired"), "mcnemar");
    CHECK(json_array_size(mc) >= 5);
    size_t i;
    json_array_foreach(mc, i, c) {
        long b = (long)jnum(c, "b"), cc = (long)jnum(c, "c");
        double want = jnum(c, "p"), got = mu_mcnemar_exact_p(b, cc);
        CHECK_MSG(fabs(got - want) <= 1e-12 * want + 1e-300, "mcnemar(%ld, %ld) = %.17g, statsmodels %.17g", b, cc, got, want);
        CHECK(mu_mcnemar_exact_p(cc, b) == got);   /* symmetric */
    }
    double one[1] = {0.5}, zeros[3] = {0, 0, 0}, same[3] = {0.25, 0.25, 0.25}, d[4] = {1, 2, 3, 6};
    CHECK(isnan(ttest_of(one, 1)));
    CHECK(isnan(ttest_of(zeros, 3)));
    CHECK(ttest_of(same, 3) == 0);
    /* scipy.stats.ttest_1samp([1, 2, 3, 6], 0).pvalue */
    CHECK_MSG(fabs(ttest_of(d, 4) - 0.06913686926442872) < 1e-12, "%.17g", ttest_of(d, 4));
    json_decref(g);
}

TEST(metrics_ks_errors) {
    double a[2] = {1, 2}, b[1] = {NAN}, d, p;
    CHECK(mu_ks_2samp(a, 2, b, 0, &d, &p, NULL) == -1);
    CHECK(mu_ks_2samp(a, 2, b, 1, &d, &p, NULL) == -1);
    /* identical samples: D = 0, p = 1 */
    CHECK(mu_ks_2samp(a, 2, a, 2, &d, &p, NULL) == 0 && d == 0 && p == 1);
}

TEST(metrics_roc_auc_sklearn) {
    json_t *g = golden("auc.json");
    size_t i; json_t *c;
    json_array_foreach(g, i, c) {
        json_t *s = json_object_get(c, "score"), *l = json_object_get(c, "label");
        size_t n = json_array_size(s);
        double *sc = malloc(n * sizeof *sc); int *lb = malloc(n * sizeof *lb);
        for (size_t k = 0; k < n; k++) {
            json_t *v = json_array_get(s, k);
            sc[k] = json_is_integer(v) ? (double)json_integer_value(v) : json_real_value(v);
            lb[k] = (int)json_integer_value(json_array_get(l, k));
        }
        double got = mu_roc_auc(sc, lb, n), want = jnum(c, "auc");
        CHECK_MSG(fabs(got - want) < 1e-12, "case %zu: auc %.17g vs sklearn %.17g", i, got, want);
        free(sc); free(lb);
    }
    double s1[2] = {0.1, 0.2}; int l1[2] = {1, 1};
    CHECK(isnan(mu_roc_auc(s1, l1, 2)));
    json_decref(g);
}

TEST(metrics_zlib_python) {
    json_t *g = golden("zlib.json");
    size_t i; json_t *c;
    json_array_foreach(g, i, c) {
        const char *t = json_string_value(json_object_get(c, "text"));
        CHECK_EQ_INT(mu_zlib_length(t, strlen(t)), (long)jnum(c, "len"));
    }
    CHECK_NEAR(mu_zlib_score(2.0, "a", 1), 2.0 / 9, 1e-15); /* zlib.compress(b"a") is 9 bytes */
    json_decref(g);
}

TEST(metrics_porter_tofu_vocabulary) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/metrics/porter_tofu.txt", mu_test_root());
    FILE *f = fopen(path, "r");
    CHECK_MSG(f != NULL, "cannot open %s", path);
    char w[256], want[256];
    long n = 0;
    while (fscanf(f, "%255s %255s", w, want) == 2) {
        char *got = mu_porter_stem(w);
        CHECK_MSG(!strcmp(got, want), "stem(%s) = %s, nltk %s", w, got, want);
        free(got);
        n++;
    }
    fclose(f);
    CHECK(n > 5000);
}

/* ---------- mu-score on a stream written by lib/stream's writer ---------- */
/* Writes an outputs stream: record i has choices {lp0, lp1} with answer 0, one target
 * token; bad != 0 makes record 1 broken in that way. */
static void write_outputs(const char *path, int bad) {
    mu_writer *w = mu_writer_open(path, "outputs");
    for (int i = 0; i < 3; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        float lp[2] = {-1.0f - (float)i, -2.0f};
        int32_t nt[3] = {1, 2, 2}; /* bad == 3 packs all three */
        float tl[1] = {-0.5f * (float)(i + 1)};
        int64_t two = 2, one = 1, three = 3;
        msgpack_pack_map(pk, 5);
        mu_pack_kv_int(pk, "id", i);
        mu_pack_str(pk, "meta"); msgpack_pack_map(pk, 1); mu_pack_kv_str(pk, "split", i < 2 ? "forget" : "retain");
        if (bad == 1 && i == 1) mu_pack_kv_tensor(pk, "choice_logprobs", MU_F32, 1, &one, lp);
        else mu_pack_kv_tensor(pk, "choice_logprobs", MU_F32, 1, &two, lp);
        if (bad == 2 && i == 1) mu_pack_kv_tensor(pk, "choice_ntokens", MU_F32, 1, &two, lp);
        else if (bad == 3 && i == 1) mu_pack_kv_tensor(pk, "choice_ntokens", MU_I32, 1, &three, nt);
        else mu_pack_kv_tensor(pk, "choice_ntokens", MU_I32, 1, &two, nt);
        if (bad == 4 && i == 1) mu_pack_kv_int(pk, "answer", 5);
        else mu_pack_kv_int(pk, "answer", 0);
        (void)tl;
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

static int run_score(const char *args, const char *out, char *err, size_t errlen) {
    const char *bin = getenv("MU_BIN");
    if (!bin) SKIP("MU_BIN not set (run through make check)");
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s/mu-score %s >%s 2>%s/err", bin, args, out, mu_test_tmpdir());
    int rc = system(cmd);
    char ep[1024]; snprintf(ep, sizeof ep, "%s/err", mu_test_tmpdir());
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, errlen - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

TEST(metrics_score_tool_c_stream) {
    char path[1024], out[1024], args[4096], err[2048];
    snprintf(path, sizeof path, "%s/o.mpk.zst", mu_test_tmpdir());
    snprintf(out, sizeof out, "%s/o.tsv", mu_test_tmpdir());
    write_outputs(path, 0);
    snprintf(args, sizeof args, "--by split --metrics choice_prob,choice_prob_norm,choice_acc --format tsv %s", path);
    CHECK_MSG(run_score(args, out, err, sizeof err) == 0, "mu-score failed: %s", err);
    FILE *f = fopen(out, "r");
    char m[64], g[64]; double v; long n; int seen = 0;
    char line[512];
    CHECK(fgets(line, sizeof line, f) != NULL); /* header */
    while (fgets(line, sizeof line, f) && sscanf(line, "%63s %63s %lf %ld", m, g, &v, &n) == 4) {
        if (!strcmp(m, "choice_prob") && !strcmp(g, "split=forget")) {
            /* records 0,1: lp {-1,-2} and {-2,-2} -> sigmoid(1) and 1/2 */
            CHECK_NEAR(v, (1 / (1 + exp(-1.0)) + 0.5) / 2, 1e-7); CHECK_EQ_INT(n, 2); seen++;
        }
        if (!strcmp(m, "choice_prob_norm") && !strcmp(g, "split=retain")) {
            /* record 2: lp {-3,-2}, ntok {1,2} -> normalized {-3,-1} */
            CHECK_NEAR(v, exp(-3.0) / (exp(-3.0) + exp(-1.0)), 1e-7); seen++;
        }
        if (!strcmp(m, "choice_acc") && !strcmp(g, "split=forget")) { CHECK_NEAR(v, 1.0, 0); seen++; }
    }
    fclose(f);
    CHECK_EQ_INT(seen, 3);
}

TEST(metrics_score_tool_errors) {
    static const char *want[] = {NULL, "choice_ntokens has 2 values, choice_logprobs 1",
                                 "choice_ntokens: expected an integer tensor, got f32",
                                 "choice_ntokens has 3 values, choice_logprobs 2",
                                 "answer 5 is not a candidate index"};
    for (int bad = 1; bad <= 4; bad++) {
        char path[1024], out[1024], args[2048], err[2048];
        snprintf(path, sizeof path, "%s/bad%d.mpk.zst", mu_test_tmpdir(), bad);
        snprintf(out, sizeof out, "%s/bad.tsv", mu_test_tmpdir());
        write_outputs(path, bad);
        snprintf(args, sizeof args, "--format tsv %s", path);
        int rc = run_score(args, out, err, sizeof err);
        CHECK_MSG(rc == 1, "bad=%d: exit %d", bad, rc);
        CHECK_MSG(strstr(err, want[bad]) && strstr(err, path) && strstr(err, "record "),
                  "bad=%d: message '%s' lacks '%s'", bad, err, want[bad]);
        CHECK_MSG(strchr(err, '\n') == err + strlen(err) - 1, "bad=%d: not one line: %s", bad, err);
    }
}

/* ---------- confidence intervals (scipy.stats, statsmodels: gen_ci_golden.py) ---------- */

static double num_at(json_t *row, size_t i) { return json_number_value(json_array_get(row, i)); }

TEST(ci_quantiles_scipy) {
    json_t *g = golden("ci.json");
    size_t i; json_t *r;
    json_array_foreach(json_object_get(g, "norm_ppf"), i, r) {
        double p = num_at(r, 0), want = num_at(r, 1), got = mu_norm_ppf(p);
        CHECK_MSG(fabs(got - want) <= 1e-12 * fabs(want) + 1e-14, "norm.ppf(%g) = %.17g, scipy %.17g", p, got, want);
    }
    json_array_foreach(json_object_get(g, "t_ppf"), i, r) {
        double p = num_at(r, 0), df = num_at(r, 1), want = num_at(r, 2), got = mu_t_ppf(p, df);
        CHECK_MSG(fabs(got - want) <= 1e-9 * fabs(want) + 1e-12, "t.ppf(%g, %g) = %.17g, scipy %.17g", p, df, got, want);
    }
    json_array_foreach(json_object_get(g, "t_cdf"), i, r) {
        double t = num_at(r, 0), df = num_at(r, 1), want = num_at(r, 2), got = mu_t_cdf(t, df);
        CHECK_MSG(fabs(got - want) <= 1e-10 * want + 1e-15, "t.cdf(%g, %g) = %.17g, scipy %.17g", t, df, got, want);
    }
    json_decref(g);
}

TEST(ci_intervals_scipy_statsmodels) {
    json_t *g = golden("ci.json");
    size_t i; json_t *r;
    json_array_foreach(json_object_get(g, "mean"), i, r) {
        json_t *xs = json_array_get(r, 0);
        long n = (long)json_array_size(xs);
        double s = 0, ss = 0, lo, hi;
        for (long k = 0; k < n; k++) s += num_at(xs, (size_t)k);
        double mean = s / (double)n;
        for (long k = 0; k < n; k++) { double d = num_at(xs, (size_t)k) - mean; ss += d * d; }
        mu_ci_mean(mean, sqrt(ss / (double)(n - 1)), n, num_at(r, 1), &lo, &hi);
        CHECK_MSG(fabs(lo - num_at(r, 2)) < 1e-10 && fabs(hi - num_at(r, 3)) < 1e-10,
                  "mean case %zu: [%.17g, %.17g], scipy [%.17g, %.17g]", i, lo, hi, num_at(r, 2), num_at(r, 3));
    }
    json_array_foreach(json_object_get(g, "wilson"), i, r) {
        double lo, hi;
        mu_ci_wilson(num_at(r, 0), (long)num_at(r, 1), num_at(r, 2), &lo, &hi);
        CHECK_MSG(fabs(lo - num_at(r, 3)) < 1e-12 && fabs(hi - num_at(r, 4)) < 1e-12,
                  "wilson %g/%g at %g: [%.17g, %.17g], statsmodels [%.17g, %.17g]", num_at(r, 0),
                  num_at(r, 1), num_at(r, 2), lo, hi, num_at(r, 3), num_at(r, 4));
    }
    double lo, hi;
    mu_ci_mean(0.5, 0.1, 1, 0.95, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi));                    /* one value: no interval */
    json_decref(g);
}

/* Newcombe's paired interval against paired_ci.py (statsmodels' Wilson intervals, the
 * square-and-add step checked on Fagerland et al.'s worked example, table [[59, 6],
 * [16, 80]]: -0.1186 to -0.0046); swapping the models negates it; it holds the estimate
 * and stays in [-1, 1]. */
TEST(ci_paired_diff_newcombe) {
    json_t *g = golden("ci.json");
    size_t i; json_t *r;
    CHECK(json_array_size(json_object_get(g, "paired_diff")) >= 30);
    json_array_foreach(json_object_get(g, "paired_diff"), i, r) {
        long n11 = (long)num_at(r, 0), b = (long)num_at(r, 1), c = (long)num_at(r, 2), n00 = (long)num_at(r, 3);
        double level = num_at(r, 4), lo, hi, slo, shi, est = (double)(b - c) / (double)(n11 + b + c + n00);
        mu_ci_paired_diff(n11, b, c, n00, level, &lo, &hi);
        CHECK_MSG(fabs(lo - num_at(r, 5)) < 1e-12 && fabs(hi - num_at(r, 6)) < 1e-12,
                  "table %ld %ld %ld %ld at %g: [%.17g, %.17g], reference [%.17g, %.17g]", n11, b, c, n00, level,
                  lo, hi, num_at(r, 5), num_at(r, 6));
        mu_ci_paired_diff(n11, c, b, n00, level, &slo, &shi);
        CHECK(fabs(slo + hi) < 1e-15 && fabs(shi + lo) < 1e-15);
        CHECK(-1 <= lo && lo <= est && est <= hi && hi <= 1);
    }
    double lo, hi;
    mu_ci_paired_diff(59, 6, 16, 80, 0.95, &lo, &hi);
    CHECK(fabs(lo - -0.1186) < 5e-5 && fabs(hi - -0.0046) < 5e-5);
    mu_ci_paired_diff(0, 0, 0, 0, 0.95, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi));                    /* no records */
    mu_ci_paired_diff(3, -1, 0, 2, 0.95, &lo, &hi);
    CHECK(isnan(lo) && isnan(hi));
    json_decref(g);
}
