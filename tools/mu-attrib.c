/* mu-attrib — scores the units of a model's parameters (value vectors, elements, heads,
 * matrices) by how much they hold a forget set: activations, gradients, WAGLE, MemFlex.
 * Writes a "scores" stream for mu-maskgen. The methods live in lib/attrib.c. */
#define _GNU_SOURCE
#include "attrib.h"
#include "cli.h"
#include "model_cli.h"
#include "mask.h"
#include "model.h"
#include "train.h"
#include <float.h>
#include <limits.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char usage[] =
    "Usage: mu-attrib --model PATH --forget FILE [--retain FILE] --method NAME [OPTION]...\n"
    "Score the units of a model's parameters by how much they hold the forget set;\n"
    "write a scores stream (for mu-maskgen).\n"
    "\n"
    "  -m, --model PATH        Hugging Face model directory or GGUF file (required)\n"
    "      --delta FILE        apply a delta (or a PEFT LoRA adapter dir) on top of the\n"
    "                          model first (repeatable)\n"
    "      --scaled-delta S=FILE  the same at strength S, in order with --delta: each\n"
    "                          weight w0 + S (w - w0) (w0: before it), low-rank changes\n"
    "                          times S (task arithmetic: -1 negates, 0.5 half way)\n"
    "      --device NAME       auto (default), cpu or cuda\n"
    "      --dtype T           weight storage: f32 (default) or bf16\n"
    "      --soft-prompt FILE  vectors for the records' soft-prompt slots (mu-soft-prompt(5))\n"
    "      --soft-project      each of those vectors replaced by its nearest token's row\n"
    "      --forget FILE       token stream whose answers are attributed (required)\n"
    "      --retain FILE       token stream of answers to keep (act-contrast, wagle, memflex)\n"
    "  -M, --method NAME       act           mean |activation| of each MLP neuron on the forget set\n"
    "                          act-contrast  forget minus retain mean |activation|\n"
    "                          grad          sum of |dL_f/dw| over the unit (default)\n"
    "                          wagle         sum of |(w - dL_r/dw / gamma) * dL_f/dw| (WAGLE)\n"
    "                          memflex       ||dL_f/dw_u|| where cos(dL_f/dw_u, dL_r/dw_u) < mu\n"
    "                          causal-trace  per layer, attention and MLP: answer probability\n"
    "                                        recovered by restoring the block's clean output\n"
    "                                        in a run with a noised subject (Meng et al.)\n"
    "                          atp           attribution patching: first-order drop of the\n"
    "                                        answer log-prob when a block sees the noised subject\n"
    "                          path-patch    fact lookup: drop of the answer log-prob when a\n"
    "                                        block's output at the subject's last token is noised\n"
    "                                        and reaches the answer only through later positions'\n"
    "                                        attention (later blocks there frozen clean)\n"
    "      --tensors SPEC|FILE which tensors to score: a mask shorthand (mlp.down:all (default;\n"
    "                          mlp:all+attn:all for causal-trace, atp, path-patch),\n"
    "                          mlp:2-6, attn.o:all, ... as in mu-train --mask) or a mask stream\n"
    "                          (its tensors; its bits are ignored); causal-trace and\n"
    "                          path-patch patch only the blocks of these tensors\n"
    "  -g, --granularity G     units: neuron (default; value vectors = down_proj columns),\n"
    "                          element, head or matrix (tracing methods: matrix only)\n"
    "      --gamma X           wagle: Hessian diagonal approximation gamma (default 1)\n"
    "      --mu X              memflex: cosine threshold (default 0)\n"
    "      --positions P       act: all (default: every token) or answer (rows predicting\n"
    "                          answer tokens); causal-trace, atp: prompt (default: every\n"
    "                          prompt token) or subject_last; path-patch: subject_last only\n"
    "      --subject FIELD     causal-trace, atp, path-patch: the prompt field whose tokens\n"
    "                          are noised\n"
    "                          (its span in the token stream; required by them)\n"
    "      --noise X           noise std in units of the embeddings' std (default 3)\n"
    "      --samples N         noise draws per record (default 4)\n"
    "      --seed N            noise seed (default 0)\n"
    "      --batch N           sequences (causal-trace, path-patch: patched runs) per\n"
    "                          forward (default 8)\n"
    "      --max-len N         left-truncate prompts so a sequence fits N tokens (default 512)\n"
    "  -o, --out FILE          scores stream (default: stdout)\n"
    "  -q, --quiet             no progress bar\n"
    "  -h, --help              show this help and exit\n"
    "  -V, --version           show the version and exit\n"
    "Exit status: 0 ok, 1 failure, 2 usage error. See mu-attrib(1).\n";

typedef struct {
    mu_model_args ma;       /* --model, --delta, --device, --dtype */
    const char *forget, *retain, *tensors, *out, *subject, *positions;
    int max_len;
    mu_attr_opts a;
} cli_opts;

enum { O_FORGET = 256, O_RETAIN, O_TENSORS, O_GAMMA, O_MU, O_POS, O_BATCH, O_MAXLEN,
       O_SUBJECT, O_NOISE, O_SAMPLES, O_SEED };

/* --positions: all|answer for act methods, prompt|subject_last for causal-trace and atp,
 * subject_last for path-patch. */
static void parse_positions(cli_opts *o, int causal) {
    const char *p = o->positions;
    int path = o->a.method == MU_ATTR_PATH_PATCH;
    if (path) o->a.restore_all = 0;
    if (!p) return;
    if (path && strcmp(p, "subject_last"))
        mu_usage_error("--positions: '%s' (path-patch sends from subject_last only)", p);
    if (causal && !strcmp(p, "prompt")) o->a.restore_all = 1;
    else if (causal && !strcmp(p, "subject_last")) o->a.restore_all = 0;
    else if (!causal && !strcmp(p, "all")) o->a.answer_positions = 0;
    else if (!causal && !strcmp(p, "answer")) o->a.answer_positions = 1;
    else mu_usage_error("--positions: '%s' (%s)", p, causal ? "prompt, subject_last" : "all, answer");
}

static void parse_args(int argc, char **argv, cli_opts *o) {
    static const struct option longopts[] = {
        MU_MODEL_LONGOPTS,
        {"forget", required_argument, 0, O_FORGET}, {"retain", required_argument, 0, O_RETAIN},
        {"method", required_argument, 0, 'M'}, {"tensors", required_argument, 0, O_TENSORS},
        {"granularity", required_argument, 0, 'g'}, {"gamma", required_argument, 0, O_GAMMA},
        {"mu", required_argument, 0, O_MU}, {"positions", required_argument, 0, O_POS},
        {"batch", required_argument, 0, O_BATCH}, {"max-len", required_argument, 0, O_MAXLEN},
        {"subject", required_argument, 0, O_SUBJECT}, {"noise", required_argument, 0, O_NOISE},
        {"samples", required_argument, 0, O_SAMPLES}, {"seed", required_argument, 0, O_SEED},
        {"out", required_argument, 0, 'o'}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    mu_attr_opts_default(&o->a);
    mu_model_args_init(&o->ma);
    o->tensors = NULL;
    int gran_given = 0;
    o->out = "-";
    o->max_len = 512;
    int c;
    while ((c = getopt_long(argc, argv, ":m:M:g:o:hVq", longopts, NULL)) != -1) {
        if (mu_cli_common(c, usage) || mu_model_args_option(&o->ma, c, optarg)) continue;
        switch (c) {
        case O_FORGET: o->forget = optarg; break;
        case O_RETAIN: o->retain = optarg; break;
        case 'M':
            if (mu_attr_method_parse(optarg, &o->a.method))
                mu_usage_error("--method: '%s' (act, act-contrast, grad, wagle, memflex, causal-trace, atp, path-patch)", optarg);
            break;
        case O_TENSORS: o->tensors = optarg; break;
        case 'g':
            if (mu_gran_parse(optarg, &o->a.gran))
                mu_usage_error("--granularity: '%s' (neuron, element, head, matrix)", optarg);
            gran_given = 1;
            break;
        case O_GAMMA: o->a.gamma = mu_parse_real("--gamma", optarg, DBL_MIN, DBL_MAX); break;
        case O_MU: o->a.memflex_mu = mu_parse_real("--mu", optarg, -1.0, 1.0); break;
        case O_POS: o->positions = optarg; break;
        case O_SUBJECT: o->subject = optarg; break;
        case O_NOISE: o->a.noise = mu_parse_real("--noise", optarg, 0, DBL_MAX); break;
        case O_SAMPLES: o->a.samples = (int)mu_parse_int("--samples", optarg, 1, 1 << 20); break;
        case O_SEED: o->a.seed = (uint64_t)mu_parse_int("--seed", optarg, 0, LONG_MAX); break;
        case O_BATCH: o->a.batch = (int)mu_parse_int("--batch", optarg, 1, 1 << 20); break;
        case O_MAXLEN: o->max_len = (int)mu_parse_int("--max-len", optarg, 2, 1 << 20); break;
        case 'o': o->out = optarg; break;
        default: mu_usage_error("unknown option (see --help)");
        }
    }
    if (optind < argc) mu_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->ma.path) mu_usage_error("--model is required");
    if (!o->forget) mu_usage_error("--forget is required");
    if (mu_attr_needs_retain(o->a.method) && !o->retain)
        mu_usage_error("--method %s needs --retain", mu_attr_method_name(o->a.method));
    int causal = mu_attr_is_causal(o->a.method);
    if (causal && !o->subject) mu_usage_error("--method %s needs --subject FIELD", mu_attr_method_name(o->a.method));
    if (!o->tensors) o->tensors = causal ? "mlp:all+attn:all" : "mlp.down:all";
    if (causal && !gran_given) o->a.gran = MU_GRAN_MATRIX;
    parse_positions(o, causal);
    o->a.progress = mu_progress_on;
}

/* A token stream as a train set; with field, its spans too (subject_start, subject_end). */
static void read_set(const char *path, mu_model *m, int max_len, const char *field, mu_train_set *s,
                     int32_t **subject_start, int32_t **subject_end) {
    char err[512];
    int vocab = mu_model_config(m)->vocab;
    const mu_soft_prompt *sp = mu_model_soft_prompt(m);
    int nsoft = sp ? sp->n : 0;
    if (field ? mu_train_set_read_spans(path, max_len, vocab, nsoft, field, s, subject_start, subject_end, err,
                                        sizeof err)
              : mu_train_set_read(path, 0, max_len, vocab, nsoft, NULL, 0, s, err, sizeof err))
        mu_die("%s", err);
}

int main(int argc, char **argv) {
    mu_cli_init("mu-attrib", argc, argv);
    cli_opts o;
    parse_args(argc, argv, &o);
    char err[1024];
    const mu_backend *be = mu_model_args_backend(&o.ma);
    mu_model *m = mu_model_args_load(&o.ma, be, "model");
    mu_model_args_soft_prompt(&o.ma, m);
    mu_mask tensors;
    mu_model_mask_or_die(m, "--tensors", o.tensors, &tensors);   /* a mask's tensor list, or a shorthand */
    mu_train_set forget, retain = {0};
    int32_t *s0 = NULL, *s1 = NULL;
    read_set(o.forget, m, o.max_len, o.subject, &forget, &s0, &s1);
    if (o.retain) read_set(o.retain, m, o.max_len, NULL, &retain, NULL, NULL);
    o.a.subj_start = s0;
    o.a.subj_end = s1;
    mu_attr_result r;
    if (mu_attrib_run(m, &tensors, &forget, o.retain ? &retain : NULL, &o.a, &r, err, sizeof err))
        mu_die("%s", err);
    const char **roles = mu_xmalloc(sizeof *roles * (size_t)(5 + o.ma.n_deltas));
    const char **paths = mu_xmalloc(sizeof *paths * (size_t)(5 + o.ma.n_deltas));
    float *scales = mu_xmalloc(sizeof *scales * (size_t)(5 + o.ma.n_deltas));
    int n = 0;
    for (int i = 0; i < 5 + o.ma.n_deltas; i++) scales[i] = 1;
    roles[n] = "model"; paths[n++] = o.ma.path;
    for (int i = 0; i < o.ma.n_deltas; i++) {
        scales[n] = o.ma.delta_scales[i];
        roles[n] = "delta"; paths[n++] = o.ma.deltas[i];
    }
    if (o.ma.soft_prompt) { roles[n] = "soft_prompt"; paths[n++] = o.ma.soft_prompt; }
    roles[n] = "forget"; paths[n++] = o.forget;
    if (o.retain) { roles[n] = "retain"; paths[n++] = o.retain; }
    struct stat st;
    if (stat(o.tensors, &st) == 0) { roles[n] = "tensors"; paths[n++] = o.tensors; }
    mu_attr_write(&r, &o.a, o.out, roles, paths, scales, n);
    free(roles);
    free(paths);
    free(scales);
    int64_t units = 0;
    for (int k = 0; k < r.n; k++) units += r.t[k].units;
    mu_info("%s: scored %lld %s units in %d tensors", mu_attr_method_name(o.a.method), (long long)units,
            mu_gran_name(o.a.gran), r.n);
    mu_attr_result_free(&r);
    free(s0);
    free(s1);
    mu_mask_free(&tensors);
    mu_train_set_free(&forget);
    if (o.retain) mu_train_set_free(&retain);
    mu_model_args_free(&o.ma);
    mu_model_free(m);
    return MU_EXIT_OK;
}
