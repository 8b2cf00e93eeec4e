/* How many processes a launcher started, read from the environment it sets,
 * so that even a build without MPI can tell that it is one of several. */
#include <stdlib.h>

#include "dist/dist.h"

static int32_t env_int(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end || n < 1 || n > (1L << 24) ? 0 : (int32_t)n;
}

int32_t usi_dist_launcher_world(void)
{
    /* Open MPI, then PMI (MPICH's hydra, Intel MPI, srun --mpi=pmi2), then
     * MVAPICH; a PMIx launch by srun says its size through Slurm's. */
    static const char *const sizes[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE"};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int32_t n = env_int(sizes[i]);
        if (n) return n;
    }
    if (getenv("PMIX_RANK")) {
        int32_t n = env_int("SLURM_NTASKS");
        return n ? n : 1;
    }
    return 0;
}

int32_t usi_dist_have_nccl(void)
{
#ifdef USI_HAVE_NCCL
    return 1;
#else
    return 0;
#endif
}
