/* t_probe.c — lib/probe: the fitted probe against scikit-learn's LogisticRegression
 * (tests/gen/gen_probe_golden.py -> tests/golden/probe/logreg.json), the gradient
 * against central finite differences, separable data, thread-count independence. */
#include "test.h"
#include "probe.h"
#include "rng.h"
#include <jansson.h>
#include <omp.h>
#include <stdint.h>

static json_t *golden(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/probe/%s", mu_test_root(), name);
    json_error_t e;
    json_t *j = json_load_file(path, 0, &e);
    CHECK_MSG(j != NULL, "cannot load %s: %s", path, e.text);
    return j;
}

static double jnum(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    CHECK_MSG(v && json_is_number(v), "golden lacks %s", key);
    return json_number_value(v);
}

/* The golden data set: X [N, D] f32, y [N]. */
typedef struct { int C, D, N, n_train; double l2; float *X; int32_t *y; } dataset;

static dataset load_dataset(json_t *g) {
    dataset ds = {(int)jnum(g, "C"), (int)jnum(g, "D"), (int)jnum(g, "N"), (int)jnum(g, "n_train"), jnum(g, "l2"), 0, 0};
    ds.X = malloc((size_t)ds.N * ds.D * sizeof *ds.X);
    ds.y = malloc((size_t)ds.N * sizeof *ds.y);
    json_t *X = json_object_get(g, "X"), *y = json_object_get(g, "y");
    CHECK((int)json_array_size(X) == ds.N && (int)json_array_size(y) == ds.N);
    for (int i = 0; i < ds.N; i++) {
        json_t *row = json_array_get(X, i);
        CHECK((int)json_array_size(row) == ds.D);
        for (int j = 0; j < ds.D; j++) ds.X[i * ds.D + j] = (float)json_number_value(json_array_get(row, j));
        ds.y[i] = (int32_t)json_integer_value(json_array_get(y, i));
    }
    return ds;
}

/* Standardizes all N rows with the train split's moments; fits on the train rows. */
static double *fit_golden(const dataset *ds, double **Zout, mu_probe_fit_info *info) {
    double *mean = malloc(ds->D * sizeof *mean), *std = malloc(ds->D * sizeof *std);
    mu_probe_moments(ds->X, ds->n_train, ds->D, mean, std);
    double *Z = malloc((size_t)ds->N * ds->D * sizeof *Z);
    mu_probe_standardize(ds->X, ds->N, ds->D, mean, std, Z);
    double *theta = malloc(((size_t)ds->C * ds->D + ds->C) * sizeof *theta);
    char err[256] = "";
    CHECK_MSG(mu_probe_fit(Z, ds->y, ds->n_train, ds->D, ds->C, ds->l2, NULL, theta, info, err, sizeof err) == 0, "%s", err);
    free(mean); free(std);
    *Zout = Z;
    return theta;
}

TEST(probe_moments_match_sklearn_scaler) {
    json_t *g = golden("logreg.json");
    dataset ds = load_dataset(g);
    double mean[64], std[64];
    mu_probe_moments(ds.X, ds.n_train, ds.D, mean, std);
    for (int j = 0; j < ds.D; j++) {
        CHECK_CLOSE(mean[j], json_number_value(json_array_get(json_object_get(g, "mean"), j)), 1e-12, 1e-12);
        CHECK_CLOSE(std[j], json_number_value(json_array_get(json_object_get(g, "std"), j)), 1e-12, 1e-12);
    }
    /* a constant feature keeps std 1 (sklearn's scale_ for zero variance) */
    float Xc[3] = {2.5f, 2.5f, 2.5f};
    mu_probe_moments(Xc, 3, 1, mean, std);
    CHECK_NEAR(mean[0], 2.5, 0);
    CHECK_NEAR(std[0], 1.0, 0);
    json_decref(g);
}

TEST(probe_fit_matches_sklearn) {
    json_t *g = golden("logreg.json");
    dataset ds = load_dataset(g);
    double *Z;
    mu_probe_fit_info info;
    double *theta = fit_golden(&ds, &Z, &info);
    CHECK(info.converged);
    CHECK(info.grad_max <= 1e-9);
    CHECK_CLOSE(info.loss, jnum(g, "loss"), 1e-9, 0);
    json_t *W = json_object_get(g, "W"), *b = json_object_get(g, "b");
    double wmax = 0;
    for (int c = 0; c < ds.C; c++)
        for (int j = 0; j < ds.D; j++) {
            double w = json_number_value(json_array_get(json_array_get(W, c), j));
            if (fabs(w) > wmax) wmax = fabs(w);
        }
    for (int c = 0; c < ds.C; c++) {
        for (int j = 0; j < ds.D; j++)
            CHECK_CLOSE(theta[c * ds.D + j], json_number_value(json_array_get(json_array_get(W, c), j)), 1e-4, 1e-6 * wmax);
        CHECK_CLOSE(theta[ds.C * ds.D + c], json_number_value(json_array_get(b, c)), 1e-4, 1e-6);
    }
    /* probabilities and accuracies on both splits */
    json_t *P = json_object_get(g, "proba");
    double p[8];
    for (int i = 0; i < ds.N; i++) {
        mu_probe_proba(theta, ds.D, ds.C, Z + (size_t)i * ds.D, p);
        for (int c = 0; c < ds.C; c++)
            CHECK_NEAR(p[c], json_number_value(json_array_get(json_array_get(P, i), c)), 1e-6);
    }
    CHECK_NEAR(mu_probe_accuracy(theta, Z, ds.y, ds.n_train, ds.D, ds.C), jnum(g, "train_acc"), 1e-12);
    CHECK_NEAR(mu_probe_accuracy(theta, Z + (size_t)ds.n_train * ds.D, ds.y + ds.n_train,
                                 ds.N - ds.n_train, ds.D, ds.C), jnum(g, "test_acc"), 1e-12);
    CHECK(isnan(mu_probe_accuracy(theta, Z, ds.y, 0, ds.D, ds.C)));
    /* mean cross-entropy on each split: sklearn.metrics.log_loss of sklearn's probabilities */
    CHECK_CLOSE(mu_probe_log_loss(theta, Z, ds.y, ds.n_train, ds.D, ds.C), jnum(g, "train_log_loss"), 1e-6, 0);
    CHECK_CLOSE(mu_probe_log_loss(theta, Z + (size_t)ds.n_train * ds.D, ds.y + ds.n_train,
                                  ds.N - ds.n_train, ds.D, ds.C), jnum(g, "test_log_loss"), 1e-6, 0);
    CHECK(isnan(mu_probe_log_loss(theta, Z, ds.y, 0, ds.D, ds.C)));
    free(theta); free(Z); free(ds.X); free(ds.y);
    json_decref(g);
}

/* Random standardized-looking data: Z [N, D], y [N] in [0, C). */
static void random_problem(uint64_t seed, int64_t N, int D, int C, double *Z, int32_t *y) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    for (int64_t i = 0; i < N * D; i++) Z[i] = mu_rng_normal(&r);
    for (int64_t i = 0; i < N; i++) y[i] = (int32_t)mu_rng_below(&r, (uint64_t)C);
}

TEST(probe_gradient_matches_finite_differences) {
    enum { N = 23, D = 7, C = 4 };
    double Z[N * D], theta[C * D + C], grad[C * D + C], tp[C * D + C];
    int32_t y[N];
    random_problem(7, N, D, C, Z, y);
    mu_rng r;
    mu_rng_seed(&r, 99);
    for (int k = 0; k < C * D + C; k++) theta[k] = 0.7 * mu_rng_normal(&r);
    double l2 = 0.3;
    double f = mu_probe_objective(Z, y, N, D, C, l2, theta, grad);
    CHECK(isfinite(f) && f > 0);
    CHECK_CLOSE(mu_probe_objective(Z, y, N, D, C, l2, theta, NULL), f, 0, 0);
    for (int k = 0; k < C * D + C; k++) {
        double h = 1e-5;
        memcpy(tp, theta, sizeof tp);
        tp[k] = theta[k] + h;
        double fp = mu_probe_objective(Z, y, N, D, C, l2, tp, NULL);
        tp[k] = theta[k] - h;
        double fm = mu_probe_objective(Z, y, N, D, C, l2, tp, NULL);
        CHECK_CLOSE(grad[k], (fp - fm) / (2 * h), 1e-6, 1e-9);
    }
    /* the objective at theta = 0 is log C (no penalty) */
    memset(tp, 0, sizeof tp);
    CHECK_NEAR(mu_probe_objective(Z, y, N, D, C, l2, tp, NULL), log((double)C), 1e-14);
}

TEST(probe_separable_data_is_learned_exactly) {
    /* three classes far apart along different axes, noise well inside the margins */
    enum { N = 90, D = 5, C = 3 };
    float X[N * D];
    int32_t y[N];
    mu_rng r;
    mu_rng_seed(&r, 3);
    for (int i = 0; i < N; i++) {
        y[i] = i % C;
        for (int j = 0; j < D; j++) X[i * D + j] = (float)(0.3 * mu_rng_normal(&r) + (j == y[i] ? 4.0 : 0.0));
    }
    int ntr = 60;
    double mean[D], std[D], Z[N * D], theta[C * D + C];
    mu_probe_moments(X, ntr, D, mean, std);
    mu_probe_standardize(X, N, D, mean, std, Z);
    mu_probe_fit_info info;
    char err[256];
    CHECK(mu_probe_fit(Z, y, ntr, D, C, 1e-3, NULL, theta, &info, err, sizeof err) == 0);
    CHECK(info.converged);
    CHECK_NEAR(mu_probe_accuracy(theta, Z, y, ntr, D, C), 1.0, 0);
    CHECK_NEAR(mu_probe_accuracy(theta, Z + ntr * D, y + ntr, N - ntr, D, C), 1.0, 0);
    /* the centred bias sums to zero */
    CHECK_NEAR(theta[C * D] + theta[C * D + 1] + theta[C * D + 2], 0, 1e-12);
    /* a random labelling of the same points is not learned to 100% on held-out rows */
    int32_t yr[N];
    for (int i = 0; i < N; i++) yr[i] = (int32_t)mu_rng_below(&r, C);
    CHECK(mu_probe_fit(Z, yr, ntr, D, C, 1e-3, NULL, theta, &info, err, sizeof err) == 0);
    CHECK(mu_probe_accuracy(theta, Z + ntr * D, yr + ntr, N - ntr, D, C) < 0.9);
}

TEST(probe_fit_is_thread_count_independent) {
    enum { N = 300, D = 150, C = 3 };
    double *Z = malloc(sizeof(double) * N * D), t1[C * D + C], t4[C * D + C];
    int32_t y[N];
    random_problem(11, N, D, C, Z, y);
    mu_probe_fit_info i1, i4;
    char err[256];
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    CHECK(mu_probe_fit(Z, y, N, D, C, 0.01, NULL, t1, &i1, err, sizeof err) == 0);
    omp_set_num_threads(4);
    CHECK(mu_probe_fit(Z, y, N, D, C, 0.01, NULL, t4, &i4, err, sizeof err) == 0);
    omp_set_num_threads(saved);
    CHECK(i1.converged && i4.converged);
    CHECK_EQ_INT(i1.iterations, i4.iterations);
    CHECK(memcmp(t1, t4, sizeof t1) == 0);
    free(Z);
}

TEST(probe_fit_rejects_bad_arguments) {
    double Z[4] = {0, 1, 2, 3}, theta[8];
    int32_t y[4] = {0, 1, 0, 1}, ybad[4] = {0, 1, 2, 0};
    char err[256] = "";
    CHECK(mu_probe_fit(Z, y, 4, 1, 1, 0.1, NULL, theta, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "at least 2 classes"));
    CHECK(mu_probe_fit(Z, y, 4, 1, 2, 0, NULL, theta, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "l2"));
    CHECK(mu_probe_fit(Z, ybad, 4, 1, 2, 0.1, NULL, theta, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "row 2"));
    Z[1] = NAN;
    CHECK(mu_probe_fit(Z, y, 4, 1, 2, 0.1, NULL, theta, NULL, err, sizeof err) == -1);
    CHECK(strstr(err, "not finite"));
}
