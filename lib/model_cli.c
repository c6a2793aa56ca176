/* model_cli.c — see model_cli.h. */
#include "model_cli.h"
#include "cli.h"
#include "soft.h"
#include <stdlib.h>
#include <string.h>

void mu_model_args_init(mu_model_args *a) {
    memset(a, 0, sizeof *a);
    a->device = "auto";
    a->weights = MU_WEIGHTS_F32;
}

void mu_model_args_free(mu_model_args *a) {
    free(a->deltas);
    free(a->delta_scales);
    a->deltas = NULL;
    a->delta_scales = NULL;
    a->n_deltas = 0;
}

static void add_delta(mu_model_args *a, const char *path, float scale) {
    a->deltas = mu_xrealloc(a->deltas, (size_t)(a->n_deltas + 1) * sizeof *a->deltas);
    a->delta_scales = mu_xrealloc(a->delta_scales, (size_t)(a->n_deltas + 1) * sizeof *a->delta_scales);
    a->deltas[a->n_deltas] = path;
    a->delta_scales[a->n_deltas++] = scale;
}

int mu_model_args_scaled(const mu_model_args *a) {
    for (int i = 0; i < a->n_deltas; i++)
        if (a->delta_scales[i] != 1) return 1;
    return 0;
}

int mu_model_args_option(mu_model_args *a, int opt, const char *arg) {
    switch (opt) {
    case 'm': a->path = arg; return 1;
    case MU_OPT_DELTA:
        add_delta(a, arg, 1);
        return 1;
    case MU_OPT_SCALED_DELTA: {
        double s;
        const char *path = mu_parse_scaled("--scaled-delta", arg, &s);
        add_delta(a, path, (float)s);
        return 1;
    }
    case MU_OPT_DEVICE: a->device = arg; return 1;
    case MU_OPT_SOFT: a->soft_prompt = arg; return 1;
    case MU_OPT_SOFT_PROJECT: a->soft_project = 1; return 1;
    case MU_OPT_DTYPE:
        if (mu_weights_parse(arg, &a->weights)) mu_usage_error("--dtype: '%s' (expected f32 or bf16)", arg);
        return 1;
    default: return 0;
    }
}

const mu_backend *mu_model_args_backend(const mu_model_args *a) {
    char err[512];
    const mu_backend *be = mu_backend_by_name(a->device, err, sizeof err);
    if (!be) mu_usage_error("--device: %s", err);
    return be;
}

mu_model *mu_model_load_or_die(const char *path, const char *const *deltas, const float *scales, int n_deltas,
                               const mu_backend *be, mu_weights weights, const char *what) {
    char err[1024];
    mu_model *m = mu_model_load_as(path, deltas, scales, n_deltas, be, weights, err, sizeof err);
    if (!m) mu_die("%s", err);
    mu_model_report_memory(m, what);
    return m;
}

mu_model *mu_model_args_load(const mu_model_args *a, const mu_backend *be, const char *what) {
    return mu_model_load_or_die(a->path, a->deltas, a->delta_scales, a->n_deltas, be, a->weights, what);
}

void mu_model_mask_or_die(mu_model *m, const char *opt, const char *arg, mu_mask *mask) {
    char err[1024];
    mu_param_info *info = mu_model_param_infos(m);
    int rc = mu_mask_from_arg(arg, info, mu_model_n_params(m), mask, err, sizeof err);
    free(info);
    if (rc) mu_die("%s: %s", opt, err);
}

char *mu_ids_text(const int32_t *ids, int n, char *buf, size_t len) {
    int w = 0;
    buf[0] = 0;
    for (int j = 0; j < n && w < (int)len - 16; j++) w += snprintf(buf + w, len - w, "%s%d", j ? " " : "", ids[j]);
    if (n > 32) snprintf(buf + w, len - w, " ...");
    return buf;
}

/* vec [n, D] onto m's nearest embedding rows by cosine (mu_soft_nearest_tokens); says
 * which tokens (not with --quiet). */
static void project_to_tokens(const mu_model_args *a, mu_model *m, int n, float *vec) {
    int32_t *best = mu_xmalloc((size_t)n * sizeof *best);
    if (mu_soft_nearest_tokens(m, vec, n, best) || mu_model_embedding_rows(m, best, n, vec))
        mu_die("%s: out of memory for the embedding rows", a->path);
    char said[512];
    mu_info("%s: %d vectors projected to the tokens %s", a->soft_prompt, n, mu_ids_text(best, n, said, sizeof said));
    free(best);
}

void mu_model_args_soft_prompt(const mu_model_args *a, mu_model *m) {
    if (a->soft_project && !a->soft_prompt) mu_usage_error("--soft-project needs --soft-prompt FILE");
    if (!a->soft_prompt) return;
    char err[1024];
    int n;
    float *vec;
    if (mu_soft_prompt_read(a->soft_prompt, mu_model_config(m)->d_model, &n, &vec, err, sizeof err)) mu_die("%s", err);
    if (a->soft_project) project_to_tokens(a, m, n, vec);
    if (mu_model_set_soft_prompt(m, n, vec, 0)) mu_die("%s: out of memory for the soft prompt", a->soft_prompt);
    free(vec);
}
