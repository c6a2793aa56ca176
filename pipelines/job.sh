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
set -u
threads=${MU_THREADS:-auto}
if [ "$threads" = auto ] && [ -z "${OMP_NUM_THREADS:-}" ] && [ -z "${MU_LAUNCH:-}" ]; then
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
exec ${MU_LAUNCH:-} "$@"
