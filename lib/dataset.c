/* dataset.c — JSON Lines / JSON array / CSV records and record templates (dataset.h). */
#include "err.h"
#include "cli.h"
#include "dataset.h"
#include "utf8.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mu_dataset {
    char *path;
    json_t **rec;
    size_t n, cap;
};


static mu_dataset *ds_new(const char *path) {
    mu_dataset *ds = calloc(1, sizeof *ds);
    if (ds) ds->path = strdup(path);
    return ds;
}

static int ds_push(mu_dataset *ds, json_t *r) {
    if (ds->n == ds->cap) {
        size_t nc = ds->cap ? ds->cap * 2 : 256;
        json_t **nr = realloc(ds->rec, nc * sizeof *nr);
        if (!nr) return -1;
        ds->rec = nr; ds->cap = nc;
    }
    ds->rec[ds->n++] = r;
    return 0;
}

void mu_dataset_free(mu_dataset *ds) {
    if (!ds) return;
    for (size_t i = 0; i < ds->n; i++) json_decref(ds->rec[i]);
    free(ds->rec); free(ds->path); free(ds);
}
size_t mu_dataset_len(const mu_dataset *ds) { return ds->n; }
json_t *mu_dataset_record(const mu_dataset *ds, size_t i) { return i < ds->n ? ds->rec[i] : NULL; }
const char *mu_dataset_path(const mu_dataset *ds) { return ds->path; }

/* ---------------------------------------------------------------- reading files */
static char *slurp(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) { mu_set_err(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    for (;;) {
        if (!b) break;
        size_t r = fread(b + n, 1, cap - n, f);
        n += r;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(b, cap + 1);
        if (!nb) { free(b); b = NULL; break; }
        b = nb;
    }
    int ioerr = ferror(f);
    if (f != stdin) fclose(f);
    if (!b || ioerr) { free(b); mu_set_err(err, errlen, "%s: %s", path, b ? "read error" : "out of memory"); return NULL; }
    b[n] = 0;
    *len = n;
    return b;
}

static mu_dataset *from_jsonl(const char *path, const char *text, size_t len, char *err, size_t errlen) {
    mu_dataset *ds = ds_new(path);
    size_t i = 0, line = 0;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t e = nl ? (size_t)(nl - text) : len;
        line++;
        size_t s = i;
        while (s < e && (text[s] == ' ' || text[s] == '\t' || text[s] == '\r')) s++;
        if (s < e) {
            size_t bad;
            if (!mu_utf8_valid(text + s, e - s, &bad)) {
                mu_set_err(err, errlen, "%s: record %zu (line %zu): invalid UTF-8 at byte %zu", path, ds->n, line, bad);
                mu_dataset_free(ds); return NULL;
            }
            json_error_t je;
            json_t *r = json_loadb(text + s, e - s, 0, &je);
            if (!r) {
                mu_set_err(err, errlen, "%s: record %zu (line %zu): %s", path, ds->n, line, je.text);
                mu_dataset_free(ds); return NULL;
            }
            if (!json_is_object(r)) {
                json_decref(r);
                mu_set_err(err, errlen, "%s: record %zu (line %zu): not a JSON object", path, ds->n, line);
                mu_dataset_free(ds); return NULL;
            }
            ds_push(ds, r);
        }
        i = e + 1;
    }
    return ds;
}

static mu_dataset *from_json_array(const char *path, const char *text, size_t len, char *err, size_t errlen) {
    size_t bad;
    if (!mu_utf8_valid(text, len, &bad)) { mu_set_err(err, errlen, "%s: invalid UTF-8 at byte %zu", path, bad); return NULL; }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) { mu_set_err(err, errlen, "%s: line %d: %s", path, je.line, je.text); return NULL; }
    if (!json_is_array(root)) { json_decref(root); mu_set_err(err, errlen, "%s: not a JSON array of records", path); return NULL; }
    mu_dataset *ds = ds_new(path);
    size_t i;
    json_t *r;
    json_array_foreach(root, i, r) {
        if (!json_is_object(r)) {
            mu_set_err(err, errlen, "%s: record %zu: not a JSON object", path, i);
            json_decref(root); mu_dataset_free(ds); return NULL;
        }
        json_incref(r);
        ds_push(ds, r);
    }
    json_decref(root);
    return ds;
}

/* ---- CSV (RFC 4180: quoted fields with "" escapes and embedded newlines; CRLF ok) ---- */
typedef struct { char **f; size_t n, cap; } csv_row;

static void row_clear(csv_row *r) { for (size_t i = 0; i < r->n; i++) free(r->f[i]); r->n = 0; }

/* Reads one row starting at *pos. 1: got a row, 0: end of input, -1: error. */
static int csv_next_row(const char *t, size_t len, size_t *pos, size_t *line, csv_row *row, char *why, size_t wn) {
    size_t i = *pos;
    row_clear(row);
    if (i >= len) return 0;
    char *buf = NULL;
    size_t bl = 0, bc = 0;
    for (;;) {
        int quoted = i < len && t[i] == '"';
        bl = 0;
        if (quoted) {
            size_t qline = *line;
            i++;
            for (;;) {
                if (i >= len) { free(buf); snprintf(why, wn, "line %zu: unterminated quoted field", qline); return -1; }
                if (t[i] == '"') {
                    if (i + 1 < len && t[i + 1] == '"') { i += 2; if (bl + 1 >= bc) { bc = bc * 2 + 64; buf = realloc(buf, bc); } buf[bl++] = '"'; continue; }
                    i++;
                    break;
                }
                if (t[i] == '\n') (*line)++;
                if (bl + 1 >= bc) { bc = bc * 2 + 64; buf = realloc(buf, bc); }
                buf[bl++] = t[i++];
            }
            if (i < len && t[i] != ',' && t[i] != '\n' && t[i] != '\r') {
                free(buf); snprintf(why, wn, "line %zu: text after a closing quote", *line); return -1;
            }
        } else {
            while (i < len && t[i] != ',' && t[i] != '\n' && !(t[i] == '\r' && (i + 1 == len || t[i + 1] == '\n'))) {
                if (t[i] == '"') { free(buf); snprintf(why, wn, "line %zu: quote inside an unquoted field", *line); return -1; }
                if (bl + 1 >= bc) { bc = bc * 2 + 64; buf = realloc(buf, bc); }
                buf[bl++] = t[i++];
            }
        }
        char *f = malloc(bl + 1);
        if (bl) memcpy(f, buf, bl);
        f[bl] = 0;
        if (row->n == row->cap) { row->cap = row->cap * 2 + 16; row->f = realloc(row->f, row->cap * sizeof *row->f); }
        row->f[row->n++] = f;
        if (i < len && t[i] == ',') { i++; continue; }
        if (i < len && t[i] == '\r') i++;
        if (i < len && t[i] == '\n') i++;
        (*line)++;
        break;
    }
    free(buf);
    *pos = i;
    return 1;
}

static int split_columns(const char *columns, csv_row *hdr) {
    const char *p = columns;
    while (*p) {
        const char *c = strchr(p, ',');
        size_t l = c ? (size_t)(c - p) : strlen(p);
        char *f = malloc(l + 1);
        memcpy(f, p, l); f[l] = 0;
        if (hdr->n == hdr->cap) { hdr->cap = hdr->cap * 2 + 16; hdr->f = realloc(hdr->f, hdr->cap * sizeof *hdr->f); }
        hdr->f[hdr->n++] = f;
        if (!c) break;
        p = c + 1;
    }
    return (int)hdr->n;
}

mu_dataset *mu_dataset_from_csv(const char *name, const char *text, size_t len, const char *columns, char *err, size_t errlen) {
    csv_row hdr = { 0 }, row = { 0 };
    size_t pos = 0, line = 1;
    char why[160];
    mu_dataset *ds = ds_new(name);
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3)) pos = 3;   /* BOM */
    if (columns) split_columns(columns, &hdr);
    else {
        int r = csv_next_row(text, len, &pos, &line, &hdr, why, sizeof why);
        if (r < 0) { mu_set_err(err, errlen, "%s: header: %s", name, why); goto fail; }
        if (r == 0) { mu_set_err(err, errlen, "%s: empty CSV (no header row)", name); goto fail; }
    }
    for (size_t k = 0; k < hdr.n; k++) {
        size_t bad;
        if (!mu_utf8_valid(hdr.f[k], strlen(hdr.f[k]), &bad)) { mu_set_err(err, errlen, "%s: header: invalid UTF-8", name); goto fail; }
    }
    for (;;) {
        size_t row_line = line;
        int r = csv_next_row(text, len, &pos, &line, &row, why, sizeof why);
        if (r < 0) { mu_set_err(err, errlen, "%s: record %zu: %s", name, ds->n, why); goto fail; }
        if (r == 0) break;
        if (row.n == 1 && !row.f[0][0]) continue;       /* blank line */
        if (row.n != hdr.n) {
            mu_set_err(err, errlen, "%s: record %zu (line %zu): %zu fields, header has %zu", name, ds->n, row_line, row.n, hdr.n);
            goto fail;
        }
        json_t *o = json_object();
        for (size_t k = 0; k < row.n; k++) {
            size_t bad;
            if (!mu_utf8_valid(row.f[k], strlen(row.f[k]), &bad)) {
                json_decref(o);
                mu_set_err(err, errlen, "%s: record %zu (line %zu): field %s: invalid UTF-8 at byte %zu", name, ds->n, row_line, hdr.f[k], bad);
                goto fail;
            }
            json_object_set_new(o, hdr.f[k], json_string(row.f[k]));
        }
        ds_push(ds, o);
    }
    row_clear(&hdr); row_clear(&row); free(hdr.f); free(row.f);
    return ds;
fail:
    row_clear(&hdr); row_clear(&row); free(hdr.f); free(row.f);
    mu_dataset_free(ds);
    return NULL;
}

mu_dataset *mu_dataset_load(const char *path, mu_ds_format format, const char *columns, char *err, size_t errlen) {
    size_t len;
    char *text = slurp(path, &len, err, errlen);
    if (!text) return NULL;
    const char *name = strcmp(path, "-") ? path : "(stdin)";
    if (format == MU_DS_AUTO) {
        if (mu_str_ends_with(path, ".jsonl") || mu_str_ends_with(path, ".ndjson")) format = MU_DS_JSONL;
        else if (mu_str_ends_with(path, ".json")) format = MU_DS_JSON;
        else if (mu_str_ends_with(path, ".csv")) format = MU_DS_CSV;
        else {
            size_t i = 0;
            while (i < len && strchr(" \t\r\n", text[i])) i++;
            format = i < len && text[i] == '[' ? MU_DS_JSON : i < len && text[i] == '{' ? MU_DS_JSONL : MU_DS_CSV;
        }
        if (format == MU_DS_JSON) {   /* a .json file holding JSON Lines is common */
            size_t i = 0;
            while (i < len && strchr(" \t\r\n", text[i])) i++;
            if (i < len && text[i] == '{') format = MU_DS_JSONL;
        }
    }
    mu_dataset *ds = format == MU_DS_JSONL ? from_jsonl(name, text, len, err, errlen)
                   : format == MU_DS_JSON ? from_json_array(name, text, len, err, errlen)
                   : mu_dataset_from_csv(name, text, len, columns, err, errlen);
    free(text);
    return ds;
}

/* ---------------------------------------------------------------- templates */
typedef struct { int is_field; char *s; size_t len; } tpart;
struct mu_template { tpart *p; int n; int nfields; char **fields; };

static void tpl_add(mu_template *t, int is_field, const char *s, size_t len) {
    if (!is_field && t->n && !t->p[t->n - 1].is_field) {   /* join literal runs */
        tpart *q = &t->p[t->n - 1];
        q->s = realloc(q->s, q->len + len + 1);
        memcpy(q->s + q->len, s, len); q->len += len; q->s[q->len] = 0;
        return;
    }
    t->p = realloc(t->p, (size_t)(t->n + 1) * sizeof *t->p);
    tpart *q = &t->p[t->n++];
    q->is_field = is_field; q->len = len;
    q->s = malloc(len + 1); memcpy(q->s, s, len); q->s[len] = 0;
    if (is_field) {
        t->fields = realloc(t->fields, (size_t)(t->nfields + 1) * sizeof *t->fields);
        t->fields[t->nfields++] = q->s;
    }
}

void mu_template_free(mu_template *t) {
    if (!t) return;
    for (int i = 0; i < t->n; i++) free(t->p[i].s);
    free(t->p); free(t->fields); free(t);
}

mu_template *mu_template_parse(const char *spec, char *err, size_t errlen) {
    mu_template *t = calloc(1, sizeof *t);
    size_t bad;
    if (!mu_utf8_valid(spec, strlen(spec), &bad)) { mu_set_err(err, errlen, "template: invalid UTF-8 at byte %zu", bad); free(t); return NULL; }
    for (const char *p = spec; *p;) {
        if (*p == '\\') {
            char c = p[1];
            const char *lit = c == 'n' ? "\n" : c == 't' ? "\t" : c == '\\' ? "\\" : c == '{' ? "{" : c == '}' ? "}" : c == 'r' ? "\r" : NULL;
            if (!lit) { mu_set_err(err, errlen, "template: unknown escape \\%c (use \\n \\t \\\\ \\{ \\})", c ? c : '0'); mu_template_free(t); return NULL; }
            tpl_add(t, 0, lit, 1);
            p += 2;
        } else if (p[0] == '{' && p[1] == '{') { tpl_add(t, 0, "{", 1); p += 2; }
        else if (p[0] == '}' && p[1] == '}') { tpl_add(t, 0, "}", 1); p += 2; }
        else if (*p == '{') {
            const char *e = strchr(p + 1, '}');
            if (!e || e == p + 1) { mu_set_err(err, errlen, "template: unclosed or empty {field} at \"%.20s\"", p); mu_template_free(t); return NULL; }
            tpl_add(t, 1, p + 1, (size_t)(e - p - 1));
            p = e + 1;
        } else if (*p == '}') {
            mu_set_err(err, errlen, "template: unmatched } (write }} for a literal brace)"); mu_template_free(t); return NULL;
        } else {
            const char *q = p;
            while (*q && *q != '\\' && *q != '{' && *q != '}') q++;
            tpl_add(t, 0, p, (size_t)(q - p));
            p = q;
        }
    }
    return t;
}

int mu_template_nfields(const mu_template *t) { return t->nfields; }
const char *mu_template_field(const mu_template *t, int i) { return i >= 0 && i < t->nfields ? t->fields[i] : NULL; }

char *mu_field_text(json_t *v, const char *field, char *err, size_t errlen) {
    char buf[64];
    if (!v) { mu_set_err(err, errlen, "template field {%s}: not in the record", field); return NULL; }
    if (json_is_string(v)) return strdup(json_string_value(v));
    if (json_is_integer(v)) { snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return strdup(buf); }
    if (json_is_real(v)) { snprintf(buf, sizeof buf, "%.17g", json_real_value(v)); return strdup(buf); }
    if (json_is_true(v)) return strdup("true");
    if (json_is_false(v)) return strdup("false");
    mu_set_err(err, errlen, "template field {%s}: is %s, not text", field,
           json_is_null(v) ? "null" : json_is_array(v) ? "a list" : "an object");
    return NULL;
}

int mu_template_fill(const mu_template *t, json_t *rec, char **text, size_t *len, mu_span *spans, char *err, size_t errlen) {
    size_t cap = 256, n = 0;
    char *out = malloc(cap);
    int fi = 0;
    for (int i = 0; i < t->n; i++) {
        const tpart *p = &t->p[i];
        char *val = NULL;
        const char *s = p->s;
        size_t l = p->len;
        if (p->is_field) {
            val = mu_field_text(json_object_get(rec, p->s), p->s, err, errlen);
            if (!val) { free(out); return -1; }
            s = val; l = strlen(val);
            if (spans) { spans[fi].field = p->s; spans[fi].start = n; spans[fi].end = n + l; }
            fi++;
        }
        if (n + l + 1 > cap) { cap = (n + l + 1) * 2; out = realloc(out, cap); }
        memcpy(out + n, s, l); n += l;
        free(val);
    }
    out[n] = 0;
    *text = out; *len = n;
    return 0;
}
