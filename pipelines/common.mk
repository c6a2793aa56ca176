# common.mk — the preamble the experiment pipelines share (sports, counterfact, oracle,
# tofu), included first: `all` as the default goal, the real pretrained model
# (pipelines/models.mk, with pipelines/knobs.mk), how model steps run (pipelines/jobs.mk),
# the tools of MU_BIN on PATH, the shared data under DATA, and the device the model steps
# run on (MU_DEVICE: auto, the tools' default, takes a GPU where there is one; cpu or cuda).
.DEFAULT_GOAL := all
include pipelines/models.mk
include pipelines/jobs.mk
MU_BIN ?= bin
export PATH := $(abspath $(MU_BIN)):$(PATH)
DATA   ?= ../shared/data
MU_DEVICE ?= auto
