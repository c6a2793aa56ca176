/* mu-maskgen — masks from localization scores (top units), random masks and random-complement
 * masks of the same size (Lee et al. 2025), and the deterministic complement of a mask.
 * The logic lives in lib/maskgen.c; this file parses options and writes the mask. */
#include "ckpt.h"
#include "cli.h"
#include "mask.h"
#include "maskgen.h"
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: mu-maskgen --scores S (--fraction F | --units N) [OPTION]...\n"
    "       mu-maskgen --random (--scores S | --model PATH --tensors SPEC --granularity G)\n"
    "                  (--fraction F | --units N) [--seed K] [OPTION]...\n"
    "       mu-maskgen --complement-of MASK (--scores S | --model PATH --tensors SPEC --granularity G)\n"
    "                  [--fraction F | --units N] [--seed K] [OPTION]...\n"
    "       mu-maskgen --invert MASK --model PATH [OPTION]...\n"
    "Make a mask stream (for mu-train --mask) from a scores stream (mu-attrib): the\n"
    "highest-scored units, random units of the same candidates, or random units outside\n"
    "another mask.\n"
    "\n"
    "Candidates:\n"
    "  -s, --scores FILE       scores stream: its records are the candidate tensors and units\n"
    "  -m, --model PATH        model directory or GGUF (only its config is read), with:\n"
    "      --tensors SPEC      which tensors: mlp:2-6, attn:0-3, layers:4, mlp.down:5, all,\n"
    "                          ... joined with '+' (as mu-train --mask)\n"
    "  -g, --granularity G     neuron, element, head or matrix\n"
    "Selection:\n"
    "      --random            random units (seeded shuffle) instead of the top scores\n"
    "      --lowest            the lowest scores instead of the highest\n"
    "      --complement-of MASK  random units among the candidates MASK does not select;\n"
    "                          default size: MASK's params_selected\n"
    "      --invert MASK       every unit of MASK's tensors that MASK does not select\n"
    "      --seed K            shuffle seed (default 0); same seed, same mask\n"
    "Size (whole units):\n"
    "  -f, --fraction F        units until the selected parameters reach round(F * params_total)\n"
    "                          (params_total: the whole model's parameters), 0 < F <= 1\n"
    "  -n, --units N           exactly N units\n"
    "      --scope S           global (default: rank all tensors together) or tensor (each\n"
    "                          tensor gets the same fraction of its units)\n"
    "Output:\n"
    "  -o, --out FILE          mask stream (default: stdout)\n"
    "  -q, --quiet             no summary line on stderr\n"
    "  -h, --help              show this help and exit\n"
    "  -V, --version           show the version and exit\n"
    "Exit status: 0 ok, 1 failure, 2 usage error. See mu-maskgen(1).\n";

typedef struct {
    const char *scores, *model, *tensors, *gran, *complement, *invert, *out;
    double fraction;        /* 0: not given */
    int64_t units;          /* 0: not given */
    int random, lowest;
    mu_scope scope;
    uint64_t seed;
} cli_opts;

enum { O_TENSORS = 256, O_RANDOM, O_LOWEST, O_COMPLEMENT, O_INVERT, O_SEED, O_SCOPE };

/* Usage rules between the modes (exit 2 on a conflict). */
static void check_modes(const cli_opts *o) {
    int has_size = o->fraction > 0 || o->units > 0;
    if (o->fraction > 0 && o->units > 0) mu_usage_error("give --fraction or --units, not both");
    if (o->model && o->scores) mu_usage_error("give --scores or --model, not both");
    if (!o->model && (o->tensors || o->gran)) mu_usage_error("--tensors and --granularity go with --model");
    if (o->lowest && (o->random || o->complement || o->invert)) mu_usage_error("--lowest ranks scores; not with --random, --complement-of or --invert");
    if (o->invert) {
        if (o->complement || o->random || o->scores || has_size || o->tensors || o->gran)
            mu_usage_error("--invert takes only --model (and --out)");
        if (!o->model) mu_usage_error("--invert needs --model");
        return;
    }
    if (o->model && (!o->tensors || !o->gran)) mu_usage_error("--model needs --tensors and --granularity");
    if (!o->scores && !o->model) mu_usage_error("give --scores FILE (or --model with --random / --complement-of)");
    if (o->model && !o->random && !o->complement) mu_usage_error("--model has no scores: add --random or --complement-of");
    if (!o->complement && !has_size) mu_usage_error("give --fraction F or --units N");
}

static void parse_args(int argc, char **argv, cli_opts *o) {
    static const struct option longopts[] = {
        {"scores", required_argument, 0, 's'}, {"model", required_argument, 0, 'm'},
        {"tensors", required_argument, 0, O_TENSORS}, {"granularity", required_argument, 0, 'g'},
        {"random", no_argument, 0, O_RANDOM}, {"lowest", no_argument, 0, O_LOWEST},
        {"complement-of", required_argument, 0, O_COMPLEMENT}, {"invert", required_argument, 0, O_INVERT},
        {"seed", required_argument, 0, O_SEED}, {"fraction", required_argument, 0, 'f'},
        {"units", required_argument, 0, 'n'}, {"scope", required_argument, 0, O_SCOPE},
        {"out", required_argument, 0, 'o'}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    o->out = "-";
    int c;
    while ((c = getopt_long(argc, argv, ":s:m:g:f:n:o:hVq", longopts, NULL)) != -1) {
        if (mu_cli_common(c, usage)) continue;
        switch (c) {
        case 's': o->scores = optarg; break;
        case 'm': o->model = optarg; break;
        case O_TENSORS: o->tensors = optarg; break;
        case 'g': {
            mu_granularity g;
            if (mu_gran_parse(optarg, &g)) mu_usage_error("--granularity: '%s' (neuron, element, head, matrix)", optarg);
            o->gran = optarg;
            break;
        }
        case O_RANDOM: o->random = 1; break;
        case O_LOWEST: o->lowest = 1; break;
        case O_COMPLEMENT: o->complement = optarg; break;
        case O_INVERT: o->invert = optarg; break;
        case O_SEED: o->seed = (uint64_t)mu_parse_int("--seed", optarg, 0, LONG_MAX); break;
        case 'f':
            o->fraction = mu_parse_real("--fraction", optarg, 0, 1);
            if (o->fraction <= 0) mu_usage_error("--fraction: '%s' must be above 0", optarg);
            break;
        case 'n': o->units = mu_parse_int("--units", optarg, 1, LONG_MAX); break;
        case O_SCOPE:
            if (!strcmp(optarg, "global")) o->scope = MU_SCOPE_GLOBAL;
            else if (!strcmp(optarg, "tensor")) o->scope = MU_SCOPE_TENSOR;
            else mu_usage_error("--scope: '%s' (global, tensor)", optarg);
            break;
        case 'o': o->out = optarg; break;
        default: mu_usage_error("unknown option (see --help)");
        }
    }
    if (optind < argc) mu_usage_error("unexpected argument '%s'", argv[optind]);
    check_modes(o);
}

/* The model's parameter list (config only; no weights are read). Caller frees. */
static int model_params(const char *path, mu_config *cfg, mu_param_info **p) {
    char err[512];
    mu_ckpt *ck = mu_ckpt_open(path, err, sizeof err);
    if (!ck) mu_die("%s", err);
    *cfg = *mu_ckpt_config(ck);
    mu_ckpt_close(ck);
    int np = mu_arch_params(cfg, p);
    if (np < 0) mu_die("%s: architecture %s is not supported", path, cfg->arch);
    return np;
}

static void read_mask_for(const char *path, const mu_param_info *p, int np, const char *model, mu_mask *m) {
    char err[512];
    if (mu_mask_read(path, m, err, sizeof err)) mu_die("%s", err);
    if (p && mu_mask_check(m, p, np, err, sizeof err)) mu_die("%s: %s (model %s)", path, err, model);
    if (p && m->params_total != mu_arch_numel(p, np))
        mu_die("%s: params_total %lld, but model %s has %lld parameters", path, (long long)m->params_total,
               model, (long long)mu_arch_numel(p, np));
}

static void load_candidates(const cli_opts *o, mu_cands *c) {
    char err[512];
    if (o->scores) {
        if (mu_cands_read_scores(o->scores, c, err, sizeof err)) mu_die("%s", err);
        return;
    }
    mu_config cfg;
    mu_param_info *p;
    model_params(o->model, &cfg, &p);
    free(p);
    mu_granularity g;
    mu_gran_parse(o->gran, &g);
    if (mu_cands_from_model(&cfg, o->tensors, g, c, err, sizeof err)) mu_die("--tensors: %s: %s", o->model, err);
}

static void summarize(const mu_mask *m, const char *out) {
    int64_t units = 0, params = mu_mask_params(m);
    for (int i = 0; i < m->n; i++) units += mu_mask_selected(&m->t[i]);
    mu_info("%s: %lld %s units, %lld parameters (%.6g of %lld) in %d tensors", strcmp(out, "-") ? out : "stdout",
            (long long)units, m->granularity, (long long)params,
            m->params_total ? (double)params / (double)m->params_total : 0.0, (long long)m->params_total, m->n);
}

static void run_invert(const cli_opts *o, mu_mask *out) {
    mu_config cfg;
    mu_param_info *p;
    int np = model_params(o->model, &cfg, &p);
    mu_mask in;
    char err[512];
    read_mask_for(o->invert, p, np, o->model, &in);
    if (mu_maskgen_invert(&in, out, err, sizeof err)) mu_die("%s: %s", o->invert, err);
    mu_mask_free(&in);
    free(p);
}

static void run_select(const cli_opts *o, mu_mask *out) {
    mu_cands c;
    load_candidates(o, &c);
    mu_select_opts so = {.scope = o->scope, .seed = o->seed, .units = o->units};
    so.order = o->random || o->complement ? MU_ORDER_RANDOM : o->lowest ? MU_ORDER_LOWEST : MU_ORDER_TOP;
    char err[512];
    const char *src = o->scores ? o->scores : o->model;
    if (o->fraction > 0) so.params = mu_maskgen_fraction_target(o->fraction, c.m.params_total);
    if (o->complement) {
        mu_mask ex;
        mu_param_info *p = NULL;
        mu_config cfg;
        int np = o->model ? model_params(o->model, &cfg, &p) : 0;
        read_mask_for(o->complement, p, np, o->model, &ex);
        free(p);
        if (mu_cands_exclude(&c, &ex, err, sizeof err)) mu_die("%s: %s (candidates: %s)", o->complement, err, src);
        if (!o->units && !(o->fraction > 0)) so.params = mu_mask_params(&ex);
        mu_mask_free(&ex);
    }
    if (mu_maskgen_select(&c, &so, out, err, sizeof err)) mu_die("%s: %s", src, err);
    mu_cands_free(&c);
}

int main(int argc, char **argv) {
    mu_cli_init("mu-maskgen", argc, argv);
    cli_opts o;
    parse_args(argc, argv, &o);
    mu_mask m;
    if (o.invert) run_invert(&o, &m);
    else run_select(&o, &m);
    const char *roles[3], *paths[3];
    int n = 0;
    if (o.scores) { roles[n] = "scores"; paths[n++] = o.scores; }
    if (o.complement || o.invert) { roles[n] = "mask"; paths[n++] = o.complement ? o.complement : o.invert; }
    if (o.model) { roles[n] = "model"; paths[n++] = o.model; }
    mu_mask_write(&m, o.out, roles, paths, n);
    summarize(&m, o.out);
    mu_mask_free(&m);
    return MU_EXIT_OK;
}
