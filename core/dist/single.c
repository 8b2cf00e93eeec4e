/* A build without MPI: the world is this process. Started by a launcher as
 * one of several, it refuses to run rather than train that many copies. */
#include <stdio.h>

#include "dist/dist.h"
#include "dist/reducer.h"
#include "util/error.h"

usi_error *usi_dist_init(void)
{
    int32_t n = usi_dist_launcher_world();
    if (n > 1)
        return usi_error_new(USI_ERR_UNSUPPORTED,
                             "started by mpirun as one of %d processes, but this usi was built without MPI, so "
                             "each process would train its own copy; install libopenmpi-dev (scripts/install-deps) "
                             "and rebuild (`meson setup --reconfigure build -Dmpi=enabled`), or run usi without "
                             "mpirun",
                             (int)n);
    return NULL;
}

void usi_dist_finalize(void) {}
void usi_dist_abort(int code) { (void)code; }
int32_t usi_dist_rank(void) { return 0; }
int32_t usi_dist_world(void) { return 1; }
int32_t usi_dist_local_rank(void) { return 0; }
int32_t usi_dist_have_mpi(void) { return 0; }

usi_error *usi_dist_sum_f64(double *v, int32_t n)
{
    (void)v;
    (void)n;
    return NULL;
}

usi_error *usi_dist_sum_i64(int64_t *v, int32_t n)
{
    (void)v;
    (void)n;
    return NULL;
}

usi_error *usi_dist_bcast(void *host, size_t bytes)
{
    (void)host;
    (void)bytes;
    return NULL;
}

usi_error *usi_dist_bcast_dbuf(usi_dbuf *b, size_t off, size_t bytes)
{
    (void)b;
    (void)off;
    (void)bytes;
    return NULL;
}

usi_error *usi_dist_barrier(void) { return NULL; }

usi_error *usi_dist_collective_new(usi_device *dev, const char *transport, usi_collective **out)
{
    (void)dev;
    *out = NULL;
    return usi_error_new(USI_ERR_UNSUPPORTED, "dist.sync_bn with dist.backend = \"%s\": this usi was built "
                         "without MPI; install libopenmpi-dev and rebuild with -Dmpi=enabled", transport);
}

void usi_dist_collective_free(usi_collective *c) { (void)c; }

usi_error *usi_transport_mpi(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                             void **ctx)
{
    (void)grads;
    (void)bytes;
    (void)max_buckets;
    *ops = NULL;
    *ctx = NULL;
    return usi_error_new(USI_ERR_UNSUPPORTED, "dist.backend = \"mpi\": this usi was built without MPI; install "
                         "libopenmpi-dev and rebuild with -Dmpi=enabled");
}
