/* tokenizer.h — the tokenizers of real models, one module for every tool that needs text.
 *
 * Sources (mu_tokenizer_load):
 *   - a Hugging Face tokenizer.json (or a model directory holding one; its
 *     tokenizer_config.json is read for the chat template and add_bos/eos flags);
 *   - the tokenizer embedded in a GGUF file (tokenizer.ggml.* keys).
 * Models:
 *   - byte-level BPE (GPT-2, GPT-NeoX, Llama-3, Qwen2, SmolLM): pre-tokenizer regexes
 *     run with PCRE2 (UTF + UCP, JIT), bytes mapped through the GPT-2 byte alphabet,
 *     merges by rank;
 *   - SentencePiece-style BPE with byte fallback (Llama-2, Gemma, TinyStories): merges by
 *     rank (tokenizer.json) or by token score (GGUF "llama"), unknown characters as
 *     <0xXX> byte tokens.
 * Added/special tokens are matched in the raw text before normalization (HF semantics,
 * longest match first), so "<|im_start|>" in a chat prompt becomes one token.
 *
 * Offsets: mu_tok_encode_offsets gives, per token, the byte range [start, end) of the
 * input text it came from (a byte-fallback token covers its own byte; a token made only of
 * text a normalizer inserted, like SentencePiece's leading space, has an empty range at
 * the insertion point; behind a Unicode normalizer a token's range covers whole chunks, a
 * chunk being a character with the combining marks after it, or a run the form composes
 * into one). Widened to whole characters they equal HF's offsets, or hold them within
 * those chunks (tests/t_tokenizer.c). Spans of template fields are computed from these
 * (see dataset.h).
 *
 * Not supported (an error at load, never a silent approximation): tokenizer.json models
 * other than BPE (WordPiece, Unigram), continuing_subword_prefix, Regex patterns in
 * Replace normalizers, inverted or Contiguous splits. Known simplifications: added tokens
 * are always matched in the raw text (HF matches "normalized" ones after normalization,
 * which differs only if a normalizer changes them) and single_word is ignored.
 *
 * A mu_tokenizer is immutable after loading except for an internal cache of encoded
 * pre-tokens; do not share one tokenizer between threads that encode concurrently. */
#ifndef MU_TOKENIZER_H
#define MU_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>

typedef struct mu_tokenizer mu_tokenizer;

/* Chat template families (no Jinja engine: the known templates are recognised). */
typedef enum {
    MU_CHAT_NONE = 0, MU_CHAT_CHATML, MU_CHAT_LLAMA3, MU_CHAT_LLAMA2, MU_CHAT_GEMMA
} mu_chat_kind;

/* path: a directory (its tokenizer.json), a tokenizer.json file, or a .gguf file.
 * NULL on failure with a one-line message "path: what" in err. */
mu_tokenizer *mu_tokenizer_load(const char *path, char *err, size_t errlen);
void mu_tokenizer_free(mu_tokenizer *tk);

/* Encodes len bytes of UTF-8 text. add_special: add the model's default BOS/EOS
 * (post-processor / add_bos_token). *ids is malloc'd (caller frees).
 * Returns 0, or -1 with a message in err (invalid UTF-8: "invalid UTF-8 at byte N"). */
int mu_tok_encode(mu_tokenizer *tk, const char *text, size_t len, int add_special,
                  int32_t **ids, size_t *n, char *err, size_t errlen);
/* As mu_tok_encode without special tokens, also returning per-token byte offsets into
 * text: (*offs)[2*i], (*offs)[2*i+1] = [start, end). *offs is malloc'd. */
int mu_tok_encode_offsets(mu_tokenizer *tk, const char *text, size_t len,
                          int32_t **ids, size_t **offs, size_t *n, char *err, size_t errlen);

/* The token span [*ts, *te) of the input bytes [s, e): the tokens whose (non-empty) byte
 * ranges overlap it. An empty byte range gives an empty span at the first token starting
 * at or after s. offs as from mu_tok_encode_offsets. */
void mu_tok_span(const size_t *offs, size_t n, size_t s, size_t e, size_t *ts, size_t *te);

/* Decodes ids to UTF-8 text (NUL-terminated, malloc'd; *len without the NUL).
 * skip_special: leave out special tokens (mu_tok_is_special). Invalid byte sequences become U+FFFD.
 * Returns 0, or -1 if an id is out of range (message in err). */
int mu_tok_decode(const mu_tokenizer *tk, const int32_t *ids, size_t n, int skip_special,
                  char **text, size_t *len, char *err, size_t errlen);

/* mu_tok_decode for ids a model produced: a model's vocabulary (model_vocab) may be padded
 * beyond its tokenizer's (Qwen2, mu-init); ids in that padding have no text and decode to
 * nothing, as in transformers. Other ids out of range are still an error. */
int mu_tok_decode_model_ids(const mu_tokenizer *tk, const int32_t *ids, size_t n, size_t model_vocab,
                            int skip_special, char **text, size_t *len, char *err, size_t errlen);

int32_t mu_tok_bos(const mu_tokenizer *tk);   /* -1 when the model has none */
int32_t mu_tok_eos(const mu_tokenizer *tk);
int mu_tok_add_bos_default(const mu_tokenizer *tk);  /* the model's own default */
int mu_tok_add_eos_default(const mu_tokenizer *tk);
size_t mu_tok_vocab_size(const mu_tokenizer *tk);
/* Id of a token given in the vocabulary's own spelling ("<s>", "Ġthe", "▁the"); -1 if none. */
int32_t mu_tok_token_to_id(const mu_tokenizer *tk, const char *token);
/* 1 for control tokens (special added tokens, GGUF CONTROL) and <unk>: the tokens that
 * decoding with skip_special leaves out. */
int mu_tok_is_special(const mu_tokenizer *tk, int32_t id);
/* "bpe-bytelevel" or "bpe-spm" */
const char *mu_tok_model_kind(const mu_tokenizer *tk);

/* Chat template: the family detected from tokenizer_config.json's chat_template or GGUF
 * tokenizer.chat_template (MU_CHAT_NONE if absent or not recognised). */
mu_chat_kind mu_tok_chat_kind(const mu_tokenizer *tk);
/* The system message the template uses when none is given (SmolLM2, Qwen2), or NULL. */
const char *mu_tok_chat_default_system(const mu_tokenizer *tk);
const char *mu_chat_kind_name(mu_chat_kind k);
mu_chat_kind mu_chat_detect(const char *jinja_template);
/* Formats one user turn (optional system message) followed by the opening of the
 * assistant's turn, as the family's template does with add_generation_prompt. The BOS
 * that some templates start with is NOT included (it is added as a special token by the
 * caller, so it is never duplicated). Returns malloc'd text, NULL if kind is NONE. */
char *mu_chat_format(mu_chat_kind kind, const char *system, const char *user);
/* mu_chat_format with the tokenizer's own family, and its default system message when
 * system is NULL (pass "" for none). NULL if the model has no known template. */
char *mu_tok_chat(const mu_tokenizer *tk, const char *system, const char *user);
#endif
