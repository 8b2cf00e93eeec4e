/* The monotonic clock, for durations (progress speed, reduction waits). */
#ifndef USI_CORE_CLOCK_H
#define USI_CORE_CLOCK_H

/* Seconds on CLOCK_MONOTONIC. */
double usi_now(void);

#endif
