/* train.c — the training loop of mu-train (see train.h). */
#include "train.h"
#include "objectives.h"
#include "cli.h"
#include "stream.h"
#include "ckpt.h"
#include "safetensors.h"
#include "soft.h"
#include <errno.h>
#include <sys/stat.h>
#include "rng.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- objectives by name ---- */

static const char *OBJ_NAMES[MU_OBJ_COUNT] = {
    "learn", "ga", "log1mp", "npo", "simnpo", "dpo", "wga", "rmu", "undial", "edit",
    "retain-ce", "retain-kl", "general-lm", "mlp-l2", "satimp", "me", "idk",
};

const char *mu_obj_name(mu_obj_id id) { return OBJ_NAMES[id]; }

int mu_objective_parse(const char *spec, double coef[MU_OBJ_COUNT], char *err, size_t errlen) {
    for (int i = 0; i < MU_OBJ_COUNT; i++) coef[i] = 0;
    char *copy = mu_xstrdup(spec), *save = NULL;
    int rc = 0, any = 0;
    for (char *term = strtok_r(copy, ",", &save); term; term = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(term, '=');
        double c = 1;
        if (eq) {
            char *end;
            *eq = 0;
            c = strtod(eq + 1, &end);
            if (end == eq + 1 || *end || !isfinite(c)) {
                snprintf(err, errlen, "objective '%s': coefficient '%s' is not a number", term, eq + 1);
                rc = -1;
                break;
            }
        }
        int found = 0;
        if (!strcmp(term, "graddiff")) {
            coef[MU_OBJ_GA] += c;
            coef[MU_OBJ_RETAIN_CE] += c;
            found = 1;
        }
        for (int i = 0; i < MU_OBJ_COUNT && !found; i++)
            if (!strcmp(term, OBJ_NAMES[i])) { coef[i] += c; found = 1; }
        if (!found) {
            snprintf(err, errlen, "unknown objective '%s' (learn, ga, graddiff, log1mp, npo, simnpo, "
                     "dpo, idk, wga, satimp, me, rmu, undial, edit, retain-ce, retain-kl, general-lm, mlp-l2)", term);
            rc = -1;
            break;
        }
        any = 1;
    }
    free(copy);
    if (rc == 0 && !any) {
        snprintf(err, errlen, "no objective given");
        rc = -1;
    }
    return rc;
}

/* ---- data sets ---- */

/* A 1-D i32 tensor of ids in [-nsoft, vocab) (below 0: soft-prompt slots). */
static int read_i32_vec(const msgpack_object *o, int vocab, int nsoft, int32_t **out, int *n, char *msg,
                        size_t len) {
    mu_tensor_view tv;
    char e[160];
    if (!o) { snprintf(msg, len, "missing tensor"); return -1; }
    if (mu_obj_tensor(o, &tv, e, sizeof e) < 0) { snprintf(msg, len, "%s", e); return -1; }
    if (tv.dtype != MU_I32 || tv.ndim != 1) { snprintf(msg, len, "expected a 1-D i32 tensor"); return -1; }
    *n = (int)tv.shape[0];
    *out = mu_xmalloc((size_t)(*n ? *n : 1) * sizeof **out);
    memcpy(*out, tv.data, (size_t)*n * 4);
    for (int i = 0; i < *n; i++)
        if (mu_soft_slot_check((*out)[i], nsoft, e, sizeof e) || (*out)[i] >= vocab) {
            if ((*out)[i] >= 0) snprintf(msg, len, "token id %d outside the model's vocabulary (%d)", (*out)[i], vocab);
            else snprintf(msg, len, "token id %d is %s", (*out)[i], e);
            free(*out);
            *out = NULL;
            return -1;
        }
    return 0;
}

/* prompt ++ answer, left-truncated to max_len; lab_from = last prompt token's row. */
static int32_t *join_seq(const int32_t *p, int np, const int32_t *a, int na, int max_len,
                         int *len, int *lab_from) {
    int total = np + na, cut = total > max_len && max_len > 0 ? total - max_len : 0;
    if (cut > np) cut = np;     /* never drop answer tokens */
    int32_t *s = mu_xmalloc((size_t)(total - cut + 1) * sizeof *s);
    memcpy(s, p + cut, (size_t)(np - cut) * 4);
    if (na) memcpy(s + np - cut, a, (size_t)na * 4);
    *len = total - cut;
    *lab_from = np - cut - 1;
    return s;
}

/* The prompt's first cut ids (left truncation) hold a soft-prompt slot. */
static int cuts_soft_slots(const int32_t *prompt, int cut) {
    for (int i = 0; i < cut; i++)
        if (prompt[i] < 0) return 1;
    return 0;
}

static int read_record(const msgpack_object *rec, int lm, int max_len, int vocab, int nsoft,
                       const int32_t *alt_ids, int n_alt, mu_train_seq *q, char *msg, size_t len) {
    int32_t *prompt = NULL, *ans = NULL, *alt = NULL;
    int np = 0, na = 0, nalt = 0, rc = -1;
    char sub[200];
    memset(q, 0, sizeof *q);
    if (read_i32_vec(mu_obj_get(rec, "prompt"), vocab, lm ? 0 : nsoft, &prompt, &np, sub, sizeof sub) < 0) {
        snprintf(msg, len, "\"prompt\": %s", sub);
        return -1;
    }
    const msgpack_object *tg = mu_obj_get(rec, "targets");
    int ntg = tg && tg->type == MSGPACK_OBJECT_ARRAY ? (int)tg->via.array.size : 0;
    if (tg && tg->type != MSGPACK_OBJECT_ARRAY && tg->type != MSGPACK_OBJECT_NIL) {
        snprintf(msg, len, "\"targets\" must be an array of tensors");
        goto out;
    }
    int64_t answer = 0;
    const msgpack_object *ao = mu_obj_get(rec, "answer");
    if (ao && ao->type != MSGPACK_OBJECT_NIL && (mu_obj_int(ao, &answer) < 0 || answer < 0 || (ntg && answer >= ntg))) {
        snprintf(msg, len, "\"answer\" must be an index into \"targets\" (%d)", ntg);
        goto out;
    }
    if (ntg > 0 && read_i32_vec(&tg->via.array.ptr[answer], vocab, 0, &ans, &na, sub, sizeof sub) < 0) {
        snprintf(msg, len, "\"targets\"[%lld]: %s", (long long)answer, sub);
        goto out;
    }
    if (!lm && na == 0) { snprintf(msg, len, "no target tokens to train on"); goto out; }
    if (lm && np + na < 2) { snprintf(msg, len, "text of fewer than 2 tokens"); goto out; }
    if (!lm && np == 0) { snprintf(msg, len, "empty prompt (the first target needs a context token)"); goto out; }
    int other = answer == 0 ? 1 : 0;   /* DPO's preferred answer: --dpo-alt, else another candidate */
    if (!lm && n_alt == 0 && ntg > 1 &&
        read_i32_vec(&tg->via.array.ptr[other], vocab, 0, &alt, &nalt, sub, sizeof sub) < 0) {
        snprintf(msg, len, "\"targets\"[%d]: %s", other, sub);
        goto out;
    }
    q->ids = join_seq(prompt, np, ans, na, max_len, &q->len, &q->lab_from);
    if (lm) q->lab_from = 0;
    int alt_cut = 0;
    if (!lm && (nalt > 0 || n_alt > 0)) {
        q->alt = join_seq(prompt, np, n_alt ? alt_ids : alt, n_alt ? n_alt : nalt, max_len,
                          &q->alt_len, &q->alt_lab_from);
        alt_cut = np + (n_alt ? n_alt : nalt) - q->alt_len;
    }
    if (cuts_soft_slots(prompt, np + na - q->len) || cuts_soft_slots(prompt, alt_cut)) {   /* DPO's too */
        snprintf(msg, len, "--max-len %d cuts the prompt's soft-prompt slots", max_len);
        free(q->ids);
        free(q->alt);
        q->ids = q->alt = NULL;
        goto out;
    }
    rc = 0;
out:
    free(prompt); free(ans); free(alt);
    return rc;
}

/* rec's spans[field] mapped into q (a prompt-answer sequence of read_record, its prompt
 * maybe cut from the left): *start, *end. 0, or -1 + msg. */
static int read_span(const msgpack_object *rec, const char *field, const mu_train_seq *q, int32_t *start,
                     int32_t *end, char *msg, size_t len) {
    const msgpack_object *sp = mu_obj_get(mu_obj_get(rec, "spans"), field);
    int64_t a, b;
    if (!sp || sp->type != MSGPACK_OBJECT_ARRAY || sp->via.array.size != 2 || mu_obj_int(&sp->via.array.ptr[0], &a) ||
        mu_obj_int(&sp->via.array.ptr[1], &b) || a < 0 || b <= a) {
        snprintf(msg, len, "no span [start, end) of field \"%s\" (mu-tokenize writes spans of the prompt "
                 "template's fields)", field);
        return -1;
    }
    mu_tensor_view pv;   /* read_record checked it */
    char sub[200];
    if (mu_obj_tensor(mu_obj_get(rec, "prompt"), &pv, sub, sizeof sub)) { snprintf(msg, len, "prompt: %s", sub); return -1; }
    int64_t cut = pv.shape[0] - 1 - q->lab_from;
    if (b > pv.shape[0] || a - cut < 0) {
        snprintf(msg, len, "the \"%s\" span [%lld, %lld) is outside the prompt as trained (%lld tokens cut by "
                 "--max-len)", field, (long long)a, (long long)b, (long long)cut);
        return -1;
    }
    *start = (int32_t)(a - cut);
    *end = (int32_t)(b - cut);
    return 0;
}

/* mu_train_set_read, and with field the spans of mu_train_set_read_spans. */
static int read_set(const char *path, int lm, int max_len, int vocab, int nsoft, const int32_t *alt_ids, int n_alt,
                    const char *field, mu_train_set *set, int32_t **start, int32_t **end, char *err,
                    size_t errlen) {
    memset(set, 0, sizeof *set);
    mu_reader *r = mu_reader_open(path, "tokens", err, errlen);
    if (!r) return -1;
    set->path = mu_xstrdup(path);
    const msgpack_object *rec;
    int st, cap = 0;
    char msg[300];
    while ((st = mu_reader_next(r, &rec)) == 1) {
        if (set->n == cap) {
            cap = cap ? 2 * cap : 64;
            set->s = mu_xrealloc(set->s, (size_t)cap * sizeof *set->s);
            if (field) {
                *start = mu_xrealloc(*start, (size_t)cap * sizeof **start);
                *end = mu_xrealloc(*end, (size_t)cap * sizeof **end);
            }
        }
        mu_train_seq q;
        int bad = read_record(rec, lm, lm ? 0 : max_len, vocab, nsoft, alt_ids, n_alt, &q, msg, sizeof msg) < 0;
        if (!bad && field && read_span(rec, field, &q, *start + set->n, *end + set->n, msg, sizeof msg)) {
            bad = 1;
            free(q.ids);
            free(q.alt);
        }
        if (bad) {
            snprintf(err, errlen, "%s: record %ld: %s", path, mu_reader_record_index(r), msg);
            mu_reader_close(r);
            mu_train_set_free(set);
            return -1;
        }
        if (!lm || max_len < 2 || q.len <= max_len) {
            set->s[set->n++] = q;
            continue;
        }
        /* long text: windows of max_len tokens overlapping by one, so every next token
         * is a target exactly once */
        for (int start = 0; start + 1 < q.len; start += max_len - 1) {
            if (set->n == cap) {
                cap = 2 * cap;
                set->s = mu_xrealloc(set->s, (size_t)cap * sizeof *set->s);
            }
            mu_train_seq *w = &set->s[set->n++];
            memset(w, 0, sizeof *w);
            w->len = q.len - start < max_len ? q.len - start : max_len;
            w->ids = mu_xmalloc((size_t)w->len * sizeof *w->ids);
            memcpy(w->ids, q.ids + start, (size_t)w->len * sizeof *w->ids);
        }
        free(q.ids);
    }
    if (st < 0) {
        snprintf(err, errlen, "%s", mu_reader_error(r));
        mu_reader_close(r);
        mu_train_set_free(set);
        return -1;
    }
    mu_reader_close(r);
    if (set->n == 0) {
        snprintf(err, errlen, "%s: no records", path);
        mu_train_set_free(set);
        return -1;
    }
    return 0;
}

int mu_train_set_read(const char *path, int lm, int max_len, int vocab, int nsoft, const int32_t *alt_ids,
                      int n_alt, mu_train_set *set, char *err, size_t errlen) {
    return read_set(path, lm, max_len, vocab, nsoft, alt_ids, n_alt, NULL, set, NULL, NULL, err, errlen);
}

int mu_train_set_read_spans(const char *path, int max_len, int vocab, int nsoft, const char *field,
                            mu_train_set *set, int32_t **start, int32_t **end, char *err, size_t errlen) {
    *start = *end = NULL;
    int rc = read_set(path, 0, max_len, vocab, nsoft, NULL, 0, field, set, start, end, err, errlen);
    if (rc) {
        free(*start);
        free(*end);
        *start = *end = NULL;
    }
    return rc;
}

void mu_train_set_from_arrays(mu_train_set *set, int n, int32_t *const *ids, const int *len,
                              const int *prompt_len) {
    memset(set, 0, sizeof *set);
    set->path = mu_xstrdup("(memory)");
    set->s = mu_xcalloc((size_t)n, sizeof *set->s);
    set->n = n;
    for (int i = 0; i < n; i++) {
        set->s[i].ids = join_seq(ids[i], prompt_len[i], ids[i] + prompt_len[i], len[i] - prompt_len[i],
                                 0, &set->s[i].len, &set->s[i].lab_from);
        if (prompt_len[i] == 0) set->s[i].lab_from = 0;
    }
}

void mu_train_set_free(mu_train_set *set) {
    for (int i = 0; i < set->n; i++) { free(set->s[i].ids); free(set->s[i].alt); }
    free(set->s);
    free(set->path);
    memset(set, 0, sizeof *set);
}

/* ---- options ---- */

void mu_train_opts_default(mu_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->npo_beta = 0.1;
    o->simnpo_beta = 4.5;
    o->simnpo_delta = 0;
    o->dpo_beta = 0.1;
    o->wga_beta = 1.0;
    o->delta_scale = 1.0;
    o->satimp_beta1 = 5.0;
    o->satimp_beta2 = 1.0;
    o->undial_beta = 10.0;
    o->log1mp_floor = -5.0;
    o->rmu_layer = -1;
    o->rmu_c = 6.5;
    o->rmu_alpha = 100;
    o->steps = 100;
    o->batch = 8;
    o->accum = 1;
    o->seed = 0;
    mu_optim_config_default(&o->opt);
    o->opt.lr = 1e-4;
    o->opt.weight_decay = 0;
    o->gcg_topk = 256;
    o->gcg_candidates = 64;
}

/* ---- the trainer ---- */

typedef struct { char *buf; size_t len; } packed;   /* one log record, msgpack */

typedef struct {
    char *name;
    mu_train_set set;
} eval_set;

typedef struct {                /* per-layer activation buffers for hooks */
    float **buf;                /* [NL] each [B*T*D] or NULL */
    size_t *cap;
    int NL;
    const unsigned char *want;  /* [NL] layers to capture/inject */
} layer_bufs;

/* The labeled positions of a batch, the only rows whose logits are computed: row r is flat
 * position pos[r] = b*T + t with target tgt[r]; batch row b owns rows first[b] ..
 * first[b+1]-1. logp [R]: their target log-probs; a [R]: d loss / d logp (mu_model_backward_logp). */
typedef struct {
    int R, cap, cap_b;
    int32_t *pos, *tgt;
    int *first;                 /* [B+1] */
    double *logp, *a;
} label_rows;

struct mu_trainer {
    mu_model *m, *ref;
    mu_train_opts o;
    const mu_config *cfg;
    int V, NL, D;
    mu_train_set data[MU_DATA_COUNT];
    eval_set *ev;
    int n_ev;
    /* trained tensors */
    int nt;
    int *pidx;
    unsigned char *lora_part;   /* [nt] with LoRA: 1 entry i trains pidx[i]'s A, 2 its B */
    mu_optim *opt;              /* on the model's backend: trains p->w (p->wp when packed)
                                   from p->g in place, or with weight masking wm[i].m */
    struct wmask_bufs {         /* weight masking: backend [n] arrays of trained tensor i */
        float *w0, *m, *g;      /* the weights it started from, the mask, dL/dm */
        int64_t n;
    } *wm;
    int n_wm;                   /* entries of wm (nt, or one more while a tensor is added) */
    int64_t wm_total;           /* elements under the mask */
    /* batch scratch */
    int32_t *ids, *lens, *labels;
    size_t ids_cap;
    float *dlogits;
    size_t dl_cap;
    label_rows lr;              /* the batch's labeled positions: its logit rows */
    int64_t *perm[MU_DATA_COUNT];
    int64_t perm_epoch[MU_DATA_COUNT];
    /* activations */
    float *control;             /* RMU c*u [D] */
    unsigned char *l2_layers, *rmu_layers;
    layer_bufs cur_rmu, ref_rmu, d_rmu, cur_l2, ref_l2, d_l2;
    /* state */
    int64_t step;
    packed *log;
    int nlog, log_cap;
    double last_loss;
    double step_penalty;        /* weight masking: the penalty in the last step's loss */
    double best;
    int has_best;
    float **best_vals;
    double term[MU_OBJ_COUNT];
    int64_t tokens;
    int prepared;               /* data checked, reference log-probs cached */
    mu_dist dist;               /* the processes of a data-parallel run (one by default) */
    float *dist_host;           /* staging for a device backend's gradient sums */
    int64_t dist_host_n;
    char *options;              /* what a checkpoint must have been made with (JSON) */
    json_t *info;               /* the options and mu_trainer_note's: log header, delta metadata */
    int loss_only;              /* the passes run forward only (GCG's candidates) */
    int32_t *gcg_ids;           /* GCG: the slots' tokens [soft_tokens] */
    struct { int slot, from, to, tried; double loss; } gcg_last;   /* GCG: the last step's swap */
};

/* The run's options by their mu-train names (objective coefficients, every objective's
 * parameter, the optimizer and schedule, steps, batch, accumulation, seed), resolved (the
 * RMU layer, the decay's length): what the log header and the delta's metadata record. */
static void set_real(json_t *j, const char *key, double v) { json_object_set_new(j, key, json_real(v)); }
static void set_int(json_t *j, const char *key, long long v) { json_object_set_new(j, key, json_integer(v)); }

static json_t *options_json(const mu_train_opts *o) {
    json_t *j = json_object(), *terms = json_object();
    for (int i = 0; i < MU_OBJ_COUNT; i++)
        if (o->coef[i] != 0) set_real(terms, OBJ_NAMES[i], o->coef[i]);
    json_object_set_new(j, "objectives", terms);
    set_real(j, "npo_beta", o->npo_beta);
    set_real(j, "simnpo_beta", o->simnpo_beta);
    set_real(j, "simnpo_delta", o->simnpo_delta);
    set_real(j, "dpo_beta", o->dpo_beta);
    set_real(j, "wga_beta", o->wga_beta);
    set_real(j, "satimp_beta1", o->satimp_beta1);
    set_real(j, "satimp_beta2", o->satimp_beta2);
    set_real(j, "undial_beta", o->undial_beta);
    set_real(j, "log1mp_floor", o->log1mp_floor);
    set_int(j, "rmu_layer", o->rmu_layer);
    set_real(j, "rmu_coeff", o->rmu_c);
    set_real(j, "rmu_alpha", o->rmu_alpha);
    json_object_set_new(j, "optimizer", json_string(mu_opt_kind_name(o->opt.kind)));
    set_real(j, "lr", o->opt.lr);
    set_real(j, "beta1", o->opt.beta1);
    set_real(j, "beta2", o->opt.beta2);
    set_real(j, "eps", o->opt.eps);
    set_real(j, "momentum", o->opt.momentum);
    set_real(j, "weight_decay", o->opt.weight_decay);
    json_object_set_new(j, "clip", o->opt.clip > 0 ? json_real(o->opt.clip) : json_null());
    json_object_set_new(j, "schedule", json_string(mu_sched_kind_name(o->opt.sched)));
    set_int(j, "warmup", o->opt.warmup);
    if (o->opt.sched != MU_SCHED_CONSTANT) set_int(j, "decay_steps", o->opt.total);
    set_real(j, "min_lr_ratio", o->opt.min_lr_ratio);
    set_int(j, "steps", o->steps);
    set_int(j, "batch", o->batch);
    set_int(j, "accum", o->accum);
    set_int(j, "seed", (long long)o->seed);
    if (o->weight_mask) set_real(j, "weight_mask", o->weight_mask_lambda);
    if (o->lora_r > 0) {
        set_int(j, "lora_r", o->lora_r);
        set_real(j, "lora_alpha", o->lora_alpha);
    }
    if (o->soft_tokens > 0) set_int(j, "soft_tokens", o->soft_tokens);
    if (o->delta_scale != 1) set_real(j, "delta_scale", o->delta_scale);
    if (o->soft_tokens > 0 && o->gcg) {
        json_t *g = json_object();
        set_int(g, "topk", o->gcg_topk);
        set_int(g, "candidates", o->gcg_candidates);
        json_object_set_new(j, "gcg", g);
    }
    return j;
}

#define OPTIONS_JSON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))

/* What a checkpoint must have been made with: every option that changes the trajectory,
 * that is all of them but the steps (a resumed run may go further; a decaying schedule
 * keeps its decay_steps). */
static void options_key(mu_trainer *t) {
    t->info = options_json(&t->o);
    json_t *gcg = json_object_get(t->info, "gcg");
    if (gcg) {   /* how many tokens the search may place: a resume must allow the same */
        int64_t allowed = 0;
        for (int v = 0; v < t->V; v++) allowed += !t->o.gcg_allowed || t->o.gcg_allowed[v];
        set_int(gcg, "allowed", allowed);
    }
    json_t *j = json_deep_copy(t->info);
    json_object_del(j, "steps");
    t->options = json_dumps(j, OPTIONS_JSON_FLAGS);
    json_decref(j);
}

void mu_trainer_set_delta_scale(mu_trainer *t, double scale) {
    t->o.delta_scale = scale;
    if (scale != 1) set_real(t->info, "delta_scale", scale);
    else json_object_del(t->info, "delta_scale");
}

void mu_trainer_note(mu_trainer *t, const char *key, json_t *value) {
    json_object_set_new(t->info, key, value);
}

static int need(const mu_trainer *t, mu_obj_id id) { return t->o.coef[id] != 0; }

/* The forget rows' preferred answers (a second target or --dpo-alt) run beside them. */
static int uses_alt(const mu_trainer *t) { return need(t, MU_OBJ_DPO) || need(t, MU_OBJ_IDK); }

static int forget_logit_terms(const mu_trainer *t) {
    static const mu_obj_id ids[] = {MU_OBJ_LEARN, MU_OBJ_GA, MU_OBJ_LOG1MP, MU_OBJ_NPO, MU_OBJ_SIMNPO,
                                    MU_OBJ_DPO, MU_OBJ_WGA, MU_OBJ_SATIMP, MU_OBJ_ME, MU_OBJ_UNDIAL,
                                    MU_OBJ_EDIT, MU_OBJ_IDK};
    for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) if (need(t, ids[i])) return 1;
    return 0;
}

static void layer_bufs_init(layer_bufs *b, int NL, const unsigned char *want) {
    b->NL = NL;
    b->buf = mu_xcalloc((size_t)NL, sizeof *b->buf);
    b->cap = mu_xcalloc((size_t)NL, sizeof *b->cap);
    b->want = want;
}

static void layer_bufs_free(layer_bufs *b) {
    if (!b->buf) return;
    for (int i = 0; i < b->NL; i++) free(b->buf[i]);
    free(b->buf);
    free(b->cap);
}

/* Buffer of layer L sized for n floats (contents kept only if already big enough). */
static float *layer_buf(layer_bufs *b, int L, size_t n) {
    if (b->cap[L] < n) {
        free(b->buf[L]);
        b->buf[L] = mu_xmalloc(n * sizeof(float));
        b->cap[L] = n;
    }
    return b->buf[L];
}

static int hook_capture(const mu_hook_info *info, float *act, void *user) {
    layer_bufs *b = user;
    if (info->layer < 0 || info->layer >= b->NL || !b->want[info->layer]) return 0;
    size_t n = (size_t)info->B * info->T * info->D;
    memcpy(layer_buf(b, info->layer, n), act, n * sizeof(float));
    return 0;
}

static int hook_inject(const mu_hook_info *info, float *act, void *user) {
    layer_bufs *b = user;
    if (info->layer < 0 || info->layer >= b->NL || !b->want[info->layer]) return 0;
    size_t n = (size_t)info->B * info->T * info->D;
    const float *d = b->buf[info->layer];
    for (size_t i = 0; i < n; i++) act[i] += d[i];
    return 0;
}

/* ---- weight masking ---- */

/* The mask of the next trained tensor, over its n trained elements w (backend [n]): w0 a
 * copy of w, m all ones, g zeroed. 0, or -1 out of memory. */
static int wmask_add(mu_trainer *t, const float *w, int64_t n) {
    const mu_backend *be = mu_model_backend(t->m);
    t->wm = mu_xrealloc(t->wm, (size_t)(t->n_wm + 1) * sizeof *t->wm);
    struct wmask_bufs *b = &t->wm[t->n_wm];
    size_t bytes = (size_t)(n + 1) * sizeof(float);
    b->n = n;
    b->w0 = be->alloc(bytes);
    b->m = be->alloc(bytes);
    b->g = be->alloc(bytes);
    if (!b->w0 || !b->m || !b->g) {
        be->free(b->w0); be->free(b->m); be->free(b->g);
        return -1;
    }
    be->copy(b->w0, w, (size_t)n * sizeof(float));
    float *ones = mu_xmalloc(bytes);
    for (int64_t j = 0; j < n; j++) ones[j] = 1.0f;
    be->upload(b->m, ones, (size_t)n * sizeof(float));
    free(ones);
    t->n_wm++;
    t->wm_total += n;
    return 0;
}

static void wmask_free(mu_trainer *t) {
    const mu_backend *be = mu_model_backend(t->m);
    for (int i = 0; i < t->n_wm; i++) { be->free(t->wm[i].w0); be->free(t->wm[i].m); be->free(t->wm[i].g); }
    free(t->wm);
}

/* The gradient the data gave trained tensor i (backend [set->n]): the model's dW (packed
 * or whole), a LoRA factor's, the soft prompt's, and with weight masking still dL/dw
 * (wmask_grads makes dL/dm from it after the sum, so the penalty is counted once). */
static float *data_grad(const mu_trainer *t, int i) {
    int part = t->lora_part ? t->lora_part[i] : 0;
    if (part == 3) return mu_model_soft_prompt(t->m)->g;
    const mu_lora *a = part ? mu_model_lora(t->m, t->pidx[i]) : NULL;
    return a ? (part == 1 ? a->gA : a->gB) : mu_model_param(t->m, t->pidx[i])->g;
}

/* The trained values of tensor i changed (an update, a checkpoint, the best snapshot):
 * with weight masking the mask is projected onto [0, 1] and applied to the weights. */
static void trained_changed(mu_trainer *t, int i) {
    if (t->lora_part && t->lora_part[i]) return;    /* the GEMMs read A and B themselves */
    if (t->o.weight_mask) {
        mu_param *p = mu_model_param(t->m, t->pidx[i]);
        mu_model_backend(t->m)->wmask_forward(p->packed ? p->wp : p->w, t->wm[i].m, t->wm[i].w0, t->wm[i].n);
    }
    mu_model_param_changed(t->m, t->pidx[i]);
}

/* dL/dm of every masked tensor from the model's dL/dw, with the penalty's share. */
static void wmask_grads(mu_trainer *t) {
    if (!t->o.weight_mask) return;
    float lam = (float)t->o.weight_mask_lambda;
    for (int i = 0; i < t->nt; i++)
        mu_model_backend(t->m)->wmask_backward(t->wm[i].g, mu_model_param(t->m, t->pidx[i])->g,
                                               t->wm[i].w0, lam, t->wm[i].n);
}

/* The penalty lambda * sum(1 - m) over every masked element (the backend's wmask_cut per
 * tensor, in tensor order; no mask leaves the device); 0 without weight masking. */
static double wmask_penalty(const mu_trainer *t, double *cut) {
    double sum = 0;
    if (t->o.weight_mask)
        for (int i = 0; i < t->nt; i++) sum += mu_model_backend(t->m)->wmask_cut(t->wm[i].m, t->wm[i].n);
    if (cut) *cut = sum;
    return t->o.weight_mask ? t->o.weight_mask_lambda * sum : 0;
}

int mu_trainer_wmask_stats(const mu_trainer *t, mu_wmask_stats *s) {
    memset(s, 0, sizeof *s);
    if (!t->o.weight_mask) return -1;
    for (int i = 0; i < t->nt; i++) {
        int64_t n = t->wm[i].n;
        float *m = mu_xmalloc((size_t)(n + 1) * sizeof(float));
        mu_model_backend(t->m)->download(m, t->wm[i].m, (size_t)n * sizeof(float));
        for (int64_t j = 0; j < n; j++) {
            s->masked += m[j] < 1;
            s->halved += m[j] <= 0.5f;
            s->ablated += m[j] == 0;
        }
        free(m);
    }
    s->elements = t->wm_total;
    s->penalty = wmask_penalty(t, &s->cut);
    return 0;
}

void mu_trainer_opt_grad(const mu_trainer *t, int i, float *host) {
    const float *g = t->o.weight_mask ? t->wm[i].g : data_grad(t, i);
    mu_model_backend(t->m)->download(host, g, (size_t)mu_optim_set(t->opt, i)->n * sizeof(float));
}

/* Registers optimizer entry nt: pidx[nt] = pi, the optimizer's part 0 (the weights), 1 (a
 * LoRA A), 2 (its B) or 3 (the soft prompt; pi -1). */
static void add_entry(mu_trainer *t, int pi, int part) {
    t->pidx = mu_xrealloc(t->pidx, (size_t)(t->nt + 1) * sizeof *t->pidx);
    t->lora_part = mu_xrealloc(t->lora_part, (size_t)(t->nt + 1));
    t->pidx[t->nt] = pi;
    t->lora_part[t->nt++] = (unsigned char)part;
}

/* Makes the elements of set of parameter pi trainable (a list set packed: gradient and
 * master of those elements only) and registers them with the optimizer, which takes set
 * over. 0 ok, -1 + err when the backend has no memory for them. */
static int add_trained(mu_trainer *t, int pi, mu_idxset *set, char *err, size_t errlen) {
    mu_param *p = mu_model_param(t->m, pi);
    if (mu_model_set_trainable_elems(t->m, pi, set) < 0) {
        snprintf(err, errlen, "out of memory for the gradient of %s", p->info.name);
        mu_idxset_free(set);
        return -1;
    }
    float *param = p->packed ? p->wp : p->w, *grad = p->g;   /* [set->n] either way */
    if (t->o.weight_mask) {
        if (wmask_add(t, param, set->n) < 0) {
            snprintf(err, errlen, "out of memory for the weight mask of %s", p->info.name);
            mu_idxset_free(set);
            return -1;
        }
        param = t->wm[t->nt].m;
        grad = t->wm[t->nt].g;
    }
    int rc = p->packed ? mu_optim_add_packed(t->opt, p->info.name, param, grad, set, &p->el)
                       : mu_optim_add(t->opt, p->info.name, param, grad, set);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory for the optimizer state of %s", p->info.name);
        return -1;
    }
    add_entry(t, pi, 0);
    return 0;
}

/* Gives matrix pi a LoRA adapter of rank lora_r (A uniform in +-1/sqrt(in) from the seed's
 * stream pi, B zero: PEFT's start, the model unchanged) and registers A and B. */
static int add_lora(mu_trainer *t, int pi, char *err, size_t errlen) {
    mu_param *p = mu_model_param(t->m, pi);
    int r = t->o.lora_r, K, M;
    mu_model_matrix_dims(t->m, pi, &K, &M);
    float *A = mu_xmalloc((size_t)r * K * sizeof(float)), *B = mu_xcalloc((size_t)M * r, sizeof(float));
    mu_rng rng;
    mu_rng_seed2(&rng, t->o.seed, (uint64_t)pi);
    double bound = 1.0 / sqrt((double)K);
    for (int64_t e = 0; e < (int64_t)r * K; e++) A[e] = (float)((2 * mu_rng_uniform(&rng) - 1) * bound);
    int rc = mu_model_add_lora(t->m, pi, r, (float)(t->o.lora_alpha / r), A, B);
    free(A);
    free(B);
    if (rc < 0) {
        snprintf(err, errlen, "out of memory for the LoRA adapter of %s", p->info.name);
        return -1;
    }
    const mu_lora *a = mu_model_lora(t->m, pi);
    char name[200];
    for (int part = 1; part <= 2; part++) {
        mu_idxset set;
        mu_idxset_init_dense(&set, part == 1 ? (int64_t)r * K : (int64_t)M * r);
        snprintf(name, sizeof name, "%s%s", p->info.name, part == 1 ? ".lora_A" : ".lora_B");
        if (mu_optim_add(t->opt, name, part == 1 ? a->A : a->B, part == 1 ? a->gA : a->gB, &set) < 0) {
            snprintf(err, errlen, "out of memory for the optimizer state of %s", name);
            return -1;
        }
        add_entry(t, pi, part);
    }
    return 0;
}

/* With LoRA: adapters on the masked layer matrices, each selected whole; the other masked
 * tensors (norms, biases, embeddings) stay frozen, counted in the info's lora_frozen. */
static int setup_lora(mu_trainer *t, const mu_mask *mask, char *err, size_t errlen) {
    if (t->o.weight_mask) {
        snprintf(err, errlen, "LoRA and weight masking cannot be combined");
        return -1;
    }
    int frozen = 0;
    for (int i = 0; i < mu_model_n_params(t->m); i++) {
        mu_param *p = mu_model_param(t->m, i);
        int k = mask ? mu_mask_find(mask, p->info.name) : -1;
        int64_t n = !mask ? p->numel : k < 0 ? 0 : mu_mask_tensor_params(&mask->t[k]);
        if (n == 0) continue;
        /* lm_head only when the mask names it (PEFT's all-linear leaves it out too) */
        if (!mu_model_lora_eligible(t->m, i) || (!mask && !strcmp(p->info.role, "lm_head"))) {
            frozen++;
            continue;
        }
        if (n != p->numel) {
            snprintf(err, errlen, "LoRA adapts whole layer matrices: the mask selects part of %s", p->info.name);
            return -1;
        }
        if (add_lora(t, i, err, errlen) < 0) return -1;
    }
    if (t->nt == 0) {
        snprintf(err, errlen, "the mask selects no layer matrix for LoRA");
        return -1;
    }
    json_object_set_new(t->info, "lora_matrices", json_integer(t->nt / 2));
    json_object_set_new(t->info, "lora_frozen", json_integer(frozen));
    return 0;
}

/* GCG's starting tokens: the nearest tokens of the model's soft prompt sp, else allowed
 * tokens drawn from the seed; their rows into P [n, D]. */
static int gcg_start(mu_trainer *t, const mu_soft_prompt *sp, float *P, char *err, size_t errlen) {
    int n = t->o.soft_tokens, D = t->D, rc;
    const unsigned char *ok = t->o.gcg_allowed;
    t->gcg_ids = mu_xmalloc((size_t)n * sizeof *t->gcg_ids);
    if (sp) {
        mu_model_backend(t->m)->download(P, sp->P, (size_t)n * D * sizeof *P);
        rc = mu_soft_nearest_tokens(t->m, P, n, t->gcg_ids);
    } else {
        int64_t allowed = 0;
        for (int v = 0; v < t->V; v++) allowed += !ok || ok[v];
        if (allowed == 0) {
            snprintf(err, errlen, "GCG: no token of the vocabulary is allowed in the slots");
            return -1;
        }
        mu_rng rng;
        mu_rng_seed2(&rng, t->o.seed, UINT64_C(0x50f7));
        for (int j = 0; j < n; j++) {   /* the r-th allowed token */
            int64_t r = (int64_t)(mu_rng_uniform(&rng) * (double)allowed) % allowed;
            int v = 0;
            for (;; v++) if ((!ok || ok[v]) && r-- == 0) break;
            t->gcg_ids[j] = v;
        }
        rc = 0;
    }
    if (rc == 0) rc = mu_model_embedding_rows(t->m, t->gcg_ids, n, P);
    if (rc) snprintf(err, errlen, "out of memory for a soft prompt of %d vectors", n);
    return rc ? -1 : 0;
}

/* A soft prompt of soft_tokens vectors, trained instead of any weight: the model's own
 * (--soft-prompt) when it has that many, else the embedding rows of tokens drawn from the
 * seed (Lester et al.'s initialization from the vocabulary). A reference model gets the
 * starting vectors, frozen, so it reads the same records. */
static int setup_soft(mu_trainer *t, const mu_mask *mask, char *err, size_t errlen) {
    int n = t->o.soft_tokens, D = t->D;
    if (mask || t->o.lora_r > 0 || t->o.weight_mask) {
        snprintf(err, errlen, "a soft prompt trains no weight: no mask, LoRA or weight masking with it");
        return -1;
    }
    const mu_soft_prompt *sp = mu_model_soft_prompt(t->m);
    if (sp && sp->n != n) {
        snprintf(err, errlen, "the model's soft prompt has %d vectors, but %d are to be trained", sp->n, n);
        return -1;
    }
    float *P = mu_xmalloc((size_t)n * D * sizeof *P);
    int rc = 0;
    if (t->o.gcg) {
        rc = gcg_start(t, sp, P, err, errlen);
        if (rc) { free(P); return -1; }
    } else if (sp) {
        mu_model_backend(t->m)->download(P, sp->P, (size_t)n * D * sizeof *P);
    } else {
        int32_t *ids = mu_xmalloc((size_t)n * sizeof *ids);
        mu_rng rng;
        mu_rng_seed2(&rng, t->o.seed, UINT64_C(0x50f7));
        for (int j = 0; j < n; j++) ids[j] = (int32_t)(mu_rng_uniform(&rng) * t->V) % t->V;
        rc = mu_model_embedding_rows(t->m, ids, n, P);
        free(ids);
    }
    if (rc == 0) rc = mu_model_set_soft_prompt(t->m, n, P, 1);
    if (rc == 0 && t->ref) rc = mu_model_set_soft_prompt(t->ref, n, P, 0);
    free(P);
    mu_idxset set;
    mu_idxset_init_dense(&set, (int64_t)n * D);
    sp = mu_model_soft_prompt(t->m);
    if (rc || mu_optim_add(t->opt, "soft_prompt", sp->P, sp->g, &set) < 0) {
        snprintf(err, errlen, "out of memory for a soft prompt of %d vectors", n);
        return -1;
    }
    add_entry(t, -1, 3);
    return 0;
}

/* Makes the masked tensors trainable and registers their element sets. */
static int setup_params(mu_trainer *t, const mu_mask *mask, char *err, size_t errlen) {
    int np = mu_model_n_params(t->m);
    if (mask) {
        mu_param_info *info = mu_model_param_infos(t->m);
        int rc = mu_mask_check(mask, info, np, err, errlen);
        free(info);
        if (rc < 0) return -1;
    }
    if (t->o.soft_tokens > 0) return setup_soft(t, mask, err, errlen);
    if (t->o.lora_r > 0) return setup_lora(t, mask, err, errlen);
    for (int i = 0; i < np; i++) {
        mu_param *p = mu_model_param(t->m, i);
        mu_idxset set;
        if (!mask) {
            mu_idxset_init_dense(&set, p->numel);
        } else {
            int k = mu_mask_find(mask, p->info.name);
            if (k < 0) continue;
            int64_t *idx, n = mu_mask_indices(&mask->t[k], &idx);
            if (n == 0) continue;
            if (n == p->numel) mu_idxset_init_dense(&set, n);
            else if (mu_idxset_init_list(&set, p->numel, idx, n, err, errlen) < 0) { free(idx); return -1; }
            free(idx);
        }
        if (add_trained(t, i, &set, err, errlen) < 0) return -1;
    }
    if (t->nt == 0) {
        snprintf(err, errlen, "the mask selects no parameter");
        return -1;
    }
    return 0;
}

mu_trainer *mu_trainer_new(mu_model *model, mu_model *ref, const mu_mask *mask,
                           const mu_train_opts *o, char *err, size_t errlen) {
    mu_trainer *t = mu_xcalloc(1, sizeof *t);
    t->m = model;
    t->ref = ref;
    t->o = *o;
    mu_dist_single(&t->dist);
    t->cfg = mu_model_config(model);
    t->V = t->cfg->vocab;
    t->NL = t->cfg->n_layer;
    t->D = t->cfg->d_model;
    if (t->o.batch < 1 || t->o.accum < 1 || t->o.steps < 0) {
        snprintf(err, errlen, "batch and accumulation must be >= 1, steps >= 0");
        goto fail;
    }
    if (t->o.rmu_layer < 0) t->o.rmu_layer = t->NL / 2;
    if (t->o.rmu_layer >= t->NL) {
        snprintf(err, errlen, "rmu layer %d: the model has %d layers", t->o.rmu_layer, t->NL);
        goto fail;
    }
    if (t->o.opt.total <= 0) t->o.opt.total = t->o.steps;
    t->opt = mu_optim_new(&t->o.opt, mu_model_backend(model));
    options_key(t);
    if (setup_params(t, mask, err, errlen) < 0) goto fail;
    /* activation objectives: RMU at one layer; mlp-l2 at layers with a trained MLP (all if none) */
    t->rmu_layers = mu_xcalloc((size_t)t->NL, 1);
    t->rmu_layers[t->o.rmu_layer] = 1;
    t->l2_layers = mu_xcalloc((size_t)t->NL, 1);
    int any = 0;
    for (int i = 0; i < t->nt; i++) {
        if (t->pidx[i] < 0) continue;   /* the soft prompt */
        const mu_param_info *pi = &mu_model_param(t->m, t->pidx[i])->info;
        if (pi->layer >= 0 && (!strcmp(pi->role, "gate") || !strcmp(pi->role, "up") || !strcmp(pi->role, "down"))) {
            t->l2_layers[pi->layer] = 1;
            any = 1;
        }
    }
    if (!any) memset(t->l2_layers, 1, (size_t)t->NL);
    layer_bufs_init(&t->cur_rmu, t->NL, t->rmu_layers);
    layer_bufs_init(&t->ref_rmu, t->NL, t->rmu_layers);
    layer_bufs_init(&t->d_rmu, t->NL, t->rmu_layers);
    layer_bufs_init(&t->cur_l2, t->NL, t->l2_layers);
    layer_bufs_init(&t->ref_l2, t->NL, t->l2_layers);
    layer_bufs_init(&t->d_l2, t->NL, t->l2_layers);
    t->control = mu_xmalloc((size_t)t->D * sizeof(float));
    mu_rmu_control(t->control, t->D, t->o.rmu_c, t->o.seed);
    for (int r = 0; r < MU_DATA_COUNT; r++) t->perm_epoch[r] = -1;
    t->last_loss = NAN;
    return t;
fail:
    mu_trainer_free(t);
    return NULL;
}

void mu_trainer_free(mu_trainer *t) {
    if (!t) return;
    for (int r = 0; r < MU_DATA_COUNT; r++) { mu_train_set_free(&t->data[r]); free(t->perm[r]); }
    for (int i = 0; i < t->n_ev; i++) { free(t->ev[i].name); mu_train_set_free(&t->ev[i].set); }
    free(t->ev);
    for (int i = 0; i < t->nt && t->best_vals; i++) free(t->best_vals[i]);
    free(t->best_vals);
    wmask_free(t);
    free(t->pidx);
    free(t->lora_part);
    mu_optim_free(t->opt);
    free(t->ids); free(t->lens); free(t->labels); free(t->dlogits);
    free(t->lr.pos); free(t->lr.tgt); free(t->lr.first); free(t->lr.logp); free(t->lr.a);
    free(t->control); free(t->l2_layers); free(t->rmu_layers);
    layer_bufs_free(&t->cur_rmu); layer_bufs_free(&t->ref_rmu); layer_bufs_free(&t->d_rmu);
    layer_bufs_free(&t->cur_l2); layer_bufs_free(&t->ref_l2); layer_bufs_free(&t->d_l2);
    for (int i = 0; i < t->nlog; i++) free(t->log[i].buf);
    free(t->log);
    free(t->options);
    free(t->dist_host);
    free(t->gcg_ids);
    json_decref(t->info);
    free(t);
}

void mu_trainer_set_dist(mu_trainer *t, const mu_dist *d) {
    t->dist = *d;
    if (d->world > 1) mu_trainer_note(t, "processes", json_integer(d->world));
}

void mu_trainer_set_data(mu_trainer *t, mu_data_role role, mu_train_set *set) {
    mu_train_set_free(&t->data[role]);
    t->data[role] = *set;
    memset(set, 0, sizeof *set);
}

void mu_trainer_add_eval(mu_trainer *t, const char *name, mu_train_set *set) {
    t->ev = mu_xrealloc(t->ev, (size_t)(t->n_ev + 1) * sizeof *t->ev);
    t->ev[t->n_ev].name = mu_xstrdup(name);
    t->ev[t->n_ev].set = *set;
    memset(set, 0, sizeof *set);
    t->n_ev++;
}

int mu_trainer_n_trained(const mu_trainer *t) { return t->nt; }
int mu_trainer_trained_param(const mu_trainer *t, int i) { return t->pidx[i]; }
int mu_trainer_lora_part(const mu_trainer *t, int i) { return t->lora_part[i]; }
const mu_idxset *mu_trainer_trained_set(const mu_trainer *t, int i) { return mu_optim_set(t->opt, i); }
size_t mu_trainer_optim_bytes(const mu_trainer *t) {
    return mu_optim_state_bytes(t->opt) + (size_t)t->wm_total * 3 * sizeof(float);   /* + w0, m, dL/dm */
}
int64_t mu_trainer_step(const mu_trainer *t) { return t->step; }
void mu_trainer_set_steps(mu_trainer *t, int64_t steps) { t->o.steps = steps; }
double mu_trainer_last_loss(const mu_trainer *t) { return t->last_loss; }

/* ---- batches ---- */

typedef struct { const int32_t *ids; int len, lab_from; } row_ref;

/* Sequence index for slot `pos` of role r: epoch-wise seeded permutations. */
static int64_t draw(mu_trainer *t, mu_data_role r, int64_t pos) {
    int64_t n = t->data[r].n, epoch = pos / n;
    if (t->perm_epoch[r] != epoch) {
        if (!t->perm[r]) t->perm[r] = mu_xmalloc((size_t)n * sizeof *t->perm[r]);
        for (int64_t i = 0; i < n; i++) t->perm[r][i] = i;
        mu_rng rng;
        mu_rng_seed2(&rng, t->o.seed ^ (0x9E37ull * (uint64_t)(r + 1)), (uint64_t)epoch);
        mu_rng_shuffle_i64(&rng, t->perm[r], n);
        t->perm_epoch[r] = epoch;
    }
    return t->perm[r][pos % n];
}

/* Lays rows out as a right-padded batch with labels; returns T. */
static int build_batch(mu_trainer *t, const row_ref *rows, int B) {
    int T = 1;
    for (int b = 0; b < B; b++) if (rows[b].len > T) T = rows[b].len;
    size_t need_ids = (size_t)B * T;
    if (t->ids_cap < need_ids) {
        t->ids = mu_xrealloc(t->ids, need_ids * sizeof *t->ids);
        t->labels = mu_xrealloc(t->labels, need_ids * sizeof *t->labels);
        t->ids_cap = need_ids;
    }
    t->lens = mu_xrealloc(t->lens, (size_t)B * sizeof *t->lens);
    for (int b = 0; b < B; b++) {
        int32_t *ids = t->ids + (size_t)b * T, *lab = t->labels + (size_t)b * T;
        for (int i = 0; i < T; i++) {
            ids[i] = i < rows[b].len ? rows[b].ids[i] : 0;
            lab[i] = i >= rows[b].lab_from && i + 1 < rows[b].len ? rows[b].ids[i + 1] : -1;
        }
        t->lens[b] = rows[b].len;
        t->tokens += rows[b].len;
    }
    return T;
}

/* t->lr from the labels of the last build_batch (B rows of T); a zeroed. */
static label_rows *find_label_rows(mu_trainer *t, int B, int T) {
    label_rows *l = &t->lr;
    size_t n = (size_t)B * T;
    if ((size_t)l->cap < n) {
        l->pos = mu_xrealloc(l->pos, n * sizeof *l->pos);
        l->tgt = mu_xrealloc(l->tgt, n * sizeof *l->tgt);
        l->logp = mu_xrealloc(l->logp, n * sizeof *l->logp);
        l->a = mu_xrealloc(l->a, n * sizeof *l->a);
        l->cap = (int)n;
    }
    if (l->cap_b < B + 1) {
        l->first = mu_xrealloc(l->first, (size_t)(B + 1) * sizeof *l->first);
        l->cap_b = B + 1;
    }
    l->R = 0;
    for (int b = 0; b < B; b++) {
        l->first[b] = l->R;
        for (int i = 0; i < T; i++) {
            int32_t y = t->labels[(size_t)b * T + i];
            if (y < 0) continue;
            l->pos[l->R] = (int32_t)((size_t)b * T + i);
            l->tgt[l->R++] = y;
        }
    }
    l->first[B] = l->R;
    memset(l->a, 0, (size_t)(l->R ? l->R : 1) * sizeof *l->a);
    return l;
}

/* Forward options computing the logits of the labeled rows of batch rows [0, nb) only. */
static mu_fwd_opts label_rows_opts(const label_rows *l, int nb) {
    return (mu_fwd_opts){.logit_rows = l->pos, .n_logit_rows = l->first[nb]};
}

/* sum of logp over rows [r0, r1) */
static double logp_sum(const label_rows *l, int r0, int r1) {
    double s = 0;
    for (int r = r0; r < r1; r++) s += l->logp[r];
    return s;
}

static void add_coef(label_rows *l, int r0, int r1, double a) {
    for (int r = r0; r < r1; r++) l->a[r] += a;
}

/* A cross-entropy term (retain-ce, general-lm) over every row of l: value into t->term[id],
 * gradient coefficients into l->a. */
static void term_ce(mu_trainer *t, label_rows *l, mu_obj_id id, double tokc) {
    double c = t->o.coef[id], dl;
    for (int r = 0; r < l->R; r++) {
        t->term[id] += mu_tok_ce(l->logp[r], &dl) * tokc;
        l->a[r] += c * tokc * dl;
    }
}

static float *zeroed_dlogits(mu_trainer *t, size_t n) {
    if (t->dl_cap < n) {
        free(t->dlogits);
        t->dlogits = mu_xmalloc(n * sizeof(float));
        t->dl_cap = n;
    }
    memset(t->dlogits, 0, n * sizeof(float));
    return t->dlogits;
}

/* MSE of act rows [B,T,D] (valid positions only) against target rows or the control
 * vector; dact (zeroed here, [B,T,D]) receives coef * d/dact. Returns the mean. */
static double masked_mse(const float *act, const float *target, const float *cvec, const int32_t *lens,
                         int B, int T, int D, double coef, float *dact) {
    int64_t total = 0;
    for (int b = 0; b < B; b++) total += (int64_t)lens[b] * D;
    memset(dact, 0, (size_t)B * T * D * sizeof(float));
    double loss = 0;
    if (total == 0) return 0;
    for (int b = 0; b < B; b++) {
        int64_t n = (int64_t)lens[b] * D;
        if (!n) continue;
        size_t off = (size_t)b * T * D;
        double w = (double)n / (double)total;
        loss += w * mu_obj_mse(act + off, target ? target + off : NULL, cvec, D, n, coef * w, dact + off);
    }
    return loss;
}

/* Token-level forget terms (learn/edit/ga, log1mp, wga, satimp) of the rows [0, first[B]),
 * and idk (the preferred answers' CE) of rows [first[B], first[2B]) when they run: their
 * values into t->term, their d/dlogp into l->a. */
static void forget_token_terms(mu_trainer *t, label_rows *l, int B, double tokc) {
    double ci = t->o.coef[MU_OBJ_IDK], dl;
    if (ci) {
        int n = l->first[2 * B] - l->first[B];
        double c = 1.0 / (t->o.accum * (n ? n : 1));   /* the mean over the preferred tokens */
        for (int r = l->first[B]; r < l->first[2 * B]; r++) {
            t->term[MU_OBJ_IDK] += mu_tok_ce(l->logp[r], &dl) * c;
            l->a[r] += ci * c * dl;
        }
    }
    double cl = t->o.coef[MU_OBJ_LEARN] + t->o.coef[MU_OBJ_EDIT] - t->o.coef[MU_OBJ_GA];
    int ce = need(t, MU_OBJ_LEARN) || need(t, MU_OBJ_EDIT) || need(t, MU_OBJ_GA);
    double c1 = t->o.coef[MU_OBJ_LOG1MP], cw = t->o.coef[MU_OBJ_WGA], cs = t->o.coef[MU_OBJ_SATIMP];
    for (int r = 0; r < l->first[B]; r++) {
        double lp = l->logp[r];
        if (ce) {      /* learn and edit descend the CE of the forget targets, ga ascends it */
            double v = mu_tok_ce(lp, &dl) * tokc;
            t->term[MU_OBJ_LEARN] += v;
            t->term[MU_OBJ_EDIT] += v;
            t->term[MU_OBJ_GA] -= v;
            l->a[r] += cl * tokc * dl;
        }
        if (c1) {
            t->term[MU_OBJ_LOG1MP] += mu_tok_log1mp(lp, t->o.log1mp_floor, &dl) * tokc;
            l->a[r] += c1 * tokc * dl;
        }
        if (cw) {
            t->term[MU_OBJ_WGA] += mu_tok_wga(lp, t->o.wga_beta, &dl) * tokc;
            l->a[r] += cw * tokc * dl;
        }
        if (cs) {
            t->term[MU_OBJ_SATIMP] += mu_tok_satimp(lp, t->o.satimp_beta1, t->o.satimp_beta2, &dl) * tokc;
            l->a[r] += cs * tokc * dl;
        }
    }
}

/* Sequence-level forget terms (npo, simnpo, dpo) of forget row b (DPO: its preferred answer
 * is row B + b). */
static void forget_seq_terms(mu_trainer *t, label_rows *l, int b, int B, const mu_train_seq *q,
                             double seqc) {
    int r0 = l->first[b], r1 = l->first[b + 1];
    double s = logp_sum(l, r0, r1), g, c;
    if ((c = t->o.coef[MU_OBJ_NPO])) {
        t->term[MU_OBJ_NPO] += mu_npo_loss(s, q->ref_s, t->o.npo_beta, &g) * seqc;
        add_coef(l, r0, r1, c * seqc * g);
    }
    if ((c = t->o.coef[MU_OBJ_SIMNPO])) {
        t->term[MU_OBJ_SIMNPO] += mu_simnpo_loss(s, r1 - r0, t->o.simnpo_beta, t->o.simnpo_delta, &g) * seqc;
        add_coef(l, r0, r1, c * seqc * g);
    }
    if ((c = t->o.coef[MU_OBJ_DPO])) {
        int w0 = l->first[B + b], w1 = l->first[B + b + 1];
        double gw, w = logp_sum(l, w0, w1);
        t->term[MU_OBJ_DPO] += mu_dpo_loss(w, q->ref_alt_s, s, q->ref_s, t->o.dpo_beta, &gw, &g) * seqc;
        add_coef(l, w0, w1, c * seqc * gw);
        add_coef(l, r0, r1, c * seqc * g);
    }
}

/* The terms that read whole rows of the forget rows' logits (host [first[B], V]): UNDIAL
 * against the reference model's logits of the same rows (ref_logits; NULL: none), ME; their
 * gradient into dl (host, zeroed here). */
static int forget_row_terms(mu_trainer *t, label_rows *l, int B, const float *ref_logits,
                            double tokc, float **dl) {
    size_t n = (size_t)l->R * t->V;
    const float *lg = mu_model_logits(t->m);
    if (!lg) return -1;
    *dl = zeroed_dlogits(t, n ? n : 1);
    double c = t->o.coef[MU_OBJ_UNDIAL], cm = t->o.coef[MU_OBJ_ME];
    if (ref_logits)
        t->term[MU_OBJ_UNDIAL] += mu_obj_undial(lg, l->tgt, l->first[B], t->V, ref_logits,
                                                t->o.undial_beta, c * tokc, *dl) * tokc;
    if (cm) t->term[MU_OBJ_ME] += mu_obj_me(lg, l->tgt, l->first[B], t->V, cm * tokc, *dl) * tokc;
    return 0;
}

/* Forget pass of one micro-batch: returns 0 and adds each term's value (scaled 1/accum)
 * into t->term; gradients accumulate into the model. Only the labeled positions get logits;
 * the terms read them through their target log-probs, and the gradient is made on the
 * model's backend (UNDIAL and ME, which need whole rows, on the host). */
static int forget_pass(mu_trainer *t, int64_t pos0, char *err, size_t errlen) {
    int B = t->o.batch, alt = uses_alt(t), rmu = need(t, MU_OBJ_RMU);
    int logit_terms = forget_logit_terms(t);
    mu_train_set *fs = &t->data[MU_DATA_FORGET];
    row_ref *rows = mu_xmalloc((size_t)(2 * B) * sizeof *rows);
    int64_t *sel = mu_xmalloc((size_t)B * sizeof *sel);
    for (int b = 0; b < B; b++) {
        sel[b] = draw(t, MU_DATA_FORGET, pos0 + b);
        mu_train_seq *q = &fs->s[sel[b]];
        rows[b] = (row_ref){q->ids, q->len, q->lab_from};
        if (alt) rows[B + b] = (row_ref){q->alt, q->alt_len, q->alt_lab_from};
    }
    int R = alt ? 2 * B : B;
    int T = build_batch(t, rows, R);
    label_rows *l = find_label_rows(t, R, T);
    mu_batch batch = {R, T, t->ids, t->lens};
    double A = t->o.accum;
    mu_hook fh[1] = {{MU_SITE_RESID_POST, t->o.rmu_layer, 0, hook_capture, &t->cur_rmu}};
    mu_hook bh[1] = {{MU_SITE_RESID_POST, t->o.rmu_layer, 1, hook_inject, &t->d_rmu}};
    mu_fwd_opts fo = label_rows_opts(l, R);
    fo.train = !t->loss_only;
    fo.n_layers = logit_terms ? 0 : t->o.rmu_layer + 1;
    fo.hooks = fh;
    fo.n_hooks = rmu && logit_terms ? 1 : 0;
    int rc = -1;
    float *ref_copy = NULL, *dl = NULL;
    if (need(t, MU_OBJ_UNDIAL)) {   /* reference logits of the forget rows' labeled positions */
        mu_batch rb = {B, T, t->ids, t->lens};
        mu_fwd_opts ro = label_rows_opts(l, B);
        if (mu_model_forward(t->ref, &rb, &ro, err, errlen) < 0) goto out;
        size_t n = (size_t)l->first[B] * t->V;
        ref_copy = mu_xmalloc((n ? n : 1) * sizeof(float));
        memcpy(ref_copy, mu_model_logits(t->ref), n * sizeof(float));
    }
    if (mu_model_forward(t->m, &batch, &fo, err, errlen) < 0) goto out;
    if (logit_terms) {
        if (mu_model_target_logprobs(t->m, l->tgt, l->logp, err, errlen) < 0) goto out;
        int ntok = l->first[B];
        double tokc = 1.0 / (A * (ntok ? ntok : 1)), seqc = 1.0 / (A * B);
        forget_token_terms(t, l, B, tokc);
        for (int b = 0; b < B; b++) forget_seq_terms(t, l, b, B, &fs->s[sel[b]], seqc);
        if ((ref_copy || need(t, MU_OBJ_ME)) && forget_row_terms(t, l, B, ref_copy, tokc, &dl) < 0) {
            snprintf(err, errlen, "forget pass: out of memory for logits");
            goto out;
        }
    }
    if (rmu) {
        const float *h = logit_terms ? t->cur_rmu.buf[t->o.rmu_layer] : mu_model_hidden(t->m);
        float *dh = layer_buf(&t->d_rmu, t->o.rmu_layer, (size_t)R * T * t->D);
        /* only the forget rows (not DPO's alternatives) are steered */
        double loss = masked_mse(h, NULL, t->control, t->lens, B, T, t->D, t->o.coef[MU_OBJ_RMU] / A, dh);
        memset(dh + (size_t)B * T * t->D, 0, (size_t)(R - B) * T * t->D * sizeof(float));
        t->term[MU_OBJ_RMU] += loss / A;
    }
    if (!t->loss_only && (logit_terms ? mu_model_backward_logp(t->m, l->tgt, l->a, dl, bh, rmu ? 1 : 0, err, errlen)
                                      : mu_model_backward(t->m, NULL, bh, rmu ? 1 : 0, err, errlen)))
        goto out;
    rc = 0;
out:
    free(ref_copy);
    free(rows);
    free(sel);
    return rc;
}

/* The retain pass's hooks: capture (model fh, reference rh) and gradient injection (bh) at
 * RMU's layer and at every mlp-l2 layer. Returns their number. */
static int retain_hooks(mu_trainer *t, int rmu, int l2, mu_hook *fh, mu_hook *rh, mu_hook *bh) {
    int nh = 0;
    if (rmu) {
        fh[nh] = (mu_hook){MU_SITE_RESID_POST, t->o.rmu_layer, 0, hook_capture, &t->cur_rmu};
        rh[nh] = (mu_hook){MU_SITE_RESID_POST, t->o.rmu_layer, 0, hook_capture, &t->ref_rmu};
        bh[nh++] = (mu_hook){MU_SITE_RESID_POST, t->o.rmu_layer, 1, hook_inject, &t->d_rmu};
    }
    for (int L = 0; l2 && L < t->NL; L++) {
        if (!t->l2_layers[L]) continue;
        fh[nh] = (mu_hook){MU_SITE_MLP_OUT, L, 0, hook_capture, &t->cur_l2};
        rh[nh] = (mu_hook){MU_SITE_MLP_OUT, L, 0, hook_capture, &t->ref_l2};
        bh[nh++] = (mu_hook){MU_SITE_MLP_OUT, L, 1, hook_inject, &t->d_l2};
    }
    return nh;
}

/* RMU's retain term (model vs reference activations at its layer) and mlp-l2 (at each of
 * its layers): values into t->term, gradients into the injection buffers. */
static void retain_activation_terms(mu_trainer *t, int B, int T, int rmu, int l2) {
    double A = t->o.accum;
    size_t act = (size_t)B * T * t->D;
    if (rmu) {
        int L = t->o.rmu_layer;
        double l = masked_mse(t->cur_rmu.buf[L], t->ref_rmu.buf[L], NULL, t->lens, B, T, t->D,
                              t->o.coef[MU_OBJ_RMU] * t->o.rmu_alpha / A, layer_buf(&t->d_rmu, L, act));
        t->term[MU_OBJ_RMU] += t->o.rmu_alpha * l / A;
    }
    if (!l2) return;
    int nl = 0;
    for (int L = 0; L < t->NL; L++) nl += t->l2_layers[L];
    for (int L = 0; L < t->NL; L++) {
        if (!t->l2_layers[L]) continue;
        double l = masked_mse(t->cur_l2.buf[L], t->ref_l2.buf[L], NULL, t->lens, B, T, t->D,
                              t->o.coef[MU_OBJ_MLP_L2] / (A * nl), layer_buf(&t->d_l2, L, act));
        t->term[MU_OBJ_MLP_L2] += l / (A * nl);
    }
}

/* The next B sequences of data set k from draw position pos0, padded into the trainer's
 * batch (*batch): their labeled rows. */
static label_rows *draw_batch(mu_trainer *t, int k, int64_t pos0, mu_batch *batch) {
    int B = t->o.batch;
    mu_train_set *s = &t->data[k];
    row_ref *rows = mu_xmalloc((size_t)B * sizeof *rows);
    for (int b = 0; b < B; b++) {
        mu_train_seq *q = &s->s[draw(t, k, pos0 + b)];
        rows[b] = (row_ref){q->ids, q->len, q->lab_from};
    }
    int T = build_batch(t, rows, B);
    free(rows);
    *batch = (mu_batch){B, T, t->ids, t->lens};
    return find_label_rows(t, B, T);
}

static int retain_pass(mu_trainer *t, int64_t pos0, char *err, size_t errlen) {
    int B = t->o.batch;
    int ce = need(t, MU_OBJ_RETAIN_CE), kl = need(t, MU_OBJ_RETAIN_KL);
    int rmu = need(t, MU_OBJ_RMU) && t->o.rmu_alpha != 0, l2 = need(t, MU_OBJ_MLP_L2);
    if (!ce && !kl && !rmu && !l2) return 0;
    mu_batch batch;
    label_rows *lr = draw_batch(t, MU_DATA_RETAIN, pos0, &batch);
    double A = t->o.accum;
    int top = -1;                                   /* deepest layer the activation terms need */
    if (rmu) top = t->o.rmu_layer;
    if (l2) for (int L = 0; L < t->NL; L++) if (t->l2_layers[L] && L > top) top = L;
    int logits = ce || kl;
    mu_hook *fh = mu_xmalloc((size_t)(t->NL + 1) * 3 * sizeof *fh), *rh = fh + t->NL + 1, *bh = rh + t->NL + 1;
    int nh = retain_hooks(t, rmu, l2, fh, rh, bh);
    float *ref_lp = NULL;
    int rc = -1;
    size_t nlv = (size_t)lr->R * t->V;
    if (kl || rmu || l2) {
        mu_fwd_opts ro = label_rows_opts(lr, B);
        ro.n_layers = kl ? 0 : top + 1;
        ro.hooks = rh;
        ro.n_hooks = nh;
        if (mu_model_forward(t->ref, &batch, &ro, err, errlen) < 0) goto out;
        if (kl) {      /* reference log-probs [R, V] of the labeled rows */
            ref_lp = mu_xmalloc((nlv ? nlv : 1) * sizeof(float));
            mu_ref_logp_rows(mu_model_logits(t->ref), lr->tgt, lr->R, t->V, ref_lp);
        }
    }
    mu_fwd_opts fo = label_rows_opts(lr, B);
    fo.train = !t->loss_only;
    fo.n_layers = logits ? 0 : top + 1;
    fo.hooks = fh;
    fo.n_hooks = nh;
    if (mu_model_forward(t->m, &batch, &fo, err, errlen) < 0) goto out;
    float *dl = NULL;
    double tokc = 1.0 / (A * (lr->R ? lr->R : 1));
    if (ce) {
        if (mu_model_target_logprobs(t->m, lr->tgt, lr->logp, err, errlen) < 0) goto out;
        term_ce(t, lr, MU_OBJ_RETAIN_CE, tokc);
    }
    if (kl) {          /* whole rows: on the host */
        dl = zeroed_dlogits(t, nlv ? nlv : 1);
        t->term[MU_OBJ_RETAIN_KL] += mu_obj_kl(mu_model_logits(t->m), lr->tgt, lr->R, t->V, ref_lp,
                                               t->o.coef[MU_OBJ_RETAIN_KL] * tokc, dl) * tokc;
    }
    retain_activation_terms(t, B, batch.T, rmu, l2);
    if (!t->loss_only && (logits ? mu_model_backward_logp(t->m, lr->tgt, lr->a, dl, bh, nh, err, errlen)
                                 : mu_model_backward(t->m, NULL, bh, nh, err, errlen)))
        goto out;
    rc = 0;
out:
    free(ref_lp);
    free(fh);
    return rc;
}

static int general_pass(mu_trainer *t, int64_t pos0, char *err, size_t errlen) {
    if (!need(t, MU_OBJ_GENERAL_LM)) return 0;
    mu_batch batch;
    label_rows *lr = draw_batch(t, MU_DATA_GENERAL, pos0, &batch);
    mu_fwd_opts fo = label_rows_opts(lr, batch.B);
    fo.train = !t->loss_only;
    if (mu_model_forward(t->m, &batch, &fo, err, errlen) < 0) return -1;
    if (mu_model_target_logprobs(t->m, lr->tgt, lr->logp, err, errlen) < 0) return -1;
    term_ce(t, lr, MU_OBJ_GENERAL_LM, 1.0 / (t->o.accum * (double)(lr->R ? lr->R : 1)));
    return t->loss_only ? 0 : mu_model_backward_logp(t->m, lr->tgt, lr->a, NULL, NULL, 0, err, errlen);
}

static int uses_forget(const mu_trainer *t) { return forget_logit_terms(t) || need(t, MU_OBJ_RMU); }


/* Data parallelism: every trained gradient, the loss terms and the step's token count
 * summed over the processes (each ran its share of the micro-batches), tensors in order.
 * A device backend's gradients pass through a host array (dist.h sums host memory). */
static void dist_sum_step(mu_trainer *t, int64_t tok0) {
    const mu_backend *be = mu_model_backend(t->m);
    for (int i = 0; i < t->nt; i++) {
        float *g = data_grad(t, i);
        int64_t n = mu_optim_set(t->opt, i)->n;
        if (be->host_memory) {
            t->dist.sum_f32(&t->dist, g, n);
            continue;
        }
        if (n > t->dist_host_n) {
            t->dist_host = mu_xrealloc(t->dist_host, (size_t)n * sizeof(float));
            t->dist_host_n = n;
        }
        be->download(t->dist_host, g, (size_t)n * sizeof(float));
        t->dist.sum_f32(&t->dist, t->dist_host, n);
        be->upload(g, t->dist_host, (size_t)n * sizeof(float));
    }
    double s[MU_OBJ_COUNT + 1];
    memcpy(s, t->term, sizeof t->term);
    s[MU_OBJ_COUNT] = (double)(t->tokens - tok0);
    t->dist.sum_f64(&t->dist, s, MU_OBJ_COUNT + 1);
    memcpy(t->term, s, sizeof t->term);
    t->tokens = tok0 + (int64_t)s[MU_OBJ_COUNT];
}

/* Zeroes gradients and runs every pass of every micro-batch of `step` (with several
 * processes, micro-batches rank, rank + world, ..., then the sums); returns the total
 * weighted loss in *loss. */
static int step_grads(mu_trainer *t, int64_t step, double *loss, char *err, size_t errlen) {
    mu_model_zero_grad(t->m);
    memset(t->term, 0, sizeof t->term);
    int64_t tok0 = t->tokens;
    for (int a = t->dist.rank; a < t->o.accum; a += t->dist.world) {
        int64_t pos0 = (step * t->o.accum + a) * t->o.batch;
        if (uses_forget(t) && forget_pass(t, pos0, err, errlen) < 0) return -1;
        if (retain_pass(t, pos0, err, errlen) < 0) return -1;
        if (general_pass(t, pos0, err, errlen) < 0) return -1;
    }
    if (t->dist.world > 1) dist_sum_step(t, tok0);
    double total = 0;
    for (int i = 0; i < MU_OBJ_COUNT; i++) total += t->o.coef[i] * t->term[i];
    *loss = total;
    return 0;
}

static int prepare(mu_trainer *t, char *err, size_t errlen);

double mu_trainer_loss_and_grad(mu_trainer *t, int64_t step, char *err, size_t errlen) {
    double loss;
    if (prepare(t, err, errlen) < 0) return NAN;
    if (step_grads(t, step, &loss, err, errlen) < 0) return NAN;
    wmask_grads(t);
    return loss + wmask_penalty(t, NULL);
}

/* ---- reference caches ---- */

/* Data parallelism: each process computed the reference log-probs of sequences rank,
 * rank + world, ...; every process gets all of them. */
static void dist_share_ref(mu_trainer *t, mu_train_set *fs) {
    double *v = mu_xcalloc((size_t)(2 * fs->n + 1), sizeof *v);
    for (int i = t->dist.rank; i < fs->n; i += t->dist.world) {
        v[2 * i] = fs->s[i].ref_s;
        v[2 * i + 1] = fs->s[i].ref_alt_s;
    }
    t->dist.sum_f64(&t->dist, v, 2 * (int64_t)fs->n);
    for (int i = 0; i < fs->n; i++) {
        fs->s[i].ref_s = v[2 * i];
        fs->s[i].ref_alt_s = v[2 * i + 1];
    }
    free(v);
}

/* Sequence log-probs of the forget answers (and DPO alternatives) under the reference
 * (the ref model, or the starting model); with several processes, each its share. */
static int cache_ref_logprobs(mu_trainer *t, char *err, size_t errlen) {
    if (!need(t, MU_OBJ_NPO) && !need(t, MU_OBJ_DPO)) return 0;
    mu_model *r = t->ref ? t->ref : t->m;
    mu_train_set *fs = &t->data[MU_DATA_FORGET];
    for (int i = t->dist.rank; i < fs->n; i += t->dist.world) {
        mu_train_seq *q = &fs->s[i];
        for (int alt = 0; alt < 2; alt++) {
            if (alt && !q->alt) continue;
            row_ref row = alt ? (row_ref){q->alt, q->alt_len, q->alt_lab_from} : (row_ref){q->ids, q->len, q->lab_from};
            int64_t tok = t->tokens;
            int T = build_batch(t, &row, 1);
            t->tokens = tok;
            mu_batch b = {1, T, t->ids, t->lens};
            label_rows *l = find_label_rows(t, 1, T);
            mu_fwd_opts o = label_rows_opts(l, 1);
            if (mu_model_forward(r, &b, &o, err, errlen) < 0 ||
                mu_model_target_logprobs(r, l->tgt, l->logp, err, errlen) < 0)
                return -1;
            double s = logp_sum(l, 0, l->R);
            if (alt) q->ref_alt_s = s; else q->ref_s = s;
        }
    }
    if (t->dist.world > 1) dist_share_ref(t, fs);
    return 0;
}

static int retain_needs_ref(const mu_trainer *t) {
    return need(t, MU_OBJ_RETAIN_KL) || need(t, MU_OBJ_MLP_L2) || (need(t, MU_OBJ_RMU) && t->o.rmu_alpha != 0);
}

/* Any sequence of set holds a soft-prompt slot (an id below 0). */
static int has_soft_slots(const mu_train_set *set) {
    for (int i = 0; i < set->n; i++)
        for (int k = 0; k < set->s[i].len; k++)
            if (set->s[i].ids[k] < 0) return 1;
    return 0;
}

static int check_data(mu_trainer *t, char *err, size_t errlen) {
    if (uses_forget(t) && !t->data[MU_DATA_FORGET].n) {
        snprintf(err, errlen, "the objectives need --forget data");
        return -1;
    }
    int retain = need(t, MU_OBJ_RETAIN_CE) || retain_needs_ref(t);
    if (retain && !t->data[MU_DATA_RETAIN].n) {
        snprintf(err, errlen, "the objectives need --retain data (retain-ce, retain-kl, mlp-l2, rmu)");
        return -1;
    }
    if (need(t, MU_OBJ_GENERAL_LM) && !t->data[MU_DATA_GENERAL].n) {
        snprintf(err, errlen, "general-lm needs --general text");
        return -1;
    }
    if (!t->ref && (need(t, MU_OBJ_UNDIAL) || retain_needs_ref(t))) {
        snprintf(err, errlen, "undial, retain-kl, rmu and mlp-l2 need a reference model");
        return -1;
    }
    if (t->o.soft_tokens > 0 && !has_soft_slots(&t->data[MU_DATA_FORGET])) {
        snprintf(err, errlen, "%s: no soft-prompt slots in its prompts for the soft prompt to train on "
                 "(mu-tokenize --soft-tokens %d)", t->data[MU_DATA_FORGET].path ? t->data[MU_DATA_FORGET].path
                 : "--forget", t->o.soft_tokens);
        return -1;
    }
    if (uses_alt(t))
        for (int i = 0; i < t->data[MU_DATA_FORGET].n; i++)
            if (!t->data[MU_DATA_FORGET].s[i].alt) {
                snprintf(err, errlen, "%s: record %d: %s needs a preferred answer (a second target, or "
                         "--dpo-alt)", t->data[MU_DATA_FORGET].path, i, need(t, MU_OBJ_DPO) ? "dpo" : "idk");
                return -1;
            }
    return 0;
}

/* ---- evaluation ---- */

typedef struct { double nll, acc, prob; } eval_result;

/* 1 when y is the first maximum of z [V] (greedy decoding would emit it). */
static int argmax_is(const float *z, int V, int y) {
    int best = 0;
    for (int j = 1; j < V; j++) if (z[j] > z[best]) best = j;
    return best == y;
}

static int run_eval(mu_trainer *t, mu_train_set *set, eval_result *res, char *err, size_t errlen) {
    int B = t->o.batch;
    double nll = 0, correct = 0, prob = 0;
    int64_t ntok = 0, tok_saved = t->tokens;
    row_ref *rows = mu_xmalloc((size_t)B * sizeof *rows);
    for (int i0 = t->dist.rank * B; i0 < set->n; i0 += t->dist.world * B) {
        int nb = set->n - i0 < B ? set->n - i0 : B;
        for (int b = 0; b < nb; b++) {
            mu_train_seq *q = &set->s[i0 + b];
            rows[b] = (row_ref){q->ids, q->len, q->lab_from};
        }
        int T = build_batch(t, rows, nb);
        mu_batch batch = {nb, T, t->ids, t->lens};
        label_rows *l = find_label_rows(t, nb, T);
        mu_fwd_opts o = label_rows_opts(l, nb);
        if (mu_model_forward(t->m, &batch, &o, err, errlen) < 0 ||
            mu_model_target_logprobs(t->m, l->tgt, l->logp, err, errlen) < 0) {
            free(rows);
            return -1;
        }
        const float *lg = mu_model_logits(t->m);
        for (int b = 0; b < nb; b++) {
            double s = logp_sum(l, l->first[b], l->first[b + 1]);
            nll -= s;
            prob += exp(s);
        }
        ntok += l->R;
        for (int r = 0; r < l->R; r++) correct += argmax_is(lg + (size_t)r * t->V, t->V, l->tgt[r]);
    }
    free(rows);
    t->tokens = tok_saved;
    if (t->dist.world > 1) {   /* each process evaluated batches rank, rank + world, ... */
        double s[4] = {nll, correct, prob, (double)ntok};
        t->dist.sum_f64(&t->dist, s, 4);
        nll = s[0], correct = s[1], prob = s[2], ntok = (int64_t)s[3];
    }
    res->nll = ntok ? nll / ntok : 0;
    res->acc = ntok ? correct / ntok : 0;
    res->prob = set->n ? prob / set->n : 0;
    return 0;
}

static double metric_of(const eval_result *r, const char *metric) {
    if (!strcmp(metric, "nll")) return r->nll;
    if (!strcmp(metric, "acc")) return r->acc;
    if (!strcmp(metric, "prob")) return r->prob;
    return NAN;
}

double mu_trainer_eval_metric(mu_trainer *t, const char *name_metric) {
    const char *dot = strrchr(name_metric, '.');
    if (!dot) return NAN;
    char err[256];
    for (int i = 0; i < t->n_ev; i++) {
        if (strlen(t->ev[i].name) != (size_t)(dot - name_metric) ||
            strncmp(t->ev[i].name, name_metric, (size_t)(dot - name_metric))) continue;
        eval_result r;
        if (run_eval(t, &t->ev[i].set, &r, err, sizeof err) < 0) return NAN;
        return metric_of(&r, dot + 1);
    }
    return NAN;
}

/* ---- log ---- */

static void log_push(mu_trainer *t, msgpack_sbuffer *sb) {
    if (t->nlog == t->log_cap) {
        t->log_cap = t->log_cap ? 2 * t->log_cap : 64;
        t->log = mu_xrealloc(t->log, (size_t)t->log_cap * sizeof *t->log);
    }
    t->log[t->nlog].buf = sb->data;
    t->log[t->nlog].len = sb->size;
    t->nlog++;
    sb->data = NULL;
    sb->size = sb->alloc = 0;
}

static void log_train(mu_trainer *t, double loss, double lr, double norm, double tps) {
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    int nterms = 0;
    for (int i = 0; i < MU_OBJ_COUNT; i++) nterms += need(t, (mu_obj_id)i);
    msgpack_pack_map(&pk, 7 + (t->o.weight_mask != 0) + (t->gcg_ids != NULL));
    mu_pack_kv_int(&pk, "step", t->step);
    mu_pack_kv_f64(&pk, "loss", loss);
    if (t->o.weight_mask) mu_pack_kv_f64(&pk, "weight_mask_penalty", t->step_penalty);
    mu_pack_str(&pk, "terms");
    msgpack_pack_map(&pk, (size_t)nterms);
    for (int i = 0; i < MU_OBJ_COUNT; i++)
        if (need(t, (mu_obj_id)i)) mu_pack_kv_f64(&pk, OBJ_NAMES[i], t->term[i]);
    mu_pack_kv_f64(&pk, "lr", lr);
    mu_pack_kv_f64(&pk, "grad_norm", norm);
    mu_pack_kv_f64(&pk, "tokens_per_s", tps);
    mu_pack_kv_int(&pk, "tokens", t->tokens);
    if (t->gcg_ids) {   /* the swap kept: slot -1 when no candidate was tried */
        mu_pack_str(&pk, "gcg");
        msgpack_pack_map(&pk, 5);
        mu_pack_kv_int(&pk, "slot", t->gcg_last.slot);
        mu_pack_kv_int(&pk, "from", t->gcg_last.from);
        mu_pack_kv_int(&pk, "to", t->gcg_last.to);
        mu_pack_kv_f64(&pk, "loss", t->gcg_last.loss);
        mu_pack_kv_int(&pk, "tried", t->gcg_last.tried);
    }
    log_push(t, &sb);
}

void mu_trainer_write_log(mu_trainer *t, const char *path, const char *const *input_roles,
                          const char *const *input_paths, int n_inputs) {
    mu_writer *w = mu_writer_open(path, "log");
    for (int i = 0; i < n_inputs; i++) mu_writer_add_input(w, input_roles[i], input_paths[i]);
    msgpack_packer *mp = mu_writer_meta(w, "objectives");
    int nterms = 0;
    for (int i = 0; i < MU_OBJ_COUNT; i++) nterms += need(t, (mu_obj_id)i);
    msgpack_pack_map(mp, (size_t)nterms);
    for (int i = 0; i < MU_OBJ_COUNT; i++)
        if (need(t, (mu_obj_id)i)) mu_pack_kv_f64(mp, OBJ_NAMES[i], t->o.coef[i]);
    msgpack_pack_int64(mu_writer_meta(w, "steps"), t->o.steps);
    msgpack_pack_uint64(mu_writer_meta(w, "seed"), t->o.seed);
    mu_pack_json(mu_writer_meta(w, "options"), t->info);
    for (int i = 0; i < t->nlog; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_bin_body(pk, t->log[i].buf, t->log[i].len);   /* a pre-packed map */
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

/* ---- keep-best ---- */

static int parse_keep_best(const char *spec, char *name, size_t nlen, char *metric, size_t mlen,
                           int *maximize) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *colon = strchr(buf, ':');
    if (colon) *colon = 0;
    char *dot = strrchr(buf, '.');
    if (!dot || dot == buf) return -1;
    *dot = 0;
    if (strlen(buf) >= nlen || strlen(dot + 1) >= mlen) return -1;
    memcpy(name, buf, strlen(buf) + 1);
    memcpy(metric, dot + 1, strlen(dot + 1) + 1);
    if (strcmp(metric, "nll") && strcmp(metric, "acc") && strcmp(metric, "prob")) return -1;
    *maximize = strcmp(metric, "nll") != 0;
    if (colon) {
        if (!strcmp(colon + 1, "min")) *maximize = 0;
        else if (!strcmp(colon + 1, "max")) *maximize = 1;
        else return -1;
    }
    return 0;
}

/* Copies the trained elements of tensor i into vals[set->n] (or back with dir = 1; the
 * model is then told the tensor changed). */
static void gather_trained(mu_trainer *t, int i, float *vals, int dir) {
    if (dir) mu_trainer_set_trained(t, i, vals);
    else mu_trainer_get_trained(t, i, vals);
}

/* After the optimizer changed the trained tensors in place. */
static void params_changed(mu_trainer *t) {
    for (int i = 0; i < t->nt; i++) trained_changed(t, i);
}

void mu_trainer_set_trained(mu_trainer *t, int i, const float *host) {
    mu_optim_set_trained(t->opt, i, host);
    trained_changed(t, i);
}

void mu_trainer_get_trained(mu_trainer *t, int i, float *host) { mu_optim_get_trained(t->opt, i, host); }

static void snapshot_best(mu_trainer *t) {
    if (!t->best_vals) t->best_vals = mu_xcalloc((size_t)t->nt, sizeof *t->best_vals);
    for (int i = 0; i < t->nt; i++) {
        if (!t->best_vals[i])
            t->best_vals[i] = mu_xmalloc((size_t)(mu_optim_set(t->opt, i)->n + 1) * sizeof(float));
        gather_trained(t, i, t->best_vals[i], 0);
    }
}

/* Evaluates every set, logs, and updates the best snapshot. */
static int evaluate(mu_trainer *t, char *err, size_t errlen) {
    if (!t->n_ev) return 0;
    char kb_name[128] = "", kb_metric[16] = "";
    int maximize = 0;
    if (t->o.keep_best) parse_keep_best(t->o.keep_best, kb_name, sizeof kb_name, kb_metric, sizeof kb_metric, &maximize);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mu_pack_kv_int(&pk, "step", t->step);
    mu_pack_str(&pk, "eval");
    msgpack_pack_map(&pk, (size_t)t->n_ev);
    for (int i = 0; i < t->n_ev; i++) {
        eval_result r;
        if (run_eval(t, &t->ev[i].set, &r, err, errlen) < 0) { msgpack_sbuffer_destroy(&sb); return -1; }
        mu_pack_str(&pk, t->ev[i].name);
        msgpack_pack_map(&pk, 3);
        mu_pack_kv_f64(&pk, "nll", r.nll);
        mu_pack_kv_f64(&pk, "acc", r.acc);
        mu_pack_kv_f64(&pk, "prob", r.prob);
        if (t->o.keep_best && !strcmp(t->ev[i].name, kb_name)) {
            double v = metric_of(&r, kb_metric);
            if (!t->has_best || (maximize ? v > t->best : v < t->best)) {
                t->best = v;
                t->has_best = 1;
                snapshot_best(t);
            }
        }
    }
    log_push(t, &sb);
    return 0;
}

/* ---- checkpoints ---- */

static void pack_f32(msgpack_packer *pk, const char *key, const float *v, int64_t n) {
    int64_t shape[1] = {n};
    mu_pack_kv_tensor(pk, key, MU_F32, 1, shape, v);
}

static void save_checkpoint(mu_trainer *t) {
    if (t->dist.rank != 0) return;   /* every process holds the same state */
    mu_writer *w = mu_writer_open(t->o.checkpoint, "train-state");
    msgpack_pack_int64(mu_writer_meta(w, "step"), t->step);
    msgpack_pack_uint64(mu_writer_meta(w, "seed"), t->o.seed);
    msgpack_pack_int64(mu_writer_meta(w, "tensors"), t->nt);
    mu_pack_str(mu_writer_meta(w, "options"), t->options);
    msgpack_pack_int(mu_writer_meta(w, "has_best"), t->has_best);
    msgpack_pack_double(mu_writer_meta(w, "best"), t->has_best ? t->best : 0);
    float *vals = NULL, *mom = NULL;
    for (int i = 0; i < t->nt; i++) {
        int64_t n = mu_optim_set(t->opt, i)->n;
        vals = mu_xrealloc(vals, (size_t)(n + 1) * sizeof(float));
        mom = mu_xrealloc(mom, (size_t)(n + 1) * sizeof(float));
        gather_trained(t, i, vals, 0);
        int has_m = mu_optim_has_moment(t->opt, i, 0), has_v = mu_optim_has_moment(t->opt, i, 1);
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 2 + has_m + has_v + (t->has_best != 0));
        mu_pack_kv_str(pk, "tensor", mu_optim_name(t->opt, i));
        pack_f32(pk, "w", vals, n);
        for (int which = 0; which < 2; which++) {
            if (!mu_optim_has_moment(t->opt, i, which)) continue;
            mu_optim_get_moment(t->opt, i, which, mom);
            pack_f32(pk, which ? "v" : "m", mom, n);
        }
        if (t->has_best) pack_f32(pk, "best", t->best_vals[i], n);
        mu_writer_end_record(w);
    }
    free(vals);
    free(mom);
    for (int i = 0; i < t->nlog; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 1);
        mu_pack_str(pk, "log");
        msgpack_pack_bin(pk, t->log[i].len);
        msgpack_pack_bin_body(pk, t->log[i].buf, t->log[i].len);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

static int load_f32(const msgpack_object *rec, const char *key, float *dst, int64_t n, char *msg, size_t len) {
    mu_tensor_view tv;
    char e[160];
    const msgpack_object *o = mu_obj_get(rec, key);
    if (!o || mu_obj_tensor(o, &tv, e, sizeof e) < 0 || tv.dtype != MU_F32 || tv.ndim != 1 || tv.shape[0] != n) {
        snprintf(msg, len, "\"%s\" must be an f32 tensor of %lld values", key, (long long)n);
        return -1;
    }
    memcpy(dst, tv.data, (size_t)n * sizeof(float));
    return 0;
}

static int load_checkpoint(mu_trainer *t, const char *path, char *err, size_t errlen) {
    mu_reader *r = mu_reader_open(path, "train-state", err, errlen);
    if (!r) return -1;
    const msgpack_object *meta = mu_obj_get(mu_reader_header(r), "meta"), *rec;
    int64_t step, nt, has_best = 0;
    double best = 0;
    char msg[300] = "";
    float *vals = NULL;
    if (mu_obj_int(mu_obj_get(meta, "step"), &step) < 0 || step < 0 || step > t->o.steps ||
        mu_obj_int(mu_obj_get(meta, "tensors"), &nt) < 0 || nt != t->nt) {
        snprintf(err, errlen, "%s: checkpoint does not match this run (step or trained tensors)", path);
        goto fail_nomsg;
    }
    if (!mu_obj_streq(mu_obj_get(meta, "options"), t->options)) {
        snprintf(err, errlen, "%s: checkpoint was written with other training options "
                 "(objective, hyperparameters, optimizer, batch or seed)", path);
        goto fail_nomsg;
    }
    mu_obj_int(mu_obj_get(meta, "has_best"), &has_best);
    mu_obj_f64(mu_obj_get(meta, "best"), &best);
    int i = 0, st;
    for (int k = 0; k < t->nlog; k++) free(t->log[k].buf);
    t->nlog = 0;
    if (has_best) snapshot_best(t);
    while ((st = mu_reader_next(r, &rec)) == 1) {
        const msgpack_object *lg = mu_obj_get(rec, "log");
        if (lg) {
            if (lg->type != MSGPACK_OBJECT_BIN) { snprintf(msg, sizeof msg, "\"log\" must be bin"); goto fail; }
            msgpack_sbuffer sb;
            msgpack_sbuffer_init(&sb);
            msgpack_sbuffer_write(&sb, lg->via.bin.ptr, lg->via.bin.size);
            log_push(t, &sb);
            continue;
        }
        if (i >= t->nt || !mu_obj_streq(mu_obj_get(rec, "tensor"), mu_optim_name(t->opt, i))) {
            snprintf(msg, sizeof msg, "expected tensor %s", i < t->nt ? mu_optim_name(t->opt, i) : "(none)");
            goto fail;
        }
        int64_t n = mu_optim_set(t->opt, i)->n;
        vals = mu_xrealloc(vals, (size_t)(n + 1) * sizeof(float));
        if (load_f32(rec, "w", vals, n, msg, sizeof msg) < 0) goto fail;
        gather_trained(t, i, vals, 1);
        for (int which = 0; which < 2; which++) {
            if (!mu_optim_has_moment(t->opt, i, which)) continue;
            if (load_f32(rec, which ? "v" : "m", vals, n, msg, sizeof msg) < 0) goto fail;
            mu_optim_set_moment(t->opt, i, which, vals);
        }
        if (has_best && load_f32(rec, "best", t->best_vals[i], n, msg, sizeof msg) < 0) goto fail;
        i++;
    }
    if (st < 0) { snprintf(err, errlen, "%s", mu_reader_error(r)); goto fail_nomsg; }
    if (i != t->nt) { snprintf(err, errlen, "%s: checkpoint holds %d of %d tensors", path, i, t->nt); goto fail_nomsg; }
    mu_reader_close(r);
    free(vals);
    t->step = step;
    mu_optim_set_step(t->opt, step);
    t->has_best = (int)has_best;
    t->best = best;
    return 0;
fail:
    snprintf(err, errlen, "%s: record %ld: %s", path, mu_reader_record_index(r), msg);
fail_nomsg:
    free(vals);
    mu_reader_close(r);
    return -1;
}

/* ---- the loop ---- */

static const char *first_bad_term(const mu_trainer *t) {
    for (int i = 0; i < MU_OBJ_COUNT; i++)
        if (need(t, (mu_obj_id)i) && !isfinite(t->term[i])) return OBJ_NAMES[i];
    return "total";
}

static int prepare(mu_trainer *t, char *err, size_t errlen) {
    if (t->prepared) return 0;
    if (check_data(t, err, errlen) < 0 || cache_ref_logprobs(t, err, errlen) < 0) return -1;
    t->prepared = 1;
    return 0;
}

/* ---- greedy coordinate gradient (opts.gcg) ---- */

const int32_t *mu_trainer_gcg_ids(const mu_trainer *t) { return t->gcg_ids; }

/* The slots' tokens again from their vectors (embedding rows: each its own nearest), after
 * a checkpoint or keep_best set them. */
static int gcg_ids_from_prompt(mu_trainer *t) {
    const mu_soft_prompt *sp = mu_model_soft_prompt(t->m);
    float *P = mu_xmalloc((size_t)sp->n * t->D * sizeof *P);
    mu_model_backend(t->m)->download(P, sp->P, (size_t)sp->n * t->D * sizeof *P);
    int rc = mu_soft_nearest_tokens(t->m, P, sp->n, t->gcg_ids);
    free(P);
    return rc;
}

/* Slot j of the model's soft prompt (and of the trainer's tokens) to token v. */
static int gcg_put(mu_trainer *t, int j, int32_t v, float *row) {
    const mu_soft_prompt *sp = mu_model_soft_prompt(t->m);
    if (mu_model_embedding_rows(t->m, &v, 1, row)) return -1;
    mu_model_backend(t->m)->upload(sp->P + (size_t)j * t->D, row, (size_t)t->D * sizeof *row);
    return 0;
}

/* The swaps to try: every (slot, token) of the slots' top lists when there are at most
 * gcg_candidates of them, else gcg_candidates drawn uniformly from them (seeded by the seed
 * and the step: a resumed run draws the same). Into slot/tok [gcg_candidates]; returns how many. */
static int gcg_candidates(const mu_trainer *t, const int32_t *top, const int *have, int k, int *slot,
                          int32_t *tok) {
    int n = t->o.soft_tokens, C = t->o.gcg_candidates, c = 0;
    int64_t total = 0;
    for (int j = 0; j < n; j++) total += have[j];
    if (total <= C) {
        for (int j = 0; j < n; j++)
            for (int r = 0; r < have[j]; r++, c++) { slot[c] = j; tok[c] = top[(size_t)j * k + r]; }
        return c;
    }
    mu_rng rng;
    mu_rng_seed2(&rng, t->o.seed ^ UINT64_C(0x6c6c), (uint64_t)t->step);
    for (; c < C; c++) {
        int64_t r = (int64_t)(mu_rng_uniform(&rng) * (double)total) % total;
        int j = 0;
        while (r >= have[j]) r -= have[j++];
        slot[c] = j;
        tok[c] = top[(size_t)j * k + r];
    }
    return c;
}

/* One GCG step: the gradient step_grads left at the prompt held ranks every slot's tokens;
 * each candidate swap is tried on the step's data (forward only; a swap to the token
 * already there is not); the best loss wins (the first tried on a tie) and is kept, better
 * than the prompt held or not, as Zou et al.'s algorithm does. *norm: the gradient's L2
 * norm. The step's loss terms stay the held prompt's; t->gcg_last says what changed. */
static int gcg_step(mu_trainer *t, double *norm, char *err, size_t errlen) {
    const mu_soft_prompt *sp = mu_model_soft_prompt(t->m);
    int n = sp->n, D = t->D, k = t->o.gcg_topk < t->V ? t->o.gcg_topk : t->V, C = t->o.gcg_candidates;
    float *g = mu_xmalloc((size_t)n * D * sizeof *g), *score = mu_xmalloc((size_t)n * k * sizeof *score);
    float *row = mu_xmalloc((size_t)D * sizeof *row);
    int32_t *top = mu_xmalloc((size_t)n * k * sizeof *top), *tok = mu_xmalloc((size_t)C * sizeof *tok);
    int *have = mu_xmalloc((size_t)n * sizeof *have), *slot = mu_xmalloc((size_t)C * sizeof *slot);
    double terms[MU_OBJ_COUNT], best = INFINITY, sq = 0;
    int rc = -1, won = -1, tried = 0;
    int64_t tokens = t->tokens;
    memcpy(terms, t->term, sizeof terms);
    mu_model_backend(t->m)->download(g, sp->g, (size_t)n * D * sizeof *g);
    for (size_t i = 0; i < (size_t)n * D; i++) sq += (double)g[i] * g[i];
    *norm = sqrt(sq);
    if (mu_soft_gcg_top_tokens(t->m, g, n, t->o.gcg_allowed, k, top, score, have)) goto oom;
    int nc = gcg_candidates(t, top, have, k, slot, tok);
    t->loss_only = 1;
    for (int c = 0; c < nc; c++) {
        int j = slot[c];
        double loss;
        if (tok[c] == t->gcg_ids[j]) continue;
        if (gcg_put(t, j, tok[c], row)) goto oom;
        int bad = step_grads(t, t->step, &loss, err, errlen) < 0;
        if (gcg_put(t, j, t->gcg_ids[j], row)) goto oom;
        if (bad) goto out;
        tried++;
        if (loss < best) { best = loss; won = c; }
    }
    t->gcg_last.slot = won < 0 ? -1 : slot[won];
    t->gcg_last.from = won < 0 ? -1 : t->gcg_ids[slot[won]];
    t->gcg_last.to = won < 0 ? -1 : tok[won];
    t->gcg_last.tried = tried;
    t->gcg_last.loss = best;
    if (won >= 0) {
        t->gcg_ids[slot[won]] = tok[won];
        if (gcg_put(t, slot[won], tok[won], row)) goto oom;
    }
    rc = 0;
    goto out;
oom:
    snprintf(err, errlen, "GCG step %lld: out of memory", (long long)t->step + 1);
out:
    t->loss_only = 0;
    t->tokens = tokens;
    memcpy(t->term, terms, sizeof terms);
    free(g); free(score); free(row); free(top); free(tok); free(have); free(slot);
    return rc;
}

int mu_trainer_run(mu_trainer *t, const char *resume_path, char *err, size_t errlen) {
    if (prepare(t, err, errlen) < 0) return -1;
    if (t->o.keep_best) {
        char n[128], m[16];
        int mx, found = 0;
        if (parse_keep_best(t->o.keep_best, n, sizeof n, m, sizeof m, &mx) < 0) {
            snprintf(err, errlen, "--keep-best '%s': expected NAME.METRIC[:min|:max], METRIC nll, acc or prob",
                     t->o.keep_best);
            return -1;
        }
        for (int i = 0; i < t->n_ev; i++) found |= !strcmp(t->ev[i].name, n);
        if (!found) { snprintf(err, errlen, "--keep-best: no --eval set named '%s'", n); return -1; }
    }
    if (t->o.checkpoint_every > 0 && !t->o.checkpoint) {
        snprintf(err, errlen, "checkpoints need a checkpoint path");
        return -1;
    }
    if (resume_path && load_checkpoint(t, resume_path, err, errlen) < 0) return -1;
    if (resume_path && t->gcg_ids && gcg_ids_from_prompt(t)) {
        snprintf(err, errlen, "%s: out of memory for the embedding rows", resume_path);
        return -1;
    }
    if (t->step == 0 && evaluate(t, err, errlen) < 0) return -1;
    int64_t last_ckpt = resume_path ? t->step : -1;
    while (t->step < t->o.steps) {
        double t0 = mu_now(), loss, norm, lr;
        int64_t tok0 = t->tokens;
        if (step_grads(t, t->step, &loss, err, errlen) < 0) return -1;
        if (!isfinite(loss)) {
            char where[200] = "no checkpoint was written";
            if (last_ckpt >= 0) snprintf(where, sizeof where, "last good checkpoint: %s (step %lld)",
                                         t->o.checkpoint ? t->o.checkpoint : resume_path, (long long)last_ckpt);
            snprintf(err, errlen, "step %lld: loss is %s (term %s); %s", (long long)t->step + 1,
                     isnan(loss) ? "NaN" : "infinite", first_bad_term(t), where);
            return -1;
        }
        wmask_grads(t);
        t->step_penalty = wmask_penalty(t, NULL);   /* at the mask this step's forward used */
        loss += t->step_penalty;
        if (t->gcg_ids) {
            lr = 0;
            if (gcg_step(t, &norm, err, errlen) < 0) return -1;
        } else {
            mu_optim_step(t->opt, &norm, &lr);
        }
        if (!isfinite(norm)) {
            snprintf(err, errlen, "step %lld: gradient norm is not finite", (long long)t->step + 1);
            return -1;
        }
        params_changed(t);
        t->step++;
        t->last_loss = loss;
        double dt = mu_now() - t0;
        log_train(t, loss, lr, norm, dt > 0 ? (double)(t->tokens - tok0) / dt : 0);
        if ((t->o.eval_every > 0 && t->step % t->o.eval_every == 0) || t->step == t->o.steps)
            if (evaluate(t, err, errlen) < 0) return -1;
        if (t->o.checkpoint_every > 0 && t->step % t->o.checkpoint_every == 0) {
            save_checkpoint(t);
            last_ckpt = t->step;
        }
        if (t->o.progress) mu_progress("train", (uint64_t)t->step, (uint64_t)t->o.steps);
    }
    if (t->o.progress) mu_progress_done();
    if (t->o.keep_best && t->has_best) {
        for (int i = 0; i < t->nt; i++) gather_trained(t, i, t->best_vals[i], 1);
        if (t->gcg_ids && gcg_ids_from_prompt(t)) {
            snprintf(err, errlen, "--keep-best: out of memory for the embedding rows");
            return -1;
        }
    }
    return 0;
}

/* ---- outputs ---- */

/* The new values of trained tensor i as a delta entry. */
/* A delta holds the checkpoint's values, in its convention: the engine's minus the stored
 * offset (Gemma's norms). */
static void to_stored(const mu_model *m, const mu_param *p, float *vals, int64_t n) {
    float off = mu_arch_stored_offset(mu_model_config(m), &p->info);
    for (int64_t e = 0; off != 0 && e < n; e++) vals[e] -= off;
}

/* The flat indices and weights (engine convention) of trained tensor i's trained elements,
 * with weight masking only those whose mask is below 1; returns how many. idx, vals
 * [set->n]. */
static int64_t trained_weights(mu_trainer *t, int i, int64_t *idx, float *vals) {
    const mu_idxset *s = mu_optim_set(t->opt, i);
    mu_idxset_to_list(s, idx);
    if (!t->o.weight_mask) {
        mu_optim_get_trained(t->opt, i, vals);
        return s->n;
    }
    const mu_backend *be = mu_model_backend(t->m);
    mu_param *p = mu_model_param(t->m, t->pidx[i]);
    float *m = mu_xmalloc((size_t)(s->n + 1) * sizeof(float));
    be->download(vals, p->packed ? p->wp : p->w, (size_t)s->n * sizeof(float));   /* w0 * m, [n] */
    be->download(m, t->wm[i].m, (size_t)s->n * sizeof(float));
    int64_t k = 0;
    for (int64_t j = 0; j < s->n; j++)
        if (m[j] < 1) { idx[k] = idx[j]; vals[k] = vals[j]; k++; }
    free(m);
    return k;
}

/* Entry i's adapter as a low-rank delta entry: NAME::lora_A, ::lora_B (its factors in the
 * stored layout) and ::lora_scale (times delta_scale). */
static void add_lowrank_entry(mu_st_writer *w, mu_trainer *t, int i) {
    const mu_param *p = mu_model_param(t->m, t->pidx[i]);
    const mu_lora *a = mu_model_lora(t->m, t->pidx[i]);
    int64_t rows = p->info.shape[0], cols = p->info.shape[1];
    int64_t ash[2] = {a->r, cols}, bsh[2] = {rows, a->r}, ssh[1] = {1};
    float *As = mu_xmalloc((size_t)(a->r * cols) * sizeof *As), *Bs = mu_xmalloc((size_t)(rows * a->r) * sizeof *Bs);
    if (mu_model_lora_factors(t->m, t->pidx[i], Bs, As)) mu_die("out of memory for the LoRA factors of %s", p->info.name);
    char name[200];
    snprintf(name, sizeof name, "%s%s", p->info.name, MU_DELTA_LORA_A_SUFFIX);
    mu_st_writer_add_copy(w, name, MU_F32, 2, ash, As);
    snprintf(name, sizeof name, "%s%s", p->info.name, MU_DELTA_LORA_B_SUFFIX);
    mu_st_writer_add_copy(w, name, MU_F32, 2, bsh, Bs);
    snprintf(name, sizeof name, "%s%s", p->info.name, MU_DELTA_LORA_SCALE_SUFFIX);
    float scale = (float)(a->scale * t->o.delta_scale);
    mu_st_writer_add_copy(w, name, MU_F32, 1, ssh, &scale);
    free(As);
    free(Bs);
}

/* vals [n] (stored layout, at flat indices idx; NULL: the whole tensor) to w0 + scale (vals -
 * w0), w0 param p's values in ck (the checkpoint the training started from). */
static int scale_from_start(mu_ckpt *ck, const mu_param *p, double scale, const int64_t *idx, float *vals,
                            int64_t n, char *err, size_t errlen) {
    if (scale == 1) return 0;
    float *w0 = mu_xmalloc((size_t)p->numel * sizeof *w0);
    int rc = mu_ckpt_read_f32(ck, p->info.name, p->info.ndim, p->info.shape, w0, err, errlen);
    for (int64_t e = 0; !rc && e < n; e++) {
        vals[e] = mu_delta_interp(w0[idx ? idx[e] : e], vals[e], (float)scale);
    }
    free(w0);
    return rc;
}

static int add_delta_tensor(mu_st_writer *w, mu_trainer *t, mu_ckpt *ck, int i, int sparse, char *err,
                            size_t errlen) {
    mu_param *p = mu_model_param(t->m, t->pidx[i]);
    const mu_idxset *s = mu_optim_set(t->opt, i);
    double scale = t->o.delta_scale;
    if (t->lora_part[i]) {                             /* one entry with its A */
        if (t->lora_part[i] == 1) add_lowrank_entry(w, t, i);
        return 0;
    }
    if (!sparse || (s->dense && !t->o.weight_mask)) {   /* a mask's delta: what it changed */
        float *vals = mu_xmalloc((size_t)p->numel * sizeof(float));
        mu_model_get_param(t->m, t->pidx[i], vals);
        to_stored(t->m, p, vals, p->numel);
        int rc = scale_from_start(ck, p, scale, NULL, vals, p->numel, err, errlen);
        if (!rc) mu_st_writer_add_copy(w, p->info.name, MU_F32, p->info.ndim, p->info.shape, vals);
        free(vals);
        return rc;
    }
    float *vals = mu_xmalloc((size_t)(s->n + 1) * sizeof(float));
    int64_t *idx = mu_xmalloc((size_t)(s->n + 1) * sizeof *idx);
    int64_t n = trained_weights(t, i, idx, vals);       /* only the trained elements move */
    int rc = 0;
    if (n > 0) {                                        /* else a mask left the tensor whole */
        to_stored(t->m, p, vals, n);
        rc = scale_from_start(ck, p, scale, idx, vals, n, err, errlen);
    }
    if (n > 0 && !rc) {
        char name[160];
        int64_t shape[1] = {n};
        snprintf(name, sizeof name, "%s%s", p->info.name, MU_DELTA_IDX_SUFFIX);
        mu_st_writer_add_copy(w, name, MU_I64, 1, shape, idx);
        snprintf(name, sizeof name, "%s%s", p->info.name, MU_DELTA_VAL_SUFFIX);
        mu_st_writer_add_copy(w, name, MU_F32, 1, shape, vals);
    }
    free(idx);
    free(vals);
    return rc;
}

int mu_train_write_delta(mu_trainer *t, const char *base_path, const char *const *deltas,
                         const float *scales, int n_deltas, const char *path, int sparse,
                         const char *objective, char *err, size_t errlen) {
    mu_ckpt *ck = mu_ckpt_open_with_deltas(base_path, deltas, scales, n_deltas, err, errlen);
    if (!ck) return -1;
    int rc = -1;
    mu_st_writer *w = mu_st_writer_new();
    if (mu_delta_writer_init(w, ck)) {
        snprintf(err, errlen, "%s: cannot digest the base model", base_path);
        goto out;
    }
    mu_st_writer_meta(w, "producer", "mu-train " MU_VERSION);
    if (objective) mu_st_writer_meta(w, "objective", objective);
    /* 15 digits: the options are decimals as typed, which %.15g writes back exactly */
    char *info = json_dumps(t->info, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15));
    mu_st_writer_meta(w, "mu_train", info);
    free(info);
    if (t->o.lora_r > 0) mu_st_writer_meta(w, "version", MU_DELTA_VERSION_LOWRANK);
    for (int i = 0; i < t->nt; i++)
        if (add_delta_tensor(w, t, ck, i, sparse, err, errlen)) goto out;
    rc = mu_st_writer_write(w, path, err, errlen);
out:
    if (w) mu_st_writer_free(w);
    mu_ckpt_close(ck);
    return rc;
}

int mu_train_write_soft_prompt(mu_trainer *t, const char *base_path, const char *const *deltas,
                               const float *scales, int n_deltas, const char *path, char *err, size_t errlen) {
    const mu_soft_prompt *sp = mu_model_soft_prompt(t->m);
    if (t->o.soft_tokens <= 0 || !sp) {
        snprintf(err, errlen, "%s: this run trained no soft prompt", path);
        return -1;
    }
    mu_ckpt *ck = mu_ckpt_open_with_deltas(base_path, deltas, scales, n_deltas, err, errlen);
    if (!ck) return -1;
    int rc = -1;
    char digest[33];
    float *P = mu_xmalloc((size_t)sp->n * t->D * sizeof *P);
    mu_st_writer *w = NULL;
    if (mu_ckpt_digest(ck, digest)) {
        snprintf(err, errlen, "%s: cannot digest the model", base_path);
        goto out;
    }
    mu_model_backend(t->m)->download(P, sp->P, (size_t)sp->n * t->D * sizeof *P);
    w = mu_soft_prompt_writer(sp->n, t->D, P);
    mu_st_writer_meta(w, "producer", "mu-train " MU_VERSION);
    mu_st_writer_meta(w, "trained_on", digest);
    mu_st_writer_meta(w, "model", base_path);
    char *info = json_dumps(t->info, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(15)), *ids = NULL;
    mu_st_writer_meta(w, "mu_train", info);
    if (t->gcg_ids) {
        json_t *a = json_array();
        for (int j = 0; j < sp->n; j++) json_array_append_new(a, json_integer(t->gcg_ids[j]));
        ids = json_dumps(a, JSON_COMPACT);
        json_decref(a);
        mu_st_writer_meta(w, "token_ids", ids);
    }
    rc = mu_st_writer_write(w, path, err, errlen);
    free(info);
    free(ids);
out:
    if (w) mu_st_writer_free(w);
    free(P);
    mu_ckpt_close(ck);
    return rc;
}

static char *in_dir(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = mu_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Copies src to dst when src exists: 0 copied, 1 absent, -1 + err. */
static int copy_if_exists(const char *src, const char *dst, char *err, size_t errlen) {
    FILE *in = fopen(src, "rb");
    if (!in) return 1;
    FILE *out = fopen(dst, "wb");
    if (!out) { snprintf(err, errlen, "%s: %s", dst, strerror(errno)); fclose(in); return -1; }
    char buf[1 << 16];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) { snprintf(err, errlen, "%s: %s", dst, strerror(errno)); rc = -1; break; }
    if (rc == 0 && ferror(in)) { snprintf(err, errlen, "%s: read error", src); rc = -1; }
    fclose(in);
    if (fclose(out) && rc == 0) { snprintf(err, errlen, "%s: %s", dst, strerror(errno)); rc = -1; }
    return rc;
}

static int write_weights(mu_model *m, const char *path, char *err, size_t errlen) {
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_meta(w, "format", "pt");
    int np = mu_model_n_params(m);
    float **bufs = mu_xcalloc((size_t)np, sizeof *bufs);
    for (int i = 0; i < np; i++) {
        mu_param *p = mu_model_param(m, i);
        bufs[i] = mu_xmalloc((size_t)p->numel * sizeof(float));
        mu_model_get_param(m, i, bufs[i]);
        to_stored(m, p, bufs[i], p->numel);   /* Gemma's norms */
        mu_st_writer_add(w, p->info.name, MU_F32, p->info.ndim, p->info.shape, bufs[i]);
    }
    int rc = mu_st_writer_write(w, path, err, errlen);
    mu_st_writer_free(w);
    for (int i = 0; i < np; i++) free(bufs[i]);
    free(bufs);
    return rc;
}

/* PEFT's name of parameter p's adapter factor part ('A' or 'B'): the checkpoint's tensor
 * name (mu's with the tensor prefix) with .weight replaced. */
static void peft_name(const mu_model *m, const mu_param *p, char part, char *out, size_t n) {
    size_t l = strlen(p->info.name) - strlen(".weight");
    snprintf(out, n, "base_model.model.%s%.*s.lora_%c.weight", mu_model_config(m)->tensor_prefix, (int)l,
             p->info.name, part);
}

/* adapter_model.safetensors: each adapter's A [r, K] and B [M, r], the trained entries as
 * they are (PEFT's orientation for Linear and Conv1D alike); the adapted modules go to
 * targets. */
static int write_peft_weights(mu_trainer *t, const char *path, json_t *targets, int *conv1d, char *err,
                              size_t errlen) {
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_meta(w, "format", "pt");
    for (int i = 0; i < t->nt; i++) {
        int part = t->lora_part[i];
        if (!part) continue;
        const mu_param *p = mu_model_param(t->m, t->pidx[i]);
        const mu_lora *a = mu_model_lora(t->m, t->pidx[i]);
        int64_t sh[2] = {part == 1 ? a->r : a->M, part == 1 ? a->K : a->r};
        float *vals = mu_xmalloc((size_t)(sh[0] * sh[1]) * sizeof *vals);
        mu_trainer_get_trained(t, i, vals);
        char name[300];
        peft_name(t->m, p, part == 1 ? 'A' : 'B', name, sizeof name);
        mu_st_writer_add_copy(w, name, MU_F32, 2, sh, vals);
        free(vals);
        if (part == 2) continue;
        name[strlen(name) - strlen(".lora_A.weight")] = 0;
        json_array_append_new(targets, json_string(name + strlen("base_model.model.")));
        *conv1d |= p->conv1d;
    }
    int rc = mu_st_writer_write(w, path, err, errlen);
    mu_st_writer_free(w);
    return rc;
}

/* adapter_config.json: a plain LoRA config for the run's rank and alpha. */
static int write_peft_config(const mu_trainer *t, const char *base_path, json_t *targets, int conv1d,
                             const char *path, char *err, size_t errlen) {
    json_t *c = json_pack("{s:s, s:s, s:i, s:f, s:O, s:b, s:s, s:f, s:b, s:b, s:n, s:b, s:s, s:b, s:{}, s:{}}",
                          "peft_type", "LORA", "task_type", "CAUSAL_LM", "r", t->o.lora_r, "lora_alpha",
                          t->o.lora_alpha, "target_modules", targets, "fan_in_fan_out", conv1d, "bias", "none",
                          "lora_dropout", 0.0, "use_rslora", 0, "use_dora", 0, "modules_to_save", "inference_mode",
                          1, "base_model_name_or_path", base_path ? base_path : "", "init_lora_weights", 1,
                          "rank_pattern", "alpha_pattern");
    int rc = c && !json_dump_file(c, path, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) ? 0 : -1;
    if (rc) snprintf(err, errlen, "%s: %s", path, c ? strerror(errno) : "cannot make the config");
    json_decref(c);
    return rc;
}

int mu_train_write_peft(mu_trainer *t, const char *base_path, const char *dir, char *err, size_t errlen) {
    if (t->o.lora_r <= 0) {
        snprintf(err, errlen, "%s: a PEFT adapter needs a LoRA run (--lora)", dir);
        return -1;
    }
    char *tmp = mu_dir_tmp_create(dir, err, errlen);
    if (!tmp) return -1;
    mu_cleanup_register(tmp);
    char *cfg = in_dir(tmp, "adapter_config.json"), *st = in_dir(tmp, "adapter_model.safetensors");
    json_t *targets = json_array();
    int conv1d = 0;
    int rc = write_peft_weights(t, st, targets, &conv1d, err, errlen) ||
             write_peft_config(t, base_path, targets, conv1d, cfg, err, errlen) ||
             mu_dir_commit(tmp, dir, err, errlen) ? -1 : 0;
    if (rc) mu_dir_abort(tmp);
    mu_cleanup_unregister(tmp);
    json_decref(targets);
    free(tmp); free(cfg); free(st);
    return rc;
}

int mu_train_write_model_dir(mu_model *m, const char *src_path, const char *dir, int *no_tokenizer,
                             char *err, size_t errlen) {
    char *tmp = mu_dir_tmp_create(dir, err, errlen);
    if (!tmp) return -1;
    mu_cleanup_register(tmp);
    char *cfg = in_dir(tmp, "config.json"), *st = in_dir(tmp, "model.safetensors");
    int rc = -1;
    if (mu_config_write_json(mu_model_config(m), cfg, err, errlen) || write_weights(m, st, err, errlen)) goto out;
    char src_dir[4096];
    struct stat sb;
    snprintf(src_dir, sizeof src_dir, "%s", src_path ? src_path : ".");
    if (!(stat(src_dir, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        char *slash = strrchr(src_dir, '/');
        if (slash) *slash = 0; else snprintf(src_dir, sizeof src_dir, ".");
    }
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                  "generation_config.json"};
    if (no_tokenizer) *no_tokenizer = 1;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *s = in_dir(src_dir, files[i]), *d = in_dir(tmp, files[i]);
        int c = copy_if_exists(s, d, err, errlen);
        free(s); free(d);
        if (c < 0) goto out;
        if (c == 0 && i == 0 && no_tokenizer) *no_tokenizer = 0;
    }
    rc = mu_dir_commit(tmp, dir, err, errlen);
out:
    if (rc) mu_dir_abort(tmp);
    mu_cleanup_unregister(tmp);
    free(tmp); free(cfg); free(st);
    return rc;
}
