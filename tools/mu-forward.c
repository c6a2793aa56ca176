/* mu-forward — runs a model over a tokens stream and writes an "outputs" stream (target
 * log-probs and ranks, choice scores, top-k, text log-probs, Min-K%++ statistics,
 * generations) and optionally an "activations" stream; interventions at sites.
 * The work is in lib/forward.c; this file parses options and moves records. */
#define _GNU_SOURCE
#include "cli.h"
#include "model_cli.h"
#include "forward.h"
#include "model.h"
#include "stream.h"
#include "tokenizer.h"
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char usage[] =
    "Usage: mu-forward --model M [OPTION]... [TOKENS]\n"
    "Run a model over a tokens stream (from mu-tokenize; default standard input) and write\n"
    "an outputs stream, one record per input record, in order.\n"
    "\n"
    "  -m, --model PATH        model directory (Hugging Face layout) or GGUF file\n"
    "      --delta FILE        apply a delta (or a PEFT LoRA adapter dir) on top of the\n"
    "                          model (repeatable, in order)\n"
    "      --scaled-delta S=FILE  the same at strength S, in order with --delta: each\n"
    "                          weight w0 + S (w - w0) (w0: before it), low-rank changes\n"
    "                          times S (task arithmetic: -1 negates, 0.5 half way)\n"
    "      --device NAME       auto (default: cuda when a device is usable, else cpu),\n"
    "                          cpu or cuda\n"
    "      --dtype T           weight storage: f32 (default) or bf16 (GEMMs in bf16 with\n"
    "                          f32 accumulation; see mu-cuda(7))\n"
    "      --soft-prompt FILE  vectors for the records' soft-prompt slots (mu-train\n"
    "                          --soft-tokens; mu-soft-prompt(5))\n"
    "      --soft-project      each soft-prompt vector replaced by its nearest token's\n"
    "                          embedding row (cosine): the attack as a hard prompt\n"
    "  -e, --emit LIST         comma list of: target (target_logprobs), ranks (target_ranks),\n"
    "                          choices (choice_logprobs, choice_ntokens), topk, text\n"
    "                          (text_logprobs), mu-sigma (token_mu, token_sigma for Min-K%++),\n"
    "                          all-scores; repeatable. Default: target when a record has\n"
    "                          targets, else text (nothing when only --generate/--cache)\n"
    "  -k, --topk K            emit the top K next tokens after the prompt\n"
    "  -g, --generate N        generate up to N tokens after the prompt (stops after EOS)\n"
    "      --temperature T     sampling temperature (default 0 = greedy)\n"
    "      --top-p P           nucleus sampling mass in (0, 1] (default 1)\n"
    "      --seed N            seed of sampling and noise interventions (default 0)\n"
    "      --eos ID            end-of-sequence id (default: the tokens stream's, else the\n"
    "                          model's); -1 never stops early\n"
    "  -b, --batch-tokens N    padded tokens per forward batch (default 2048)\n"
    "      --row-per-candidate score every candidate in a row of its own, also where each\n"
    "                          is one token and the prompt's row scores them all (checks)\n"
    "  -c, --cache SPEC        capture activations at SITE:LAYERS:POSITIONS (repeatable),\n"
    "                          e.g. resid_post:all:subject_last; needs --cache-out\n"
    "      --cache-out FILE    the activations stream\n"
    "      --cache-dtype T     f32 (default) or f16\n"
    "  -i, --intervene SPEC=ACTION  change activations (repeatable): ACTION is zero, mean,\n"
    "                          mean=FILE, noise=STD, patch=FILE, add=FILE (FILE: an\n"
    "                          activations stream; patch/add match records by id)\n"
    "      --subject NAME      the tokens records' span that subject positions use\n"
    "                          (default subject; e.g. athlete for Sports Facts)\n"
    "  -o, --out FILE          the outputs stream (default standard output)\n"
    "  -q, --quiet             no progress\n"
    "  -h, --help              show this help and exit\n"
    "  -V, --version           show the version and exit\n"
    "\n"
    "Cache and intervention positions index the prompt (last = the last prompt token,\n"
    "subject = spans.subject). Results do not depend on --batch-tokens (except 'mean' over\n"
    "the batch). Exit status: 0 ok, 1 failure, 2 usage error. See mu-forward(1).\n";

enum { O_TEMP = 256, O_TOPP, O_SEED, O_EOS, O_CACHE_OUT, O_CACHE_DTYPE, O_SUBJECT, O_ROW_PER_CAND };

typedef struct {
    mu_model_args ma;       /* --model, --delta, --device, --dtype */
    const char *in, *out, *cache_out;
    int eos_given;
    mu_fw_opts fw;
} cli_opts;

static void parse_args(int argc, char **argv, cli_opts *o)
{
    static const struct option lo[] = {
        MU_MODEL_LONGOPTS, {"emit", required_argument, 0, 'e'},
        {"topk", required_argument, 0, 'k'}, {"generate", required_argument, 0, 'g'},
        {"temperature", required_argument, 0, O_TEMP}, {"top-p", required_argument, 0, O_TOPP},
        {"seed", required_argument, 0, O_SEED}, {"eos", required_argument, 0, O_EOS},
        {"batch-tokens", required_argument, 0, 'b'}, {"cache", required_argument, 0, 'c'},
        {"cache-out", required_argument, 0, O_CACHE_OUT}, {"cache-dtype", required_argument, 0, O_CACHE_DTYPE},
        {"intervene", required_argument, 0, 'i'}, {"out", required_argument, 0, 'o'},
        {"subject", required_argument, 0, O_SUBJECT}, {"row-per-candidate", no_argument, 0, O_ROW_PER_CAND},
        MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    char err[512];
    int opt;
    o->fw = mu_fw_default_opts();
    mu_model_args_init(&o->ma);
    o->out = "-";
    while ((opt = getopt_long(argc, argv, ":m:e:k:g:b:c:i:o:hVq", lo, NULL)) != -1) {
        if (mu_cli_common(opt, usage) || mu_model_args_option(&o->ma, opt, optarg)) continue;
        switch (opt) {
        case 'e': if (mu_emit_parse(optarg, &o->fw.emit, err, sizeof err)) mu_usage_error("--emit: %s", err); break;
        case 'k': o->fw.topk = (int)mu_parse_int("--topk", optarg, 1, 1 << 20); o->fw.emit |= MU_EMIT_TOPK; break;
        case 'g': o->fw.gen_n = (int)mu_parse_int("--generate", optarg, 0, 1 << 20); o->fw.emit |= MU_EMIT_GENERATE; break;
        case O_TEMP: o->fw.temperature = mu_parse_real("--temperature", optarg, 0, 1e6); break;
        case O_TOPP: o->fw.top_p = mu_parse_real("--top-p", optarg, 1e-9, 1); break;
        case O_SEED: o->fw.seed = (uint64_t)mu_parse_int("--seed", optarg, 0, __LONG_MAX__); break;
        case O_EOS: o->fw.eos = (int)mu_parse_int("--eos", optarg, -1, 1L << 30); o->eos_given = 1; break;
        case 'b': o->fw.batch_tokens = mu_parse_int("--batch-tokens", optarg, 1, 1L << 30); break;
        case 'c':
            if (o->fw.n_cache == MU_FW_MAX_SPECS) mu_usage_error("--cache: at most %d", MU_FW_MAX_SPECS);
            o->fw.cache[o->fw.n_cache++] = optarg;
            break;
        case O_CACHE_OUT: o->cache_out = optarg; break;
        case O_CACHE_DTYPE:
            if (!strcmp(optarg, "f32")) o->fw.cache_dtype = MU_F32;
            else if (!strcmp(optarg, "f16")) o->fw.cache_dtype = MU_F16;
            else mu_usage_error("--cache-dtype: '%s' is not f32 or f16", optarg);
            break;
        case 'i':
            if (o->fw.n_intervene == MU_FW_MAX_SPECS) mu_usage_error("--intervene: at most %d", MU_FW_MAX_SPECS);
            o->fw.intervene[o->fw.n_intervene++] = optarg;
            break;
        case 'o': o->out = optarg; break;
        case O_SUBJECT: o->fw.subject = optarg; break;
        case O_ROW_PER_CAND: o->fw.row_per_candidate = 1; break;
        default: mu_usage_error("unexpected option");
        }
    }
    if (!o->ma.path) mu_usage_error("--model is required");
    if (optind < argc - 1) mu_usage_error("one TOKENS stream at most");
    o->in = optind < argc ? argv[optind] : "-";
    if (o->fw.n_cache && !o->cache_out) mu_usage_error("--cache needs --cache-out FILE");
    if (o->cache_out && !o->fw.n_cache) mu_usage_error("--cache-out needs at least one --cache SPEC");
    if (o->cache_out && !strcmp(o->cache_out, o->out)) mu_usage_error("--cache-out and --out are the same file");
}

/* EOS: --eos, else the tokens header's meta.eos, else the model's config. */
static int pick_eos(const cli_opts *o, const mu_reader *r, const mu_model *m)
{
    if (o->eos_given) return o->fw.eos;
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta");
    int64_t e;
    if (meta && !mu_obj_int(mu_obj_get(meta, "eos"), &e) && e >= 0) return (int)e;
    return mu_model_config(m)->eos_id;
}

static void add_inputs(mu_writer *w, const cli_opts *o)
{
    if (strcmp(o->in, "-")) mu_writer_add_input(w, "tokens", o->in);
    mu_writer_add_input(w, "model", o->ma.path);
    for (int i = 0; i < o->ma.n_deltas; i++)
        mu_writer_add_input_scaled(w, "delta", o->ma.deltas[i], o->ma.delta_scales[i]);
    if (o->ma.soft_prompt) mu_writer_add_input(w, "soft_prompt", o->ma.soft_prompt);
}

/* meta.tokens: the tokens stream's producer and inputs (its data file's digest), so results
 * read from a pipe still trace to their data. */
static void write_tokens_trace(mu_writer *w, const mu_reader *r)
{
    const msgpack_object *h = mu_reader_header(r), *prod = mu_obj_get(h, "producer"), *in = mu_obj_get(h, "inputs");
    msgpack_packer *pk = mu_writer_meta(w, "tokens");
    msgpack_pack_map(pk, (size_t)((prod != NULL) + (in != NULL)));
    if (prod) { mu_pack_str(pk, "producer"); msgpack_pack_object(pk, *prod); }
    if (in) { mu_pack_str(pk, "inputs"); msgpack_pack_object(pk, *in); }
}

static void write_meta(mu_writer *w, const cli_opts *o)
{
    msgpack_packer *pk = mu_writer_meta(w, "model");
    mu_pack_str(pk, o->ma.path);
    pk = mu_writer_meta(w, "deltas");
    msgpack_pack_array(pk, (size_t)o->ma.n_deltas);
    for (int i = 0; i < o->ma.n_deltas; i++) mu_pack_str(pk, o->ma.deltas[i]);
    if (o->ma.soft_prompt) {   /* the vectors as read, or projected onto their nearest tokens */
        pk = mu_writer_meta(w, "soft_prompt");
        msgpack_pack_map(pk, 2);
        mu_pack_str(pk, "path");
        mu_pack_str(pk, o->ma.soft_prompt);
        mu_pack_str(pk, "projected");
        if (o->ma.soft_project) msgpack_pack_true(pk);
        else msgpack_pack_false(pk);
    }
    pk = mu_writer_meta(w, "batch_tokens");
    msgpack_pack_int64(pk, o->fw.batch_tokens);
    if (o->fw.emit & MU_EMIT_GENERATE) {
        pk = mu_writer_meta(w, "generate");
        msgpack_pack_map(pk, 5);
        mu_pack_kv_int(pk, "max_new", o->fw.gen_n);
        mu_pack_kv_f64(pk, "temperature", o->fw.temperature);
        mu_pack_kv_f64(pk, "top_p", o->fw.top_p);
        mu_pack_kv_int(pk, "seed", (int64_t)o->fw.seed);
        mu_pack_kv_int(pk, "eos", o->fw.eos);
    }
    pk = mu_writer_meta(w, "interventions");
    msgpack_pack_array(pk, (size_t)o->fw.n_intervene);
    for (int i = 0; i < o->fw.n_intervene; i++) mu_pack_str(pk, o->fw.intervene[i]);
}

int main(int argc, char **argv)
{
    mu_cli_init("mu-forward", argc, argv);
    cli_opts o;
    memset(&o, 0, sizeof o);
    parse_args(argc, argv, &o);
    char err[1024];
    const mu_backend *be = mu_model_args_backend(&o.ma);
    mu_reader *r = mu_reader_open_or_die(o.in, "tokens");
    mu_model *m = mu_model_args_load(&o.ma, be, "model");
    mu_model_args_soft_prompt(&o.ma, m);
    o.fw.eos = pick_eos(&o, r, m);
    mu_tokenizer *tk = NULL;
    if (o.fw.emit & MU_EMIT_GENERATE) tk = mu_tokenizer_load(o.ma.path, err, sizeof err);   /* optional */
    mu_fw *f = mu_fw_new(m, tk, &o.fw, err, sizeof err);
    if (!f) mu_die("%s", err);

    mu_writer *w = mu_writer_open(o.out, "outputs");
    add_inputs(w, &o);
    write_meta(w, &o);
    write_tokens_trace(w, r);
    mu_writer *acts = NULL;
    if (o.cache_out) {
        acts = mu_writer_open(o.cache_out, "activations");
        add_inputs(acts, &o);
        mu_fw_acts_meta(f, acts);
        mu_pack_str(mu_writer_meta(acts, "model"), o.ma.path);
    }
    long chunk = 4 * o.fw.batch_tokens, done = 0;
    const msgpack_object *rec;
    while ((rec = mu_reader_next_or_die(r))) {
        long idx = mu_reader_record_index(r);
        if (mu_fw_add(f, rec, idx, err, sizeof err)) mu_die("%s: record %ld: %s", mu_reader_path(r), idx, err);
        if (mu_fw_pending_tokens(f) >= chunk || mu_fw_pending_records(f) >= 1024) {
            done += mu_fw_pending_records(f);
            if (mu_fw_flush(f, w, acts, err, sizeof err)) mu_die("%s: %s", mu_reader_path(r), err);
            mu_writer_flush(w);
            if (acts) mu_writer_flush(acts);
            mu_progress("forward", (uint64_t)done, 0);
        }
    }
    if (mu_fw_flush(f, w, acts, err, sizeof err)) mu_die("%s: %s", mu_reader_path(r), err);
    mu_progress_done();
    if (acts) mu_writer_close(acts);
    mu_writer_close(w);
    mu_reader_close(r);
    mu_fw_free(f);
    if (tk) mu_tokenizer_free(tk);
    mu_model_free(m);
    mu_model_args_free(&o.ma);
    return MU_EXIT_OK;
}
