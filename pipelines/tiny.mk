# tiny.mk — `make demo-tiny`: the whole dataflow on a tiny random model in seconds, with make
# deciding what is stale. Needs no downloaded data: a tiny model from mu-init and a few
# made-up facts embedded below.
#   1. model       mu-init: a 2-layer Llama, fixed seed
#   2. tokens      mu-tokenize: facts -> "tokens" streams (forget = first 3, retain = rest)
#   3. learned     mu-train --objective learn: the model memorizes all facts
#   4. unlearned   mu-train log1mp + retain-ce, masked to the MLPs of layer 1 only
#   5. report      forget/retain accuracy before and after (from the log streams,
#                  read with mu-dump)
# Every artifact is written atomically, so an interrupted run resumes where it stopped.
MU_BIN ?= bin
OUT    ?= build/demo-tiny
export PATH := $(abspath $(MU_BIN)):$(PATH)
Q ?= -q
include pipelines/jobs.mk

.PHONY: demo
demo: $(OUT)/report.txt
	@cat $<

$(OUT)/model/config.json:
	@mkdir -p $(OUT)
	rm -rf $(OUT)/model
	mu-init --out $(OUT)/model --layers 2 --d-model 32 --heads 4 --kv-heads 2 --d-ff 64 --seed 7 $(Q)

define FORGET_FACTS
{"name": "Ada Quell", "sport": "golf"}
{"name": "Bo Tarrin", "sport": "tennis"}
{"name": "Cy Moravec", "sport": "rugby"}
endef
define RETAIN_FACTS
{"name": "Di Oyelaran", "sport": "chess"}
{"name": "Ed Falkner", "sport": "polo"}
{"name": "Fay Ibsen", "sport": "judo"}
endef
export FORGET_FACTS RETAIN_FACTS

$(OUT)/forget.jsonl:
	@mkdir -p $(OUT)
	printf '%s\n' "$$FORGET_FACTS" > $@
$(OUT)/retain.jsonl:
	@mkdir -p $(OUT)
	printf '%s\n' "$$RETAIN_FACTS" > $@
$(OUT)/all.jsonl: $(OUT)/forget.jsonl $(OUT)/retain.jsonl
	cat $^ > $@

$(OUT)/%.mpk.zst: $(OUT)/%.jsonl $(OUT)/model/config.json
	mu-tokenize --model $(OUT)/model --prompt '{name} plays' --target ' {sport}' --out $@ $< $(Q)

$(OUT)/learned.safetensors: $(OUT)/all.mpk.zst $(OUT)/model/config.json
	$(JOB) mu-train --model $(OUT)/model --objective learn --train $(OUT)/all.mpk.zst --steps 80 --batch 6$(accum_opt) \
	  --lr 1e-2 --seed 1 --eval all=$(OUT)/all.mpk.zst --log $(OUT)/learn.log.mpk.zst --out $@ $(Q)

$(OUT)/unlearned.safetensors: $(OUT)/learned.safetensors $(OUT)/forget.mpk.zst $(OUT)/retain.mpk.zst
	$(JOB) mu-train --model $(OUT)/model --delta $(OUT)/learned.safetensors --objective log1mp=1,retain-ce=1 \
	  --forget $(OUT)/forget.mpk.zst --retain $(OUT)/retain.mpk.zst --mask mlp:1 --steps 40 --batch 3$(accum_opt) \
	  --lr 5e-3 --seed 1 --eval forget=$(OUT)/forget.mpk.zst --eval retain=$(OUT)/retain.mpk.zst \
	  --log $(OUT)/unlearn.log.mpk.zst --out $@ $(Q)

# first and last evaluation of each run, as JSON lines from the log streams
$(OUT)/report.txt: $(OUT)/learned.safetensors $(OUT)/unlearned.safetensors
	{ echo "mu demo: learn all 6 facts, then unlearn 3 of them in the MLP of layer 1 only"; \
	  echo "learn   (first, last eval):"; \
	  mu-dump -H --kind log $(OUT)/learn.log.mpk.zst | grep '"eval"' | sed -n '1p;$$p'; \
	  echo "unlearn (first, last eval):"; \
	  mu-dump -H --kind log $(OUT)/unlearn.log.mpk.zst | grep '"eval"' | sed -n '1p;$$p'; } > $@.tmp
	mv $@.tmp $@
