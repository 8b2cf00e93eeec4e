/* Training curves as a PNG, from a run's metrics.jsonl: no plotting library,
 * just polylines on an RGB canvas, written through usi_png_write. */
#ifndef USI_TRAIN_PLOT_H
#define USI_TRAIN_PLOT_H

#include <usi/plugin.h>

/* The picture: two panels side by side. The left half [0, W/2) plots the
 * training loss against the step, the right half [W/2, W) top-1 (and EMA
 * top-1 when the run kept an EMA) against the epoch. */
#define USI_PLOT_WIDTH 960
#define USI_PLOT_HEIGHT 400
#define USI_PLOT_LOSS_RGB 0x1f77b4u   /* blue   */
#define USI_PLOT_TOP1_RGB 0xff7f0eu   /* orange */
#define USI_PLOT_EMA_RGB 0x2ca02cu    /* green  */

/* Read metrics_path (lines as the trainer writes them: {"step", "loss", ...}
 * per logging step and {"epoch", "top1", "ema_top1", ...} per epoch; other
 * lines, e.g. the teacher's accuracy, are skipped) and write png_path.
 * A line that is not a JSON object, or holds a non-number where a number
 * belongs, is an error naming the file and line. When a resumed run logs a
 * step or epoch again, the later values replace the earlier ones. */
usi_error *usi_plot_metrics(const char *metrics_path, const char *png_path);

#endif
