#include "train/progress.h"

#include <string.h>

#include "util/clock.h"

#define WINDOW_S 10.0
#define TTY_REDRAW_S 0.2

void usi_meter_start(usi_meter *m, double interval_s)
{
    memset(m, 0, sizeof *m);
    m->interval = interval_s;
    m->last_print = usi_now();
    usi_meter_reset_window(m);
}

/* The window starts with a zero-image entry at "now", so the first step's
 * speed counts from here rather than from nothing. */
void usi_meter_reset_window(usi_meter *m)
{
    m->n = 1;
    m->head = 0;
    m->times[0] = usi_now();
    m->images[0] = m->total;
}

void usi_meter_step(usi_meter *m, int64_t images)
{
    m->total += images;
    m->head = (m->head + 1) % USI_METER_SLOTS;
    m->times[m->head] = usi_now();
    m->images[m->head] = m->total;
    if (m->n < USI_METER_SLOTS) m->n++;
}

double usi_meter_rate(const usi_meter *m)
{
    if (m->n < 2) return 0;
    double t_new = m->times[m->head];
    /* The oldest entry still inside the window, but never the newest. */
    int32_t k = 1, oldest = (m->head - 1 + USI_METER_SLOTS) % USI_METER_SLOTS;
    for (; k < m->n; k++) {
        int32_t i = (m->head - k + USI_METER_SLOTS) % USI_METER_SLOTS;
        oldest = i;
        if (t_new - m->times[i] >= WINDOW_S) break;
    }
    double dt = t_new - m->times[oldest];
    return dt > 0 ? (double)(m->images[m->head] - m->images[oldest]) / dt : 0;
}

int usi_meter_due(usi_meter *m, int tty, int epoch_end)
{
    double now = usi_now(), gap = tty ? TTY_REDRAW_S : m->interval;
    if (!epoch_end && now - m->last_print < gap) return 0;
    m->last_print = now;
    return 1;
}
