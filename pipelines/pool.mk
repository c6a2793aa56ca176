# pool.mk — the paired comparisons of several replications of one pipeline, pooled.
#
#   make -f pipelines/pool.mk RUNS="runs/sports128 runs/sports128b" [POOL=runs/pool]
#                             [PAIRED=paired.tsv] [COMMON=1]
#
# Each run of RUNS is a finished run of the same pipeline (sports.mk or counterfact.mk) with
# the same localizations and baselines (LOCS, PAIRED_WITH), on other facts (FACTS_FROM,
# POOL_FROM): its paired.tsv names the comparisons (baseline, kind, localization, stem); PAIRED
# names another file of paired comparisons in those columns (wmask-paired.tsv: sports.mk's
# weight masks against weight training, each localization a baseline). For
# each, the records of every run are read as one set (the runs' output streams concatenated,
# matched by record id; mu-score --paired): the pooled accuracy difference, the records, its
# 95% interval (Newcombe's) and McNemar's exact p, as each run's paired.tsv has them.
# Records must be distinct across the runs: two runs on the same facts (another SEED only)
# are not independent, and mu-score refuses a record id that appears twice.
# Runs whose comparisons differ are refused, unless COMMON=1: then the comparisons every run
# holds are pooled (in the first run's order; e.g. GCG_MODELS chose other models in each
# run's gcg-paired.tsv), and the report counts the first run's comparisons left out.
#   $(POOL)/paired.tsv   the pooled comparisons, in the columns of a run's paired.tsv
#   $(POOL)/report.md    a table per baseline: localization x kind:stem, each cell the
#                        pooled difference, its interval and p
# Make rebuilds them when a run's PAIRED changes (a run redone, another knob).
include pipelines/common.mk
RUNS ?=
POOL ?= runs/pool
PAIRED ?= paired.tsv
COMMON ?=
# the knobs' stamps (pipelines/knobs.mk) go under $(POOL)/knobs
RUN := $(POOL)
Q    ?= -q
SHELL := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:
ifeq ($(words $(RUNS)),0)
$(error pool.mk: RUNS is empty: name two or more finished runs, e.g. RUNS="runs/a runs/b")
endif
FIRST := $(firstword $(RUNS))
# MMLU's comparisons (mmlu.mk) are on the same questions in every run: not independent
ifneq ($(filter mmlu%,$(notdir $(PAIRED))),)
$(error pool.mk: PAIRED=$(PAIRED): every run asks the same MMLU questions, so their comparisons cannot be pooled as independent records)
endif

.PHONY: all
all: $(POOL)/report.md
	@cat $<

# the comparisons: those of the first run, which every other run must share (COMMON=1: those
# of the first run that every other run holds)
$(POOL)/comparisons.tsv: $(RUNS:%=%/$(PAIRED)) $(call knobs,paired-file,$(PAIRED)) $(call knobs,common,$(COMMON))
	@mkdir -p $(@D)
	cut -f1-4 $(FIRST)/$(PAIRED) > $@.tmp
ifeq ($(COMMON),1)
	for r in $(RUNS); do cut -f1-4 $$r/$(PAIRED) | awk 'NR == FNR { have[$$0]; next } $$0 in have' - $@.tmp > $@.c; \
	  mv $@.c $@.tmp; done
	[ -s $@.tmp ] || { echo "$(RUNS:%=%/$(PAIRED)): no comparison in common" >&2; rm -f $@.tmp; exit 1; }
else
	for r in $(RUNS); do cut -f1-4 $$r/$(PAIRED) | cmp -s - $@.tmp || \
	  { echo "$$r/$(PAIRED): other comparisons than $(FIRST)/$(PAIRED) (LOCS, PAIRED_WITH or WMASK differ; COMMON=1 pools those in common)" >&2; \
	    rm -f $@.tmp; exit 1; }; done
endif
	mv $@.tmp $@

# each comparison over the runs' records together (common.mk paired_rows): baseline w,
# kind k, localization l, stem s, difference, records, ci_lo, ci_hi, McNemar p, its Holm
# adjustment over the pooled comparisons
$(POOL)/paired.tsv: $(POOL)/comparisons.tsv $(HOLM)
	($(call paired_rows,$(RUNS)) < $<) > $@.rows || { rm -f $@.rows $@.b $@.one; exit 1; }
	$(holm_finish)

$(POOL)/report.md: $(POOL)/paired.tsv pipelines/pool-report.awk pipelines/paired-lib.awk
	for r in $(RUNS); do printf '%s\t%s\n' $$r "$$(sed -n 3p $$r/report.md)"; done > $@.runs
	awk -f pipelines/paired-lib.awk -f pipelines/pool-report.awk -v paired=$(PAIRED) \
	  -v left=$$(( $$(wc -l < $(FIRST)/$(PAIRED)) - $$(wc -l < $<) )) $@.runs $< > $@.tmp
	rm -f $@.runs
	mv $@.tmp $@
