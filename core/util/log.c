#include "util/log.h"

#include <stdio.h>
#include <usi/plugin.h>

static int32_t min_level = USI_LOG_INFO;
static _Thread_local char last_error[2048];

void usi_log_set_level(int32_t level) { min_level = level; }
int32_t usi_log_level(void) { return min_level; }

void usi_vlog(int32_t level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    if (level >= USI_LOG_ERROR) {
        va_list copy;
        va_copy(copy, ap);
        vsnprintf(last_error, sizeof last_error, fmt, copy);
        va_end(copy);
    }
    if (level < min_level) return;
    if (level < USI_LOG_DEBUG) level = USI_LOG_DEBUG;
    if (level > USI_LOG_ERROR) level = USI_LOG_ERROR;
    /* One fprintf per line keeps lines from threads whole. */
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "usi: %s: %s\n", names[level], line);
}

void usi_log(int32_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usi_vlog(level, fmt, ap);
    va_end(ap);
}

const char *usi_log_last_error(void) { return last_error; }
void usi_log_clear_last_error(void) { last_error[0] = 0; }
