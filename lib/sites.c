/* sites.c — parsing and resolving site addresses "site:layers:positions" (sites.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "sites.h"

int mu_site_from_name(const char *name, size_t len, mu_site *out)
{
    for (int s = 0; s < MU_SITE_COUNT; s++) {
        const char *n = mu_site_name((mu_site)s);
        if (strlen(n) == len && !strncmp(n, name, len)) { *out = (mu_site)s; return 0; }
    }
    return -1;
}

/* A decimal integer (optionally negative when allow_neg) filling exactly [s, e). */
static int parse_int(const char *s, const char *e, int allow_neg, int *out)
{
    if (s == e) return -1;
    const char *p = s;
    if (*p == '-') { if (!allow_neg) return -1; p++; }
    if (p == e) return -1;
    long v = 0;
    for (; p < e; p++) {
        if (!isdigit((unsigned char)*p)) return -1;
        v = v * 10 + (*p - '0');
        if (v > 1000000000L) return -1;
    }
    *out = (int)(*s == '-' ? -v : v);
    return 0;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Sorts and removes duplicates; returns the new count. */
static int sort_unique(int *v, int n)
{
    qsort(v, n, sizeof *v, cmp_int);
    int k = 0;
    for (int i = 0; i < n; i++) if (k == 0 || v[i] != v[k - 1]) v[k++] = v[i];
    return k;
}

/* layers: "all" | items "a" or "a-b" separated by commas. */
static int parse_layers(const char *s, const char *e, int n_layer, mu_site_spec *out,
                        const char *spec, char *err, size_t errlen)
{
    out->layers = malloc((n_layer > 0 ? n_layer : 1) * sizeof *out->layers);
    if (!out->layers) { snprintf(err, errlen, "out of memory"); return -1; }
    out->n_layers = 0;
    if (s == e || (e - s == 3 && !strncmp(s, "all", 3))) {
        for (int L = 0; L < n_layer; L++) out->layers[out->n_layers++] = L;
        return 0;
    }
    char *seen = calloc(n_layer > 0 ? n_layer : 1, 1);
    if (!seen) { snprintf(err, errlen, "out of memory"); return -1; }
    for (const char *p = s; p < e;) {
        const char *q = memchr(p, ',', e - p);
        if (!q) q = e;
        const char *dash = memchr(p, '-', q - p);
        int a, b;
        if (dash ? parse_int(p, dash, 0, &a) || parse_int(dash + 1, q, 0, &b)
                 : parse_int(p, q, 0, &a)) {
            snprintf(err, errlen, "bad site spec '%s': layers '%.*s' (expected all, 3, 2-6 or 0,4,7)",
                     spec, (int)(e - s), s);
            free(seen);
            return -1;
        }
        if (!dash) b = a;
        if (a > b || b >= n_layer) {
            snprintf(err, errlen, "bad site spec '%s': layer range %d-%d outside the model's 0-%d",
                     spec, a, b, n_layer - 1);
            free(seen);
            return -1;
        }
        for (int L = a; L <= b; L++) seen[L] = 1;
        p = q < e ? q + 1 : e;
        if (q < e && p == e) {
            snprintf(err, errlen, "bad site spec '%s': trailing comma in layers", spec);
            free(seen);
            return -1;
        }
    }
    for (int L = 0; L < n_layer; L++) if (seen[L]) out->layers[out->n_layers++] = L;
    free(seen);
    return 0;
}

static int parse_positions(const char *s, const char *e, mu_site_spec *out, const char *spec,
                           char *err, size_t errlen)
{
    static const struct { const char *name; mu_pos_kind kind; } named[] = {
        { "all", MU_POS_ALL }, { "last", MU_POS_LAST }, { "subject_last", MU_POS_SUBJECT_LAST },
        { "subject", MU_POS_SUBJECT } };
    out->n_idx = 0;
    out->pos = MU_POS_ALL;
    if (s == e) return 0;
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
        if ((size_t)(e - s) == strlen(named[i].name) && !strncmp(s, named[i].name, e - s)) {
            out->pos = named[i].kind;
            return 0;
        }
    out->pos = MU_POS_INDICES;
    for (const char *p = s; p <= e;) {
        const char *q = memchr(p, ',', e - p);
        if (!q) q = e;
        if (out->n_idx == MU_SITE_MAX_IDX || parse_int(p, q, 1, &out->idx[out->n_idx])) {
            snprintf(err, errlen, out->n_idx == MU_SITE_MAX_IDX
                     ? "bad site spec '%s': more than 64 positions"
                     : "bad site spec '%s': positions must be all, last, subject_last, subject or indices",
                     spec);
            return -1;
        }
        out->n_idx++;
        p = q + 1;
    }
    return 0;
}

int mu_site_parse(const char *spec, int n_layer, mu_site_spec *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    const char *end = spec + strlen(spec);
    const char *c1 = memchr(spec, ':', end - spec);
    const char *name_end = c1 ? c1 : end;
    if (mu_site_from_name(spec, name_end - spec, &out->site)) {
        snprintf(err, errlen, "bad site spec '%s': unknown site '%.*s' (embed, resid_pre, attn_head, "
                 "attn_out, resid_mid, mlp_in, mlp_post, mlp_out, resid_post, logits)",
                 spec, (int)(name_end - spec), spec);
        return -1;
    }
    const char *ls = c1 ? c1 + 1 : end;
    const char *c2 = c1 ? memchr(ls, ':', end - ls) : NULL;
    const char *le = c2 ? c2 : end;
    const char *ps = c2 ? c2 + 1 : end;
    if (c2 && memchr(ps, ':', end - ps)) {
        snprintf(err, errlen, "bad site spec '%s': expected site:layers:positions", spec);
        return -1;
    }
    if (mu_site_is_layered(out->site)) {
        if (parse_layers(ls, le, n_layer, out, spec, err, errlen)) {
            mu_site_spec_free(out);
            return -1;
        }
    } else if (!(ls == le || (le - ls == 3 && !strncmp(ls, "all", 3)))) {
        snprintf(err, errlen, "bad site spec '%s': %s has no layers", spec, mu_site_name(out->site));
        return -1;
    }
    if (parse_positions(ps, end, out, spec, err, errlen)) {
        mu_site_spec_free(out);
        return -1;
    }
    return 0;
}

void mu_site_spec_free(mu_site_spec *s)
{
    free(s->layers);
    s->layers = NULL;
    s->n_layers = 0;
}

int mu_site_spec_has_layer(const mu_site_spec *s, int layer)
{
    if (!mu_site_is_layered(s->site)) return 1;
    for (int i = 0; i < s->n_layers; i++) if (s->layers[i] == layer) return 1;
    return 0;
}

int mu_site_positions(const mu_site_spec *s, int len, int subj_start, int subj_end, int *out,
                      int max, char *err, size_t errlen)
{
    int n = 0;
    int has_subj = subj_start >= 0 && subj_end > subj_start && subj_end <= len;
    if ((s->pos == MU_POS_SUBJECT || s->pos == MU_POS_SUBJECT_LAST) && !has_subj) {
        snprintf(err, errlen, "positions '%s' need a subject span inside the row (got [%d, %d) in %d tokens)",
                 s->pos == MU_POS_SUBJECT ? "subject" : "subject_last", subj_start, subj_end, len);
        return -1;
    }
    switch (s->pos) {
    case MU_POS_ALL:
        for (int t = 0; t < len && n < max; t++) out[n++] = t;
        return n;
    case MU_POS_LAST:
        if (len > 0 && max > 0) out[n++] = len - 1;
        return n;
    case MU_POS_SUBJECT_LAST:
        if (max > 0) out[n++] = subj_end - 1;
        return n;
    case MU_POS_SUBJECT:
        for (int t = subj_start; t < subj_end && n < max; t++) out[n++] = t;
        return n;
    case MU_POS_INDICES:
        for (int i = 0; i < s->n_idx && n < max; i++) {
            int t = s->idx[i] < 0 ? len + s->idx[i] : s->idx[i];
            if (t < 0 || t >= len) {
                snprintf(err, errlen, "position %d outside a row of %d tokens", s->idx[i], len);
                return -1;
            }
            out[n++] = t;
        }
        return sort_unique(out, n);
    }
    return n;
}

/* Writes layers as ranges "0-3,5". */
static size_t format_layers(const mu_site_spec *s, char *buf, size_t buflen)
{
    size_t k = 0;
    for (int i = 0; i < s->n_layers;) {
        int j = i;
        while (j + 1 < s->n_layers && s->layers[j + 1] == s->layers[j] + 1) j++;
        int w = i == j ? snprintf(buf + k, k < buflen ? buflen - k : 0, "%s%d", k ? "," : "",
                                  s->layers[i])
                       : snprintf(buf + k, k < buflen ? buflen - k : 0, "%s%d-%d", k ? "," : "",
                                  s->layers[i], s->layers[j]);
        k += w > 0 ? (size_t)w : 0;
        i = j + 1;
    }
    return k;
}

void mu_site_spec_format(const mu_site_spec *s, char *buf, size_t buflen)
{
    static const char *pos_names[] = { "all", "last", "subject_last", "subject" };
    if (!buflen) return;
    char layers[512] = "all", pos[512];
    if (mu_site_is_layered(s->site)) format_layers(s, layers, sizeof layers);
    if (s->pos != MU_POS_INDICES) {
        snprintf(pos, sizeof pos, "%s", pos_names[s->pos]);
    } else {
        size_t k = 0;
        pos[0] = 0;
        for (int i = 0; i < s->n_idx && k < sizeof pos; i++) {
            int w = snprintf(pos + k, sizeof pos - k, "%s%d", i ? "," : "", s->idx[i]);
            k += w > 0 ? (size_t)w : 0;
        }
    }
    snprintf(buf, buflen, "%s:%s:%s", mu_site_name(s->site), layers, pos);
}
