/* t_forward.c — lib/forward.c (mu-forward's engine) against the model core: emitted
 * log-probs equal log-softmax of mu_model_forward's logits, batching does not change
 * results, cached activations equal a hook's view, patching clean activations into a
 * noised run restores the clean output, bad records are rejected with a message. */
#include "test.h"
#include "forward.h"
#include "model.h"
#include "stream.h"
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { NREC = 6, NCAND = 3, VOCAB = 23 };

static mu_model *tiny_model(void)
{
    mu_config c;
    mu_config_init(&c);
    c.n_layer = 2; c.d_model = 16; c.n_head = 4; c.n_kv_head = 2; c.head_dim = 6;
    c.d_ff = 24; c.vocab = VOCAB; c.max_pos = 64; c.rms_eps = 1e-5f; c.rope_theta = 10000;
    char err[256];
    mu_model *m = mu_model_init_random(&c, 7, 0.5f, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "init_random: %s", err);
    return m;
}

/* Record i: prompt of 3 + (5*i) % 7 tokens, candidates of 1..3 tokens, answer i % 3,
 * subject span [1, 3). */
static int prompt_len(int i) { return 3 + (5 * i) % 7; }
static int cand_len(int i, int k) { return 1 + (i + k) % 3; }
static int32_t tok(int i, int j) { return (int32_t)((i * 7 + j * 5 + 3) % VOCAB); }

static void make_tokens(const char *path, int with_targets)
{
    mu_writer *w = mu_writer_open(path, "tokens");
    for (int i = 0; i < NREC; i++) {
        msgpack_packer *pk = mu_writer_record(w);
        msgpack_pack_map(pk, with_targets ? 6 : 3);
        mu_pack_kv_int(pk, "id", 100 + i);
        int np = prompt_len(i);
        int32_t ids[16];
        for (int j = 0; j < np; j++) ids[j] = tok(i, j);
        int64_t s[1] = { np };
        mu_pack_kv_tensor(pk, "prompt", MU_I32, 1, s, ids);
        mu_pack_str(pk, "spans");
        msgpack_pack_map(pk, 1);
        mu_pack_str(pk, "subject");
        msgpack_pack_array(pk, 2);
        msgpack_pack_int(pk, 1);
        msgpack_pack_int(pk, 3);
        if (with_targets) {
            mu_pack_str(pk, "targets");
            msgpack_pack_array(pk, NCAND);
            for (int k = 0; k < NCAND; k++) {
                int32_t t[4];
                for (int j = 0; j < cand_len(i, k); j++) t[j] = tok(i + k + 1, j + 11);
                int64_t s2[1] = { cand_len(i, k) };
                mu_pack_tensor(pk, MU_I32, 1, s2, t);
            }
            mu_pack_str(pk, "target_texts");
            msgpack_pack_array(pk, NCAND);
            for (int k = 0; k < NCAND; k++) { char b[16]; snprintf(b, sizeof b, "cand%d", k); mu_pack_str(pk, b); }
            mu_pack_kv_int(pk, "answer", i % NCAND);
        }
        mu_writer_end_record(w);
    }
    mu_writer_close(w);
}

/* The row prompt ++ targets[k] of record i (k < 0: the prompt alone). */
static int row_of(int i, int k, int32_t *ids)
{
    int n = prompt_len(i);
    for (int j = 0; j < n; j++) ids[j] = tok(i, j);
    if (k >= 0)
        for (int j = 0; j < cand_len(i, k); j++) ids[n++] = tok(i + k + 1, j + 11);
    return n;
}

/* Runs the engine over a tokens file like mu-forward does (flush when the budget is queued). */
static void run_fw(mu_model *m, mu_fw_opts *o, const char *in, const char *out, const char *acts)
{
    char err[512];
    mu_fw *f = mu_fw_new(m, NULL, o, err, sizeof err);
    CHECK_MSG(f != NULL, "mu_fw_new: %s", err);
    mu_reader *r = mu_reader_open(in, "tokens", err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    mu_writer *w = mu_writer_open(out, "outputs");
    mu_writer *a = acts ? mu_writer_open(acts, "activations") : NULL;
    if (a) mu_fw_acts_meta(f, a);
    const msgpack_object *rec;
    while (mu_reader_next(r, &rec) == 1) {
        CHECK_MSG(mu_fw_add(f, rec, mu_reader_record_index(r), err, sizeof err) == 0, "add: %s", err);
        if (mu_fw_pending_tokens(f) >= o->batch_tokens)
            CHECK_MSG(mu_fw_flush(f, w, a, err, sizeof err) == 0, "flush: %s", err);
    }
    CHECK_MSG(mu_fw_flush(f, w, a, err, sizeof err) == 0, "flush: %s", err);
    mu_reader_close(r);
    mu_writer_close(w);
    if (a) mu_writer_close(a);
    mu_fw_free(f);
}

/* All records' float/int tensor `key` of an outputs file, concatenated as doubles. */
static int read_field(const char *path, const char *key, double *out, int max, int *per_rec)
{
    char err[512];
    mu_reader *r = mu_reader_open(path, NULL, err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    const msgpack_object *rec;
    int n = 0, i = 0;
    while (mu_reader_next(r, &rec) == 1) {
        mu_tensor_view t;
        const msgpack_object *o = mu_obj_get(rec, key);
        CHECK_MSG(o != NULL, "%s: record %d has no %s", path, i, key);
        CHECK(mu_obj_tensor(o, &t, err, sizeof err) == 0);
        int64_t cnt = mu_shape_numel(t.ndim, t.shape);
        if (per_rec) per_rec[i] = (int)cnt;
        for (int64_t j = 0; j < cnt; j++) {
            CHECK(n < max);
            if (t.dtype == MU_F32) { float v; memcpy(&v, (const char *)t.data + 4 * j, 4); out[n++] = v; }
            else { int32_t v; memcpy(&v, (const char *)t.data + 4 * j, 4); out[n++] = v; }
        }
        i++;
    }
    mu_reader_close(r);
    return n;
}

/* log p of each next token of a row from the core directly (B = 1). */
static void core_logprobs(mu_model *m, const int32_t *ids, int n, double *lp, int *rank)
{
    char err[256];
    mu_batch b = { 1, n, ids, NULL };
    mu_fwd_opts o = { 0 };
    CHECK_MSG(mu_model_forward(m, &b, &o, err, sizeof err) == 0, "%s", err);
    const float *lg = mu_model_logits(m);
    for (int t = 0; t + 1 < n; t++) {
        const float *x = lg + (size_t)t * VOCAB;
        double mx = x[0], s = 0;
        for (int v = 1; v < VOCAB; v++) if (x[v] > mx) mx = x[v];
        for (int v = 0; v < VOCAB; v++) s += exp(x[v] - mx);
        lp[t] = x[ids[t + 1]] - mx - log(s);
        int r = 0;
        for (int v = 0; v < VOCAB; v++) r += x[v] > x[ids[t + 1]];
        if (rank) rank[t] = r;
    }
}

static void tmp_path(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", mu_test_tmpdir(), name); }

TEST(forward_logprobs_equal_core_log_softmax)
{
    mu_model *m = tiny_model();
    char in[512], out[512];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    make_tokens(in, 1);
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TARGET | MU_EMIT_RANKS | MU_EMIT_CHOICES | MU_EMIT_TEXT;
    run_fw(m, &o, in, out, NULL);
    static double tl[256], tr[256], cl[64], cn[64], xl[512];
    int ntl[NREC], nxl[NREC];
    read_field(out, "target_logprobs", tl, 256, ntl);
    read_field(out, "target_ranks", tr, 256, NULL);
    read_field(out, "choice_logprobs", cl, 64, NULL);
    read_field(out, "choice_ntokens", cn, 64, NULL);
    read_field(out, "text_logprobs", xl, 512, nxl);
    int ti = 0, xi = 0;
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        double lp[32];
        int rk[32], np = prompt_len(i), ans = i % NCAND;
        for (int k = 0; k < NCAND; k++) {
            int n = row_of(i, k, ids);
            core_logprobs(m, ids, n, lp, rk);
            double sum = 0;
            for (int j = 0; j < cand_len(i, k); j++) sum += lp[np - 1 + j];
            CHECK_NEAR(cl[i * NCAND + k], sum, 1e-5);
            CHECK_EQ_INT(cn[i * NCAND + k], cand_len(i, k));
            if (k != ans) continue;
            CHECK_EQ_INT(ntl[i], cand_len(i, k));
            for (int j = 0; j < cand_len(i, k); j++) {
                CHECK_NEAR(tl[ti + j], lp[np - 1 + j], 1e-5);
                CHECK_EQ_INT(tr[ti + j], rk[np - 1 + j]);
            }
            CHECK_EQ_INT(nxl[i], n - 1);
            for (int t = 0; t < n - 1; t++) CHECK_NEAR(xl[xi + t], lp[t], 1e-5);
        }
        ti += ntl[i];
        xi += nxl[i];
    }
    mu_model_free(m);
}

TEST(forward_mu_sigma_and_topk_from_core)
{
    mu_model *m = tiny_model();
    char in[512], out[512];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    make_tokens(in, 0);                /* no targets: text positions */
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_MUSIGMA | MU_EMIT_TOPK;
    o.topk = 4;
    run_fw(m, &o, in, out, NULL);
    static double mu[256], sg[256], tid[64], tlp[64];
    int nmu[NREC];
    read_field(out, "token_mu", mu, 256, nmu);
    read_field(out, "token_sigma", sg, 256, NULL);
    read_field(out, "topk_ids", tid, 64, NULL);
    read_field(out, "topk_logprobs", tlp, 64, NULL);
    int off = 0;
    char err[256];
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        int n = row_of(i, -1, ids);
        CHECK_EQ_INT(nmu[i], n - 1);
        mu_batch b = { 1, n, ids, NULL };
        mu_fwd_opts fo = { 0 };
        CHECK(mu_model_forward(m, &b, &fo, err, sizeof err) == 0);
        const float *lg = mu_model_logits(m);
        for (int t = 0; t < n; t++) {
            const float *x = lg + (size_t)t * VOCAB;
            double mx = x[0], s = 0, e1 = 0, e2 = 0;
            for (int v = 1; v < VOCAB; v++) if (x[v] > mx) mx = x[v];
            for (int v = 0; v < VOCAB; v++) s += exp(x[v] - mx);
            double lse = mx + log(s);
            for (int v = 0; v < VOCAB; v++) { double l = x[v] - lse; e1 += exp(l) * l; e2 += exp(l) * l * l; }
            if (t < n - 1) {
                CHECK_NEAR(mu[off + t], e1, 1e-5);
                CHECK_NEAR(sg[off + t], sqrt(e2 - e1 * e1), 1e-4);
            } else {
                /* top-4 after the prompt: descending, and each the true log-prob */
                for (int j = 0; j < 4; j++) {
                    int id = (int)tid[i * 4 + j];
                    CHECK_NEAR(tlp[i * 4 + j], x[id] - lse, 1e-5);
                    int greater = 0;
                    for (int v = 0; v < VOCAB; v++) greater += x[v] > x[id];
                    CHECK_EQ_INT(greater, j);
                }
            }
        }
        off += nmu[i];
    }
    mu_model_free(m);
}

TEST(forward_batched_equals_unbatched)
{
    mu_model *m = tiny_model();
    char in[512], out[512];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    make_tokens(in, 1);
    static const long budgets[] = { 1, 9, 40, 100000 };
    static double ref[3][512], got[512];
    static const char *keys[3] = { "choice_logprobs", "text_logprobs", "target_logprobs" };
    int nref[3];
    for (int b = 0; b < 4; b++) {
        mu_fw_opts o = mu_fw_default_opts();
        o.emit = MU_EMIT_CHOICES | MU_EMIT_TEXT | MU_EMIT_TARGET;
        o.batch_tokens = budgets[b];
        snprintf(out, sizeof out, "%s/out%d.mpk.zst", mu_test_tmpdir(), b);
        run_fw(m, &o, in, out, NULL);
        for (int k = 0; k < 3; k++) {
            int n = read_field(out, keys[k], b ? got : ref[k], 512, NULL);
            if (!b) { nref[k] = n; continue; }
            CHECK_EQ_INT(n, nref[k]);
            for (int j = 0; j < n; j++) CHECK_NEAR(got[j], ref[k][j], 1e-5);
        }
    }
    mu_model_free(m);
}

/* ---- activations ------------------------------------------------------------------------ */

typedef struct { int layer; float *buf; int T, D; } grab;

static int grab_hook(const mu_hook_info *in, float *act, void *user)
{
    grab *g = user;
    if (in->layer != g->layer) return 0;
    g->T = in->T; g->D = in->D;
    memcpy(g->buf, act, (size_t)in->T * in->D * sizeof(float));
    return 0;
}

/* Vectors of an activations record: entry e of record i. */
static int read_act(const char *path, int rec_i, int e, float *x, int32_t *pos, int *D)
{
    char err[512];
    mu_reader *r = mu_reader_open(path, "activations", err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    const msgpack_object *rec;
    int P = -1;
    for (int i = 0; mu_reader_next(r, &rec) == 1; i++) {
        if (i != rec_i) continue;
        const msgpack_object *acts = mu_obj_get(rec, "acts");
        CHECK(acts && acts->type == MSGPACK_OBJECT_ARRAY && (int)acts->via.array.size > e);
        mu_tensor_view tx, tp;
        CHECK(mu_obj_tensor(mu_obj_get(&acts->via.array.ptr[e], "x"), &tx, err, sizeof err) == 0);
        CHECK(mu_obj_tensor(mu_obj_get(&acts->via.array.ptr[e], "positions"), &tp, err, sizeof err) == 0);
        P = (int)tx.shape[0];
        *D = (int)tx.shape[1];
        memcpy(x, tx.data, tx.nbytes);
        memcpy(pos, tp.data, tp.nbytes);
    }
    mu_reader_close(r);
    return P;
}

TEST(forward_cache_equals_model_hook)
{
    mu_model *m = tiny_model();
    char in[512], out[512], acts[512], err[256];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    tmp_path(acts, sizeof acts, "acts.mpk.zst");
    make_tokens(in, 1);
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_CHOICES;          /* several rows per record: the cache reads the prompt */
    o.batch_tokens = 30;
    o.cache[o.n_cache++] = "resid_post:1:last";
    o.cache[o.n_cache++] = "mlp_post:0:subject";
    run_fw(m, &o, in, out, acts);
    static float want[64 * 32], x[64 * 32];
    int32_t pos[64];
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        int n = row_of(i, -1, ids), D;
        grab g1 = { 1, want, 0, 0 };
        mu_hook h = { .site = MU_SITE_RESID_POST, .layer = 1, .fn = grab_hook, .user = &g1 };
        mu_batch b = { 1, n, ids, NULL };
        mu_fwd_opts fo = { .hooks = &h, .n_hooks = 1 };
        CHECK(mu_model_forward(m, &b, &fo, err, sizeof err) == 0);
        int P = read_act(acts, i, 0, x, pos, &D);
        CHECK_EQ_INT(P, 1);
        CHECK_EQ_INT(pos[0], n - 1);
        CHECK_EQ_INT(D, 16);
        for (int d = 0; d < D; d++) CHECK_CLOSE(x[d], want[(size_t)(n - 1) * D + d], 1e-5, 1e-5);
        grab g2 = { 0, want, 0, 0 };
        h = (mu_hook){ .site = MU_SITE_MLP_POST, .layer = 0, .fn = grab_hook, .user = &g2 };
        CHECK(mu_model_forward(m, &b, &fo, err, sizeof err) == 0);
        P = read_act(acts, i, 1, x, pos, &D);
        CHECK_EQ_INT(P, 2);
        CHECK_EQ_INT(D, 24);
        for (int p = 0; p < P; p++) {
            CHECK_EQ_INT(pos[p], 1 + p);
            for (int d = 0; d < D; d++) CHECK_CLOSE(x[p * D + d], want[(size_t)pos[p] * D + d], 1e-5, 1e-5);
        }
    }
    mu_model_free(m);
}

TEST(forward_patching_clean_activations_restores_clean_output)
{
    mu_model *m = tiny_model();
    char in[512], clean[512], acts[512], noised[512], patched[512], ivp[600];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(clean, sizeof clean, "clean.mpk.zst");
    tmp_path(acts, sizeof acts, "acts.mpk.zst");
    tmp_path(noised, sizeof noised, "noised.mpk.zst");
    tmp_path(patched, sizeof patched, "patched.mpk.zst");
    make_tokens(in, 0);               /* prompt rows: "all" covers every position */
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TEXT;
    o.cache[o.n_cache++] = "resid_post:0:all";
    run_fw(m, &o, in, clean, acts);
    o.n_cache = 0;
    o.intervene[o.n_intervene++] = "embed::subject=noise=2.0";
    o.seed = 5;
    run_fw(m, &o, in, noised, NULL);
    snprintf(ivp, sizeof ivp, "resid_post:0:all=patch=%s", acts);
    o.intervene[o.n_intervene++] = ivp;
    o.batch_tokens = 13;
    run_fw(m, &o, in, patched, NULL);
    static double c[512], nz[512], p[512];
    int n = read_field(clean, "text_logprobs", c, 512, NULL);
    CHECK_EQ_INT(read_field(noised, "text_logprobs", nz, 512, NULL), n);
    CHECK_EQ_INT(read_field(patched, "text_logprobs", p, 512, NULL), n);
    double maxdiff = 0;
    for (int j = 0; j < n; j++) {
        CHECK_NEAR(p[j], c[j], 1e-5);
        if (fabs(nz[j] - c[j]) > maxdiff) maxdiff = fabs(nz[j] - c[j]);
    }
    CHECK_MSG(maxdiff > 1e-2, "noise changed nothing (max diff %g)", maxdiff);
    /* the noise is drawn per record: same with another batching */
    o.n_intervene = 1;
    o.batch_tokens = 1;
    run_fw(m, &o, in, patched, NULL);
    read_field(patched, "text_logprobs", p, 512, NULL);
    for (int j = 0; j < n; j++) CHECK_NEAR(p[j], nz[j], 1e-5);
    mu_model_free(m);
}

TEST(forward_zero_ablation_matches_hook)
{
    mu_model *m = tiny_model();
    char in[512], out[512];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    make_tokens(in, 0);
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TEXT;
    o.intervene[o.n_intervene++] = "mlp_out:1:last=zero";
    run_fw(m, &o, in, out, NULL);
    static double got[512];
    read_field(out, "text_logprobs", got, 512, NULL);
    /* causal: the last prompt position feeds no scored prediction, so zeroing it there
       leaves text_logprobs as the clean core computes them */
    int off = 0;
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        double lp[32];
        int n = row_of(i, -1, ids);
        core_logprobs(m, ids, n, lp, NULL);
        for (int t = 0; t < n - 1; t++) CHECK_NEAR(got[off + t], lp[t], 1e-5);
        off += n - 1;
    }
    /* while zeroing layer 0's MLP output at position 0 changes later positions (through
       layer 1's attention) */
    o.n_intervene = 0;
    o.intervene[o.n_intervene++] = "mlp_out:0:0=zero";
    run_fw(m, &o, in, out, NULL);
    read_field(out, "text_logprobs", got, 512, NULL);
    double diff = 0;
    off = 0;
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        double lp[32];
        int n = row_of(i, -1, ids);
        core_logprobs(m, ids, n, lp, NULL);
        for (int t = 0; t < n - 1; t++) diff = fmax(diff, fabs(got[off + t] - lp[t]));
        off += n - 1;
    }
    CHECK_MSG(diff > 1e-4, "zeroing mlp_out:0 at position 0 changed nothing");
    mu_model_free(m);
}

static void write_one(const char *path, const int32_t *prompt, int np, int with_target)
{
    mu_writer *w = mu_writer_open(path, "tokens");
    msgpack_packer *pk = mu_writer_record(w);
    msgpack_pack_map(pk, with_target ? 3 : 2);
    mu_pack_kv_int(pk, "id", 0);
    int64_t s[1] = { np };
    mu_pack_kv_tensor(pk, "prompt", MU_I32, 1, s, prompt);
    if (with_target) {
        mu_pack_str(pk, "targets");
        msgpack_pack_array(pk, 0);
    }
    mu_writer_end_record(w);
    mu_writer_close(w);
}

static int add_first(mu_model *m, const mu_fw_opts *o, const char *path, char *err, size_t errlen)
{
    mu_fw *f = mu_fw_new(m, NULL, o, err, errlen);
    CHECK(f != NULL);
    mu_reader *r = mu_reader_open(path, "tokens", err, errlen);
    CHECK(r != NULL);
    const msgpack_object *rec;
    CHECK(mu_reader_next(r, &rec) == 1);
    int rc = mu_fw_add(f, rec, 0, err, errlen);
    mu_reader_close(r);
    mu_fw_free(f);
    return rc;
}

TEST(forward_rejects_bad_records)
{
    mu_model *m = tiny_model();
    char path[512], err[512];
    tmp_path(path, sizeof path, "bad.mpk.zst");
    int32_t p[3] = { 1, VOCAB, 2 };
    write_one(path, p, 3, 0);
    mu_fw_opts o = mu_fw_default_opts();
    CHECK(add_first(m, &o, path, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "prompt: token 1 is 23") != NULL, "got: %s", err);
    p[1] = 4;
    write_one(path, p, 3, 1);
    o.emit = MU_EMIT_CHOICES;
    CHECK(add_first(m, &o, path, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "choices needs candidate targets") != NULL, "got: %s", err);
    o.emit = MU_EMIT_TEXT;
    o.cache[o.n_cache++] = "resid_post:0:subject_last";
    CHECK(add_first(m, &o, path, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "subject") != NULL, "got: %s", err);
    o.n_cache = 0;
    o.intervene[o.n_intervene++] = "resid_post:9:last=zero";
    CHECK(mu_fw_new(m, NULL, &o, err, sizeof err) == NULL);
    unsigned e = 0;
    CHECK(mu_emit_parse("target,bogus", &e, err, sizeof err) == -1);
    CHECK(strstr(err, "bogus") != NULL);
    mu_model_free(m);
}

TEST(forward_generation_sees_the_interventions_of_scoring)
{
    mu_model *m = tiny_model();
    char in[512], out[512];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    make_tokens(in, 0);
    static double top[64], gen[256], top0[64];
    int ng[NREC];
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TOPK | MU_EMIT_GENERATE;
    o.topk = 1;
    o.gen_n = 3;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "topk_ids", top0, 64, NULL);
    o.intervene[o.n_intervene++] = "embed::0,1=noise=4";
    o.seed = 11;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "topk_ids", top, 64, NULL);
    read_field(out, "generation", gen, 256, ng);
    int changed = 0, off = 0;
    for (int i = 0; i < NREC; i++) {
        CHECK_EQ_INT(ng[i], 3);
        CHECK_EQ_INT(gen[off], top[i]);      /* greedy first token = argmax of the hooked scoring pass */
        changed += top[i] != top0[i];
        off += ng[i];
    }
    CHECK_MSG(changed > 0, "noise of std 4 on the embeddings changed no argmax");
    mu_model_free(m);
}

TEST(forward_batched_generation_equals_core_greedy)
{
    mu_model *m = tiny_model();
    char in[512], out[512], err[256];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    make_tokens(in, 0);
    enum { NEW = 9 };
    static double gen[256], gen1[256], s1[256], s2[256];
    int ng[NREC];
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_GENERATE;
    o.gen_n = NEW;
    o.batch_tokens = 100000;          /* all rows in one KV-cache batch */
    run_fw(m, &o, in, out, NULL);
    int n = read_field(out, "generation", gen, 256, ng);
    CHECK_EQ_INT(n, NREC * NEW);
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32], want[NEW];
        int np = row_of(i, -1, ids);
        CHECK_EQ_INT(mu_model_greedy(m, ids, np, NEW, -1, want, err, sizeof err), NEW);
        for (int j = 0; j < NEW; j++) CHECK_EQ_INT(gen[i * NEW + j], want[j]);
    }
    /* EOS: record 0 stops right after its second token; others after theirs if it occurs */
    o.eos = (int)gen[1];
    run_fw(m, &o, in, out, NULL);
    read_field(out, "generation", gen1, 256, ng);
    CHECK(ng[0] <= 2 && gen1[ng[0] - 1] == o.eos);
    /* sampling: the same draws with one row per batch */
    o.eos = -1;
    o.temperature = 1.3;
    o.top_p = 0.8;
    o.seed = 21;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "generation", s1, 256, NULL);
    o.batch_tokens = 1;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "generation", s2, 256, NULL);
    int differs_from_greedy = 0;
    for (int j = 0; j < NREC * NEW; j++) {
        CHECK_EQ_INT(s1[j], s2[j]);
        differs_from_greedy += s1[j] != gen[j];
    }
    CHECK(differs_from_greedy > 0);
    mu_model_free(m);
}

/* ---- a real model against transformers (tests/gen/gen_forward_golden.py) ---------------- */

/* Compares the tensor rec[key] with the golden array: ints exactly, floats within
 * 2e-5 relative + 1e-4 absolute (f32 against float64). */
static void check_against_golden(const msgpack_object *rec, const char *key, json_t *want, long i)
{
    char err[256];
    mu_tensor_view t;
    const msgpack_object *o = mu_obj_get(rec, key);
    CHECK_MSG(o != NULL, "record %ld: no %s", i, key);
    CHECK(mu_obj_tensor(o, &t, err, sizeof err) == 0);
    CHECK_MSG(mu_shape_numel(t.ndim, t.shape) == (int64_t)json_array_size(want), "record %ld: %s: %lld values, want %zu",
              i, key, (long long)mu_shape_numel(t.ndim, t.shape), json_array_size(want));
    for (size_t j = 0; j < json_array_size(want); j++) {
        json_t *w = json_array_get(want, j);
        if (t.dtype == MU_I32) {
            int32_t v;
            memcpy(&v, (const char *)t.data + 4 * j, 4);
            CHECK_MSG(v == json_integer_value(w), "record %ld: %s[%zu] = %d, transformers %lld", i, key, j, v,
                      (long long)json_integer_value(w));
        } else {
            float v;
            memcpy(&v, (const char *)t.data + 4 * j, 4);
            CHECK_CLOSE(v, json_number_value(w), 2e-5, 1e-4);
        }
    }
}

TEST(forward_stories260K_matches_transformers)
{
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no ../shared/data (stories260K)");
    char model[1024], in[1024], gold[1024], out[512], err[512];
    snprintf(model, sizeof model, "%s/models/stories260K", d);
    snprintf(in, sizeof in, "%s/tests/golden/forward/sports8.tokens.mpk.zst", mu_test_root());
    snprintf(gold, sizeof gold, "%s/tests/golden/forward/sports8.expected.json", mu_test_root());
    tmp_path(out, sizeof out, "out.mpk.zst");
    mu_model *m = mu_model_load(model, NULL, 0, mu_backend_cpu(), err, sizeof err);
    CHECK_MSG(m != NULL, "%s", err);
    json_error_t je;
    json_t *g = json_load_file(gold, 0, &je);
    CHECK_MSG(g && json_is_array(g), "%s: %s", gold, je.text);
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TARGET | MU_EMIT_RANKS | MU_EMIT_CHOICES | MU_EMIT_TEXT | MU_EMIT_MUSIGMA | MU_EMIT_TOPK |
             MU_EMIT_GENERATE;
    o.topk = 5;
    o.gen_n = 16;
    o.eos = -1;
    o.batch_tokens = 300;              /* several batches, several generation rows each */
    run_fw(m, &o, in, out, NULL);
    mu_reader *r = mu_reader_open(out, "outputs", err, sizeof err);
    CHECK_MSG(r != NULL, "%s", err);
    const msgpack_object *rec;
    long i = 0;
    while (mu_reader_next(r, &rec) == 1) {
        json_t *e = json_array_get(g, (size_t)i);
        CHECK(e != NULL);
        const char *key;
        json_t *val;
        json_object_foreach(e, key, val) {
            if (strcmp(key, "id")) check_against_golden(rec, key, val, i);
        }
        i++;
    }
    CHECK_EQ_INT(i, (long)json_array_size(g));
    CHECK_EQ_INT(i, 8);
    mu_reader_close(r);
    json_decref(g);
    mu_model_free(m);
}

/* ---- mean ablation and steering --------------------------------------------------------- */

typedef struct { int pos; const float *vec; int mode; } set_at;   /* mode 0: set to vec; 1: double */

static int set_at_hook(const mu_hook_info *in, float *act, void *user)
{
    const set_at *s = user;
    float *x = act + (size_t)s->pos * in->D;   /* B = 1 */
    for (int d = 0; d < in->D; d++) x[d] = s->mode ? 2 * x[d] : s->vec[d];
    return 0;
}

/* log p of each next token of a row, with resid_post:0 at pos set to vec (or doubled) */
static void core_hooked_at(mu_model *m, const int32_t *ids, int n, int pos, const float *vec, int mode, double *lp)
{
    char err[256];
    set_at s = { pos, vec, mode };
    mu_hook h = { .site = MU_SITE_RESID_POST, .layer = 0, .fn = set_at_hook, .user = &s };
    mu_batch b = { 1, n, ids, NULL };
    mu_fwd_opts fo = { .hooks = &h, .n_hooks = 1 };
    CHECK(mu_model_forward(m, &b, &fo, err, sizeof err) == 0);
    const float *lg = mu_model_logits(m);
    for (int t = 0; t + 1 < n; t++) lp[t] = lg[(size_t)t * VOCAB + ids[t + 1]] - mu_fw_logsumexp(lg + (size_t)t * VOCAB, VOCAB);
}

TEST(forward_mean_ablation_and_steering_match_core_hooks)
{
    mu_model *m = tiny_model();
    char in[512], out[512], acts[512], iv[700];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    tmp_path(acts, sizeof acts, "acts.mpk.zst");
    make_tokens(in, 0);
    /* position -2: the last prompt token's activations feed no scored prediction */
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_TEXT;
    o.cache[o.n_cache++] = "resid_post:0:-2";
    run_fw(m, &o, in, out, acts);
    /* the mean vector of the file, by hand */
    static float mean[16], x[64 * 16];
    int32_t pos[64];
    int D;
    for (int i = 0; i < NREC; i++) {
        CHECK_EQ_INT(read_act(acts, i, 0, x, pos, &D), 1);
        CHECK_EQ_INT(pos[0], prompt_len(i) - 2);
        for (int d = 0; d < D; d++) mean[d] += x[d] / NREC;
    }
    static double fmean[256], bmean[256], add[256];
    o.n_cache = 0;
    snprintf(iv, sizeof iv, "resid_post:0:-2=mean=%s", acts);
    o.intervene[0] = iv;
    o.n_intervene = 1;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "text_logprobs", fmean, 256, NULL);
    o.intervene[0] = "resid_post:0:-2=mean";
    o.batch_tokens = 100000;           /* one batch: the batch mean is the mean of all records */
    run_fw(m, &o, in, out, NULL);
    read_field(out, "text_logprobs", bmean, 256, NULL);
    snprintf(iv, sizeof iv, "resid_post:0:-2=add=%s", acts);
    o.intervene[0] = iv;
    run_fw(m, &o, in, out, NULL);
    read_field(out, "text_logprobs", add, 256, NULL);
    int off = 0;
    double moved = 0;
    for (int i = 0; i < NREC; i++) {
        double lp_mean[32], lp_double[32], lp_clean[32];
        int32_t ids[32];
        int n = row_of(i, -1, ids);
        core_logprobs(m, ids, n, lp_clean, NULL);
        core_hooked_at(m, ids, n, n - 2, mean, 0, lp_mean);
        core_hooked_at(m, ids, n, n - 2, NULL, 1, lp_double);
        for (int t = 0; t < n - 1; t++) {
            CHECK_NEAR(fmean[off + t], lp_mean[t], 1e-5);
            CHECK_NEAR(bmean[off + t], lp_mean[t], 1e-5);
            CHECK_NEAR(add[off + t], lp_double[t], 1e-5);
            moved = fmax(moved, fabs(lp_mean[t] - lp_clean[t]));
        }
        off += n - 1;
    }
    CHECK_MSG(moved > 1e-4, "mean ablation changed nothing");
    mu_model_free(m);
}

/* A cache at the logits site sees the logits of every position (scoring then computes them
 * all; otherwise only the scored positions): the cached last-token logits equal the core's,
 * and the choices' log-probs equal those of the same run without the cache. */
TEST(forward_logits_cache_sees_every_position)
{
    mu_model *m = tiny_model();
    char in[512], out[512], out2[512], acts[512], err[256];
    tmp_path(in, sizeof in, "tok.mpk.zst");
    tmp_path(out, sizeof out, "out.mpk.zst");
    tmp_path(out2, sizeof out2, "out2.mpk.zst");
    tmp_path(acts, sizeof acts, "acts.mpk.zst");
    make_tokens(in, 1);
    mu_fw_opts o = mu_fw_default_opts();
    o.emit = MU_EMIT_CHOICES;
    o.batch_tokens = 30;
    run_fw(m, &o, in, out, NULL);
    o.cache[o.n_cache++] = "logits::last";
    run_fw(m, &o, in, out2, acts);
    static double a[NREC * NCAND], b[NREC * NCAND];
    int na = read_field(out, "choice_logprobs", a, NREC * NCAND, NULL);
    CHECK_EQ_INT(na, read_field(out2, "choice_logprobs", b, NREC * NCAND, NULL));
    for (int i = 0; i < na; i++) CHECK_CLOSE(b[i], a[i], 1e-5, 1e-6);
    static float x[64 * VOCAB];
    int32_t pos[64];
    for (int i = 0; i < NREC; i++) {
        int32_t ids[32];
        int n = row_of(i, -1, ids), D;
        mu_batch bt = { 1, n, ids, NULL };
        CHECK(mu_model_forward(m, &bt, NULL, err, sizeof err) == 0);
        const float *lg = mu_model_logits(m);
        CHECK_EQ_INT(read_act(acts, i, 0, x, pos, &D), 1);
        CHECK_EQ_INT(D, VOCAB);
        CHECK_EQ_INT(pos[0], n - 1);
        for (int v = 0; v < VOCAB; v++) CHECK_CLOSE(x[v], lg[(size_t)(n - 1) * VOCAB + v], 1e-5, 1e-5);
    }
    mu_model_free(m);
}
