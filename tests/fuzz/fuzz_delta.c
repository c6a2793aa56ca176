/* fuzz_delta.c — a delta (man/mu-delta.5: dense, sparse and low-rank entries) validated
 * against the tiny Llama of tests/golden/parity ($MU_FUZZ_DELTA_BASE) and, once accepted,
 * applied to every tensor of the model, on any bytes. */
#include <stdlib.h>
#include <string.h>
#include "fuzz.h"
#include "arch.h"
#include "ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const char *base = getenv("MU_FUZZ_DELTA_BASE");
    mu_ckpt *c = mu_ckpt_open(base && *base ? base : "tests/golden/parity", err, sizeof err);
    if (!c) { fprintf(stderr, "fuzz_delta: the base model: %s\n", err); abort(); }
    const char *path = fuzz_file(data, size, ".safetensors");
    if (mu_ckpt_add_delta(c, path, err, sizeof err)) {
        fuzz_check_err(err, path);
        mu_ckpt_close(c);
        return 0;
    }
    mu_param_info *p;
    int n = mu_arch_params(mu_ckpt_config(c), &p);
    for (int i = 0; i < n; i++) {
        if (!mu_ckpt_has(c, p[i].name)) continue;   /* a tied head */
        int64_t numel = mu_shape_numel(p[i].ndim, p[i].shape);
        float *dst = malloc((size_t)numel * sizeof *dst);
        err[0] = 0;
        /* accepted at add: applying it cannot fail */
        if (mu_ckpt_read_f32(c, p[i].name, p[i].ndim, p[i].shape, dst, err, sizeof err)) {
            fprintf(stderr, "fuzz_delta: accepted, then %s\n", err);
            abort();
        }
        (void)mu_ckpt_delta_elems(c, 0, p[i].name);
        free(dst);
    }
    free(p);
    mu_ckpt_close(c);
    return 0;
}
