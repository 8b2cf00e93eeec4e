/* A backbone's options travel with its weights: checkpoints and weights
 * files store them ("backbone_options" metadata), and whoever loads the file
 * by the backbone's name takes the options it did not set itself. A file
 * whose network differs from timm's model of the same name at timm's
 * defaults is flagged, since timm would load it and compute something else. */
#include "train/options.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "graph/graph.h"
#include "plugin/call.h"
#include "plugin/params.h"
#include "util/error.h"

/* Options that change neither the network's weights nor what it computes
 * at inference. */
static int inference_neutral(const char *name)
{
    return !strcmp(name, "num_classes") || !strcmp(name, "drop_rate") || !strcmp(name, "drop_path_rate");
}

static usi_error *copy_option(usi_params *dst, const usi_params *src, const usi_param_desc *d)
{
    int64_t i;
    double f, list[64];
    int32_t b;
    const char *s;
    size_t n;
    switch (d->type) {
    case USI_PARAM_INT:
        USI_TRY(usi_params_get_int(src, d->name, &i));
        return usi_params_set_int(dst, d->name, i);
    case USI_PARAM_FLOAT:
        USI_TRY(usi_params_get_float(src, d->name, &f));
        return usi_params_set_float(dst, d->name, f);
    case USI_PARAM_BOOL:
        USI_TRY(usi_params_get_bool(src, d->name, &b));
        return usi_params_set_bool(dst, d->name, b);
    case USI_PARAM_STRING:
        USI_TRY(usi_params_get_string(src, d->name, &s));
        return usi_params_set_string(dst, d->name, s);
    default:
        USI_TRY(usi_params_get_float_list(src, d->name, list, 64, &n));
        return usi_params_set_float_list(dst, d->name, list, n);
    }
}

/* The signature of the backbone built with p on a [1, in_chans, side, side]
 * input, recorded only; 0 when it does not build. */
static uint64_t signature(const usi_component *bb, const usi_params *p, int64_t side)
{
    int64_t chans = 3;
    if (usi_params_has(p, "in_chans")) usi_error_free(usi_params_get_int(p, "in_chans", &chans));
    void *inst = NULL;
    usi_error *e = usi_call_create(bb, p, &inst);
    if (e) {
        usi_error_free(e);
        return 0;
    }
    usi_graph *g = usi_graph_new(usi_device_cpu(), 0, 0);
    int64_t shape[4] = {1, chans, side, side};
    usi_tensor *x = g ? usi_graph_input(g, "images", USI_DTYPE_F32, 4, shape) : NULL, *out = NULL;
    e = x ? usi_call_build_backbone(g, bb, inst, x, &out) : usi_error_new(USI_ERR_NOMEM, "out of memory");
    uint64_t sig = e ? 0 : usi_graph_signature(g);
    usi_error_free(e);
    usi_graph_free(g);
    usi_call_destroy(bb, inst);
    return sig;
}

/* "name = value" settings of a that b lacks, joined with ", ". */
static void differing(const usi_params *a, const usi_params *b, usi_strbuf *out)
{
    usi_strbuf ta = {0}, tb = {0};
    usi_params_write(a, &ta, 0);
    usi_params_write(b, &tb, 0);
    for (char *line = ta.data ? strtok(ta.data, "\n") : NULL; line; line = strtok(NULL, "\n")) {
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(line, " ="), line);
        if (inference_neutral(name)) continue;
        size_t len = strlen(line);
        const char *at = tb.data;
        int found = 0;
        while (at && (at = strstr(at, line)) != NULL) {
            if ((at == tb.data || at[-1] == '\n') && (at[len] == '\n' || !at[len])) found = 1;
            at += len;
        }
        if (!found) usi_strbuf_addf(out, "%s%.*s", out->len ? ", " : "", (int)(len - (len && line[len - 1] == ';')), line);
    }
    usi_strbuf_free(&ta);
    usi_strbuf_free(&tb);
}

int usi_backbone_is_timm_default(const usi_component *bb, const usi_params *p, int64_t side, usi_strbuf *diff)
{
    usi_params *d = usi_params_new(bb);
    if (!d) return 1;
    for (size_t i = 0; i < bb->n_params; i++) {
        const usi_param_desc *pd = usi_component_param(bb, i);
        if (inference_neutral(pd->name)) usi_error_free(copy_option(d, p, pd));
    }
    uint64_t mine = signature(bb, p, side), timm = signature(bb, d, side);
    int same = mine && mine == timm;
    if (!same && diff) differing(p, d, diff);
    usi_params_free(d);
    return same;
}

usi_error *usi_backbone_options_from_file(usi_params *p, const char *text, const char *path, usi_strbuf *taken)
{
    if (!text || !*text) return NULL;
    const usi_component *bb = usi_params_component(p);
    usi_params *f = usi_params_new(bb);
    if (!f) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    char origin[1100];
    snprintf(origin, sizeof origin, "%s: backbone_options", path);
    usi_error *e = usi_params_from_text(f, text, origin);
    for (size_t i = 0; !e && i < bb->n_params; i++) {
        const usi_param_desc *d = usi_component_param(bb, i);
        if (usi_params_is_set(p, d->name) || !usi_params_is_set(f, d->name)) continue;
        e = copy_option(p, f, d);
        if (!e && taken) usi_strbuf_addf(taken, "%s%s", taken->len ? ", " : "", d->name);
    }
    usi_params_free(f);
    return e;
}
