/* soft.h — soft-prompt files (man/mu-soft-prompt.5): safetensors holding one F32 tensor
 * "soft_prompt" [n, d_model], the vectors that stand in for a tokens stream's soft-prompt
 * slots (ids -1 .. -n; mu-tokenize --soft-tokens N), with __metadata__ {"format":
 * "mu-soft-prompt", "version": "1", "trained_on": <digest of the model and deltas it was
 * trained on>, ...}. Written by mu-train --soft-tokens N; read by every tool that runs a
 * model (--soft-prompt FILE), on any model of the same width. */
#ifndef MU_SOFT_H
#define MU_SOFT_H
#include <stddef.h>
#include <stdint.h>
#include "safetensors.h"

#define MU_SOFT_FORMAT "mu-soft-prompt"
#define MU_SOFT_VERSION "1"
#define MU_SOFT_TENSOR "soft_prompt"
#define MU_SOFT_MAX 65536          /* vectors in one prompt */

/* Reads path's vectors for a model of width d_model: *n and *vec (malloc'd [n * d_model]).
 * Checks the format and version, the one tensor's name, dtype, shape (2-D, width d_model,
 * 1..MU_SOFT_MAX rows) and that every value is finite. 0 ok, -1 + "path: what". */
int mu_soft_prompt_read(const char *path, int d_model, int *n, float **vec, char *err, size_t errlen);
/* A writer holding vec [n, d_model] (referenced until written) and the format metadata; the
 * caller adds its own (mu_st_writer_meta) and writes it (atomic). */
mu_st_writer *mu_soft_prompt_writer(int n, int d_model, const float *vec);
/* Reads a soft-prompt file whatever its width: *n, *d_model and *vec (malloc'd), with the
 * checks of mu_soft_prompt_read. 0 ok, -1 + "path: what". */
int mu_soft_prompt_read_any(const char *path, int *n, int *d_model, float **vec, char *err, size_t errlen);
/* For each of the n vectors vec [n, D], the k rows of E [V, D] nearest by cosine similarity,
 * best first, into ids [n * k] and cos [n * k] (1 <= k <= V); equal cosines go to the lower
 * id, and a zero vector or row has cosine 0 with everything. */
void mu_soft_nearest(const float *vec, int n, const float *E, int V, int D, int k, int32_t *ids, float *cos);

typedef struct mu_model mu_model;
/* For each of the n vectors vec [n, D], the token whose embedding row (as stored, deltas
 * applied) is nearest by cosine, into best [n] (mu_soft_nearest over every row, read 4096
 * at a time: a 128k vocabulary is never copied whole). 0 ok, -1 out of memory. */
int mu_soft_nearest_tokens(mu_model *m, const float *vec, int n, int32_t *best);

/* Greedy coordinate gradient (Zou et al. 2023): the tokens worth trying in each of n
 * slots. g [n, D] holds d loss / d (slot j's vector); putting token v in slot j changes
 * the loss, to first order, by (E[v] - x_j) . g_j, so the best candidates have the
 * highest score -E[v] . g_j (dot in double). mu_soft_gcg_rank merges the rows E [rows, D]
 * of ids id0 .. id0 + rows - 1 into the best-first lists ids [n, k] and score [n, k] of
 * have[j] (<= k) entries (have zeroed before the first rows; rows arrive in increasing id
 * order, so an equal score keeps the lower id). allowed [V] (NULL: every token) skips the
 * tokens it marks 0. mu_soft_gcg_top_tokens does it over every embedding row of m, read
 * 4096 at a time. 0 ok, -1 out of memory. */
void mu_soft_gcg_rank(const float *g, int n, const float *E, int rows, int id0, int D,
                      const unsigned char *allowed, int k, int32_t *ids, float *score, int *have);
int mu_soft_gcg_top_tokens(mu_model *m, const float *g, int n, const unsigned char *allowed, int k,
                           int32_t *ids, float *score, int *have);
#endif
