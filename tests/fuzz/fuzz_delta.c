/* fuzz_delta.c — any bytes as a delta (man/mu-delta.5: dense, sparse and low-rank entries)
 * and as the weights of a PEFT LoRA adapter (with the parity golden's adapter_config.json),
 * each validated against the tiny Llama of tests/golden/parity ($MU_FUZZ_DELTA_BASE) and,
 * once accepted, applied to every tensor of the model, at a strength the last byte picks
 * (1, -1, 0.5 or 2: --scaled-delta's paths too). */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"
#include "arch.h"
#include "ckpt.h"

static const char *base_dir(void) {
    const char *b = getenv("MU_FUZZ_DELTA_BASE");
    return b && *b ? b : "tests/golden/parity";
}

static char dir[512], w[600];

static void remove_peft_dir(void) {
    char cfg[600];
    snprintf(cfg, sizeof cfg, "%s/adapter_config.json", dir);
    unlink(cfg);
    unlink(w);
    rmdir(dir);
}

/* An adapter directory of this process holding the golden's config; data is to go to
 * its adapter_model.safetensors (*weights). */
static const char *peft_dir(const char **weights) {
    if (!dir[0]) {
        const char *t = getenv("TMPDIR");
        char src[600], dst[600], buf[1 << 14];
        snprintf(dir, sizeof dir, "%s/mu-fuzz-peft-%ld", t && *t ? t : "/tmp", (long)getpid());
        snprintf(src, sizeof src, "%s/peft_adapter/adapter_config.json", base_dir());
        snprintf(dst, sizeof dst, "%s/adapter_config.json", dir);
        mkdir(dir, 0700);
        FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
        size_t n;
        if (!in || !out) abort();
        while ((n = fread(buf, 1, sizeof buf, in)) > 0)
            if (fwrite(buf, 1, n, out) != n) abort();
        if (fclose(in) || fclose(out)) abort();
        snprintf(w, sizeof w, "%s/adapter_model.safetensors", dir);
        atexit(remove_peft_dir);
    }
    *weights = w;
    return dir;
}

/* Opens the base, stacks path (a file or an adapter directory) at strength scale and reads
 * every tensor through it. */
static void try_delta(const char *path, float scale) {
    char err[512] = "";
    mu_ckpt *c = mu_ckpt_open(base_dir(), err, sizeof err);
    if (!c) { fprintf(stderr, "fuzz_delta: the base model: %s\n", err); abort(); }
    if (mu_ckpt_add_delta_scaled(c, path, scale, err, sizeof err)) {
        fuzz_check_err(err, path);   /* an adapter's file names hold its directory */
        mu_ckpt_close(c);
        return;
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
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const float scales[4] = {1, -1, 0.5f, 2};
    const char *path = fuzz_file(data, size, ".safetensors"), *weights;
    float scale = scales[size ? data[size - 1] & 3 : 0];
    try_delta(path, scale);
    const char *dir = peft_dir(&weights);
    FILE *f = fopen(weights, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) abort();
    try_delta(dir, scale);
    return 0;
}
