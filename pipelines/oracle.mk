# oracle.mk — Lee et al. 2025 ("Does Localization Inform Unlearning?"), the controlled
# "oracle region" experiment: knowledge is put into a KNOWN region of the model by
# construction, then unlearned with masks of the same size, and the masks are compared.
#
#   make -f pipelines/oracle.mk [RUN=runs/oracle] [MODEL=...] [FRAC=0.01] [LRS='...'] ...
#
#   1. region      mu-maskgen --random: FRAC of the model's parameters in MLP value vectors
#                  (down_proj columns) of every layer, seed SEED
#   2. injected    mu-train learn + retain-kl masked to the region: the TOFU forget set is
#                  learned there, while the model's outputs on a retain subset are held to
#                  the base model's (KL), so the region holds the forget facts
#   3. masks       all of the region's size: oracle (the region itself), random (another
#                  seed), complement (random units outside the region), and the top units
#                  of mu-attrib METHOD scores on the injected model (act, wagle, memflex,
#                  grad); overlap/MASK.tsv: the fraction of the mask's parameters inside
#                  the region (localization precision)
#   4. unlearned   for each mask, objective (OBJECTIVES) and learning rate (LRS, or LRS_name for
#                  objective name): mu-train on top of the injected model, masked;
#                  evaluated with mu-forward + mu-score
#                  (forget set: answer probability, ROUGE-L of a greedy generation, and
#                  TOFU's forget quality: the KS test of the truth ratios against the base
#                  model's, the model that never saw the forget set; held-out retain rows:
#                  answer probability)
#   5. report.md   mu-score --curve per (mask, objective) against the injected model: AUES,
#                  the best forget drop at >= 95% retention and MU95 (the best forget
#                  quality at >= 95% of the retain answer probability), next to the overlap
# Make rebuilds only what is stale: touching one scores file redoes its mask, overlap, the
# runs with that mask, their curves and the report. Every tool writes its output
# atomically, so an interrupted run resumes where it stopped.
#
# Time: the defaults (stories260K, 40 forget questions, 9 masks x 2 objectives x 3 learning
# rates = 54 unlearning runs) took 2m16s with make -j2 on 2 CPU cores (one OpenMP thread
# per step, pipelines/jobs.mk; 15m36s with THREADS=2, four threads on two cores). Before
# the null masks and jobs.mk, 7 masks took 7 to 9 minutes with make -j2 on 2 CPU cores shared with
# another job. MODEL=$(SMOLLM2) (SmolLM2-135M, fetched by pipelines/models.mk; MODELS=DIR reuses a
# fetched copy) works, but unlearning ran at 18 tokens/s there against stories260K's 2,700:
# a smoke sweep (FORGET_ROWS=0-8 RETAIN_ROWS=0-8 RETAIN_EVAL_ROWS=8-16 INJECT_STEPS=5
# INJECT_BATCH=4 INJECT_LR=1e-3 UNLEARN_STEPS=2 UNLEARN_BATCH=4 ATTRIB='act grad'
# OBJECTIVES=npo LRS='1e-4 1e-3' GEN=32) took 13 minutes, and the full defaults would take
# many hours on these CPUs (use a GPU, or a sweep that small).
# A changed knob (INJECT_STEPS, ...) redoes the stages that use it and what depends on them
# (pipelines/knobs.mk).
include pipelines/common.mk
MODEL  ?= $(DATA)/models/stories260K
RUN    ?= runs/oracle
Q      ?= -q
SEED   ?= 1
PYTHON ?= python3
SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

# ---- knobs --------------------------------------------------------------------------
TOFU         ?= $(DATA)/tofu
FORGET_SET   ?= forget01
FORGET_ROWS  ?= 0-
RETAIN_ROWS  ?= 0-40
# held-out retain rows for evaluation (no run trains on them)
RETAIN_EVAL_ROWS ?= 40-80
PROMPT       ?= Question: {question}\nAnswer:
TARGET       ?= {answer}
MAX_LEN      ?= 512

FRAC        ?= 0.01
TENSORS     ?= mlp.down:all
GRANULARITY ?= neuron
RANDOM_SEED ?= $(shell echo $$(( $(SEED) + 1 )))

INJECT_OBJ   ?= learn=1,retain-kl=1
INJECT_STEPS ?= 100
INJECT_LR    ?= 3e-2
INJECT_BATCH ?= 8

ATTRIB      ?= act wagle memflex grad
# more random masks (random-S, seed S each): the spread of a random mask's AUES, against
# which the oracle's and the attributions' are read (lee.mk); empty: one random mask
NULL_SEEDS  ?= 11 12
MASKS       := oracle random $(NULL_SEEDS:%=random-%) complement $(ATTRIB)
OBJECTIVES  ?= graddiff npo
comma       := ,
LRS           ?= 3e-3 1e-2 3e-2
UNLEARN_STEPS ?= 10
UNLEARN_BATCH ?= 8
GEN           ?= 96

TRAIN := $(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --max-len $(MAX_LEN) --seed $(SEED)
# masks, attributions and unlearning runs (pipelines/lee.mk): from the injected model, the
# complement outside the region
LEE_BASE       := $(RUN)/injected.st
LEE_COMPLEMENT := $(RUN)/mask/region.mask
include pipelines/lee.mk

# all (the default) builds the report; report also prints it. `make -q` answers whether
# anything is stale.
.PHONY: all report
all: $(RUN)/report.md
report: $(RUN)/report.md
	@cat $<

# ---- tokens -------------------------------------------------------------------------
# tok/forget: the forget set; tok/retain: retain rows the runs keep; tok/retain-eval:
# held-out retain rows, for evaluation only; tok/forget.tr: the forget questions with the
# paraphrased answer as candidate 0, then the perturbed ones (truth ratio)
TOK_forget      := $(TOFU)/$(FORGET_SET).jsonl $(FORGET_ROWS)
TOK_retain      := $(TOFU)/retain90.jsonl $(RETAIN_ROWS)
TOK_retain-eval := $(TOFU)/retain90.jsonl $(RETAIN_EVAL_ROWS)
TOK_forget.tr   := $(TOFU)/$(FORGET_SET)_perturbed.jsonl $(FORGET_ROWS)
TOKOPTS_forget.tr := --target ' {paraphrased_answer}' --choices-field perturbed_answer
define TOKENS_RULE
$(RUN)/tok/$(1).tok: $(word 1,$(TOK_$(1))) $(MODEL_DEPS) \
                     $(call knobs,tok-$(1),rows=$(word 2,$(TOK_$(1))) prompt=$(PROMPT) target=$(TARGET))
	@mkdir -p $$(@D)
	mu-tokenize $(Q) --model $(MODEL) --prompt '$(PROMPT)' $(or $(TOKOPTS_$(1)),--target ' $(TARGET)') \
	  --rows $(word 2,$(TOK_$(1))) --out $$@ $$<
endef
$(foreach s,forget retain retain-eval forget.tr,$(eval $(call TOKENS_RULE,$(s))))

# ---- 1. the region, 2. the injection -------------------------------------------------
$(RUN)/mask/region.mask: $(MODEL_DEPS) $(call knobs,region,frac=$(FRAC) tensors=$(TENSORS) granularity=$(GRANULARITY) seed=$(SEED))
	@mkdir -p $(@D)
	mu-maskgen $(Q) --random $(CANDIDATES) --fraction $(FRAC) --seed $(SEED) --out $@

$(RUN)/injected.st: $(RUN)/mask/region.mask $(RUN)/tok/forget.tok $(RUN)/tok/retain.tok $(RUN)/tok/retain-eval.tok \
                    $(call knobs,inject,$(INJECT_OBJ) steps=$(INJECT_STEPS) lr=$(INJECT_LR) batch=$(INJECT_BATCH)$(accum_knob))
	$(TRAIN) --mask $< --objective $(INJECT_OBJ) --forget $(RUN)/tok/forget.tok \
	  --retain $(RUN)/tok/retain.tok --steps $(INJECT_STEPS) --batch $(INJECT_BATCH)$(accum_opt) \
	  --lr $(INJECT_LR) --eval forget=$(RUN)/tok/forget.tok \
	  --eval retain=$(RUN)/tok/retain-eval.tok --log $(RUN)/injected.log --out $@

# ---- 3. masks of the region's size (random, complement, attributions: lee.mk) -----------
$(RUN)/mask/oracle.mask: $(RUN)/mask/region.mask
	cp $< $@.tmp && mv $@.tmp $@

# overlap/MASK.tsv: overlap with the region, parameters inside it, parameters of the mask
$(RUN)/overlap/%.tsv: $(RUN)/mask/%.mask $(RUN)/mask/region.mask pipelines/oracle-overlap.py
	@mkdir -p $(@D)
	$(PYTHON) pipelines/oracle-overlap.py $(RUN)/mask/region.mask $< > $@.tmp
	mv $@.tmp $@

# ---- 4. unlearning runs (unlearn/MASK-OBJ-LR.st on injected.st: lee.mk), evaluation ------
# eval/NAME.metrics: forget (answer prob, ROUGE-L of a greedy generation, truth ratio and
# forget quality against the base model) and held-out retain (answer prob) of the model
# NAME: base, injected or an unlearning run
DELTAS_base     :=
DELTAS_injected := $(RUN)/injected.st
$(foreach r,$(RUNS),$(eval DELTAS_$(r) := $(RUN)/injected.st $(RUN)/unlearn/$(r).st))
define EVAL_RULE
$(RUN)/eval/$(1).forget.out: $(RUN)/tok/forget.tok $(DELTAS_$(1)) $(call knobs,eval,gen=$(GEN))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) --emit target \
	  --generate $(GEN) --out $$@ $$<
$(RUN)/eval/$(1).retain.out: $(RUN)/tok/retain-eval.tok $(DELTAS_$(1))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) --emit target --out $$@ $$<
$(RUN)/eval/$(1).forget.tr.out: $(RUN)/tok/forget.tr.tok $(DELTAS_$(1))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) --emit choices --out $$@ $$<
endef
$(foreach r,base injected $(RUNS),$(eval $(call EVAL_RULE,$(r))))
$(RUN)/eval/%.metrics: $(RUN)/eval/%.forget.out $(RUN)/eval/%.retain.out $(RUN)/eval/%.forget.tr.out \
                      $(RUN)/eval/base.forget.tr.out
	mu-score $(Q) --by split --label split=forget $< $(word 3,$^) --label split=retain $(word 2,$^) \
	  --label split=forget --reference $(RUN)/eval/base.forget.tr.out --out $@

# ---- 5. curves and the report -----------------------------------------------------------
# curve/MASK-OBJ.tsv: mu-score --curve over the LRS runs, from the injected model, with the
# forget score the answer probability (aues, points; mu95: the best forget quality among
# the runs keeping >= 95% of the retain answer probability) and ROUGE-L (aues, as
# aues_rouge; nan when the injected model's ROUGE-L is 0, which leaves nothing to remove)
JQ_HAS_ROUGE := any(.[]; .metric == "rougeL_recall" and .group.split == "forget" and .value > 0)
define CURVE_RULE
$(RUN)/curve/$(1)-$(2).tsv: $(RUN)/eval/injected.metrics $(foreach l,$(call lrs_of,$(2)),$(RUN)/eval/$(1)-$(2)-$(l).metrics)
	@mkdir -p $$(@D)
	{ mu-score $(Q) --curve --original $$< --forget answer_prob@split=forget \
	    --retain answer_prob@split=retain --quality forget_quality@split=forget \
	    --model-utility answer_prob@split=retain --format tsv \
	    $(foreach l,$(call lrs_of,$(2)),--label sweep=$(l) $(RUN)/eval/$(1)-$(2)-$(l).metrics) && \
	  if mu-dump -H --kind metrics $$< | jq -e -s '$(JQ_HAS_ROUGE)' > /dev/null; then \
	    mu-score $(Q) --curve --original $$< --forget rougeL_recall@split=forget \
	      --retain answer_prob@split=retain --format tsv \
	      $(foreach l,$(call lrs_of,$(2)),--label sweep=$(l) $(RUN)/eval/$(1)-$(2)-$(l).metrics) \
	      | awk -F'\t' '$$$$1 == "aues" { OFS = FS; $$$$1 = "aues_rouge"; print }'; \
	  else printf 'aues_rouge\tundefined: the injected model has forget ROUGE-L 0\tnan\t0\n'; fi; } > $$@.tmp
	mv $$@.tmp $$@
endef
$(foreach m,$(MASKS),$(foreach o,$(OBJECTIVES),$(eval $(call CURVE_RULE,$(m),$(o)))))

# the plots: curves-OBJ.png (pipelines/lee.mk)
LEE_TITLE     := Oracle region
LEE_RETENTION := held-out retain answer probability
JQ_EVALS := select(.eval) | ["log", .step, .eval.forget.acc, .eval.forget.nll, .eval.retain.acc, .eval.retain.nll] | @tsv
$(RUN)/report.md: $(PAIRS:%=$(RUN)/curve/%.tsv) $(MASKS:%=$(RUN)/overlap/%.tsv) \
                  $(RUN)/eval/base.metrics $(RUN)/eval/injected.metrics pipelines/oracle-report.awk pipelines/lee-report.awk \
                  pipelines/oracle.mk pipelines/lee.mk $(PLOTS)
	{ for m in base injected; do mu-dump -H --kind metrics $(RUN)/eval/$$m.metrics \
	    | jq -r --arg m $$m '[$$m, .metric, .group.split, .value, .n] | @tsv'; done; \
	  for m in $(MASKS); do printf 'overlap\t%s\t' $$m; cat $(RUN)/overlap/$$m.tsv; done; \
	  mu-dump -H --kind log $(RUN)/injected.log | jq -r '$(JQ_EVALS)'; \
	  for m in $(MASKS); do for o in $(OBJECTIVES); do \
	    sed "1d; s/^/curve\t$$m\t$$o\t/" $(RUN)/curve/$$m-$$o.tsv; done; done; } \
	| awk -f pipelines/lee-report.awk -f pipelines/oracle-report.awk -v masks='$(MASKS)' -v objectives='$(OBJECTIVES)' \
	  -v lrs='$(LRS)' -v objlrs='$(LRS_SPEC)' -v frac=$(FRAC) -v plots='$(notdir $(PLOTS))' -v tensors='$(TENSORS)' -v model='$(MODEL)' \
	  -v forget='$(FORGET_SET)$(if $(filter 0-,$(FORGET_ROWS)),,$(comma) rows $(FORGET_ROWS))' -v steps=$(UNLEARN_STEPS) \
	  -v objspecs='$(foreach o,$(OBJECTIVES),$(o):$(call obj_spec,$(o)))' > $@.tmp
	mv $@.tmp $@
