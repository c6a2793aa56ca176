/* safetensors.c — validated mmap reader and atomic writer for the safetensors format. */
#include "err.h"
#include "safetensors.h"
#include "cli.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER (100u << 20) /* the reference implementation's limit */

typedef struct {
    char *name;
    mu_dtype dtype;
    int ndim;
    int64_t shape[MU_MAX_DIMS];
    uint64_t begin, end;        /* relative to the data section */
} st_entry;

struct mu_st {
    char *path;
    void *map;
    size_t map_len;
    const uint8_t *data;        /* start of the data section */
    size_t data_len;
    st_entry *e;
    int n;
    char **meta_keys, **meta_vals;
    int n_meta;
};

/* safetensors dtype strings <-> mu_dtype */
static const struct { const char *s; mu_dtype t; } st_dtypes[] = {
    {"F32", MU_F32}, {"F16", MU_F16}, {"BF16", MU_BF16}, {"F64", MU_F64},
    {"I8", MU_I8},   {"U8", MU_U8},   {"I16", MU_I16},   {"U16", MU_U16},
    {"I32", MU_I32}, {"U32", MU_U32}, {"I64", MU_I64},   {"U64", MU_U64}, {"BOOL", MU_BOOL},
};

static int st_dtype_parse(const char *s, mu_dtype *t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (!strcmp(s, st_dtypes[i].s)) { *t = st_dtypes[i].t; return 0; }
    return -1;
}

static const char *st_dtype_str(mu_dtype t) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof *st_dtypes; i++)
        if (st_dtypes[i].t == t) return st_dtypes[i].s;
    return NULL;
}

static void st_free_entries(mu_st *s) {
    for (int i = 0; i < s->n; i++) free(s->e[i].name);
    free(s->e);
    for (int i = 0; i < s->n_meta; i++) { free(s->meta_keys[i]); free(s->meta_vals[i]); }
    free(s->meta_keys);
    free(s->meta_vals);
}

void mu_st_close(mu_st *s) {
    if (!s) return;
    st_free_entries(s);
    if (s->map && s->map_len) munmap(s->map, s->map_len);
    free(s->path);
    free(s);
}

/* Parses __metadata__: an object of string values. */
static int st_parse_meta(mu_st *s, json_t *meta, char *err, size_t errlen) {
    if (!json_is_object(meta)) {
        mu_set_err(err, errlen, "%s: __metadata__ is not an object", s->path);
        return -1;
    }
    size_t n = json_object_size(meta);
    s->meta_keys = calloc(n ? n : 1, sizeof *s->meta_keys);
    s->meta_vals = calloc(n ? n : 1, sizeof *s->meta_vals);
    if (!s->meta_keys || !s->meta_vals) { mu_set_err(err, errlen, "%s: out of memory", s->path); return -1; }
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v)) {
            mu_set_err(err, errlen, "%s: __metadata__ value of \"%s\" is not a string", s->path, k);
            return -1;
        }
        s->meta_keys[s->n_meta] = strdup(k);
        s->meta_vals[s->n_meta] = strdup(json_string_value(v));
        s->n_meta++;
    }
    return 0;
}

/* Parses one tensor entry {"dtype":..,"shape":[..],"data_offsets":[b,e]}. */
static int st_parse_entry(mu_st *s, const char *name, json_t *v, st_entry *e, char *err, size_t errlen) {
    if (!json_is_object(v)) {
        mu_set_err(err, errlen, "%s: tensor %s: entry is not an object", s->path, name);
        return -1;
    }
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || st_dtype_parse(json_string_value(jd), &e->dtype)) {
        mu_set_err(err, errlen, "%s: tensor %s: missing or unknown dtype%s%s", s->path, name,
                json_is_string(jd) ? " " : "", json_is_string(jd) ? json_string_value(jd) : "");
        return -1;
    }
    if (!json_is_array(js) || json_array_size(js) > MU_MAX_DIMS) {
        mu_set_err(err, errlen, "%s: tensor %s: shape missing or has more than %d dims", s->path, name, MU_MAX_DIMS);
        return -1;
    }
    e->ndim = (int)json_array_size(js);
    for (int d = 0; d < e->ndim; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0) {
            mu_set_err(err, errlen, "%s: tensor %s: shape[%d] is not a non-negative integer", s->path, name, d);
            return -1;
        }
        e->shape[d] = json_integer_value(x);
    }
    int64_t numel = mu_shape_numel(e->ndim, e->shape);
    size_t esz = mu_dtype_size(e->dtype);
    if (numel < 0 || (uint64_t)numel > UINT64_MAX / esz) {
        mu_set_err(err, errlen, "%s: tensor %s: shape product overflows", s->path, name);
        return -1;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1))) {
        mu_set_err(err, errlen, "%s: tensor %s: data_offsets is not [begin, end]", s->path, name);
        return -1;
    }
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b) {
        mu_set_err(err, errlen, "%s: tensor %s: data_offsets [%lld, %lld] invalid", s->path, name,
                (long long)b, (long long)en);
        return -1;
    }
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end > s->data_len) {
        mu_set_err(err, errlen, "%s: tensor %s: data_offsets end %llu past the end of the data (%zu bytes)",
                s->path, name, (unsigned long long)e->end, s->data_len);
        return -1;
    }
    if (e->end - e->begin != (uint64_t)numel * esz) {
        mu_set_err(err, errlen, "%s: tensor %s: data_offsets span %llu bytes but shape*dtype needs %llu",
                s->path, name, (unsigned long long)(e->end - e->begin), (unsigned long long)((uint64_t)numel * esz));
        return -1;
    }
    e->name = strdup(name);
    return e->name ? 0 : -1;
}

static int cmp_begin(const void *a, const void *b) {
    const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->end > y->end) - (x->end < y->end);
}

/* Rejects overlapping tensor data (empty tensors may share an offset). */
static int st_check_overlap(mu_st *s, char *err, size_t errlen) {
    if (s->n < 2) return 0;
    st_entry **p = malloc(sizeof *p * (size_t)s->n);
    if (!p) { mu_set_err(err, errlen, "%s: out of memory", s->path); return -1; }
    for (int i = 0; i < s->n; i++) p[i] = &s->e[i];
    qsort(p, (size_t)s->n, sizeof *p, cmp_begin);
    int rc = 0;
    uint64_t hi = 0;
    const char *hi_name = NULL;
    for (int i = 0; i < s->n; i++) {
        if (p[i]->end == p[i]->begin) continue;
        if (hi_name && p[i]->begin < hi) {
            mu_set_err(err, errlen, "%s: tensors %s and %s overlap in the data section", s->path, hi_name, p[i]->name);
            rc = -1;
            break;
        }
        hi = p[i]->end;
        hi_name = p[i]->name;
    }
    free(p);
    return rc;
}

static int st_parse_header(mu_st *s, const char *json, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        mu_set_err(err, errlen, "%s: header JSON invalid at byte %d: %s", s->path, je.position, je.text);
        return -1;
    }
    int rc = -1;
    if (!json_is_object(root)) {
        mu_set_err(err, errlen, "%s: header JSON is not an object", s->path);
        goto out;
    }
    s->e = calloc(json_object_size(root) + 1, sizeof *s->e);
    if (!s->e) { mu_set_err(err, errlen, "%s: out of memory", s->path); goto out; }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (!strcmp(k, "__metadata__")) {
            if (st_parse_meta(s, v, err, errlen)) goto out;
            continue;
        }
        if (st_parse_entry(s, k, v, &s->e[s->n], err, errlen)) goto out;
        s->n++;
    }
    rc = st_check_overlap(s, err, errlen);
out:
    json_decref(root);
    return rc;
}

mu_st *mu_st_open(const char *path, char *err, size_t errlen) {
    mu_st *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) { free(s); mu_set_err(err, errlen, "%s: out of memory", path); return NULL; }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { mu_set_err(err, errlen, "%s: %s", path, strerror(errno)); goto fail; }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        mu_set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    size_t fsize = (size_t)st.st_size;
    if (fsize < 8) {
        mu_set_err(err, errlen, "%s: truncated: %zu bytes, no header length", path, fsize);
        close(fd);
        goto fail;
    }
    s->map = mmap(NULL, fsize, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (s->map == MAP_FAILED) { s->map = NULL; mu_set_err(err, errlen, "%s: mmap: %s", path, strerror(errno)); goto fail; }
    s->map_len = fsize;
    const uint8_t *p = s->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > ST_MAX_HEADER || hlen > fsize - 8) {
        mu_set_err(err, errlen, "%s: header length %llu past the end of the file (%zu bytes)", path,
                (unsigned long long)hlen, fsize);
        goto fail;
    }
    s->data = p + 8 + hlen;
    s->data_len = fsize - 8 - hlen;
    if (st_parse_header(s, (const char *)p + 8, hlen, err, errlen)) goto fail;
    return s;
fail:
    mu_st_close(s);
    return NULL;
}

int mu_st_count(const mu_st *s) { return s->n; }
const char *mu_st_path(const mu_st *s) { return s->path; }

const char *mu_st_name(const mu_st *s, int i) {
    return i >= 0 && i < s->n ? s->e[i].name : NULL;
}

int mu_st_find(const mu_st *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].name, name)) return i;
    return -1;
}

int mu_st_info(const mu_st *s, int i, mu_dtype *dt, int *ndim, int64_t *shape,
               const void **data, size_t *nbytes) {
    if (i < 0 || i >= s->n) return -1;
    const st_entry *e = &s->e[i];
    if (dt) *dt = e->dtype;
    if (ndim) *ndim = e->ndim;
    if (shape) for (int d = 0; d < e->ndim; d++) shape[d] = e->shape[d];
    if (data) *data = s->data + e->begin;
    if (nbytes) *nbytes = (size_t)(e->end - e->begin);
    return 0;
}

const char *mu_st_metadata(const mu_st *s, const char *key) {
    for (int i = 0; i < s->n_meta; i++)
        if (!strcmp(s->meta_keys[i], key)) return s->meta_vals[i];
    return NULL;
}

const char *mu_st_metadata_key(const mu_st *s, int i) {
    return i >= 0 && i < s->n_meta ? s->meta_keys[i] : NULL;
}

int mu_st_read_f32(const mu_st *s, int i, float *dst, size_t n, char *err, size_t errlen) {
    if (i < 0 || i >= s->n) { mu_set_err(err, errlen, "%s: no tensor #%d", s->path, i); return -1; }
    const st_entry *e = &s->e[i];
    size_t numel = (size_t)mu_shape_numel(e->ndim, e->shape);
    if (n != numel) {
        mu_set_err(err, errlen, "%s: tensor %s: has %zu elements, caller expects %zu", s->path, e->name, numel, n);
        return -1;
    }
    if (mu_to_f32(e->dtype, s->data + e->begin, n, dst)) {
        mu_set_err(err, errlen, "%s: tensor %s: dtype %s is not a float type", s->path, e->name, st_dtype_str(e->dtype));
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ writer */

typedef struct {
    char *name;
    mu_dtype dtype;
    int ndim;
    int64_t shape[MU_MAX_DIMS];
    const void *data;
    void *owned;
} stw_entry;

struct mu_st_writer {
    stw_entry *e;
    int n, cap;
    json_t *meta;
};

mu_st_writer *mu_st_writer_new(void) {
    mu_st_writer *w = mu_xcalloc(1, sizeof *w);
    w->meta = json_object();
    return w;
}

void mu_st_writer_free(mu_st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) { free(w->e[i].name); free(w->e[i].owned); }
    free(w->e);
    json_decref(w->meta);
    free(w);
}

static stw_entry *stw_push(mu_st_writer *w, const char *name, mu_dtype dt, int ndim, const int64_t *shape) {
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->e = mu_xrealloc(w->e, sizeof *w->e * (size_t)w->cap);
    }
    stw_entry *e = &w->e[w->n++];
    memset(e, 0, sizeof *e);
    e->name = mu_xstrdup(name);
    e->dtype = dt;
    e->ndim = ndim < 0 ? 0 : ndim > MU_MAX_DIMS ? MU_MAX_DIMS + 1 : ndim;
    for (int d = 0; d < ndim && d < MU_MAX_DIMS; d++) e->shape[d] = shape[d];
    return e;
}

static size_t stw_nbytes(const stw_entry *e) {
    int64_t n = mu_shape_numel(e->ndim, e->shape);
    return n < 0 ? 0 : (size_t)n * mu_dtype_size(e->dtype);
}

void mu_st_writer_add(mu_st_writer *w, const char *name, mu_dtype dt, int ndim,
                      const int64_t *shape, const void *data) {
    stw_push(w, name, dt, ndim, shape)->data = data;
}

void mu_st_writer_add_copy(mu_st_writer *w, const char *name, mu_dtype dt, int ndim,
                           const int64_t *shape, const void *data) {
    stw_entry *e = stw_push(w, name, dt, ndim, shape);
    size_t nb = e->ndim <= MU_MAX_DIMS ? stw_nbytes(e) : 0;
    e->owned = mu_xmalloc(nb ? nb : 1);
    if (nb) memcpy(e->owned, data, nb);
    e->data = e->owned;
}

void mu_st_writer_meta(mu_st_writer *w, const char *key, const char *val) {
    json_object_set_new(w->meta, key, json_string(val));
}

/* Builds the header JSON (metadata first, tensors in the order added), padded with
 * spaces to a multiple of 8 bytes so the data section is 8-aligned. */
static char *stw_header(mu_st_writer *w, size_t *len, char *err, size_t errlen) {
    json_t *root = json_object();
    if (json_object_size(w->meta)) json_object_set(root, "__metadata__", w->meta);
    uint64_t off = 0;
    for (int i = 0; i < w->n; i++) {
        stw_entry *e = &w->e[i];
        if (e->ndim > MU_MAX_DIMS || mu_shape_numel(e->ndim, e->shape) < 0 || !st_dtype_str(e->dtype) ||
            !strcmp(e->name, "__metadata__")) {
            mu_set_err(err, errlen, "tensor %s: bad dtype, name or shape", e->name);
            json_decref(root);
            return NULL;
        }
        if (!e->data && stw_nbytes(e)) {
            mu_set_err(err, errlen, "tensor %s: no data", e->name);
            json_decref(root);
            return NULL;
        }
        if (json_object_get(root, e->name)) {
            mu_set_err(err, errlen, "tensor %s: added twice", e->name);
            json_decref(root);
            return NULL;
        }
        json_t *shape = json_array();
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        size_t nb = stw_nbytes(e);
        json_object_set_new(root, e->name,
                            json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_str(e->dtype), "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + nb)));
        off += nb;
    }
    char *js = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!js) { mu_set_err(err, errlen, "cannot encode header"); return NULL; }
    size_t n = strlen(js), padded = (n + 7) & ~(size_t)7;
    js = mu_xrealloc(js, padded + 1);
    memset(js + n, ' ', padded - n);
    js[padded] = 0;
    *len = padded;
    return js;
}

int mu_st_writer_write(mu_st_writer *w, const char *path, char *err, size_t errlen) {
    char e2[256] = "";
    size_t hlen;
    char *hdr = stw_header(w, &hlen, e2, sizeof e2);
    if (!hdr) { mu_set_err(err, errlen, "%s: %s", path, e2); return -1; }
    if (!strcmp(path, "-")) { free(hdr); mu_set_err(err, errlen, "-: safetensors cannot go to stdout"); return -1; }
    mu_outfile o;
    if (mu_out_open(&o, path)) {
        mu_set_err(err, errlen, "%s: %s", path, strerror(errno));
        free(hdr);
        return -1;
    }
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    int ok = fwrite(le, 1, 8, o.fp) == 8 && fwrite(hdr, 1, hlen, o.fp) == hlen;
    free(hdr);
    for (int i = 0; ok && i < w->n; i++) {
        size_t nb = stw_nbytes(&w->e[i]);
        ok = !nb || fwrite(w->e[i].data, 1, nb, o.fp) == nb;
    }
    if (!ok || mu_out_commit(&o)) {
        mu_set_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        if (!ok) mu_out_abort(&o);
        return -1;
    }
    return 0;
}
