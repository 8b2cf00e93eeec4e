/* The SDK's shorthands through a real plugin file: the fixture built with
 * USI_PARAM_*, USI_FIELD_* + usi_read_options and USI_DEFINE_PLUGIN loads
 * through the registry, its schema is what the macros say, options given as
 * config text reach the instance's fields, and a field of the wrong width is
 * refused with an error instead of a write past it. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "config/config.h"
#include "plugin/abi.h"
#include "plugin/params.h"
#include "plugin/registry.h"
#include "util/error.h"

/* The fixture's instance, as fixtures/fixture_sdk.c declares it. */
typedef struct sdk_net {
    int64_t num_classes;
    int64_t img_size;
    double scale;
    int32_t use_bias;
    const char *act;
    double mean[4];
    size_t n_mean;
} sdk_net;

/* Create `name` with options `text` (libconfig, or NULL for the defaults);
 * on success *out is the instance and *pp its params (caller frees both). */
static usi_error *create(const usi_registry *r, const char *name, const char *text,
                         usi_params **pp, void **out)
{
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, name);
    if (!l) return usi_error_new(USI_ERR_INVALID, "no backbone %s", name);
    usi_params *p = usi_params_new(l->comp);
    usi_error *e = text ? usi_params_from_text(p, text, "test") : NULL;
    if (!e) e = l->comp->create(p, out);
    if (e) {
        usi_params_free(p);
        return e;
    }
    *pp = p;
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FIXTURE_DIR\n", argv[0]);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fixture_sdk.so", argv[1]);

    usi_registry *r = usi_registry_new(USI_ABI_MINOR_FLOOR);
    usi_error *e = usi_registry_load(r, path);
    CHECK(!e, "the SDK fixture was refused: %s", usi_error_message(e));
    usi_error_free(e);
    const usi_loaded *l = usi_registry_find(r, USI_KIND_BACKBONE, "sdk_net");
    CHECK(l && l->abi_major == USI_ABI_MAJOR && l->abi_minor == USI_ABI_MINOR,
          "sdk_net missing or not ABI %d.%d", USI_ABI_MAJOR, USI_ABI_MINOR);
    CHECK(usi_registry_find(r, USI_KIND_BACKBONE, "sdk_bad_field"),
          "the second component of USI_DEFINE_PLUGIN is missing");
    if (!l) return check_status("SDK helpers");

    /* The schema the macros made. */
    const usi_component *c = l->comp;
    CHECK(c->n_params == 6, "%zu params", c->n_params);
    const usi_param_desc *d = usi_component_param(c, 0);
    CHECK(d->struct_size == sizeof(usi_param_desc) && d->type == USI_PARAM_INT &&
              d->def_int == 1000 && d->min == 1 && d->max == 100000,
          "USI_PARAM_INT gave a wrong entry");
    d = usi_component_param(c, 1);
    CHECK(!usi_param_has_range(d), "img_size (0, 0) has a range");
    d = usi_component_param(c, 3);
    CHECK(d->type == USI_PARAM_BOOL && d->def_int == 1 && d->min == 0 && d->max == 0,
          "USI_PARAM_BOOL gave a wrong entry");
    d = usi_component_param(c, 4);
    CHECK(d->type == USI_PARAM_STRING && !strcmp(d->def_string, "relu") &&
              !strcmp(d->choices, "relu|gelu|silu"),
          "USI_PARAM_STRING gave a wrong entry");
    d = usi_component_param(c, 5);
    CHECK(d->type == USI_PARAM_FLOAT_LIST && d->max == 1, "USI_PARAM_FLOAT_LIST gave a wrong entry");

    /* Defaults reach the fields. */
    usi_params *p = NULL;
    void *inst = NULL;
    e = create(r, "sdk_net", NULL, &p, &inst);
    CHECK(!e, "create with defaults: %s", usi_error_message(e));
    usi_error_free(e);
    if (inst) {
        const sdk_net *n = inst;
        CHECK(n->num_classes == 1000 && n->img_size == 224 && n->scale == 0.5 && n->use_bias == 1 &&
                  n->act && !strcmp(n->act, "relu") && n->n_mean == 3 && n->mean[0] == 0.485 &&
                  n->mean[2] == 0.406,
              "defaults: %lld %lld %g %d %s %zu", (long long)n->num_classes,
              (long long)n->img_size, n->scale, n->use_bias, n->act ? n->act : "(null)", n->n_mean);
        c->destroy(inst);
        usi_params_free(p);
    }

    /* Options set as config text reach the fields. */
    p = NULL;
    inst = NULL;
    e = create(r, "sdk_net",
               "num_classes = 10; img_size = 32; scale = 1.25; use_bias = false; act = \"gelu\";"
               " mean = [0.5, 0.25, 0.125, 1.0];",
               &p, &inst);
    CHECK(!e, "create with options: %s", usi_error_message(e));
    usi_error_free(e);
    if (inst) {
        const sdk_net *n = inst;
        CHECK(n->num_classes == 10 && n->img_size == 32 && n->scale == 1.25 && n->use_bias == 0 &&
                  n->act && !strcmp(n->act, "gelu") && n->n_mean == 4 && n->mean[0] == 0.5 &&
                  n->mean[1] == 0.25 && n->mean[2] == 0.125 && n->mean[3] == 1.0,
              "options: %lld %lld %g %d %s %zu", (long long)n->num_classes,
              (long long)n->img_size, n->scale, n->use_bias, n->act ? n->act : "(null)", n->n_mean);
        c->destroy(inst);
        usi_params_free(p);
    }

    /* A list longer than the field's array is an error, not an overflow. */
    inst = NULL;
    e = create(r, "sdk_net", "mean = [0.1, 0.2, 0.3, 0.4, 0.5];", &p, &inst);
    CHECK(e && strstr(usi_error_message(e), "'mean': 5 values, at most 4"),
          "a 5-item list into a 4-double field: %s", e ? usi_error_message(e) : "(accepted)");
    usi_error_free(e);

    /* An INT option into an int32_t field is refused, naming the option. */
    inst = NULL;
    e = create(r, "sdk_bad_field", NULL, &p, &inst);
    CHECK(e && e->code == USI_ERR_INTERNAL && strstr(usi_error_message(e), "'img_size'"),
          "a too-narrow field: %s", e ? usi_error_message(e) : "(accepted)");
    usi_error_free(e);

    usi_registry_free(r);
    return check_status("SDK helpers");
}
