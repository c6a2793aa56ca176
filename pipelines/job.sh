#!/usr/bin/env bash
# job.sh CMD [ARG]... — runs one model step of a pipeline (mu-train, mu-forward, mu-attrib,
# mu-probe fit; pipelines/jobs.mk), here or through a cluster launcher:
#   MU_LAUNCH   empty: here. Otherwise a command prefix, e.g. 'srun -c 8 --gres=gpu:1'
#               (Slurm): the step runs as a cluster job and this waits for it, so make's
#               rules, -j and staleness work unchanged (runs/ on a shared filesystem).
#   MU_THREADS  OpenMP threads of the step: a number, or auto (default): when
#               OMP_NUM_THREADS is unset and the step runs here, this machine's cores
#               divided by make's -j (from MAKEFLAGS; at least 1), so that parallel steps
#               do not fight over the cores. Results do not depend on the thread count
#               (tests/sh/t_threads.sh).
#   MU_GPUS     the GPUs of this machine that steps may use, e.g. '0 1 2 3' (jobs.mk's GPUS).
#               A step takes the first one no other step holds (an flock on MU_GPU_LOCKS/ID,
#               default ${TMPDIR:-/tmp}/mu-gpus-UID), runs with CUDA_VISIBLE_DEVICES=ID and
#               frees it when it ends; with all held it waits. So make -jN with N GPUs runs one
#               step per GPU. Empty (default): CUDA_VISIBLE_DEVICES is left as it is. Not with
#               MU_LAUNCH (a cluster launcher places its jobs: srun --gres=gpu:1).
#   MU_TRAIN_LAUNCH  for mu-train steps, in place of MU_LAUNCH: a launcher of several
#               processes that train one model together (data parallelism, mu-train(1)),
#               e.g. 'mpirun -np 4' here (one GPU each) or 'srun -n 4 --gres=gpu:4' (Slurm).
#               Its processes share the machine's cores: set MU_THREADS. Empty (default):
#               mu-train runs like the other steps.
set -u
launch=${MU_LAUNCH:-}
case ${1##*/} in
    mu-train) [ -z "${MU_TRAIN_LAUNCH:-}" ] || launch=$MU_TRAIN_LAUNCH ;;
esac

# take_gpu: the first free GPU of MU_GPUS, held through fd 9 (inherited by the step, so
# released when it exits), exported as CUDA_VISIBLE_DEVICES; waits while all are held
take_gpu() {
    local dir=${MU_GPU_LOCKS:-${TMPDIR:-/tmp}/mu-gpus-$(id -u)} g
    for g in $MU_GPUS; do
        case $g in ''|*[!0-9]*) echo "job.sh: MU_GPUS: '$g' is not a GPU number" >&2; exit 2 ;; esac
    done
    [ -z "$launch" ] || { echo "job.sh: MU_GPUS and MU_LAUNCH (or MU_TRAIN_LAUNCH): the launcher places the steps, give one of them" >&2; exit 2; }
    mkdir -p "$dir" || { echo "job.sh: cannot make the GPU lock directory $dir" >&2; exit 1; }
    while :; do
        for g in $MU_GPUS; do
            exec 9>>"$dir/$g" || { echo "job.sh: cannot open the GPU lock $dir/$g" >&2; exit 1; }
            if flock -n 9; then export CUDA_VISIBLE_DEVICES=$g; return 0; fi
            exec 9>&-
        done
        sleep 0.2
    done
}
[ -z "${MU_GPUS:-}" ] || take_gpu

threads=${MU_THREADS:-auto}
if [ "$threads" = auto ] && [ -z "${OMP_NUM_THREADS:-}" ] && [ -z "$launch" ]; then
    jobs=1
    for w in ${MAKEFLAGS:-}; do
        case $w in
            -j) jobs=0 ;;                                   # unlimited: one thread a step
            -j[0-9]*) jobs=${w#-j} ;;
        esac
    done
    cores=$(nproc 2>/dev/null || echo 1)
    if [ "$jobs" -gt 1 ] || [ "$jobs" = 0 ]; then
        threads=$(( jobs == 0 ? 1 : cores / jobs ))
        [ "$threads" -ge 1 ] || threads=1
        export OMP_NUM_THREADS=$threads
    fi
elif [ "$threads" != auto ]; then
    case $threads in
        ''|*[!0-9]*|0) echo "job.sh: MU_THREADS: '$threads' is not a positive number or auto" >&2; exit 2 ;;
    esac
    export OMP_NUM_THREADS=$threads
fi
# shellcheck disable=SC2086   # the launcher is a command prefix, split into words
exec $launch "$@"
