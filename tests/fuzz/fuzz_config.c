/* fuzz_config.c — a Hugging Face config.json on any bytes: parsed with every family's keys
 * (a failure names the file), its parameter list made, and written back as the family's
 * config class writes it; what is written reads again, and writes the same bytes again. */
#include "fuzz.h"
#include "arch.h"
#include "config.h"

/* The bytes of path (malloc'd, *n), or NULL. */
static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 16);
    *n = b ? fread(b, 1, 1 << 16, f) : 0;
    fclose(f);
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "", out[600], again[600];
    const char *path = fuzz_file(data, size, ".json");
    mu_config c, d;
    if (mu_config_from_json_file(path, &c, err, sizeof err)) { fuzz_check_err(err, path); return 0; }
    mu_param_info *p = NULL;
    int n = mu_arch_params(&c, &p);
    if (n > 0) mu_arch_numel(p, n);
    free(p);
    snprintf(out, sizeof out, "%s.out.json", path);
    snprintf(again, sizeof again, "%s.again.json", path);
    err[0] = 0;
    if (mu_config_write_json(&c, out, err, sizeof err)) { fuzz_check_err(err, out); return 0; }
    if (mu_config_from_json_file(out, &d, err, sizeof err)) {
        fprintf(stderr, "the config written does not read again: %s\n", err);
        abort();
    }
    if (mu_config_write_json(&d, again, err, sizeof err)) { fprintf(stderr, "%s\n", err); abort(); }
    size_t na = 0, nb = 0;
    char *a = slurp(out, &na), *b = slurp(again, &nb);
    if (!a || !b || na != nb || memcmp(a, b, na)) { fprintf(stderr, "written twice, two texts\n"); abort(); }
    free(a); free(b);
    unlink(out); unlink(again);
    return 0;
}
