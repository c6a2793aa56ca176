/* fuzz_dataset.c — the data set reader (JSON Lines, JSON arrays, CSV, picked by the
 * first byte as for a file without a known extension) and a template filled from every
 * record, on any bytes. */
#include <string.h>
#include <jansson.h>
#include "fuzz.h"
#include "dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const char *path = fuzz_file(data, size, ".data");
    mu_dataset *ds = mu_dataset_load(path, MU_DS_AUTO, NULL, err, sizeof err);
    if (!ds) { fuzz_check_err(err, path); return 0; }
    mu_template *t = mu_template_parse("Q: {question} {name}\\n{{x}} A:", err, sizeof err);
    if (!t) abort();
    for (size_t i = 0; i < mu_dataset_len(ds); i++) {
        char *text; size_t len; mu_span spans[2];
        if (mu_template_fill(t, mu_dataset_record(ds, i), &text, &len, spans, err,
                             sizeof err) == 0) {
            for (int k = 0; k < 2; k++)
                if (spans[k].start > spans[k].end || spans[k].end > len) abort();
            free(text);
        }
    }
    mu_template_free(t);
    mu_dataset_free(ds);
    return 0;
}
