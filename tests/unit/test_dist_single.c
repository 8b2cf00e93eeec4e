/* core/dist as built without MPI (single.c), whatever this build has: a
 * launch of several processes is refused with what to do, since each would
 * train its own copy; a launch of one, or none, is a world of one. Each
 * launcher's environment is recognised. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dist/dist.h"
#include "util/error.h"

static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE", "PMIX_RANK",
                                   "SLURM_NTASKS"};

static void clear(void)
{
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++) unsetenv(vars[i]);
}

static void expect(const char *what, int32_t world, int refused)
{
    CHECK(usi_dist_launcher_world() == world, "%s: launcher world %d, want %d", what, (int)usi_dist_launcher_world(),
          (int)world);
    usi_error *e = usi_dist_init();
    char want[64];
    snprintf(want, sizeof want, "one of %d processes", (int)world);
    if (refused) {
        CHECK(e && strstr(usi_error_message(e), want) && strstr(usi_error_message(e), "built without MPI") &&
                  strstr(usi_error_message(e), "libopenmpi-dev"),
              "%s: %s", what, e ? usi_error_message(e) : "accepted");
    } else {
        CHECK(!e, "%s: refused: %s", what, usi_error_message(e));
        CHECK(usi_dist_world() == 1 && usi_dist_rank() == 0, "%s: world %d", what, (int)usi_dist_world());
    }
    usi_error_free(e);
}

int main(void)
{
    clear();
    expect("no launcher", 0, 0);
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    expect("mpirun -np 1", 1, 0);
    setenv("OMPI_COMM_WORLD_SIZE", "4", 1);
    expect("mpirun -np 4", 4, 1);
    clear();
    setenv("PMI_SIZE", "2", 1);
    expect("mpiexec (hydra) -n 2", 2, 1);
    clear();
    setenv("MV2_COMM_WORLD_SIZE", "3", 1);
    expect("MVAPICH -np 3", 3, 1);
    clear();
    setenv("PMIX_RANK", "0", 1);
    setenv("SLURM_NTASKS", "8", 1);
    expect("srun --mpi=pmix -n 8", 8, 1);
    clear();
    setenv("OMPI_COMM_WORLD_SIZE", "two", 1);
    expect("a size that is not a number", 0, 0);
    return check_status("test_dist_single");
}
