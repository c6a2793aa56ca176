/* soft.c — soft-prompt files; see soft.h. */
#include "soft.h"
#include "cli.h"
#include "model.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_meta(const mu_st *st, char *msg, size_t len) {
    const char *f = mu_st_metadata(st, "format"), *v = mu_st_metadata(st, "version");
    if (!f || strcmp(f, MU_SOFT_FORMAT)) {
        snprintf(msg, len, "not a soft-prompt file (metadata format \"%s\", want \"" MU_SOFT_FORMAT "\")",
                 f ? f : "(none)");
        return -1;
    }
    if (!v || strcmp(v, MU_SOFT_VERSION)) {
        snprintf(msg, len, "soft-prompt version \"%s\" (this mu reads " MU_SOFT_VERSION ")", v ? v : "(none)");
        return -1;
    }
    return 0;
}

/* The one tensor's shape: *rows, and the width *d_model (0 on entry: any width, set here). */
static int check_tensor(const mu_st *st, int *d_model, int64_t *rows, char *msg, size_t len) {
    mu_dtype dt;
    int nd;
    int64_t sh[MU_MAX_DIMS];
    if (mu_st_count(st) != 1 || mu_st_find(st, MU_SOFT_TENSOR) != 0) {
        snprintf(msg, len, "want exactly one tensor, \"" MU_SOFT_TENSOR "\"");
        return -1;
    }
    mu_st_info(st, 0, &dt, &nd, sh, NULL, NULL);
    if (dt != MU_F32 || nd != 2) {
        snprintf(msg, len, MU_SOFT_TENSOR ": want a 2-D F32 tensor");
        return -1;
    }
    if (!*d_model && (sh[1] < 1 || sh[1] > INT32_MAX)) {
        snprintf(msg, len, MU_SOFT_TENSOR ": vectors of width %lld", (long long)sh[1]);
        return -1;
    }
    if (*d_model && sh[1] != *d_model) {
        snprintf(msg, len, MU_SOFT_TENSOR ": vectors of width %lld, but the model's d_model is %d",
                 (long long)sh[1], *d_model);
        return -1;
    }
    if (sh[0] < 1 || sh[0] > MU_SOFT_MAX) {
        snprintf(msg, len, MU_SOFT_TENSOR ": %lld vectors (want 1 to %d)", (long long)sh[0], MU_SOFT_MAX);
        return -1;
    }
    *d_model = (int)sh[1];
    *rows = sh[0];
    return 0;
}

/* mu_soft_prompt_read for a width *d_model, or any width when it is 0 (then set). */
static int read_soft(const char *path, int *d_model, int *n, float **vec, char *err, size_t errlen) {
    mu_st *st = mu_st_open(path, err, errlen);
    if (!st) return -1;
    char msg[256];
    int64_t rows = 0;
    float *v = NULL;
    if (check_meta(st, msg, sizeof msg) || check_tensor(st, d_model, &rows, msg, sizeof msg)) goto fail;
    size_t cnt = (size_t)rows * (size_t)*d_model;
    v = mu_xmalloc(cnt * sizeof *v);
    if (mu_st_read_f32(st, 0, v, cnt, msg, sizeof msg)) goto fail;
    for (size_t k = 0; k < cnt; k++)
        if (!isfinite(v[k])) {
            snprintf(msg, sizeof msg, MU_SOFT_TENSOR ": vector %zu holds a non-finite value", k / (size_t)*d_model);
            goto fail;
        }
    mu_st_close(st);
    *n = (int)rows;
    *vec = v;
    return 0;
fail:
    snprintf(err, errlen, "%s: %s", path, msg);
    free(v);
    mu_st_close(st);
    return -1;
}

int mu_soft_prompt_read(const char *path, int d_model, int *n, float **vec, char *err, size_t errlen) {
    if (d_model < 1) {   /* a model always has a width; 0 would mean any */
        snprintf(err, errlen, "%s: a model of width %d", path, d_model);
        return -1;
    }
    return read_soft(path, &d_model, n, vec, err, errlen);
}

mu_st_writer *mu_soft_prompt_writer(int n, int d_model, const float *vec) {
    mu_st_writer *w = mu_st_writer_new();
    int64_t shape[2] = {n, d_model};
    mu_st_writer_meta(w, "format", MU_SOFT_FORMAT);
    mu_st_writer_meta(w, "version", MU_SOFT_VERSION);
    mu_st_writer_add(w, MU_SOFT_TENSOR, MU_F32, 2, shape, vec);
    return w;
}

int mu_soft_prompt_read_any(const char *path, int *n, int *d_model, float **vec, char *err, size_t errlen) {
    *d_model = 0;
    return read_soft(path, d_model, n, vec, err, errlen);
}

/* sqrt(sum x^2) of D values, in double */
static double row_norm(const float *x, int D) {
    double s = 0;
    for (int i = 0; i < D; i++) s += (double)x[i] * x[i];
    return sqrt(s);
}

/* Inserts (id, c) into the best-first list ids/cos of *have (at most k) entries; ids arrive
 * in increasing order, so an equal cosine stays behind the earlier (lower) id. */
static void keep_best(int32_t *ids, float *cos, int *have, int k, int32_t id, float c) {
    int at = *have < k ? *have : k - 1;
    if (*have == k && !(c > cos[k - 1])) return;
    while (at > 0 && c > cos[at - 1]) {
        ids[at] = ids[at - 1];
        cos[at] = cos[at - 1];
        at--;
    }
    ids[at] = id;
    cos[at] = c;
    if (*have < k) (*have)++;
}

void mu_soft_nearest(const float *vec, int n, const float *E, int V, int D, int k, int32_t *ids, float *cos) {
    double *en = mu_xmalloc((size_t)V * sizeof *en);
    float *c = mu_xmalloc((size_t)V * sizeof *c);
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < V; r++) en[r] = row_norm(E + (size_t)r * D, D);
    for (int j = 0; j < n; j++) {
        const float *x = vec + (size_t)j * D;
        double xn = row_norm(x, D);
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < V; r++) {
            const float *e = E + (size_t)r * D;
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)x[i] * e[i];
            c[r] = xn > 0 && en[r] > 0 ? (float)(dot / (xn * en[r])) : 0.0f;
        }
        int have = 0;
        for (int r = 0; r < V; r++) keep_best(ids + (size_t)j * k, cos + (size_t)j * k, &have, k, r, c[r]);
    }
    free(c);
    free(en);
}

/* Calls visit(E, rows, id0, D, ctx) for m's embedding rows E [rows, D] of ids id0 ..
 * id0 + rows - 1, 4096 at a time in id order (a 128k vocabulary is never copied whole).
 * 0 ok, -1 out of memory. */
typedef void (*row_visit)(const float *E, int rows, int id0, int D, void *ctx);
static int each_row_chunk(mu_model *m, row_visit visit, void *ctx) {
    enum { ROW_CHUNK = 4096 };
    int V = mu_model_config(m)->vocab, D = mu_model_config(m)->d_model, rc = 0;
    int32_t *ids = mu_xmalloc(ROW_CHUNK * sizeof *ids);
    float *E = mu_xmalloc((size_t)ROW_CHUNK * D * sizeof *E);
    for (int at = 0; at < V; at += ROW_CHUNK) {
        int rows = V - at < ROW_CHUNK ? V - at : ROW_CHUNK;
        for (int i = 0; i < rows; i++) ids[i] = at + i;
        if ((rc = mu_model_embedding_rows(m, ids, rows, E))) break;
        visit(E, rows, at, D, ctx);
    }
    free(ids);
    free(E);
    return rc;
}

typedef struct { const float *vec; int n; int32_t *best, *near; float *top, *cos; } nearest_ctx;
static void nearest_visit(const float *E, int rows, int id0, int D, void *ctx) {
    nearest_ctx *c = ctx;
    mu_soft_nearest(c->vec, c->n, E, rows, D, 1, c->near, c->cos);
    for (int j = 0; j < c->n; j++)   /* an equal cosine keeps the lower id, the earlier chunk's */
        if (id0 == 0 || c->cos[j] > c->top[j]) { c->top[j] = c->cos[j]; c->best[j] = id0 + c->near[j]; }
}

int mu_soft_nearest_tokens(mu_model *m, const float *vec, int n, int32_t *best) {
    nearest_ctx c = {vec, n, best, mu_xmalloc((size_t)n * sizeof(int32_t)), mu_xmalloc((size_t)n * sizeof(float)),
                     mu_xmalloc((size_t)n * sizeof(float))};
    int rc = each_row_chunk(m, nearest_visit, &c);
    free(c.near); free(c.top); free(c.cos);
    return rc;
}

void mu_soft_gcg_rank(const float *g, int n, const float *E, int rows, int id0, int D,
                      const unsigned char *allowed, int k, int32_t *ids, float *score, int *have) {
    float *s = mu_xmalloc((size_t)(rows ? rows : 1) * sizeof *s);
    for (int j = 0; j < n; j++) {
        const float *x = g + (size_t)j * D;
        #pragma omp parallel for schedule(static)
        for (int r = 0; r < rows; r++) {
            const float *e = E + (size_t)r * D;
            double dot = 0;
            for (int i = 0; i < D; i++) dot += (double)x[i] * e[i];
            s[r] = (float)-dot;
        }
        for (int r = 0; r < rows; r++)
            if (!allowed || allowed[id0 + r])
                keep_best(ids + (size_t)j * k, score + (size_t)j * k, have + j, k, id0 + r, s[r]);
    }
    free(s);
}

typedef struct { const float *g; int n; const unsigned char *allowed; int k; int32_t *ids; float *score; int *have; } rank_ctx;
static void rank_visit(const float *E, int rows, int id0, int D, void *ctx) {
    rank_ctx *c = ctx;
    mu_soft_gcg_rank(c->g, c->n, E, rows, id0, D, c->allowed, c->k, c->ids, c->score, c->have);
}

int mu_soft_gcg_top_tokens(mu_model *m, const float *g, int n, const unsigned char *allowed, int k,
                           int32_t *ids, float *score, int *have) {
    memset(have, 0, (size_t)n * sizeof *have);
    rank_ctx c = {g, n, allowed, k, ids, score, have};
    return each_row_chunk(m, rank_visit, &c);
}
