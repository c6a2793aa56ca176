/* forward.h — running a model over a tokens stream: what mu-forward emits.
 *
 *   mu_fw_opts o = mu_fw_default_opts();  o.emit = MU_EMIT_TARGET | MU_EMIT_CHOICES;
 *   mu_fw *f = mu_fw_new(model, tokenizer_or_NULL, &o, err, sizeof err);
 *   while (next tokens record rec) {
 *       if (mu_fw_add(f, rec, index, err, sizeof err)) die(file: record N: err);
 *       if (mu_fw_pending_tokens(f) >= chunk) mu_fw_flush(f, out, acts, ...), flush writers;
 *   }
 *   mu_fw_flush(...); mu_fw_free(f);
 *
 * Each queued record becomes one or more rows: prompt ++ targets[k] for every candidate
 * (--emit choices), else prompt ++ targets[answer] (answer or 0), else the prompt alone.
 * Candidates of one token each are scored by one row, the prompt alone (its last position's
 * logits), unless text / mu-sigma or a mean over the batch is asked for.
 * A flush sorts the rows by length (length bucketing), packs them into batches of at most
 * batch_tokens padded tokens (B * T), runs each batch through mu_model_forward, and writes
 * one "outputs" record per queued record, in input order (man/mu-stream.5). Generation runs
 * in batches too: sorted by prompt length, rows x (longest prompt + gen_n) <= batch_tokens,
 * finished rows idle at length 0 until the batch ends. The model's rows
 * are independent, so results do not depend on the budget (except with mean ablation over
 * the batch, which by definition does).
 *
 * Positions of --cache and --intervene specs index the PROMPT (BOS counted): "last" is the
 * last prompt token, "subject" the record's spans.subject (or the span named by opts.subject). Being causal, the activations at
 * prompt positions are the same in every row of a record; caches are read from its first row.
 *
 * Interventions, "SPEC=ACTION" (SPEC as in sites.h; the first '=' splits):
 *   zero            set the activation to 0
 *   mean            the mean over the batch's selected positions (all rows)
 *   mean=FILE       the mean over all vectors of that site and layer in an activations stream
 *   noise=STD       add N(0, STD^2), drawn per record (seed, record index, intervention):
 *                   the same for every row of a record and every batching
 *   patch=FILE      replace by the vectors of the activations stream record with the same id
 *                   (same site, layer and positions required)
 *   add=FILE        add those vectors instead of replacing (steering)
 */
#ifndef MU_FORWARD_H
#define MU_FORWARD_H
#include <stddef.h>
#include <stdint.h>
#include <msgpack.h>
#include "model.h"
#include "stream.h"
#include "tokenizer.h"

enum {
    MU_EMIT_TARGET = 1 << 0,    /* target_logprobs (+ target_text, answer) */
    MU_EMIT_RANKS = 1 << 1,     /* target_ranks */
    MU_EMIT_CHOICES = 1 << 2,   /* choice_logprobs, choice_ntokens, answer */
    MU_EMIT_TOPK = 1 << 3,      /* topk_ids, topk_logprobs */
    MU_EMIT_TEXT = 1 << 4,      /* text_logprobs over the whole row (prompt ++ target) */
    MU_EMIT_MUSIGMA = 1 << 5,   /* token_mu, token_sigma (Min-K%++) */
    MU_EMIT_GENERATE = 1 << 6   /* generation (+ generation_text with a tokenizer) */
};
/* Parses a comma list of target,ranks,choices,topk,text,mu-sigma (also "all-scores").
 * 0 ok, -1 + err. */
int mu_emit_parse(const char *list, unsigned *out, char *err, size_t errlen);

#define MU_FW_MAX_SPECS 32

typedef struct {
    unsigned emit;           /* MU_EMIT_*; 0 = auto: target when a record has targets,
                                else text (unless only caches/generation are asked) */
    int topk;                /* K for MU_EMIT_TOPK */
    int gen_n;               /* new tokens for MU_EMIT_GENERATE */
    double temperature;      /* 0 = greedy */
    double top_p;            /* nucleus mass (1 = off) */
    uint64_t seed;           /* sampling and noise */
    int eos;                 /* stop generating after this id; -1 = never */
    long batch_tokens;       /* padded tokens per forward batch (B * T), >= 1 */
    const char *cache[MU_FW_MAX_SPECS]; int n_cache;   /* site specs to capture */
    mu_dtype cache_dtype;    /* MU_F32 or MU_F16 */
    const char *intervene[MU_FW_MAX_SPECS]; int n_intervene;
    const char *subject;     /* the spans entry that "subject" positions use (default "subject") */
    int row_per_candidate;   /* a row per candidate even when each is one token (checks, benchmarks) */
} mu_fw_opts;

mu_fw_opts mu_fw_default_opts(void);

typedef struct mu_fw mu_fw;

/* Parses the site specs and interventions (loading patch / mean files). NULL + err. */
mu_fw *mu_fw_new(mu_model *m, mu_tokenizer *tk, const mu_fw_opts *o, char *err, size_t errlen);
void mu_fw_free(mu_fw *f);

/* Validates one tokens record (ids < vocab, targets present when needed, answer in range,
 * subject span inside the prompt when a spec needs it) and queues it. index: the record's
 * position in the input (noise and sampling streams). 0 ok, -1 + err (what, no file). */
int mu_fw_add(mu_fw *f, const msgpack_object *rec, long index, char *err, size_t errlen);
/* Work queued, in tokens: the rows' tokens (unpadded), plus prompt + gen_n per record
 * that generates. mu-forward flushes at about four batch budgets. */
long mu_fw_pending_tokens(const mu_fw *f);
int mu_fw_pending_records(const mu_fw *f);
/* Runs everything queued and writes one outputs record per queued record (in order) to
 * out, and with caches one activations record each to acts (may be NULL otherwise).
 * 0 ok, -1 + err ("record N: what" for a per-record problem). */
int mu_fw_flush(mu_fw *f, mu_writer *out, mu_writer *acts, char *err, size_t errlen);

/* Header meta of the activations stream ("sites": canonical specs, "dtype"). */
void mu_fw_acts_meta(const mu_fw *f, mu_writer *acts);

/* log-softmax helpers (exposed for tests): log-sum-exp of x[V]; rank of x[tok] (number of
 * entries strictly greater); mean and std of log p under p. */
double mu_fw_logsumexp(const float *x, int V);
int mu_fw_rank(const float *x, int V, int tok);
void mu_fw_mu_sigma(const float *x, int V, double lse, float *mu, float *sigma);
#endif
