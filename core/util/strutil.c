#include "util/strutil.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t usi_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t *row = malloc((lb + 1) * sizeof *row);
    if (!row) return la > lb ? la : lb;
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    size_t d = row[lb];
    free(row);
    return d;
}

int usi_ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

void usi_strbuf_addf(usi_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + (size_t)n + 1) cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p) return;
        b->data = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void usi_strbuf_add_double(usi_strbuf *b, double v)
{
    char buf[64];
    snprintf(buf, sizeof buf, "%.17g", v);
    /* Shortest form that round-trips, so 0.95 does not print as 0.94999... */
    for (int prec = 1; prec < 17; prec++) {
        char tmp[64];
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) {
            memcpy(buf, tmp, sizeof tmp);
            break;
        }
    }
    /* %g writes whole numbers of more digits than it keeps as 1e+01: a
     * plain decimal reads better (10.0) where it is exact and not long. */
    if (strchr(buf, 'e') && fabs(v) >= 1 && fabs(v) < 1e15) {
        char tmp[64];
        for (int dec = 0; dec < 17; dec++) {
            snprintf(tmp, sizeof tmp, "%.*f", dec, v);
            if (strtod(tmp, NULL) == v) {
                memcpy(buf, tmp, sizeof tmp);
                break;
            }
        }
    }
    if (!strpbrk(buf, ".eEni")) strcat(buf, ".0");
    usi_strbuf_addf(b, "%s", buf);
}

void usi_strbuf_add_quoted(usi_strbuf *b, const char *s)
{
    usi_strbuf_addf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') usi_strbuf_addf(b, "\\%c", *p);
        else if (*p == '\n') usi_strbuf_addf(b, "\\n");
        else if (*p == '\t') usi_strbuf_addf(b, "\\t");
        else if (*p < 0x20) usi_strbuf_addf(b, "\\x%02x", *p);
        else usi_strbuf_addf(b, "%c", *p);
    }
    usi_strbuf_addf(b, "\"");
}

void usi_strbuf_free(usi_strbuf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
