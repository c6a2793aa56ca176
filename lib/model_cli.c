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
    a->deltas = NULL;
    a->n_deltas = 0;
}

int mu_model_args_option(mu_model_args *a, int opt, const char *arg) {
    switch (opt) {
    case 'm': a->path = arg; return 1;
    case MU_OPT_DELTA:
        a->deltas = mu_xrealloc(a->deltas, (size_t)(a->n_deltas + 1) * sizeof *a->deltas);
        a->deltas[a->n_deltas++] = arg;
        return 1;
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

mu_model *mu_model_load_or_die(const char *path, const char *const *deltas, int n_deltas, const mu_backend *be,
                               mu_weights weights, const char *what) {
    char err[1024];
    mu_model *m = mu_model_load_as(path, deltas, n_deltas, be, weights, err, sizeof err);
    if (!m) mu_die("%s", err);
    mu_model_report_memory(m, what);
    return m;
}

/* vec [n, D] onto m's nearest embedding rows (by cosine); says which tokens (--quiet: not). */
static void project_to_tokens(const mu_model_args *a, mu_model *m, int n, float *vec) {
    int V = mu_model_config(m)->vocab, D = mu_model_config(m)->d_model;
    int32_t *all = mu_xmalloc((size_t)V * sizeof *all), *near = mu_xmalloc((size_t)n * sizeof *near);
    float *E = mu_xmalloc((size_t)V * D * sizeof *E), *cos = mu_xmalloc((size_t)n * sizeof *cos);
    for (int i = 0; i < V; i++) all[i] = i;
    if (mu_model_embedding_rows(m, all, V, E)) mu_die("%s: out of memory for the embedding rows", a->path);
    mu_soft_project(vec, n, E, V, D, near, cos);
    char ids[512] = "";
    for (int j = 0, at = 0; j < n && at < (int)sizeof ids - 16; j++)
        at += snprintf(ids + at, sizeof ids - at, "%s%d", j ? " " : "", near[j]);
    mu_info("%s: %d vectors projected to the tokens %s%s", a->soft_prompt, n, ids, n > 32 ? " ..." : "");
    free(all); free(near); free(E); free(cos);
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
