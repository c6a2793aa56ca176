/* mask.c — parameter masks: bitsets over units, shorthand specs, "mask" streams. */
#include "mask.h"
#include "cli.h"
#include "stream.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *GRAN_NAMES[] = {"element", "neuron", "head", "matrix"};

const char *mu_gran_name(mu_granularity g) { return GRAN_NAMES[g]; }

int mu_gran_parse(const char *s, mu_granularity *out) {
    for (int i = 0; i < 4; i++)
        if (!strcmp(s, GRAN_NAMES[i])) { *out = (mu_granularity)i; return 0; }
    return -1;
}

void mu_mask_init(mu_mask *m, const char *granularity, int64_t params_total) {
    memset(m, 0, sizeof *m);
    snprintf(m->granularity, sizeof m->granularity, "%s", granularity);
    m->params_total = params_total;
}

void mu_mask_free(mu_mask *m) {
    for (int i = 0; i < m->n; i++) { free(m->t[i].name); free(m->t[i].bits); }
    free(m->t);
    memset(m, 0, sizeof *m);
}

int64_t mu_mask_tensor_numel(const mu_mask_tensor *t) {
    return t->ndim == 1 ? t->shape[0] : t->shape[0] * t->shape[1];
}

int mu_mask_unit_axis(const char *name, mu_granularity g) {
    if (g == MU_GRAN_ELEMENT || g == MU_GRAN_MATRIX) return -1;
    if (mu_str_ends_with(name, "down_proj.weight") || mu_str_ends_with(name, "o_proj.weight") ||
        mu_str_ends_with(name, "mlp.dense_4h_to_h.weight") || mu_str_ends_with(name, "attention.dense.weight") ||
        mu_str_ends_with(name, "attn.c_attn.weight") || mu_str_ends_with(name, "mlp.c_fc.weight") ||
        mu_str_ends_with(name, "mlp.fc2.weight") || mu_str_ends_with(name, "self_attn.dense.weight"))
        return 1;   /* GPT-NeoX's and Phi's down and o; GPT-2's Conv1D [in, out] c_attn and c_fc (its down
                       and o, mlp.c_proj and attn.c_proj, hold their value vectors and heads in rows) */
    return 0;
}

/* Size of the unit axis: rows for axis 0 (or a 1-D tensor), columns for axis 1. */
static int64_t axis_len(const mu_mask_tensor *t, int axis) {
    return axis == 1 && t->ndim == 2 ? t->shape[1] : t->shape[0];
}

int mu_mask_find(const mu_mask *m, const char *name) {
    for (int i = 0; i < m->n; i++) if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

/* Checks units against shape and granularity; 0 ok, -1 + err. */
static int check_units(const mu_mask_tensor *t, char *err, size_t errlen) {
    /* heads: any count that divides the unit axis (head_dim is not known here) */
    int64_t want = t->gran == MU_GRAN_HEAD ? -1 : mu_mask_units_for(t->name, t->ndim, t->shape, t->gran, 0);
    if (want >= 0 && t->units != want) {
        snprintf(err, errlen, "tensor %s: %s mask needs %lld units, has %lld", t->name,
                 mu_gran_name(t->gran), (long long)want, (long long)t->units);
        return -1;
    }
    if (t->gran == MU_GRAN_HEAD) {
        int64_t len = axis_len(t, mu_mask_unit_axis(t->name, t->gran));
        if (t->units < 1 || len % t->units) {
            snprintf(err, errlen, "tensor %s: %lld heads do not divide %lld", t->name,
                     (long long)t->units, (long long)len);
            return -1;
        }
    }
    return 0;
}

mu_mask_tensor *mu_mask_add(mu_mask *m, const char *name, int ndim, const int64_t *shape,
                            mu_granularity g, int64_t units, char *err, size_t errlen) {
    if (mu_mask_find(m, name) >= 0) {
        snprintf(err, errlen, "tensor %s appears twice", name);
        return NULL;
    }
    if (ndim < 1 || ndim > 2 || shape[0] < 1 || (ndim == 2 && shape[1] < 1)) {
        snprintf(err, errlen, "tensor %s: shape must be 1-D or 2-D and non-empty", name);
        return NULL;
    }
    mu_mask_tensor t = {0};
    t.name = (char *)name;
    t.ndim = ndim;
    t.shape[0] = shape[0];
    t.shape[1] = ndim == 2 ? shape[1] : 1;
    t.gran = g;
    t.units = units;
    if (check_units(&t, err, errlen) < 0) return NULL;
    m->t = mu_xrealloc(m->t, (size_t)(m->n + 1) * sizeof *m->t);
    t.name = mu_xstrdup(name);
    t.bits = mu_xcalloc((size_t)(units + 7) / 8, 1);
    m->t[m->n] = t;
    return &m->t[m->n++];
}

int64_t mu_mask_selected(const mu_mask_tensor *t) {
    int64_t k = 0;
    for (int64_t b = 0; b < (t->units + 7) / 8; b++) k += __builtin_popcount(t->bits[b]);
    return k;
}

int64_t mu_mask_tensor_params(const mu_mask_tensor *t) {
    return mu_mask_selected(t) * (mu_mask_tensor_numel(t) / t->units);
}

int64_t mu_mask_params(const mu_mask *m) {
    int64_t k = 0;
    for (int i = 0; i < m->n; i++) k += mu_mask_tensor_params(&m->t[i]);
    return k;
}

int64_t mu_mask_unit_of(const mu_mask_tensor *t, int64_t i) {
    switch (t->gran) {
    case MU_GRAN_ELEMENT: return i;
    case MU_GRAN_MATRIX: return 0;
    default: break;
    }
    int axis = mu_mask_unit_axis(t->name, t->gran);
    int64_t cols = t->ndim == 2 ? t->shape[1] : 1;
    int64_t pos = axis == 1 && t->ndim == 2 ? i % cols : i / cols;
    return pos / (axis_len(t, axis) / t->units);
}

int mu_mask_element(const mu_mask_tensor *t, int64_t i) { return mu_mask_get(t, mu_mask_unit_of(t, i)); }

int64_t mu_mask_units_for(const char *name, int ndim, const int64_t *shape, mu_granularity g,
                          int head_dim) {
    int64_t numel = ndim == 2 ? shape[0] * shape[1] : shape[0];
    int axis = mu_mask_unit_axis(name, g);
    int64_t len = axis == 1 && ndim == 2 ? shape[1] : shape[0];
    switch (g) {
    case MU_GRAN_ELEMENT: return numel;
    case MU_GRAN_MATRIX: return 1;
    case MU_GRAN_NEURON: return len;
    case MU_GRAN_HEAD: return head_dim > 0 && len % head_dim == 0 ? len / head_dim : -1;
    }
    return -1;
}

int64_t mu_mask_indices(const mu_mask_tensor *t, int64_t **idx) {
    int64_t n = mu_mask_tensor_params(t), numel = mu_mask_tensor_numel(t), k = 0;
    *idx = NULL;
    if (n == 0) return 0;
    *idx = mu_xmalloc((size_t)n * sizeof **idx);
    for (int64_t i = 0; i < numel; i++)
        if (mu_mask_element(t, i)) (*idx)[k++] = i;
    return k;
}

int mu_mask_check(const mu_mask *m, const mu_param_info *p, int np, char *err, size_t errlen) {
    for (int i = 0; i < m->n; i++) {
        const mu_mask_tensor *t = &m->t[i];
        int j = mu_arch_find(p, np, t->name);
        if (j < 0) {
            snprintf(err, errlen, "tensor %s: not a parameter of this model", t->name);
            return -1;
        }
        int64_t s1 = p[j].ndim == 2 ? p[j].shape[1] : 1;
        if (p[j].ndim != t->ndim || p[j].shape[0] != t->shape[0] || s1 != t->shape[1]) {
            snprintf(err, errlen, "tensor %s: mask shape [%lld,%lld] but the model has [%lld,%lld]",
                     t->name, (long long)t->shape[0], (long long)t->shape[1],
                     (long long)p[j].shape[0], (long long)s1);
            return -1;
        }
    }
    return 0;
}

/* ---- shorthand specs ---- */

/* Parses a layer list ("3", "2-6", "0,4,7", "all") into sel[0..nl). */
static int parse_layers(const char *s, int nl, unsigned char *sel, char *err, size_t errlen) {
    memset(sel, 0, (size_t)nl);
    if (!strcmp(s, "all")) { memset(sel, 1, (size_t)nl); return 0; }
    const char *p = s;
    while (*p) {
        char *end;
        long a = strtol(p, &end, 10), b = a;
        if (end == p) goto bad;
        p = end;
        if (*p == '-') {
            b = strtol(p + 1, &end, 10);
            if (end == p + 1) goto bad;
            p = end;
        }
        if (a < 0 || b < a || b >= nl) {
            snprintf(err, errlen, "layers %s: out of range 0-%d", s, nl - 1);
            return -1;
        }
        for (long l = a; l <= b; l++) sel[l] = 1;
        if (*p == ',') p++;
        else if (*p) goto bad;
    }
    return 0;
bad:
    snprintf(err, errlen, "layers '%s': expected e.g. 3, 2-6, 0,4,7 or all", s);
    return -1;
}

/* GPT-NeoX's tensors: qkv (attn, attn.qkv), o_bias (attn), up_bias (mlp, mlp.up),
 * down_bias (mlp; not mlp.down, whose units are the value vectors), the LayerNorms' biases
 * (norms, final_norm); Phi's lm_head_bias (lm_head); Phi-3's gate_up (mlp, mlp.gate_up) and
 * qkv (attn, attn.qkv). */
#define GROUP_ROLES 12
typedef struct { const char *group; const char *roles[GROUP_ROLES]; int layered; } spec_group;
static const spec_group GROUPS[] = {
    {"mlp", {"gate", "up", "down", "up_bias", "down_bias", "gate_up"}, 1},
    {"attn", {"q", "k", "v", "o", "q_bias", "k_bias", "v_bias", "qkv", "qkv_bias", "o_bias"}, 1},
    {"mlp.gate", {"gate"}, 1}, {"mlp.up", {"up", "up_bias"}, 1}, {"mlp.down", {"down"}, 1},
    {"mlp.gate_up", {"gate_up"}, 1},
    {"attn.q", {"q", "q_bias"}, 1}, {"attn.k", {"k", "k_bias"}, 1},
    {"attn.v", {"v", "v_bias"}, 1}, {"attn.o", {"o"}, 1}, {"attn.qkv", {"qkv", "qkv_bias"}, 1},
    {"norms", {"attn_norm", "mlp_norm", "q_norm", "k_norm", "attn_post_norm", "mlp_post_norm",
               "attn_norm_bias", "mlp_norm_bias"}, 1},
    {"layers", {"*"}, 1},
    {"embed", {"embed"}, 0}, {"lm_head", {"lm_head", "lm_head_bias"}, 0},
    {"final_norm", {"final_norm", "final_norm_bias"}, 0},
    {"all", {"*"}, 0},
};

static int role_in(const spec_group *g, const char *role) {
    for (int i = 0; i < GROUP_ROLES && g->roles[i]; i++)
        if (!strcmp(g->roles[i], "*") || !strcmp(g->roles[i], role)) return 1;
    return 0;
}

static int max_layer(const mu_param_info *p, int np) {
    int nl = 0;
    for (int i = 0; i < np; i++) if (p[i].layer + 1 > nl) nl = p[i].layer + 1;
    return nl;
}

/* Selects the tensors of one term into sel[np]. */
static int spec_term(const char *term, const mu_param_info *p, int np, unsigned char *sel,
                     char *err, size_t errlen) {
    char name[64];
    const char *colon = strchr(term, ':');
    size_t len = colon ? (size_t)(colon - term) : strlen(term);
    if (len >= sizeof name) len = sizeof name - 1;
    memcpy(name, term, len);
    name[len] = 0;
    const spec_group *g = NULL;
    for (size_t i = 0; i < sizeof GROUPS / sizeof *GROUPS; i++)
        if (!strcmp(GROUPS[i].group, name)) g = &GROUPS[i];
    if (!g) {
        snprintf(err, errlen, "mask spec '%s': unknown group '%s' (mlp, attn, layers, mlp.down, "
                 "attn.q, norms, embed, lm_head, all, ...)", term, name);
        return -1;
    }
    int nl = max_layer(p, np);
    unsigned char *layers = mu_xcalloc((size_t)nl + 1, 1);
    if (g->layered) {
        if (!colon) {
            snprintf(err, errlen, "mask spec '%s': needs layers, e.g. %s:2-6", term, name);
            free(layers);
            return -1;
        }
        if (parse_layers(colon + 1, nl, layers, err, errlen) < 0) { free(layers); return -1; }
    } else if (colon) {
        snprintf(err, errlen, "mask spec '%s': %s takes no layers", term, name);
        free(layers);
        return -1;
    }
    int hits = 0;
    for (int i = 0; i < np; i++) {
        if (!role_in(g, p[i].role)) continue;
        if (g->layered && (p[i].layer < 0 || !layers[p[i].layer])) continue;
        sel[i] = 1;
        hits++;
    }
    free(layers);
    if (!hits) {
        snprintf(err, errlen, "mask spec '%s': selects no parameter of this model", term);
        return -1;
    }
    return 0;
}

int mu_mask_from_spec(const char *spec, const mu_param_info *p, int np, mu_mask *out,
                      char *err, size_t errlen) {
    unsigned char *sel = mu_xcalloc((size_t)np, 1);
    char *copy = mu_xstrdup(spec), *save = NULL;
    int rc = 0, terms = 0;
    for (char *term = strtok_r(copy, "+", &save); term; term = strtok_r(NULL, "+", &save), terms++)
        if ((rc = spec_term(term, p, np, sel, err, errlen)) < 0) break;
    free(copy);
    if (rc == 0 && !terms) {   /* "" or only '+' */
        snprintf(err, errlen, "mask spec is empty");
        rc = -1;
    }
    if (rc == 0) {
        mu_mask_init(out, "matrix", mu_arch_numel(p, np));
        for (int i = 0; i < np && rc == 0; i++) {
            if (!sel[i]) continue;
            mu_mask_tensor *t = mu_mask_add(out, p[i].name, p[i].ndim, p[i].shape, MU_GRAN_MATRIX, 1,
                                            err, errlen);
            if (!t) rc = -1;
            else mu_mask_set(t, 0, 1);
        }
        if (rc < 0) mu_mask_free(out);
    }
    free(sel);
    return rc;
}

/* ---- streams ---- */

void mu_mask_write(const mu_mask *m, const char *path, const char *const *input_roles,
                   const char *const *input_paths, int n_inputs) {
    mu_writer *w = mu_writer_open(path, "mask");
    for (int i = 0; i < n_inputs; i++) mu_writer_add_input(w, input_roles[i], input_paths[i]);
    mu_pack_str(mu_writer_meta(w, "granularity"), m->granularity);
    msgpack_pack_int64(mu_writer_meta(w, "params_selected"), mu_mask_params(m));
    msgpack_pack_int64(mu_writer_meta(w, "params_total"), m->params_total);
    for (int i = 0; i < m->n; i++) {
        const mu_mask_tensor *t = &m->t[i];
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 7);
        mu_mask_pack_layout(pk, t->name, t->ndim, t->shape, t->gran, t->units);
        mu_pack_str(pk, "bits");
        size_t nb = (size_t)(t->units + 7) / 8;
        msgpack_pack_bin(pk, nb);
        msgpack_pack_bin_body(pk, t->bits, nb);
        mu_pack_kv_int(pk, "selected", mu_mask_selected(t));
        mu_pack_kv_int(pk, "params", mu_mask_tensor_params(t));
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

void mu_mask_pack_layout(msgpack_packer *pk, const char *name, int ndim, const int64_t *shape,
                         mu_granularity g, int64_t units) {
    mu_pack_kv_str(pk, "name", name);
    mu_pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)ndim);
    for (int d = 0; d < ndim; d++) msgpack_pack_int64(pk, shape[d]);
    mu_pack_kv_str(pk, "granularity", mu_gran_name(g));
    mu_pack_kv_int(pk, "units", units);
}

int mu_mask_read_layout(const msgpack_object *rec, char **name, int *ndim, int64_t shape[2],
                        mu_granularity *g, int64_t *units, char *msg, size_t len) {
    *name = mu_obj_strdup(mu_obj_get(rec, "name"));
    if (!*name) { snprintf(msg, len, "missing or non-string \"name\""); return -1; }
    const msgpack_object *o = mu_obj_get(rec, "shape");
    shape[0] = 0;
    shape[1] = 1;
    if (!o || o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 1 || o->via.array.size > 2) {
        snprintf(msg, len, "tensor %s: \"shape\" must be an array of 1 or 2 ints", *name);
        goto bad;
    }
    *ndim = (int)o->via.array.size;
    for (int d = 0; d < *ndim; d++)
        if (mu_obj_int(&o->via.array.ptr[d], &shape[d]) < 0 || shape[d] < 1 || shape[d] > (1LL << 40)) {
            snprintf(msg, len, "tensor %s: bad \"shape\"", *name);
            goto bad;
        }
    char *gs = mu_obj_strdup(mu_obj_get(rec, "granularity"));
    int gok = gs && mu_gran_parse(gs, g) == 0;
    free(gs);
    if (!gok) {
        snprintf(msg, len, "tensor %s: \"granularity\" must be element, neuron, head or matrix", *name);
        goto bad;
    }
    if (mu_obj_int(mu_obj_get(rec, "units"), units) < 0 || *units < 1) {
        snprintf(msg, len, "tensor %s: missing or bad \"units\"", *name);
        goto bad;
    }
    return 0;
bad:
    free(*name);
    *name = NULL;
    return -1;
}

/* Reads one record into m; 0 ok, -1 + message (without the file/record prefix). */
static int read_record(const msgpack_object *rec, mu_mask *m, char *msg, size_t len) {
    char *name;
    int ndim;
    int64_t shape[2], units, selected, params;
    mu_granularity g;
    if (mu_mask_read_layout(rec, &name, &ndim, shape, &g, &units, msg, len)) return -1;
    int rc = -1;
    const msgpack_object *o = mu_obj_get(rec, "bits");
    if (!o || o->type != MSGPACK_OBJECT_BIN || (int64_t)o->via.bin.size != (units + 7) / 8) {
        snprintf(msg, len, "tensor %s: \"bits\" must be bin of %lld bytes", name, (long long)((units + 7) / 8));
        goto out;
    }
    mu_mask_tensor *t = mu_mask_add(m, name, ndim, shape, g, units, msg, len);
    if (!t) goto out;
    memcpy(t->bits, o->via.bin.ptr, o->via.bin.size);
    if (units % 8) t->bits[units / 8] &= (uint8_t)((1u << (units % 8)) - 1);
    if (mu_obj_int(mu_obj_get(rec, "selected"), &selected) < 0 || selected != mu_mask_selected(t)) {
        snprintf(msg, len, "tensor %s: \"selected\" does not match the bits (%lld set)", name,
                 (long long)mu_mask_selected(t));
        goto out;
    }
    if (mu_obj_int(mu_obj_get(rec, "params"), &params) < 0 || params != mu_mask_tensor_params(t)) {
        snprintf(msg, len, "tensor %s: \"params\" does not match the bits (%lld)", name,
                 (long long)mu_mask_tensor_params(t));
        goto out;
    }
    rc = 0;
out:
    free(name);
    return rc;
}

int mu_mask_read(const char *path, mu_mask *m, char *err, size_t errlen) {
    mu_reader *r = mu_reader_open(path, "mask", err, errlen);
    if (!r) return -1;
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta");
    char *gran = mu_obj_strdup(mu_obj_get(meta, "granularity"));
    int64_t total = 0;
    mu_obj_int(mu_obj_get(meta, "params_total"), &total);
    mu_mask_init(m, gran ? gran : "mixed", total);
    free(gran);
    const msgpack_object *rec;
    int st;
    char msg[256];
    while ((st = mu_reader_next(r, &rec)) == 1) {
        if (read_record(rec, m, msg, sizeof msg) < 0) {
            snprintf(err, errlen, "%s: record %ld: %s", path, mu_reader_record_index(r), msg);
            goto fail;
        }
    }
    if (st < 0) {
        snprintf(err, errlen, "%s", mu_reader_error(r));
        goto fail;
    }
    mu_reader_close(r);
    return 0;
fail:
    mu_reader_close(r);
    mu_mask_free(m);
    return -1;
}

int mu_mask_from_arg(const char *arg, const mu_param_info *p, int np, mu_mask *out, char *err,
                     size_t errlen) {
    struct stat st;
    char sub[400];
    if (stat(arg, &st) != 0) {
        if (mu_mask_from_spec(arg, p, np, out, sub, sizeof sub) == 0) return 0;
        snprintf(err, errlen, "%s (and no file of that name)", sub);
        return -1;
    }
    if (mu_mask_read(arg, out, err, errlen)) return -1;
    if (mu_mask_check(out, p, np, sub, sizeof sub)) {
        snprintf(err, errlen, "%s: %s", arg, sub);
        mu_mask_free(out);
        return -1;
    }
    return 0;
}
