# counterfact.mk — Mechanistic Unlearning (Guo et al. 2024): localized knowledge EDITING on
# CounterFact (Meng et al. 2022), end to end.
#
#   make -f pipelines/counterfact.mk [RUN=runs/counterfact] [MODEL=...] [N_EDITS=32] ...
#
#   1. known       N_POOL facts (rows POOL_FROM..POOL_FROM+N_POOL of CounterFact; another
#                  POOL_FROM: other facts, for a replication) scored with two candidates (target_true |
#                  target_false) on their prompt; a fact is known when the true answer wins
#                  (KNOWN_FILTER=0 takes every row: for tiny models that know none).
#                  The first N_EDITS known facts are edited, the next N_KEEP are kept.
#   2. tokens      edit prompts (answer: the new target), their paraphrase prompts (new
#                  target), neighbourhood prompts (other subjects, same relation: the true
#                  answer must survive; the first N_NEIGHBOR of each fact), the kept facts
#                  (true answer); the arrays of a CounterFact record are flattened with jq
#                  into one record per prompt, keeping case_id and both targets
#   3. localize    MLPs of early layers (fact lookup), late layers, all MLPs, and two found
#                  by the data (noise on the subject, the true answers of the edit facts):
#                  the LOOKUP_LAYERS MLPs with the largest direct effect by path patching
#                  from the subject's last token (mu-attrib --method path-patch: fact
#                  lookup) and the ATP_LAYERS MLP layers that attribution patching ranks
#                  highest (mu-attrib --method atp: output tracing)
#   4. edit        mu-train EDIT_OBJ (edit = cross-entropy to the new answer, retain-ce on
#                  the kept facts' true answers), masked to each localization, same steps/lr
#   5. relearn     the relearning attack: each edited model fine-tuned on the TRUE answers of
#                  the first half of the edit facts; the other half (heldout) is tested
#   6. report.md   localization x {efficacy, paraphrase, neighbourhood, retain, heldout}:
#                  2-way choice accuracy / probability (renormalized over the two targets);
#                  and where each edit moved the weights (changes.tsv, mu-dump --stats);
#                  SCALES='0.5 2': each edit at other strengths (mu-forward --scaled-delta);
#                  side effects on MMLU (pipelines/mmlu.mk: MMLU_SUBJECTS, MMLU_N, MMLU_SHOTS),
#                  each edited model paired with the base model question by question
# Make rebuilds only what is stale (change EDIT_STEPS and only the edits, the attacks,
# their evaluations and the report are redone: pipelines/knobs.mk). Every tool writes atomically, so an
# interrupted run resumes where it stopped. With the defaults (SmolLM2-135M-Instruct, fetched
# by pipelines/models.mk) `make counterfact` (make -j2, one OpenMP thread per step) took 5m02s
# on 2 idle cores (8.5 CPU-minutes); earlier runs, with two threads per step, took 23 to 48
# minutes on busy shared cores.
include pipelines/common.mk
RUN    ?= runs/counterfact
MODEL  ?= $(SMOLLM2)
CF     ?= $(DATA)/counterfact/counterfact.jsonl
Q      ?= -q
SEED   ?= 1
SHELL  := bash
.SHELLFLAGS := -eo pipefail -c
.DELETE_ON_ERROR:

# ---- knobs --------------------------------------------------------------------------
N_POOL       ?= 300
POOL_FROM    ?= 0
POOL_ROWS    := $(POOL_FROM)-$(shell echo $$(( $(POOL_FROM) + $(N_POOL) )))
KNOWN_FILTER ?= 1
N_EDITS      ?= 32
N_KEEP       ?= 32
# neighbourhood prompts per edit fact (CounterFact has 10; empty: all of them)
N_NEIGHBOR   ?= 2
HALF         := $(shell echo $$(( $(N_EDITS) / 2 )))
EDIT_OBJ     ?= edit=1,retain-ce=1
EDIT_STEPS   ?= 20
EDIT_LR      ?= 5e-4
BATCH        ?= 16
RELEARN_STEPS ?= 10
RELEARN_LR    ?= 1e-4
# the relearning attack's mask (empty: every parameter); RELEARN_LORA=R: rank-R LoRA adapters
# on the masked layer matrices train instead (18 bytes a parameter for full AdamW training do
# not fit one GPU at 7-9B)
RELEARN_MASK  ?=
RELEARN_LORA  ?=
# MMLU: MMLU_SUBJECTS, MMLU_N, MMLU_SHOTS (pipelines/mmlu.mk)
include pipelines/mmlu.mk

# localizations (LOCS, MASK_*, LOOKUP_LAYERS, ATP_LAYERS, ATP_SAMPLES: pipelines/localize.mk),
# found on the base model from the true answers of the edit facts, noise on the subject
LOC_FORGET  := $(RUN)/tok/true.tok
LOC_SUBJECT := subject
LOC_DELTAS  :=
LOC_DEPS    := $(MODEL_DEPS)
include pipelines/localize.mk

CHOICES := '{target_true}|{target_false}'
# the answer of each split: the new target where the edit should show, else the true one
TARGET_edit     := {target_false}
TARGET_para     := {target_false}
TARGET_heldout  := {target_false}
TARGET_neighbor := {target_true}
TARGET_keep     := {target_true}
TARGET_relearn  := {target_true}
TARGET_true     := {target_true}

SPLITS := edit para neighbor keep heldout
# edited models are judged on every split, relearned ones on the held-out half
MODELS_EVAL := base $(foreach l,$(LOCS),edited-$(l)) $(foreach l,$(LOCS),relearned-$(l))
SPLITS_base := $(SPLITS)
$(foreach l,$(LOCS),$(eval SPLITS_edited-$(l) := $(SPLITS)))
$(foreach l,$(LOCS),$(eval SPLITS_relearned-$(l) := heldout))
# the deltas that make each model (applied in order on top of MODEL)
DELTAS_base :=
$(foreach l,$(LOCS),$(eval DELTAS_edited-$(l) := $(RUN)/edit-$(l).st))
$(foreach l,$(LOCS),$(eval DELTAS_relearned-$(l) := $(RUN)/edit-$(l).st $(RUN)/relearn-$(l).st))

.PHONY: all report
all report: $(RUN)/report.md
	@cat $<

# ---- 1. the facts the model knows ------------------------------------------------------
$(RUN)/tok/pool.tok: $(CF) $(MODEL_DEPS) $(call knobs,pool,rows=$(POOL_ROWS))
	@mkdir -p $(@D)
	mu-tokenize $(Q) --model $(MODEL) --rows $(POOL_ROWS) --prompt '{prompt}' \
	  --target '{target_true}' --choices $(CHOICES) --out $@ $<
$(RUN)/out/base/pool.out: $(RUN)/tok/pool.tok
	@mkdir -p $(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) --emit choices --out $@ $<

# known.idx: CounterFact row indices (0-based) where the true answer beats the edit target
$(RUN)/known.idx: $(RUN)/out/base/pool.out $(call knobs,known,filter=$(KNOWN_FILTER) rows=$(POOL_ROWS))
ifeq ($(KNOWN_FILTER),1)
	mu-dump -H --full --kind outputs $< | \
	  jq -r 'select(.choice_logprobs.data[0] > .choice_logprobs.data[1]) | .id' > $@.tmp
else
	seq $(POOL_FROM) $$(( $(POOL_FROM) + $(N_POOL) - 1 )) > $@.tmp
endif
	n=$$(wc -l < $@.tmp); if [ $$n -lt $$(( $(N_EDITS) + $(N_KEEP) )) ]; then \
	  echo "$@: only $$n known facts in rows $(POOL_ROWS), need N_EDITS + N_KEEP = $$(( $(N_EDITS) + $(N_KEEP) ))" >&2; \
	  rm -f $@.tmp; exit 1; fi
	mv $@.tmp $@

# the rows of each set: edit = the first N_EDITS known facts, keep = the next N_KEEP;
# relearn = the first half of edit (the attack trains on it), heldout = the second half
SETS_KNOBS := $(call knobs,sets,edits=$(N_EDITS) keep=$(N_KEEP))
$(RUN)/idx/edit.idx: $(RUN)/known.idx $(SETS_KNOBS)
	@mkdir -p $(@D)
	head -n $(N_EDITS) $< > $@.tmp && mv $@.tmp $@
$(RUN)/idx/keep.idx: $(RUN)/known.idx $(SETS_KNOBS)
	@mkdir -p $(@D)
	tail -n +$$(( $(N_EDITS) + 1 )) $< | head -n $(N_KEEP) > $@.tmp && mv $@.tmp $@
$(RUN)/idx/relearn.idx: $(RUN)/idx/edit.idx
	head -n $(HALF) $< > $@.tmp && mv $@.tmp $@
$(RUN)/idx/heldout.idx: $(RUN)/idx/edit.idx
	tail -n +$$(( $(HALF) + 1 )) $< > $@.tmp && mv $@.tmp $@
$(RUN)/idx/true.idx: $(RUN)/idx/edit.idx
	cp $< $@

# ---- 2. tokens ------------------------------------------------------------------------------
# SET from CounterFact's own prompts (subject span recorded): edit, heldout, keep, relearn,
# and true (the edit facts with their true answer: what attribution patching localizes)
define TOKENS_RULE
$(RUN)/tok/$(1).tok: $(RUN)/idx/$(1).idx $(CF) $(MODEL_DEPS)
	mu-tokenize $(Q) --model $(MODEL) --select $$< --span subject --prompt '{prompt}' \
	  --target '$(TARGET_$(1))' --choices $(CHOICES) --out $$@ $(CF)
endef
$(foreach s,edit heldout keep relearn true,$(eval $(call TOKENS_RULE,$(s))))

# the edit facts' paraphrase and neighbourhood prompts, one JSONL record per prompt
# {id, case_id, subject, prompt, target_true, target_false}; id = 100 case_id + the prompt's
# index, the record id of its tokens (unique across runs on other facts: pipelines/pool.mk)
flatten = jq -c -s --slurpfile sel $(RUN)/idx/edit.idx \
  '. as $$all | $$sel[] | $$all[.] as $$r | $$r.$(1)[:$(or $(2),null)] | to_entries[] \
   | {id: (100 * $$r.case_id + .key), case_id: $$r.case_id, subject: $$r.subject, prompt: .value, \
      target_true: $$r.target_true, target_false: $$r.target_false}'
# (their knobs name the record ids too, so that runs made before the ids are redone: a
# new knob would be taken as met, pipelines/knobs.mk)
FLATTEN_KNOBS := $(call knobs,neighbor,n=$(N_NEIGHBOR) ids=100case+index)
$(RUN)/data/para.jsonl: $(RUN)/idx/edit.idx $(CF) $(FLATTEN_KNOBS)
	@mkdir -p $(@D)
	$(call flatten,paraphrase_prompts,) $(CF) > $@.tmp && mv $@.tmp $@
$(RUN)/data/neighbor.jsonl: $(RUN)/idx/edit.idx $(CF) $(FLATTEN_KNOBS)
	@mkdir -p $(@D)
	$(call flatten,neighborhood_prompts,$(N_NEIGHBOR)) $(CF) > $@.tmp && mv $@.tmp $@
# kept after the run (made by a pattern rule, they would be deleted as intermediates)
.SECONDARY: $(RUN)/tok/para.tok $(RUN)/tok/neighbor.tok
$(RUN)/tok/%.tok: $(RUN)/data/%.jsonl $(MODEL_DEPS)
	mu-tokenize $(Q) --model $(MODEL) --id-field id --prompt '{prompt}' --target '$(TARGET_$*)' \
	  --choices $(CHOICES) --out $@ $<

# ---- 3. localization: the rules of pipelines/localize.mk (included above) -------------------

# ---- 4, 5. edits and relearning attacks ----------------------------------------------------
define EDIT_RULE
$(RUN)/edit-$(1).st: $(RUN)/tok/edit.tok $(RUN)/tok/keep.tok $(MODEL_DEPS) $(filter $(RUN)/%,$(MASK_$(1))) \
                     $(call knobs,edit-$(1),mask=$(MASK_$(1)) obj=$(EDIT_OBJ) steps=$(EDIT_STEPS) lr=$(EDIT_LR) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --mask $(MASK_$(1)) --objective $(EDIT_OBJ) \
	  --forget $(RUN)/tok/edit.tok --retain $(RUN)/tok/keep.tok --steps $(EDIT_STEPS) \
	  --batch $(BATCH)$(accum_opt) --lr $(EDIT_LR) --seed $(SEED) --log $(RUN)/edit-$(1).log --out $$@
$(RUN)/relearn-$(1).st: $(RUN)/edit-$(1).st $(RUN)/tok/relearn.tok \
                        $(call knobs,relearn,mask=$(RELEARN_MASK) $(if $(RELEARN_LORA),lora=$(RELEARN_LORA) )steps=$(RELEARN_STEPS) lr=$(RELEARN_LR) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --delta $(RUN)/edit-$(1).st $(if $(RELEARN_MASK),--mask $(RELEARN_MASK)) $(if $(RELEARN_LORA),--lora $(RELEARN_LORA)) \
	  --objective learn --train $(RUN)/tok/relearn.tok --steps $(RELEARN_STEPS) \
	  --batch $(BATCH)$(accum_opt) --lr $(RELEARN_LR) --seed $(SEED) --log $(RUN)/relearn-$(1).log --out $$@
endef
$(foreach l,$(LOCS),$(eval $(call EDIT_RULE,$(l))))
# the attacks' dense deltas are kept only with KEEP_RELEARN=1 (pipelines/common.mk)
$(call relearn_deltas,$(foreach l,$(LOCS),$(RUN)/relearn-$(l).st))

# ---- evaluation -----------------------------------------------------------------------------
# $(RUN)/out/MODEL/SPLIT.out: both targets' log-probs of each record (pipelines/common.mk)
$(foreach m,$(MODELS_EVAL),$(eval $(call CHOICES_RULE,$(m))))

OUTS := $(foreach m,$(MODELS_EVAL),$(foreach s,$(SPLITS_$(m)),$(RUN)/out/$(m)/$(s).out))
# side effects on MMLU (pipelines/mmlu.mk): each edited model against the base model, question
# by question (mmlu-paired.tsv), every model's accuracy by subject (mmlu.tsv)
MMLU_BEFORE := base
MMLU_KIND   := edited
MMLU_JOB    := edit
$(eval $(MMLU_RULES))
$(RUN)/scores.tsv: $(OUTS)
	mu-score $(Q) --by model,split --metrics choice_acc,choice_prob --format tsv \
	  $(foreach m,$(MODELS_EVAL),--label model=$(m) \
	    $(foreach s,$(SPLITS_$(m)),--label split=$(s) $(RUN)/out/$(m)/$(s).out)) > $@.tmp
	mv $@.tmp $@

# each localization against each of PAIRED_WITH (default late and random, those of LOCS)
# prompt by prompt (pipelines/common.mk paired_list: mu-score --paired, Newcombe's
# interval, McNemar's exact p): rows baseline, kind, localization, split, accuracy
# difference, prompts, interval low, high, p, Holm's p over the file (pipelines/holm.awk)
PAIRED_WITH ?= $(or $(filter late random,$(LOCS)),$(lastword $(LOCS)))
PAIRED_LIST = $(call paired_list,$(PAIRED_WITH),$(foreach s,$(filter-out heldout,$(SPLITS)),edited:$(s)) relearned:heldout)
$(RUN)/paired.tsv: $(OUTS) $(HOLM) $(call paired_knob,paired,$(PAIRED_LIST))
	$(call paired_list_recipe,$(PAIRED_LIST))

# each edit at strength S (SCALES='0.5 2'; pipelines/common.mk): efficacy, paraphrase and
# neighbourhood accuracy as the edit grows from the base model (S = 0) past itself (S = 1),
# and each localization against PAIRED_WITH's at each strength (strength-paired.tsv)
strength_delta = $(RUN)/edit-$(1).st
STRENGTH_BEFORE :=
STRENGTH_STEMS := edit para neighbor
$(strength_rules)

# where editing moved the weights (pipelines/common.mk changes_recipe)
$(RUN)/changes.tsv: $(MODEL_DEPS) $(foreach l,$(LOCS),$(RUN)/edit-$(l).st)
	$(call changes_recipe,,$(RUN)/edit-%.st)

$(RUN)/report.md: $(RUN)/scores.tsv $(RUN)/changes.tsv $(RUN)/paired.tsv $(RUN)/known.idx pipelines/counterfact-report.awk \
                  pipelines/changes.awk pipelines/paired-lib.awk $(STRENGTH_REPORT_DEPS) $(MMLU_REPORT_DEPS) $(filter $(RUN)/%,$(foreach l,$(LOCS),$(MASK_$(l))))
	awk -f pipelines/changes.awk -f pipelines/paired-lib.awk -f pipelines/counterfact-report.awk -v models='$(MODELS_EVAL)' -v n_edits=$(N_EDITS) \
	  -v n_keep=$(N_KEEP) -v pool_rows=$(POOL_ROWS) -v known=$$(wc -l < $(RUN)/known.idx) \
	  -v filter=$(KNOWN_FILTER) -v n_neighbor=$(N_NEIGHBOR) \
	  -v train='$(EDIT_OBJ), $(EDIT_STEPS) steps, lr $(EDIT_LR); attack: $(RELEARN_STEPS) steps, lr $(RELEARN_LR)' \
	  -v masks="$(foreach l,$(LOCS),$(l)=$(call mask_desc,$(MASK_$(l))))" \
	  $< $(RUN)/changes.tsv $(RUN)/paired.tsv > $@.tmp
	$(MMLU_REPORT) $(call strength_report,base,edited-,counterfact)mv $@.tmp $@
