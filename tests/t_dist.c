/* t_dist.c — lib/dist.h without a launcher: a plain process is rank 0 of 1 whose sums
 * leave the buffers as they are, also when a launcher says it started one process or its
 * count is malformed (MPI is not started then). The several-process sums are tested in
 * t_train.c (forked ranks) and tests/sh/t_dist.sh (mpirun). */
#include "test.h"
#include "dist.h"
#include <stdlib.h>

static void check_single(const char *var, const char *value) {
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "PMIX_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
    if (var) setenv(var, value, 1);
    mu_dist d;
    char err[256] = "";
    CHECK_MSG(mu_dist_init(&d, err, sizeof err) == 0, "%s=%s: %s", var ? var : "-", value ? value : "", err);
    CHECK_EQ_INT(d.rank, 0);
    CHECK_EQ_INT(d.world, 1);
    float f[3] = {1.5f, -2, 3};
    double g[2] = {0.25, 7};
    d.sum_f32(&d, f, 3);
    d.sum_f64(&d, g, 2);
    CHECK(f[0] == 1.5f && f[1] == -2 && f[2] == 3 && g[0] == 0.25 && g[1] == 7);
    mu_dist_finalize(&d);
    CHECK_EQ_INT(d.world, 1);
}

TEST(dist_single_process_without_a_launcher) {
    check_single(NULL, NULL);
    check_single("OMPI_COMM_WORLD_SIZE", "1");
    check_single("PMI_SIZE", "1");
    check_single("PMI_SIZE", "2x");   /* not a count: not taken as a launch */
    check_single("PMIX_SIZE", "0");
    CHECK(mu_dist_engine()[0] != 0);
}
