/* gguf.c — bounds-checked mmap reader for GGUF v2/v3 (block layouts and dequantization: ggml_quants.c). */
#include "err.h"
#include "gguf.h"
#include "tensor.h"
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    char *key;                 /* NUL-terminated copy */
    int type;                  /* GGUF_TYPE_* */
    size_t off;                /* file offset of the value (for arrays: of the first element) */
    int elem_type;             /* arrays */
    uint64_t count;            /* arrays */
    uint64_t *str_off;         /* string arrays: file offset of each element's length field */
} gg_kv;

typedef struct {
    char *name;
    int type;
    int n_dims;
    int64_t ne[MU_GGUF_MAX_DIMS];
    uint64_t offset;           /* relative to the data section */
    size_t nbytes;
} gg_tensor;

struct mu_gguf {
    char *path;
    const uint8_t *map;
    size_t len;
    uint32_t version;
    gg_kv *kv;
    int n_kv;
    gg_tensor *t;
    int n_t;
    size_t data_off;
};

/* ---------------------------------------------------------------- parsing */

typedef struct {
    const uint8_t *p;
    size_t len, pos;
    const char *path;
    char *err;
    size_t errlen;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if (n > c->len - c->pos) {
        mu_set_err(c->err, c->errlen, "%s: truncated at byte %zu reading %s (needs %llu bytes, %zu left)", c->path,
                c->pos, what, (unsigned long long)n, c->len - c->pos);
        return -1;
    }
    return 0;
}

static uint64_t le_at(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static int rd_u32(cursor *c, uint32_t *v, const char *what) {
    if (need(c, 4, what)) return -1;
    *v = (uint32_t)le_at(c->p + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what) {
    if (need(c, 8, what)) return -1;
    *v = le_at(c->p + c->pos, 8);
    c->pos += 8;
    return 0;
}

/* A GGUF string: u64 length + bytes. Returns the byte offset of the chars. */
static int rd_str(cursor *c, size_t *off, uint64_t *slen, const char *what) {
    uint64_t n;
    if (rd_u64(c, &n, what) || need(c, n, what)) return -1;
    *off = c->pos;
    *slen = n;
    c->pos += n;
    return 0;
}

static int scalar_size(int type) {
    switch (type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

static char *dup_n(const uint8_t *s, size_t n) {
    char *r = malloc(n + 1);
    if (r) { memcpy(r, s, n); r[n] = 0; }
    return r;
}

static int parse_kv(mu_gguf *g, cursor *c, gg_kv *kv, uint64_t idx) {
    size_t koff;
    uint64_t klen;
    uint32_t type;
    if (rd_str(c, &koff, &klen, "metadata key")) return -1;
    if (!(kv->key = dup_n(c->p + koff, klen))) return -1;
    if (rd_u32(c, &type, "metadata type")) return -1;
    if (type >= GGUF_TYPE_COUNT) {
        mu_set_err(c->err, c->errlen, "%s: metadata %llu (%s): unknown value type %u", g->path,
                (unsigned long long)idx, kv->key, type);
        return -1;
    }
    kv->type = (int)type;
    if (type == GGUF_TYPE_STRING) {
        size_t so;
        uint64_t sl;
        kv->off = c->pos;
        return rd_str(c, &so, &sl, kv->key);
    }
    if (type != GGUF_TYPE_ARRAY) {
        kv->off = c->pos;
        if (need(c, (uint64_t)scalar_size((int)type), kv->key)) return -1;
        c->pos += (size_t)scalar_size((int)type);
        return 0;
    }
    uint32_t et;
    if (rd_u32(c, &et, kv->key) || rd_u64(c, &kv->count, kv->key)) return -1;
    if (et >= GGUF_TYPE_COUNT || et == GGUF_TYPE_ARRAY) {
        mu_set_err(c->err, c->errlen, "%s: metadata %s: unsupported array element type %u", g->path, kv->key, et);
        return -1;
    }
    kv->elem_type = (int)et;
    kv->off = c->pos;
    if (et != GGUF_TYPE_STRING) {
        uint64_t es = (uint64_t)scalar_size((int)et);
        if (kv->count > (c->len - c->pos) / es) {
            mu_set_err(c->err, c->errlen, "%s: metadata %s: array of %llu elements runs past the end of the file",
                    g->path, kv->key, (unsigned long long)kv->count);
            return -1;
        }
        c->pos += (size_t)(kv->count * es);
        return 0;
    }
    if (kv->count > (c->len - c->pos) / 8) { /* each string takes >= 8 bytes */
        mu_set_err(c->err, c->errlen, "%s: metadata %s: array of %llu strings runs past the end of the file",
                g->path, kv->key, (unsigned long long)kv->count);
        return -1;
    }
    kv->str_off = malloc(sizeof *kv->str_off * (size_t)(kv->count ? kv->count : 1));
    if (!kv->str_off) return -1;
    for (uint64_t i = 0; i < kv->count; i++) {
        size_t so;
        uint64_t sl;
        kv->str_off[i] = c->pos;
        if (rd_str(c, &so, &sl, kv->key)) return -1;
    }
    return 0;
}

static int parse_tensor(mu_gguf *g, cursor *c, gg_tensor *t, uint64_t idx) {
    size_t noff;
    uint64_t nlen, off;
    uint32_t nd, type;
    if (rd_str(c, &noff, &nlen, "tensor name")) return -1;
    if (!(t->name = dup_n(c->p + noff, nlen))) return -1;
    if (rd_u32(c, &nd, t->name)) return -1;
    if (nd < 1 || nd > MU_GGUF_MAX_DIMS) {
        mu_set_err(c->err, c->errlen, "%s: tensor %llu (%s): %u dims (1..%d allowed)", g->path,
                (unsigned long long)idx, t->name, nd, MU_GGUF_MAX_DIMS);
        return -1;
    }
    t->n_dims = (int)nd;
    uint64_t numel = 1;
    for (int d = 0; d < MU_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < nd; d++) {
        uint64_t ne;
        if (rd_u64(c, &ne, t->name)) return -1;
        if (ne > INT64_MAX || (ne && numel > (uint64_t)INT64_MAX / ne)) {
            mu_set_err(c->err, c->errlen, "%s: tensor %s: dims product overflows", g->path, t->name);
            return -1;
        }
        t->ne[d] = (int64_t)ne;
        numel *= ne;
    }
    if (rd_u32(c, &type, t->name) || rd_u64(c, &off, t->name)) return -1;
    int block, block_bytes;
    if (type > INT32_MAX || mu_ggml_block((int)type, &block, &block_bytes)) {
        mu_set_err(c->err, c->errlen, "%s: tensor %s: unknown ggml type %u", g->path, t->name, type);
        return -1;
    }
    if (t->ne[0] % block) {
        mu_set_err(c->err, c->errlen, "%s: tensor %s: row length %lld not a multiple of the %s block size %d",
                g->path, t->name, (long long)t->ne[0], mu_gguf_type_name((int)type), block);
        return -1;
    }
    uint64_t nblk = numel / (uint64_t)block;
    if (nblk > UINT64_MAX / (uint64_t)block_bytes) {
        mu_set_err(c->err, c->errlen, "%s: tensor %s: size overflows", g->path, t->name);
        return -1;
    }
    t->type = (int)type;
    t->offset = off;
    t->nbytes = (size_t)(nblk * (uint64_t)block_bytes);
    return 0;
}

void mu_gguf_close(mu_gguf *g) {
    if (!g) return;
    for (int i = 0; i < g->n_kv; i++) { free(g->kv[i].key); free(g->kv[i].str_off); }
    free(g->kv);
    for (int i = 0; i < g->n_t; i++) free(g->t[i].name);
    free(g->t);
    if (g->map) munmap((void *)g->map, g->len);
    free(g->path);
    free(g);
}

static const gg_kv *find_kv(const mu_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

/* Tensor data lives after the infos, aligned; each tensor's range must fit in the file. */
static int place_tensors(mu_gguf *g, cursor *c) {
    uint32_t align = 32;
    const gg_kv *a = find_kv(g, "general.alignment");
    if (a) {
        if (mu_gguf_get_u32(g, "general.alignment", &align) || !align || (align & (align - 1))) {
            mu_set_err(c->err, c->errlen, "%s: general.alignment is not a power of two", g->path);
            return -1;
        }
    }
    size_t start = (c->pos + align - 1) / align * align;
    if (g->n_t && start > c->len) {
        mu_set_err(c->err, c->errlen, "%s: truncated: tensor data section starts at %zu past the end (%zu bytes)",
                g->path, start, c->len);
        return -1;
    }
    g->data_off = start;
    size_t avail = start <= c->len ? c->len - start : 0;
    for (int i = 0; i < g->n_t; i++) {
        gg_tensor *t = &g->t[i];
        if (t->offset % align) {
            mu_set_err(c->err, c->errlen, "%s: tensor %s: offset %llu not aligned to %u", g->path, t->name,
                    (unsigned long long)t->offset, align);
            return -1;
        }
        if (t->offset > avail || t->nbytes > avail - t->offset) {
            mu_set_err(c->err, c->errlen, "%s: tensor %s: data [%llu, +%zu) past the end of the file", g->path,
                    t->name, (unsigned long long)t->offset, t->nbytes);
            return -1;
        }
        for (int j = 0; j < i; j++)
            if (!strcmp(g->t[j].name, t->name)) {
                mu_set_err(c->err, c->errlen, "%s: tensor %s: duplicate name", g->path, t->name);
                return -1;
            }
    }
    return 0;
}

static int parse_all(mu_gguf *g, cursor *c) {
    uint32_t magic;
    uint64_t nt, nkv;
    if (rd_u32(c, &magic, "magic")) return -1;
    if (magic != 0x46554747u) { /* "GGUF" */
        mu_set_err(c->err, c->errlen, "%s: not a GGUF file (bad magic)", g->path);
        return -1;
    }
    if (rd_u32(c, &g->version, "version")) return -1;
    if (g->version != 2 && g->version != 3) {
        mu_set_err(c->err, c->errlen, "%s: GGUF version %u not supported (2 or 3)", g->path, g->version);
        return -1;
    }
    if (rd_u64(c, &nt, "tensor count") || rd_u64(c, &nkv, "metadata count")) return -1;
    /* each kv needs >= 12 bytes (key length + type), each tensor info >= 28 */
    if (nkv > (c->len - c->pos) / 12 || nt > (c->len - c->pos) / 28 || nkv > INT32_MAX || nt > INT32_MAX) {
        mu_set_err(c->err, c->errlen, "%s: absurd counts (%llu tensors, %llu metadata) for a %zu-byte file",
                g->path, (unsigned long long)nt, (unsigned long long)nkv, c->len);
        return -1;
    }
    g->kv = calloc((size_t)nkv + 1, sizeof *g->kv);
    g->t = calloc((size_t)nt + 1, sizeof *g->t);
    if (!g->kv || !g->t) { mu_set_err(c->err, c->errlen, "%s: out of memory", g->path); return -1; }
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv++;
        if (parse_kv(g, c, &g->kv[i], i)) return -1;
    }
    for (uint64_t i = 0; i < nt; i++) {
        g->n_t++;
        if (parse_tensor(g, c, &g->t[i], i)) return -1;
    }
    return place_tensors(g, c);
}

mu_gguf *mu_gguf_open(const char *path, char *err, size_t errlen) {
    mu_gguf *g = calloc(1, sizeof *g);
    if (!g || !(g->path = strdup(path))) { free(g); mu_set_err(err, errlen, "%s: out of memory", path); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0) { mu_set_err(err, errlen, "%s: %s", path, strerror(errno)); goto fail; }
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        mu_set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    g->len = (size_t)st.st_size;
    if (g->len == 0) {
        mu_set_err(err, errlen, "%s: empty file", path);
        close(fd);
        goto fail;
    }
    void *m = mmap(NULL, g->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) { mu_set_err(err, errlen, "%s: mmap: %s", path, strerror(errno)); goto fail; }
    g->map = m;
    if (err && errlen) err[0] = 0;
    cursor c = {g->map, g->len, 0, g->path, err, errlen};
    if (parse_all(g, &c)) {
        if (err && errlen && !err[0]) mu_set_err(err, errlen, "%s: out of memory", path);
        goto fail;
    }
    return g;
fail:
    mu_gguf_close(g);
    return NULL;
}

const char *mu_gguf_path(const mu_gguf *g) { return g->path; }
uint32_t mu_gguf_version(const mu_gguf *g) { return g->version; }
int mu_gguf_n_kv(const mu_gguf *g) { return g->n_kv; }
const char *mu_gguf_key(const mu_gguf *g, int i) { return i >= 0 && i < g->n_kv ? g->kv[i].key : NULL; }

int mu_gguf_kv_type(const mu_gguf *g, const char *key) {
    const gg_kv *kv = find_kv(g, key);
    return kv ? kv->type : -1;
}

/* ---------------------------------------------------------------- metadata values */

/* Reads a scalar of an integer type at p. Signed types fill *v, UINT64 fills *u; -1 if not an integer type. */
static int int_at(int type, const uint8_t *p, int64_t *v, uint64_t *u, int *is_unsigned) {
    *is_unsigned = 0;
    switch (type) {
    case GGUF_TYPE_UINT8: *v = p[0]; return 0;
    case GGUF_TYPE_INT8: *v = (int8_t)p[0]; return 0;
    case GGUF_TYPE_UINT16: *v = (uint16_t)le_at(p, 2); return 0;
    case GGUF_TYPE_INT16: *v = (int16_t)le_at(p, 2); return 0;
    case GGUF_TYPE_UINT32: *v = (uint32_t)le_at(p, 4); return 0;
    case GGUF_TYPE_INT32: *v = (int32_t)le_at(p, 4); return 0;
    case GGUF_TYPE_INT64: *v = (int64_t)le_at(p, 8); return 0;
    case GGUF_TYPE_UINT64: *u = le_at(p, 8); *is_unsigned = 1; return 0;
    default: return -1;
    }
}

static int int_in_range(int type, const uint8_t *p, int64_t lo, int64_t hi, int64_t *out) {
    int64_t v = 0;
    uint64_t u = 0;
    int uns;
    if (int_at(type, p, &v, &u, &uns)) return -1;
    if (uns) {
        if (u > (uint64_t)INT64_MAX) return -1;
        v = (int64_t)u;
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int float_at(int type, const uint8_t *p, float *out) {
    if (type == GGUF_TYPE_FLOAT32) { memcpy(out, p, 4); return 0; }
    if (type == GGUF_TYPE_FLOAT64) { double d; memcpy(&d, p, 8); *out = (float)d; return 0; }
    int64_t v = 0;
    uint64_t u = 0;
    int uns;
    if (int_at(type, p, &v, &u, &uns)) return -1;
    *out = uns ? (float)u : (float)v;
    return 0;
}

int mu_gguf_get_str(const mu_gguf *g, const char *key, const char **s, size_t *len) {
    const gg_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return -1;
    uint64_t n = le_at(g->map + kv->off, 8);
    if (s) *s = (const char *)g->map + kv->off + 8;
    if (len) *len = (size_t)n;
    return 0;
}

int mu_gguf_get_u32(const mu_gguf *g, const char *key, uint32_t *v) {
    const gg_kv *kv = find_kv(g, key);
    int64_t x;
    if (!kv || int_in_range(kv->type, g->map + kv->off, 0, UINT32_MAX, &x)) return -1;
    *v = (uint32_t)x;
    return 0;
}

int mu_gguf_get_i64(const mu_gguf *g, const char *key, int64_t *v) {
    const gg_kv *kv = find_kv(g, key);
    if (!kv) return -1;
    return int_in_range(kv->type, g->map + kv->off, INT64_MIN, INT64_MAX, v);
}

int mu_gguf_get_f32(const mu_gguf *g, const char *key, float *v) {
    const gg_kv *kv = find_kv(g, key);
    if (!kv || kv->type == GGUF_TYPE_ARRAY || kv->type == GGUF_TYPE_STRING || kv->type == GGUF_TYPE_BOOL) return -1;
    return float_at(kv->type, g->map + kv->off, v);
}

int mu_gguf_get_bool(const mu_gguf *g, const char *key, int *v) {
    const gg_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return -1;
    *v = g->map[kv->off] != 0;
    return 0;
}

int mu_gguf_arr_len(const mu_gguf *g, const char *key, uint64_t *n, int *elem_type) {
    const gg_kv *kv = find_kv(g, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY) return -1;
    if (n) *n = kv->count;
    if (elem_type) *elem_type = kv->elem_type;
    return 0;
}

static const gg_kv *arr_kv(const mu_gguf *g, const char *key, uint64_t i) {
    const gg_kv *kv = find_kv(g, key);
    return kv && kv->type == GGUF_TYPE_ARRAY && i < kv->count ? kv : NULL;
}

int mu_gguf_arr_str(const mu_gguf *g, const char *key, uint64_t i, const char **s, size_t *len) {
    const gg_kv *kv = arr_kv(g, key, i);
    if (!kv || kv->elem_type != GGUF_TYPE_STRING) return -1;
    const uint8_t *p = g->map + kv->str_off[i];
    if (s) *s = (const char *)p + 8;
    if (len) *len = (size_t)le_at(p, 8);
    return 0;
}

int mu_gguf_arr_f32(const mu_gguf *g, const char *key, uint64_t i, float *v) {
    const gg_kv *kv = arr_kv(g, key, i);
    if (!kv || kv->elem_type == GGUF_TYPE_STRING || kv->elem_type == GGUF_TYPE_BOOL) return -1;
    return float_at(kv->elem_type, g->map + kv->off + i * (uint64_t)scalar_size(kv->elem_type), v);
}

int mu_gguf_arr_i32(const mu_gguf *g, const char *key, uint64_t i, int32_t *v) {
    const gg_kv *kv = arr_kv(g, key, i);
    int64_t x;
    if (!kv || kv->elem_type == GGUF_TYPE_STRING) return -1;
    const uint8_t *p = g->map + kv->off + i * (uint64_t)scalar_size(kv->elem_type);
    if (kv->elem_type == GGUF_TYPE_BOOL) { *v = p[0] != 0; return 0; }
    if (int_in_range(kv->elem_type, p, INT32_MIN, INT32_MAX, &x)) return -1;
    *v = (int32_t)x;
    return 0;
}

/* ---------------------------------------------------------------- tensors */

int mu_gguf_n_tensors(const mu_gguf *g) { return g->n_t; }
const char *mu_gguf_tensor_name(const mu_gguf *g, int i) { return i >= 0 && i < g->n_t ? g->t[i].name : NULL; }

int mu_gguf_find_tensor(const mu_gguf *g, const char *name) {
    for (int i = 0; i < g->n_t; i++)
        if (!strcmp(g->t[i].name, name)) return i;
    return -1;
}

int mu_gguf_tensor_info(const mu_gguf *g, int i, int *ggml_type, int *n_dims, int64_t *ne,
                        const void **data, size_t *nbytes) {
    if (i < 0 || i >= g->n_t) return -1;
    const gg_tensor *t = &g->t[i];
    if (ggml_type) *ggml_type = t->type;
    if (n_dims) *n_dims = t->n_dims;
    if (ne) for (int d = 0; d < MU_GGUF_MAX_DIMS; d++) ne[d] = t->ne[d];
    if (data) *data = g->map + g->data_off + t->offset;
    if (nbytes) *nbytes = t->nbytes;
    return 0;
}

int mu_gguf_tensor_f32(const mu_gguf *g, const char *name, float *dst, size_t n, char *err, size_t errlen) {
    int i = mu_gguf_find_tensor(g, name);
    if (i < 0) { mu_set_err(err, errlen, "%s: no tensor %s", g->path, name); return -1; }
    const gg_tensor *t = &g->t[i];
    uint64_t numel = 1;
    for (int d = 0; d < t->n_dims; d++) numel *= (uint64_t)t->ne[d];
    if (numel != n) {
        mu_set_err(err, errlen, "%s: tensor %s: has %llu elements, caller expects %zu", g->path, name,
                (unsigned long long)numel, n);
        return -1;
    }
    if (mu_ggml_dequant(t->type, g->map + g->data_off + t->offset, t->nbytes, dst, n)) {
        mu_set_err(err, errlen, "%s: tensor %s: cannot dequantize ggml type %s", g->path, name,
                mu_gguf_type_name(t->type));
        return -1;
    }
    return 0;
}
