/* arch.c — the parameter list of a config, in Hugging Face names: the Llama family's
 * layout (Llama, Mistral, Qwen, Gemma, OLMo-2), GPT-NeoX's, GPT-2's or Phi's. */
#include "arch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *role, *fmt; } arch_name;

/* role -> HF name pattern (%d = layer) */
static const arch_name arch_names[] = {
    {"embed", "model.embed_tokens.weight"},
    {"attn_norm", "model.layers.%d.input_layernorm.weight"},
    {"q", "model.layers.%d.self_attn.q_proj.weight"},
    {"k", "model.layers.%d.self_attn.k_proj.weight"},
    {"v", "model.layers.%d.self_attn.v_proj.weight"},
    {"q_bias", "model.layers.%d.self_attn.q_proj.bias"},
    {"k_bias", "model.layers.%d.self_attn.k_proj.bias"},
    {"v_bias", "model.layers.%d.self_attn.v_proj.bias"},
    {"o", "model.layers.%d.self_attn.o_proj.weight"},
    {"mlp_norm", "model.layers.%d.post_attention_layernorm.weight"},
    {"q_norm", "model.layers.%d.self_attn.q_norm.weight"},             /* OLMo-2 */
    {"k_norm", "model.layers.%d.self_attn.k_norm.weight"},
    {"attn_post_norm", "model.layers.%d.post_attention_layernorm.weight"},
    {"mlp_post_norm", "model.layers.%d.post_feedforward_layernorm.weight"},
    {"gate", "model.layers.%d.mlp.gate_proj.weight"},
    {"up", "model.layers.%d.mlp.up_proj.weight"},
    {"qkv", "model.layers.%d.self_attn.qkv_proj.weight"},                /* Phi-3 */
    {"gate_up", "model.layers.%d.mlp.gate_up_proj.weight"},
    {"down", "model.layers.%d.mlp.down_proj.weight"},
    {"final_norm", "model.norm.weight"},
    {"lm_head", "lm_head.weight"},
    {NULL, NULL}
};

/* GPT-NeoX (GPTNeoXForCausalLM): LayerNorms with biases, fused q/k/v, biases everywhere */
static const arch_name neox_names[] = {
    {"embed", "gpt_neox.embed_in.weight"},
    {"attn_norm", "gpt_neox.layers.%d.input_layernorm.weight"},
    {"attn_norm_bias", "gpt_neox.layers.%d.input_layernorm.bias"},
    {"qkv", "gpt_neox.layers.%d.attention.query_key_value.weight"},
    {"qkv_bias", "gpt_neox.layers.%d.attention.query_key_value.bias"},
    {"o", "gpt_neox.layers.%d.attention.dense.weight"},
    {"o_bias", "gpt_neox.layers.%d.attention.dense.bias"},
    {"mlp_norm", "gpt_neox.layers.%d.post_attention_layernorm.weight"},
    {"mlp_norm_bias", "gpt_neox.layers.%d.post_attention_layernorm.bias"},
    {"up", "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight"},
    {"up_bias", "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias"},
    {"down", "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight"},
    {"down_bias", "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias"},
    {"final_norm", "gpt_neox.final_layer_norm.weight"},
    {"final_norm_bias", "gpt_neox.final_layer_norm.bias"},
    {"lm_head", "embed_out.weight"},
    {NULL, NULL}
};

/* GPT-2 (GPT2LMHeadModel): learned positions, LayerNorms with biases, Conv1D weights stored
 * [in, out], fused c_attn (all q, then k, then v outputs), tied head */
static const arch_name gpt2_names[] = {
    {"embed", "transformer.wte.weight"},
    {"pos_embed", "transformer.wpe.weight"},
    {"attn_norm", "transformer.h.%d.ln_1.weight"},
    {"attn_norm_bias", "transformer.h.%d.ln_1.bias"},
    {"qkv", "transformer.h.%d.attn.c_attn.weight"},
    {"qkv_bias", "transformer.h.%d.attn.c_attn.bias"},
    {"o", "transformer.h.%d.attn.c_proj.weight"},
    {"o_bias", "transformer.h.%d.attn.c_proj.bias"},
    {"mlp_norm", "transformer.h.%d.ln_2.weight"},
    {"mlp_norm_bias", "transformer.h.%d.ln_2.bias"},
    {"up", "transformer.h.%d.mlp.c_fc.weight"},
    {"up_bias", "transformer.h.%d.mlp.c_fc.bias"},
    {"down", "transformer.h.%d.mlp.c_proj.weight"},
    {"down_bias", "transformer.h.%d.mlp.c_proj.bias"},
    {"final_norm", "transformer.ln_f.weight"},
    {"final_norm_bias", "transformer.ln_f.bias"},
    {"lm_head", "lm_head.weight"},
    {NULL, NULL}
};

/* Phi (PhiForCausalLM): GPT-NeoX's LayerNorms and biases with separate q/k/v, one input norm
 * for both parallel branches (no post-attention norm), a bias on lm_head; the roles not here
 * (embed, attn_norm, q, k, v and their biases, lm_head) have Llama's names */
static const arch_name phi_names[] = {
    {"attn_norm_bias", "model.layers.%d.input_layernorm.bias"},
    {"o", "model.layers.%d.self_attn.dense.weight"},
    {"o_bias", "model.layers.%d.self_attn.dense.bias"},
    {"up", "model.layers.%d.mlp.fc1.weight"},
    {"up_bias", "model.layers.%d.mlp.fc1.bias"},
    {"down", "model.layers.%d.mlp.fc2.weight"},
    {"down_bias", "model.layers.%d.mlp.fc2.bias"},
    {"final_norm", "model.final_layernorm.weight"},
    {"final_norm_bias", "model.final_layernorm.bias"},
    {"lm_head_bias", "lm_head.bias"},
    {NULL, NULL}
};

static const arch_name *find_role(const arch_name *t, const char *role) {
    for (; t->role; t++)
        if (!strcmp(t->role, role)) return t;
    return NULL;
}

/* A name of table t into buf; 0 ok, -1 unknown role or too long. */
static int table_name(const arch_name *t, const char *role, int layer, char *buf, size_t buflen) {
    const arch_name *e = find_role(t, role);
    if (!e) return -1;
    int n = strstr(e->fmt, "%d") ? snprintf(buf, buflen, e->fmt, layer) : snprintf(buf, buflen, "%s", e->fmt);
    return n < 0 || (size_t)n >= buflen ? -1 : 0;
}

int mu_arch_param_name(const char *role, int layer, char *buf, size_t buflen) {
    return table_name(arch_names, role, layer, buf, buflen);
}

/* Appends one entry of table t (its role string is the entry's). */
static void table_add(const arch_name *t, mu_param_info *p, int *n, const char *role, int layer, int ndim,
                      int64_t d0, int64_t d1) {
    mu_param_info *e = &p[(*n)++];
    memset(e, 0, sizeof *e);
    e->role = find_role(t, role)->role;
    table_name(t, role, layer, e->name, sizeof e->name);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim > 1 ? d1 : 0;
    e->layer = layer;
}

static void arch_add(mu_param_info *p, int *n, const char *role, int layer, int ndim, int64_t d0, int64_t d1) {
    table_add(arch_names, p, n, role, layer, ndim, d0, d1);
}

/* A projection weight [out, in], or as GPT-2's Conv1D stores it, [in, out]. */
static void proj_add(const arch_name *t, mu_param_info *p, int *n, const char *role, int layer,
                     int64_t out, int64_t in, int conv1d) {
    table_add(t, p, n, role, layer, 2, conv1d ? in : out, conv1d ? out : in);
}

/* GPT-NeoX's and GPT-2's list: embed, [pos_embed [max_pos, D] (GPT-2)], per layer
 * (attn_norm, attn_norm_bias, qkv [3 QD, D], [qkv_bias], o [D, QD], [o_bias], mlp_norm,
 * mlp_norm_bias, up [F, D], [up_bias], down [D, F], [down_bias]), final_norm,
 * final_norm_bias, lm_head (absent when tied). GPT-2's projection weights are its Conv1D
 * ones as stored, [in, out]; its names are gpt2_names, GPT-NeoX's neox_names. */
static int gpt_params(const mu_config *c, mu_param_info **out) {
    int per_layer = 8 + (c->qkv_bias ? 1 : 0) + (c->o_bias ? 1 : 0) + (c->mlp_bias ? 2 : 0);
    mu_param_info *p = calloc((size_t)(5 + c->n_layer * per_layer), sizeof *p);
    if (!p) return -1;
    int n = 0, cv = c->conv1d;
    int64_t D = c->d_model, F = c->d_ff, V = c->vocab, QD = (int64_t)c->n_head * c->head_dim;
    const arch_name *t = c->fused_qkv == MU_QKV_BLOCKS ? gpt2_names : neox_names;
    table_add(t, p, &n, "embed", -1, 2, V, D);
    if (c->learned_pos) table_add(t, p, &n, "pos_embed", -1, 2, c->max_pos, D);
    for (int l = 0; l < c->n_layer; l++) {
        table_add(t, p, &n, "attn_norm", l, 1, D, 0);
        table_add(t, p, &n, "attn_norm_bias", l, 1, D, 0);
        proj_add(t, p, &n, "qkv", l, 3 * QD, D, cv);
        if (c->qkv_bias) table_add(t, p, &n, "qkv_bias", l, 1, 3 * QD, 0);
        proj_add(t, p, &n, "o", l, D, QD, cv);
        if (c->o_bias) table_add(t, p, &n, "o_bias", l, 1, D, 0);
        table_add(t, p, &n, "mlp_norm", l, 1, D, 0);
        table_add(t, p, &n, "mlp_norm_bias", l, 1, D, 0);
        proj_add(t, p, &n, "up", l, F, D, cv);
        if (c->mlp_bias) table_add(t, p, &n, "up_bias", l, 1, F, 0);
        proj_add(t, p, &n, "down", l, D, F, cv);
        if (c->mlp_bias) table_add(t, p, &n, "down_bias", l, 1, D, 0);
    }
    table_add(t, p, &n, "final_norm", -1, 1, D, 0);
    table_add(t, p, &n, "final_norm_bias", -1, 1, D, 0);
    if (!c->tie_embeddings) table_add(t, p, &n, "lm_head", -1, 2, V, D);
    *out = p;
    return n;
}

/* One entry of Phi's list: its own name, else Llama's. */
static void phi_add(mu_param_info *p, int *n, const char *role, int layer, int ndim, int64_t d0, int64_t d1) {
    table_add(find_role(phi_names, role) ? phi_names : arch_names, p, n, role, layer, ndim, d0, d1);
}

/* Phi's list: embed, per layer (attn_norm, attn_norm_bias, q [QD, D], k, v [KD, D], their
 * biases, o [D, QD], o_bias, up [F, D], up_bias, down [D, F], down_bias), final_norm,
 * final_norm_bias, lm_head (absent when tied), lm_head_bias. */
static int phi_params(const mu_config *c, mu_param_info **out) {
    mu_param_info *p = calloc((size_t)(5 + c->n_layer * 14), sizeof *p);
    if (!p) return -1;
    int n = 0;
    int64_t D = c->d_model, F = c->d_ff, V = c->vocab;
    int64_t QD = (int64_t)c->n_head * c->head_dim, KD = (int64_t)c->n_kv_head * c->head_dim;
    phi_add(p, &n, "embed", -1, 2, V, D);
    for (int l = 0; l < c->n_layer; l++) {
        phi_add(p, &n, "attn_norm", l, 1, D, 0);
        phi_add(p, &n, "attn_norm_bias", l, 1, D, 0);
        phi_add(p, &n, "q", l, 2, QD, D);
        phi_add(p, &n, "k", l, 2, KD, D);
        phi_add(p, &n, "v", l, 2, KD, D);
        phi_add(p, &n, "q_bias", l, 1, QD, 0);
        phi_add(p, &n, "k_bias", l, 1, KD, 0);
        phi_add(p, &n, "v_bias", l, 1, KD, 0);
        phi_add(p, &n, "o", l, 2, D, QD);
        phi_add(p, &n, "o_bias", l, 1, D, 0);
        phi_add(p, &n, "up", l, 2, F, D);
        phi_add(p, &n, "up_bias", l, 1, F, 0);
        phi_add(p, &n, "down", l, 2, D, F);
        phi_add(p, &n, "down_bias", l, 1, D, 0);
    }
    phi_add(p, &n, "final_norm", -1, 1, D, 0);
    phi_add(p, &n, "final_norm_bias", -1, 1, D, 0);
    if (!c->tie_embeddings) phi_add(p, &n, "lm_head", -1, 2, V, D);
    phi_add(p, &n, "lm_head_bias", -1, 1, V, 0);
    *out = p;
    return n;
}

/* The MLP's input norm: post_attention_layernorm, or with norms on both sides of the
 * blocks (Gemma-2, whose post_attention_layernorm is the attention output's)
 * pre_feedforward_layernorm. */
static void add_mlp_norm(mu_param_info *p, int *n, const mu_config *c, int l, int64_t D) {
    arch_add(p, n, "mlp_norm", l, 1, D, 0);
    if (c->sandwich_norm)
        snprintf(p[*n - 1].name, sizeof p[*n - 1].name, "model.layers.%d.pre_feedforward_layernorm.weight", l);
}

int mu_arch_params(const mu_config *c, mu_param_info **out) {
    if (strcmp(c->arch, "llama") || c->n_layer < 1) return -1;
    if (c->shared_norm || c->head_bias) {   /* Phi's whole layout, or none */
        int phi = c->shared_norm && c->head_bias && c->parallel_residual && c->layer_norm && c->plain_mlp &&
                  !c->fused_qkv && c->qkv_bias && c->o_bias && c->mlp_bias && !c->learned_pos && !c->conv1d &&
                  !c->post_norm && !c->qk_norm;
        return phi ? phi_params(c, out) : -1;
    }
    if (c->fused_gate_up) {   /* Phi-3: Llama's layout with qkv_proj and gate_up_proj */
        if (c->fused_qkv != MU_QKV_BLOCKS || c->layer_norm || c->plain_mlp || c->learned_pos || c->conv1d ||
            c->qkv_bias || c->o_bias || c->mlp_bias || c->qk_norm || c->post_norm)
            return -1;
    } else if (c->fused_qkv || c->layer_norm || c->plain_mlp || c->learned_pos || c->conv1d) {
        /* only GPT-NeoX's and GPT-2's whole layouts have names */
        if (!(c->fused_qkv && c->layer_norm && c->plain_mlp) || c->post_norm || c->qk_norm) return -1;
        int gpt2 = c->fused_qkv == MU_QKV_BLOCKS;   /* GPT-2 has it all, GPT-NeoX none of it */
        if (gpt2 != (c->learned_pos && c->conv1d && c->qkv_bias && c->o_bias && c->mlp_bias) ||
            (!gpt2 && (c->learned_pos || c->conv1d)))
            return -1;
        return gpt_params(c, out);
    }
    if (c->o_bias || c->mlp_bias) return -1;
    int per_layer = 9 + (c->qkv_bias ? 3 : 0) + (c->qk_norm ? 2 : 0) + (c->sandwich_norm ? 2 : 0);
    int cap = 3 + c->n_layer * per_layer;
    mu_param_info *p = calloc((size_t)cap, sizeof *p);
    if (!p) return -1;
    int n = 0;
    int64_t D = c->d_model, F = c->d_ff, V = c->vocab;
    int64_t QD = (int64_t)c->n_head * c->head_dim, KD = (int64_t)c->n_kv_head * c->head_dim;
    arch_add(p, &n, "embed", -1, 2, V, D);
    for (int l = 0; l < c->n_layer; l++) {
        if (!c->post_norm || c->sandwich_norm) arch_add(p, &n, "attn_norm", l, 1, D, 0);
        if (c->fused_qkv) {
            arch_add(p, &n, "qkv", l, 2, QD + 2 * KD, D);
        } else {
            arch_add(p, &n, "q", l, 2, QD, D);
            arch_add(p, &n, "k", l, 2, KD, D);
            arch_add(p, &n, "v", l, 2, KD, D);
        }
        if (c->qkv_bias) {
            arch_add(p, &n, "q_bias", l, 1, QD, 0);
            arch_add(p, &n, "k_bias", l, 1, KD, 0);
            arch_add(p, &n, "v_bias", l, 1, KD, 0);
        }
        if (c->qk_norm) {
            int per_head = c->qk_norm == MU_QK_NORM_PER_HEAD;
            arch_add(p, &n, "q_norm", l, 1, per_head ? c->head_dim : QD, 0);
            arch_add(p, &n, "k_norm", l, 1, per_head ? c->head_dim : KD, 0);
        }
        arch_add(p, &n, "o", l, 2, D, QD);
        if (c->post_norm) arch_add(p, &n, "attn_post_norm", l, 1, D, 0);
        if (!c->post_norm || c->sandwich_norm) add_mlp_norm(p, &n, c, l, D);
        if (c->fused_gate_up) {
            arch_add(p, &n, "gate_up", l, 2, 2 * F, D);
        } else {
            arch_add(p, &n, "gate", l, 2, F, D);
            arch_add(p, &n, "up", l, 2, F, D);
        }
        arch_add(p, &n, "down", l, 2, D, F);
        if (c->post_norm) arch_add(p, &n, "mlp_post_norm", l, 1, D, 0);
    }
    arch_add(p, &n, "final_norm", -1, 1, D, 0);
    if (!c->tie_embeddings) arch_add(p, &n, "lm_head", -1, 2, V, D);
    *out = p;
    return n;
}

int mu_arch_find(const mu_param_info *p, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(p[i].name, name)) return i;
    return -1;
}

int mu_arch_block(const mu_param_info *p) {
    static const char *attn[] = {"q", "k", "v", "o", "q_bias", "k_bias", "v_bias", "attn_norm",
                                 "q_norm", "k_norm", "attn_post_norm", "qkv", "qkv_bias", "o_bias",
                                 "attn_norm_bias"};
    static const char *mlp[] = {"gate", "up", "down", "mlp_norm", "mlp_post_norm", "up_bias", "down_bias",
                                "mlp_norm_bias", "gate_up"};
    for (size_t i = 0; i < sizeof attn / sizeof *attn; i++) if (!strcmp(p->role, attn[i])) return 0;
    for (size_t i = 0; i < sizeof mlp / sizeof *mlp; i++) if (!strcmp(p->role, mlp[i])) return 1;
    return -1;
}

int mu_arch_is_norm(const mu_param_info *p) {
    return strstr(p->role, "norm") != NULL && strstr(p->role, "_bias") == NULL;
}

float mu_arch_stored_offset(const mu_config *c, const mu_param_info *p) {
    return c->norm_plus_one && mu_arch_is_norm(p) ? 1.0f : 0.0f;
}

int mu_arch_head_rows(const mu_param_info *p, const mu_config *c) {
    int fused = !strcmp(p->role, "qkv") || !strcmp(p->role, "qkv_bias");
    return fused && c->fused_qkv == MU_QKV_PER_HEAD ? 3 * c->head_dim : c->head_dim;
}

int mu_arch_is_conv1d(const mu_param_info *p, const mu_config *c) {
    static const char *roles[] = {"qkv", "o", "up", "down"};
    if (!c->conv1d || p->ndim != 2) return 0;
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (!strcmp(p->role, roles[i])) return 1;
    return 0;
}

int64_t mu_arch_numel(const mu_param_info *p, int n) {
    int64_t s = 0;
    for (int i = 0; i < n; i++) s += p[i].ndim == 1 ? p[i].shape[0] : p[i].shape[0] * p[i].shape[1];
    return s;
}
