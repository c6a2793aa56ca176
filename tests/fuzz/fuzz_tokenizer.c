/* fuzz_tokenizer.c — a tokenizer.json loaded, then used: encode (with offsets and
 * specials) and decode of fixed texts, on any bytes. */
#include <string.h>
#include "fuzz.h"
#include "tokenizer.h"

static void use(mu_tokenizer *tk, const char *text)
{
    char err[512]; int32_t *ids; size_t n, *offs; char *out; size_t len;
    if (mu_tok_encode(tk, text, strlen(text), 1, &ids, &n, err, sizeof err) == 0) {
        if (mu_tok_decode(tk, ids, n, 1, &out, &len, err, sizeof err) == 0) free(out);
        free(ids);
    }
    if (mu_tok_encode_offsets(tk, text, strlen(text), &ids, &offs, &n, err, sizeof err) == 0) {
        for (size_t i = 0; i < n; i++)
            if (offs[2 * i] > offs[2 * i + 1] || offs[2 * i + 1] > strlen(text)) abort();
        free(ids); free(offs);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512] = "";
    const char *path = fuzz_file(data, size, "-tokenizer.json");
    mu_tokenizer *tk = mu_tokenizer_load(path, err, sizeof err);
    if (!tk) { fuzz_check_err(err, path); return 0; }
    use(tk, "LeBron James plays basketball.");
    use(tk, "  caf\xc3\xa9 \xe2\x80\x94 <|im_start|>user\n12345 \xf0\x9f\x98\x80\t");
    use(tk, "");
    mu_tokenizer_free(tk);
    return 0;
}
