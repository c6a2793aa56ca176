/* mu-probe — linear probes on latent states (Guo et al. 2024): fits one multinomial
 * logistic-regression probe per (site, layer) of an "activations" stream to a label
 * from the records' meta and writes a "probes" stream (fit), or measures saved probes
 * on new activations and writes a "metrics" stream (apply). See mu-probe(1). */
#define _GNU_SOURCE
#include "cli.h"
#include "stream.h"
#include "probe.h"
#include "rng.h"
#include "ckpt.h"
#include "mask.h"
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: mu-probe fit --acts FILE --label FIELD [OPTIONS]\n"
    "       mu-probe apply --probes FILE --acts FILE [--label FIELD] [--out FILE]\n"
    "       mu-probe localize --probes FILE --model PATH [--tensors SPEC]\n"
    "                         [--by loss|acc] [--out FILE]\n"
    "Linear probes on activations (streams of kind \"activations\" from mu-forward\n"
    "--cache): one multinomial logistic regression per (site, layer), predicting the\n"
    "record's meta FIELD from the standardized activations.\n"
    "\n"
    "fit: writes a \"probes\" stream (one record per site and layer: classes, split\n"
    "sizes, train/test/majority accuracy, mean, std, W, b).\n"
    "  --acts FILE          activations to fit on ('-' = stdin)\n"
    "  --label FIELD        meta field holding the class (string, integer or bool)\n"
    "  --position P         last (default), mean (over the cached positions) or all\n"
    "                       (every cached position is a sample of its record's class)\n"
    "  --test-fraction F    share of the records held out, by a seeded shuffle\n"
    "                       (default 0.25; 0: no test split)\n"
    "  --test FILE          held-out activations instead of a split of --acts\n"
    "  --l2 L               penalty: mean cross-entropy + L/2 ||W||^2 (default 1e-3;\n"
    "                       sklearn's C = 1/(L * n_train))\n"
    "  --seed K             seed of the split (default 0)\n"
    "  --max-iter N         L-BFGS iterations per probe (default 10000)\n"
    "apply: writes a \"metrics\" stream: probe_acc and probe_majority_acc per site and\n"
    "layer, of the saved probes on new activations (e.g. of an unlearned model).\n"
    "  --probes FILE        a probes stream from mu-probe fit\n"
    "  --acts FILE          activations ('-' = stdin) with the same label field\n"
    "  --label FIELD        read each record's class from FIELD instead (e.g. an edit's\n"
    "                       new answer: do the probes read it?)\n"
    "localize: writes a \"scores\" stream for mu-maskgen (Guo et al.'s fact lookup by\n"
    "probes): each block's gain in the label's decodability, from probes fitted with\n"
    "a test split at resid_mid and resid_post (MLP L: resid_post L over resid_mid L;\n"
    "attention L: resid_mid L over resid_pre L or resid_post L-1), given to the\n"
    "block's matrices.\n"
    "  --probes FILE        a probes stream from mu-probe fit\n"
    "  --model PATH         the probes' model (only its config is read)\n"
    "  --tensors SPEC       the scored matrices, a mu-train --mask shorthand\n"
    "                       (default mlp:all)\n"
    "  --by loss|acc        decodability: minus the test cross-entropy (default)\n"
    "                       or the test accuracy\n"
    "Both:\n"
    "  --out FILE           output stream (atomic; default '-' = stdout)\n"
    "  -q, --quiet          no progress\n"
    "  -h, --help           this help;  -V, --version  version\n";

enum position { POS_LAST, POS_MEAN, POS_ALL };
static const char *position_names[] = {"last", "mean", "all"};

static struct {
    const char *acts, *test, *label, *probes, *out, *model, *tensors;
    int by_acc;
    enum position position;
    double test_fraction, l2;
    uint64_t seed;
    int max_iter;
} opt = {.out = "-", .tensors = "mlp:all", .position = POS_LAST, .test_fraction = 0.25, .l2 = 1e-3, .max_iter = 10000};

/* ---------------------------------------------------------------- activations */

/* The samples of one (site, layer): rows of X [rows, D], each with its record. */
typedef struct {
    char *site;
    int layer, D;
    float *X;
    int32_t *rec;
    int64_t rows, cap;
    int seen;          /* in the current record */
} site_data;

/* One activations file: the label of each record and the samples per site. */
typedef struct {
    const char *path;
    int64_t nrec;
    char **labels;
    site_data *sd;
    int nsd;
    int fixed;         /* the sites were given (apply, --test): others are skipped */
} acts_set;

static void add_site(acts_set *a, const char *site, int layer, int D) {
    a->sd = mu_xrealloc(a->sd, (size_t)(a->nsd + 1) * sizeof *a->sd);
    a->sd[a->nsd++] = (site_data){.site = mu_xstrdup(site), .layer = layer, .D = D};
}

static int find_site(const acts_set *a, const char *site, int layer) {
    for (int i = 0; i < a->nsd; i++)
        if (a->sd[i].layer == layer && !strcmp(a->sd[i].site, site)) return i;
    return -1;
}

static void push_row(site_data *s, const float *x, int32_t rec) {
    if (s->rows == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->X = mu_xrealloc(s->X, (size_t)s->cap * (size_t)s->D * sizeof *s->X);
        s->rec = mu_xrealloc(s->rec, (size_t)s->cap * sizeof *s->rec);
    }
    memcpy(s->X + (size_t)s->rows * s->D, x, (size_t)s->D * sizeof *x);
    s->rec[s->rows++] = rec;
}

/* The label of a record: meta[field] as a string (integers in decimal, bools as
 * true/false). */
static char *record_label(const mu_reader *r, const msgpack_object *rec, const char *field) {
    const msgpack_object *meta = mu_obj_get(rec, "meta");
    const msgpack_object *v = meta && meta->type == MSGPACK_OBJECT_MAP ? mu_obj_get(meta, field) : NULL;
    if (!v) mu_reader_die(r, "no meta field \"%s\" (the label)", field);
    char buf[32];
    switch (v->type) {
    case MSGPACK_OBJECT_STR: return mu_obj_strdup(v);
    case MSGPACK_OBJECT_POSITIVE_INTEGER: snprintf(buf, sizeof buf, "%llu", (unsigned long long)v->via.u64); return mu_xstrdup(buf);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: snprintf(buf, sizeof buf, "%lld", (long long)v->via.i64); return mu_xstrdup(buf);
    case MSGPACK_OBJECT_BOOLEAN: return mu_xstrdup(v->via.boolean ? "true" : "false");
    default: mu_reader_die(r, "meta field \"%s\" is not a string, integer or bool", field);
    }
}

/* One acts entry {"site","layer","positions","x"}: its samples, by --position. */
static void read_entry(const mu_reader *r, acts_set *a, const msgpack_object *e, int32_t ri,
                       enum position pos, float **buf, size_t *bufn) {
    if (e->type != MSGPACK_OBJECT_MAP) mu_reader_die(r, "acts: an entry is not a map");
    const msgpack_object *so = mu_obj_get(e, "site");
    int64_t layer;
    if (!so || so->type != MSGPACK_OBJECT_STR) mu_reader_die(r, "acts: an entry has no site");
    if (mu_obj_int(mu_obj_get(e, "layer"), &layer) || layer < -1 || layer > 1 << 20)
        mu_reader_die(r, "acts: an entry has no valid layer");
    char *site = mu_obj_strdup(so);
    mu_tensor_view pt, xt;
    mu_reader_tensor_or_die(r, e, "positions", &pt);
    mu_reader_tensor_or_die(r, e, "x", &xt);
    if (xt.ndim != 2 || xt.shape[0] < 1 || xt.shape[1] < 1 || xt.shape[1] > 1 << 24)
        mu_reader_die(r, "%s layer %lld: x must be [P, D] with P, D >= 1", site, (long long)layer);
    if (pt.ndim != 1 || pt.shape[0] != xt.shape[0])
        mu_reader_die(r, "%s layer %lld: %lld positions for %lld rows of x", site, (long long)layer,
                      (long long)(pt.ndim == 1 ? pt.shape[0] : -1), (long long)xt.shape[0]);
    int P = (int)xt.shape[0], D = (int)xt.shape[1];
    int k = find_site(a, site, (int)layer);
    if (k < 0) {
        if (a->fixed) { free(site); return; }
        if (ri > 0) mu_reader_die(r, "%s layer %lld: not in record 0", site, (long long)layer);
        add_site(a, site, (int)layer, D);
        k = a->nsd - 1;
    }
    site_data *s = &a->sd[k];
    if (s->seen) mu_reader_die(r, "%s layer %lld: appears twice in the record", site, (long long)layer);
    if (s->D != D) mu_reader_die(r, "%s layer %lld: width %d, expected %d", site, (long long)layer, D, s->D);
    s->seen = 1;
    size_t n = (size_t)P * D;
    if (*bufn < n) { *buf = mu_xrealloc(*buf, n * sizeof **buf); *bufn = n; }
    if (mu_to_f32(xt.dtype, xt.data, n, *buf))
        mu_reader_die(r, "%s layer %lld: x has dtype %s, expected a float dtype", site, (long long)layer, mu_dtype_name(xt.dtype));
    for (size_t i = 0; i < n; i++)
        if (!isfinite((*buf)[i])) mu_reader_die(r, "%s layer %lld: x holds a non-finite value", site, (long long)layer);
    if (pos == POS_LAST) push_row(s, *buf + (size_t)(P - 1) * D, ri);
    else if (pos == POS_ALL) for (int p = 0; p < P; p++) push_row(s, *buf + (size_t)p * D, ri);
    else {
        float *m = mu_xmalloc((size_t)D * sizeof *m);
        for (int j = 0; j < D; j++) {
            double acc = 0;
            for (int p = 0; p < P; p++) acc += (*buf)[(size_t)p * D + j];
            m[j] = (float)(acc / P);
        }
        push_row(s, m, ri);
        free(m);
    }
    free(site);
}

/* Reads every record of path into a (whose sites are fixed when a->fixed). */
static void read_acts(acts_set *a, const char *path, const char *label, enum position pos) {
    a->path = path;
    mu_reader *r = mu_reader_open_or_die(path, "activations");
    const msgpack_object *rec;
    float *buf = NULL;
    size_t bufn = 0;
    while ((rec = mu_reader_next_or_die(r))) {
        int32_t ri = (int32_t)a->nrec;
        if (a->nrec >= INT32_MAX) mu_reader_die(r, "too many records");
        a->labels = mu_xrealloc(a->labels, (size_t)(a->nrec + 1) * sizeof *a->labels);
        a->labels[a->nrec++] = record_label(r, rec, label);
        const msgpack_object *acts = mu_obj_get(rec, "acts");
        if (!acts || acts->type != MSGPACK_OBJECT_ARRAY) mu_reader_die(r, "no acts array");
        for (int k = 0; k < a->nsd; k++) a->sd[k].seen = 0;
        for (uint32_t e = 0; e < acts->via.array.size; e++)
            read_entry(r, a, &acts->via.array.ptr[e], ri, pos, &buf, &bufn);
        for (int k = 0; k < a->nsd; k++)
            if (!a->sd[k].seen)
                mu_reader_die(r, "no activations at %s layer %d (%s)", a->sd[k].site, a->sd[k].layer,
                              a->fixed ? "a probe needs them" : "record 0 has them");
    }
    if (a->nrec == 0) mu_die("%s: no records", path);
    if (a->nsd == 0) mu_die("%s: no activations at the probes' sites", path);
    mu_reader_close(r);
    free(buf);
}

static void free_acts(acts_set *a) {
    for (int64_t i = 0; i < a->nrec; i++) free(a->labels[i]);
    for (int k = 0; k < a->nsd; k++) { free(a->sd[k].site); free(a->sd[k].X); free(a->sd[k].rec); }
    free(a->labels); free(a->sd);
}

/* ---------------------------------------------------------------- classes */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Appends the distinct labels of a to the sorted set (cls, *n). */
static char **collect_classes(const acts_set *a, char **cls, int *n) {
    for (int64_t i = 0; i < a->nrec; i++) {
        if (*n > 0 && bsearch(&a->labels[i], cls, (size_t)*n, sizeof *cls, cmp_str)) continue;
        cls = mu_xrealloc(cls, (size_t)(*n + 1) * sizeof *cls);
        cls[(*n)++] = a->labels[i];
        qsort(cls, (size_t)*n, sizeof *cls, cmp_str);
    }
    return cls;
}

/* y[record] = index of its label among the classes; -1 when it is not one. */
static int32_t *class_indices(const acts_set *a, char **cls, int n) {
    int32_t *y = mu_xmalloc((size_t)a->nrec * sizeof *y);
    for (int64_t i = 0; i < a->nrec; i++) {
        char **hit = n > 0 ? bsearch(&a->labels[i], cls, (size_t)n, sizeof *cls, cmp_str) : NULL;
        y[i] = hit ? (int32_t)(hit - cls) : -1;
    }
    return y;
}

/* ---------------------------------------------------------------- probes */

/* A fitted probe, parameters as stored (f32) and as used (double, from the f32). */
typedef struct {
    int C, D;
    float *mean, *std, *W, *b;
    double *dmean, *dstd, *theta;
} probe;

static void probe_alloc(probe *p, int C, int D) {
    p->C = C; p->D = D;
    p->mean = mu_xmalloc((size_t)D * sizeof(float));
    p->std = mu_xmalloc((size_t)D * sizeof(float));
    p->W = mu_xmalloc((size_t)C * D * sizeof(float));
    p->b = mu_xmalloc((size_t)C * sizeof(float));
    p->dmean = mu_xmalloc((size_t)D * sizeof(double));
    p->dstd = mu_xmalloc((size_t)D * sizeof(double));
    p->theta = mu_xmalloc(((size_t)C * D + C) * sizeof(double));
}

static void probe_free(probe *p) {
    free(p->mean); free(p->std); free(p->W); free(p->b);
    free(p->dmean); free(p->dstd); free(p->theta);
}

/* The double copies from the f32 fields, so fit and apply predict with the same numbers. */
static void probe_widen(probe *p) {
    for (int j = 0; j < p->D; j++) { p->dmean[j] = p->mean[j]; p->dstd[j] = p->std[j]; }
    for (size_t k = 0; k < (size_t)p->C * p->D; k++) p->theta[k] = p->W[k];
    for (int c = 0; c < p->C; c++) p->theta[(size_t)p->C * p->D + c] = p->b[c];
}

/* Accuracy and mean cross-entropy of p on the rows of s whose record is selected (sel
 * NULL: all) and whose class y[rec] >= 0; *n counts them; also the share of them in class
 * maj. */
typedef struct { int64_t n; double acc, loss, maj_acc; } probe_score;
static probe_score probe_eval(const probe *p, const site_data *s, const int32_t *y, const char *sel, int maj) {
    int64_t right = 0, cnt = 0, nmaj = 0;
    double nll = 0;
    double *z = mu_xmalloc((size_t)s->D * sizeof *z);
    for (int64_t i = 0; i < s->rows; i++) {
        int32_t ri = s->rec[i];
        if (sel && !sel[ri]) continue;
        mu_probe_standardize(s->X + (size_t)i * s->D, 1, s->D, p->dmean, p->dstd, z);
        right += mu_probe_predict(p->theta, p->D, p->C, z) == y[ri];
        nll += mu_probe_nll(p->theta, p->D, p->C, z, y[ri]);
        nmaj += y[ri] == maj;
        cnt++;
    }
    free(z);
    probe_score r = {cnt, NAN, NAN, NAN};
    if (cnt) { r.acc = (double)right / (double)cnt; r.loss = nll / (double)cnt; r.maj_acc = (double)nmaj / (double)cnt; }
    return r;
}

/* ---------------------------------------------------------------- fit */

typedef struct {
    probe_score train, test;   /* test.maj_acc: majority_acc */
    int majority;
    mu_probe_fit_info info;
} fit_result;

/* Fits one probe on the rows of train selected by sel (NULL: all), tests on the rows
 * of test selected by tsel (test NULL: no test rows). */
static void fit_one(probe *p, const site_data *train, const int32_t *y, const char *sel,
                    const site_data *test, const int32_t *ty, const char *tsel, int C,
                    const char *path, fit_result *fr) {
    int D = train->D;
    int64_t n = 0;
    for (int64_t i = 0; i < train->rows; i++) n += !sel || sel[train->rec[i]];
    float *X = mu_xmalloc((size_t)n * D * sizeof *X);
    int32_t *yy = mu_xmalloc((size_t)n * sizeof *yy);
    int64_t *count = mu_xcalloc((size_t)C, sizeof *count);
    for (int64_t i = 0, k = 0; i < train->rows; i++) {
        if (sel && !sel[train->rec[i]]) continue;
        memcpy(X + (size_t)k * D, train->X + (size_t)i * D, (size_t)D * sizeof *X);
        yy[k] = y[train->rec[i]];
        count[yy[k++]]++;
    }
    fr->majority = 0;
    for (int c = 1; c < C; c++) if (count[c] > count[fr->majority]) fr->majority = c;
    probe_alloc(p, C, D);
    mu_probe_moments(X, n, D, p->dmean, p->dstd);
    for (int j = 0; j < D; j++) {
        p->mean[j] = (float)p->dmean[j];
        p->std[j] = (float)p->dstd[j];
        if (!(p->std[j] > 0) || !isfinite(p->std[j])) p->std[j] = 1; /* below f32 range */
        p->dmean[j] = p->mean[j]; p->dstd[j] = p->std[j];
    }
    double *Z = mu_xmalloc((size_t)n * D * sizeof *Z);
    mu_probe_standardize(X, n, D, p->dmean, p->dstd, Z);
    mu_probe_fit_opts fo;
    mu_probe_fit_defaults(&fo);
    fo.max_iter = opt.max_iter;
    char err[256];
    if (mu_probe_fit(Z, yy, n, D, C, opt.l2, &fo, p->theta, &fr->info, err, sizeof err))
        mu_die("%s: %s layer %d: %s", path, train->site, train->layer, err);
    if (!fr->info.converged)
        mu_warn("%s: %s layer %d: L-BFGS stopped after %d iterations with max |gradient| %.3g",
                path, train->site, train->layer, fr->info.iterations, fr->info.grad_max);
    for (size_t k = 0; k < (size_t)C * D; k++) p->W[k] = (float)p->theta[k];
    for (int c = 0; c < C; c++) p->b[c] = (float)p->theta[(size_t)C * D + c];
    probe_widen(p);
    fr->train = probe_eval(p, train, y, sel, fr->majority);
    fr->test = (probe_score){0, NAN, NAN, NAN};
    if (test) fr->test = probe_eval(p, test, ty, tsel, fr->majority);
    free(X); free(yy); free(count); free(Z);
}

static void pack_classes(msgpack_packer *pk, char **cls, int C) {
    msgpack_pack_array(pk, (size_t)C);
    for (int c = 0; c < C; c++) mu_pack_str(pk, cls[c]);
}

static void write_probe(mu_writer *w, const site_data *s, const probe *p, char **cls,
                        const fit_result *fr) {
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 19);
    mu_pack_kv_str(pk, "site", s->site);
    mu_pack_kv_int(pk, "layer", s->layer);
    mu_pack_str(pk, "classes");
    pack_classes(pk, cls, p->C);
    mu_pack_kv_int(pk, "n_train", fr->train.n);
    mu_pack_kv_int(pk, "n_test", fr->test.n);
    mu_pack_kv_f64(pk, "train_acc", fr->train.acc);
    mu_pack_kv_f64(pk, "test_acc", fr->test.acc);
    mu_pack_kv_f64(pk, "train_loss", fr->train.loss);
    mu_pack_kv_f64(pk, "test_loss", fr->test.loss);
    mu_pack_kv_f64(pk, "majority_acc", fr->test.maj_acc);
    mu_pack_kv_str(pk, "majority_class", cls[fr->majority]);
    int64_t d[1] = {p->D}, cd[2] = {p->C, p->D}, c1[1] = {p->C};
    mu_pack_kv_tensor(pk, "mean", MU_F32, 1, d, p->mean);
    mu_pack_kv_tensor(pk, "std", MU_F32, 1, d, p->std);
    mu_pack_kv_tensor(pk, "W", MU_F32, 2, cd, p->W);
    mu_pack_kv_tensor(pk, "b", MU_F32, 1, c1, p->b);
    mu_pack_kv_int(pk, "iterations", fr->info.iterations);
    mu_pack_str(pk, "converged");
    if (fr->info.converged) msgpack_pack_true(pk); else msgpack_pack_false(pk);
    mu_pack_kv_f64(pk, "loss", fr->info.loss);
    mu_pack_kv_f64(pk, "grad_max", fr->info.grad_max);
    mu_writer_end_record(w);
}

/* sel[record] = 1 for the train split: a seeded shuffle, the last n_test records of it
 * held out. */
static char *split_records(int64_t nrec, int64_t *n_test) {
    int64_t nt = (int64_t)llround((double)nrec * opt.test_fraction);
    if (opt.test_fraction > 0 && nt < 1) nt = 1;
    if (nt > nrec - 1) nt = nrec - 1;
    int64_t *perm = mu_xmalloc((size_t)nrec * sizeof *perm);
    for (int64_t i = 0; i < nrec; i++) perm[i] = i;
    mu_rng rng;
    mu_rng_seed(&rng, opt.seed);
    mu_rng_shuffle_i64(&rng, perm, nrec);
    char *sel = mu_xmalloc((size_t)nrec);
    for (int64_t i = 0; i < nrec; i++) sel[perm[i]] = i < nrec - nt;
    free(perm);
    *n_test = nt;
    return sel;
}

static int cmd_fit(void) {
    if (!opt.acts) mu_usage_error("fit needs --acts FILE");
    if (!opt.label) mu_usage_error("fit needs --label FIELD");
    if (opt.test && !strcmp(opt.test, opt.acts) && !strcmp(opt.acts, "-"))
        mu_usage_error("--acts and --test cannot both be stdin");
    acts_set train = {0}, test = {0};
    read_acts(&train, opt.acts, opt.label, opt.position);
    if (opt.test) {
        test.fixed = 1;
        for (int k = 0; k < train.nsd; k++) add_site(&test, train.sd[k].site, train.sd[k].layer, train.sd[k].D);
        read_acts(&test, opt.test, opt.label, opt.position);
    }
    char **cls = NULL;
    int C = 0;
    cls = collect_classes(&train, cls, &C);
    if (opt.test) cls = collect_classes(&test, cls, &C);
    if (C < 2)
        mu_die("%s: label \"%s\" has %d distinct value%s; a probe needs at least 2 classes",
               opt.acts, opt.label, C, C == 1 ? "" : "s");
    int32_t *y = class_indices(&train, cls, C), *ty = opt.test ? class_indices(&test, cls, C) : NULL;
    int64_t n_test_rec = 0;
    char *sel = opt.test ? NULL : split_records(train.nrec, &n_test_rec);
    char *tsel = NULL;
    if (sel) { tsel = mu_xmalloc((size_t)train.nrec); for (int64_t i = 0; i < train.nrec; i++) tsel[i] = !sel[i]; }
    /* every class must be in the train split */
    char *present = mu_xcalloc((size_t)C, 1);
    for (int64_t i = 0; i < train.nrec; i++) if (!sel || sel[i]) present[y[i]] = 1;
    for (int c = 0; c < C; c++)
        if (!present[c])
            mu_die("%s: class \"%s\" of label \"%s\" has no record in the train split "
                   "(%lld of %lld records; change --seed or --test-fraction)", opt.acts, cls[c], opt.label,
                   (long long)(train.nrec - n_test_rec), (long long)train.nrec);
    free(present);

    mu_writer *w = mu_writer_open(opt.out, "probes");
    mu_writer_add_input(w, "acts", opt.acts);
    if (opt.test) mu_writer_add_input(w, "test", opt.test);
    msgpack_packer *mp = mu_writer_meta(w, "label"); mu_pack_str(mp, opt.label);
    mp = mu_writer_meta(w, "classes"); pack_classes(mp, cls, C);
    mp = mu_writer_meta(w, "position"); mu_pack_str(mp, position_names[opt.position]);
    mp = mu_writer_meta(w, "l2"); msgpack_pack_double(mp, opt.l2);
    mp = mu_writer_meta(w, "seed"); msgpack_pack_uint64(mp, opt.seed);
    mp = mu_writer_meta(w, "test_fraction");
    if (opt.test) msgpack_pack_nil(mp); else msgpack_pack_double(mp, opt.test_fraction);
    for (int k = 0; k < train.nsd; k++) {
        site_data *s = &train.sd[k];
        const site_data *ts = opt.test ? &test.sd[k] : (n_test_rec ? s : NULL);
        probe p;
        fit_result fr;
        fit_one(&p, s, y, sel, ts, opt.test ? ty : y, tsel, C, opt.acts, &fr);
        write_probe(w, s, &p, cls, &fr);
        mu_info("%s layer %d: train %.4f test %.4f majority %.4f test loss %.4f (%d iterations)", s->site,
                s->layer, fr.train.acc, fr.test.acc, fr.test.maj_acc, fr.test.loss, fr.info.iterations);
        probe_free(&p);
        mu_progress("probes", (uint64_t)k + 1, (uint64_t)train.nsd);
    }
    mu_progress_done();
    mu_writer_close(w);
    free(cls); free(y); free(ty); free(sel); free(tsel);
    free_acts(&train); free_acts(&test);
    return MU_EXIT_OK;
}

/* ---------------------------------------------------------------- apply */

/* A saved probe record: its site, classes and parameters. */
typedef struct {
    char *site;
    int layer;
    char **cls;
    int majority;
    probe p;
} saved_probe;

static void read_f32_field(const mu_reader *r, const msgpack_object *rec, const char *key,
                           int ndim, const int64_t *shape, float *dst) {
    mu_tensor_view t;
    mu_reader_tensor_or_die(r, rec, key, &t);
    int ok = t.ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = t.shape[d] == shape[d];
    if (!ok) mu_reader_die(r, "%s: shape does not match the probe's classes and width", key);
    if (mu_to_f32(t.dtype, t.data, (size_t)mu_shape_numel(ndim, shape), dst))
        mu_reader_die(r, "%s: expected a float tensor, got %s", key, mu_dtype_name(t.dtype));
}

static void read_probe(const mu_reader *r, const msgpack_object *rec, saved_probe *sp) {
    const msgpack_object *so = mu_obj_get(rec, "site"), *co = mu_obj_get(rec, "classes");
    int64_t layer;
    if (!so || so->type != MSGPACK_OBJECT_STR) mu_reader_die(r, "no site");
    if (mu_obj_int(mu_obj_get(rec, "layer"), &layer)) mu_reader_die(r, "no layer");
    if (!co || co->type != MSGPACK_OBJECT_ARRAY || co->via.array.size < 2) mu_reader_die(r, "classes: expected an array of 2 or more str");
    int C = (int)co->via.array.size;
    sp->site = mu_obj_strdup(so);
    sp->layer = (int)layer;
    sp->cls = mu_xmalloc((size_t)C * sizeof *sp->cls);
    for (int c = 0; c < C; c++) {
        sp->cls[c] = mu_obj_strdup(&co->via.array.ptr[c]);
        if (!sp->cls[c]) mu_reader_die(r, "classes: expected an array of str");
        if (c && strcmp(sp->cls[c - 1], sp->cls[c]) >= 0) mu_reader_die(r, "classes: not sorted and distinct");
    }
    char *maj = mu_obj_strdup(mu_obj_get(rec, "majority_class"));
    sp->majority = -1;
    for (int c = 0; maj && c < C; c++) if (!strcmp(maj, sp->cls[c])) sp->majority = c;
    free(maj);
    if (sp->majority < 0) mu_reader_die(r, "majority_class: not one of the classes");
    mu_tensor_view t;
    mu_reader_tensor_or_die(r, rec, "mean", &t);
    if (t.ndim != 1 || t.shape[0] < 1 || t.shape[0] > 1 << 24) mu_reader_die(r, "mean: expected [D]");
    int D = (int)t.shape[0];
    probe_alloc(&sp->p, C, D);
    int64_t d[1] = {D}, cd[2] = {C, D}, c1[1] = {C};
    read_f32_field(r, rec, "mean", 1, d, sp->p.mean);
    read_f32_field(r, rec, "std", 1, d, sp->p.std);
    read_f32_field(r, rec, "W", 2, cd, sp->p.W);
    read_f32_field(r, rec, "b", 1, c1, sp->p.b);
    for (int j = 0; j < D; j++)
        if (!(sp->p.std[j] > 0) || !isfinite(sp->p.std[j]) || !isfinite(sp->p.mean[j]))
            mu_reader_die(r, "std: entry %d is not a positive finite number", j);
    probe_widen(&sp->p);
}

static void pack_metric(mu_writer *w, const char *metric, const saved_probe *sp, double value, int64_t n) {
    char layer[16];
    snprintf(layer, sizeof layer, "%d", sp->layer);
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 4);
    mu_pack_kv_str(pk, "metric", metric);
    mu_pack_str(pk, "group");
    msgpack_pack_map(pk, 2);
    mu_pack_kv_str(pk, "site", sp->site);
    mu_pack_kv_str(pk, "layer", layer);
    mu_pack_kv_f64(pk, "value", value);
    mu_pack_kv_int(pk, "n", n);
    mu_writer_end_record(w);
}

static int cmd_apply(void) {
    if (!opt.probes) mu_usage_error("apply needs --probes FILE");
    if (!opt.acts) mu_usage_error("apply needs --acts FILE");
    if (!strcmp(opt.probes, "-") && !strcmp(opt.acts, "-")) mu_usage_error("--probes and --acts cannot both be stdin");
    mu_reader *r = mu_reader_open_or_die(opt.probes, "probes");
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta");
    char *label = meta ? mu_obj_strdup(mu_obj_get(meta, "label")) : NULL;
    char *posname = meta ? mu_obj_strdup(mu_obj_get(meta, "position")) : NULL;
    if (!label || !posname) mu_die("%s: header: meta lacks label or position", opt.probes);
    if (opt.label) { free(label); label = mu_xstrdup(opt.label); }
    enum position pos = POS_LAST;
    int known = 0;
    for (int i = 0; i < 3; i++) if (!strcmp(posname, position_names[i])) { pos = (enum position)i; known = 1; }
    if (!known) mu_die("%s: header: unknown position \"%s\"", opt.probes, posname);
    saved_probe *sp = NULL;
    int np = 0;
    acts_set a = {.fixed = 1};
    const msgpack_object *rec;
    while ((rec = mu_reader_next_or_die(r))) {
        sp = mu_xrealloc(sp, (size_t)(np + 1) * sizeof *sp);
        memset(&sp[np], 0, sizeof *sp);
        read_probe(r, rec, &sp[np]);
        if (find_site(&a, sp[np].site, sp[np].layer) >= 0)
            mu_reader_die(r, "%s layer %d: a second probe for it", sp[np].site, sp[np].layer);
        add_site(&a, sp[np].site, sp[np].layer, sp[np].p.D);
        np++;
    }
    mu_reader_close(r);
    if (!np) mu_die("%s: no probes", opt.probes);
    read_acts(&a, opt.acts, label, pos);

    mu_writer *w = mu_writer_open(opt.out, "metrics");
    mu_writer_add_input(w, "probes", opt.probes);
    mu_writer_add_input(w, "acts", opt.acts);
    msgpack_packer *mp = mu_writer_meta(w, "by");
    msgpack_pack_array(mp, 2); mu_pack_str(mp, "site"); mu_pack_str(mp, "layer");
    mp = mu_writer_meta(w, "label"); mu_pack_str(mp, label);
    mp = mu_writer_meta(w, "position"); mu_pack_str(mp, posname);
    for (int k = 0; k < np; k++) {
        int32_t *y = class_indices(&a, sp[k].cls, sp[k].p.C);
        for (int64_t i = 0; i < a.nrec; i++)
            if (y[i] < 0)
                mu_die("%s: record %lld: label \"%s\" is not one of the classes of the probe at %s layer %d",
                       opt.acts, (long long)i, a.labels[i], sp[k].site, sp[k].layer);
        probe_score ps = probe_eval(&sp[k].p, &a.sd[k], y, NULL, sp[k].majority);
        pack_metric(w, "probe_acc", &sp[k], ps.acc, ps.n);
        pack_metric(w, "probe_majority_acc", &sp[k], ps.maj_acc, ps.n);
        pack_metric(w, "probe_loss", &sp[k], ps.loss, ps.n);
        mu_info("%s layer %d: acc %.4f majority %.4f loss %.4f (n %lld)", sp[k].site, sp[k].layer, ps.acc,
                ps.maj_acc, ps.loss, (long long)ps.n);
        free(y);
    }
    mu_writer_close(w);
    for (int k = 0; k < np; k++) {
        free(sp[k].site);
        for (int c = 0; c < sp[k].p.C; c++) free(sp[k].cls[c]);
        free(sp[k].cls);
        probe_free(&sp[k].p);
    }
    free(sp); free(label); free(posname);
    free_acts(&a);
    return MU_EXIT_OK;
}

/* ---------------------------------------------------------------- localize */

/* The label's decodability at each probed (site, layer) of a probes stream: minus the
 * test cross-entropy, or the test accuracy. */
typedef struct {
    char *site;
    int layer;
    double value;
} decodability;

typedef struct {
    decodability *d;
    int n;
    char *label, *position;
} probe_table;

static void read_probe_table(const char *path, probe_table *t) {
    mu_reader *r = mu_reader_open_or_die(path, "probes");
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta");
    t->label = meta ? mu_obj_strdup(mu_obj_get(meta, "label")) : NULL;
    t->position = meta ? mu_obj_strdup(mu_obj_get(meta, "position")) : NULL;
    if (!t->label || !t->position) mu_die("%s: header: meta lacks label or position", path);
    const char *key = opt.by_acc ? "test_acc" : "test_loss";
    const msgpack_object *rec;
    while ((rec = mu_reader_next_or_die(r))) {
        decodability d = {0};
        d.site = mu_obj_strdup(mu_obj_get(rec, "site"));
        int64_t layer, n_test;
        double v;
        if (!d.site || mu_obj_int(mu_obj_get(rec, "layer"), &layer) || mu_obj_int(mu_obj_get(rec, "n_test"), &n_test))
            mu_reader_die(r, "expected a probe record (site, layer, n_test)");
        if (mu_obj_f64(mu_obj_get(rec, key), &v))
            mu_reader_die(r, "no %s (a probes stream of an older mu-probe: fit again)", key);
        if (n_test < 1)
            mu_reader_die(r, "%s layer %lld: no test samples (fit with --test or --test-fraction above 0)", d.site,
                          (long long)layer);
        if (!isfinite(v)) mu_reader_die(r, "%s layer %lld: %s is not finite", d.site, (long long)layer, key);
        d.layer = (int)layer;
        d.value = opt.by_acc ? v : -v;
        for (int i = 0; i < t->n; i++)
            if (!strcmp(t->d[i].site, d.site) && t->d[i].layer == d.layer)
                mu_reader_die(r, "%s layer %d: a second probe for it", d.site, d.layer);
        t->d = mu_xrealloc(t->d, (size_t)(t->n + 1) * sizeof *t->d);
        t->d[t->n++] = d;
    }
    mu_reader_close(r);
}

static void free_probe_table(probe_table *t) {
    for (int i = 0; i < t->n; i++) free(t->d[i].site);
    free(t->d); free(t->label); free(t->position);
}

/* The decodability at (site, layer), or NaN when it was not probed. */
static double decodability_at(const probe_table *t, const char *site, int layer) {
    for (int i = 0; i < t->n; i++)
        if (t->d[i].layer == layer && !strcmp(t->d[i].site, site)) return t->d[i].value;
    return NAN;
}

/* gain[0][l], gain[1][l]: what attention and the MLP of layer l add to the decodability
 * (NaN where the probes around the block are missing). The stream before attention L is
 * resid_pre L, the same vector as resid_post L-1. */
static void block_gains(const probe_table *t, int L, double *gain[2]) {
    for (int l = 0; l < L; l++) {
        double pre = decodability_at(t, "resid_pre", l);
        if (isnan(pre) && l > 0) pre = decodability_at(t, "resid_post", l - 1);
        double mid = decodability_at(t, "resid_mid", l), post = decodability_at(t, "resid_post", l);
        gain[0][l] = mid - pre;
        gain[1][l] = post - mid;
    }
}

static void pack_gains(mu_writer *w, const char *key, const double *g, int L) {
    msgpack_packer *pk = mu_writer_meta(w, key);
    msgpack_pack_array(pk, (size_t)L);
    for (int l = 0; l < L; l++) msgpack_pack_double(pk, g[l]);
}

static int cmd_localize(void) {
    if (!opt.probes) mu_usage_error("localize needs --probes FILE");
    if (!opt.model) mu_usage_error("localize needs --model PATH");
    probe_table t = {0};
    read_probe_table(opt.probes, &t);
    char err[512];
    mu_ckpt *ck = mu_ckpt_open(opt.model, err, sizeof err);
    if (!ck) mu_die("%s", err);
    mu_config cfg = *mu_ckpt_config(ck);
    mu_ckpt_close(ck);
    mu_param_info *p;
    int np = mu_arch_params(&cfg, &p), L = cfg.n_layer;
    if (np < 0) mu_die("%s: architecture %s is not supported", opt.model, cfg.arch);
    mu_mask tensors;
    if (mu_mask_from_spec(opt.tensors, p, np, &tensors, err, sizeof err)) mu_usage_error("--tensors: %s", err);
    double *gain[2] = {mu_xmalloc((size_t)L * sizeof(double)), mu_xmalloc((size_t)L * sizeof(double))};
    block_gains(&t, L, gain);
    float *score = mu_xmalloc((size_t)tensors.n * sizeof *score);
    for (int k = 0; k < tensors.n; k++) {
        const mu_param_info *pi = &p[mu_arch_find(p, np, tensors.t[k].name)];
        int b = mu_arch_block(pi);
        if (b < 0) mu_usage_error("--tensors: %s is in no attention or MLP block", pi->name);
        if (isnan(gain[b][pi->layer]))
            mu_die("%s: tensor %s needs probes at %s layer %d (with a test split)", opt.probes, pi->name,
                   b ? "resid_mid and resid_post" : "resid_mid and resid_pre (or resid_post of the layer before)",
                   pi->layer);
        score[k] = (float)gain[b][pi->layer];
    }
    mu_writer *w = mu_writer_open(opt.out, "scores");
    mu_writer_add_input(w, "probes", opt.probes);
    mu_writer_add_input(w, "model", opt.model);
    mu_pack_str(mu_writer_meta(w, "method"), "probe");
    mu_pack_str(mu_writer_meta(w, "granularity"), "matrix");
    msgpack_pack_int64(mu_writer_meta(w, "params_total"), mu_arch_numel(p, np));
    mu_pack_str(mu_writer_meta(w, "label"), t.label);
    mu_pack_str(mu_writer_meta(w, "position"), t.position);
    mu_pack_str(mu_writer_meta(w, "by"), opt.by_acc ? "acc" : "loss");
    pack_gains(w, "attn_effect", gain[0], L);
    pack_gains(w, "mlp_effect", gain[1], L);
    for (int k = 0; k < tensors.n; k++) {
        const mu_mask_tensor *mt = &tensors.t[k];
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 5);
        mu_mask_pack_layout(pk, mt->name, mt->ndim, mt->shape, MU_GRAN_MATRIX, 1);
        int64_t one = 1;
        mu_pack_kv_tensor(pk, "score", MU_F32, 1, &one, &score[k]);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
    for (int l = 0; l < L; l++)
        mu_info("layer %d: attention %+.4f  MLP %+.4f", l, gain[0][l], gain[1][l]);
    free(score); free(gain[0]); free(gain[1]); free(p);
    mu_mask_free(&tensors);
    free_probe_table(&t);
    return MU_EXIT_OK;
}

/* ---------------------------------------------------------------- main */

int main(int argc, char **argv) {
    mu_cli_init("mu-probe", argc, argv);
    enum { O_ACTS = 256, O_LABEL, O_POS, O_TFRAC, O_TEST, O_L2, O_SEED, O_OUT, O_PROBES, O_MAXIT, O_MODEL,
           O_TENSORS, O_BY };
    static const struct option lo[] = {
        {"acts", required_argument, 0, O_ACTS}, {"label", required_argument, 0, O_LABEL},
        {"position", required_argument, 0, O_POS}, {"test-fraction", required_argument, 0, O_TFRAC},
        {"test", required_argument, 0, O_TEST}, {"l2", required_argument, 0, O_L2},
        {"seed", required_argument, 0, O_SEED}, {"out", required_argument, 0, O_OUT},
        {"probes", required_argument, 0, O_PROBES}, {"max-iter", required_argument, 0, O_MAXIT},
        {"model", required_argument, 0, O_MODEL}, {"tensors", required_argument, 0, O_TENSORS},
        {"by", required_argument, 0, O_BY}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    /* the commands that take each option */
    enum { FIT = 1, APPLY = 2, LOCALIZE = 4 };
    const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : NULL;
    int is_fit = cmd && !strcmp(cmd, "fit"), is_apply = cmd && !strcmp(cmd, "apply");
    int is_localize = cmd && !strcmp(cmd, "localize");
    if (cmd && !is_fit && !is_apply && !is_localize)
        mu_usage_error("unknown command '%s' (expected fit, apply or localize)", cmd);
    int this_cmd = is_fit ? FIT : is_apply ? APPLY : LOCALIZE, c, takes;
    int ac = cmd ? argc - 1 : argc;
    char **av = cmd ? argv + 1 : argv;
    while ((c = getopt_long(ac, av, ":hVq", lo, NULL)) != -1) {
        if (mu_cli_common(c, usage)) continue;
        switch (c) {
        case O_ACTS: opt.acts = optarg; takes = FIT | APPLY; break;
        case O_LABEL: opt.label = optarg; takes = FIT | APPLY; break;
        case O_POS: {
            int k;
            for (k = 0; k < 3 && strcmp(optarg, position_names[k]); k++) {}
            if (k == 3) mu_usage_error("--position %s: expected last, mean or all", optarg);
            opt.position = (enum position)k; takes = FIT;
            break;
        }
        case O_TFRAC: opt.test_fraction = mu_parse_real("--test-fraction", optarg, 0, 0.99); takes = FIT; break;
        case O_TEST: opt.test = optarg; takes = FIT; break;
        case O_L2:
            opt.l2 = mu_parse_real("--l2", optarg, 0, 1e12);
            if (!(opt.l2 > 0)) mu_usage_error("--l2 %s: expected a positive number", optarg);
            takes = FIT;
            break;
        case O_SEED: opt.seed = (uint64_t)mu_parse_int("--seed", optarg, 0, INT64_MAX); takes = FIT; break;
        case O_MAXIT: opt.max_iter = (int)mu_parse_int("--max-iter", optarg, 1, 100000000); takes = FIT; break;
        case O_OUT: opt.out = optarg; takes = FIT | APPLY | LOCALIZE; break;
        case O_PROBES: opt.probes = optarg; takes = APPLY | LOCALIZE; break;
        case O_MODEL: opt.model = optarg; takes = LOCALIZE; break;
        case O_TENSORS: opt.tensors = optarg; takes = LOCALIZE; break;
        case O_BY:
            if (strcmp(optarg, "loss") && strcmp(optarg, "acc")) mu_usage_error("--by %s: expected loss or acc", optarg);
            opt.by_acc = !strcmp(optarg, "acc"); takes = LOCALIZE;
            break;
        default: mu_usage_error("unexpected option (see --help)");
        }
        if (cmd && !(takes & this_cmd)) {
            const struct option *o = lo;
            while (o->name && o->val != c) o++;
            mu_usage_error("--%s is not an option of %s (see --help)", o->name, cmd);
        }
    }
    if (optind < ac) mu_usage_error("unexpected argument '%s' (inputs are given with --acts)", av[optind]);
    if (!cmd) mu_usage_error("expected a command: fit, apply or localize (see --help)");
    return is_fit ? cmd_fit() : is_apply ? cmd_apply() : cmd_localize();
}
