/* delta.c — a delta (a mu delta file or a PEFT LoRA adapter) checked against its base and
 * applied tensor by tensor; see delta.h and man/mu-delta.5. */
#include "delta.h"
#include "ckpt.h"
#include "cli.h"
#include "err.h"
#include <cblas.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PEFT_CONFIG "adapter_config.json"
#define PEFT_WEIGHTS "adapter_model.safetensors"
#define PEFT_PREFIX "base_model.model."

/* A low-rank change to tensor name: scale B A added to it ([rows, cols] = B's rows x A's
 * columns), or with trans (PEFT's fan_in_fan_out, and its embedding adapters) scale A^T B^T.
 * ai, bi: its factors' entries in the delta's safetensors (-1: none). di: an entry whose
 * values replace the tensor first (a PEFT adapter's saved base_layer), or -1. */
typedef struct {
    char *name;
    int ai, bi, trans;
    float scale;
    int di;
} lowrank;

struct mu_delta {
    char *path;
    char *files[2];
    int n_files;
    mu_st *st;
    lowrank *lr;
    int n_lr;
    float s;          /* the strength it applies at (mu_delta_set_scale; 1: as written) */
};

void mu_delta_set_scale(mu_delta *d, float s) { d->s = s; }
float mu_delta_scale(const mu_delta *d) { return d->s; }

void mu_lowrank_add(float *W, int rows, int cols, int r, float scale, const float *B, const float *A) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, r, scale, B, r, A, cols, 1.0f, W, cols);
}

int mu_delta_is_peft(const char *path) {
    struct stat st;
    return !stat(path, &st) && S_ISDIR(st.st_mode);
}

void mu_delta_close(mu_delta *d) {
    if (!d) return;
    for (int i = 0; i < d->n_lr; i++) free(d->lr[i].name);
    free(d->lr);
    mu_st_close(d->st);
    for (int i = 0; i < d->n_files; i++) free(d->files[i]);
    free(d->path);
    free(d);
}

int mu_delta_files(const mu_delta *d, const char *files[2]) {
    for (int i = 0; i < d->n_files; i++) files[i] = d->files[i];
    return d->n_files;
}

static lowrank *add_lowrank(mu_delta *d, const char *name, int ai, int bi, float scale, int trans) {
    d->lr = mu_xrealloc(d->lr, sizeof *d->lr * (size_t)(d->n_lr + 1));
    d->lr[d->n_lr] = (lowrank){mu_xstrdup(name), ai, bi, trans, scale, -1};
    return &d->lr[d->n_lr++];
}

static lowrank *find_lowrank(const mu_delta *d, const char *name) {
    for (int i = 0; i < d->n_lr; i++)
        if (!strcmp(d->lr[i].name, name)) return &d->lr[i];
    return NULL;
}

/* Index of entry NAME + suffix in st, or -1. */
static int find_entry(const mu_st *st, const char *name, const char *suffix) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", name, suffix);
    return mu_st_find(st, key);
}

/* ------------------------------------------------------------------ applying */

/* dst (n values) := the replacing values of entry i, at d's strength: dst + s (new - dst). */
static int apply_replacing(const mu_delta *d, int i, float *dst, size_t n, char *err, size_t errlen) {
    if (d->s == 1) return mu_st_read_f32(d->st, i, dst, n, err, errlen);
    float *v = mu_xmalloc((n ? n : 1) * sizeof *v);
    int rc = mu_st_read_f32(d->st, i, v, n, err, errlen);
    for (size_t e = 0; !rc && e < n; e++) dst[e] = mu_delta_interp(dst[e], v[e], d->s);
    free(v);
    return rc;
}

/* dst [rows, cols] (n values) := e's replacing values, if any; += its low-rank change, if any
 * (both at d's strength). */
static int apply_lowrank(const mu_delta *d, const lowrank *e, float *dst, size_t n, char *err, size_t errlen) {
    if (e->di >= 0 && apply_replacing(d, e->di, dst, n, err, errlen)) return -1;
    if (e->ai < 0) return 0;
    int64_t ash[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
    mu_st_info(d->st, e->ai, NULL, NULL, ash, NULL, NULL);
    mu_st_info(d->st, e->bi, NULL, NULL, bsh, NULL, NULL);
    int64_t r = ash[0], na = ash[0] * ash[1], nb = bsh[0] * bsh[1];
    int64_t rows = e->trans ? ash[1] : bsh[0], cols = e->trans ? bsh[0] : ash[1];
    if ((uint64_t)(rows * cols) != n) {
        mu_set_err(err, errlen, "%s: %s: %lld x %lld values, but the tensor has %zu", d->path, e->name,
                   (long long)rows, (long long)cols, n);
        return -1;
    }
    float *A = mu_xmalloc((size_t)na * sizeof *A), *B = mu_xmalloc((size_t)nb * sizeof *B);
    int rc = mu_st_read_f32(d->st, e->ai, A, (size_t)na, err, errlen) ||
             mu_st_read_f32(d->st, e->bi, B, (size_t)nb, err, errlen) ? -1 : 0;
    float scale = d->s == 1 ? e->scale : e->scale * d->s;
    if (!rc && !e->trans) mu_lowrank_add(dst, (int)rows, (int)cols, (int)r, scale, B, A);
    if (!rc && e->trans)   /* W [in, out] += scale A^T B^T, A [r, in], B [out, r] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)rows, (int)cols, (int)r, scale, A, (int)rows, B,
                    (int)r, 1.0f, dst, (int)cols);
    free(A);
    free(B);
    return rc;
}

/* dst[idx[k]] = val[k] for the sparse pair of hf whose indices are entry ii (at d's
 * strength s: dst[idx[k]] + s (val[k] - dst[idx[k]])). */
static int apply_sparse(const mu_delta *d, int ii, const char *hf, float *dst, size_t n, char *err, size_t errlen) {
    int vi = find_entry(d->st, hf, MU_DELTA_VAL_SUFFIX);
    const void *ip, *vp;
    size_t inb;
    mu_dtype vdt;
    mu_st_info(d->st, ii, NULL, NULL, NULL, &ip, &inb);
    mu_st_info(d->st, vi, &vdt, NULL, NULL, &vp, NULL);
    size_t cnt = inb / 8, vs = mu_dtype_size(vdt);
    for (size_t k = 0; k < cnt; k++) {
        int64_t at;
        memcpy(&at, (const uint8_t *)ip + 8 * k, 8);
        if (at < 0 || (uint64_t)at >= n) {
            mu_set_err(err, errlen, "%s: %s::idx[%zu] = %lld out of range", d->path, hf, k, (long long)at);
            return -1;
        }
        float v;
        mu_to_f32(vdt, (const uint8_t *)vp + vs * k, 1, &v);   /* a float dtype (checked at open) */
        dst[at] = d->s == 1 ? v : mu_delta_interp(dst[at], v, d->s);
    }
    return 0;
}

int mu_delta_apply(const mu_delta *d, const char *hf, float *dst, size_t n, char *err, size_t errlen) {
    const lowrank *e = find_lowrank(d, hf);
    if (e) return apply_lowrank(d, e, dst, n, err, errlen);
    if (d->n_files == 2) return 0;   /* a PEFT adapter has only low-rank changes */
    int i = mu_st_find(d->st, hf);
    if (i >= 0) return apply_replacing(d, i, dst, n, err, errlen);
    int ii = find_entry(d->st, hf, MU_DELTA_IDX_SUFFIX);
    return ii < 0 ? 0 : apply_sparse(d, ii, hf, dst, n, err, errlen);
}

int64_t mu_delta_elems(const mu_delta *d, const char *hf, int64_t numel) {
    if (find_lowrank(d, hf)) return numel;
    if (d->n_files == 2) return 0;
    if (mu_st_find(d->st, hf) >= 0) return numel;
    int k = find_entry(d->st, hf, MU_DELTA_IDX_SUFFIX);
    size_t nbytes;
    if (k < 0) return 0;
    mu_st_info(d->st, k, NULL, NULL, NULL, NULL, &nbytes);
    return (int64_t)(nbytes / 8);
}

/* ------------------------------------------------------------------ checks */

/* A float tensor of shape [rows, cols], each in [1, INT_MAX] (a -1: any). */
static int is_float_matrix(const mu_st *d, int i, int64_t rows, int64_t cols, int64_t sh[MU_MAX_DIMS]) {
    mu_dtype dt;
    int nd;
    mu_st_info(d, i, &dt, &nd, sh, NULL, NULL);
    if (!mu_dtype_is_float(dt) || nd != 2) return 0;
    for (int k = 0; k < 2; k++)
        if (sh[k] < 1 || sh[k] > INT_MAX || ((k ? cols : rows) >= 0 && sh[k] != (k ? cols : rows))) return 0;
    return 1;
}

/* The base's 2-D tensor name: 0 + its shape, or -1 + err naming what (entry) asked. */
static int base_matrix(struct mu_ckpt *c, const mu_delta *d, const char *name, const char *entry, int64_t sh[2],
                       char *err, size_t errlen) {
    int nd;
    int64_t s[MU_MAX_DIMS];
    if (!mu_ckpt_shape(c, name, &nd, s)) {
        mu_set_err(err, errlen, "%s: %s: tensor %s is not in the model %s", d->path, entry, name, mu_ckpt_path(c));
        return -1;
    }
    if (nd != 2 || s[0] > INT_MAX || s[1] > INT_MAX) {
        mu_set_err(err, errlen, "%s: %s: low-rank entries need a matrix, and %s is not one", d->path, entry, name);
        return -1;
    }
    sh[0] = s[0];
    sh[1] = s[1];
    return 0;
}

/* A sparse pair NAME::idx / NAME::val: I64 1-D sorted unique in-range indices and 1-D float
 * values of the same count. */
static int check_sparse(const mu_delta *d, const char *base, int64_t numel, int ii, char *err, size_t errlen) {
    int vi = find_entry(d->st, base, MU_DELTA_VAL_SUFFIX);
    if (vi < 0) {
        mu_set_err(err, errlen, "%s: %s%s has no matching %s%s", d->path, base, MU_DELTA_IDX_SUFFIX, base,
                   MU_DELTA_VAL_SUFFIX);
        return -1;
    }
    mu_dtype idt, vdt;
    int ind, vnd;
    int64_t ish[MU_MAX_DIMS], vsh[MU_MAX_DIMS], prev = -1;
    const void *ip;
    mu_st_info(d->st, ii, &idt, &ind, ish, &ip, NULL);
    mu_st_info(d->st, vi, &vdt, &vnd, vsh, NULL, NULL);
    if (idt != MU_I64 || ind != 1) {
        mu_set_err(err, errlen, "%s: %s%s must be a 1-D I64 tensor", d->path, base, MU_DELTA_IDX_SUFFIX);
        return -1;
    }
    if (!mu_dtype_is_float(vdt) || vnd != 1 || vsh[0] != ish[0]) {
        mu_set_err(err, errlen, "%s: %s%s must be a 1-D float tensor of %lld values (as many as indices)", d->path,
                   base, MU_DELTA_VAL_SUFFIX, (long long)ish[0]);
        return -1;
    }
    for (int64_t k = 0; k < ish[0]; k++) {
        int64_t at;
        memcpy(&at, (const uint8_t *)ip + 8 * k, 8);
        if (at < 0 || at >= numel) {
            mu_set_err(err, errlen, "%s: %s%s[%lld] = %lld out of range [0, %lld)", d->path, base, MU_DELTA_IDX_SUFFIX,
                       (long long)k, (long long)at, (long long)numel);
            return -1;
        }
        if (at <= prev) {
            mu_set_err(err, errlen, "%s: %s%s[%lld] = %lld not after %lld (indices must be sorted, unique)", d->path,
                       base, MU_DELTA_IDX_SUFFIX, (long long)k, (long long)at, (long long)prev);
            return -1;
        }
        prev = at;
    }
    return 0;
}

/* A low-rank triple NAME::lora_A [r, cols], NAME::lora_B [rows, r], NAME::lora_scale [1]
 * (optional, finite) on a 2-D tensor NAME [rows, cols] of the base, alone. */
static int check_lowrank(struct mu_ckpt *c, mu_delta *d, const char *base, int ai, char *err, size_t errlen) {
    int bi = find_entry(d->st, base, MU_DELTA_LORA_B_SUFFIX), si = find_entry(d->st, base, MU_DELTA_LORA_SCALE_SUFFIX);
    int64_t t[2], ash[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
    const char *entry = mu_st_name(d->st, ai);
    if (base_matrix(c, d, base, entry, t, err, errlen)) return -1;
    if (bi < 0) {
        mu_set_err(err, errlen, "%s: %s has no matching %s%s", d->path, entry, base, MU_DELTA_LORA_B_SUFFIX);
        return -1;
    }
    if (!is_float_matrix(d->st, ai, -1, t[1], ash)) {
        mu_set_err(err, errlen, "%s: %s must be a 2-D float tensor [r, %lld]", d->path, entry, (long long)t[1]);
        return -1;
    }
    if (!is_float_matrix(d->st, bi, t[0], ash[0], bsh)) {
        mu_set_err(err, errlen, "%s: %s%s must be a 2-D float tensor [%lld, %lld] (its A has rank %lld)", d->path,
                   base, MU_DELTA_LORA_B_SUFFIX, (long long)t[0], (long long)ash[0], (long long)ash[0]);
        return -1;
    }
    mu_dtype dt;
    int nd;
    float scale = 1;
    if (si >= 0 && (mu_st_info(d->st, si, &dt, &nd, bsh, NULL, NULL), !mu_dtype_is_float(dt) ||
                    mu_shape_numel(nd, bsh) != 1 || mu_st_read_f32(d->st, si, &scale, 1, err, errlen) ||
                    !isfinite(scale))) {
        mu_set_err(err, errlen, "%s: %s%s must be one finite float", d->path, base, MU_DELTA_LORA_SCALE_SUFFIX);
        return -1;
    }
    int dense = mu_st_find(d->st, base) >= 0;
    if (dense || find_entry(d->st, base, MU_DELTA_IDX_SUFFIX) >= 0) {
        mu_set_err(err, errlen, "%s: %s is both low-rank and %s", d->path, base, dense ? "dense" : "sparse");
        return -1;
    }
    add_lowrank(d, base, ai, bi, scale, 0);
    return 0;
}

/* A dense entry: the base tensor's shape, a float dtype. */
static int check_dense(const mu_delta *d, int i, const char *name, int tnd, const int64_t *tsh, char *err,
                       size_t errlen) {
    mu_dtype dt;
    int nd;
    int64_t sh[MU_MAX_DIMS];
    mu_st_info(d->st, i, &dt, &nd, sh, NULL, NULL);
    if (!mu_shape_equal(nd, sh, tnd, tsh)) {
        char a[128], b[128];
        mu_shape_str(a, sizeof a, nd, sh);
        mu_shape_str(b, sizeof b, tnd, tsh);
        mu_set_err(err, errlen, "%s: tensor %s: shape %s but the model has %s", d->path, name, a, b);
        return -1;
    }
    if (!mu_dtype_is_float(dt)) {
        mu_set_err(err, errlen, "%s: tensor %s: dtype %s is not a float type", d->path, name, mu_dtype_name(dt));
        return -1;
    }
    return 0;
}

/* Kinds of delta entry, by their name's suffix. */
enum { ENT_DENSE, ENT_IDX, ENT_VAL, ENT_LORA_A, ENT_LORA_B, ENT_LORA_SCALE };
static const char *const entry_suffix[] = {"", MU_DELTA_IDX_SUFFIX, MU_DELTA_VAL_SUFFIX, MU_DELTA_LORA_A_SUFFIX,
                                           MU_DELTA_LORA_B_SUFFIX, MU_DELTA_LORA_SCALE_SUFFIX};

static int entry_kind(const char *name) {
    for (int k = ENT_LORA_SCALE; k > ENT_DENSE; k--)
        if (mu_str_ends_with(name, entry_suffix[k])) return k;
    return ENT_DENSE;
}

/* Entry i of a mu delta file of the given version against the base. */
static int check_entry(struct mu_ckpt *c, mu_delta *d, int i, int lowrank_ok, char *err, size_t errlen) {
    const char *name = mu_st_name(d->st, i);
    char bname[160];
    int kind = entry_kind(name);
    size_t bl = strlen(name) - strlen(entry_suffix[kind]);
    if (bl >= sizeof bname) {
        mu_set_err(err, errlen, "%s: tensor name too long: %.60s...", d->path, name);
        return -1;
    }
    memcpy(bname, name, bl);
    bname[bl] = 0;
    if (kind >= ENT_LORA_A && !lowrank_ok) {
        mu_set_err(err, errlen, "%s: %s: low-rank entries need delta version %s (it says %s)", d->path, name,
                   MU_DELTA_VERSION_LOWRANK, MU_DELTA_VERSION);
        return -1;
    }
    if (kind == ENT_VAL || kind == ENT_LORA_B || kind == ENT_LORA_SCALE) {   /* checked with their first */
        const char *first = kind == ENT_VAL ? MU_DELTA_IDX_SUFFIX : MU_DELTA_LORA_A_SUFFIX;
        if (find_entry(d->st, bname, first) >= 0) return 0;
        mu_set_err(err, errlen, "%s: %s has no matching %s%s", d->path, name, bname, first);
        return -1;
    }
    if (kind == ENT_LORA_A) return check_lowrank(c, d, bname, i, err, errlen);
    int nd;
    int64_t sh[MU_MAX_DIMS];
    if (!mu_ckpt_shape(c, bname, &nd, sh)) {
        mu_set_err(err, errlen, "%s: tensor %s is not in the model %s", d->path, bname, mu_ckpt_path(c));
        return -1;
    }
    if (kind == ENT_DENSE) return check_dense(d, i, bname, nd, sh, err, errlen);
    if (mu_st_find(d->st, bname) >= 0) {
        mu_set_err(err, errlen, "%s: %s is both dense and sparse", d->path, bname);
        return -1;
    }
    return check_sparse(d, bname, mu_shape_numel(nd, sh), i, err, errlen);
}

/* The metadata of a mu delta file, then every entry. */
static int check_file(struct mu_ckpt *c, mu_delta *d, char *err, size_t errlen) {
    const char *fmt = mu_st_metadata(d->st, "format"), *ver = mu_st_metadata(d->st, "version"),
               *base = mu_st_metadata(d->st, "base");
    if (!fmt || strcmp(fmt, MU_DELTA_FORMAT)) {
        mu_set_err(err, errlen, "%s: not a mu delta (__metadata__ format is not \"%s\")", d->path, MU_DELTA_FORMAT);
        return -1;
    }
    if (!ver || (strcmp(ver, MU_DELTA_VERSION) && strcmp(ver, MU_DELTA_VERSION_LOWRANK))) {
        mu_set_err(err, errlen, "%s: delta version %s not supported (%s or %s)", d->path, ver ? ver : "(none)",
                   MU_DELTA_VERSION, MU_DELTA_VERSION_LOWRANK);
        return -1;
    }
    char bd[33];
    if (base) {
        if (mu_ckpt_base_digest(c, bd)) {
            mu_set_err(err, errlen, "%s: cannot digest the model files", mu_ckpt_path(c));
            return -1;
        }
        if (strcmp(base, bd)) {
            mu_set_err(err, errlen, "%s: made for base model %s, but %s is %s", d->path, base, mu_ckpt_path(c), bd);
            return -1;
        }
    }
    for (int i = 0; i < mu_st_count(d->st); i++)
        if (check_entry(c, d, i, !strcmp(ver, MU_DELTA_VERSION_LOWRANK), err, errlen)) return -1;
    return 0;
}

/* ------------------------------------------------------------------ PEFT adapters */

/* The adapter's config: a LoRA one without the features mu does not apply. Sets *alpha,
 * *rslora and *fifo. */
static int check_peft_config(const char *path, json_t *cfg, double *alpha, int *rslora, int *fifo, char *err,
                             size_t errlen) {
    static const char *const off[] = {"use_dora", "use_qalora", "use_bdlora", "lora_bias", "modules_to_save",
                                      "layer_replication", "target_parameters", "trainable_token_indices",
                                      "alora_invocation_tokens", "alpha_pattern"};
    const char *type = json_string_value(json_object_get(cfg, "peft_type"));
    json_t *a = json_object_get(cfg, "lora_alpha"), *bias = json_object_get(cfg, "bias");
    if (!json_is_object(cfg) || !type || strcmp(type, "LORA")) {
        mu_set_err(err, errlen, "%s: not a LoRA adapter (peft_type is not \"LORA\")", path);
        return -1;
    }
    if (!json_is_number(a) || !isfinite(json_number_value(a))) {
        mu_set_err(err, errlen, "%s: lora_alpha must be a finite number", path);
        return -1;
    }
    for (size_t k = 0; k < sizeof off / sizeof *off; k++) {
        json_t *v = json_object_get(cfg, off[k]);
        if (v && !json_is_null(v) && !json_is_false(v) && !(json_is_object(v) && !json_object_size(v)) &&
            !(json_is_array(v) && !json_array_size(v))) {
            mu_set_err(err, errlen, "%s: %s is set: mu applies plain LoRA adapters only", path, off[k]);
            return -1;
        }
    }
    if (bias && !json_is_null(bias) && !(json_is_string(bias) && !strcmp(json_string_value(bias), "none"))) {
        mu_set_err(err, errlen, "%s: bias is not \"none\": mu applies plain LoRA adapters only", path);
        return -1;
    }
    *alpha = json_number_value(a);
    *rslora = json_is_true(json_object_get(cfg, "use_rslora"));
    *fifo = json_is_true(json_object_get(cfg, "fan_in_fan_out"));
    return 0;
}

/* What a tensor of a PEFT adapter is, by its name's ending: a LoRA A or B weight, an
 * embedding adapter's A [r, vocab] or B [dim, r], or (save_embedding_layers) the module's
 * own weights as it was saved. */
typedef enum { PEFT_A, PEFT_B, PEFT_EMB_A, PEFT_EMB_B, PEFT_BASE, PEFT_BASE_BIAS, PEFT_KINDS } peft_kind;
static const char *const PEFT_SUFFIX[PEFT_KINDS] = {".lora_A.weight", ".lora_B.weight", ".lora_embedding_A",
                                                    ".lora_embedding_B", ".base_layer.weight", ".base_layer.bias"};

/* PEFT's name base_model.model.X<suffix> -> X.weight (a saved bias: X.bias) in mu's names (the
 * checkpoint's tensor prefix dropped) into out, and its kind; -1 when it is none of them. */
static int peft_target(struct mu_ckpt *c, const char *name, char *out, size_t n, peft_kind *kind) {
    size_t pl = strlen(PEFT_PREFIX), l = strlen(name), sl;
    const char *pre = mu_ckpt_config(c)->tensor_prefix;
    int k = 0;
    while (k < PEFT_KINDS && !mu_str_ends_with(name, PEFT_SUFFIX[k])) k++;
    if (k == PEFT_KINDS) return -1;
    sl = strlen(PEFT_SUFFIX[k]);
    if (l <= pl + sl || strncmp(name, PEFT_PREFIX, pl)) return -1;   /* (X may not be empty) */
    *kind = (peft_kind)k;
    name += pl;
    l -= pl + sl;
    if (*pre && !strncmp(name, pre, strlen(pre)) && l > strlen(pre)) {
        name += strlen(pre);
        l -= strlen(pre);
    }
    const char *what = k == PEFT_BASE_BIAS ? ".bias" : ".weight";
    if (l + strlen(what) >= n) return -1;
    snprintf(out, n, "%.*s%s", (int)l, name, what);
    return 0;
}

/* The PEFT change to target, made empty (no factors, no values) the first time. */
static lowrank *peft_change(mu_delta *d, const char *target) {
    lowrank *e = find_lowrank(d, target);
    return e ? e : add_lowrank(d, target, -1, -1, 0, 0);
}

/* Entry i (a saved base_layer's values) as target's replacement. */
static int peft_base_entry(mu_delta *d, int i, const char *target, char *err, size_t errlen) {
    lowrank *e = peft_change(d, target);
    if (e->di >= 0) {
        mu_set_err(err, errlen, "%s: %s: a second base_layer for %s", d->path, mu_st_name(d->st, i), target);
        return -1;
    }
    e->di = i;
    return 0;
}

/* A saved base_layer's bias (entry i; PEFT saves it with the weight of a module that has one)
 * replaces target's values: a float vector of its length. */
static int peft_base_bias(struct mu_ckpt *c, mu_delta *d, int i, const char *target, char *err, size_t errlen) {
    const char *name = mu_st_name(d->st, i);
    int nd, snd;
    int64_t s[MU_MAX_DIMS], sh[MU_MAX_DIMS];
    mu_dtype dt;
    if (!mu_ckpt_shape(c, target, &nd, s) || nd != 1) {
        mu_set_err(err, errlen, "%s: %s: the model %s has no bias %s", d->path, name, mu_ckpt_path(c), target);
        return -1;
    }
    mu_st_info(d->st, i, &dt, &snd, sh, NULL, NULL);
    if (!mu_dtype_is_float(dt) || snd != 1 || sh[0] != s[0]) {
        mu_set_err(err, errlen, "%s: %s must be float [%lld], as the model's %s", d->path, name, (long long)s[0],
                   target);
        return -1;
    }
    return peft_base_entry(d, i, target, err, errlen);
}

/* A saved base_layer (entry i) replaces target's values: a float matrix of its shape. */
static int peft_base_values(struct mu_ckpt *c, mu_delta *d, int i, const char *target, char *err, size_t errlen) {
    const char *name = mu_st_name(d->st, i);
    int64_t t[2], sh[MU_MAX_DIMS];
    if (base_matrix(c, d, target, name, t, err, errlen)) return -1;
    if (!is_float_matrix(d->st, i, t[0], t[1], sh)) {
        mu_set_err(err, errlen, "%s: %s must be float [%lld, %lld], as the model's %s (a resized vocabulary is not "
                   "applied)", d->path, name, (long long)t[0], (long long)t[1], target);
        return -1;
    }
    return peft_base_entry(d, i, target, err, errlen);
}

/* Each LoRA A weight of the adapter with its B on a base matrix [rows, cols] ([out, in], or
 * [in, out] with fifo): A [r, in], B [out, r]; each embedding adapter's A [r, rows] with its
 * B [cols, r] on an embedding [rows, cols] (added as scale A^T B^T, as fifo's are); saved
 * base_layer weights. Anything else is refused, and embedding adapters or saved weights on a
 * model whose lm_head is its embedding (PEFT would change the input side only). */
static int check_peft_tensors(struct mu_ckpt *c, mu_delta *d, double alpha, int rslora, int fifo, char *err,
                              size_t errlen) {
    int tied = mu_ckpt_config(c)->tie_embeddings;
    for (int i = 0; i < mu_st_count(d->st); i++) {
        const char *name = mu_st_name(d->st, i);
        char target[192], bname[300];
        peft_kind kind;
        if (peft_target(c, name, target, sizeof target, &kind)) {
            mu_set_err(err, errlen, "%s: tensor %s is not a LoRA A or B weight (base_model.model.X.lora_A.weight), "
                       "an embedding's lora_embedding_A/B or a saved base_layer.weight or .bias", d->path, name);
            return -1;
        }
        int emb = kind == PEFT_EMB_A || kind == PEFT_EMB_B;
        if (tied && (emb || kind == PEFT_BASE)) {   /* (a bias is lm_head's alone) */
            mu_set_err(err, errlen, "%s: %s: the model ties lm_head to its embedding (one tensor), which this would "
                       "change on both sides (PEFT: the input side only)", d->path, name);
            return -1;
        }
        if (kind == PEFT_BASE || kind == PEFT_BASE_BIAS) {
            if ((kind == PEFT_BASE ? peft_base_values : peft_base_bias)(c, d, i, target, err, errlen)) return -1;
            continue;
        }
        peft_kind partner = kind ^ 1;   /* A <-> B */
        snprintf(bname, sizeof bname, "%.*s%s", (int)(strlen(name) - strlen(PEFT_SUFFIX[kind])), name,
                 PEFT_SUFFIX[partner]);
        int other = mu_st_find(d->st, bname);
        if (other < 0) {
            mu_set_err(err, errlen, "%s: %s has no matching %s", d->path, name, bname);
            return -1;
        }
        if (kind == PEFT_B || kind == PEFT_EMB_B) continue;   /* checked with its A */
        int64_t t[2], ash[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
        if (base_matrix(c, d, target, name, t, err, errlen)) return -1;
        int trans = fifo || emb;
        int64_t out = trans ? t[1] : t[0], in = trans ? t[0] : t[1];
        if (!is_float_matrix(d->st, i, -1, in, ash) || !is_float_matrix(d->st, other, out, ash[0], bsh)) {
            mu_set_err(err, errlen, "%s: %s and its B must be float [r, %lld] and [%lld, r] (%s is [%lld, %lld]%s)",
                       d->path, name, (long long)in, (long long)out, target, (long long)t[0], (long long)t[1],
                       emb ? ", an embedding" : fifo ? ", fan_in_fan_out" : "");
            return -1;
        }
        lowrank *e = peft_change(d, target);
        if (e->ai >= 0) {
            mu_set_err(err, errlen, "%s: %s: a second adapter on %s", d->path, name, target);
            return -1;
        }
        double r = (double)ash[0];
        e->ai = i, e->bi = other, e->trans = trans;
        e->scale = (float)(alpha / (rslora ? sqrt(r) : r));
    }
    return 0;
}

/* dir/adapter_config.json and dir/adapter_model.safetensors. */
static int open_peft(struct mu_ckpt *c, mu_delta *d, char *err, size_t errlen) {
    size_t n = strlen(d->path) + sizeof PEFT_WEIGHTS + 2;
    for (int k = 0; k < 2; k++) {
        d->files[k] = mu_xmalloc(n);
        snprintf(d->files[k], n, "%s/%s", d->path, k ? PEFT_WEIGHTS : PEFT_CONFIG);
    }
    d->n_files = 2;
    json_error_t je;
    json_t *cfg = json_load_file(d->files[0], JSON_REJECT_DUPLICATES, &je);
    if (!cfg) {
        struct stat st;
        if (stat(d->files[0], &st)) mu_set_err(err, errlen, "%s: no %s (a PEFT adapter directory)", d->path, PEFT_CONFIG);
        else mu_set_err(err, errlen, "%s: invalid JSON at line %d: %s", d->files[0], je.line, je.text);
        return -1;
    }
    double alpha;
    int rslora, fifo, rc = check_peft_config(d->files[0], cfg, &alpha, &rslora, &fifo, err, errlen);
    json_decref(cfg);
    if (rc) return -1;
    if (!(d->st = mu_st_open(d->files[1], err, errlen))) return -1;
    return check_peft_tensors(c, d, alpha, rslora, fifo, err, errlen);
}

mu_delta *mu_delta_open(const char *path, struct mu_ckpt *c, char *err, size_t errlen) {
    mu_delta *d = mu_xcalloc(1, sizeof *d);
    d->path = mu_xstrdup(path);
    d->s = 1;
    int rc;
    if (mu_delta_is_peft(path)) {
        rc = open_peft(c, d, err, errlen);
    } else {
        d->files[0] = mu_xstrdup(path);
        d->n_files = 1;
        d->st = mu_st_open(path, err, errlen);
        rc = d->st ? check_file(c, d, err, errlen) : -1;
    }
    if (rc) {
        mu_delta_close(d);
        return NULL;
    }
    return d;
}
