/* Between the two halves of the training-curve plot: reading metrics.jsonl
 * (plot_metrics.c) and drawing it (plot.c). */
#ifndef USI_TRAIN_PLOT_INTERNAL_H
#define USI_TRAIN_PLOT_INTERNAL_H

#include <stddef.h>
#include <usi/plugin.h>

typedef struct usi_plot_series {
    double *x, *y;
    size_t n, cap;
} usi_plot_series;

/* Against the step: loss and lr from the logging lines, val_loss from the
 * epoch lines (at their step). Against the epoch: top-1 and EMA top-1. */
typedef struct usi_plot_curves {
    usi_plot_series loss, lr, val_loss, top1, ema;
} usi_plot_curves;

usi_error *usi_plot_read(const char *path, usi_plot_curves *c);
void usi_plot_curves_free(usi_plot_curves *c);

/* The debiased exponential moving average TensorBoard draws, with a span of
 * about a tenth of the points (2 to 50), into out (n values). */
void usi_plot_smooth(const double *y, size_t n, double *out);

#endif
