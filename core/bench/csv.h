/* The bench's CSV files: the accuracy table it reads (backbone -> ImageNet
 * top-1) and the results it writes (bench.csv). Both are plain RFC 4180
 * text, one record per line: comma-separated, a field quoted with "..."
 * when it holds a comma or a quote (a quote inside doubled). Lines starting
 * with '#' are comments, so a shipped table can say where its numbers come
 * from. */
#ifndef USI_BENCH_CSV_H
#define USI_BENCH_CSV_H

#include <stddef.h>
#include <usi/plugin.h>

#include "util/strutil.h"

/* Top-1 accuracy (%) by backbone name. */
typedef struct usi_accuracy {
    char **names;
    double *top1;      /* NAN where the file leaves the field empty */
    size_t n;
} usi_accuracy;

/* Parse `text`: after comments and blank lines, a header that names the
 * columns "backbone" and "top1" (others, such as a source or the paper's
 * name, are ignored, so bench.csv itself is a valid accuracy table), then
 * one line per backbone. An empty top1 is "unknown". Errors name
 * origin:line and what is wrong: a missing column, a line with another
 * number of fields than the header, an empty name, a top1 that is not a
 * number in [0, 100], a backbone given twice. */
usi_error *usi_accuracy_parse(const char *text, const char *origin, usi_accuracy *out);
/* usi_accuracy_parse of a file's contents; the error names the file. */
usi_error *usi_accuracy_load(const char *path, usi_accuracy *out);
/* The top-1 of name, or NAN when the table does not know it. */
double usi_accuracy_find(const usi_accuracy *a, const char *name);
void usi_accuracy_free(usi_accuracy *a);

/* Split one CSV line (no line break) into at most cap fields, unquoting
 * them into fresh strings; *n gets the count. Returns 0, or -1 on an
 * unterminated quote, a quote in the middle of a bare field, more than
 * cap fields, or out of memory (the fields made so far are freed). */
int usi_csv_split(const char *line, char **fields, size_t cap, size_t *n);
/* Append s as one CSV field, quoted only when it needs to be; line breaks
 * become spaces, so a record stays one line. */
void usi_csv_add_field(usi_strbuf *b, const char *s);

#endif
