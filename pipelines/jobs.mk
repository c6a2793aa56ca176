# jobs.mk — how the pipelines run their model steps (mu-train, mu-forward, mu-attrib,
# mu-probe fit): each recipe calls them as $(JOB) TOOL ..., through pipelines/job.sh.
#   LAUNCH   a command prefix that runs a step as a cluster job and waits for it, e.g.
#            make -j64 -f pipelines/tofu.mk LAUNCH='srun -c 8 --gres=gpu:1' MU_DEVICE=cuda
#            (Slurm; runs/ on a shared filesystem). Empty (default): here. Make stays the
#            scheduler of the experiment: -j bounds the jobs in flight and only stale
#            artifacts are rebuilt.
#   THREADS  OpenMP threads per step: auto (default: this machine's cores divided by -j,
#            unless OMP_NUM_THREADS is set) or a number. Results do not depend on it.
#   GPUS     this machine's GPUs for the steps, e.g. GPUS='0 1 2 3' with make -j4 and
#            MU_DEVICE=cuda: each step takes a GPU no other step holds (CUDA_VISIBLE_DEVICES)
#            and waits while all are held. Empty (default): the steps see every GPU.
#   TRAIN_LAUNCH  for the mu-train steps, in place of LAUNCH: a launcher of several processes
#            that train one model together (data parallelism over MPI, mu-train(1)), e.g.
#            make -f pipelines/tofu.mk TRAIN_LAUNCH='mpirun -np 4' MU_DEVICE=cuda (4 GPUs
#            here) or TRAIN_LAUNCH='srun -n 4 --gres=gpu:4' (Slurm). ACCUM (below) must be
#            at least the number of processes. It changes a result only by the
#            order of float sums (the same bits run to run for a given count).
# None of them changes a result, so none is a knob (pipelines/knobs.mk).
LAUNCH  ?=
THREADS ?= auto
GPUS    ?=
export MU_LAUNCH  := $(LAUNCH)
TRAIN_LAUNCH ?=
export MU_TRAIN_LAUNCH := $(TRAIN_LAUNCH)

# ACCUM: micro-batches per training step of every mu-train (--accum; default 1), each of the
# pipeline's batch size. Unlike the above, a knob: the training stages' knob stamps carry it
# (batch=BxACCUM when not 1). With TRAIN_LAUNCH of P processes, ACCUM >= P (each process
# runs ACCUM / P of them): e.g. TRAIN_LAUNCH='mpirun -np 4' ACCUM=4 BATCH=2 trains with 8
# sequences a step, as BATCH=8 does, on 4 GPUs.
ACCUM ?= 1
accum_opt  := $(if $(filter-out 1,$(ACCUM)), --accum $(ACCUM))
accum_knob := $(if $(filter-out 1,$(ACCUM)),x$(ACCUM))
export MU_THREADS := $(THREADS)
export MU_GPUS    := $(GPUS)
JOB := pipelines/job.sh
