/* ckpt.h — one model checkpoint: a Hugging Face directory (config.json + model.safetensors,
 * or shards listed in model.safetensors.index.json; F32/F16/BF16) or a GGUF file
 * (tensor names mapped to HF names, llama q/k rows un-permuted), plus deltas on top.
 *
 * Deltas (lib/delta.h, man/mu-delta.5: mu delta files and PEFT LoRA adapters) apply in
 * the order added. */
#ifndef MU_CKPT_H
#define MU_CKPT_H
#include <stddef.h>
#include <stdint.h>
#include "config.h"
#include "tensor.h"
#include "safetensors.h"
#include "gguf.h"
#include "delta.h"

typedef struct mu_ckpt mu_ckpt;

/* path: a directory (HF layout), its config.json, or a GGUF file (recognized by its magic).
 * Opening parses the config and checks that every tensor mu_arch_params lists is present
 * with its shape and a usable dtype, so a mismatch fails here with one line naming the file
 * and tensor. Weights stay mmap'd; nothing is read until mu_ckpt_read_f32. After the deltas
 * are added, the read functions do not modify the checkpoint: threads may call them
 * concurrently. */
mu_ckpt *mu_ckpt_open(const char *path, char *err, size_t errlen);
const mu_config *mu_ckpt_config(const mu_ckpt *c);
int mu_ckpt_is_gguf(const mu_ckpt *c);
/* The open GGUF (tokenizer metadata lives there), NULL for an HF directory. */
const mu_gguf *mu_ckpt_gguf(const mu_ckpt *c);

/* Validates the delta (a delta file or a PEFT adapter directory) against the base (names
 * exist, shapes/indices in range, dtypes) and stacks it. A "base" digest in its metadata that differs from this checkpoint's digest
 * (without deltas) is an error. 0 ok, -1 + "delta: what". */
int mu_ckpt_add_delta(mu_ckpt *c, const char *delta_path, char *err, size_t errlen);
/* The same, applied at strength scale (mu_delta_set_scale: w0 + scale (w - w0), low-rank
 * changes times scale); the digest (mu_ckpt_digest) then names the scale. */
int mu_ckpt_add_delta_scaled(mu_ckpt *c, const char *delta_path, float scale, char *err, size_t errlen);
/* Opens path and stacks deltas[0..n) on it in order, deltas[i] at scales[i] (scales NULL:
 * all 1). NULL + err on the first failure. */
mu_ckpt *mu_ckpt_open_with_deltas(const char *path, const char *const *deltas, const float *scales, int n,
                                  char *err, size_t errlen);
int mu_ckpt_n_deltas(const mu_ckpt *c);

/* Reads tensor by HF name into dst as f32 (converted/dequantized; deltas applied in
 * order); checks the stored shape equals (ndim, shape) exactly. 0 ok, -1 + err
 * ("file: tensor X: shape [a,b] but config needs [c,d]", "...: no tensor X"). */
int mu_ckpt_read_f32(mu_ckpt *c, const char *hf_name, int ndim, const int64_t *shape,
                     float *dst, char *err, size_t errlen);
/* The same with only the first k deltas applied (0: the base as stored). */
int mu_ckpt_read_f32_upto(mu_ckpt *c, int k, const char *hf_name, int ndim, const int64_t *shape,
                          float *dst, char *err, size_t errlen);
/* Applies delta i (0-based, in the order added) to dst, the n values of tensor hf_name with the
 * deltas before i applied; a delta that leaves the tensor alone leaves dst as it is. */
int mu_ckpt_apply_delta(const mu_ckpt *c, int i, const char *hf_name, float *dst, size_t n, char *err,
                        size_t errlen);
int mu_ckpt_has(const mu_ckpt *c, const char *hf_name);
/* 1 + the stored shape (PyTorch order) of tensor hf_name, or 0 when absent. */
int mu_ckpt_shape(const mu_ckpt *c, const char *hf_name, int *ndim, int64_t shape[MU_MAX_DIMS]);
/* The path it was opened with. */
const char *mu_ckpt_path(const mu_ckpt *c);
/* Stored dtype of a tensor (GGUF quantized types report MU_F32); -1 if absent. */
int mu_ckpt_dtype(const mu_ckpt *c, const char *hf_name, mu_dtype *dt);
/* The stored type of a tensor as its file names it: the safetensors dtype ("bf16", "f32")
 * or the GGUF ggml type ("q4_k", "f16"); NULL if absent. */
const char *mu_ckpt_stored_type(const mu_ckpt *c, const char *hf_name);
/* Elements of tensor hf_name that delta i (0-based, in the order added) sets: its element
 * count when the delta holds it dense or low-rank, its index count when sparse, 0 when it
 * leaves the tensor alone; -1 for a bad i. */
int64_t mu_ckpt_delta_elems(const mu_ckpt *c, int i, const char *hf_name);
/* Checks that every tensor mu_arch_params lists exists with its shape (lm_head may be
 * absent only when tied). 0 ok, -1 + err naming the first problem. */
int mu_ckpt_check_arch(mu_ckpt *c, char *err, size_t errlen);

/* Digest for stream headers: XXH3-128 (32 hex chars) over the base files' digests,
 * each delta's scale other than 1, then each delta's digest. Cached. 0 ok, -1 I/O error. */
int mu_ckpt_digest(mu_ckpt *c, char out[33]);
/* The same without deltas (what a delta's "base" metadata records). */
int mu_ckpt_base_digest(mu_ckpt *c, char out[33]);
void mu_ckpt_close(mu_ckpt *c);

/* For writers of deltas: sets format/version/base metadata on w ("base" = the digest of
 * c without its deltas; a delta trained on top of others stacks after them). 0 ok, -1 I/O. */
int mu_delta_writer_init(mu_st_writer *w, mu_ckpt *c);

/* Atomic model directories (mu-init, full-model export): write the files into
 * mu_dir_tmp_create's directory ("<final>.tmp.<pid>", created empty), then mu_dir_commit
 * moves it onto final in one rename (an existing final directory is swapped out with
 * RENAME_EXCHANGE and removed; it must hold only regular files). mu_dir_abort removes
 * the temp directory and its files. 0 ok / NULL or -1 + "path: what" in err. */
char *mu_dir_tmp_create(const char *final, char *err, size_t errlen);   /* caller frees */
int mu_dir_commit(const char *tmp, const char *final, char *err, size_t errlen);
void mu_dir_abort(const char *tmp);
#endif
