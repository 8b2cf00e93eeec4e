#include "bench/csv.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/decode.h"
#include "util/error.h"

/* Enough for any table a person writes; a longer line is an error. */
enum { MAX_FIELDS = 64 };

static void free_fields(char **f, size_t n)
{
    for (size_t i = 0; i < n; i++) free(f[i]);
}

int usi_csv_split(const char *line, char **fields, size_t cap, size_t *n)
{
    *n = 0;
    const char *p = line;
    for (;;) {
        usi_strbuf b = {0};
        usi_strbuf_addf(&b, "%s", ""); /* an empty field is "", not NULL */
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '"') {
            for (p++;; p++) {
                if (!*p) goto bad;
                if (*p == '"' && p[1] == '"') {
                    usi_strbuf_addf(&b, "\"");
                    p++;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    usi_strbuf_addf(&b, "%c", *p);
                }
            }
            while (*p == ' ' || *p == '\t') p++;
            if (*p && *p != ',') goto bad;
        } else {
            const char *end = p + strcspn(p, ",");
            if (memchr(p, '"', (size_t)(end - p))) goto bad;
            const char *last = end;
            while (last > p && (last[-1] == ' ' || last[-1] == '\t')) last--;
            usi_strbuf_addf(&b, "%.*s", (int)(last - p), p);
            p = end;
        }
        if (!b.data || *n == cap) goto bad;
        fields[(*n)++] = b.data;
        if (!*p) return 0;
        p++; /* the comma */
        continue;
    bad:
        usi_strbuf_free(&b);
        free_fields(fields, *n);
        *n = 0;
        return -1;
    }
}

void usi_csv_add_field(usi_strbuf *b, const char *s)
{
    if (!strpbrk(s, ",\"\r\n") && s[0] != ' ' && s[0] != '#') {
        usi_strbuf_addf(b, "%s", s);
        return;
    }
    usi_strbuf_addf(b, "\"");
    for (const char *p = s; *p; p++) {
        if (*p == '"') usi_strbuf_addf(b, "\"\"");
        else if (*p == '\n' || *p == '\r') usi_strbuf_addf(b, " ");
        else usi_strbuf_addf(b, "%c", *p);
    }
    usi_strbuf_addf(b, "\"");
}

void usi_accuracy_free(usi_accuracy *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->names[i]);
    free(a->names);
    free(a->top1);
    memset(a, 0, sizeof *a);
}

double usi_accuracy_find(const usi_accuracy *a, const char *name)
{
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->names[i], name)) return a->top1[i];
    return NAN;
}

/* The header's columns of the backbone name and its top-1. */
static usi_error *header(char **f, size_t n, const char *origin, long line, size_t *name_col, size_t *top1_col)
{
    *name_col = *top1_col = n;
    for (size_t i = 0; i < n; i++) {
        if (!strcasecmp(f[i], "backbone")) *name_col = i;
        else if (!strcasecmp(f[i], "top1")) *top1_col = i;
    }
    if (*name_col < n && *top1_col < n) return NULL;
    return usi_error_new(USI_ERR_INVALID, "%s:%ld: the header needs the columns 'backbone' and 'top1' (e.g. "
                         "\"backbone,top1\"), not '%s%s'", origin, line, n ? f[0] : "", n > 1 ? ",..." : "");
}

static usi_error *push(usi_accuracy *a, const char *name, double top1)
{
    char **names = realloc(a->names, (a->n + 1) * sizeof *names);
    if (!names) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    a->names = names;
    double *t = realloc(a->top1, (a->n + 1) * sizeof *t);
    if (!t) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    a->top1 = t;
    if (!(a->names[a->n] = strdup(name))) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    a->top1[a->n++] = top1;
    return NULL;
}

static usi_error *parse_top1(const char *s, const char *origin, long line, double *out)
{
    *out = NAN;
    if (!*s) return NULL;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= 0 && v <= 100))
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: top1 '%s' is not a percentage between 0 and 100 "
                             "(leave the field empty when it is unknown)", origin, line, s);
    *out = v;
    return NULL;
}

/* One data line; lines_of[i] is the line backbone i was given on. */
static usi_error *row(usi_accuracy *a, long **lines_of, char **f, size_t n, size_t n_header, size_t name_col,
                      size_t top1_col, const char *origin, long line)
{
    if (n != n_header)
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: %zu field%s but the header has %zu columns", origin, line, n,
                             n == 1 ? "" : "s", n_header);
    if (!*f[name_col]) return usi_error_new(USI_ERR_INVALID, "%s:%ld: the backbone name is empty", origin, line);
    for (size_t i = 0; i < a->n; i++)
        if (!strcmp(a->names[i], f[name_col]))
            return usi_error_new(USI_ERR_INVALID, "%s:%ld: backbone '%s' is given twice (also on line %ld)", origin,
                                 line, f[name_col], (*lines_of)[i]);
    double top1;
    USI_TRY(parse_top1(f[top1_col], origin, line, &top1));
    long *l = realloc(*lines_of, (a->n + 1) * sizeof *l);
    if (!l) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    *lines_of = l;
    l[a->n] = line;
    return push(a, f[name_col], top1);
}

usi_error *usi_accuracy_parse(const char *text, const char *origin, usi_accuracy *out)
{
    memset(out, 0, sizeof *out);
    usi_error *e = NULL;
    size_t n_header = 0, name_col = 0, top1_col = 0;
    long line = 0, *lines_of = NULL;
    char *buf = NULL;
    for (const char *p = text; *p && !e;) {
        size_t len = strcspn(p, "\n");
        line++;
        free(buf);
        if (!(buf = strndup(p, len))) {
            e = usi_error_new(USI_ERR_NOMEM, "out of memory");
            break;
        }
        p += len + (p[len] == '\n');
        if (len && buf[len - 1] == '\r') buf[len - 1] = 0;
        const char *s = buf + strspn(buf, " \t");
        if (!*s || *s == '#') continue;
        char *f[MAX_FIELDS];
        size_t n;
        if (usi_csv_split(s, f, MAX_FIELDS, &n)) {
            e = usi_error_new(USI_ERR_INVALID, "%s:%ld: not a CSV line (an unclosed quote, a quote inside a bare "
                              "field, or more than %d fields)", origin, line, MAX_FIELDS);
            break;
        }
        if (!n_header) {
            e = header(f, n, origin, line, &name_col, &top1_col);
            n_header = n;
        } else {
            e = row(out, &lines_of, f, n, n_header, name_col, top1_col, origin, line);
        }
        free_fields(f, n);
    }
    free(buf);
    free(lines_of);
    if (!e && !n_header)
        e = usi_error_new(USI_ERR_INVALID, "%s: no header line; the file needs one naming the columns, e.g. "
                          "\"backbone,top1\"", origin);
    if (e) usi_accuracy_free(out);
    return e;
}

usi_error *usi_accuracy_load(const char *path, usi_accuracy *out)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf = NULL;
    size_t cap = 0, len = 0;
    usi_error *e = usi_read_file(path, &buf, &cap, &len);
    if (e) {
        free(buf);
        return usi_error_prefix(e, "%s: ", path);
    }
    char *text = malloc(len + 1);
    if (!text) e = usi_error_new(USI_ERR_NOMEM, "out of memory");
    else {
        memcpy(text, buf, len);
        text[len] = 0;
        if (strlen(text) != len) e = usi_error_new(USI_ERR_INVALID, "%s: not a text file (it holds NUL bytes)", path);
        else e = usi_accuracy_parse(text, path, out);
    }
    free(text);
    free(buf);
    return e;
}
