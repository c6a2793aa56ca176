/* mu-init — writes a seeded, randomly initialized Llama model directory in the Hugging
 * Face layout (config.json, model.safetensors, tokenizer.json, tokenizer_config.json),
 * atomically (temp directory + rename). */
#define _GNU_SOURCE
#include "arch.h"
#include "ckpt.h"
#include "cli.h"
#include "config.h"
#include "rng.h"
#include "safetensors.h"
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: mu-init --out DIR [OPTION]...\n"
    "Write a randomly initialized Llama model directory in the Hugging Face layout:\n"
    "config.json, model.safetensors, tokenizer.json (byte-level: 256 byte tokens, then\n"
    "<s>, </s>, <pad>) and tokenizer_config.json. The directory appears atomically.\n"
    "\n"
    "  -o, --out DIR         the model directory to write (required)\n"
    "      --layers N        transformer blocks (default 2)\n"
    "      --d-model N       hidden size (default 64)\n"
    "      --heads N         attention heads (default 4)\n"
    "      --kv-heads N      key/value heads (default: --heads)\n"
    "      --head-dim N      per-head size (default d-model/heads)\n"
    "      --d-ff N          MLP intermediate size (default 128)\n"
    "      --vocab N         vocabulary size, at least 259 (default 512)\n"
    "      --max-pos N       max_position_embeddings (default 2048)\n"
    "      --rope-theta X    rotary base (default 10000)\n"
    "      --rms-eps X       RMSNorm epsilon (default 1e-5)\n"
    "      --tied            lm_head shares the embedding matrix\n"
    "      --qkv-bias        q/k/v projections get biases, initialized to 0 (written as\n"
    "                        model_type qwen2, which has no o_proj bias)\n"
    "      --arch A          llama (default), gemma (GeGLU, RMSNorm by 1 + w, scaled\n"
    "                        embeddings, tied head), gemma2 (gemma's, with norms on\n"
    "                        both sides of each block, soft-capped scores and logits,\n"
    "                        a 4096-token window on even layers; query_pre_attn_scalar\n"
    "                        = head dim), gemma3_text (gemma2's without soft-caps, q/k\n"
    "                        norms per head, a window on 5 layers of 6 with rotary base\n"
    "                        10000), olmo2 (norms on the blocks' outputs, q/k norms),\n"
    "                        qwen3 (q/k norms per head), gpt_neox (Pythia: LayerNorms\n"
    "                        with biases, fused q/k/v, a quarter of each head rotating,\n"
    "                        parallel residual, GELU MLP, biases everywhere; head dim\n"
    "                        d-model/heads, no kv heads of its own) or gpt2 (learned\n"
    "                        positions, LayerNorms with biases, Conv1D weights stored\n"
    "                        [in, out], fused c_attn, gelu_new MLP, biases everywhere,\n"
    "                        tied head; head dim d-model/heads, --max-pos positions)\n"
    "                        or phi (phi-1.5, phi-2: gpt_neox's LayerNorms, biases and\n"
    "                        parallel residual with one input norm for both branches,\n"
    "                        separate q/k/v, half of each head rotating, gelu_new MLP,\n"
    "                        a bias on lm_head; head dim d-model/heads) or phi3\n"
    "                        (Phi-3: Llama's layout with q/k/v fused in qkv_proj and\n"
    "                        gate/up in gate_up_proj)\n"
    "      --std X           standard deviation of the normal init (default 0.02)\n"
    "      --seed N          random seed (default 1)\n"
    "      --dtype T         stored dtype: f32 (default), bf16, f16\n"
    "      --tokenizer KIND  tokenizer to write: bytes (default)\n"
    "  -q, --quiet           no progress\n"
    "  -h, --help            show this help and exit\n"
    "  -V, --version         show the version and exit\n"
    "\n"
    "Weights: matrices and embeddings ~ N(0, std^2), norm weights 1, biases 0. Each tensor\n"
    "draws from its own stream: mu_rng (xoshiro256** seeded by splitmix64 from the seed\n"
    "and the tensor's index in the parameter list), normals by Box-Muller, rounded to the\n"
    "stored dtype: the same seed gives the same bytes (given the same libm).\n"
    "Exit status: 0 ok, 1 failure, 2 usage error. See mu-init(1).\n";

#define N_BYTE_TOKENS 256
#define N_TOKENS (N_BYTE_TOKENS + 3)

typedef struct {
    const char *out;
    mu_config cfg;
    double std;
    uint64_t seed;
    mu_dtype dtype;
} init_opts;

enum { O_LAYERS = 256, O_DMODEL, O_HEADS, O_KVHEADS, O_HEADDIM, O_DFF, O_VOCAB, O_MAXPOS, O_THETA, O_EPS,
       O_TIED, O_QKVB, O_STD, O_SEED, O_DTYPE, O_TOK, O_ARCH };

static void parse_args(int argc, char **argv, init_opts *o) {
    static const struct option longopts[] = {
        {"out", required_argument, 0, 'o'}, {"layers", required_argument, 0, O_LAYERS},
        {"d-model", required_argument, 0, O_DMODEL}, {"heads", required_argument, 0, O_HEADS},
        {"kv-heads", required_argument, 0, O_KVHEADS}, {"head-dim", required_argument, 0, O_HEADDIM},
        {"d-ff", required_argument, 0, O_DFF}, {"vocab", required_argument, 0, O_VOCAB},
        {"max-pos", required_argument, 0, O_MAXPOS}, {"rope-theta", required_argument, 0, O_THETA},
        {"rms-eps", required_argument, 0, O_EPS}, {"tied", no_argument, 0, O_TIED},
        {"qkv-bias", no_argument, 0, O_QKVB}, {"std", required_argument, 0, O_STD},
        {"seed", required_argument, 0, O_SEED}, {"dtype", required_argument, 0, O_DTYPE},
        {"tokenizer", required_argument, 0, O_TOK}, {"arch", required_argument, 0, O_ARCH},
        MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    mu_config *c = &o->cfg;
    mu_config_init(c);
    c->n_layer = 2, c->d_model = 64, c->n_head = 4, c->n_kv_head = 0, c->head_dim = 0, c->d_ff = 128;
    c->vocab = 512, c->max_pos = 2048, c->rms_eps = 1e-5f;
    o->std = 0.02, o->seed = 1, o->dtype = MU_F32, o->out = NULL;
    const long big = 1 << 20;
    int opt;
    while ((opt = getopt_long(argc, argv, ":o:hVq", longopts, NULL)) != -1) {
        if (mu_cli_common(opt, usage)) continue;
        switch (opt) {
        case 'o': o->out = optarg; break;
        case O_LAYERS: c->n_layer = (int)mu_parse_int("--layers", optarg, 1, 1024); break;
        case O_DMODEL: c->d_model = (int)mu_parse_int("--d-model", optarg, 1, big); break;
        case O_HEADS: c->n_head = (int)mu_parse_int("--heads", optarg, 1, 4096); break;
        case O_KVHEADS: c->n_kv_head = (int)mu_parse_int("--kv-heads", optarg, 1, 4096); break;
        case O_HEADDIM: c->head_dim = (int)mu_parse_int("--head-dim", optarg, 2, big); break;
        case O_DFF: c->d_ff = (int)mu_parse_int("--d-ff", optarg, 1, big); break;
        case O_VOCAB: c->vocab = (int)mu_parse_int("--vocab", optarg, N_TOKENS, big); break;
        case O_MAXPOS: c->max_pos = (int)mu_parse_int("--max-pos", optarg, 1, INT_MAX); break;
        case O_THETA: c->rope_theta = (float)mu_parse_real("--rope-theta", optarg, 1e-30, 1e30); break;
        case O_EPS: c->rms_eps = (float)mu_parse_real("--rms-eps", optarg, 1e-30, 1e30); break;
        case O_TIED: c->tie_embeddings = 1; break;
        case O_QKVB: c->qkv_bias = 1; break;
        case O_STD: o->std = mu_parse_real("--std", optarg, 0, 1e30); break;
        case O_SEED: o->seed = (uint64_t)mu_parse_int("--seed", optarg, 0, LONG_MAX); break;
        case O_DTYPE:
            if (!strcmp(optarg, "f32")) o->dtype = MU_F32;
            else if (!strcmp(optarg, "bf16")) o->dtype = MU_BF16;
            else if (!strcmp(optarg, "f16")) o->dtype = MU_F16;
            else mu_usage_error("--dtype: '%s' is not f32, bf16 or f16", optarg);
            break;
        case O_TOK:
            if (strcmp(optarg, "bytes")) mu_usage_error("--tokenizer: '%s' unknown (bytes)", optarg);
            break;
        case O_ARCH:
            if ((strcmp(optarg, "llama") && strcmp(optarg, "gemma") && strcmp(optarg, "gemma2") &&
                 strcmp(optarg, "gemma3_text") && strcmp(optarg, "olmo2") && strcmp(optarg, "qwen3") &&
                 strcmp(optarg, "gpt_neox") && strcmp(optarg, "gpt2") && strcmp(optarg, "phi") &&
                 strcmp(optarg, "phi3")) ||
                mu_config_set_model_type(c, optarg))
                mu_usage_error("--arch: '%s' is not llama, gemma, gemma2, gemma3_text, olmo2, qwen3, gpt_neox, "
                               "gpt2, phi or phi3", optarg);
            break;
        default: mu_usage_error("unexpected option (see --help)");
        }
    }
    if (optind < argc) mu_usage_error("unexpected argument '%s' (see --help)", argv[optind]);
    if (!o->out) mu_usage_error("--out DIR is required (see --help)");
    if (!c->n_kv_head) c->n_kv_head = c->n_head;
    if (!c->head_dim) {
        if (c->d_model % c->n_head) mu_usage_error("--d-model %d is not a multiple of --heads %d; give --head-dim",
                                                   c->d_model, c->n_head);
        c->head_dim = c->d_model / c->n_head;
    }
    if (c->query_scalar > 0) c->query_scalar = (float)c->head_dim;   /* as Gemma-2 2B and 9B */
    if (c->conv1d && c->head_dim * c->n_head != c->d_model)
        mu_usage_error("--arch gpt2 needs --head-dim = d-model/heads (%d)", c->head_dim);
    if (c->fused_qkv == MU_QKV_PER_HEAD) {   /* GPT-NeoX: rotary_pct 0.25, as GPTNeoXConfig */
        c->rotary_dim = c->head_dim / 4;
        if (c->head_dim * c->n_head != c->d_model || c->rotary_dim < 2 || c->rotary_dim % 2)
            mu_usage_error("--arch gpt_neox needs --head-dim = d-model/heads, a multiple of 8 (%d)", c->head_dim);
        if (c->rotary_dim == c->head_dim) c->rotary_dim = 0;
    }
    if (c->shared_norm) {                    /* Phi: partial_rotary_factor 0.5, as PhiConfig */
        c->rotary_dim = c->head_dim / 2;
        if (c->head_dim * c->n_head != c->d_model || c->rotary_dim < 2 || c->rotary_dim % 2)
            mu_usage_error("--arch phi needs --head-dim = d-model/heads, a multiple of 4 (%d)", c->head_dim);
    }
    if (c->qkv_bias && !c->fused_qkv && !c->shared_norm && strcmp(c->model_type, "llama"))
        mu_usage_error("--qkv-bias goes with --arch llama only (it is written as qwen2)");
    if (c->qkv_bias && !c->fused_qkv && !c->shared_norm) strcpy(c->model_type, "qwen2");  /* q/k/v biases, no o_proj bias */
    c->bos_id = N_BYTE_TOKENS, c->eos_id = N_BYTE_TOKENS + 1, c->pad_id = N_BYTE_TOKENS + 2;
    char err[256];
    if (mu_config_validate(c, err, sizeof err)) mu_usage_error("%s", err);
}

/* ---------------------------------------------------------------- weights */

/* Fills one parameter: norms 1 (stored as 0 where the norm scales by 1 + w: Gemma), biases
 * 0, everything else N(0, std^2) from its own stream. */
static void init_param(const mu_param_info *p, int index, const init_opts *o, float *x, size_t n) {
    if (mu_arch_is_norm(p)) {
        float v = 1.0f - mu_arch_stored_offset(&o->cfg, p);
        for (size_t i = 0; i < n; i++) x[i] = v;
        return;
    }
    if (strstr(p->role, "_bias")) {
        memset(x, 0, n * sizeof *x);
        return;
    }
    mu_rng r;
    mu_rng_seed2(&r, o->seed, (uint64_t)index);
    for (size_t i = 0; i < n; i++) x[i] = (float)(o->std * mu_rng_normal(&r));
}

/* Converts f32 values to the stored dtype in place (the buffer holds n floats). */
static void to_dtype(float *x, size_t n, mu_dtype dt) {
    uint16_t *h = (uint16_t *)x;
    if (dt == MU_BF16) for (size_t i = 0; i < n; i++) h[i] = mu_f32_to_bf16(x[i]);
    else if (dt == MU_F16) for (size_t i = 0; i < n; i++) h[i] = mu_f32_to_f16(x[i]);
}

static void write_weights(const init_opts *o, const char *path) {
    mu_param_info *p;
    int n = mu_arch_params(&o->cfg, &p);
    if (n < 0) mu_die("%s: architecture not supported", o->out);
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_meta(w, "format", "pt");
    float **bufs = mu_xcalloc((size_t)n, sizeof *bufs);
    for (int i = 0; i < n; i++) {
        size_t numel = (size_t)mu_shape_numel(p[i].ndim, p[i].shape);
        bufs[i] = mu_xmalloc(numel * sizeof(float));
        init_param(&p[i], i, o, bufs[i], numel);
        to_dtype(bufs[i], numel, o->dtype);
        mu_st_writer_add(w, p[i].name, o->dtype, p[i].ndim, p[i].shape, bufs[i]);
        mu_progress("init", (uint64_t)i + 1, (uint64_t)n);
    }
    mu_progress_done();
    char err[512];
    int rc = mu_st_writer_write(w, path, err, sizeof err);
    for (int i = 0; i < n; i++) free(bufs[i]);
    free(bufs);
    free(p);
    mu_st_writer_free(w);
    if (rc) mu_die("%s", err);
}

/* ---------------------------------------------------------------- tokenizer */

/* GPT-2's reversible byte -> printable code point map (bytes_to_unicode). */
static int byte_codepoint(int b) {
    if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return b;
    int k = 0;
    for (int c = 0; c < b; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) k++;
    return 256 + k;
}

static void utf8_put(char *buf, int cp) {
    if (cp < 0x80) buf[0] = (char)cp, buf[1] = 0;
    else buf[0] = (char)(0xC0 | cp >> 6), buf[1] = (char)(0x80 | (cp & 0x3F)), buf[2] = 0;
}

static const char *special_tokens[3] = {"<s>", "</s>", "<pad>"};

static void write_json(json_t *j, const char *path) {
    char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII);
    mu_outfile f;
    if (!text) mu_die("%s: cannot encode JSON", path);
    mu_out_open_or_die(&f, path);
    if (fputs(text, f.fp) < 0 || fputc('\n', f.fp) == EOF) {
        mu_out_abort(&f);
        mu_die("%s: write failed", path);
    }
    free(text);
    mu_out_commit_or_die(&f);
}

/* A byte-level BPE tokenizer.json with no merges: every byte is one token (id = byte). */
static void write_tokenizer(const char *path) {
    json_t *added = json_array(), *vocab = json_object();
    for (int i = 0; i < 3; i++)
        json_array_append_new(added, json_pack("{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", N_BYTE_TOKENS + i,
                                               "content", special_tokens[i], "single_word", 0, "lstrip", 0,
                                               "rstrip", 0, "normalized", 0, "special", 1));
    for (int b = 0; b < N_BYTE_TOKENS; b++) {
        char s[4];
        utf8_put(s, byte_codepoint(b));
        json_object_set_new(vocab, s, json_integer(b));
    }
    for (int i = 0; i < 3; i++) json_object_set_new(vocab, special_tokens[i], json_integer(N_BYTE_TOKENS + i));
    json_t *bl = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                           "use_regex", 0);
    json_t *model = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:[]}", "type", "BPE", "dropout",
                              "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0,
                              "byte_fallback", 0, "ignore_merges", 0, "vocab", vocab, "merges");
    json_t *tok = json_pack("{s:s, s:n, s:n, s:o, s:n, s:O, s:n, s:O, s:o}", "version", "1.0", "truncation",
                            "padding", "added_tokens", added, "normalizer", "pre_tokenizer", bl,
                            "post_processor", "decoder", bl, "model", model);
    json_decref(bl);
    write_json(tok, path);
    json_decref(tok);
}

static void write_tokenizer_config(const mu_config *c, const char *path) {
    json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:i, s:b, s:b}", "tokenizer_class", "PreTrainedTokenizerFast",
                          "bos_token", special_tokens[0], "eos_token", special_tokens[1], "pad_token",
                          special_tokens[2], "model_max_length", c->max_pos, "add_bos_token", 0,
                          "clean_up_tokenization_spaces", 0);
    write_json(j, path);
    json_decref(j);
}

/* ---------------------------------------------------------------- main */

static char *tmp_dir;
static void abort_dir(void) { mu_dir_abort(tmp_dir); }

static char *in_dir(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = mu_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int main(int argc, char **argv) {
    mu_cli_init("mu-init", argc, argv);
    init_opts o;
    parse_args(argc, argv, &o);
    char err[512];
    if (!(tmp_dir = mu_dir_tmp_create(o.out, err, sizeof err))) mu_die("%s", err);
    atexit(abort_dir);  /* on mu_die: the temp directory goes away */
    const char *torch = o.dtype == MU_BF16 ? "bfloat16" : o.dtype == MU_F16 ? "float16" : "float32";
    char *cfg = in_dir(tmp_dir, "config.json"), *st = in_dir(tmp_dir, "model.safetensors"),
         *tok = in_dir(tmp_dir, "tokenizer.json"), *tokc = in_dir(tmp_dir, "tokenizer_config.json");
    if (mu_config_write_json_dtype(&o.cfg, torch, cfg, err, sizeof err)) mu_die("%s", err);
    write_weights(&o, st);
    write_tokenizer(tok);
    write_tokenizer_config(&o.cfg, tokc);
    if (mu_dir_commit(tmp_dir, o.out, err, sizeof err)) mu_die("%s", err);
    free(tmp_dir);
    tmp_dir = NULL;
    free(cfg), free(st), free(tok), free(tokc);
    return MU_EXIT_OK;
}
