/* The job over MPI: joined only when a launcher started this process, so a
 * plain `usi train` never needs an MPI runtime to be reachable. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "dist/dist_internal.h"
#include "util/error.h"

static struct {
    int joined;
    int32_t rank, world, local_rank;
    MPI_Comm comm;
} S = {0, 0, 1, 0, MPI_COMM_NULL};

MPI_Comm usi_dist_comm(void) { return S.comm; }
int32_t usi_dist_rank(void) { return S.rank; }
int32_t usi_dist_world(void) { return S.world; }
int32_t usi_dist_local_rank(void) { return S.local_rank; }
int32_t usi_dist_have_mpi(void) { return 1; }

usi_error *usi_dist_mpi_error(int rc, const char *what)
{
    char text[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(rc, text, &len);
    return usi_error_new(USI_ERR_IO, "%s failed on rank %d of %d: %s", what, (int)S.rank, (int)S.world, text);
}

#define MPI_TRY(call, what)                                    \
    do {                                                       \
        int rc_ = (call);                                      \
        if (rc_ != MPI_SUCCESS) return usi_dist_mpi_error(rc_, what); \
    } while (0)

usi_error *usi_dist_init(void)
{
    if (S.joined || usi_dist_launcher_world() == 0) return NULL;
    int provided = 0, rank = 0, world = 1, local = 0;
    /* Loader threads never call MPI: the main thread is enough. */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return usi_error_new(USI_ERR_IO, "MPI_Init_thread failed; check the launch (`mpirun -np N usi train ...`)");
    S.joined = 1;
    MPI_TRY(MPI_Comm_dup(MPI_COMM_WORLD, &S.comm), "MPI_Comm_dup");
    MPI_TRY(MPI_Comm_set_errhandler(S.comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_TRY(MPI_Comm_rank(S.comm, &rank), "MPI_Comm_rank");
    MPI_TRY(MPI_Comm_size(S.comm, &world), "MPI_Comm_size");
    S.rank = rank;
    S.world = world;
    /* The rank among processes that share memory, i.e. on this host. */
    MPI_Comm node;
    MPI_TRY(MPI_Comm_split_type(S.comm, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node), "MPI_Comm_split_type");
    MPI_Comm_rank(node, &local);
    MPI_Comm_free(&node);
    S.local_rank = local;
    return NULL;
}

void usi_dist_finalize(void)
{
    if (!S.joined) return;
    int done = 0;
    MPI_Finalized(&done);
    if (done) return;
    if (S.comm != MPI_COMM_NULL) MPI_Comm_free(&S.comm);
    MPI_Finalize();
    S.joined = 0;
}

void usi_dist_abort(int code)
{
    if (!S.joined) return;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
}

usi_error *usi_dist_sum_f64(double *v, int32_t n)
{
    if (S.world < 2) return NULL;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, S.comm), "MPI_Allreduce");
    return NULL;
}

usi_error *usi_dist_sum_i64(int64_t *v, int32_t n)
{
    if (S.world < 2) return NULL;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_INT64_T, MPI_SUM, S.comm), "MPI_Allreduce");
    return NULL;
}

/* MPI counts are ints: large transfers go in pieces. */
#define CHUNK ((size_t)1 << 28)

usi_error *usi_dist_bcast(void *host, size_t bytes)
{
    if (S.world < 2) return NULL;
    for (size_t at = 0; at < bytes; at += CHUNK) {
        size_t n = bytes - at < CHUNK ? bytes - at : CHUNK;
        MPI_TRY(MPI_Bcast((char *)host + at, (int)n, MPI_BYTE, 0, S.comm), "MPI_Bcast");
    }
    return NULL;
}

usi_error *usi_dist_bcast_dbuf(usi_dbuf *b, size_t off, size_t bytes)
{
    if (S.world < 2 || !bytes) return NULL;
    size_t cap = bytes < CHUNK ? bytes : CHUNK;
    char *stage = malloc(cap);
    if (!stage) return usi_error_new(USI_ERR_NOMEM, "out of memory for a %zu-byte broadcast", cap);
    usi_error *e = NULL;
    for (size_t at = 0; !e && at < bytes; at += cap) {
        size_t n = bytes - at < cap ? bytes - at : cap;
        if (S.rank == 0) e = usi_dbuf_read(b, off + at, stage, n);
        /* Rank 0 takes part even after a failed read, so no rank waits. */
        int rc = MPI_Bcast(stage, (int)n, MPI_BYTE, 0, S.comm);
        if (!e && rc != MPI_SUCCESS) e = usi_dist_mpi_error(rc, "MPI_Bcast");
        if (!e && S.rank != 0) e = usi_dbuf_write(b, off + at, stage, n);
    }
    free(stage);
    return e;
}

usi_error *usi_dist_barrier(void)
{
    if (S.world < 2) return NULL;
    MPI_TRY(MPI_Barrier(S.comm), "MPI_Barrier");
    return NULL;
}
