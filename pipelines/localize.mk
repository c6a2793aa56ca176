# localize.mk — the localizations that sports.mk and counterfact.mk compare (Guo et al. 2024),
# included by both. Set before including it:
#   LOC_FORGET   token stream of the facts to localize (with its subject's span)
#   LOC_SUBJECT  the subject's field in that stream
#   LOC_DELTAS   deltas applied on top of MODEL first (the learned model), or empty
#   LOC_DEPS     the other files the attribution depends on (the model's, the deltas)
#   LOC_LABEL, LOC_PROBE_TRAIN   for the probe localization only: the meta field of the
#                facts' attribute (sports: sport) and the token stream of other facts of
#                the same kind that the probes are fitted on (LOC_FORGET is their test set)
# Localizations (LOCS; MASK_<name> is a mu-train --mask: a shorthand or a mask file):
#   early   MLPs of early layers, where Guo et al. find the fact-lookup MLPs (hand-picked)
#   lookup  fact lookup found by the data: the LOOKUP_LAYERS MLPs with the largest direct
#           effect by path patching from the subject's last token (mu-attrib --method
#           path-patch)
#   probe   fact lookup found by linear probes: the PROBE_LAYERS MLPs that most raise the
#           attribute's decodability at the subject's last token (probes on the residual
#           stream before and after every MLP, fitted on LOC_PROBE_TRAIN and tested on
#           LOC_FORGET: mu-probe fit, mu-probe localize; decodability minus the test
#           cross-entropy, PROBE_BY=acc for the test accuracy; PROBE_L2 the probes' penalty)
#   late    MLPs of late layers, the output side (hand-picked)
#   all     every MLP (not localized)
#   atp     output tracing found by the data: the ATP_LAYERS MLPs that attribution patching
#           ranks highest (mu-attrib --method atp)
#   random  no localization, at the same size: as many MLP matrices as lookup takes
#           (3 x LOOKUP_LAYERS), drawn at random from every layer's gate, up and down
#           (mu-maskgen --random, seed SEED): what a found localization must beat (Guo et
#           al.'s random baseline; Lee et al. find localized masks no better than it);
#           RANDOM_SEEDS=2 3 adds more draws, random-2 and random-3
# The found ones: noise on the subject's tokens, every MLP layer's effect on the answers'
# log-probability, then mu-maskgen keeps the top layers' MLPs (gate, up, down: 3 matrices a
# layer).
LOCS          ?= early lookup late all atp random
MASK_early    ?= mlp:1-7
MASK_lookup   ?= $(RUN)/masks/lookup.mask
MASK_late     ?= mlp:22-29
MASK_all      ?= mlp:all
MASK_atp      ?= $(RUN)/masks/atp.mask
MASK_probe    ?= $(RUN)/masks/probe.mask
MASK_random   ?= $(RUN)/masks/random.mask
RANDOM_SEEDS  ?=
override LOCS += $(RANDOM_SEEDS:%=random-%)
$(foreach s,$(RANDOM_SEEDS),$(eval MASK_random-$(s) ?= $(RUN)/masks/random-$(s).mask))
LOOKUP_LAYERS ?= 8
PROBE_LAYERS  ?= 8
PROBE_BY      ?= loss
PROBE_L2      ?= 1e-3
ATP_LAYERS    ?= 8
ATP_SAMPLES   ?= 4
# patched runs a forward for path patching (one per MLP: 32 takes every layer of SmolLM2's
# 30 at once; bench_attrib: 1.5x the records/s of 8 there, on short prompts)
TRACE_BATCH   ?= 32

ATTRIB_atp    := atp
ATTRIB_lookup := path-patch
LAYERS_atp     = $(ATP_LAYERS)
LAYERS_lookup  = $(LOOKUP_LAYERS)
LAYERS_probe   = $(PROBE_LAYERS)
# knob stamps (pipelines/knobs.mk) of each found localization's attribution and mask
$(foreach n,atp lookup,$(eval $(RUN)/attrib/$(n).scores: $(call knobs,attrib-$(n),samples=$(ATP_SAMPLES) seed=$(SEED))))
$(foreach n,atp lookup probe,$(eval $(RUN)/masks/$(n).mask: $(call knobs,mask-$(n),layers=$(LAYERS_$(n)))))
$(RUN)/attrib/%.scores: $(LOC_FORGET) $(LOC_DELTAS) $(LOC_DEPS)
	@mkdir -p $(@D)
	$(JOB) mu-attrib $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(LOC_DELTAS)) --forget $(LOC_FORGET) \
	  --subject $(LOC_SUBJECT) --method $(ATTRIB_$*) --tensors mlp:all --samples $(ATP_SAMPLES) \
	  --batch $(TRACE_BATCH) --seed $(SEED) --out $@
$(RUN)/masks/%.mask: $(RUN)/attrib/%.scores
	@mkdir -p $(@D)
	mu-maskgen $(Q) --scores $< --units $$((3 * $(LAYERS_$*))) --out $@
.PRECIOUS: $(RUN)/attrib/%.scores $(RUN)/masks/%.mask

# the probe localization: the residual stream before and after every MLP at the subject's
# last token on the probes' train and test facts, one probe per site and layer, each MLP
# scored by the gain across it (an explicit rule: it takes over the pattern rule above)
ifneq ($(filter probe,$(LOCS)),)
ifeq ($(strip $(LOC_LABEL)),)
$(error LOCS has probe, but this pipeline sets no LOC_LABEL (the attribute the probes read) and LOC_PROBE_TRAIN)
endif
endif
LOC_PROBE_SITES := resid_mid:all:subject_last resid_post:all:subject_last
loc_probe_acts = $(JOB) mu-forward $(Q) --model $(MODEL) --device $(MU_DEVICE) $(addprefix --delta ,$(LOC_DELTAS)) \
  --subject $(LOC_SUBJECT) $(addprefix --cache ,$(LOC_PROBE_SITES)) --cache-out $@ --out /dev/null $<
$(RUN)/attrib/probe-train.acts: $(LOC_PROBE_TRAIN) $(LOC_DELTAS) $(LOC_DEPS)
	@mkdir -p $(@D)
	$(loc_probe_acts)
$(RUN)/attrib/probe-test.acts: $(LOC_FORGET) $(LOC_DELTAS) $(LOC_DEPS)
	@mkdir -p $(@D)
	$(loc_probe_acts)
$(RUN)/attrib/probe.probes: $(RUN)/attrib/probe-train.acts $(RUN)/attrib/probe-test.acts \
                            $(call knobs,probe-fit,label=$(LOC_LABEL) l2=$(PROBE_L2))
	$(JOB) mu-probe fit $(Q) --acts $< --test $(word 2,$^) --label $(LOC_LABEL) --l2 $(PROBE_L2) --out $@
$(RUN)/attrib/probe.scores: $(RUN)/attrib/probe.probes $(call knobs,probe-by,$(PROBE_BY))
	mu-probe localize $(Q) --probes $< --model $(MODEL) --tensors mlp:all --by $(PROBE_BY) --out $@

# the random localization, and one more per seed of RANDOM_SEEDS (random-S, drawn with seed
# S), so that the found ones are read against the spread of several random draws (explicit
# rules: they take over the pattern rule above)
define RANDOM_MASK_RULE
$(RUN)/masks/$(1).mask: $(MODEL_DEPS) $(call knobs,mask-$(1),matrices=$(LOOKUP_LAYERS)x3 seed=$(2) model=$(MODEL))
	@mkdir -p $$(@D)
	mu-maskgen $(Q) --random --model $(MODEL) --tensors mlp:all --granularity matrix \
	  --units $$$$((3 * $(LOOKUP_LAYERS))) --seed $(2) --out $$@
endef
$(eval $(call RANDOM_MASK_RULE,random,$(SEED)))
$(foreach s,$(RANDOM_SEEDS),$(eval $(call RANDOM_MASK_RULE,random-$(s),$(s))))

# a mask's description for the reports: a shorthand as it is, a mask file as its MLPs
# (pipelines/mask-desc.sh: mlp:1,5 for whole MLPs, else each matrix, mlp:1.up,5.down)
mask_desc = $(if $(filter $(RUN)/%,$(1)),$$(pipelines/mask-desc.sh $(1)),$(1))
