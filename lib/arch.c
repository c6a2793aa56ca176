/* arch.c — the parameter list of a llama-family config, in Hugging Face names. */
#include "arch.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* role -> HF name pattern (%d = layer) */
static const struct { const char *role, *fmt; } arch_names[] = {
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
    {"down", "model.layers.%d.mlp.down_proj.weight"},
    {"final_norm", "model.norm.weight"},
    {"lm_head", "lm_head.weight"},
};

int mu_arch_param_name(const char *role, int layer, char *buf, size_t buflen) {
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (!strcmp(arch_names[i].role, role)) {
            const char *fmt = arch_names[i].fmt;
            int n = strstr(fmt, "%d") ? snprintf(buf, buflen, fmt, layer) : snprintf(buf, buflen, "%s", fmt);
            return n < 0 || (size_t)n >= buflen ? -1 : 0;
        }
    return -1;
}

/* Appends one entry; role must be a static string from arch_names. */
static void arch_add(mu_param_info *p, int *n, const char *role, int layer, int ndim, int64_t d0, int64_t d1) {
    mu_param_info *e = &p[(*n)++];
    memset(e, 0, sizeof *e);
    for (size_t i = 0; i < sizeof arch_names / sizeof *arch_names; i++)
        if (!strcmp(arch_names[i].role, role)) e->role = arch_names[i].role;
    mu_arch_param_name(role, layer, e->name, sizeof e->name);
    e->ndim = ndim;
    e->shape[0] = d0;
    e->shape[1] = ndim > 1 ? d1 : 0;
    e->layer = layer;
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
        arch_add(p, &n, "q", l, 2, QD, D);
        arch_add(p, &n, "k", l, 2, KD, D);
        arch_add(p, &n, "v", l, 2, KD, D);
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
        arch_add(p, &n, "gate", l, 2, F, D);
        arch_add(p, &n, "up", l, 2, F, D);
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
                                 "q_norm", "k_norm", "attn_post_norm"};
    static const char *mlp[] = {"gate", "up", "down", "mlp_norm", "mlp_post_norm"};
    for (size_t i = 0; i < sizeof attn / sizeof *attn; i++) if (!strcmp(p->role, attn[i])) return 0;
    for (size_t i = 0; i < sizeof mlp / sizeof *mlp; i++) if (!strcmp(p->role, mlp[i])) return 1;
    return -1;
}

int mu_arch_is_norm(const mu_param_info *p) {
    return strstr(p->role, "norm") != NULL;
}

float mu_arch_stored_offset(const mu_config *c, const mu_param_info *p) {
    return c->norm_plus_one && mu_arch_is_norm(p) ? 1.0f : 0.0f;
}

int64_t mu_arch_numel(const mu_param_info *p, int n) {
    int64_t s = 0;
    for (int i = 0; i < n; i++) s += p[i].ndim == 1 ? p[i].shape[0] : p[i].shape[0] * p[i].shape[1];
    return s;
}
