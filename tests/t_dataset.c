/* t_dataset.c — records in (CSV with quoted newlines, JSON Lines, JSON arrays), record
 * templates, and the token spans of template fields on the Sports Facts data. */
#include "test.h"
#include "dataset.h"
#include "tokenizer.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *write_tmp(const char *name, const char *text, size_t len) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", mu_test_tmpdir(), name);
    FILE *f = fopen(path, "wb");
    fwrite(text, 1, len, f);
    fclose(f);
    return path;
}

static const char *field(mu_dataset *ds, size_t i, const char *k) {
    return json_string_value(json_object_get(mu_dataset_record(ds, i), k));
}

TEST(ds_csv_quotes_newlines_crlf) {
    const char *csv = "id,text,n\r\n1,\"a, \"\"quoted\"\"\nline\",3\r\n2,plain,\r\n\r\n3,\"\",x\n";
    char err[256];
    mu_dataset *ds = mu_dataset_from_csv("t.csv", csv, strlen(csv), NULL, err, sizeof err);
    CHECK_MSG(ds != NULL, "%s", err);
    CHECK_EQ_INT(mu_dataset_len(ds), 3);
    CHECK_STR(field(ds, 0, "text"), "a, \"quoted\"\nline");
    CHECK_STR(field(ds, 0, "n"), "3");
    CHECK_STR(field(ds, 1, "text"), "plain");
    CHECK_STR(field(ds, 1, "n"), "");
    CHECK_STR(field(ds, 2, "text"), "");
    CHECK_STR(field(ds, 2, "n"), "x");
    mu_dataset_free(ds);
}

TEST(ds_csv_columns_without_header) {
    const char *csv = "What is 2+2?,3,4,5,6,B\n\"Q, two\",a,b,c,d,D\n";
    char err[256];
    mu_dataset *ds = mu_dataset_from_csv("mmlu.csv", csv, strlen(csv), "question,A,B,C,D,answer", err, sizeof err);
    CHECK_MSG(ds != NULL, "%s", err);
    CHECK_EQ_INT(mu_dataset_len(ds), 2);
    CHECK_STR(field(ds, 0, "question"), "What is 2+2?");
    CHECK_STR(field(ds, 0, "answer"), "B");
    CHECK_STR(field(ds, 1, "question"), "Q, two");
    mu_dataset_free(ds);
}

TEST(ds_csv_errors_name_the_record) {
    char err[256];
    const char *a = "x,y\n1,2\n3\n";
    CHECK(mu_dataset_from_csv("f.csv", a, strlen(a), NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "f.csv: record 1") && strstr(err, "1 fields, header has 2"), "%s", err);
    const char *b = "x,y\n1,\"open\n";
    CHECK(mu_dataset_from_csv("f.csv", b, strlen(b), NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "unterminated quoted field"), "%s", err);
    const char *c = "x,y\n1,ok\n2,bad\xc3\x28\n";
    CHECK(mu_dataset_from_csv("f.csv", c, strlen(c), NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "record 1") && strstr(err, "invalid UTF-8") && strstr(err, "field y"), "%s", err);
    CHECK(!strchr(err, '\n'));
}

TEST(ds_jsonl_and_json_array) {
    char err[256];
    const char *jl = "{\"q\": \"a\", \"n\": 1}\n\n{\"q\": \"b\", \"l\": [\"x\", \"y\"]}\n";
    mu_dataset *ds = mu_dataset_load(write_tmp("d.jsonl", jl, strlen(jl)), MU_DS_AUTO, NULL, err, sizeof err);
    CHECK_MSG(ds != NULL, "%s", err);
    CHECK_EQ_INT(mu_dataset_len(ds), 2);
    CHECK_STR(field(ds, 1, "q"), "b");
    mu_dataset_free(ds);
    const char *ja = " [{\"q\": \"a\"}, {\"q\": \"é\"}]";
    ds = mu_dataset_load(write_tmp("d.data", ja, strlen(ja)), MU_DS_AUTO, NULL, err, sizeof err);
    CHECK_MSG(ds != NULL, "%s", err);
    CHECK_EQ_INT(mu_dataset_len(ds), 2);
    CHECK_STR(field(ds, 1, "q"), "é");
    mu_dataset_free(ds);
    const char *bad = "{\"q\": \"a\"}\n{\"q\": \n";
    CHECK(mu_dataset_load(write_tmp("e.jsonl", bad, strlen(bad)), MU_DS_AUTO, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "e.jsonl: record 1 (line 2)"), "%s", err);
    const char *badu = "{\"q\": \"a\xff\"}\n";
    CHECK(mu_dataset_load(write_tmp("u.jsonl", badu, strlen(badu)), MU_DS_AUTO, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "record 0") && strstr(err, "invalid UTF-8"), "%s", err);
}

/* Records that are not objects, a JSON document that is not an array of them, and CSV quotes
 * out of place: one line each, naming the file and the record */
TEST(ds_records_not_objects_and_csv_quotes) {
    char err[256];
    const char *jl = "{\"q\": \"a\"}\n[1, 2]\n";
    CHECK(mu_dataset_load(write_tmp("a.jsonl", jl, strlen(jl)), MU_DS_AUTO, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "a.jsonl: record 1 (line 2): not a JSON object") && !strchr(err, '\n'), "%s", err);
    const char *ja = "[{\"q\": \"a\"}, 3]";
    CHECK(mu_dataset_load(write_tmp("b.json", ja, strlen(ja)), MU_DS_JSON, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "b.json: record 1: not a JSON object"), "%s", err);
    const char *jo = "{\"q\": \"a\"}";
    CHECK(mu_dataset_load(write_tmp("c.json", jo, strlen(jo)), MU_DS_JSON, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "c.json: not a JSON array of records"), "%s", err);
    const char *jb = "[{\"q\": \"a\xff\"}]";
    CHECK(mu_dataset_load(write_tmp("d.json", jb, strlen(jb)), MU_DS_JSON, NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "d.json: invalid UTF-8 at byte 9"), "%s", err);
    const char *after = "x,y\n\"a\"b,2\n";
    CHECK(mu_dataset_from_csv("f.csv", after, strlen(after), NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "f.csv") && strstr(err, "line 2: text after a closing quote"), "%s", err);
    const char *inside = "x,y\na\"b,2\n";
    CHECK(mu_dataset_from_csv("g.csv", inside, strlen(inside), NULL, err, sizeof err) == NULL);
    CHECK_MSG(strstr(err, "g.csv") && strstr(err, "line 2: quote inside an unquoted field"), "%s", err);
}

/* Template fields that are numbers or booleans fill in as their JSON text */
TEST(ds_template_fields_of_each_kind) {
    char err[256], *text;
    size_t len;
    mu_template *t = mu_template_parse("{i} {r} {t} {f} {s}", err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    json_t *rec = json_pack("{s:i, s:f, s:b, s:b, s:s}", "i", -12, "r", 0.25, "t", 1, "f", 0, "s", "x");
    CHECK_MSG(mu_template_fill(t, rec, &text, &len, NULL, err, sizeof err) == 0, "%s", err);
    CHECK_STR(text, "-12 0.25 true false x");
    free(text);
    json_t *nul = json_pack("{s:i, s:f, s:b, s:b, s:n}", "i", 1, "r", 1.0, "t", 1, "f", 0, "s");
    CHECK(mu_template_fill(t, nul, &text, &len, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "template field {s}: is null, not text"), "%s", err);
    json_decref(rec);
    json_decref(nul);
    mu_template_free(t);
}

TEST(ds_template_fill_and_spans) {
    char err[256], *text;
    size_t len;
    mu_template *t = mu_template_parse("Fact: Tiger Woods plays golf\\nFact: {athlete} plays {{x}} {n}", err, sizeof err);
    CHECK_MSG(t != NULL, "%s", err);
    CHECK_EQ_INT(mu_template_nfields(t), 2);
    CHECK_STR(mu_template_field(t, 0), "athlete");
    json_t *rec = json_pack("{s:s, s:i}", "athlete", "Serena Williams", "n", 7);
    mu_span sp[2];
    CHECK(mu_template_fill(t, rec, &text, &len, sp, err, sizeof err) == 0);
    CHECK_STR(text, "Fact: Tiger Woods plays golf\nFact: Serena Williams plays {x} 7");
    CHECK_EQ_INT(sp[0].start, strlen("Fact: Tiger Woods plays golf\nFact: "));
    CHECK_EQ_INT(sp[0].end - sp[0].start, strlen("Serena Williams"));
    CHECK_STR(sp[1].field, "n");
    free(text);
    json_t *miss = json_pack("{s:s}", "name", "x");
    CHECK(mu_template_fill(t, miss, &text, &len, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "{athlete}") && strstr(err, "not in the record"), "%s", err);
    json_t *lst = json_pack("{s:[s], s:i}", "athlete", "x", "n", 1);
    CHECK(mu_template_fill(t, lst, &text, &len, NULL, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "a list"), "%s", err);
    json_decref(rec); json_decref(miss); json_decref(lst);
    mu_template_free(t);
    CHECK(mu_template_parse("a {unclosed", err, sizeof err) == NULL);
    CHECK(mu_template_parse("bad \\q", err, sizeof err) == NULL);
    CHECK(mu_template_parse("x }", err, sizeof err) == NULL);
}

/* Every row of Sports Facts: the span of {athlete} decodes to exactly the athlete's name
 * (the boundary token may carry the preceding space: trimmed), with a SentencePiece
 * vocabulary (stories260K) and a byte-level one (the Llama-3-style golden). */
static void check_sports_spans(const char *tok_path, int lead_space) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data");
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/sports/sports.csv", d);
    mu_dataset *ds = mu_dataset_load(path, MU_DS_AUTO, NULL, err, sizeof err);
    CHECK_MSG(ds != NULL, "%s", err);
    CHECK(mu_dataset_len(ds) == 1559);
    mu_tokenizer *tk = mu_tokenizer_load(tok_path, err, sizeof err);
    CHECK_MSG(tk != NULL, "%s", err);
    mu_template *t = mu_template_parse("Fact: Tiger Woods plays the sport of golf\\nFact: {athlete} plays the sport of", err, sizeof err);
    for (size_t i = 0; i < mu_dataset_len(ds); i++) {
        json_t *rec = mu_dataset_record(ds, i);
        char *text, *dec;
        size_t len, n, ts, te, dl;
        mu_span sp;
        CHECK(mu_template_fill(t, rec, &text, &len, &sp, err, sizeof err) == 0);
        CHECK_STR(text, field(ds, i, "prompt"));  /* the file's own prompt column */
        int32_t *ids;
        size_t *offs;
        CHECK(mu_tok_encode_offsets(tk, text, len, &ids, &offs, &n, err, sizeof err) == 0);
        mu_tok_span(offs, n, sp.start, sp.end, &ts, &te);
        CHECK(te > ts && te < n);
        CHECK(mu_tok_decode(tk, ids + ts, te - ts, 0, &dec, &dl, err, sizeof err) == 0);
        const char *a = dec;
        while (*a == ' ') a++;
        CHECK_MSG(!strcmp(a, field(ds, i, "athlete")), "row %zu: span [%zu,%zu) decodes to \"%s\", athlete \"%s\"",
                  i, ts, te, dec, field(ds, i, "athlete"));
        /* the span is the exact tokens of the whole-prompt tokenization: the tokens before
         * decode to the text before the name, the ones after to the text after it */
        char *pre;
        size_t pl;
        CHECK(mu_tok_decode(tk, ids, ts, 0, &pre, &pl, err, sizeof err) == 0);
        const char *rest = text + pl;
        while (*rest == ' ') rest++;
        CHECK_MSG(pl <= len && !memcmp(text, pre, pl) && !strncmp(rest, a, strlen(a)), "row %zu: prefix \"%s\"", i, pre);
        /* how the span relates to tokenizing the name alone: a byte-level vocabulary gives
         * the span's ids for " " + name (the space belongs to the first word), a
         * SentencePiece one with a prefix space for the name itself — except that a space
         * which stays a token of its own is not in the span (it does not overlap the name):
         * the span is a suffix of those ids and what precedes it is only that space */
        char alone[256];
        snprintf(alone, sizeof alone, "%s%s", lead_space ? " " : "", field(ds, i, "athlete"));
        int32_t *aid;
        size_t na, ns = te - ts;
        CHECK(mu_tok_encode(tk, alone, strlen(alone), 0, &aid, &na, err, sizeof err) == 0);
        CHECK_MSG(na >= ns && na <= ns + 1 && !memcmp(aid + (na - ns), ids + ts, ns * sizeof *aid), "row %zu: span ids differ from \"%s\" alone", i, alone);
        if (na > ns) {
            char *sp;
            size_t sl;
            CHECK(mu_tok_decode(tk, aid, 1, 0, &sp, &sl, err, sizeof err) == 0);
            CHECK_MSG(strspn(sp, " ") == sl, "row %zu: \"%s\" before the span", i, sp);
            CHECK_EQ_INT(ids[ts - 1], aid[0]);   /* and it is the token before the span */
            free(sp);
        }
        free(aid);
        free(pre); free(dec); free(ids); free(offs); free(text);
    }
    mu_template_free(t);
    mu_tokenizer_free(tk);
    mu_dataset_free(ds);
}

TEST(ds_sports_subject_spans_spm) {
    const char *d = mu_test_shared_data();
    if (!d) SKIP("no shared data");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/stories260K", d);
    check_sports_spans(path, 0);
}

TEST(ds_sports_subject_spans_bytelevel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/llama3.json", mu_test_root());
    check_sports_spans(path, 1);
}
