/* soft.c — soft-prompt files; see soft.h. */
#include "soft.h"
#include "cli.h"
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

static int check_tensor(const mu_st *st, int d_model, int64_t *rows, char *msg, size_t len) {
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
    if (sh[1] != d_model) {
        snprintf(msg, len, MU_SOFT_TENSOR ": vectors of width %lld, but the model's d_model is %d",
                 (long long)sh[1], d_model);
        return -1;
    }
    if (sh[0] < 1 || sh[0] > MU_SOFT_MAX) {
        snprintf(msg, len, MU_SOFT_TENSOR ": %lld vectors (want 1 to %d)", (long long)sh[0], MU_SOFT_MAX);
        return -1;
    }
    *rows = sh[0];
    return 0;
}

int mu_soft_prompt_read(const char *path, int d_model, int *n, float **vec, char *err, size_t errlen) {
    mu_st *st = mu_st_open(path, err, errlen);
    if (!st) return -1;
    char msg[256];
    int64_t rows = 0;
    float *v = NULL;
    if (check_meta(st, msg, sizeof msg) || check_tensor(st, d_model, &rows, msg, sizeof msg)) goto fail;
    size_t cnt = (size_t)rows * (size_t)d_model;
    v = mu_xmalloc(cnt * sizeof *v);
    if (mu_st_read_f32(st, 0, v, cnt, msg, sizeof msg)) goto fail;
    for (size_t k = 0; k < cnt; k++)
        if (!isfinite(v[k])) {
            snprintf(msg, sizeof msg, MU_SOFT_TENSOR ": vector %zu holds a non-finite value", k / (size_t)d_model);
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

mu_st_writer *mu_soft_prompt_writer(int n, int d_model, const float *vec) {
    mu_st_writer *w = mu_st_writer_new();
    int64_t shape[2] = {n, d_model};
    mu_st_writer_meta(w, "format", MU_SOFT_FORMAT);
    mu_st_writer_meta(w, "version", MU_SOFT_VERSION);
    mu_st_writer_add(w, MU_SOFT_TENSOR, MU_F32, 2, shape, vec);
    return w;
}
