#include "util/log.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>
#include <usi/plugin.h>

static int32_t min_level = USI_LOG_INFO;
static int32_t my_rank, my_world = 1;
/* Loader threads log too: the open-line state and the writes share a lock. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static int progress_open; /* a progress line without its newline is on the terminal */
static int tty = -1;
static _Thread_local char last_error[2048];

void usi_log_set_level(int32_t level) { min_level = level; }
int32_t usi_log_level(void) { return min_level; }

void usi_log_set_rank(int32_t rank, int32_t world)
{
    my_rank = world > 1 ? rank : 0;
    my_world = world > 1 ? world : 1;
}

int32_t usi_log_is_reporter(void) { return my_rank == 0; }

int32_t usi_log_is_tty(void)
{
    if (tty < 0) tty = isatty(2);
    return tty;
}

static int shown(int32_t level)
{
    if (level < min_level) return 0;
    return my_rank == 0 || level >= USI_LOG_WARN;
}

/* Called with mu held; one fputs per line keeps lines from threads whole. */
static void put_line(const char *text)
{
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
    fputs(text, stderr);
    fflush(stderr);
}

static void prefix(char *buf, size_t cap)
{
    if (my_world > 1) snprintf(buf, cap, "usi[rank %d/%d]", (int)my_rank, (int)my_world);
    else snprintf(buf, cap, "usi");
}

void usi_vlog(int32_t level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    if (!fmt) return;
    if (level >= USI_LOG_ERROR) {
        va_list copy;
        va_copy(copy, ap);
        vsnprintf(last_error, sizeof last_error, fmt, copy);
        va_end(copy);
    }
    if (!shown(level)) return;
    if (level < USI_LOG_DEBUG) level = USI_LOG_DEBUG;
    if (level > USI_LOG_ERROR) level = USI_LOG_ERROR;
    char msg[2048], who[48], line[2200];
    vsnprintf(msg, sizeof msg, fmt, ap);
    prefix(who, sizeof who);
    snprintf(line, sizeof line, "%s: %s: %s\n", who, names[level], msg);
    pthread_mutex_lock(&mu);
    put_line(line);
    pthread_mutex_unlock(&mu);
}

void usi_log(int32_t level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    usi_vlog(level, fmt, ap);
    va_end(ap);
}

void usi_say(int32_t level, const char *fmt, ...)
{
    if (!shown(level)) return;
    char line[2200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    size_t len = (size_t)n < sizeof line - 2 ? (size_t)n : sizeof line - 2;
    line[len] = '\n';
    line[len + 1] = 0;
    pthread_mutex_lock(&mu);
    put_line(line);
    pthread_mutex_unlock(&mu);
}

void usi_progress(const char *fmt, ...)
{
    if (!shown(USI_LOG_INFO)) return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&mu);
    if (usi_log_is_tty()) {
        /* Redrawn in place; "erase to end of line" clears a longer old one. */
        fprintf(stderr, "\r%s\033[K", text);
        progress_open = 1;
    } else {
        fprintf(stderr, "%s\n", text);
    }
    fflush(stderr);
    pthread_mutex_unlock(&mu);
}

void usi_log_end_progress(void)
{
    pthread_mutex_lock(&mu);
    if (progress_open) fputc('\n', stderr);
    progress_open = 0;
    fflush(stderr);
    pthread_mutex_unlock(&mu);
}

const char *usi_log_last_error(void) { return last_error; }
void usi_log_clear_last_error(void) { last_error[0] = 0; }
