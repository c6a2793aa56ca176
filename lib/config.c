/* config.c — model hyper-parameters from HF config.json or GGUF metadata, and back to JSON. */
#include "err.h"
#include "config.h"
#include "cli.h"
#include "gguf.h"
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CFG_MAX_SIZE (1 << 24)   /* any single size above this is certainly a corrupt file */

void mu_config_init(mu_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->arch, "llama");
    strcpy(c->model_type, "llama");
    strcpy(c->hidden_act, "silu");
    c->rms_eps = 1e-6f;
    c->rope_theta = 10000.0f;
    c->max_pos = 2048;
    c->bos_id = c->eos_id = c->pad_id = -1;
}

/* The HF model types this loader maps onto the llama family engine. */
static const struct {
    const char *model_type, *hf_arch;
    int qkv_bias, gemma, olmo2, gemma2, gemma3, qwen3, neox, gpt2, phi, phi3;
} cfg_types[] = {
    {"llama", "LlamaForCausalLM", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"mistral", "MistralForCausalLM", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"qwen2", "Qwen2ForCausalLM", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"qwen3", "Qwen3ForCausalLM", 0, 0, 0, 0, 0, 1, 0, 0, 0, 0},
    {"gemma", "GemmaForCausalLM", 0, 1, 0, 0, 0, 0, 0, 0, 0, 0},
    {"olmo2", "Olmo2ForCausalLM", 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
    {"gemma2", "Gemma2ForCausalLM", 0, 1, 0, 1, 0, 0, 0, 0, 0, 0},
    {"gemma3_text", "Gemma3ForCausalLM", 0, 1, 0, 0, 1, 0, 0, 0, 0, 0},
    {"gpt_neox", "GPTNeoXForCausalLM", 1, 0, 0, 0, 0, 0, 1, 0, 0, 0},
    {"gpt2", "GPT2LMHeadModel", 1, 0, 0, 0, 0, 0, 0, 1, 0, 0},
    {"phi", "PhiForCausalLM", 1, 0, 0, 0, 0, 0, 0, 0, 1, 0},
    {"phi3", "Phi3ForCausalLM", 0, 0, 0, 0, 0, 0, 0, 0, 0, 1},
};
#define SUPPORTED_TYPES "llama, mistral, qwen2, qwen3, gemma, gemma2, gemma3_text, olmo2, gpt_neox, gpt2, phi, phi3"
#define NEOX_ROTARY_PCT 0.25f    /* GPTNeoXConfig's default rotary_pct */
#define PHI_ROTARY_PCT 0.5f      /* PhiConfig's default partial_rotary_factor */

int mu_config_rotary_dims(const mu_config *c) { return c->rotary_dim > 0 ? c->rotary_dim : c->head_dim; }

/* RoPE frequencies (HF _compute_default / _compute_llama3 / linear) */
static void rope_inv_freq(const mu_config *c, int long_ctx, float *inv_freq) {
    int hd = mu_config_rotary_dims(c);
    for (int i = 0; i < hd / 2; i++) {
        float base_pow = powf(c->rope_theta, (float)(2 * i) / (float)hd), f = 1.0f / base_pow;
        if (!strcmp(c->rope_scaling, "longrope")) {   /* 1 / (factor_i base^(2i/d)), as transformers */
            const float *ext = long_ctx ? c->rope_long : c->rope_short;
            f = 1.0f / (ext[i] * base_pow);
        } else if (!strcmp(c->rope_scaling, "linear") && c->rope_factor > 0) {
            f /= c->rope_factor;
        } else if (!strcmp(c->rope_scaling, "llama3")) {
            double factor = c->rope_factor, lo = c->rope_low_freq, hi = c->rope_high_freq;
            double old = c->rope_orig_max_pos;
            double lo_wl = old / lo, hi_wl = old / hi, wl = 2 * M_PI / f;
            if (wl > lo_wl) {
                f = (float)(f / factor);
            } else if (wl >= hi_wl) {        /* medium: smooth interpolation */
                double smooth = (old / wl - lo) / (hi - lo);
                f = (float)((1 - smooth) * f / factor + smooth * f);
            }
        }
        inv_freq[i] = f;
    }
}

void mu_rope_inv_freq(const mu_config *c, float *inv_freq) { rope_inv_freq(c, 0, inv_freq); }

void mu_rope_inv_freq_long(const mu_config *c, float *inv_freq) { rope_inv_freq(c, 1, inv_freq); }

float mu_config_attn_scale(const mu_config *c) {
    return 1.0f / sqrtf(c->query_scalar > 0 ? c->query_scalar : (float)c->head_dim);
}

int mu_config_layer_window(const mu_config *c, int L) {
    if (c->sliding_window <= 0 || L < c->window_from) return 0;
    if (c->global_every > 0 && (L + 1) % c->global_every == 0) return 0;
    return c->sliding_window;
}

int mu_config_gelu(const mu_config *c, int *tanh_form) {
    *tanh_form = 0;
    if (!strcmp(c->hidden_act, "silu")) return 0;
    if (!strcmp(c->hidden_act, "gelu")) return 1;
    if (!strcmp(c->hidden_act, "gelu_pytorch_tanh") || !strcmp(c->hidden_act, "gelu_new")) {
        *tanh_form = 1;
        return 1;
    }
    return -1;
}

static int cfg_type_index(const char *model_type) {
    for (size_t i = 0; i < sizeof cfg_types / sizeof *cfg_types; i++)
        if (!strcmp(cfg_types[i].model_type, model_type)) return (int)i;
    return -1;
}

/* The conventions of a family (model_type index ti) beyond Llama's layout, as transformers'
 * config classes default them: Gemma's norms by 1 + w, scaled embeddings, tied head and
 * gelu's tanh form; Gemma-2's as well, with norms on both sides of each block, soft-caps,
 * query_pre_attn_scalar and a window on even layers; Gemma-3's as Gemma-2's but without
 * soft-caps, with q/k norms per head and a window on five layers of six, rotated by their
 * own base; OLMo-2's output and q/k norms; Qwen3's q/k norms per head; GPT-NeoX's LayerNorms,
 * plain GELU MLP, fused q/k/v, a quarter of each head rotating, parallel residual and biases
 * on every projection; GPT-2's LayerNorms, plain gelu_new MLP, fused q/k/v in blocks,
 * learned positions, Conv1D weights and tied head; Phi's as GPT-NeoX's with separate q/k/v,
 * one input norm for both parallel branches, gelu_new and a bias on lm_head; Phi-3's as
 * Llama's with q, k, v fused in blocks (qkv_proj) and gate, up fused (gate_up_proj). */
static void set_family(mu_config *c, int ti) {
    if (cfg_types[ti].gemma) {
        c->norm_plus_one = c->embed_scale = c->tie_embeddings = 1;
        strcpy(c->hidden_act, "gelu_pytorch_tanh");
    }
    if (cfg_types[ti].olmo2) {
        c->post_norm = 1;
        c->qk_norm = MU_QK_NORM_ALL;
    }
    if (cfg_types[ti].gemma2 || cfg_types[ti].gemma3) {
        c->post_norm = c->sandwich_norm = 1;
        c->query_scalar = 256.0f;
        c->sliding_window = 4096;
    }
    if (cfg_types[ti].gemma2) {
        c->attn_softcap = 50.0f;
        c->final_softcap = 30.0f;
        c->global_every = 2;
    }
    if (cfg_types[ti].qwen3) c->qk_norm = MU_QK_NORM_PER_HEAD;
    if (cfg_types[ti].gemma3) {
        c->qk_norm = MU_QK_NORM_PER_HEAD;
        c->global_every = 6;
        c->rope_local_theta = 10000.0f;
    }
    if (cfg_types[ti].neox || cfg_types[ti].gpt2 || cfg_types[ti].phi) {
        c->layer_norm = c->plain_mlp = 1;
        c->qkv_bias = c->o_bias = c->mlp_bias = 1;
        c->rms_eps = 1e-5f;
        strcpy(c->hidden_act, "gelu");
    }
    if (cfg_types[ti].neox) c->fused_qkv = MU_QKV_PER_HEAD, c->parallel_residual = 1;
    if (cfg_types[ti].gpt2) {
        c->fused_qkv = MU_QKV_BLOCKS;
        c->learned_pos = c->conv1d = c->tie_embeddings = 1;
        strcpy(c->hidden_act, "gelu_new");
    }
    if (cfg_types[ti].phi) {
        c->parallel_residual = c->shared_norm = c->head_bias = 1;
        strcpy(c->hidden_act, "gelu_new");
    }
    if (cfg_types[ti].phi3) c->fused_qkv = MU_QKV_BLOCKS, c->fused_gate_up = 1;
}

int mu_config_set_model_type(mu_config *c, const char *model_type) {
    int ti = cfg_type_index(model_type);
    if (ti < 0) return -1;
    strcpy(c->model_type, cfg_types[ti].model_type);
    set_family(c, ti);
    return 0;
}

/* ------------------------------------------------------------------ JSON in */

typedef struct { const char *name; char *err; size_t errlen; } jctx;

/* Integer field: absent or null keeps *out; present must be an integer in [lo, hi]. */
static int j_int(jctx *j, json_t *root, const char *key, int *out, long long lo, long long hi) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e15)
        x = (long long)json_real_value(v);
    else {
        mu_set_err(j->err, j->errlen, "%s: \"%s\" is not an integer", j->name, key);
        return -1;
    }
    if (x < lo || x > hi) {
        mu_set_err(j->err, j->errlen, "%s: \"%s\" = %lld out of range [%lld, %lld]", j->name, key, x, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int j_num(jctx *j, json_t *root, const char *key, float *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        mu_set_err(j->err, j->errlen, "%s: \"%s\" is not a finite number", j->name, key);
        return -1;
    }
    *out = (float)json_number_value(v);
    return 0;
}

static int j_bool(jctx *j, json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) {
        mu_set_err(j->err, j->errlen, "%s: \"%s\" is not true/false", j->name, key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

static int j_str(jctx *j, json_t *root, const char *key, char *out, size_t outlen) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) >= outlen) {
        mu_set_err(j->err, j->errlen, "%s: \"%s\" is not a string (of < %zu chars)", j->name, key, outlen);
        return -1;
    }
    memset(out, 0, outlen);   /* no bytes of an earlier value after the NUL */
    strcpy(out, json_string_value(v));
    return 0;
}

/* Token id: an integer, null, or a list of integers (the first is used: Llama 3.1 eos). */
static int j_token_id(jctx *j, json_t *root, const char *key, int *out) {
    json_t *v = json_object_get(root, key);
    if (json_is_array(v)) {
        if (!json_array_size(v)) return 0;
        json_t *tmp = json_object();
        json_object_set(tmp, key, json_array_get(v, 0));
        int rc = j_int(j, tmp, key, out, 0, INT32_MAX);
        json_decref(tmp);
        return rc;
    }
    return j_int(j, root, key, out, 0, INT32_MAX);
}

/* A rope scaling object (rope_scaling, or transformers 5's rope_parameters): type or
 * rope_type "default" (none), "llama3" or "linear", with their factors. */
/* longrope's factors: rs[key], an array of 1 to MU_ROPE_PAIRS_MAX positive numbers, into
 * out, its length into *n. */
static int j_factors(jctx *j, json_t *rs, const char *key, float *out, int *n) {
    json_t *a = json_object_get(rs, key);
    size_t len = json_array_size(a);
    if (!json_is_array(a) || len < 1 || len > MU_ROPE_PAIRS_MAX) {
        mu_set_err(j->err, j->errlen, "%s: rope scaling \"%s\" is not an array of 1 to %d numbers", j->name, key,
                   MU_ROPE_PAIRS_MAX);
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        json_t *v = json_array_get(a, i);
        double x = json_is_number(v) ? json_number_value(v) : NAN;
        if (!(x > 0) || !isfinite(x)) {
            mu_set_err(j->err, j->errlen, "%s: rope scaling \"%s\"[%zu] is not a positive number", j->name, key, i);
            return -1;
        }
        out[i] = (float)x;
    }
    *n = (int)len;
    return 0;
}

/* Phi-3.5's longrope ("su" in early Phi-3 configs): the short and long factors, and the
 * factor, attention factor and original length when given (longrope_finish supplies them
 * when not). */
static int j_longrope(jctx *j, json_t *rs, mu_config *c) {
    int ns = 0, nl = 0;
    strcpy(c->rope_scaling, "longrope");
    c->rope_factor = c->rope_attn = 0;
    c->rope_orig_max_pos = 0;
    if (j_factors(j, rs, "short_factor", c->rope_short, &ns) || j_factors(j, rs, "long_factor", c->rope_long, &nl) ||
        j_num(j, rs, "factor", &c->rope_factor) || j_num(j, rs, "attention_factor", &c->rope_attn) ||
        j_int(j, rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 1, INT32_MAX))
        return -1;
    if (ns != nl) {
        mu_set_err(j->err, j->errlen, "%s: rope scaling short_factor and long_factor differ in length (%d, %d)",
                   j->name, ns, nl);
        return -1;
    }
    c->rope_pairs = ns;
    return 0;
}

/* The attention factor longrope scales the rotated dims by (transformers'
 * _compute_longrope_parameters): sqrt(1 + ln factor / ln original length), 1 when factor <= 1. */
static float longrope_default_attn(double factor, int orig) {
    return factor <= 1 ? 1.0f : (float)sqrt(1 + log(factor) / log((double)orig));
}

/* longrope's defaults once the whole config is read: the original length from the top level
 * (Phi-3's original_max_position_embeddings), factor max_position_embeddings / it, and the
 * attention factor from the factor. */
static int longrope_finish(jctx *j, json_t *root, mu_config *c) {
    if (strcmp(c->rope_scaling, "longrope")) return 0;
    if (!c->rope_orig_max_pos &&
        j_int(j, root, "original_max_position_embeddings", &c->rope_orig_max_pos, 1, INT32_MAX))
        return -1;
    if (!c->rope_orig_max_pos) {
        mu_set_err(j->err, j->errlen, "%s: longrope scaling without original_max_position_embeddings", j->name);
        return -1;
    }
    double factor = c->rope_factor > 0 ? c->rope_factor : (double)c->max_pos / c->rope_orig_max_pos;
    if (!(c->rope_factor > 0)) c->rope_factor = (float)factor;
    if (!(c->rope_attn > 0)) c->rope_attn = longrope_default_attn(factor, c->rope_orig_max_pos);
    return 0;
}

static int j_rope_scaling_obj(jctx *j, json_t *rs, mu_config *c) {
    char type[16] = "";
    if (j_str(j, rs, "type", type, sizeof type) || j_str(j, rs, "rope_type", type, sizeof type)) return -1;
    if (!strcmp(type, "default")) return 0;
    if (!strcmp(type, "longrope") || !strcmp(type, "su")) return j_longrope(j, rs, c);
    if (strcmp(type, "llama3") && strcmp(type, "linear")) {
        mu_set_err(j->err, j->errlen, "%s: rope_scaling type \"%s\" not supported (llama3, linear, longrope)",
                   j->name, type);
        return -1;
    }
    strcpy(c->rope_scaling, type);
    c->rope_factor = 1;
    c->rope_low_freq = 1;
    c->rope_high_freq = 4;
    c->rope_orig_max_pos = 8192;
    if (j_num(j, rs, "factor", &c->rope_factor) || j_num(j, rs, "low_freq_factor", &c->rope_low_freq) ||
        j_num(j, rs, "high_freq_factor", &c->rope_high_freq) ||
        j_int(j, rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 1, INT32_MAX))
        return -1;
    return 0;
}

static int j_rope_scaling(jctx *j, json_t *root, mu_config *c) {
    json_t *rs = json_object_get(root, "rope_scaling");
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) {
        mu_set_err(j->err, j->errlen, "%s: \"rope_scaling\" is not an object", j->name);
        return -1;
    }
    return j_rope_scaling_obj(j, rs, c);
}

/* transformers >= 5 writes rope_parameters: {rope_type, rope_theta, factors...} (the rope
 * scaling and base of rope_scaling and rope_theta before), or for models with two kinds of
 * layers (Gemma-3) one such object per layer type: full_attention's is the model's, and
 * sliding_attention's rope_theta the sliding layers' base. *pct: partial_rotary_factor. */
static int j_rope_parameters(jctx *j, json_t *root, mu_config *c, float *pct) {
    json_t *rp = json_object_get(root, "rope_parameters");
    if (!rp || json_is_null(rp)) return 0;
    json_t *full = json_object_get(rp, "full_attention"), *slide = json_object_get(rp, "sliding_attention");
    if (json_is_object(full)) rp = full;
    if (!json_is_object(rp) || (slide && !json_is_object(slide))) {
        mu_set_err(j->err, j->errlen, "%s: \"rope_parameters\" is not an object (of objects per layer type)",
                   j->name);
        return -1;
    }
    int typed = json_object_get(rp, "rope_type") || json_object_get(rp, "type");   /* none: default */
    if (j_num(j, rp, "rope_theta", &c->rope_theta) || j_num(j, rp, "partial_rotary_factor", pct) ||
        (typed && j_rope_scaling_obj(j, rp, c)))
        return -1;
    if (slide && c->rope_local_theta > 0 && j_num(j, slide, "rope_theta", &c->rope_local_theta)) return -1;
    return 0;
}

/* layer_types (newer transformers' configs): "sliding_attention" / "full_attention" per
 * layer, which mu takes when it is global_every's pattern: every k-th layer full. */
static int j_layer_types(jctx *j, json_t *root, mu_config *c) {
    json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt)) return 0;
    size_t n = json_array_size(lt);
    int every = 0;
    for (size_t i = 0; i < n && !every; i++)
        if (json_is_string(json_array_get(lt, i)) && !strcmp(json_string_value(json_array_get(lt, i)), "full_attention"))
            every = (int)i + 1;
    if (!json_is_array(lt) || (int)n != c->n_layer) every = -1;
    for (int i = 0; every >= 0 && i < (int)n; i++) {
        json_t *v = json_array_get(lt, (size_t)i);
        const char *want = every > 0 && (i + 1) % every == 0 ? "full_attention" : "sliding_attention";
        if (!json_is_string(v) || strcmp(json_string_value(v), want)) every = -1;
    }
    if (every < 0) {
        mu_set_err(j->err, j->errlen, "%s: \"layer_types\" is not %d layers with every k-th one full_attention "
                   "and the others sliding_attention", j->name, c->n_layer);
        return -1;
    }
    c->global_every = every;
    return 0;
}

/* Gemma-2's and Gemma-3's keys (absent keys keep transformers' defaults; null turns a
 * soft-cap or the window off); their MLPs read hidden_activation. */
static int j_gemma23(jctx *j, json_t *root, mu_config *c) {
    int ti = cfg_type_index(c->model_type);
    if (!cfg_types[ti].gemma2 && !cfg_types[ti].gemma3) return 0;
    json_t *v;
    if (j_int(j, root, "sliding_window_pattern", &c->global_every, 1, 1 << 20) ||
        j_num(j, root, "rope_local_base_freq", &c->rope_local_theta) || j_layer_types(j, root, c))
        return -1;
    if ((v = json_object_get(root, "attn_logit_softcapping")) && json_is_null(v)) c->attn_softcap = 0;
    if ((v = json_object_get(root, "final_logit_softcapping")) && json_is_null(v)) c->final_softcap = 0;
    if ((v = json_object_get(root, "sliding_window")) && json_is_null(v)) c->sliding_window = 0;
    if (j_num(j, root, "attn_logit_softcapping", &c->attn_softcap) ||
        j_num(j, root, "final_logit_softcapping", &c->final_softcap) ||
        j_num(j, root, "query_pre_attn_scalar", &c->query_scalar) ||
        j_str(j, root, "hidden_activation", c->hidden_act, sizeof c->hidden_act))
        return -1;
    return 0;
}

/* GPT-NeoX and GPT-2 have no GQA and no head_dim key: their heads split d_model (named
 * dkey and hkey in their configs, for the message). */
static int heads_split_d_model(jctx *j, mu_config *c, const char *dkey, const char *hkey) {
    c->n_kv_head = c->n_head;
    c->head_dim = c->d_model / c->n_head;
    if (c->head_dim * c->n_head != c->d_model) {
        mu_set_err(j->err, j->errlen, "%s: %s %d is not a multiple of %s %d", j->name, dkey, c->d_model, hkey,
                   c->n_head);
        return -1;
    }
    return 0;
}

/* rotary_pct (or partial_rotary_factor) of head_dim as the rotating dims: even, > 0, as
 * transformers truncates it (int(head_dim * pct)). */
static int neox_rotary_dim(jctx *j, mu_config *c, float pct) {
    int rd = (int)((double)c->head_dim * pct);
    if (!(pct > 0 && pct <= 1) || rd < 2 || rd % 2) {
        mu_set_err(j->err, j->errlen, "%s: rotary_pct %g of head_dim %d is not an even number of dims > 0",
                   j->name, (double)pct, c->head_dim);
        return -1;
    }
    c->rotary_dim = rd == c->head_dim ? 0 : rd;
    return 0;
}

/* GPT-NeoX's keys (GPTNeoXConfig; rope_parameters in newer transformers): layer_norm_eps,
 * rotary_pct / partial_rotary_factor, rotary_emb_base / rope_theta, use_parallel_residual,
 * attention_bias (q/k/v and o biases). It has no GQA and no head_dim key. */
static int j_neox(jctx *j, json_t *root, mu_config *c) {
    if (!cfg_types[cfg_type_index(c->model_type)].neox) return 0;
    float pct = NEOX_ROTARY_PCT;
    int attn_bias = 1;
    if (j_num(j, root, "layer_norm_eps", &c->rms_eps) || j_num(j, root, "rotary_pct", &pct) ||
        j_num(j, root, "partial_rotary_factor", &pct) || j_num(j, root, "rotary_emb_base", &c->rope_theta) ||
        j_rope_parameters(j, root, c, &pct) ||
        j_bool(j, root, "use_parallel_residual", &c->parallel_residual) ||
        j_bool(j, root, "attention_bias", &attn_bias))
        return -1;
    c->qkv_bias = c->o_bias = attn_bias;
    if (heads_split_d_model(j, c, "hidden_size", "num_attention_heads")) return -1;
    return neox_rotary_dim(j, c, pct);
}

/* Phi's keys (PhiConfig; rope_parameters in newer transformers): layer_norm_eps,
 * partial_rotary_factor; qk_layernorm (LayerNorms on q and k) is refused. Its head_dim is
 * hidden_size / num_attention_heads (no head_dim key); num_key_value_heads may be fewer. */
static int j_phi(jctx *j, json_t *root, mu_config *c) {
    if (!cfg_types[cfg_type_index(c->model_type)].phi) return 0;
    float pct = PHI_ROTARY_PCT;
    int qk_layernorm = 0, kv = c->n_kv_head;
    if (j_num(j, root, "layer_norm_eps", &c->rms_eps) || j_num(j, root, "partial_rotary_factor", &pct) ||
        j_rope_parameters(j, root, c, &pct) || j_bool(j, root, "qk_layernorm", &qk_layernorm))
        return -1;
    if (qk_layernorm) {
        mu_set_err(j->err, j->errlen, "%s: qk_layernorm true (LayerNorms on q and k) is not supported", j->name);
        return -1;
    }
    if (heads_split_d_model(j, c, "hidden_size", "num_attention_heads")) return -1;
    c->n_kv_head = kv;
    return neox_rotary_dim(j, c, pct);
}

/* GPT-2's keys (GPT2Config: n_embd, n_layer, n_head, n_inner (null: 4 n_embd), n_positions,
 * activation_function, layer_norm_epsilon); read before the generic keys, which it lacks.
 * Refused: what changes the attention's math beyond the standard one. */
static int j_gpt2(jctx *j, json_t *root, mu_config *c) {
    int inv_layer = 0, cross = 0, scale = 1;
    c->d_ff = 0;
    if (j_int(j, root, "n_embd", &c->d_model, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "n_layer", &c->n_layer, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "n_head", &c->n_head, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "n_inner", &c->d_ff, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "n_positions", &c->max_pos, 1, INT32_MAX) ||
        j_str(j, root, "activation_function", c->hidden_act, sizeof c->hidden_act) ||
        j_num(j, root, "layer_norm_epsilon", &c->rms_eps) ||
        j_bool(j, root, "scale_attn_by_inverse_layer_idx", &inv_layer) ||
        j_bool(j, root, "add_cross_attention", &cross) || j_bool(j, root, "scale_attn_weights", &scale))
        return -1;
    if (inv_layer || cross || !scale) {
        mu_set_err(j->err, j->errlen, "%s: %s is not supported", j->name, inv_layer ?
                   "scale_attn_by_inverse_layer_idx true" : cross ? "add_cross_attention true" :
                   "scale_attn_weights false");
        return -1;
    }
    if (!c->d_ff) c->d_ff = 4 * c->d_model;
    return 0;
}


/* The leading full_attention layers of a layer_types list that has only sliding_attention
 * layers after them; -1 when it is not that pattern (or not n_layer long). */
static int leading_full_layers(json_t *lt, int n_layer) {
    if (!json_is_array(lt) || (int)json_array_size(lt) != n_layer) return -1;
    int k = 0;
    while (k < n_layer && json_is_string(json_array_get(lt, (size_t)k)) &&
           !strcmp(json_string_value(json_array_get(lt, (size_t)k)), "full_attention"))
        k++;
    for (int i = k; i < n_layer; i++) {
        json_t *v = json_array_get(lt, (size_t)i);
        if (!json_is_string(v) || strcmp(json_string_value(v), "sliding_attention")) return -1;
    }
    return k;
}

/* Qwen2 and Qwen3 apply their sliding_window only with use_sliding_window, and then to the
 * layers from max_window_layers on (transformers' default 28); layer_types, when given, must
 * be that pattern (full layers, then sliding ones), and is what transformers follows. */
static int j_qwen_window(jctx *j, json_t *root, mu_config *c) {
    if (strcmp(c->model_type, "qwen2") && strcmp(c->model_type, "qwen3")) return 0;
    int use = 0, from = 28;
    if (j_bool(j, root, "use_sliding_window", &use) || j_int(j, root, "max_window_layers", &from, 0, INT32_MAX))
        return -1;
    if (!use || c->sliding_window <= 0) {
        c->sliding_window = 0;
        return 0;
    }
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt) && (from = leading_full_layers(lt, c->n_layer)) < 0) {
        mu_set_err(j->err, j->errlen, "%s: \"layer_types\" is not %d layers of full_attention, then "
                   "sliding_attention", j->name, c->n_layer);
        return -1;
    }
    c->window_from = from < c->n_layer ? from : c->n_layer;
    return 0;
}

/* Gemma3TextConfig's defaults (transformers), on which the text_config of Google's
 * multimodal Gemma-3 checkpoints relies: it lists only what differs. */
static void gemma3_text_defaults(mu_config *c) {
    c->n_layer = 26; c->d_model = 2304; c->n_head = 8; c->n_kv_head = 4; c->head_dim = 256;
    c->d_ff = 9216; c->vocab = 262208; c->max_pos = 131072; c->rms_eps = 1e-6f; c->rope_theta = 1e6f;
    c->bos_id = 2; c->eos_id = 1; c->pad_id = 0;
}

/* A multimodal Gemma-3 (model_type gemma3): its text model, from text_config, whose tensors
 * are named language_model.*; *root becomes text_config. The wrapper's token ids, where it
 * has them, are read after the text model's (cfg_from_json). */
static int j_gemma3_wrapper(jctx *j, json_t **root, mu_config *c) {
    json_t *tc = json_object_get(*root, "text_config");
    if (!json_is_object(tc)) {
        mu_set_err(j->err, j->errlen, "%s: model_type gemma3 without a \"text_config\" object", j->name);
        return -1;
    }
    *root = tc;
    strcpy(c->model_type, "gemma3_text");
    strcpy(c->tensor_prefix, "language_model.");
    return 0;
}

static int cfg_from_json(json_t *root, jctx *j, mu_config *c) {
    mu_config_init(c);
    if (!json_is_object(root)) {
        mu_set_err(j->err, j->errlen, "%s: not a JSON object", j->name);
        return -1;
    }
    if (j_str(j, root, "model_type", c->model_type, sizeof c->model_type)) return -1;
    json_t *wrapper = NULL;
    if (!strcmp(c->model_type, "gemma3")) {
        wrapper = root;
        if (j_gemma3_wrapper(j, &root, c)) return -1;
    }
    int ti = cfg_type_index(c->model_type);
    if (ti < 0) {
        mu_set_err(j->err, j->errlen, "%s: model_type \"%s\" not supported (" SUPPORTED_TYPES ")",
                   j->name, c->model_type);
        return -1;
    }
    c->qkv_bias = cfg_types[ti].qkv_bias;
    c->tie_embeddings = 0;
    set_family(c, ti);   /* the keys below may override its defaults */
    if (cfg_types[ti].gemma3) gemma3_text_defaults(c);
    if (cfg_types[ti].gpt2 && j_gpt2(j, root, c)) return -1;
    if (j_int(j, root, "num_hidden_layers", &c->n_layer, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "hidden_size", &c->d_model, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "num_attention_heads", &c->n_head, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "intermediate_size", &c->d_ff, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "vocab_size", &c->vocab, 1, CFG_MAX_SIZE))
        return -1;
    if (!c->n_layer || !c->d_model || !c->n_head || !c->d_ff || !c->vocab) {
        mu_set_err(j->err, j->errlen, "%s: missing one of %s", j->name, cfg_types[ti].gpt2 ?
                   "n_layer, n_embd, n_head, vocab_size" :
                   "num_hidden_layers, hidden_size, num_attention_heads, intermediate_size, vocab_size");
        return -1;
    }
    if (!cfg_types[ti].gemma3) {          /* transformers' defaults: Gemma-3's are fixed numbers */
        c->n_kv_head = c->n_head;
        c->head_dim = cfg_types[ti].qwen3 ? 128 : c->d_model / c->n_head;   /* Qwen3Config: 128 */
    }
    if (j_int(j, root, "num_key_value_heads", &c->n_kv_head, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "head_dim", &c->head_dim, 1, CFG_MAX_SIZE) ||
        j_int(j, root, "max_position_embeddings", &c->max_pos, 1, INT32_MAX) ||
        j_int(j, root, "sliding_window", &c->sliding_window, 1, INT32_MAX) ||
        j_num(j, root, "rms_norm_eps", &c->rms_eps) || j_num(j, root, "rope_theta", &c->rope_theta) ||
        j_bool(j, root, "tie_word_embeddings", &c->tie_embeddings) ||

        j_token_id(j, root, "bos_token_id", &c->bos_id) || j_token_id(j, root, "eos_token_id", &c->eos_id) ||
        j_token_id(j, root, "pad_token_id", &c->pad_id) ||
        j_str(j, root, "hidden_act", c->hidden_act, sizeof c->hidden_act) || j_rope_scaling(j, root, c) ||
        j_gemma23(j, root, c) || j_qwen_window(j, root, c) || j_neox(j, root, c) || j_phi(j, root, c) ||
        (cfg_types[ti].gpt2 && heads_split_d_model(j, c, "n_embd", "n_head")))
        return -1;
    float pct = 1;
    int gpt = cfg_types[ti].neox || cfg_types[ti].gpt2 || cfg_types[ti].phi;   /* keys of their own */
    if (cfg_types[ti].phi3 && j_num(j, root, "partial_rotary_factor", &pct)) return -1;   /* Phi3Config */
    if (!gpt && j_rope_parameters(j, root, c, &pct)) return -1;
    if (pct != 1 && !cfg_types[ti].phi3) {
        mu_set_err(j->err, j->errlen, "%s: partial_rotary_factor %g is supported for gpt_neox, phi and phi3 only",
                   j->name, (double)pct);
        return -1;
    }
    if (pct != 1 && neox_rotary_dim(j, c, pct)) return -1;
    if (longrope_finish(j, root, c)) return -1;
    if (wrapper && (j_token_id(j, wrapper, "bos_token_id", &c->bos_id) ||
                    j_token_id(j, wrapper, "eos_token_id", &c->eos_id) ||
                    j_token_id(j, wrapper, "pad_token_id", &c->pad_id)))
        return -1;
    int mlp_bias = 0, attn_bias = 0;
    if (!gpt && (j_bool(j, root, "mlp_bias", &mlp_bias) || j_bool(j, root, "attention_bias", &attn_bias)))
        return -1;
    if (attn_bias && !c->qkv_bias) { /* Llama's attention_bias also biases o_proj */
        mu_set_err(j->err, j->errlen, "%s: attention_bias true (q/k/v/o biases) is not supported; q/k/v biases "
                "are, as model_type qwen2", j->name);
        return -1;
    }
    if (mlp_bias) {
        mu_set_err(j->err, j->errlen, "%s: mlp_bias true is not supported", j->name);
        return -1;
    }
    char verr[256];
    if (mu_config_validate(c, verr, sizeof verr)) {
        mu_set_err(j->err, j->errlen, "%s: %s", j->name, verr);
        return -1;
    }
    return 0;
}

int mu_config_from_json_str(const char *json, size_t len, const char *name, mu_config *c,
                            char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        mu_set_err(err, errlen, "%s: invalid JSON at line %d: %s", name, je.line, je.text);
        return -1;
    }
    jctx j = {name, err, errlen};
    int rc = cfg_from_json(root, &j, c);
    json_decref(root);
    return rc;
}

int mu_config_from_json_file(const char *path, mu_config *c, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        if (errno == ENOENT && je.line < 0) mu_set_err(err, errlen, "%s: %s", path, strerror(ENOENT));
        else mu_set_err(err, errlen, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
        return -1;
    }
    jctx j = {path, err, errlen};
    int rc = cfg_from_json(root, &j, c);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ GGUF in */

static int gg_req_u32(const mu_gguf *g, const char *arch, const char *suffix, int *out, char *err, size_t errlen) {
    char key[128];
    uint32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (mu_gguf_get_u32(g, key, &v) || v == 0 || v > CFG_MAX_SIZE) {
        mu_set_err(err, errlen, "%s: metadata %s missing or out of range", mu_gguf_path(g), key);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* As gg_req_u32 when the key {arch}.suffix is there; *out untouched when it is not. */
static int gg_u32_if_present(const mu_gguf *g, const char *arch, const char *suffix, int *out, char *err,
                             size_t errlen) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return mu_gguf_kv_type(g, key) >= 0 ? gg_req_u32(g, arch, suffix, out, err, errlen) : 0;
}

static void gg_opt_f32(const mu_gguf *g, const char *arch, const char *suffix, float *out) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    mu_gguf_get_f32(g, key, out);
}

static void gg_opt_id(const mu_gguf *g, const char *key, int *out) {
    uint32_t v;
    if (!mu_gguf_get_u32(g, key, &v) && v <= INT32_MAX) *out = (int)v;
}

/* Gemma-2's and Gemma-3's soft-caps and window from llama.cpp's keys. GGUF has no
 * query_pre_attn_scalar: llama.cpp scales by head_dim^-1/2, except for the 27B models (46
 * layers in Gemma-2, 62 in Gemma-3) by (hidden / heads)^-1/2, as Google's configs say; so
 * does mu. Nor has it Gemma-3's window pattern and local rotary base: llama.cpp's fixed 6
 * and 10000 (the set_family defaults) are those of Google's releases. */
static void gg_gemma23(const mu_gguf *g, const char *arch, mu_config *c) {
    gg_opt_f32(g, arch, "attn_logit_softcapping", &c->attn_softcap);
    gg_opt_f32(g, arch, "final_logit_softcapping", &c->final_softcap);
    char key[64];
    uint32_t w;
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    if (!mu_gguf_get_u32(g, key, &w) && w <= INT32_MAX) c->sliding_window = (int)w;
    int big = c->n_layer == (strcmp(arch, "gemma2") ? 62 : 46);
    c->query_scalar = (float)(big ? c->d_model / c->n_head : c->head_dim);
}

/* 1 when the llama3 scaling of c (with its rope_theta and head_dim) divides the plain
 * rotary frequencies by div[head_dim / 2] (to 1e-5). */
static int llama3_divides_by(const mu_config *c, const float *div) {
    int half = c->head_dim / 2, ok = 1;
    mu_config plain = *c;
    plain.rope_scaling[0] = 0;
    float *f = malloc(sizeof *f * half), *f0 = malloc(sizeof *f0 * half);
    if (!f || !f0) ok = 0;
    if (ok) {
        mu_rope_inv_freq(c, f);
        mu_rope_inv_freq(&plain, f0);
    }
    for (int i = 0; ok && i < half; i++) ok = fabsf(f0[i] / f[i] - div[i]) <= 1e-5f * fabsf(div[i]);
    free(f);
    free(f0);
    return ok;
}

/* Llama 3.1 and 3.2 GGUFs carry their "llama3" rope scaling as rope_freqs.weight: per-pair
 * divisors of the rotary frequencies, computed by llama.cpp's converter from the HF
 * parameters. The parameter sets of Meta's releases (factor 8 in 3.1, 32 in 3.2; low 1,
 * high 4, original context 8192) are recognized by recomputing the divisors, so the config
 * stays the HF one; other divisors are refused. */
static int gg_rope_freqs(const mu_gguf *g, mu_config *c, char *err, size_t errlen) {
    int half = c->head_dim / 2;
    if (c->rope_scaling[0] || half < 1 || c->head_dim % 2) {
        mu_set_err(err, errlen, "%s: rope_freqs.weight with %s", mu_gguf_path(g),
                   c->rope_scaling[0] ? "another rope scaling" : "an odd head dim");
        return -1;
    }
    float *div = malloc(sizeof *div * half);
    char terr[256];
    if (!div || mu_gguf_tensor_f32(g, "rope_freqs.weight", div, (size_t)half, terr, sizeof terr)) {
        mu_set_err(err, errlen, "%s", div ? terr : "out of memory");
        free(div);
        return -1;
    }
    static const float factors[] = {8.0f, 32.0f};
    for (size_t i = 0; i < sizeof factors / sizeof *factors; i++) {
        strcpy(c->rope_scaling, "llama3");
        c->rope_factor = factors[i];
        c->rope_low_freq = 1;
        c->rope_high_freq = 4;
        c->rope_orig_max_pos = 8192;
        if (llama3_divides_by(c, div)) {
            free(div);
            return 0;
        }
    }
    free(div);
    c->rope_scaling[0] = 0;
    mu_set_err(err, errlen, "%s: rope_freqs.weight is no llama3 rope scaling mu knows (factor 8 or 32, low 1, "
               "high 4, original context 8192); load the Hugging Face directory instead", mu_gguf_path(g));
    return -1;
}

/* The rotating dims from {arch}.rope.dimension_count, else rd; all of the head is stored as 0. */
static int gg_rotary_dims(const mu_gguf *g, const char *arch, mu_config *c, int rd, char *err, size_t errlen) {
    if (gg_u32_if_present(g, arch, "rope.dimension_count", &rd, err, errlen)) return -1;
    c->rotary_dim = rd == c->head_dim ? 0 : rd;
    return 0;
}

/* Phi-2's keys as llama.cpp's converter writes them (after set_family): its LayerNorms' eps
 * (attention.layer_norm_epsilon) and the rotating dims (rope.dimension_count, else half the
 * head). q, k and v must be separate tensors, as the converter stores PhiForCausalLM's; an
 * older conversion's fused attn_qkv is refused. */
static int gg_phi2(const mu_gguf *g, const char *arch, mu_config *c, char *err, size_t errlen) {
    if (mu_gguf_find_tensor(g, "blk.0.attn_qkv.weight") >= 0) {
        mu_set_err(err, errlen, "%s: fused attn_qkv (an older phi-2 conversion) is not supported; convert the "
                   "Hugging Face directory anew (separate attn_q, attn_k, attn_v)", mu_gguf_path(g));
        return -1;
    }
    gg_opt_f32(g, arch, "attention.layer_norm_epsilon", &c->rms_eps);
    return gg_rotary_dims(g, arch, c, (int)(c->head_dim * PHI_ROTARY_PCT), err, errlen);
}

/* llama.cpp's longrope (Phi3MiniModel: the factors as tensors rope_factors_long and
 * rope_factors_short [pairs], the original length and the attention factor as keys). */
static int gg_longrope(const mu_gguf *g, const char *arch, mu_config *c, char *err, size_t errlen) {
    int pairs = mu_config_rotary_dims(c) / 2;
    if (pairs > MU_ROPE_PAIRS_MAX) {
        mu_set_err(err, errlen, "%s: longrope over %d rotating pairs (at most %d)", mu_gguf_path(g), pairs,
                   MU_ROPE_PAIRS_MAX);
        return -1;
    }
    if (mu_gguf_tensor_f32(g, "rope_factors_long.weight", c->rope_long, (size_t)pairs, err, errlen) ||
        mu_gguf_tensor_f32(g, "rope_factors_short.weight", c->rope_short, (size_t)pairs, err, errlen))
        return -1;
    for (int i = 0; i < pairs; i++)
        if (!(c->rope_long[i] > 0) || !(c->rope_short[i] > 0) || !isfinite(c->rope_long[i]) ||
            !isfinite(c->rope_short[i])) {
            mu_set_err(err, errlen, "%s: rope_factors_long/short.weight[%d] is not a positive number",
                       mu_gguf_path(g), i);
            return -1;
        }
    if (gg_req_u32(g, arch, "rope.scaling.original_context_length", &c->rope_orig_max_pos, err, errlen)) return -1;
    double factor = (double)c->max_pos / c->rope_orig_max_pos;
    strcpy(c->rope_scaling, "longrope");
    c->rope_pairs = pairs;
    c->rope_factor = (float)factor;
    c->rope_attn = longrope_default_attn(factor, c->rope_orig_max_pos);
    gg_opt_f32(g, arch, "rope.scaling.attn_factor", &c->rope_attn);
    return 0;
}

/* Phi-3's keys as llama.cpp's converter writes them (Phi3MiniModel): the rotating dims
 * (rope.dimension_count), the window (attention.sliding_window; 0: none, Phi-4's) and
 * longrope (Phi-3.5, Phi-4-mini). */
static int gg_phi3(const mu_gguf *g, const char *arch, mu_config *c, char *err, size_t errlen) {
    if (gg_rotary_dims(g, arch, c, c->head_dim, err, errlen)) return -1;
    char key[128];
    snprintf(key, sizeof key, "%s.attention.sliding_window", arch);
    uint32_t w = 0;
    if (mu_gguf_kv_type(g, key) >= 0 && (mu_gguf_get_u32(g, key, &w) || w > INT32_MAX)) {
        mu_set_err(err, errlen, "%s: metadata %s is not a window size", mu_gguf_path(g), key);
        return -1;
    }
    c->sliding_window = (int)w;
    return mu_gguf_find_tensor(g, "rope_factors_long.weight") >= 0 ? gg_longrope(g, arch, c, err, errlen) : 0;
}

int mu_config_from_gguf(const mu_gguf *g, mu_config *c, char *err, size_t errlen) {
    mu_config_init(c);
    const char *s;
    size_t n;
    if (mu_gguf_get_str(g, "general.architecture", &s, &n) || n >= sizeof c->model_type) {
        mu_set_err(err, errlen, "%s: metadata general.architecture missing", mu_gguf_path(g));
        return -1;
    }
    char arch[32];
    memcpy(arch, s, n);
    arch[n] = 0;
    /* llama.cpp's names of gemma3_text and phi */
    int ti = cfg_type_index(!strcmp(arch, "gemma3") ? "gemma3_text" : !strcmp(arch, "phi2") ? "phi" : arch);
    if (ti < 0 || cfg_types[ti].neox || cfg_types[ti].gpt2 || (cfg_types[ti].phi && strcmp(arch, "phi2"))) {
        mu_set_err(err, errlen, "%s: architecture \"%s\" not supported in GGUF (llama, mistral, qwen2, qwen3, "
                   "gemma, gemma2, gemma3, olmo2, phi2, phi3; GPT-NeoX and GPT-2 as Hugging Face directories)",
                   mu_gguf_path(g), arch);
        return -1;
    }
    strcpy(c->model_type, cfg_types[ti].model_type);
    if (gg_req_u32(g, arch, "block_count", &c->n_layer, err, errlen) ||
        gg_req_u32(g, arch, "embedding_length", &c->d_model, err, errlen) ||
        gg_req_u32(g, arch, "feed_forward_length", &c->d_ff, err, errlen) ||
        gg_req_u32(g, arch, "attention.head_count", &c->n_head, err, errlen))
        return -1;
    c->n_kv_head = c->n_head;
    c->head_dim = c->d_model / c->n_head;
    if (gg_u32_if_present(g, arch, "attention.head_count_kv", &c->n_kv_head, err, errlen) ||
        gg_u32_if_present(g, arch, "attention.key_length", &c->head_dim, err, errlen) ||
        gg_u32_if_present(g, arch, "context_length", &c->max_pos, err, errlen))
        return -1;
    char key[128];
    gg_opt_f32(g, arch, "attention.layer_norm_rms_epsilon", &c->rms_eps);
    gg_opt_f32(g, arch, "rope.freq_base", &c->rope_theta);
    /* vocab: {arch}.vocab_size, else the token list, else token_embd's rows */
    uint64_t nt;
    snprintf(key, sizeof key, "%s.vocab_size", arch);
    uint32_t v32;
    int64_t ne[MU_GGUF_MAX_DIMS];
    if (!mu_gguf_get_u32(g, key, &v32)) c->vocab = (int)v32;
    else if (!mu_gguf_arr_len(g, "tokenizer.ggml.tokens", &nt, NULL) && nt <= CFG_MAX_SIZE) c->vocab = (int)nt;
    else if (!mu_gguf_tensor_info(g, mu_gguf_find_tensor(g, "token_embd.weight"), NULL, NULL, ne, NULL, NULL))
        c->vocab = (int)ne[1];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (!mu_gguf_get_str(g, key, &s, &n) && !(n == 4 && !memcmp(s, "none", 4))) {
        if (!(n == 6 && !memcmp(s, "linear", 6))) {
            mu_set_err(err, errlen, "%s: %s \"%.*s\" not supported (linear)", mu_gguf_path(g), key, (int)n, s);
            return -1;
        }
        strcpy(c->rope_scaling, "linear");
        c->rope_factor = 1;
        gg_opt_f32(g, arch, "rope.scaling.factor", &c->rope_factor);
    }
    if (mu_gguf_find_tensor(g, "rope_freqs.weight") >= 0 && gg_rope_freqs(g, c, err, errlen)) return -1;
    gg_opt_id(g, "tokenizer.ggml.bos_token_id", &c->bos_id);
    gg_opt_id(g, "tokenizer.ggml.eos_token_id", &c->eos_id);
    gg_opt_id(g, "tokenizer.ggml.padding_token_id", &c->pad_id);
    set_family(c, ti);   /* llama.cpp also runs Gemma with gelu's tanh form */
    if (cfg_types[ti].gemma2 || cfg_types[ti].gemma3) gg_gemma23(g, arch, c);
    if (cfg_types[ti].phi && gg_phi2(g, arch, c, err, errlen)) return -1;
    if (cfg_types[ti].phi3 && gg_phi3(g, arch, c, err, errlen)) return -1;
    c->tie_embeddings = mu_gguf_find_tensor(g, "output.weight") < 0;
    c->qkv_bias = mu_gguf_find_tensor(g, "blk.0.attn_q.bias") >= 0;
    char verr[256];
    if (mu_config_validate(c, verr, sizeof verr)) {
        mu_set_err(err, errlen, "%s: %s", mu_gguf_path(g), verr);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ checks */

int mu_config_validate(const mu_config *c, char *err, size_t errlen) {
    if (strcmp(c->arch, "llama")) { mu_set_err(err, errlen, "arch \"%s\" not supported", c->arch); return -1; }
    if (c->n_layer < 1 || c->d_model < 1 || c->n_head < 1 || c->n_kv_head < 1 || c->head_dim < 1 ||
        c->d_ff < 1 || c->vocab < 1 || c->max_pos < 1) {
        mu_set_err(err, errlen, "sizes must be positive (layers %d, d_model %d, heads %d, kv heads %d, head_dim %d, "
                "d_ff %d, vocab %d, max_pos %d)", c->n_layer, c->d_model, c->n_head, c->n_kv_head, c->head_dim,
                c->d_ff, c->vocab, c->max_pos);
        return -1;
    }
    if (c->n_layer > 4096 || c->d_model > CFG_MAX_SIZE || c->d_ff > CFG_MAX_SIZE || c->vocab > CFG_MAX_SIZE ||
        (int64_t)c->n_head * c->head_dim > CFG_MAX_SIZE) {
        mu_set_err(err, errlen, "sizes implausibly large");
        return -1;
    }
    if (c->n_head % c->n_kv_head) {
        mu_set_err(err, errlen, "attention heads %d not a multiple of kv heads %d", c->n_head, c->n_kv_head);
        return -1;
    }
    if (c->head_dim % 2) { mu_set_err(err, errlen, "head_dim %d must be even (rotary)", c->head_dim); return -1; }
    if (c->rotary_dim < 0 || c->rotary_dim > c->head_dim || c->rotary_dim % 2) {
        mu_set_err(err, errlen, "rotary dims %d must be even and at most head_dim %d", c->rotary_dim, c->head_dim);
        return -1;
    }
    if (c->fused_qkv < 0 || c->fused_qkv > MU_QKV_BLOCKS || (c->learned_pos && c->rotary_dim) ||
        (c->conv1d && !c->fused_qkv)) {
        mu_set_err(err, errlen, "fused q/k/v layout %d, learned positions with rotary dims %d or Conv1D "
                   "weights without fused q/k/v", c->fused_qkv, c->rotary_dim);
        return -1;
    }
    if ((c->fused_qkv == MU_QKV_PER_HEAD || c->conv1d) && c->n_kv_head != c->n_head) {
        mu_set_err(err, errlen, "q/k/v fused per head or as Conv1D need as many kv heads as heads (%d, %d)",
                   c->n_kv_head, c->n_head);
        return -1;
    }
    if (c->fused_gate_up && c->plain_mlp) {
        mu_set_err(err, errlen, "a fused gate_up_proj needs a gated MLP");
        return -1;
    }
    if ((c->shared_norm && (!c->parallel_residual || !c->layer_norm || c->fused_qkv)) ||
        (c->head_bias && !c->shared_norm)) {
        mu_set_err(err, errlen, "one input norm for both branches goes with a parallel residual, LayerNorm and "
                   "separate q/k/v, and a bias on lm_head with it (Phi's layout)");
        return -1;
    }
    if (c->layer_norm && (c->post_norm || c->qk_norm || c->norm_plus_one)) {
        mu_set_err(err, errlen, "LayerNorm goes with neither norms after the blocks, q/k norms nor 1 + w norms");
        return -1;
    }
    if (!(c->rms_eps > 0) || !(c->rope_theta > 0) || !isfinite(c->rms_eps) || !isfinite(c->rope_theta)) {
        mu_set_err(err, errlen, "rms_norm_eps and rope_theta must be positive");
        return -1;
    }
    int pairs = mu_config_rotary_dims(c) / 2;
    if (!strcmp(c->rope_scaling, "longrope") &&
        (c->rope_pairs != pairs || c->rope_orig_max_pos < 1 || !(c->rope_attn > 0) || !isfinite(c->rope_attn))) {
        mu_set_err(err, errlen, "longrope scaling needs a factor for each of the %d rotating pairs (has %d), an "
                   "original length and a positive attention factor", pairs, c->rope_pairs);
        return -1;
    }
    if (c->rope_scaling[0] && strcmp(c->rope_scaling, "longrope")) {
        if (strcmp(c->rope_scaling, "llama3") && strcmp(c->rope_scaling, "linear")) {
            mu_set_err(err, errlen, "rope scaling \"%s\" not supported", c->rope_scaling);
            return -1;
        }
        if (!(c->rope_factor > 0) ||
            (!strcmp(c->rope_scaling, "llama3") &&
             (!(c->rope_high_freq > c->rope_low_freq) || !(c->rope_low_freq > 0) || c->rope_orig_max_pos < 1))) {
            mu_set_err(err, errlen, "rope scaling parameters invalid");
            return -1;
        }
    }
    if (c->sliding_window < 0 || c->global_every < 0 || c->window_from < 0 || c->window_from > c->n_layer ||
        !(c->attn_softcap >= 0) || !(c->final_softcap >= 0) ||
        !(c->query_scalar >= 0) || !(c->rope_local_theta >= 0) || !isfinite(c->attn_softcap) ||
        !isfinite(c->final_softcap) || !isfinite(c->query_scalar) || !isfinite(c->rope_local_theta)) {
        mu_set_err(err, errlen, "sliding window, soft-caps, query_pre_attn_scalar and rope_local_base_freq must "
                   "be >= 0 and finite");
        return -1;
    }
    if (c->qk_norm < 0 || c->qk_norm > MU_QK_NORM_PER_HEAD) {
        mu_set_err(err, errlen, "qk_norm %d unknown", c->qk_norm);
        return -1;
    }
    if (c->sandwich_norm && !c->post_norm) {
        mu_set_err(err, errlen, "norms on both sides of a block need post_norm");
        return -1;
    }
    int tanh_form;
    if (mu_config_gelu(c, &tanh_form) < 0) {
        mu_set_err(err, errlen, "hidden_act \"%s\" not supported (silu, gelu, gelu_pytorch_tanh, gelu_new)",
                   c->hidden_act);
        return -1;
    }
    const int ids[3] = {c->bos_id, c->eos_id, c->pad_id};
    const char *idn[3] = {"bos", "eos", "pad"};
    for (int i = 0; i < 3; i++)
        if (ids[i] < -1 || ids[i] >= c->vocab) {
            mu_set_err(err, errlen, "%s_token_id %d outside the vocabulary (%d)", idn[i], ids[i], c->vocab);
            return -1;
        }
    return 0;
}

/* ------------------------------------------------------------------ JSON out */

/* The shortest decimal that reads back as the same float, as a JSON real. */
static json_t *j_float(float f) {
    char buf[32];
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, sizeof buf, "%.*g", p, (double)f);
        if (strtof(buf, NULL) == f) break;
    }
    return json_real(strtod(buf, NULL));
}

static json_t *j_id(int id) { return id < 0 ? json_null() : json_integer(id); }

/* 1 when c has GPT-NeoX's, GPT-2's and Phi's common layout (LayerNorms, a plain MLP with
 * biases, heads splitting d_model) and none of the Llama family's variants; with phi 1
 * Phi's (one input norm for both branches, a bias on lm_head), else neither of those. */
static int gpt_layout(const mu_config *c, int phi) {
    return c->layer_norm && c->plain_mlp && c->mlp_bias && c->shared_norm == phi && c->head_bias == phi &&
           !c->norm_plus_one &&
           !c->embed_scale && !c->post_norm && !c->qk_norm && !c->sliding_window && !(c->attn_softcap > 0) &&
           !(c->final_softcap > 0) && !(c->query_scalar > 0) && !c->rope_scaling[0] &&
           c->head_dim * c->n_head == c->d_model;
}

/* The keys GPT-NeoX's and Phi's configs begin with (the latter also has kv heads): a new object. */
static json_t *rotary_gpt_head(const mu_config *c, const char *hf_arch, const char *model_type, int kv_heads) {
    json_t *r = json_object();
    json_object_set_new(r, "architectures", json_pack("[s]", hf_arch));
    json_object_set_new(r, "model_type", json_string(model_type));
    json_object_set_new(r, "hidden_size", json_integer(c->d_model));
    json_object_set_new(r, "intermediate_size", json_integer(c->d_ff));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_head));
    if (kv_heads) json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(r, "layer_norm_eps", j_float(c->rms_eps));
    return r;
}

/* The share of each head that rotates (rotary_pct, partial_rotary_factor). */
static double rotary_share(const mu_config *c) { return (double)mu_config_rotary_dims(c) / c->head_dim; }

/* The keys GPT-NeoX's, GPT-2's and Phi's configs end with. */
static void gpt_tail(json_t *r, const mu_config *c, const char *torch_dtype) {
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(r, "bos_token_id", j_id(c->bos_id));
    json_object_set_new(r, "eos_token_id", j_id(c->eos_id));
    if (c->pad_id >= 0) json_object_set_new(r, "pad_token_id", j_id(c->pad_id));
    if (torch_dtype) json_object_set_new(r, "torch_dtype", json_string(torch_dtype));
}

/* A GPT-NeoX config as GPTNeoXConfig writes it; NULL + "name: what" when the layout is not
 * GPT-NeoX's (only use_parallel_residual, attention_bias and the sizes vary). */
static json_t *neox_to_json(const mu_config *c, const char *torch_dtype, const char *path, char *err,
                            size_t errlen) {
    if (!gpt_layout(c, 0) || c->fused_qkv != MU_QKV_PER_HEAD || c->qkv_bias != c->o_bias || c->learned_pos ||
        c->conv1d) {
        mu_set_err(err, errlen, "%s: model_type gpt_neox does not match the config's layout", path);
        return NULL;
    }
    json_t *r = rotary_gpt_head(c, "GPTNeoXForCausalLM", "gpt_neox", 0);
    json_object_set_new(r, "rotary_pct", json_real(rotary_share(c)));
    json_object_set_new(r, "rotary_emb_base", j_float(c->rope_theta));
    json_object_set_new(r, "use_parallel_residual", json_boolean(c->parallel_residual));
    json_object_set_new(r, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(r, "hidden_act", json_string(c->hidden_act));
    gpt_tail(r, c, torch_dtype);
    return r;
}

/* A Phi config as PhiConfig writes it; NULL + "name: what" when the layout is not Phi's (only
 * the sizes, kv heads, the rotating dims, eps, the activation and the tied head vary). */
static json_t *phi_to_json(const mu_config *c, const char *torch_dtype, const char *path, char *err,
                           size_t errlen) {
    if (!gpt_layout(c, 1) || c->fused_qkv || !c->parallel_residual || !c->qkv_bias || !c->o_bias ||
        c->learned_pos || c->conv1d) {
        mu_set_err(err, errlen, "%s: model_type phi does not match the config's layout", path);
        return NULL;
    }
    json_t *r = rotary_gpt_head(c, "PhiForCausalLM", "phi", 1);
    json_object_set_new(r, "partial_rotary_factor", json_real(rotary_share(c)));
    json_object_set_new(r, "rope_theta", j_float(c->rope_theta));
    json_object_set_new(r, "qk_layernorm", json_false());
    json_object_set_new(r, "hidden_act", json_string(c->hidden_act));
    gpt_tail(r, c, torch_dtype);
    return r;
}

/* A GPT-2 config as GPT2Config writes it; NULL + "name: what" when the layout is not GPT-2's
 * (only the sizes, the activation, eps and the tied head vary). */
static json_t *gpt2_to_json(const mu_config *c, const char *torch_dtype, const char *path, char *err,
                            size_t errlen) {
    if (!gpt_layout(c, 0) || c->fused_qkv != MU_QKV_BLOCKS || !c->learned_pos || !c->conv1d || !c->qkv_bias ||
        !c->o_bias || c->parallel_residual || c->rotary_dim) {
        mu_set_err(err, errlen, "%s: model_type gpt2 does not match the config's layout", path);
        return NULL;
    }
    json_t *r = json_object();
    json_object_set_new(r, "architectures", json_pack("[s]", "GPT2LMHeadModel"));
    json_object_set_new(r, "model_type", json_string("gpt2"));
    json_object_set_new(r, "n_embd", json_integer(c->d_model));
    json_object_set_new(r, "n_layer", json_integer(c->n_layer));
    json_object_set_new(r, "n_head", json_integer(c->n_head));
    json_object_set_new(r, "n_inner", json_integer(c->d_ff));
    json_object_set_new(r, "n_positions", json_integer(c->max_pos));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab));
    json_object_set_new(r, "activation_function", json_string(c->hidden_act));
    json_object_set_new(r, "layer_norm_epsilon", j_float(c->rms_eps));
    gpt_tail(r, c, torch_dtype);
    return r;
}

/* longrope's rope_scaling object as Phi3Config writes it (type, short_factor, long_factor),
 * with factor and attention_factor only where they are not the defaults that
 * max_position_embeddings / original_max_position_embeddings gives; the original length at
 * the top level of r. */
static json_t *longrope_to_json(const mu_config *c, json_t *r) {
    json_t *s = json_array(), *l = json_array();
    for (int i = 0; i < c->rope_pairs; i++) {
        json_array_append_new(s, j_float(c->rope_short[i]));
        json_array_append_new(l, j_float(c->rope_long[i]));
    }
    json_t *o = json_pack("{s:s, s:o, s:o}", "type", "longrope", "short_factor", s, "long_factor", l);
    double factor = (double)c->max_pos / c->rope_orig_max_pos;
    int own = c->rope_factor != (float)factor;
    if (own) json_object_set_new(o, "factor", j_float(c->rope_factor));
    if (c->rope_attn != longrope_default_attn(own ? c->rope_factor : factor, c->rope_orig_max_pos))
        json_object_set_new(o, "attention_factor", j_float(c->rope_attn));
    json_object_set_new(r, "original_max_position_embeddings", json_integer(c->rope_orig_max_pos));
    return o;
}

/* The config as an HF config.json object; NULL + "name: what" in err. */
static json_t *config_to_json(const mu_config *c, const char *torch_dtype, const char *path, char *err,
                              size_t errlen) {
    char verr[256];
    if (mu_config_validate(c, verr, sizeof verr)) {
        mu_set_err(err, errlen, "%s: %s", path, verr);
        return NULL;
    }
    int ti = cfg_type_index(c->model_type);
    if (ti < 0) ti = 0;
    if (c->qkv_bias && !c->fused_qkv && !c->shared_norm) ti = cfg_type_index("qwen2");  /* q/k/v biases alone */
    if (cfg_types[ti].neox) return neox_to_json(c, torch_dtype, path, err, errlen);
    if (cfg_types[ti].gpt2) return gpt2_to_json(c, torch_dtype, path, err, errlen);
    if (cfg_types[ti].phi) return phi_to_json(c, torch_dtype, path, err, errlen);
    int phi3 = cfg_types[ti].phi3;      /* Llama's layout with q/k/v and gate/up fused, any rotating share */
    if (c->layer_norm || c->plain_mlp || (c->fused_qkv != (phi3 ? MU_QKV_BLOCKS : 0)) ||
        c->fused_gate_up != phi3 || c->parallel_residual || c->o_bias || c->mlp_bias ||
        (c->rotary_dim && !phi3) || c->learned_pos || c->conv1d || c->shared_norm || c->head_bias) {
        mu_set_err(err, errlen, "%s: model_type %s has no GPT-NeoX, GPT-2 or Phi layout (LayerNorm, plain MLP, "
                   "fused q/k/v or gate/up (Phi-3's both), partial rotary, parallel residual, o, MLP or lm_head "
                   "biases, learned positions, Conv1D)", path,
                   cfg_types[ti].model_type);
        return NULL;
    }
    mu_config fam;               /* the family's layout, which model_type stands for */
    mu_config_init(&fam);
    set_family(&fam, ti);
    int gemma23 = cfg_types[ti].gemma2 || cfg_types[ti].gemma3;
    if (fam.norm_plus_one != c->norm_plus_one || fam.embed_scale != c->embed_scale ||
        fam.post_norm != c->post_norm || fam.sandwich_norm != c->sandwich_norm || fam.qk_norm != c->qk_norm ||
        (!gemma23 && (c->query_scalar > 0 || c->global_every > 0 || c->attn_softcap > 0 ||
                      c->final_softcap > 0)) || (!cfg_types[ti].gemma3 && c->rope_local_theta > 0)) {
        mu_set_err(err, errlen, "%s: model_type %s does not match the norm and embedding conventions", path,
                   cfg_types[ti].model_type);
        return NULL;
    }
    json_t *r = json_object();
    json_object_set_new(r, "architectures", json_pack("[s]", cfg_types[ti].hf_arch));
    json_object_set_new(r, "model_type", json_string(cfg_types[ti].model_type));
    json_object_set_new(r, "hidden_size", json_integer(c->d_model));
    json_object_set_new(r, "intermediate_size", json_integer(c->d_ff));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(r, "head_dim", json_integer(c->head_dim));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(r, "rms_norm_eps", j_float(c->rms_eps));
    json_object_set_new(r, "rope_theta", j_float(c->rope_theta));
    if (c->sliding_window > 0) json_object_set_new(r, "sliding_window", json_integer(c->sliding_window));
    int qwen = !strcmp(cfg_types[ti].model_type, "qwen2") || !strcmp(cfg_types[ti].model_type, "qwen3");
    if (qwen && c->sliding_window > 0) {    /* Qwen reads its window only with these */
        json_object_set_new(r, "use_sliding_window", json_true());
        json_object_set_new(r, "max_window_layers", json_integer(c->window_from));
    } else if (c->window_from > 0) {
        mu_set_err(err, errlen, "%s: model_type %s has no windows from a layer on (max_window_layers)", path,
                   cfg_types[ti].model_type);
        json_decref(r);
        return NULL;
    }
    if (gemma23) {
        if (c->sliding_window <= 0) json_object_set_new(r, "sliding_window", json_null());
        json_object_set_new(r, "attn_logit_softcapping", c->attn_softcap > 0 ? j_float(c->attn_softcap) : json_null());
        json_object_set_new(r, "final_logit_softcapping", c->final_softcap > 0 ? j_float(c->final_softcap) : json_null());
        json_object_set_new(r, "query_pre_attn_scalar", j_float(c->query_scalar > 0 ? c->query_scalar : (float)c->head_dim));
        json_object_set_new(r, "hidden_activation", json_string(c->hidden_act));
    }
    if (cfg_types[ti].gemma2 && c->global_every != 2) {
        mu_set_err(err, errlen, "%s: Gemma-2 slides on its even layers (global_every 2, not %d)", path, c->global_every);
        json_decref(r);
        return NULL;
    }
    if (cfg_types[ti].gemma3) {
        json_object_set_new(r, "sliding_window_pattern", json_integer(c->global_every));
        json_object_set_new(r, "rope_local_base_freq", j_float(c->rope_local_theta > 0 ? c->rope_local_theta : c->rope_theta));
    }
    if (!c->rope_scaling[0]) json_object_set_new(r, "rope_scaling", json_null());
    else if (!strcmp(c->rope_scaling, "longrope"))
        json_object_set_new(r, "rope_scaling", longrope_to_json(c, r));
    else if (!strcmp(c->rope_scaling, "linear"))
        json_object_set_new(r, "rope_scaling", json_pack("{s:s, s:o}", "rope_type", "linear", "factor",
                                                         j_float(c->rope_factor)));
    else
        json_object_set_new(r, "rope_scaling",
                            json_pack("{s:s, s:o, s:o, s:o, s:i}", "rope_type", "llama3", "factor",
                                      j_float(c->rope_factor), "low_freq_factor", j_float(c->rope_low_freq),
                                      "high_freq_factor", j_float(c->rope_high_freq),
                                      "original_max_position_embeddings", c->rope_orig_max_pos));
    json_object_set_new(r, "hidden_act", json_string(c->hidden_act));
    if (phi3) json_object_set_new(r, "partial_rotary_factor", json_real(rotary_share(c)));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    if (strcmp(cfg_types[ti].model_type, "qwen2")) {
        json_object_set_new(r, "attention_bias", json_false());
        json_object_set_new(r, "mlp_bias", json_false());
    }
    json_object_set_new(r, "bos_token_id", j_id(c->bos_id));
    json_object_set_new(r, "eos_token_id", j_id(c->eos_id));
    json_object_set_new(r, "pad_token_id", j_id(c->pad_id));
    if (torch_dtype) json_object_set_new(r, "torch_dtype", json_string(torch_dtype));
    return r;
}

char *mu_config_json_text(const mu_config *c, const char *torch_dtype, int indent, const char *name, char *err,
                          size_t errlen) {
    json_t *r = config_to_json(c, torch_dtype, name, err, errlen);
    if (!r) return NULL;
    char *text = json_dumps(r, (indent ? JSON_INDENT(2) : JSON_COMPACT) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(r);
    if (!text) mu_set_err(err, errlen, "%s: cannot encode JSON", name);
    return text;
}

int mu_config_write_json_dtype(const mu_config *c, const char *torch_dtype, const char *path,
                               char *err, size_t errlen) {
    char *text = mu_config_json_text(c, torch_dtype, 1, path, err, errlen);
    if (!text) return -1;
    mu_outfile o;
    if (mu_out_open(&o, path)) {
        mu_set_err(err, errlen, "%s: %s", path, strerror(errno));
        free(text);
        return -1;
    }
    int ok = fputs(text, o.fp) >= 0 && fputc('\n', o.fp) != EOF;
    free(text);
    if (!ok) {
        mu_set_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        mu_out_abort(&o);
        return -1;
    }
    if (mu_out_commit(&o)) {
        mu_set_err(err, errlen, "%s: write failed: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int mu_config_write_json(const mu_config *c, const char *path, char *err, size_t errlen) {
    return mu_config_write_json_dtype(c, NULL, path, err, errlen);
}
