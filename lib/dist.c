/* dist.c — the processes of a data-parallel run (dist.h): MPI when the build has it
 * (MU_HAVE_MPI), else the single process. */
#define _GNU_SOURCE
#include "dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef MU_HAVE_MPI
#include <mpi.h>
#endif

static void sum_none_f32(const mu_dist *d, float *buf, int64_t n) { (void)d, (void)buf, (void)n; }
static void sum_none_f64(const mu_dist *d, double *buf, int64_t n) { (void)d, (void)buf, (void)n; }

void mu_dist_single(mu_dist *d) {
    *d = (mu_dist){.rank = 0, .world = 1, .sum_f32 = sum_none_f32, .sum_f64 = sum_none_f64};
}

/* The number of processes the launcher started: 0 when none did (or a malformed count),
 * -1 when one did without saying how many (PMIx alone). */
static long launched_size(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) {
        const char *v = getenv(vars[i]);
        char *end;
        if (!v || !*v) continue;
        long n = strtol(v, &end, 10);
        return *end || n < 1 ? 0 : n;
    }
    return getenv("PMIX_RANK") ? -1 : 0;
}

#ifdef MU_HAVE_MPI
#define MAX_COUNT (1 << 30)   /* elements per MPI call (counts are int) */
static int g_active;          /* MPI_Init done here, MPI_Finalize not yet */

static void abort_unfinished(void) {
    if (g_active) MPI_Abort(MPI_COMM_WORLD, 1);
}

/* MPI_Reduce to rank 0, then MPI_Bcast: every rank gets rank 0's bits. */
static void sum_mpi(const mu_dist *d, void *buf, int64_t n, MPI_Datatype type, size_t size) {
    for (int64_t i = 0; i < n; i += MAX_COUNT) {
        int c = (int)(n - i < MAX_COUNT ? n - i : MAX_COUNT);
        void *at = (char *)buf + (size_t)i * size;
        MPI_Reduce(d->rank == 0 ? MPI_IN_PLACE : at, at, c, type, MPI_SUM, 0, MPI_COMM_WORLD);
        MPI_Bcast(at, c, type, 0, MPI_COMM_WORLD);
    }
}
static void sum_mpi_f32(const mu_dist *d, float *buf, int64_t n) { sum_mpi(d, buf, n, MPI_FLOAT, sizeof *buf); }
static void sum_mpi_f64(const mu_dist *d, double *buf, int64_t n) { sum_mpi(d, buf, n, MPI_DOUBLE, sizeof *buf); }

/* Rank among the processes sharing this machine's memory. */
static int local_rank(void) {
    MPI_Comm local;
    int rank;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &rank);
    MPI_Comm_free(&local);
    return rank;
}

static int init_mpi(mu_dist *d, char *err, size_t errlen) {
    if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
        snprintf(err, errlen, "MPI_Init failed (%s)", mu_dist_engine());
        return -1;
    }
    g_active = 1;
    atexit(abort_unfinished);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    char lr[16];
    snprintf(lr, sizeof lr, "%d", local_rank());
    setenv("MU_LOCAL_RANK", lr, 1);   /* the CUDA backend's GPU, unless MU_CUDA_DEVICE is set */
    d->sum_f32 = sum_mpi_f32;
    d->sum_f64 = sum_mpi_f64;
    return 0;
}
#endif

int mu_dist_init(mu_dist *d, char *err, size_t errlen) {
    mu_dist_single(d);
    long n = launched_size();
    if (n == 0 || n == 1) return 0;
#ifdef MU_HAVE_MPI
    return init_mpi(d, err, errlen);
#else
    if (n > 1) snprintf(err, errlen, "started as %ld processes (mpirun), but this build has no MPI: "
                        "install libopenmpi-dev (make deps) and rebuild", n);
    else snprintf(err, errlen, "started by an MPI launcher (PMIx), but this build has no MPI: "
                  "install libopenmpi-dev (make deps) and rebuild");
    return -1;
#endif
}

void mu_dist_finalize(mu_dist *d) {
#ifdef MU_HAVE_MPI
    if (g_active) {
        g_active = 0;
        MPI_Finalize();
    }
#endif
    mu_dist_single(d);
}

const char *mu_dist_engine(void) {
#ifdef MU_HAVE_MPI
    static char v[MPI_MAX_LIBRARY_VERSION_STRING + 1];
    int len = 0;
    if (!v[0] && MPI_Get_library_version(v, &len) == MPI_SUCCESS) v[strcspn(v, "\n")] = 0;
    return v[0] ? v : "MPI";
#else
    return "none";
#endif
}
