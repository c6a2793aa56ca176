/* dataset.h — records in (JSON Lines, a JSON array of objects, CSV) and record templates.
 *
 * Every record is a JSON object (jansson); CSV fields are strings, named by the header
 * row or, for a header-less file such as MMLU, by a given column list. Quoted CSV fields
 * may hold commas, doubled quotes and newlines. All text is checked to be valid UTF-8.
 * Errors are one line: "file: record N: what" (N counts data records from 0) or
 * "file: line L: what" for a syntax error. */
#ifndef MU_DATASET_H
#define MU_DATASET_H
#include <jansson.h>
#include <stddef.h>

typedef enum { MU_DS_AUTO = 0, MU_DS_JSONL, MU_DS_JSON, MU_DS_CSV } mu_ds_format;

typedef struct mu_dataset mu_dataset;

/* path "-" = stdin. format AUTO: by extension (.jsonl .json .csv), else by the first
 * non-blank byte ('[' JSON array, '{' JSON Lines, else CSV). columns: comma-separated
 * names for a CSV without a header row (NULL: the first row is the header). */
mu_dataset *mu_dataset_load(const char *path, mu_ds_format format, const char *columns,
                            char *err, size_t errlen);
size_t mu_dataset_len(const mu_dataset *ds);
json_t *mu_dataset_record(const mu_dataset *ds, size_t i);   /* borrowed */
const char *mu_dataset_path(const mu_dataset *ds);
void mu_dataset_free(mu_dataset *ds);
/* Parses CSV text into records (used by mu_dataset_load; exposed for tests). */
mu_dataset *mu_dataset_from_csv(const char *name, const char *text, size_t len,
                                const char *columns, char *err, size_t errlen);

/* ---- templates ----
 * "Fact: {athlete} plays the sport of" — {name} is replaced by the record's field name
 * (strings as they are, numbers in JSON form, true/false; null, lists and objects are an
 * error). Escapes: \n \t \\ \{ \}; "{{" and "}}" are literal braces. */
typedef struct mu_template mu_template;

typedef struct {
    const char *field;    /* borrowed from the template */
    size_t start, end;    /* byte range of the inserted value in the filled text */
} mu_span;

mu_template *mu_template_parse(const char *spec, char *err, size_t errlen);
void mu_template_free(mu_template *t);
/* Number of {field} placeholders and the name of the i-th one. */
int mu_template_nfields(const mu_template *t);
const char *mu_template_field(const mu_template *t, int i);
/* Fills the template from rec. *text is malloc'd and NUL-terminated. spans (may be NULL)
 * receives mu_template_nfields entries, in placeholder order. Returns 0, or -1 with
 * "template field {x}: not in the record" (or "... is a list") in err. */
int mu_template_fill(const mu_template *t, json_t *rec, char **text, size_t *len,
                     mu_span *spans, char *err, size_t errlen);
/* A field value as text (see above); malloc'd, NULL with a message in err if unusable. */
char *mu_field_text(json_t *v, const char *field, char *err, size_t errlen);
#endif
