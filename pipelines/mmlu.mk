# mmlu.mk — side effects measured on MMLU (Hendrycks et al.), shared by sports.mk and
# counterfact.mk. Include it after pipelines/common.mk and before any stage: a subject MMLU
# lacks stops make here, before anything is written. Knobs:
#   MMLU_SUBJECTS  names of DATA/mmlu/test/NAME_test.csv, or all (the 57); MMLU_SUBJECT is
#                  the older name of one
#   MMLU_N         the questions of each subject: its first MMLU_N test rows
#   MMLU_SHOTS     worked examples before each question (0-5: the subject's first dev rows)
# Each question is MMLU's header ("The following are multiple choice questions (with answers)
# about SUBJECT.\n\n"), the worked examples, the question and its options, as mu-tokenize --mc
# writes them ("\nA. ..\nD. ..\nAnswer:"); pipelines/mmlu-pick.py picks the records.
# The pipeline sets, before $(eval $(MMLU_RULES)) (after its MODELS_EVAL and CHOICES_RULEs):
#   MMLU_BEFORE    the model the changed ones are paired with (sports: learned; counterfact: base)
#   MMLU_KIND      the changed models' kind: the models MMLU_KIND-LOC for LOC of LOCS
#   MMLU_JOB       the change in words (unlearning, edit)
# and MMLU_MODELS is every model of MODELS_EVAL but those after the relearning attack (a side
# effect is the change's, and the attack's deltas are intermediates that a new MMLU knob would
# otherwise train again). Made:
#   $(RUN)/mmlu.jsonl, tok/mmlu.tok    the questions, their tokens
#   $(RUN)/out/MODEL/mmlu.out          each model's choices (the pipeline's CHOICES_RULE)
#   $(RUN)/mmlu.tsv                    mu-score's rows grouped by model, then by model, subject
#   $(RUN)/mmlu-paired.tsv             each MMLU_KIND-LOC against MMLU_BEFORE question by
#                                      question (common.mk paired_rows; Holm over the file)
#   $(RUN)/mmlu-prob-paired.tsv        the same for the probability of the right answer
#                                      (renormalized over A-D; the paired t-test), which
#                                      moves where the accuracy cannot (a model near chance)
# $(MMLU_REPORT) (a recipe's prefix) appends the report's section to $@.tmp
# (pipelines/mmlu-report.awk); the report lists $(MMLU_REPORT_DEPS).
MMLU_SUBJECT  ?= high_school_geography
MMLU_SUBJECTS ?= $(MMLU_SUBJECT)
MMLU_N        ?= 40
MMLU_SHOTS    ?= 0
MMLU_LIST := $(if $(filter all,$(MMLU_SUBJECTS)),$(sort $(patsubst %_test.csv,%,$(notdir \
               $(wildcard $(DATA)/mmlu/test/*_test.csv)))),$(MMLU_SUBJECTS))
MMLU_FILES := $(MMLU_LIST:%=$(DATA)/mmlu/test/%_test.csv)
# a whole number: one word of digits only
mmlu_whole = $(if $(filter 1,$(words $(1))),$(if $(subst 0,,$(subst 1,,$(subst 2,,$(subst 3,,$(subst 4,,$(subst 5,,$(subst \
               6,,$(subst 7,,$(subst 8,,$(subst 9,,$(1))))))))))),,ok))
ifneq ($(call mmlu_whole,$(MMLU_N))$(call mmlu_whole,$(MMLU_SHOTS))$(if $(subst 0,,$(MMLU_N)),,zero),okok)
$(error MMLU_N=$(MMLU_N) MMLU_SHOTS=$(MMLU_SHOTS): MMLU_N wants a whole number of questions >= 1, MMLU_SHOTS one >= 0)
endif
ifeq ($(strip $(MMLU_LIST)),)
$(error $(DATA)/mmlu/test: no MMLU subject (MMLU_SUBJECTS=$(MMLU_SUBJECTS)))
endif
ifneq ($(filter-out $(wildcard $(MMLU_FILES)),$(MMLU_FILES)),)
$(error $(firstword $(filter-out $(wildcard $(MMLU_FILES)),$(MMLU_FILES))): no such file \
  (MMLU_SUBJECTS=$(MMLU_SUBJECTS): names of $(DATA)/mmlu/test/NAME_test.csv, or all))
endif
# the questions in words (the report's)
MMLU_DESC = $(if $(filter 1,$(words $(MMLU_LIST))),MMLU $(MMLU_LIST)$(comma) its first $(MMLU_N) test questions,MMLU's \
              $(words $(MMLU_LIST)) subjects$(comma) the first $(MMLU_N) test questions of each)$(if \
              $(filter-out 0,$(MMLU_SHOTS)),$(comma) each after $(MMLU_SHOTS) worked examples from the subject's dev set)
MMLU_MODELS = $(filter-out relearned-%,$(MODELS_EVAL))
MMLU_PAIRS = $(foreach l,$(LOCS),=$(MMLU_BEFORE):$(MMLU_KIND):$(l):mmlu)
MMLU_OUTS = $(foreach m,$(MMLU_MODELS),$(RUN)/out/$(m)/mmlu.out)
# mu-score's inputs: each model's outputs, labeled with its name
MMLU_LABELED = $(foreach m,$(MMLU_MODELS),--label model=$(m) $(RUN)/out/$(m)/mmlu.out)

define MMLU_RULES
$(RUN)/mmlu.jsonl: pipelines/mmlu-pick.py $(call knobs,mmlu-pick,$(MMLU_LIST) n=$(MMLU_N) shots=$(MMLU_SHOTS)) \
                   $(MMLU_FILES) $(if $(filter-out 0,$(MMLU_SHOTS)),$(wildcard $(MMLU_LIST:%=$(DATA)/mmlu/dev/%_dev.csv)))
	@mkdir -p $$(@D)
	$(PYTHON) pipelines/mmlu-pick.py --out $$@ --n $(MMLU_N) --shots $(MMLU_SHOTS) $(DATA)/mmlu $(MMLU_LIST)
$(RUN)/tok/mmlu.tok: $(RUN)/mmlu.jsonl $(MODEL)
	@mkdir -p $$(@D)
	mu-tokenize $(Q) --model $(MODEL) --mc --prompt '{context}{question}' --id-field id --out $$@ $$<
$(RUN)/mmlu.tsv: $(MMLU_OUTS)
	{ mu-score $(Q) --by model --metrics choice_acc,choice_prob --format tsv $(MMLU_LABELED) && \
	  mu-score $(Q) --by model,subject --metrics choice_acc --format tsv $(MMLU_LABELED) | tail -n +2; } > $$@.tmp
	mv $$@.tmp $$@
$(RUN)/mmlu-paired.tsv: $(MMLU_OUTS) $(HOLM) $(call paired_knob,mmlu-paired,$(MMLU_PAIRS))
	$$(call paired_list_recipe,$(MMLU_PAIRS))
$(RUN)/mmlu-prob-paired.tsv: $(MMLU_OUTS) $(HOLM) $(call paired_knob,mmlu-prob-paired,$(MMLU_PAIRS))
	$$(call paired_list_recipe,$(MMLU_PAIRS),choice_prob)
endef
MMLU_REPORT_DEPS = $(RUN)/mmlu.tsv $(RUN)/mmlu-paired.tsv $(RUN)/mmlu-prob-paired.tsv pipelines/mmlu-report.awk pipelines/paired-lib.awk \
                   $(call knobs,report-mmlu,$(MMLU_DESC))
MMLU_REPORT = awk -f pipelines/paired-lib.awk -f pipelines/mmlu-report.awk \
  -v models='$(MMLU_MODELS)' -v before=$(MMLU_BEFORE) \
  -v kind=$(MMLU_KIND) -v desc="$(MMLU_DESC)" -v job=$(MMLU_JOB) $(RUN)/mmlu.tsv $(RUN)/mmlu-paired.tsv $(RUN)/mmlu-prob-paired.tsv >> $@.tmp &&
