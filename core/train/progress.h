/* When to print the training progress line and what speed it shows.
 *
 * Speed is images per second over a recent window (the last ~10 s of steps),
 * not the epoch's average, so it reflects what the run does now. On a
 * terminal the line is redrawn at most a few times a second; in a log file
 * it comes every `interval` seconds (and at each epoch's end), so a log
 * shows progress whatever the data size. */
#ifndef USI_TRAIN_PROGRESS_H
#define USI_TRAIN_PROGRESS_H

#include <stdint.h>

#define USI_METER_SLOTS 64

typedef struct usi_meter {
    double interval;                 /* seconds between lines off a terminal */
    double last_print;
    double times[USI_METER_SLOTS];   /* ring: end time of recent steps       */
    int64_t images[USI_METER_SLOTS]; /* ring: images done by then (running)  */
    int32_t n, head;
    int64_t total;
} usi_meter;

/* A new meter; starts timing now. */
void usi_meter_start(usi_meter *m, double interval_s);
/* Restart the window (after evaluation, which is not training speed). */
void usi_meter_reset_window(usi_meter *m);
/* A step that trained `images` images (over all ranks) has just ended. */
void usi_meter_step(usi_meter *m, int64_t images);
/* Images per second over the recent window; 0 before two steps. */
double usi_meter_rate(const usi_meter *m);
/* 1 when a progress line is due now (then it counts as printed). */
int usi_meter_due(usi_meter *m, int tty, int epoch_end);

#endif
