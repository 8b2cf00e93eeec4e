/* Reading a run's metrics.jsonl into the series the plot draws. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/plot_internal.h"
#include "util/error.h"

/* Append (x, y). A resumed run logs steps again from its checkpoint: points
 * at or past x are superseded by the new ones, so the curve never runs back. */
static usi_error *series_push(usi_plot_series *s, double x, double y)
{
    while (s->n && s->x[s->n - 1] >= x) s->n--;
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny) return usi_error_new(USI_ERR_NOMEM, "out of memory");
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return NULL;
}

static void series_free(usi_plot_series *s)
{
    free(s->x);
    free(s->y);
}

/* *v = obj[key] when present (*has = 1); a present non-number is an error. */
static usi_error *number(const cJSON *obj, const char *key, const char *path, long line, double *v, int *has)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *has = it != NULL && !cJSON_IsNull(it); /* null: a value that was not finite, not drawn */
    if (!*has) return NULL;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: \"%s\" is not a finite number", path, line, key);
    *v = it->valuedouble;
    return NULL;
}

static usi_error *read_line(const char *text, const char *path, long line, usi_plot_curves *c)
{
    cJSON *o = cJSON_Parse(text);
    if (!o || !cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return usi_error_new(USI_ERR_INVALID, "%s:%ld: not a JSON object: %.60s", path, line, text);
    }
    double step = 0, loss = 0, lr = 0, epoch = 0, top1 = 0, ema = 0, val = 0;
    int has_step = 0, has_loss = 0, has_lr = 0, has_epoch = 0, has_top1 = 0, has_ema = 0, has_val = 0;
    usi_error *e = number(o, "step", path, line, &step, &has_step);
    if (!e) e = number(o, "loss", path, line, &loss, &has_loss);
    if (!e) e = number(o, "lr", path, line, &lr, &has_lr);
    if (!e) e = number(o, "epoch", path, line, &epoch, &has_epoch);
    if (!e) e = number(o, "top1", path, line, &top1, &has_top1);
    if (!e) e = number(o, "ema_top1", path, line, &ema, &has_ema);
    if (!e) e = number(o, "val_loss", path, line, &val, &has_val);
    cJSON_Delete(o);
    if (e) return e;
    if (has_loss && has_step) USI_TRY(series_push(&c->loss, step, loss));
    if (has_lr && has_step) USI_TRY(series_push(&c->lr, step, lr));
    if (has_val && has_step) USI_TRY(series_push(&c->val_loss, step, val));
    if (has_top1 && has_epoch) USI_TRY(series_push(&c->top1, epoch, top1));
    if (has_ema && has_epoch) USI_TRY(series_push(&c->ema, epoch, ema));
    return NULL;
}

usi_error *usi_plot_read(const char *path, usi_plot_curves *c)
{
    FILE *f = fopen(path, "r");
    if (!f) return usi_error_new(USI_ERR_IO, "cannot open %s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t cap = 0;
    long line = 0;
    usi_error *e = NULL;
    while (!e && getline(&buf, &cap, f) >= 0) {
        line++;
        const char *p = buf;
        while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
        if (*p) e = read_line(p, path, line, c);
    }
    if (!e && ferror(f)) e = usi_error_new(USI_ERR_IO, "cannot read %s", path);
    free(buf);
    fclose(f);
    return e;
}

void usi_plot_curves_free(usi_plot_curves *c)
{
    series_free(&c->loss);
    series_free(&c->lr);
    series_free(&c->val_loss);
    series_free(&c->top1);
    series_free(&c->ema);
}

void usi_plot_smooth(const double *y, size_t n, double *out)
{
    double span = (double)n / 10.0;
    span = span < 2 ? 2 : span > 50 ? 50 : span;
    double beta = 1.0 - 2.0 / (span + 1.0), avg = 0.0, weight = 0.0;
    for (size_t i = 0; i < n; i++) {
        avg = beta * avg + (1.0 - beta) * y[i];
        weight = beta * weight + (1.0 - beta); /* 1 - beta^(i+1): undoes the start at 0 */
        out[i] = avg / weight;
    }
}
