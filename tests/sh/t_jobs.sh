#!/usr/bin/env bash
# t_jobs.sh — pipelines/job.sh and jobs.mk: OpenMP threads per step from make's -j (auto),
# a fixed THREADS, a user's OMP_NUM_THREADS kept, bad THREADS refused; a pipeline run
# through a launcher (LAUNCH, as srun would be) runs every model step through it and gives
# the same bytes as a run here.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
JOBSH=$ROOT/pipelines/job.sh
cores=$(nproc)
half=$(( cores / 2 > 0 ? cores / 2 : 1 ))
threads() { env -u OMP_NUM_THREADS "$@" bash "$JOBSH" sh -c 'echo "${OMP_NUM_THREADS:-unset}"'; }
t jobs_auto_divides_cores bash -c "[ \"\$($(declare -f threads); JOBSH=$JOBSH threads MAKEFLAGS=' -j2 --jobserver-auth=3,4')\" = $half ]"
t jobs_auto_unlimited_j_one bash -c "[ \"\$($(declare -f threads); JOBSH=$JOBSH threads MAKEFLAGS='s -j')\" = 1 ]"
t jobs_auto_serial_unset bash -c "[ \"\$($(declare -f threads); JOBSH=$JOBSH threads MAKEFLAGS='')\" = unset ]"
t jobs_auto_keeps_user_omp bash -c "[ \"\$(OMP_NUM_THREADS=5 MAKEFLAGS=' -j2' bash $JOBSH sh -c 'echo \$OMP_NUM_THREADS')\" = 5 ]"
t jobs_fixed_threads bash -c "[ \"\$($(declare -f threads); JOBSH=$JOBSH threads MU_THREADS=3 MAKEFLAGS=' -j8')\" = 3 ]"
t jobs_launch_no_auto bash -c "[ \"\$($(declare -f threads); JOBSH=$JOBSH threads MU_LAUNCH=env MAKEFLAGS=' -j2')\" = unset ]"
expect_fail jobs_bad_threads 2 "MU_THREADS: 'x' is not a positive number" env MU_THREADS=x bash "$JOBSH" true

# a launcher as srun would be: it logs the step, then runs it (and waits)
cat > "$T/launch" <<'SH'
#!/usr/bin/env bash
echo "$*" >> "$LAUNCH_LOG"
exec "$@"
SH
chmod +x "$T/launch"
tiny() { make --no-print-directory -C "$ROOT" -f pipelines/tiny.mk MU_BIN="$MU_BIN" "$@" >/dev/null 2>&1; }
if ! tiny OUT="$T/here" || ! LAUNCH_LOG=$T/launch.log tiny -j2 OUT="$T/there" LAUNCH="$T/launch"; then
    fail jobs_pipeline "make -f pipelines/tiny.mk failed"; exit 0
fi
t jobs_launch_ran_every_step bash -c "[ \"\$(grep -c '^mu-train ' '$T/launch.log')\" = 2 ] && [ \"\$(wc -l < '$T/launch.log')\" = 2 ]"
t jobs_launch_same_results bash -c "cmp '$T/here/learned.safetensors' '$T/there/learned.safetensors' &&
    cmp '$T/here/unlearned.safetensors' '$T/there/unlearned.safetensors'"
# TRAIN_LAUNCH: the mu-train steps alone go through it (the others run here)
if LAUNCH_LOG=$T/tlaunch.log tiny -j2 OUT="$T/tl" TRAIN_LAUNCH="$T/launch"; then
  t jobs_train_launch_runs_mu_train_only bash -c "[ \"\$(grep -c '^mu-train ' '$T/tlaunch.log')\" = 2 ] &&
    [ \"\$(wc -l < '$T/tlaunch.log')\" = 2 ] && cmp '$T/here/unlearned.safetensors' '$T/tl/unlearned.safetensors'"
else
  fail jobs_train_launch "make -f pipelines/tiny.mk TRAIN_LAUNCH=... failed"
fi
t jobs_train_launch_not_for_others bash -c "[ \"\$(MU_TRAIN_LAUNCH=false bash '$JOBSH' echo here)\" = here ]"
expect_fail jobs_gpus_with_train_launch 2 "MU_GPUS and MU_LAUNCH" env MU_GPUS=0 MU_TRAIN_LAUNCH=env MU_GPU_LOCKS="$T/gpulocks" bash "$JOBSH" mu-train --version

# GPU slots (MU_GPUS, jobs.mk's GPUS): 6 steps at once on 2 GPUs: each sees one GPU as
# CUDA_VISIBLE_DEVICES, never one another step holds (a step's mkdir of its GPU's busy
# directory would fail), both GPUs serve, and all 6 run (the others wait for a free GPU)
gpu_step() { MU_GPUS='3 5' MU_GPU_LOCKS="$T/gpulocks" bash "$JOBSH" sh -c \
  'mkdir "$0/busy-$CUDA_VISIBLE_DEVICES" || echo clash >> "$0/gpu.log"; echo "$CUDA_VISIBLE_DEVICES" >> "$0/gpu.log";
   sleep 0.3; rmdir "$0/busy-$CUDA_VISIBLE_DEVICES"' "$T"; }
for i in 1 2 3 4 5 6; do gpu_step & done; wait
t jobs_gpus_one_step_per_gpu bash -c "! grep -q clash '$T/gpu.log' && [ \$(wc -l < '$T/gpu.log') = 6 ] &&
  [ \"\$(sort -u '$T/gpu.log' | tr '\n' ' ')\" = '3 5 ' ]"
# a held GPU is free again when its step ends, a failing step's too (its status is kept)
t jobs_gpus_freed bash -c "MU_GPUS=4 MU_GPU_LOCKS='$T/gpulocks' bash '$JOBSH' false; [ \$? = 1 ] &&
  [ \"\$(MU_GPUS=4 MU_GPU_LOCKS='$T/gpulocks' timeout 5 bash '$JOBSH' sh -c 'echo \$CUDA_VISIBLE_DEVICES')\" = 4 ]"
t jobs_gpus_unset_keeps_env bash -c "[ \"\$(CUDA_VISIBLE_DEVICES=9 MU_GPUS= bash '$JOBSH' sh -c 'echo \$CUDA_VISIBLE_DEVICES')\" = 9 ]"
expect_fail jobs_gpus_bad 2 "MU_GPUS: 'x' is not a GPU number" env MU_GPUS='0 x' MU_GPU_LOCKS="$T/gpulocks" bash "$JOBSH" true
expect_fail jobs_gpus_with_launch 2 "MU_GPUS and MU_LAUNCH" env MU_GPUS=0 MU_LAUNCH=env MU_GPU_LOCKS="$T/gpulocks" bash "$JOBSH" true
# through make: GPUS reaches the steps (they took GPU 0: its lock file is there; the CPU
# backend runs them, with the same bytes)
if MU_GPU_LOCKS="$T/gpulocks2" tiny -j2 OUT="$T/gpus" GPUS='0 1'; then
  t jobs_gpus_pipeline_same_results bash -c "[ -e '$T/gpulocks2/0' ] &&
    cmp '$T/here/learned.safetensors' '$T/gpus/learned.safetensors' &&
    cmp '$T/here/unlearned.safetensors' '$T/gpus/unlearned.safetensors'"
else
  fail jobs_gpus_pipeline "make -f pipelines/tiny.mk GPUS='0 1' failed"
fi
