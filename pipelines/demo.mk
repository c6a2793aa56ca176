# demo.mk — `make demo`: the main job on the embedded default.
# (grows with the tools; see README.md)
MU_BIN ?= bin
.PHONY: demo
demo:
	@echo "mu demo: tools built in $(MU_BIN): $$(ls $(MU_BIN) | tr '\n' ' ')"
