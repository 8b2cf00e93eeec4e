#include "util/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Returned when even an error can't be allocated; never freed. */
static usi_error oom_error = {USI_ERR_NOMEM, (char *)"out of memory"};

static char *vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0) return NULL;
    return s;
}

usi_error *usi_error_new(int32_t code, const char *fmt, ...)
{
    usi_error *e = malloc(sizeof *e);
    if (!e) return &oom_error;
    va_list ap;
    va_start(ap, fmt);
    e->message = vformat(fmt, ap);
    va_end(ap);
    if (!e->message) {
        free(e);
        return &oom_error;
    }
    e->code = code;
    return e;
}

usi_error *usi_error_prefix(usi_error *e, const char *fmt, ...)
{
    if (!e || e == &oom_error) return e;
    va_list ap;
    va_start(ap, fmt);
    char *prefix = vformat(fmt, ap);
    va_end(ap);
    char *joined = NULL;
    if (prefix && asprintf(&joined, "%s%s", prefix, e->message) >= 0) {
        free(e->message);
        e->message = joined;
    }
    free(prefix);
    return e;
}

void usi_error_free(usi_error *e)
{
    if (!e || e == &oom_error) return;
    free(e->message);
    free(e);
}

const char *usi_error_message(const usi_error *e)
{
    return e ? e->message : "no error";
}
