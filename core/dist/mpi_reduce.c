/* Gradient buckets summed over ranks with MPI_Iallreduce. Where the device's
 * memory is host memory (cpu) MPI reads and writes the gradient block in
 * place, as a device kernel would; elsewhere (cpu-guarded) each bucket goes
 * through a host copy read and written back with device calls. */
#include <stdlib.h>

#include "backend/device_internal.h"
#include "dist/dist.h"
#include "dist/dist_internal.h"
#include "dist/reducer.h"
#include "util/error.h"

typedef struct mpi_tr {
    int in_place;
    float *stage;                /* host copy of the block (not in place) */
    MPI_Request *req;
    size_t *off, *len;           /* started buckets, bytes                */
    int32_t n, cap;
} mpi_tr;

static usi_error *start(void *ctx, usi_dbuf *grads, size_t off, size_t bytes)
{
    mpi_tr *m = ctx;
    if (m->n >= m->cap) return usi_error_new(USI_ERR_INTERNAL, "reducer: more buckets than planned");
    if (bytes / sizeof(float) > (size_t)INT32_MAX)
        return usi_error_new(USI_ERR_UNSUPPORTED, "reducer: a bucket of %zu bytes is too large for MPI", bytes);
    float *buf;
    if (m->in_place) {
        buf = usi_dbuf_addr(grads, off);
    } else {
        buf = m->stage + off / sizeof(float);
        USI_TRY(usi_dbuf_read(grads, off, buf, bytes));
    }
    int rc = MPI_Iallreduce(MPI_IN_PLACE, buf, (int)(bytes / sizeof(float)), MPI_FLOAT, MPI_SUM, usi_dist_comm(),
                            &m->req[m->n]);
    if (rc != MPI_SUCCESS) return usi_dist_mpi_error(rc, "MPI_Iallreduce");
    m->off[m->n] = off;
    m->len[m->n] = bytes;
    m->n++;
    return NULL;
}

static usi_error *progress(void *ctx)
{
    mpi_tr *m = ctx;
    int done = 0;
    int rc = MPI_Testall(m->n, m->req, &done, MPI_STATUSES_IGNORE);
    return rc == MPI_SUCCESS ? NULL : usi_dist_mpi_error(rc, "MPI_Testall");
}

static usi_error *wait_all(void *ctx, usi_dbuf *grads)
{
    mpi_tr *m = ctx;
    int32_t n = m->n;
    m->n = 0;
    int rc = MPI_Waitall(n, m->req, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) return usi_dist_mpi_error(rc, "MPI_Waitall");
    for (int32_t i = 0; !m->in_place && i < n; i++)
        USI_TRY(usi_dbuf_write(grads, m->off[i], m->stage + m->off[i] / sizeof(float), m->len[i]));
    return NULL;
}

static void tr_free(void *ctx)
{
    mpi_tr *m = ctx;
    if (!m) return;
    /* A reducer freed mid-step (after an error) must not leave MPI writing. */
    if (m->n) MPI_Waitall(m->n, m->req, MPI_STATUSES_IGNORE);
    free(m->stage);
    free(m->req);
    free(m->off);
    free(m->len);
    free(m);
}

static const usi_transport mpi_ops = {"mpi", start, progress, wait_all, tr_free};

usi_error *usi_transport_mpi(usi_dbuf *grads, size_t bytes, int32_t max_buckets, const usi_transport **ops,
                             void **ctx)
{
    if (usi_dist_comm() == MPI_COMM_NULL)
        return usi_error_new(USI_ERR_INVALID, "dist.backend = \"mpi\" needs a run started by mpirun "
                             "(`mpirun -np N usi train ...`; -np 1 for one process)");
    mpi_tr *m = calloc(1, sizeof *m);
    if (!m) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    m->cap = max_buckets;
    m->in_place = usi_dbuf_device(grads)->be->host_memory;
    m->req = malloc(sizeof *m->req * (size_t)(max_buckets + 1));
    m->off = malloc(sizeof *m->off * (size_t)(max_buckets + 1));
    m->len = malloc(sizeof *m->len * (size_t)(max_buckets + 1));
    if (!m->in_place) m->stage = malloc(bytes ? bytes : 1);
    if (!m->req || !m->off || !m->len || (!m->in_place && !m->stage)) {
        tr_free(m);
        return usi_error_new(USI_ERR_NOMEM, "out of memory for the gradient reduction (%zu bytes)", bytes);
    }
    *ops = &mpi_ops;
    *ctx = m;
    return NULL;
}
