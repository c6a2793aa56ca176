/* ckpt.c — a model checkpoint (HF directory or GGUF file) with deltas stacked on top. */
#define _GNU_SOURCE
#include "err.h"
#include "ckpt.h"
#include "arch.h"
#include "cli.h"
#include "stream.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
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


struct mu_ckpt {
    char *path, *dir;
    mu_config cfg;
    mu_gguf *g;                 /* GGUF checkpoint */
    int gguf_permuted;          /* llama.cpp permuted q/k rows (architecture "llama") */
    mu_st **shard;              /* HF checkpoint */
    int n_shard;
    char **files;               /* base files, for the digest (sorted) */
    int n_files;
    mu_delta **delta;
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
    for (int i = 0; i < c->n_delta; i++) mu_delta_close(c->delta[i]);
    free(c->delta);
    free(c->path);
    free(c->dir);
    free(c);
}

/* ------------------------------------------------------------------ GGUF names */

/* HF name -> GGUF name (llama.cpp's tensor names; post_norm: OLMo-2's and Gemma-2's, whose
 * post_attention_layernorm is the attention output's norm; Phi's final_layernorm, dense, fc1,
 * fc2 and lm_head bias as phi2's; Phi-3's qkv_proj and gate_up_proj as attn_qkv and ffn_up);
 * 0 ok, -1 not a known tensor. */
static int gguf_name(const char *hf, int post_norm, char *out, size_t n) {
    static const struct { const char *hf, *gg; } glob[] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.final_layernorm.weight", "output_norm.weight"},
        {"model.final_layernorm.bias", "output_norm.bias"},
        {"lm_head.bias", "output.bias"},
    };
    static const struct { const char *hf, *gg; } layer[] = {
        {"self_attn.q_proj", "attn_q"}, {"self_attn.k_proj", "attn_k"}, {"self_attn.v_proj", "attn_v"},
        {"self_attn.o_proj", "attn_output"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
        {"mlp.down_proj", "ffn_down"}, {"input_layernorm", "attn_norm"},
        {"post_attention_layernorm", "ffn_norm"}, {"self_attn.q_norm", "attn_q_norm"},
        {"self_attn.k_norm", "attn_k_norm"}, {"post_feedforward_layernorm", "post_ffw_norm"},
        {"pre_feedforward_layernorm", "ffn_norm"}, {"self_attn.dense", "attn_output"}, {"mlp.fc1", "ffn_up"},
        {"mlp.fc2", "ffn_down"}, {"self_attn.qkv_proj", "attn_qkv"}, {"mlp.gate_up_proj", "ffn_up"},
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

int mu_ckpt_shape(const mu_ckpt *c, const char *hf_name, int *ndim, int64_t shape[MU_MAX_DIMS]) {
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) return 0;
    *ndim = t.ndim;
    memcpy(shape, t.shape, sizeof t.shape);
    return 1;
}

const char *mu_ckpt_path(const mu_ckpt *c) { return c->path; }

int mu_ckpt_dtype(const mu_ckpt *c, const char *hf_name, mu_dtype *dt) {
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) return -1;
    *dt = t.dtype;
    return 0;
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
    if (c->cfg.norm_plus_one && mu_str_ends_with(hf, "norm.weight"))   /* llama.cpp stores Gemma's 1 + w */
        for (size_t i = 0; i < n; i++) dst[i] -= 1.0f;
    if (c->gguf_permuted) {
        int q = mu_str_ends_with(hf, ".q_proj.weight") || mu_str_ends_with(hf, ".q_proj.bias");
        int kk = mu_str_ends_with(hf, ".k_proj.weight") || mu_str_ends_with(hf, ".k_proj.bias");
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

const char *mu_ckpt_stored_type(const mu_ckpt *c, const char *hf_name) {
    ck_tensor t = ck_lookup(c, hf_name);
    if (!t.found) return NULL;
    return c->g ? mu_gguf_type_name(t.ggml_type) : mu_dtype_name(t.dtype);
}

int64_t mu_ckpt_delta_elems(const mu_ckpt *c, int i, const char *hf_name) {
    if (i < 0 || i >= c->n_delta) return -1;
    ck_tensor t = ck_lookup(c, hf_name);
    return t.found ? mu_delta_elems(c->delta[i], hf_name, mu_shape_numel(t.ndim, t.shape)) : 0;
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
    return mu_delta_apply(c->delta[i], hf_name, dst, n, err, errlen);
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
    if (!mu_shape_equal(t.ndim, t.shape, ndim, shape)) {
        char a[128], b[128];
        mu_shape_str(a, sizeof a, t.ndim, t.shape);
        mu_shape_str(b, sizeof b, ndim, shape);
        mu_set_err(err, errlen, "%s: tensor %s: shape %s but config needs %s", c->path, hf_name, a, b);
        return -1;
    }
    size_t n = (size_t)mu_shape_numel(ndim, shape);
    if (read_base(c, hf_name, &t, dst, n, err, errlen)) return -1;
    for (int i = 0; i < k; i++)
        if (mu_delta_apply(c->delta[i], hf_name, dst, n, err, errlen)) return -1;
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
        } else if (!mu_shape_equal(t.ndim, t.shape, p[i].ndim, p[i].shape)) {
            char a[128], b[128];
            mu_shape_str(a, sizeof a, t.ndim, t.shape);
            mu_shape_str(b, sizeof b, p[i].ndim, p[i].shape);
            mu_set_err(err, errlen, "%s: tensor %s: shape %s but config needs %s", c->path, p[i].name, a, b);
            rc = -1;
        } else if (!c->g && !mu_dtype_is_float(t.dtype)) {
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

mu_ckpt *mu_ckpt_open_with_deltas(const char *path, const char *const *deltas, const float *scales, int n,
                                  char *err, size_t errlen) {
    mu_ckpt *c = mu_ckpt_open(path, err, errlen);
    for (int i = 0; c && i < n; i++)
        if (mu_ckpt_add_delta_scaled(c, deltas[i], scales ? scales[i] : 1, err, errlen)) {
            mu_ckpt_close(c);
            c = NULL;
        }
    return c;
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
        char **paths = mu_xmalloc(sizeof *paths * (size_t)(2 * c->n_delta));
        char *prefix = mu_xmalloc(48 + 48 * (size_t)c->n_delta);
        int n = 0, o = snprintf(prefix, 48, "base\t%s\n", base);
        for (int i = 0; i < c->n_delta; i++) {
            n += mu_delta_files(c->delta[i], (const char **)paths + n);
            float s = mu_delta_scale(c->delta[i]);   /* a scaled delta is another model */
            if (s != 1) o += snprintf(prefix + o, 48, "scale\t%d\t%.9g\n", i, s);
        }
        int rc = digest_of(paths, n, prefix, c->digest);
        free(prefix);
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

int mu_ckpt_add_delta(mu_ckpt *c, const char *delta_path, char *err, size_t errlen) {
    return mu_ckpt_add_delta_scaled(c, delta_path, 1, err, errlen);
}

int mu_ckpt_add_delta_scaled(mu_ckpt *c, const char *delta_path, float scale, char *err, size_t errlen) {
    if (!isfinite(scale)) {
        mu_set_err(err, errlen, "%s: scale %g is not a finite number", delta_path, scale);
        return -1;
    }
    mu_delta *d = mu_delta_open(delta_path, c, err, errlen);
    if (!d) return -1;
    mu_delta_set_scale(d, scale);
    c->delta = mu_xrealloc(c->delta, sizeof *c->delta * (size_t)(c->n_delta + 1));
    c->delta[c->n_delta++] = d;
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
