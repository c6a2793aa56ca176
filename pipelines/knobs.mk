# knobs.mk — a stage is stale when its knobs change, not only when its inputs do. Included
# by every pipeline (through models.mk). List
#     $(call knobs,NAME,VALUES)
# as a prerequisite of the stage: it is $(RUN)/knobs/NAME, a file holding VALUES (e.g.
# "steps=$(UNLEARN_STEPS) lr=$(UNLEARN_LR)"), written when make reads the pipeline and
# rewritten, so newer than what was made from the old values, only when VALUES change.
# A new stamp is dated 1970: what a RUN made before it had stamps is taken as made with the
# knobs of now, not redone. A dry run (make -n) or a question (make -q) writes nothing: a
# changed stage then depends on the phony knobs-changed instead, so the plan shows it.
knobs_dry := $(if $(findstring n,$(firstword -$(MAKEFLAGS))),1,$(if $(findstring q,$(firstword -$(MAKEFLAGS))),1))
knobs = $(shell f='$(RUN)/knobs/$(1)' && v='$(subst ','\'',$(strip $(2)))' && \
          if [ -f "$$f" ]; then \
            if [ "$$(cat "$$f")" = "$$v" ]; then printf '%s' "$$f"; \
            elif [ -n '$(knobs_dry)' ]; then printf 'knobs-changed'; \
            else printf '%s\n' "$$v" > "$$f" && printf '%s' "$$f"; fi; \
          elif [ -z '$(knobs_dry)' ]; then \
            mkdir -p '$(RUN)/knobs' && printf '%s\n' "$$v" > "$$f" && touch -d @0 "$$f" && printf '%s' "$$f"; fi)
.PHONY: knobs-changed
knobs-changed: ;
