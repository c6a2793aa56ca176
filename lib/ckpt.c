/* ckpt.c — a model checkpoint (HF directory or GGUF file) with deltas stacked on top. */
#define _GNU_SOURCE
#include "err.h"
#include "ckpt.h"
#include "arch.h"
#include "cli.h"
#include "stream.h"
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>

typedef struct {
    char *path;
    mu_st *st;
} ck_delta;

struct mu_ckpt {
    char *path, *dir;
    mu_config cfg;
    mu_gguf *g;                 /* GGUF checkpoint */
    int gguf_permuted;          /* llama.cpp permuted q/k rows (architecture "llama") */
    mu_st **shard;              /* HF checkpoint */
    int n_shard;
    char **files;               /* base files, for the digest (sorted) */
    int n_files;
    ck_delta *delta;
    int n_delta;
    char digest[33], base_digest[33];
    const char *strip;          /* a prefix of mu's names the checkpoint's lack (GPT-2), or NULL */
};

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = mu_xmalloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int is_file(const char *p) {
    struct stat st;
    return !stat(p, &st) && S_ISREG(st.st_mode);
}

static int shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int d = 0; d < ndim && o < n; d++) o += (size_t)snprintf(buf + o, n - o, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return 0;
}

static void add_file(mu_ckpt *c, const char *path) {
    c->files = mu_xrealloc(c->files, sizeof *c->files * (size_t)(c->n_files + 1));
    c->files[c->n_files++] = mu_xstrdup(path);
}

void mu_ckpt_close(mu_ckpt *c) {
    if (!c) return;
    mu_gguf_close(c->g);
    for (int i = 0; i < c->n_shard; i++) mu_st_close(c->shard[i]);
    free(c->shard);
    for (int i = 0; i < c->n_files; i++) free(c->files[i]);
    free(c->files);
    for (int i = 0; i < c->n_delta; i++) { free(c->delta[i].path); mu_st_close(c->delta[i].st); }
    free(c->delta);
    free(c->path);
    free(c->dir);
    free(c);
}

static int has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* ------------------------------------------------------------------ GGUF names */

/* HF name -> GGUF name (llama.cpp's tensor names; post_norm: OLMo-2's and Gemma-2's, whose
 * post_attention_layernorm is the attention output's norm); 0 ok, -1 not a known tensor. */
static int gguf_name(const char *hf, int post_norm, char *out, size_t n) {
    static const struct { const char *hf, *gg; } glob[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
    };
    static const struct { const char *hf, *gg; } layer[] = {
        {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"}, {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"}, {"self_attn.q_norm", "attn_q_norm"},
        {"self_attn.k_norm", "attn_k_norm"}, {"post_feedforward_layernorm", "post_ffw_norm"},
        {"pre_feedforward_layernorm", "ffn_norm"},
    };
    int l0, p0 = 0;
    if (post_norm && sscanf(hf, "model.layers.%d.%n", &l0, &p0) == 1 && p0 &&
        !strcmp(hf + p0, "post_attention_layernorm.weight"))
        return snprintf(out, n, "blk.%d.post_attention_norm.weight", l0) >= (int)n ? -1 : 0;
    for (size_t i = 0; i < sizeof glob / sizeof *glob; i++)
        if (!strcmp(hf, glob[i].hf)) return snprintf(out, n, "%s", glob[i].gg) >= (int)n ? -1 : 0;
    int l, pos = 0;
    if (sscanf(hf, "model.layers.%d.%n", &l, &pos) != 1 || !pos || l < 0) return -1;
    const char *rest = hf + pos;
    for (size_t i = 0; i < sizeof layer / sizeof *layer; i++) {
        size_t k = strlen(layer[i].hf);
        if (!strncmp(rest, layer[i].hf, k) && (!strcmp(rest + k, ".weight") || !strcmp(rest + k, ".bias")))
            return snprintf(out, n, "blk.%d.%s%s", l, layer[i].gg, rest + k) >= (int)n ? -1 : 0;
    }
    return -1;
}

/* ------------------------------------------------------------------ stored tensors */

typedef struct {
    int found;
    mu_dtype dtype;             /* for GGUF quantized: MU_F32 */
    int ndim;
    int64_t shape[MU_MAX_DIMS]; /* PyTorch order */
    int shard, idx;             /* HF: shard and index; GGUF: tensor index */
    int ggml_type;
} ck_tensor;

static ck_tensor ck_lookup(const mu_ckpt *c, const char *hf) {
    ck_tensor t = {0};
    if (c->g) {
        char gn[128];
        if (gguf_name(hf, c->cfg.post_norm, gn, sizeof gn) || (t.idx = mu_gguf_find_tensor(c->g, gn)) < 0) return t;
        int64_t ne[MU_GGUF_MAX_DIMS];
        mu_gguf_tensor_info(c->g, t.idx, &t.ggml_type, &t.ndim, ne, NULL, NULL);
        for (int d = 0; d < t.ndim; d++) t.shape[d] = ne[t.ndim - 1 - d];
        t.dtype = t.ggml_type == MU_GGML_F16 ? MU_F16 : t.ggml_type == MU_GGML_BF16 ? MU_BF16 : MU_F32;
        t.found = 1;
        return t;
    }
    if (c->strip && !strncmp(hf, c->strip, strlen(c->strip))) hf += strlen(c->strip);
    char full[160];             /* the name with the checkpoint's prefix (Gemma-3 multimodal) */
    if (c->cfg.tensor_prefix[0]) {
        if (snprintf(full, sizeof full, "%s%s", c->cfg.tensor_prefix, hf) >= (int)sizeof full) return t;
        hf = full;
    }
    for (int s = 0; s < c->n_shard; s++) {
        int i = mu_st_find(c->shard[s], hf);
        if (i < 0) continue;
        mu_st_info(c->shard[s], i, &t.dtype, &t.ndim, t.shape, NULL, NULL);
        t.shard = s;
        t.idx = i;
        t.found = 1;
        return t;
    }
    return t;
}

int mu_ckpt_has(const mu_ckpt *c, const char *hf_name) { return ck_lookup(c, hf_name).found; }

int mu_ckpt_dtype(const mu_ckpt *c, const char *hf_name, mu_dtype *dt) {
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) return -1;
    *dt = t.dtype;
    return 0;
}

static int same_shape(int n1, const int64_t *s1, int n2, const int64_t *s2) {
    if (n1 != n2) return 0;
    for (int d = 0; d < n1; d++)
        if (s1[d] != s2[d]) return 0;
    return 1;
}

/* llama.cpp stores q/k rows of each head interleaved (rows 2i, 2i+1 = HF rows i, i+hd/2).
 * Undo: HF[h*hd + j*hd/2 + i] = GGUF[h*hd + 2i + j]. rows = n_heads*hd, cols per row. */
static void unpermute_rows(float *x, int64_t rows, int64_t cols, int n_heads) {
    int64_t hd = rows / n_heads, half = hd / 2;
    float *tmp = mu_xmalloc(sizeof *tmp * (size_t)(hd * cols));
    for (int h = 0; h < n_heads; h++) {
        float *blk = x + (int64_t)h * hd * cols;
        memcpy(tmp, blk, sizeof *tmp * (size_t)(hd * cols));
        for (int64_t i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(blk + (j * half + i) * cols, tmp + (2 * i + j) * cols, sizeof *tmp * (size_t)cols);
    }
    free(tmp);
}

static int read_base(mu_ckpt *c, const char *hf, const ck_tensor *t, float *dst, size_t n, char *err, size_t errlen) {
    if (!c->g) return mu_st_read_f32(c->shard[t->shard], t->idx, dst, n, err, errlen);
    if (mu_gguf_tensor_f32(c->g, mu_gguf_tensor_name(c->g, t->idx), dst, n, err, errlen)) return -1;
    if (c->cfg.norm_plus_one && has_suffix(hf, "norm.weight"))   /* llama.cpp stores Gemma's 1 + w */
        for (size_t i = 0; i < n; i++) dst[i] -= 1.0f;
    if (c->gguf_permuted) {
        int q = has_suffix(hf, ".q_proj.weight") || has_suffix(hf, ".q_proj.bias");
        int kk = has_suffix(hf, ".k_proj.weight") || has_suffix(hf, ".k_proj.bias");
        if (q || kk) {
            int heads = q ? c->cfg.n_head : c->cfg.n_kv_head;
            int64_t rows = t->shape[0], cols = t->ndim > 1 ? t->shape[1] : 1;
            if (rows % (2 * heads)) {
                mu_set_err(err, errlen, "%s: tensor %s: %lld rows do not split into %d heads", c->path, hf,
                        (long long)rows, heads);
                return -1;
            }
            unpermute_rows(dst, rows, cols, heads);
        }
    }
    return 0;
}

/* One element of a float dtype at p -> f32. */
static float elem_f32(mu_dtype dt, const uint8_t *p) {
    switch (dt) {
    case MU_F16: return mu_f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case MU_BF16: return mu_bf16_to_f32((uint16_t)(p[0] | p[1] << 8));
    case MU_F64: { double d; memcpy(&d, p, 8); return (float)d; }
    default: { float f; memcpy(&f, p, 4); return f; }
    }
}

static int is_float_dtype(mu_dtype d) { return d == MU_F32 || d == MU_F16 || d == MU_BF16 || d == MU_F64; }

void mu_lowrank_add(float *W, int rows, int cols, int r, float scale, const float *B, const float *A) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, cols, r, scale, B, r, A, cols, 1.0f, W, cols);
}

/* Index of entry NAME + suffix in st, or -1. */
static int find_entry(const mu_st *st, const char *name, const char *suffix) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", name, suffix);
    return mu_st_find(st, key);
}

/* dst [rows, cols] (n values) += scale B A from the low-rank entry of hf whose A is entry
 * ai (validated at add). */
static int apply_lowrank(const ck_delta *d, int ai, const char *hf, float *dst, size_t n, char *err,
                         size_t errlen) {
    int bi = find_entry(d->st, hf, MU_DELTA_LORA_B_SUFFIX), si = find_entry(d->st, hf, MU_DELTA_LORA_SCALE_SUFFIX);
    int64_t ash[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
    mu_st_info(d->st, ai, NULL, NULL, ash, NULL, NULL);
    mu_st_info(d->st, bi, NULL, NULL, bsh, NULL, NULL);
    int64_t r = ash[0], cols = ash[1], rows = bsh[0];
    if ((uint64_t)(rows * cols) != n) {
        mu_set_err(err, errlen, "%s: %s%s: %lld x %lld values, but the tensor has %zu", d->path, hf,
                   MU_DELTA_LORA_A_SUFFIX, (long long)rows, (long long)cols, n);
        return -1;
    }
    float *A = mu_xmalloc((size_t)(r * cols) * sizeof *A), *B = mu_xmalloc((size_t)(rows * r) * sizeof *B);
    float scale = 1;
    int rc = mu_st_read_f32(d->st, ai, A, (size_t)(r * cols), err, errlen) ||
             mu_st_read_f32(d->st, bi, B, (size_t)(rows * r), err, errlen) ||
             (si >= 0 && mu_st_read_f32(d->st, si, &scale, 1, err, errlen)) ? -1 : 0;
    if (!rc) mu_lowrank_add(dst, (int)rows, (int)cols, (int)r, scale, B, A);
    free(A);
    free(B);
    return rc;
}

/* Applies one delta's entries for `hf` onto dst (n elements, already validated at add). */
static int apply_delta(const ck_delta *d, const char *hf, float *dst, size_t n, char *err, size_t errlen) {
    int i = mu_st_find(d->st, hf);
    if (i >= 0) return mu_st_read_f32(d->st, i, dst, n, err, errlen);
    char key[256];
    int ai = find_entry(d->st, hf, MU_DELTA_LORA_A_SUFFIX);
    if (ai >= 0) return apply_lowrank(d, ai, hf, dst, n, err, errlen);
    snprintf(key, sizeof key, "%s%s", hf, MU_DELTA_IDX_SUFFIX);
    int ii = mu_st_find(d->st, key);
    if (ii < 0) return 0;
    snprintf(key, sizeof key, "%s%s", hf, MU_DELTA_VAL_SUFFIX);
    int vi = mu_st_find(d->st, key);
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
        dst[at] = elem_f32(vdt, (const uint8_t *)vp + vs * k);
    }
    return 0;
}

const char *mu_ckpt_stored_type(const mu_ckpt *c, const char *hf_name) {
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) return NULL;
    return c->g ? mu_gguf_type_name(t.ggml_type) : mu_dtype_name(t.dtype);
}

int64_t mu_ckpt_delta_elems(const mu_ckpt *c, int i, const char *hf_name) {
    if (i < 0 || i >= c->n_delta) return -1;
    const mu_st *st = c->delta[i].st;
    int k = mu_st_find(st, hf_name), nd;
    int64_t sh[MU_MAX_DIMS];
    size_t nbytes;
    if (k >= 0) {
        mu_st_info(st, k, NULL, &nd, sh, NULL, NULL);
        return mu_shape_numel(nd, sh);
    }
    if (find_entry(st, hf_name, MU_DELTA_LORA_A_SUFFIX) >= 0) {
        ck_tensor t = ck_lookup(c, hf_name);
        return mu_shape_numel(t.ndim, t.shape);
    }
    if ((k = find_entry(st, hf_name, MU_DELTA_IDX_SUFFIX)) < 0) return 0;
    mu_st_info(st, k, NULL, NULL, NULL, NULL, &nbytes);
    return (int64_t)(nbytes / 8);
}

int mu_ckpt_read_f32(mu_ckpt *c, const char *hf_name, int ndim, const int64_t *shape, float *dst,
                     char *err, size_t errlen) {
    return mu_ckpt_read_f32_upto(c, c->n_delta, hf_name, ndim, shape, dst, err, errlen);
}

int mu_ckpt_apply_delta(const mu_ckpt *c, int i, const char *hf_name, float *dst, size_t n, char *err,
                        size_t errlen) {
    if (i < 0 || i >= c->n_delta) {
        mu_set_err(err, errlen, "%s: no delta %d", c->path, i);
        return -1;
    }
    return apply_delta(&c->delta[i], hf_name, dst, n, err, errlen);
}

int mu_ckpt_read_f32_upto(mu_ckpt *c, int k, const char *hf_name, int ndim, const int64_t *shape, float *dst,
                          char *err, size_t errlen) {
    if (k < 0 || k > c->n_delta) {
        mu_set_err(err, errlen, "%s: no delta %d", c->path, k - 1);
        return -1;
    }
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) {
        mu_set_err(err, errlen, "%s: no tensor %s", c->path, hf_name);
        return -1;
    }
    if (!same_shape(t.ndim, t.shape, ndim, shape)) {
        char a[128], b[128];
        shape_str(a, sizeof a, t.ndim, t.shape);
        shape_str(b, sizeof b, ndim, shape);
        mu_set_err(err, errlen, "%s: tensor %s: shape %s but config needs %s", c->path, hf_name, a, b);
        return -1;
    }
    size_t n = (size_t)mu_shape_numel(ndim, shape);
    if (read_base(c, hf_name, &t, dst, n, err, errlen)) return -1;
    for (int i = 0; i < k; i++)
        if (apply_delta(&c->delta[i], hf_name, dst, n, err, errlen)) return -1;
    return 0;
}

/* ------------------------------------------------------------------ checks */

int mu_ckpt_check_arch(mu_ckpt *c, char *err, size_t errlen) {
    mu_param_info *p;
    int n = mu_arch_params(&c->cfg, &p);
    if (n < 0) {
        mu_set_err(err, errlen, "%s: architecture %s not supported", c->path, c->cfg.arch);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        ck_tensor t = ck_lookup(c, p[i].name);
        if (!t.found) {
            mu_set_err(err, errlen, "%s: no tensor %s%s (config needs it)", c->path, c->cfg.tensor_prefix, p[i].name);
            rc = -1;
        } else if (!same_shape(t.ndim, t.shape, p[i].ndim, p[i].shape)) {
            char a[128], b[128];
            shape_str(a, sizeof a, t.ndim, t.shape);
            shape_str(b, sizeof b, p[i].ndim, p[i].shape);
            mu_set_err(err, errlen, "%s: tensor %s: shape %s but config needs %s", c->path, p[i].name, a, b);
            rc = -1;
        } else if (!c->g && !is_float_dtype(t.dtype)) {
            mu_set_err(err, errlen, "%s: tensor %s: dtype %s is not a float type", c->path, p[i].name,
                    mu_dtype_name(t.dtype));
            rc = -1;
        } else if (c->g && !mu_ggml_can_dequant(t.ggml_type)) {
            mu_set_err(err, errlen, "%s: tensor %s: ggml type %s cannot be dequantized", c->path, p[i].name,
                    mu_gguf_type_name(t.ggml_type));
            rc = -1;
        }
    }
    free(p);
    return rc;
}

/* ------------------------------------------------------------------ opening */

/* Opens file as a shard unless already open; *idx = its shard index. */
static int open_shard(mu_ckpt *c, const char *file, int *idx, char *err, size_t errlen) {
    for (int i = 0; i < c->n_shard; i++)
        if (!strcmp(mu_st_path(c->shard[i]), file)) { *idx = i; return 0; }
    mu_st *s = mu_st_open(file, err, errlen);
    if (!s) return -1;
    c->shard = mu_xrealloc(c->shard, sizeof *c->shard * (size_t)(c->n_shard + 1));
    *idx = c->n_shard;
    c->shard[c->n_shard++] = s;
    add_file(c, file);
    return 0;
}

/* model.safetensors.index.json: {"weight_map": {tensor: shard file}}; every listed tensor
 * must be in its shard. */
static int open_index(mu_ckpt *c, const char *index, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(index, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        mu_set_err(err, errlen, "%s: invalid JSON at line %d: %s", index, je.line, je.text);
        return -1;
    }
    int rc = 0;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm)) {
        mu_set_err(err, errlen, "%s: no \"weight_map\" object", index);
        rc = -1;
    }
    const char *name;
    json_t *v;
    if (!rc) json_object_foreach(wm, name, v) {
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/') || !strcmp(f, "..") || !strcmp(f, ".")) {
            mu_set_err(err, errlen, "%s: weight_map[%s]: not a file name in the model directory", index, name);
            rc = -1;
            break;
        }
        char *path = join(c->dir, f);
        int si;
        rc = open_shard(c, path, &si, err, errlen);
        if (!rc) {
            if (mu_st_find(c->shard[si], name) < 0) {
                mu_set_err(err, errlen, "%s: weight_map says %s is in %s but it is not", index, name, f);
                rc = -1;
            }
        }
        free(path);
        if (rc) break;
    }
    json_decref(root);
    return rc;
}

/* GPT-2 checkpoints saved by transformers before its base model had a name (the hub's gpt2,
 * distilgpt2) store wte.weight, h.0.* without "transformer.": read under mu's names. */
static void gpt2_bare_names(mu_ckpt *c) {
    if (c->cfg.fused_qkv != MU_QKV_BLOCKS || ck_lookup(c, "transformer.wte.weight").found) return;
    c->strip = "transformer.";
    if (!ck_lookup(c, "transformer.wte.weight").found) c->strip = NULL;
}

static int open_hf_dir(mu_ckpt *c, char *err, size_t errlen) {
    char *cfg = join(c->dir, "config.json");
    int rc = mu_config_from_json_file(cfg, &c->cfg, err, errlen);
    if (!rc) add_file(c, cfg);
    free(cfg);
    if (rc) return -1;
    char *index = join(c->dir, "model.safetensors.index.json");
    char *single = join(c->dir, "model.safetensors");
    if (is_file(index)) {
        add_file(c, index);
        rc = open_index(c, index, err, errlen);
    } else if (is_file(single)) {
        int si;
        rc = open_shard(c, single, &si, err, errlen);
    } else {
        mu_set_err(err, errlen, "%s: no model.safetensors or model.safetensors.index.json", c->dir);
        rc = -1;
    }
    free(index);
    free(single);
    if (!rc) gpt2_bare_names(c);
    return rc;
}

static int file_is_gguf(const char *path) {
    FILE *f = fopen(path, "rb");
    char m[4] = {0};
    if (!f) return 0;
    size_t n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && !memcmp(m, "GGUF", 4);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

mu_ckpt *mu_ckpt_open(const char *path, char *err, size_t errlen) {
    mu_ckpt *c = calloc(1, sizeof *c);
    if (!c) { mu_set_err(err, errlen, "%s: out of memory", path); return NULL; }
    c->path = mu_xstrdup(path);
    struct stat st;
    if (stat(path, &st)) {
        mu_set_err(err, errlen, "%s: %s", path, strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        c->dir = mu_xstrdup(path);
        if (open_hf_dir(c, err, errlen)) goto fail;
    } else {
        const char *slash = strrchr(path, '/');
        c->dir = mu_xstrdup(slash ? path : ".");
        if (slash) c->dir[slash - path + (slash == path)] = 0;  /* "/x.gguf" -> "/" */
        const char *base = slash ? slash + 1 : path;
        if (file_is_gguf(path)) {
            if (!(c->g = mu_gguf_open(path, err, errlen)) || mu_config_from_gguf(c->g, &c->cfg, err, errlen))
                goto fail;
            const char *a;
            size_t an;
            c->gguf_permuted = !mu_gguf_get_str(c->g, "general.architecture", &a, &an) && an == 5 &&
                               !memcmp(a, "llama", 5);
            add_file(c, path);
        } else if (!strcmp(base, "config.json")) {
            free(c->path);
            c->path = mu_xstrdup(c->dir);
            if (open_hf_dir(c, err, errlen)) goto fail;
        } else {
            mu_set_err(err, errlen, "%s: not a model directory, config.json or GGUF file", path);
            goto fail;
        }
    }
    qsort(c->files, (size_t)c->n_files, sizeof *c->files, cmp_str);
    if (mu_ckpt_check_arch(c, err, errlen)) goto fail;
    return c;
fail:
    mu_ckpt_close(c);
    return NULL;
}

const mu_config *mu_ckpt_config(const mu_ckpt *c) { return &c->cfg; }
int mu_ckpt_is_gguf(const mu_ckpt *c) { return c->g != NULL; }
const mu_gguf *mu_ckpt_gguf(const mu_ckpt *c) { return c->g; }
int mu_ckpt_n_deltas(const mu_ckpt *c) { return c->n_delta; }

/* ------------------------------------------------------------------ digests */

/* XXH3-128 over "name\tdigest\n" lines, as 32 hex chars. */
static void hash_lines(const char *text, char out[33]) {
    XXH128_hash_t h = XXH3_128bits(text, strlen(text));
    XXH128_canonical_t cn;
    XXH128_canonicalFromHash(&cn, h);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", cn.digest[i]);
}

static int digest_of(char **files, int n, const char *prefix, char out[33]) {
    size_t cap = 64 + (prefix ? strlen(prefix) : 0);
    for (int i = 0; i < n; i++) cap += strlen(files[i]) + 40;
    char *text = mu_xmalloc(cap), d[33];
    size_t o = (size_t)snprintf(text, cap, "%s", prefix ? prefix : "");
    for (int i = 0; i < n; i++) {
        if (mu_file_digest(files[i], d)) { free(text); return -1; }
        const char *slash = strrchr(files[i], '/');
        o += (size_t)snprintf(text + o, cap - o, "%s\t%s\n", slash ? slash + 1 : files[i], d);
    }
    hash_lines(text, out);
    free(text);
    return 0;
}

int mu_ckpt_base_digest(mu_ckpt *c, char out[33]) {
    if (!c->base_digest[0]) {
        if (c->g) {
            if (mu_file_digest(c->files[0], c->base_digest)) return -1;
        } else if (digest_of(c->files, c->n_files, NULL, c->base_digest)) {
            return -1;
        }
    }
    memcpy(out, c->base_digest, 33);
    return 0;
}

int mu_ckpt_digest(mu_ckpt *c, char out[33]) {
    char base[33];
    if (mu_ckpt_base_digest(c, base)) return -1;
    if (!c->n_delta) { memcpy(out, base, 33); return 0; }
    if (!c->digest[0]) {
        char **paths = mu_xmalloc(sizeof *paths * (size_t)c->n_delta), prefix[48];
        for (int i = 0; i < c->n_delta; i++) paths[i] = c->delta[i].path;
        snprintf(prefix, sizeof prefix, "base\t%s\n", base);
        int rc = digest_of(paths, c->n_delta, prefix, c->digest);
        free(paths);
        if (rc) return -1;
    }
    memcpy(out, c->digest, 33);
    return 0;
}

int mu_delta_writer_init(mu_st_writer *w, mu_ckpt *c) {
    char d[33];
    if (mu_ckpt_base_digest(c, d)) return -1;
    mu_st_writer_meta(w, "format", MU_DELTA_FORMAT);
    mu_st_writer_meta(w, "version", MU_DELTA_VERSION);
    mu_st_writer_meta(w, "base", d);
    return 0;
}

/* ------------------------------------------------------------------ deltas */

/* A sparse pair NAME::idx / NAME::val: I64 1-D sorted unique in-range indices and 1-D float
 * values of the same count. */
static int check_sparse(mu_ckpt *c, mu_st *d, const char *dpath, const char *base, int ii, char *err, size_t errlen) {
    char key[256];
    snprintf(key, sizeof key, "%s%s", base, MU_DELTA_VAL_SUFFIX);
    int vi = mu_st_find(d, key);
    if (vi < 0) {
        mu_set_err(err, errlen, "%s: %s%s has no matching %s", dpath, base, MU_DELTA_IDX_SUFFIX, key);
        return -1;
    }
    mu_dtype idt, vdt;
    int ind, vnd;
    int64_t ish[MU_MAX_DIMS], vsh[MU_MAX_DIMS];
    const void *ip;
    mu_st_info(d, ii, &idt, &ind, ish, &ip, NULL);
    mu_st_info(d, vi, &vdt, &vnd, vsh, NULL, NULL);
    if (idt != MU_I64 || ind != 1) {
        mu_set_err(err, errlen, "%s: %s%s must be a 1-D I64 tensor", dpath, base, MU_DELTA_IDX_SUFFIX);
        return -1;
    }
    if (!is_float_dtype(vdt) || vnd != 1 || vsh[0] != ish[0]) {
        mu_set_err(err, errlen, "%s: %s must be a 1-D float tensor of %lld values (as many as indices)", dpath, key,
                (long long)ish[0]);
        return -1;
    }
    ck_tensor t = ck_lookup(c, base);
    int64_t numel = mu_shape_numel(t.ndim, t.shape), prev = -1;
    for (int64_t k = 0; k < ish[0]; k++) {
        int64_t at;
        memcpy(&at, (const uint8_t *)ip + 8 * k, 8);
        if (at < 0 || at >= numel) {
            mu_set_err(err, errlen, "%s: %s%s[%lld] = %lld out of range [0, %lld)", dpath, base, MU_DELTA_IDX_SUFFIX,
                    (long long)k, (long long)at, (long long)numel);
            return -1;
        }
        if (at <= prev) {
            mu_set_err(err, errlen, "%s: %s%s[%lld] = %lld not after %lld (indices must be sorted, unique)", dpath,
                    base, MU_DELTA_IDX_SUFFIX, (long long)k, (long long)at, (long long)prev);
            return -1;
        }
        prev = at;
    }
    return 0;
}

/* A float tensor of shape [rows, cols] (a -1 dimension: any from 1 to INT_MAX). */
static int is_float_matrix(const mu_st *d, int i, int64_t rows, int64_t cols, int64_t sh[MU_MAX_DIMS]) {
    mu_dtype dt;
    int nd;
    mu_st_info(d, i, &dt, &nd, sh, NULL, NULL);
    if (!is_float_dtype(dt) || nd != 2) return 0;
    for (int k = 0; k < 2; k++)
        if (sh[k] < 1 || sh[k] > INT_MAX || ((k ? cols : rows) >= 0 && sh[k] != (k ? cols : rows))) return 0;
    return 1;
}

/* A low-rank triple NAME::lora_A [r, cols], NAME::lora_B [rows, r], NAME::lora_scale [1]
 * (optional, finite) on a 2-D tensor NAME [rows, cols] of the base. */
static int check_lowrank(mu_ckpt *c, mu_st *d, const char *dpath, const char *base, int ai, char *err,
                         size_t errlen) {
    ck_tensor t = ck_lookup(c, base);
    int bi = find_entry(d, base, MU_DELTA_LORA_B_SUFFIX), si = find_entry(d, base, MU_DELTA_LORA_SCALE_SUFFIX);
    int64_t ash[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
    if (t.ndim != 2 || t.shape[0] > INT_MAX || t.shape[1] > INT_MAX) {
        mu_set_err(err, errlen, "%s: %s%s: low-rank entries need a matrix, and %s is not one", dpath, base,
                   MU_DELTA_LORA_A_SUFFIX, base);
        return -1;
    }
    if (bi < 0) {
        mu_set_err(err, errlen, "%s: %s%s has no matching %s%s", dpath, base, MU_DELTA_LORA_A_SUFFIX, base,
                   MU_DELTA_LORA_B_SUFFIX);
        return -1;
    }
    if (!is_float_matrix(d, ai, -1, t.shape[1], ash)) {
        mu_set_err(err, errlen, "%s: %s%s must be a 2-D float tensor [r, %lld]", dpath, base, MU_DELTA_LORA_A_SUFFIX,
                   (long long)t.shape[1]);
        return -1;
    }
    if (!is_float_matrix(d, bi, t.shape[0], ash[0], bsh)) {
        mu_set_err(err, errlen, "%s: %s%s must be a 2-D float tensor [%lld, %lld] (its A has rank %lld)", dpath,
                   base, MU_DELTA_LORA_B_SUFFIX, (long long)t.shape[0], (long long)ash[0], (long long)ash[0]);
        return -1;
    }
    mu_dtype dt;
    int nd;
    float scale;
    if (si >= 0 && (mu_st_info(d, si, &dt, &nd, bsh, NULL, NULL), !is_float_dtype(dt) ||
                    mu_shape_numel(nd, bsh) != 1 || mu_st_read_f32(d, si, &scale, 1, err, errlen) || !isfinite(scale))) {
        mu_set_err(err, errlen, "%s: %s%s must be one finite float", dpath, base, MU_DELTA_LORA_SCALE_SUFFIX);
        return -1;
    }
    if (mu_st_find(d, base) >= 0 || find_entry(d, base, MU_DELTA_IDX_SUFFIX) >= 0) {
        mu_set_err(err, errlen, "%s: %s is both low-rank and %s", dpath, base,
                   mu_st_find(d, base) >= 0 ? "dense" : "sparse");
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
        if (has_suffix(name, entry_suffix[k])) return k;
    return ENT_DENSE;
}

static int check_delta(mu_ckpt *c, mu_st *d, const char *dpath, char *err, size_t errlen) {
    const char *fmt = mu_st_metadata(d, "format"), *ver = mu_st_metadata(d, "version"),
               *base = mu_st_metadata(d, "base");
    if (!fmt || strcmp(fmt, MU_DELTA_FORMAT)) {
        mu_set_err(err, errlen, "%s: not a mu delta (__metadata__ format is not \"%s\")", dpath, MU_DELTA_FORMAT);
        return -1;
    }
    if (!ver || (strcmp(ver, MU_DELTA_VERSION) && strcmp(ver, MU_DELTA_VERSION_LOWRANK))) {
        mu_set_err(err, errlen, "%s: delta version %s not supported (%s or %s)", dpath, ver ? ver : "(none)",
                   MU_DELTA_VERSION, MU_DELTA_VERSION_LOWRANK);
        return -1;
    }
    int lowrank_ok = !strcmp(ver, MU_DELTA_VERSION_LOWRANK);
    char bd[33];
    if (base) {
        if (mu_ckpt_base_digest(c, bd)) {
            mu_set_err(err, errlen, "%s: cannot digest the model files", c->path);
            return -1;
        }
        if (strcmp(base, bd)) {
            mu_set_err(err, errlen, "%s: made for base model %s, but %s is %s", dpath, base, c->path, bd);
            return -1;
        }
    }
    for (int i = 0; i < mu_st_count(d); i++) {
        const char *name = mu_st_name(d, i);
        char bname[160];
        int kind = entry_kind(name);
        size_t bl = strlen(name) - strlen(entry_suffix[kind]);
        if (bl >= sizeof bname) {
            mu_set_err(err, errlen, "%s: tensor name too long: %.60s...", dpath, name);
            return -1;
        }
        memcpy(bname, name, bl);
        bname[bl] = 0;
        if (kind >= ENT_LORA_A && !lowrank_ok) {
            mu_set_err(err, errlen, "%s: %s: low-rank entries need delta version %s (it says %s)", dpath, name,
                       MU_DELTA_VERSION_LOWRANK, ver);
            return -1;
        }
        if (kind == ENT_VAL || kind == ENT_LORA_B || kind == ENT_LORA_SCALE) {   /* checked with their first */
            const char *first = kind == ENT_VAL ? MU_DELTA_IDX_SUFFIX : MU_DELTA_LORA_A_SUFFIX;
            if (find_entry(d, bname, first) < 0) {
                mu_set_err(err, errlen, "%s: %s has no matching %s%s", dpath, name, bname, first);
                return -1;
            }
            continue;
        }
        int sparse = kind == ENT_IDX;
        ck_tensor t = ck_lookup(c, bname);
        if (!t.found) {
            mu_set_err(err, errlen, "%s: tensor %s is not in the model %s", dpath, bname, c->path);
            return -1;
        }
        if (kind == ENT_LORA_A) {
            if (check_lowrank(c, d, dpath, bname, i, err, errlen)) return -1;
            continue;
        }
        if (sparse) {
            if (mu_st_find(d, bname) >= 0) {
                mu_set_err(err, errlen, "%s: %s is both dense and sparse", dpath, bname);
                return -1;
            }
            if (check_sparse(c, d, dpath, bname, i, err, errlen)) return -1;
            continue;
        }
        mu_dtype dt;
        int nd;
        int64_t sh[MU_MAX_DIMS];
        mu_st_info(d, i, &dt, &nd, sh, NULL, NULL);
        if (!same_shape(nd, sh, t.ndim, t.shape)) {
            char a[128], b[128];
            shape_str(a, sizeof a, nd, sh);
            shape_str(b, sizeof b, t.ndim, t.shape);
            mu_set_err(err, errlen, "%s: tensor %s: shape %s but the model has %s", dpath, bname, a, b);
            return -1;
        }
        if (!is_float_dtype(dt)) {
            mu_set_err(err, errlen, "%s: tensor %s: dtype %s is not a float type", dpath, bname, mu_dtype_name(dt));
            return -1;
        }
    }
    return 0;
}

int mu_ckpt_add_delta(mu_ckpt *c, const char *delta_path, char *err, size_t errlen) {
    mu_st *d = mu_st_open(delta_path, err, errlen);
    if (!d) return -1;
    if (check_delta(c, d, delta_path, err, errlen)) {
        mu_st_close(d);
        return -1;
    }
    c->delta = mu_xrealloc(c->delta, sizeof *c->delta * (size_t)(c->n_delta + 1));
    c->delta[c->n_delta].path = mu_xstrdup(delta_path);
    c->delta[c->n_delta].st = d;
    c->n_delta++;
    c->digest[0] = 0;
    return 0;
}

/* ------------------------------------------------------------------ atomic directories */

/* Removes the regular files of dir and dir itself; -1 if it holds anything else. */
static int rm_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(dir, e->d_name);
        struct stat st;
        if (p && !lstat(p, &st) && !S_ISDIR(st.st_mode)) {
            if (unlink(p)) rc = -1;
        } else {
            rc = -1;
        }
        free(p);
    }
    closedir(d);
    return rc || rmdir(dir) ? -1 : 0;
}

/* 1 if dir holds only regular files (or symlinks), 0 otherwise. */
static int flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    struct dirent *e;
    int ok = 1;
    while (ok && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = join(dir, e->d_name);
        struct stat st;
        ok = p && !lstat(p, &st) && !S_ISDIR(st.st_mode);
        free(p);
    }
    closedir(d);
    return ok;
}

char *mu_dir_tmp_create(const char *final, char *err, size_t errlen) {
    size_t n = strlen(final) + 32;
    char *tmp = mu_xmalloc(n);
    snprintf(tmp, n, "%s.tmp.%ld", final, (long)getpid());
    if (mkdir(tmp, 0777)) {
        mu_set_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        return NULL;
    }
    return tmp;
}

int mu_dir_commit(const char *tmp, const char *final, char *err, size_t errlen) {
    struct stat st;
    if (lstat(final, &st)) {
        if (errno != ENOENT || rename(tmp, final)) {
            mu_set_err(err, errlen, "%s: cannot rename into place: %s", final, strerror(errno));
            return -1;
        }
        return 0;
    }
    if (!S_ISDIR(st.st_mode) || !flat_dir(final)) {
        mu_set_err(err, errlen, "%s: exists and is not a model directory (only files) I may replace", final);
        return -1;
    }
    if (syscall(SYS_renameat2, AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE)) {
        mu_set_err(err, errlen, "%s: cannot swap into place: %s", final, strerror(errno));
        return -1;
    }
    rm_flat_dir(tmp);  /* now the old directory */
    return 0;
}

void mu_dir_abort(const char *tmp) {
    if (tmp) rm_flat_dir(tmp);
}
