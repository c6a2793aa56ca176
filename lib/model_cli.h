/* model_cli.h — the options every tool that runs a model shares (mu-forward, mu-train,
 * mu-attrib): -m/--model PATH, --delta FILE (repeatable, applied in order), --device NAME
 * (auto, cpu, cuda), --dtype T (f32, bf16) and --soft-prompt FILE, parsed and loaded once here. Each tool keeps
 * its own usage text. */
#ifndef MU_MODEL_CLI_H
#define MU_MODEL_CLI_H
#include "model.h"
#include <getopt.h>

/* getopt_long codes of the shared long options: above any tool's own (those start at 256) */
enum { MU_OPT_DELTA = 0x4000, MU_OPT_DEVICE, MU_OPT_DTYPE, MU_OPT_SOFT };
#define MU_MODEL_LONGOPTS                                                                      \
    {"model", required_argument, 0, 'm'}, {"delta", required_argument, 0, MU_OPT_DELTA},       \
    {"device", required_argument, 0, MU_OPT_DEVICE}, {"dtype", required_argument, 0, MU_OPT_DTYPE},    \
    {"soft-prompt", required_argument, 0, MU_OPT_SOFT}

typedef struct {
    const char *path;        /* --model, or NULL */
    const char *device;      /* --device (default "auto") */
    const char **deltas;     /* --delta FILE..., in order */
    int n_deltas;
    mu_weights weights;      /* --dtype (default f32) */
    const char *soft_prompt; /* --soft-prompt FILE, or NULL */
} mu_model_args;

void mu_model_args_init(mu_model_args *a);
void mu_model_args_free(mu_model_args *a);
/* Takes getopt's opt (and optarg) when it is one of the shared options: 1, else 0. A bad
 * --dtype is a usage error. */
int mu_model_args_option(mu_model_args *a, int opt, const char *arg);
/* The backend of --device (a usage error when it is unknown or unusable). */
const mu_backend *mu_model_args_backend(const mu_model_args *a);
/* Loads path with deltas onto be in weights, prints its memory use as `what` (stderr);
 * dies with the loader's one-line error. */
mu_model *mu_model_load_or_die(const char *path, const char *const *deltas, int n_deltas, const mu_backend *be,
                               mu_weights weights, const char *what);
/* Sets --soft-prompt's vectors (lib/soft.h) on m, frozen; nothing without the option. Dies
 * with a one-line error naming the file. */
void mu_model_args_soft_prompt(const mu_model_args *a, mu_model *m);
#endif
