/* dist.h — data-parallel training over processes: which process this is, and the sums a
 * data-parallel step needs, through MPI (Open MPI, MPICH; launched by mpirun, or srun on
 * a cluster).
 *
 *   mu_dist d;
 *   if (mu_dist_init(&d, err, sizeof err)) die(err);  // world 1 unless started by mpirun
 *   mu_trainer_set_dist(trainer, &d);                 // lib/train.h: micro-batches split
 *   ... rank 0 writes the outputs ...
 *   mu_dist_finalize(&d);
 *
 * A mu_dist is an interface, so the trainer needs no MPI: mu_dist_init gives the MPI one
 * (or a single process), and the tests give one whose ranks are threads. */
#ifndef MU_DIST_H
#define MU_DIST_H
#include <stddef.h>
#include <stdint.h>

typedef struct mu_dist {
    int rank, world;     /* this process and the number of processes */
    /* buf[n] := the sum of every process's buf[n], the same bits on every process and in
     * every run (summed in rank order at rank 0, then sent to all). Every process calls it
     * with the same n. A transport error aborts the whole job (MPI's default). */
    void (*sum_f32)(const struct mu_dist *d, float *buf, int64_t n);
    void (*sum_f64)(const struct mu_dist *d, double *buf, int64_t n);
    void *ctx;
} mu_dist;

/* The single process: rank 0 of 1, sums leave buf as it is. */
void mu_dist_single(mu_dist *d);

/* From the launcher: started by mpirun or srun (OMPI_COMM_WORLD_SIZE, PMI_SIZE or
 * PMIX_RANK in the environment) -> MPI_Init and MPI_COMM_WORLD's rank and size; otherwise
 * the single process. Exports MU_LOCAL_RANK, from which the CUDA backend picks the
 * process's GPU (local rank modulo the visible devices) unless MU_CUDA_DEVICE is set. A process that exits
 * before mu_dist_finalize (mu_die) aborts the job, so no rank waits forever in a sum.
 * 0 ok; -1 + err when launched as several processes by a build without MPI. */
int mu_dist_init(mu_dist *d, char *err, size_t errlen);
void mu_dist_finalize(mu_dist *d);
/* "Open MPI v4.1.4, ..." (MPI_Get_library_version, first line), or "none". */
const char *mu_dist_engine(void);
#endif
