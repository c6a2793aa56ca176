# tofu.mk — Lee et al. 2025 ("Does Localization Inform Unlearning?") on TOFU, scored as
# TOFU (Maini et al. 2024) and open-unlearning score it: does unlearning through the units
# a parameter-attribution method picks beat unlearning through as many random units?
#
#   make -f pipelines/tofu.mk [RUN=runs/tofu] [MODEL=...] [FRAC=0.01] [LRS='...'] ...
#
#   1. finetuned   mu-train learn + retain-ce, every parameter: the model learns the TOFU
#                  forget set (FORGET_SET) and RETAIN_ROWS of retain90 (TOFU's fine-tuned
#                  model); retained: the same steps on the retain rows only (TOFU's retain
#                  model, the reference of forget quality)
#   2. masks       all of one size, FRAC of the model's parameters in TENSORS (MLP value
#                  vectors): the top units of mu-attrib METHOD on the finetuned model (act,
#                  wagle, memflex, grad: ATTRIB), random units (mu-maskgen --random) and
#                  random units outside the first attribution's mask (complement)
#   3. unlearned   for each mask, objective (OBJECTIVES: any of mu-train's, e.g. ga graddiff
#                  npo simnpo wga satimp me rmu undial dpo idk; OBJ_name and OPTS_name in lee.mk) and
#                  learning rate (LRS, or LRS_name for objective name): mu-train on top of
#                  the finetuned model, masked
#   4. evaluation  every model on TOFU's evaluation sets. forget and retain (retain rows the
#                  models learned, RETAIN_EVAL_ROWS of retain_perturbed = retain90's first
#                  400): answer probability and ROUGE-L recall of a greedy answer (tok/SET.qa),
#                  truth ratio of the paraphrased against the perturbed answers (tok/SET.tr);
#                  the other UTILITY_SETS (real_authors, world_facts): option probability,
#                  ROUGE-L and truth ratio of the answer against the perturbed ones.
#                  mu-score --reference (the retain model's forget truth ratios) --utility:
#                  forget_quality (KS-test p-value), model_utility (harmonic mean)
#   5. report.md   per (mask, objective): forget quality and model utility of each learning
#                  rate, AUES (removal of the forget answer probability against retention of
#                  model utility) and MU95 (the best forget quality among the runs that keep
#                  >= 95% of the finetuned model's utility), masks ranked by both
# Make rebuilds only what is stale, and every tool writes atomically: an interrupted run
# resumes where it stopped. A changed knob redoes the stages that use it and what depends
# on them (pipelines/knobs.mk): UNLEARN_STEPS redoes the runs, not the fine-tuning; a new LRS
# value adds its runs.
#
# Time: the defaults (stories260K, 40 forget and 120 retain questions, 8 masks x 2 objectives
# x 4 learning rates = 64 unlearning runs, 66 models evaluated) took 4m19s with make -j2 on
# 2 CPU cores (one OpenMP thread per step, pipelines/jobs.mk); 6 masks took 8m56s without
# -j (the tools then using both cores).
# UTILITY_SETS is retain alone by default: a 260K-parameter story model answers no real
# author or world fact (ROUGE-L 0 there makes the harmonic mean 0). With a real model, e.g.
# MODEL='$(SMOLLM2)' (pipelines/models.mk) on a GPU (MU_DEVICE=cuda), use TOFU's full
# UTILITY_SETS='retain real_authors world_facts'.
include pipelines/common.mk
MODEL  ?= $(DATA)/models/stories260K
RUN    ?= runs/tofu
Q      ?= -q
SEED   ?= 1
SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

# ---- knobs --------------------------------------------------------------------------
TOFU             ?= $(DATA)/tofu
FORGET_SET       ?= forget01
FORGET_ROWS      ?= 0-
RETAIN_ROWS      ?= 0-120
# retain rows evaluated (rows of retain_perturbed, which are retain90's rows 0-399: keep
# them inside RETAIN_ROWS, so that they are rows the models learned, as in TOFU)
RETAIN_EVAL_ROWS ?= 0-40
UTILITY_SETS     ?= retain
UTILITY_ROWS     ?= 0-
PROMPT           ?= Question: {question}\nAnswer:
MAX_LEN          ?= 512

LEARN_STEPS ?= 150
LEARN_BATCH ?= 8
LEARN_LR    ?= 1e-2

FRAC          ?= 0.01
TENSORS       ?= mlp.down:all
GRANULARITY   ?= neuron
RANDOM_SEED   ?= $(shell echo $$(( $(SEED) + 1 )))
# more random masks (random-S, seed S each): the spread of a random mask's AUES, against
# which the attributions' are read (lee.mk); empty: one random mask
NULL_SEEDS    ?= 11 12
ATTRIB        ?= act wagle memflex grad
COMPLEMENT_OF ?= $(firstword $(ATTRIB))
MASKS         := random $(NULL_SEEDS:%=random-%) complement $(ATTRIB)

OBJECTIVES    ?= graddiff npo
# a sweep from barely unlearning to wrecking the model (utility near 0 at 1e-1)
LRS           ?= 3e-3 1e-2 3e-2 1e-1
UNLEARN_STEPS ?= 20
UNLEARN_BATCH ?= 8
GEN           ?= 96

TRAIN := $(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --max-len $(MAX_LEN) --seed $(SEED)
# masks, attributions and unlearning runs (pipelines/lee.mk): from the fine-tuned model, the
# complement outside the first attribution's mask
LEE_BASE       := $(RUN)/finetuned.st
LEE_COMPLEMENT := $(RUN)/mask/$(COMPLEMENT_OF).mask
include pipelines/lee.mk
EVALUATED := finetuned retained $(RUNS)
EXTRA     := $(filter-out retain,$(UTILITY_SETS))

.PHONY: all report
all: $(RUN)/report.md
report: $(RUN)/report.md
	@cat $<

# ---- tokens -------------------------------------------------------------------------
# training: tok/forget, tok/retain (question, answer). Evaluation: tok/forget.qa and
# tok/retain.qa (the answer: probability, ROUGE-L), tok/forget.tr and tok/retain.tr (the
# paraphrased answer as candidate 0, then the perturbed ones: truth ratio), tok/SET for the
# other utility sets (the answer as candidate 0, then the perturbed ones)
TOKENIZE := mu-tokenize $(Q) --model $(MODEL) --prompt '$(PROMPT)'
TOK_forget       := $(FORGET_SET).jsonl $(FORGET_ROWS)
TOK_retain       := retain90.jsonl $(RETAIN_ROWS)
TOK_forget.qa    := $(FORGET_SET)_perturbed.jsonl $(FORGET_ROWS)
TOK_forget.tr    := $(FORGET_SET)_perturbed.jsonl $(FORGET_ROWS)
TOK_retain.qa    := retain_perturbed.jsonl $(RETAIN_EVAL_ROWS)
TOK_retain.tr    := retain_perturbed.jsonl $(RETAIN_EVAL_ROWS)
TARGET_TR        := --target ' {paraphrased_answer}' --choices-field perturbed_answer
$(foreach s,$(EXTRA),$(eval TOK_$(s) := $(s)_perturbed.jsonl $(UTILITY_ROWS)))
define TOKENS_RULE
$(RUN)/tok/$(1).tok: $(TOFU)/$(word 1,$(TOK_$(1))) $(MODEL_DEPS) \
                     $(call knobs,tok-$(1),rows=$(word 2,$(TOK_$(1))) prompt=$(PROMPT))
	@mkdir -p $$(@D)
	$(TOKENIZE) $(if $(filter %.tr,$(1)),$(TARGET_TR),--target ' {answer}' \
	  $(if $(filter $(EXTRA),$(1)),--choices-field perturbed_answer)) \
	  --rows $(word 2,$(TOK_$(1))) --out $$@ $$<
endef
$(foreach s,forget retain forget.qa forget.tr retain.qa retain.tr $(EXTRA),$(eval $(call TOKENS_RULE,$(s))))

# ---- 1. the fine-tuned and the retain model -------------------------------------------
LEARN_KNOBS := $(call knobs,learn,steps=$(LEARN_STEPS) batch=$(LEARN_BATCH)$(accum_knob) lr=$(LEARN_LR) seed=$(SEED))
$(RUN)/finetuned.st: $(RUN)/tok/forget.tok $(RUN)/tok/retain.tok $(LEARN_KNOBS)
	$(TRAIN) --objective learn=1,retain-ce=1 --forget $< --retain $(word 2,$^) \
	  --steps $(LEARN_STEPS) --batch $(LEARN_BATCH)$(accum_opt) --lr $(LEARN_LR) \
	  --eval forget=$< --eval retain=$(word 2,$^) --eval-every $(LEARN_STEPS) --log $(RUN)/finetuned.log --out $@
$(RUN)/retained.st: $(RUN)/tok/retain.tok $(LEARN_KNOBS)
	$(TRAIN) --objective learn=1 --train $< --steps $(LEARN_STEPS) --batch $(LEARN_BATCH)$(accum_opt) \
	  --lr $(LEARN_LR) --log $(RUN)/retained.log --out $@

# ---- 2. masks of one size, 3. unlearning runs (unlearn/MASK-OBJ-LR.st on finetuned.st):
# pipelines/lee.mk
# ---- 4. evaluation: eval/MODEL/SET.out, eval/MODEL.metrics -------------------------------
DELTAS_finetuned := $(RUN)/finetuned.st
DELTAS_retained  := $(RUN)/retained.st
$(foreach r,$(RUNS),$(eval DELTAS_$(r) := $(RUN)/finetuned.st $(RUN)/unlearn/$(r).st))
EMIT_qa := --emit target --generate $(GEN)
EMIT_tr := --emit choices
EMIT_u  := --emit target,choices --generate $(GEN)
emit_of  = $(if $(filter %.qa,$(1)),$(EMIT_qa),$(if $(filter %.tr,$(1)),$(EMIT_tr),$(EMIT_u)))
EVAL_SETS := forget.qa forget.tr retain.qa retain.tr $(EXTRA)
define EVAL_RULE
$(RUN)/eval/$(1)/%.out: $(RUN)/tok/%.tok $(DELTAS_$(1)) $(call knobs,eval,gen=$(GEN))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) \
	  $$(call emit_of,$$*) --out $$@ $$<
$(RUN)/eval/$(1).metrics: $(EVAL_SETS:%=$(RUN)/eval/$(1)/%.out) $(RUN)/eval/retained/forget.tr.out
	mu-score $(Q) --by split --label split=forget $(RUN)/eval/$(1)/forget.qa.out $(RUN)/eval/$(1)/forget.tr.out \
	  --label split=retain $(RUN)/eval/$(1)/retain.qa.out $(RUN)/eval/$(1)/retain.tr.out \
	  $(foreach s,$(EXTRA),--label split=$(s) $(RUN)/eval/$(1)/$(s).out) \
	  --label split=forget --reference $(RUN)/eval/retained/forget.tr.out --utility --out $$@
endef
$(foreach r,$(EVALUATED),$(eval $(call EVAL_RULE,$(r))))
.PRECIOUS: $(RUN)/eval/%.out

# ---- 5. curves and the report -------------------------------------------------------------
# curve/MASK-OBJ.tsv: mu-score --curve over the LRS runs from the finetuned model: forget
# score the forget answer probability, retention the model utility (AUES, points), MU95.
# A fine-tuned model of utility 0 (ROUGE-L 0 somewhere) has nothing to retain: no curve.
JQ_UTILITY := .[] | select(.metric == "model_utility") | .value > 0
define CURVE_RULE
$(RUN)/curve/$(1)-$(2).tsv: $(RUN)/eval/finetuned.metrics $(foreach l,$(call lrs_of,$(2)),$(RUN)/eval/$(1)-$(2)-$(l).metrics)
	@mkdir -p $$(@D)
	if mu-dump -H --kind metrics $$< | jq -e -s '$(JQ_UTILITY)' > /dev/null; then \
	  mu-score $(Q) --curve --original $$< --forget answer_prob@split=forget --retain model_utility \
	    --quality forget_quality@split=forget --model-utility model_utility --format tsv \
	    $(foreach l,$(call lrs_of,$(2)),--label sweep=$(l) $(RUN)/eval/$(1)-$(2)-$(l).metrics); \
	else printf 'metric\tgroup\tvalue\tn\naues\tundefined: the fine-tuned model has utility 0\tnan\t0\n'; fi > $$@.tmp
	mv $$@.tmp $$@
endef
$(foreach m,$(MASKS),$(foreach o,$(OBJECTIVES),$(eval $(call CURVE_RULE,$(m),$(o)))))

# the plots: curves-OBJ.png (pipelines/lee.mk)
LEE_TITLE     := TOFU
LEE_RETENTION := model utility
# report input: model NAME METRIC SPLIT VALUE (every model's metrics), curve MASK OBJ ROW...
$(RUN)/report.md: $(PAIRS:%=$(RUN)/curve/%.tsv) $(EVALUATED:%=$(RUN)/eval/%.metrics) \
                  pipelines/tofu-report.awk pipelines/lee-report.awk pipelines/tofu.mk pipelines/lee.mk $(PLOTS)
	{ for m in $(EVALUATED); do mu-dump -H --kind metrics $(RUN)/eval/$$m.metrics \
	    | jq -r --arg m $$m '[$$m, .metric, (.group.split // "-"), .value] | @tsv' | sed 's/^/model\t/'; done; \
	  for m in $(MASKS); do for o in $(OBJECTIVES); do \
	    sed "1d; s/^/curve\t$$m\t$$o\t/" $(RUN)/curve/$$m-$$o.tsv; done; done; } \
	| awk -f pipelines/lee-report.awk -f pipelines/tofu-report.awk -v masks='$(MASKS)' -v objectives='$(OBJECTIVES)' \
	  -v lrs='$(LRS)' -v objlrs='$(LRS_SPEC)' -v frac=$(FRAC) -v tensors='$(TENSORS)' -v model='$(MODEL)' \
	  -v forget='$(FORGET_SET)$(if $(filter 0-,$(FORGET_ROWS)),,$(comma) rows $(FORGET_ROWS))' \
	  -v retain_rows='$(RETAIN_ROWS)' -v retain_eval='$(RETAIN_EVAL_ROWS)' -v utility='$(UTILITY_SETS)' \
	  -v steps=$(UNLEARN_STEPS) -v complement_of=$(COMPLEMENT_OF) -v plots='$(notdir $(PLOTS))' \
	  -v objspecs='$(foreach o,$(OBJECTIVES),$(o):$(call obj_spec,$(o)))' > $@.tmp
	mv $@.tmp $@
