/* `usi bench`: the speed of backbones on a device, one row per backbone.
 *
 * Inference is one forward pass of a frozen graph in eval mode. A training
 * step is what the trainer's step runs for the student (core/train/step.c):
 * forward with the soft-target cross-entropy, backward, the gradient norm,
 * clipping when configured, the optimizer and the EMA over the flat blocks,
 * zeroing the gradients. The teacher's forward is not part of it: it costs
 * the same whichever backbone is trained. Each mode runs `warmup` untimed
 * steps, then `steps` timed ones, each ended by a device synchronize; the
 * speed is batch / the median step time. */
#ifndef USI_BENCH_BENCH_H
#define USI_BENCH_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <usi/plugin.h>

#include "backend/device.h"
#include "backend/optim_args.h"
#include "util/strutil.h"

typedef struct usi_bench_opts {
    usi_device *dev;
    int64_t img_size, batch;
    int train;                  /* time training steps too              */
    int steps, warmup;          /* timed and untimed steps per mode     */
    usi_optim_hp hp;            /* the training step's optimizer        */
    double clip;                /* gradient-norm clipping; 0 = off      */
    int ema;                    /* an EMA of the weights; else a copy, as the trainer does */
    uint64_t seed;
    /* Called as each phase starts ("building", "inference", "training"). */
    void (*progress)(void *ctx, const char *backbone, const char *phase);
    void *progress_ctx;
} usi_bench_opts;

typedef struct usi_bench_row {
    char *backbone;
    int64_t params;             /* parameters (buffers excluded), 0: unknown */
    int64_t macs;               /* multiply-adds of one image's forward pass  */
    int64_t img_size, batch;
    char *device;
    double infer_img_s, train_img_s; /* 0: not measured                  */
    double top1;                /* NAN: unknown                          */
    char *error;                /* why the row is incomplete, or NULL    */
} usi_bench_row;

/* Fill row->params, macs, infer_img_s and (with o->train) train_img_s for
 * backbone bb made with options p (img_size and num_classes already set;
 * the input has in_chans channels when bb has that option, else 3). Fields
 * stay as they are from the point something fails; the error says what. */
usi_error *usi_bench_measure(const usi_component *bb, const usi_params *p, const usi_bench_opts *o,
                             usi_bench_row *row);

/* The median of n values (n >= 1); v is reordered. */
double usi_bench_median(double *v, size_t n);

/* bench.csv: the header "backbone,params,macs,img_size,batch,device,
 * infer_img_s,train_img_s,top1,error", then one line per row; fields not
 * known are empty. */
void usi_bench_csv(const usi_bench_row *rows, size_t n, usi_strbuf *out);
/* The same as an aligned table for people. */
void usi_bench_print_table(FILE *f, const usi_bench_row *rows, size_t n);
void usi_bench_row_free(usi_bench_row *r);

#endif
