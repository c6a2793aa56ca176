/* t_maskgen.c — mu-maskgen's logic (lib/maskgen.h): top units against a brute-force ranking,
 * ties, per-tensor scope, the fraction size rule with unequal unit sizes, seeded random
 * masks (reproducible, exact size, uniform), random complements, the deterministic
 * complement, candidates from a model config, and rejection of bad scores streams. */
#include "test.h"
#include "maskgen.h"
#include "rng.h"
#include "stream.h"
#include <limits.h>

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    const char *gran;
    int64_t units;
    const float *score;
} rec_spec;

/* Writes a scores stream (meta params_total; records as mu-attrib writes them). */
static void write_scores(const char *path, int64_t params_total, const rec_spec *r, int n) {
    mu_writer *w = mu_writer_open(path, "scores");
    mu_pack_str(mu_writer_meta(w, "method"), "test");
    mu_pack_str(mu_writer_meta(w, "granularity"), n ? r[0].gran : "neuron");
    msgpack_pack_int64(mu_writer_meta(w, "params_total"), params_total);
    for (int i = 0; i < n; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 5);
        mu_pack_kv_str(pk, "name", r[i].name);
        mu_pack_str(pk, "shape");
        msgpack_pack_array(pk, (size_t)r[i].ndim);
        for (int d = 0; d < r[i].ndim; d++) msgpack_pack_int64(pk, r[i].shape[d]);
        mu_pack_kv_str(pk, "granularity", r[i].gran);
        mu_pack_kv_int(pk, "units", r[i].units);
        int64_t us = r[i].units;
        mu_pack_kv_tensor(pk, "score", MU_F32, 1, &us, r[i].score);
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

static const char *tmp_path(const char *base) {
    static char p[4][PATH_MAX];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", mu_test_tmpdir(), base);
    return p[k];
}

/* Four tensors with unit sizes 8 (rows of up), 8 (columns of down), 32 (heads of q) and
 * 1 (elements of a norm); scores from a few values so that ties are common. */
enum { NT = 4, NU = 12 + 12 + 2 + 8 };
static float S_UP[12], S_DOWN[12], S_Q[2], S_NORM[8];
static rec_spec SPECS[NT] = {
    {"model.layers.0.mlp.up_proj.weight", 2, {12, 8}, "neuron", 12, S_UP},
    {"model.layers.0.mlp.down_proj.weight", 2, {8, 12}, "neuron", 12, S_DOWN},
    {"model.layers.0.self_attn.q_proj.weight", 2, {8, 8}, "head", 2, S_Q},
    {"model.layers.0.input_layernorm.weight", 1, {8, 0}, "element", 8, S_NORM},
};
static const int64_t UNIT_SIZE[NT] = {8, 8, 32, 1};
#define PARAMS_TOTAL 1000

static void fill_scores(uint64_t seed) {
    mu_rng r;
    mu_rng_seed(&r, seed);
    float *all[NT] = {S_UP, S_DOWN, S_Q, S_NORM};
    for (int t = 0; t < NT; t++)
        for (int64_t u = 0; u < SPECS[t].units; u++) all[t][u] = (float)mu_rng_below(&r, 5) - 2.0f;
}

static void read_cands(mu_cands *c) {
    const char *p = tmp_path("s.mpk.zst");
    write_scores(p, PARAMS_TOTAL, SPECS, NT);
    char err[512];
    CHECK_MSG(mu_cands_read_scores(p, c, err, sizeof err) == 0, "%s", err);
}

/* Brute force: every (score, record, unit) tuple, sorted by an insertion sort. */
typedef struct { float s; int rec; int64_t unit; } tuple;
static int tuple_before(const tuple *a, const tuple *b, int lowest) {
    if (a->s != b->s) return lowest ? a->s < b->s : a->s > b->s;
    if (a->rec != b->rec) return a->rec < b->rec;
    return a->unit < b->unit;
}
static int ref_order(tuple *tu, int lowest) {
    int n = 0;
    for (int t = 0; t < NT; t++)
        for (int64_t u = 0; u < SPECS[t].units; u++) tu[n++] = (tuple){SPECS[t].score[u], t, u};
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && tuple_before(&tu[j], &tu[j - 1], lowest); j--) {
            tuple x = tu[j]; tu[j] = tu[j - 1]; tu[j - 1] = x;
        }
    return n;
}

/* Whether mask m selects unit u of tensor name. */
static int sel(const mu_mask *m, const char *name, int64_t u) {
    int i = mu_mask_find(m, name);
    return i >= 0 && mu_mask_get(&m->t[i], u);
}

static int64_t n_selected(const mu_mask *m) {
    int64_t k = 0;
    for (int i = 0; i < m->n; i++) k += mu_mask_selected(&m->t[i]);
    return k;
}

/* m selects exactly the first k tuples of tu[n]. */
static void check_prefix(const mu_mask *m, const tuple *tu, int n, int k) {
    for (int i = 0; i < n; i++)
        CHECK_MSG(sel(m, SPECS[tu[i].rec].name, tu[i].unit) == (i < k), "rank %d (%s unit %lld): %d, want %d", i,
                  SPECS[tu[i].rec].name, (long long)tu[i].unit, sel(m, SPECS[tu[i].rec].name, tu[i].unit), i < k);
    CHECK_EQ_INT(n_selected(m), k);
}

TEST(maskgen_top_units_match_bruteforce) {
    for (uint64_t seed = 1; seed <= 6; seed++) {
        fill_scores(seed);
        mu_cands c;
        read_cands(&c);
        CHECK_EQ_INT(mu_cands_units(&c), NU);
        CHECK_EQ_INT(mu_cands_params(&c), 96 + 96 + 64 + 8);
        tuple tu[NU];
        for (int lowest = 0; lowest < 2; lowest++) {
            int n = ref_order(tu, lowest);
            for (int k = 1; k <= NU; k++) {   /* --units k */
                mu_select_opts o = {.order = lowest ? MU_ORDER_LOWEST : MU_ORDER_TOP, .units = k};
                mu_mask m;
                char err[256];
                CHECK_MSG(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0, "%s", err);
                check_prefix(&m, tu, n, k);
                CHECK_EQ_INT(m.params_total, PARAMS_TOTAL);
                mu_mask_free(&m);
            }
            for (int64_t P = 1; P <= 264; P += 7) {   /* element targets: shortest prefix reaching P */
                int k = 0;
                for (int64_t cum = 0; cum < P; k++) cum += UNIT_SIZE[tu[k].rec];
                mu_select_opts o = {.order = lowest ? MU_ORDER_LOWEST : MU_ORDER_TOP, .params = P};
                mu_mask m;
                char err[256];
                CHECK_MSG(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0, "%s", err);
                check_prefix(&m, tu, n, k);
                CHECK(mu_mask_params(&m) >= P);
                mu_mask_free(&m);
            }
        }
        mu_cands_free(&c);
    }
}

TEST(maskgen_ties_break_by_record_then_unit) {
    for (int t = 0; t < NT; t++)
        for (int64_t u = 0; u < SPECS[t].units; u++) ((float *)SPECS[t].score)[u] = 1.0f;
    S_DOWN[5] = 2.0f;                                  /* one unit above the tie */
    mu_cands c;
    read_cands(&c);
    mu_select_opts o = {.order = MU_ORDER_TOP, .units = 15};
    mu_mask m;
    char err[256];
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
    /* down unit 5, then all 12 up rows, then down units 0 and 1 */
    CHECK(sel(&m, SPECS[1].name, 5));
    for (int u = 0; u < 12; u++) CHECK(sel(&m, SPECS[0].name, u));
    CHECK(sel(&m, SPECS[1].name, 0) && sel(&m, SPECS[1].name, 1) && !sel(&m, SPECS[1].name, 2));
    CHECK_EQ_INT(n_selected(&m), 15);
    CHECK_EQ_INT(m.n, 2);                              /* tensors without a unit get no record */
    CHECK_STR(m.granularity, "mixed");
    mu_mask_free(&m);
    /* lowest: the tie again broken by record then unit; the 2.0 unit never comes first */
    o.order = MU_ORDER_LOWEST;
    o.units = 3;
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
    CHECK(sel(&m, SPECS[0].name, 0) && sel(&m, SPECS[0].name, 1) && sel(&m, SPECS[0].name, 2));
    mu_mask_free(&m);
    mu_cands_free(&c);
}

/* Unit sizes 8 and 1: the target is round(F * total), whole units, stopping at the first
 * unit that reaches it. */
TEST(maskgen_fraction_rounding_unequal_units) {
    CHECK_EQ_INT(mu_maskgen_fraction_target(0.0125, 1000), 13);   /* 12.5 rounds up */
    CHECK_EQ_INT(mu_maskgen_fraction_target(0.0124, 1000), 12);
    CHECK_EQ_INT(mu_maskgen_fraction_target(1.0, 1000), 1000);
    float a[4] = {10, 9, 1, 0}, b[8] = {8.5f, 8, 7, 6, 5, 4, 3, 2};
    rec_spec r[2] = {{"model.layers.1.mlp.gate_proj.weight", 2, {4, 8}, "neuron", 4, a},
                     {"model.norm.weight", 1, {8, 0}, "element", 8, b}};
    const char *p = tmp_path("f.mpk.zst");
    write_scores(p, 1000, r, 2);
    mu_cands c;
    char err[256];
    CHECK_MSG(mu_cands_read_scores(p, &c, err, sizeof err) == 0, "%s", err);
    /* target -> (units, params) by hand: 8 -> a0; 9 and 13 -> a0 a1; 17 -> a0 a1 b0;
     * 20 -> a0 a1 b0..b3 */
    static const struct { double f; int64_t units, params; } want[] = {
        {0.008, 1, 8}, {0.009, 2, 16}, {0.0125, 2, 16}, {0.017, 3, 17}, {0.020, 6, 20}, {0.040, 12, 40}};
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        mu_select_opts o = {.order = MU_ORDER_TOP, .params = mu_maskgen_fraction_target(want[i].f, 1000)};
        mu_mask m;
        CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
        CHECK_EQ_INT(n_selected(&m), want[i].units);
        CHECK_EQ_INT(mu_mask_params(&m), want[i].params);
        mu_mask_free(&m);
    }
    /* above the candidates (40 parameters): an error naming both numbers */
    mu_select_opts o = {.order = MU_ORDER_TOP, .params = 41};
    mu_mask m;
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "41") && strstr(err, "40"), "%s", err);
    o = (mu_select_opts){.order = MU_ORDER_RANDOM, .units = 13};
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "13 units") && strstr(err, "12"), "%s", err);
    o = (mu_select_opts){.order = MU_ORDER_TOP, .params = 0};   /* e.g. --fraction 1e-9 */
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "no parameter"), "%s", err);
    mu_cands_free(&c);
}

/* Per-tensor top: each tensor's own best units; quotas by hand. */
TEST(maskgen_scope_tensor) {
    fill_scores(11);
    mu_cands c;
    read_cands(&c);
    char err[256];
    /* --units 9 over 12+12+2+8 = 34 units: 9*12/34 = 3.18, 3.18, 0.53, 2.12 -> floors 3,3,0,2
     * (8), one more by the largest remainder: q (0.53) */
    static const int64_t k_units[NT] = {3, 3, 1, 2};
    /* params 66 over 264 candidate elements (a quarter): ceil(12/4)=3, 3, ceil(2/4)=1, ceil(8/4)=2 */
    static const int64_t k_params[NT] = {3, 3, 1, 2};
    for (int mode = 0; mode < 2; mode++) {
        mu_select_opts o = {.order = MU_ORDER_TOP, .scope = MU_SCOPE_TENSOR};
        if (mode == 0) o.units = 9; else o.params = 66;
        const int64_t *k = mode == 0 ? k_units : k_params;
        mu_mask m;
        CHECK_MSG(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0, "%s", err);
        for (int t = 0; t < NT; t++) {
            int i = mu_mask_find(&m, SPECS[t].name);
            CHECK(i >= 0);
            CHECK_EQ_INT(mu_mask_selected(&m.t[i]), k[t]);
            /* the selected units are that tensor's top k (ties: lower unit first) */
            for (int64_t u = 0; u < SPECS[t].units; u++) {
                int64_t better = 0;
                for (int64_t v = 0; v < SPECS[t].units; v++)
                    better += SPECS[t].score[v] > SPECS[t].score[u] ||
                              (SPECS[t].score[v] == SPECS[t].score[u] && v < u);
                CHECK_EQ_INT(mu_mask_get(&m.t[i], u), better < k[t]);
            }
        }
        if (mode == 1) CHECK(mu_mask_params(&m) >= 66);
        mu_mask_free(&m);
    }
    /* a larger --units: apportioned exactly */
    for (int64_t N = 1; N <= NU; N++) {
        mu_select_opts o = {.order = MU_ORDER_RANDOM, .scope = MU_SCOPE_TENSOR, .units = N, .seed = 3};
        mu_mask m;
        CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
        CHECK_EQ_INT(n_selected(&m), N);
        for (int t = 0; t < NT; t++) {   /* within one unit of the proportional share */
            int i = mu_mask_find(&m, SPECS[t].name);
            double share = (double)N * (double)SPECS[t].units / NU, got = i < 0 ? 0 : (double)mu_mask_selected(&m.t[i]);
            CHECK_MSG(fabs(got - share) < 1.0, "N %lld tensor %d: %g units, share %g", (long long)N, t, got, share);
        }
        mu_mask_free(&m);
    }
    mu_cands_free(&c);
}

TEST(maskgen_random_reproducible_and_exact) {
    fill_scores(2);
    mu_cands c;
    read_cands(&c);
    char err[256];
    mu_mask a, b, d;
    mu_select_opts o = {.order = MU_ORDER_RANDOM, .units = 10, .seed = 42};
    CHECK(mu_maskgen_select(&c, &o, &a, err, sizeof err) == 0);
    CHECK(mu_maskgen_select(&c, &o, &b, err, sizeof err) == 0);
    o.seed = 43;
    CHECK(mu_maskgen_select(&c, &o, &d, err, sizeof err) == 0);
    CHECK_EQ_INT(n_selected(&a), 10);
    CHECK_EQ_INT(n_selected(&d), 10);
    int same = a.n == b.n, differ = a.n != d.n;
    for (int i = 0; i < a.n && same; i++)
        same = !strcmp(a.t[i].name, b.t[i].name) && !memcmp(a.t[i].bits, b.t[i].bits, (size_t)(a.t[i].units + 7) / 8);
    for (int t = 0; t < NT; t++)
        for (int64_t u = 0; u < SPECS[t].units; u++) differ |= sel(&a, SPECS[t].name, u) != sel(&d, SPECS[t].name, u);
    CHECK(same);
    CHECK(differ);
    mu_mask_free(&a);
    mu_mask_free(&b);
    mu_mask_free(&d);
    /* element targets: the shortest prefix of the shuffle that reaches the target, so
     * params >= target and params - (the largest unit, 32) < target */
    for (uint64_t s = 0; s < 50; s++) {
        mu_select_opts q = {.order = MU_ORDER_RANDOM, .params = 100, .seed = s};
        CHECK(mu_maskgen_select(&c, &q, &a, err, sizeof err) == 0);
        CHECK(mu_mask_params(&a) >= 100);
        CHECK(mu_mask_params(&a) < 100 + 32);
        mu_mask_free(&a);
    }
    mu_cands_free(&c);
}

/* Over many seeds every unit is picked equally often: chi-square over 34 units with
 * 3000 draws of 5 units (33 degrees of freedom; the bound 80 is p < 1e-5), and the first
 * unit of a --units 1 mask likewise. */
TEST(maskgen_random_uniform) {
    fill_scores(5);
    mu_cands c;
    read_cands(&c);
    char err[256];
    for (int k = 1; k <= 5; k += 4) {
        double count[NU] = {0};
        int draws = 3000;
        for (int s = 0; s < draws; s++) {
            mu_select_opts o = {.order = MU_ORDER_RANDOM, .units = k, .seed = (uint64_t)s * 7919 + 1};
            mu_mask m;
            CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
            int g = 0;
            for (int t = 0; t < NT; t++)
                for (int64_t u = 0; u < SPECS[t].units; u++, g++) count[g] += sel(&m, SPECS[t].name, u);
            mu_mask_free(&m);
        }
        double expect = (double)draws * k / NU, chi2 = 0;
        for (int g = 0; g < NU; g++) chi2 += (count[g] - expect) * (count[g] - expect) / expect;
        CHECK_MSG(chi2 < 80, "k %d: chi-square %g over %d units", k, chi2, NU);
        CHECK_MSG(chi2 > 5, "k %d: chi-square %g is too good to be random", k, chi2);
    }
    mu_cands_free(&c);
}

TEST(maskgen_complement_disjoint_same_params) {
    fill_scores(9);
    mu_cands c;
    read_cands(&c);
    char err[256];
    mu_mask top;
    mu_select_opts o = {.order = MU_ORDER_TOP, .units = 6};
    CHECK(mu_maskgen_select(&c, &o, &top, err, sizeof err) == 0);
    CHECK_MSG(mu_cands_exclude(&c, &top, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(mu_cands_units(&c), NU - 6);
    CHECK_EQ_INT(mu_cands_params(&c), 264 - mu_mask_params(&top));
    for (uint64_t s = 0; s < 20; s++) {
        mu_select_opts q = {.order = MU_ORDER_RANDOM, .params = mu_mask_params(&top), .seed = s};
        mu_mask r;
        CHECK_MSG(mu_maskgen_select(&c, &q, &r, err, sizeof err) == 0, "%s", err);
        for (int t = 0; t < NT; t++)
            for (int64_t u = 0; u < SPECS[t].units; u++) CHECK(!(sel(&r, SPECS[t].name, u) && sel(&top, SPECS[t].name, u)));
        CHECK(mu_mask_params(&r) >= mu_mask_params(&top));
        CHECK(mu_mask_params(&r) < mu_mask_params(&top) + 32);
        mu_mask_free(&r);
    }
    mu_cands_free(&c);
    mu_mask_free(&top);
    /* one granularity: the complement has exactly the mask's parameters */
    float s1[12], s2[12];
    for (int u = 0; u < 12; u++) { s1[u] = (float)u; s2[u] = (float)(11 - u); }
    rec_spec r2[2] = {{"model.layers.0.mlp.up_proj.weight", 2, {12, 8}, "neuron", 12, s1},
                      {"model.layers.1.mlp.up_proj.weight", 2, {12, 8}, "neuron", 12, s2}};
    const char *p = tmp_path("n.mpk.zst");
    write_scores(p, 1000, r2, 2);
    CHECK(mu_cands_read_scores(p, &c, err, sizeof err) == 0);
    o.units = 7;
    CHECK(mu_maskgen_select(&c, &o, &top, err, sizeof err) == 0);
    CHECK(mu_cands_exclude(&c, &top, err, sizeof err) == 0);
    mu_select_opts q = {.order = MU_ORDER_RANDOM, .params = mu_mask_params(&top), .seed = 1};
    mu_mask r;
    CHECK(mu_maskgen_select(&c, &q, &r, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_mask_params(&r), 56);
    CHECK_EQ_INT(mu_mask_params(&top), 56);
    for (int t = 0; t < 2; t++)
        for (int u = 0; u < 12; u++) CHECK(!(sel(&r, r2[t].name, u) && sel(&top, r2[t].name, u)));
    mu_mask_free(&r);
    mu_mask_free(&top);
    /* a matrix mask over one tensor removes all its neurons; another model is refused */
    mu_mask mat;
    mu_mask_init(&mat, "matrix", 1000);
    mu_mask_tensor *mt = mu_mask_add(&mat, r2[0].name, 2, r2[0].shape, MU_GRAN_MATRIX, 1, err, sizeof err);
    mu_mask_set(mt, 0, 1);
    mu_cands_free(&c);
    CHECK(mu_cands_read_scores(p, &c, err, sizeof err) == 0);
    CHECK(mu_cands_exclude(&c, &mat, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_cands_units(&c), 12);
    mat.params_total = 999;
    CHECK(mu_cands_exclude(&c, &mat, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "params_total"), "%s", err);
    mu_mask_free(&mat);
    /* element mask over the second tensor: one element removes its whole row */
    mu_mask el;
    mu_mask_init(&el, "element", 1000);
    mt = mu_mask_add(&el, r2[1].name, 2, r2[1].shape, MU_GRAN_ELEMENT, 96, err, sizeof err);
    mu_mask_set(mt, 3 * 8 + 5, 1);
    mu_mask_set(mt, 9 * 8 + 0, 1);
    CHECK(mu_cands_exclude(&c, &el, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_cands_units(&c), 10);
    CHECK(mu_mask_get(&c.excl.t[1], 3) && mu_mask_get(&c.excl.t[1], 9) && !mu_mask_get(&c.excl.t[1], 4));
    mu_mask_free(&el);
    mu_cands_free(&c);
}

TEST(maskgen_invert) {
    mu_mask m, inv;
    char err[256];
    mu_mask_init(&m, "neuron", 500);
    int64_t up[2] = {12, 8}, o[2] = {8, 8};
    mu_mask_add(&m, "model.layers.0.mlp.up_proj.weight", 2, up, MU_GRAN_NEURON, 12, err, sizeof err);
    mu_mask_add(&m, "model.layers.0.self_attn.o_proj.weight", 2, o, MU_GRAN_NEURON, 8, err, sizeof err);
    for (int u = 0; u < 12; u += 3) mu_mask_set(&m.t[0], u, 1);
    for (int u = 0; u < 8; u++) mu_mask_set(&m.t[1], u, 1);      /* all of o: dropped */
    CHECK(mu_maskgen_invert(&m, &inv, err, sizeof err) == 0);
    CHECK_EQ_INT(inv.n, 1);
    CHECK_EQ_INT(inv.params_total, 500);
    CHECK_STR(inv.granularity, "neuron");
    for (int u = 0; u < 12; u++) CHECK_EQ_INT(mu_mask_get(&inv.t[0], u), u % 3 != 0);
    CHECK_EQ_INT(mu_mask_params(&inv), 8 * 8);
    mu_mask_free(&inv);
    for (int u = 0; u < 12; u++) mu_mask_set(&m.t[0], u, 1);
    CHECK(mu_maskgen_invert(&m, &inv, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "empty"), "%s", err);
    mu_mask_free(&m);
}

/* The tiny config of t_mask.c: 3 layers, d 8, 2 heads of 4 (1 kv head), d_ff 12, vocab 20. */
static void tiny_config(mu_config *c) {
    mu_config_init(c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->n_layer = 3; c->d_model = 8; c->n_head = 2; c->n_kv_head = 1; c->head_dim = 4;
    c->d_ff = 12; c->vocab = 20; c->max_pos = 64; c->tie_embeddings = 0;
}

TEST(maskgen_candidates_from_model) {
    mu_config cfg;
    tiny_config(&cfg);
    mu_cands c;
    char err[256];
    CHECK_MSG(mu_cands_from_model(&cfg, "mlp:1", MU_GRAN_NEURON, &c, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(c.m.n, 3);
    CHECK_EQ_INT(mu_cands_units(&c), 36);
    CHECK_EQ_INT(mu_cands_params(&c), 3 * 96);
    CHECK_STR(c.m.granularity, "neuron");
    CHECK(c.score == NULL);
    /* params_total from the shapes: embed 160 + lm_head 160 + final norm 8 + 3 layers of
     * (2 norms of 8, q 64, k 32, v 32, o 64, gate/up/down 96 each) */
    int64_t per_layer = 8 + 8 * 8 + 4 * 8 + 4 * 8 + 8 * 8 + 8 + 3 * 12 * 8;
    CHECK_EQ_INT(c.m.params_total, 160 + 160 + 8 + 3 * per_layer);
    mu_select_opts o = {.order = MU_ORDER_TOP, .units = 3};
    mu_mask m;
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) < 0);   /* no scores to rank */
    CHECK_MSG(strstr(err, "scores"), "%s", err);
    o.order = MU_ORDER_RANDOM;
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
    CHECK_EQ_INT(n_selected(&m), 3);
    CHECK_EQ_INT(mu_mask_params(&m), 24);
    mu_mask_free(&m);
    mu_cands_free(&c);
    /* heads: q and o have 2, k and v 1 (one kv head) */
    CHECK_MSG(mu_cands_from_model(&cfg, "attn:0", MU_GRAN_HEAD, &c, err, sizeof err) == 0, "%s", err);
    CHECK_EQ_INT(c.m.n, 4);
    CHECK_EQ_INT(c.m.t[0].units, 2);
    CHECK_EQ_INT(c.m.t[1].units, 1);
    CHECK_EQ_INT(c.m.t[3].units, 2);
    CHECK_EQ_INT(mu_cands_params(&c), 64 + 32 + 32 + 64);
    mu_cands_free(&c);
    /* scope tensor, equal remainders: --units 4 over gate/up/down of 12 each gives 1 each
     * and the leftover unit to the earliest tensor (gate) */
    CHECK(mu_cands_from_model(&cfg, "mlp:2", MU_GRAN_NEURON, &c, err, sizeof err) == 0);
    o = (mu_select_opts){.order = MU_ORDER_RANDOM, .scope = MU_SCOPE_TENSOR, .units = 4, .seed = 8};
    CHECK(mu_maskgen_select(&c, &o, &m, err, sizeof err) == 0);
    CHECK_EQ_INT(m.n, 3);
    CHECK_STR(m.t[0].name, "model.layers.2.mlp.gate_proj.weight");
    CHECK_EQ_INT(mu_mask_selected(&m.t[0]), 2);
    CHECK_EQ_INT(mu_mask_selected(&m.t[1]), 1);
    CHECK_EQ_INT(mu_mask_selected(&m.t[2]), 1);
    mu_mask_free(&m);
    mu_cands_free(&c);
    CHECK(mu_cands_from_model(&cfg, "mlp:0", MU_GRAN_HEAD, &c, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "gate_proj") && strstr(err, "attention"), "%s", err);
    CHECK(mu_cands_from_model(&cfg, "mlp:9", MU_GRAN_NEURON, &c, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "out of range"), "%s", err);
    CHECK(mu_cands_from_model(&cfg, "embed", MU_GRAN_ELEMENT, &c, err, sizeof err) == 0);
    CHECK_EQ_INT(mu_cands_units(&c), 160);
    mu_cands_free(&c);
}

/* Reads a one-record stream made from spec r (with params_total) and expects an error
 * containing every needle. */
static void expect_bad(const rec_spec *r, int n, int64_t total, const char *n1, const char *n2) {
    const char *p = tmp_path("bad.mpk.zst");
    write_scores(p, total, r, n);
    mu_cands c;
    char err[512];
    CHECK(mu_cands_read_scores(p, &c, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, p) && strstr(err, n1) && (!n2 || strstr(err, n2)), "%s", err);
}

TEST(maskgen_rejects_bad_scores) {
    float s[12] = {0};
    rec_spec ok = {"model.layers.0.mlp.up_proj.weight", 2, {12, 8}, "neuron", 12, s};
    rec_spec two[2] = {ok, ok};
    two[1].name = "model.layers.0.mlp.gate_proj.weight";
    s[7] = NAN;
    expect_bad(two, 2, 1000, "record 0", "NaN");
    s[7] = 0;
    two[1].units = 11;                                /* gate rows are 12 */
    expect_bad(two, 2, 1000, "record 1", "gate_proj.weight: neuron mask needs 12 units");
    two[1] = ok;                                      /* the same name twice */
    expect_bad(two, 2, 1000, "record 1", "twice");
    rec_spec heads = {"model.layers.0.self_attn.q_proj.weight", 2, {8, 8}, "head", 3, s};
    expect_bad(&heads, 1, 1000, "record 0", "do not divide");
    expect_bad(&ok, 1, 50, "more than params_total", NULL);   /* 96 scored of 50 */
    expect_bad(&ok, 1, 0, "params_total", "header");
    expect_bad(&ok, 0, 1000, "no records", NULL);
    /* a score tensor of the wrong shape, and of the wrong dtype */
    const char *p = tmp_path("shape.mpk.zst");
    for (int kind = 0; kind < 2; kind++) {
        mu_writer *w = mu_writer_open(p, "scores");
        msgpack_pack_int64(mu_writer_meta(w, "params_total"), 1000);
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, 5);
        mu_pack_kv_str(pk, "name", ok.name);
        mu_pack_str(pk, "shape");
        msgpack_pack_array(pk, 2);
        msgpack_pack_int64(pk, 12);
        msgpack_pack_int64(pk, 8);
        mu_pack_kv_str(pk, "granularity", "neuron");
        mu_pack_kv_int(pk, "units", 12);
        double d[12] = {0};
        int64_t sh = kind ? 12 : 11;
        mu_pack_kv_tensor(pk, "score", kind ? MU_F64 : MU_F32, 1, &sh, kind ? (const void *)d : (const void *)s);
        mu_writer_end_record(w);
        mu_writer_close(w);
        mu_cands c;
        char err[512];
        CHECK(mu_cands_read_scores(p, &c, err, sizeof err) < 0);
        CHECK_MSG(strstr(err, "record 0") && strstr(err, "score must be f32 [12]"), "%s", err);
    }
    /* another kind */
    mu_writer *w = mu_writer_open(p, "mask");
    mu_writer_close(w);
    mu_cands c;
    char err[512];
    CHECK(mu_cands_read_scores(p, &c, err, sizeof err) < 0);
    CHECK_MSG(strstr(err, "expected kind scores, got mask"), "%s", err);
}
