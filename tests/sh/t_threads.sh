#!/usr/bin/env bash
# t_threads.sh — the tools' outputs do not depend on OMP_NUM_THREADS: mu-forward (logits,
# cached activations), mu-attrib (gradients summed over > 768 tokens), mu-train (a model
# trained for 10 steps) and mu-probe give the same bytes with 1 and 3 threads, on a model
# large enough that every op runs threaded (N*D above PAR_MIN, GEMMs above BLAS_PAR_MIN).
. "$(dirname "$0")/lib.sh"

cd "$T" || exit 1
if ! mu-init --out mid --layers 2 --d-model 256 --heads 8 --kv-heads 4 --d-ff 512 --seed 3 >/dev/null 2>&1; then
    skip threads_all "mu-init failed"; exit 0
fi
# 48 facts of 6-name athletes: about 1000 tokens in one attribution batch
awk 'BEGIN { split("Ada Bo Cy Di Ed Fay Gil Hal Ivy Jo Kim Lu", n, " ");
             split("golf tennis rugby chess", s, " "); srand(1)
             for (i = 0; i < 48; i++) {
                 name = ""; for (k = 0; k < 6; k++) name = name (k ? " " : "") n[int(rand() * 12) + 1]
                 printf "{\"name\": \"%s\", \"sport\": \"%s\", \"kind\": \"%s\"}\n", name, s[i % 4 + 1], s[i % 4 + 1] } }' > facts.jsonl
if ! mu-tokenize --model mid --prompt 'The famous athlete {name} plays the sport of' \
        --target ' {sport}' facts.jsonl > facts.mpk.zst; then
    skip threads_all "mu-tokenize failed"; exit 0
fi

# run_with THREADS: every tool once, in directory tTHREADS (same relative names, so the
# headers, which record the arguments, match too)
run_with() {
    mkdir -p "t$1" && cd "t$1" || return 1
    export OMP_NUM_THREADS=$1
    mu-forward --model ../mid --emit topk -k 5 --cache resid_post:all:last \
        --cache-out acts.mpk.zst ../facts.mpk.zst > out.mpk.zst &&
    mu-attrib -q --model ../mid --forget ../facts.mpk.zst --method grad > grad.mpk.zst &&
    mu-train --model ../mid --objective learn --train ../facts.mpk.zst --steps 10 --batch 16 \
        --lr 1e-3 --out learned.st -q &&
    mu-probe fit -q --acts acts.mpk.zst --label kind --out probe.mpk.zst
}
same() { local f; for f in "$@"; do cmp "t1/$f" "t3/$f" || return 1; done; }
if ! (run_with 1) || ! (run_with 3); then
    fail threads_run "a tool failed"; exit 0
fi
t threads_forward_same same out.mpk.zst acts.mpk.zst
t threads_attrib_grad_same same grad.mpk.zst
t threads_train_same same learned.st
t threads_probe_same same probe.mpk.zst
# the model did train (the comparison is not between two copies of the initial weights)
t threads_train_changed_weights bash -c '! mu-train --model mid --objective learn \
    --train facts.mpk.zst --steps 0 --out zero.st -q || ! cmp -s zero.st t1/learned.st'
