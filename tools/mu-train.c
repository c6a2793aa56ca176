/* mu-train — trains (unlearns, edits, relearns) the masked parameters of a model on token
 * streams with combined objectives; writes a delta, a full model directory, a log stream.
 * The loop lives in lib/train.c; this file parses options and writes the outputs. */
#define _GNU_SOURCE
#include "ckpt.h"
#include "cli.h"
#include "dist.h"
#include "model_cli.h"
#include "mask.h"
#include "model.h"
#include "tokenizer.h"
#include "train.h"
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char usage[] =
    "Usage: mu-train --model PATH --objective SPEC [--forget F] [--retain F] [--general F]\n"
    "                (--out DELTA | --out-model DIR | --out-peft DIR) [OPTION]...\n"
    "Train the masked parameters of a model: unlearning, editing, relearning, learning.\n"
    "\n"
    "Model and mask:\n"
    "  -m, --model PATH        Hugging Face model directory or GGUF file (required)\n"
    "      --delta FILE        apply a delta (or a PEFT LoRA adapter dir) on top of the\n"
    "                          model first (repeatable)\n"
    "      --scaled-delta S=FILE  the same at strength S, in order with --delta: each\n"
    "                          weight w0 + S (w - w0) (w0: before it), low-rank changes\n"
    "                          times S (task arithmetic: -1 negates, 0.5 half way)\n"
    "      --ref PATH          reference model (default: a frozen copy of the starting model)\n"
    "      --mask FILE|SPEC    a mask stream, or whole matrices: mlp:2-6, attn:0-3, layers:4,\n"
    "                          mlp.down:5, attn.q:1, norms:0, embed, lm_head, all, joined\n"
    "                          with '+' (default: every parameter)\n"
    "      --device NAME       auto (default: cuda when a device is usable, else cpu),\n"
    "                          cpu or cuda\n"
    "      --dtype T           weight storage: f32 (default) or bf16 (bf16 GEMMs with f32\n"
    "                          accumulation, f32 master copies of the trained weights)\n"
    "Data (token streams from mu-tokenize):\n"
    "      --forget FILE       forget / edit / training records (alias --train)\n"
    "      --retain FILE       records whose answers must be kept\n"
    "      --general FILE      plain text for general-lm (every next token is a target)\n"
    "      --max-len N         left-truncate prompts so a sequence fits N tokens (default 512)\n"
    "Objectives:\n"
    "  -O, --objective SPEC    terms with coefficients, e.g. log1mp=1,retain-ce=1,general-lm=0.5:\n"
    "                          learn ga graddiff log1mp npo simnpo dpo idk wga satimp me rmu\n"
    "                          undial edit retain-ce retain-kl general-lm mlp-l2 (formulas:\n"
    "                          mu-train(1))\n"
    "      --npo-beta X        NPO beta (default 0.1)\n"
    "      --simnpo-beta X     SimNPO beta (default 4.5); --simnpo-delta X margin (default 0)\n"
    "      --dpo-beta X        DPO beta (default 0.1)\n"
    "      --dpo-alt TEXT      the preferred answer (dpo, idk) for records without a second\n"
    "                          target\n"
    "      --wga-beta X        WGA exponent (default 1)\n"
    "      --satimp-beta1 X, --satimp-beta2 X   SatImp exponents of p and 1-p (defaults 5, 1)\n"
    "      --undial-beta X     UNDIAL logit reduction of the target (default 10)\n"
    "      --log1mp-floor X    log1mp ignores tokens with log p below X (default -5)\n"
    "      --rmu-layer L       RMU layer (default: the middle one)\n"
    "      --rmu-coeff C       RMU steering norm c (default 6.5)\n"
    "      --rmu-alpha A       RMU retain weight (default 100)\n"
    "Optimization:\n"
    "      --optimizer NAME    adamw (default) or sgd\n"
    "      --lr X              peak learning rate (default 1e-4)\n"
    "      --beta1 X, --beta2 X, --eps X   AdamW (defaults 0.9, 0.999, 1e-8)\n"
    "      --momentum X        SGD momentum (default 0)\n"
    "      --weight-decay X    decoupled (AdamW) or L2 (SGD) weight decay (default 0)\n"
    "      --clip X            clip the global gradient norm at X (default: no clipping)\n"
    "      --schedule NAME     constant (default), linear or cosine, after warmup\n"
    "      --warmup N          linear warmup steps (default 0)\n"
    "      --min-lr-ratio X    decay floor as a fraction of --lr (default 0)\n"
    "      --steps N           optimizer steps (default 100)\n"
    "      --batch N           sequences per micro-batch and data set (default 8)\n"
    "      --accum N           micro-batches per step (default 1); started by mpirun -np P,\n"
    "                          shared out over the P processes (data parallelism)\n"
    "      --seed N            data order and RMU vector (default 0); same seed, same bits\n"
    "      --weight-mask L     train a mask m in [0,1] over the masked weights instead of the\n"
    "                          weights (w = w0*m, m from 1), penalty L * sum(1 - m): Guo et\n"
    "                          al.'s weight masking; the --sparse delta holds what it changed\n"
    "      --lora R            train rank-R LoRA adapters on the masked layer matrices (whole;\n"
    "                          default mask: every one; lm_head when the mask names it)\n"
    "                          instead of them; the delta holds\n"
    "                          them low-rank (NAME::lora_A, ::lora_B), --out-model the\n"
    "                          merged weights W + (alpha/R) B A, --out-peft a PEFT adapter\n"
    "      --lora-alpha A      LoRA scale numerator (default R: scale 1)\n"
    "      --soft-tokens N     train N soft-prompt vectors instead of any weight (the model\n"
    "                          frozen): the vectors of the records' soft-prompt slots\n"
    "                          (mu-tokenize --soft-tokens N), starting from --soft-prompt's\n"
    "                          or from embeddings of random tokens; --out gets them as a\n"
    "                          soft-prompt file (mu-soft-prompt(5)): a soft prompt attack\n"
    "      --soft-prompt FILE  vectors for the records' soft-prompt slots (frozen, unless\n"
    "                          --soft-tokens trains them)\n"
    "      --soft-project      each of those vectors replaced by its nearest token's row\n"
    "      --gcg               with --soft-tokens N: search N tokens for the slots instead of\n"
    "                          vectors, by greedy coordinate gradient (Zou et al. 2023): each\n"
    "                          step tries single-token swaps the gradient ranks best, forward\n"
    "                          only, and keeps the best; the file holds their embedding rows\n"
    "                          and their ids (token_ids): the attack as text\n"
    "      --gcg-topk K        tokens ranked per slot (default 256)\n"
    "      --gcg-candidates B  swaps tried per step (default 64; all of them when the slots'\n"
    "                          top lists hold no more)\n"
    "      --gcg-tokens SET    ascii (default: tokens whose text is printable ASCII, no control\n"
    "                          token; needs the tokenizer) or any\n"
    "Outputs:\n"
    "  -o, --out FILE          delta (safetensors) of the trained tensors, new values (with\n"
    "                          --soft-tokens: the soft-prompt file)\n"
    "      --sparse            the delta holds only the masked elements (NAME::idx, NAME::val)\n"
    "      --delta-scale S     the delta holds w0 + S (w - w0), w0 the starting values: task\n"
    "                          arithmetic (-1: the trained change negated; default 1)\n"
    "      --out-scaled S=FILE also the delta at scale S into FILE (repeatable; with --out)\n"
    "      --out-model DIR     full model directory (Hugging Face layout)\n"
    "      --out-peft DIR      with --lora: the adapters as a PEFT LoRA adapter directory\n"
    "                          (adapter_config.json, adapter_model.safetensors)\n"
    "      --log FILE          log stream: loss terms, lr, grad norm, tokens/s, evaluations\n"
    "      --eval [NAME=]FILE  token stream to evaluate (nll, acc, prob; repeatable)\n"
    "      --eval-every N      evaluate every N steps (default: at the start and the end)\n"
    "      --keep-best NAME.METRIC[:min|:max]  end with the best evaluated parameters\n"
    "      --checkpoint FILE   checkpoint path (default: OUT.ckpt.mpk.zst)\n"
    "      --checkpoint-every N  write the checkpoint every N steps (atomic)\n"
    "      --resume            continue from the checkpoint if it exists\n"
    "  -q, --quiet             no progress bar\n"
    "  -h, --help              show this help and exit\n"
    "  -V, --version           show the version and exit\n"
    "Exit status: 0 ok, 1 failure, 2 usage error. See mu-train(1).\n";

typedef struct { char *name; const char *path; } eval_arg;

typedef struct {
    mu_model_args ma;       /* --model, --delta, --device, --dtype */
    const char *ref, *mask;
    const char *data[MU_DATA_COUNT];
    const char *dpo_alt;
    int max_len;
    const char *objective;
    mu_train_opts t;
    const char *out, *out_model, *out_peft, *log, *checkpoint;
    struct { double scale; const char *path; } *scaled;   /* --out-scaled S=FILE */
    int n_scaled;
    int sparse, resume;
    int gcg_set;             /* a --gcg-* option was given */
    const char *gcg_tokens;  /* "ascii" (default) or "any" */
    char *ckpt_alloc;         /* the default checkpoint path, when made up here */
    eval_arg *evals;
    int n_evals;
} cli_opts;

enum {
    O_REF = 256, O_MASK, O_FORGET, O_RETAIN, O_GENERAL, O_MAXLEN, O_NPOB, O_SIMB,
    O_SIMD, O_DPOB, O_DPOALT, O_WGAB, O_SATB1, O_SATB2, O_UNDB, O_FLOOR, O_RMUL, O_RMUC, O_RMUA, O_OPT, O_LR, O_B1, O_B2,
    O_EPS, O_MOM, O_WD, O_CLIP, O_SCHED, O_WARM, O_MINLR, O_STEPS, O_BATCH, O_ACCUM, O_SEED, O_SPARSE,
    O_OUTMODEL, O_OUTPEFT, O_LOG, O_EVAL, O_EVERY, O_BEST, O_CKPT, O_CKEVERY, O_RESUME, O_WMASK, O_LORA, O_LORA_ALPHA, O_DSCALE, O_OUTSCALED,
    O_SOFT_TOKENS, O_GCG, O_GCG_TOPK, O_GCG_CAND, O_GCG_TOKENS,
};

/* --out-scaled S=FILE: one more delta to write, at scale S. */
static void add_scaled_out(cli_opts *o, const char *arg) {
    o->scaled = mu_xrealloc(o->scaled, (size_t)(o->n_scaled + 1) * sizeof *o->scaled);
    o->scaled[o->n_scaled].path = mu_parse_scaled("--out-scaled", arg, &o->scaled[o->n_scaled].scale);
    o->n_scaled++;
}

static void parse_args(int argc, char **argv, cli_opts *o) {
    static const struct option longopts[] = {
        MU_MODEL_LONGOPTS,
        {"ref", required_argument, 0, O_REF}, {"mask", required_argument, 0, O_MASK},
        {"forget", required_argument, 0, O_FORGET},
        {"train", required_argument, 0, O_FORGET}, {"retain", required_argument, 0, O_RETAIN},
        {"general", required_argument, 0, O_GENERAL}, {"max-len", required_argument, 0, O_MAXLEN},
        {"objective", required_argument, 0, 'O'}, {"npo-beta", required_argument, 0, O_NPOB},
        {"simnpo-beta", required_argument, 0, O_SIMB}, {"simnpo-delta", required_argument, 0, O_SIMD},
        {"dpo-beta", required_argument, 0, O_DPOB}, {"dpo-alt", required_argument, 0, O_DPOALT},
        {"wga-beta", required_argument, 0, O_WGAB}, {"undial-beta", required_argument, 0, O_UNDB},
        {"satimp-beta1", required_argument, 0, O_SATB1}, {"satimp-beta2", required_argument, 0, O_SATB2},
        {"log1mp-floor", required_argument, 0, O_FLOOR}, {"rmu-layer", required_argument, 0, O_RMUL},
        {"rmu-coeff", required_argument, 0, O_RMUC}, {"rmu-alpha", required_argument, 0, O_RMUA},
        {"optimizer", required_argument, 0, O_OPT}, {"lr", required_argument, 0, O_LR},
        {"beta1", required_argument, 0, O_B1}, {"beta2", required_argument, 0, O_B2},
        {"eps", required_argument, 0, O_EPS}, {"momentum", required_argument, 0, O_MOM},
        {"weight-decay", required_argument, 0, O_WD}, {"clip", required_argument, 0, O_CLIP},
        {"schedule", required_argument, 0, O_SCHED}, {"warmup", required_argument, 0, O_WARM},
        {"min-lr-ratio", required_argument, 0, O_MINLR}, {"steps", required_argument, 0, O_STEPS},
        {"batch", required_argument, 0, O_BATCH}, {"accum", required_argument, 0, O_ACCUM},
        {"seed", required_argument, 0, O_SEED}, {"out", required_argument, 0, 'o'},
        {"weight-mask", required_argument, 0, O_WMASK}, {"lora", required_argument, 0, O_LORA},
        {"lora-alpha", required_argument, 0, O_LORA_ALPHA}, {"soft-tokens", required_argument, 0, O_SOFT_TOKENS},
        {"gcg", no_argument, 0, O_GCG}, {"gcg-topk", required_argument, 0, O_GCG_TOPK},
        {"gcg-candidates", required_argument, 0, O_GCG_CAND}, {"gcg-tokens", required_argument, 0, O_GCG_TOKENS},
        {"sparse", no_argument, 0, O_SPARSE}, {"out-model", required_argument, 0, O_OUTMODEL},
        {"out-peft", required_argument, 0, O_OUTPEFT}, {"delta-scale", required_argument, 0, O_DSCALE},
        {"out-scaled", required_argument, 0, O_OUTSCALED},
        {"log", required_argument, 0, O_LOG}, {"eval", required_argument, 0, O_EVAL},
        {"eval-every", required_argument, 0, O_EVERY}, {"keep-best", required_argument, 0, O_BEST},
        {"checkpoint", required_argument, 0, O_CKPT}, {"checkpoint-every", required_argument, 0, O_CKEVERY},
        {"resume", no_argument, 0, O_RESUME}, MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    memset(o, 0, sizeof *o);
    mu_train_opts_default(&o->t);
    o->max_len = 512;
    mu_model_args_init(&o->ma);
    int c;
    while ((c = getopt_long(argc, argv, ":m:O:o:hVq", longopts, NULL)) != -1) {
        if (mu_cli_common(c, usage) || mu_model_args_option(&o->ma, c, optarg)) continue;
        switch (c) {
        case O_REF: o->ref = optarg; break;
        case O_MASK: o->mask = optarg; break;
        case O_FORGET: o->data[MU_DATA_FORGET] = optarg; break;
        case O_RETAIN: o->data[MU_DATA_RETAIN] = optarg; break;
        case O_GENERAL: o->data[MU_DATA_GENERAL] = optarg; break;
        case O_MAXLEN: o->max_len = (int)mu_parse_int("--max-len", optarg, 2, 1 << 20); break;
        case 'O': o->objective = optarg; break;
        case O_NPOB: o->t.npo_beta = mu_parse_real("--npo-beta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_SIMB: o->t.simnpo_beta = mu_parse_real("--simnpo-beta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_SIMD: o->t.simnpo_delta = mu_parse_real("--simnpo-delta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_DPOB: o->t.dpo_beta = mu_parse_real("--dpo-beta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_DPOALT: o->dpo_alt = optarg; break;
        case O_WGAB: o->t.wga_beta = mu_parse_real("--wga-beta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_SATB1: o->t.satimp_beta1 = mu_parse_real("--satimp-beta1", optarg, 0, DBL_MAX); break;
        case O_SATB2: o->t.satimp_beta2 = mu_parse_real("--satimp-beta2", optarg, 0, DBL_MAX); break;
        case O_UNDB: o->t.undial_beta = mu_parse_real("--undial-beta", optarg, -DBL_MAX, DBL_MAX); break;
        case O_FLOOR: o->t.log1mp_floor = mu_parse_real("--log1mp-floor", optarg, -DBL_MAX, DBL_MAX); break;
        case O_RMUL: o->t.rmu_layer = (int)mu_parse_int("--rmu-layer", optarg, 0, 100000); break;
        case O_RMUC: o->t.rmu_c = mu_parse_real("--rmu-coeff", optarg, -DBL_MAX, DBL_MAX); break;
        case O_RMUA: o->t.rmu_alpha = mu_parse_real("--rmu-alpha", optarg, -DBL_MAX, DBL_MAX); break;
        case O_OPT:
            if (mu_opt_kind_parse(optarg, &o->t.opt.kind)) mu_usage_error("--optimizer: '%s' (adamw, sgd)", optarg);
            break;
        case O_LR: o->t.opt.lr = mu_parse_real("--lr", optarg, -DBL_MAX, DBL_MAX); break;
        case O_B1: o->t.opt.beta1 = mu_parse_real("--beta1", optarg, -DBL_MAX, DBL_MAX); break;
        case O_B2: o->t.opt.beta2 = mu_parse_real("--beta2", optarg, -DBL_MAX, DBL_MAX); break;
        case O_EPS: o->t.opt.eps = mu_parse_real("--eps", optarg, -DBL_MAX, DBL_MAX); break;
        case O_MOM: o->t.opt.momentum = mu_parse_real("--momentum", optarg, -DBL_MAX, DBL_MAX); break;
        case O_WD: o->t.opt.weight_decay = mu_parse_real("--weight-decay", optarg, -DBL_MAX, DBL_MAX); break;
        case O_CLIP: o->t.opt.clip = mu_parse_real("--clip", optarg, -DBL_MAX, DBL_MAX); break;
        case O_SCHED:
            if (mu_sched_kind_parse(optarg, &o->t.opt.sched))
                mu_usage_error("--schedule: '%s' (constant, linear, cosine)", optarg);
            break;
        case O_WARM: o->t.opt.warmup = mu_parse_int("--warmup", optarg, 0, LONG_MAX); break;
        case O_MINLR: o->t.opt.min_lr_ratio = mu_parse_real("--min-lr-ratio", optarg, -DBL_MAX, DBL_MAX); break;
        case O_STEPS: o->t.steps = mu_parse_int("--steps", optarg, 0, LONG_MAX); break;
        case O_BATCH: o->t.batch = (int)mu_parse_int("--batch", optarg, 1, 1 << 20); break;
        case O_ACCUM: o->t.accum = (int)mu_parse_int("--accum", optarg, 1, 1 << 20); break;
        case O_SEED: o->t.seed = (uint64_t)mu_parse_int("--seed", optarg, 0, LONG_MAX); break;
        case O_WMASK:
            o->t.weight_mask = 1;
            o->t.weight_mask_lambda = mu_parse_real("--weight-mask", optarg, 0, 1e30);
            break;
        case O_LORA: o->t.lora_r = (int)mu_parse_int("--lora", optarg, 1, 1 << 16); break;
        case O_LORA_ALPHA: o->t.lora_alpha = mu_parse_real("--lora-alpha", optarg, 0, 1e30); break;
        case O_SOFT_TOKENS: o->t.soft_tokens = (int)mu_parse_int("--soft-tokens", optarg, 1, 65536); break;
        case O_GCG: o->t.gcg = 1; break;
        case O_GCG_TOPK: o->t.gcg_topk = (int)mu_parse_int("--gcg-topk", optarg, 1, 1 << 20); o->gcg_set = 1; break;
        case O_GCG_CAND:
            o->t.gcg_candidates = (int)mu_parse_int("--gcg-candidates", optarg, 1, 1 << 20);
            o->gcg_set = 1;
            break;
        case O_GCG_TOKENS:
            if (strcmp(optarg, "ascii") && strcmp(optarg, "any"))
                mu_usage_error("--gcg-tokens '%s': expected ascii or any", optarg);
            o->gcg_tokens = optarg;
            o->gcg_set = 1;
            break;
        case 'o': o->out = optarg; break;
        case O_SPARSE: o->sparse = 1; break;
        case O_OUTMODEL: o->out_model = optarg; break;
        case O_OUTPEFT: o->out_peft = optarg; break;
        case O_DSCALE: o->t.delta_scale = mu_parse_real("--delta-scale", optarg, -1e6, 1e6); break;
        case O_OUTSCALED: add_scaled_out(o, optarg); break;
        case O_LOG: o->log = optarg; break;
        case O_EVAL: {
            o->evals = mu_xrealloc(o->evals, (size_t)(o->n_evals + 1) * sizeof *o->evals);
            eval_arg *e = &o->evals[o->n_evals++];
            const char *eq = strchr(optarg, '=');
            if (eq) {
                e->name = strndup(optarg, (size_t)(eq - optarg));
                e->path = eq + 1;
            } else {   /* name: the file's base name without .mpk.zst */
                const char *b = strrchr(optarg, '/');
                b = b ? b + 1 : optarg;
                size_t n = strcspn(b, ".");
                e->name = strndup(b, n ? n : strlen(b));
                e->path = optarg;
            }
            break;
        }
        case O_EVERY: o->t.eval_every = (int)mu_parse_int("--eval-every", optarg, 1, INT_MAX); break;
        case O_BEST: o->t.keep_best = optarg; break;
        case O_CKPT: o->checkpoint = optarg; break;
        case O_CKEVERY: o->t.checkpoint_every = mu_parse_int("--checkpoint-every", optarg, 1, LONG_MAX); break;
        case O_RESUME: o->resume = 1; break;
        default: mu_usage_error("unknown option (see --help)");
        }
    }
    if (optind < argc) mu_usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->ma.path) mu_usage_error("--model is required");
    if (!o->objective) mu_usage_error("--objective is required");
    if (!o->out && !o->out_model && !o->out_peft) mu_usage_error("give --out DELTA, --out-model DIR or --out-peft DIR");
    if (o->out_peft && !o->t.lora_r) mu_usage_error("--out-peft applies to --lora");
    if ((o->t.delta_scale != 1 || o->n_scaled) && (!o->out || o->out_model || o->out_peft || o->t.soft_tokens))
        mu_usage_error("--delta-scale and --out-scaled apply to the delta of --out (not --out-model, --out-peft or "
                       "--soft-tokens)");
    for (int i = 0; i < o->n_scaled; i++)   /* one file each: a later write would replace an earlier one */
        for (int k = -1; k < i; k++)
            if (!strcmp(o->scaled[i].path, k < 0 ? o->out : o->scaled[k].path))
                mu_usage_error("--out-scaled: %s is written twice", o->scaled[i].path);
    if (o->out && !strcmp(o->out, "-")) mu_usage_error("--out: a delta is a file (safetensors), not stdout");
    if (o->sparse && !o->out) mu_usage_error("--sparse applies to --out");
    if (o->t.lora_alpha != 0 && !o->t.lora_r) mu_usage_error("--lora-alpha applies to --lora");
    if (o->t.lora_r && o->t.weight_mask) mu_usage_error("--lora and --weight-mask cannot be combined");
    if (o->t.lora_r && o->t.lora_alpha == 0) o->t.lora_alpha = o->t.lora_r;
    if (o->t.soft_tokens) {
        if (o->mask || o->t.lora_r || o->t.weight_mask)
            mu_usage_error("--soft-tokens trains no weight: not with --mask, --lora or --weight-mask");
        if (!o->out || o->sparse || o->out_model || o->out_peft)
            mu_usage_error("--soft-tokens writes its vectors to --out FILE (no --sparse, --out-model, --out-peft)");
    }
    if (o->t.gcg && !o->t.soft_tokens) mu_usage_error("--gcg searches the slots of --soft-tokens N: give it");
    if (o->gcg_set && !o->t.gcg) mu_usage_error("--gcg-topk, --gcg-candidates and --gcg-tokens apply to --gcg");
    if (!o->gcg_tokens) o->gcg_tokens = "ascii";
    char err[512];
    if (mu_objective_parse(o->objective, o->t.coef, err, sizeof err)) mu_usage_error("--objective: %s", err);
    if (o->t.keep_best && !o->n_evals) mu_usage_error("--keep-best needs --eval");
    if ((o->t.checkpoint_every || o->resume) && !o->checkpoint) {
        const char *base = o->out ? o->out : o->out_model ? o->out_model : o->out_peft;
        size_t n = strlen(base) + 16;
        char *p = mu_xmalloc(n);
        snprintf(p, n, "%s.ckpt.mpk.zst", base);
        o->checkpoint = o->ckpt_alloc = p;
    }
    o->t.checkpoint = o->checkpoint;
    o->t.progress = mu_progress_on;
}

/* ---- inputs ---- */

static int needs_ref_model(const mu_train_opts *t) {
    return t->coef[MU_OBJ_UNDIAL] || t->coef[MU_OBJ_RETAIN_KL] || t->coef[MU_OBJ_MLP_L2] ||
           (t->coef[MU_OBJ_RMU] && t->rmu_alpha != 0);
}

/* Tokens of --dpo-alt with the model's tokenizer. */
static int32_t *encode_alt(const char *model, const char *text, int *n) {
    char err[512];
    mu_tokenizer *tk = mu_tokenizer_load(model, err, sizeof err);
    if (!tk) mu_die("--dpo-alt: %s", err);
    int32_t *ids;
    size_t cnt;
    if (mu_tok_encode(tk, text, strlen(text), 0, &ids, &cnt, err, sizeof err)) mu_die("--dpo-alt: %s", err);
    mu_tokenizer_free(tk);
    if (cnt == 0) mu_die("--dpo-alt: the text has no tokens");
    *n = (int)cnt;
    return ids;
}

/* The tokens GCG may put in the slots ([vocab], malloc'd): with --gcg-tokens
 * ascii those the model's tokenizer decodes to printable ASCII (bytes 0x20-0x7e, at least
 * one) that are not control tokens, as Zou et al.'s search does; with any, every one. */
static unsigned char *gcg_allowed_tokens(const cli_opts *o, int vocab) {
    unsigned char *ok = mu_xmalloc((size_t)vocab);
    int any = !strcmp(o->gcg_tokens, "any"), count = 0;
    memset(ok, any, (size_t)vocab);
    if (!any) {
        char err[512];
        mu_tokenizer *tk = mu_tokenizer_load(o->ma.path, err, sizeof err);
        if (!tk) mu_die("--gcg-tokens ascii needs the model's tokenizer (or --gcg-tokens any): %s", err);
        for (int32_t v = 0; v < vocab && (size_t)v < mu_tok_vocab_size(tk); v++) {
            char *text;
            size_t len;
            if (mu_tok_is_special(tk, v) || mu_tok_decode(tk, &v, 1, 0, &text, &len, err, sizeof err)) continue;
            int printable = len > 0;
            for (size_t i = 0; i < len; i++) printable &= text[i] >= 0x20 && text[i] <= 0x7e;
            ok[v] = (unsigned char)printable;
            free(text);
        }
        mu_tokenizer_free(tk);
    }
    for (int v = 0; v < vocab; v++) count += ok[v];
    mu_info("GCG: %d of %d tokens may go in the slots (--gcg-tokens %s)", count, vocab, o->gcg_tokens);
    return ok;
}

/* What a GCG run found: the slots' tokens, and their text when the model has a tokenizer
 * (noted in the run's record as gcg_text). */
static void note_gcg_result(const cli_opts *o, mu_trainer *t) {
    const int32_t *ids = mu_trainer_gcg_ids(t);
    if (!ids) return;
    int n = o->t.soft_tokens;
    char said[512], err[512];
    mu_tokenizer *tk = mu_tokenizer_load(o->ma.path, err, sizeof err);
    char *text = NULL;
    size_t len;
    if (tk && mu_tok_decode(tk, ids, (size_t)n, 0, &text, &len, err, sizeof err)) text = NULL;
    if (text) mu_trainer_note(t, "gcg_text", json_stringn(text, len));
    mu_info("GCG: the slots hold the tokens %s%s%s%s", mu_ids_text(ids, n, said, sizeof said), text ? " (\"" : "",
            text ? text : "", text ? "\")" : "");
    free(text);
    if (tk) mu_tokenizer_free(tk);
}

/* Weight masking: how many weights the mask changed and ablated, in the delta's record and
 * on stderr. */
static void note_weight_mask(mu_trainer *t) {
    mu_wmask_stats s;
    if (mu_trainer_wmask_stats(t, &s) < 0) return;
    json_t *j = json_object();
    json_object_set_new(j, "masked", json_integer(s.masked));
    json_object_set_new(j, "halved", json_integer(s.halved));
    json_object_set_new(j, "ablated", json_integer(s.ablated));
    json_object_set_new(j, "cut", json_real(s.cut));
    json_object_set_new(j, "elements", json_integer(s.elements));
    json_object_set_new(j, "penalty", json_real(s.penalty));
    mu_trainer_note(t, "weight_mask_result", j);
    mu_info("weight mask: %lld of %lld weights changed (mask < 1), %lld halved (mask <= 1/2), %lld ablated "
            "(mask 0); cut sum(1 - mask) %.6g; penalty %.6g", (long long)s.masked, (long long)s.elements,
            (long long)s.halved, (long long)s.ablated, s.cut, s.penalty);
}

/* The run's delta at scale into path (--out at --delta-scale, or one --out-scaled). */
static void write_delta_at(const cli_opts *o, mu_trainer *t, double scale, const char *path) {
    char err[1024];
    mu_trainer_set_delta_scale(t, scale);
    if (mu_train_write_delta(t, o->ma.path, o->ma.deltas, o->ma.delta_scales, o->ma.n_deltas, path, o->sparse,
                             o->objective, err, sizeof err))
        mu_die("%s", err);
}

/* The delta, PEFT adapter, model directory and log stream asked for (atomic files). */
static void write_outputs(const cli_opts *o, mu_trainer *t, mu_model *m) {
    char err[1024];
    note_weight_mask(t);
    note_gcg_result(o, t);
    if (o->t.soft_tokens) {
        if (mu_train_write_soft_prompt(t, o->ma.path, o->ma.deltas, o->ma.delta_scales, o->ma.n_deltas, o->out, err,
                                       sizeof err))
            mu_die("%s", err);
    } else if (o->out) {   /* each --out-scaled at its scale, then --out at --delta-scale */
        for (int i = 0; i < o->n_scaled; i++) write_delta_at(o, t, o->scaled[i].scale, o->scaled[i].path);
        write_delta_at(o, t, o->t.delta_scale, o->out);
    }
    if (o->out_peft && mu_train_write_peft(t, o->ma.path, o->out_peft, err, sizeof err)) mu_die("%s", err);
    if (o->out_peft && o->ma.n_deltas)   /* PEFT knows base_model_name_or_path, not the deltas */
        mu_warn("%s: PEFT applies the adapter to %s alone, but it was trained on top of %d delta%s "
                "(mu reads it after them: --delta ... --delta %s)", o->out_peft, o->ma.path, o->ma.n_deltas,
                o->ma.n_deltas > 1 ? "s" : "", o->out_peft);
    if (o->out_model) {
        int no_tok = 0;
        if (mu_train_write_model_dir(m, o->ma.path, o->out_model, &no_tok, err, sizeof err)) mu_die("%s", err);
        if (no_tok) mu_warn("%s: no tokenizer.json next to the model; the directory has none", o->out_model);
    }
    if (o->log) {
        const char *roles[8 + MU_DATA_COUNT], *paths[8 + MU_DATA_COUNT];
        static const char *data_roles[MU_DATA_COUNT] = {"forget", "retain", "general"};
        int n = 0;
        roles[n] = "model"; paths[n++] = o->ma.path;
        for (int i = 0; i < o->ma.n_deltas && n < 6; i++) { roles[n] = "delta"; paths[n++] = o->ma.deltas[i]; }
        for (int r = 0; r < MU_DATA_COUNT; r++)
            if (o->data[r]) { roles[n] = data_roles[r]; paths[n++] = o->data[r]; }
        if (o->mask && access(o->mask, F_OK) == 0) { roles[n] = "mask"; paths[n++] = o->mask; }
        mu_trainer_write_log(t, o->log, roles, paths, n);
    }
}

/* Data parallelism: started by mpirun (or srun) as several processes, each runs its share
 * of every step's micro-batches (lib/dist.h); rank 0 alone writes the outputs and
 * reports, the others say only what went wrong, naming their rank. */
static void start_processes(mu_dist *d, const cli_opts *o) {
    static char name[64];
    char err[512];
    if (mu_dist_init(d, err, sizeof err)) mu_die("%s", err);
    if (d->world == 1) return;
    snprintf(name, sizeof name, "mu-train[%d/%d]", d->rank, d->world);
    mu_tool_name = name;
    if (o->t.accum < d->world) {   /* every rank ends cleanly, rank 0 says why */
        int rank = d->rank, world = d->world;
        mu_dist_finalize(d);
        if (rank != 0) exit(MU_EXIT_USAGE);
        mu_usage_error("--accum %d: %d processes need at least one micro-batch each (--accum >= %d)", o->t.accum,
                       world, world);
    }
    if (d->rank != 0) {
        mu_quiet = 1;
        mu_progress_on = 0;
        return;
    }
    if (o->t.accum % d->world)
        mu_warn("--accum %d over %d processes: some run one micro-batch more than others", o->t.accum, d->world);
    mu_info("%d processes (%s), micro-batches of every step shared out by rank", d->world, mu_dist_engine());
}

int main(int argc, char **argv) {
    mu_cli_init("mu-train", argc, argv);
    cli_opts o;
    parse_args(argc, argv, &o);
    mu_dist dist;
    start_processes(&dist, &o);
    char err[1024];
    const mu_backend *be = mu_model_args_backend(&o.ma);
    mu_model *m = mu_model_args_load(&o.ma, be, "model");
    mu_model *ref = NULL;
    if (o.ref) ref = mu_model_load_or_die(o.ref, NULL, NULL, 0, be, o.ma.weights, "reference model");
    else if (needs_ref_model(&o.t))
        ref = mu_model_args_load(&o.ma, be, "reference model");
    mu_model_args_soft_prompt(&o.ma, m);
    if (ref) mu_model_args_soft_prompt(&o.ma, ref);
    mu_mask mask, *maskp = NULL;
    if (o.mask) { mu_model_mask_or_die(m, "--mask", o.mask, &mask); maskp = &mask; }
    unsigned char *gcg_ok = NULL;
    if (o.t.gcg) o.t.gcg_allowed = gcg_ok = gcg_allowed_tokens(&o, mu_model_config(m)->vocab);
    mu_trainer *t = mu_trainer_new(m, ref, maskp, &o.t, err, sizeof err);
    if (!t) mu_die("%s", err);
    if (o.t.gcg) {
        mu_trainer_note(t, "gcg_tokens", json_string(o.gcg_tokens));
    }
    mu_trainer_set_dist(t, &dist);
    mu_trainer_note(t, "mask", json_string(o.mask ? o.mask : o.t.soft_tokens ? "none" : "all"));
    mu_trainer_note(t, "max_len", json_integer(o.max_len));
    if (o.ref) mu_trainer_note(t, "ref", json_string(o.ref));
    if (o.dpo_alt) mu_trainer_note(t, "dpo_alt", json_string(o.dpo_alt));
    if (o.ma.soft_prompt) mu_trainer_note(t, "soft_prompt", json_string(o.ma.soft_prompt));
    if (o.ma.soft_project) mu_trainer_note(t, "soft_project", json_true());
    if (mu_model_args_scaled(&o.ma)) {   /* the model it started from: --scaled-delta */
        json_t *s = json_array();
        for (int i = 0; i < o.ma.n_deltas; i++) json_array_append_new(s, json_real(o.ma.delta_scales[i]));
        mu_trainer_note(t, "input_delta_scales", s);
    }
    const mu_soft_prompt *sp = mu_model_soft_prompt(m);   /* --soft-prompt's, or the one trained */
    int vocab = mu_model_config(m)->vocab, n_alt = 0, nsoft = sp ? sp->n : 0;
    int32_t *alt = o.dpo_alt ? encode_alt(o.ma.path, o.dpo_alt, &n_alt) : NULL;
    for (int r = 0; r < MU_DATA_COUNT; r++) {
        if (!o.data[r]) continue;
        mu_train_set set;
        if (mu_train_set_read(o.data[r], r == MU_DATA_GENERAL, o.max_len, vocab, nsoft, alt, n_alt, &set, err,
                              sizeof err))
            mu_die("%s", err);
        mu_trainer_set_data(t, (mu_data_role)r, &set);
    }
    for (int i = 0; i < o.n_evals; i++) {
        mu_train_set set;
        if (mu_train_set_read(o.evals[i].path, 0, o.max_len, vocab, nsoft, NULL, 0, &set, err, sizeof err))
            mu_die("%s", err);
        mu_trainer_add_eval(t, o.evals[i].name, &set);
    }
    const char *resume = NULL;
    if (o.resume) {
        if (access(o.checkpoint, F_OK) == 0) resume = o.checkpoint;
        else mu_info("%s: no checkpoint yet, starting at step 0", o.checkpoint);
    }
    if (mu_trainer_run(t, resume, err, sizeof err)) mu_die("%s", err);
    if (dist.rank == 0) write_outputs(&o, t, m);
    if (o.t.soft_tokens)
        mu_info("trained a soft prompt of %d vectors for %lld steps; final loss %.6g", o.t.soft_tokens,
                (long long)mu_trainer_step(t), mu_trainer_last_loss(t));
    else if (o.t.lora_r)
        mu_info("trained LoRA adapters on %d matrices for %lld steps; final loss %.6g", mu_trainer_n_trained(t) / 2,
                (long long)mu_trainer_step(t), mu_trainer_last_loss(t));
    else
        mu_info("trained %d tensors for %lld steps; final loss %.6g", mu_trainer_n_trained(t),
                (long long)mu_trainer_step(t), mu_trainer_last_loss(t));
    mu_trainer_free(t);
    if (maskp) mu_mask_free(&mask);
    free(alt);
    free(gcg_ok);
    for (int i = 0; i < o.n_evals; i++) free(o.evals[i].name);
    free(o.evals);
    free(o.scaled);
    mu_model_args_free(&o.ma);
    free(o.ckpt_alloc);
    mu_model_free(m);
    if (ref) mu_model_free(ref);
    mu_dist_finalize(&dist);
    return MU_EXIT_OK;
}
