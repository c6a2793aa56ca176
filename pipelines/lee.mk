# lee.mk — what oracle.mk and tofu.mk (Lee et al. 2025) share, included by both after their
# knobs: masks of one size over MLP value vectors, and the unlearning runs through them.
# Set before including it:
#   LEE_BASE        the delta (on MODEL) that the attributions score and every run starts from
#   LEE_COMPLEMENT  the mask whose complement the `complement` mask is drawn from
#   ATTRIB MASKS OBJECTIVES LRS (LRS_name: objective name's own) FRAC TENSORS GRANULARITY
#   RANDOM_SEED NULL_SEEDS UNLEARN_STEPS
#   UNLEARN_BATCH MAX_LEN MU_DEVICE, and TRAIN (mu-train with the model and common options)
# It gives RUNS (MASK-OBJ-LR) and PAIRS (MASK-OBJ), obj_spec, and the rules of
#   mask/random.mask       random units (mu-maskgen --random, RANDOM_SEED)
#   mask/random-S.mask     random units drawn with seed S, for each S in NULL_SEEDS
#   mask/complement.mask   random units outside LEE_COMPLEMENT
#   scores/M.scores        mu-attrib --method M on LEE_BASE, forget and retain (M in ATTRIB)
#   mask/M.mask            the top FRAC of M's scores
#   unlearn/MASK-OBJ-LR.st mu-train on top of LEE_BASE, masked (forget tok/forget, retain tok/retain)
#   curves-OBJ.png         the removal-retention curves of the masks, listed in PLOTS (the
#                          rule's title and y label read LEE_TITLE and LEE_RETENTION)
# the mu-train --objective of each name (default NAME=1), and its other mu-train options:
# DPO and IdkNLL prefer a refusal to the forget answers, as TOFU's "I don't know" variants
# do; SatImp keeps the retain set with open-unlearning's weight (alpha 0.1); ME is ME+GD
# (Yuan et al.)
OBJ_npo    ?= npo=1,retain-ce=1
OBJ_satimp ?= satimp=1,retain-ce=0.1
OBJ_me     ?= me=1,retain-ce=1
OBJ_idk    ?= idk=1,retain-ce=1
obj_spec    = $(or $(OBJ_$(1)),$(1)=1)
OPTS_dpo   ?= --dpo-alt "I don't know."
OPTS_idk   ?= --dpo-alt "I don't know."
# each objective's learning rates: LRS_name (objectives whose gradients differ in scale, such
# as SatImp's, reach the trade-off at other rates), else LRS; for the reports, NAME:LR,LR...
lrs_of      = $(or $(LRS_$(1)),$(LRS))
lee_space  := $(subst ,, )
LRS_SPEC    = $(foreach o,$(OBJECTIVES),$(o):$(subst $(lee_space),$(comma),$(strip $(call lrs_of,$(o)))))
RUNS       := $(foreach m,$(MASKS),$(foreach o,$(OBJECTIVES),$(foreach l,$(call lrs_of,$(o)),$(m)-$(o)-$(l))))
PAIRS      := $(foreach m,$(MASKS),$(foreach o,$(OBJECTIVES),$(m)-$(o)))
CANDIDATES := --model $(MODEL) --tensors $(TENSORS) --granularity $(GRANULARITY)
LEE_SETS   := $(RUN)/tok/forget.tok $(RUN)/tok/retain.tok
# knob stamps (pipelines/knobs.mk)
LEE_MASK_KNOBS    := $(call knobs,masks,frac=$(FRAC) tensors=$(TENSORS) granularity=$(GRANULARITY) seed=$(RANDOM_SEED))
LEE_ATTRIB_KNOBS  := $(call knobs,attrib,tensors=$(TENSORS) granularity=$(GRANULARITY) max_len=$(MAX_LEN))
LEE_UNLEARN_KNOBS  = $(call knobs,unlearn-$(1),$(call obj_spec,$(1)) $(OPTS_$(1)) steps=$(UNLEARN_STEPS) \
                       batch=$(UNLEARN_BATCH)$(accum_knob) seed=$(SEED) max_len=$(MAX_LEN))

$(RUN)/mask/random.mask: $(MODEL_DEPS) $(LEE_MASK_KNOBS)
	@mkdir -p $(@D)
	mu-maskgen $(Q) --random $(CANDIDATES) --fraction $(FRAC) --seed $(RANDOM_SEED) --out $@
$(NULL_SEEDS:%=$(RUN)/mask/random-%.mask): $(RUN)/mask/random-%.mask: $(MODEL_DEPS) $(LEE_MASK_KNOBS)
	@mkdir -p $(@D)
	mu-maskgen $(Q) --random $(CANDIDATES) --fraction $(FRAC) --seed $* --out $@
$(RUN)/mask/complement.mask: $(LEE_COMPLEMENT) $(LEE_MASK_KNOBS)
	mu-maskgen $(Q) --complement-of $< $(CANDIDATES) --fraction $(FRAC) --seed $(RANDOM_SEED) --out $@
$(ATTRIB:%=$(RUN)/scores/%.scores): $(RUN)/scores/%.scores: $(LEE_BASE) $(LEE_SETS) $(LEE_ATTRIB_KNOBS)
	@mkdir -p $(@D)
	$(JOB) mu-attrib $(Q) --model $(MODEL) --device $(MU_DEVICE) --delta $< --forget $(RUN)/tok/forget.tok \
	  --retain $(RUN)/tok/retain.tok --method $* --tensors $(TENSORS) \
	  --granularity $(GRANULARITY) --max-len $(MAX_LEN) --out $@
$(ATTRIB:%=$(RUN)/mask/%.mask): $(RUN)/mask/%.mask: $(RUN)/scores/%.scores $(LEE_MASK_KNOBS)
	mu-maskgen $(Q) --scores $< --fraction $(FRAC) --out $@

define UNLEARN_RULE
$(RUN)/unlearn/$(1)-$(2)-$(3).st: $(RUN)/mask/$(1).mask $(LEE_BASE) $(LEE_SETS) $(call LEE_UNLEARN_KNOBS,$(2))
	@mkdir -p $$(@D)
	$(TRAIN) --delta $(LEE_BASE) --mask $$< --objective $(call obj_spec,$(2)) $(OPTS_$(2)) \
	  --forget $(RUN)/tok/forget.tok --retain $(RUN)/tok/retain.tok --steps $(UNLEARN_STEPS) \
	  --batch $(UNLEARN_BATCH)$(accum_opt) --lr $(3) --log $(RUN)/unlearn/$(1)-$(2)-$(3).log --out $$@
endef
$(foreach m,$(MASKS),$(foreach o,$(OBJECTIVES),$(foreach l,$(call lrs_of,$(o)),$(eval $(call UNLEARN_RULE,$(m),$(o),$(l))))))

# ---- plots (gnuplot, when installed): curves-OBJ.png, each mask's removal-retention curve
# over the learning rates, from the pipeline's curve/MASK-OBJ.tsv (mu-score --curve rows
# forget_strength and retention); LEE_TITLE names the experiment, LEE_RETENTION what
# retention keeps
PLOTS ?= $(if $(shell command -v gnuplot 2>/dev/null),$(OBJECTIVES:%=$(RUN)/curves-%.png))
$(RUN)/curves-%.png: $(foreach m,$(MASKS),$(RUN)/curve/$(m)-%.tsv)
	for m in $(MASKS); do \
	  awk -F'\t' -v m=$$m '$$1 == "forget_strength" { x[$$2] = $$3; o[++n] = $$2 } \
	    $$1 == "retention" { y[$$2] = $$3 } END { for (i = 1; i <= n; i++) print m "\t" x[o[i]] "\t" y[o[i]] }' \
	    $(RUN)/curve/$$m-$*.tsv; done > $@.tsv
	gnuplot -e "set terminal png size 800,480; set output '$@.tmp'; set datafile separator '\t'; \
	  set title '$(LEE_TITLE), $*: removal against retention over the learning rates (mu-score --curve)'; \
	  set xlabel 'forget strength (fraction of the forget answer probability removed)'; \
	  set ylabel 'retention (fraction of $(LEE_RETENTION) kept)'; set xrange [0:1]; set yrange [0:1.05]; \
	  set key outside right; \
	  plot for [m in '$(MASKS)'] '$@.tsv' using 2:(strcol(1) eq m ? \$$3 : NaN) with linespoints title m"
	rm -f $@.tsv
	mv $@.tmp $@
