/* Small string helpers shared by the core. */
#ifndef USI_CORE_STRUTIL_H
#define USI_CORE_STRUTIL_H

#include <stddef.h>

/* Levenshtein distance, for "did you mean" suggestions. */
size_t usi_edit_distance(const char *a, const char *b);
/* 1 when s ends with suffix. */
int usi_ends_with(const char *s, const char *suffix);
/* A growable string. */
typedef struct usi_strbuf {
    char *data;
    size_t len, cap;
} usi_strbuf;
void usi_strbuf_addf(usi_strbuf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A double that reads back exactly and stays a float in libconfig ("5.0"). */
void usi_strbuf_add_double(usi_strbuf *b, double v);
/* A libconfig string literal: quotes, with \\ \" and control escapes. */
void usi_strbuf_add_quoted(usi_strbuf *b, const char *s);
void usi_strbuf_free(usi_strbuf *b);

#endif
