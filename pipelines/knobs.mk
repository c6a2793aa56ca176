# knobs.mk — a stage is stale when its knobs change, not only when its inputs do. Included
# by every pipeline (through models.mk). List
#     $(call knobs,NAME,VALUES)
# as a prerequisite of the stage: it is $(RUN)/knobs/NAME, a file holding VALUES (e.g.
# "steps=$(UNLEARN_STEPS) lr=$(UNLEARN_LR)"), written when make reads the pipeline and
# rewritten, so newer than what was made from the old values, only when VALUES change.
# A dry run (make -n) or a question (make -q) writes nothing: a changed stage then depends
# on the phony knobs-changed instead, so the plan shows it and the stamps stay as they were.
knobs_dry := $(if $(findstring n,$(firstword -$(MAKEFLAGS))),1,$(if $(findstring q,$(firstword -$(MAKEFLAGS))),1))
knobs = $(shell mkdir -p '$(RUN)/knobs' && f='$(RUN)/knobs/$(1)' && v='$(subst ','\'',$(strip $(2)))' && \
          if [ -f "$$f" ] && [ "$$(cat "$$f")" = "$$v" ]; then printf '%s' "$$f"; \
          elif [ -n '$(knobs_dry)' ]; then printf 'knobs-changed'; \
          else printf '%s\n' "$$v" > "$$f" && printf '%s' "$$f"; fi)
.PHONY: knobs-changed
knobs-changed: ;
