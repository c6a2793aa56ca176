/* sites.h — site addresses "site:layers:positions" shared by every tool.
 *
 *   resid_post:0-3:subject_last     mlp_post:all:last     attn_head:2,5:all
 *   embed::all  (layers empty or "all" for embed/logits)   resid_pre:4:0,3,-1
 *
 * site: a name of model.h's mu_site (embed, resid_pre, attn_head, attn_out, resid_mid,
 *       mlp_in, mlp_post, mlp_out, resid_post, logits).
 * layers: "all", "3", "2-6", "0,4,7", mixtures "0-2,5"; omitted = all.
 * positions: "all", "last", "subject_last", "subject", or comma-separated token indices
 *       (negative counts from the end of the row: -1 = last); omitted = all.
 * Subject spans [start, end) come from the tokens stream records ("spans": {"subject":..}).
 */
#ifndef MU_SITES_H
#define MU_SITES_H
#include <stddef.h>
#include <stdint.h>
#include "model.h"

typedef enum { MU_POS_ALL = 0, MU_POS_LAST, MU_POS_SUBJECT_LAST, MU_POS_SUBJECT, MU_POS_INDICES }
    mu_pos_kind;

#define MU_SITE_MAX_IDX 64

typedef struct {
    mu_site site;
    int n_layers;            /* number of selected layers (sorted, unique) */
    int *layers;             /* malloc'd [n_layers]; empty for embed/logits */
    mu_pos_kind pos;
    int n_idx;
    int idx[MU_SITE_MAX_IDX];/* MU_POS_INDICES: token indices (negative = from the end) */
} mu_site_spec;

/* Parses spec for a model of n_layer layers. 0 ok; -1 + err ("bad site spec 'x': ...").
 * Free with mu_site_spec_free. */
int mu_site_parse(const char *spec, int n_layer, mu_site_spec *out, char *err, size_t errlen);
void mu_site_spec_free(mu_site_spec *s);
/* Site enum from its name (len bytes); 0 ok, -1 unknown. */
int mu_site_from_name(const char *name, size_t len, mu_site *out);
/* 1 if the spec selects layer L (always 1 for embed/logits). */
int mu_site_spec_has_layer(const mu_site_spec *s, int layer);
/* Token positions selected in a row of len tokens whose subject span is [subj_start,
 * subj_end) (pass -1, -1 when there is none). Writes up to max sorted unique positions to
 * out and returns their count; -1 + err when the spec needs a subject and the row has
 * none, or an index is outside the row. */
int mu_site_positions(const mu_site_spec *s, int len, int subj_start, int subj_end,
                      int *out, int max, char *err, size_t errlen);
/* Canonical text of a spec ("resid_post:0-3:subject_last") into buf. */
void mu_site_spec_format(const mu_site_spec *s, char *buf, size_t buflen);
#endif
