/* t_mask.c — mask units (rows/columns/heads), shorthand specs, stream round trip and
 * rejection of inconsistent mask streams. */
#include "test.h"
#include "mask.h"
#include "config.h"
#include "stream.h"
#include <limits.h>

/* A tiny Llama config: 3 layers, d 8, 2 heads of 4 (1 kv head), d_ff 12, vocab 20, untied. */
static int tiny_params(mu_param_info **p) {
    mu_config c;
    mu_config_init(&c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.n_layer = 3; c.d_model = 8; c.n_head = 2; c.n_kv_head = 1; c.head_dim = 4;
    c.d_ff = 12; c.vocab = 20; c.max_pos = 64; c.tie_embeddings = 0;
    int n = mu_arch_params(&c, p);
    CHECK(n > 0);
    return n;
}

TEST(mask_neuron_units_are_rows_of_up_and_columns_of_down) {
    mu_mask m;
    char err[256];
    mu_mask_init(&m, "neuron", 0);
    int64_t up[2] = {12, 8}, down[2] = {8, 12};
    mu_mask_tensor *tu = mu_mask_add(&m, "model.layers.0.mlp.up_proj.weight", 2, up, MU_GRAN_NEURON, 12, err, sizeof err);
    mu_mask_tensor *td = mu_mask_add(&m, "model.layers.0.mlp.down_proj.weight", 2, down, MU_GRAN_NEURON, 12, err, sizeof err);
    CHECK(tu && td);
    tu = &m.t[0];
    mu_mask_set(tu, 3, 1);
    mu_mask_set(td, 3, 1);
    mu_mask_set(td, 11, 1);
    int64_t *idx, n = mu_mask_indices(tu, &idx);
    CHECK_EQ_INT(n, 8);
    for (int i = 0; i < 8; i++) CHECK_EQ_INT(idx[i], 3 * 8 + i);     /* row 3 */
    free(idx);
    n = mu_mask_indices(td, &idx);
    CHECK_EQ_INT(n, 16);
    for (int r = 0; r < 8; r++) {                                       /* columns 3 and 11 */
        CHECK_EQ_INT(idx[2 * r], r * 12 + 3);
        CHECK_EQ_INT(idx[2 * r + 1], r * 12 + 11);
    }
    free(idx);
    CHECK_EQ_INT(mu_mask_params(&m), 24);
    /* wrong unit count for a neuron mask */
    CHECK(!mu_mask_add(&m, "model.layers.1.mlp.up_proj.weight", 2, up, MU_GRAN_NEURON, 8, err, sizeof err));
    CHECK(strstr(err, "needs 12 units") != NULL);
    CHECK(!mu_mask_add(&m, "model.layers.0.mlp.up_proj.weight", 2, up, MU_GRAN_MATRIX, 1, err, sizeof err));
    CHECK(strstr(err, "twice") != NULL);
    mu_mask_free(&m);
}

TEST(mask_head_units) {
    mu_mask m;
    char err[256];
    mu_mask_init(&m, "head", 0);
    int64_t q[2] = {8, 8}, o[2] = {8, 8};
    CHECK(mu_mask_add(&m, "model.layers.1.self_attn.q_proj.weight", 2, q, MU_GRAN_HEAD, 2, err, sizeof err));
    CHECK(mu_mask_add(&m, "model.layers.1.self_attn.o_proj.weight", 2, o, MU_GRAN_HEAD, 2, err, sizeof err));
    mu_mask_set(&m.t[0], 1, 1);
    mu_mask_set(&m.t[1], 1, 1);
    for (int64_t i = 0; i < 64; i++) {
        CHECK_EQ_INT(mu_mask_element(&m.t[0], i), i / 8 >= 4);        /* rows 4..7 */
        CHECK_EQ_INT(mu_mask_element(&m.t[1], i), i % 8 >= 4);        /* columns 4..7 */
    }
    CHECK(!mu_mask_add(&m, "model.layers.2.self_attn.q_proj.weight", 2, q, MU_GRAN_HEAD, 3, err, sizeof err));
    CHECK(strstr(err, "do not divide") != NULL);
    mu_mask_free(&m);
}

TEST(mask_spec_shorthands) {
    mu_param_info *p;
    int np = tiny_params(&p);
    mu_mask m;
    char err[256];
    CHECK_MSG(mu_mask_from_spec("mlp:1-2", p, np, &m, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(m.n, 6);
    CHECK(mu_mask_find(&m, "model.layers.1.mlp.down_proj.weight") >= 0);
    CHECK(mu_mask_find(&m, "model.layers.0.mlp.down_proj.weight") < 0);
    CHECK_EQ_INT(mu_mask_params(&m), 2 * 3 * 12 * 8);
    CHECK_EQ_INT(m.params_total, mu_arch_numel(p, np));
    mu_mask_free(&m);
    CHECK(mu_mask_from_spec("attn:0+mlp.down:2", p, np, &m, err, sizeof err) == 0);
    CHECK_EQ_INT(m.n, 5);
    CHECK_EQ_INT(mu_mask_params(&m), 8 * 8 + 4 * 8 + 4 * 8 + 8 * 8 + 8 * 12);
    mu_mask_free(&m);
    CHECK(mu_mask_from_spec("layers:0,2", p, np, &m, err, sizeof err) == 0);
    CHECK_EQ_INT(m.n, 2 * 9);
    mu_mask_free(&m);
    CHECK(mu_mask_from_spec("all", p, np, &m, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_mask_params(&m), mu_arch_numel(p, np));
    mu_mask_free(&m);
    CHECK(mu_mask_from_spec("mlp:3", p, np, &m, err, sizeof err) < 0);
    CHECK(strstr(err, "out of range") != NULL);
    CHECK(mu_mask_from_spec("mlpx:1", p, np, &m, err, sizeof err) < 0);
    CHECK(strstr(err, "unknown group") != NULL);
    CHECK(mu_mask_from_spec("mlp", p, np, &m, err, sizeof err) < 0);
    CHECK(mu_mask_from_spec("mlp:1-", p, np, &m, err, sizeof err) < 0);
    CHECK(mu_mask_from_spec("embed:1", p, np, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "embed takes no layers") != NULL, "%s", err);
    CHECK(mu_mask_from_spec("", p, np, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "mask spec is empty") != NULL, "%s", err);
    CHECK(mu_mask_from_spec("+", p, np, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "mask spec is empty") != NULL, "%s", err);
    free(p);
    /* a tied head: lm_head is the embedding, not a parameter of its own */
    mu_config c;
    mu_config_init(&c);
    snprintf(c.arch, sizeof c.arch, "llama");
    c.n_layer = 1; c.d_model = 8; c.n_head = 2; c.n_kv_head = 1; c.head_dim = 4;
    c.d_ff = 12; c.vocab = 20; c.max_pos = 64; c.tie_embeddings = 1;
    np = mu_arch_params(&c, &p);
    CHECK(np > 0);
    CHECK(mu_mask_from_spec("mlp:0+lm_head", p, np, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "'lm_head': selects no parameter of this model") != NULL, "%s", err);
    free(p);
}

TEST(mask_stream_roundtrip) {
    mu_param_info *p;
    int np = tiny_params(&p);
    mu_mask m, back;
    char err[256], path[PATH_MAX];
    mu_mask_init(&m, "element", mu_arch_numel(p, np));
    int j = mu_arch_find(p, np, "model.layers.2.mlp.gate_proj.weight");
    CHECK(j >= 0);
    mu_mask_tensor *t = mu_mask_add(&m, p[j].name, 2, p[j].shape, MU_GRAN_ELEMENT, 96, err, sizeof err);
    CHECK_MSG(t, "%s", err);
    for (int u = 0; u < 96; u += 7) mu_mask_set(t, u, 1);
    snprintf(path, sizeof path, "%s/m.mpk.zst", mu_test_tmpdir());
    mu_mask_write(&m, path, NULL, NULL, 0);
    CHECK_MSG(mu_mask_read(path, &back, err, sizeof err) == 0, "%s", err);
    CHECK_STR(back.granularity, "element");
    CHECK_EQ_INT(back.params_total, m.params_total);
    CHECK_EQ_INT(back.n, 1);
    CHECK_STR(back.t[0].name, p[j].name);
    CHECK_EQ_INT(mu_mask_params(&back), 14);
    CHECK(memcmp(back.t[0].bits, t->bits, 12) == 0);
    CHECK(mu_mask_check(&back, p, np, err, sizeof err) == 0);
    mu_mask_free(&back);
    /* a mask for a different shape is refused against this model */
    mu_mask other;
    mu_mask_init(&other, "matrix", 0);
    int64_t wrong[2] = {12, 9};
    CHECK(mu_mask_add(&other, p[j].name, 2, wrong, MU_GRAN_MATRIX, 1, err, sizeof err));
    CHECK(mu_mask_check(&other, p, np, err, sizeof err) < 0);
    CHECK(strstr(err, "mask shape") != NULL);
    mu_mask_free(&other);
    mu_mask_free(&m);
    free(p);
}

/* A record whose "selected" disagrees with its bits, and a stream of another kind. */
TEST(mask_stream_rejects_inconsistent_records) {
    char path[PATH_MAX], err[512];
    snprintf(path, sizeof path, "%s/bad.mpk.zst", mu_test_tmpdir());
    mu_writer *w = mu_writer_open(path, "mask");
    mu_pack_str(mu_writer_meta(w, "granularity"), "neuron");
    for (int rec = 0; rec < 2; rec++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 7);
        mu_pack_kv_str(pk, "name", rec ? "b" : "a");
        mu_pack_str(pk, "shape");
        msgpack_pack_array(pk, 2);
        msgpack_pack_int64(pk, 4);
        msgpack_pack_int64(pk, 3);
        mu_pack_kv_str(pk, "granularity", "neuron");
        mu_pack_kv_int(pk, "units", 4);
        mu_pack_str(pk, "bits");
        unsigned char bits = 0x5;
        msgpack_pack_bin(pk, 1);
        msgpack_pack_bin_body(pk, &bits, 1);
        mu_pack_kv_int(pk, "selected", rec ? 3 : 2);
        mu_pack_kv_int(pk, "params", 6);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
    mu_mask m;
    CHECK(mu_mask_read(path, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "record 1") && strstr(err, "\"selected\"") && strstr(err, path), "%s", err);
    w = mu_writer_open(path, "scores");
    mu_writer_close(w);
    CHECK(mu_mask_read(path, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "mask"), "%s", err);
}

/* One record of tensor "w" [4, 3], neuron units, with field `bad` broken (0: none). */
enum { BAD_NONE, BAD_SHAPE_TYPE, BAD_SHAPE_RANK, BAD_SHAPE_ZERO, BAD_GRAN, BAD_UNITS,
       BAD_BITS_SIZE, BAD_PARAMS, BAD_NAME, BAD_COUNT };

static void write_one_mask_record(const char *path, int bad) {
    mu_writer *w = mu_writer_open(path, "mask");
    mu_pack_str(mu_writer_meta(w, "granularity"), "neuron");
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, 7);
    mu_pack_str(pk, "name");
    if (bad == BAD_NAME) msgpack_pack_int64(pk, 7); else mu_pack_str(pk, "w");
    mu_pack_str(pk, "shape");
    if (bad == BAD_SHAPE_TYPE) mu_pack_str(pk, "4x3");
    else {
        int rank = bad == BAD_SHAPE_RANK ? 3 : 2;
        msgpack_pack_array(pk, (size_t)rank);
        for (int d = 0; d < rank; d++) msgpack_pack_int64(pk, d == 0 ? (bad == BAD_SHAPE_ZERO ? 0 : 4) : 3);
    }
    mu_pack_kv_str(pk, "granularity", bad == BAD_GRAN ? "row" : "neuron");
    mu_pack_kv_int(pk, "units", bad == BAD_UNITS ? 0 : 4);
    mu_pack_str(pk, "bits");
    unsigned char bits[2] = {0x5, 0};
    size_t nb = bad == BAD_BITS_SIZE ? 2 : 1;
    msgpack_pack_bin(pk, nb);
    msgpack_pack_bin_body(pk, bits, nb);
    mu_pack_kv_int(pk, "selected", 2);
    mu_pack_kv_int(pk, "params", bad == BAD_PARAMS ? 5 : 6);
    mu_writer_end_record(w);
    mu_writer_close(w);
}

/* Each broken field of a mask record is refused with a message naming the file, the
 * record and the field; the unbroken record reads. */
TEST(mask_stream_names_each_bad_field) {
    static const char *want[BAD_COUNT] = {
        NULL, "\"shape\" must be an array of 1 or 2 ints", "\"shape\" must be an array of 1 or 2 ints",
        "bad \"shape\"", "\"granularity\" must be element, neuron, head or matrix",
        "missing or bad \"units\"", "\"bits\" must be bin of 1 bytes", "\"params\" does not match",
        "\"name\"",
    };
    char path[PATH_MAX], err[512];
    for (int bad = 0; bad < BAD_COUNT; bad++) {
        snprintf(path, sizeof path, "%s/bad%d.mpk.zst", mu_test_tmpdir(), bad);
        write_one_mask_record(path, bad);
        mu_mask m;
        int rc = mu_mask_read(path, &m, err, sizeof err);
        if (bad == BAD_NONE) {
            CHECK_MSG(rc == 0, "%s", err);
            CHECK(m.n == 1 && mu_mask_selected(&m.t[0]) == 2 && mu_mask_tensor_params(&m.t[0]) == 6);
            mu_mask_free(&m);
            continue;
        }
        CHECK_MSG(rc < 0, "broken field %d was read", bad);
        CHECK_MSG(strstr(err, path) && strstr(err, "record 0") && strstr(err, want[bad]),
                  "field %d: %s", bad, err);
    }
}

