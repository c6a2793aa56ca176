/* fuzz_gguf.c — mu_gguf_open, every key and array element, every tensor dequantized,
 * the model config and the tokenizer read from it, on any bytes. */
#include <string.h>
#include "fuzz.h"
#include "gguf.h"
#include "config.h"
#include "tokenizer.h"

static void read_kvs(const mu_gguf *g)
{
    for (int i = 0; i < mu_gguf_n_kv(g); i++) {
        const char *key = mu_gguf_key(g, i), *s; size_t len; uint32_t u; int64_t v; float f;
        int b, et; uint64_t n; int32_t i32;
        mu_gguf_kv_type(g, key);
        mu_gguf_get_str(g, key, &s, &len); mu_gguf_get_u32(g, key, &u);
        mu_gguf_get_i64(g, key, &v); mu_gguf_get_f32(g, key, &f); mu_gguf_get_bool(g, key, &b);
        if (mu_gguf_arr_len(g, key, &n, &et) == 0)
            for (uint64_t k = 0; k < n && k < 4096; k++) {
                mu_gguf_arr_str(g, key, k, &s, &len); mu_gguf_arr_f32(g, key, k, &f);
                mu_gguf_arr_i32(g, key, k, &i32);
            }
    }
}

static void read_tensors(const mu_gguf *g, const char *path)
{
    for (int i = 0; i < mu_gguf_n_tensors(g); i++) {
        int type, nd; int64_t ne[8]; const void *p; size_t nbytes; char err[512] = "";
        if (mu_gguf_tensor_info(g, i, &type, &nd, ne, &p, &nbytes)) abort();
        size_t n = 1;
        for (int d = 0; d < nd; d++) n *= (size_t)ne[d];
        if (n > (1u << 20)) continue;
        float *dst = malloc((n ? n : 1) * sizeof *dst);
        if (mu_gguf_tensor_f32(g, mu_gguf_tensor_name(g, i), dst, n, err, sizeof err))
            fuzz_check_err(err, path);
        free(dst);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const char *path = fuzz_file(data, size, ".gguf");
    mu_gguf *g = mu_gguf_open(path, err, sizeof err);
    if (!g) { fuzz_check_err(err, path); return 0; }
    read_kvs(g);
    read_tensors(g, path);
    mu_config c;
    mu_config_init(&c);
    err[0] = 0;
    if (mu_config_from_gguf(g, &c, err, sizeof err) == 0) mu_config_validate(&c, err, sizeof err);
    mu_gguf_close(g);
    err[0] = 0;
    mu_tokenizer *tk = mu_tokenizer_load(path, err, sizeof err);
    if (!tk) { fuzz_check_err(err, path); return 0; }
    int32_t *ids; size_t n; char *text; size_t len;
    if (mu_tok_encode(tk, "Hello world, 12 caf\xc3\xa9s!", 22, 1, &ids, &n, err, sizeof err) == 0) {
        if (mu_tok_decode(tk, ids, n, 0, &text, &len, err, sizeof err) == 0) free(text);
        free(ids);
    }
    mu_tokenizer_free(tk);
    return 0;
}
