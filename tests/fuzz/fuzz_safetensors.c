/* fuzz_safetensors.c — mu_st_open and reading every tensor as f32, on any bytes; and the
 * same bytes as a soft-prompt file (lib/soft.h) for a model of width 64, and of any width. */
#include <string.h>
#include "fuzz.h"
#include "safetensors.h"
#include "soft.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const char *path = fuzz_file(data, size, ".safetensors");
    mu_st *s = mu_st_open(path, err, sizeof err);
    if (!s) { fuzz_check_err(err, path); return 0; }
    for (int i = 0; i < mu_st_count(s); i++) {
        mu_dtype dt; int ndim; int64_t shape[16]; const void *p; size_t nbytes;
        if (mu_st_info(s, i, &dt, &ndim, shape, &p, &nbytes)) abort();
        if (mu_st_find(s, mu_st_name(s, i)) < 0) abort();
        size_t n = 1;
        for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
        if (n > (1u << 20)) continue;
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        err[0] = 0;
        if (mu_st_read_f32(s, i, dst, n, err, sizeof err)) fuzz_check_err(err, path);
        free(dst);
    }
    mu_st_metadata(s, "format");
    mu_st_close(s);
    int n = 0;
    float *vec = NULL;
    err[0] = 0;
    if (mu_soft_prompt_read(path, 64, &n, &vec, err, sizeof err)) fuzz_check_err(err, path);
    else if (n < 1 || n > MU_SOFT_MAX || !vec) abort();
    free(vec);
    int d = 0;   /* the same, whatever its width (mu-dump --soft-prompt without --model) */
    vec = NULL;
    err[0] = 0;
    if (mu_soft_prompt_read_any(path, &n, &d, &vec, err, sizeof err)) fuzz_check_err(err, path);
    else if (n < 1 || n > MU_SOFT_MAX || d < 1 || !vec) abort();
    free(vec);
    return 0;
}
