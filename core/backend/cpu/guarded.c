/* The cpu-guarded device: the CPU kernels behind the device seam, with
 * memory that host code cannot touch outside backend calls. Every block is
 * its own mapping, PROT_NONE while no backend call runs, so a stray host
 * dereference of device memory anywhere in the core faults at once instead
 * of working by accident. It proves the seam on machines without a GPU; it
 * is slow (two mprotect calls per block per backend call) and for tests.
 * Under precision "mixed" it keeps activations as bf16 as a GPU does
 * (core/graph/precision.c); its kernels, the CPU's, compute in fp32 on
 * the bf16 values. usi's commands ask it for "mixed" only with
 * USI_GUARDED_BF16=1 (backend/device.c), so by default it gives cpu's
 * numbers. With USI_GUARDED_NHWC=1 it keeps 4-d activations channels-last
 * as a GPU does (core/graph/layout.c): binary ops and reductions run on
 * them in memory order as the GPU's do, every other kernel on NCHW copies.
 * Blocks open for every thread at once: while the loader's thread copies a
 * batch into a stage, a stray access on another thread goes unseen. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cpu/cpu.h"
#include "backend/plan.h"
#include "util/error.h"

typedef struct block {
    void *p;
    size_t len;
} block;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static block *blocks;
static size_t n_blocks, cap_blocks;
static int depth;

static size_t page_round(size_t bytes)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (bytes + page - 1) / page * page;
}

static void protect_all(int prot)
{
    for (size_t i = 0; i < n_blocks; i++) mprotect(blocks[i].p, blocks[i].len, prot);
}

/* Open every block for the duration of one backend call (calls nest when a
 * kernel uses another entry point). */
static void guard_open(void)
{
    pthread_mutex_lock(&lock);
    if (depth++ == 0) protect_all(PROT_READ | PROT_WRITE);
    pthread_mutex_unlock(&lock);
}

static void guard_close(void)
{
    pthread_mutex_lock(&lock);
    if (--depth == 0) protect_all(PROT_NONE);
    pthread_mutex_unlock(&lock);
}

static void *g_alloc(usi_device *d, size_t bytes)
{
    (void)d;
    size_t len = page_round(bytes);
    void *p = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    pthread_mutex_lock(&lock);
    if (n_blocks == cap_blocks) {
        size_t cap = cap_blocks ? 2 * cap_blocks : 64;
        block *grown = realloc(blocks, cap * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&lock);
            munmap(p, len);
            return NULL;
        }
        blocks = grown;
        cap_blocks = cap;
    }
    blocks[n_blocks++] = (block){p, len};
    if (depth > 0) mprotect(p, len, PROT_READ | PROT_WRITE);
    pthread_mutex_unlock(&lock);
    return p; /* anonymous mappings start zeroed */
}

static void g_free(usi_device *d, void *p, size_t bytes)
{
    (void)d;
    (void)bytes;
    if (!p) return;
    pthread_mutex_lock(&lock);
    for (size_t i = 0; i < n_blocks; i++) {
        if (blocks[i].p != p) continue;
        munmap(p, blocks[i].len);
        blocks[i] = blocks[--n_blocks];
        break;
    }
    if (!n_blocks) {
        free(blocks);
        blocks = NULL;
        cap_blocks = 0;
    }
    pthread_mutex_unlock(&lock);
}

/* Each entry point: open, run the CPU kernel, close. */
#define GUARDED(call)                                                         \
    do {                                                                      \
        guard_open();                                                         \
        usi_error *e_ = (call);                                               \
        guard_close();                                                        \
        return e_;                                                            \
    } while (0)

static usi_error *g_copy(usi_device *d, void *dst, const void *src, size_t bytes)
{
    GUARDED(usi_cpu_copy(d, dst, src, bytes));
}

static usi_error *g_fill(usi_device *d, void *dst, int byte, size_t bytes)
{
    GUARDED(usi_cpu_fill(d, dst, byte, bytes));
}

static usi_error *g_to_bf16(usi_device *d, void *dst, const float *src, size_t n, int32_t acc)
{
    GUARDED(usi_cpu_to_bf16(d, dst, src, n, acc));
}

static usi_error *g_from_bf16(usi_device *d, float *dst, const void *src, size_t n, int32_t acc)
{
    GUARDED(usi_cpu_from_bf16(d, dst, src, n, acc));
}

static usi_error *g_repack(usi_device *d, void *dst, int32_t dst_fmt, const void *src, int32_t src_fmt,
                           const int64_t *shape4, int32_t acc)
{
    GUARDED(usi_cpu_repack(d, dst, dst_fmt, src, src_fmt, shape4, acc));
}

/* With USI_GUARDED_NHWC=1, graphs keep 4-d activations channels-last as on
 * a GPU (core/graph/layout.c), in any precision; the CPU's kernels get
 * NCHW copies but where g_cl_native says, so the numbers stay cpu's to
 * fp32 rounding (sums over broadcast dims run in memory order). */
static int32_t g_prefers_cl(const usi_device *d)
{
    (void)d;
    const char *v = getenv("USI_GUARDED_NHWC");
    return v && !strcmp(v, "1");
}

/* Channels-last values the CPU's kernels take as they are: binary ops and
 * reductions index through the shared plans (backend/plan.c), which walk
 * memory order where the CUDA backend's do; every other kernel gets NCHW
 * copies. */
static int32_t g_cl_native(const usi_tensor *t, int32_t backward)
{
    (void)backward;
    return usi_bcast_cl_ok(t) || usi_reduce_cl_ok(t);
}

/* The CPU's kernels read and write fp32 (NCHW but where g_cl_native says)
 * only: the executor must hand them fp32 copies of activations kept as
 * bf16 or channels-last, with the flags off for the call
 * (core/graph/precision.c); a flag still on here is that contract broken. */
static usi_error *no_bf16_seen(const usi_tensor *t)
{
    if (t->folded) return NULL; /* its conv wrote it: nothing runs */
    int seen = t->bf16 || (t->cl && !g_cl_native(t, 0)), cl_ok = g_cl_native(t, 0);
    for (int32_t k = 0; k < t->n_src; k++) seen |= t->src[k] && (t->src[k]->bf16 || (t->src[k]->cl && !cl_ok));
    return seen ? usi_error_new(USI_ERR_INTERNAL,
                                "cpu-guarded: a kernel of fp32 NCHW was handed a bf16 or channels-last tensor")
                : NULL;
}

/* A batch norm and its ReLU as one node (core/graph/fuse.c), as a GPU
 * runs them, from the CPU's two kernels: the norm writes y into the
 * activation's memory and the ReLU runs in place; backward, the ReLU's
 * gradient (the norm's grad, shared) through the ReLU's backward into a
 * temporary dy for the norm's backward. The numbers are the unfused
 * pair's, bit for bit. */
static int32_t g_fuses_act(const usi_tensor *bn, const usi_tensor *act)
{
    (void)bn;
    return act->attrs.act.kind == USI_ACT_RELU;
}

static usi_error *fused_forward(const usi_exec_ctx *ctx, usi_tensor *bn)
{
    usi_error *e = usi_cpu_forward(ctx, bn);
    return e ? e : usi_cpu_forward(ctx, bn->fuse_act); /* in place: bn->data is its memory */
}

static usi_error *fused_backward(const usi_exec_ctx *ctx, usi_tensor *bn, const int32_t *acc)
{
    usi_tensor norm = *bn, act = *bn->fuse_act;
    usi_tensor *src[1] = {&norm};
    float *dy = malloc((size_t)bn->numel * sizeof(float));
    if (!dy) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    norm.grad = dy;
    act.src = src; /* act.data, act.grad: its output and gradient */
    int32_t overwrite = 0;
    usi_error *e = usi_cpu_backward(ctx, &act, &overwrite);
    if (!e) e = usi_cpu_backward(ctx, &norm, acc);
    free(dy);
    return e;
}

static usi_error *g_forward(const usi_exec_ctx *ctx, usi_tensor *t)
{
    if (t->fused) return NULL; /* its norm wrote it */
    USI_TRY(no_bf16_seen(t));
    GUARDED(t->fuse_act ? fused_forward(ctx, t) : usi_cpu_forward(ctx, t));
}

static usi_error *g_backward(const usi_exec_ctx *ctx, usi_tensor *t, const int32_t *acc)
{
    if (t->fused) return NULL; /* its norm's backward takes its gradient */
    USI_TRY(no_bf16_seen(t));
    GUARDED(t->fuse_act ? fused_backward(ctx, t, acc) : usi_cpu_backward(ctx, t, acc));
}

static usi_error *g_optim_step(usi_device *d, const usi_optim_args *a)
{
    GUARDED(usi_cpu_optim_step(d, a));
}

static usi_error *g_ema_update(usi_device *d, float *ema, const float *w, size_t n, double decay)
{
    GUARDED(usi_cpu_ema_update(d, ema, w, n, decay));
}

static usi_error *g_sum_squares(usi_device *d, const float *x, size_t n, double *out)
{
    GUARDED(usi_cpu_sum_squares(d, x, n, out));
}

static usi_error *g_scale(usi_device *d, float *x, size_t n, double s)
{
    GUARDED(usi_cpu_scale(d, x, n, s));
}

static usi_error *g_image_convert(usi_device *d, float *dst, const float *src, int32_t n, int32_t c, int32_t h,
                                  int32_t w, int32_t oh, int32_t ow, int32_t interp, const float *a, const float *b)
{
    GUARDED(usi_cpu_image_convert(d, dst, src, n, c, h, w, oh, ow, interp, a, b));
}

static usi_error *g_u8_normalize(usi_device *d, float *dst, const uint8_t *src, int32_t n, int32_t h, int32_t w,
                                 const float *mean, const float *std)
{
    GUARDED(usi_cpu_u8_normalize(d, dst, src, n, h, w, mean, std));
}

/* A stage is one guarded block of slots x bytes; copies are synchronous,
 * so a put never meets a take still running. */
typedef struct g_stage {
    char *mem;
    size_t bytes, len;
} g_stage;

static usi_error *g_stage_new(usi_device *d, int32_t slots, size_t bytes, void **out)
{
    g_stage *s = calloc(1, sizeof *s);
    if (!s) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    s->bytes = bytes;
    s->len = (size_t)slots * bytes;
    s->mem = g_alloc(d, s->len);
    if (!s->mem) {
        free(s);
        return usi_error_new(USI_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return NULL;
}

static void g_stage_free(usi_device *d, void *st)
{
    g_stage *s = st;
    g_free(d, s->mem, s->len);
    free(s);
}

static usi_error *g_stage_put(usi_device *d, void *st, int32_t slot, size_t off, const void *host, size_t bytes)
{
    g_stage *s = st;
    GUARDED(usi_cpu_copy(d, s->mem + (size_t)slot * s->bytes + off, host, bytes));
}

static usi_error *g_stage_take(usi_device *d, void *st, int32_t slot, size_t off, void *dst, size_t bytes)
{
    g_stage *s = st;
    GUARDED(usi_cpu_copy(d, dst, s->mem + (size_t)slot * s->bytes + off, bytes));
}

/* Recorded work the way a GPU's contract reads: recording runs nothing,
 * replaying runs the work. Here a recording is the call itself, so the
 * graph-replay logic above the seam (core/graph/replay.c) runs on machines
 * without a GPU. */
typedef struct g_rec {
    usi_error *(*run)(void *ctx);
    void *ctx;
} g_rec;

static usi_error *g_record(usi_device *d, usi_error *(*run)(void *ctx), void *ctx, void **rec)
{
    (void)d;
    g_rec *r = malloc(sizeof *r);
    if (!r) return usi_error_new(USI_ERR_NOMEM, "out of host memory");
    r->run = run;
    r->ctx = ctx;
    *rec = r;
    return NULL;
}

static usi_error *g_replay(usi_device *d, void *rec)
{
    (void)d;
    g_rec *r = rec;
    return r->run(r->ctx);
}

static void g_rec_free(usi_device *d, void *rec)
{
    (void)d;
    free(rec);
}

const usi_backend *usi_cpu_guarded_backend(void)
{
    static const usi_backend be = {
        .name = "cpu-guarded",
        .host_memory = 0,
        .has_bf16 = 1,
        .bf16_storage = 1,
        .to_bf16 = g_to_bf16,
        .from_bf16 = g_from_bf16,
        .prefers_cl = g_prefers_cl,
        .cl_native = g_cl_native,
        .repack = g_repack,
        .fuses_act = g_fuses_act,
        .alloc = g_alloc,
        .free = g_free,
        .upload = g_copy,
        .download = g_copy,
        .copy = g_copy,
        .fill = g_fill,
        .synchronize = usi_cpu_synchronize,
        .supports = usi_cpu_supports,
        .workspace = usi_cpu_workspace,
        .forward = g_forward,
        .backward = g_backward,
        .optim_step = g_optim_step,
        .ema_update = g_ema_update,
        .sum_squares = g_sum_squares,
        .scale = g_scale,
        .image_convert = g_image_convert,
        .u8_normalize = g_u8_normalize,
        .set_threads = usi_cpu_set_threads,
        .threads = usi_cpu_threads,
        .stage_new = g_stage_new,
        .stage_free = g_stage_free,
        .stage_put = g_stage_put,
        .stage_take = g_stage_take,
        .record = g_record,
        .replay = g_replay,
        .rec_free = g_rec_free,
    };
    return &be;
}
