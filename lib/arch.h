/* arch.h — the parameter tensors of a config, in Hugging Face names, with shapes.
 * One list, used by the model loader, mu-init, mu-train's full-model export and
 * mask shorthands. Order: embed, then per layer (attn_norm, q, k, v, [q_bias, k_bias,
 * v_bias], o, mlp_norm, gate, up, down), then final_norm, then lm_head (absent when tied).
 * OLMo-2 (post_norm, qk_norm): per layer q, k, v, q_norm, k_norm, o, attn_post_norm (HF
 * post_attention_layernorm, on the attention output), gate, up, down, mlp_post_norm.
 * GPT-NeoX (fused_qkv, layer_norm, plain_mlp; names gpt_neox.*): per layer attn_norm,
 * attn_norm_bias, qkv [H * 3 * hd, D] (each head's q, k, v rows together), qkv_bias, o,
 * o_bias, mlp_norm, mlp_norm_bias, up, up_bias, down, down_bias; final_norm,
 * final_norm_bias; lm_head (embed_out).
 * GPT-2 (names transformer.*): embed, pos_embed (wpe), then GPT-NeoX's roles per layer with
 * the projection weights stored [in, out] (Conv1D): qkv [D, 3 QD] (c_attn), o [QD, D], up
 * [D, F] (c_fc), down [F, D] (mlp.c_proj); the head tied unless tie_word_embeddings false.
 * Phi (names model.*): per layer attn_norm, attn_norm_bias (input_layernorm, the input of both
 * parallel branches), q, k, v, q_bias, k_bias, v_bias, o, o_bias (dense), up, up_bias (fc1),
 * down, down_bias (fc2); final_norm, final_norm_bias (final_layernorm); lm_head, lm_head_bias.
 * Phi-3 (names model.*, Llama's): per layer attn_norm, qkv [QD + 2 KD, D] (qkv_proj: the q,
 * then the k, then the v rows), o, mlp_norm, gate_up [2 F, D] (gate_up_proj: the gate, then
 * the up rows), down.
 * Shapes are PyTorch's: Linear weight [out, in]. */
#ifndef MU_ARCH_H
#define MU_ARCH_H
#include <stdint.h>
#include "config.h"

typedef struct {
    char name[96];           /* "model.layers.3.self_attn.q_proj.weight" */
    int ndim;                /* 1 or 2 */
    int64_t shape[2];
    int layer;               /* -1 global */
    const char *role;        /* static string: "embed","attn_norm","q","k","v","q_bias","k_bias",
                                "v_bias","o","mlp_norm","gate","up","down","final_norm","lm_head";
                                GPT-NeoX: "qkv","qkv_bias","o_bias","up_bias","down_bias",
                                "attn_norm_bias","mlp_norm_bias","final_norm_bias";
                                GPT-2: those and "pos_embed"; Phi: GPT-NeoX's biases with
                                q/k/v, no mlp_norm, and "lm_head_bias"; Phi-3: "qkv" and
                                "gate_up" */
} mu_param_info;

/* Returns the count (> 0) and a malloc'd array in *out (caller frees); -1 if the config's
 * arch is not supported. */
int mu_arch_params(const mu_config *c, mu_param_info **out);
/* Index of name in the list, or -1. */
int mu_arch_find(const mu_param_info *p, int n, const char *name);
/* HF name of a role at a layer (layer ignored for global roles) into buf; 0 ok, -1 unknown role. */
int mu_arch_param_name(const char *role, int layer, char *buf, size_t buflen);
/* The block of a layer's tensor: 0 attention (q, k, v, o, their biases, the input norm),
 * 1 MLP (gate, up, down, the post-attention norm), -1 neither (embed, final norm, head). */
int mu_arch_block(const mu_param_info *p);
/* 1 for a norm's weight (attn_norm, mlp_norm, final_norm; OLMo-2's q_norm, k_norm,
 * attn_post_norm, mlp_post_norm), not a LayerNorm's bias. */
int mu_arch_is_norm(const mu_param_info *p);
/* What the engine adds to a checkpoint's values of this tensor (and subtracts when it
 * writes one): 1 for the RMSNorm weights of a config with norm_plus_one (Gemma), else 0. */
float mu_arch_stored_offset(const mu_config *c, const mu_param_info *p);
/* Rows (GPT-2's c_attn: columns) of one head unit of tensor p at head granularity: head_dim,
 * or 3 head_dim for GPT-NeoX's fused query_key_value (weight and bias: a head's q, k and v
 * rows together). GPT-2's c_attn has 3 H units: the q heads, then the k and v heads. */
int mu_arch_head_rows(const mu_param_info *p, const mu_config *c);
/* 1 for a projection weight stored [in, out] (GPT-2's Conv1D: qkv, o, up, down). */
int mu_arch_is_conv1d(const mu_param_info *p, const mu_config *c);
/* Total number of parameters (elements) in the list. */
int64_t mu_arch_numel(const mu_param_info *p, int n);
#endif
