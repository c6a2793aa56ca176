# sports.mk — Mechanistic Unlearning (Guo et al. 2024) on Sports Facts, end to end.
#
#   make -f pipelines/sports.mk [RUN=runs/sports] [MODEL=...] [N_FACTS=64] [N_FORGET=16]
#                               [FACTS_FROM=0] ...
#
# SmolLM2-135M-Instruct knows few of these athletes (3-way choice accuracy about 0.39 on the
# first 200 rows, near chance), so the job first *teaches* it N_FACTS facts (cloze and question
# formats), then unlearns the first N_FORGET of them with log1mp + retain-ce in one of several
# localizations (MLP layer ranges), and judges each result by
#   - forget / maintain choice accuracy and probability in three prompt formats: cloze and
#     question (trained formats) and multiple choice (a format never trained on);
#   - a relearning attack: fine-tune on half of the forget set, test on the other half;
#   - side effects: MMLU multiple choice on the first MMLU_N test questions of each subject of
#     MMLU_SUBJECTS (all: the 57), after MMLU's header and MMLU_SHOTS worked examples from
#     the subject's dev set; each unlearned model paired with the learned one question by
#     question (mmlu-paired.tsv), and with more than one subject the accuracy per subject;
#   - latent knowledge: linear probes (mu-probe) on the residual stream at the athlete's last
#     token, fitted per layer on the maintained facts of each model and tested on its forget
#     facts: is the sport still decodable after unlearning?
# Besides the hand-picked layer ranges, three localizations are found by the data on the
# learned model, of both kinds Guo et al. compare:
#   lookup  fact lookup: path patching (mu-attrib --method path-patch) from each MLP's output
#           at the athlete's last token to the answer through later positions' attention;
#           the LOOKUP_LAYERS MLPs with the largest direct effect;
#   probe   fact lookup: linear probes for the sport on the residual stream before and after
#           each MLP at the athlete's last token (fitted on the maintained facts, tested on
#           the forget facts: mu-probe fit, mu-probe localize); the PROBE_LAYERS MLPs that
#           most raise its decodability;
#   atp     output tracing: attribution patching (mu-attrib --method atp) over the prompt;
#           the ATP_LAYERS MLPs whose output matters most for the forget answers.
# WMASK='L ...' adds Guo et al.'s weight masking: in each localization a mask over its
# weights is trained instead of them (mu-train --weight-mask L, L the price of a weight), and
# the report counts the weight each mask cut (and the weights it zeroed) to unlearn the
# facts, next to what the masked models still know; several prices trace, per localization,
# forget accuracy against the cut. Each masked model also meets the relearning attack
# (relearned-wmasked-*) and the probes: is a fact the mask cut out gone, or only hidden? And
# is it more or less gone than after training the weights there (wmask-paired.tsv)?
# GENERAL=FILE adds Guo et al.'s general-text loss (next-token loss on a plain-text file,
# theirs the Pile) to the unlearning objective.
# EDIT_TO edits instead of unlearning (Guo et al.'s Sports Facts editing): EDIT_TO=golf
# teaches every forget fact a sport none of the athletes plays; EDIT_TO=@COLUMN each athlete
# the sport in that column of sports.csv (its pre-drawn targets: @inject_sport_without_golf
# another of the three sports, @inject_sport_with_golf another of the four, golf among
# them; pipelines/sports-edit.py). UNLEARN_OBJ's default becomes edit=1,retain-ce=1
# (cross-entropy to the new answer, on the cloze forget prompts); a new sport joins every
# format's choices (the mc prompt lists it as D), and every model is also scored on the
# edit: how often the forget facts choose their new sport (split forget-edit) and, after the
# relearning attack (the true sports of the relearn half), how often the held-out half still
# does (heldout-edit). The report adds a section on the edit and its paired comparisons,
# and with SCALES the edit's strength.
# SCALES='0.25 0.5 2' reads each unlearning at other strengths: its delta applied at S when
# loaded (mu-forward --scaled-delta), forget and maintained cloze accuracy at each S.
# Make rebuilds only what is stale: new attribution scores redo their mask, its unlearning,
# relearning, evaluations and probes, and the report; a changed knob (UNLEARN_STEPS, ...)
# redoes the stages that use it and what depends on them (pipelines/knobs.mk). Artifacts are
# under $(RUN); the report is $(RUN)/report.md.
include pipelines/common.mk
RUN    ?= runs/sports
MODEL  ?= $(SMOLLM2)
SPORTS := $(DATA)/sports/sports.csv
Q      ?= -q
SEED   ?= 1

N_FACTS  ?= 64
N_FORGET ?= 16
# the facts are rows FACTS_FROM .. FACTS_FROM+N_FACTS of sports.csv (another FACTS_FROM:
# other athletes, for a replication on facts the first run never saw)
FACTS_FROM ?= 0
HALF     := $(shell echo $$(( $(N_FORGET) / 2 )))
LEARN_STEPS   ?= 30
LEARN_LR      ?= 2e-4
UNLEARN_STEPS ?= 30
UNLEARN_LR    ?= 1e-4
# editing (EDIT_TO, above): a new sport (letters, digits, hyphens; not baseball, basketball
# or football), or @COLUMN of sports.csv; empty, the default: unlearning
EDIT_TO       ?=
UNLEARN_OBJ   ?= $(if $(EDIT_TO),edit=1$(comma)retain-ce=1,log1mp=1$(comma)retain-ce=1)
# editing: the sports the edit targets add to the three choices (sports-edit.py --extra,
# which says what is wrong with EDIT_TO or the data), and the facts with each one's new
# sport's index among the choices (edit_index)
EDIT_TO := $(strip $(EDIT_TO))
ifneq ($(EDIT_TO),)
EDIT_EXTRA := $(shell $(PYTHON) pipelines/sports-edit.py --extra '$(subst ','\'',$(EDIT_TO))' $(SPORTS) || echo '<failed>')
ifneq ($(filter <failed>,$(EDIT_EXTRA)),)
$(error EDIT_TO=$(EDIT_TO): no edit targets (above))
endif
endif
# general text, Guo et al.'s third loss (theirs: the Pile): a plain-text file whose
# next-token loss (general-lm=GENERAL_COEF) joins UNLEARN_OBJ; empty (default): none
GENERAL       ?=
GENERAL_COEF  ?= 1
# weight masking (empty WMASK, the default: none): the prices of a weight, one run each
# (mu-train --weight-mask; e.g. '1e-5 1e-4 1e-3' for SmolLM2), steps, optimizer and lr.
# Plain SGD: a mask then moves in proportion to its weight's saliency |w dL/dw| (AdamW
# moves every mask by about the step size, so the cut would follow the step size more
# than the need)
WMASK         ?=
WMASK_STEPS   ?= $(UNLEARN_STEPS)
WMASK_OPT     ?= sgd
WMASK_LR      ?= 3
RELEARN_STEPS ?= 10
RELEARN_LR    ?= 1e-4
# the relearning attack's mask (empty, the default: every parameter; a 7-9B model's full
# AdamW training needs 18 bytes a parameter, more than one GPU has: e.g. mlp:0-15), and
# RELEARN_LORA=R: the attack trains rank-R LoRA adapters on the masked layer matrices instead
RELEARN_MASK  ?=
RELEARN_LORA  ?=
# a soft prompt attack (SOFT=N; empty, the default: none): N vectors put before every
# prompt (mu-tokenize --soft-tokens N) and trained with every weight frozen (mu-train
# --soft-tokens N, learn, SOFT_STEPS at SOFT_LR) on the relearn half of the forget set, then
# tested on the held-out half: does some input bring back what the unlearning removed,
# without changing a weight? The base model meets the same attack: what a soft prompt
# gets from a model that was never taught the facts (man/mu-soft-prompt.5). The report
# also says where the trained vectors lie (their norms and nearest tokens, mu-dump) and
# what the attack does as a hard prompt (each vector replaced by its nearest token's row)
SOFT          ?=
SOFT_STEPS    ?= 50
SOFT_LR       ?= 1e-2
# a GCG attack (GCG=N; empty, the default: none): the soft prompt attack's question asked
# with N real tokens in the slots, searched by greedy coordinate gradient (mu-train
# --soft-tokens N --gcg: GCG_STEPS steps, each trying GCG_CANDIDATES single-token swaps
# drawn from the top GCG_TOPK tokens of each slot; printable-ASCII tokens only) on the
# relearn half, then tested on the held-out half: an input someone could type. GCG_MODELS:
# the models attacked (base and localizations; default all of them). A step costs
# GCG_CANDIDATES forward passes of the batch (about 18 s for SmolLM2 on 2 cores at 32).
GCG           ?=
GCG_STEPS     ?= 20
GCG_TOPK      ?= 256
GCG_CANDIDATES ?= 32
GCG_MODELS    ?= base $(LOCS)
BATCH         ?= 16
# MMLU: MMLU_SUBJECTS, MMLU_N, MMLU_SHOTS (pipelines/mmlu.mk)
include pipelines/mmlu.mk

# Localizations (LOCS, MASK_*, LOOKUP_LAYERS, PROBE_LAYERS, ATP_LAYERS, ...:
# pipelines/localize.mk): early and late MLP layers (hand-picked), every MLP, three
# found on the learned model's forget facts (path patching: lookup; probes: probe;
# attribution patching: atp), and random MLP matrices as many as lookup's
LOCS        ?= early lookup probe late all atp random
# the baselines of the paired comparisons (below): late and random, those of LOCS
PAIRED_WITH ?= $(or $(filter late random,$(LOCS)),$(lastword $(LOCS)))
LOC_FORGET  := $(RUN)/tok/cloze-forget.tok
LOC_SUBJECT := athlete
LOC_DELTAS  := $(RUN)/learned.st
LOC_LABEL   := sport
LOC_PROBE_TRAIN := $(RUN)/tok/cloze-maintain.tok
include pipelines/localize.mk
PROBE_SITE ?= resid_post:all:subject_last

EDIT_FACTS := $(RUN)/edit-facts.jsonl
# the letters of the added choices in the mc prompt (D, E, ...)
EDIT_LETTERS := $(wordlist 1,$(words $(EDIT_EXTRA)),D E F G H)
# $(call packed,WORDS): the words run together, each _ then a space ("|_golf |_tennis" ->
# "| golf| tennis"); the added choices and mc options (sport names have no _ or space)
space := $(subst ,, )
packed = $(subst _, ,$(subst $(space),,$(1)))
FORMATS := cloze question mc
# the evaluated splits; editing adds the forget facts' and the held-out facts' choice of EDIT_TO
SPLITS  := forget maintain heldout $(if $(EDIT_TO),forget-edit heldout-edit)
PROMPT_cloze    := Fact: {athlete} plays the sport of
PROMPT_question := Q: What sport does {athlete} play?\nA:
PROMPT_mc       := Which sport does {athlete} play?\nA. baseball\nB. basketball\nC. football$(call packed,$(join $(EDIT_LETTERS:%=\n%._),$(EDIT_EXTRA)))\nAnswer:
CHOICES_cloze    := ' baseball| basketball| football$(call packed,$(EDIT_EXTRA:%=|_%))'
CHOICES_question := $(CHOICES_cloze)
CHOICES_mc       := ' A| B| C$(call packed,$(EDIT_LETTERS:%=|_%))'
# a split's records and their answers: sports.csv and the athlete's sport, or for the edit
# splits the facts with their new sport (EDIT_FACTS, edit_index)
tok_data   = $(if $(filter %-edit,$(1)),$(EDIT_FACTS),$(SPORTS))
tok_answer = $(if $(filter %-edit,$(1)),edit_index,sport_index)
# what every token stream offers depends on EDIT_TO (a changed EDIT_TO remakes them all)
CHOICES_KNOB = $(call knobs,edit-to,$(EDIT_TO))
# the unlearning's (or the edit's) forget prompts
UNLEARN_FORGET := $(RUN)/tok/cloze-forget$(if $(EDIT_TO),-edit).tok
row            = $(shell echo $$(( $(FACTS_FROM) + $(1) )))
ROWS_all      := $(call row,0)-$(call row,$(N_FACTS))
ROWS_forget   := $(call row,0)-$(call row,$(N_FORGET))
ROWS_maintain := $(call row,$(N_FORGET))-$(call row,$(N_FACTS))
ROWS_relearn  := $(call row,0)-$(call row,$(HALF))
ROWS_heldout  := $(call row,$(HALF))-$(call row,$(N_FORGET))
ROWS_forget-edit  := $(ROWS_forget)
ROWS_heldout-edit := $(ROWS_heldout)

# weight-mask runs, LOC-PRICE
WMASK_RUNS  := $(foreach l,$(LOCS),$(foreach p,$(WMASK),$(l)-$(p)))
MODELS_EVAL := base learned $(foreach l,$(LOCS),unlearned-$(l) relearned-$(l)) \
               $(foreach r,$(WMASK_RUNS),wmasked-$(r) relearned-wmasked-$(r))
# the deltas that make each model (applied in order on top of MODEL)
DELTAS_base :=
DELTAS_learned := $(RUN)/learned.st
$(foreach l,$(LOCS),$(eval DELTAS_unlearned-$(l) := $(RUN)/learned.st $(RUN)/unlearn-$(l).st))
$(foreach l,$(LOCS),$(eval DELTAS_relearned-$(l) := $(RUN)/learned.st $(RUN)/unlearn-$(l).st $(RUN)/relearn-$(l).st))
$(foreach r,$(WMASK_RUNS),$(eval DELTAS_wmasked-$(r) := $(RUN)/learned.st $(RUN)/wmask-$(r).st))
$(foreach r,$(WMASK_RUNS),$(eval DELTAS_relearned-wmasked-$(r) := $(DELTAS_wmasked-$(r)) $(RUN)/relearn-wmask-$(r).st))

.PHONY: all report
all report: $(RUN)/report.md
	@cat $<

# ---- tokens -------------------------------------------------------------------------
define TOKENS_RULE
$(RUN)/tok/$(1)-$(2).tok: $(call tok_data,$(2)) $(MODEL) $(call knobs,rows-$(2),$(ROWS_$(2))) $(CHOICES_KNOB)
	@mkdir -p $$(@D)
	mu-tokenize $(Q) --model $(MODEL) --rows $(ROWS_$(2)) --prompt '$(PROMPT_$(1))' \
	  --choices $(CHOICES_$(1)) --answer-field $(call tok_answer,$(2)) --out $$@ $(call tok_data,$(2))
endef
$(EDIT_FACTS): $(SPORTS) pipelines/sports-edit.py $(CHOICES_KNOB)
	@mkdir -p $(@D)
	$(PYTHON) pipelines/sports-edit.py --out $@ '$(subst ','\'',$(EDIT_TO))' $(SPORTS)
$(foreach f,$(FORMATS),$(foreach s,all $(SPLITS) relearn,$(eval $(call TOKENS_RULE,$(f),$(s)))))

# training sets: concatenated streams of one kind read as one
$(RUN)/tok/learn.tok: $(RUN)/tok/cloze-all.tok $(RUN)/tok/question-all.tok
	cat $^ > $@.tmp && mv $@.tmp $@
$(RUN)/tok/relearn.tok: $(RUN)/tok/cloze-relearn.tok $(RUN)/tok/question-relearn.tok
	cat $^ > $@.tmp && mv $@.tmp $@

# ---- the soft prompt attack (SOFT) ----------------------------------------------------
# $(RUN)/soft-NAME.st: the vectors trained on the base model (NAME base) or on unlearned-LOC
# (NAME LOC); its held-out facts with them: $(RUN)/out/softattacked-NAME/FORMAT-heldout.out
SOFT_MODELS := $(if $(SOFT),base $(LOCS))
soft_deltas = $(if $(filter base,$(1)),$(DELTAS_base),$(DELTAS_unlearned-$(1)))
# FORMAT ($(1)) SPLIT ($(2)) prompts with $(4) slots, for the attack $(3) (soft or gcg)
define SOFT_TOKENS_RULE
$(RUN)/tok/$(1)-$(2)-$(3).tok: $(SPORTS) $(MODEL) $(call knobs,rows-$(2),$(ROWS_$(2))) $(call knobs,$(3)-tokens,$(4)) \
                                $(CHOICES_KNOB)
	@mkdir -p $$(@D)
	mu-tokenize $(Q) --model $(MODEL) --rows $(ROWS_$(2)) --prompt '$(PROMPT_$(1))' --soft-tokens $(4) \
	  --choices $(CHOICES_$(1)) --answer-field sport_index --out $$@ $(SPORTS)
endef
# the relearn half of both trained formats, for the attack $(1)
define SOFT_RELEARN_RULE
$(RUN)/tok/$(1)-relearn.tok: $(RUN)/tok/cloze-relearn-$(1).tok $(RUN)/tok/question-relearn-$(1).tok
	cat $$^ > $$@.tmp && mv $$@.tmp $$@
endef
define SOFT_RULE
$(RUN)/soft-$(1).st: $(call soft_deltas,$(1)) $(RUN)/tok/soft-relearn.tok \
                     $(call knobs,soft,n=$(SOFT) steps=$(SOFT_STEPS) lr=$(SOFT_LR) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(call soft_deltas,$(1))) \
	  --soft-tokens $(SOFT) --objective learn --train $(RUN)/tok/soft-relearn.tok --steps $(SOFT_STEPS) \
	  --batch $(BATCH)$(accum_opt) --lr $(SOFT_LR) --seed $(SEED) --log $(RUN)/soft-$(1).log --out $$@
endef
# the held-out facts with NAME's vectors ($(2) softattacked), or with each vector replaced by
# its nearest token's row ($(2) softprojected: the attack as a hard prompt, --soft-project)
define SOFT_FORWARD_RULE
$(RUN)/out/$(2)-$(1)/%-heldout.out: $(RUN)/tok/%-heldout-soft.tok $(call soft_deltas,$(1)) $(RUN)/soft-$(1).st
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(call soft_deltas,$(1))) \
	  --soft-prompt $(RUN)/soft-$(1).st$(if $(filter softprojected,$(2)), --soft-project) --emit choices --out $$@ $$<
endef
ifneq ($(SOFT),)
$(foreach f,$(FORMATS),$(foreach s,relearn heldout,$(eval $(call SOFT_TOKENS_RULE,$(f),$(s),soft,$(SOFT)))))
$(eval $(call SOFT_RELEARN_RULE,soft))
$(foreach m,$(SOFT_MODELS),$(eval $(call SOFT_RULE,$(m))))
$(foreach m,$(SOFT_MODELS),$(foreach k,softattacked softprojected,$(eval $(call SOFT_FORWARD_RULE,$(m),$(k)))))
endif
soft_outs = $(foreach m,$(SOFT_MODELS),$(foreach f,$(FORMATS),$(RUN)/out/$(1)-$(m)/$(f)-heldout.out))
SOFT_OUTS := $(call soft_outs,softattacked)
# model, format, held-out accuracy after the attack (mu-score: metric, group, value, n,
# interval): with the vectors (soft.tsv) and with their nearest tokens (soft-projected.tsv)
soft_score = mu-score $(Q) --by model,fmt --metrics choice_acc --format tsv \
  $(foreach m,$(or $(2),$(SOFT_MODELS)),--label model=$(m) $(foreach f,$(FORMATS),--label fmt=$(f) \
    $(RUN)/out/$(1)-$(m)/$(f)-heldout.out)) > $@.tmp && mv $@.tmp $@
$(RUN)/soft.tsv: $(SOFT_OUTS)
	$(call soft_score,softattacked)
$(RUN)/soft-projected.tsv: $(call soft_outs,softprojected)
	$(call soft_score,softprojected)
# each localization's attacked held-out facts against PAIRED_WITH's, fact by fact (paired_rows),
# with the vectors (kind softattacked) and as a hard prompt (softprojected)
SOFT_PAIRS = $(call paired_list,$(PAIRED_WITH),$(foreach k,softattacked softprojected,$(foreach f,$(FORMATS),$(k):$(f)-heldout)))
$(RUN)/soft-paired.tsv: $(SOFT_OUTS) $(call soft_outs,softprojected) $(HOLM) $(call paired_knob,soft-paired,$(SOFT_PAIRS))
	$(call paired_list_recipe,$(SOFT_PAIRS))
# where each attack's vectors lie (mu-dump --soft-prompt --model, the deltas it attacked):
# "M embedding MEAN MIN MAX" (the input embedding rows' L2 norms), then per vector
# "M vector SLOT NORM COS TOKEN" (its nearest token by cosine; jq @tsv escapes the token)
$(RUN)/soft-near.tsv: $(foreach m,$(SOFT_MODELS),$(RUN)/soft-$(m).st)
	($(foreach m,$(SOFT_MODELS),mu-dump $(Q) --soft-prompt $(RUN)/soft-$(m).st --model $(MODEL) \
	  $(addprefix --delta ,$(call soft_deltas,$(m))) --nearest 1 --out $@.json && jq -r --arg m $(m) \
	  'if .slot == null then [$$m, "embedding", .embedding_norm.mean, .embedding_norm.min, .embedding_norm.max] \
	   else [$$m, "vector", .slot, .norm, .nearest[0].cos, .nearest[0].token] end | @tsv' $@.json &&) true) > $@.tmp
	rm -f $@.json
	mv $@.tmp $@
SOFT_TSV := $(if $(SOFT),$(RUN)/soft.tsv $(RUN)/soft-paired.tsv $(RUN)/soft-near.tsv $(RUN)/soft-projected.tsv)

# ---- the GCG attack (GCG) -----------------------------------------------------------------
# $(RUN)/gcg-NAME.st: the tokens searched on the base model or on unlearned-LOC (their rows,
# token_ids, the run's record with gcg_text), those of the step whose tokens gave the relearn
# prompts the lowest loss (evaluated after every step: a GCG step keeps its best swap even
# when it is worse than the tokens it had); its held-out facts with them:
# $(RUN)/out/gcgattacked-NAME/FORMAT-heldout.out
GCG_ON := $(if $(GCG),$(filter base $(LOCS),$(GCG_MODELS)))
define GCG_RULE
$(RUN)/gcg-$(1).st: $(call soft_deltas,$(1)) $(RUN)/tok/gcg-relearn.tok \
                    $(call knobs,gcg,n=$(GCG) steps=$(GCG_STEPS) topk=$(GCG_TOPK) cand=$(GCG_CANDIDATES) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(call soft_deltas,$(1))) \
	  --soft-tokens $(GCG) --gcg --gcg-topk $(GCG_TOPK) --gcg-candidates $(GCG_CANDIDATES) --objective learn \
	  --train $(RUN)/tok/gcg-relearn.tok --steps $(GCG_STEPS) --batch $(BATCH)$(accum_opt) --seed $(SEED) \
	  --eval $(RUN)/tok/gcg-relearn.tok --eval-every 1 --keep-best gcg-relearn.nll:min \
	  --log $(RUN)/gcg-$(1).log --out $$@
$(RUN)/out/gcgattacked-$(1)/%-heldout.out: $(RUN)/tok/%-heldout-gcg.tok $(call soft_deltas,$(1)) $(RUN)/gcg-$(1).st
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(call soft_deltas,$(1))) \
	  --soft-prompt $(RUN)/gcg-$(1).st --emit choices --out $$@ $$<
endef
# the attack as typed text: NAME's ($(1)) held-out FORMAT ($(2)) prompts led by the kept
# tokens' text (gcg_text, with mu-tokenize's escapes for \ { }), tokenized as text with no
# slot: the ids may differ from those searched (the text tokenizes anew)
define GCG_TYPED_RULE
$(RUN)/tok/$(2)-heldout-typed-$(1).tok: $(SPORTS) $(MODEL) $(RUN)/gcg-$(1).st $(call knobs,rows-heldout,$(ROWS_heldout)) \
                                         $(CHOICES_KNOB)
	@mkdir -p $$(@D)
	mu-dump $(Q) --soft-prompt $(RUN)/gcg-$(1).st --out $$@.json
	p=$$$$(head -1 $$@.json | jq -r '.metadata.mu_train.gcg_text | gsub("\\\\"; "\\\\") | gsub("[{]"; "\\{") | \
	  gsub("[}]"; "\\}")') && rm -f $$@.json && \
	mu-tokenize $(Q) --model $(MODEL) --rows $(ROWS_heldout) --prompt "$$$$p"'$(PROMPT_$(2))' \
	  --choices $(CHOICES_$(2)) --answer-field sport_index --out $$@ $(SPORTS)
$(RUN)/out/gcgtyped-$(1)/$(2)-heldout.out: $(RUN)/tok/$(2)-heldout-typed-$(1).tok $(call soft_deltas,$(1))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(call soft_deltas,$(1))) \
	  --emit choices --out $$@ $$<
endef
ifneq ($(GCG),)
$(foreach f,$(FORMATS),$(foreach s,relearn heldout,$(eval $(call SOFT_TOKENS_RULE,$(f),$(s),gcg,$(GCG)))))
$(eval $(call SOFT_RELEARN_RULE,gcg))
$(foreach m,$(GCG_ON),$(eval $(call GCG_RULE,$(m))))
$(foreach m,$(GCG_ON),$(foreach f,$(FORMATS),$(eval $(call GCG_TYPED_RULE,$(m),$(f)))))
endif
gcg_outs = $(foreach m,$(GCG_ON),$(foreach f,$(FORMATS),$(RUN)/out/$(1)-$(m)/$(f)-heldout.out))
GCG_OUTS := $(call gcg_outs,gcgattacked)
# held-out accuracy with the tokens searched (gcg.tsv) and typed as text (gcg-typed.tsv)
$(RUN)/gcg.tsv: $(GCG_OUTS)
	$(call soft_score,gcgattacked,$(GCG_ON))
$(RUN)/gcg-typed.tsv: $(call gcg_outs,gcgtyped)
	$(call soft_score,gcgtyped,$(GCG_ON))
# each attacked localization against PAIRED_WITH's (when attacked too), fact by fact, with
# the tokens searched (kind gcgattacked) and typed as text (gcgtyped)
GCG_PAIRS = $(foreach w,$(filter $(PAIRED_WITH),$(GCG_ON)),$(foreach l,$(filter-out base $(w),$(GCG_ON)),\
  $(foreach k,gcgattacked gcgtyped,$(foreach f,$(FORMATS),$(w):$(k):$(l):$(f)-heldout))))
$(RUN)/gcg-paired.tsv: $(GCG_OUTS) $(call gcg_outs,gcgtyped) $(HOLM) $(call paired_knob,gcg-paired,$(GCG_PAIRS))
	$(if $(GCG_PAIRS),$(call paired_list_recipe,$(GCG_PAIRS)),: > $@)
# what each search found: "M LOSS_START LOSS_KEPT TEXT IDS SAME PROMPTS" (the mean answer
# NLL of the relearn prompts with the starting tokens and with those kept, from the log's
# evaluations; the tokens decoded together, as jq's @tsv writes them; how many of the
# held-out cloze prompts typed as text have exactly the searched ids, of how many)
$(RUN)/gcg-found.tsv: $(foreach m,$(GCG_ON),$(RUN)/gcg-$(m).st $(RUN)/tok/cloze-heldout-typed-$(m).tok) \
                      $(RUN)/tok/cloze-heldout-gcg.tok
	mu-dump $(Q) --full -H $(RUN)/tok/cloze-heldout-gcg.tok --out $@.slots.json
	($(foreach m,$(GCG_ON),mu-dump $(Q) $(RUN)/gcg-$(m).log --out $@.log.json && \
	  mu-dump $(Q) --soft-prompt $(RUN)/gcg-$(m).st --out $@.json && \
	  mu-dump $(Q) --full -H $(RUN)/tok/cloze-heldout-typed-$(m).tok --out $@.typed.json && \
	  jq -r -s --arg m $(m) --slurpfile h $@.json --slurpfile a $@.slots.json --slurpfile b $@.typed.json \
	    '[.[] | select(.eval) | .eval["gcg-relearn"].nll] as $$e | $$h[0].metadata.token_ids as $$i | \
	     [range($$a | length) | select(($$a[.].prompt.data | map(if . < 0 then $$i[-. - 1] else . end)) == \
	       $$b[.].prompt.data)] as $$same | \
	     [$$m, $$e[0], ($$e | min), $$h[0].metadata.mu_train.gcg_text, ($$i | tostring), ($$same | length), \
	      ($$a | length)] | @tsv' $@.log.json &&) true) > $@.tmp
	rm -f $@.json $@.log.json $@.slots.json $@.typed.json
	mv $@.tmp $@
GCG_TSV := $(if $(GCG_ON),$(RUN)/gcg.tsv $(RUN)/gcg-paired.tsv $(RUN)/gcg-found.tsv $(RUN)/gcg-typed.tsv)

# ---- training -----------------------------------------------------------------------
$(RUN)/learned.st: $(RUN)/tok/learn.tok $(MODEL) \
                   $(call knobs,learn,steps=$(LEARN_STEPS) lr=$(LEARN_LR) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --objective learn --train $< --steps $(LEARN_STEPS) \
	  --batch $(BATCH)$(accum_opt) --lr $(LEARN_LR) --seed $(SEED) --log $(RUN)/learned.log --out $@


$(RUN)/tok/general.tok: $(GENERAL) $(MODEL)
	@mkdir -p $(@D)
	mu-tokenize $(Q) --model $(MODEL) --raw --out $@ $<
GENERAL_TOK := $(if $(GENERAL),$(RUN)/tok/general.tok)
# UNLEARNING_RULE LOC,NAME,KNOBS,OPTIONS[,SUFFIX]: $(RUN)/NAME-LOCSUFFIX.st, mu-train on the
# learned model masked to LOC with the unlearning objective and data (forget, maintain,
# general text); KNOBS and OPTIONS: its own (steps, lr, ...)
define UNLEARNING_RULE
$(RUN)/$(2)-$(1)$(5).st: $(RUN)/learned.st $(UNLEARN_FORGET) $(RUN)/tok/cloze-maintain.tok \
                     $(filter $(RUN)/%,$(MASK_$(1))) $(GENERAL_TOK) \
                     $(call knobs,$(2)-$(1)$(5),mask=$(MASK_$(1)) obj=$(UNLEARN_OBJ) general=$(GENERAL):$(GENERAL_COEF) \
                       $(3) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --delta $(RUN)/learned.st --mask $(MASK_$(1)) \
	  --objective $(UNLEARN_OBJ)$(if $(GENERAL),$(comma)general-lm=$(GENERAL_COEF)) \
	  --forget $(UNLEARN_FORGET) $(addprefix --general ,$(GENERAL_TOK)) \
	  --retain $(RUN)/tok/cloze-maintain.tok $(4) --batch $(BATCH)$(accum_opt) \
	  --seed $(SEED) --log $(RUN)/$(2)-$(1)$(5).log --out $$@
endef
# RELEARN_RULE NAME,DELTA: $(RUN)/relearn-NAME.st, the relearning attack on the learned model
# changed by DELTA: every weight (or RELEARN_MASK's) fine-tuned on the relearn half of the forget set
define RELEARN_RULE
$(RUN)/relearn-$(1).st: $(2) $(RUN)/tok/relearn.tok \
                        $(call knobs,relearn,$(if $(RELEARN_MASK),mask=$(RELEARN_MASK) )$(if $(RELEARN_LORA),lora=$(RELEARN_LORA) )steps=$(RELEARN_STEPS) lr=$(RELEARN_LR) batch=$(BATCH)$(accum_knob) seed=$(SEED))
	$(JOB) mu-train $(Q) --model $(MODEL) --device $(MU_DEVICE) --delta $(RUN)/learned.st --delta $(2) \
	  $(if $(RELEARN_MASK),--mask $(RELEARN_MASK) )$(if $(RELEARN_LORA),--lora $(RELEARN_LORA) )--objective learn --train $(RUN)/tok/relearn.tok --steps $(RELEARN_STEPS) \
	  --batch $(BATCH)$(accum_opt) --lr $(RELEARN_LR) --seed $(SEED) --log $(RUN)/relearn-$(1).log --out $$@
endef
define UNLEARN_RULE
$(call UNLEARNING_RULE,$(1),unlearn,steps=$(UNLEARN_STEPS) lr=$(UNLEARN_LR),--steps $(UNLEARN_STEPS) --lr $(UNLEARN_LR))
$(call RELEARN_RULE,$(1),$(RUN)/unlearn-$(1).st)
endef
$(foreach l,$(LOCS),$(eval $(call UNLEARN_RULE,$(l))))

# weight masking at price P: the unlearning's objective and data, a mask trained over the
# localization's weights (w = w0 m, m in [0, 1]); the sparse delta holds the weights it
# changed: $(RUN)/wmask-LOC-P.st; and its relearning attack, $(RUN)/relearn-wmask-LOC-P.st
define WMASK_RULE
$(call UNLEARNING_RULE,$(1),wmask,penalty=$(2) steps=$(WMASK_STEPS) opt=$(WMASK_OPT) lr=$(WMASK_LR),\
  --weight-mask $(2) --steps $(WMASK_STEPS) --optimizer $(WMASK_OPT) --lr $(WMASK_LR) --sparse,-$(2))
$(call RELEARN_RULE,wmask-$(1)-$(2),$(RUN)/wmask-$(1)-$(2).st)
endef
$(foreach l,$(LOCS),$(foreach p,$(WMASK),$(eval $(call WMASK_RULE,$(l),$(p)))))
# the attacks' dense deltas are kept only with KEEP_RELEARN=1 (pipelines/common.mk)
$(call relearn_deltas,$(foreach l,$(LOCS),$(RUN)/relearn-$(l).st) $(foreach r,$(WMASK_RUNS),$(RUN)/relearn-wmask-$(r).st))

# localization, price, masked weights, weights the mask changed (m < 1), halved (m <= 1/2),
# ablated (m = 0), the cut sum(1 - m), the penalty
$(RUN)/wmask.tsv: $(MODEL) $(RUN)/learned.st $(foreach r,$(WMASK_RUNS),$(RUN)/wmask-$(r).st)
	for l in $(LOCS); do for p in $(WMASK); do \
	  mu-dump $(Q) --model $(MODEL) --delta $(RUN)/learned.st --delta $(RUN)/wmask-$$l-$$p.st | head -1 | \
	    jq -r --arg l $$l --arg p $$p '.delta_metadata[1].mu_train.weight_mask_result | [$$l, $$p, .elements, .masked, .halved, .ablated, .cut, .penalty] | @tsv' \
	    || exit 1; \
	done; done > $@.tmp
	mv $@.tmp $@
# the curve: localization, price, cut, cloze forget accuracy of the masked model
$(RUN)/wmask-curve.tsv: $(RUN)/wmask.tsv $(RUN)/scores.tsv
	awk -F'\t' 'NR == FNR { acc["model=wmasked-" $$1 "-" $$2 ",fmt=cloze,split=forget"] = NR; k[NR] = $$1 "\t" $$2 "\t" $$7; next } \
	  $$1 == "choice_acc" && ($$2 in acc) { print k[acc[$$2]] "\t" $$3 }' $< $(RUN)/scores.tsv | sort -k1,1 -k3,3g > $@.tmp
	mv $@.tmp $@
$(RUN)/wmask.png: $(RUN)/wmask-curve.tsv
	gnuplot -e "set terminal png size 800,480; set output '$@.tmp'; set datafile separator '\t'; \
	  set title 'Weight masking: forget accuracy against the weight cut' font ',11'; set logscale x; \
	  set xlabel 'cut sum(1 - m) (weight mass removed)'; set ylabel 'cloze forget accuracy'; \
	  set yrange [0:1.05]; set key outside right; \
	  plot for [l in '$(LOCS)'] '$<' using 3:(strcol(1) eq l ? \$$4 : NaN) with linespoints title l"
	mv $@.tmp $@

# ---- evaluation ---------------------------------------------------------------------
# $(RUN)/out/MODEL/FORMAT-SPLIT.out: choice log-probs of each record (pipelines/common.mk)
$(foreach m,$(MODELS_EVAL),$(eval $(call CHOICES_RULE,$(m))))

OUTS := $(foreach m,$(MODELS_EVAL),$(foreach f,$(FORMATS),$(foreach s,$(SPLITS),$(RUN)/out/$(m)/$(f)-$(s).out))) \
        $(MMLU_OUTS)

$(RUN)/scores.tsv: $(OUTS)
	mu-score $(Q) --by model,fmt,split --metrics choice_acc,choice_prob --format tsv \
	  $(foreach m,$(MODELS_EVAL),--label model=$(m) \
	    $(foreach f,$(FORMATS),--label fmt=$(f) $(foreach s,$(SPLITS),--label split=$(s) $(RUN)/out/$(m)/$(f)-$(s).out)) \
	    $(if $(filter $(m),$(MMLU_MODELS)),--label fmt=mmlu --label split=test $(RUN)/out/$(m)/mmlu.out)) > $@.tmp
	mv $@.tmp $@

# side effects on MMLU (pipelines/mmlu.mk): each unlearned (edited) model against the learned
# one, question by question (mmlu-paired.tsv), every model's accuracy by subject (mmlu.tsv)
MMLU_BEFORE := learned
MMLU_KIND   := unlearned
MMLU_JOB    := $(if $(EDIT_TO),edit,unlearning)
$(eval $(MMLU_RULES))

# ---- paired comparisons ------------------------------------------------------------------
# each localization against each of PAIRED_WITH (default late, the output side, and random,
# the size-matched baseline; those of LOCS), fact by fact on the same facts (mu-score
# --paired): the difference in choice accuracy on the forget facts after unlearning and on
# the held-out facts after the relearning attack (editing: also in choosing EDIT_TO, the
# forget-edit and heldout-edit splits), with its 95% interval (Newcombe's) and
# McNemar's exact p. Rows: baseline, model kind, localization, format-split, difference,
# facts, interval low, high, p, Holm's p over the file (pipelines/holm.awk)
PAIRED_LIST = $(call paired_list,$(PAIRED_WITH),$(foreach f,$(FORMATS),unlearned:$(f)-forget relearned:$(f)-heldout) \
                $(if $(EDIT_TO),$(foreach f,$(FORMATS),unlearned:$(f)-forget-edit relearned:$(f)-heldout-edit)))
$(RUN)/paired.tsv: $(OUTS) $(HOLM) $(call paired_knob,paired,$(PAIRED_LIST))
	$(call paired_list_recipe,$(PAIRED_LIST))

# ---- strength of the unlearning (SCALES; pipelines/common.mk) ------------------------------
# each localization's unlearning delta at strength S after the learned model's delta (S = 0
# the learned model, 1 unlearned-LOC), cloze accuracy on the forget and the maintained facts,
# and each localization against PAIRED_WITH's at each strength (strength-paired.tsv)
strength_delta = $(RUN)/unlearn-$(1).st
STRENGTH_BEFORE := $(RUN)/learned.st
STRENGTH_STEMS := cloze-forget cloze-maintain $(if $(EDIT_TO),cloze-forget-edit)
$(strength_rules)

# weight masking against training the weights, fact by fact: each masked model's held-out facts
# after the relearning attack against those of the weight-trained unlearning in its
# localization (paired_rows: LOC, relearned, wmasked-LOC-P, FORMAT-heldout, the difference,
# facts, its 95% interval, McNemar's exact p)
WMASK_PAIRS = $(foreach l,$(LOCS),$(foreach p,$(WMASK),$(foreach f,$(FORMATS),$(l):relearned:wmasked-$(l)-$(p):$(f)-heldout)))
$(RUN)/wmask-paired.tsv: $(OUTS) $(HOLM) $(call paired_knob,wmask-paired,$(WMASK_PAIRS))
	$(call paired_list_recipe,$(WMASK_PAIRS))

# ---- latent knowledge: linear probes -----------------------------------------------------
# $(RUN)/acts/MODEL/cloze-SPLIT.acts: the residual stream after every layer at the athlete's
# last token; probes fitted on the maintained facts, tested on the forget facts
PROBE_MODELS := base learned $(foreach l,$(LOCS),unlearned-$(l))
# and the weight-masked models (in probes.tsv and the weight-mask table, not the plot)
PROBE_MODELS_ALL := $(PROBE_MODELS) $(foreach r,$(WMASK_RUNS),wmasked-$(r))
define ACTS_RULE
$(RUN)/acts/$(1)/cloze-%.acts: $(RUN)/tok/cloze-%.tok $(DELTAS_$(1)) $(call knobs,probe-site,$(PROBE_SITE))
	@mkdir -p $$(@D)
	$(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(DELTAS_$(1))) --subject athlete \
	  --cache $(PROBE_SITE) --cache-out $$@ --out /dev/null $$<
$(RUN)/probes/$(1).probes: $(RUN)/acts/$(1)/cloze-maintain.acts $(RUN)/acts/$(1)/cloze-forget.acts \
                           $(call knobs,probe,seed=$(SEED))
	@mkdir -p $$(@D)
	$(JOB) mu-probe fit $(Q) --acts $$< --test $$(word 2,$$^) --label sport --seed $(SEED) --out $$@
endef
$(foreach m,$(PROBE_MODELS_ALL),$(eval $(call ACTS_RULE,$(m))))

# model, layer, train accuracy, test (forget-fact) accuracy, majority-class accuracy
$(RUN)/probes.tsv: $(foreach m,$(PROBE_MODELS_ALL),$(RUN)/probes/$(m).probes)
	for m in $(PROBE_MODELS_ALL); do \
	  mu-dump $(RUN)/probes/$$m.probes | jq -r --arg m $$m \
	    'select(.layer != null) | [$$m, .layer, .train_acc, .test_acc, .majority_acc] | @tsv' || exit 1; \
	done > $@.tmp
	mv $@.tmp $@

# editing each athlete to a sport among the probes' classes (EDIT_TO=@COLUMN adding no sport):
# how often each model's probes read the new sport, not the old, from its forget facts' latent
# states (mu-probe apply --label COLUMN): model, layer, accuracy against the new sport
PROBE_NEW := $(if $(EDIT_EXTRA),,$(patsubst @%,%,$(filter @%,$(EDIT_TO))))
$(RUN)/probes-new.tsv: $(foreach m,$(PROBE_MODELS_ALL),$(RUN)/probes/$(m).probes $(RUN)/acts/$(m)/cloze-forget.acts)
	for m in $(PROBE_MODELS_ALL); do \
	  mu-probe apply $(Q) --probes $(RUN)/probes/$$m.probes --acts $(RUN)/acts/$$m/cloze-forget.acts \
	    --label $(PROBE_NEW) --out $@.m && mu-dump $@.m > $@.json && \
	  jq -r --arg m $$m 'select(.metric == "probe_acc") | [$$m, .group.layer, .value] | @tsv' $@.json || exit 1; \
	done > $@.tmp
	rm -f $@.m $@.json
	mv $@.tmp $@

# ---- where unlearning moved the weights ---------------------------------------------------
# per localization, each tensor its unlearning delta changed: localization, name, layer, role,
# the L2 norm of the change, and that over the L2 norm of the learned model's values (mu-dump --stats)
$(RUN)/changes.tsv: $(MODEL) $(RUN)/learned.st $(foreach l,$(LOCS),$(RUN)/unlearn-$(l).st)
	$(call changes_recipe,$(RUN)/learned.st,$(RUN)/unlearn-%.st)

# ---- plots (gnuplot, when installed: `make demo` installs it) -------------------------------
# probe accuracy on the forget facts by layer, one line per model; attribution patching's
# and path patching's per-layer MLP effects on the learned model
PLOTS ?= $(if $(shell command -v gnuplot 2>/dev/null),$(RUN)/probes.png $(foreach l,$(filter atp lookup probe,$(LOCS)),$(RUN)/$(l).png))
$(RUN)/probes.png: $(RUN)/probes.tsv
	gnuplot -e "set terminal png size 800,480; set output '$@.tmp'; set datafile separator '\t'; \
	  set title 'Sports Facts: is the sport decodable from the forget facts'' latent states?'; \
	  set xlabel 'layer (residual stream after it, athlete''s last token)'; set ylabel 'probe accuracy'; \
	  stats '$<' using 2 nooutput; xt = STATS_max > 12 ? 5 : 1; set xtics xt; \
	  set yrange [0:1.05]; set key outside right; \
	  plot for [m in '$(PROBE_MODELS)'] '$<' using 2:(strcol(1) eq m ? \$$4 : NaN) with linespoints title m"
	mv $@.tmp $@
TITLE_atp    := Attribution patching
TITLE_lookup := Path patching from the subject''s last token
TITLE_probe  := Linear probes at the subject''s last token
YLABEL_atp    := drop of the answer log-prob
YLABEL_lookup := drop of the answer log-prob
YLABEL_probe  := $(if $(filter acc,$(PROBE_BY)),gain in probe accuracy,gain in probe log-likelihood)
$(RUN)/%.png: $(RUN)/attrib/%.scores
	mu-dump $< | head -1 | jq -r '.meta.mlp_effect | to_entries[] | "\(.key)\t\(.value)"' > $@.tsv
	gnuplot -e "set terminal png size 800,400; set output '$@.tmp'; set datafile separator '\t'; \
	  set title '$(TITLE_$*): MLP effects on the forget facts (learned model)' font ',11'; \
	  set xlabel 'layer'; set ylabel '$(YLABEL_$*)'; set style fill solid 0.6; \
	  set boxwidth 0.8; set xzeroaxis; stats '$@.tsv' using 1:2 nooutput; xt = STATS_max_x > 12 ? 5 : 1; set xtics xt; \
	  set xrange [-0.6:STATS_max_x + 0.6]; \
	  set yrange [(STATS_min_y < 0 ? 1.1 * STATS_min_y : 0):(STATS_max_y > 0 ? 1.1 * STATS_max_y : 0)]; \
	  plot '$@.tsv' using 1:2 with boxes notitle"
	rm -f $@.tsv
	mv $@.tmp $@

WMASK_TSV := $(if $(WMASK),$(RUN)/wmask.tsv $(RUN)/wmask-paired.tsv)
SOFT_REPORT = $(if $(SOFT),awk -f pipelines/paired-lib.awk -f pipelines/attack-lib.awk -f pipelines/soft-report.awk -v n=$(SOFT) \
  -v steps=$(SOFT_STEPS) -v lr=$(SOFT_LR) -v models='$(SOFT_MODELS)' -v formats='$(FORMATS)' $(RUN)/scores.tsv \
  $(SOFT_TSV) >> $@.tmp && )
GCG_REPORT = $(if $(GCG_ON),awk -f pipelines/paired-lib.awk -f pipelines/attack-lib.awk -f pipelines/gcg-report.awk -v n=$(GCG) \
  -v steps=$(GCG_STEPS) -v topk=$(GCG_TOPK) -v cand=$(GCG_CANDIDATES) -v models='$(GCG_ON)' \
  -v formats='$(FORMATS)' $(RUN)/scores.tsv $(GCG_TSV) >> $@.tmp && )
PLOTS     += $(if $(and $(WMASK),$(shell command -v gnuplot 2>/dev/null)),$(RUN)/wmask.png)
$(RUN)/report.md: $(RUN)/scores.tsv $(RUN)/probes.tsv $(RUN)/changes.tsv $(RUN)/paired.tsv pipelines/sports-report.awk \
                  $(MMLU_REPORT_DEPS) \
                  $(if $(PROBE_NEW),$(RUN)/probes-new.tsv) \
                  pipelines/changes.awk pipelines/paired-lib.awk $(PLOTS) $(WMASK_TSV) $(SOFT_TSV) $(GCG_TSV) \
                  $(STRENGTH_REPORT_DEPS) \
                  $(if $(SOFT)$(GCG_ON),pipelines/attack-lib.awk) $(if $(SOFT),pipelines/soft-report.awk) \
                  $(if $(GCG_ON),pipelines/gcg-report.awk) $(call knobs,report-soft,$(SOFT)) \
                  $(call knobs,report-gcg,$(GCG_ON)) \
                  $(filter $(RUN)/%,$(foreach l,$(LOCS),$(MASK_$(l))))
	awk -f pipelines/changes.awk -f pipelines/paired-lib.awk -f pipelines/sports-report.awk -v models='$(MODELS_EVAL)' -v n_forget=$(N_FORGET) \
	  -v n_facts=$(N_FACTS) -v rows='$(ROWS_all)' -v masks="$(foreach l,$(LOCS),$(l)=$(call mask_desc,$(MASK_$(l))))" \
	  -v mmlu="$(MMLU_DESC)" -v probe_models='$(PROBE_MODELS)' \
	  -v plots='$(notdir $(PLOTS))' -v wmask='$(WMASK)' -v wmask_steps=$(WMASK_STEPS) -v wmask_lr=$(WMASK_LR) \
	  -v wmask_opt=$(WMASK_OPT) -v edit_to='$(EDIT_TO)' -v edit_extra='$(EDIT_EXTRA)' \
	  -v objective='$(UNLEARN_OBJ)' -v probes_new='$(if $(PROBE_NEW),$(RUN)/probes-new.tsv)' \
	  $< $(RUN)/probes.tsv $(RUN)/changes.tsv $(RUN)/paired.tsv $(WMASK_TSV) > $@.tmp
	$(MMLU_REPORT) $(SOFT_REPORT)$(GCG_REPORT)$(call strength_report,learned,unlearned-,sports$(if $(EDIT_TO),-edit))mv $@.tmp $@
