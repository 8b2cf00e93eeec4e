#include "plugin/params.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

typedef struct value {
    const usi_param_desc *desc;
    int set;            /* given by the user, not the schema's default */
    int64_t i;          /* INT, BOOL */
    double f;           /* FLOAT */
    char *s;            /* STRING */
    double *list;       /* FLOAT_LIST */
    size_t list_len;
} value;

struct usi_params {
    const usi_component *comp;
    size_t n;
    value *values;
};

const usi_param_desc *usi_component_param(const usi_component *c, size_t i)
{
    if (!c->params || i >= c->n_params) return NULL;
    size_t stride = c->params->struct_size;
    return (const usi_param_desc *)((const char *)c->params + i * stride);
}

const char *usi_param_type_name(int32_t type)
{
    switch (type) {
    case USI_PARAM_INT: return "int";
    case USI_PARAM_FLOAT: return "float";
    case USI_PARAM_BOOL: return "bool";
    case USI_PARAM_STRING: return "string";
    case USI_PARAM_FLOAT_LIST: return "float list";
    default: return "unknown";
    }
}

/* Parse "a, b, c" into doubles. Returns the count, or -1 on a bad item. */
static long parse_float_list(const char *s, double *out, size_t cap)
{
    long n = 0;
    const char *p = s ? s : "";
    while (*p) {
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        char *end;
        double v = strtod(p, &end);
        if (end == p) return -1;
        if (out && (size_t)n < cap) out[n] = v;
        n++;
        p = end;
        while (isspace((unsigned char)*p)) p++;
        if (*p == ',') p++;
        else if (*p) return -1;
    }
    return n;
}

static int in_choices(const char *choices, const char *v)
{
    if (!choices) return 1;
    size_t lv = strlen(v);
    for (const char *p = choices; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == lv && strncmp(p, v, len) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

static const char *kind_word(int32_t kind)
{
    switch (kind) {
    case USI_KIND_BACKBONE: return "backbone";
    case USI_KIND_TEACHER: return "teacher";
    case USI_KIND_AUGMENT: return "augment";
    default: return "section";
    }
}

/* "backbone 'resnet50'", "section 'data'". */
static const char *owner(const usi_component *c, char *buf, size_t cap)
{
    if (!c->kind && !*c->name) snprintf(buf, cap, "the top level");
    else snprintf(buf, cap, "%s '%s'", kind_word(c->kind), c->name);
    return buf;
}

static const char *a_type(int32_t type)
{
    switch (type) {
    case USI_PARAM_INT: return "an int";
    case USI_PARAM_FLOAT: return "a float";
    case USI_PARAM_BOOL: return "a bool (true/false)";
    case USI_PARAM_STRING: return "a string";
    case USI_PARAM_FLOAT_LIST: return "a list of numbers [a, b, ...]";
    default: return "a value";
    }
}

int usi_param_has_range(const usi_param_desc *d)
{
    if (d->type != USI_PARAM_INT && d->type != USI_PARAM_FLOAT && d->type != USI_PARAM_FLOAT_LIST)
        return 0;
    /* Both 0, the zero value, means none; so does min > max (1.0 plugins). */
    return d->min <= d->max && !(d->min == 0 && d->max == 0);
}

static usi_error *check_number(const usi_component *c, const usi_param_desc *d,
                               double v)
{
    char who[160];
    if (isnan(v))
        return usi_error_new(USI_ERR_INVALID, "option '%s' of %s is not a number (NaN)", d->name,
                             owner(c, who, sizeof who));
    if (usi_param_has_range(d) && (v < d->min || v > d->max))
        return usi_error_new(USI_ERR_INVALID,
                             "option '%s' of %s is %.15g, outside its range [%.15g, %.15g]",
                             d->name, owner(c, who, sizeof who), v, d->min, d->max);
    return NULL;
}

static int valid_name(const char *s)
{
    if (!s || !(islower((unsigned char)*s) || *s == '_')) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '_'))
            return 0;
    return 1;
}

usi_error *usi_schema_check(const usi_component *c)
{
    if (c->n_params && !c->params)
        return usi_error_new(USI_ERR_INVALID, "component '%s' declares %zu options but no table",
                             c->name, c->n_params);
    if (c->n_params && c->params->struct_size < USI_PARAM_DESC_STRUCT_SIZE_1_0)
        return usi_error_new(USI_ERR_VERSION,
                             "component '%s': option table entries are %zu bytes, ABI 1.0 needs %zu",
                             c->name, c->params->struct_size, (size_t)USI_PARAM_DESC_STRUCT_SIZE_1_0);
    for (size_t i = 0; i < c->n_params; i++) {
        const usi_param_desc *d = usi_component_param(c, i);
        if (!valid_name(d->name))
            return usi_error_new(USI_ERR_INVALID,
                                 "component '%s': option %zu has an invalid name '%s' (use [a-z_][a-z0-9_]*)",
                                 c->name, i, d->name ? d->name : "(null)");
        for (size_t j = 0; j < i; j++)
            if (strcmp(usi_component_param(c, j)->name, d->name) == 0)
                return usi_error_new(USI_ERR_INVALID, "component '%s' declares option '%s' twice",
                                     c->name, d->name);
        usi_error *e = NULL;
        switch (d->type) {
        case USI_PARAM_INT: e = check_number(c, d, (double)d->def_int); break;
        case USI_PARAM_FLOAT: e = check_number(c, d, d->def_float); break;
        case USI_PARAM_BOOL:
            if (d->def_int != 0 && d->def_int != 1)
                e = usi_error_new(USI_ERR_INVALID, "component '%s': bool option '%s' defaults to %lld",
                                  c->name, d->name, (long long)d->def_int);
            break;
        case USI_PARAM_STRING:
            if (!d->def_string)
                e = usi_error_new(USI_ERR_INVALID,
                                  "component '%s': string option '%s' has no default (its def_string is "
                                  "NULL); give it one%s%s",
                                  c->name, d->name, d->choices ? " of " : " (\"\" for none)",
                                  d->choices ? d->choices : "");
            else if (!in_choices(d->choices, d->def_string))
                e = usi_error_new(USI_ERR_INVALID,
                                  "component '%s': option '%s' default '%s' is not one of %s",
                                  c->name, d->name, d->def_string, d->choices);
            break;
        case USI_PARAM_FLOAT_LIST: {
            long n = parse_float_list(d->def_string, NULL, 0);
            if (n < 0)
                e = usi_error_new(USI_ERR_INVALID,
                                  "component '%s': option '%s' default '%s' is not a list of numbers",
                                  c->name, d->name, d->def_string ? d->def_string : "(null)");
            break;
        }
        default:
            e = usi_error_new(USI_ERR_VERSION, "component '%s': option '%s' has unknown type %d",
                              c->name, d->name, (int)d->type);
        }
        if (e) return usi_error_prefix(e, "schema: ");
    }
    return NULL;
}

void usi_param_default_format(const usi_param_desc *d, usi_strbuf *out)
{
    switch (d->type) {
    case USI_PARAM_INT: usi_strbuf_addf(out, "%lld", (long long)d->def_int); break;
    case USI_PARAM_FLOAT: usi_strbuf_add_double(out, d->def_float); break;
    case USI_PARAM_BOOL: usi_strbuf_addf(out, "%s", d->def_int ? "true" : "false"); break;
    case USI_PARAM_STRING: usi_strbuf_add_quoted(out, d->def_string); break;
    case USI_PARAM_FLOAT_LIST: usi_strbuf_addf(out, "[%s]", d->def_string ? d->def_string : ""); break;
    }
}

const char *usi_backbone_lacks_option(const usi_component *c)
{
    static const char *const host_set[] = {"num_classes", "img_size"};
    if (c->kind != USI_KIND_BACKBONE) return NULL;
    for (size_t k = 0; k < sizeof host_set / sizeof *host_set; k++) {
        int found = 0;
        for (size_t i = 0; i < c->n_params && !found; i++) {
            const usi_param_desc *d = usi_component_param(c, i);
            found = d->type == USI_PARAM_INT && !strcmp(d->name, host_set[k]);
        }
        if (!found) return host_set[k];
    }
    return NULL;
}

usi_params *usi_params_new(const usi_component *c)
{
    usi_params *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->comp = c;
    p->n = c->n_params;
    p->values = calloc(p->n ? p->n : 1, sizeof *p->values);
    if (!p->values) {
        free(p);
        return NULL;
    }
    for (size_t i = 0; i < p->n; i++) {
        const usi_param_desc *d = usi_component_param(c, i);
        value *v = &p->values[i];
        v->desc = d;
        v->i = d->def_int;
        v->f = d->def_float;
        if (d->type == USI_PARAM_STRING) v->s = strdup(d->def_string ? d->def_string : "");
        if (d->type == USI_PARAM_FLOAT_LIST) {
            long n = parse_float_list(d->def_string, NULL, 0);
            v->list = calloc(n > 0 ? (size_t)n : 1, sizeof(double));
            v->list_len = n > 0 ? (size_t)n : 0;
            parse_float_list(d->def_string, v->list, v->list_len);
        }
    }
    return p;
}

usi_params *usi_params_copy(const usi_params *src)
{
    usi_params *p = usi_params_new(src->comp);
    if (!p) return NULL;
    for (size_t i = 0; i < p->n; i++) {
        value *d = &p->values[i];
        const value *s = &src->values[i];
        char *str = s->s ? strdup(s->s) : NULL;
        double *list = s->list ? calloc(s->list_len ? s->list_len : 1, sizeof(double)) : NULL;
        if ((s->s && !str) || (s->list && !list)) {
            free(str);
            free(list);
            usi_params_free(p);
            return NULL;
        }
        if (list && s->list_len) memcpy(list, s->list, s->list_len * sizeof(double));
        free(d->s);
        free(d->list);
        *d = *s;
        d->s = str;
        d->list = list;
    }
    return p;
}

void usi_params_free(usi_params *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->n; i++) {
        free(p->values[i].s);
        free(p->values[i].list);
    }
    free(p->values);
    free(p);
}

const usi_component *usi_params_component(const usi_params *p) { return p->comp; }

void usi_params_names(const usi_params *p, usi_strbuf *out)
{
    for (size_t i = 0; i < p->n; i++)
        usi_strbuf_addf(out, "%s%s", i ? ", " : "", p->values[i].desc->name);
    if (!p->n) usi_strbuf_addf(out, "(none)");
}

static value *find(const usi_params *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->values[i].desc->name, name) == 0) return &p->values[i];
    return NULL;
}

int usi_params_has(const usi_params *p, const char *name) { return find(p, name) != NULL; }

int usi_params_is_set(const usi_params *p, const char *name)
{
    const value *v = find(p, name);
    return v && v->set;
}

static usi_error *lookup(const usi_params *p, const char *name, int32_t type,
                         value **out)
{
    value *v = find(p, name);
    if (!v) {
        usi_strbuf names = {0};
        usi_params_names(p, &names);
        char who[160];
        usi_error *e = usi_error_new(USI_ERR_INVALID,
                                     "%s has no option '%s'; its options are: %s",
                                     owner(p->comp, who, sizeof who), name,
                                     names.data ? names.data : "");
        usi_strbuf_free(&names);
        return e;
    }
    if (v->desc->type != type &&
        !(v->desc->type == USI_PARAM_FLOAT && type == USI_PARAM_INT)) {
        char who[160];
        return usi_error_new(USI_ERR_INVALID, "option '%s' of %s takes %s, not %s",
                             name, owner(p->comp, who, sizeof who), a_type(v->desc->type),
                             a_type(type));
    }
    *out = v;
    return NULL;
}

usi_error *usi_params_set_int(usi_params *p, const char *name, int64_t x)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_INT, &v));
    USI_TRY(check_number(p->comp, v->desc, (double)x));
    if (v->desc->type == USI_PARAM_FLOAT) v->f = (double)x;
    else v->i = x;
    v->set = 1;
    return NULL;
}

usi_error *usi_params_set_float(usi_params *p, const char *name, double x)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_FLOAT, &v));
    USI_TRY(check_number(p->comp, v->desc, x));
    v->f = x;
    v->set = 1;
    return NULL;
}

usi_error *usi_params_set_bool(usi_params *p, const char *name, int x)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_BOOL, &v));
    v->i = x ? 1 : 0;
    v->set = 1;
    return NULL;
}

usi_error *usi_params_set_string(usi_params *p, const char *name, const char *x)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_STRING, &v));
    if (!in_choices(v->desc->choices, x))
    {
        char who[160];
        return usi_error_new(USI_ERR_INVALID, "option '%s' of %s is \"%s\"; choose one of: %s",
                             name, owner(p->comp, who, sizeof who), x, v->desc->choices);
    }
    char *copy = strdup(x);
    if (!copy) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    free(v->s);
    v->s = copy;
    v->set = 1;
    return NULL;
}

usi_error *usi_params_set_float_list(usi_params *p, const char *name,
                                     const double *x, size_t n)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_FLOAT_LIST, &v));
    for (size_t i = 0; i < n; i++) USI_TRY(check_number(p->comp, v->desc, x[i]));
    double *copy = calloc(n ? n : 1, sizeof *copy);
    if (!copy) return usi_error_new(USI_ERR_NOMEM, "out of memory");
    if (n) memcpy(copy, x, n * sizeof *copy);
    free(v->list);
    v->list = copy;
    v->list_len = n;
    v->set = 1;
    return NULL;
}

void usi_params_write(const usi_params *p, usi_strbuf *out, int indent)
{
    for (size_t i = 0; i < p->n; i++) {
        const value *v = &p->values[i];
        usi_strbuf_addf(out, "%*s%s = ", indent, "", v->desc->name);
        switch (v->desc->type) {
        case USI_PARAM_INT: usi_strbuf_addf(out, "%lld", (long long)v->i); break;
        case USI_PARAM_BOOL: usi_strbuf_addf(out, "%s", v->i ? "true" : "false"); break;
        case USI_PARAM_STRING: usi_strbuf_add_quoted(out, v->s); break;
        case USI_PARAM_FLOAT: usi_strbuf_add_double(out, v->f); break;
        case USI_PARAM_FLOAT_LIST:
            usi_strbuf_addf(out, "[");
            for (size_t k = 0; k < v->list_len; k++) {
                usi_strbuf_addf(out, "%s", k ? ", " : "");
                usi_strbuf_add_double(out, v->list[k]);
            }
            usi_strbuf_addf(out, "]");
            break;
        }
        usi_strbuf_addf(out, ";\n");
    }
}

usi_error *usi_params_get_int(const usi_params *p, const char *name, int64_t *out)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_INT, &v));
    if (v->desc->type != USI_PARAM_INT) {
        char who[160];
        return usi_error_new(USI_ERR_INVALID, "option '%s' of %s takes %s, not an int",
                             name, owner(p->comp, who, sizeof who), a_type(v->desc->type));
    }
    *out = v->i;
    return NULL;
}

usi_error *usi_params_get_float(const usi_params *p, const char *name, double *out)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_FLOAT, &v));
    *out = v->f;
    return NULL;
}

usi_error *usi_params_get_bool(const usi_params *p, const char *name, int32_t *out)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_BOOL, &v));
    *out = (int32_t)v->i;
    return NULL;
}

usi_error *usi_params_get_string(const usi_params *p, const char *name, const char **out)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_STRING, &v));
    *out = v->s;
    return NULL;
}

usi_error *usi_params_get_float_list(const usi_params *p, const char *name,
                                     double *out, size_t cap, size_t *n)
{
    value *v;
    USI_TRY(lookup(p, name, USI_PARAM_FLOAT_LIST, &v));
    for (size_t i = 0; i < v->list_len && i < cap; i++) out[i] = v->list[i];
    *n = v->list_len;
    return NULL;
}
