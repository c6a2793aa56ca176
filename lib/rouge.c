/* rouge.c — ROUGE-1 and ROUGE-L as Google's rouge_score computes them, with its
 * tokenizer and nltk's Porter stemmer (PorterStemmer() default mode, NLTK_EXTENSIONS),
 * which is what TOFU's RougeScorer(['rouge1','rougeL'], use_stemmer=True) uses. */
#include "metrics.h"
#include <stdlib.h>
#include <string.h>

/* ================= Porter stemmer (nltk NLTK_EXTENSIONS mode) ================= */
/* A word is a NUL-terminated buffer that only shrinks, edited in place. */

static int is_vowel_char(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }

/* Consonant test as nltk's _is_consonant: 'y' is a consonant unless preceded by a
 * consonant (a run of y's alternates). */
static int is_cons(const char *w, int i) {
    if (is_vowel_char(w[i])) return 0;
    if (w[i] != 'y') return 1;
    int negate = 0;
    while (i > 0 && w[i] == 'y') { negate = !negate; i--; }
    return (!is_vowel_char(w[i])) != negate;
}

/* The measure m of w[0..len): number of "vc" transitions in its c/v pattern. */
static int measure(const char *w, int len) {
    int m = 0, prev_vowel = 0;
    int prev_flag = 1; /* consonant flag of the previous char */
    for (int i = 0; i < len; i++) {
        int c;
        if (is_vowel_char(w[i])) c = 0;
        else if (w[i] == 'y') c = i == 0 ? 1 : !prev_flag;
        else c = 1;
        if (c && prev_vowel) m++;
        prev_vowel = !c;
        prev_flag = c;
    }
    return m;
}

static int contains_vowel(const char *w, int len) {
    for (int i = 0; i < len; i++) if (!is_cons(w, i)) return 1;
    return 0;
}

static int ends_double_cons(const char *w, int len) {
    return len >= 2 && w[len - 1] == w[len - 2] && is_cons(w, len - 1);
}

/* Condition *o (plus nltk's two-letter vc case). */
static int ends_cvc(const char *w, int len) {
    if (len >= 3 && is_cons(w, len - 3) && !is_cons(w, len - 2) && is_cons(w, len - 1) &&
        w[len - 1] != 'w' && w[len - 1] != 'x' && w[len - 1] != 'y') return 1;
    return len == 2 && !is_cons(w, 0) && is_cons(w, 1);
}

static int ends_with(const char *w, int len, const char *suf) {
    int sl = (int)strlen(suf);
    return sl <= len && memcmp(w + len - sl, suf, (size_t)sl) == 0;
}

/* Replace the last sl chars of w (length *len) by rep. Never grows past the original. */
static void replace_tail(char *w, int *len, int sl, const char *rep) {
    int rl = (int)strlen(rep);
    memcpy(w + *len - sl, rep, (size_t)rl);
    *len = *len - sl + rl;
    w[*len] = 0;
}

typedef enum { C_NONE, C_M_POS, C_M_GT1, C_ION, C_LOGI } rule_cond;
typedef struct { const char *suffix, *rep; rule_cond cond; } rule;

static int cond_ok(rule_cond c, const char *w, int stemlen, int wordlen) {
    switch (c) {
    case C_NONE: return 1;
    case C_M_POS: return measure(w, stemlen) > 0;
    case C_M_GT1: return measure(w, stemlen) > 1;
    case C_ION: return measure(w, stemlen) > 1 && stemlen > 0 &&
                       (w[stemlen - 1] == 's' || w[stemlen - 1] == 't');
    case C_LOGI: return measure(w, wordlen - 3) > 0; /* nltk tests word[:-3] */
    }
    return 0;
}

/* nltk _apply_rule_list (without the *d rule): the first rule whose suffix matches
 * decides; if its condition fails the word is returned unchanged. */
static void apply_rules(char *w, int *len, const rule *rules, int nrules) {
    for (int i = 0; i < nrules; i++) {
        if (!ends_with(w, *len, rules[i].suffix)) continue;
        int sl = (int)strlen(rules[i].suffix);
        if (cond_ok(rules[i].cond, w, *len - sl, *len)) replace_tail(w, len, sl, rules[i].rep);
        return;
    }
}

static void step1a(char *w, int *len) {
    if (ends_with(w, *len, "ies") && *len == 4) { replace_tail(w, len, 3, "ie"); return; }
    static const rule r[] = {{"sses", "ss", C_NONE}, {"ies", "i", C_NONE},
                             {"ss", "ss", C_NONE}, {"s", "", C_NONE}};
    apply_rules(w, len, r, 4);
}

static void step1b(char *w, int *len) {
    if (ends_with(w, *len, "ied")) { replace_tail(w, len, 3, *len == 4 ? "ie" : "i"); return; }
    if (ends_with(w, *len, "eed")) {
        if (measure(w, *len - 3) > 0) replace_tail(w, len, 3, "ee");
        return;
    }
    int cut = 0;
    if (ends_with(w, *len, "ed") && contains_vowel(w, *len - 2)) cut = 2;
    else if (ends_with(w, *len, "ing") && contains_vowel(w, *len - 3)) cut = 3;
    if (!cut) return;
    *len -= cut; w[*len] = 0;
    if (ends_with(w, *len, "at")) { replace_tail(w, len, 2, "ate"); return; }
    if (ends_with(w, *len, "bl")) { replace_tail(w, len, 2, "ble"); return; }
    if (ends_with(w, *len, "iz")) { replace_tail(w, len, 2, "ize"); return; }
    if (ends_double_cons(w, *len)) {
        char last = w[*len - 1];
        if (last != 'l' && last != 's' && last != 'z') { (*len)--; w[*len] = 0; }
        return;
    }
    if (measure(w, *len) == 1 && ends_cvc(w, *len)) { w[*len] = 'e'; (*len)++; w[*len] = 0; }
}

static void step1c(char *w, int *len) {
    if (ends_with(w, *len, "y") && *len - 1 > 1 && is_cons(w, *len - 2)) w[*len - 1] = 'i';
}

static void step2(char *w, int *len) {
    while (ends_with(w, *len, "alli") && measure(w, *len - 4) > 0)
        replace_tail(w, len, 4, "al");
    static const rule r[] = {
        {"ational", "ate", C_M_POS}, {"tional", "tion", C_M_POS}, {"enci", "ence", C_M_POS},
        {"anci", "ance", C_M_POS}, {"izer", "ize", C_M_POS}, {"bli", "ble", C_M_POS},
        {"alli", "al", C_M_POS}, {"entli", "ent", C_M_POS}, {"eli", "e", C_M_POS},
        {"ousli", "ous", C_M_POS}, {"ization", "ize", C_M_POS}, {"ation", "ate", C_M_POS},
        {"ator", "ate", C_M_POS}, {"alism", "al", C_M_POS}, {"iveness", "ive", C_M_POS},
        {"fulness", "ful", C_M_POS}, {"ousness", "ous", C_M_POS}, {"aliti", "al", C_M_POS},
        {"iviti", "ive", C_M_POS}, {"biliti", "ble", C_M_POS}, {"fulli", "ful", C_M_POS},
        {"logi", "log", C_LOGI}};
    apply_rules(w, len, r, (int)(sizeof r / sizeof r[0]));
}

static void step3(char *w, int *len) {
    static const rule r[] = {{"icate", "ic", C_M_POS}, {"ative", "", C_M_POS},
                             {"alize", "al", C_M_POS}, {"iciti", "ic", C_M_POS},
                             {"ical", "ic", C_M_POS}, {"ful", "", C_M_POS}, {"ness", "", C_M_POS}};
    apply_rules(w, len, r, (int)(sizeof r / sizeof r[0]));
}

static void step4(char *w, int *len) {
    static const rule r[] = {
        {"al", "", C_M_GT1}, {"ance", "", C_M_GT1}, {"ence", "", C_M_GT1}, {"er", "", C_M_GT1},
        {"ic", "", C_M_GT1}, {"able", "", C_M_GT1}, {"ible", "", C_M_GT1}, {"ant", "", C_M_GT1},
        {"ement", "", C_M_GT1}, {"ment", "", C_M_GT1}, {"ent", "", C_M_GT1}, {"ion", "", C_ION},
        {"ou", "", C_M_GT1}, {"ism", "", C_M_GT1}, {"ate", "", C_M_GT1}, {"iti", "", C_M_GT1},
        {"ous", "", C_M_GT1}, {"ive", "", C_M_GT1}, {"ize", "", C_M_GT1}};
    apply_rules(w, len, r, (int)(sizeof r / sizeof r[0]));
}

static void step5a(char *w, int *len) {
    if (!ends_with(w, *len, "e")) return;
    int m = measure(w, *len - 1);
    if (m > 1 || (m == 1 && !ends_cvc(w, *len - 1))) { (*len)--; w[*len] = 0; }
}

static void step5b(char *w, int *len) {
    if (ends_with(w, *len, "ll") && measure(w, *len - 1) > 1) { (*len)--; w[*len] = 0; }
}

static const char *const irregular[][2] = {
    {"sky", "sky"}, {"skies", "sky"}, {"dying", "die"}, {"lying", "lie"}, {"tying", "tie"},
    {"news", "news"}, {"innings", "inning"}, {"inning", "inning"}, {"outings", "outing"},
    {"outing", "outing"}, {"cannings", "canning"}, {"canning", "canning"}, {"howe", "howe"},
    {"proceed", "proceed"}, {"exceed", "exceed"}, {"succeed", "succeed"}};

char *mu_porter_stem(const char *word) {
    size_t n = strlen(word);
    for (size_t i = 0; i < sizeof irregular / sizeof irregular[0]; i++)
        if (!strcmp(word, irregular[i][0])) return strdup(irregular[i][1]);
    char *w = malloc(n + 2);
    if (!w) return NULL;
    memcpy(w, word, n + 1);
    if (n <= 2) return w;
    int len = (int)n;
    step1a(w, &len); step1b(w, &len); step1c(w, &len); step2(w, &len);
    step3(w, &len); step4(w, &len); step5a(w, &len); step5b(w, &len);
    return w;
}

/* ================= tokenizer ================= */

/* Decodes one UTF-8 code point at s (n bytes left); returns its length or -1. */
static int utf8_next(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) { *cp = s[0]; return 1; }
    int len; uint32_t c, min;
    if ((s[0] & 0xE0) == 0xC0) { len = 2; c = s[0] & 0x1F; min = 0x80; }
    else if ((s[0] & 0xF0) == 0xE0) { len = 3; c = s[0] & 0x0F; min = 0x800; }
    else if ((s[0] & 0xF8) == 0xF0) { len = 4; c = s[0] & 0x07; min = 0x10000; }
    else return -1;
    if ((size_t)len > n) return -1;
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return -1;
        c = (c << 6) | (s[i] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return -1;
    *cp = c;
    return len;
}

/* Python's str.lower() restricted to what survives [a-z0-9]: ASCII letters and
 * digits, KELVIN SIGN -> 'k', and LATIN CAPITAL I WITH DOT -> 'i' (+ a combining dot,
 * which becomes a separator). 0 means "not alphanumeric after lowercasing". */
static char fold_char(uint32_t cp) {
    if (cp >= 'a' && cp <= 'z') return (char)cp;
    if (cp >= '0' && cp <= '9') return (char)cp;
    if (cp >= 'A' && cp <= 'Z') return (char)(cp + 32);
    if (cp == 0x212A) return 'k';
    if (cp == 0x0130) return 'i';
    return 0;
}

void mu_rouge_free_tokens(char **tok, int n) {
    if (!tok) return;
    for (int i = 0; i < n; i++) free(tok[i]);
    free(tok);
}

int mu_rouge_tokenize(const char *text, int stem, char ***out) {
    size_t n = strlen(text), cap = 16;
    char **tok = malloc(cap * sizeof *tok);
    char *buf = malloc(n + 2);
    int ntok = 0;
    size_t blen = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i <= n;) {
        uint32_t cp = 0;
        int l = 1;
        if (i < n) {
            l = utf8_next(s + i, n - i, &cp);
            if (l < 0) { free(buf); mu_rouge_free_tokens(tok, ntok); *out = NULL; return -1; }
        }
        char c = i < n ? fold_char(cp) : 0;
        if (c) { buf[blen++] = c; if (cp == 0x0130) { /* the combining dot splits */
                buf[blen] = 0; goto flush; } }
        else {
        flush:
            if (blen) {
                buf[blen] = 0;
                char *t = stem && blen > 3 ? mu_porter_stem(buf) : strdup(buf);
                if (ntok == (int)cap) { cap *= 2; tok = realloc(tok, cap * sizeof *tok); }
                if (t[0]) tok[ntok++] = t; else free(t);
                blen = 0;
            }
        }
        i += (size_t)l;
    }
    free(buf);
    *out = tok;
    return ntok;
}

/* ================= scores ================= */

static double fmeasure(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0; }

static int lcs_length(char **a, int na, char **b, int nb) {
    int *prev = calloc((size_t)nb + 1, sizeof(int)), *cur = calloc((size_t)nb + 1, sizeof(int));
    for (int i = 1; i <= na; i++) {
        for (int j = 1; j <= nb; j++)
            cur[j] = !strcmp(a[i - 1], b[j - 1]) ? prev[j - 1] + 1
                     : (prev[j] >= cur[j - 1] ? prev[j] : cur[j - 1]);
        int *t = prev; prev = cur; cur = t;
    }
    int r = prev[nb];
    free(prev); free(cur);
    return r;
}

int mu_rouge_l(const char *target, const char *prediction, int stem, mu_rouge *out) {
    char **t, **p;
    int nt = mu_rouge_tokenize(target, stem, &t);
    if (nt < 0) return -1;
    int np_ = mu_rouge_tokenize(prediction, stem, &p);
    if (np_ < 0) { mu_rouge_free_tokens(t, nt); return -1; }
    out->precision = out->recall = out->fmeasure = 0;
    if (nt > 0 && np_ > 0) {
        int l = lcs_length(t, nt, p, np_);
        out->precision = (double)l / np_;
        out->recall = (double)l / nt;
        out->fmeasure = fmeasure(out->precision, out->recall);
    }
    mu_rouge_free_tokens(t, nt); mu_rouge_free_tokens(p, np_);
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int mu_rouge_1(const char *target, const char *prediction, int stem, mu_rouge *out) {
    char **t, **p;
    int nt = mu_rouge_tokenize(target, stem, &t);
    if (nt < 0) return -1;
    int np_ = mu_rouge_tokenize(prediction, stem, &p);
    if (np_ < 0) { mu_rouge_free_tokens(t, nt); return -1; }
    /* overlap = sum over unigrams of min(count in t, count in p): merge sorted lists */
    qsort(t, (size_t)nt, sizeof *t, cmp_str);
    qsort(p, (size_t)np_, sizeof *p, cmp_str);
    int i = 0, j = 0, overlap = 0;
    while (i < nt && j < np_) {
        int c = strcmp(t[i], p[j]);
        if (c == 0) { overlap++; i++; j++; } else if (c < 0) i++; else j++;
    }
    out->precision = (double)overlap / (np_ > 0 ? np_ : 1);
    out->recall = (double)overlap / (nt > 0 ? nt : 1);
    out->fmeasure = fmeasure(out->precision, out->recall);
    mu_rouge_free_tokens(t, nt); mu_rouge_free_tokens(p, np_);
    return 0;
}
