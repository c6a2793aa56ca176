/* train.h — the training loop behind mu-train: data sets from token streams, combined
 * objectives, masked parameters, AdamW/SGD, evaluation, checkpoints and resume.
 *
 *   mu_train_opts o; mu_train_opts_default(&o); o.coef[MU_OBJ_LEARN] = 1; o.steps = 50;
 *   mu_trainer *tr = mu_trainer_new(model, NULL, mask, &o, err, sizeof err);
 *   mu_trainer_set_data(tr, MU_DATA_FORGET, &forget_set);
 *   mu_trainer_run(tr, err, sizeof err);        // trains model's masked elements in place
 *
 * Every update is deterministic: the batch of step s is a function of (seed, s) (a seeded
 * permutation per epoch), and all reductions run in a fixed order, so the same inputs and
 * seed give bit-identical parameters (for any thread count), and a run resumed from a checkpoint ends with the
 * same bits as an uninterrupted one (on the same backend). Only masked elements change;
 * frozen tensors are not trainable in the model (no dW is computed for them, no optimizer
 * state is kept). The optimizer runs on the model's backend over the weight and gradient
 * buffers themselves (lib/optim.h): on a device nothing of the model is copied to the
 * host per step; checkpoints, the keep-best snapshot and deltas fetch the trained
 * elements when they need them. */
#ifndef MU_TRAIN_H
#define MU_TRAIN_H
#include <stddef.h>
#include <stdint.h>
#include <jansson.h>
#include "model.h"
#include "mask.h"
#include "optim.h"
#include "dist.h"

typedef enum {
    MU_OBJ_LEARN = 0, MU_OBJ_GA, MU_OBJ_LOG1MP, MU_OBJ_NPO, MU_OBJ_SIMNPO, MU_OBJ_DPO,
    MU_OBJ_WGA, MU_OBJ_RMU, MU_OBJ_UNDIAL, MU_OBJ_EDIT, MU_OBJ_RETAIN_CE, MU_OBJ_RETAIN_KL,
    MU_OBJ_GENERAL_LM, MU_OBJ_MLP_L2, MU_OBJ_SATIMP, MU_OBJ_ME, MU_OBJ_IDK, MU_OBJ_COUNT
} mu_obj_id;
const char *mu_obj_name(mu_obj_id id);  /* "learn", "ga", ..., "mlp-l2" */

/* Parses "log1mp=1,retain-ce=1,general-lm=0.5" (a bare name means 1; "graddiff=c" adds
 * ga=c and retain-ce=c) into coef[]. 0 ok, -1 + err. */
int mu_objective_parse(const char *spec, double coef[MU_OBJ_COUNT], char *err, size_t errlen);

/* ---- data ---- */
typedef struct {
    int32_t *ids;       /* the sequence: prompt then answer */
    int len;            /* tokens in ids */
    int lab_from;       /* targets are ids[lab_from+1 .. len-1]: labels at rows lab_from..len-2 */
    int32_t *alt;       /* DPO: prompt then the preferred answer (NULL if none) */
    int alt_len, alt_lab_from;
    double ref_s, ref_alt_s;   /* cached reference sequence log-probs (NPO, DPO) */
} mu_train_seq;

typedef struct {
    char *path;
    mu_train_seq *s;
    int n;
} mu_train_set;

typedef enum { MU_DATA_FORGET = 0, MU_DATA_RETAIN, MU_DATA_GENERAL, MU_DATA_COUNT } mu_data_role;

/* Reads a "tokens" stream of ids in [0, vocab), prompts (lm = 0) also soft-prompt slots
 * -1 .. -nsoft (mu_model_set_soft_prompt; a slot that --max-len would cut is an error).
 * lm = 0: each record is prompt ++ targets[answer] (answer 0
 * when absent), trained on the target tokens (a record without targets is an error). The
 * DPO alternative is prompt ++ alt_ids when given, else prompt ++ the first other
 * candidate (targets[1], or targets[0] when answer is not 0), else none.
 * lm = 1 (general text): prompt ++ targets[answer] if any, every next token is a target; a
 * text longer than max_len is cut into windows of max_len tokens overlapping by one.
 * Other sequences longer than max_len lose tokens from the left of the prompt (never
 * answer tokens). vocab bounds ids.
 * 0 ok, -1 + "path: record N: what". */
int mu_train_set_read(const char *path, int lm, int max_len, int vocab, int nsoft, const int32_t *alt_ids,
                      int n_alt, mu_train_set *set, char *err, size_t errlen);
/* mu_train_set_read(path, 0, max_len, vocab, nsoft, NULL, 0, ...) that also maps each record's
 * spans[field] (mu-tokenize's [start, end) of a prompt-template field) into its sequence,
 * after the prompt's left truncation: *start, *end [set->n], malloc'd. A record without
 * the span, or whose span max_len cut, is an error. One pass: path may be a pipe. */
int mu_train_set_read_spans(const char *path, int max_len, int vocab, int nsoft, const char *field,
                            mu_train_set *set, int32_t **start, int32_t **end, char *err, size_t errlen);
/* Builds a set from memory (tests): n sequences, each prompt then answer. */
void mu_train_set_from_arrays(mu_train_set *set, int n, int32_t *const *ids, const int *len,
                              const int *prompt_len);
void mu_train_set_free(mu_train_set *set);

/* ---- options ---- */
typedef struct {
    double coef[MU_OBJ_COUNT];
    double npo_beta, simnpo_beta, simnpo_delta, dpo_beta, wga_beta, undial_beta, log1mp_floor;
    double satimp_beta1, satimp_beta2;
    int rmu_layer;           /* -1: the middle layer */
    double rmu_c, rmu_alpha; /* steering norm c; weight of RMU's retain term */
    int64_t steps;           /* optimizer updates */
    int batch, accum;        /* sequences per micro-batch (per data set), micro-batches per step */
    uint64_t seed;
    mu_optim_config opt;
    int eval_every;          /* 0: evaluate only at the end */
    int64_t checkpoint_every;/* 0: never */
    const char *checkpoint;  /* checkpoint path (needed when checkpoint_every > 0) */
    const char *keep_best;   /* "NAME.METRIC[:min|:max]" or NULL */
    int progress;            /* mu_progress on stderr */
    int weight_mask;         /* 1: train a mask m in [0, 1] over the masked elements (w = w0 * m,
                                m from 1, projected after every update) instead of the weights:
                                Guo et al.'s weight masking (kernels.h wmask_forward/backward) */
    double weight_mask_lambda; /* its penalty: lambda * sum(1 - m) over the masked elements */
    int lora_r;              /* > 0: train LoRA adapters of this rank on the masked layer
                                matrices (whole ones) instead of them (mu_model_add_lora) */
    double lora_alpha;       /* their scale is alpha / r */
    double delta_scale;      /* mu_train_write_delta writes w0 + delta_scale (w - w0), w0 the
                                starting values (1, the default: the trained values; -1: the
                                task vector negated, Ilharco et al. 2023); LoRA: scale x it */
    int soft_tokens;         /* > 0: train a soft prompt of this many vectors instead of any
                                weight (mu_model_set_soft_prompt; no mask, LoRA or weight
                                mask): the model's own when it has one of that size, else
                                embedding rows of tokens drawn from the seed. The forget set
                                must hold soft-prompt slots (mu-tokenize --soft-tokens). */
    int gcg;                 /* with soft_tokens: search tokens for the slots instead of training
                                vectors, by greedy coordinate gradient (Zou et al. 2023): each
                                step the gradient ranks every allowed token of every slot
                                (mu_soft_gcg_top_tokens), gcg_candidates single-token swaps
                                drawn from the slots' top gcg_topk (every one of them when
                                there are no more) are each tried on the step's data, forward
                                only, and the best is kept. The slots always hold embedding
                                rows: the attack as text (the optimizer is unused). It starts
                                from the model's soft prompt's nearest tokens, else from
                                allowed tokens drawn from the seed. */
    int gcg_topk, gcg_candidates;
    const unsigned char *gcg_allowed;   /* [vocab]: 0 marks a token the search never places
                                           (NULL: any); referenced, not copied */
} mu_train_opts;
void mu_train_opts_default(mu_train_opts *o);

typedef struct mu_trainer mu_trainer;
/* model: the model to train (its parameters change in place); ref: a frozen reference
 * model for undial, retain-kl, rmu and mlp-l2 (NULL: those terms need it -> error), and
 * for the cached sequence log-probs of npo/dpo (NULL: the starting model itself).
 * mask NULL = every parameter. */
mu_trainer *mu_trainer_new(mu_model *model, mu_model *ref, const mu_mask *mask,
                           const mu_train_opts *o, char *err, size_t errlen);
void mu_trainer_free(mu_trainer *t);
/* Adds KEY = VALUE (a new reference, taken over) to the run's record: every option of
 * mu_train_opts by its mu-train name (objectives, npo_beta, ..., optimizer, lr, ...,
 * seed, with the RMU layer and decay_steps resolved) and what the caller notes (mu-train:
 * the mask, max_len, ...). The log stream's header carries the record as meta "options",
 * a delta's safetensors metadata as "mu_train" (JSON text). */
void mu_trainer_note(mu_trainer *t, const char *key, json_t *value);
/* Data parallelism over the processes of d (copied; lib/dist.h): each process runs the
 * micro-batches a = rank, rank + world, ... < accum of every step, and the gradients, loss
 * terms and token counts are summed before the update, which every process then makes
 * alike: the same update as one process with the same --accum (up to the order of float
 * sums), the same bits on every process. Reference log-probs and evaluations are shared
 * out the same way. Every process must call the trainer's functions in the same order
 * with the same data; checkpoints are written by rank 0 only. The run's record notes
 * "processes". Call before mu_trainer_run. */
void mu_trainer_set_dist(mu_trainer *t, const mu_dist *d);
/* Hands a data set to the trainer (taken over). */
void mu_trainer_set_data(mu_trainer *t, mu_data_role role, mu_train_set *set);
/* Evaluation set: metrics "nll" (mean target NLL), "acc" (top-1 accuracy of target
 * tokens), "prob" (mean sequence probability of the target) under `name`. */
void mu_trainer_add_eval(mu_trainer *t, const char *name, mu_train_set *set);
/* Checks the objectives have their data; caches reference log-probs. Then, when
 * resume_path is not NULL, restores the state saved there. Then trains to opts.steps,
 * evaluating and checkpointing as configured; with keep_best the model ends holding the
 * best evaluated parameters. 0 ok; -1 + err (NaN/inf loss names the step). */
int mu_trainer_run(mu_trainer *t, const char *resume_path, char *err, size_t errlen);

/* Raises (or lowers) the number of steps mu_trainer_run trains to; a later run call
 * continues from the current step. (The lr schedule keeps its configured total.) */
void mu_trainer_set_steps(mu_trainer *t, int64_t steps);

/* ---- results ---- */
int mu_trainer_n_trained(const mu_trainer *t);
/* Model parameter index of trained tensor i and its trained element set. */
int mu_trainer_trained_param(const mu_trainer *t, int i);
/* With LoRA (opts.lora_r), trained tensor i is an adapter's A (1: [r, in]) or B (2: [out, r]),
 * A before B, of parameter mu_trainer_trained_param(t, i); 0: the parameter's own values;
 * 3: the soft prompt (opts.soft_tokens; trained_param -1). */
int mu_trainer_lora_part(const mu_trainer *t, int i);
const mu_idxset *mu_trainer_trained_set(const mu_trainer *t, int i);
size_t mu_trainer_optim_bytes(const mu_trainer *t);
int64_t mu_trainer_step(const mu_trainer *t);
/* Weight masking (opts.weight_mask): over the masked elements, the number whose mask is
 * below 1 (changed weights), at most 1/2 (halved), at 0 (ablated), all of them, the cut
 * sum(1 - m) and the penalty lambda * cut (the backend's wmask_cut: sums in double by
 * chunks of 2^16 elements, tensors in order; the per-step loss adds the same penalty).
 * 0, or -1 when the run trains weights. */
typedef struct { int64_t masked, halved, ablated, elements; double cut, penalty; } mu_wmask_stats;
int mu_trainer_wmask_stats(const mu_trainer *t, mu_wmask_stats *s);
/* The optimizer's gradient of trained tensor i as the last step (or loss_and_grad) left
 * it, [set->n] in entry order: dL/dw, with weight masking dL/dm (penalty included), with
 * LoRA dL/dA or dL/dB. */
void mu_trainer_opt_grad(const mu_trainer *t, int i, float *host);
/* Sets the trained values of tensor i ([set->n], entry order: weights, with weight masking
 * the mask, then projected and applied, with LoRA A or B) as a checkpoint does; get reads
 * them. For tests. */
void mu_trainer_set_trained(mu_trainer *t, int i, const float *host);
void mu_trainer_get_trained(mu_trainer *t, int i, float *host);

/* Writes the "log" stream (every logged step and evaluation). */
void mu_trainer_write_log(mu_trainer *t, const char *path, const char *const *input_roles,
                          const char *const *input_paths, int n_inputs);
/* Last logged loss terms (NaN where a term is unused). */
double mu_trainer_last_loss(const mu_trainer *t);
/* Runs the evaluation sets now; metric value by "name.metric", NaN if unknown. */
double mu_trainer_eval_metric(mu_trainer *t, const char *name_metric);

/* The delta_scale of the deltas written from now on (and of the options recorded). */
void mu_trainer_set_delta_scale(mu_trainer *t, double scale);
/* Writes a delta (man/mu-delta.5) of the trained tensors' new values: dense tensors, or
 * with sparse NAME::idx (i64) + NAME::val (f32) for partly trained tensors. base_path and
 * deltas (at scales, NULL: all 1) are the model the training started from (for the "base"
 * digest, and w0 of delta_scale). Atomic. 0 ok, -1 + err. */
int mu_train_write_delta(mu_trainer *t, const char *base_path, const char *const *deltas,
                         const float *scales, int n_deltas, const char *path, int sparse,
                         const char *objective, char *err, size_t errlen);
/* Writes a LoRA run's adapters (mu_trainer_options.lora_r) as a PEFT adapter directory
 * (adapter_config.json, adapter_model.safetensors f32: base_model.model.X.lora_A.weight
 * [r, in] and .lora_B.weight [out, r] for each adapted X.weight under the checkpoint's
 * names; lora_alpha, fan_in_fan_out for Conv1D weights, target_modules the adapted
 * modules, base_model_name_or_path base_path), which PEFT loads on the model the run
 * started from and --delta reads back. Atomic. 0 ok, -1 + err. */
int mu_train_write_peft(mu_trainer *t, const char *base_path, const char *dir, char *err, size_t errlen);
/* A GCG run's (opts.gcg) tokens in the slots now [soft_tokens], or NULL. */
const int32_t *mu_trainer_gcg_ids(const mu_trainer *t);
/* Writes a soft-prompt run's vectors (opts.soft_tokens) as a soft-prompt file (lib/soft.h):
 * "trained_on" the digest of base_path with deltas (at scales, NULL: all 1), "model" base_path, "mu_train" the run's
 * record, with GCG (opts.gcg) "token_ids" the slots' tokens (a JSON array). Atomic. 0 ok,
 * -1 + err. */
int mu_train_write_soft_prompt(mu_trainer *t, const char *base_path, const char *const *deltas,
                               const float *scales, int n_deltas, const char *path, char *err, size_t errlen);
/* Writes m as a Hugging Face model directory (config.json, model.safetensors f32 with
 * format "pt", tokenizer files copied from src_path's directory; *no_tokenizer set when
 * there was no tokenizer.json). Atomic (temp directory + rename). 0 ok, -1 + err. */
int mu_train_write_model_dir(mu_model *m, const char *src_path, const char *dir, int *no_tokenizer,
                             char *err, size_t errlen);

/* Total training loss and d loss / d (trained params) of one step's data as it would be
 * computed at step `step` (the model's gradients hold the result; with weight masking the
 * loss includes the mask's penalty and mu_trainer_opt_grad gives d loss / d m). For
 * gradient checks. */
double mu_trainer_loss_and_grad(mu_trainer *t, int64_t step, char *err, size_t errlen);
#endif
