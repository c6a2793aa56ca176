# common.mk — the preamble the experiment pipelines share (sports, counterfact, oracle,
# tofu), included first: `all` as the default goal, the real pretrained model
# (pipelines/models.mk, with pipelines/knobs.mk), how model steps run (pipelines/jobs.mk),
# the tools of MU_BIN on PATH, the shared data under DATA, and the device the model steps
# run on (MU_DEVICE: auto, the tools' default, takes a GPU where there is one; cpu or cuda).
.DEFAULT_GOAL := all
include pipelines/models.mk
include pipelines/jobs.mk
MU_BIN ?= bin
export PATH := $(abspath $(MU_BIN)):$(PATH)
DATA   ?= ../shared/data
MU_DEVICE ?= auto
comma := ,

# relearning attacks train every weight, so each stores a dense delta (538 MB for SmolLM2-135M;
# with RELEARN_LORA=16 a low-rank one of 20 MB, kept or not the same way).
# $(call relearn_deltas,FILES): unless KEEP_RELEARN is set, FILES are intermediate: deleted
# when the make that made them ends, made again only if an evaluation of theirs must be redone
# (their own inputs or knobs changed). Set KEEP_RELEARN=1 from a run's first make to keep them;
# set later, it makes them again (and so redoes their evaluations, with the same results).
KEEP_RELEARN ?=
relearn_deltas = $(if $(KEEP_RELEARN),,$(eval .INTERMEDIATE: $(1)))

# CHOICES_RULE MODEL: $(RUN)/out/MODEL/STEM.out from $(RUN)/tok/STEM.tok, the choice
# log-probs of each record under MODEL and the deltas DELTAS_MODEL applied in order
define CHOICES_RULE
$(RUN)/out/$(1)/%.out: $(RUN)/tok/%.tok $(DELTAS_$(1))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) --emit choices --out $$@ $$<
endef

# changes_recipe BASE,DELTA: the recipe of a changes TSV ($@; read by pipelines/changes.awk):
# for each localization l of LOCS, each tensor that DELTA (% = l) changed on top of MODEL and
# the BASE deltas: l, tensor, layer, role, L2 norm of the change, and that over the L2 norm
# of the values before it (mu-dump --stats)
define changes_recipe
for l in $(LOCS); do \
  mu-dump $(Q) --model $(MODEL) $(addprefix --delta ,$(1)) --delta $(subst %,$$l,$(2)) --stats -H --out $@.$$l.jsonl && \
  jq -r --arg l $$l --argjson k $(words $(1)) \
    'select(.delta_l2[$$k] > 0) | [$$l, .name, (.layer // "-"), .role, .delta_l2[$$k], .delta_rel[$$k]] | @tsv' \
    $@.$$l.jsonl && rm $@.$$l.jsonl || exit 1; \
done > $@.tmp
mv $@.tmp $@
endef

# paired_rows RUNS[,METRIC]: a shell loop that reads comparisons "baseline kind localization stem"
# on stdin and prints, for each, METRIC (default choice_acc) of RUN/out/KIND-l/STEM.out against
# RUN/out/KIND-w/STEM.out on the same records (a baseline =NAME: RUN/out/NAME/STEM.out, the
# model NAME itself, e.g. =learned), the records of every RUN read as one set
# (mu-score --paired on the streams concatenated, matched by record id): w (without its =),
# kind, l, stem, the difference, the records, its 95% interval and p (an accuracy: Newcombe's,
# McNemar's exact test; a probability: Student's t, the paired t-test, whose p is 1 where the
# two models agree on every record); it exits 1 at the first failure and leaves $@.b, $@.one
# to remove (holm_finish does)
define paired_rows
while read -r w k l s; do \
  case $$w in =*) w=$${w#=}; b=$$w ;; *) b=$$k-$$w ;; esac; \
  cat $(1:%=%/out/$$b/$$s.out) > $@.b || exit 1; \
  mu-score $(Q) --paired $@.b --metrics $(or $(2),choice_acc) --ci 0.95 --format tsv \
    $(1:%=%/out/$$k-$$l/$$s.out) > $@.one || exit 1; \
  awk -F'\t' -v OFS='\t' -v w=$$w -v k=$$k -v l=$$l -v s=$$s \
    'NR > 1 { print w, k, l, s, $$3, $$4, $$5, $$6, ($$7 == "nan" && $$3 == 0 ? 1 : $$7) }' $@.one; \
done
endef

# paired_list WITHS,KIND:STEM ...: the comparisons W:KIND:L:STEM of each baseline w of WITHS,
# each other localization l of LOCS and each KIND:STEM. A paired-comparisons TSV names its
# list in a variable, lists $(call paired_knob,NAME,LIST) as a prerequisite and is made by
# $(call paired_list_recipe,LIST)
paired_list = $(foreach w,$(1),$(foreach l,$(filter-out $(w),$(LOCS)),$(foreach ks,$(2),\
                $(w):$(firstword $(subst :, ,$(ks))):$(l):$(lastword $(subst :, ,$(ks))))))
# paired_knob NAME,COMPARISONS: the stamp of a paired-comparisons TSV (pipelines/knobs.mk)
# naming its comparisons, so that the file is remade when they change: a localization,
# baseline, format, price or strength dropped leaves no rows behind (one added brings new
# outputs, which remake it anyway)
paired_knob = $(call knobs,$(1),ci=0.95 $(2))
# paired_list_recipe W:KIND:L:STEM ...[,METRIC]: the recipe of a paired-comparisons TSV ($@)
# of RUN holding the comparisons listed, in order (those of paired_rows)
define paired_list_recipe
(printf '%s\n' $(1) | tr ':' ' ' | $(call paired_rows,$(RUN),$(2))) > $@.rows || { rm -f $@.rows $@.b $@.one; exit 1; }
$(holm_finish)
endef
# holm_finish: the end of a paired-comparisons recipe: $@ is paired_rows' rows ($@.rows) with
# a tenth column, each McNemar p adjusted by Holm's method over all the rows of the file
# (pipelines/holm.awk: the file's comparisons are one family); the rules list $(HOLM)
HOLM := pipelines/holm.awk
define holm_finish
awk -f $(HOLM) $@.rows > $@.tmp || { rm -f $@.rows $@.tmp $@.b $@.one; exit 1; }
rm -f $@.rows $@.b $@.one
mv $@.tmp $@
endef

# ---- strength of each localization's change (SCALES) -------------------------------------------
# SCALES='0.25 0.5 2': the pipeline's change in each localization LOC ($(call strength_delta,LOC):
# an unlearning, an edit) applied at strength S when the model is loaded, after the deltas
# STRENGTH_BEFORE (mu-forward --scaled-delta S=...: w0 + S (w - w0), w0 the weights before it),
# evaluated on the token streams STRENGTH_STEMS; S = 1 is the changed model, 0 the one before.
# A pipeline sets strength_delta, STRENGTH_BEFORE, STRENGTH_STEMS and PAIRED_WITH, then calls
# $(strength_rules) once; $(RUN)/strength.tsv holds mu-score's rows by loc, scale, split (a stem)
# and $(RUN)/strength-paired.tsv the paired comparisons at each strength (kind scaled-S): each
# localization against each of PAIRED_WITH on the same prompts (paired_rows, Holm over the file)
SCALES ?=
STRENGTH_PAIRS = $(call paired_list,$(PAIRED_WITH),$(foreach s,$(SCALES),$(foreach t,$(STRENGTH_STEMS),scaled-$(s):$(t))))
strength_out = $(RUN)/out/scaled-$(2)-$(1)/$(3).out
define STRENGTH_RULE
$(RUN)/out/scaled-$(2)-$(1)/%.out: $(RUN)/tok/%.tok $(STRENGTH_BEFORE) $(call strength_delta,$(1))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(STRENGTH_BEFORE)) \
	  --scaled-delta $(2)=$(call strength_delta,$(1)) --emit choices --out $$@ $$<
endef
STRENGTH_OUTS = $(foreach l,$(LOCS),$(foreach s,$(SCALES),$(foreach t,$(STRENGTH_STEMS),$(call strength_out,$(l),$(s),$(t)))))
define STRENGTH_TSV_RULE
$(RUN)/strength.tsv: $(STRENGTH_OUTS) $(call knobs,scales,$(SCALES))
	mu-score $(Q) --by loc,scale,split --metrics choice_acc --format tsv \
	  $(foreach l,$(LOCS),--label loc=$(l) $(foreach s,$(SCALES),--label scale=$(s) \
	    $(foreach t,$(STRENGTH_STEMS),--label split=$(t) $(call strength_out,$(l),$(s),$(t))))) > $$@.tmp
	mv $$@.tmp $$@
$(RUN)/strength-paired.tsv: $(STRENGTH_OUTS) $(HOLM) $(call paired_knob,strength-paired,$(STRENGTH_PAIRS))
	$$(call paired_list_recipe,$(STRENGTH_PAIRS))
endef
strength_rules = $(if $(SCALES),$(foreach l,$(LOCS),$(foreach s,$(SCALES),$(eval $(call STRENGTH_RULE,$(l),$(s))))) \
                 $(eval $(STRENGTH_TSV_RULE)))
# strength_report ZERO,ONE,JOB: the report's section (pipelines/strength-report.awk: S = 0 the
# model ZERO of scores.tsv, S = 1 each ONE-LOC, JOB its words), appended to $@.tmp; a recipe's
# prefix, empty without SCALES
strength_report = $(if $(SCALES),awk -f pipelines/paired-lib.awk -f pipelines/strength-report.awk -v locs='$(LOCS)' \
  -v scales='$(SCALES)' -v stems='$(STRENGTH_STEMS)' -v zero=$(1) -v one=$(2) -v job=$(3) \
  $(RUN)/scores.tsv $(RUN)/strength.tsv $(RUN)/strength-paired.tsv >> $@.tmp && )
STRENGTH_REPORT_DEPS = $(if $(SCALES),$(RUN)/strength.tsv $(RUN)/strength-paired.tsv pipelines/strength-report.awk \
                         pipelines/paired-lib.awk) $(call knobs,report-scales,$(SCALES))
