/* delta.h — one delta on top of a checkpoint (man/mu-delta.5), validated against its base
 * when opened and applied tensor by tensor by lib/ckpt.c:
 *   - a mu delta file (safetensors, __metadata__ {"format":"mu-delta","version":"1" or "2",
 *     "base":<digest of the base>}): dense entries "NAME" (the whole tensor, replaced),
 *     sparse pairs "NAME::idx" (I64 flat row-major indices, sorted strictly increasing, in
 *     range) + "NAME::val" (the new values), and (version 2) low-rank entries
 *     "NAME::lora_A" [r, cols], "NAME::lora_B" [rows, r], optional "NAME::lora_scale" [1]
 *     (default 1), which ADD scale B A to the 2-D tensor NAME [rows, cols];
 *   - a PEFT LoRA adapter directory (adapter_config.json, adapter_model.safetensors, as
 *     PEFT's save_pretrained writes them): each adapted module X's
 *     base_model.model.X.lora_A.weight [r, in] and .lora_B.weight [out, r] add
 *     (lora_alpha / r, or / sqrt(r) with use_rslora) B A to X.weight ([out, in], or its
 *     transpose for fan_in_fan_out: GPT-2's Conv1D). */
#ifndef MU_DELTA_H
#define MU_DELTA_H
#include <stddef.h>
#include <stdint.h>
#include "safetensors.h"

#define MU_DELTA_FORMAT "mu-delta"
#define MU_DELTA_VERSION "1"
#define MU_DELTA_VERSION_LOWRANK "2"   /* the first with low-rank entries */
#define MU_DELTA_IDX_SUFFIX "::idx"
#define MU_DELTA_VAL_SUFFIX "::val"
#define MU_DELTA_LORA_A_SUFFIX "::lora_A"
#define MU_DELTA_LORA_B_SUFFIX "::lora_B"
#define MU_DELTA_LORA_SCALE_SUFFIX "::lora_scale"

struct mu_ckpt;
typedef struct mu_delta mu_delta;

/* Opens path (a delta file, or a PEFT adapter directory) and checks it against base: the
 * metadata (a "base" digest other than base's is an error), that every tensor it changes
 * is in base, the entries' shapes, dtypes and indices. NULL + one line naming path and the
 * entry on failure. */
mu_delta *mu_delta_open(const char *path, struct mu_ckpt *base, char *err, size_t errlen);
void mu_delta_close(mu_delta *d);
/* Sets the strength s that d applies at (1 when opened): each value it replaces moves from
 * w0, what the deltas before left, to w0 + s (w - w0) (mu_delta_interp), and its low-rank
 * changes are multiplied by s. s = -1 negates the change (task arithmetic: Ilharco et al.
 * 2023), 0 leaves the weights as they were, 0.5 goes half way. */
void mu_delta_set_scale(mu_delta *d, float s);
float mu_delta_scale(const mu_delta *d);
/* w0 + s (w - w0) in f32, the one formula of a scaled change (mu_delta_set_scale, and
 * mu-train --delta-scale writing one), so that both give the same bits */
static inline float mu_delta_interp(float w0, float w, float s) { return w0 + s * (w - w0); }
/* Applies d's entries for tensor hf_name to dst, its n values as the deltas before left
 * them (untouched when d leaves the tensor alone), at d's strength. 0 ok, -1 + err (a read
 * error). */
int mu_delta_apply(const mu_delta *d, const char *hf_name, float *dst, size_t n, char *err, size_t errlen);
/* Elements of tensor hf_name (numel of them) that d sets: numel when it holds the tensor
 * dense or low-rank, its index count when sparse, 0 when it leaves it alone. */
int64_t mu_delta_elems(const mu_delta *d, const char *hf_name, int64_t numel);
/* The files its content is read from (what a digest covers): 1 for a delta file, 2 for a
 * PEFT adapter (adapter_config.json, then adapter_model.safetensors). */
int mu_delta_files(const mu_delta *d, const char *files[2]);
/* Whether path names a PEFT adapter: a directory. */
int mu_delta_is_peft(const char *path);

/* W [rows, cols] += scale B A with B [rows, r], A [r, cols] (row-major f32): how a delta's
 * low-rank entry applies, and how the model merges a LoRA adapter (the same bits). */
void mu_lowrank_add(float *W, int rows, int cols, int r, float scale, const float *B, const float *A);
#endif
