/* mu-score — metrics of unlearning/editing runs from "outputs" streams, grouped by
 * metadata; removal–retention curve summaries (AUES, MU95) from "metrics" streams.
 * Writes a "metrics" stream (--out) and a table/TSV/JSON on stdout. See mu-score(1). */
#define _GNU_SOURCE
#include "cli.h"
#include "stream.h"
#include "metrics.h"
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: mu-score [OPTIONS] [--label KEY=VALUE]... [FILE]...   (no FILE: stdin)\n"
    "       mu-score --curve --original FILE [OPTIONS] RUN.metrics...\n"
    "Scores model outputs (streams of kind \"outputs\" from mu-forward) per group and\n"
    "prints a table; --out writes the same numbers as a \"metrics\" stream.\n"
    "\n"
    "Grouping:\n"
    "  --by FIELDS        comma-separated meta fields (or labels) to group records by\n"
    "  --label KEY=VALUE  tag the FILEs that follow with KEY=VALUE (usable in --by)\n"
    "Metrics:\n"
    "  --metrics LIST     comma-separated metric names (default: every metric whose\n"
    "                     fields are present in all records of a group; a metric named\n"
    "                     here makes a record without its fields an error)\n"
    "  --reference FILE   outputs of a reference model (TOFU: the retain model) on the\n"
    "                     same data: forget_quality = KS p-value of truth ratios per group\n"
    "  --utility          TOFU model_utility over the groups (needs --by; a group whose\n"
    "                     value contains \"forget\" is left out, \"retain\" groups use\n"
    "                     answer_prob, others option_prob)\n"
    "  --auc A:B          membership-inference ROC AUC of each MIA score between group A\n"
    "                     (members, label 0) and group B (non-members, label 1); groups are\n"
    "                     named by their --by values joined with '/'; repeatable\n"
    "  --k FRAC           fraction for Min-K%% and Min-K%%++ (default 0.2)\n"
    "  --no-stem          ROUGE without the Porter stemmer (TOFU stems)\n"
    "  --ci LEVEL         confidence interval of every per-record mean at LEVEL (default\n"
    "                     0.95; 0: none): Wilson's for 0/1 values (accuracies), else\n"
    "                     Student's t\n"
    "  --paired B         compare with B, the outputs of another model on the same records\n"
    "                     (matched by id): per group and per-record metric, the mean\n"
    "                     difference FILE - B, its interval and a paired test's p-value:\n"
    "                     Newcombe's interval and McNemar's exact test for 0/1 values\n"
    "                     (accuracies), else a t interval and the paired t-test\n"
    "                     (TSV/JSON/stream: p_value and test)\n"
    "Curves (--curve; inputs are metrics streams, one per run of a sweep):\n"
    "  --original FILE    metrics of the unedited model\n"
    "  --forget M@SEL     forget score, e.g. choice_prob@split=forget (the default)\n"
    "  --retain M@SEL     retain score (default choice_prob@split=retain)\n"
    "  --quality M@SEL    forget quality for MU95 (default forget_quality@split=forget)\n"
    "  --model-utility M@SEL  utility for MU95 (default model_utility)\n"
    "  (--label sweep=VALUE before a run names its forget_strength/retention points)\n"
    "Output:\n"
    "  --out FILE         metrics stream (atomic); '-' = stdout\n"
    "  --format F         table, tsv or json on stdout (default: table, unless --out is\n"
    "                     given and stdout is not a terminal)\n"
    "  -q, --quiet        no progress\n"
    "  -h, --help         this help;  -V, --version  version\n"
    "\n"
    "Metrics (fields of the outputs records they need):\n"
    "  choice_acc          argmax of choice_logprobs == answer\n"
    "  choice_prob         exp(lp[answer]) / sum exp(lp) (Mechanistic Unlearning)\n"
    "  choice_prob_norm    same with per-token normalized lp (+choice_ntokens)\n"
    "  option_prob         TOFU Prob. with options: true answer (target_logprobs) vs the\n"
    "                      non-answer candidates, all per-token normalized\n"
    "  truth_ratio         TOFU: R = P(perturbed)^(1/n) / P(paraphrase)^(1/n) with the\n"
    "                      paraphrase = candidate [answer]; forget groups report\n"
    "                      mean(min(R, 1/R)), others mean(max(0, 1-R))\n"
    "  truth_ratio_raw     mean R\n"
    "  forget_quality      KS test p-value of R vs the --reference model's R (scipy)\n"
    "  target_prob         exp(sum target_logprobs)\n"
    "  answer_prob         exp(mean target_logprobs) (TOFU Prob., length-normalized)\n"
    "  target_loss         mean NLL per target token (averaged over records)\n"
    "  text_loss           mean NLL per token of text_logprobs over the group\n"
    "  perplexity          exp(text_loss)\n"
    "  exact_match         generation_text == target_text after strip\n"
    "  rougeL_recall       ROUGE-L recall of generation_text vs target_text (rouge_score)\n"
    "  rouge1_recall       ROUGE-1 recall\n"
    "  exact_memorization  fraction of target tokens with target_ranks == 0\n"
    "  extraction_strength 1 - k/m, k the shortest prefix after which all tokens are argmax\n"
    "  mia_loss            mean NLL of target_logprobs (else text_logprobs)\n"
    "  mia_zlib            mia_loss / zlib-compressed length of target_text\n"
    "  mia_min_k           -mean of the k lowest token log-probs\n"
    "  mia_min_k_pp        Min-K%%++ (+token_mu, token_sigma)\n"
    "  mia_auc_<score>     ROC AUC (--auc) of a MIA score\n"
    "  model_utility       harmonic mean of the TOFU values (--utility)\n"
    "  aues, mu95, mu95_interp   curve summaries (--curve)\n"
    "  forget_strength, retention  the curve's points, one per run (--curve)\n";

/* ---------------------------------------------------------------- metric table */

enum {
    M_CHOICE_ACC, M_CHOICE_PROB, M_CHOICE_PROB_NORM, M_OPTION_PROB, M_TRUTH_RATIO,
    M_TRUTH_RATIO_RAW, M_FORGET_QUALITY, M_TARGET_PROB, M_ANSWER_PROB, M_TARGET_LOSS,
    M_TEXT_LOSS, M_PERPLEXITY, M_EXACT_MATCH, M_ROUGEL, M_ROUGE1, M_EXACT_MEM, M_EXTRACTION,
    M_MIA_LOSS, M_MIA_ZLIB, M_MIA_MIN_K, M_MIA_MIN_K_PP, NMETRICS
};

/* Field bits */
enum {
    F_TLP = 1 << 0, F_TRANK = 1 << 1, F_CLP = 1 << 2, F_CNT = 1 << 3, F_ANS = 1 << 4,
    F_GEN = 1 << 5, F_TTEXT = 1 << 6, F_TXLP = 1 << 7, F_MU = 1 << 8, F_SIGMA = 1 << 9,
    F_LPANY = 1 << 10 /* target_logprobs or text_logprobs */
};
static const char *const field_names[] = {"target_logprobs", "target_ranks", "choice_logprobs",
    "choice_ntokens", "answer", "generation_text", "target_text", "text_logprobs", "token_mu",
    "token_sigma", "target_logprobs (or text_logprobs)"};

static const struct { const char *name; unsigned fields; } metric_info[NMETRICS] = {
    [M_CHOICE_ACC] = {"choice_acc", F_CLP | F_ANS},
    [M_CHOICE_PROB] = {"choice_prob", F_CLP | F_ANS},
    [M_CHOICE_PROB_NORM] = {"choice_prob_norm", F_CLP | F_CNT | F_ANS},
    [M_OPTION_PROB] = {"option_prob", F_TLP | F_CLP | F_CNT | F_ANS},
    [M_TRUTH_RATIO] = {"truth_ratio", F_CLP | F_CNT | F_ANS},
    [M_TRUTH_RATIO_RAW] = {"truth_ratio_raw", F_CLP | F_CNT | F_ANS},
    [M_FORGET_QUALITY] = {"forget_quality", F_CLP | F_CNT | F_ANS},
    [M_TARGET_PROB] = {"target_prob", F_TLP},
    [M_ANSWER_PROB] = {"answer_prob", F_TLP},
    [M_TARGET_LOSS] = {"target_loss", F_TLP},
    [M_TEXT_LOSS] = {"text_loss", F_TXLP},
    [M_PERPLEXITY] = {"perplexity", F_TXLP},
    [M_EXACT_MATCH] = {"exact_match", F_GEN | F_TTEXT},
    [M_ROUGEL] = {"rougeL_recall", F_GEN | F_TTEXT},
    [M_ROUGE1] = {"rouge1_recall", F_GEN | F_TTEXT},
    [M_EXACT_MEM] = {"exact_memorization", F_TRANK},
    [M_EXTRACTION] = {"extraction_strength", F_TRANK},
    [M_MIA_LOSS] = {"mia_loss", F_LPANY},
    [M_MIA_ZLIB] = {"mia_zlib", F_LPANY | F_TTEXT},
    [M_MIA_MIN_K] = {"mia_min_k", F_LPANY},
    [M_MIA_MIN_K_PP] = {"mia_min_k_pp", F_LPANY | F_MU | F_SIGMA},
};
static const int mia_metrics[] = {M_MIA_LOSS, M_MIA_ZLIB, M_MIA_MIN_K, M_MIA_MIN_K_PP};

static int metric_by_name(const char *s) {
    for (int i = 0; i < NMETRICS; i++) if (!strcmp(metric_info[i].name, s)) return i;
    return -1;
}

/* ---------------------------------------------------------------- options */

typedef struct { char *key, *val; } label;
typedef struct { char *path; label *labels; int nlabels; } input;

static struct {
    char **by; int nby;
    int explicit_metric[NMETRICS], any_explicit;
    const char *reference, *out, *format;
    int utility, stem;
    double k;
    char **auc; int nauc;
    int curve;
    const char *original, *sel_forget, *sel_retain, *sel_quality, *sel_utility;
    double ci;                      /* confidence level of the intervals, 0: none */
    const char *paired;             /* --paired B: differences to B's records of the same ids */
} opt = {.stem = 1, .k = 0.2, .ci = 0.95};

static input *inputs; static int ninputs;

/* An input file tagged with the labels in force where it was named. */
static void add_input(const char *path, const label *cur, int ncur) {
    inputs = mu_xrealloc(inputs, (size_t)(ninputs + 1) * sizeof *inputs);
    inputs[ninputs].path = mu_xstrdup(path);
    inputs[ninputs].labels = mu_xmalloc((size_t)(ncur ? ncur : 1) * sizeof(label));
    if (ncur) memcpy(inputs[ninputs].labels, cur, (size_t)ncur * sizeof(label));
    inputs[ninputs].nlabels = ncur;
    ninputs++;
}
static input ref_input; /* --reference, with the labels given before it */
static char **retired; static int nretired; /* label values replaced by a later --label */

static char **split_list(const char *s, int *n) {
    char *dup = mu_xstrdup(s), *save = NULL, **out = NULL;
    *n = 0;
    for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!*t) continue;
        out = mu_xrealloc(out, (size_t)(*n + 1) * sizeof *out);
        out[(*n)++] = mu_xstrdup(t);
    }
    free(dup);
    return out;
}

/* ---------------------------------------------------------------- groups */

typedef struct {
    char **vals;          /* one per --by field */
    char *name;           /* values joined by '/' ("all" without --by) */
    int is_forget, is_retain;
    size_t n;             /* records */
    /* per metric: sum of per-record values, records having it; their running mean and
       sum of squared deviations (Welford), and whether a value other than 0 or 1 came */
    double sum[NMETRICS]; size_t cnt[NMETRICS];
    double wmean[NMETRICS], m2[NMETRICS]; unsigned char nonbinary[NMETRICS];
    double text_nll; size_t text_ntok;
    double *tr; size_t ntr, cap_tr;             /* truth ratios */
    double *mia[4]; size_t nmia, cap_mia;       /* per-record MIA scores (all 4, NaN if absent) */
    /* --paired: every per-record value with its record's id, per metric */
    int64_t *rid[NMETRICS]; double *rval[NMETRICS]; size_t rn[NMETRICS], rcap[NMETRICS];
} group;

typedef struct { group *g; int n; } group_set;

static int group_find(group_set *gs, char **vals, int create) {
    for (int i = 0; i < gs->n; i++) {
        int same = 1;
        for (int j = 0; j < opt.nby && same; j++) same = !strcmp(gs->g[i].vals[j], vals[j]);
        if (same) return i;
    }
    if (!create) return -1;
    gs->g = mu_xrealloc(gs->g, (size_t)(gs->n + 1) * sizeof *gs->g);
    group *g = &gs->g[gs->n];
    memset(g, 0, sizeof *g);
    g->vals = mu_xcalloc((size_t)(opt.nby ? opt.nby : 1), sizeof *g->vals);
    size_t len = 4;
    for (int j = 0; j < opt.nby; j++) { g->vals[j] = mu_xstrdup(vals[j]); len += strlen(vals[j]) + 1; }
    g->name = mu_xcalloc(len, 1);
    if (!opt.nby) strcpy(g->name, "all");
    for (int j = 0; j < opt.nby; j++) {
        if (j) strcat(g->name, "/");
        strcat(g->name, vals[j]);
        if (strstr(vals[j], "forget")) g->is_forget = 1;
        if (strstr(vals[j], "retain")) g->is_retain = 1;
    }
    return gs->n++;
}

static void push_double(double **a, size_t *n, size_t *cap, double v) {
    if (*n == *cap) { *cap = *cap ? *cap * 2 : 64; *a = mu_xrealloc(*a, *cap * sizeof **a); }
    (*a)[(*n)++] = v;
}

/* ---------------------------------------------------------------- record fields */

typedef struct {
    float *tlp, *clp, *txlp, *mu, *sigma; size_t ntlp, nclp, ntxlp, nmu, nsigma;
    int32_t *trank, *cnt; size_t ntrank, ncnt;
    int64_t answer;
    char *gen, *ttext;
    unsigned have;
} rec_fields;

static void fields_free(rec_fields *f) {
    free(f->tlp); free(f->clp); free(f->txlp); free(f->mu); free(f->sigma);
    free(f->trank); free(f->cnt); free(f->gen); free(f->ttext);
    memset(f, 0, sizeof *f);
}

/* The 1-D tensor field key of rec, validated (dies naming the record otherwise).
 * 0 absent (or nil), 1 ok. */
static int get_vector(mu_reader *r, const msgpack_object *rec, const char *key, mu_tensor_view *t) {
    const msgpack_object *o = mu_obj_get(rec, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
    char err[256];
    if (mu_obj_tensor(o, t, err, sizeof err)) mu_reader_die(r, "%s: %s", key, err);
    if (t->ndim != 1) mu_reader_die(r, "%s: expected 1 dimension, got %d", key, t->ndim);
    return 1;
}

/* Reads a 1-D tensor field into a float array (f32/f64/f16/bf16). 0 absent, 1 ok. */
static int get_floats(mu_reader *r, const msgpack_object *rec, const char *key, float **out, size_t *n) {
    mu_tensor_view t;
    if (!get_vector(r, rec, key, &t)) return 0;
    size_t m = (size_t)t.shape[0];
    float *v = mu_xmalloc((m ? m : 1) * sizeof *v);
    if (mu_to_f32(t.dtype, t.data, m, v)) {
        free(v);
        mu_reader_die(r, "%s: expected a float tensor, got %s", key, mu_dtype_name(t.dtype));
    }
    *out = v; *n = m;
    return 1;
}

static int get_ints(mu_reader *r, const msgpack_object *rec, const char *key, int32_t **out, size_t *n) {
    mu_tensor_view t;
    if (!get_vector(r, rec, key, &t)) return 0;
    size_t m = (size_t)t.shape[0];
    int32_t *v = mu_xmalloc((m ? m : 1) * sizeof *v);
    const unsigned char *d = t.data;
    for (size_t i = 0; i < m; i++) {
        int64_t x;
        switch (t.dtype) {
        case MU_I32: { int32_t y; memcpy(&y, d + 4 * i, 4); x = y; break; }
        case MU_I64: memcpy(&x, d + 8 * i, 8); break;
        case MU_U32: { uint32_t y; memcpy(&y, d + 4 * i, 4); x = y; break; }
        default: free(v); mu_reader_die(r, "%s: expected an integer tensor, got %s", key, mu_dtype_name(t.dtype));
        }
        if (x < INT32_MIN || x > INT32_MAX) { free(v); mu_reader_die(r, "%s[%zu] = %lld is out of range", key, i, (long long)x); }
        v[i] = (int32_t)x;
    }
    *out = v; *n = m;
    return 1;
}

static int get_str(mu_reader *r, const msgpack_object *rec, const char *key, char **out) {
    const msgpack_object *o = mu_obj_get(rec, key);
    if (!o || o->type == MSGPACK_OBJECT_NIL) return 0;
    if (o->type != MSGPACK_OBJECT_STR) mu_reader_die(r, "%s: expected a string", key);
    *out = mu_obj_strdup(o);
    if (memchr(o->via.str.ptr, 0, o->via.str.size)) mu_reader_die(r, "%s: string contains a NUL byte", key);
    return 1;
}

static void read_fields(mu_reader *r, const msgpack_object *rec, rec_fields *f) {
    memset(f, 0, sizeof *f);
    if (get_floats(r, rec, "target_logprobs", &f->tlp, &f->ntlp)) f->have |= F_TLP;
    if (get_floats(r, rec, "choice_logprobs", &f->clp, &f->nclp)) f->have |= F_CLP;
    if (get_floats(r, rec, "text_logprobs", &f->txlp, &f->ntxlp)) f->have |= F_TXLP;
    if (get_floats(r, rec, "token_mu", &f->mu, &f->nmu)) f->have |= F_MU;
    if (get_floats(r, rec, "token_sigma", &f->sigma, &f->nsigma)) f->have |= F_SIGMA;
    if (get_ints(r, rec, "target_ranks", &f->trank, &f->ntrank)) f->have |= F_TRANK;
    if (get_ints(r, rec, "choice_ntokens", &f->cnt, &f->ncnt)) f->have |= F_CNT;
    if (get_str(r, rec, "generation_text", &f->gen)) f->have |= F_GEN;
    if (get_str(r, rec, "target_text", &f->ttext)) f->have |= F_TTEXT;
    if (f->have & (F_TLP | F_TXLP)) f->have |= F_LPANY;
    const msgpack_object *a = mu_obj_get(rec, "answer");
    if (a && a->type != MSGPACK_OBJECT_NIL) {
        if (mu_obj_int(a, &f->answer)) mu_reader_die(r, "answer: expected an integer");
        f->have |= F_ANS;
    }
    /* consistency between fields that exist */
    if ((f->have & F_CLP) && (f->have & F_CNT) && f->nclp != f->ncnt)
        mu_reader_die(r, "choice_ntokens has %zu values, choice_logprobs %zu", f->ncnt, f->nclp);
    if ((f->have & F_CNT))
        for (size_t i = 0; i < f->ncnt; i++)
            if (f->cnt[i] <= 0) mu_reader_die(r, "choice_ntokens[%zu] = %d (must be > 0)", i, f->cnt[i]);
    if ((f->have & F_ANS) && (f->have & F_CLP) && (f->answer < 0 || (size_t)f->answer >= f->nclp))
        mu_reader_die(r, "answer %lld is not a candidate index (0..%zu)", (long long)f->answer, f->nclp - 1);
    if ((f->have & F_CLP) && f->nclp == 0) mu_reader_die(r, "choice_logprobs is empty");
    const float *lp = (f->have & F_TLP) ? f->tlp : f->txlp;
    size_t nlp = (f->have & F_TLP) ? f->ntlp : f->ntxlp;
    if ((f->have & F_MU) && (f->have & F_LPANY) && f->nmu != nlp)
        mu_reader_die(r, "token_mu has %zu values, the log-probs %zu", f->nmu, nlp);
    if ((f->have & F_SIGMA) && (f->have & F_LPANY) && f->nsigma != nlp)
        mu_reader_die(r, "token_sigma has %zu values, the log-probs %zu", f->nsigma, nlp);
    (void)lp;
}

/* ---------------------------------------------------------------- per-record values */

static void need(mu_reader *r, const rec_fields *f, int m) {
    unsigned miss = metric_info[m].fields & ~f->have;
    if (!miss) return;
    for (int b = 0; b < 11; b++)
        if (miss & (1u << b))
            mu_reader_die(r, "no field \"%s\" (needed by metric %s)", field_names[b], metric_info[m].name);
}

static int metric_wanted(int m, unsigned have) {
    if (opt.utility && (m == M_ANSWER_PROB || m == M_OPTION_PROB || m == M_ROUGEL) &&
        (metric_info[m].fields & ~have) == 0) return 1;
    if (opt.any_explicit) return opt.explicit_metric[m];
    return (metric_info[m].fields & ~have) == 0;
}

static int64_t cur_id;   /* the id of the record being scored (--paired) */

static void add_value(group *g, int m, double v) {
    if (opt.paired) {
        if (g->rn[m] == g->rcap[m]) {
            g->rcap[m] = g->rcap[m] ? 2 * g->rcap[m] : 64;
            g->rid[m] = mu_xrealloc(g->rid[m], g->rcap[m] * sizeof *g->rid[m]);
            g->rval[m] = mu_xrealloc(g->rval[m], g->rcap[m] * sizeof *g->rval[m]);
        }
        g->rid[m][g->rn[m]] = cur_id;
        g->rval[m][g->rn[m]++] = v;
    }
    g->sum[m] += v; g->cnt[m]++;
    double d = v - g->wmean[m];
    g->wmean[m] += d / (double)g->cnt[m];
    g->m2[m] += d * (v - g->wmean[m]);
    if (v != 0 && v != 1) g->nonbinary[m] = 1;
}

static void score_record(mu_reader *r, const rec_fields *f, group *g, int keep_tr) {
    g->n++;
    if (opt.any_explicit)
        for (int m = 0; m < NMETRICS; m++) if (opt.explicit_metric[m]) need(r, f, m);
    unsigned h = f->have;
    int k = (int)f->nclp, a = (int)f->answer;
    if (metric_wanted(M_CHOICE_ACC, h)) add_value(g, M_CHOICE_ACC, mu_choice_argmax(f->clp, k) == a);
    if (metric_wanted(M_CHOICE_PROB, h)) add_value(g, M_CHOICE_PROB, mu_choice_prob(f->clp, k, a));
    if (metric_wanted(M_CHOICE_PROB_NORM, h))
        add_value(g, M_CHOICE_PROB_NORM, mu_choice_prob_lennorm(f->clp, f->cnt, k, a));
    if (metric_wanted(M_OPTION_PROB, h)) {
        if (!f->ntlp) mu_reader_die(r, "target_logprobs is empty (needed by option_prob)");
        add_value(g, M_OPTION_PROB, mu_option_prob(mu_mean(f->tlp, f->ntlp), f->clp, f->cnt, k, a));
    }
    if (keep_tr || metric_wanted(M_TRUTH_RATIO, h) || metric_wanted(M_TRUTH_RATIO_RAW, h) ||
        metric_wanted(M_FORGET_QUALITY, h)) {
        if ((h & (F_CLP | F_CNT | F_ANS)) == (F_CLP | F_CNT | F_ANS)) {
            if (k < 2) mu_reader_die(r, "truth ratio needs at least 2 candidates, got %d", k);
            double tr = mu_truth_ratio(f->clp, f->cnt, k, a);
            push_double(&g->tr, &g->ntr, &g->cap_tr, tr);
            add_value(g, M_TRUTH_RATIO_RAW, tr);
            g->cnt[M_TRUTH_RATIO]++;
        }
    }
    if (h & F_TLP) {
        if (metric_wanted(M_TARGET_PROB, h)) add_value(g, M_TARGET_PROB, exp(mu_sum(f->tlp, f->ntlp)));
        if (f->ntlp == 0 && (metric_wanted(M_ANSWER_PROB, h) || metric_wanted(M_TARGET_LOSS, h)))
            mu_reader_die(r, "target_logprobs is empty");
        if (metric_wanted(M_ANSWER_PROB, h)) add_value(g, M_ANSWER_PROB, exp(mu_mean(f->tlp, f->ntlp)));
        if (metric_wanted(M_TARGET_LOSS, h)) add_value(g, M_TARGET_LOSS, -mu_mean(f->tlp, f->ntlp));
    }
    if ((h & F_TXLP) && (metric_wanted(M_TEXT_LOSS, h) || metric_wanted(M_PERPLEXITY, h))) {
        g->text_nll -= mu_sum(f->txlp, f->ntxlp);
        g->text_ntok += f->ntxlp;
        g->cnt[M_TEXT_LOSS]++; g->cnt[M_PERPLEXITY]++;
    }
    if (metric_wanted(M_EXACT_MATCH, h)) add_value(g, M_EXACT_MATCH, mu_exact_match(f->gen, f->ttext));
    if (metric_wanted(M_ROUGEL, h) || metric_wanted(M_ROUGE1, h)) {
        mu_rouge rl, r1;
        if (mu_rouge_l(f->ttext, f->gen, opt.stem, &rl) || mu_rouge_1(f->ttext, f->gen, opt.stem, &r1))
            mu_reader_die(r, "generation_text or target_text is not valid UTF-8");
        if (metric_wanted(M_ROUGEL, h)) add_value(g, M_ROUGEL, rl.recall);
        if (metric_wanted(M_ROUGE1, h)) add_value(g, M_ROUGE1, r1.recall);
    }
    if (h & F_TRANK) {
        if (f->ntrank == 0 && (metric_wanted(M_EXACT_MEM, h) || metric_wanted(M_EXTRACTION, h)))
            mu_reader_die(r, "target_ranks is empty");
        if (metric_wanted(M_EXACT_MEM, h)) add_value(g, M_EXACT_MEM, mu_exact_memorization(f->trank, f->ntrank));
        if (metric_wanted(M_EXTRACTION, h)) add_value(g, M_EXTRACTION, mu_extraction_strength(f->trank, f->ntrank));
    }
    /* membership inference: per-record scores kept for --auc */
    double mia[4] = {NAN, NAN, NAN, NAN};
    if (h & F_LPANY) {
        const float *lp = (h & F_TLP) ? f->tlp : f->txlp;
        size_t n = (h & F_TLP) ? f->ntlp : f->ntxlp;
        double loss = n ? -mu_mean(lp, n) : 0;
        if (metric_wanted(M_MIA_LOSS, h) || opt.nauc) mia[0] = loss;
        if ((h & F_TTEXT) && (metric_wanted(M_MIA_ZLIB, h) || opt.nauc))
            mia[1] = mu_zlib_score(loss, f->ttext, strlen(f->ttext));
        if (metric_wanted(M_MIA_MIN_K, h) || opt.nauc) mia[2] = mu_min_k(lp, n, opt.k);
        if ((h & F_MU) && (h & F_SIGMA) && (metric_wanted(M_MIA_MIN_K_PP, h) || opt.nauc))
            mia[3] = mu_min_k_pp(lp, f->mu, f->sigma, n, opt.k);
    }
    for (int i = 0; i < 4; i++) {
        if (!isnan(mia[i]) && metric_wanted(mia_metrics[i], h)) add_value(g, mia_metrics[i], mia[i]);
    }
    if (opt.nauc) {
        if (g->nmia == g->cap_mia) {
            g->cap_mia = g->cap_mia ? g->cap_mia * 2 : 64;
            for (int i = 0; i < 4; i++) g->mia[i] = mu_xrealloc(g->mia[i], g->cap_mia * sizeof(double));
        }
        for (int i = 0; i < 4; i++) g->mia[i][g->nmia] = mia[i];
        g->nmia++;
    }
}

/* Group key values of a record: labels of its file first, then record meta. */
static void record_key(mu_reader *r, const msgpack_object *rec, const input *in, char **vals) {
    const msgpack_object *meta = mu_obj_get(rec, "meta");
    for (int j = 0; j < opt.nby; j++) {
        vals[j] = NULL;
        for (int l = in->nlabels - 1; l >= 0 && !vals[j]; l--)
            if (!strcmp(in->labels[l].key, opt.by[j])) vals[j] = mu_xstrdup(in->labels[l].val);
        if (vals[j]) continue;
        const msgpack_object *v = meta ? mu_obj_get(meta, opt.by[j]) : NULL;
        if (!v) mu_reader_die(r, "no meta field \"%s\" or label for --by", opt.by[j]);
        char buf[64];
        if (v->type == MSGPACK_OBJECT_STR) vals[j] = mu_obj_strdup(v);
        else if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) { snprintf(buf, sizeof buf, "%llu", (unsigned long long)v->via.u64); vals[j] = mu_xstrdup(buf); }
        else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) { snprintf(buf, sizeof buf, "%lld", (long long)v->via.i64); vals[j] = mu_xstrdup(buf); }
        else if (v->type == MSGPACK_OBJECT_BOOLEAN) vals[j] = mu_xstrdup(v->via.boolean ? "true" : "false");
        else if (v->type == MSGPACK_OBJECT_FLOAT32 || v->type == MSGPACK_OBJECT_FLOAT64) { snprintf(buf, sizeof buf, "%.17g", v->via.f64); vals[j] = mu_xstrdup(buf); }
        else mu_reader_die(r, "meta field \"%s\" is not a string, number or boolean", opt.by[j]);
    }
}

static void score_file(const input *in, group_set *gs, int keep_tr) {
    mu_reader *r = mu_reader_open_or_die(in->path, "outputs");
    char **vals = mu_xcalloc((size_t)(opt.nby ? opt.nby : 1), sizeof *vals);
    const msgpack_object *rec;
    uint64_t done = 0;
    while ((rec = mu_reader_next_or_die(r))) {
        if (rec->type != MSGPACK_OBJECT_MAP) mu_reader_die(r, "record is not a map");
        record_key(r, rec, in, vals);
        if (opt.paired && mu_obj_int(mu_obj_get(rec, "id"), &cur_id) < 0)
            mu_reader_die(r, "no integer \"id\" (--paired matches records by id)");
        int gi = group_find(gs, vals, 1);
        for (int j = 0; j < opt.nby; j++) free(vals[j]);
        rec_fields f;
        read_fields(r, rec, &f);
        score_record(r, &f, &gs->g[gi], keep_tr);
        fields_free(&f);
        if (++done % 256 == 0) mu_progress(in->path, done, 0);
    }
    mu_progress_done();
    free(vals);
    mu_reader_close(r);
}

/* ---------------------------------------------------------------- results */

/* lo, hi: the confidence interval of value (NaN when it has none) */
/* p, test: a paired test's p-value and name (NaN, NULL without --paired) */
typedef struct { char *metric; char **keys, **vals; int nkv; double value; long n; double lo, hi, p; const char *test; } result;
static result *results; static int nresults;

static void emit(const char *metric, char **keys, char **vals, int nkv, double value, long n) {
    results = mu_xrealloc(results, (size_t)(nresults + 1) * sizeof *results);
    result *r = &results[nresults++];
    r->metric = mu_xstrdup(metric);
    r->nkv = nkv;
    r->keys = mu_xcalloc((size_t)(nkv ? nkv : 1), sizeof(char *));
    r->vals = mu_xcalloc((size_t)(nkv ? nkv : 1), sizeof(char *));
    for (int i = 0; i < nkv; i++) { r->keys[i] = mu_xstrdup(keys[i]); r->vals[i] = mu_xstrdup(vals[i]); }
    r->value = value; r->n = n;
    r->lo = r->hi = r->p = NAN;
    r->test = NULL;
}

static void emit_group(const char *metric, const group *g, double value, long n) {
    emit(metric, opt.by, g->vals, opt.nby, value, n);
}

static double truth_ratio_stat(const group *g) {
    return g->is_forget ? mu_truth_ratio_forget_stat(g->tr, g->ntr) : mu_truth_ratio_retain_stat(g->tr, g->ntr);
}

/* The interval of the last result, a mean of n per-record values with sample standard
 * deviation sd (binary: all values 0 or 1, k of them 1 = mean * n): --ci. */
static void set_ci(double mean, double sd, long n, int binary) {
    result *r = &results[nresults - 1];
    if (!(opt.ci > 0) || n < 1) return;
    if (binary) mu_ci_wilson(mean * (double)n, n, opt.ci, &r->lo, &r->hi);
    else mu_ci_mean(mean, sd, n, opt.ci, &r->lo, &r->hi);
}

/* truth_ratio's per-record values: min(R, 1/R) (forget) or max(0, 1 - R); their sd */
static double truth_ratio_sd(const group *g, double mean) {
    if (g->ntr < 2) return NAN;
    double ss = 0;
    for (size_t i = 0; i < g->ntr; i++) {
        double r = g->tr[i], v = g->is_forget ? fmin(r, 1 / r) : fmax(0, 1 - r);
        ss += (v - mean) * (v - mean);
    }
    return sqrt(ss / (double)(g->ntr - 1));
}

/* Is metric m reported for group g? Explicit: always; auto: some record had its fields (a
 * group may pool streams of different --emit, e.g. TOFU's answer and truth-ratio streams). */
static int reported(const group *g, int m) {
    if (opt.any_explicit) return opt.explicit_metric[m];
    return g->cnt[m] > 0;
}

static void aggregate(group_set *gs, group_set *ref) {
    for (int gi = 0; gi < gs->n; gi++) {
        group *g = &gs->g[gi];
        for (int m = 0; m < NMETRICS; m++) {
            if (m == M_FORGET_QUALITY) continue;
            if (!reported(g, m)) continue;
            double v;
            if (m == M_TRUTH_RATIO) v = truth_ratio_stat(g);
            else if (m == M_TEXT_LOSS) v = g->text_ntok ? g->text_nll / (double)g->text_ntok : NAN;
            else if (m == M_PERPLEXITY) v = g->text_ntok ? exp(g->text_nll / (double)g->text_ntok) : NAN;
            else v = g->cnt[m] ? g->sum[m] / (double)g->cnt[m] : NAN;
            if (m == M_TRUTH_RATIO && g->ntr == 0) continue;
            emit_group(metric_info[m].name, g, v, opt.any_explicit ? (long)g->n : (long)g->cnt[m]);
            if (m == M_TRUTH_RATIO) set_ci(v, truth_ratio_sd(g, v), (long)g->ntr, 0);
            else if (m != M_TEXT_LOSS && m != M_PERPLEXITY && g->cnt[m] > 0)
                set_ci(v, g->cnt[m] > 1 ? sqrt(g->m2[m] / (double)(g->cnt[m] - 1)) : NAN,
                       (long)g->cnt[m], !g->nonbinary[m]);
        }
        if (ref && g->ntr > 0 && (opt.any_explicit ? opt.explicit_metric[M_FORGET_QUALITY] : 1)) {
            int ri = group_find(ref, g->vals, 0);
            if (ri < 0 || ref->g[ri].ntr == 0) {
                if (opt.any_explicit) mu_die("%s: no truth ratios for group %s (forget_quality)", opt.reference, g->name);
                continue;
            }
            double d, p;
            if (mu_ks_2samp(g->tr, g->ntr, ref->g[ri].tr, ref->g[ri].ntr, &d, &p, NULL))
                mu_die("group %s: truth ratios contain NaN (forget_quality)", g->name);
            emit_group("forget_quality", g, p, (long)g->ntr);
            emit_group("ks_statistic", g, d, (long)g->ntr);
        }
    }
}

/* ---------------------------------------------------------------- --paired */

/* Record ids and values of one metric, sorted by id, for lookups by id. */
typedef struct { int64_t id; double v; } id_value;
static int cmp_id_value(const void *a, const void *b) {
    int64_t x = ((const id_value *)a)->id, y = ((const id_value *)b)->id;
    return (x > y) - (x < y);
}

static id_value *sorted_by_id(const group *g, int m) {
    id_value *a = mu_xmalloc((g->rn[m] ? g->rn[m] : 1) * sizeof *a);
    for (size_t i = 0; i < g->rn[m]; i++) { a[i].id = g->rid[m][i]; a[i].v = g->rval[m][i]; }
    qsort(a, g->rn[m], sizeof *a, cmp_id_value);
    for (size_t i = 1; i < g->rn[m]; i++)
        if (a[i].id == a[i - 1].id) mu_die("%s: record id %lld appears twice (--paired matches records by id)",
                                           opt.paired, (long long)a[i].id);
    return a;
}

/* Per group of A and per-record metric: the mean difference A - B over the records of the
 * same ids, its interval and a paired test: where every value is 0 or 1 (accuracies)
 * Newcombe's paired interval and McNemar's exact test, else Student's t on the
 * differences and the paired t-test. */
static void paired_differences(group_set *a, const group *b) {
    id_value *sorted[NMETRICS] = {0};    /* B's values of each metric, sorted once */
    for (int gi = 0; gi < a->n; gi++) {
        group *g = &a->g[gi];
        for (int m = 0; m < NMETRICS; m++) {
            if (!g->rn[m] || m == M_TRUTH_RATIO || m == M_TEXT_LOSS || m == M_PERPLEXITY) continue;
            if (!b->rn[m]) mu_die("%s: no record has %s (--paired)", opt.paired, metric_info[m].name);
            if (!sorted[m]) sorted[m] = sorted_by_id(b, m);
            id_value *bv = sorted[m];
            double *d = mu_xmalloc(g->rn[m] * sizeof *d), mean = 0, ss = 0;
            long only_a = 0, only_b = 0, both = 0;
            int binary = 1;
            for (size_t i = 0; i < g->rn[m]; i++) {
                id_value key = {g->rid[m][i], 0}, *hit = bsearch(&key, bv, b->rn[m], sizeof *bv, cmp_id_value);
                if (!hit) mu_die("%s: no record with id %lld and %s (--paired)", opt.paired,
                                 (long long)key.id, metric_info[m].name);
                double x = g->rval[m][i], y = hit->v;
                d[i] = x - y;
                mean += d[i];
                if ((x != 0 && x != 1) || (y != 0 && y != 1)) binary = 0;
                only_a += x == 1 && y == 0;
                only_b += x == 0 && y == 1;
                both += x == 1 && y == 1;
            }
            size_t n = g->rn[m];
            mean /= (double)n;
            for (size_t i = 0; i < n; i++) ss += (d[i] - mean) * (d[i] - mean);
            double sd = n > 1 ? sqrt(ss / (double)(n - 1)) : NAN;
            emit_group(metric_info[m].name, g, mean, (long)n);
            result *r = &results[nresults - 1];
            if (opt.ci > 0 && binary)
                mu_ci_paired_diff(both, only_a, only_b, (long)n - both - only_a - only_b, opt.ci, &r->lo, &r->hi);
            else if (opt.ci > 0) mu_ci_mean(mean, sd, (long)n, opt.ci, &r->lo, &r->hi);
            r->test = binary ? "mcnemar" : "ttest_rel";
            r->p = binary ? mu_mcnemar_exact_p(only_a, only_b) : mu_ttest_rel_p(mean, sd, (long)n);
            free(d);
        }
    }
    for (int m = 0; m < NMETRICS; m++) free(sorted[m]);
}

static void free_groups(group_set *gs);

/* --paired B: B's records, all in one group (they pair with A's by id, whatever their
 * meta), then the differences per group of A. */
static void paired_run(group_set *a) {
    int nby = opt.nby;
    opt.nby = 0;
    group_set b = {0};
    input in = {(char *)opt.paired, NULL, 0};
    score_file(&in, &b, 0);
    opt.nby = nby;
    if (!b.n) mu_die("%s: no records (--paired)", opt.paired);
    paired_differences(a, &b.g[0]);
    opt.nby = 0;            /* b's groups have no --by values to free */
    free_groups(&b);
    opt.nby = nby;
}

static void model_utility(group_set *gs) {
    double vals[64]; int nv = 0;
    for (int gi = 0; gi < gs->n; gi++) {
        group *g = &gs->g[gi];
        if (g->is_forget) continue;
        int pm = g->is_retain ? M_ANSWER_PROB : M_OPTION_PROB;
        if (!g->cnt[pm] || !g->cnt[M_ROUGEL] || !g->ntr)   /* each over the records that have it */
            mu_die("group %s: model_utility needs %s, rougeL_recall and truth_ratio (records with "
                   "target_logprobs%s, generation_text and target_text, choice_logprobs)", g->name,
                   metric_info[pm].name, pm == M_OPTION_PROB ? " and choice_logprobs" : "");
        if (nv + 3 > 64) mu_die("model_utility: too many groups");
        vals[nv++] = g->sum[pm] / (double)g->cnt[pm];
        vals[nv++] = g->sum[M_ROUGEL] / (double)g->cnt[M_ROUGEL];
        vals[nv++] = truth_ratio_stat(g);
    }
    if (nv == 0) mu_die("model_utility: no non-forget group (use --by and label the sets)");
    emit("model_utility", NULL, NULL, 0, mu_hmean(vals, (size_t)nv), nv);
}

static void mia_auc(group_set *gs) {
    static const char *names[4] = {"mia_auc_loss", "mia_auc_zlib", "mia_auc_min_k", "mia_auc_min_k_pp"};
    for (int a = 0; a < opt.nauc; a++) {
        char *spec = mu_xstrdup(opt.auc[a]), *colon = strchr(spec, ':');
        if (!colon) mu_usage_error("--auc %s: expected MEMBERS:NONMEMBERS", opt.auc[a]);
        *colon = 0;
        const char *gn[2] = {spec, colon + 1};
        group *g2[2] = {NULL, NULL};
        for (int s = 0; s < 2; s++)
            for (int gi = 0; gi < gs->n; gi++) if (!strcmp(gs->g[gi].name, gn[s])) g2[s] = &gs->g[gi];
        for (int s = 0; s < 2; s++) if (!g2[s]) mu_die("--auc: no group named '%s'", gn[s]);
        size_t n = g2[0]->nmia + g2[1]->nmia;
        double *sc = mu_xmalloc((n ? n : 1) * sizeof *sc);
        int *lb = mu_xmalloc((n ? n : 1) * sizeof *lb);
        char *keys[2] = {"members", "nonmembers"}, *vals[2] = {spec, colon + 1};
        for (int i = 0; i < 4; i++) {
            size_t k = 0; int ok = 1;
            for (int s = 0; s < 2 && ok; s++)
                for (size_t j = 0; j < g2[s]->nmia; j++) {
                    if (isnan(g2[s]->mia[i][j])) { ok = 0; break; }
                    sc[k] = g2[s]->mia[i][j]; lb[k++] = s;
                }
            if (!ok) continue; /* that score needs fields some records lack */
            emit(names[i], keys, vals, 2, mu_roc_auc(sc, lb, n), (long)n);
        }
        free(sc); free(lb); free(spec);
    }
}

/* ---------------------------------------------------------------- curves */

/* A metrics stream, read once (it may be a pipe): its records, as results. */
typedef struct { const char *path; result *r; int n; } metric_table;

static void load_metrics(const char *path, metric_table *t) {
    mu_reader *rd = mu_reader_open_or_die(path, "metrics");
    const msgpack_object *rec;
    t->path = path; t->r = NULL; t->n = 0;
    while ((rec = mu_reader_next_or_die(rd))) {
        result x = {.metric = mu_obj_strdup(mu_obj_get(rec, "metric"))};
        if (!x.metric) mu_reader_die(rd, "\"metric\" is not a string");
        if (mu_obj_f64(mu_obj_get(rec, "value"), &x.value)) mu_reader_die(rd, "\"value\" is not a number");
        const msgpack_object *g = mu_obj_get(rec, "group");
        x.nkv = g && g->type == MSGPACK_OBJECT_MAP ? (int)g->via.map.size : 0;
        x.keys = mu_xcalloc((size_t)(x.nkv ? x.nkv : 1), sizeof(char *));
        x.vals = mu_xcalloc((size_t)(x.nkv ? x.nkv : 1), sizeof(char *));
        for (int i = 0; i < x.nkv; i++) {   /* a key or value that is not a string: NULL, never matched */
            x.keys[i] = mu_obj_strdup(&g->via.map.ptr[i].key);
            x.vals[i] = mu_obj_strdup(&g->via.map.ptr[i].val);
        }
        t->r = mu_xrealloc(t->r, (size_t)(t->n + 1) * sizeof *t->r);
        t->r[t->n++] = x;
    }
    mu_reader_close(rd);
}

static void free_metrics(metric_table *t) {
    for (int i = 0; i < t->n; i++) {
        for (int j = 0; j < t->r[i].nkv; j++) { free(t->r[i].keys[j]); free(t->r[i].vals[j]); }
        free(t->r[i].keys); free(t->r[i].vals); free(t->r[i].metric);
    }
    free(t->r);
}

/* Whether record x's group has key = val. */
static int group_has(const result *x, const char *key, const char *val) {
    for (int j = 0; j < x->nkv; j++)
        if (x->keys[j] && !strcmp(x->keys[j], key)) return x->vals[j] && !strcmp(x->vals[j], val);
    return 0;
}

/* Metric M (spec M@k=v,...) with a group matching every k=v; exactly one record must match. */
static double lookup_metric(const metric_table *t, const char *spec) {
    char *s = mu_xstrdup(spec), *at = strchr(s, '@');
    if (at) *at++ = 0;
    int nsel = 0; char **sel = at ? split_list(at, &nsel) : NULL;
    for (int i = 0; i < nsel; i++)
        if (!strchr(sel[i], '=')) mu_usage_error("selector '%s' in '%s': expected KEY=VALUE", sel[i], spec);
    double found = NAN; int nfound = 0;
    for (int k = 0; k < t->n; k++) {
        if (strcmp(t->r[k].metric, s)) continue;
        int match = 1;
        for (int i = 0; i < nsel && match; i++) {
            char *eq = strchr(sel[i], '=');
            *eq = 0;
            match = group_has(&t->r[k], sel[i], eq + 1);
            *eq = '=';
        }
        if (match) { found = t->r[k].value; nfound++; }
    }
    if (nfound != 1) mu_die("%s: %d records match %s (need exactly one)", t->path, nfound, spec);
    for (int i = 0; i < nsel; i++) free(sel[i]);
    free(sel); free(s);
    return found;
}

/* Whether the table has metric M of spec M@... at all. */
static int has_metric(const metric_table *t, const char *spec) {
    size_t len = strcspn(spec, "@");
    for (int k = 0; k < t->n; k++)
        if (strlen(t->r[k].metric) == len && !strncmp(t->r[k].metric, spec, len)) return 1;
    return 0;
}

static void run_curve(void) {
    if (!opt.original) mu_usage_error("--curve needs --original FILE");
    if (ninputs < 1) mu_usage_error("--curve needs at least one run's metrics stream");
    const char *sf = opt.sel_forget ? opt.sel_forget : "choice_prob@split=forget";
    const char *sr = opt.sel_retain ? opt.sel_retain : "choice_prob@split=retain";
    metric_table orig, *runs = mu_xmalloc((size_t)ninputs * sizeof *runs);
    load_metrics(opt.original, &orig);
    for (int i = 0; i < ninputs; i++) load_metrics(inputs[i].path, &runs[i]);
    double f0 = lookup_metric(&orig, sf), r0 = lookup_metric(&orig, sr);
    mu_curve_point *pts = mu_xmalloc((size_t)ninputs * sizeof *pts);
    for (int i = 0; i < ninputs; i++) {
        pts[i].forget = lookup_metric(&runs[i], sf);
        pts[i].retain = lookup_metric(&runs[i], sr);
    }
    /* the points, for plots: x = fraction of the forget score removed, y = retention */
    for (int i = 0; i < ninputs; i++) {
        const char *name = inputs[i].path;
        for (int l = 0; l < inputs[i].nlabels; l++)
            if (!strcmp(inputs[i].labels[l].key, "sweep")) name = inputs[i].labels[l].val;
        char *k1[1] = {"run"}, *v1[1] = {(char *)name};
        double x = (f0 - pts[i].forget) / f0, y = pts[i].retain / r0;
        emit("forget_strength", k1, v1, 1, x < 0 ? 0 : x > 1 ? 1 : x, 1);
        emit("retention", k1, v1, 1, y < 0 ? 0 : y > 1 ? 1 : y, 1);
    }
    double a = mu_aues(pts, (size_t)ninputs, f0, r0);
    if (isnan(a)) mu_die("%s: AUES needs original scores > 0 (forget %g, retain %g)", opt.original, f0, r0);
    char *keys[2] = {"forget", "retain"}, *vals[2] = {(char *)sf, (char *)sr};
    emit("aues", keys, vals, 2, a, ninputs);
    const char *sq = opt.sel_quality ? opt.sel_quality : "forget_quality@split=forget";
    const char *su = opt.sel_utility ? opt.sel_utility : "model_utility";
    int want_mu95 = opt.sel_quality || opt.sel_utility;
    if (!want_mu95) {
        want_mu95 = has_metric(&orig, su);
        for (int i = 0; i < ninputs && want_mu95; i++)
            want_mu95 = has_metric(&runs[i], su) && has_metric(&runs[i], sq);
    }
    if (want_mu95) {
        double u0 = lookup_metric(&orig, su);
        double *q = mu_xmalloc((size_t)ninputs * sizeof *q), *u = mu_xmalloc((size_t)ninputs * sizeof *u);
        for (int i = 0; i < ninputs; i++) {
            q[i] = lookup_metric(&runs[i], sq);
            u[i] = lookup_metric(&runs[i], su);
        }
        char *k2[2] = {"quality", "utility"}, *v2[2] = {(char *)sq, (char *)su};
        emit("mu95", k2, v2, 2, mu_mu95(q, u, (size_t)ninputs, u0, 0), ninputs);
        emit("mu95_interp", k2, v2, 2, mu_mu95(q, u, (size_t)ninputs, u0, 1), ninputs);
        free(q); free(u);
    }
    free(pts);
    for (int i = 0; i < ninputs; i++) free_metrics(&runs[i]);
    free(runs);
    free_metrics(&orig);
}

/* ---------------------------------------------------------------- output */

static void write_stream(void) {
    mu_writer *w = mu_writer_open(opt.out, "metrics");
    for (int i = 0; i < ninputs; i++) mu_writer_add_input(w, "outputs", inputs[i].path);
    if (opt.reference) mu_writer_add_input(w, "reference", opt.reference);
    if (opt.original) mu_writer_add_input(w, "original", opt.original);
    if (opt.paired) mu_writer_add_input(w, "paired", opt.paired);
    msgpack_packer *mp = mu_writer_meta(w, "by");
    msgpack_pack_array(mp, (size_t)opt.nby);
    for (int i = 0; i < opt.nby; i++) mu_pack_str(mp, opt.by[i]);
    mp = mu_writer_meta(w, "k");
    msgpack_pack_double(mp, opt.k);
    mp = mu_writer_meta(w, "stem");
    if (opt.stem) msgpack_pack_true(mp); else msgpack_pack_false(mp);
    for (int i = 0; i < nresults; i++) {
        result *r = &results[i];
        msgpack_packer *pk = mu_writer_record(w);
        int has_ci = !isnan(r->lo), has_test = r->test != NULL;
        msgpack_pack_map(pk, 4 + (size_t)has_ci + 2 * (size_t)has_test);
        mu_pack_kv_str(pk, "metric", r->metric);
        mu_pack_str(pk, "group");
        msgpack_pack_map(pk, (size_t)r->nkv);
        for (int j = 0; j < r->nkv; j++) mu_pack_kv_str(pk, r->keys[j], r->vals[j]);
        mu_pack_kv_f64(pk, "value", r->value);
        mu_pack_kv_int(pk, "n", r->n);
        if (has_ci) {
            mu_pack_str(pk, "ci");
            msgpack_pack_array(pk, 2);
            msgpack_pack_double(pk, r->lo);
            msgpack_pack_double(pk, r->hi);
        }
        if (has_test) {
            mu_pack_kv_str(pk, "test", r->test);
            mu_pack_kv_f64(pk, "p_value", r->p);
        }
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

static char *group_text(const result *r) {
    size_t len = 2;
    for (int j = 0; j < r->nkv; j++) len += strlen(r->keys[j]) + strlen(r->vals[j]) + 2;
    char *s = mu_xcalloc(len, 1);
    for (int j = 0; j < r->nkv; j++) {
        if (j) strcat(s, ",");
        strcat(s, r->keys[j]); strcat(s, "="); strcat(s, r->vals[j]);
    }
    if (!r->nkv) strcpy(s, "-");
    return s;
}

static void print_results(const char *fmt) {
    if (!strcmp(fmt, "json")) {
        json_t *arr = json_array();
        for (int i = 0; i < nresults; i++) {
            json_t *g = json_object();
            for (int j = 0; j < results[i].nkv; j++) json_object_set_new(g, results[i].keys[j], json_string(results[i].vals[j]));
            json_t *o = json_object();
            json_object_set_new(o, "metric", json_string(results[i].metric));
            json_object_set_new(o, "group", g);
            json_object_set_new(o, "value", isnan(results[i].value) ? json_null() : json_real(results[i].value));
            json_object_set_new(o, "n", json_integer(results[i].n));
            if (!isnan(results[i].lo))
                json_object_set_new(o, "ci", json_pack("[f, f]", results[i].lo, results[i].hi));
            if (results[i].test) {
                json_object_set_new(o, "test", json_string(results[i].test));
                json_object_set_new(o, "p_value", isnan(results[i].p) ? json_null() : json_real(results[i].p));
            }
            json_array_append_new(arr, o);
        }
        char *s = json_dumps(arr, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
        fputs(s, stdout); fputc('\n', stdout);
        free(s); json_decref(arr);
    } else if (!strcmp(fmt, "tsv")) {
        printf("metric\tgroup\tvalue\tn\tci_lo\tci_hi%s\n", opt.paired ? "\tp_value\ttest" : "");
        for (int i = 0; i < nresults; i++) {
            char *g = group_text(&results[i]);
            printf("%s\t%s\t%.17g\t%ld\t%.17g\t%.17g", results[i].metric, g, results[i].value,
                   results[i].n, results[i].lo, results[i].hi);
            if (opt.paired) printf("\t%.17g\t%s", results[i].p, results[i].test ? results[i].test : "-");
            putchar('\n');
            free(g);
        }
    } else {
        int wm = 6, wg = 5;
        for (int i = 0; i < nresults; i++) {
            char *g = group_text(&results[i]);
            if ((int)strlen(results[i].metric) > wm) wm = (int)strlen(results[i].metric);
            if ((int)strlen(g) > wg) wg = (int)strlen(g);
            free(g);
        }
        char cihead[32];
        snprintf(cihead, sizeof cihead, "%g%% CI", 100 * opt.ci);
        printf("%-*s  %-*s  %12s  %8s  %s%s\n", wm, opt.paired ? "A - B" : "metric", wg, "group",
               "value", "n", opt.paired ? "p (test)  " : "", opt.ci > 0 ? cihead : "");
        for (int i = 0; i < nresults; i++) {
            char *g = group_text(&results[i]), ci[64] = "", p[48] = "";
            if (!isnan(results[i].lo)) snprintf(ci, sizeof ci, "[%.4g, %.4g]", results[i].lo, results[i].hi);
            if (results[i].test) snprintf(p, sizeof p, "%.4g (%s)  ", results[i].p, results[i].test);
            printf("%-*s  %-*s  %12.6g  %8ld  %s%s\n", wm, results[i].metric, wg, g, results[i].value,
                   results[i].n, p, ci);
            free(g);
        }
    }
    mu_stdout_flush_or_die();
}

/* ---------------------------------------------------------------- cleanup */

static void free_groups(group_set *gs) {
    for (int i = 0; i < gs->n; i++) {
        group *g = &gs->g[i];
        for (int j = 0; j < opt.nby; j++) free(g->vals[j]);
        free(g->vals); free(g->name); free(g->tr);
        for (int k = 0; k < 4; k++) free(g->mia[k]);
        for (int m = 0; m < NMETRICS; m++) { free(g->rid[m]); free(g->rval[m]); }
    }
    free(gs->g);
    gs->g = NULL; gs->n = 0;
}

static void free_all(label *cur, int ncur) {
    for (int i = 0; i < nresults; i++) {
        for (int j = 0; j < results[i].nkv; j++) { free(results[i].keys[j]); free(results[i].vals[j]); }
        free(results[i].keys); free(results[i].vals); free(results[i].metric);
    }
    free(results);
    for (int i = 0; i < ninputs; i++) { free(inputs[i].path); free(inputs[i].labels); }
    free(inputs); free(ref_input.labels);
    for (int i = 0; i < ncur; i++) { free(cur[i].key); free(cur[i].val); }
    free(cur);
    for (int i = 0; i < nretired; i++) free(retired[i]);
    free(retired);
    for (int i = 0; i < opt.nby; i++) free(opt.by[i]);
    free(opt.by); free(opt.auc);
}

/* ---------------------------------------------------------------- main */

/* --label KEY=VALUE: sets KEY in the labels cur[ncur] that the next inputs take */
static void set_label(const char *arg, label **cur, int *ncur) {
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) mu_usage_error("--label %s: expected KEY=VALUE", arg);
    size_t klen = (size_t)(eq - arg);
    int i;
    for (i = 0; i < *ncur; i++) if (!strncmp((*cur)[i].key, arg, klen) && !(*cur)[i].key[klen]) break;
    if (i == *ncur) {
        *cur = mu_xrealloc(*cur, (size_t)(*ncur + 1) * sizeof **cur);
        (*ncur)++;
        (*cur)[i].key = mu_xstrdup(arg);
        (*cur)[i].key[klen] = 0;
        (*cur)[i].val = NULL;
    }
    if ((*cur)[i].val) {
        /* earlier inputs still point at the old value: retire it */
        retired = mu_xrealloc(retired, (size_t)(nretired + 1) * sizeof *retired);
        retired[nretired++] = (*cur)[i].val;
    }
    (*cur)[i].val = mu_xstrdup(eq + 1);
}

/* --metrics A,B,...: the metrics asked for by name */
static void set_metrics(const char *arg) {
    int n; char **l = split_list(arg, &n);
    for (int i = 0; i < n; i++) {
        int m = metric_by_name(l[i]);
        if (m < 0) mu_usage_error("--metrics: unknown metric '%s' (see --help)", l[i]);
        opt.explicit_metric[m] = 1; opt.any_explicit = 1;
        free(l[i]);
    }
    free(l);
}

/* --reference FILE: read with the labels given so far */
static void set_reference(char *path, const label *cur, int ncur) {
    opt.reference = path;
    ref_input.path = path;
    ref_input.labels = mu_xmalloc((size_t)(ncur ? ncur : 1) * sizeof(label));
    if (ncur) memcpy(ref_input.labels, cur, (size_t)ncur * sizeof(label));
    ref_input.nlabels = ncur;
}

/* The options' combinations that mean nothing, refused as usage errors */
static void check_usage(void) {
    if (opt.out && !strcmp(opt.out, "-") && opt.format) mu_usage_error("--out - and --format both use stdout");
    if (opt.utility && !opt.nby) mu_usage_error("--utility needs --by (TOFU sets as groups)");
    if (opt.explicit_metric[M_FORGET_QUALITY] && !opt.reference)
        mu_usage_error("metric forget_quality needs --reference FILE");
    if (opt.paired && (opt.reference || opt.utility || opt.nauc || opt.curve))
        mu_usage_error("--paired compares per-record metrics: not with --reference, --utility, --auc or --curve");
}

/* The inputs (and the reference, its metrics all computed) scored into groups, then the
 * results of the mode asked for: paired differences, else aggregates, utility, MIA AUCs */
static void score_inputs(void) {
    group_set gs = {0}, ref = {0};
    for (int i = 0; i < ninputs; i++) score_file(&inputs[i], &gs, opt.reference != NULL || opt.utility);
    if (opt.reference) {
        int saved = opt.any_explicit; int saved_m[NMETRICS];
        memcpy(saved_m, opt.explicit_metric, sizeof saved_m);
        opt.any_explicit = 1; memset(opt.explicit_metric, 0, sizeof opt.explicit_metric);
        score_file(&ref_input, &ref, 1);
        opt.any_explicit = saved; memcpy(opt.explicit_metric, saved_m, sizeof saved_m);
    }
    if (opt.paired) paired_run(&gs);
    else aggregate(&gs, opt.reference ? &ref : NULL);
    if (opt.utility) model_utility(&gs);
    if (opt.nauc) mia_auc(&gs);
    free_groups(&gs); free_groups(&ref);
}

int main(int argc, char **argv) {
    mu_cli_init("mu-score", argc, argv);
    enum { O_BY = 256, O_LABEL, O_METRICS, O_REF, O_UTIL, O_AUC, O_K, O_NOSTEM, O_OUT, O_FORMAT,
           O_CURVE, O_ORIG, O_FORGET, O_RETAIN, O_QUAL, O_MUTIL, O_CI, O_PAIRED };
    static const struct option lo[] = {
        {"by", required_argument, 0, O_BY}, {"label", required_argument, 0, O_LABEL},
        {"metrics", required_argument, 0, O_METRICS}, {"reference", required_argument, 0, O_REF},
        {"utility", no_argument, 0, O_UTIL}, {"auc", required_argument, 0, O_AUC},
        {"k", required_argument, 0, O_K}, {"no-stem", no_argument, 0, O_NOSTEM},
        {"out", required_argument, 0, O_OUT}, {"format", required_argument, 0, O_FORMAT},
        {"curve", no_argument, 0, O_CURVE}, {"original", required_argument, 0, O_ORIG},
        {"forget", required_argument, 0, O_FORGET}, {"retain", required_argument, 0, O_RETAIN},
        {"quality", required_argument, 0, O_QUAL}, {"model-utility", required_argument, 0, O_MUTIL},
        {"ci", required_argument, 0, O_CI}, {"paired", required_argument, 0, O_PAIRED},
        MU_COMMON_LONGOPTS, {0, 0, 0, 0}};
    label *cur = NULL; int ncur = 0;
    int c;
    while ((c = getopt_long(argc, argv, "-hVq", lo, NULL)) != -1) {
        if (mu_cli_common(c, usage)) continue;
        switch (c) {
        case 1: add_input(optarg, cur, ncur); break;
        case O_BY: opt.by = split_list(optarg, &opt.nby); break;
        case O_LABEL: set_label(optarg, &cur, &ncur); break;
        case O_METRICS: set_metrics(optarg); break;
        case O_REF: set_reference(optarg, cur, ncur); break;
        case O_UTIL: opt.utility = 1; break;
        case O_AUC:
            opt.auc = mu_xrealloc(opt.auc, (size_t)(opt.nauc + 1) * sizeof *opt.auc);
            opt.auc[opt.nauc++] = optarg;
            break;
        case O_K: {
            char *end; opt.k = strtod(optarg, &end);
            if (*end || !(opt.k > 0 && opt.k <= 1)) mu_usage_error("--k %s: expected a fraction in (0, 1]", optarg);
            break;
        }
        case O_NOSTEM: opt.stem = 0; break;
        case O_CI: {
            char *end; opt.ci = strtod(optarg, &end);
            if (*end || !(opt.ci >= 0 && opt.ci < 1)) mu_usage_error("--ci %s: expected a level in [0, 1)", optarg);
            break;
        }
        case O_PAIRED: opt.paired = optarg; break;
        case O_OUT: opt.out = optarg; break;
        case O_FORMAT:
            if (strcmp(optarg, "table") && strcmp(optarg, "tsv") && strcmp(optarg, "json"))
                mu_usage_error("--format %s: expected table, tsv or json", optarg);
            opt.format = optarg;
            break;
        case O_CURVE: opt.curve = 1; break;
        case O_ORIG: opt.original = optarg; break;
        case O_FORGET: opt.sel_forget = optarg; break;
        case O_RETAIN: opt.sel_retain = optarg; break;
        case O_QUAL: opt.sel_quality = optarg; break;
        case O_MUTIL: opt.sel_utility = optarg; break;
        default: mu_usage_error("unexpected option (see --help)");
        }
    }
    if (ninputs == 0) add_input("-", cur, ncur); /* no FILE: standard input */
    check_usage();
    if (opt.curve) run_curve();
    else score_inputs();
    int stdout_used = opt.out && !strcmp(opt.out, "-");
    if (opt.out) write_stream();
    const char *fmt = opt.format;
    if (!fmt && !stdout_used && (!opt.out || isatty(STDOUT_FILENO))) fmt = "table";
    if (fmt) print_results(fmt);
    free_all(cur, ncur);
    return MU_EXIT_OK;
}
