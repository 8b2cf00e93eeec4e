/* The core's log: lines on stderr, filtered by level. */
#ifndef USI_CORE_LOG_H
#define USI_CORE_LOG_H

#include <stdarg.h>
#include <stdint.h>

void usi_log_set_level(int32_t level); /* USI_LOG_*; default USI_LOG_INFO */
int32_t usi_log_level(void);
void usi_log(int32_t level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void usi_vlog(int32_t level, const char *fmt, va_list ap);

/* The last line this thread logged at USI_LOG_ERROR since the last clear,
 * whether or not the level let it through; "" when none. A plugin that
 * fails by logging and returning NULL leaves its reason here, where the
 * caller can put it in a report (usi bench's table). */
const char *usi_log_last_error(void);
void usi_log_clear_last_error(void);

#endif
