/* maskgen.h — masks made from localization scores, and the random baselines of Lee et al.
 * 2025 (random masks and random-complement masks of the same size); the logic of
 * mu-maskgen(1).
 *
 * Candidates are the units a mask may select, per tensor, in record order: the records of
 * a "scores" stream (with their scores) or the tensors of a model picked by a mask spec at
 * one granularity (without scores). Units follow lib/mask.h exactly. Units can be removed
 * from the candidates (the complement of an earlier mask).
 *
 * Selection puts the candidate units in one order — scores descending (ties: record, then
 * unit index, ascending), ascending (same ties), or a seeded Fisher-Yates shuffle of the
 * candidate list (lib/rng.h) — and then applies the size rule:
 *   units N    exactly N units
 *   params P   whole units in order until the selected elements reach P (the unit that
 *              reaches P is taken; units differ in size between tensors)
 * over all tensors together (scope global) or per tensor (scope tensor: every tensor gets
 * the same fraction of its candidate units: with N, N apportioned to the tensors in
 * proportion to their candidate units, largest remainders first, ties to the earlier
 * tensor; with P, ceil(P * units_t / candidate elements) units of tensor t, so the total
 * reaches P). A target above the candidates is an error. */
#ifndef MU_MASKGEN_H
#define MU_MASKGEN_H
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "mask.h"

typedef struct {
    mu_mask m;          /* the candidate tensors (name, shape, granularity, units); no bit
                           set; m.params_total = parameters of the whole model */
    mu_mask excl;       /* the same tensors in the same order; a set bit removes the unit */
    float **score;      /* score[i][u] for tensor i, or NULL (candidates from a model) */
    char method[64];    /* scores header meta "method" ("" when absent) */
} mu_cands;

/* Reads and validates a "scores" stream: header meta params_total (int > 0), one record
 * per tensor {"name","shape","granularity","units","score": f32 [units]}; units must fit
 * shape and granularity (mu_mask_add's rules), names unique, no NaN score, the scored
 * tensors no larger than params_total. 0 ok, -1 + "path: record N: tensor X: what". */
int mu_cands_read_scores(const char *path, mu_cands *c, char *err, size_t errlen);
/* The tensors of cfg's model that spec (mu_mask_from_spec) picks, at granularity g (head:
 * attention tensors only, head_dim rows or columns per unit). params_total = the model's.
 * 0 ok, -1 + err. */
int mu_cands_from_model(const mu_config *cfg, const char *spec, mu_granularity g, mu_cands *c,
                        char *err, size_t errlen);
/* Removes from the candidates every unit that covers an element selected in mask (units
 * of the same granularity map one to one; otherwise any overlap removes the unit).
 * Tensors of mask that are not candidates are ignored; a shape that differs, or a
 * params_total that differs (another model), is an error. 0 ok, -1 + err. */
int mu_cands_exclude(mu_cands *c, const mu_mask *mask, char *err, size_t errlen);
void mu_cands_free(mu_cands *c);
int64_t mu_cands_units(const mu_cands *c);   /* candidate units left */
int64_t mu_cands_params(const mu_cands *c);  /* elements they cover */

typedef enum { MU_ORDER_TOP = 0, MU_ORDER_LOWEST, MU_ORDER_RANDOM } mu_order;
typedef enum { MU_SCOPE_GLOBAL = 0, MU_SCOPE_TENSOR } mu_scope;

typedef struct {
    mu_order order;
    mu_scope scope;
    uint64_t seed;       /* MU_ORDER_RANDOM */
    int64_t units;       /* > 0: exactly this many units */
    int64_t params;      /* otherwise (> 0): the element target */
} mu_select_opts;

/* round(f * params_total), halves away from zero. */
int64_t mu_maskgen_fraction_target(double f, int64_t params_total);
/* Makes the mask (out initialized here; only tensors with a selected unit get a record;
 * header granularity = the candidates' common granularity, else "mixed"). Scores are
 * needed for TOP and LOWEST. 0 ok, -1 + err (target above the candidates, no scores, a
 * target selecting nothing). */
int mu_maskgen_select(const mu_cands *c, const mu_select_opts *o, mu_mask *out, char *err,
                      size_t errlen);
/* The deterministic complement: every unit of in's tensors that in does not select
 * (tensors left with none are dropped). 0 ok, -1 + err when nothing is left. */
int mu_maskgen_invert(const mu_mask *in, mu_mask *out, char *err, size_t errlen);
#endif
