/* config.h — the model hyper-parameters mu needs, read from a Hugging Face config.json
 * (or from GGUF metadata, see mu_config_from_gguf) and written back with HF keys.
 * Llama family: Llama 2/3/3.1, SmolLM/SmolLM2, Mistral, Qwen2, TinyStories; Gemma (GeGLU,
 * RMSNorm by 1 + w, embeddings scaled by sqrt(d_model), tied head); Gemma-2 (Gemma's, plus
 * norms before and after each block, soft-capped attention scores and logits, sliding
 * windows on alternate layers, query_pre_attn_scalar); Gemma-3 text (Gemma-2's layout without
 * soft-caps, q/k norms per head, a window on five layers of six with their own rotary
 * base); OLMo-2 (norms after the blocks, q/k norms); Qwen3 (q/k norms per head); GPT-NeoX
 * (LayerNorms with biases, a plain GELU MLP, fused q/k/v, partial rotary, parallel residual,
 * biases on every projection); GPT-2 (LayerNorms, fused q/k/v, learned positions, Conv1D
 * weights stored [in, out], tied head); Phi (GPT-NeoX's layout with separate q/k/v, one
 * input norm for both parallel branches, a bias on lm_head); Phi-3 (Llama's layout with
 * qkv_proj and gate_up_proj fused, longrope scaling). */
#ifndef MU_CONFIG_H
#define MU_CONFIG_H
#include <stddef.h>
#define MU_ROPE_PAIRS_MAX 256   /* longrope factors: at most this many rotating pairs */

struct mu_gguf;

enum { MU_QK_NORM_ALL = 1, MU_QK_NORM_PER_HEAD = 2 };
enum { MU_QKV_PER_HEAD = 1, MU_QKV_BLOCKS = 2 };   /* fused q/k/v layouts */

typedef struct {
    char arch[32];           /* model family the engine implements: "llama" */
    char model_type[32];     /* HF model_type as read: "llama", "mistral", "qwen2" */
    int n_layer, d_model, n_head, n_kv_head, head_dim, d_ff, vocab, max_pos;
    float rms_eps, rope_theta;
    int tie_embeddings;      /* lm_head shares embed_tokens */
    int qkv_bias;            /* q/k/v projections have biases (Qwen2, attention_bias) */
    /* rope scaling: type "" (none), "llama3", "linear", "longrope" */
    char rope_scaling[16];
    float rope_factor, rope_low_freq, rope_high_freq;
    int rope_orig_max_pos;
    /* rope_scaling "longrope" (Phi-3.5, Phi-4-mini): rotating pair i's frequency divided by
     * rope_short[i], or by rope_long[i] in a forward whose positions reach past
     * rope_orig_max_pos; the rotated dims times rope_attn. rope_pairs: the factors given. */
    int rope_pairs;
    float rope_attn;
    float rope_short[MU_ROPE_PAIRS_MAX], rope_long[MU_ROPE_PAIRS_MAX];
    int bos_id, eos_id, pad_id;   /* -1 if unknown */
    char hidden_act[24];     /* MLP gate activation: "silu" (SwiGLU), "gelu" (GeGLU, erf
                                form) or "gelu_pytorch_tanh" / "gelu_new" (GeGLU, tanh form) */
    int norm_plus_one;       /* Gemma: RMSNorm scales by (1 + w); checkpoints store w, the
                                engine holds 1 + w (mu_arch_stored_offset) */
    int embed_scale;         /* Gemma: embeddings are multiplied by sqrt(d_model) */
    int post_norm;           /* OLMo-2: RMSNorm on each block's output before the residual
                                add (post_attention_layernorm, post_feedforward_layernorm),
                                none on its input */
    int sandwich_norm;       /* Gemma-2 (with post_norm): the input norms as well
                                (input_layernorm, pre_feedforward_layernorm) */
    int qk_norm;             /* RMSNorm on the q and k projections: 0 none, MU_QK_NORM_ALL over
                                all heads (OLMo-2), MU_QK_NORM_PER_HEAD each head over head_dim
                                with one weight [head_dim] (Gemma-3, Qwen3) */
    int sliding_window;      /* Mistral, Gemma-2: a query sees at most this many keys (itself
                                and the window - 1 before it); 0 = none */
    int window_from;         /* with sliding_window: the layers before this one attend globally
                                (Qwen2/3 use_sliding_window: max_window_layers); 0 = none */
    int global_every;        /* with sliding_window: 0, every layer slides (Mistral); k > 0,
                                layer L attends globally when (L + 1) % k == 0 and slides
                                otherwise (Gemma-2: k = 2, the even layers slide) */
    float attn_softcap;      /* Gemma-2 attn_logit_softcapping: scores become c tanh(s / c); 0 none */
    float final_softcap;     /* Gemma-2 final_logit_softcapping: logits become c tanh(z / c); 0 none */
    float query_scalar;      /* Gemma-2/3 query_pre_attn_scalar: scores scale by its -1/2 power
                                instead of head_dim's; 0 = head_dim */
    float rope_local_theta;  /* Gemma-3 rope_local_base_freq: the sliding layers' rotary base,
                                never scaled; 0 = they rotate as the others */
    /* GPT-NeoX (Pythia), model_type gpt_neox, and GPT-2 (gpt2; fused_qkv blocks, learned_pos,
     * conv1d, no rotary): */
    int layer_norm;          /* LayerNorm (centred, weight and bias; eps rms_eps, HF layer_norm_eps)
                                in place of RMSNorm */
    int plain_mlp;           /* the MLP is down(act(up x)), no gate (hidden_act its activation) */
    int fused_qkv;           /* q, k and v in one tensor (+ bias with qkv_bias): MU_QKV_PER_HEAD
                                GPT-NeoX's query_key_value [H * 3 * hd, D], each head's q, k, v
                                rows together; MU_QKV_BLOCKS GPT-2's c_attn, all q, then all k,
                                then all v outputs */
    int learned_pos;         /* GPT-2: absolute position embeddings wpe [max_pos, D] added to the
                                token embeddings, no rotary embedding */
    int conv1d;              /* GPT-2: the projections' weights are stored [in, out] (Conv1D) */
    int rotary_dim;          /* the first rotary_dim dims of each head rotate (rotary_pct * head_dim);
                                0 = all of them */
    int parallel_residual;   /* use_parallel_residual: x + attn(norm1 x) + mlp(norm2 x) */
    int o_bias;              /* the attention output projection has a bias (attention_bias) */
    int mlp_bias;            /* the MLP's up and down projections have biases */
    /* Phi (phi-1, phi-1.5, phi-2), model_type phi: GPT-NeoX's LayerNorms, plain MLP, partial
     * rotary and biases, with separate q/k/v projections and: */
    int shared_norm;         /* with parallel_residual: one input norm for both branches,
                                x + attn(norm x) + mlp(norm x) */
    int head_bias;           /* lm_head has a bias [vocab] */
    /* Phi-3 (phi3): Llama's layout with fused_qkv MU_QKV_BLOCKS (qkv_proj [QD + 2 KD, D]: the q
     * rows, then the k, then the v rows; kv heads may be fewer) and: */
    int fused_gate_up;       /* gate and up in one tensor (gate_up_proj [2 F, D]: the gate rows,
                                then the up rows) */
    char tensor_prefix[24];  /* the checkpoint's tensor names carry it: "language_model." in
                                Gemma-3's multimodal checkpoints (model_type gemma3,
                                Gemma3ForConditionalGeneration), whose text model mu runs
                                (and writes back as gemma3_text); "" otherwise */
} mu_config;

/* Sets model_type and its family's conventions (Gemma: norm_plus_one, embed_scale, tied
 * head, gelu_pytorch_tanh; OLMo-2: post_norm, qk_norm). 0 ok, -1 unknown model_type. */
int mu_config_set_model_type(mu_config *c, const char *model_type);
/* The dims of each head that rotate: rotary_dim, or all head_dim of them. */
int mu_config_rotary_dims(const mu_config *c);
/* Inverse RoPE frequencies [head_dim/2] of the config (llama3 / linear scaling applied;
 * longrope: its short factors), and longrope's for a forward past rope_orig_max_pos. */
void mu_rope_inv_freq(const mu_config *c, float *inv_freq);
void mu_rope_inv_freq_long(const mu_config *c, float *inv_freq);
/* Attention of layer L: the scale of q.k, and the sliding window (0: none). */
float mu_config_attn_scale(const mu_config *c);
int mu_config_layer_window(const mu_config *c, int L);
/* 1 when hidden_act is a GeGLU activation ("gelu", "gelu_pytorch_tanh", "gelu_new"), with
 * *tanh_form set; 0 for "silu"; -1 unknown. */
int mu_config_gelu(const mu_config *c, int *tanh_form);
/* Sets every field to its "unknown/default" value (ids -1, rope_theta 10000,
 * rms_eps 1e-5, hidden_act "silu", arch/model_type "llama", sizes 0). */
void mu_config_init(mu_config *c);

/* Parses config.json (HF keys: hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, num_key_value_heads, head_dim, vocab_size,
 * max_position_embeddings, rms_norm_eps, rope_theta, rope_scaling, tie_word_embeddings,
 * attention_bias, bos/eos/pad_token_id, hidden_act, model_type) and validates it.
 * 0 ok; -1 with a one-line "path: what" in err. */
int mu_config_from_json_file(const char *path, mu_config *c, char *err, size_t errlen);
/* Same from a JSON text already in memory (name is used in messages). */
int mu_config_from_json_str(const char *json, size_t len, const char *name, mu_config *c,
                            char *err, size_t errlen);
/* From GGUF metadata ({arch}.block_count, .embedding_length, .feed_forward_length,
 * .attention.head_count(_kv), .attention.layer_norm_rms_epsilon, .rope.freq_base,
 * .context_length, tokenizer.ggml.tokens length, tokenizer.ggml.bos/eos/padding_token_id).
 * tie_embeddings is set when the file has no output.weight tensor, qkv_bias when
 * blk.0.attn_q.bias exists; gemma, gemma2, gemma3 (model_type gemma3_text), olmo2 and qwen3 set
 * their conventions (Gemma: gelu's tanh form, as llama.cpp runs it; Gemma-2/3:
 * {arch}.attn_logit_softcapping, .final_logit_softcapping, .attention.sliding_window, and
 * what llama.cpp fixes: query_pre_attn_scalar head_dim, or hidden / heads for the 27B
 * models (46 / 62 layers), and Gemma-3's window on five layers of six with local rotary
 * base 10000). Refused: architectures other than llama/mistral/qwen2/qwen3/gemma/gemma2/gemma3/olmo2,
 * rope scaling other than linear, and a rope_freqs.weight tensor other than the llama3
 * scalings of Llama 3.1 and 3.2 (factor 8 or 32, low 1, high 4, original 8192), which
 * are read back as those HF parameters. */
int mu_config_from_gguf(const struct mu_gguf *g, mu_config *c, char *err, size_t errlen);

/* Positive sizes, d_model == n_head*head_dim is NOT required (head_dim may differ), but
 * n_head % n_kv_head == 0, head_dim even, known rope scaling / activation, ids < vocab. */
int mu_config_validate(const mu_config *c, char *err, size_t errlen);

/* Writes config.json with HF keys (architectures, model_type, torch_dtype from dtype_name
 * if non-NULL e.g. "float32"/"bfloat16"), atomically (temp + rename). */
int mu_config_write_json(const mu_config *c, const char *path, char *err, size_t errlen);
int mu_config_write_json_dtype(const mu_config *c, const char *torch_dtype, const char *path,
                               char *err, size_t errlen);
/* The same JSON as text (malloc'd; indented by 2 or, indent 0, on one line); NULL + "name: what". */
char *mu_config_json_text(const mu_config *c, const char *torch_dtype, int indent, const char *name, char *err,
                          size_t errlen);
#endif
