/* mask.h — which parameters a training run may change.
 *
 * A mask holds, per parameter tensor, a bitset over UNITS at one granularity:
 *   element  every element is a unit (units = numel)
 *   neuron   a value vector / MLP neuron: a ROW of gate_proj/up_proj (and of any other
 *            [out, in] matrix), a COLUMN of down_proj (and of o_proj)   (units = rows or cols)
 *   head     an attention head: head_dim consecutive rows of q/k/v_proj (and their biases),
 *            head_dim consecutive columns of o_proj           (units = heads of that tensor)
 *   matrix   the whole tensor (units = 1); "layer" masks are matrix masks over a layer's tensors
 * Whether units run along rows (axis 0) or columns (axis 1) follows from the tensor's name:
 * columns for down_proj and o_proj (their inputs are the neurons / heads; GPT-NeoX's
 * dense_4h_to_h and attention.dense) and for GPT-2's c_attn and c_fc (Conv1D weights,
 * stored [in, out]: their outputs are the columns), rows otherwise (GPT-2's c_proj's rows
 * are its inputs).
 * Tensors absent from a mask are frozen.
 *
 * On disk: a mu stream of kind "mask" (man/mu-stream.5): header meta {granularity,
 * params_selected, params_total}; one record per tensor {"name","shape","granularity",
 * "units","bits" (bin, LSB-first over units),"selected","params"}. */
#ifndef MU_MASK_H
#define MU_MASK_H
#include <stddef.h>
#include <stdint.h>
#include "arch.h"
#include <msgpack.h>

typedef enum { MU_GRAN_ELEMENT = 0, MU_GRAN_NEURON, MU_GRAN_HEAD, MU_GRAN_MATRIX } mu_granularity;

const char *mu_gran_name(mu_granularity g);                 /* "element", ... */
int mu_gran_parse(const char *s, mu_granularity *out);      /* 0 ok, -1 unknown */

typedef struct {
    char *name;              /* HF parameter name */
    int ndim;                /* 1 or 2 */
    int64_t shape[2];
    mu_granularity gran;
    int64_t units;
    uint8_t *bits;           /* (units+7)/8 bytes, bit u = bits[u>>3] >> (u&7) & 1 */
} mu_mask_tensor;

typedef struct {
    char granularity[16];    /* header meta: "element", "neuron", "head", "matrix", "layer", "mixed" */
    int n;
    mu_mask_tensor *t;
    int64_t params_total;    /* parameters in the whole model (for the fraction) */
} mu_mask;

void mu_mask_init(mu_mask *m, const char *granularity, int64_t params_total);
void mu_mask_free(mu_mask *m);
/* Adds a tensor with no unit selected. units: for element = numel, matrix = 1, neuron =
 * rows/cols along the unit axis, head = number of heads (must divide that axis).
 * Returns the tensor, or NULL + err when units do not fit the shape or the name repeats. */
mu_mask_tensor *mu_mask_add(mu_mask *m, const char *name, int ndim, const int64_t *shape,
                            mu_granularity g, int64_t units, char *err, size_t errlen);
int mu_mask_find(const mu_mask *m, const char *name);      /* index or -1 */

static inline int mu_mask_get(const mu_mask_tensor *t, int64_t u) { return t->bits[u >> 3] >> (u & 7) & 1; }
static inline void mu_mask_set(mu_mask_tensor *t, int64_t u, int on) {
    if (on) t->bits[u >> 3] |= (uint8_t)(1u << (u & 7));
    else t->bits[u >> 3] &= (uint8_t)~(1u << (u & 7));
}

int64_t mu_mask_tensor_numel(const mu_mask_tensor *t);
int mu_mask_unit_axis(const char *name, mu_granularity g); /* 0 rows, 1 columns, -1 n/a */
int64_t mu_mask_selected(const mu_mask_tensor *t);        /* units selected */
int64_t mu_mask_tensor_params(const mu_mask_tensor *t);   /* elements selected */
int64_t mu_mask_params(const mu_mask *m);                 /* elements selected, all tensors */
/* Sorted flat element indices of the selected units. Returns the count; *idx is malloc'd
 * (NULL when the count is 0). */
int64_t mu_mask_indices(const mu_mask_tensor *t, int64_t **idx);
/* Whether flat element i is selected. */
int mu_mask_element(const mu_mask_tensor *t, int64_t i);
/* The unit holding flat element i (0 <= i < numel). */
int64_t mu_mask_unit_of(const mu_mask_tensor *t, int64_t i);
/* Units of a tensor of this name and shape at granularity g: numel (element), rows or
 * columns along mu_mask_unit_axis (neuron), that length / head_dim (head), 1 (matrix).
 * -1 when head_dim does not divide the unit axis. */
int64_t mu_mask_units_for(const char *name, int ndim, const int64_t *shape, mu_granularity g,
                          int head_dim);

/* Checks the mask against a model's parameter list: every name exists with the same
 * shape. 0 ok, -1 + "tensor X: ..." in err. */
int mu_mask_check(const mu_mask *m, const mu_param_info *p, int np, char *err, size_t errlen);

/* Shorthand masks over whole matrices. spec is one or more terms joined by '+':
 *   all | mlp:L | attn:L | layers:L | mlp.gate:L | mlp.up:L | mlp.down:L |
 *   attn.q:L | attn.k:L | attn.v:L | attn.o:L | embed | lm_head | norms:L
 * L is a layer list: "3", "2-6", "0,4,7", "all". mlp = gate, up, down; attn = q, k, v, o
 * (+ biases); layers = every tensor of the layer (norms included).
 * 0 ok, -1 + err. */
int mu_mask_from_spec(const char *spec, const mu_param_info *p, int np, mu_mask *out,
                      char *err, size_t errlen);

/* A mask from a command-line argument: a mask stream file when arg names one (checked
 * against the parameter list; errors start with the path), else a shorthand spec (errors
 * end with "(and no file of that name)"). 0 ok, -1 + err. */
int mu_mask_from_arg(const char *arg, const mu_param_info *p, int np, mu_mask *out, char *err,
                     size_t errlen);

/* The fields every per-tensor record of a mask or scores stream starts with: "name",
 * "shape", "granularity", "units". pack: packs those 4 key/value pairs into a map the
 * caller opened (with 4 + its own pairs). read: validates them (shape 1-D or 2-D of
 * positive sizes, a known granularity, units >= 1; units against the shape is
 * mu_mask_add's job); *name is malloc'd (NULL on failure). 0 ok, -1 + message without the
 * file/record prefix. */
void mu_mask_pack_layout(msgpack_packer *pk, const char *name, int ndim, const int64_t *shape,
                         mu_granularity g, int64_t units);
int mu_mask_read_layout(const msgpack_object *rec, char **name, int *ndim, int64_t shape[2],
                        mu_granularity *g, int64_t *units, char *msg, size_t len);

/* Writes m as a "mask" stream to path ("-" = stdout), atomically. Tool-side: dies on I/O
 * errors like every mu_writer. inputs (may be NULL) are noted in the header as
 * {role: path} pairs, n_inputs of them. */
void mu_mask_write(const mu_mask *m, const char *path, const char *const *input_roles,
                   const char *const *input_paths, int n_inputs);
/* Reads and validates a mask stream (kind, shapes, units vs shape, bits length, selected
 * and params counts). 0 ok, -1 + "path: record N: what". */
int mu_mask_read(const char *path, mu_mask *m, char *err, size_t errlen);
#endif
