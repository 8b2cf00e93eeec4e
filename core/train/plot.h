/* Training curves from a run's metrics.jsonl, drawn with cairo: one drawing
 * routine renders to a PNG or an SVG surface. */
#ifndef USI_TRAIN_PLOT_H
#define USI_TRAIN_PLOT_H

#include <usi/plugin.h>

/* The picture: two panels side by side. The left half [0, W/2) plots the
 * training loss against the step (raw and smoothed), the validation loss
 * when the epoch lines carry "val_loss", and the learning rate on a second
 * axis at the right; the right half [W/2, W) plots top-1 (and EMA top-1
 * when the run kept an EMA) against the epoch. */
#define USI_PLOT_WIDTH 960
#define USI_PLOT_HEIGHT 400
#define USI_PLOT_LOSS_RAW_RGB 0xaec7e8u /* light blue, thin: every logged loss  */
#define USI_PLOT_LOSS_RGB 0x1f77b4u     /* blue: the smoothed loss              */
#define USI_PLOT_VAL_LOSS_RGB 0xd62728u /* red                                  */
#define USI_PLOT_LR_RGB 0x9467bdu       /* purple, dashed, right-hand axis      */
#define USI_PLOT_TOP1_RGB 0xff7f0eu     /* orange                               */
#define USI_PLOT_EMA_RGB 0x2ca02cu      /* green                                */

/* Read metrics_path (lines as the trainer writes them: {"step", "loss",
 * "lr", ...} per logging step and {"epoch", "step", "top1", "ema_top1",
 * "val_loss", ...} per epoch; other lines, e.g. the teacher's accuracy, are
 * skipped) and write out_path: SVG when its name ends in ".svg", else PNG,
 * replaced atomically. A line that is not a JSON object, or holds a
 * non-number where a number belongs, is an error naming the file and line.
 * When a resumed run logs a step or epoch again, the later values replace
 * the earlier ones. */
usi_error *usi_plot_metrics(const char *metrics_path, const char *out_path);

#endif
