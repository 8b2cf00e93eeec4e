/* The core's one output sink for people: log lines ("usi: warning: ..."),
 * plain report lines (an epoch's accuracy) and the training progress line
 * all go through here, so one level decides what is shown (`usi -q` keeps
 * errors only, progress included) and a progress line redrawn in place on a
 * terminal is ended before any other line is written. */
#ifndef USI_CORE_LOG_H
#define USI_CORE_LOG_H

#include <stdarg.h>
#include <stdint.h>

void usi_log_set_level(int32_t level); /* USI_LOG_*; default USI_LOG_INFO */
int32_t usi_log_level(void);
/* In a run of several processes: lines name the rank ("usi[rank 1/2]: ..."),
 * and ranks other than 0 show warnings and errors only, since rank 0 speaks
 * for the job. world <= 1 restores the plain prefix. */
void usi_log_set_rank(int32_t rank, int32_t world);
/* 1 on the rank that reports for the job (rank 0, or a single process). */
int32_t usi_log_is_reporter(void);

void usi_log(int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void usi_vlog(int32_t level, const char *fmt, va_list ap);
/* A plain line without the "usi: info:" prefix (results people read), shown
 * when level passes the filter. */
void usi_say(int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The progress line, at info level: on a terminal it is redrawn in place and
 * stays open until the next line of any kind; elsewhere it is a line. */
void usi_progress(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
/* 1 when stderr is a terminal (progress is redrawn in place). */
int32_t usi_log_is_tty(void);
/* End an open progress line (before output that bypasses this sink). */
void usi_log_end_progress(void);

/* The last line this thread logged at USI_LOG_ERROR since the last clear,
 * whether or not the level let it through; "" when none. A plugin that
 * fails by logging and returning NULL leaves its reason here, where the
 * caller can put it in a report (usi bench's table). */
const char *usi_log_last_error(void);
void usi_log_clear_last_error(void);

#endif
