/* model_cli.h — the options every tool that runs a model shares (mu-forward, mu-train,
 * mu-attrib): -m/--model PATH, --delta FILE and --scaled-delta S=FILE (repeatable, applied in
 * order), --device NAME
 * (auto, cpu, cuda), --dtype T (f32, bf16), --soft-prompt FILE and --soft-project, parsed and loaded once
 * here. Each tool keeps
 * its own usage text. */
#ifndef MU_MODEL_CLI_H
#define MU_MODEL_CLI_H
#include "mask.h"
#include "model.h"
#include <getopt.h>

/* getopt_long codes of the shared long options: above any tool's own (those start at 256).
 * --scaled-delta S=FILE applies FILE at strength S (task arithmetic: w0 + S (w - w0), w0 the
 * weights before it; low-rank changes times S), in order among the --delta files. */
enum { MU_OPT_DELTA = 0x4000, MU_OPT_SCALED_DELTA, MU_OPT_DEVICE, MU_OPT_DTYPE, MU_OPT_SOFT, MU_OPT_SOFT_PROJECT };
#define MU_MODEL_LONGOPTS                                                                      \
    {"model", required_argument, 0, 'm'}, {"delta", required_argument, 0, MU_OPT_DELTA},       \
    {"scaled-delta", required_argument, 0, MU_OPT_SCALED_DELTA},                               \
    {"device", required_argument, 0, MU_OPT_DEVICE}, {"dtype", required_argument, 0, MU_OPT_DTYPE},    \
    {"soft-prompt", required_argument, 0, MU_OPT_SOFT}, {"soft-project", no_argument, 0, MU_OPT_SOFT_PROJECT}

typedef struct {
    const char *path;        /* --model, or NULL */
    const char *device;      /* --device (default "auto") */
    const char **deltas;     /* --delta FILE and --scaled-delta S=FILE, in order */
    float *delta_scales;     /* each one's strength S (1 for --delta) */
    int n_deltas;
    mu_weights weights;      /* --dtype (default f32) */
    const char *soft_prompt; /* --soft-prompt FILE, or NULL */
    int soft_project;        /* --soft-project: each vector replaced by its nearest token's row */
} mu_model_args;

void mu_model_args_init(mu_model_args *a);
void mu_model_args_free(mu_model_args *a);
/* Takes getopt's opt (and optarg) when it is one of the shared options: 1, else 0. A bad
 * --dtype is a usage error. */
int mu_model_args_option(mu_model_args *a, int opt, const char *arg);
/* The backend of --device (a usage error when it is unknown or unusable). */
const mu_backend *mu_model_args_backend(const mu_model_args *a);
/* Loads path with deltas (at scales; NULL: all 1) onto be in weights, prints its memory use
 * as `what` (stderr); dies with the loader's one-line error. */
mu_model *mu_model_load_or_die(const char *path, const char *const *deltas, const float *scales, int n_deltas,
                               const mu_backend *be, mu_weights weights, const char *what);
/* a's model (--model, its --delta and --scaled-delta files, --dtype) on be, through
 * mu_model_load_or_die. */
mu_model *mu_model_args_load(const mu_model_args *a, const mu_backend *be, const char *what);
/* The mask of a tool's option opt (--mask, --tensors) over m's parameters: arg a mask stream or
 * a shorthand (mu_mask_from_arg); dies with "opt: why". */
void mu_model_mask_or_die(mu_model *m, const char *opt, const char *arg, mu_mask *mask);
/* Whether any delta of a applies at a strength other than 1. */
int mu_model_args_scaled(const mu_model_args *a);
/* Sets --soft-prompt's vectors (lib/soft.h) on m, frozen; nothing without the option. With
 * --soft-project, each vector is first replaced by the input embedding row of its nearest
 * token by cosine (m's own rows): the slots then read exactly as those tokens would. Dies
 * with a one-line error naming the file; --soft-project alone is a usage error. */
void mu_model_args_soft_prompt(const mu_model_args *a, mu_model *m);
/* The token ids [n] as "ID ID ..." for a stderr line: as many as fit in buf (512 bytes
 * or more), then " ..." when n > 32. Returns buf. */
char *mu_ids_text(const int32_t *ids, int n, char *buf, size_t len);
#endif
